"""Property-based tests (hypothesis) over the WHOLE registry: every registered loss, of every kind.

tests/test_invariance.py checks the regression losses (and their parameter variants) on fixed data;
this module draws data for every loss from its kind, space and roles (``lossctl.registry.all_losses()``),
so a loss is covered the moment it registers, and checks through the Python API on Parquet files:

* finite inputs give finite per-sample values and a finite reduced value, non-negative where
  ``spec.nonnegative``;
* the value does not depend on the batch size (``batch_rows``) or on the row order;
* weights as documented (README "Reductions", scikit-learn's sample-weight invariances): no weights ==
  all-ones weights; integer weights == repeated rows; a zero weight == the row dropped; multiplying
  every weight by a constant changes nothing (mean) or scales the sum.  Losses that evaluate rows
  together (``spec.block_rows``: NT-Xent, whose negatives are the other rows of a block) are exempt from
  the repeated / dropped rows properties: repeating a row adds a negative;
* the per-sample output file (-r none -o x.parquet / .csv / .jsonl / .arrow) reads back equal, bit for
  bit, to the values of the run.

Tolerance: 1e-12 relative (README: the invariance tests check 1e-12).
"""
from __future__ import annotations

import json
import math
import os
import tempfile

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lossctl
from lossctl import registry

from test_invariance import INPUTS as REGRESSION_INPUTS
from test_invariance import _positive

