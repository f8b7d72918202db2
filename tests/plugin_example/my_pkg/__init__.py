"""An example lossctl plugin with one loss, ``asymmetric_l2`` (``-l my_pkg:asymmetric_l2``).

lossctl finds :func:`register` through the ``lossctl.losses`` entry point declared in pyproject.toml and
calls it once, when the registry first loads.
"""
from __future__ import annotations

import numpy as np


def asymmetric_l2(pred, target, *, alpha: float = 0.5) -> np.ndarray:
    """Asymmetric squared error (expectile loss): ``|alpha - 1[yhat > y]| * (yhat - y)^2``.

    ``alpha > 0.5`` punishes predictions below the target more than above; the minimiser is the
    ``alpha``-expectile of the target (the mean at 0.5, where the loss is half the squared error).

    >>> asymmetric_l2(np.array([0.0, 2.0]), np.array([1.0, 1.0]), alpha=0.75).tolist()
    [0.75, 0.25]
    """
    d = np.asarray(pred, dtype=np.float64) - np.asarray(target, dtype=np.float64)
    return np.where(d > 0, 1.0 - alpha, alpha) * d * d


def asymmetric_l2_grad(pred, target, *, alpha: float = 0.5) -> np.ndarray:
    """d loss / d pred = 2 |alpha - 1[yhat > y]| (yhat - y)."""
    d = np.asarray(pred, dtype=np.float64) - np.asarray(target, dtype=np.float64)
    return 2.0 * np.where(d > 0, 1.0 - alpha, alpha) * d


def register() -> None:
    """Register this package's losses (called by lossctl through the entry point)."""
    from lossctl.registry import LossSpec, Param, register as lossctl_register

    lossctl_register(LossSpec(
        name="asymmetric_l2", kind="regression", fn=asymmetric_l2, grad=asymmetric_l2_grad,
        summary="Asymmetric squared error (expectile loss): under- and over-prediction weighted apart.",
        formula="l = |alpha - 1[yhat > y]| * (yhat - y)^2",
        latex=r"\ell = |\alpha - \mathbb{1}[\hat y > y]|\,(\hat y - y)^2",
        reference="Newey & Powell (1987), asymmetric least squares; alpha=0.5 is torch.nn.MSELoss / 2",
        params=(Param("alpha", float, 0.5, "weight of under-prediction (yhat < y); 1 - alpha of over",
                      low=0.0, high=1.0, low_open=True, high_open=True),),
        when="When under- and over-prediction cost differently but errors should still be squared "
             "(smooth, estimates an expectile); use quantile for the absolute-error analogue.",
        example="lossctl eval sample_data/regression.csv -l my_pkg:asymmetric_l2:alpha=0.8",
        related=("mse", "quantile"),
    ))
