"""Parity of every regression loss with the library it names: torch, scikit-learn (or mpmath / exact
rationals where no such library function exists).

For each registered regression loss, ``REFS`` says where its reference values come from.  The checks:

* per-sample values (``spec.fn`` after the loss's ``prepare`` hook) against the reference's unreduced
  values (torch ``reduction='none'``, scikit-learn's per-output ``multioutput='raw_values'`` on a 1 x n
  array, or one call per element);
* the weighted mean as lossctl reduces it (its ``terms`` / ``finalize`` through
  :class:`lossctl.state.SumState` and :func:`lossctl.api.finalize_value`) against scikit-learn with
  ``sample_weight`` (and ``multioutput='uniform_average'`` for (n, k) inputs) or, for torch losses,
  ``math.fsum(w * l) / math.fsum(w)`` of torch's per-element values;
* unweighted mean and sum against torch ``reduction='mean'`` / ``'sum'``;
* the same through the real pipeline (:func:`lossctl.api.evaluate` on a Parquet file, weights, -r none);
* input errors where the reference raises (prepare hooks), and the registry fields of every loss.

Inputs are hypothesis-generated float64 arrays in each loss's domain, plus explicit edge cases.
Tolerance: rtol 1e-12.  Where a formula subtracts terms (Poisson NLL exp(x) - y x, the deviances,
Gaussian NLL log v + d^2/v, a signed mean), two implementations of the same formula differ by a few ulp
of the *terms*, not of the result, so the tolerance is 1e-12 relative to the size of those terms
(``scale``); everywhere else it is relative to the value itself.
"""
from __future__ import annotations

import math
import shlex
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Callable

import mpmath  # shipped with torch (via sympy); a missing reference must fail, never skip
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from lossctl import api, registry
from lossctl.errors import InputError, UsageError
from lossctl.state import SumState

RTOL = 1e-12
F64_EPS = float(np.finfo(np.float64).eps)


# -- reference implementations ----------------------------------------------------------------------------
def _t(x) -> torch.Tensor:
    return torch.tensor(np.asarray(x, dtype=np.float64), dtype=torch.float64)


def _torch(fn: Callable, *roles: str, scale_by: float = 1.0, **fixed):
    """Reference from a torch.nn.functional loss: (arrays, params, reduction) -> ndarray / float."""
    def ref(a, params, reduction="none"):
        out = fn(*[_t(a[r]) for r in roles], reduction=reduction, **fixed, **params)
        return scale_by * out.detach().numpy() if reduction == "none" else scale_by * float(out)
    return ref


def _sk_elementwise(metric: Callable, factor: float = 1.0, **fixed):
    """Per-element values of a scikit-learn metric: one sample with n*k outputs, multioutput='raw_values'."""
    def ref(a, params):
        y, p = np.asarray(a["target"]), np.asarray(a["pred"])
        raw = metric(y.reshape(1, -1), p.reshape(1, -1), multioutput="raw_values", **fixed, **params)
        return factor * np.asarray(raw, dtype=np.float64).reshape(p.shape)
    return ref


def _sk_mean(metric: Callable, factor: float = 1.0, **fixed):
    def ref(a, params, w):
        return factor * metric(a["target"], a["pred"], sample_weight=w, **fixed, **params)
    return ref


def _sk_per_call(metric: Callable, **fixed):
    """Per-element values of a metric without multioutput support (the Tweedie family): one call each."""
    def ref(a, params):
        y, p = np.asarray(a["target"]), np.asarray(a["pred"])
        vals = [metric([yi], [pi], **fixed, **params) for yi, pi in zip(y.ravel(), p.ravel())]
        return np.array(vals, dtype=np.float64).reshape(p.shape)
    return ref


def _sk_mean_per_output(metric: Callable, **fixed):
    """Weighted mean per output column by the metric, averaged over columns (uniform_average)."""
    def ref(a, params, w):
        y, p = np.asarray(a["target"]), np.asarray(a["pred"])
        if y.ndim == 1:
            return metric(y, p, sample_weight=w, **fixed, **params)
        return math.fsum(metric(y[:, j], p[:, j], sample_weight=w, **fixed, **params)
                         for j in range(y.shape[1])) / y.shape[1]
    return ref


def _mp_log_cosh(a, params):
    d = np.asarray(a["pred"], dtype=np.float64) - np.asarray(a["target"], dtype=np.float64)
    vals = []
    for x in d.ravel():
        # cosh(d) - 1 ~ d^2/2: enough digits that 1 + d^2/2 does not round to 1 for tiny d
        digits = 50 + 2 * max(0, -int(math.floor(math.log10(abs(x))))) if x != 0 and math.isfinite(x) else 50
        with mpmath.workdps(digits):
            vals.append(float(mpmath.log(mpmath.cosh(mpmath.mpf(float(x))))))
    return np.array(vals).reshape(d.shape)


def _exact_smape(a, params):
    eps = Fraction(params.get("eps", F64_EPS))
    p, y = np.asarray(a["pred"]), np.asarray(a["target"])
    out = []
    for pi, yi in zip(p.ravel(), y.ravel()):
        fp, fy = Fraction(float(pi)), Fraction(float(yi))
        out.append(float(2 * abs(fp - fy) / max(abs(fp) + abs(fy), eps)))
    return np.array(out).reshape(p.shape)


