"""Explaining single predictions: integrated gradients on any Keras backend, and their pictures.

Integrated gradients (Sundararajan et al., 2017) credit each input value with
(x - baseline) * the mean gradient of the prediction along the straight path from the baseline
image (black) to the image. The credits add up to prediction - baseline prediction
(completeness), up to the error of the path integral's midpoint rule.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from img2num.errors import Img2NumError
from img2num.io import FolderKind, data_reads

DEFAULT_STEPS = 64
SUMMARY_FILE = "explanations.csv"
# What `--overwrite` may replace with explanations (older ones without the marker by their CSV).
EXPLAINED_FOLDER = FolderKind("explained", "explanations folder", (SUMMARY_FILE,))
# Path points per gradient call; bounds memory and gives one compiled shape on JAX.
_CHUNK = 256


@dataclass(frozen=True)
class Explanation:
    """Integrated-gradient attributions of a run's predictions.

    Attributes:
        attributions: Signed credit of each input value, in the label's units, (N, H, W, C).
        predictions: The run's prediction of each image, (N,).
        baseline_predictions: Its prediction of each image's baseline (a black image), (N,).
    """

    attributions: np.ndarray
    predictions: np.ndarray
    baseline_predictions: np.ndarray

    @property
    def completeness_gap(self) -> np.ndarray:
        """Sum of attributions minus (prediction - baseline prediction), per image; near 0."""
        total = self.attributions.reshape(len(self.attributions), -1).sum(axis=1)
        return total - (self.predictions - self.baseline_predictions)


def input_gradients(model, inputs: np.ndarray) -> np.ndarray:
    """The gradient of a one-output Keras model's output with respect to each input.

    Computed by the active backend's own differentiation (JAX, PyTorch or TensorFlow), with the
    model in inference mode; each output depends only on its own input.

    Args:
        model: A Keras model with output (N, 1).
        inputs: Model input, float32 (N, ...).

    Returns:
        float32 gradients, the shape of `inputs`.
    """
    return gradient_function(model)(inputs)[0]


def gradient_function(model):
    """A function from model input (N, ...) to its `input_gradients` and the model's outputs
    (N,), built once per model (on JAX, one compiled function: many times faster than
    differentiating op by op)."""
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        def total(trainable, fixed, x):
            output, _ = model.stateless_call(trainable, fixed, x, training=False)
            return output.sum(), output.reshape(-1)

        compiled = jax.jit(jax.grad(total, argnums=2, has_aux=True))
        trainable = [v.value for v in model.trainable_variables]
        fixed = [v.value for v in model.non_trainable_variables]

        def jax_gradient(inputs):
            gradient, output = compiled(trainable, fixed, inputs)
            return np.asarray(gradient, np.float32), np.asarray(output, np.float32)

        return jax_gradient
    if backend == "torch":
        import torch

        def torch_gradient(inputs):
            x = keras.ops.convert_to_tensor(inputs).detach().requires_grad_(True)
            output = model(x, training=False)
            (gradient,) = torch.autograd.grad(output.sum(), x)
            return gradient.detach().cpu().numpy().astype(np.float32), output.detach().cpu().numpy().reshape(-1)

        return torch_gradient
    if backend == "tensorflow":
        import tensorflow as tf

        def tensorflow_gradient(inputs):
            x = tf.convert_to_tensor(inputs)
            with tf.GradientTape() as tape:
                tape.watch(x)
                output = model(x, training=False)
                total = tf.reduce_sum(output)
            return tape.gradient(total, x).numpy().astype(np.float32), output.numpy().reshape(-1)

        return tensorflow_gradient
    raise Img2NumError(f"explanations need the jax, torch or tensorflow backend, not {backend!r}")


def integrated_gradients(run, x: np.ndarray, steps: int = DEFAULT_STEPS) -> Explanation:
    """Integrated-gradient attributions of a run's predictions, from a black baseline image.

    Args:
        run: A `Run` or the path of a run folder.
        x: Images (N, H, W, C) or (N, H, W), as the run's data files store them.
        steps: Points on the path from the baseline to each image (midpoint rule).

    Returns:
        The attributions, in the label's units, with the predictions they explain.

    Raises:
        Img2NumError: `steps` is below 1, or the images do not fit the run's model.
    """
    from img2num.bundle import as_run

    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise Img2NumError(f"steps must be a whole number of at least 1, got {steps!r}")
    run = as_run(run)
    x = np.asarray(x)
    inputs = run.preprocessing.apply(x)
    baseline = run.preprocessing.apply(np.zeros_like(x))
    alphas = ((np.arange(steps) + 0.5) / steps).astype(np.float32)
    per_chunk = max(1, _CHUNK // steps)
    attributions = np.empty(inputs.shape, np.float32)
    gradient = gradient_function(run.model)
    size = per_chunk * steps
    ends = np.empty(2 * len(inputs), np.float32)  # the model's outputs on the images, then the baselines
    both = np.concatenate([inputs, baseline])
    for start in range(0, len(both), size):
        # The same compiled function and batch shape as the path below (padded), so no new compile.
        part = both[start : start + size]
        ends[start : start + len(part)] = gradient(_pad(part, size))[1][: len(part)]
    for start in range(0, len(inputs), per_chunk):
        image, base = inputs[start : start + per_chunk], baseline[start : start + per_chunk]
        delta = image - base
        path = base[:, None] + alphas.reshape(1, -1, *[1] * (image.ndim - 1)) * delta[:, None]
        flat = path.reshape(-1, *image.shape[1:])
        gradients = gradient(_pad(flat, size))[0][: len(flat)].reshape(path.shape)
        attributions[start : start + len(image)] = delta * gradients.mean(axis=1)
    attributions *= np.float32(run.target_scaling.std)
    predictions = run.target_scaling.restore(ends)
    return Explanation(attributions, predictions[: len(x)], predictions[len(x) :])


def _pad(rows: np.ndarray, size: int) -> np.ndarray:
    """`rows` padded with zeros to `size` rows, so that the compiled gradient (JAX) sees one shape."""
    return np.concatenate([rows, np.zeros((size - len(rows), *rows.shape[1:]), np.float32)])


def explain_images(
    run,
    images,
    out_dir: str | Path,
    *,
    names: list[str] | None = None,
    steps: int = DEFAULT_STEPS,
    limit: int | None = None,
    overwrite: bool = False,
) -> Path:
    """Explain a run's predictions: one picture per image and a summary CSV, in a new folder.

    Each picture shows the image beside its signed attribution map (channels summed): red
    pixels push the number up, blue pull it down. `explanations.csv` lists each image's
    prediction, baseline prediction, attribution sum and completeness gap.

    Args:
        run: A `Run` or the path of a run folder.
        images: Images (N, H, W, C) or (N, H, W) of the model's input size; or image files
            and folders (a path or a list of them, folders searched recursively, sorted), or
            one `.npz` file with images in `x`, decoded as the run's training images were.
        out_dir: The folder to create.
        names: A name per image for the pictures and the CSV; default: the file names
            (`FILE.npz[i]` for an `.npz` file), or 000, 001, ... for an array.
        steps: Path points of the integrated gradients.
        limit: Explain at most this many images (the first ones); None explains all.
        overwrite: Replace an existing folder once the new one is complete.

    Returns:
        The folder written.

    Raises:
        Img2NumError: Bad steps, images that do not fit the model, or an existing folder
            without `overwrite`.
    """
    from img2num.bundle import as_run
    from img2num.io import atomic_folder, check_replaceable, write_text

    reads = () if isinstance(images, np.ndarray) else data_reads(*(images if isinstance(images, (list, tuple)) else [images]))
    check_replaceable(out_dir, overwrite, EXPLAINED_FOLDER, reads)
    run = as_run(run)
    if isinstance(images, np.ndarray):
        images = images[:limit]
    else:
        images, found, bad = _read_inputs(run, images, limit)
        if bad:
            raise Img2NumError(bad[0].message)
        names = names or found
    names = names or [f"{index:03d}" for index in range(len(images))]
    result = integrated_gradients(run, images, steps)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["image", "picture", "prediction", "baseline_prediction", "attribution_sum", "completeness_gap"])
    with atomic_folder(out_dir, overwrite, EXPLAINED_FOLDER) as tmp:
        for index, name in enumerate(names):
            picture = f"{index:03d}-{Path(name).stem}.png"
            attribution_picture(images[index], result, index, tmp / picture, title=name)
            total = float(result.attributions[index].sum())
            writer.writerow(
                [name, picture, repr(float(result.predictions[index])), repr(float(result.baseline_predictions[index])),
                 repr(total), repr(float(result.completeness_gap[index]))]
            )
        write_text(tmp / SUMMARY_FILE, buffer.getvalue())
    return Path(out_dir)


@dataclass(frozen=True)
class ExplainedPaths:
    """What `explain_paths` did: the folder it wrote, and the inputs that could not be used.

    Attributes:
        folder: The folder of pictures and `explanations.csv`, or None when no input was usable.
        bad: The files that could not be used, each with its reason (`BadRow`).
    """

    folder: Path | None
    bad: list


def explain_paths(
    run, paths, out_dir: str | Path, *, steps: int = DEFAULT_STEPS, limit: int | None = None, overwrite: bool = False
) -> ExplainedPaths:
    """Explain named inputs as `img2num explain` does: the good images, reporting the bad ones
    instead of stopping at the first (as `predict_paths` does).

    Args:
        run: A `Run` or the path of a run folder.
        paths: Image files and folders (a path or a list), or one `.npz` file.
        out_dir: The folder to create.
        steps: Path points of the integrated gradients.
        limit: Explain at most this many of the inputs (the first ones).
        overwrite: Replace an existing folder once the new one is complete.

    Returns:
        The folder written (None when no input could be used) and the bad inputs.

    Raises:
        Img2NumError: As `explain_images`, except for bad image files, which are reported.
    """
    from img2num.bundle import as_run
    from img2num.io import check_replaceable

    inputs = list(paths) if isinstance(paths, (list, tuple)) else [paths]
    check_replaceable(out_dir, overwrite, EXPLAINED_FOLDER, data_reads(*inputs))
    run = as_run(run)
    images, names, bad = _read_inputs(run, inputs, limit)
    if not len(images):
        return ExplainedPaths(None, bad)
    folder = explain_images(run, images, out_dir, names=names, steps=steps, overwrite=overwrite)
    return ExplainedPaths(folder, bad)


def _read_inputs(run, inputs, limit: int | None) -> tuple[np.ndarray, list[str], list]:
    """The first `limit` images of image files and folders, or of one `.npz` file, with names
    and the files that could not be used."""
    paths = [Path(item) for item in (inputs if isinstance(inputs, (list, tuple)) else [inputs])]
    if any(path.suffix.lower() == ".npz" for path in paths):
        from img2num.data import load_dataset

        if len(paths) > 1:
            raise Img2NumError(f"{paths[0]}: an .npz file is explained alone, not with other inputs")
        images = load_dataset(paths[0]).x[:limit]
        return images, [f"{paths[0].name}[{index}]" for index in range(len(images))], []
    from img2num.data import read_image_paths
    from img2num.data.files import find_image_files

    files, missing = find_image_files(paths)
    files, images, bad = read_image_paths(files[:limit], run.preprocessing.image_spec())
    return images, [str(name) for name in files], missing + bad


def attribution_picture(image: np.ndarray, result: Explanation, index: int, path: str | Path, title: str = "") -> Path:
    """Draw one image beside its signed attribution map (PNG)."""
    from matplotlib.figure import Figure

    from img2num.plots import _displayable, _save

    fig = Figure(figsize=(8, 4.2))
    left, right = fig.subplots(1, 2)
    shown = _displayable(image)
    left.imshow(shown, cmap="gray" if shown.ndim == 2 else None, vmin=0.0, vmax=1.0, interpolation="nearest")
    left.set_title(f"prediction {result.predictions[index]:.1f}", fontsize=11)
    attribution = result.attributions[index].sum(axis=-1)
    limit = float(np.abs(attribution).max()) or 1.0
    drawn = right.imshow(attribution, cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
    right.set_title(
        f"attribution: sum {attribution.sum():+.1f} = {result.predictions[index]:.1f} - "
        f"{result.baseline_predictions[index]:.1f} (black)",
        fontsize=9,
    )
    fig.colorbar(drawn, ax=right, fraction=0.046, pad=0.04, label="pushes the number up (red) / down (blue)")
    for ax in (left, right):
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=11)
    return _save(fig, path)
