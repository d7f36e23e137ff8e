"""The model registry: every model name img2num knows, what kind of model each is (how it fits,
its preferred backend, whether the automatic choice tries it), and the parsing of pretrained
backbones' names (`backbone:PRESET`, `finetune:PRESET`).

Architectures register themselves in `img2num.models`, pretrained backbones' candidates in
`img2num.backbones`; import those modules (or `img2num.autoselect`, which imports both) before
asking the registry about them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from img2num.config import AUTO_MODEL
from img2num.errors import Img2NumError

BACKBONE_PREFIX = "backbone:"
FINETUNE_PREFIX = "finetune:"
# How a model fits: a Keras model trained epoch by epoch; a head fitted once on a frozen
# backbone's features; that head and the backbone's last stages fine-tuned.
FITTERS = ("epochs", "head", "finetune")


@dataclass(frozen=True)
class Candidate:
    """Why and when `--model auto` tries a model.

    Attributes:
        reason: One line: what kind of number the model is good at.
        applies: Whether it is tried on images of a (height, width, channels) shape.
        rank: Candidates are tried in rising rank.
    """

    reason: str
    applies: Callable[[tuple[int, int, int]], bool]
    rank: int


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: its name, a one-line description and what kind of model it is.

    Attributes:
        name: The name `--model` takes.
        description: One line for `img2num models`.
        build: `f(input_shape) -> keras.Model` for an architecture; None for a pretrained
            backbone, which `img2num.backbones` builds from its preset.
        fitter: How it fits, one of `FITTERS`.
        torch_from_pixels: The image area (height x width) from which the model trains faster on
            Keras' PyTorch backend than with img2num's loop on JAX, as `benchmarks/speed.py`
            measured on CPUs; None when JAX was faster at every size measured (pretrained
            backbones run on JAX, docs/backbones.md).
        candidate: Why and when the automatic choice tries it, or None when it does not.
    """

    name: str
    description: str
    build: Callable | None = None
    fitter: str = "epochs"
    torch_from_pixels: int | None = None
    candidate: Candidate | None = None

    def prefers_torch(self, image_shape: Sequence[int]) -> bool:
        """Whether the model trains faster on PyTorch than on JAX on images of `image_shape`."""
        pixels = int(image_shape[0]) * int(image_shape[1])
        return self.torch_from_pixels is not None and pixels >= self.torch_from_pixels


# The pretrained backbones' families: any preset after the prefix.
_FAMILIES = {
    BACKBONE_PREFIX: ModelSpec(
        BACKBONE_PREFIX + "PRESET",
        "a pretrained backbone's features at several depths, a ridge or MLP head fitted on them "
        "(PRESET: efficientnet_lite0, offline; a keras-hub preset; an hf:// or kaggle:// handle; a local preset folder)",
        fitter="head",
    ),
    FINETUNE_PREFIX: ModelSpec(
        FINETUNE_PREFIX + "PRESET",
        "the same backbone with its last stages trained too, at a lower learning rate",
        fitter="finetune",
    ),
}
_ARCHITECTURES: dict[str, ModelSpec] = {}
# Backbone presets that are candidates of the automatic choice, by full name.
_BACKBONE_CANDIDATES: dict[str, ModelSpec] = {}


def register_model(name: str, description: str, torch_from_pixels: int | None = None) -> Callable:
    """Decorator that adds an architecture's builder `f(input_shape) -> keras.Model` to the
    registry, as a model trained by epochs.

    Args:
        name: The model's name.
        description: One line for `img2num models`.
        torch_from_pixels: Image area from which PyTorch trains it faster (see `ModelSpec`).

    Raises:
        ValueError: The name is registered already.
    """

    def decorate(build: Callable) -> Callable:
        if name in _ARCHITECTURES:
            raise ValueError(f"model {name!r} is registered twice")
        _ARCHITECTURES[name] = ModelSpec(name, description, build, "epochs", torch_from_pixels)
        return build

    return decorate


