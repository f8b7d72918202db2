"""``lossctl compare``: pairing by key or by row, deltas, the paired bootstrap interval and p-value, and
the --max-regression gate in its two modes (non-inferiority on the interval, and point estimate).

Reference values (each side's loss, the deltas) are computed here with math.fsum from the generated
data; the interval's replicates are rebuilt directly from the Poisson counts for one test.
"""
from __future__ import annotations

import json
import math
import os

import numpy as np
import pyarrow as pa
import pytest

from conftest import invoke, run_err, write
from lossctl import compare as cmpmod
from lossctl.errors import UsageError

HERE = os.path.dirname(os.path.abspath(__file__))
CI_DIR = os.path.join(os.path.dirname(HERE), "sample_data", "ci")


def pair(tmp_path, n=300, extra_sd=0.0, shift=0.0, seed=0, ext="parquet", shuffle_candidate=False):
    """Baseline and candidate files of the same targets; candidate = baseline + N(0, extra_sd) + shift."""
    rng = np.random.default_rng(seed)
    y = rng.gamma(4.0, 0.6, size=n)
    base = y + rng.normal(0, 0.5, size=n)
    cand = base + rng.normal(0, 1, size=n) * extra_sd + shift
    region = rng.choice(["east", "west"], size=n)
    w = rng.integers(1, 4, size=n).astype(np.float64)
    ids = np.arange(1, n + 1)
    bt = pa.table({"id": ids, "region": region, "y_true": y, "y_pred": base, "weight": w})
    ct = pa.table({"id": ids, "region": region, "y_true": y, "y_pred": cand, "weight": w})
    if shuffle_candidate:
        ct = ct.take(pa.array(rng.permutation(n)))
    return (write(bt, tmp_path / f"base.{ext}"), write(ct, tmp_path / f"cand.{ext}"),
            {"y": y, "base": base, "cand": cand, "w": w, "region": region})


def mse(p, y, w=None, keep=None):
    keep = np.ones(len(y), bool) if keep is None else keep
    w = np.ones(len(y)) if w is None else w
    return math.fsum((w * (p - y) ** 2)[keep]) / math.fsum(w[keep])


def run_json(args, code=0):
    res = invoke(["compare", *args, "-f", "json"])
    assert res.exit_code == code, (res.exit_code, res.stdout, res.stderr)
    return json.loads(res.stdout)


# -- the paired test ----------------------------------------------------------------------------------
def test_identical_predictions_are_not_flagged(tmp_path):
    b, _, _ = pair(tmp_path)
    doc = run_json([b, b, "--on", "id", "-l", "mse", "-l", "mae", "--max-regression", "0"])
    for c in doc["comparisons"]:
        assert c["delta"] == 0.0 and c["rel_delta"] == 0.0
        assert c["ci"]["low"] == 0.0 and c["ci"]["high"] == 0.0
        assert c["p_value"] == 1.0 and c["test"] == "paired-bootstrap"
    assert all(g["passed"] for g in doc["gates"])
    # the point mode too, and by row
    run_json([b, b, "-l", "mse", "--max-regression", "0", "--gate-mode", "point"])


def test_planted_regression_is_detected(tmp_path):
    b, c, d = pair(tmp_path, extra_sd=0.3, seed=1)
    doc = run_json([b, c, "--on", "id", "-l", "mse", "--max-regression", "5%"], code=1)
    [row] = doc["comparisons"]
    want_b, want_c = mse(d["base"], d["y"]), mse(d["cand"], d["y"])
    assert row["baseline"] == pytest.approx(want_b, rel=1e-12)
    assert row["candidate"] == pytest.approx(want_c, rel=1e-12)
    assert row["delta"] == pytest.approx(want_c - want_b, rel=1e-9)
    assert row["rel_delta"] == pytest.approx((want_c - want_b) / want_b, rel=1e-9)
    assert 0 < row["ci"]["low"] < row["delta"] < row["ci"]["high"]
    assert row["p_value"] == pytest.approx(1 / 1001)       # no replicate delta as far from it as 0 is
    [g] = doc["gates"]
    assert g["passed"] is False and g["value"] == row["ci"]["rel_high"] and g["threshold"] == 0.05