def _signed_diff(a, params, reduction="none"):
    d = _t(a["pred"]) - _t(a["target"])
    return d.numpy() if reduction == "none" else float(getattr(torch, reduction)(d))


# magnitudes of the terms that cancel (per element), for the formulas that subtract
def _scale_poisson_nll(a, params):
    x, y = np.asarray(a["pred"]), np.asarray(a["target"])
    with np.errstate(all="ignore"):
        if params.get("log_input", True):
            s = np.exp(x) + np.abs(y * x)
        else:
            s = np.abs(x) + np.abs(y * np.log(x + params.get("eps", 1e-8)))
        if params.get("full", False):
            ys = np.maximum(y, 1.0)
            s = s + np.abs(ys * np.log(ys)) + ys + np.abs(0.5 * np.log(2 * np.pi * ys))
    return s


def _scale_gaussian(a, params):
    x, y, v = (np.asarray(a[r]) for r in ("pred", "target", "var"))
    if x.ndim == 2 and v.ndim == 1:
        v = v[:, None]
    v = np.maximum(v, params.get("eps", 1e-6))
    return np.abs(np.log(v)) + (x - y) ** 2 / v + 1.0


def _scale_tweedie(a, params):
    mu, y = np.asarray(a["pred"]), np.asarray(a["target"])
    p = float(params.get("power", 0.0))
    with np.errstate(all="ignore"):
        if p == 0:
            return np.zeros_like(mu)
        if p == 1:
            return 2 * (np.abs(y * np.log(np.where(y > 0, y / mu, 1.0))) + np.abs(y) + mu)
        if p == 2:
            return 2 * (np.abs(np.log(mu / y)) + np.abs(y / mu) + 1)
        yp = np.where(y > 0, y, 0.0) if p < 0 else y
        return 2 * (np.abs(yp ** (2 - p) / ((1 - p) * (2 - p))) + np.abs(y * mu ** (1 - p) / (1 - p))
                    + np.abs(mu ** (2 - p) / (2 - p)))


# -- domains -------------------------------------------------------------------------------------------
def _floats(lo, hi, **kw):
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False, **kw)


DOMAINS: dict[str, tuple[st.SearchStrategy, Callable[[np.ndarray], np.ndarray]]] = {
    "real": (_floats(-1e6, 1e6), lambda x: np.isfinite(x)),
    "pos": (_floats(1e-3, 1e4), lambda x: x > 0),
    "nonneg": (st.one_of(st.just(0.0), _floats(1e-3, 1e4)), lambda x: x >= 0),
    "count": (st.one_of(st.integers(0, 200).map(float), _floats(0.0, 200.0)), lambda x: x >= 0),
    "lograte": (_floats(-30.0, 30.0), lambda x: np.abs(x) <= 30),
    "gt-1": (_floats(-1.0, 1e6, exclude_min=True), lambda x: x > -1),
    "var": (st.one_of(st.just(0.0), _floats(0.0, 1e-5), _floats(0.0, 1e3)), lambda x: x >= 0),
}


def _numpy_sample(dom: str, rng: np.random.Generator, shape) -> np.ndarray:
    """Plain random data in a domain (for the pipeline tests)."""
    if dom == "real":
        return rng.normal(0, 3, shape)
    if dom == "pos":
        return rng.gamma(2.0, 1.5, shape) + 1e-3
    if dom in ("nonneg", "count"):
        x = rng.poisson(2.0, shape).astype(np.float64)
        return x if dom == "count" else x * rng.uniform(0.5, 1.5, shape)
    if dom == "lograte":
        return rng.normal(0.5, 1.0, shape)
    if dom == "gt-1":
        return rng.uniform(-0.9, 20.0, shape)
    if dom == "var":
        return rng.uniform(0.0, 2.0, shape)
    raise KeyError(dom)


# -- the reference table -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Ref:
    source: str                                   # where the reference values come from
    elementwise: Callable[..., np.ndarray]        # (arrays, params) -> per element, pred's shape
    domain: Callable[[dict], dict[str, str]]      # params -> {role: domain}
    cases: tuple[dict, ...] = ({},)
    mean: Callable[..., float] | None = None      # (arrays, params, w) -> library weighted mean
    torch_red: Callable[..., float] | None = None  # (arrays, params, 'mean' | 'sum') -> torch value
    row: str = "mean"                              # per-row value for (n, k): mean, or rms (root losses)
    scale: Callable[..., np.ndarray] | None = None
    multi: bool = True                             # test (n, k) inputs too
    n_max: int = 20


def _pt(params=None):
    return {"pred": "real", "target": "real"}


def _tweedie_domain(params):
    p = float(params.get("power", 0.0))
    if p < 0:
        return {"pred": "pos", "target": "real"}
    if p == 0:
        return {"pred": "real", "target": "real"}
    if p < 2:
        return {"pred": "pos", "target": "nonneg"}
    return {"pred": "pos", "target": "pos"}


def _sk(fn):
    def elementwise(a, params):
        return fn(a, params, "none")
    return elementwise