def register_candidate(
    name: str, reason: str, rank: int, applies: Callable[[tuple[int, int, int]], bool] | None = None
) -> None:
    """Make a registered model (or a pretrained backbone, `backbone:PRESET`) a candidate of
    `--model auto`.

    Args:
        name: A registered model's name, or a pretrained backbone's.
        reason: One line: what kind of number the model is good at.
        rank: Where it comes in the order of trials (lowest first).
        applies: Whether to try it on images of a given (height, width, channels); default always.

    Raises:
        Img2NumError: The name is neither.
        ValueError: It is a candidate already.
    """
    spec = model_spec(name)
    if spec.candidate is not None:
        raise ValueError(f"model {name!r} is a candidate already")
    spec = dataclasses.replace(spec, candidate=Candidate(reason, applies or (lambda shape: True), rank))
    if spec.build is not None:
        _ARCHITECTURES[name] = spec
    else:
        _BACKBONE_CANDIDATES[name] = spec


def registered_architectures() -> list[ModelSpec]:
    """Every architecture registered so far, in registration order (`img2num.models.list_models`
    answers once the built-in ones are)."""
    return list(_ARCHITECTURES.values())


def list_families() -> list[ModelSpec]:
    """The pretrained backbones' families (`backbone:PRESET`, `finetune:PRESET`)."""
    return list(_FAMILIES.values())


def list_candidates() -> list[ModelSpec]:
    """Every candidate of `--model auto`, in the order they are tried."""
    specs = [*_ARCHITECTURES.values(), *_BACKBONE_CANDIDATES.values()]
    return sorted((spec for spec in specs if spec.candidate is not None), key=lambda spec: spec.candidate.rank)


def candidate_models(image_shape: Sequence[int]) -> list[str]:
    """The candidate model names `--model auto` tries on images of `image_shape`, in order."""
    shape = tuple(int(d) for d in image_shape)
    return [spec.name for spec in list_candidates() if spec.candidate.applies(shape)]


def expand_models(models: Sequence[str], image_shape: Sequence[int]) -> list[str]:
    """`models` with "auto" replaced by its candidates (each name once, in order): the models a
    process will train, from which its backend is chosen."""
    names: list[str] = []
    for name in models:
        for model in candidate_models(image_shape) if name == AUTO_MODEL else [name]:
            if model not in names:
                names.append(model)
    return names


def model_spec(name: str) -> ModelSpec:
    """The registry's entry for a model name: an architecture, or a pretrained backbone's
    (`backbone:PRESET`, `finetune:PRESET`; the preset itself is checked when it is loaded).

    Raises:
        Img2NumError: Neither; the message lists the known names.
    """
    if name in _ARCHITECTURES:
        return _ARCHITECTURES[name]
    if name in _BACKBONE_CANDIDATES:
        return _BACKBONE_CANDIDATES[name]
    if is_backbone(name):
        backbone_spec(name)
        return dataclasses.replace(_FAMILIES[name[: name.index(":") + 1]], name=name)
    raise Img2NumError(
        f"unknown model {name!r}; known models: {', '.join(_ARCHITECTURES)}, "
        "backbone:PRESET and finetune:PRESET (pretrained backbones)"
    )


def check_model_name(name: str) -> None:
    """Accept a registered model or a pretrained backbone's name.

    Raises:
        Img2NumError: Neither; the message lists the known names.
    """
    model_spec(name)


def is_backbone(name: str) -> bool:
    """Whether a model name names a pretrained backbone (frozen or fine-tuned)."""
    return isinstance(name, str) and name.startswith((BACKBONE_PREFIX, FINETUNE_PREFIX))


def is_finetune(name: str) -> bool:
    """Whether a model name asks for the backbone to be fine-tuned."""
    return isinstance(name, str) and name.startswith(FINETUNE_PREFIX)


def backbone_spec(name: str) -> str:
    """The preset part of a `backbone:PRESET` or `finetune:PRESET` model name.

    Raises:
        Img2NumError: Nothing follows the prefix.
    """
    spec = name.split(":", 1)[1].strip()
    if not spec:
        raise Img2NumError(
            f"model {name!r} names no backbone; write backbone:PRESET, for example backbone:efficientnet_lite0"
        )
    return spec


def model_folder_name(name: str) -> str:
    """A file and folder name for a model: the name itself, or for a backbone `backbone-PRESET`
    with the preset's last path part that is not a version number (`backbone:/presets/lite0/`
    gives `backbone-lite0`), so that a preset's path never makes nested folders."""
    if ":" not in name:
        return name
    kind, spec = name.split(":", 1)
    parts = [part for part in spec.replace("\\", "/").split("/") if part and not part.endswith(":")]
    named = [part for part in parts if not part.isdigit()]
    return f"{kind}-{(named or parts or ['preset'])[-1].replace(':', '-')}"
