"""Registry-wide invariances of every regression loss (scikit-learn's check_sample_weight_invariance, and more).

For each registered loss of kind 'regression' (a new loss is covered the moment it registers):
no weights == all-ones weights; integer weights == repeated rows; zero weight == dropped row; scaling all
weights changes nothing (mean) or scales the sum; any batch size and any row order give the same value.
All to 1e-12 relative, through the Python API (``lossctl.evaluate``) on Parquet files.
tests/test_properties.py checks the same properties with hypothesis-drawn data for every loss of every
kind (classification, masks, boxes, embeddings too); tests/test_determinism.py across thread counts and
engines.
"""
from __future__ import annotations

import math
import zlib

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import lossctl
from lossctl import registry
from lossctl.state import SumState

REL = 1e-12
N = 41

REGRESSION = [s.name for s in registry.all_losses() if s.kind == "regression"]


# -- valid inputs per loss ----------------------------------------------------------------------------------
def _signed(rng, n):
    t = rng.normal(0.0, 2.0, size=n)
    p = t + rng.normal(0.0, 0.7, size=n)
    p[:3] += np.array([4.0, -5.0, 3.0])  # outliers in the linear part of robust losses
    return {"pred": p, "target": t}


def _positive(rng, n):
    t = rng.gamma(3.0, 0.8, size=n) + 0.05
    return {"pred": np.abs(t + rng.normal(0.0, 0.6, size=n)) + 0.05, "target": t}


def _counts(rng, n):
    lam = rng.uniform(0.3, 6.0, size=n)
    return {"pred": np.log(lam) + rng.normal(0, 0.3, size=n), "target": rng.poisson(lam).astype(np.float64)}


def _count_rates(rng, n):
    lam = rng.uniform(0.3, 6.0, size=n)
    return {"pred": lam * np.exp(rng.normal(0, 0.3, size=n)), "target": rng.poisson(lam).astype(np.float64)}


# Losses defined on the whole real line get signed data; the safe default is positive data, which is in the
# domain of msle, mape, gamma/poisson/tweedie deviance and gaussian_nll alike.
INPUTS = {
    "mse": _signed, "mae": _signed, "rmse": _signed, "quadratic": _signed, "huber": _signed,
    "smooth_l1": _signed, "log_cosh": _signed, "quantile": _signed, "mean_bias": _signed,
    "poisson_nll": _counts, "poisson_deviance": _count_rates,
}


# Non-default parameters worth their own run (the other parameters keep their defaults).
VARIANTS = {
    "huber": ["delta=0.3"], "smooth_l1": ["beta=0.2", "beta=0"], "quantile": ["alpha=0.9", "alpha=0.1"],
    "poisson_nll": ["log_input=false", "full=true"], "gaussian_nll": ["full=true"],
    "tweedie_deviance": ["power=1.5", "power=0"], "mape": ["percent=true"],
}
INPUTS_FOR = {"poisson_nll:log_input=false": _count_rates}

CASES = [name for name in REGRESSION] + [f"{name}:{v}" for name in REGRESSION for v in VARIANTS.get(name, [])]