_mae_t = _torch(F.l1_loss, "pred", "target")
_mse_t = _torch(F.mse_loss, "pred", "target")
_half_mse_t = _torch(F.mse_loss, "pred", "target", scale_by=0.5)
_huber_t = _torch(F.huber_loss, "pred", "target")
_sl1_t = _torch(F.smooth_l1_loss, "pred", "target")
_pnll_t = _torch(F.poisson_nll_loss, "pred", "target")
_gnll_t = _torch(F.gaussian_nll_loss, "pred", "target", "var")

REFS: dict[str, Ref] = {
    "mae": Ref("torch.nn.functional.l1_loss; sklearn.metrics.mean_absolute_error", _sk(_mae_t), _pt,
               mean=_sk_mean(skm.mean_absolute_error), torch_red=_mae_t),
    "mse": Ref("torch.nn.functional.mse_loss; sklearn.metrics.mean_squared_error", _sk(_mse_t), _pt,
               mean=_sk_mean(skm.mean_squared_error), torch_red=_mse_t),
    "rmse": Ref("sklearn.metrics.root_mean_squared_error", _sk_elementwise(skm.root_mean_squared_error), _pt,
                mean=_sk_mean(skm.root_mean_squared_error), row="rms"),
    "quadratic": Ref("0.5 * torch.nn.functional.mse_loss / sklearn.metrics.mean_squared_error (optax l2_loss)",
                     _sk(_half_mse_t), _pt, mean=_sk_mean(skm.mean_squared_error, 0.5), torch_red=_half_mse_t),
    "huber": Ref("torch.nn.functional.huber_loss", _sk(_huber_t), _pt, torch_red=_huber_t,
                 cases=({}, {"delta": 0.5}, {"delta": 1e-3}, {"delta": 50.0})),
    "smooth_l1": Ref("torch.nn.functional.smooth_l1_loss", _sk(_sl1_t), _pt, torch_red=_sl1_t,
                     cases=({}, {"beta": 0.0}, {"beta": 0.5}, {"beta": 50.0})),
    "log_cosh": Ref("mpmath log(cosh(d)) at 50+ digits (keras/optax log_cosh are not installed)",
                    _mp_log_cosh, _pt),
    "quantile": Ref("sklearn.metrics.mean_pinball_loss", _sk_elementwise(skm.mean_pinball_loss), _pt,
                    mean=_sk_mean(skm.mean_pinball_loss),
                    cases=({}, {"alpha": 0.1}, {"alpha": 0.9}, {"alpha": 0.0}, {"alpha": 1.0})),
    "poisson_nll": Ref("torch.nn.functional.poisson_nll_loss", _sk(_pnll_t),
                       lambda p: {"pred": "lograte" if p.get("log_input", True) else "nonneg", "target": "count"},
                       torch_red=_pnll_t, scale=_scale_poisson_nll,
                       cases=({}, {"full": True}, {"log_input": False}, {"log_input": False, "full": True,
                                                                         "eps": 1e-3})),
    "poisson_deviance": Ref("sklearn.metrics.mean_poisson_deviance", _sk_per_call(skm.mean_poisson_deviance),
                            lambda p: {"pred": "pos", "target": "nonneg"},
                            mean=_sk_mean_per_output(skm.mean_poisson_deviance),
                            scale=lambda a, p: _scale_tweedie(a, {"power": 1.0}), n_max=8),
    "gamma_deviance": Ref("sklearn.metrics.mean_gamma_deviance", _sk_per_call(skm.mean_gamma_deviance),
                          lambda p: {"pred": "pos", "target": "pos"},
                          mean=_sk_mean_per_output(skm.mean_gamma_deviance),
                          scale=lambda a, p: _scale_tweedie(a, {"power": 2.0}), n_max=8),
    "tweedie_deviance": Ref("sklearn.metrics.mean_tweedie_deviance", _sk_per_call(skm.mean_tweedie_deviance),
                            _tweedie_domain, mean=_sk_mean_per_output(skm.mean_tweedie_deviance),
                            scale=_scale_tweedie, n_max=8,
                            cases=tuple({"power": p} for p in (-1.0, -0.5, 0.0, 1.0, 1.2, 1.5, 1.9, 2.0, 2.5, 3.0))),
    "gaussian_nll": Ref("torch.nn.functional.gaussian_nll_loss", _sk(_gnll_t),
                        lambda p: {"pred": "real", "target": "real", "var": "var"},
                        torch_red=_gnll_t, scale=_scale_gaussian,
                        cases=({}, {"full": True}, {"eps": 1e-2})),
    "msle": Ref("sklearn.metrics.mean_squared_log_error", _sk_elementwise(skm.mean_squared_log_error),
                lambda p: {"pred": "gt-1", "target": "gt-1"}, mean=_sk_mean(skm.mean_squared_log_error)),
    "rmsle": Ref("sklearn.metrics.root_mean_squared_log_error",
                 _sk_elementwise(skm.root_mean_squared_log_error),
                 lambda p: {"pred": "gt-1", "target": "gt-1"}, mean=_sk_mean(skm.root_mean_squared_log_error),
                 row="rms"),
    "mape": Ref("sklearn.metrics.mean_absolute_percentage_error (x100 for percent=true)",
                lambda a, p: _sk_elementwise(skm.mean_absolute_percentage_error,
                                             100.0 if p.get("percent") else 1.0)(a, {}), _pt,
                mean=lambda a, p, w: _sk_mean(skm.mean_absolute_percentage_error,
                                              100.0 if p.get("percent") else 1.0)(a, {}, w),
                cases=({}, {"percent": True})),
    "smape": Ref("exact rational arithmetic of the torchmetrics formula (no torch/sklearn function)",
                 _exact_smape, _pt, cases=({}, {"eps": 1e-6})),
    "mean_bias": Ref("torch (pred - target), torch.mean / torch.sum; numpy.average(weights=w)",
                     _sk(_signed_diff), _pt, torch_red=_signed_diff,
                     mean=lambda a, p, w: float(np.average(a["pred"] - a["target"], weights=w))
                     if np.ndim(a["pred"]) == 1 else
                     float(np.mean(np.average(a["pred"] - a["target"], weights=w, axis=0)))),
}

