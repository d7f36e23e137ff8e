"""The time limit of one `train` call: when training must end, and how much of the limit is kept
for what follows it (predictions, saving, pictures)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from img2num.config import TIME_RESERVE_MAX, TIME_RESERVE_MIN, TIME_RESERVE_SHARE


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
            by the automatic choice when saving on a machine where compiling takes long.
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
