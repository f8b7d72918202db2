"""Regression losses: one float64 value per sample from predictions and targets.

Each function is pure and keyword-only in its hyperparameters; reduction happens in
:mod:`lossctl.state`.  Each is registered with the reference implementation it reproduces, and the
parity suite (tests/test_parity_regression.py) checks it against that library.

Shapes.  ``pred`` and ``target`` are (n,) or, for multi-output regression (several columns or a list
column), (n, k) of the same shape -- never broadcast.  For (n, k) the per-sample value is the mean over
the k outputs, so the weighted mean over rows equals scikit-learn's ``multioutput='uniform_average'``
(the mean over outputs of per-output weighted means) and, unweighted, torch's mean over all elements.
The root losses (rmse, rmsle) follow scikit-learn: the root of each output's mean, then the mean over
outputs (their ``finalize`` keeps one sum per output).

Validation.  The ``prepare`` hooks (``_prepare``) check shapes and the domain each loss needs (Poisson
and gamma deviances need positive predictions, msle values above -1, gaussian_nll non-negative
variances) and raise ``ctx.error(role, row, message)`` -- an input error naming file, column and row --
where the reference library would raise or return NaN.  The functions assume prepared input.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import UsageError
from ..registry import LossSpec, Param, register
from ._numerics import as_f64, xlogy

# scikit-learn's mean_absolute_percentage_error divides by max(|y|, float64 machine epsilon).
F64_EPS = float(np.finfo(np.float64).eps)
LOG2 = math.log(2.0)
HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
TWO_PI = 2.0 * math.pi

_MULTI_NOTE = "(n, k) multi-output inputs: the per-row value is the mean over the k outputs"


def _rowmean(l: np.ndarray) -> np.ndarray:
    """Per-sample value of an elementwise loss: itself for (n,), the mean over outputs for (n, k)."""
    return l if l.ndim == 1 else np.mean(l, axis=1)


def _diff(pred, target) -> np.ndarray:
    return as_f64(pred) - as_f64(target)


def _out(d: np.ndarray, own: bool):
    """Where an elementwise step on the residual ``d`` may write: into ``d`` itself when the caller owns it
    (a fresh pred - target), else a new array (a residual shared by several losses of one run)."""
    return d if own else None


# Residual forms.  Losses of the residual d = pred - target alone also register ``extra["residual"]``:
# g(d, own=False) gives fn(pred, target) bit for bit (fn is g on its own fresh d, own=True).  When a run
# has several of them, the engine computes d once per batch and hands every loss the same read-only d.
def _sq_of(d: np.ndarray, own: bool = False) -> np.ndarray:
    return _rowmean(np.multiply(d, d, out=_out(d, own)))


def _abs_of(d: np.ndarray, own: bool = False) -> np.ndarray:
    return _rowmean(np.abs(d, out=_out(d, own)))


def _root_sq_of(d: np.ndarray, own: bool = False) -> np.ndarray:
    return np.abs(d, out=_out(d, own)) if d.ndim == 1 else np.sqrt(np.mean(d * d, axis=1))


def _half_sq_of(d: np.ndarray, own: bool = False) -> np.ndarray:
    sq = np.multiply(d, d, out=_out(d, own))
    return _rowmean(np.multiply(sq, 0.5, out=sq))  # = 0.5 * (d * d)


def _huber_of(d: np.ndarray, own: bool = False, *, delta: float = 1.0) -> np.ndarray:
    a = np.abs(d, out=_out(d, own))
    # Without a data-dependent select (np.where ran 68 ms per 10M rows of mixed branches, this 25 ms):
    # m = min(|d|, delta), l = m (|d| - m/2) is 0.5 d^2 = (0.5 |d|) |d| below delta (|d| - |d|/2 is exact)
    # and delta (|d| - 0.5 delta) from delta on, the same roundings as the two branches; NaN stays NaN.
    m = np.minimum(a, delta)
    h = np.multiply(m, 0.5)
    np.subtract(a, h, out=h)
    return _rowmean(np.multiply(m, h, out=h))


def _smooth_l1_of(d: np.ndarray, own: bool = False, *, beta: float = 1.0) -> np.ndarray:
    a = np.abs(d, out=_out(d, own))
    if beta == 0:  # torch calls l1_loss; the quadratic branch would divide by zero
        return _rowmean(a)
    return _rowmean(np.where(a < beta, 0.5 * a * a / beta, a - 0.5 * beta))


def _log_cosh_of(d: np.ndarray, own: bool = False) -> np.ndarray:
    a = np.abs(d, out=_out(d, own))
    s = np.sinh(0.5 * np.minimum(a, 1.0))
    near = np.log1p(2.0 * (s * s))
    far = (a - LOG2) + np.log1p(np.exp(-2.0 * a))
    return _rowmean(np.where(a <= 1.0, near, far))


# -- squared and absolute errors ----------------------------------------------------------------------
def squared_error(pred, target) -> np.ndarray:
    """(pred - target)^2 per sample.

    Reference: torch.nn.MSELoss(reduction='none'); sklearn.metrics.mean_squared_error averages it.

    >>> squared_error([1.0, 2.0], [0.0, 4.0]).tolist()
    [1.0, 4.0]
    """
    return _sq_of(_diff(pred, target), own=True)  # a new array: squared in place (one temporary fewer)


def absolute_error(pred, target) -> np.ndarray:
    """|pred - target| per sample.

    Reference: torch.nn.L1Loss(reduction='none'); sklearn.metrics.mean_absolute_error averages it.

    >>> absolute_error([1.0, 2.0], [0.0, 4.0]).tolist()
    [1.0, 2.0]
    """
    return _abs_of(_diff(pred, target), own=True)


def root_squared_error(pred, target) -> np.ndarray:
    """Per-sample value shown for rmse: sqrt((pred - target)^2) = |pred - target|.

    For (n, k) it is the root of the row's mean squared error over the outputs.  The reduced rmse is
    not the mean of these values but sqrt(sum(w e^2) / sum(w)) (see :func:`_root_mean_terms`).

    Reference: sklearn.metrics.root_mean_squared_error (which has no per-sample form).

    >>> root_squared_error([1.0, 2.0], [0.0, 4.0]).tolist()
    [1.0, 2.0]
    """
    return _root_sq_of(_diff(pred, target), own=True)


def half_squared_error(pred, target) -> np.ndarray:
    """0.5 (pred - target)^2 per sample: the quadratic cost, whose derivative is the plain residual.

    Reference: optax.losses.l2_loss; equals 0.5 * torch.nn.MSELoss(reduction='none').

    >>> half_squared_error([1.0, 2.0], [0.0, 4.0]).tolist()
    [0.5, 2.0]
    """
    return _half_sq_of(_diff(pred, target), own=True)


def _root_mean_terms(transform=None):
    """``terms`` for a root-mean loss: one summed squared error per output column, plus the row count."""
    def terms(pred, target, **_params):
        p, t = as_f64(pred), as_f64(target)
        if transform is not None:
            p, t = transform(p), transform(t)
        return _root_mean_terms_of(p - t)
    return terms


def _root_mean_terms_of(d: np.ndarray, **_params) -> dict:
    """rmse's terms from the residual d (read only)."""
    sq = d * d
    out = {"norm": 1.0}
    if sq.ndim == 1:
        out["se_0"] = sq
    else:
        for j in range(sq.shape[1]):
            out[f"se_{j}"] = sq[:, j]
    return out


