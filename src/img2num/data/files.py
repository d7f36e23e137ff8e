"""Image files as data: `ImageFiles` (decoded on demand, the streaming twin of `Dataset`) and
the readers that check every file of a label CSV or a list of paths once, up front.
"""

from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from img2num.config import DataConfig
from img2num.data.arrays import Dataset
from img2num.data.decoding import decode_files, probe_files
from img2num.data.conforming import ImageInfo, ImageSpec, fit_problem
from img2num.data.images import is_image_file
from img2num.data.rasters import is_point_table, read_point_table
from img2num.data.table import BadRow, read_label_table
from img2num.data.tasks import TASK_FILE
from img2num.errors import Img2NumError
from img2num.io import FolderKind, atomic_folder, check_replaceable, check_replaceable_file, write_json, write_text

_CHUNK_BYTES = 64 * 2**20


@dataclass(frozen=True)
class ImageFiles:
    """Labelled image files, decoded batch by batch when used: data larger than memory.

    It offers what the rest of img2num reads from a `Dataset` (`y`, `source`, `image_shape`,
    `len()`, `take`) and `to_dataset()` to decode everything into memory.

    Attributes:
        paths: The image files, every one checked to decode to `spec`.
        spec: Size, channels, pixel type and resize mode every image is brought to.
        y: float32 labels, shape (N,), or None.
        source: Where the data came from, for messages and reports.
        band_sums: Per image, the sum and the sum of squares of each band, shape (N, 2, C),
            for per-band scaling of multi-band images; None otherwise.
        workers: Decoding processes; None uses every CPU core.
        groups: Each file's group (the text of a label CSV's group column), else None.
        times: Each file's time (the text of a label CSV's time column), else None.
    """

    paths: tuple[str, ...]
    spec: ImageSpec
    y: np.ndarray | None = None
    source: str = "<files>"
    band_sums: np.ndarray | None = field(default=None, repr=False)
    workers: int | None = None
    groups: tuple[str, ...] | None = None
    times: tuple[str, ...] | None = None

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.spec.shape

    @property
    def nbytes(self) -> int:
        """Bytes the decoded images take in memory."""
        return len(self) * math.prod(self.spec.shape) * np.dtype(self.spec.dtype).itemsize

    def take(self, indices: np.ndarray, source: str | None = None) -> ImageFiles:
        """The files at `indices`, as a new source."""
        indices = np.asarray(indices, dtype=int)
        return replace(
            self,
            paths=tuple(self.paths[i] for i in indices),
            y=None if self.y is None else self.y[indices],
            source=source or self.source,
            band_sums=None if self.band_sums is None else self.band_sums[indices],
            groups=None if self.groups is None else tuple(self.groups[i] for i in indices),
            times=None if self.times is None else tuple(self.times[i] for i in indices),
        )

    def with_labels(self, y: np.ndarray) -> ImageFiles:
        """The same files with other labels (such as standardized targets)."""
        return replace(self, y=np.asarray(y, np.float32))

    def decode(self, indices=None) -> np.ndarray:
        """Decode the images at `indices` (all by default) into one array (N, H, W, C).

        Raises:
            Img2NumError: A file changed since it was checked and no longer decodes.
        """
        paths = self.paths if indices is None else [self.paths[i] for i in indices]
        results = decode_files(list(paths), self.spec, workers=self.workers)
        return stack_decoded(paths, results, self.spec)

    def to_dataset(self) -> Dataset:
        """Every image decoded into an in-memory `Dataset`."""
        return Dataset(self.decode(), self.y, self.source, self.paths, self.spec, self.groups, self.times)

    def chunks(self, max_bytes: int = _CHUNK_BYTES):
        """Yield the decoded images in order, in arrays of at most about `max_bytes`."""
        per_image = max(1, self.nbytes // max(1, len(self)))
        step = max(1, max_bytes // per_image)
        for start in range(0, len(self), step):
            yield self.decode(range(start, min(start + step, len(self))))


def stack_decoded(paths, results, spec: ImageSpec) -> np.ndarray:
    """Stack `decode_files` results, failing on the first file that did not decode."""
    for path, (_, problem, _) in zip(paths, results):
        if problem:
            raise Img2NumError(f"{path}: {problem} (it decoded when first checked; was it changed?)")
    if not results:
        return np.zeros((0, *spec.shape), spec.dtype)
    return np.stack([array for array, _, _ in results])


@dataclass
class ImageTable:
    """The checked rows of a label CSV: the usable files, their split names, the skipped rows.

    Attributes:
        data: The usable rows, in memory (`Dataset`) when small enough, else `ImageFiles`.
        splits: Split name per usable row from the CSV's split column, or None.
        skipped: Rows skipped with `skip_bad`, in file order.
        total: Data rows in the CSV.
    """

    data: Dataset | ImageFiles
    splits: list[str] | None
    skipped: list[BadRow]
    total: int


def read_image_table(
    path: str | Path,
    options: DataConfig = DataConfig(),
    spec: ImageSpec | None = None,
    require_labels: bool = True,
) -> ImageTable:
    """Read a label CSV and check that every image it names decodes (or, for a CSV of map
    points, cut the chip around each point: `img2num.data.rasters.read_point_table`).

    The CSV's own rows are checked first (labels, paths, duplicates, split names), then every
    image's header (on every core), then every image's pixels, once: a bad file is found before
    any training time is spent.

    Args:
        path: The CSV file; image paths in it are relative to its folder.
        options: Column names, channels, image size, resize mode, `skip_bad`, cache size.
        spec: The shape every image must take (a trained run's); None derives it from the data.
        require_labels: Fail when the CSV has no label column.

    Returns:
        The usable rows, loaded into memory when their decoded size is within
        `options.cache_mb`, with their split names and the rows skipped; with
        `options.group_column` or `time_column` the data hold each row's group or time.

    Raises:
        Img2NumError: The CSV is unusable, a row or image is bad (without `skip_bad`), images
            differ in size without an image size, or no usable row is left.
    """
    if is_point_table(path, options):  # x,y points on GeoTIFF rasters: chips, not image files
        points = read_point_table(path, options, spec, require_labels)
        return ImageTable(points.data, points.splits, points.bad, points.total)
    table = read_label_table(path, options, require_labels)
    bad = list(table.bad)
    if bad and not options.skip_bad:
        raise Img2NumError(bad[0].message)
    wheres = {p: f"{table.source} row {r}" for p, r in zip(table.paths, table.rows)}
    keep, spec, problems = _check_files(table.paths, wheres, options, spec)
    bad = sorted(bad + problems, key=lambda row: _row_number(row.where))
    if bad and not options.skip_bad:
        raise Img2NumError(bad[0].message)
    if not keep:
        raise Img2NumError(f"{table.source}: none of its {table.total} rows is usable ({bad[0].message})")
    labels = None if table.labels is None else table.labels[keep]
    splits = None if table.splits is None else [table.splits[i] for i in keep]
    columns = {name: None if v is None else tuple(v[i] for i in keep) for name, v in (("groups", table.groups), ("times", table.times))}
    data, kept, broken = _keep_decoded([table.paths[i] for i in keep], spec, labels, table.source, options, wheres, **columns)
    bad = sorted(bad + broken, key=lambda row: _row_number(row.where))
    if splits is not None:
        splits = [splits[i] for i in kept]
    return ImageTable(data, splits, bad, table.total)


def read_image_paths(
    paths: list[str | Path],
    spec: ImageSpec,
    workers: int | None = None,
) -> tuple[list[str], np.ndarray, list[BadRow]]:
    """Decode image files for prediction, reporting bad ones instead of failing.

    Args:
        paths: Image files.
        spec: The shape every image must take.
        workers: Decoding processes; None uses every CPU core.

    Returns:
        The files that decoded, their images (N, H, W, C), and the bad files.
    """
    paths = [str(p) for p in paths]
    results = decode_files(paths, spec, workers=workers)
    good = [i for i, (_, problem, _) in enumerate(results) if problem is None]
    bad = [BadRow("", paths[i], problem) for i, (_, problem, _) in enumerate(results) if problem]
    x = np.stack([results[i][0] for i in good]) if good else np.zeros((0, *spec.shape), spec.dtype)
    return [paths[i] for i in good], x, bad


def list_image_files(inputs: list[str | Path]) -> list[str]:
    """Image files named directly, plus every image file under named folders (recursively,
    sorted); a file named directly is kept whatever its extension, so that a bad one is reported.
    A file named twice (directly, through its folder, or by another path) is listed once, where
    first named; `find_image_files` reports the repeats.

    Raises:
        Img2NumError: A path does not exist, or a folder holds no image files.
    """
    files, problems = find_image_files(inputs)
    problems = [row for row in problems if not row.reason.startswith("duplicate of ")]
    if problems:
        raise Img2NumError(problems[0].message)
    return files


def find_image_files(inputs: list[str | Path]) -> tuple[list[str], list[BadRow]]:
    """`list_image_files`, reporting a path that does not exist or a folder without image files
    as a `BadRow` instead of failing."""
    files, problems = [], []
    for given in inputs:
        item = Path(given)
        if item.is_dir():
            found = sorted(str(p) for p in item.rglob("*") if p.is_file() and is_image_file(p))
            if not found:
                problems.append(BadRow("", str(item), f"holds no image files (searched for {', '.join(_EXTENSION_NAMES)})"))
            files.extend(found)
        elif item.exists():
            files.append(os.fspath(given))  # as the user wrote it (./a.png), for messages
        else:
            problems.append(BadRow("", str(item), "no such file or folder"))
    seen: dict[str, str] = {}
    unique = []
    for file in files:
        key = os.path.normcase(os.path.realpath(file))
        if key not in seen:
            seen[key] = file
            unique.append(file)
        else:  # as a label CSV's duplicate rows are: used once, reported
            problems.append(BadRow("", file, f"duplicate of {seen[key]} (named earlier)"))
    return unique, problems


_EXTENSION_NAMES = ("png", "jpeg", "bmp", "tiff", "webp", "gif", "pnm")


def _keep_decoded(paths: list[str], spec: ImageSpec, labels, source: str, options: DataConfig, wheres=None, groups=None, times=None):
    """Decode every file once to check it; keep the pixels when they fit in `options.cache_mb`.

    Returns:
        (a `Dataset` or `ImageFiles` of the files that decoded, their indices in `paths`, the
        files that did not as `BadRow`s).

    Raises:
        Img2NumError: A file does not decode and `options.skip_bad` is false.
    """
    wheres = wheres or {}
    files = ImageFiles(tuple(paths), spec, labels, source, workers=options.workers, groups=groups, times=times)
    in_memory = files.nbytes <= options.cache_mb * 1e6
    results = decode_files(list(paths), spec, keep_pixels=in_memory, band_stats=spec.channels > 3, workers=options.workers)
    # Headers were read already: what fails here is a truncated or damaged body.
    bad = [BadRow(wheres.get(paths[i], ""), paths[i], r[1]) for i, r in enumerate(results) if r[1]]
    if bad and not options.skip_bad:
        raise Img2NumError(bad[0].message)
    good = np.asarray([i for i, r in enumerate(results) if r[1] is None], dtype=int)
    if not len(good):
        raise Img2NumError(f"{source}: no image decoded ({bad[0].message})")
    files = files.take(good) if bad else files
    if spec.channels > 3:
        files = replace(files, band_sums=np.stack([np.stack(results[i][2][:2]) for i in good]))
    if in_memory:
        x = np.stack([results[i][0] for i in good])
        return Dataset(x, files.y, source, files.paths, spec, files.groups, files.times), good, bad
    return files, good, bad


def _check_files(paths, wheres, options: DataConfig, spec: ImageSpec | None):
    """Read every header; find the spec when none is given; report files that do not fit it."""
    infos, problems = {}, []
    for path, (info, problem) in zip(paths, probe_files(paths, options.workers)):
        if problem:
            problems.append(BadRow(wheres[path], path, problem))
        else:
            infos[path] = info
    if problems and not options.skip_bad:
        return [], spec, problems
    if spec is None and infos:
        spec = derive_spec(infos, options)
    keep = []
    for index, path in enumerate(paths):
        info = infos.get(path)
        if info is None:
            continue
        problem = fit_problem(info, spec)
        if problem:
            problems.append(BadRow(wheres[path], path, problem))
        else:
            keep.append(index)
    return keep, spec, problems


def derive_spec(infos: dict[str, ImageInfo], options: DataConfig) -> ImageSpec:
    """The spec training images call for: channels and pixel type from the data unless chosen,
    one size (the images' own, or `options.image_size`).

    Raises:
        Img2NumError: Images differ in size without `image_size`, multi-band images differ in
            band count, or `channels` is asked of multi-band images.
    """
    items = list(infos.items())
    if options.skip_bad:
        items = _most_common_bands(items)
    bands = {info.bands for _, info in items}
    chosen = {}
    if options.bands is not None:
        channels, chosen = _chosen_bands(items, options)
    elif max(bands) > 3:
        first = next(p for p, i in items if i.bands > 3)
        other = next((p for p, i in items if i.bands != infos[first].bands), None)
        if other is not None:
            raise Img2NumError(
                f"{first} has {infos[first].bands} bands but {other} has {infos[other].bands}; "
                "multi-band images must all have the same bands"
            )
        if options.channels is not None:
            raise Img2NumError(
                f"{first}: has {infos[first].bands} bands; --channels 1 or 3 applies to grayscale "
                "and colour images, multi-band images keep their bands"
            )
        channels = infos[first].bands
    else:
        channels = options.channels or (3 if 3 in bands else 1)
    dtypes = {info.dtype for _, info in items}
    dtype = "float32" if "float32" in dtypes else "uint16" if "uint16" in dtypes else "uint8"
    if options.image_size is not None:
        return ImageSpec(options.image_size, channels, dtype, options.resize or "scale", **chosen)
    first_path, first = items[0]
    for path, info in items:
        if (info.height, info.width) != (first.height, first.width):
            raise Img2NumError(
                f"images differ in size: {first_path} is {first.height}x{first.width} but {path} is "
                f"{info.height}x{info.width}; bring them to one size with --image-size HxW "
                "(and --resize stretch or --resize crop to change the aspect ratio)"
            )
    return ImageSpec((first.height, first.width), channels, dtype, "none", **chosen)


def _chosen_bands(items: list, options: DataConfig) -> tuple[int, dict]:
    """Channels and the `ImageSpec` fields of `options.bands` (`--bands 4,3,2`): every image must
    have the same band count, and at least the highest band asked for."""
    first_path, first = items[0]
    other = next(((p, i) for p, i in items if i.bands != first.bands), None)
    if other is not None:
        raise Img2NumError(
            f"{first_path} has {first.bands} bands but {other[0]} has {other[1].bands}; "
            "--bands chooses from images that all have the same bands"
        )
    if max(options.bands) > first.bands:
        raise Img2NumError(f"{first_path}: has {first.bands} bands; --bands asks for band {max(options.bands)}")
    return len(options.bands), {"bands": options.bands, "source_bands": first.bands}


def _most_common_bands(items: list) -> list:
    """With `--skip-bad`, the images of the most common kind of bands (grey and colour as one
    kind, each multi-band count its own); the others become bad rows (`fit_problem`)."""
    from collections import Counter

    def kind(info):
        return info.bands if info.bands > 3 else 0

    common = Counter(kind(info) for _, info in items).most_common(1)[0][0]
    return [(path, info) for path, info in items if kind(info) == common]


def _row_number(where: str) -> int:
    tail = where.rsplit(" row ", 1)
    return int(tail[1]) if len(tail) == 2 and tail[1].isdigit() else 0


def _generated_images(folder: Path) -> bool:
    """An `images/` folder of an older `write_image_folder`: split folders of numbered PNG files."""
    splits = list(folder.iterdir())
    return bool(splits) and all(
        split.name in ("train", "val", "test") and split.is_dir()
        and all(file.suffix == ".png" and file.stem.isdigit() for file in split.iterdir())
        for split in splits
    )


# What `img2num generate --format images --overwrite` may replace: its own images folder.
GENERATED_IMAGES = FolderKind("images", "generated images folder", legacy_check=_generated_images)


def write_image_folder(
    folder: str | Path,
    splits: dict[str, Dataset],
    overwrite: bool = False,
    task: dict | None = None,
    columns: dict[str, dict[str, list[str]]] | None = None,
) -> dict[str, Path]:
    """Write labelled splits as PNG files plus a label CSV: the folder-and-CSV form of a data set.

    Writes `<folder>/images/<split>/<index>.png` and `<folder>/labels.csv` with columns
    `file,label,split`, which `img2num train <folder>` reads. 8-bit images of only 0 and 1
    (such as the points task's) are written as 0 and 255, so that they can be looked at;
    8-bit images scale by 1/255 when read back, so the model sees the same 0 and 1.

    Args:
        folder: Output folder, created if needed.
        splits: Labelled 8-bit data sets with 1 or 3 channels, keyed by split name.
        overwrite: Replace existing `images/` and `labels.csv` instead of failing.
        task: Task metadata of a synthetic task, written as `task.json` beside the CSV (see
            `img2num.data.task_info`), so that `img2num compare` knows its best possible MSE.
        columns: More CSV columns after `split`: column name -> split name -> one value per
            image (such as the scene each image shows, for `--group-column`).

    Returns:
        The paths written: "images" (the folder), "labels" (the CSV) and, with `task`, "task".

    Raises:
        Img2NumError: The outputs exist and `overwrite` is false, there is nothing to write, or
            the images are not 8-bit with 1 or 3 channels.
    """
    from PIL import Image

    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise Img2NumError(f"{folder}: exists and is not a folder")
    if not splits:
        raise Img2NumError("every split size is 0; nothing to generate")
    for name, data in splits.items():
        if data.image_shape[-1] not in (1, 3) or data.x.dtype != np.uint8:
            raise Img2NumError(
                f"{name} images are {data.image_shape[-1]}-channel {data.x.dtype}; image files hold "
                "8-bit images with 1 or 3 channels (--channels 1 or 3)"
            )
    check_replaceable(folder / "images", overwrite, GENERATED_IMAGES)
    check_replaceable_file(folder / "labels.csv", overwrite)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    columns = columns or {}
    for column, values in columns.items():
        for split, data in splits.items():
            if len(values.get(split, ())) != len(data):
                raise Img2NumError(f"column {column!r} needs one value per {split} image, got {len(values.get(split, ()))}")
    writer.writerow(["file", "label", "split", *columns])
    with atomic_folder(folder / "images", overwrite, GENERATED_IMAGES) as tmp:
        for split, data in splits.items():
            (tmp / split).mkdir()
            binary = data.x.max() <= 1
            digits = len(str(len(data) - 1))
            for index, (image, label) in enumerate(zip(data.x, data.y)):
                name = f"{index:0{digits}d}.png"
                pixels = image * np.uint8(255) if binary else image
                Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).save(tmp / split / name)
                extra = [columns[column][split][index] for column in columns]
                writer.writerow([f"images/{split}/{name}", repr(float(label)), split, *extra])
    write_text(folder / "labels.csv", buffer.getvalue())
    paths = {"images": folder / "images", "labels": folder / "labels.csv"}
    if task is not None:
        paths["task"] = write_json(folder / TASK_FILE, task)
    return paths
