"""What a backbone's architecture tells without its weights: the names of its stage outputs and
the smallest image side it takes."""

from __future__ import annotations

from img2num.backbones.initializers import cheap_initializers


def architecture_facts(backbone) -> tuple[tuple[str, ...], int]:
    """The stage names (keys of `pyramid_outputs`, early to late) of a built backbone and the
    smallest image side it takes (the total stride of its last stage; 32 without stages)."""
    import keras

    outputs = getattr(backbone, "pyramid_outputs", None) or {}
    if not outputs:
        return (), 32
    stages = tuple(outputs)
    probe = 256
    feature_model = keras.Model(backbone.inputs, outputs[stages[-1]])
    spec = feature_model.compute_output_spec(keras.KerasTensor((1, probe, probe, 3)))
    side = int(spec.shape[1])
    return stages, max(1, round(probe / side))


def facts_of_location(location: str) -> tuple[tuple[str, ...], int]:
    """`architecture_facts` of a preset (a folder or hub handle), built without its weights."""
    import keras_hub

    with cheap_initializers():
        backbone = keras_hub.models.Backbone.from_preset(location, load_weights=False)
    return architecture_facts(backbone)