def _root_mean_finalize(sums, params) -> float:
    """Mean over outputs of sqrt(sum(w e_j^2) / sum(w)) -- scikit-learn's multioutput='uniform_average'."""
    w = sums.get("norm", 0.0)
    keys = [k for k in sums if k.startswith("se_")]
    if w == 0 or not keys:
        return math.nan
    # a sum of squares is >= 0; max() only guards the last-bit sign of a compensated total of zeros
    return math.fsum(math.sqrt(max(sums[k], 0.0) / w) for k in keys) / len(keys)


# -- robust losses ---------------------------------------------------------------------------------------
def huber(pred, target, *, delta: float = 1.0) -> np.ndarray:
    """Huber loss: quadratic within delta of the target, linear beyond.

    l = 0.5 d^2 if |d| < delta else delta (|d| - 0.5 delta), d = pred - target.  The two branches are
    equal at |d| = delta (also in floating point: 0.5 d d and delta (0.5 delta) round alike), so it does
    not matter that torch puts the boundary in the linear branch and Keras in the quadratic one.

    Reference: torch.nn.HuberLoss(delta=delta, reduction='none'); keras.losses.Huber; optax.losses.huber_loss.

    >>> huber([0.5, 3.0], [0.0, 0.0]).tolist()
    [0.125, 2.5]
    """
    return _huber_of(_diff(pred, target), own=True, delta=delta)


def smooth_l1(pred, target, *, beta: float = 1.0) -> np.ndarray:
    """Smooth L1 loss: 0.5 d^2 / beta if |d| < beta else |d| - 0.5 beta; beta = 0 is plain L1.

    huber(delta) = beta * smooth_l1(beta) when delta = beta.

    Reference: torch.nn.SmoothL1Loss(beta=beta, reduction='none').

    >>> smooth_l1([0.5, 3.0], [0.0, 0.0]).tolist()
    [0.125, 2.5]
    >>> smooth_l1([0.5, 3.0], [0.0, 0.0], beta=0.0).tolist()
    [0.5, 3.0]
    """
    return _smooth_l1_of(_diff(pred, target), own=True, beta=beta)


def log_cosh(pred, target) -> np.ndarray:
    """log(cosh(pred - target)): about d^2/2 for small d and |d| - log 2 for large d.

    cosh overflows for |d| > 710 and log(cosh(d)) loses every digit for |d| < 1e-8 (cosh rounds to 1), so
    it is evaluated as log1p(2 sinh(|d|/2)^2) for |d| <= 1 (cosh d - 1 = 2 sinh^2(d/2) without
    cancellation) and as (|d| - log 2) + log1p(exp(-2|d|)) beyond (= |d| + softplus(-2|d|) - log 2, the
    Keras / optax form; exp cannot overflow).  Both are accurate to a few ulp; the Keras / optax formula
    alone returns rounding noise instead of d^2/2 for |d| below ~1e-8.

    Reference: keras.losses.log_cosh / optax.losses.log_cosh (no torch or sklearn function); checked
    against a 50-digit mpmath evaluation of log(cosh(d)).

    >>> log_cosh([0.0, 1e-9, 1000.0], [0.0, 0.0, 0.0]).tolist()
    [0.0, 5e-19, 999.3068528194401]
    """
    return _log_cosh_of(_diff(pred, target), own=True)


def pinball(pred, target, *, alpha: float = 0.5) -> np.ndarray:
    """Pinball (quantile) loss of the alpha-quantile.

    l = alpha (y - yhat) if y >= yhat else (1 - alpha)(yhat - y).  alpha = 0.5 is half the absolute error.

    Reference: sklearn.metrics.mean_pinball_loss(alpha=alpha) (its per-sample terms).

    >>> pinball([0.0, 2.0], [1.0, 1.0], alpha=0.9).round(12).tolist()
    [0.9, 0.1]
    """
    diff = as_f64(target) - as_f64(pred)
    # sklearn: alpha*sign*diff - (1-alpha)*(1-sign)*diff, sign = (diff >= 0); the same products here
    return _rowmean(np.where(diff >= 0, alpha * diff, -(1.0 - alpha) * diff))