def _extra_role(rng, n, role):
    return rng.uniform(0.05, 2.0, size=n)  # variances and other extra inputs: positive


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Per loss: (dir, column bindings, has_sum) with base, repeated, dropped and permuted Parquet files."""
    cache = {}

    def make(case):
        if case in cache:
            return cache[case]
        name = case.split(":")[0]
        spec = registry.get(name)
        rng = np.random.default_rng(zlib.crc32(case.encode()))
        data = INPUTS_FOR.get(case, INPUTS.get(name, _positive))(rng, N)
        cols = {}
        for role in spec.roles:
            if role not in data:
                data[role] = _extra_role(rng, N, role)
            cols[role] = f"c_{role}"
        d = tmp_path_factory.mktemp(name)
        base = {cols[r]: data[r] for r in spec.roles}
        wint = rng.integers(1, 4, size=N).astype(np.float64)
        wzero = rng.uniform(0.5, 2.0, size=N)
        zero_at = [0, 7, N - 1]
        wzero[zero_at] = 0.0
        wreal = rng.uniform(0.1, 3.0, size=N)
        tbl = pa.table({**base, "ones": np.ones(N), "wint": wint, "wzero": wzero, "wreal": wreal,
                        "wscaled": wreal * 1234.5, "grp": rng.choice(["a", "b", "c"], size=N)})
        pq.write_table(tbl, d / "base.parquet")
        rep = np.repeat(np.arange(N), wint.astype(int))
        pq.write_table(tbl.take(pa.array(rep)), d / "repeated.parquet")
        keep = np.setdiff1d(np.arange(N), zero_at)
        pq.write_table(tbl.take(pa.array(keep)), d / "dropped.parquet")
        perm = rng.permutation(N)
        pq.write_table(tbl.take(pa.array(perm)), d / "permuted.parquet")
        cache[case] = (d, cols, spec.has_sum)
        return cache[case]

    return make


def _value(path, case, cols, **kw):
    res = lossctl.evaluate(str(path), [case], columns=cols, **kw)
    (v,) = [r.value for r in res.results if r.group is None]
    assert math.isfinite(v), (case, kw, v)
    return v


def _reductions(has_sum):
    return ["mean", "sum"] if has_sum else ["mean"]


def test_every_regression_loss_is_covered():
    required = {"mse", "mae", "rmse", "quadratic", "huber", "smooth_l1", "log_cosh", "quantile", "poisson_nll",
                "gaussian_nll", "msle", "rmsle", "mape", "mean_bias"}
    assert required <= set(REGRESSION), sorted(required - set(REGRESSION))


@pytest.mark.parametrize("name", CASES)
def test_no_weights_equals_unit_weights(files, name):
    d, cols, has_sum = files(name)
    for red in _reductions(has_sum):
        a = _value(d / "base.parquet", name, cols, reduction=red)
        b = _value(d / "base.parquet", name, cols, reduction=red, weight="ones")
        assert a == pytest.approx(b, rel=REL, abs=1e-14), red


@pytest.mark.parametrize("name", CASES)
def test_integer_weights_equal_repeated_rows(files, name):
    d, cols, has_sum = files(name)
    for red in _reductions(has_sum):
        a = _value(d / "base.parquet", name, cols, reduction=red, weight="wint")
        b = _value(d / "repeated.parquet", name, cols, reduction=red)
        assert a == pytest.approx(b, rel=REL, abs=1e-14), red


@pytest.mark.parametrize("name", CASES)
def test_zero_weight_equals_dropped_row(files, name):
    d, cols, has_sum = files(name)
    for red in _reductions(has_sum):
        a = _value(d / "base.parquet", name, cols, reduction=red, weight="wzero")
        b = _value(d / "dropped.parquet", name, cols, reduction=red, weight="wzero")
        assert a == pytest.approx(b, rel=REL, abs=1e-14), red


@pytest.mark.parametrize("name", CASES)
def test_scaling_weights_changes_nothing(files, name):
    d, cols, has_sum = files(name)
    a = _value(d / "base.parquet", name, cols, weight="wreal")
    b = _value(d / "base.parquet", name, cols, weight="wscaled")
    assert a == pytest.approx(b, rel=REL, abs=1e-14)
    unweighted = _value(d / "base.parquet", name, cols)
    assert a != pytest.approx(unweighted, rel=1e-9)  # the weights do act (the check above is not vacuous)
    if has_sum:
        s1 = _value(d / "base.parquet", name, cols, weight="wreal", reduction="sum")
        s2 = _value(d / "base.parquet", name, cols, weight="wscaled", reduction="sum")
        assert s2 == pytest.approx(1234.5 * s1, rel=REL, abs=1e-12)


@pytest.mark.parametrize("name", CASES)
def test_batch_size_does_not_matter(files, name):
    d, cols, has_sum = files(name)
    for red in _reductions(has_sum):
        for weight in (None, "wreal"):
            ref = lossctl.evaluate(str(d / "base.parquet"), [name], columns=cols, reduction=red, weight=weight,
                                   by=["grp"])
            for batch in (1, 7, 1000):
                got = lossctl.evaluate(str(d / "base.parquet"), [name], columns=cols, reduction=red,
                                       weight=weight, by=["grp"], batch_rows=batch)
                assert [(r.group, r.count) for r in got.results] == [(r.group, r.count) for r in ref.results]
                for g, r in zip(got.results, ref.results):
                    assert math.isfinite(r.value)
                    assert g.value == pytest.approx(r.value, rel=REL, abs=1e-14), (red, weight, batch, r.group)
                    assert g.weight_sum == pytest.approx(r.weight_sum, rel=REL)


@pytest.mark.parametrize("name", CASES)
def test_row_order_does_not_matter(files, name):
    d, cols, has_sum = files(name)
    for red in _reductions(has_sum):
        for weight in (None, "wreal"):
            a = _value(d / "base.parquet", name, cols, reduction=red, weight=weight)
            b = _value(d / "permuted.parquet", name, cols, reduction=red, weight=weight)
            c = _value(d / "permuted.parquet", name, cols, reduction=red, weight=weight, batch_rows=5)
            assert a == pytest.approx(b, rel=REL, abs=1e-14) and b == pytest.approx(c, rel=REL, abs=1e-14)


@pytest.mark.parametrize("name", CASES)
def test_mean_of_per_sample_values(files, name):
    """-r none gives one value per row; for a loss without a custom reduction their weighted mean is the value."""
    d, cols, _ = files(name)
    spec = registry.get(name.split(":")[0])
    res = lossctl.evaluate(str(d / "base.parquet"), [name], columns=cols, reduction="none", limit=0,
                           weight="wreal")
    assert len(res.rows) == N
    label = res.results[0].label
    assert res.row_columns == ["row", label]
    per = [r[label] for r in res.rows]
    assert all(math.isfinite(v) for v in per)
    if spec.terms is None and spec.finalize is None and spec.post is None:
        w = pq.read_table(d / "base.parquet").column("wreal").to_pylist()
        ref = math.fsum(a * b for a, b in zip(w, per)) / math.fsum(w)
        assert res.results[0].value == pytest.approx(ref, rel=REL, abs=1e-14)
    if spec.nonnegative:
        assert min(per) >= 0.0


# -- the accumulator itself: merge order and compensation -----------------------------------------------------
def test_sum_state_merge_order_and_compensation():
    rng = np.random.default_rng(5)
    chunks = [rng.normal(0, 1, size=k) * 10.0 ** rng.integers(-3, 4) for k in (1, 17, 3, 250, 64, 9)]
    chunks += [np.array([1e16]), np.array([1.0]), np.array([-1e16])]  # across batches: a naive sum loses the 1
    exact = math.fsum(np.concatenate(chunks))
    results = []
    for order in (range(len(chunks)), reversed(range(len(chunks))), rng.permutation(len(chunks))):
        parts = []
        for i in order:
            st = SumState()
            st.update({"loss": chunks[i]})
            parts.append(st)
        total = parts[0]
        for p in parts[1:]:
            total.merge(p)
        results.append(total.total("loss"))
        assert total.rows == sum(len(c) for c in chunks)
    for r in results:
        assert r == pytest.approx(exact, rel=1e-13)