REGRESSION = [s for s in registry.all_losses() if s.kind == "regression"]
CASES = [pytest.param(name, params, id=f"{name}{params or ''}")
         for name, ref in REFS.items() for params in ref.cases]


# -- lossctl side ------------------------------------------------------------------------------------
class StrictCtx:
    """A batch context whose errors fail the test: generated inputs are valid by construction."""

    options = {"classes": None, "class_weights": None, "space": None}

    def __init__(self):
        self.memo: dict = {}

    def error(self, role, i, message):
        raise AssertionError(f"prepare rejected valid input ({role}, row {i}): {message}")

    def warn(self, key, message):
        raise AssertionError(f"prepare warned on valid input: {message}")


def prepared(spec, params, arrays) -> list[np.ndarray]:
    ins = {r: np.asarray(arrays[r], dtype=np.float64) for r in spec.roles}
    prep = spec.extra.get("prepare")
    if prep is not None:
        ins = prep(ins, params, StrictCtx())
    return [ins[r] for r in spec.roles]


def lossctl_reduce(spec, params, args, w=None, reduction="mean") -> float:
    """The reduction as the pipeline does it: terms -> SumState -> finalize_value."""
    terms = dict(spec.terms(*args, **params)) if spec.terms is not None else {"loss": spec.fn(*args, **params)}
    terms["_w"] = 1.0
    state = SumState()
    state.update(terms, w)
    return api.finalize_value(api.LossRequest(spec, dict(params)), state.totals(), reduction)


def resolve(name, params):
    spec = registry.get(name)
    return spec, spec.resolve_params(params)


def rows_of(ref: Ref, elem: np.ndarray) -> np.ndarray:
    if elem.ndim == 1:
        return elem
    if ref.row == "rms":
        return np.sqrt(np.mean(elem * elem, axis=1))
    return np.mean(elem, axis=1)


def assert_close(got, want, scale=0.0, what=""):
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    scale = np.broadcast_to(np.asarray(scale, dtype=np.float64), want.shape)
    with np.errstate(invalid="ignore"):
        same_special = (np.isnan(got) & np.isnan(want)) | (np.isinf(want) & (got == want))
        # a reference that squares first (sklearn's rmse/rmsle) goes subnormal below |d| ~ 1.5e-154 and loses
        # bits (to exactly 0 below ~1e-162), where lossctl keeps |d|: differences are allowed only when both
        # values are below 1e-150
        underflow = (np.abs(want) < 1e-150) & (np.abs(got) < 1e-150)
        ok = same_special | underflow | (np.abs(got - want) <= RTOL * (np.abs(want) + scale))
    if not ok.all():
        i = np.flatnonzero(~ok.ravel())[0]
        raise AssertionError(f"{what}: element {i}: lossctl {got.ravel()[i]!r} vs reference {want.ravel()[i]!r} "
                             f"(rtol {RTOL}, scale {scale.ravel()[i]!r}); {int((~ok).sum())} of {ok.size} differ")