# -- likelihood losses -----------------------------------------------------------------------------------
def poisson_nll(pred, target, *, log_input: bool = True, full: bool = False, eps: float = 1e-8) -> np.ndarray:
    """Poisson negative log-likelihood (up to log y! unless ``full``), torch PoissonNLLLoss semantics.

    log_input=True (pred is the log-rate x): l = exp(x) - y x.  log_input=False (pred is the rate):
    l = x - y log(x + eps).  full=True adds the Stirling approximation of log(y!),
    y log y - y + 0.5 log(2 pi y), only where y > 1 (0 elsewhere).  Can be negative.

    Reference: torch.nn.PoissonNLLLoss(log_input, full, eps, reduction='none').  Keras' Poisson loss is
    log_input=False with eps=1e-7.

    >>> poisson_nll([0.0, 1.0], [1.0, 2.0]).round(6).tolist()
    [1.0, 0.718282]
    """
    x = as_f64(pred)
    y = as_f64(target)
    if log_input:
        l = np.exp(x) - y * x  # exp overflows to inf for x > 709.78, as torch
    else:
        l = x - y * np.log(x + eps)
    if full:
        ys = np.where(y > 1, y, 2.0)  # the term is masked where y <= 1; 2.0 keeps log() quiet there
        stirling = ys * np.log(ys) - ys + 0.5 * np.log(TWO_PI * ys)
        l = l + np.where(y > 1, stirling, 0.0)
    return _rowmean(l)


def gaussian_nll(pred, target, var, *, full: bool = False, eps: float = 1e-6) -> np.ndarray:
    """Gaussian negative log-likelihood with a predicted variance, torch GaussianNLLLoss semantics.

    l = 0.5 (log v + (pred - target)^2 / v), v = max(var, eps); full=True adds 0.5 log(2 pi).
    var is (n,) or (n, k) for (n, k) predictions ((n,) is one variance per row for all outputs, torch's
    homoscedastic case).  Negative variances are rejected by the prepare hook (torch raises).  Can be
    negative.

    Reference: torch.nn.GaussianNLLLoss(full, eps, reduction='none').

    >>> gaussian_nll([1.0, 0.0], [0.0, 0.0], [1.0, 0.0]).round(6).tolist()
    [0.5, -6.907755]
    """
    x = as_f64(pred)
    v = as_f64(var)
    if x.ndim == 2 and v.ndim == 1:
        v = v[:, None]
    v = np.maximum(v, eps)
    d = x - as_f64(target)
    l = 0.5 * (np.log(v) + d * d / v)
    if full:
        l = l + HALF_LOG_2PI
    return _rowmean(l)


def tweedie_deviance(pred, target, *, power: float = 0.0) -> np.ndarray:
    """Unit Tweedie deviance with power p, scikit-learn mean_tweedie_deviance semantics (per sample).

    p = 0: (y - mu)^2 (normal); p = 1: 2 (y log(y/mu) - y + mu) (Poisson); p = 2: 2 (log(mu/y) + y/mu - 1)
    (gamma); otherwise 2 (max(y,0)^(2-p) / ((1-p)(2-p)) - y mu^(1-p) / (1-p) + mu^(2-p) / (2-p))
    (the max only for p < 0).  Not defined for 0 < p < 1.  Domains (checked by prepare, as sklearn):
    p < 0: mu > 0; 1 <= p < 2: y >= 0, mu > 0; p >= 2: y > 0, mu > 0.

    Numerics: the same expressions as scikit-learn, so the same rounding.  They subtract terms of size
    ~y^(2-p) and so carry ~1e-16 y^(2-p) absolute error when mu is close to y; a value that rounds below
    zero is returned as 0 (a deviance is >= 0).

    Reference: sklearn.metrics.mean_tweedie_deviance(power=power); mean_poisson_deviance (p=1),
    mean_gamma_deviance (p=2).

    >>> tweedie_deviance([2.0, 1.0], [1.0, 1.0], power=1).round(6).tolist()
    [0.613706, 0.0]
    """
    mu = as_f64(pred)
    y = as_f64(target)
    p = float(power)
    if p == 0:
        dev = (y - mu) ** 2
    elif p == 1:
        dev = 2 * (xlogy(y, y / mu) - y + mu)
    elif p == 2:
        dev = 2 * (np.log(mu / y) + y / mu - 1)
    else:
        yp = np.where(y > 0, y, 0.0) if p < 0 else y
        dev = 2 * (np.power(yp, 2 - p) / ((1 - p) * (2 - p))
                   - y * np.power(mu, 1 - p) / (1 - p)
                   + np.power(mu, 2 - p) / (2 - p))
    return _rowmean(np.maximum(dev, 0.0))


def poisson_deviance(pred, target) -> np.ndarray:
    """Poisson deviance 2 (y log(y / mu) - y + mu) with 0 log 0 = 0; mu = pred > 0, y >= 0.

    Reference: sklearn.metrics.mean_poisson_deviance (its per-sample terms).

    >>> poisson_deviance([2.0, 1.0], [1.0, 0.0]).round(6).tolist()
    [0.613706, 2.0]
    """
    return tweedie_deviance(pred, target, power=1.0)


