"""Regression losses: one float64 value per sample from predictions and targets.

Each function is pure and keyword-only in its hyperparameters; reduction happens in
:mod:`lossctl.state`.  Each is registered with the reference implementation it reproduces, and the
parity suite (tests/test_parity_regression.py) checks it against that library.
"""
from __future__ import annotations

import numpy as np

from ..registry import LossSpec, Param, register
from ._numerics import as_f64


def squared_error(pred, target) -> np.ndarray:
    """(pred - target)^2 per sample.

    Reference: torch.nn.MSELoss(reduction='none'); sklearn.metrics.mean_squared_error averages it.

    >>> squared_error([1.0, 2.0], [0.0, 4.0]).tolist()
    [1.0, 4.0]
    """
    d = as_f64(pred) - as_f64(target)
    return d * d


def absolute_error(pred, target) -> np.ndarray:
    """|pred - target| per sample.

    Reference: torch.nn.L1Loss(reduction='none'); sklearn.metrics.mean_absolute_error averages it.

    >>> absolute_error([1.0, 2.0], [0.0, 4.0]).tolist()
    [1.0, 2.0]
    """
    return np.abs(as_f64(pred) - as_f64(target))


register(LossSpec(
    name="mse", aliases=("l2", "mean_squared_error", "squared_error"), kind="regression",
    fn=squared_error,
    summary="Mean squared error: the Gaussian negative log-likelihood up to constants.",
    formula="l = (yhat - y)^2", latex=r"\ell = (\hat y - y)^2",
    reference="torch.nn.MSELoss; sklearn.metrics.mean_squared_error",
    when="The default for regression when errors are roughly Gaussian; penalises large errors "
         "quadratically, so outliers dominate. Prefer mae or huber when they should not.",
    example="lossctl eval sample_data/regression.csv -l mse",
    related=("rmse", "mae", "huber", "quadratic"),
))

register(LossSpec(
    name="mae", aliases=("l1", "mean_absolute_error", "absolute_error"), kind="regression",
    fn=absolute_error,
    summary="Mean absolute error: the Laplace negative log-likelihood up to constants.",
    formula="l = |yhat - y|", latex=r"\ell = |\hat y - y|",
    reference="torch.nn.L1Loss; sklearn.metrics.mean_absolute_error",
    when="Robust to outliers (linear growth); estimates the conditional median.",
    example="lossctl eval sample_data/regression.csv -l mae",
    related=("mse", "huber", "quantile"),
))