def check_against_reference(name: str, params: dict, arrays: dict, w: np.ndarray | None) -> None:
    """Per-sample, weighted-mean and torch-reduction parity of one loss on one input."""
    ref = REFS[name]
    spec, p = resolve(name, params)
    args = prepared(spec, p, arrays)
    a = dict(zip(spec.roles, args))
    ours = np.asarray(spec.fn(*args, **p), dtype=np.float64)
    n = len(args[0])
    assert ours.shape == (n,), f"{name}: per-sample shape {ours.shape}, expected ({n},)"

    elem = np.asarray(ref.elementwise(a, params), dtype=np.float64)
    want_rows = rows_of(ref, elem)
    elem_scale = ref.scale(a, p) if ref.scale is not None else np.zeros_like(elem)
    row_scale = elem_scale if elem_scale.ndim == 1 else np.mean(elem_scale, axis=1)
    assert_close(ours, want_rows, row_scale, f"{name}{params} per-sample vs {ref.source}")
    if spec.nonnegative:
        assert (ours[~np.isnan(ours)] >= 0).all(), f"{name}: negative value but nonnegative=True"

    if not np.isfinite(want_rows).all():
        return  # overflowing inputs: per-sample parity (inf == inf) is what there is to check
    ww = np.ones(n) if w is None else w
    if ref.mean is not None:
        want = float(ref.mean(a, params, w))
    else:
        want = math.fsum(ww * want_rows) / math.fsum(ww)
    mag = math.fsum(ww * (np.abs(want_rows) + row_scale)) / math.fsum(ww)
    got = lossctl_reduce(spec, p, args, w)
    assert_close(got, want, mag, f"{name}{params} weighted mean vs {ref.source}")

    if ref.torch_red is not None:
        tp = {k: v for k, v in params.items()}
        k = 1 if elem.ndim == 1 else elem.shape[1]
        assert_close(lossctl_reduce(spec, p, args, None), ref.torch_red(a, tp, "mean"),
                     math.fsum(np.abs(want_rows) + row_scale) / n, f"{name}{params} vs torch reduction='mean'")
        if spec.has_sum:
            assert_close(lossctl_reduce(spec, p, args, None, "sum"), ref.torch_red(a, tp, "sum") / k,
                         math.fsum(np.abs(want_rows) + row_scale), f"{name}{params} vs torch reduction='sum'")


# -- coverage of the registry -------------------------------------------------------------------------
def test_every_regression_loss_has_a_parity_reference():
    missing = [s.name for s in REGRESSION if s.name not in REFS]
    assert not missing, f"regression losses without a parity reference in REFS: {missing}"
    stale = [name for name in REFS if name not in {s.name for s in REGRESSION}]
    assert not stale, f"REFS names losses that are not registered: {stale}"


@pytest.mark.parametrize("spec", REGRESSION, ids=lambda s: s.name)
def test_registry_fields_filled(spec):
    for fld in ("name", "summary", "formula", "latex", "reference", "when", "example"):
        assert str(getattr(spec, fld)).strip(), f"{spec.name}: empty {fld}"
    assert spec.roles[:2] == ("pred", "target")
    assert spec.space == "values"
    assert spec.example.startswith("lossctl eval "), spec.example
    words = shlex.split(spec.example)
    assert "-l" in words
    named = words[words.index("-l") + 1].split(":")[0]
    assert registry.get(named) is spec, f"{spec.name}: example evaluates {named}"
    for alias in spec.aliases:
        assert registry.get(alias) is spec, f"{spec.name}: alias {alias} resolves elsewhere"
    for rel in spec.related:
        registry.get(rel)  # raises UnknownLossError for a dangling name
        assert rel != spec.name
    for prm in spec.params:
        assert prm.help.strip(), f"{spec.name}: parameter {prm.name} has no help"
        assert prm.type in (float, int, bool, str, list)
        assert prm.parse(prm.default, spec.name) == prm.default, f"{spec.name}: default of {prm.name} out of range"
        assert prm.range_text()
    spec.resolve_params({})
    d = spec.describe()
    assert d["reductions"] == (["mean", "sum", "none"] if spec.has_sum else ["mean", "none"])


@pytest.mark.parametrize("spec", REGRESSION, ids=lambda s: s.name)
def test_example_runs(spec, monkeypatch):
    from click.testing import CliRunner

    from lossctl.cli import cli

    root = __file__.rsplit("/tests/", 1)[0]
    monkeypatch.chdir(root)
    res = CliRunner().invoke(cli, shlex.split(spec.example)[1:] + ["--value", "-q"])
    assert res.exit_code == 0, f"{spec.example}: exit {res.exit_code}: {res.output}"
    assert math.isfinite(float(res.output.split()[0]))


# -- generated inputs ----------------------------------------------------------------------------------
@st.composite
def inputs(draw, name: str, params: dict):
    ref = REFS[name]
    spec = registry.get(name)
    doms = ref.domain(params)
    n = draw(st.integers(1, ref.n_max))
    k = draw(st.sampled_from([0, 0, 1, 3])) if ref.multi else 0
    shape = (n,) if k == 0 else (n, k)

    def arr(dom, shp):
        strat, _ = DOMAINS[dom]
        vals = draw(st.lists(strat, min_size=int(np.prod(shp)), max_size=int(np.prod(shp))))
        return np.array(vals, dtype=np.float64).reshape(shp)

    pred = arr(doms["pred"], shape)
    mode = draw(st.sampled_from(["independent", "independent", "close", "equal"]))
    if mode == "independent" or doms["pred"] != doms["target"]:
        target = arr(doms["target"], shape)
        if mode == "equal" and DOMAINS[doms["target"]][1](pred).all():
            target = pred.copy()
    elif mode == "equal":
        target = pred.copy()
    else:  # near-zero residuals, where the deviances and log-likelihoods cancel
        r = arr("real", shape) * 1e-12
        target = pred * (1.0 + r)
        ok = DOMAINS[doms["target"]][1](target)
        target = np.where(ok, target, pred)
    a = {"pred": pred, "target": target}
    if "var" in spec.roles:
        vshape = draw(st.sampled_from([shape, (n,)])) if k else shape
        a["var"] = arr(doms["var"], vshape)
    # weights: 0 or in [1e-6, 10]; a subnormal weight (5e-324) times a loss underflows in sum(w*l), where
    # scikit-learn's normalised weights do not -- a limit of float64 sums, not a semantic difference
    wl = draw(st.lists(st.one_of(st.just(0.0), _floats(1e-6, 10.0)), min_size=n, max_size=n))
    w = np.array(wl, dtype=np.float64)
    if not (w > 0).any():
        w[0] = 1.0
    return a, (None if draw(st.booleans()) else w)