def gamma_deviance(pred, target) -> np.ndarray:
    """Gamma deviance 2 (log(mu / y) + y / mu - 1); mu = pred > 0, y > 0.  Scale-free: depends on y / mu.

    Reference: sklearn.metrics.mean_gamma_deviance (its per-sample terms).

    >>> gamma_deviance([2.0, 20.0], [1.0, 10.0]).round(6).tolist()
    [0.386294, 0.386294]
    """
    return tweedie_deviance(pred, target, power=2.0)


# -- relative and log-scale errors ----------------------------------------------------------------------
def squared_log_error(pred, target) -> np.ndarray:
    """(log(1 + pred) - log(1 + target))^2 per sample (log1p, so exact for small values); values > -1.

    Reference: sklearn.metrics.mean_squared_log_error (its per-sample terms).

    >>> squared_log_error([math.e - 1, 0.0], [0.0, 0.0]).round(12).tolist()
    [1.0, 0.0]
    """
    d = np.log1p(as_f64(pred)) - np.log1p(as_f64(target))
    return _rowmean(d * d)


def root_squared_log_error(pred, target) -> np.ndarray:
    """Per-sample value shown for rmsle: |log1p(pred) - log1p(target)| (for (n, k) the root of the row's
    mean over outputs).  The reduced rmsle is sqrt(sum(w e^2) / sum(w)), not the mean of these values.

    Reference: sklearn.metrics.root_mean_squared_log_error (which has no per-sample form).

    >>> root_squared_log_error([math.e - 1], [0.0]).round(12).tolist()
    [1.0]
    """
    return root_squared_error(np.log1p(as_f64(pred)), np.log1p(as_f64(target)))


def absolute_percentage_error(pred, target, *, eps: float = F64_EPS, percent: bool = False) -> np.ndarray:
    """|pred - target| / max(|target|, eps): a fraction (0.05 is 5 %), times 100 with ``percent``.

    A zero target gives |pred| / eps (4.5e15 |pred|), as scikit-learn; such rows dominate any mean.

    Reference: sklearn.metrics.mean_absolute_percentage_error (fraction, eps = float64 machine epsilon);
    keras.losses.MeanAbsolutePercentageError is 100x it with eps = 1e-7 (percent=true, eps=1e-7).

    >>> absolute_percentage_error([110.0, 0.0], [100.0, 0.0]).round(12).tolist()
    [0.1, 0.0]
    """
    y = as_f64(target)
    l = np.abs(as_f64(pred) - y) / np.maximum(np.abs(y), eps)
    if percent:
        l = 100.0 * l
    return _rowmean(l)


def symmetric_absolute_percentage_error(pred, target, *, eps: float = F64_EPS) -> np.ndarray:
    """2 |pred - target| / max(|pred| + |target|, eps), in [0, 2]; 0 where both are 0.

    Conventions differ: this is the torchmetrics one (denominator (|y| + |yhat|)/2, so the range is
    [0, 2], or [0, 200] % -- torchmetrics clamps the denominator at 1.17e-6, lossctl at ``eps``); some
    texts use |y| + |yhat| without the factor 2 (range [0, 1]) or signed y + yhat.

    Reference: torchmetrics.regression.SymmetricMeanAbsolutePercentageError (formula; no torch or sklearn
    function).

    >>> symmetric_absolute_percentage_error([110.0, 0.0, 1.0], [90.0, 0.0, 0.0]).round(12).tolist()
    [0.2, 0.0, 2.0]
    """
    x = as_f64(pred)
    y = as_f64(target)
    return _rowmean(2.0 * np.abs(x - y) / np.maximum(np.abs(x) + np.abs(y), eps))


def bias_error(pred, target) -> np.ndarray:
    """Signed error pred - target: positive where the model over-predicts.  Its mean is the bias.

    Reference: numpy.average(pred - target, weights=w) (no torch or sklearn function; some texts define
    mean bias error as target - pred, the opposite sign).

    >>> bias_error([1.0, 2.0], [0.0, 4.0]).tolist()
    [1.0, -2.0]
    """
    return _rowmean(_diff(pred, target))


# -- validation (prepare hooks) ------------------------------------------------------------------------
def _num(v: float) -> str:
    v = float(v)
    return str(int(v)) if v.is_integer() and abs(v) < 1e15 else repr(v)


def _width(a: np.ndarray) -> int:
    return 1 if a.ndim == 1 else a.shape[1]


def _column(a: np.ndarray) -> np.ndarray:
    """(n, 1) -> (n,): a one-wide list column is one output."""
    return a[:, 0] if a.ndim == 2 and a.shape[1] == 1 else a


def _reject(ctx, role: str, x: np.ndarray, bad: np.ndarray, rule: str) -> None:
    """Raise an input error at the first row where ``bad`` holds, quoting the value."""
    if bad.any():
        rows = bad if bad.ndim == 1 else bad.any(axis=1)
        i = int(np.argmax(rows))
        v = x[i] if x.ndim == 1 else x[i][bad[i]][0]
        raise ctx.error(role, i, f"{'prediction' if role == 'pred' else role} {_num(v)} {rule}")


def _prepare(loss: str, *, checks=None, extra_roles: tuple[str, ...] = ()):
    """A prepare hook: pred / target of one shape ((n, 1) taken as (n,)), then ``checks(arrays, params, ctx)``."""
    def prepare(arrays, params, ctx):
        out = dict(arrays)
        pred = _column(out["pred"])
        target = _column(out["target"])
        if pred.shape != target.shape:
            raise ctx.error("target", None,
                            f"{_width(target)} target column(s) for {_width(pred)} prediction column(s); {loss} "
                            f"compares them column by column, so give one target column per prediction column")
        out["pred"], out["target"] = pred, target
        for role in extra_roles:
            out[role] = _column(out[role])
        if checks is not None:
            checks(out, params, ctx)
        return out
    return prepare


