"""Every fitter by the kind the registry gives a model: `fit(inputs)` trains a registered
architecture by epochs (`img2num.fitting`) or fits a pretrained backbone's head, fine-tuning it
where asked (`img2num.backbones.train`); each returns the same `Fit`."""

from __future__ import annotations

from img2num.backbones.train import fit_backbone
from img2num.fitting import Fit, FitInputs, fit_by_epochs
from img2num.registry import model_spec

# The fitter of each kind of model (`ModelSpec.fitter`).
_FITTERS = {"epochs": fit_by_epochs, "head": fit_backbone, "finetune": fit_backbone}


def fit(inputs: FitInputs) -> Fit:
    """Fit `inputs.config.model` the way its registry entry says.

    Raises:
        Img2NumError: The model is unknown, or its fitter cannot run on these settings or data.
    """
    return _FITTERS[model_spec(inputs.config.model).fitter](inputs)
