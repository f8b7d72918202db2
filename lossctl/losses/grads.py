"""Analytic gradients of the per-sample losses with respect to the prediction (``eval --grad``).

``GRADS[name](*inputs, **params)`` takes exactly what the loss function takes (prepared inputs, the same
keyword parameters) and returns d loss_i / d pred_i with the shape of ``pred``: (n,) for one prediction
column, (n, C) for class scores (the gradient with respect to each score column).  Losses on logits are
differentiated with respect to the logits, losses on probabilities with respect to the probabilities,
whatever ``space`` the loss was given.  Where a loss clamps or clips (torch's log clamp at -100,
scikit-learn's probability clip) the gradient is that of the clamped function, as torch.autograd
computes it; at the kinks of max(0, .) and |.| the gradient is torch's subgradient.

For rmse and rmsle, whose reduction is a root of the mean rather than a mean of per-sample values, the
gradient is that of the per-sample value ``-r none`` prints (|yhat - y|, |log1p(yhat) - log1p(y)|).

Importing this module (last, from :mod:`lossctl.losses`) attaches each gradient to its registered loss
(``LossSpec.grad``).  Each one is checked against torch.autograd in tests/test_grads.py; the losses that
have none are listed there with the reason.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from ..registry import _REGISTRY, register
from . import _labels as L
from ._numerics import as_f64, log_softmax, sigmoid

# torch BCELoss's backward divides by max(p (1 - p), 1e-12) (aten/src/ATen/native/Loss.cpp, EPSILON)
TORCH_BCE_EPS = 1e-12


def _rowmean_grad(g: np.ndarray) -> np.ndarray:
    """Gradient of a per-sample mean over k label columns: each column's gradient / k."""
    return g if g.ndim == 1 else g / g.shape[1]


def _softmax_backward(p: np.ndarray, g: np.ndarray) -> np.ndarray:
    """d/dx of f(softmax(x)) from g = df/dp: p * (g - sum_c p_c g_c)."""
    return p * (g - np.sum(p * g, axis=1, keepdims=True))


