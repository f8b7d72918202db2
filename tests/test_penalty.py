"""`lossctl penalty`: L1, L2 and elastic-net penalties of a weight file, alone and added to a loss result.

Expected values are computed here independently: the weights are read with pyarrow into Python floats and
summed with math.fsum, and checked again with torch (torch.linalg.vector_norm).  Conventions (documented in
lossctl/penalty.py): Keras L1L2 -- l1 * sum|w| + l2 * sum w^2; scikit-learn ElasticNet's penalty term --
alpha * l1_ratio * sum|w| + alpha * (1 - l1_ratio) / 2 * sum w^2.
"""
from __future__ import annotations

import csv
import io
import json
import math
import random

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import lossctl
from conftest import invoke, run_err
from lossctl import penalty as pen

SAMPLES = lossctl.__file__.rsplit("/lossctl/", 1)[0] + "/sample_data"
WEIGHTS = f"{SAMPLES}/weights.parquet"
REL = 1e-12


def sample_weights(columns=("w1", "b1", "w2")) -> dict[str, list[float]]:
    t = pq.read_table(WEIGHTS)
    out = {}
    for c in columns:
        vals = t.column(c).to_pylist()
        out[c] = [float(x) for v in vals for x in (v if isinstance(v, list) else [v])]
    return out


def norms(ws: list[float]) -> tuple[float, float]:
    return math.fsum(abs(x) for x in ws), math.fsum(x * x for x in ws)


def ok(args, input=None):
    res = invoke(args, input=input)
    assert res.exit_code == 0, (res.exit_code, res.stdout, res.stderr)
    assert res.stderr == ""
    return res


# ====================================================================================== alone ===
def test_issue_command_keras_l1_l2():
    ws = sample_weights()
    allw = [x for v in ws.values() for x in v]
    a, s = norms(allw)
    expected = 0.01 * a + 0.001 * s
    w = torch.tensor(allw, dtype=torch.float64)
    assert expected == pytest.approx(float(0.01 * torch.linalg.vector_norm(w, 1) + 0.001 * (w ** 2).sum()), rel=REL)
    res = ok(["penalty", WEIGHTS, "--l1", "0.01", "--l2", "0.001", "--value"])
    assert float(res.stdout) == pytest.approx(expected, rel=REL)
    doc = json.loads(ok(["penalty", WEIGHTS, "--l1", "0.01", "--l2", "0.001", "-f", "json"]).stdout)
    p = doc["penalty"]
    assert doc["schema_version"] == 1 and p["convention"] == "keras"
    assert p["count"] == len(allw) == 160
    assert p["l1_norm"] == pytest.approx(a, rel=REL) and p["l2_squared"] == pytest.approx(s, rel=REL)
    assert p["l2_norm"] == pytest.approx(math.sqrt(s), rel=REL)
    assert p["penalty"] == pytest.approx(expected, rel=REL)
    by_col = {c["column"]: c for c in p["columns"]}
    for c, v in ws.items():
        ca, cs = norms(v)
        assert by_col[c]["count"] == len(v)
        assert by_col[c]["penalty"] == pytest.approx(0.01 * ca + 0.001 * cs, rel=REL)
    # the table shows the same numbers (6 significant digits) and states the convention
    out = ok(["penalty", WEIGHTS, "--l1", "0.01", "--l2", "0.001"]).stdout
    assert f"{expected:.6g}" in out and f"{a:.6g}" in out and "Keras L1L2" in out
    assert "(all)" in out and "w1" in out


@pytest.mark.parametrize("alpha,ratio", [(0.1, 0.5), (0.01, 1.0), (0.3, 0.0), (2.0, 0.2)])
def test_sklearn_elastic_net_convention(alpha, ratio):
    allw = [x for v in sample_weights(("w1", "w2")).values() for x in v]
    a, s = norms(allw)
    expected = alpha * ratio * a + 0.5 * alpha * (1 - ratio) * s
    res = ok(["penalty", WEIGHTS, "--alpha", str(alpha), "--l1-ratio", str(ratio), "--exclude", "b*", "--value"])
    assert float(res.stdout) == pytest.approx(expected, rel=REL)
    doc = json.loads(ok(["penalty", WEIGHTS, "--alpha", str(alpha), "--l1-ratio", str(ratio), "--columns", "w*",
                         "-f", "json"]).stdout)["penalty"]
    assert doc["convention"] == "sklearn" and doc["alpha"] == alpha and doc["l1_ratio"] == ratio
    assert doc["count"] == 144
    assert doc["penalty"] == pytest.approx(expected, rel=REL)


