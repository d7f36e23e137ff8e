"""Fine-tuning a `finetune:PRESET` model: the frozen path's head first, then the backbone's last
stages trained with it at a lower, warmed-up learning rate, with frozen batch-norm statistics,
on the frozen prefix's outputs computed once per image."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np

from img2num.backbones.features import FeatureCache, extract_features, feature_size, model_key, pixel_range
from img2num.backbones.heads import head_outputs
from img2num.errors import Img2NumError
from img2num.fitting import Fit, FitInputs, epoch_callbacks
from img2num.registry import model_folder_name

# The fine-tuning learning rate, as a share of `TrainConfig.learning_rate` (1e-3 -> 1e-4): the
# pretrained weights start near a good solution, which the from-scratch rate would wreck.
LEARNING_RATE_SHARE = 0.1
# Epochs over which the learning rate rises linearly from almost 0 to its value, step by step.
WARMUP_EPOCHS = 1
# Fine-tuning stops after this many epochs without a lower validation loss (or
# `TrainConfig.patience` when smaller; 0 trains every epoch).
PATIENCE = 10
# Prefix outputs of at most this many values per image are also kept in the on-disk feature
# cache (128 KB each); larger ones (big images, early cuts) are kept in memory only.
DISK_CACHE_MAX_VALUES = 32768


@dataclass
class BackboneSplit:
    """A backbone cut in two at a stage boundary: the frozen prefix and the trained suffix.

    Attributes:
        prefix: Keras model from the backbone's input to the frozen stages' outputs (the last
            is the cut), or None when the whole network is trained.
        suffix: Keras model from the cut to the trained stages' outputs.
        frozen: Names of the frozen stages, early to late.
        tuned: Names of the trained stages.
    """

    prefix: object
    suffix: object
    frozen: tuple[str, ...]
    tuned: tuple[str, ...]

    @property
    def cut(self) -> str:
        """Where the backbone is cut: the last frozen stage, or "input"."""
        return self.frozen[-1] if self.frozen else "input"


def _warmup_schedule(peak: float, steps: int):
    """A Keras learning-rate schedule rising linearly to `peak` over `steps` steps, then flat."""
    import keras

    class LinearWarmUp(keras.optimizers.schedules.LearningRateSchedule):
        def __init__(self, peak: float, steps: int) -> None:
            self.peak = float(peak)
            self.steps = max(int(steps), 1)

        def __call__(self, step):
            step = keras.ops.cast(step, "float32")
            return self.peak * keras.ops.minimum(1.0, (step + 1.0) / self.steps)

        def get_config(self) -> dict:
            return {"peak": self.peak, "steps": self.steps}

    return LinearWarmUp(peak, steps)


def split_backbone(backbone, stages: tuple[str, ...], trainable_stages: int) -> BackboneSplit:
    """Cut a keras-hub backbone before its last `trainable_stages` stages.

    The suffix's layers become trainable, except batch normalization, whose statistics (and
    scale and shift) stay as pretrained: a `BatchNormalization` layer that is not trainable runs
    in inference mode in Keras 3, so small batches of a new task do not disturb it. The prefix
    stays frozen.

    Args:
        backbone: A keras-hub backbone with `pyramid_outputs`.
        stages: Its stage names used as features, early to late.
        trainable_stages: How many of the last stages to train; 0, or as many as there are
            stages, trains the whole network (stem included).

    Returns:
        The `BackboneSplit`.

    Raises:
        Img2NumError: A later stage depends on more than the cut (no clean boundary).
    """
    import keras

    count = len(stages) if trainable_stages <= 0 else min(trainable_stages, len(stages))
    frozen, tuned = tuple(stages[: len(stages) - count]), tuple(stages[len(stages) - count :])
    outputs = backbone.pyramid_outputs
    backbone.trainable = False
    prefix = keras.Model(backbone.inputs, [outputs[name] for name in frozen], name="backbone_prefix") if frozen else None
    cut = outputs[frozen[-1]] if frozen else backbone.inputs[0]
    try:
        suffix = keras.Model(cut, [outputs[name] for name in tuned], name="backbone_suffix")
    except ValueError as error:
        raise Img2NumError(
            f"the backbone's stages {', '.join(tuned)} depend on more than stage {frozen[-1]}'s output, so it cannot "
            f"be cut there; train fewer or more stages ({error})"
        ) from None
    suffix.trainable = True
    for layer in suffix._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    return BackboneSplit(prefix, suffix, frozen, tuned)


def cut_model(split: BackboneSplit, info, preprocessing):
    """Keras model from the run's model input to the cut: what fine-tuning caches per image."""
    import keras

    inputs = keras.Input(preprocessing.input_shape)
    prepared = _backbone_input(info, preprocessing)(inputs)
    if split.prefix is None:
        return keras.Model(inputs, prepared, name="backbone_cut")
    outputs = split.prefix(prepared)
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    return keras.Model(inputs, outputs[-1], name="backbone_cut")


