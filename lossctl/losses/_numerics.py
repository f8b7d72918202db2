"""Numerically stable building blocks shared by the loss modules (float64 throughout)."""
from __future__ import annotations

import numpy as np


def as_f64(x) -> np.ndarray:
    """A float64 ndarray view (no copy when already float64)."""
    return np.asarray(x, dtype=np.float64)


def softplus(x: np.ndarray) -> np.ndarray:
    """log(1 + exp(x)) without overflow: max(x, 0) + log1p(exp(-|x|))."""
    x = as_f64(x)
    return np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x)))


def log_sigmoid(x: np.ndarray) -> np.ndarray:
    """log(sigmoid(x)) = -softplus(-x); exact for large |x| where log(1/(1+e^-x)) would round to 0 or -inf."""
    return -softplus(-as_f64(x))


def sigmoid(x: np.ndarray) -> np.ndarray:
    """1/(1+exp(-x)) evaluated on the side where exp cannot overflow."""
    x = as_f64(x)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def logsumexp(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """log(sum(exp(x))) along ``axis``, shifted by the row maximum so the largest term is exp(0)."""
    x = as_f64(x)
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    return np.squeeze(m, axis=axis) + np.log(np.sum(np.exp(x - m), axis=axis))


def log_softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """x - logsumexp(x): log-probabilities that stay finite for logits of +-1e4."""
    x = as_f64(x)
    return x - np.expand_dims(logsumexp(x, axis=axis), axis)


def xlogy(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """x * log(y) with the convention 0 * log(0) = 0 (as torch.xlogy / scipy.special.xlogy)."""
    x = as_f64(x)
    y = as_f64(y)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = x * np.log(y)
    return np.where(x == 0, 0.0, out)