def _check_tweedie(arrays, params, ctx, loss: str = "tweedie_deviance") -> None:
    p = float(params.get("power", 0.0))
    y, mu = arrays["target"], arrays["pred"]
    what = loss if loss != "tweedie_deviance" else f"tweedie_deviance with power={_num(p)}"
    if p >= 2:
        _reject(ctx, "target", y, y <= 0, f"is not > 0; {what} needs positive targets (sklearn raises too); "
                                          f"drop those rows or use a power between 1 and 2")
    elif p >= 1:
        _reject(ctx, "target", y, y < 0, f"is negative; {what} needs targets >= 0 (counts or amounts)")
    if p != 0:
        _reject(ctx, "pred", mu, mu <= 0, f"is not > 0; {what} needs predicted means > 0 (sklearn raises too); "
                                          f"predict a positive mean (e.g. exp of a log-link output)")


def _check_poisson_deviance(arrays, params, ctx) -> None:
    _check_tweedie(arrays, {"power": 1.0}, ctx, "poisson_deviance")


def _check_gamma_deviance(arrays, params, ctx) -> None:
    _check_tweedie(arrays, {"power": 2.0}, ctx, "gamma_deviance")


def _check_poisson_nll(arrays, params, ctx) -> None:
    y = arrays["target"]
    _reject(ctx, "target", y, y < 0, "is negative; poisson_nll needs targets >= 0 (counts)")
    if not params.get("log_input", True):
        x = arrays["pred"]
        _reject(ctx, "pred", x, x < 0, "is negative; with log_input=false the predictions are Poisson rates "
                                       ">= 0 (pass log-rates with log_input=true)")


def _check_log1p(loss: str):
    def check(arrays, params, ctx):
        for role in ("target", "pred"):
            x = arrays[role]
            _reject(ctx, role, x, x <= -1, f"is <= -1; {loss} takes log(1 + value), so values must be > -1 "
                                           f"(sklearn raises too)")
    return check


def _check_gaussian(arrays, params, ctx) -> None:
    pred, var = arrays["pred"], arrays["var"]
    if var.shape != pred.shape and not (pred.ndim == 2 and var.ndim == 1):
        raise ctx.error("var", None, f"{_width(var)} variance column(s) for {_width(pred)} prediction column(s); "
                                     f"give one variance per prediction column, or one per row")
    _reject(ctx, "var", var, var < 0, "is negative; a variance must be >= 0 (torch GaussianNLLLoss raises); "
                                      "values below eps are clamped to eps")


def _check_tweedie_power(params) -> None:
    p = params.get("power", 0.0)
    if 0 < p < 1:
        raise UsageError(f"parameter 'power' of tweedie_deviance must be <= 0 or >= 1 (the Tweedie deviance is "
                         f"not defined in between), got {_num(p)}")


# -- registry entries ------------------------------------------------------------------------------------
_EX = "lossctl eval sample_data/regression.csv -l "
_WMEAN = "mean = sum(w*l)/sum(w) (sklearn sample_weight; torch 'mean' when unweighted); " + _MULTI_NOTE
_ROOT_NOTE = ("mean = sqrt(sum(w*e^2)/sum(w)) per output, then averaged over outputs (sklearn "
              "multioutput='uniform_average'); no sum reduction; -r none shows |e| per row")

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
    reduction_note=_WMEAN,
    extra={"prepare": _prepare("mse"), "residual": _sq_of},
))

register(LossSpec(
    name="mae", aliases=("l1", "mean_absolute_error", "absolute_error"), kind="regression",
    fn=absolute_error,
    summary="Mean absolute error: the Laplace negative log-likelihood up to constants.",
    formula="l = |yhat - y|", latex=r"\ell = |\hat y - y|",
    reference="torch.nn.L1Loss; sklearn.metrics.mean_absolute_error",
    when="Robust to outliers: it grows linearly, so one large error cannot dominate the mean as it does "
         "for mse; minimised by the conditional median (Laplace errors). Its gradient is +-1 whatever the "
         "error size; prefer huber when small errors should count quadratically.",
    example="lossctl eval sample_data/regression.csv -l mae",
    related=("mse", "huber", "quantile"),
    reduction_note=_WMEAN,
    extra={"prepare": _prepare("mae"), "residual": _abs_of},
))

register(LossSpec(
    name="rmse", aliases=("root_mean_squared_error",), kind="regression",
    fn=root_squared_error,
    terms=_root_mean_terms(), finalize=_root_mean_finalize, post_name="sqrt",
    summary="Root mean squared error: the square root of mse, in the units of the target.",
    formula="RMSE = sqrt(sum_i w_i (yhat_i - y_i)^2 / sum_i w_i); per row |yhat - y|",
    latex=r"\mathrm{RMSE} = \sqrt{\frac{\sum_i w_i (\hat y_i - y_i)^2}{\sum_i w_i}}",
    reference="sklearn.metrics.root_mean_squared_error",
    when="Reporting a typical error size in the target's units (same ranking as mse). Not a per-sample "
         "mean, so it has no sum; -r none shows |e|. Multi-output: the mean of per-output RMSEs (sklearn).",
    example=_EX + "rmse",
    related=("mse", "mae", "rmsle"),
    reduction_note=_ROOT_NOTE,
    extra={"prepare": _prepare("rmse"), "residual": _root_sq_of, "residual_terms": _root_mean_terms_of},
))