def tuning_model(split: BackboneSplit, frozen_size: int, cut_shape: tuple, head_layers: list):
    """Keras model trained by fine-tuning: (the frozen part of the feature vector, the cut) to
    the number, through the suffix, its stages' pooling, the feature scaling and the head."""
    import keras

    from img2num.layers import MeanStdPooling

    frozen = keras.Input((frozen_size,), name="frozen_features")
    cut = keras.Input(tuple(cut_shape), name="cut")
    outputs = _as_list(split.suffix(cut))
    pooled = [MeanStdPooling(name=f"pool_{name}")(output) for name, output in zip(split.tuned, outputs)]
    values = keras.layers.Concatenate(name="features")([frozen, *pooled])
    for layer in head_layers:
        values = layer(values)
    return keras.Model([frozen, cut], values, name="backbone_tuning")


def whole_model(split: BackboneSplit, info, preprocessing, head_layers: list, name: str):
    """The run's one Keras model: the run's model input, the backbone's input layer, the frozen
    prefix, the suffix, every stage's pooling beside the input's band statistics, the feature
    scaling and the head; the layers (and weights) of `tuning_model`."""
    import keras

    from img2num.layers import MeanStdPooling

    inputs = keras.Input(preprocessing.input_shape)
    prepared = _backbone_input(info, preprocessing)(inputs)
    frozen = _as_list(split.prefix(prepared)) if split.prefix is not None else []
    tuned = _as_list(split.suffix(frozen[-1] if frozen else prepared))
    pooled = [MeanStdPooling(name="input_statistics")(inputs)]
    pooled += [MeanStdPooling(name=f"pool_{stage}")(output) for stage, output in zip(split.frozen + split.tuned, frozen + tuned)]
    values = keras.layers.Concatenate(name="features")(pooled)
    for layer in head_layers:
        values = layer(values)
    return keras.Model(inputs, values, name=name)


