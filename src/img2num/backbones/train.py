"""Training a `backbone:PRESET` model: the backbone's feature vectors of every split (from the
cache where it has them), a head chosen on validation, and the run's one Keras model; for
`finetune:PRESET`, then the backbone's last stages trained with that head
(`img2num.backbones.finetune`)."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from img2num.backbones.features import (
    ExtractionBudget, FeatureCache, FeatureEngine, check_image_size, extract_features, feature_cache_folder, feature_groups,
    feature_model, feature_size, model_key,
)
from img2num.backbones.finetune import finetune
from img2num.backbones.heads import choose_head, head_outputs, run_model
from img2num.backbones.presets import load_backbone, resolve_backbone
from img2num.fitting import Fit, FitInputs, kept_epochs
from img2num.inference import predict_inputs
from img2num.registry import backbone_spec, is_finetune, model_folder_name

# A run's model must give the predictions it was evaluated with: the head on cached features and
# the whole model on images may differ by float rounding only (a share of the targets' spread).
CONSISTENCY_TOLERANCE = 1e-3
CONSISTENCY_IMAGES = 8


def fit_backbone(inputs: FitInputs) -> Fit:
    """Fit a head on the frozen features of `inputs.config.model`'s backbone (`backbone:PRESET`);
    for `finetune:PRESET`, then fine-tune the backbone's last stages with it
    (`img2num.backbones.finetune.finetune`), within the clock's training time.

    Returns:
        The `Fit`: the run's one Keras model (images to the learned number), the chosen head's
        history (fine-tuning's, epoch 0 being the frozen head), its outputs on every split, and
        its record under `backbone` (backbone, stages, feature size, heads' validation MSE,
        cache use, fine-tuning).

    Raises:
        Img2NumError: The preset cannot be found or loaded, or the images are too small for it.
    """
    config, splits, preprocessing, clock, say = inputs.config, inputs.splits, inputs.preprocessing, inputs.clock, inputs.say
    started = time.perf_counter()
    info = resolve_backbone(backbone_spec(config.model))
    check_image_size(preprocessing.input_shape, info)
    backbone, info = load_backbone(info.spec)
    features_model = feature_model(backbone, info, preprocessing)
    cache = FeatureCache(feature_cache_folder(), model_key(info, preprocessing))
    features, computed = {}, 0
    total = sum(len(split) for split in splits.values())
    # With a time limit (the automatic choice's), extraction stops as soon as it cannot end in time.
    budget = None if clock.limit is None else ExtractionBudget(clock.training_deadline, total)
    engine = FeatureEngine(features_model, cache.folder, total)
    for name, split in splits.items():
        features[name], fresh = extract_features(features_model, split, preprocessing, cache, budget, engine)
        computed += fresh
    extract_seconds = time.perf_counter() - started
    say(
        f"{config.model}: features of {total} images in {extract_seconds:.1f} s "
        f"({computed} computed{f' on {engine.name}' if computed else ''}, {total - computed} from the cache)"
    )
    scaling, head, head_mse = choose_head(
        features, inputs.train.y, inputs.val.y, inputs.loss_factor, config.seed,
        groups=feature_groups(features_model, info),
    )
    say(f"{config.model}: head {head.kind} (validation MSE " + ", ".join(f"{k} {v:.4g}" for k, v in head_mse.items()) + ")")
    record = {
        "backbone": info.spec,
        "fingerprint": info.fingerprint,
        "stages": list(info.stages),
        "feature_size": list(feature_size(preprocessing.input_shape)),
        "features": int(features["train"].shape[1]),
        "feature_engine": engine.name if computed else "cache",
        "head": head.kind,
        "head_val_mse": head_mse,
        **head.detail,
        "images_computed": computed,
        "images_cached": total - computed,
        "extract_seconds": round(extract_seconds, 3),
    }
    if is_finetune(config.model):
        tuned = finetune(backbone, info, inputs, features, scaling, head, feature_cache_folder())
        outputs = {name: tuned.outputs.get(name) for name in splits}
        outputs.update({name: _model_outputs(tuned.model, splits[name], preprocessing) for name, out in outputs.items() if out is None})
        fitted = replace(tuned, outputs=outputs, record=record | tuned.record)
    else:
        model = run_model(features_model, scaling, head, name=model_folder_name(config.model))
        outputs = {name: head_outputs(values, scaling, head) for name, values in features.items()}
        best, kept = kept_epochs(head.history, None)
        fitted = Fit(config.model, model, "features", head.history, 0.0, best, kept, outputs, record)
    _check_consistency(fitted.model, splits["val"], preprocessing, fitted.outputs["val"])
    return replace(fitted, seconds=time.perf_counter() - started, record={"backbone": fitted.record})


def _model_outputs(model, split, preprocessing) -> np.ndarray:
    """The model's outputs (N, 1) on a split, chunk by chunk for images on disk."""
    chunks = [split.x] if hasattr(split, "x") else split.chunks()
    parts = [predict_inputs(model, preprocessing.apply(np.asarray(chunk), split.source)) for chunk in chunks]
    return np.concatenate(parts) if parts else np.zeros((0, 1), np.float32)


def _check_consistency(model, val_split, preprocessing, val_outputs: np.ndarray) -> None:
    """The whole model on a few validation images gives what the head gave on their features."""
    count = min(CONSISTENCY_IMAGES, len(val_split))
    sample = val_split.take(np.arange(count)).to_dataset()
    direct = predict_inputs(model, preprocessing.apply(sample.x, sample.source))
    spread = max(float(np.std(val_outputs)), 1e-6)
    gap = float(np.max(np.abs(direct - val_outputs[:count]))) if count else 0.0
    if gap > CONSISTENCY_TOLERANCE * max(spread, 1.0):
        raise RuntimeError(f"the run's model differs from its evaluated head by {gap:.3g}")