register(LossSpec(
    name="quadratic", aliases=("quadratic_cost", "half_mse", "half_squared_error"), kind="regression",
    fn=half_squared_error,
    summary="Half squared error 0.5 (yhat - y)^2 (optax l2_loss): its gradient is the residual.",
    formula="l = 0.5 (yhat - y)^2", latex=r"\ell = \tfrac12 (\hat y - y)^2",
    reference="optax.losses.l2_loss (= 0.5 * torch.nn.MSELoss)",
    when="Matching training code that minimises the quadratic cost 1/2 (yhat - y)^2 (optax l2_loss, "
         "textbook least squares); exactly half of mse. Note optax's l2_loss is this, not mse.",
    example=_EX + "quadratic",
    related=("mse", "huber"),
    reduction_note=_WMEAN,
    extra={"prepare": _prepare("quadratic"), "residual": _half_sq_of},
))

register(LossSpec(
    name="huber", aliases=("huber_loss", "huberloss"), kind="regression", fn=huber,
    params=(Param("delta", float, 1.0, "residual size where the loss turns from quadratic to linear "
                  "(in target units)", low=0.0, low_open=True),),
    summary="Huber loss: squared error for small residuals, absolute error (scaled by delta) for large.",
    formula="l = 0.5 d^2 if |d| < delta else delta (|d| - 0.5 delta), d = yhat - y",
    latex=r"\ell = \begin{cases} \tfrac12 d^2 & |d| < \delta \\ \delta(|d| - \tfrac12\delta) & \text{otherwise}"
          r"\end{cases},\quad d = \hat y - y",
    reference="torch.nn.HuberLoss",
    when="Regression with some outliers: mse-like near the target, mae-like (slope delta) beyond delta. "
         "Pick delta around the noise scale of the inliers. Equals keras Huber and optax huber_loss; "
         "delta * smooth_l1(beta=delta).",
    example=_EX + "huber:delta=0.5",
    related=("smooth_l1", "mae", "mse", "log_cosh"),
    reduction_note=_WMEAN,
    extra={"prepare": _prepare("huber"), "residual": _huber_of},
))

register(LossSpec(
    name="smooth_l1", aliases=("smoothl1", "smooth_l1_loss", "smoothl1loss"), kind="regression", fn=smooth_l1,
    params=(Param("beta", float, 1.0, "residual size where the loss turns from quadratic to linear; 0 gives "
                  "plain L1", low=0.0),),
    summary="Smooth L1 loss: 0.5 d^2/beta below beta, |d| - 0.5 beta above (Fast R-CNN box regression).",
    formula="l = 0.5 d^2 / beta if |d| < beta else |d| - 0.5 beta; beta = 0: |d|",
    latex=r"\ell = \begin{cases} \tfrac{1}{2\beta} d^2 & |d| < \beta \\ |d| - \tfrac12\beta & \text{otherwise}"
          r"\end{cases}",
    reference="torch.nn.SmoothL1Loss",
    when="Like huber but with slope 1 in the linear part, so the outlier penalty does not scale with beta "
         "(box-regression heads, Fast R-CNN). beta -> 0 approaches mae; huber(delta) = delta * smooth_l1(delta).",
    example=_EX + "smooth_l1:beta=0.2",
    related=("huber", "mae"),
    reduction_note=_WMEAN,
    extra={"prepare": _prepare("smooth_l1"), "residual": _smooth_l1_of},
))

register(LossSpec(
    name="log_cosh", aliases=("logcosh", "log_cosh_loss"), kind="regression", fn=log_cosh,
    summary="log(cosh(yhat - y)): smooth, about d^2/2 near zero and |d| - log 2 far out.",
    formula="l = log(cosh(yhat - y))",
    latex=r"\ell = \log\cosh(\hat y - y)",
    reference="keras.losses.log_cosh; optax.losses.log_cosh",
    when="A twice-differentiable alternative to huber with a fixed transition at |d| ~ 1 (scale targets "
         "so that 1 is a typical residual). Computed without overflow for any residual and with full "
         "relative accuracy for tiny ones.",
    example=_EX + "log_cosh",
    related=("huber", "smooth_l1", "mse"),
    reduction_note=_WMEAN,
    extra={"prepare": _prepare("log_cosh"), "residual": _log_cosh_of},
))

register(LossSpec(
    name="quantile", aliases=("pinball", "pinball_loss", "mean_pinball_loss", "quantile_loss"),
    kind="regression", fn=pinball,
    params=(Param("alpha", float, 0.5, "the quantile predicted: under-prediction costs alpha, over-prediction "
                  "1 - alpha per unit", low=0.0, high=1.0),),
    summary="Pinball (quantile) loss: the proper loss for a predicted alpha-quantile.",
    formula="l = alpha max(y - yhat, 0) + (1 - alpha) max(yhat - y, 0)",
    latex=r"\ell = \alpha \max(y - \hat y, 0) + (1 - \alpha)\max(\hat y - y, 0)",
    reference="sklearn.metrics.mean_pinball_loss",
    when="Evaluating quantile forecasts / prediction intervals: score the 0.9-quantile column with "
         "alpha=0.9. alpha=0.5 is half the mae.",
    example=_EX + "quantile:alpha=0.9",
    related=("mae",),
    reduction_note=_WMEAN,
    extra={"prepare": _prepare("quantile")},
))

