"""The architectures img2num trains from scratch, each registered with `@register_model`
(`img2num.registry`), and `create_model(name, shape)`, which builds one for any input shape.
Keras is imported only when a model is built, so listing the registry is instant.
"""

from __future__ import annotations

from img2num.errors import Img2NumError
from img2num.registry import ModelSpec, model_spec, register_candidate, register_model, registered_architectures


def list_models() -> list[ModelSpec]:
    """Every registered architecture, in registration order: those of this module, then any a
    user registered with `img2num.register_model`."""
    return registered_architectures()


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
    spec = model_spec(name)
    if spec.build is None:
        raise Img2NumError(f"model {name!r} is a pretrained backbone, built from its preset by img2num.backbones")
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


# benchmarks/command_speed.py: the whole `train` command on JAX beat PyTorch at 64x64 RGB (1.73x)
# and 128x128 grey and RGB (1.33x, 1.35x), on 2 CPU cores; so no PyTorch threshold (docs/speed.md).
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


def _stage_widths(input_shape: tuple[int, int, int]) -> tuple[int, ...]:
    """Filters per stage of the convolutional models: three stages, a fourth from 32 pixels up."""
    return (16, 32, 64, 128) if min(input_shape[:2]) >= 32 else (16, 32, 64)


def _can_halve(size: int) -> bool:
    # Halve the feature map only while at least 4x4 pixels stay.
    return size >= 8


def _regression_head(features, hidden_layers: int = 1):
    """Global average pooling, `hidden_layers` Dense 256 layers, one output: a number from
    feature maps.

    The average keeps what a count or a density is, a sum over the image up to a constant; the
    hidden layers turn that into a curve, which the number need not follow linearly.
    """
    from keras import layers

    hidden = layers.GlobalAveragePooling2D()(features)
    for _ in range(hidden_layers):
        hidden = layers.Dense(256, activation="relu")(hidden)
    return layers.Dense(1)(hidden)


@register_model(
    "cnn_gap",
    "CNN with global average pooling: Conv2D 16-32-64(-128) stages with 2x2 average pooling, "
    "global average, Dense 256, one output",
    # benchmarks/speed.py: JAX faster at 32x32, PyTorch (channels first) at 64x64 (2 CPU cores).
    torch_from_pixels=48 * 48,
)
def cnn_gap(input_shape: tuple[int, int, int]):
    import keras
    from keras import layers

    inputs = keras.Input(input_shape)
    features, size = inputs, min(input_shape[:2])
    for stage, width in enumerate(_stage_widths(input_shape)):
        if stage > 0 and _can_halve(size):
            # Average pooling, unlike max pooling, keeps the sum of what the filters detect.
            features = layers.AveragePooling2D(2)(features)
            size //= 2
        features = layers.Conv2D(width, 3, padding="same", activation="relu")(features)
    return keras.Model(inputs, _regression_head(features), name="cnn_gap")


@register_model(
    "resnet",
    "small residual network with batch normalization: Conv2D stem, one residual block per "
    "16-32-64(-128) stage (stride 2 between stages), global average, Dense 256, one output",
    # benchmarks/speed.py: JAX faster at 32x32, PyTorch at 64x64 (2 CPU cores).
    torch_from_pixels=48 * 48,
)
def resnet(input_shape: tuple[int, int, int]):
    import keras
    from keras import layers

    def conv_bn(x, width: int, strides: int = 1):
        x = layers.Conv2D(width, 3, strides=strides, padding="same", use_bias=False)(x)
        return layers.BatchNormalization()(x)

    inputs = keras.Input(input_shape)
    widths = _stage_widths(input_shape)
    features = layers.Activation("relu")(conv_bn(inputs, widths[0]))
    size = min(input_shape[:2])
    for stage, width in enumerate(widths):
        strides = 2 if stage > 0 and _can_halve(size) else 1
        size = size // 2 if strides == 2 else size
        shortcut = features
        if strides != 1 or features.shape[-1] != width:
            shortcut = layers.BatchNormalization()(
                layers.Conv2D(width, 1, strides=strides, use_bias=False)(features)
            )
        residual = conv_bn(layers.Activation("relu")(conv_bn(features, width, strides)), width)
        features = layers.Activation("relu")(layers.Add()([shortcut, residual]))
    return keras.Model(inputs, _regression_head(features), name="resnet")


@register_model(
    "pixel_gap",
    "per-pixel features (two Dense 16 layers on each pixel's channels), global average, two Dense 256, "
    "one output: for numbers that are sums over pixels, such as counts or covered fractions",
)
def pixel_gap(input_shape: tuple[int, int, int]):
    import keras
    from keras import layers

    inputs = keras.Input(input_shape)
    # Dense on the channel axis is a 1x1 convolution, computed as one matrix product (faster).
    features = layers.Dense(16, activation="relu")(inputs)
    features = layers.Dense(16, activation="relu")(features)
    # The number is a curve of the averaged features, bending sharply where counts saturate (the
    # points task's collisions); a second hidden layer fits such bends where one left a bias
    # (docs/accuracy.md).
    return keras.Model(inputs, _regression_head(features, hidden_layers=2), name="pixel_gap")


register_candidate("pixel_gap", "numbers that are sums over pixels: counts of dots, covered fractions, colour", rank=0)
register_candidate("cnn_gap", "numbers that depend on shapes larger than a pixel: digits, objects, textures", rank=1)