@pytest.mark.parametrize("name,params", CASES)
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_parity_generated(name, params, data):
    arrays, w = data.draw(inputs(name, params))
    check_against_reference(name, params, arrays, w)


# -- explicit edge cases --------------------------------------------------------------------------------
def _nx(x, toward):
    return float(np.nextafter(x, toward))


EDGES: list[tuple[str, dict, dict]] = [
    # zero residual, huge and tiny residuals, for every loss on the real line
    *[(name, p, {"pred": [0.0, 1.0, -3.5, 1e150, 1e-150, -1e-150, 1e300, 2.0],
                 "target": [0.0, 1.0, -3.5, -1e150, 0.0, 1e-150, -1e300, 1e-300]})
      for name in ("mae", "mse", "rmse", "quadratic", "huber", "smooth_l1", "log_cosh", "quantile",
                   "mean_bias") for p in REFS[name].cases],
    # residual exactly at delta / beta, one ulp either side
    *[("huber", {"delta": 0.5}, {"pred": [1.5, _nx(1.5, 2), _nx(1.5, 0), 0.5, -0.5], "target": [1.0] * 5})],
    *[("smooth_l1", {"beta": b}, {"pred": [1.0 + b, _nx(1.0 + b, 9), _nx(1.0 + b, 0), 1.0 - b, 1.0],
                                  "target": [1.0] * 5}) for b in (0.0, 0.25, 1.0)],
    ("huber", {"delta": 1e-3}, {"pred": [1e-3, 2e-3, 5e-4], "target": [0.0, 0.0, 0.0]}),
    # log_cosh across its two evaluation branches and where cosh overflows
    ("log_cosh", {}, {"pred": [1.0, _nx(1.0, 2), _nx(1.0, 0), 1e-8, 20.0, 710.0, 800.0, -1e5, 0.5],
                      "target": [0.0] * 9}),
    # pinball at alpha 0 / 1, exact ties
    *[("quantile", {"alpha": al}, {"pred": [1.0, 2.0, 0.0], "target": [1.0, 1.0, 1.0]}) for al in (0.0, 1.0, 0.3)],
    # Poisson NLL: zero targets, the Stirling mask at y = 1, rate 0 with log_input=false, large log-rates
    *[("poisson_nll", p, {"pred": [0.0, 0.0, 1.0, -20.0 if p.get("log_input", True) else 1e-20, 5.0, 2.0, 0.5,
                                   300.0, 0.0],
                          "target": [0.0, 1.0, _nx(1.0, 2), 1.0, 2.0, 0.0, 1e6, 3.0, 4.0]})
      for p in ({}, {"full": True}, {"log_input": False}, {"log_input": False, "full": True})],
    # Poisson / gamma / Tweedie deviances: zero targets, y == mu, tiny and huge means, close ratios
    ("poisson_deviance", {}, {"pred": [1.0, 2.0, 1e-6, 1e8, 3.0, 1.0 + 1e-9],
                              "target": [0.0, 2.0, 0.0, 1e8, 1e-300, 1.0]}),
    ("gamma_deviance", {}, {"pred": [2.0, 1e-200, 1e200, 5.0, 1.0 + 1e-9], "target": [2.0, 1e-200, 1e200, 0.5, 1.0]}),
    *[("tweedie_deviance", {"power": pw}, {"pred": [2.0, 1e-3, 1e3, 1.0, 7.0], "target": [2.0, 1.0, 1.0, 1.0 + 1e-8, 3.0]})
      for pw in (-1.0, 0.0, 1.0, 1.5, 2.0, 3.0)],
    *[("tweedie_deviance", {"power": pw}, {"pred": [2.0, 1e-3, 0.5], "target": [0.0, 0.0, 0.0]})
      for pw in (1.0, 1.2, 1.5, 1.9)],
    ("tweedie_deviance", {"power": -1.0}, {"pred": [2.0, 1e-3, 0.5], "target": [-3.0, 0.0, -1e3]}),
    # Gaussian NLL: variance 0, below eps, exactly eps, huge; full
    *[("gaussian_nll", p, {"pred": [0.0, 1.0, 1.0, 1.0, 3.0, 1e6], "target": [0.0, 0.0, 1.0, 0.0, 1.0, -1e6],
                           "var": [0.0, 1e-9, 1e-6, 1e-6, 1e300, 1e-12]})
      for p in ({}, {"full": True}, {"eps": 1e-2})],
    # msle / rmsle near -1 and at 0
    *[(name, {}, {"pred": [0.0, -0.999999, _nx(-1.0, 0), 1e300, 3.0], "target": [0.0, 0.0, 2.0, 1e300, _nx(-1.0, 0)]})
      for name in ("msle", "rmsle")],
    # mape / smape with zero and tiny targets
    *[("mape", p, {"pred": [0.0, 1.0, 110.0, -5.0, 1e-300], "target": [0.0, 0.0, 100.0, 5.0, 1e-300]})
      for p in ({}, {"percent": True})],
    ("smape", {}, {"pred": [0.0, 1.0, 110.0, -5.0, 1e-300, 0.0], "target": [0.0, 0.0, 90.0, 5.0, 1e-300, 1e-320]}),
]