def test_l1_only_l2_only_and_columns():
    ws = sample_weights()
    a, s = norms(ws["w2"])
    assert float(ok(["penalty", WEIGHTS, "--l1", "0.5", "--columns", "w2", "--value"]).stdout) == \
        pytest.approx(0.5 * a, rel=REL)
    assert float(ok(["penalty", WEIGHTS, "--l2", "3", "--columns", "w2", "--value"]).stdout) == \
        pytest.approx(3 * s, rel=REL)
    # torch SGD weight_decay = lambda is the gradient of lambda/2 ||w||^2, i.e. --l2 lambda/2
    w = torch.tensor(ws["w2"], dtype=torch.float64, requires_grad=True)
    pen_value = float(ok(["penalty", WEIGHTS, "--l2", "0.05", "--columns", "w2", "--value"]).stdout)
    (0.05 * (w ** 2).sum()).backward()
    np.testing.assert_allclose(w.grad.numpy(), 0.1 * np.array(ws["w2"]), rtol=1e-15)
    assert pen_value == pytest.approx(0.05 * s, rel=REL)


def test_csv_output():
    out = ok(["penalty", WEIGHTS, "--l1", "0.01", "--l2", "0.001", "-f", "csv"]).stdout
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["column"] for r in rows] == ["w1", "b1", "w2", "(all)"]
    allw = [x for v in sample_weights().values() for x in v]
    a, s = norms(allw)
    assert float(rows[-1]["penalty"]) == pytest.approx(0.01 * a + 0.001 * s, rel=REL)
    assert int(rows[-1]["count"]) == 160


def test_batches_files_and_merge_order(tmp_path):
    rng = np.random.default_rng(4)
    w = rng.normal(0, 3, size=(50, 3))
    paths = []
    for k in range(3):
        p = tmp_path / f"part{k}.csv"
        pcsv.write_csv(pa.table({"a": w[k::3, 0], "b": w[k::3, 1], "c": w[k::3, 2]}), p)
        paths.append(str(p))
    flat = [float(x) for x in w.reshape(-1)]
    a, s = norms(flat)
    for batch in ("1", "4", "1000"):
        v = float(ok(["penalty", *paths, "--l1", "0.2", "--l2", "0.7", "--batch-size", batch, "--value"]).stdout)
        assert v == pytest.approx(0.2 * a + 0.7 * s, rel=REL)
    # states merge by adding, in any order
    states = []
    for chunk in np.array_split(w, 7):
        st_ = pen.PenaltyState().update({"a": chunk[:, 0], "b": chunk[:, 1:]})
        states.append(st_)
    random.Random(1).shuffle(states)
    acc = pen.PenaltyState()
    for st_ in states:
        acc.merge(st_)
    ta, ts, tn = acc.totals()
    assert tn == 150 and ta == pytest.approx(a, rel=REL) and ts == pytest.approx(s, rel=REL)


@settings(max_examples=40, deadline=None)
@given(ws=st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=1, max_size=40),
       l1=st.floats(0, 10), l2=st.floats(0, 10))
def test_pure_functions_match_numpy_and_torch(ws, l1, l2):
    t = torch.tensor(ws, dtype=torch.float64)
    exp = l1 * float(torch.linalg.vector_norm(t, 1)) + l2 * float(torch.linalg.vector_norm(t, 2)) ** 2
    assert pen.penalty(ws, l1=l1, l2=l2) == pytest.approx(exp, rel=1e-10, abs=1e-300)
    assert pen.elastic_net(ws, alpha=l1, l1_ratio=0.25) == pytest.approx(
        0.25 * l1 * float(np.abs(ws).sum()) + 0.375 * l1 * float(np.square(ws).sum()), rel=1e-10, abs=1e-300)


# ====================================================================================== + risk ===
def _mse_of_regression_csv() -> float:
    t = pcsv.read_csv(f"{SAMPLES}/regression.csv")
    y, p = t.column("y_true").to_pylist(), t.column("y_pred").to_pylist()
    return math.fsum((a - b) ** 2 for a, b in zip(y, p)) / len(y)


