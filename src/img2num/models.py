"""Model architectures and the registry that builds them by name.

Each architecture is a function registered with `@register_model`; `create_model(name, shape)`
builds it for any input shape. Keras is imported only when a model is built, so listing the
registry is instant.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from img2num.errors import Img2NumError


@dataclass(frozen=True)
class ModelSpec:
    """A registered architecture: its name, a one-line description and its builder."""

    name: str
    description: str
    build: Callable


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(name: str, description: str) -> Callable:
    """Decorator that adds a builder `f(input_shape) -> keras.Model` to the registry."""

    def decorate(build: Callable) -> Callable:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = ModelSpec(name, description, build)
        return build

    return decorate


def list_models() -> list[ModelSpec]:
    """Every registered model, in registration order."""
    return list(_REGISTRY.values())


def get_model_spec(name: str) -> ModelSpec:
    """The registered model called `name`.

    Raises:
        Img2NumError: No model has that name; the message lists the known names.
    """
    if name not in _REGISTRY:
        raise Img2NumError(f"unknown model {name!r}; known models: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def create_model(name: str, input_shape: tuple[int, int, int]):
    """Build a registered model, uncompiled, for images of `input_shape`.

    Args:
        name: Registered model name.
        input_shape: (height, width, channels) of the images.

    Returns:
        A `keras.Model` mapping a batch of images to one number each, shape (N, 1).

    Raises:
        Img2NumError: The name is unknown or the shape is not three positive sizes.
    """
    spec = get_model_spec(name)
    shape = tuple(int(d) for d in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise Img2NumError(f"input shape must be (height, width, channels), got {input_shape}")
    return spec.build(shape)


@register_model("mlp", "the tutorial's multilayer perceptron: flatten, three Dense 256 layers, one output")
def mlp(input_shape: tuple[int, int, int]):
    import keras
    from keras import layers

    return keras.Sequential(
        [
            keras.Input(input_shape),
            layers.Flatten(),
            layers.Dense(256, activation="relu"),
            layers.Dense(256, activation="relu"),
            layers.Dense(256),
            layers.Dense(1),
        ],
        name="mlp",
    )


@register_model("cnn", "the tutorial's small CNN: two Conv2D 32 + max-pool blocks, Dense 256, one output")
def cnn(input_shape: tuple[int, int, int]):
    import keras
    from keras import layers

    stack = [keras.Input(input_shape)]
    size = min(input_shape[:2])
    for _ in range(2):
        # Images smaller than the tutorial's need padding and fewer pools to keep a pixel left;
        # at 16x16 and above the layers are exactly the tutorial's.
        padding = "valid" if size >= 3 else "same"
        size = size - 2 if padding == "valid" else size
        stack.append(layers.Conv2D(32, (3, 3), activation="relu", padding=padding))
        if size >= 2:
            stack.append(layers.MaxPooling2D((2, 2)))
            size //= 2
    stack += [layers.Flatten(), layers.Dense(256, activation="relu"), layers.Dense(1)]
    return keras.Sequential(stack, name="cnn")
