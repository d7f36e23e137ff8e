"""`--model auto`: choose among the candidate models by validation loss within a time limit, by
successive halving (every candidate trains briefly, the better half trains on, warm-started, and
the winner gets most of the time), stopping at once a candidate whose learning curve cannot catch
the leader in the time left. The search sits above the fitters it runs.

docs/auto.md describes the schedule, the candidates and what the wall clock can change.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from img2num.clock import Clock
from img2num.curves import reachable_loss
from img2num.ensemble import ENSEMBLE_MODEL, ensemble_model, greedy_weights
from img2num.errors import Img2NumError
from img2num.fitters import fit
from img2num.fitting import Fit, FitInputs, build_model, choose_trainer, epoch_callbacks, kept_epochs, run_epochs

# The registry's queries are reached through this module, which registers every candidate: the
# architectures (img2num.models, through img2num.fitting) and the pretrained backbone
# (img2num.backbones, through img2num.fitters).
from img2num.registry import candidate_models, expand_models, list_candidates, model_spec
from img2num.selection import selection_record

__all__ = ["candidate_models", "expand_models", "list_candidates", "select_model"]

# Epochs the first look at every candidate takes: the first epoch holds compilation, the
# second measures an epoch.
PROBE_EPOCHS = 2
# The time after training when a run is saved, in units of the slowest candidate's compilation
# (its first epoch less a later one): a 60 s run on a loaded machine compiled pixel_gap in 12-13 s
# and needed 25-30 s after training for predictions, saving and pictures.
FINISH_COMPILES = 2.0
# A rung's share is trained in pieces of at most a quarter of it, PIECE_EPOCHS epochs and
# PIECE_SECONDS seconds, the learning-curve bound checked after each: the check costs nothing
# (validation runs every epoch anyway), each piece one call into the training loop.
PIECES_PER_SHARE = 4
PIECE_EPOCHS = 8
PIECE_SECONDS = 2.0
# The bound stops no candidate before this many epochs: the pace from the first epoch to the
# second says little (on held-out haze scenes it put cnn_gap's reach at 0.35 after 2 epochs; it
# reached 0.25).
MIN_EPOCHS_TO_STOP = 4
# The bound drops nobody while the leader's validation R^2 is below this: a leader no better
# than the mean decides nothing (a CNN can sit at the mean for its first epochs).
LEADER_MIN_R2 = 0.1
# Where the time left affords the leader fewer epochs than this alone, the others stop: racing
# them would starve the winner (a loaded machine gets a smaller search).
STARVED_EPOCHS = 30
# The ensemble (`img2num.ensemble`): up to this many candidates whose best validation loss is
# within this factor of the winner's, kept only where it beats the winner alone on validation by
# this share (the weights are chosen on the same validation split, which flatters: on the digits
# an ensemble 2.6% better on validation was no better on test; on counting, 30% better on
# validation, it was 25% better on test). The
# greedy weights leave out a member that does not help; at 1.5 a cnn_gap stopped at 1.51 times
# the backbone head's loss on counting was left out, where with it the ensemble scored 25% lower.
ENSEMBLE_SIZE = 3
ENSEMBLE_RANGE = 3.0
ENSEMBLE_GAIN = 0.05
# Epoch counts are rounded down to one of these (and their doublings), so that a small change
# of the measured epoch time rarely changes the schedule: steps of about 2^(1/4).
_ROUND_STEPS = (4, 5, 6, 7)


def round_epochs(epochs: float) -> int:
    """`epochs` rounded down to 1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, ... (0 below 1)."""
    if epochs < 1:
        return 0
    if epochs < 8:
        return int(epochs)
    scale = 2 ** int(math.log2(epochs / 4))
    return max(step * scale for step in _ROUND_STEPS if step * scale <= epochs)


@dataclass
class _Trial:
    """One candidate in training: its model, callbacks and record.

    `stopped_early` says that early stopping ended its training; `done`, that it trains no
    further (stopped early, or fitted at once as a pretrained backbone's head is).
    """

    name: str
    model: object
    trainer: str
    history: list[dict]
    stopper: object
    callbacks: object
    seconds: float = 0.0
    epoch_seconds: float = math.inf
    stopped_early: bool = False
    done: bool = False
    dropped: str = ""
    rungs: list[int] = field(default_factory=list)
    fitted: Fit | None = None
    # Each stretch of training: stage, start and end (seconds since `train` was called), epochs.
    spans: list[dict] = field(default_factory=list)
    time_limited: bool = False

    @property
    def epochs(self) -> int:
        return len(self.history)

    @property
    def best_val(self) -> float:
        return min((row["val_loss"] for row in self.history), default=math.inf)


def select_model(candidates: Sequence[str], inputs: FitInputs) -> Fit:
    """Successive halving over `candidates` within the clock's training time.

    Every candidate in turn first trains `PROBE_EPOCHS` epochs, which also measures its epoch
    time and its compilation; one is not tried when less than twice the slowest compilation so
    far is left, and the clock's reserve grows to `FINISH_COMPILES` times it. A candidate the
    registry fits at once (a pretrained backbone's head) is fitted then, and takes part in the
    ranking without training further. The time left is then split into rungs, one more than
    the halvings needed to leave one candidate: in each rung the candidates still in share the
    rung's time equally (as epochs of their own measured length, rounded down by
    `round_epochs`), then the better half by lowest validation loss so far goes on,
    warm-started. The last candidate spends the rest. A candidate whose early stopping ends its
    training keeps its place and trains no more.

    Args:
        candidates: Registered model names, at least one.
        inputs: What every fitter is given; its config's model is "auto", and every candidate
            trains with its settings.

    Returns:
        The winner's `Fit`, its record holding the choice (`selection`: time limit,
        candidates with epochs, seconds, best validation MSE and R^2, outcome, and why the
        winner won) beside the winner's own.

    Raises:
        Img2NumError: No candidate, or none could be tried.
    """
    if not candidates:
        raise Img2NumError("no candidate model fits these images; name one with --model")
    config, clock, say = inputs.config, inputs.clock, inputs.say
    started = time.perf_counter()
    budget_note = "no time limit" if clock.limit is None else f"{clock.training_left():.0f} s of training time left"
    trials, skipped = [], []
    announce = [f"auto: trying {', '.join(candidates)} ({budget_note})"]
    for name in candidates:
        left = clock.training_left()
        # A candidate needs time to compile (at least as long as the slowest so far) and to train.
        if trials and left <= 2 * max(_compile_seconds(trial) for trial in trials):
            skipped.append((name, "no time left"))
            continue
        if model_spec(name).fitter != "epochs":
            while announce:
                say(announce.pop())
            try:
                trials.append(_fitted_trial(name, inputs))
            except Img2NumError as error:  # a preset that cannot load leaves the other candidates
                say(f"auto: {name} not tried: {error}")
                skipped.append((name, str(error)))
            continue
        trial = _start_trial(name, inputs)
        while announce:  # said once the settings proved usable (a trainer that cannot run is an error)
            say(announce.pop())
        _train_trial(trial, min(PROBE_EPOCHS, config.epochs), inputs, "probe")
        trial.rungs.append(trial.epochs)
        trials.append(trial)
        if clock.limit is not None and clock.saving:
            # Saving, predicting (which compiles again) and the pictures take their time: where
            # compiling was slow (a loaded machine), keep more for them.
            compiling = max(_compile_seconds(trial) for trial in trials)
            clock.reserve = min(max(clock.reserve, FINISH_COMPILES * compiling), 0.5 * clock.limit)
    if not trials:
        raise Img2NumError(f"no candidate model could be tried: {skipped[0][0]}: {skipped[0][1]}")
    late = [name for name, why in skipped if why == "no time left"]
    if late:
        say(f"auto: no time left to try {', '.join(late)}")
    variance = float(np.var(np.asarray(inputs.splits["val"].y, dtype=np.float64)))
    rungs = max(1, math.ceil(math.log2(len(trials))) + 1)
    alive = _drop_hopeless(trials, inputs, variance)
    alive = _drop_for_time(alive, inputs)
    decided_at = "the probe"
    for rung in range(rungs):
        if len(alive) == 1:
            break
        if rung > 0:
            keep = math.ceil(len(alive) / 2)
            ranked = sorted(alive, key=lambda trial: trial.best_val)
            for trial in ranked[keep:]:
                trial.dropped = f"dropped after rung {rung}"
            alive = ranked[:keep]
            decided_at = f"rung {rung}"
        # The leader trains first, so the others are judged against its rung's progress.
        training = sorted((t for t in alive if not t.done and t.epochs < config.epochs), key=lambda t: t.best_val)
        for index, trial in enumerate(training):
            if _stop_hopeless(trial, _leader(alive), inputs, variance):
                alive = [other for other in alive if not other.dropped]
            if trial.dropped or len(alive) == 1:
                continue
            # Time a candidate stopped by the bound leaves goes to those after it.
            waiting = sum(1 for other in training[index:] if not other.dropped)
            share = clock.training_left() / (rungs - rung) / waiting
            epochs = min(round_epochs(share / max(trial.epoch_seconds, 1e-6)), config.epochs - trial.epochs)
            if epochs >= 1:
                _train_share(trial, epochs, alive, inputs, variance, f"rung {rung + 1}")
            trial.rungs.append(trial.epochs)
            alive = [other for other in alive if not other.dropped]
    winner = min(alive, key=lambda trial: trial.best_val)
    if len(alive) == 1 and not winner.done and winner.epochs < config.epochs and clock.training_left() > 0:
        # Alone before the last rung: it trains on until early stopping, its epochs or the time limit.
        _train_trial(winner, config.epochs - winner.epochs, inputs, "alone")
        winner.rungs.append(winner.epochs)
    for trial in alive:
        if trial is not winner:
            trial.dropped = f"lost at {decided_at}"
    reserve = None if clock.limit is None else clock.reserve
    record = selection_record(trials, winner, clock.limit, reserve, variance, rungs, skipped)
    say(f"auto: chose {winner.name}: {record['why']}")
    if (note := _load_note(winner, clock)) is not None:
        record["load"] = note
        say(f"auto: {note}")
    if winner.fitted is not None:
        chosen = winner.fitted
    else:
        winner.callbacks.finish(winner.model)
        best, kept = kept_epochs(winner.history, winner.stopper, config.average_epochs > 0)
        chosen = Fit(winner.name, winner.model, winner.trainer, winner.history, 0.0, best, kept)
    chosen = _ensemble(trials, winner, chosen, inputs, record) or chosen
    return replace(chosen, seconds=time.perf_counter() - started, record={"selection": record} | chosen.record)


def _ensemble(trials: list[_Trial], winner: _Trial, chosen: Fit, inputs: FitInputs, record: dict) -> Fit | None:
    """The weighted ensemble of the best candidates (`img2num.ensemble`) where it beats the
    winner alone on validation by `ENSEMBLE_GAIN`, else None; `record` gets the comparison."""
    splits = inputs.splits
    pool = sorted(
        (t for t in trials if math.isfinite(t.best_val) and t.best_val <= ENSEMBLE_RANGE * winner.best_val),
        key=lambda trial: (trial is not winner, trial.best_val),
    )[:ENSEMBLE_SIZE]
    if len(pool) < 2 or not all(hasattr(split, "x") for split in splits.values()):
        return None  # one candidate near the winner, or images streamed from disk
    for trial in pool:
        if trial is not winner and trial.fitted is None:
            trial.callbacks.finish(trial.model)  # its kept weights, as it would be saved alone
    # Validation decides; the other splits are predicted only for an ensemble that is kept.
    val_outputs = [_outputs(trial, inputs, ["val"])["val"] for trial in pool]
    targets = inputs.val.y
    weights = greedy_weights(val_outputs, targets)
    alone = [float(np.mean((output.reshape(-1) - targets) ** 2)) for output in val_outputs]
    together = float(np.mean((sum(w * output for w, output in zip(weights, val_outputs)).reshape(-1) - targets) ** 2))
    kept = int(np.count_nonzero(weights)) >= 2 and together < (1 - ENSEMBLE_GAIN) * min(alone)
    factor = inputs.loss_factor
    record["ensemble"] = {
        "members": [trial.name for trial in pool],
        "weights": [round(float(w), 4) for w in weights],
        "val_mse_alone": [round(mse * factor, 6) for mse in alone],
        "val_mse": round(together * factor, 6),
        "kept": kept,
    }
    if not kept:
        return None
    members = [(trial, w) for trial, w in zip(pool, weights) if w > 0]
    outputs = [_outputs(trial, inputs, list(splits)) for trial, _ in members]
    combined = {name: sum(w * output[name] for (_, w), output in zip(members, outputs)) for name in splits}
    model = ensemble_model([trial.model for trial, _ in members], [w for _, w in members], tuple(winner.model.input_shape[1:]))
    names = " + ".join(f"{trial.name} {w:.2f}" for trial, w in members)
    inputs.say(f"auto: kept the ensemble {names}: validation MSE {together * factor:.4g} against {min(alone) * factor:.4g} alone")
    ensemble = {"members": [trial.name for trial, _ in members], "weights": [round(float(w), 4) for _, w in members]}
    return replace(chosen, name=ENSEMBLE_MODEL, model=model, outputs=combined, record=chosen.record | {"ensemble": ensemble})


def _outputs(trial: _Trial, inputs: FitInputs, names: list[str]) -> dict:
    """A trial's outputs (N, 1) on the splits `names`, in the learned targets' units (those a
    fitter computed already, as a backbone's head does, are taken as they are)."""
    if trial.fitted is not None and trial.fitted.outputs is not None:
        return trial.fitted.outputs
    from img2num.inference import predict_inputs

    splits = inputs.splits
    return {
        name: predict_inputs(trial.model, inputs.preprocessing.apply(splits[name].x, splits[name].source)).reshape(-1, 1)
        for name in names
    }


def _leader(trials: list[_Trial]) -> _Trial:
    return min(trials, key=lambda trial: trial.best_val)


def _hopeless(trial: _Trial, leader: _Trial, inputs: FitInputs, variance: float) -> str | None:
    """Why `trial` cannot catch `leader` in the time left, by its learning curve's optimistic
    bound (`curves.reachable_loss`), or None while it still might."""
    if trial is leader or trial.done or trial.epochs < MIN_EPOCHS_TO_STOP or trial.epochs >= inputs.config.epochs:
        return None
    if leader.best_val > (1 - LEADER_MIN_R2) * variance:
        return None
    left = inputs.clock.training_left()
    ahead = inputs.config.epochs - trial.epochs
    if math.isfinite(left):
        ahead = min(ahead, left / max(trial.epoch_seconds, 1e-6))
    reach = reachable_loss([row["val_loss"] for row in trial.history], ahead)
    # A lead smaller than the validation split can measure is no reason to go on: the standard
    # error of an MSE over n samples of normal errors is MSE * sqrt(2 / n).
    noise = leader.best_val * math.sqrt(2 / max(len(inputs.val.y), 1))
    if reach <= leader.best_val - noise:
        return None
    return (
        f"stopped at epoch {trial.epochs}: could reach {reach:.4g} at best in the time left, no better than "
        f"{leader.name}'s {leader.best_val:.4g} by more than validation noise ({noise:.2g})"
    )


def _drop_hopeless(trials: list[_Trial], inputs: FitInputs, variance: float) -> list[_Trial]:
    """The trials that can still catch the leader; the others are marked dropped, saying why."""
    leader = _leader(trials)
    for trial in trials:
        _stop_hopeless(trial, leader, inputs, variance)
    return [trial for trial in trials if not trial.dropped]


def _stop_hopeless(trial: _Trial, leader: _Trial, inputs: FitInputs, variance: float) -> bool:
    """Mark `trial` dropped, saying why, when it cannot catch `leader`; whether it was."""
    if trial.dropped or (why := _hopeless(trial, leader, inputs, variance)) is None:
        return False
    trial.dropped = why
    inputs.say(f"auto: {trial.name} {why}")
    return True


def _drop_for_time(trials: list[_Trial], inputs: FitInputs) -> list[_Trial]:
    """All but the leader when the time left affords the leader fewer than `STARVED_EPOCHS`
    epochs of its own: on a slow or loaded machine a race would starve the winner."""
    leader = _leader(trials)
    racing = [trial for trial in trials if trial is not leader and not trial.done]
    left = inputs.clock.training_left()
    if not racing or leader.done or not math.isfinite(left):
        return trials
    affords = left / max(leader.epoch_seconds, 1e-6)
    if affords >= min(STARVED_EPOCHS, inputs.config.epochs - leader.epochs):
        return trials
    for trial in racing:
        trial.dropped = f"stopped after the probe: the time left affords the leader {leader.name} only {affords:.0f} epochs"
    inputs.say(f"auto: {len(racing)} candidate(s) stopped: {racing[0].dropped}")
    return [trial for trial in trials if not trial.dropped]


def _train_share(trial: _Trial, epochs: int, alive: list[_Trial], inputs: FitInputs, variance: float, stage: str) -> None:
    """Train `trial` for `epochs` in up to `PIECES_PER_SHARE` pieces, stopping it (marked
    dropped) as soon as its learning curve cannot catch the leader."""
    piece = max(1, min(math.ceil(epochs / PIECES_PER_SHARE), PIECE_EPOCHS, int(PIECE_SECONDS / max(trial.epoch_seconds, 1e-6))))
    if trial is _leader(alive):
        piece = epochs  # the leader is not judged against itself: its share runs in one call
    first, done = trial.epochs, 0
    while done < epochs and not trial.done and not trial.time_limited:
        steps = min(piece, epochs - done)
        _train_trial(trial, steps, inputs, stage, announce=False)
        done += steps
        if (why := _hopeless(trial, _leader(alive), inputs, variance)) is not None:
            trial.dropped = why
            break
    _say_trained(trial, stage, first, inputs)
    if trial.dropped:
        inputs.say(f"auto: {trial.name} {trial.dropped}")


def _load_note(winner: _Trial, clock: Clock) -> str | None:
    """One line when the time limit, on a machine busier than its cores, ended the winner's
    training (early stopping did not)."""
    import os

    if not winner.time_limited or clock.limit is None:
        return None
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    if load <= cores:
        return None
    return (
        f"the time limit ended {winner.name}'s training at epoch {winner.epochs} on a loaded machine "
        f"(load average {load:.1f} on {cores} cores); a larger --time-limit gives it more epochs"
    )


def _fitted_trial(name: str, inputs: FitInputs) -> _Trial:
    """A candidate fitted at once (a pretrained backbone's head): it takes part in the ranking
    and trains no further."""
    began = time.perf_counter()
    fitted = fit(replace(inputs, config=replace(inputs.config, model=name)))
    trial = _Trial(name, fitted.model, fitted.trainer, fitted.history, None, None, fitted=fitted)
    trial.seconds = trial.epoch_seconds = fitted.seconds
    trial.done = True
    trial.rungs.append(trial.epochs)
    trial.spans.append(_span(inputs.clock, "fitted", began, 0, trial.epochs))
    return trial


def _span(clock: Clock, stage: str, began: float, first: int, last: int) -> dict:
    """A stretch of a trial's training for the search's timeline, in seconds since `train` began."""
    return {
        "stage": stage,
        "start": round(began - clock.started, 3),
        "end": round(time.perf_counter() - clock.started, 3),
        "epochs": [first, last],
    }


def _compile_seconds(trial: _Trial) -> float:
    """The first epoch's excess over a later one; the whole first epoch when it is the only one
    (none for a candidate fitted at once, which compiles no training step)."""
    if trial.fitted is not None:
        return 0.0
    first = trial.history[0]["seconds"]
    return first - trial.epoch_seconds if trial.epochs > 1 else first


def _start_trial(name: str, inputs: FitInputs) -> _Trial:
    import keras

    from img2num.callbacks import Resumable

    # Each candidate starts from the seed's weights, whichever was tried before it.
    keras.utils.set_random_seed(inputs.config.seed)
    named = replace(inputs.config, model=name)
    model = build_model(named, inputs.train.image_shape)
    recorder, stopper, callbacks = epoch_callbacks(named, inputs.loss_factor)
    trainer = choose_trainer(named.trainer, model, {"train": inputs.train, "val": inputs.val})
    # The recorder's history is the trial's: it grows as the trial trains.
    return _Trial(name, model, trainer, recorder.history, stopper, Resumable(callbacks))


def _train_trial(trial: _Trial, epochs: int, inputs: FitInputs, stage: str, announce: bool = True) -> None:
    from img2num.callbacks import TimeLimit

    config = inputs.config
    first = trial.epochs
    limit = TimeLimit(inputs.clock.training_deadline, compiles_first=first == 0)
    began = time.perf_counter()
    # The batch order continues with a seed of its own for each call, the same every run.
    seed = int(np.random.SeedSequence([config.seed, first]).generate_state(1)[0])
    run_epochs(
        trial.model,
        trial.trainer,
        inputs.train,
        inputs.val,
        inputs.preprocessing,
        batch_size=config.batch_size,
        epochs=epochs,
        seed=seed,
        callbacks=[trial.callbacks, limit],
    )
    trial.seconds += time.perf_counter() - began
    # The first epoch holds compilation; the later ones measure an epoch (the first alone over-states it).
    times = [row["seconds"] for row in trial.history[1:]] or [trial.history[0]["seconds"]]
    trial.epoch_seconds = float(np.median(times[-5:]))
    trial.stopped_early = trial.done = trial.stopper is not None and trial.stopper.stopped_epoch > 0
    trial.time_limited = trial.time_limited or limit.stopped
    trial.spans.append(_span(inputs.clock, stage, began, first + 1, trial.epochs))
    if announce:
        _say_trained(trial, stage, first, inputs)


def _say_trained(trial: _Trial, stage: str, first: int, inputs: FitInputs) -> None:
    last = trial.history[-1]
    note = " (stopped early)" if trial.stopped_early else " (time limit)" if trial.time_limited else ""
    inputs.say(
        f"auto: {stage} {trial.name} epochs {first + 1}-{trial.epochs}  val_loss {last['val_loss']:.4g}  "
        f"best {trial.best_val:.4g}  {last['seconds']:.3f} s/epoch{note}"
    )