register(LossSpec(
    name="poisson_nll", aliases=("poisson_nll_loss", "poissonnllloss"), kind="regression",
    fn=poisson_nll, nonnegative=False,
    params=(
        Param("log_input", bool, True, "true: predictions are log-rates (exp(x) - y x); false: rates "
              "(x - y log(x + eps))"),
        Param("full", bool, False, "add the Stirling term y log y - y + 0.5 log(2 pi y) where y > 1"),
        Param("eps", float, 1e-8, "added to the rate inside the log when log_input=false", low=0.0, low_open=True),
    ),
    summary="Poisson negative log-likelihood for count targets (torch PoissonNLLLoss).",
    formula="l = exp(x) - y x (log_input) | x - y log(x + eps); full: + y log y - y + 0.5 log(2 pi y) for y > 1",
    latex=r"\ell = e^{x} - y x \;\;\text{or}\;\; x - y\log(x + \epsilon)",
    reference="torch.nn.PoissonNLLLoss",
    when="Count targets (events, visits, claims) with a Poisson model. Without full the log(y!) constant "
         "is dropped, so values can be negative and only differences between models mean something; use "
         "poisson_deviance for a 0-at-perfect measure. Keras' Poisson loss is log_input=false, eps=1e-7. "
         "Targets must be >= 0.",
    example=_EX + "poisson_nll:log_input=false",
    related=("poisson_deviance", "tweedie_deviance", "gaussian_nll"),
    reduction_note=_WMEAN,
    extra={"prepare": _prepare("poisson_nll", checks=_check_poisson_nll)},
))

register(LossSpec(
    name="poisson_deviance", aliases=("mean_poisson_deviance",), kind="regression", fn=poisson_deviance,
    summary="Poisson deviance: twice the log-likelihood ratio to the saturated model; 0 when yhat = y.",
    formula="l = 2 (y log(y / yhat) - y + yhat), 0 log 0 = 0",
    latex=r"\ell = 2\left(y \log\frac{y}{\hat y} - y + \hat y\right)",
    reference="sklearn.metrics.mean_poisson_deviance",
    when="Counts or non-negative amounts with variance proportional to the mean (Poisson GLMs, "
         "HistGradientBoosting loss='poisson'). Predictions must be > 0, targets >= 0.",
    example=_EX + "poisson_deviance",
    related=("poisson_nll", "tweedie_deviance", "gamma_deviance"),
    reduction_note=_WMEAN,
    extra={"prepare": _prepare("poisson_deviance", checks=_check_poisson_deviance)},
))

register(LossSpec(
    name="gamma_deviance", aliases=("mean_gamma_deviance",), kind="regression", fn=gamma_deviance,
    summary="Gamma deviance: a scale-free deviance for positive targets (depends on y / yhat only).",
    formula="l = 2 (log(yhat / y) + y / yhat - 1)",
    latex=r"\ell = 2\left(\log\frac{\hat y}{y} + \frac{y}{\hat y} - 1\right)",
    reference="sklearn.metrics.mean_gamma_deviance",
    when="Positive amounts whose spread grows with the mean (claim sizes, durations, prices): an error "
         "of 10 % costs the same at any scale. Targets and predictions must be > 0.",
    example=_EX + "gamma_deviance",
    related=("tweedie_deviance", "poisson_deviance", "msle"),
    reduction_note=_WMEAN,
    extra={"prepare": _prepare("gamma_deviance", checks=_check_gamma_deviance)},
))

register(LossSpec(
    name="tweedie_deviance", aliases=("tweedie", "mean_tweedie_deviance"), kind="regression",
    fn=tweedie_deviance,
    params=(Param("power", float, 0.0, "Tweedie power p <= 0 or >= 1: 0 normal (= mse), 1 Poisson, "
                  "(1, 2) compound Poisson-gamma, 2 gamma, 3 inverse Gaussian"),),
    summary="Tweedie deviance with power p: one family covering mse (0), Poisson (1), gamma (2) and between.",
    formula="l = 2 (max(y,0)^(2-p) / ((1-p)(2-p)) - y yhat^(1-p) / (1-p) + yhat^(2-p) / (2-p)); "
            "p = 0, 1, 2: the normal, Poisson and gamma limits",
    latex=r"\ell = 2\left(\frac{\max(y,0)^{2-p}}{(1-p)(2-p)} - \frac{y\,\hat y^{1-p}}{1-p} + "
          r"\frac{\hat y^{2-p}}{2-p}\right)",
    reference="sklearn.metrics.mean_tweedie_deviance",
    when="Insurance-style targets with exact zeros and a continuous positive part (1 < p < 2, e.g. 1.5), "
         "or to match a Tweedie GLM / gradient-boosting objective. Domain: p < 0 needs yhat > 0; "
         "1 <= p < 2 needs y >= 0, yhat > 0; p >= 2 needs y, yhat > 0.",
    example=_EX + "tweedie_deviance:power=1.5",
    related=("poisson_deviance", "gamma_deviance", "mse"),
    reduction_note=_WMEAN,
    extra={"prepare": _prepare("tweedie_deviance", checks=_check_tweedie), "check_params": _check_tweedie_power},
))

register(LossSpec(
    name="gaussian_nll", aliases=("gaussian_nll_loss", "gaussiannllloss"),
    kind="regression", fn=gaussian_nll, roles=("pred", "target", "var"), nonnegative=False,
    params=(
        Param("full", bool, False, "add the constant 0.5 log(2 pi) (the exact negative log-density)"),
        Param("eps", float, 1e-6, "variances below eps are clamped to eps", low=0.0, low_open=True),
    ),
    summary="Gaussian negative log-likelihood of the target under a predicted mean and variance.",
    formula="l = 0.5 (log max(var, eps) + (yhat - y)^2 / max(var, eps)) [+ 0.5 log(2 pi) if full]",
    latex=r"\ell = \tfrac12\left(\log v + \frac{(\hat y - y)^2}{v}\right),\ v = \max(\sigma^2, \epsilon)",
    reference="torch.nn.GaussianNLLLoss",
    when="Models that predict their own uncertainty (a variance column, --var): rewards calibrated "
         "variances, unlike mse. Values can be negative (small variances). Negative variances are an input "
         "error; variances below eps are clamped (torch).",
    example=_EX + "gaussian_nll --var var",
    related=("mse", "poisson_nll"),
    reduction_note=_WMEAN,
    extra={"prepare": _prepare("gaussian_nll", checks=_check_gaussian, extra_roles=("var",))},
))