def test_p_value_is_not_small_for_a_noise_only_difference(tmp_path):
    # candidate = baseline + small symmetric noise: MSE moves a little by chance only
    b, c, _ = pair(tmp_path, extra_sd=0.02, seed=2)
    [row] = run_json([b, c, "--on", "id", "-l", "mae"])["comparisons"]
    assert row["p_value"] > 0.05 and row["ci"]["low"] < 0 < row["ci"]["high"]


def test_p_value_and_interval_are_calibrated_under_the_null(tmp_path):
    # 400 simulated comparisons (one --by group each) of two models with the same error distribution:
    # the true delta is 0, so p < alpha should happen at rate ~alpha and the 95% interval should hold 0
    # ~95% of the time (allowed: 3.5 binomial standard errors + 0.01)
    R, n = 400, 100
    rng = np.random.default_rng(21)
    y = rng.normal(size=R * n)
    cols = {"id": np.arange(R * n), "rep": np.repeat(np.arange(R), n), "y_true": y}
    b = write(pa.table({**cols, "y_pred": y + rng.normal(size=R * n)}), tmp_path / "b.parquet")
    c = write(pa.table({**cols, "y_pred": y + rng.normal(size=R * n)}), tmp_path / "c.parquet")
    cmp = cmpmod.compare(b, c, None, ["mae"], on="id", replicates=400, seed=1, by=["rep"])
    rows = [r for r in cmp.rows if r.group]
    p = np.array([r.p_value for r in rows])
    for alpha in (0.05, 0.2):
        assert abs(np.mean(p < alpha) - alpha) <= 3.5 * math.sqrt(alpha * (1 - alpha) / R) + 0.01
    covered = np.mean([r.ci_low <= 0 <= r.ci_high for r in rows])
    assert abs(covered - 0.95) <= 3.5 * math.sqrt(0.95 * 0.05 / R) + 0.01


def test_paired_interval_equals_direct_computation(tmp_path):
    # rows paired by position: row i of both files gets the same Poisson counts P[i, b]
    b, c, d = pair(tmp_path, n=120, extra_sd=0.2, seed=3)
    B, seed = 200, 5
    [row] = run_json([b, c, "-l", "mse", "-w", "weight", "--bootstrap", str(B), "--seed", str(seed),
                      "--ci", "0.9"])["comparisons"]
    P = cmpmod.PoissonBootstrap(B, seed).gen.counts(np.arange(120, dtype=np.uint64)).astype(np.float64)
    w = d["w"]
    rb = (w * (d["base"] - d["y"]) ** 2) @ P / (w @ P)
    rc = (w * (d["cand"] - d["y"]) ** 2) @ P / (w @ P)
    lo, hi = np.percentile(rc - rb, [5, 95])
    assert row["ci"]["low"] == pytest.approx(lo, rel=1e-9) and row["ci"]["high"] == pytest.approx(hi, rel=1e-9)
    delta = row["delta"]
    p = (1 + np.sum(np.abs((rc - rb) - delta) >= abs(delta))) / (B + 1)
    assert row["p_value"] == pytest.approx(p)


def test_paired_p_value_unit():
    reps = np.array([0.5, 1.0, 1.5, 2.0])
    # centred at delta = 1: |reps - 1| >= 1 holds for 2.0 only -> (1 + 1) / 5
    assert cmpmod.paired_p_value(1.0, reps) == pytest.approx(2 / 5)
    assert cmpmod.paired_p_value(0.0, np.zeros(9)) == 1.0
    assert math.isnan(cmpmod.paired_p_value(float("nan"), reps))