REL = 1e-12
SPECS = registry.all_losses()
NAMES = [s.name for s in SPECS]
SETTINGS = settings(max_examples=6, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# -- valid data for a loss, from its kind / space / roles ----------------------------------------------------
def _probs(rng, n, k):
    p = rng.dirichlet(np.ones(k), size=n)
    return p


def _scores(rng, n, k, space):
    if space == "probabilities":
        return _probs(rng, n, k)
    z = rng.normal(0.0, 2.0, size=(n, k))
    if space == "log-probabilities":
        return z - np.log(np.exp(z - z.max(axis=1, keepdims=True)).sum(axis=1, keepdims=True)) - z.max(axis=1,
                                                                                                          keepdims=True)
    return z


def _space(spec) -> str:
    p = {q.name: q for q in spec.params}.get("space")
    return p.default if p is not None else spec.space


def make_data(spec, rng, n: int, edge: bool) -> tuple[dict, dict, dict]:
    """(columns {name: array or list-of-lists}, role -> column spec for ``columns=``, extra evaluate kwargs).

    ``edge`` puts boundary values that are still valid into the data: probabilities exactly 0 and 1,
    exact zeros of a regression error, empty masks and identical boxes.
    """
    kind, roles = spec.kind, spec.roles
    cols: dict = {}
    bind: dict = {}
    if kind == "regression":
        data = REGRESSION_INPUTS.get(spec.name, _positive)(rng, n)
        for role in roles:
            v = data.get(role, rng.uniform(0.05, 2.0, size=n))
            if edge and role == "pred" and "target" in data:
                v = v.copy()
                hit = np.flatnonzero(data["target"] > 0)[: max(1, n // 4)]  # in every loss's domain
                v[hit] = data["target"][hit]   # exact hits: a zero error
            cols[f"c_{role}"] = v
            bind[role] = f"c_{role}"
        return cols, bind, {}
    if kind == "binary":
        space = _space(spec)
        y = rng.integers(0, 2, size=n).astype(np.int64)
        if space == "probabilities":
            p = rng.uniform(0.0, 1.0, size=n)
            if edge:
                p[: max(1, n // 3)] = rng.integers(0, 2, size=max(1, n // 3)).astype(float)  # exactly 0 or 1
        else:
            p = rng.normal(0.0, 3.0, size=n)
        cols = {"p": p, "y": y}
        return cols, {"pred": "p", "target": "y"}, {}
    if kind == "multiclass":
        k = 3 + int(rng.integers(0, 2))
        space = _space(spec)
        s = _scores(rng, n, k, space)
        if edge and space == "probabilities":
            one = rng.integers(0, k, size=max(1, n // 3))
            s[: len(one)] = np.eye(k)[one]   # rows of exact 0s and 1s
        for j in range(k):
            cols[f"s_{j}"] = s[:, j]
        bind = {"pred": "s_*"}
        if spec.name == "kl_div":
            q = _probs(rng, n, k)
            for j in range(k):
                cols[f"q_{j}"] = q[:, j]
            bind["target"] = "q_*"
        else:
            cols["y"] = rng.integers(0, k, size=n).astype(np.int64)
            bind["target"] = "y"
        return cols, bind, {}
    if kind == "multilabel":
        k = 3
        for j in range(k):
            cols[f"s_{j}"] = rng.normal(0.0, 2.0, size=n)
            cols[f"t_{j}"] = rng.integers(0, 2, size=n).astype(np.int64)
        return cols, {"pred": "s_*", "target": "t_*"}, {}
    if kind == "mask":
        m = 6
        p = rng.uniform(0.0, 1.0, size=(n, m))
        t = (rng.uniform(size=(n, m)) < 0.4).astype(np.int64)
        t[0, 0] = 1   # some foreground: with smooth=0 an all-empty data set is 0/0
        if edge:
            t[-1] = 0
            p[-1] = 0.0   # an empty mask predicted empty
        cols = {"pm": [list(r) for r in p], "tm": [list(r) for r in t]}
        return cols, {"pred": "pm", "target": "tm"}, {}
    if kind == "box":
        def boxes():
            xy = rng.uniform(0, 100, size=(n, 2))
            wh = rng.uniform(1, 50, size=(n, 2))
            return np.hstack([xy, xy + wh])
        pb, tb = boxes(), boxes()
        if edge:
            pb[0] = tb[0]   # a perfect box
        for j, c in enumerate(("x1", "y1", "x2", "y2")):
            cols[f"p{c}"] = pb[:, j]
            cols[c] = tb[:, j]
        return cols, {"pred": "px1,py1,px2,py2", "target": "x1,y1,x2,y2"}, {}
    if kind == "embedding":
        d = 3
        for role in roles:
            if role == "label":
                cols["lab"] = rng.choice([-1, 1], size=n).astype(np.int64)
                bind[role] = "lab"
            elif spec.name == "margin_ranking":
                cols[f"e_{role}"] = rng.normal(size=n)
                bind[role] = f"e_{role}"
            else:
                cols[f"e_{role}"] = [list(r) for r in rng.normal(size=(n, d))]
                bind[role] = f"e_{role}"
        return cols, bind, {}
    raise AssertionError(f"no data generator for kind {kind!r} (loss {spec.name}): add one")


def test_every_registered_loss_has_data():
    rng = np.random.default_rng(0)
    kinds = {s.kind for s in SPECS}
    assert {"regression", "binary", "multiclass", "mask", "box", "embedding"} <= kinds
    for spec in SPECS:
        cols, bind, _ = make_data(spec, rng, 8, edge=False)
        assert set(bind) == set(spec.roles), spec.name


# -- running -------------------------------------------------------------------------------------------------
def _table(cols: dict, n: int, rng) -> pa.Table:
    t = pa.table(cols)
    wint = rng.integers(1, 4, size=n).astype(np.float64)
    wzero = rng.uniform(0.5, 2.0, size=n)
    wzero[[0, n - 1]] = 0.0
    wreal = rng.uniform(0.1, 3.0, size=n)
    for name, v in (("ones", np.ones(n)), ("wint", wint), ("wzero", wzero), ("wreal", wreal),
                    ("wscaled", wreal * 37.5)):
        t = t.append_column(name, pa.array(v))
    return t


def _eval(path, name, bind, **kw):
    res = lossctl.evaluate(str(path), [name], columns=bind, **kw)
    (row,) = [r for r in res.results if r.group is None]
    return row.value, res


def _close(a, b, what):
    assert math.isfinite(a) and math.isfinite(b), (what, a, b)
    assert a == pytest.approx(b, rel=REL, abs=1e-13), (what, a, b)


@pytest.mark.parametrize("name", NAMES)
@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(4, 40), edge=st.booleans())
def test_loss_properties(name, seed, n, edge):
    spec = registry.get(name)
    rng = np.random.default_rng(seed)
    cols, bind, extra = make_data(spec, rng, n, edge)
    tbl = _table(cols, n, rng)
    block = spec.block_rows is not None
    sums = spec.has_sum
    with tempfile.TemporaryDirectory() as d:
        base = os.path.join(d, "base.parquet")
        pq.write_table(tbl, base)
        perm = os.path.join(d, "perm.parquet")
        pq.write_table(tbl.take(pa.array(rng.permutation(n))), perm)

        # finite, non-negative per-sample values and reduced value
        v, res = _eval(base, name, bind, reduction="none", limit=0, **extra)
        label = res.results[0].label
        per = np.array([r[label] for r in res.rows], dtype=np.float64)
        assert len(per) == n
        assert np.isfinite(per).all(), (name, per)
        assert math.isfinite(v), (name, v)
        if spec.nonnegative:
            assert (per >= 0).all() and v >= 0, (name, per.min(), v)

        for red in (["mean", "sum"] if sums else ["mean"]):
            ref, _ = _eval(base, name, bind, reduction=red, **extra)
            _close(ref, v if red == "mean" else ref, (name, "none vs mean"))
            # batch size and row order
            for b in (1, 3, 1000):
                got, _ = _eval(base, name, bind, reduction=red, batch_rows=b, **extra)
                _close(got, ref, (name, red, "batch", b))
            got, _ = _eval(perm, name, bind, reduction=red, batch_rows=5, **extra)
            _close(got, ref, (name, red, "row order"))
            # weights
            ones, _ = _eval(base, name, bind, reduction=red, weight="ones", **extra)
            _close(ones, ref, (name, red, "ones"))
            a, _ = _eval(base, name, bind, reduction=red, weight="wreal", **extra)
            b_, _ = _eval(base, name, bind, reduction=red, weight="wscaled", **extra)
            _close(b_, a if red == "mean" else 37.5 * a, (name, red, "scaled"))
            if not block:
                rep = os.path.join(d, "rep.parquet")
                pq.write_table(tbl.take(pa.array(np.repeat(np.arange(n), tbl.column("wint").to_numpy()
                                                           .astype(int)))), rep)
                a, _ = _eval(base, name, bind, reduction=red, weight="wint", **extra)
                b_, _ = _eval(rep, name, bind, reduction=red, **extra)
                _close(a, b_, (name, red, "integer weights"))
                drop = os.path.join(d, "drop.parquet")
                pq.write_table(tbl.slice(1, n - 2), drop)
                a, _ = _eval(base, name, bind, reduction=red, weight="wzero", **extra)
                b_, _ = _eval(drop, name, bind, reduction=red, weight="wzero", **extra)
                _close(a, b_, (name, red, "zero weight"))


# -- per-sample files round-trip ------------------------------------------------------------------------------
def _read_back(path: str) -> pa.Table:
    if path.endswith(".parquet"):
        return pq.read_table(path)
    if path.endswith(".csv"):
        return pcsv.read_csv(path)
    if path.endswith(".arrow"):
        return feather.read_table(path)
    with open(path) as fh:
        return pa.Table.from_pylist([json.loads(line) for line in fh])


_floats = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e150, max_value=1e150)


@settings(max_examples=25, deadline=None, derandomize=True, database=None)
@given(p=st.lists(_floats, min_size=1, max_size=30), data=st.data())
def test_per_sample_files_round_trip(p, data):
    n = len(p)
    t = data.draw(st.lists(_floats, min_size=n, max_size=n))
    ids = data.draw(st.lists(st.integers(-2**62, 2**62), min_size=n, max_size=n))
    from conftest import invoke
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "in.parquet")
        pq.write_table(pa.table({"key": pa.array(ids, pa.int64()), "y_pred": p, "y_true": t}), src)
        ref = lossctl.evaluate(src, ["mse", "mae", "mean_bias"], reduction="none", limit=0, ids=["key"])
        want = {c: [r[c] for r in ref.rows] for c in ref.row_columns}
        assert want["key"] == ids
        for ext in ("parquet", "csv", "jsonl", "arrow", "tsv"):
            out = os.path.join(d, f"o.{ext}")
            res = invoke(["eval", src, "-l", "mse,mae,mean_bias", "-r", "none", "--id", "key", "-o", out,
                          "--format", "json"])
            assert res.exit_code == 0, res.stderr
            if ext == "tsv":
                back = pcsv.read_csv(out, parse_options=pcsv.ParseOptions(delimiter="\t"))
            else:
                back = _read_back(out)
            assert back.column_names == ref.row_columns
            for c in ref.row_columns:
                got = back.column(c).to_pylist()
                exp = want[c]
                if c != "key":  # an overflowing square is inf, written as null in JSON Lines
                    exp = [None if (ext == "jsonl" and not math.isfinite(v)) else v for v in exp]
                assert got == exp, (ext, c)
            assert not [f for f in os.listdir(d) if f.endswith(".part")]