register(LossSpec(
    name="msle", aliases=("mean_squared_log_error", "squared_log_error"), kind="regression",
    fn=squared_log_error,
    summary="Mean squared logarithmic error: mse of log(1 + value), i.e. of relative errors.",
    formula="l = (log(1 + yhat) - log(1 + y))^2",
    latex=r"\ell = \left(\log(1 + \hat y) - \log(1 + y)\right)^2",
    reference="sklearn.metrics.mean_squared_log_error",
    when="Non-negative targets spanning orders of magnitude (prices, counts) where relative error matters "
         "and under-prediction should cost a bit more than over-prediction. Values must be > -1.",
    example=_EX + "msle",
    related=("rmsle", "mse", "gamma_deviance"),
    reduction_note=_WMEAN,
    extra={"prepare": _prepare("msle", checks=_check_log1p("msle"))},
))

register(LossSpec(
    name="rmsle", aliases=("root_mean_squared_log_error",), kind="regression",
    fn=root_squared_log_error,
    terms=_root_mean_terms(np.log1p), finalize=_root_mean_finalize, post_name="sqrt",
    summary="Root mean squared logarithmic error: sqrt of msle.",
    formula="RMSLE = sqrt(sum_i w_i (log(1 + yhat_i) - log(1 + y_i))^2 / sum_i w_i)",
    latex=r"\mathrm{RMSLE} = \sqrt{\frac{\sum_i w_i (\log(1+\hat y_i) - \log(1+y_i))^2}{\sum_i w_i}}",
    reference="sklearn.metrics.root_mean_squared_log_error",
    when="As msle, reported on a log-ratio scale (RMSLE 0.1 is a typical error of about 10 %). "
         "Not a per-sample mean, so it has no sum. Values must be > -1.",
    example=_EX + "rmsle",
    related=("msle", "rmse"),
    reduction_note=_ROOT_NOTE.replace("|e|", "|log1p(yhat) - log1p(y)|"),
    extra={"prepare": _prepare("rmsle", checks=_check_log1p("rmsle"))},
))

register(LossSpec(
    name="mape", aliases=("mean_absolute_percentage_error",), kind="regression", fn=absolute_percentage_error,
    params=(
        Param("eps", float, F64_EPS, "lower bound of |y| in the denominator (sklearn: float64 machine "
              "epsilon; Keras: 1e-7)", low=0.0, low_open=True),
        Param("percent", bool, False, "multiply by 100 (Keras reports percent, sklearn a fraction)"),
    ),
    summary="Mean absolute percentage error, as a fraction (sklearn); percent=true for Keras' x100.",
    formula="l = |yhat - y| / max(|y|, eps) [x 100 if percent]",
    latex=r"\ell = \frac{|\hat y - y|}{\max(|y|, \epsilon)}",
    reference="sklearn.metrics.mean_absolute_percentage_error",
    when="Communicating relative error for targets far from zero (demand, revenue). A target of 0 gives "
         "|yhat|/eps (about 4.5e15 |yhat|) and dominates the mean; under-predictions cost at most 1 while "
         "over-predictions are unbounded. Consider smape or msle when targets reach zero.",
    example=_EX + "mape",
    related=("smape", "mae", "msle"),
    reduction_note=_WMEAN,
    extra={"prepare": _prepare("mape")},
))

register(LossSpec(
    name="smape", aliases=("symmetric_mape", "symmetric_mean_absolute_percentage_error"), kind="regression",
    fn=symmetric_absolute_percentage_error,
    params=(Param("eps", float, F64_EPS, "lower bound of |y| + |yhat| in the denominator (torchmetrics: "
                  "1.17e-6)", low=0.0, low_open=True),),
    summary="Symmetric MAPE: 2 |yhat - y| / (|y| + |yhat|), bounded in [0, 2] (torchmetrics convention).",
    formula="l = 2 |yhat - y| / max(|y| + |yhat|, eps)",
    latex=r"\ell = \frac{2|\hat y - y|}{\max(|y| + |\hat y|, \epsilon)}",
    reference="torchmetrics.regression.SymmetricMeanAbsolutePercentageError",
    when="A bounded relative error that tolerates zero targets (0 where both are 0, 2 where exactly one "
         "is). Conventions differ: this is torchmetrics' [0, 2] form; others divide by |y| + |yhat| "
         "without the 2 ([0, 1]).",
    example=_EX + "smape",
    related=("mape", "mae"),
    reduction_note=_WMEAN,
    extra={"prepare": _prepare("smape")},
))

register(LossSpec(
    name="mean_bias", aliases=("mbe", "mean_bias_error"), kind="regression", fn=bias_error,
    nonnegative=False,
    summary="Mean bias error: the signed mean of yhat - y (positive = over-prediction).",
    formula="l = yhat - y", latex=r"\ell = \hat y - y",
    reference="numpy.average(yhat - y, weights=w)",
    when="Checking systematic over- or under-prediction (forecast bias, calibration of a regression "
         "model's level). Errors of opposite sign cancel, so pair it with mae or rmse. Sign convention: "
         "yhat - y; some texts use y - yhat.",
    example=_EX + "mean_bias --by region",
    related=("mae", "rmse"),
    reduction_note=_WMEAN,
    extra={"prepare": _prepare("mean_bias")},
))