def finetune(backbone, info, inputs: FitInputs, features: dict, scaling, head, cache_folder=None, cached: bool = True) -> Fit:
    """Fine-tune the backbone's last stages and the head, starting from the frozen path's head.

    Epoch 0 is the frozen model (its row in the history holds the head's losses). The prefix's
    output (the cut) of every training and validation image is computed once; each epoch trains
    the suffix, the pooling and the head on those, with Adam at `LEARNING_RATE_SHARE` of the
    configured rate after `WARMUP_EPOCHS` of linear warm-up, MSE on the learned targets, early
    stopping on the validation loss with the best epoch's weights (epoch 0's when no epoch beat
    it), within `config.epochs` and the clock's training deadline.

    Args:
        backbone: The keras-hub backbone the features came from.
        info: Its `BackboneInfo`.
        inputs: What every fitter is tuning_inputs; `inputs.config` holds epochs, batch size, learning
            rate, patience, seed and `finetune_stages`.
        features: The frozen feature vectors of the training and validation splits.
        scaling: The feature scaling (mean, spread) of the head.
        head: The chosen `HeadFit`.
        cache_folder: The feature cache folder, where small prefix outputs are kept too.
        cached: False trains through the whole network from the images each epoch (for
            measurements and tests of the cache; the numbers agree to float rounding).

    Returns:
        The `Fit`, with the outputs on the training and validation splits and the fine-tuning
        facts (stages, learning rate, epochs, seconds, cache use) as its record.
    """
    import keras

    from img2num.callbacks import Progress, TimeLimit

    config, preprocessing, splits, loss_factor, say = (
        inputs.config, inputs.preprocessing, inputs.splits, inputs.loss_factor, inputs.say
    )
    deadline = inputs.clock.training_deadline
    labelled = {"train": inputs.train, "val": inputs.val}
    started = time.perf_counter()
    split = split_backbone(backbone, info.stages, getattr(config, "finetune_stages", 2))
    scaling_layer = keras.layers.Normalization(mean=scaling[0], variance=np.square(scaling[1]), name="feature_scaling")
    head_layers = [scaling_layer, *head.layers]
    name = model_folder_name(config.model)
    model = whole_model(split, info, preprocessing, head_layers, name)
    frozen_size = 2 * preprocessing.input_shape[-1] + sum(
        2 * int(backbone.pyramid_outputs[stage].shape[-1]) for stage in split.frozen
    )
    y = {part: labelled[part].y.reshape(-1, 1).astype(np.float32) for part in ("train", "val")}
    epoch0 = {part: head_outputs(features[part], scaling, head) for part in ("train", "val")}
    mse0 = {part: float(np.mean((epoch0[part] - y[part]) ** 2)) for part in ("train", "val")}
    computed = 0
    if cached:
        to_cut = cut_model(split, info, preprocessing)
        values = int(np.prod(to_cut.output_shape[1:]))
        cache = None
        if cache_folder is not None and values <= DISK_CACHE_MAX_VALUES:
            cache = FeatureCache(cache_folder, f"{model_key(info, preprocessing)}-cut-{split.cut}")
        tuning_inputs = {}
        for part in ("train", "val"):
            cuts, fresh = extract_features(to_cut, splits[part], preprocessing, cache)
            tuning_inputs[part] = [features[part][:, :frozen_size], cuts]
            computed += fresh
        trained = tuning_model(split, frozen_size, to_cut.output_shape[1:], head_layers)
    else:  # images in memory only: this way is for measurements and tests
        tuning_inputs = {part: preprocessing.apply(splits[part].x, splits[part].source) for part in ("train", "val")}
        trained = model
    cut_seconds = time.perf_counter() - started
    say(f"{config.model}: stages {', '.join(split.tuned)} trained, cut after {split.cut} ({cut_seconds:.1f} s)")

    steps = -(-len(y["train"]) // config.batch_size)
    learning_rate = config.learning_rate * LEARNING_RATE_SHARE
    trained.compile(optimizer=keras.optimizers.Adam(_warmup_schedule(learning_rate, WARMUP_EPOCHS * steps)), loss="mse")
    patience = min(config.patience, PATIENCE)
    recorder, stopper, callbacks = epoch_callbacks(replace(config, patience=patience, restore_best=True, lr_patience=0), loss_factor)
    # An epoch of a pretrained suffix costs far more than compiling it (Lite0 on 1500 images:
    # about 290 s beside a few), so the first epoch's length already predicts the next.
    limit = TimeLimit(deadline)
    # Progress prints the epochs only: which weights are kept, epoch 0's included, is said below.
    callbacks += [limit, Progress(recorder, config.model, config.epochs, _SayStream(say))]
    start_weights = trained.get_weights()
    keras.utils.set_random_seed(config.seed)
    if time.perf_counter() < deadline:
        trained.fit(
            tuning_inputs["train"], y["train"], validation_data=(tuning_inputs["val"], y["val"]), batch_size=config.batch_size,
            epochs=config.epochs, shuffle=True, verbose=0, callbacks=callbacks,
        )
    history = [{"epoch": 0, "loss": mse0["train"] * loss_factor, "val_loss": mse0["val"] * loss_factor,
                "seconds": 0.0, "learning_rate": 0.0}] + recorder.history
    best = min(recorder.history, key=lambda row: row["val_loss"], default=None)
    # With early stopping the best epoch's weights are kept, and epoch 0 (the frozen head) is
    # one of the epochs; without it (patience 0) the last epoch's, as for other models.
    best_epoch = stopper.best_epoch + 1 if stopper is not None else min(history, key=lambda row: row["val_loss"])["epoch"]
    if stopper is not None and (best is None or best["val_loss"] >= history[0]["val_loss"]):
        trained.set_weights(start_weights)
        best_epoch = 0
    ended = "the time limit" if limit.stopped else "early stopping" if stopper and stopper.stopped_epoch else "the epoch limit"
    kept = history[best_epoch] if stopper is not None else history[-1]
    say(
        f"{config.model}: {len(recorder.history)} fine-tuning epochs, ended by {ended}; kept epoch {kept['epoch']}"
        + (" (the frozen head)" if kept["epoch"] == 0 else "") + f", val_loss {kept['val_loss']:.4g}"
    )
    outputs = {part: np.asarray(trained.predict(tuning_inputs[part], batch_size=256, verbose=0), np.float32) for part in ("train", "val")}
    record = {
        "finetune_stages": list(split.tuned),
        "finetune_cut": split.cut,
        "finetune_learning_rate": learning_rate,
        "finetune_warmup_steps": WARMUP_EPOCHS * steps,
        "finetune_patience": patience,
        "finetune_epochs": len(recorder.history),
        "finetune_cached": cached,
        "finetune_cut_computed": computed,
        "finetune_cut_seconds": round(cut_seconds, 3),
        "finetune_seconds": round(time.perf_counter() - started, 3),
        "frozen_val_loss": history[0]["val_loss"],
        "trainable_parameters": int(sum(np.prod(v.shape) for v in trained.trainable_variables)),
    }
    return Fit(config.model, model, "finetune", history, time.perf_counter() - started, best_epoch, kept["epoch"], outputs, record)


def _backbone_input(info, preprocessing):
    from img2num.layers import BackboneInput

    return BackboneInput(
        scale=info.scale,
        offset=info.offset,
        pixel_range=pixel_range(preprocessing),
        size=feature_size(preprocessing.input_shape),
        name="backbone_input",
    )


def _as_list(outputs) -> list:
    return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]


class _SayStream:
    """A text stream that hands each complete line to `say` (for `callbacks.Progress`)."""

    def __init__(self, say) -> None:
        self.say = say
        self.pending = ""

    def write(self, text: str) -> None:
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            self.say(line)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False
