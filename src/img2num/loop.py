"""img2num's own training loop and prediction for compiled Keras models on the JAX backend.

The loop runs Keras' own stateless `train_step` and `test_step` (the same loss, optimizer and
metrics as `model.fit`) on batches drawn in a seeded order from arrays held on the device, and
calls the usual Keras callbacks once per epoch. Two ways to run an epoch:

- "scan": the whole epoch and its validation in one compiled call (the full batches in a
  `lax.scan`, then the shorter last one), each batch gathered from the device-held arrays
  inside the call. No Python runs between steps.
- "step": one compiled call per batch. On the CPU, XLA differentiates convolutions inside a
  scan several times slower than in separate calls, so convolutional models run this way
  (`choose_mode`; `benchmarks/speed.py` measures both).

Inside its compiled calls, pooling over non-overlapping windows is differentiated through
strided slices instead of XLA's `reduce_window`, whose gradient on the CPU cost more than the
rest of the tutorial CNN's step, and average pooling is computed that way too
(`lowered_pooling`); the numbers are the same. Prediction (`predict`) runs one compiled call
per batch, with batches padded to a few fixed sizes, so a model compiles once per input shape
however many images each call brings.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from img2num.data.order import batch_indices, epoch_order

SCAN = "scan"
STEP = "step"
MODES = (SCAN, STEP)

# Convolutions make a model run per step (see the module docstring).
_CONVOLUTION_LAYERS = ("Conv1D", "Conv2D", "Conv3D", "DepthwiseConv2D", "SeparableConv2D", "Conv2DTranspose")


def choose_mode(model) -> str:
    """"step" for a model holding a convolution, else "scan" (see the module docstring)."""
    for layer in _all_layers(model):
        if type(layer).__name__ in _CONVOLUTION_LAYERS:
            return STEP
    return SCAN


def _all_layers(model) -> Iterable:
    return model._flatten_layers(include_self=False, recursive=True)


class JaxLoop:
    """Trains a compiled Keras model with Keras' stateless steps, compiled once per shape.

    Args:
        model: A compiled Keras model (JAX backend).
        mode: "scan", "step", or None to choose by `choose_mode`.
        eval_batch_size: Samples per compiled validation call.
    """

    def __init__(self, model, mode: str | None = None, eval_batch_size: int = 256) -> None:
        import keras

        if keras.backend.backend() != "jax":
            raise ValueError(f"JaxLoop needs the JAX backend, not {keras.backend.backend()!r}")
        if mode is not None and mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; known: {', '.join(MODES)}")
        self.model = model
        self.mode = mode or choose_mode(model)
        self.eval_batch_size = eval_batch_size
        self._train_step = None
        self._epoch = None
        self._test_step = None
        self._test_scan = None
        self._latest: tuple = ()

    def fit(
        self,
        x: np.ndarray,
        y: np.ndarray,
        validation_data: tuple[np.ndarray, np.ndarray] | None = None,
        *,
        batch_size: int = 32,
        epochs: int = 1,
        callbacks: Sequence = (),
        rng: np.random.Generator | None = None,
    ):
        """Train for up to `epochs` epochs, like `model.fit(x, y, batch_size, epochs, callbacks,
        validation_data)` with the batch order drawn from `rng` (in order when None).

        Returns:
            The Keras `History` callback, as `model.fit` returns.
        """
        import jax.numpy as jnp
        import keras

        model = self.model
        x_device, y_device = jnp.asarray(x), jnp.asarray(np.asarray(y).reshape(len(y), -1))
        val = None
        if validation_data is not None:
            val_x, val_y = validation_data
            val = (jnp.asarray(val_x), jnp.asarray(np.asarray(val_y).reshape(len(val_y), -1)))
        model._symbolic_build(data_batch=(x[:batch_size], np.asarray(y[:batch_size]).reshape(-1, 1)))
        callback_list = keras.callbacks.CallbackList(
            list(callbacks), add_history=True, add_progbar=False, model=model, epochs=epochs
        )
        model.stop_training = False
        callback_list.on_train_begin()
        logs: dict = {}
        for epoch in range(epochs):
            model.reset_metrics()
            callback_list.on_epoch_begin(epoch)
            batches = batch_indices(epoch_order(rng, len(x)), batch_size)
            self._latest = self._state(optimizer=True)
            val_logs = None
            try:
                if self.mode == SCAN:
                    logs, val_logs = self._scan_epoch(x_device, y_device, batches, val)
                else:
                    logs = self._step_epoch(x_device, y_device, batches)
            finally:
                # The steps reuse the variables' buffers: give the model the newest state.
                self._sync(self._latest, optimizer=True)
            logs = {name: float(value) for name, value in logs.items()}
            if val is not None:
                val_logs = self.evaluate(*val) if val_logs is None else val_logs
                logs.update({f"val_{name}": float(value) for name, value in val_logs.items()})
            callback_list.on_epoch_end(epoch, logs)
            if model.stop_training:
                break
        if epochs > 0:
            model.optimizer.finalize_variable_values(model.trainable_weights)
        callback_list.on_train_end(logs)
        return model.history

    def evaluate(self, x, y) -> dict:
        """Keras' test metrics (`loss`) of the model on device arrays, batch by batch."""
        self.model.reset_metrics()
        state = self._state(optimizer=False)
        full, tail = self._validation_rows(len(x))
        if self._test_scan is None:
            self._test_scan = _compile_scan(self.model.test_step)
        state, logs = self._test_scan(state, x, y, full)
        if tail is not None:
            if self._test_step is None:
                self._test_step = _compile_step(self.model.test_step)
            state, logs = self._test_step(state, x, y, tail, 0)
        return {name: float(value) for name, value in logs.items()}

    def _validation_rows(self, samples: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Validation sample indices: full batches of `eval_batch_size` as rows, and the rest
        (as one row, or None)."""
        size = min(self.eval_batch_size, samples)
        full = samples // size
        rest = np.arange(full * size, samples)[None]
        return np.arange(full * size).reshape(full, size), rest if rest.size else None

    def _scan_epoch(self, x, y, batches: list[np.ndarray], val) -> tuple[dict, dict | None]:
        """One epoch and the validation after it, in one compiled call (every shape is the same
        from epoch to epoch, so it compiles once)."""
        if self._epoch is None:
            self.model.reset_metrics()
            metrics_start = [v.value for v in self.model.metrics_variables]
            self._epoch = functools.partial(_compile_epoch(self.model.train_step, self.model.test_step), metrics_start=metrics_start)
        full = np.stack([batch for batch in batches if len(batch) == len(batches[0])])
        tail = batches[-1][None] if len(batches[-1]) != len(batches[0]) else None
        val_parts = None if val is None else (*val, *self._validation_rows(len(val[0])))
        self._latest, logs, val_logs = self._epoch(self._latest, x, y, full, tail, val_parts)
        return logs, val_logs

    def _step_epoch(self, x, y, batches: list[np.ndarray]) -> dict:
        """One epoch from the state in `self._latest`, kept there after every compiled call."""
        import jax.numpy as jnp

        logs = {}
        if self._train_step is None:
            self._train_step = _compile_step(self.model.train_step, donate=True)
        for group in _same_sizes(batches):
            # One transfer of the group's indices; each call picks its row on the device.
            rows = jnp.asarray(np.stack(group))
            for row in range(len(group)):
                self._latest, logs = self._train_step(self._latest, x, y, rows, row)
        return logs

    def _state(self, optimizer: bool) -> tuple:
        model = self.model
        state = [[v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables]]
        if optimizer:
            state.append([v.value for v in model.optimizer.variables])
        state.append([v.value for v in model.metrics_variables])
        return tuple(state)

    def _sync(self, state: tuple, optimizer: bool) -> None:
        model = self.model
        groups = [model.trainable_variables, model.non_trainable_variables]
        if optimizer:
            groups.append(model.optimizer.variables)
        groups.append(model.metrics_variables)
        for variables, values in zip(groups, state):
            for variable, value in zip(variables, values):
                variable.assign(value)


def _same_sizes(batches: list[np.ndarray]) -> list[list[np.ndarray]]:
    """Consecutive batches grouped by size (all full batches, then the shorter last one)."""
    groups: list[list[np.ndarray]] = []
    for batch in batches:
        if groups and len(groups[-1][0]) == len(batch):
            groups[-1].append(batch)
        else:
            groups.append([batch])
    return groups


def _compile_step(step, donate: bool = False):
    """One compiled call of Keras' stateless `step` on the batch of `x`, `y` whose sample
    indices are row `row` of `rows`; with `donate`, the state's buffers are reused for the new
    state (as Keras' `fit` does)."""
    import jax

    def run(state, x, y, rows, row):
        indices = rows[row]
        with lowered_pooling():  # runs while tracing only
            logs, state = step(state, (x[indices], y[indices]))
        return state, logs

    return jax.jit(run, donate_argnums=(0,) if donate else ())


def _scan_steps(step, state, x, y, rows):
    """Keras' stateless `step` on the batch of every row of `rows` in turn; the last logs."""
    import jax

    def body(state, batch):
        logs, state = step(state, (x[batch], y[batch]))
        return state, logs

    state, logs = jax.lax.scan(body, state, rows)
    return state, jax.tree_util.tree_map(lambda value: value[-1], logs)


def _compile_scan(step):
    """One compiled call of `_scan_steps`."""
    import jax

    def run(state, x, y, rows):
        with lowered_pooling():  # runs while tracing only
            return _scan_steps(step, state, x, y, rows)

    return jax.jit(run)


def _compile_epoch(train_step, test_step):
    """One compiled call for a whole epoch: the training batches (full ones in a scan, then the
    shorter last one), then validation from `metrics_start` (the metrics' reset values)."""
    import jax

    def steps(step, state, x, y, full, tail):
        state, logs = _scan_steps(step, state, x, y, full)
        if tail is not None:
            logs, state = step(state, (x[tail[0]], y[tail[0]]))
        return state, logs

    def run(state, x, y, full, tail, val, metrics_start):
        with lowered_pooling():
            state, logs = steps(train_step, state, x, y, full, tail)
            val_logs = None
            if val is not None:
                trainable, non_trainable = state[0], state[1]
                _, val_logs = steps(test_step, (trainable, non_trainable, metrics_start), *val)
        return state, logs, val_logs

    return jax.jit(run, donate_argnums=(0,))


def predict(model, inputs: np.ndarray, batch_size: int) -> np.ndarray:
    """The model's outputs on `inputs`, one compiled call per batch of at most `batch_size`.

    A call of more than `batch_size` inputs pads its short last batch to `batch_size`, so that
    it runs one compiled shape, the one every larger call reuses (a first run compiles each
    shape, 0.2-0.4 s for the tutorial's models on 2 CPU cores). A call of at most `batch_size`
    pads to the next power of two, so the compiled function is reused across calls (at most
    log2(batch_size) + 1 batch shapes per input shape).

    Returns:
        The outputs as a NumPy array, one row per input.
    """
    import jax

    function = _predict_function(model)
    state = ([v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables])
    outputs = []
    for start in range(0, len(inputs), batch_size):
        batch = inputs[start : start + batch_size]
        size = batch_size if len(inputs) > batch_size else min(batch_size, 1 << (len(batch) - 1).bit_length())
        if size != len(batch):
            batch = np.concatenate([batch, np.zeros((size - len(batch), *batch.shape[1:]), batch.dtype)])
        outputs.append(function(state, batch))
    if not outputs:
        return np.zeros((0, *model.output_shape[1:]), np.float32)
    stacked = np.concatenate([np.asarray(output) for output in jax.device_get(outputs)])
    return stacked[: len(inputs)]


def _predict_function(model):
    """The model's compiled inference function, made once and kept on the model."""
    function = getattr(model, "_img2num_predict", None)
    if function is None:
        import jax

        def run(state, x):
            with lowered_pooling():
                outputs, _ = model.stateless_call(*state, x, training=False)
            return outputs

        function = jax.jit(run)
        model._img2num_predict = function
    return function


@contextlib.contextmanager
def lowered_pooling() -> Iterator[None]:
    """While tracing, compute average pooling over non-overlapping windows from strided slices,
    and the gradient of such max pooling (its forward pass stays XLA's, which is faster); other
    pooling goes to Keras as before (see the module docstring)."""
    from keras.src.backend.jax import nn

    originals = nn.max_pool, nn.average_pool
    nn.max_pool = functools.partial(_pool_by_slices, "max", originals[0])
    nn.average_pool = functools.partial(_pool_by_slices, "average", originals[1])
    try:
        yield
    finally:
        nn.max_pool, nn.average_pool = originals


def _pool_by_slices(kind, fallback, inputs, pool_size, strides=None, padding="valid", data_format=None):
    import keras

    rank = inputs.ndim - 2
    size = (pool_size,) * rank if isinstance(pool_size, int) else tuple(pool_size)
    stride = size if strides is None else ((strides,) * rank if isinstance(strides, int) else tuple(strides))
    data_format = data_format or keras.config.image_data_format()
    spatial = inputs.shape[1:-1] if data_format == "channels_last" else inputs.shape[2:]
    fits = all(dim % window == 0 for dim, window in zip(spatial, size))
    if rank != 2 or size != stride or (padding == "same" and not fits):
        return fallback(inputs, pool_size, strides, padding, data_format)
    if kind == "max":
        # XLA's own forward pass is the faster one; only the gradient comes from the slices.
        return _with_gradient_of(
            lambda x: fallback(x, pool_size, strides, padding, data_format),
            lambda x: _sliced_pool(kind, x, size, data_format),
            inputs,
        )
    return _sliced_pool(kind, inputs, size, data_format)


def _with_gradient_of(forward, differentiated, inputs):
    """`forward(inputs)`, differentiated as `differentiated` (the same function, computed
    another way)."""
    import jax

    @jax.custom_vjp
    def function(x):
        return forward(x)

    def function_forward(x):
        return forward(x), x

    def function_backward(x, gradient):
        return jax.vjp(differentiated, x)[1](gradient)

    function.defvjp(function_forward, function_backward)
    return function(inputs)


def _sliced_pool(kind, inputs, size, data_format):
    import jax.numpy as jnp

    axes = (1, 2) if data_format == "channels_last" else (2, 3)
    # Valid padding drops the rows and columns that do not fill a window.
    limits = [slice(None)] * inputs.ndim
    for axis, window in zip(axes, size):
        limits[axis] = slice(0, inputs.shape[axis] // window * window)
    inputs = inputs[tuple(limits)]
    pooled = None
    for offset_h in range(size[0]):
        for offset_w in range(size[1]):
            index = [slice(None)] * inputs.ndim
            index[axes[0]] = slice(offset_h, None, size[0])
            index[axes[1]] = slice(offset_w, None, size[1])
            part = inputs[tuple(index)]
            if pooled is None:
                pooled = part
            else:
                pooled = jnp.maximum(pooled, part) if kind == "max" else pooled + part
    return pooled if kind == "max" else pooled / (size[0] * size[1])