def test_risk_plus_penalty_from_eval_json_on_stdin():
    mse = _mse_of_regression_csv()
    allw = [x for v in sample_weights().values() for x in v]
    a, s = norms(allw)
    penalty = 0.001 * s
    ev = ok(["eval", f"{SAMPLES}/regression.csv", "-l", "mse", "-l", "mae", "--by", "region", "-f", "json"]).stdout
    doc = json.loads(ok(["penalty", WEIGHTS, "--l2", "0.001", "--add-to", "-", "-f", "json"], input=ev).stdout)
    objs = doc["objectives"]
    evdoc = json.loads(ev)
    assert len(objs) == len(evdoc["results"])
    for o, r in zip(objs, evdoc["results"]):
        assert (o["loss"], o["group"], o["risk"]) == (r["loss"], r["group"], r["value"])
        assert o["penalty"] == pytest.approx(penalty, rel=REL)
        assert o["objective"] == pytest.approx(r["value"] + penalty, rel=REL)
    overall_mse = next(o for o in objs if o["loss"] == "mse" and o["group"] is None)
    assert overall_mse["objective"] == pytest.approx(mse + penalty, rel=REL)
    # --value: one number per overall result, in order
    vals = ok(["penalty", WEIGHTS, "--l2", "0.001", "--add-to", "-", "--value"], input=ev).stdout.split()
    assert [float(v) for v in vals] == pytest.approx(
        [r["value"] + penalty for r in evdoc["results"] if r["group"] is None], rel=REL)
    # the table and a file instead of stdin
    out = ok(["penalty", WEIGHTS, "--l2", "0.001", "--add-to", "-"], input=ev).stdout
    assert "risk + penalty" in out and f"{overall_mse['objective']:.6g}" in out


def test_risk_plus_penalty_from_a_number(tmp_path):
    allw = [x for v in sample_weights().values() for x in v]
    a, s = norms(allw)
    v = float(ok(["penalty", WEIGHTS, "--l1", "0.01", "--l2", "0.001", "--risk", "0.25", "--value"]).stdout)
    assert v == pytest.approx(0.25 + 0.01 * a + 0.001 * s, rel=REL)
    out = ok(["penalty", WEIGHTS, "--l1", "0.01", "--risk", "0.25", "-f", "csv"]).stdout
    row = list(csv.DictReader(io.StringIO(out)))[0]
    assert float(row["objective"]) == pytest.approx(0.25 + 0.01 * a, rel=REL)


# ===================================================================================== errors ===
def test_usage_errors(tmp_path):
    assert "no penalty strength" in run_err(["penalty", WEIGHTS], 2)
    assert "not both" in run_err(["penalty", WEIGHTS, "--l1", "1", "--alpha", "1"], 2)
    assert "--l1 must be a finite number >= 0" in run_err(["penalty", WEIGHTS, "--l1", "-1"], 2)
    assert "l1_ratio must be in [0, 1]" in run_err(["penalty", WEIGHTS, "--alpha", "1", "--l1-ratio", "2"], 2)
    assert "--risk VALUE or --add-to JSON" in run_err(["penalty", WEIGHTS, "--l1", "1", "--risk", "1",
                                                       "--add-to", "x.json"], 2)


def test_input_errors(tmp_path):
    bad = tmp_path / "w.csv"
    bad.write_text("w,name\n1.5,a\nnan,b\n2,c\n")
    msg = run_err(["penalty", bad, "--l1", "1"], 3)
    assert msg.startswith(f"{bad}, column 'w', row 2:")
    msg = run_err(["penalty", bad, "--l1", "1", "--columns", "name"], 3)
    assert msg == f"{bad}, column 'name': weights must be numbers (column type string)"
    assert "no such file" in run_err(["penalty", tmp_path / "nope.parquet", "--l1", "1"], 3)
    assert "no numeric weight columns" in run_err(["penalty", WEIGHTS, "--l1", "1", "--exclude", "*"], 3)
    assert "no \"results\" list" in run_err(["penalty", WEIGHTS, "--l1", "1", "--add-to", "-"], 3, input='{"a": 1}')
    assert "not a JSON document" in run_err(["penalty", WEIGHTS, "--l1", "1", "--add-to", "-"], 3, input="mse 0.2")
    assert "cannot read --add-to file" in run_err(["penalty", WEIGHTS, "--l1", "1", "--add-to",
                                                   tmp_path / "missing.json"], 3)