@pytest.mark.parametrize("name,params,arrays", EDGES,
                         ids=[f"{i}-{n}{p or ''}" for i, (n, p, _) in enumerate(EDGES)])
def test_parity_edge_cases(name, params, arrays):
    arrays = {k: np.array(v, dtype=np.float64) for k, v in arrays.items()}
    n = len(arrays["pred"])
    w = np.arange(1, n + 1, dtype=np.float64)
    check_against_reference(name, params, arrays, None)
    check_against_reference(name, params, arrays, w)


def test_huber_and_smooth_l1_relation():
    """torch: huber(delta) == beta * smooth_l1(beta) for delta == beta (and both agree at the boundary)."""
    rng = np.random.default_rng(1)
    p, t = rng.normal(0, 2, 50), rng.normal(0, 2, 50)
    for b in (0.3, 1.0, 4.0):
        h = registry.get("huber").fn(p, t, delta=b)
        s = registry.get("smooth_l1").fn(p, t, beta=b)
        assert_close(h, b * s, 0.0, "huber = beta * smooth_l1")


def test_log_cosh_small_residuals_keep_relative_accuracy():
    """Where |d| + softplus(-2|d|) - log 2 cancels to noise, lossctl still returns ~d^2/2 (mpmath)."""
    d = np.array([1e-12, 3e-9, 1e-6, 1e-3, 0.3])
    got = registry.get("log_cosh").fn(d, np.zeros_like(d))
    assert_close(got, _mp_log_cosh({"pred": d, "target": np.zeros_like(d)}, {}), 0.0, "log_cosh small d")


# -- through the real pipeline -------------------------------------------------------------------------
def _write(tmp_path, cols: dict[str, np.ndarray], w: np.ndarray) -> tuple[str, dict[str, str]]:
    names, arrays, binding = [], [], {}
    for role, a in cols.items():
        if a.ndim == 1:
            names.append(role)
            arrays.append(pa.array(a))
            binding[role] = role
        else:
            sub = [f"{role}_{j}" for j in range(a.shape[1])]
            names += sub
            arrays += [pa.array(a[:, j]) for j in range(a.shape[1])]
            binding[role] = ",".join(sub)
    names.append("w")
    arrays.append(pa.array(w))
    path = str(tmp_path / f"in{len(list(tmp_path.iterdir()))}.parquet")
    pq.write_table(pa.table(arrays, names=names), path)
    return path, binding


@pytest.mark.parametrize("name,params,k", [
    pytest.param(name, params, k, id=f"{name}{params or ''}-{k}")
    for name, ref in REFS.items() for params in ref.cases for k in (0, 2) if k == 0 or ref.multi])
def test_parity_through_pipeline(name, params, k, tmp_path):
    ref = REFS[name]
    spec, p = resolve(name, params)
    rng = np.random.default_rng(abs(hash((name, str(params), k))) % 2**32)
    n = 23
    shape = (n,) if k == 0 else (n, k)
    doms = ref.domain(params)
    cols = {r: _numpy_sample(doms[r], rng, shape) for r in ("pred", "target")}
    if "var" in spec.roles:
        cols["var"] = _numpy_sample(doms["var"], rng, (n,) if k else shape)
    w = rng.integers(0, 4, n).astype(np.float64)
    w[0] = 2.0
    path, binding = _write(tmp_path, cols, w)
    loss = [(name, params)]

    elem = np.asarray(ref.elementwise(cols, params), dtype=np.float64)
    rows = rows_of(ref, elem)
    scale = ref.scale(cols, p) if ref.scale is not None else np.zeros_like(elem)
    rscale = scale if scale.ndim == 1 else scale.mean(axis=1)
    want = float(ref.mean(cols, params, w)) if ref.mean is not None else math.fsum(w * rows) / math.fsum(w)
    mag = math.fsum(w * (np.abs(rows) + rscale)) / math.fsum(w)

    res = api.evaluate(path, loss, columns=binding, weight="w", batch_rows=5)
    assert_close(res.value(), want, mag, f"{name}{params} pipeline weighted mean")
    per = api.evaluate(path, loss, columns=binding, reduction="none", limit=0, batch_rows=7)
    label = per.results[0].label
    assert_close(np.array([r[label] for r in per.rows]), rows, rscale, f"{name}{params} pipeline -r none")
    if spec.has_sum:
        tot = api.evaluate(path, loss, columns=binding, weight="w", reduction="sum").value()
        assert_close(tot, math.fsum(w * rows), math.fsum(w * (np.abs(rows) + rscale)), f"{name} -r sum")


def test_root_losses_have_no_sum(tmp_path):
    for name in ("rmse", "rmsle"):
        assert not registry.get(name).has_sum
        with pytest.raises(UsageError, match="no sum"):
            api.evaluate("sample_data/regression.csv" if False else _sample(), [name], reduction="sum")


