"""Training a `backbone:PRESET` model: the backbone's feature vectors of every split (from the
cache where it has them), a head chosen on validation, and the run's one Keras model; for
`finetune:PRESET`, then the backbone's last stages trained with that head
(`img2num.backbones.finetune`)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from img2num.backbones import backbone_spec, is_finetune
from img2num.models import model_folder_name

# A run's model must give the predictions it was evaluated with: the head on cached features and
# the whole model on images may differ by float rounding only (a share of the targets' spread).
CONSISTENCY_TOLERANCE = 1e-3
CONSISTENCY_IMAGES = 8


@dataclass
class BackboneTraining:
    """A trained backbone model and what `train` records of it.

    Attributes:
        model: The run's Keras model (images to the learned, standardized number).
        history: Per-epoch records of the chosen head (of fine-tuning for `finetune:`, epoch 0
            being the frozen head).
        seconds: Seconds of feature extraction, head fitting and fine-tuning.
        outputs: The model's outputs (N, 1) on every split, by name.
        record: JSON-ready facts: backbone, stages, feature size, heads' validation MSE, cache
            use, fine-tuning.
        trainer: How the model was trained: "features" (a head on frozen features) or
            "finetune".
        stopper: The early stopping of fine-tuning (its `best_epoch` counts from epoch 1), or
            None.
    """

    model: object
    history: list[dict]
    seconds: float
    outputs: dict
    record: dict
    trainer: str = "features"
    stopper: object = None


def train_backbone(
    config, splits: dict, labelled: dict, preprocessing, loss_factor: float, say, clock=None
) -> BackboneTraining:
    """Fit a head on the frozen features of `config.model`'s backbone; for `finetune:PRESET`,
    then fine-tune the backbone's last stages with it (`img2num.backbones.finetune.finetune`).

    Args:
        config: The `TrainConfig`; its model is `backbone:PRESET`.
        splits: Every split of the run by name (`train`, `val`, maybe `test`), original labels.
        labelled: The training and validation splits labelled with the learned targets.
        preprocessing: The run's `Preprocessing`.
        loss_factor: Turns squared errors of the learned targets into the targets' units.
        say: Where progress lines go.
        clock: The `train` call's `autoselect.Clock`, whose training deadline fine-tuning
            keeps; None: `config.resolved_time_limit` from now.

    Returns:
        The trained model and its record.

    Raises:
        Img2NumError: The preset cannot be found or loaded, or the images are too small for it.
    """
    from img2num.backbones.features import (
        ExtractionBudget, FeatureCache, check_image_size, extract_features, feature_cache_folder, feature_groups,
        feature_model, feature_size, model_key,
    )
    from img2num.backbones.heads import choose_head, head_outputs, run_model
    from img2num.backbones.presets import load_backbone, resolve_backbone

    from img2num.autoselect import Clock

    started = time.perf_counter()
    clock = clock or Clock(started, config.resolved_time_limit)
    info = resolve_backbone(backbone_spec(config.model))
    check_image_size(preprocessing.input_shape, info)
    backbone, info = load_backbone(info.spec)
    features_model = feature_model(backbone, info, preprocessing)
    cache = FeatureCache(feature_cache_folder(), model_key(info, preprocessing))
    features, computed = {}, 0
    total = sum(len(split) for split in splits.values())
    # With a time limit (the automatic choice's), extraction stops as soon as it cannot end in time.
    budget = None if clock.limit is None else ExtractionBudget(clock.training_deadline, total)
    for name, split in splits.items():
        features[name], fresh = extract_features(features_model, split, preprocessing, cache, budget)
        computed += fresh
    extract_seconds = time.perf_counter() - started
    say(
        f"{config.model}: features of {total} images in {extract_seconds:.1f} s "
        f"({computed} computed, {total - computed} from the cache)"
    )
    scaling, head, head_mse = choose_head(
        features, labelled["train"].y, labelled["val"].y, loss_factor, config.seed,
        groups=feature_groups(features_model, info),
    )
    say(f"{config.model}: head {head.kind} (validation MSE " + ", ".join(f"{k} {v:.4g}" for k, v in head_mse.items()) + ")")
    record = {
        "backbone": info.spec,
        "fingerprint": info.fingerprint,
        "stages": list(info.stages),
        "feature_size": list(feature_size(preprocessing.input_shape)),
        "features": int(features["train"].shape[1]),
        "head": head.kind,
        "head_val_mse": head_mse,
        **head.detail,
        "images_computed": computed,
        "images_cached": total - computed,
        "extract_seconds": round(extract_seconds, 3),
    }
    if is_finetune(config.model):
        from img2num.backbones.finetune import finetune

        tuned = finetune(
            backbone, info, preprocessing, splits, labelled, features, scaling, head, config, loss_factor,
            clock.training_deadline, say, feature_cache_folder(),
        )
        model, history, stopper, trainer = tuned.model, tuned.history, tuned.stopper, "finetune"
        outputs = {name: tuned.outputs.get(name) for name in splits}
        outputs.update({name: _model_outputs(model, splits[name], preprocessing) for name, out in outputs.items() if out is None})
        record |= tuned.record
    else:
        model = run_model(features_model, scaling, head, name=model_folder_name(config.model))
        outputs = {name: head_outputs(values, scaling, head) for name, values in features.items()}
        history, stopper, trainer = head.history, None, "features"
    _check_consistency(model, splits["val"], preprocessing, outputs["val"])
    return BackboneTraining(model, history, time.perf_counter() - started, outputs, record, trainer, stopper)


def _model_outputs(model, split, preprocessing) -> np.ndarray:
    """The model's outputs (N, 1) on a split, chunk by chunk for images on disk."""
    from img2num.bundle import predict_inputs

    chunks = [split.x] if hasattr(split, "x") else split.chunks()
    parts = [predict_inputs(model, preprocessing.apply(np.asarray(chunk), split.source)) for chunk in chunks]
    return np.concatenate(parts) if parts else np.zeros((0, 1), np.float32)


def _check_consistency(model, val_split, preprocessing, val_outputs: np.ndarray) -> None:
    """The whole model on a few validation images gives what the head gave on their features."""
    from img2num.bundle import predict_inputs

    count = min(CONSISTENCY_IMAGES, len(val_split))
    sample = val_split.take(np.arange(count)).to_dataset()
    direct = predict_inputs(model, preprocessing.apply(sample.x, sample.source))
    spread = max(float(np.std(val_outputs)), 1e-6)
    gap = float(np.max(np.abs(direct - val_outputs[:count]))) if count else 0.0
    if gap > CONSISTENCY_TOLERANCE * max(spread, 1.0):
        raise RuntimeError(f"the run's model differs from its evaluated head by {gap:.3g}")
