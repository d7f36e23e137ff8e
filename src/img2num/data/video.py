"""Video frames as images: frame times, frame references (`clip.mp4#t=12.5`, as W3C Media
Fragments write a time), and `FrameReader`, which reads the frame shown at each time with PyAV.

A label CSV row naming a video becomes a frame reference in place of an image path; the image
decoders (`img2num.data.decoding`) read frame references through `read_frame_refs` and
`probe_frame_refs`, one open video per group of rows, in time order.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from img2num.data.conforming import BadImage, ImageInfo
from img2num.extras import require_extra

# File names treated as videos in label CSVs and when a folder is searched for videos.
VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".ts", ".mts", ".m2ts", ".wmv", ".flv", ".3gp"}
)
# The default column of a frame's time; read only on rows whose file is a video.
FRAME_COLUMN = "time"
_FRAGMENT = "#t="
# Decoding forward is cheaper than a seek (which lands on a keyframe and decodes from there)
# when the next wanted frame is at most this many seconds ahead.
SEEK_AHEAD_SECONDS = 4.0
_CLOCK = re.compile(r"(?:([0-9]+):)?([0-9]{1,2}):([0-9]{1,2}(?:\.[0-9]*)?)")
_SECONDS = re.compile(r"[0-9]+\.?[0-9]*|\.[0-9]+")


class PastEnd(BadImage):
    """A time at or after the video's last frame."""


class Truncated(BadImage):
    """A video whose frames end before the length its headers state."""


def is_video_file(path: str | Path) -> bool:
    """Whether `path` names a video by its extension (`VIDEO_EXTENSIONS`)."""
    return Path(str(path)).suffix.lower() in VIDEO_EXTENSIONS


def parse_frame_time(text: str) -> float | None:
    """Seconds from the start of a video: a plain number of seconds (12.5), `MM:SS(.fff)` or
    `HH:MM:SS(.fff)`; None when `text` is none of them (or negative, or minutes or seconds of
    60 and more on a clock)."""
    text = text.strip()
    if _SECONDS.fullmatch(text):
        return float(text)
    clock = _CLOCK.fullmatch(text)
    if clock is None:
        return None
    hours, minutes, seconds = int(clock[1] or 0), int(clock[2]), float(clock[3])
    if minutes >= 60 or seconds >= 60:
        return None
    return hours * 3600.0 + minutes * 60.0 + seconds


def time_text(seconds: float) -> str:
    """Seconds as the shortest plain number that reads back the same, to the microsecond."""
    text = f"{round(seconds, 6):.6f}".rstrip("0").rstrip(".")
    return text or "0"


def clock_text(seconds: float) -> str:
    """Seconds as H:MM:SS.fff, for messages and progress."""
    whole = int(seconds)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}.{int(round((seconds - whole) * 1000)) % 1000:03d}"


def frame_ref(video: str, seconds: float) -> str:
    """The frame reference of `video` at `seconds`: `video#t=seconds`."""
    return f"{video}{_FRAGMENT}{time_text(seconds)}"


def split_frame_ref(path: str) -> tuple[str, float] | None:
    """(video, seconds) of a frame reference, or None when `path` is no frame reference."""
    video, found, seconds = str(path).rpartition(_FRAGMENT)
    if not found or not is_video_file(video):
        return None
    try:
        return video, float(seconds)
    except ValueError:
        return None


def frame_row(video: str, cell: str | None, column: str) -> tuple[str, str | None]:
    """A label CSV row naming `video`: its frame reference, or the problem with its time cell.

    Args:
        video: The video file (joined to the CSV's folder).
        cell: The row's frame-time cell, trimmed; None when the CSV has no frame-time column.
        column: The frame-time column's name, for messages.
    """
    if cell is None:
        return video, f"is a video; give the frame's time in a {column!r} column (or name one with --frame-column)"
    if not cell:
        return video, f"is a video but its {column!r} cell is empty"
    seconds = parse_frame_time(cell)
    if seconds is None:
        return video, f"{column} {cell!r} is not a time: seconds (12.5), MM:SS or HH:MM:SS.fff"
    return frame_ref(video, seconds), None


def video_order_key(item: tuple[int, str]):
    """Sort key of (index, path) pairs: images first in their order, then frames grouped by
    video in time order, so that each video is opened once per group and read forward."""
    index, path = item
    ref = split_frame_ref(path)
    return ("", 0.0, index) if ref is None else (ref[0], ref[1], index)


