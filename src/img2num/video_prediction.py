"""predict on videos: one prediction per frame sampled every so many seconds, decoded and
predicted in fixed-size batches and streamed to a CSV in time order (memory does not grow with
the video), with progress lines and a picture of the predictions against time."""

from __future__ import annotations

import contextlib
import csv
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np

from img2num.bundle import Run, as_run
from img2num.data import BadRow
from img2num.data.conforming import BadImage, conform
from img2num.data.video import FrameReader, PastEnd, Truncated, clock_text, find_videos, frame_ref, sample_times, time_text
from img2num.errors import Img2NumError
from img2num.io import atomic_path, check_replaceable_file, progress_printer

# Frames decoded before each model call: what bounds memory, whatever the video's length.
BATCH_FRAMES = 256
# Progress lines come at most this often, and at each tenth of a video.
_PROGRESS_SECONDS = 5.0
_BAR = 20


@dataclass(frozen=True)
class VideoPredictions:
    """What `predict_video` wrote.

    Attributes:
        rows: Predictions written (one per sampled frame that could be used).
        output: The CSV file, or None when the rows went to a stream.
        plot: The PNG file, or None.
        bad: The videos and frames that could not be used, each with its reason.
    """

    rows: int
    output: Path | None
    plot: Path | None
    bad: list[BadRow]


def predict_video(
    run: Run | str | Path,
    inputs: str | Path | Sequence[str | Path],
    every: float,
    *,
    start: float = 0.0,
    end: float | None = None,
    output: str | Path | None = None,
    interval: float | None = None,
    plot: str | Path | None = None,
    overwrite: bool = False,
    stream: TextIO | None = None,
    quiet: bool = False,
    batch_frames: int = BATCH_FRAMES,
) -> VideoPredictions:
    """Predict on the frame shown every `every` seconds of each video; write `path,time,prediction`
    rows (plus `lower,upper` with `interval`) in time order, video after video.

    Args:
        run: A `Run` or the path of a run folder.
        inputs: Video files and folders (searched recursively for video files, sorted).
        every: Seconds between sampled frames.
        start: Seconds from each video's start of the first sampled frame.
        end: Sample frames before this many seconds (default: to each video's end).
        output: CSV file, written under a temporary name and renamed when complete; None writes
            the rows to `stream` as they come.
        interval: A level in (0, 1) such as 0.9 to add prediction intervals.
        plot: PNG file of the predictions against time (interval band, gaps at bad frames).
        overwrite: Replace an existing output or plot file.
        stream: Where rows go without `output` (default: stdout).
        quiet: No progress lines on stderr.
        batch_frames: Frames decoded per model call.

    Returns:
        How many rows were written, where, and the videos and frames that could not be used.

    Raises:
        Img2NumError: Bad times, an output that exists (without `overwrite`) or is an input, the
            run cannot be read or has no calibration for `interval`, or no video was found.
    """
    inputs = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    if not every > 0 or not math.isfinite(every):
        raise Img2NumError(f"--every must be a positive number of seconds, got {every}")
    if not start >= 0:
        raise Img2NumError(f"--start must be 0 or more seconds, got {start}")
    if end is not None and not end > start:
        raise Img2NumError(f"--end ({time_text(end)} s) must be after --start ({time_text(start)} s)")
    videos, problems = find_videos(inputs)
    bad = [BadRow("", path, reason) for path, reason in problems]
    for path in (output, plot):
        if path is not None:
            check_replaceable_file(path, overwrite, [*inputs, *videos])
    run = as_run(run)
    if interval is not None:
        run.interval(np.zeros(0), interval)  # a bad level or a run without calibration fails first
    series = [] if plot is not None else None
    sampler = _Sampler(run, interval, series, bad, progress_printer(None, quiet), batch_frames)
    columns = ["path", "time", "prediction"] + (["lower", "upper"] if interval is not None else [])
    written = None
    try:
        with contextlib.ExitStack() as stack:
            if output is None:
                handle = stream or sys.stdout
            else:
                tmp = stack.enter_context(atomic_path(output))
                handle = stack.enter_context(open(tmp, "w", newline="", encoding="utf-8"))
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(columns)
            for video in videos:
                sampler.video(video, writer, handle, every, start, end)
            if output is not None and not sampler.rows:
                raise _NothingWritten  # leaves no file: atomic_path removes its temporary one
        written = None if output is None else Path(output)
    except _NothingWritten:
        pass
    if not videos and not bad:
        raise Img2NumError("no video files given")
    drawn = None
    if plot is not None and sampler.rows:
        from img2num.plots import time_series

        title = f"predictions every {time_text(every)} s" + (f", {interval:.0%} interval" if interval is not None else "")
        drawn = time_series(series, plot, title)
    return VideoPredictions(sampler.rows, written, drawn, bad)


