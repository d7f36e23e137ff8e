"""`--model auto`: choose among the candidate models by validation loss within a time limit, by
successive halving (every candidate trains briefly, the better half trains on, warm-started, and
the winner gets most of the time), and the clock that keeps `train` inside its limit.

docs/auto.md describes the schedule, the candidates and what the wall clock can change.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from img2num.backbones import is_backbone
from img2num.config import AUTO_MODEL, TIME_RESERVE_MAX, TIME_RESERVE_MIN, TIME_RESERVE_SHARE
from img2num.errors import Img2NumError
from img2num.models import check_model_name

# Epochs the first look at every candidate takes: the first epoch holds compilation, the
# second measures an epoch.
PROBE_EPOCHS = 2
# The time after training when a run is saved, in units of the slowest candidate's compilation
# (its first epoch less a later one): a 60 s run on a loaded machine compiled pixel_gap in 12-13 s
# and needed 25-30 s after training for predictions, saving and pictures.
FINISH_COMPILES = 2.0
# Images with a shorter side below this do not try the pretrained backbone: a five-stage network
# has nothing left of them at its last stage.
BACKBONE_MIN_SIDE = 32
# Epoch counts are rounded down to one of these (and their doublings), so that a small change
# of the measured epoch time rarely changes the schedule: steps of about 2^(1/4).
_ROUND_STEPS = (4, 5, 6, 7)


@dataclass(frozen=True)
class Candidate:
    """A model `--model auto` may choose.

    Attributes:
        name: Registered model name, or a pretrained backbone's (`backbone:PRESET`).
        applies: Whether the candidate is tried on images of a (height, width, channels) shape.
        reason: Why it is a candidate, for the docs and the run record.
    """

    name: str
    applies: Callable[[tuple[int, int, int]], bool]
    reason: str


_CANDIDATES: list[Candidate] = []


def register_candidate(
    name: str, reason: str, applies: Callable[[tuple[int, int, int]], bool] | None = None
) -> None:
    """Add a registered model to the candidates of `--model auto` (after the others).

    This is where further model families join the automatic choice (such as pretrained backbones).

    Args:
        name: A registered model name (`img2num.models.register_model`), or a pretrained
            backbone's (`backbone:PRESET`), which is fitted once rather than by epochs.
        reason: One line: what kind of number the model is good at.
        applies: Whether to try it on images of a given (height, width, channels); default always.

    Raises:
        Img2NumError: The model is not registered.
        ValueError: It is a candidate already.
    """
    check_model_name(name)
    if any(candidate.name == name for candidate in _CANDIDATES):
        raise ValueError(f"model {name!r} is a candidate already")
    _CANDIDATES.append(Candidate(name, applies or (lambda shape: True), reason))


register_candidate("pixel_gap", "numbers that are sums over pixels: counts of dots, covered fractions, colour")
register_candidate("cnn_gap", "numbers that depend on shapes larger than a pixel: digits, objects, textures")
register_candidate(
    "backbone:efficientnet_lite0",
    "photographs: what an ImageNet network sees, at several depths, with a head fitted on it",
    lambda shape: min(shape[:2]) >= BACKBONE_MIN_SIDE and _offline_backbone("efficientnet_lite0"),
)


def _offline_backbone(spec: str) -> bool:
    """Whether the backbone can be had without a network (a candidate never downloads)."""
    from img2num.backbones.presets import available_offline

    return available_offline(spec)


def list_candidates() -> list[Candidate]:
    """Every candidate of `--model auto`, in the order they are tried."""
    return list(_CANDIDATES)


def candidate_models(image_shape: Sequence[int]) -> list[str]:
    """The candidate model names `--model auto` tries on images of `image_shape`, in order."""
    shape = tuple(int(d) for d in image_shape)
    return [candidate.name for candidate in _CANDIDATES if candidate.applies(shape)]


def expand_models(models: Sequence[str], image_shape: Sequence[int]) -> list[str]:
    """`models` with "auto" replaced by its candidates (each name once, in order): the models a
    process will train, from which its backend is chosen."""
    names: list[str] = []
    for name in models:
        for model in candidate_models(image_shape) if name == AUTO_MODEL else [name]:
            if model not in names:
                names.append(model)
    return names


def time_reserve(limit: float, saving: bool = True) -> float:
    """Seconds of a time limit kept for what follows training: predictions, and when `saving`
    the run folder with its pictures (`TIME_RESERVE_SHARE` of the limit, within
    `TIME_RESERVE_MIN`-`TIME_RESERVE_MAX`; a third of that without saving)."""
    reserve = min(max(TIME_RESERVE_SHARE * limit, TIME_RESERVE_MIN), TIME_RESERVE_MAX)
    return min(reserve if saving else reserve / 3, 0.5 * limit)


@dataclass
class Clock:
    """The time limit of one `train` call.

    Attributes:
        started: `time.perf_counter()` when the call began.
        limit: Seconds allowed, or None for no limit.
        saving: Whether a run folder (model, pictures) is written after training.
        reserve: Seconds kept for what follows training: `time_reserve(limit, saving)`, raised
            by `select_model` when saving on a machine where compiling takes long.
    """

    started: float
    limit: float | None
    saving: bool = True
    reserve: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        if self.limit is not None:
            self.reserve = time_reserve(self.limit, self.saving)

    @property
    def training_deadline(self) -> float:
        """When training must end (perf_counter seconds): the limit less the reserve; infinite
        without a limit."""
        if self.limit is None:
            return math.inf
        return self.started + self.limit - self.reserve

    def training_left(self) -> float:
        """Seconds of training time left (infinite without a limit)."""
        return self.training_deadline - time.perf_counter()


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
    """One candidate in training: its model, callbacks and record."""

    name: str
    model: object
    trainer: str
    recorder: object
    stopper: object
    callbacks: object
    seconds: float = 0.0
    epoch_seconds: float = math.inf
    converged: bool = False
    dropped: str = ""
    rungs: list[int] = field(default_factory=list)
    outputs: dict | None = None
    backbone: dict | None = None

    @property
    def epochs(self) -> int:
        return len(self.recorder.history)

    @property
    def best_val(self) -> float:
        return min((row["val_loss"] for row in self.recorder.history), default=math.inf)


@dataclass
class Selection:
    """The outcome of `select_model`: the winner's model and callbacks, ready for the run.

    Attributes:
        name: The chosen model's name.
        model: Its trained Keras model.
        trainer: How its epochs ran.
        recorder: Its `EpochRecorder` (the history over every rung).
        stopper: Its `EarlyStop`, or None.
        seconds: Seconds spent training every candidate.
        record: JSON-ready account: time limit, candidates (name, epochs, seconds, best
            validation MSE and R^2, outcome) and why the winner won.
        outputs: The model's outputs on every split when the winner is a pretrained backbone
            (its features of every split are computed already), else None.
        backbone: The backbone's record (`BackboneTraining.record`) when the winner is one.
    """

    name: str
    model: object
    trainer: str
    recorder: object
    stopper: object
    seconds: float
    record: dict
    outputs: dict | None = None
    backbone: dict | None = None


def select_model(
    candidates: Sequence[str],
    config,
    train_split,
    val_split,
    preprocessing,
    loss_factor: float,
    clock: Clock,
    val_targets: np.ndarray,
    say: Callable[[str], None] = lambda text: None,
    fit_backbone: Callable[[str], object] | None = None,
) -> Selection:
    """Successive halving over `candidates` within `clock`'s training time.

    Every candidate in turn first trains `PROBE_EPOCHS` epochs, which also measures its epoch
    time and its compilation; one is not tried when less than twice the slowest compilation so
    far is left, and the clock's reserve grows to `FINISH_COMPILES` times it. The time left is
    then split into rungs, one more than the halvings needed to leave one candidate:
    in each rung the candidates still in share the rung's time equally (as epochs of their own
    measured length, rounded down by `round_epochs`), then the better half by lowest validation
    loss so far goes on, warm-started. The last candidate spends the rest. A candidate whose
    early stopping ends its training keeps its place and trains no more.

    Args:
        candidates: Registered model names, at least one.
        config: The `TrainConfig` (its model is "auto"); every candidate trains with its settings.
        train_split: Training split, labelled with the targets the models learn.
        val_split: Validation split, labelled the same way.
        preprocessing: Turns the splits' images into model input.
        loss_factor: Factor turning losses into the targets' original units.
        clock: The call's time limit.
        val_targets: Validation targets in original units, for R^2.
        say: Where progress lines go.
        fit_backbone: Trains a `backbone:PRESET` candidate in one go (feature extraction and
            head; `img2num.backbones.train.train_backbone`), returning its `BackboneTraining`.
            Such a candidate takes part in the ranking but trains no further.

    Returns:
        The chosen candidate and the record of the choice.
    """
    if not candidates:
        raise Img2NumError("no candidate model fits these images; name one with --model")
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
        if is_backbone(name):
            while announce:
                say(announce.pop())
            try:
                trials.append(_backbone_trial(name, fit_backbone))
            except Img2NumError as error:  # a preset that cannot load leaves the other candidates
                say(f"auto: {name} not tried: {error}")
                skipped.append((name, str(error)))
            continue
        trial = _start_trial(name, config, train_split, val_split, loss_factor)
        while announce:  # said once the settings proved usable (a trainer that cannot run is an error)
            say(announce.pop())
        _train_trial(
            trial, min(PROBE_EPOCHS, config.epochs), config, train_split, val_split, preprocessing,
            clock.training_deadline, say, "probe",
        )
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
        training = [trial for trial in alive if not trial.converged and trial.epochs < config.epochs]
        if not training:
            if len(alive) == 1:
                break
            continue
        share = clock.training_left() / (rungs - rung) / len(training)
        for trial in training:
            epochs = min(round_epochs(share / max(trial.epoch_seconds, 1e-6)), config.epochs - trial.epochs)
            if epochs >= 1:
                _train_trial(
                    trial, epochs, config, train_split, val_split, preprocessing, clock.training_deadline, say, f"rung {rung + 1}"
                )
            trial.rungs.append(trial.epochs)
    winner = min(alive, key=lambda trial: trial.best_val)
    for trial in alive:
        if trial is not winner:
            trial.dropped = f"lost at {decided_at}"
    if winner.callbacks is not None:
        winner.callbacks.finish(winner.model)
    record = _record(trials, winner, clock, val_targets, rungs, skipped)
    say(f"auto: chose {winner.name}: {record['why']}")
    return Selection(
        winner.name, winner.model, winner.trainer, winner.recorder, winner.stopper, time.perf_counter() - started, record,
        winner.outputs, winner.backbone,
    )


def _backbone_trial(name: str, fit_backbone) -> _Trial:
    """A pretrained backbone's candidate, fitted at once: it takes part in the ranking as if it
    had converged."""
    from types import SimpleNamespace

    fitted = fit_backbone(name)
    trial = _Trial(name, fitted.model, fitted.trainer, SimpleNamespace(history=fitted.history), fitted.stopper, None)
    trial.seconds = trial.epoch_seconds = fitted.seconds
    trial.converged = True
    trial.outputs = fitted.outputs
    trial.backbone = fitted.record
    trial.rungs.append(trial.epochs)
    return trial


def _compile_seconds(trial: _Trial) -> float:
    """The first epoch's excess over a later one; the whole first epoch when it is the only one
    (none for a backbone's candidate, which compiles no training step)."""
    if trial.outputs is not None:
        return 0.0
    first = trial.recorder.history[0]["seconds"]
    return first - trial.epoch_seconds if trial.epochs > 1 else first


def _start_trial(name: str, config, train_split, val_split, loss_factor: float) -> _Trial:
    from dataclasses import replace

    import keras

    from img2num.callbacks import Resumable
    from img2num.training import build_model, choose_trainer, epoch_callbacks

    # Each candidate starts from the seed's weights, whichever was tried before it.
    keras.utils.set_random_seed(config.seed)
    named = replace(config, model=name)
    model = build_model(named, train_split.image_shape)
    recorder, stopper, callbacks = epoch_callbacks(named, loss_factor)
    callbacks = Resumable(callbacks)
    trainer = choose_trainer(config.trainer, model, {"train": train_split, "val": val_split})
    return _Trial(name, model, trainer, recorder, stopper, callbacks)


def _train_trial(
    trial: _Trial, epochs: int, config, train_split, val_split, preprocessing, deadline: float, say, stage: str
) -> None:
    from img2num.callbacks import TimeLimit
    from img2num.training import fit_model

    first = trial.epochs
    limit = TimeLimit(deadline, compiles_first=first == 0)
    began = time.perf_counter()
    # The batch order continues with a seed of its own for each call, the same every run.
    seed = int(np.random.SeedSequence([config.seed, first]).generate_state(1)[0])
    fit_model(
        trial.model,
        trial.trainer,
        train_split,
        val_split,
        preprocessing,
        batch_size=config.batch_size,
        epochs=epochs,
        seed=seed,
        callbacks=[trial.callbacks, limit],
    )
    trial.seconds += time.perf_counter() - began
    # The first epoch holds compilation; the later ones measure an epoch (the first alone over-states it).
    times = [row["seconds"] for row in trial.recorder.history[1:]] or [trial.recorder.history[0]["seconds"]]
    trial.epoch_seconds = float(np.median(times[-5:]))
    trial.converged = trial.stopper is not None and trial.stopper.stopped_epoch > 0
    last = trial.recorder.history[-1]
    note = " (stopped early)" if trial.converged else " (time limit)" if limit.stopped else ""
    say(
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
                "stopped_early": trial.converged,
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
    from img2num.io import records_csv

    keys = ("model", "val_mse", "val_r2", "epochs", "seconds", "epoch_seconds", "stopped_early", "outcome")
    return records_csv([{key: row[key] for key in keys} for row in record["candidates"]])