class FrameReader:
    """The frames of one video at the times asked for, read with PyAV.

    Times asked in increasing order decode forward; a jump back, or ahead by more than
    `SEEK_AHEAD_SECONDS`, seeks to the keyframe before the time first.

    Raises (on opening):
        BadImage: The file is missing, not a readable video, holds no video stream, or its
            codec is one this FFmpeg cannot decode.
    """

    def __init__(self, path: str | Path) -> None:
        av = require_extra("av")
        self.path = str(path)
        if not Path(self.path).is_file():
            raise BadImage("no such file" if not Path(self.path).exists() else "is not a file")
        try:
            self._container = av.open(self.path)
        except av.error.FFmpegError as error:
            raise BadImage(f"not a readable video ({_ffmpeg_reason(error)})") from None
        if not self._container.streams.video:
            self.close()
            raise BadImage("holds no video stream")
        stream = self._container.streams.video[0]
        self._stream = stream
        codec = stream.codec_context
        if codec is None or getattr(codec, "codec", None) is None or not codec.codec.is_decoder:
            name = getattr(getattr(codec, "codec", None), "name", None) or "unknown"
            self.close()
            raise BadImage(f"its codec ({name}) is not one this FFmpeg can decode")
        stream.thread_type = "AUTO"
        self._base = float(stream.time_base) if stream.time_base else 1e-6
        self._start = float(stream.start_time * stream.time_base) if stream.start_time is not None and stream.time_base else 0.0
        rate = stream.average_rate or stream.guessed_rate
        self.frame_seconds = float(1 / rate) if rate else 0.04
        self.height, self.width = codec.height, codec.width
        self._frames = None
        self._current = None  # (time, frame): the last frame decoded at or before the last time asked
        self._next = None  # the frame decoded after it, held back
        self._ended = False

    @property
    def duration(self) -> float | None:
        """Seconds the video lasts by its headers, or None when they do not say."""
        stream = self._stream
        if stream.duration is not None and stream.time_base:
            return float(stream.duration * stream.time_base)
        if self._container.duration is not None:
            return self._container.duration / 1e6
        return None

    def info(self) -> ImageInfo:
        """The frames' size as an image header: colour, 8-bit."""
        return ImageInfo(self.height, self.width, 3, "uint8")

    def check_time(self, seconds: float) -> None:
        """Raise `BadImage` when the headers say the video ends before `seconds`."""
        duration = self.duration
        if duration is not None and seconds >= duration:
            raise PastEnd(f"time {time_text(seconds)} s is past the end of the video ({time_text(duration)} s long)")

    def frame_at(self, seconds: float) -> np.ndarray:
        """The frame shown at `seconds` from the start, as RGB uint8 (H, W, 3).

        Raises:
            BadImage: The time is past the end, or the video cannot be decoded there.
        """
        av = require_extra("av")
        wanted = self._start + seconds
        if self._current is None and self._next is None or (
            wanted < (self._current or self._next)[0] or wanted - (self._current or self._next)[0] > SEEK_AHEAD_SECONDS
        ):
            self._seek(wanted)
        try:
            while True:
                if self._next is None:
                    self._next = self._decode_next()
                if self._next is None or self._next[0] > wanted + 1e-9:
                    break
                self._current, self._next = self._next, None
        except av.error.FFmpegError as error:
            self._frames, self._current, self._next = None, None, None  # seek afresh next time
            raise BadImage(f"cannot be decoded at {time_text(seconds)} s ({_ffmpeg_reason(error)})") from None
        if self._current is None and self._next is not None:
            return self._next[1]  # a time before the first frame's: the first frame shows
        if self._current is None or (self._next is None and wanted >= self._current[0] + self.frame_seconds - 1e-6):
            end = None if self._current is None else self._current[0] - self._start + self.frame_seconds
            return self._past_end(seconds, end)
        return self._current[1]

    def _past_end(self, seconds: float, end: float | None):
        stated = self.duration
        if end is not None and stated is not None and end < stated - 2 * self.frame_seconds and seconds < stated:
            raise Truncated(
                f"time {time_text(seconds)} s: the video's frames end at {time_text(end)} s, before its stated "
                f"length {time_text(stated)} s (truncated or damaged?)"
            )
        length = end if end is not None else stated
        tail = f" ({time_text(length)} s long)" if length is not None else ""
        raise PastEnd(f"time {time_text(seconds)} s is past the end of the video{tail}")

    def _seek(self, wanted: float) -> None:
        av = require_extra("av")
        try:
            self._container.seek(max(0, int(wanted / self._base)), stream=self._stream, backward=True, any_frame=False)
        except av.error.FFmpegError:
            self._container.seek(0, stream=self._stream, backward=True, any_frame=False)
        self._frames, self._current, self._next, self._ended = self._container.decode(self._stream), None, None, False

    def _decode_next(self):
        if self._ended:
            return None
        for frame in self._frames:
            if frame.pts is None:
                continue
            return frame.pts * self._base, frame.to_ndarray(format="rgb24")
        self._ended = True
        return None

    def close(self) -> None:
        """Close the file."""
        self._container.close()

    def __enter__(self) -> FrameReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_frame_refs(paths: list[str]) -> dict[int, tuple[np.ndarray | None, str | None]]:
    """Decode the frame references among `paths`, each video opened once, read in time order.

    Returns:
        Index in `paths` of each frame reference -> (RGB array or None, problem or None);
        empty when `paths` holds no frame reference.
    """
    return _by_video(paths, lambda reader, seconds: reader.frame_at(seconds))