# -- pairing ------------------------------------------------------------------------------------------------
def test_pairing_by_key_ignores_row_order(tmp_path):
    b, c, _ = pair(tmp_path, extra_sd=0.2, seed=4)
    ordered = run_json([b, c, "--on", "id", "-l", "mse,mae", "--by", "region"])["comparisons"]
    os.makedirs(tmp_path / "s")
    b2, c2, _ = pair(tmp_path / "s", extra_sd=0.2, seed=4, shuffle_candidate=True)
    shuffled = run_json([b2, c2, "--on", "id", "-l", "mse,mae", "--by", "region"])["comparisons"]
    for x, y in zip(ordered, shuffled):
        # the same counts per key; only the order of the floating-point sums differs
        assert x["group"] == y["group"] and x["p_value"] == y["p_value"]
        for k in ("low", "high", "rel_low", "rel_high"):
            assert x["ci"][k] == pytest.approx(y["ci"][k], rel=1e-12, abs=1e-15)
        assert x["delta"] == pytest.approx(y["delta"], rel=1e-12, abs=1e-15)
    # by position, the shuffled files do not hold the same targets row by row: an input error
    msg = run_err(["compare", b2, c2, "-l", "mse"], 3)
    assert "do not hold the same target" in msg and "--on KEY" in msg


def test_three_files_join_labels_on_the_key(tmp_path):
    b, c, d = pair(tmp_path, extra_sd=0.2, seed=5)
    n = len(d["y"])
    ids = np.arange(1, n + 1)
    pb = write(pa.table({"id": ids, "y_pred": d["base"]}), tmp_path / "pb.csv")
    pc = write(pa.table({"id": ids[::-1], "y_pred": d["cand"][::-1]}), tmp_path / "pc.csv")
    labels = write(pa.table({"id": ids, "y_true": d["y"]}), tmp_path / "labels.csv")
    three = run_json([pb, pc, labels, "--on", "id", "-l", "mse"])["comparisons"][0]
    two = run_json([b, c, "--on", "id", "-l", "mse"])["comparisons"][0]
    assert three["delta"] == pytest.approx(two["delta"], rel=1e-12)
    assert three["p_value"] == two["p_value"]
    for k in ("low", "high", "rel_low", "rel_high"):
        assert three["ci"][k] == pytest.approx(two["ci"][k], rel=1e-12)


def test_missing_key_column_names_on(tmp_path):
    b, c, _ = pair(tmp_path, n=20)
    assert run_err(["compare", b, c, "--on", "key", "-l", "mse"], 3).startswith(f"{b}: no key column 'key' for --on")


@pytest.mark.parametrize("how, needle, code", [
    ("rows", "has 300 rows to compare but", 3),
    ("targets", "do not hold the same target for the same keys (--on id)", 3),
    ("dupkey", "appear more than once", 3),
])
def test_mismatched_inputs_are_input_errors(tmp_path, how, needle, code):
    b, c, d = pair(tmp_path)
    tbl = pa.table({"id": np.arange(1, 301), "y_true": d["y"], "y_pred": d["cand"]})
    if how == "rows":
        tbl = tbl.slice(0, 250)
    elif how == "targets":
        tbl = tbl.set_column(1, "y_true", pa.array(d["y"] + 0.001))
    else:
        tbl = tbl.set_column(0, "id", pa.array(np.r_[np.arange(1, 300), 1]))
    other = write(tbl, tmp_path / "other.parquet")
    msg = run_err(["compare", b, other, "-l", "mse"] + (["--on", "id"] if how != "rows" else []), code)
    assert needle in msg


# -- groups and the gate --------------------------------------------------------------------------------------
def test_by_group_rows_and_gates(tmp_path):
    # candidate regresses in west only
    b, c, d = pair(tmp_path, seed=6)
    rng = np.random.default_rng(0)
    cand = d["cand"] + np.where(d["region"] == "west", rng.normal(0, 0.4, size=300), 0.0)
    ct = pa.table({"id": np.arange(1, 301), "region": d["region"], "y_true": d["y"], "y_pred": cand,
                   "weight": d["w"]})
    c = write(ct, tmp_path / "cand_west.parquet")
    doc = run_json([b, c, "--on", "id", "-l", "mse", "-w", "weight", "--by", "region", "--max-regression", "0.01"],
                   code=1)
    rows = {(r["group"] or {}).get("region", "(all)"): r for r in doc["comparisons"]}
    assert list(rows) == ["(all)", "east", "west"]
    for name, keep in (("east", d["region"] == "east"), ("west", d["region"] == "west")):
        want = mse(cand, d["y"], d["w"], keep) - mse(d["base"], d["y"], d["w"], keep)
        assert rows[name]["delta"] == pytest.approx(want, rel=1e-9, abs=1e-15)
    assert rows["east"]["delta"] == 0.0 and rows["east"]["p_value"] == 1.0
    gates = {(g["group"] or {}).get("region", "(all)"): g["passed"] for g in doc["gates"]}
    assert gates == {"(all)": False, "east": True, "west": False}