class _NothingWritten(Exception):
    """No frame could be used: the output file is not created."""


class _Sampler:
    """Samples, predicts and writes one video after another; keeps what the plot needs."""

    def __init__(self, run: Run, interval, series, bad, say, batch_frames: int) -> None:
        self.run, self.interval, self.series, self.bad, self.say = run, interval, series, bad, say
        self.spec = run.preprocessing.image_spec()
        self.batch_frames = batch_frames
        self.rows = 0

    def video(self, path: str, writer, handle, every: float, start: float, end: float | None) -> None:
        try:
            reader = FrameReader(path)
        except BadImage as error:
            self.bad.append(BadRow("", path, str(error)))
            return
        with reader:
            duration = reader.duration
            if duration is not None and start >= duration:
                self.bad.append(BadRow("", path, f"--start {time_text(start)} s is past the end of the video ({time_text(duration)} s long)"))
                return
            stop = min(x for x in (end, duration, math.inf) if x is not None)
            item = {"name": Path(path).name, "times": [], "predictions": [], "lower": None, "upper": None, "gaps": []}
            if self.interval is not None:
                item["lower"], item["upper"] = [], []
            progress = _Progress(self.say, path, start, stop)
            times, frames = [], []
            for seconds in sample_times(start, stop, every):
                try:
                    frames.append(conform(reader.frame_at(seconds), self.spec))
                    times.append(seconds)
                except PastEnd:
                    break  # the headers overstated the length by less than a frame, or said none
                except Truncated as error:
                    self.bad.append(BadRow("", frame_ref(path, seconds), str(error)))
                    item["gaps"].append(seconds)
                    break
                except BadImage as error:
                    self.bad.append(BadRow("", frame_ref(path, seconds), str(error)))
                    item["gaps"].append(seconds)
                if len(frames) == self.batch_frames:
                    self._flush(path, times, frames, writer, handle, item)
                    times, frames = [], []
                progress.update(seconds)
            self._flush(path, times, frames, writer, handle, item)
            progress.done()
            if self.series is not None:
                self.series.append(item)

    def _flush(self, path: str, times: list, frames: list, writer, handle, item: dict) -> None:
        if not frames:
            return
        predictions = self.run.predict(np.stack(frames), path)
        columns = [predictions]
        if self.interval is not None:
            columns = list(self.run.interval(predictions, self.interval))
        for index, seconds in enumerate(times):
            writer.writerow([path, time_text(seconds), *(repr(float(column[index])) for column in columns)])
        handle.flush()
        self.rows += len(times)
        if self.series is not None:
            item["times"].extend(times)
            item["predictions"].extend(columns[0].tolist())
            if self.interval is not None:
                item["lower"].extend(columns[1].tolist())
                item["upper"].extend(columns[2].tolist())


class _Progress:
    """One progress line per tenth of a video or per few seconds: a bar, the time reached, the
    frames per second."""

    def __init__(self, say, path: str, start: float, stop: float) -> None:
        self.say, self.name, self.start, self.stop = say, Path(path).name, start, stop
        self.began = self.last = time.monotonic()
        self.frames, self.tenth = 0, 0

    def update(self, seconds: float) -> None:
        self.frames += 1
        now = time.monotonic()
        share = (seconds - self.start) / (self.stop - self.start) if math.isfinite(self.stop) else 0.0
        if now - self.last >= _PROGRESS_SECONDS or int(share * 10) > self.tenth:
            self.tenth, self.last = int(share * 10), now
            self._line(seconds, share, now)

    def done(self) -> None:
        self._line(None, 1.0, time.monotonic())

    def _line(self, seconds: float | None, share: float, now: float) -> None:
        filled = int(round(share * _BAR))
        rate = self.frames / max(now - self.began, 1e-9)
        where = "done" if seconds is None else clock_text(seconds) + (f" of {clock_text(self.stop)}" if math.isfinite(self.stop) else "")
        self.say(f"{self.name} [{'#' * filled}{'.' * (_BAR - filled)}] {share:4.0%} {where}, {self.frames} frames, {rate:.0f} frames/s")
