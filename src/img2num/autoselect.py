"""`--model auto`: choose among the candidate models by validation loss within a time limit, by
successive halving (every candidate trains briefly, the better half trains on, warm-started, and
the winner gets most of the time). The search sits above the fitters it runs.

docs/auto.md describes the schedule, the candidates and what the wall clock can change.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from img2num.clock import Clock
from img2num.config import AUTO_MODEL
from img2num.errors import Img2NumError
from img2num.fitters import fit
from img2num.fitting import Fit, FitInputs, build_model, choose_trainer, epoch_callbacks, kept_epochs, run_epochs
from img2num.io import records_csv

# The registry's queries are reached through this module, which registers every candidate: the
# architectures (img2num.models, through img2num.fitting) and the pretrained backbone
# (img2num.backbones, through img2num.fitters).
from img2num.registry import candidate_models, expand_models, list_candidates, model_spec

__all__ = ["candidate_models", "expand_models", "list_candidates", "select_model", "selection_lines", "candidates_csv"]

# Epochs the first look at every candidate takes: the first epoch holds compilation, the
# second measures an epoch.
PROBE_EPOCHS = 2
# The time after training when a run is saved, in units of the slowest candidate's compilation
# (its first epoch less a later one): a 60 s run on a loaded machine compiled pixel_gap in 12-13 s
# and needed 25-30 s after training for predictions, saving and pictures.
FINISH_COMPILES = 2.0
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
    rungs = max(1, math.ceil(math.log2(len(trials))) + 1)
    alive = list(trials)
    decided_at = "the probe"
    for rung in range(rungs):
        if rung > 0:
            keep = math.ceil(len(alive) / 2)
            ranked = sorted(alive, key=lambda trial: trial.best_val)
            for trial in ranked[keep:]:
                trial.dropped = f"dropped after rung {rung}"
            alive = ranked[:keep]
            decided_at = f"rung {rung}"
        training = [trial for trial in alive if not trial.done and trial.epochs < config.epochs]
        if not training:
            if len(alive) == 1:
                break
            continue
        share = clock.training_left() / (rungs - rung) / len(training)
        for trial in training:
            epochs = min(round_epochs(share / max(trial.epoch_seconds, 1e-6)), config.epochs - trial.epochs)
            if epochs >= 1:
                _train_trial(trial, epochs, inputs, f"rung {rung + 1}")
            trial.rungs.append(trial.epochs)
    winner = min(alive, key=lambda trial: trial.best_val)
    for trial in alive:
        if trial is not winner:
            trial.dropped = f"lost at {decided_at}"
    record = _record(trials, winner, clock, inputs.splits["val"].y, rungs, skipped)
    say(f"auto: chose {winner.name}: {record['why']}")
    if winner.fitted is not None:
        chosen = winner.fitted
    else:
        winner.callbacks.finish(winner.model)
        best, kept = kept_epochs(winner.history, winner.stopper)
        chosen = Fit(winner.name, winner.model, winner.trainer, winner.history, 0.0, best, kept)
    return replace(chosen, seconds=time.perf_counter() - started, record={"selection": record} | chosen.record)


def _fitted_trial(name: str, inputs: FitInputs) -> _Trial:
    """A candidate fitted at once (a pretrained backbone's head): it takes part in the ranking
    and trains no further."""
    fitted = fit(replace(inputs, config=replace(inputs.config, model=name)))
    trial = _Trial(name, fitted.model, fitted.trainer, fitted.history, None, None, fitted=fitted)
    trial.seconds = trial.epoch_seconds = fitted.seconds
    trial.done = True
    trial.rungs.append(trial.epochs)
    return trial


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


def _train_trial(trial: _Trial, epochs: int, inputs: FitInputs, stage: str) -> None:
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
    last = trial.history[-1]
    note = " (stopped early)" if trial.stopped_early else " (time limit)" if limit.stopped else ""
    inputs.say(
        f"auto: {stage} {trial.name} epochs {first + 1}-{trial.epochs}  val_loss {last['val_loss']:.4g}  "
        f"best {trial.best_val:.4g}  {last['seconds']:.3f} s/epoch{note}"
    )


def _record(
    trials: list[_Trial], winner: _Trial, clock: Clock, val_targets: np.ndarray, rungs: int, skipped: list[tuple[str, str]]
) -> dict:
    variance = float(np.var(np.asarray(val_targets, dtype=np.float64)))
    rows = []
    for trial in trials:
        rows.append(
            {
                "model": trial.name,
                "epochs": trial.epochs,
                "seconds": round(trial.seconds, 3),
                "epoch_seconds": round(trial.epoch_seconds, 4),
                "val_mse": trial.best_val,
                "val_r2": 1.0 - trial.best_val / variance if variance > 0 else 0.0,
                "epochs_after_rung": trial.rungs,
                "outcome": "chosen" if trial is winner else trial.dropped,
                "stopped_early": trial.stopped_early,
            }
        )
    for name, reason in skipped:
        rows.append(
            {
                "model": name,
                "epochs": 0,
                "seconds": 0.0,
                "epoch_seconds": None,
                "val_mse": None,
                "val_r2": None,
                "epochs_after_rung": [],
                "outcome": f"not tried: {reason}",
                "stopped_early": False,
            }
        )
    others = [row for row in rows if row["model"] != winner.name and row["val_mse"] is not None]
    why = f"lowest validation MSE, {winner.best_val:.4g}"
    if others:
        why += " against " + ", ".join(f"{row['model']} {row['val_mse']:.4g} ({row['outcome']})" for row in others)
    if late := [name for name, reason in skipped if reason == "no time left"]:
        why += f"; not tried for lack of time: {', '.join(late)}"
    return {
        "requested": AUTO_MODEL,
        "time_limit": clock.limit,
        "reserve_seconds": None if clock.limit is None else round(clock.reserve, 3),
        "rungs": rungs,
        "candidates": rows,
        "chosen": winner.name,
        "why": why,
    }


def selection_lines(record: dict) -> list[str]:
    """The candidates table of a run's selection record, a few lines for a terminal."""
    rows = record["candidates"]
    width = max(len(row["model"]) for row in rows)
    lines = [f"{'candidate':<{width}}  {'val MSE':>10}  {'val R^2':>7}  {'epochs':>6}  {'seconds':>7}  outcome"]
    for row in rows:
        if row["val_mse"] is None:
            lines.append(f"{row['model']:<{width}}  {'-':>10}  {'-':>7}  {0:>6}  {0:>7.1f}  {row['outcome']}")
            continue
        lines.append(
            f"{row['model']:<{width}}  {row['val_mse']:>10.4g}  {row['val_r2']:>7.3f}  {row['epochs']:>6}  "
            f"{row['seconds']:>7.1f}  {row['outcome']}"
        )
    lines.append(f"chose {record['chosen']}: {record['why']}")
    return lines


def candidates_csv(record: dict) -> str:
    """The candidates of a selection record as CSV text."""
    keys = ("model", "val_mse", "val_r2", "epochs", "seconds", "epoch_seconds", "stopped_early", "outcome")
    return records_csv([{key: row[key] for key in keys} for row in record["candidates"]])