def test_ci_and_point_modes_on_the_sample_data():
    # sample_data/ci: the candidate's overall MSE is 4.4% lower than the baseline's, but the interval
    # of the relative delta reaches +16.7%: a point-estimate gate at 10% passes, non-inferiority fails
    b, c = os.path.join(CI_DIR, "baseline.parquet"), os.path.join(CI_DIR, "candidate.parquet")
    doc = run_json([b, c, "--on", "id", "-l", "mse", "--max-regression", "10%", "--gate-mode", "point"])
    [row], [g] = doc["comparisons"], doc["gates"]
    assert row["rel_delta"] < 0 and g["passed"] and g["value"] == row["rel_delta"] and g["mode"] == "point"
    doc = run_json([b, c, "--on", "id", "-l", "mse", "--max-regression", "10%"], code=1)
    [row], [g] = doc["comparisons"], doc["gates"]
    assert row["ci"]["rel_high"] > 0.10 and not g["passed"] and g["value"] == row["ci"]["rel_high"]
    # an absolute margin compares the delta's own interval
    doc = run_json([b, c, "--on", "id", "-l", "mse", "--max-regression", "0.05"])
    assert doc["gates"][0]["value"] == doc["comparisons"][0]["ci"]["high"] < 0.05


def test_table_output_and_failed_gate_exit_1(tmp_path):
    b, c, _ = pair(tmp_path, extra_sd=0.3, seed=1)
    res = invoke(["compare", b, c, "--on", "id", "-l", "mse", "--max-regression", "2%"])
    assert res.exit_code == 1
    lines = res.stdout.splitlines()
    assert lines[0] == ("delta = candidate - baseline; 95% CI and two-sided p-value by paired bootstrap "
                        "(1000 replicates, seed 0)")
    assert [h.strip() for h in lines[1].split("┃")] == ["loss", "base", "cand", "delta", "delta%", "CI lo", "CI hi", "p"]
    assert "…" not in res.stdout
    assert "│ mse max-regression 2% (upper 95% bound) │ (all) │" in res.stdout and "FAIL" in res.stdout
    assert res.stderr.startswith("lossctl: error: 1 of 1 quality gate(s) failed: mse relative delta, upper 95% "
                                 "bound = ")


@pytest.mark.parametrize("text, value, relative", [("2%", 0.02, True), ("0.01", 0.01, False), (" 0 ", 0.0, False),
                                                   ("12.5 %", 0.125, True)])
def test_parse_margin(text, value, relative):
    m = cmpmod.parse_margin(text)
    assert m.value == pytest.approx(value) and m.relative is relative


@pytest.mark.parametrize("text", ["abc", "-1", "-2%", "inf", "nan", "%", ""])
def test_bad_margin_is_a_usage_error(text, tmp_path):
    with pytest.raises(UsageError):
        cmpmod.parse_margin(text)
    b, _, _ = pair(tmp_path, n=20)
    assert "--max-regression" in run_err(["compare", b, b, "-l", "mse", "--max-regression", text], 2)


def test_json_carries_the_signature_of_both_inputs(tmp_path):
    import hashlib
    b, c, _ = pair(tmp_path)
    doc = run_json([b, c, "--on", "id", "-l", "huber:delta=0.5", "--seed", "11"])
    sig = doc["signature"]
    assert sig["seed"] == 11 and sig["reduction"] == "mean"
    assert sig["losses"] == [{"loss": "huber", "label": "huber(delta=0.5)", "params": {"delta": 0.5}}]
    assert [(i["path"], i["rows"]) for i in sig["inputs"]] == [(b, 300), (c, 300)]
    for i in sig["inputs"]:
        assert i["sha256"] == hashlib.sha256(open(i["path"], "rb").read()).hexdigest()
    assert doc["test"] == "paired-bootstrap" and doc["delta"] == "candidate - baseline"