def _sample() -> str:
    return __file__.rsplit("/tests/", 1)[0] + "/sample_data/regression.csv"


def test_rmse_multioutput_is_mean_of_per_output_rmse(tmp_path):
    """sklearn's uniform_average of per-output RMSEs, not the root of the pooled mean square."""
    rng = np.random.default_rng(5)
    y = rng.normal(size=(40, 3)) * [1.0, 10.0, 100.0]
    yhat = y + rng.normal(size=(40, 3)) * [0.1, 3.0, 20.0]
    w = rng.uniform(0.5, 2.0, 40)
    path, binding = _write(tmp_path, {"pred": yhat, "target": y}, w)
    for name, metric in (("rmse", skm.root_mean_squared_error), ("rmsle", None)):
        if metric is None:
            continue
        got = api.evaluate(path, [name], columns=binding, weight="w", batch_rows=7).value()
        want = metric(y, yhat, sample_weight=w)
        assert_close(got, want, 0.0, name)
        pooled = math.sqrt(np.average(((yhat - y) ** 2).mean(axis=1), weights=w))
        assert abs(got - pooled) > 1e-3 * pooled


# -- input errors where the reference raises -------------------------------------------------------------
def _csv(tmp_path, text: str) -> str:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    return str(path)


BAD = [
    # (loss, csv text, extra evaluate kwargs, role's column, row, message fragment, sklearn/torch call that raises)
    ("poisson_deviance", "y_pred,y_true\n1,1\n2,1\n0,3\n", {}, "y_pred", 3, "not > 0",
     lambda: skm.mean_poisson_deviance([1, 1, 3], [1, 2, 0])),
    ("gamma_deviance", "y_pred,y_true\n1,1\n2,0\n", {}, "y_true", 2, "not > 0",
     lambda: skm.mean_gamma_deviance([1, 0], [1, 2])),
    ("tweedie_deviance:power=1.5", "y_pred,y_true\n1,1\n2,-1\n", {}, "y_true", 2, "negative",
     lambda: skm.mean_tweedie_deviance([1, -1], [1, 2], power=1.5)),
    ("tweedie_deviance:power=-1", "y_pred,y_true\n1,1\n-2,-1\n", {}, "y_pred", 2, "not > 0",
     lambda: skm.mean_tweedie_deviance([1, -1], [1, -2], power=-1)),
    ("msle", "y_pred,y_true\n1,1\n2,1\n3,-1\n", {}, "y_true", 3, "<= -1",
     lambda: skm.mean_squared_log_error([1, 1, -1], [1, 2, 3])),
    ("rmsle", "y_pred,y_true\n-1.5,1\n", {}, "y_pred", 1, "<= -1",
     lambda: skm.root_mean_squared_log_error([1], [-1.5])),
    ("gaussian_nll", "y_pred,y_true,sigma2\n1,1,0.5\n2,1,0\n2,1,-0.25\n", {"columns": {"var": "sigma2"}},
     "sigma2", 3, "negative",
     lambda: F.gaussian_nll_loss(_t([1, 2, 2]), _t([1, 1, 1]), _t([0.5, 0, -0.25]))),
    ("poisson_nll", "y_pred,y_true\n1,1\n2,-1\n", {}, "y_true", 2, "negative", None),
    ("poisson_nll:log_input=false", "y_pred,y_true\n1,1\n-2,1\n", {}, "y_pred", 2, "negative", None),
]


@pytest.mark.parametrize("loss,text,kw,column,row,fragment,reference_raises", BAD,
                         ids=[b[0] for b in BAD])
def test_domain_errors_name_column_and_row(loss, text, kw, column, row, fragment, reference_raises, tmp_path):
    path = _csv(tmp_path, text)
    with pytest.raises(InputError) as exc:
        api.evaluate(path, [loss], batch_rows=2, **kw)
    msg = exc.value.message
    assert f"column {column!r}" in msg and f"row {row}:" in msg and fragment in msg, msg
    if reference_raises is not None:
        with pytest.raises((ValueError, RuntimeError)):
            reference_raises()


def test_shape_mismatch_is_an_input_error(tmp_path):
    path = _csv(tmp_path, "p_0,p_1,y_true\n1,2,3\n4,5,6\n")
    for name in ("mse", "huber", "rmse"):
        with pytest.raises(InputError, match="target column"):
            api.evaluate(path, [name], pred="p_0,p_1")


def test_tweedie_power_between_0_and_1_is_a_usage_error():
    with pytest.raises(UsageError, match="power"):
        registry.get("tweedie_deviance").resolve_params({"power": "0.5"})
    with pytest.raises(ValueError):
        skm.mean_tweedie_deviance([1.0], [1.0], power=0.5)


def test_out_of_range_parameters_are_usage_errors():
    for name, given in (("huber", {"delta": "0"}), ("smooth_l1", {"beta": "-1"}), ("quantile", {"alpha": "1.5"}),
                        ("poisson_nll", {"eps": "0"}), ("gaussian_nll", {"eps": "-1e-6"})):
        with pytest.raises(UsageError):
            registry.get(name).resolve_params(given)