def probe_frame_refs(paths: list[str]) -> dict[int, tuple[ImageInfo | None, str | None]]:
    """Check the frame references among `paths` by the video's headers (opens, has a video
    stream FFmpeg decodes, lasts past the time); see `read_frame_refs`."""

    def probe(reader: FrameReader, seconds: float) -> ImageInfo:
        reader.check_time(seconds)
        return reader.info()

    return _by_video(paths, probe)


def _by_video(paths: Iterable[str], read) -> dict:
    refs = [(index, split_frame_ref(path)) for index, path in enumerate(paths)]
    refs = sorted(((index, ref) for index, ref in refs if ref is not None), key=lambda item: (item[1], item[0]))
    out: dict = {}
    reader, opened = None, None
    try:
        for index, (video, seconds) in refs:
            if video != opened:
                if isinstance(reader, FrameReader):
                    reader.close()
                opened = video
                try:
                    reader = FrameReader(video)
                except BadImage as error:
                    reader = str(error)
            if isinstance(reader, str):
                out[index] = (None, reader)
                continue
            try:
                out[index] = (read(reader, seconds), None)
            except BadImage as error:
                out[index] = (None, str(error))
    finally:
        if isinstance(reader, FrameReader):
            reader.close()
    return out


def find_videos(inputs: Iterable[str | Path]) -> tuple[list[str], list[tuple[str, str]]]:
    """Video files named directly, plus every video file under named folders (recursively,
    sorted); each file once, where first named.

    Returns:
        The videos, and (path, reason) for each input that is missing, no video, a folder without
        videos or a repeat.
    """
    files, problems = [], []
    for given in inputs:
        item = Path(given)
        if item.is_dir():
            found = sorted(str(p) for p in item.rglob("*") if p.is_file() and is_video_file(p))
            if not found:
                problems.append((str(item), f"holds no video files (searched for {', '.join(sorted(e[1:] for e in VIDEO_EXTENSIONS))})"))
            files.extend(found)
        elif not item.exists():
            problems.append((str(item), "no such file or folder"))
        elif not is_video_file(item):
            problems.append((str(item), "is not a video file; --every samples videos (predict images without it)"))
        else:
            files.append(str(given))
    seen: dict[str, str] = {}
    unique = []
    for file in files:
        key = os.path.normcase(os.path.realpath(file))
        if key in seen:
            problems.append((file, f"duplicate of {seen[key]} (named earlier)"))
        else:
            seen[key] = file
            unique.append(file)
    return unique, problems


def sample_times(start: float, stop: float, every: float) -> Iterable[float]:
    """start, start + every, ... before `stop` (math.inf: without end), without drift."""
    step = 0
    while (seconds := start + step * every) < stop and math.isfinite(seconds):
        yield seconds
        step += 1


def _ffmpeg_reason(error: Exception) -> str:
    text = getattr(error, "strerror", None) or str(error)
    return str(text).split(": '", 1)[0].strip()