def _log_softmax_backward(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """d/dx of f(log_softmax(x)) from g = df/dlog p: g - softmax(x) sum_c g_c."""
    return g - np.exp(log_softmax(x, axis=1)) * np.sum(g, axis=1, keepdims=True)


def _weights(class_weights, n_classes: int) -> np.ndarray:
    return np.ones(n_classes) if not class_weights else as_f64(class_weights)


# -- regression --------------------------------------------------------------------------------------------
# Every regression loss takes (n,) or (n, k) inputs; for (n, k) the per-sample value is the mean over the
# k outputs, hence _rowmean_grad (each output's gradient / k).
def _d(pred, target) -> np.ndarray:
    return as_f64(pred) - as_f64(target)


def squared_error_grad(pred, target) -> np.ndarray:
    """d (yhat - y)^2 / d yhat = 2 (yhat - y)."""
    return _rowmean_grad(2.0 * _d(pred, target))


def half_squared_error_grad(pred, target) -> np.ndarray:
    """d (yhat - y)^2 / 2 / d yhat = yhat - y."""
    return _rowmean_grad(_d(pred, target))


def absolute_error_grad(pred, target) -> np.ndarray:
    """sign(yhat - y); 0 at 0 (torch's subgradient of |x|)."""
    return _rowmean_grad(np.sign(_d(pred, target)))


def _root_grad(e: np.ndarray) -> np.ndarray:
    """Gradient of the per-row root value |e| (n,) or sqrt(mean_k e^2) (n, k) with respect to e."""
    if e.ndim == 1:
        return np.sign(e)
    r = np.sqrt(np.mean(e * e, axis=1, keepdims=True))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(r > 0, e / (e.shape[1] * r), 0.0)


def root_squared_error_grad(pred, target) -> np.ndarray:
    """rmse's per-sample value |yhat - y| (a row's root mean square over k outputs): sign(d), or
    d / (k r) for (n, k).  The reduced rmse is a root of the mean, so this is not d rmse / d yhat_i."""
    return _root_grad(_d(pred, target))


def huber_grad(pred, target, *, delta: float = 1.0) -> np.ndarray:
    """d inside |d| < delta, delta sign(d) outside (torch HuberLoss)."""
    return _rowmean_grad(np.clip(_d(pred, target), -delta, delta))


def smooth_l1_grad(pred, target, *, beta: float = 1.0) -> np.ndarray:
    """d / beta inside |d| < beta, sign(d) outside; beta = 0 is L1 (torch SmoothL1Loss)."""
    d = _d(pred, target)
    if beta == 0:
        return _rowmean_grad(np.sign(d))
    return _rowmean_grad(np.where(np.abs(d) < beta, d / beta, np.sign(d)))


def log_cosh_grad(pred, target) -> np.ndarray:
    """d log cosh(d) / dd = tanh(d)."""
    return _rowmean_grad(np.tanh(_d(pred, target)))


def pinball_grad(pred, target, *, alpha: float = 0.5) -> np.ndarray:
    """alpha (y - yhat) where y >= yhat, (1 - alpha)(yhat - y) below: -alpha, or 1 - alpha."""
    return _rowmean_grad(np.where(as_f64(target) - as_f64(pred) >= 0, -alpha, 1.0 - alpha))


def poisson_nll_grad(pred, target, *, log_input: bool = True, full: bool = False, eps: float = 1e-8) -> np.ndarray:
    """torch PoissonNLLLoss: exp(x) - y (log_input), else 1 - y / (x + eps); the Stirling term has none."""
    x, y = as_f64(pred), as_f64(target)
    return _rowmean_grad(np.exp(x) - y if log_input else 1.0 - y / (x + eps))


def tweedie_deviance_grad(pred, target, *, power: float = 0.0) -> np.ndarray:
    """Unit Tweedie deviance (sklearn): d/dmu = 2 (mu - y) mu^-power for every power (0 where the
    value was rounded up to 0)."""
    mu, y = as_f64(pred), as_f64(target)
    g = 2.0 * (mu - y) * np.power(mu, -float(power))
    return _rowmean_grad(g)


def poisson_deviance_grad(pred, target) -> np.ndarray:
    """2 (y log(y / mu) - y + mu): 2 (1 - y / mu)."""
    return tweedie_deviance_grad(pred, target, power=1.0)


def gamma_deviance_grad(pred, target) -> np.ndarray:
    """2 (log(mu / y) + y / mu - 1): 2 (mu - y) / mu^2."""
    return tweedie_deviance_grad(pred, target, power=2.0)


def gaussian_nll_grad(pred, target, var, *, full: bool = False, eps: float = 1e-6) -> np.ndarray:
    """torch GaussianNLLLoss 0.5 (log v + (x - y)^2 / v), v = max(var, eps): (x - y) / v."""
    x, v = as_f64(pred), as_f64(var)
    if x.ndim == 2 and v.ndim == 1:
        v = v[:, None]
    return _rowmean_grad(_d(x, target) / np.maximum(v, eps))


def squared_log_error_grad(pred, target) -> np.ndarray:
    """(log1p(yhat) - log1p(y))^2: 2 (log1p(yhat) - log1p(y)) / (1 + yhat)."""
    p = as_f64(pred)
    return _rowmean_grad(2.0 * (np.log1p(p) - np.log1p(as_f64(target))) / (1.0 + p))


def root_squared_log_error_grad(pred, target) -> np.ndarray:
    """rmsle's per-sample value |log1p(yhat) - log1p(y)|: its root gradient / (1 + yhat)."""
    p = as_f64(pred)
    return _root_grad(np.log1p(p) - np.log1p(as_f64(target))) / (1.0 + p)


def absolute_percentage_error_grad(pred, target, *, eps: float = float(np.finfo(np.float64).eps),
                                   percent: bool = False) -> np.ndarray:
    """|yhat - y| / max(|y|, eps): sign(yhat - y) / max(|y|, eps) (times 100 with ``percent``)."""
    y = as_f64(target)
    g = np.sign(_d(pred, y)) / np.maximum(np.abs(y), eps)
    return _rowmean_grad(100.0 * g if percent else g)


def symmetric_absolute_percentage_error_grad(pred, target, *,
                                             eps: float = float(np.finfo(np.float64).eps)) -> np.ndarray:
    """2 |x - y| / s, s = max(|x| + |y|, eps): 2 (sign(x - y) s - |x - y| sign(x)) / s^2 (s > eps),
    2 sign(x - y) / eps where the denominator is clamped."""
    x, y = as_f64(pred), as_f64(target)
    d = x - y
    s = np.abs(x) + np.abs(y)
    with np.errstate(invalid="ignore", divide="ignore"):
        free = 2.0 * (np.sign(d) * s - np.abs(d) * np.sign(x)) / (s * s)
    return _rowmean_grad(np.where(s > eps, free, 2.0 * np.sign(d) / eps))


def bias_error_grad(pred, target) -> np.ndarray:
    """Signed error yhat - y: 1."""
    return _rowmean_grad(np.ones_like(_d(pred, target)))


# -- binary ---------------------------------------------------------------------------------------------------
def bce_grad(pred, target) -> np.ndarray:
    """torch BCELoss: (p - y) / max(p (1 - p), 1e-12), which is -y/p + (1 - y)/(1 - p)."""
    p, y = as_f64(pred), as_f64(target)
    return _rowmean_grad((p - y) / np.maximum(p * (1.0 - p), TORCH_BCE_EPS))


def bce_with_logits_grad(pred, target, *, pos_weight: float = 1.0) -> np.ndarray:
    """d/dx of -[pw y log s(x) + (1 - y) log s(-x)] = (1 - y) s(x) - pw y s(-x)."""
    x, y = as_f64(pred), as_f64(target)
    return _rowmean_grad((1.0 - y) * sigmoid(x) - pos_weight * y * sigmoid(-x))


def log_loss_grad(pred, target, *, eps: float = float(np.finfo(np.float64).eps)) -> np.ndarray:
    """-y_c / clip(p_c) inside the clip [eps, 1 - eps], 0 outside; a binary column p is [1 - p, p]."""
    p, y = as_f64(pred), as_f64(target)
    if p.ndim == 1:
        q = 1.0 - p
        in_p = (p >= eps) & (p <= 1.0 - eps)
        in_q = (q >= eps) & (q <= 1.0 - eps)
        gp = np.where(in_p & (y != 0), -y / np.clip(p, eps, 1.0 - eps), 0.0)
        gq = np.where(in_q & (y != 1), -(1.0 - y) / np.clip(q, eps, 1.0 - eps), 0.0)
        return gp - gq
    if y.ndim == 1:
        y = L.one_hot(y, p.shape[1])
    inside = (p >= eps) & (p <= 1.0 - eps)
    return np.where(inside & (y != 0), -y / np.clip(p, eps, 1.0 - eps), 0.0)


def brier_grad(pred, target, *, scale_by_half: str = "auto") -> np.ndarray:
    """s sum_c (y_c - p_c)^2: 2 s (p_c - y_c); a binary column p is [1 - p, p], so 4 s (p - y)."""
    p, y = as_f64(pred), as_f64(target)
    if p.ndim == 1:
        half = scale_by_half != "false"
        return (2.0 if half else 4.0) * (p - y)
    if y.ndim == 1:
        y = L.one_hot(y, p.shape[1])
    half = p.shape[1] < 3 if scale_by_half == "auto" else scale_by_half == "true"
    return (1.0 if half else 2.0) * (p - y)


def sigmoid_focal_grad(pred, target, *, alpha: float = 0.25, gamma: float = 2.0, space: str = "logits") -> np.ndarray:
    """alpha_t (1 - p_t)^gamma ce: alpha_t [gamma q^(gamma-1) q' ce + q^gamma ce'], q = 1 - p_t."""
    x, y = as_f64(pred), as_f64(target)
    if space == "logits":
        s, sm = sigmoid(x), sigmoid(-x)
        ce = -(y * -np.logaddexp(0.0, -x) + (1.0 - y) * -np.logaddexp(0.0, x))
        dce = s - y
        q = y * sm + (1.0 - y) * s
        dq = s * sm * (1.0 - 2.0 * y)
    else:
        with np.errstate(divide="ignore"):
            ce = -(y * np.maximum(np.log(x), -100.0) + (1.0 - y) * np.maximum(np.log1p(-x), -100.0))
        dce = (x - y) / np.maximum(x * (1.0 - x), TORCH_BCE_EPS)
        q = y * (1.0 - x) + (1.0 - y) * x
        dq = 1.0 - 2.0 * y
    with np.errstate(divide="ignore", invalid="ignore"):
        dpow = np.where(q > 0, gamma * np.power(q, gamma - 1.0), 0.0) if gamma != 0 else np.zeros_like(q)
    g = dpow * dq * ce + np.power(q, gamma) * dce
    if alpha >= 0:
        g = (alpha * y + (1.0 - alpha) * (1.0 - y)) * g
    return _rowmean_grad(g)


def _margin_grad(dl_dm: Callable[[np.ndarray], np.ndarray]):
    """Margin losses l(m), m = y f, y in {-1, +1}: dl/df = y l'(y f)."""
    def grad(pred, target, *, space: str = "scores") -> np.ndarray:
        f, y = as_f64(pred), as_f64(target)
        return _rowmean_grad(y * dl_dm(y * f))
    return grad


hinge_grad = _margin_grad(lambda m: np.where(1.0 - m > 0, -1.0, 0.0))
squared_hinge_grad = _margin_grad(lambda m: -2.0 * np.maximum(0.0, 1.0 - m))
perceptron_grad = _margin_grad(lambda m: np.where(-m > 0, -1.0, 0.0))
exponential_grad = _margin_grad(lambda m: -np.exp(-m))
logistic_grad = _margin_grad(lambda m: -sigmoid(-m))


# -- multiclass -----------------------------------------------------------------------------------------------
def _ce_coefficients(n: int, C: int, target, class_weights, ignore_index, label_smoothing) -> np.ndarray:
    """a with l = -sum_c a_c log p_c (cross_entropy's weights on each log-probability, torch semantics)."""
    w = _weights(class_weights, C)
    eps = float(label_smoothing)
    y = as_f64(target)
    if y.ndim == 2:
        if eps:
            y = y * (1.0 - eps) + eps / C
        return w * y
    valid = y != ignore_index
    idx = np.where(valid, y, 0).astype(np.int64)
    a = np.zeros((n, C))
    a[np.arange(n), idx] = (1.0 - eps) * w[idx]
    if eps:
        a += (eps / C) * w
    return np.where(valid[:, None], a, 0.0)


def _through_log_probs(pred, a: np.ndarray, space: str) -> np.ndarray:
    """d/dpred of -sum_c a_c log p_c, log p = log_softmax (logits), pred (log-probabilities) or
    max(log pred, -100) (probabilities)."""
    x = as_f64(pred)
    if space == "logits":
        return _log_softmax_backward(x, -a)
    if space == "log-probabilities":
        return -a
    with np.errstate(divide="ignore", invalid="ignore"):
        inside = np.log(x) >= -100.0
        return np.where(inside & (a != 0), -a / x, 0.0)


def cross_entropy_grad(pred, target, *, class_weights=(), ignore_index: int = -100, label_smoothing: float = 0.0,
                       space: str = "logits") -> np.ndarray:
    x = as_f64(pred)
    a = _ce_coefficients(*x.shape, target, class_weights, ignore_index, label_smoothing)
    return _through_log_probs(x, a, space)


def nll_grad(pred, target, *, class_weights=(), ignore_index: int = -100) -> np.ndarray:
    x = as_f64(pred)
    return -_ce_coefficients(*x.shape, target, class_weights, ignore_index, 0.0)


def kl_div_grad(pred, target, *, log_target: bool = False, space: str = "log-probabilities") -> np.ndarray:
    """sum_c p_c (log p_c - log q_c): -p_c through log q (terms with p_c = 0 are 0 on probabilities)."""
    t = as_f64(target)
    p = np.exp(t) if log_target else t
    return _through_log_probs(pred, p, space)


def js_divergence_grad(pred, target, *, space: str = "probabilities") -> np.ndarray:
    """JS(p, q^) with q^ = q / sum q: dJS/dq^_c = log(q^_c / m_c) / 2, then through the normalisation."""
    x = as_f64(pred)
    if space == "logits":
        q = np.exp(log_softmax(x, axis=1))
    elif space == "log-probabilities":
        q = np.exp(x)
    else:
        q = x
    S = np.sum(q, axis=1, keepdims=True)
    qh = q / S
    p = as_f64(target)
    p = p / np.sum(p, axis=1, keepdims=True)
    m = 0.5 * (p + qh)
    with np.errstate(divide="ignore", invalid="ignore"):
        G = np.where(qh > 0, 0.5 * np.log(qh / m), np.where(p > 0, -np.inf, 0.0))
    gq = (G - np.sum(G * qh, axis=1, keepdims=True)) / S          # through q^ = q / S
    if space == "logits":
        return _softmax_backward(q, gq)
    if space == "log-probabilities":
        return gq * q
    return gq


def multi_margin_grad(pred, target, *, p: int = 1, margin: float = 1.0, class_weights=(),
                      space: str = "scores") -> np.ndarray:
    """(w_y / C) sum_{i != y} max(0, margin - x_y + x_i)^p: +-(w_y / C) p z_i^(p-1) where z_i > 0."""
    x = as_f64(pred)
    n, C = x.shape
    idx = as_f64(target).astype(np.int64)
    rows = np.arange(n)
    z = margin - x[rows, idx][:, None] + x
    active = z > 0
    active[rows, idx] = False
    dz = np.where(active, 1.0 if p == 1 else 2.0 * z, 0.0) * (_weights(class_weights, C)[idx] / C)[:, None]
    g = dz.copy()
    g[rows, idx] = -np.sum(dz, axis=1)
    return g


def multiclass_hinge_grad(pred, target, *, space: str = "scores") -> np.ndarray:
    """max(0, 1 - f_y + max_{j != y} f_j): -1 on f_y and +1 on the runner-up while the loss is positive."""
    x = as_f64(pred)
    n = len(x)
    idx = as_f64(target).astype(np.int64)
    rows = np.arange(n)
    others = x.copy()
    others[rows, idx] = -np.inf
    j = np.argmax(others, axis=1)
    on = (1.0 - (x[rows, idx] - others[rows, j])) > 0
    g = np.zeros_like(x)
    g[rows, idx] = np.where(on, -1.0, 0.0)
    g[rows, j] += np.where(on, 1.0, 0.0)
    return g


def softmax_focal_grad(pred, target, *, alpha: float = 0.25, gamma: float = 2.0, eps: float = 1e-7,
                       label_smoothing: float = 0.0, space: str = "probabilities") -> np.ndarray:
    """sum_c alpha (1 - p_c)^gamma (-y_c log p_c) through the clip, the renormalisation and the space."""
    y = as_f64(target)
    x = as_f64(pred)
    C = x.shape[1]
    if y.ndim == 1:
        y = L.one_hot(y, C)
    if label_smoothing:
        y = y * (1.0 - label_smoothing) + label_smoothing / C
    if space == "logits" and eps == 0:
        lp = log_softmax(x, axis=1)
        p = np.exp(lp)
        inside = np.ones_like(p, dtype=bool)
        u, S = p, 1.0
    else:
        if space == "logits":
            u = np.exp(log_softmax(x, axis=1))
        elif space == "log-probabilities":
            u = np.exp(x)
        else:
            u = x
        S = np.sum(u, axis=1, keepdims=True)
        ph = u / S
        inside = (ph >= eps) & (ph <= 1.0 - eps)
        p = np.clip(ph, eps, 1.0 - eps)
        with np.errstate(divide="ignore"):
            lp = np.log(p)
    with np.errstate(divide="ignore", invalid="ignore"):
        one_minus = 1.0 - p
        dpow = gamma * np.power(one_minus, gamma - 1.0) if gamma != 0 else np.zeros_like(p)
        # d/dp_c of alpha (1 - p_c)^gamma (-y_c log p_c)
        gp = np.where(y == 0, 0.0, alpha * y * (dpow * lp - np.power(one_minus, gamma) / p))
    gp = np.where(inside, gp, 0.0)
    if space == "logits" and eps == 0:
        return _softmax_backward(p, gp)
    gu = (gp - np.sum(gp * (u / S), axis=1, keepdims=True)) / S      # through the renormalisation
    if space == "logits":
        return _softmax_backward(u, gu)
    if space == "log-probabilities":
        return gu * u
    return gu


def multilabel_soft_margin_grad(pred, target, *, class_weights=()) -> np.ndarray:
    """-(1/C) sum_c w_c [y log s(x) + (1 - y) log s(-x)]: w_c (s(x_c) - y_c) / C."""
    x, y = as_f64(pred), as_f64(target)
    C = x.shape[1]
    return _weights(class_weights, C) * (sigmoid(x) - y) / C


# -- masks ----------------------------------------------------------------------------------------------------
def _merge_classes(g: np.ndarray, class_axis: str) -> np.ndarray:
    """(n, C, m) -> (n, k): the inverse of overlap._split_classes."""
    n, C, m = g.shape
    return g.transpose(0, 2, 1).reshape(n, m * C) if class_axis == "last" else g.reshape(n, C * m)


def _mask_grad(name: str):
    """Per row and class L = E / D (0 where D = 0) with E = a FP + b FN and D = k I + E + smooth (dice: k = 2,
    a = b = 1; iou: k = 1, a = b = 1; tversky: k = 1), focal_tversky L^gamma; the row value is the mean over
    the C classes.  dI/dp = t, dFP/dp = 1 - t, dFN/dp = -t; then through sigmoid / softmax for logits."""
    def grad(pred, target, *, smooth: float = 0.0, alpha: float = 0.5, beta: float = 0.5, gamma: float = 1.0,
             classes: int = 1, class_axis: str = "last", space: str = "probabilities",
             average: str = "dataset", class_index: int = -1) -> np.ndarray:
        from .overlap import _probs, _split_classes

        x, t = as_f64(pred), as_f64(target)
        flat = x.ndim == 1
        x2 = x[:, None] if flat else x
        t2 = t[:, None] if t.ndim == 1 else t
        p = _probs(_split_classes(x2, classes, class_axis), classes, space)
        t3 = _split_classes(t2, classes, class_axis)
        inter = np.sum(p * t3, axis=2, keepdims=True)
        fp = np.sum(p * (1.0 - t3), axis=2, keepdims=True)
        fn = np.sum((1.0 - p) * t3, axis=2, keepdims=True)
        a, b, k = (1.0, 1.0, 2.0) if name == "dice" else (1.0, 1.0, 1.0) if name == "iou" else (alpha, beta, 1.0)
        E = a * fp + b * fn
        D = k * inter + E + smooth
        dE = a * (1.0 - t3) - b * t3
        dD = k * t3 + dE
        with np.errstate(divide="ignore", invalid="ignore"):
            g = np.where(D > 0, (dE * D - E * dD) / (D * D), 0.0)
            if name == "focal_tversky" and gamma != 1.0:
                L = np.where(D > 0, E / D, 0.0)
                g = np.where(L > 0, gamma * np.power(L, gamma - 1.0), 0.0) * g
        if class_index >= 0:                                 # class k alone
            keep = np.zeros((1, p.shape[1], 1))
            keep[0, class_index, 0] = 1.0
            g = g * keep
        else:
            g = g / p.shape[1]                               # mean over classes
        if space == "logits":
            g = p * (1.0 - p) * g if classes == 1 else _softmax_backward_axis1(p, g)
        g = _merge_classes(g, class_axis)
        return g[:, 0] if flat else g
    return grad


def _softmax_backward_axis1(p: np.ndarray, g: np.ndarray) -> np.ndarray:
    return p * (g - np.sum(p * g, axis=1, keepdims=True))


# -- boxes ------------------------------------------------------------------------------------------------
def _box_grad(name: str):
    """Gradients of the box losses with respect to the predicted box, in its own ``box_format``.

    Computed on corners (x1, y1, x2, y2): max/min pass the gradient to the larger/smaller side, and half of
    it to each side of a tie (torch.maximum / torch.minimum's backward, which matters for a predicted box
    that shares an edge with, or equals, its target); the intersection is 0 (and so is its gradient) unless
    both overlaps are positive.  ciou's alpha is a constant, as torchvision computes it under
    torch.no_grad()."""
    def above(a, b):            # d max(a, b) / da, torch's convention at a tie
        return (a > b) + 0.5 * (a == b)


    def grad(pred, target, *, box_format: str = "xyxy", eps: float = 1e-7) -> np.ndarray:
        from .overlap import TORCHVISION_EPS, _aspect_angle, _box_parts, _inter_union

        p, q = _box_parts(pred, target, box_format)
        x1, y1, x2, y2 = p
        gx1, gy1, gx2, gy2 = q
        zero = np.zeros_like(x1)
        # d/d(x1, y1, x2, y2) of each quantity, as a (4, n) array
        ix1, iy1 = above(x1, gx1), above(y1, gy1)                             # d max(x1, gx1) / d x1
        ix2, iy2 = above(gx2, x2), above(gy2, y2)                             # d min(x2, gx2) / d x2
        iw = np.minimum(x2, gx2) - np.maximum(x1, gx1)
        ih = np.minimum(y2, gy2) - np.maximum(y1, gy1)
        overlap = (iw > 0) & (ih > 0)
        d_iw = np.stack([-ix1, zero, ix2, zero])
        d_ih = np.stack([zero, -iy1, zero, iy2])
        inter, union = _inter_union(p, q)
        d_inter = np.where(overlap, ih * d_iw + iw * d_ih, 0.0)
        w, h = x2 - x1, y2 - y1
        d_area = np.stack([-h, -w, h, w])
        d_union = d_area - d_inter
        # torchvision: ciou calls the diou part with its default eps and uses eps only in alpha
        e_iou = TORCHVISION_EPS if name == "ciou" else eps
        ue = union + e_iou
        iou = inter / ue
        d_iou = (d_inter * ue - inter * d_union) / (ue * ue)
        g = -d_iou
        if name != "box_iou":
            cx1, cy1 = np.minimum(x1, gx1), np.minimum(y1, gy1)
            cx2, cy2 = np.maximum(x2, gx2), np.maximum(y2, gy2)
            d_cx1 = np.stack([above(gx1, x1), zero, zero, zero])
            d_cy1 = np.stack([zero, above(gy1, y1), zero, zero])
            d_cx2 = np.stack([zero, zero, above(x2, gx2), zero])
            d_cy2 = np.stack([zero, zero, zero, above(y2, gy2)])
            cw, ch = cx2 - cx1, cy2 - cy1
            if name == "giou":
                A = cw * ch
                dA = ch * (d_cx2 - d_cx1) + cw * (d_cy2 - d_cy1)
                Ae = A + eps
                g = g + ((dA - d_union) * Ae - (A - union) * dA) / (Ae * Ae)
            else:
                diag2 = cw * cw + ch * ch + e_iou
                d_diag2 = 2.0 * cw * (d_cx2 - d_cx1) + 2.0 * ch * (d_cy2 - d_cy1)
                dx = (x2 + x1) / 2 - (gx1 + gx2) / 2
                dy = (y2 + y1) / 2 - (gy1 + gy2) / 2
                dist2 = dx * dx + dy * dy
                d_dist2 = np.stack([dx, dy, dx, dy])
                g = g + (d_dist2 * diag2 - dist2 * d_diag2) / (diag2 * diag2)
                if name == "ciou":
                    a_g, a_p = _aspect_angle(gx2 - gx1, gy2 - gy1), _aspect_angle(w, h)
                    v = (4.0 / np.pi ** 2) * (a_g - a_p) ** 2
                    alpha = v / (1.0 - iou + v + eps)
                    r2 = w * w + h * h
                    with np.errstate(divide="ignore", invalid="ignore"):
                        da_dw, da_dh = np.where(r2 > 0, h / r2, 0.0), np.where(r2 > 0, -w / r2, 0.0)
                    dv_da = -(8.0 / np.pi ** 2) * (a_g - a_p)
                    d_a = np.stack([-da_dw, -da_dh, da_dw, da_dh])
                    g = g + alpha * dv_da * d_a
        gx1_, gy1_, gx2_, gy2_ = g
        if box_format == "xyxy":
            out = [gx1_, gy1_, gx2_, gy2_]
        elif box_format == "xywh":
            out = [gx1_ + gx2_, gy1_ + gy2_, gx2_, gy2_]
        else:  # cxcywh
            out = [gx1_ + gx2_, gy1_ + gy2_, 0.5 * (gx2_ - gx1_), 0.5 * (gy2_ - gy1_)]
        return np.stack(out, axis=1)
    return grad


# -- embeddings -----------------------------------------------------------------------------------------------
def cosine_embedding_grad(pred, target, label, *, margin: float = 0.0) -> np.ndarray:
    """torch CosineEmbeddingLoss: d cos / d x1 = (x2 - (x1.x2 / M1) x1) / sqrt(M1 M2), M = |x|^2 + 1e-12;
    -that for y = 1, +that where cos > margin for y = -1."""
    from .embedding import TORCH_COSINE_EMBEDDING_EPS, _vectors

    x1, x2 = _vectors(pred), _vectors(target)
    y = as_f64(label).reshape(-1)
    prod = np.sum(x1 * x2, axis=1, keepdims=True)
    m1 = np.sum(x1 * x1, axis=1, keepdims=True) + TORCH_COSINE_EMBEDDING_EPS
    m2 = np.sum(x2 * x2, axis=1, keepdims=True) + TORCH_COSINE_EMBEDDING_EPS
    dcos = (x2 - (prod / m1) * x1) / np.sqrt(m1 * m2)
    cos = (prod / np.sqrt(m1 * m2))[:, 0]
    coef = np.where(y == 1, -1.0, 0.0) + np.where((y == -1) & (cos - margin > 0), 1.0, 0.0)
    g = coef[:, None] * dcos
    return g.reshape(as_f64(pred).shape)


def margin_ranking_grad(pred, target, label, *, margin: float = 0.0) -> np.ndarray:
    """torch MarginRankingLoss max(0, -y (x1 - x2) + margin): -y where positive, for x1 = pred."""
    x1, x2 = as_f64(pred).reshape(-1), as_f64(target).reshape(-1)
    y = as_f64(label).reshape(-1)
    g = np.where(-y * (x1 - x2) + margin > 0, -y, 0.0)
    return g.reshape(as_f64(pred).shape)


def _pnorm_grad(v: np.ndarray, p: float) -> np.ndarray:
    """d ||v||_p / dv row by row (0 for a zero row, as torch's norm backward)."""
    a = np.abs(v)
    if p == 1.0:
        return np.sign(v)
    if np.isinf(p):
        hot = np.zeros_like(v)
        hot[np.arange(len(v)), np.argmax(a, axis=1)] = 1.0
        return hot * np.sign(v)
    from .embedding import pairwise_distance
    d = pairwise_distance(v, np.zeros_like(v), p=p, eps=0.0)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(d > 0, np.sign(v) * (a / d) ** (p - 1.0), 0.0)


def triplet_grad(anchor, pred, target, *, margin: float = 1.0, p: float = 2.0, eps: float = 1e-6,
                 swap: bool = False) -> np.ndarray:
    """With respect to the anchor (the loss's first input): d(a, pos) - d(a, neg) + margin where positive,
    d = ||a - x + eps||_p; with ``swap`` the negative term has no anchor gradient when d(pos, neg) is the
    smaller distance."""
    from .embedding import _vectors, pairwise_distance

    a, pos, neg = _vectors(anchor), _vectors(pred), _vectors(target)
    d_pos = pairwise_distance(a, pos, p=p, eps=eps)
    d_neg = pairwise_distance(a, neg, p=p, eps=eps)
    use_an = np.ones(len(a), dtype=bool)
    if swap:
        d_pn = pairwise_distance(pos, neg, p=p, eps=eps)
        use_an = d_neg <= d_pn
        d_neg = np.minimum(d_neg, d_pn)
    on = (margin + d_pos - d_neg) > 0
    g = _pnorm_grad(a - pos + eps, p) - np.where(use_an[:, None], _pnorm_grad(a - neg + eps, p), 0.0)
    g = np.where(on[:, None], g, 0.0)
    return g.reshape(as_f64(anchor).shape)


GRADS: dict[str, Callable[..., np.ndarray]] = {
    # regression
    "mse": squared_error_grad,
    "rmse": root_squared_error_grad,
    "quadratic": half_squared_error_grad,
    "mae": absolute_error_grad,
    "huber": huber_grad,
    "smooth_l1": smooth_l1_grad,
    "log_cosh": log_cosh_grad,
    "quantile": pinball_grad,
    "poisson_nll": poisson_nll_grad,
    "poisson_deviance": poisson_deviance_grad,
    "gamma_deviance": gamma_deviance_grad,
    "tweedie_deviance": tweedie_deviance_grad,
    "gaussian_nll": gaussian_nll_grad,
    "msle": squared_log_error_grad,
    "rmsle": root_squared_log_error_grad,
    "mape": absolute_percentage_error_grad,
    "smape": symmetric_absolute_percentage_error_grad,
    "mean_bias": bias_error_grad,
    # binary
    "bce": bce_grad,
    "bce_with_logits": bce_with_logits_grad,
    "log_loss": log_loss_grad,
    "brier": brier_grad,
    "focal": sigmoid_focal_grad,
    "hinge": hinge_grad,
    "squared_hinge": squared_hinge_grad,
    "perceptron": perceptron_grad,
    "exponential": exponential_grad,
    "logistic": logistic_grad,
    # multiclass / multilabel
    "cross_entropy": cross_entropy_grad,
    "nll": nll_grad,
    "kl_div": kl_div_grad,
    "js_divergence": js_divergence_grad,
    "multi_margin": multi_margin_grad,
    "multiclass_hinge": multiclass_hinge_grad,
    "softmax_focal": softmax_focal_grad,
    "multilabel_soft_margin": multilabel_soft_margin_grad,
    # masks (per row: the row's own loss, whatever the dataset-level average)
    "dice": _mask_grad("dice"),
    "iou": _mask_grad("iou"),
    "tversky": _mask_grad("tversky"),
    "focal_tversky": _mask_grad("focal_tversky"),
    # boxes, with respect to the predicted box in its box_format
    "box_iou": _box_grad("box_iou"),
    "giou": _box_grad("giou"),
    "diou": _box_grad("diou"),
    "ciou": _box_grad("ciou"),
    # embeddings (with respect to the first input role: pred, or triplet's anchor)
    "cosine_embedding": cosine_embedding_grad,
    "margin_ranking": margin_ranking_grad,
    "triplet": triplet_grad,
}


def attach() -> None:
    """Set ``grad`` on every registered built-in loss listed in GRADS (a loss that already has one keeps it)."""
    for name, g in GRADS.items():
        spec = _REGISTRY.get(name)
        if spec is not None and spec.grad is None and not spec.plugin:
            register(dataclasses.replace(spec, grad=g), replace=True)


attach()
