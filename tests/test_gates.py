"""Quality gates of ``lossctl eval --fail-if``: the grammar (never eval), every operator passing and
failing with the documented exit code, gates on every --by group, and what is printed.

Expected values come from conftest's reference sums (math.fsum over per-row Python floats) on dyadic
data, where lossctl's reduced values are exact: a threshold equal to the value tests the boundary of
each operator exactly.
"""
from __future__ import annotations

import json
import math
import os

import pytest

from conftest import col, invoke, per_row, run_err, wmean, write
from lossctl import gates
from lossctl.errors import UsageError

REGIONS = ("east", "north", "south", "west")


def fails(args):
    """Run a command whose gate must fail: exit 1, results on stdout, one diagnostic line on stderr."""
    res = invoke(args)
    assert res.exit_code == 1, (res.exit_code, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr
    assert res.stderr.count("\n") == 1 and res.stderr.startswith("lossctl: error: "), repr(res.stderr)
    return res


def passes(args):
    res = invoke(args)
    assert res.exit_code == 0, (res.exit_code, res.stdout, res.stderr)
    assert res.stderr == ""
    return res


def gate_rows(stdout: str) -> list[list[str]]:
    """Body rows of the gates table (the table whose header starts with 'gate')."""
    lines = stdout.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("┃ gate"))
    rows = []
    for ln in lines[start + 2:]:
        if ln.startswith("└"):
            break
        rows.append([c.strip() for c in ln.strip("│").split("│")])
    return rows


def group_value(tbl, loss, region=None, weighted=False):
    keep = [i for i, r in enumerate(col(tbl, "region")) if region is None or r == region]
    vals = per_row(loss, tbl)
    w = col(tbl, "weight") if weighted else None
    return wmean([vals[i] for i in keep], None if w is None else [w[i] for i in keep])


# -- grammar -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, loss, params, group, overall, op, thr", [
    ("mse > 0.25", "mse", (), None, False, ">", 0.25),
    ("mse>0.25", "mse", (), None, False, ">", 0.25),
    ("  mae <= 4 ", "mae", (), None, False, "<=", 4.0),
    ("rmse >= -1.5e-3", "rmse", (), None, False, ">=", -1.5e-3),
    ("log_loss < +2E2", "log_loss", (), None, False, "<", 200.0),
    ("mse > .5", "mse", (), None, False, ">", 0.5),
    ("mse > inf", "mse", (), None, False, ">", math.inf),
    ("huber:delta=0.5 > 1", "huber", (("delta", "0.5"),), None, False, ">", 1.0),
    ("quantile:alpha=0.9,x=2 > 1", "quantile", (("alpha", "0.9"), ("x", "2")), None, False, ">", 1.0),
    ("mse (north) > 1", "mse", None, ((None, "north"),), False, ">", 1.0),
    ("mse (region=north) > 1", "mse", None, (("region", "north"),), False, ">", 1.0),
    ("mse ( region = 'a, b' , seg=\"x)y\" ) > 1", "mse", None, (("region", "a, b"), ("seg", "x)y")), False, ">", 1.0),
    ("mse (all) > 1", "mse", None, None, True, ">", 1.0),
    ("mse ('all') > 1", "mse", None, ((None, "all"),), False, ">", 1.0),
    ("my_pkg:asym_l2:alpha=0.3 < 2", "my_pkg:asym_l2", (("alpha", "0.3"),), None, False, "<", 2.0),
])
def test_parse_valid(text, loss, params, group, overall, op, thr):
    g = gates.parse(text)
    assert (g.loss, g.group, g.overall_only, g.op, g.threshold) == (loss, group, overall, op, thr)
    if params is not None:
        assert g.params == params


BAD = ["", "   ", "mse", "mse 0.3", "mse == 0.3", "mse = 0.3", "mse != 0.3", "mse => 1", "mse > ", "mse > 2%",
       "mse > abc", "mse > 1 2", "mse > 1e", "mse > 1.2.3", "mse > nan", "> 1", "0.3 < mse", "(north) > 1",
       "mse (north > 1", "mse () > 1", "mse (a=) > 1", "mse ('north) > 1", "huber: > 1",
       "huber:delta= > 1", "mse > 0.3 and mae > 1", "mse > __import__('os').getcwd()", "mse > 1; rm -rf /",
       "mse >> 1", "mse < > 1"]


@pytest.mark.parametrize("text", BAD)
def test_parse_errors_are_usage_errors(text):
    with pytest.raises(UsageError) as exc:
        gates.parse(text)
    msg = exc.value.message
    assert msg.startswith(f"--fail-if {text!r}"), msg
    assert "OP one of < <= > >=" in msg and "\n" not in msg


@pytest.mark.parametrize("text", BAD[:12] + ["mse > __import__('os').getcwd()"])
def test_cli_grammar_errors_exit_2_before_reading_data(text, tmp_path):
    # the input does not exist: a gate error must be reported first (exit 2, not 3)
    msg = run_err(["eval", tmp_path / "missing.csv", "-l", "mse", "--fail-if", text], 2)
    assert msg.startswith(f"--fail-if {text!r}")


def test_gate_text_is_never_evaluated(dyadic, tmp_path, monkeypatch):
    _, path = dyadic
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "pwned"
    expr = f"mse > __import__('pathlib').Path('{marker}').touch() or 1"
    run_err(["eval", path, "-l", "mse", "--fail-if", expr], 2)
    assert not marker.exists()


def test_column_of_the_error_points_at_the_problem():
    with pytest.raises(UsageError) as exc:
        gates.parse("mse > 0.3x")
    assert "column 10: unexpected 'x' after the number" in exc.value.message


# -- each operator passes and fails with the right exit code -------------------------------------------
@pytest.mark.parametrize("op, below, equal, above", [
    # does the gate fail when the threshold is below / equal to / above the value?
    (">", True, False, False),
    (">=", True, True, False),
    ("<", False, False, True),
    ("<=", False, True, True),
])
def test_every_operator_at_and_around_the_boundary(dyadic, op, below, equal, above):
    tbl, path = dyadic
    v = group_value(tbl, "mse")
    for thr, should_fail in ((v - 0.0625, below), (v, equal), (v + 0.0625, above)):
        args = ["eval", path, "-l", "mse", "--fail-if", f"mse {op} {thr!r}"]
        res = fails(args) if should_fail else passes(args)
        [row] = gate_rows(res.stdout)
        assert row[:3] == [f"mse {op} {thr!r}", "(all)", f"{v:.6g}"]
        assert row[3] == f"{op} {thr:.6g}"
        assert row[4] == ("FAIL" if should_fail else "PASS")


def test_every_check_is_printed_before_exit_1(dyadic):
    tbl, path = dyadic
    mse, mae = group_value(tbl, "mse"), group_value(tbl, "mae")
    res = fails(["eval", path, "-l", "mse", "-l", "mae", "--fail-if", f"mse > {mse / 2!r}",
                 "--fail-if", f"mae > {mae * 2!r}"])
    rows = gate_rows(res.stdout)
    assert [(r[0], r[2], r[4]) for r in rows] == [(f"mse > {mse / 2!r}", f"{mse:.6g}", "FAIL"),
                                                  (f"mae > {mae * 2!r}", f"{mae:.6g}", "PASS")]
    # the results table comes first, the gates after it
    assert res.stdout.index("┃ loss") < res.stdout.index("┃ gate")
    assert res.stderr == f"lossctl: error: 1 of 2 quality gate(s) failed: mse = {mse:.6g} > {mse / 2:.6g}\n"


def test_all_gates_pass_exit_0(dyadic):
    tbl, path = dyadic
    mse = group_value(tbl, "mse")
    res = passes(["eval", path, "-l", "mse,mae", "--fail-if", f"mse > {mse + 1}", "--fail-if", "mae >= 100"])
    assert [r[4] for r in gate_rows(res.stdout)] == ["PASS", "PASS"]


def test_gate_with_parameters_and_alias(dyadic):
    _, path = dyadic
    res = invoke(["eval", path, "-l", "huber:delta=0.5", "-l", "huber:delta=2", "--fail-if", "huber:delta=2.0 > 0",
                  "-f", "json"])
    assert res.exit_code == 1
    doc = json.loads(res.stdout)
    [g] = doc["gates"]
    want = next(r["value"] for r in doc["results"] if r["group"] is None and r["params"]["delta"] == 2.0)
    assert g["loss"] == "huber(delta=2.0)" and g["value"] == want and g["passed"] is False
    # an alias names the same loss
    res = invoke(["eval", path, "-l", "mse", "--fail-if", "l2 > 0", "-f", "json"])
    assert res.exit_code == 1 and json.loads(res.stdout)["gates"][0]["loss"] == "mse"
    # the loss is evaluated with two parameter sets: a gate must say which
    msg = run_err(["eval", path, "-l", "huber:delta=0.5", "-l", "huber:delta=2", "--fail-if", "huber > 1"], 2)
    assert "several parameter sets" in msg


@pytest.mark.parametrize("gate, needle", [
    ("mae > 1", "mae is not among the evaluated losses (mse, huber); add -l mae"),
    ("no_such_loss > 1", "no_such_loss"),
    ("mse (north) > 1", "names a group but no --by column is given"),
    ("huber:delta > 1", "huber:delta"),     # PLUGIN:LOSS syntax, and no such plugin loss
])
def test_gate_on_a_loss_or_group_not_evaluated_is_usage_error(dyadic, gate, needle):
    _, path = dyadic
    assert needle in run_err(["eval", path, "-l", "mse", "-l", "huber", "--fail-if", gate], 2)


# -- gates and groups ---------------------------------------------------------------------------------------
def test_gate_checks_overall_and_every_group(dyadic):
    tbl, path = dyadic
    vals = {r: group_value(tbl, "mse", r, weighted=True) for r in REGIONS}
    overall = group_value(tbl, "mse", weighted=True)
    worst = max(vals, key=vals.get)
    second = sorted(vals.values())[-2]
    thr = (second + vals[worst]) / 2       # only the worst region is above it
    assert overall < thr
    res = fails(["eval", path, "-l", "mse", "-w", "weight", "--by", "region", "--fail-if", f"mse > {thr!r}"])
    rows = gate_rows(res.stdout)
    assert [r[1] for r in rows] == ["(all)"] + [f"region={r}" for r in REGIONS]
    assert [r[2] for r in rows] == [f"{overall:.6g}"] + [f"{vals[r]:.6g}" for r in REGIONS]
    assert [r[4] for r in rows] == ["PASS"] + ["FAIL" if r == worst else "PASS" for r in REGIONS]
    assert f"1 of 5 quality gate(s) failed: mse (region={worst})" in res.stderr
    # the same threshold on the overall row alone passes
    passes(["eval", path, "-l", "mse", "-w", "weight", "--by", "region", "--fail-if", f"mse (all) > {thr!r}"])
    # and on one named group, keyed or positional, fails (or passes) for that group only
    for sel in (f"region={worst}", worst, f"'{worst}'"):
        res = fails(["eval", path, "-l", "mse", "-w", "weight", "--by", "region", "--fail-if", f"mse ({sel}) > {thr!r}"])
        assert [(r[1], r[4]) for r in gate_rows(res.stdout)] == [(f"region={worst}", "FAIL")]
    best = min(vals, key=vals.get)
    passes(["eval", path, "-l", "mse", "-w", "weight", "--by", "region", "--fail-if", f"mse ({best}) > {thr!r}"])


def test_group_gate_with_two_by_columns(tmp_path):
    from conftest import dyadic_table
    import pyarrow as pa
    tbl = dyadic_table(n=32)
    tbl = tbl.append_column("tier", pa.array(["a", "b"] * 16))
    path = write(tbl, tmp_path / "p.parquet")
    res = invoke(["eval", path, "-l", "mae", "--by", "region,tier", "--fail-if", "mae (region=east) > -1",
                  "-f", "json"])
    assert res.exit_code == 1
    got = [(g["group"]["region"], g["group"]["tier"]) for g in json.loads(res.stdout)["gates"]]
    assert got == [("east", "a"), ("east", "b")]
    msg = run_err(["eval", path, "-l", "mae", "--by", "region,tier", "--fail-if", "mae (east) > 1"], 2)
    assert "one value per column" in msg
    msg = run_err(["eval", path, "-l", "mae", "--by", "region,tier", "--fail-if", "mae (zone=x) > 1"], 2)
    assert "'zone' is not a --by column" in msg


def test_unknown_group_is_a_usage_error_listing_the_groups(dyadic):
    _, path = dyadic
    msg = run_err(["eval", path, "-l", "mse", "--by", "region", "--fail-if", "mse (region=nowhere) > 1"], 2)
    assert "no group region=nowhere in the data; groups are: region=east, region=north, region=south, region=west" in msg


def test_nan_value_fails_its_gate(tmp_path):
    import pyarrow as pa
    path = write(pa.table({"y_true": [1.0, 2.0, 3.0], "y_pred": [1.0, float("nan"), 3.0]}), tmp_path / "n.parquet")
    res = fails(["eval", path, "-l", "mse", "--nan-policy", "propagate", "--fail-if", "mse > 100"])
    assert gate_rows(res.stdout)[0][2:] == ["nan", "> 100", "FAIL"]
    assert "no value to check, so the gate fails" in res.stderr


# -- gates beside machine output, and other exit codes -----------------------------------------------------
def test_gates_in_json(dyadic):
    tbl, path = dyadic
    mse = group_value(tbl, "mse")
    res = invoke(["eval", path, "-l", "mse", "--fail-if", f"mse >= {mse!r}", "--fail-if", "mse > 1e9", "-f", "json"])
    assert res.exit_code == 1
    doc = json.loads(res.stdout)           # stdout stays one valid JSON document
    assert doc["gates"] == [
        {"expr": f"mse >= {mse!r}", "kind": "fail_if", "loss": "mse", "group": None, "value": mse,
         "threshold": mse, "op": ">=", "passed": False},
        {"expr": "mse > 1e9", "kind": "fail_if", "loss": "mse", "group": None, "value": mse,
         "threshold": 1e9, "op": ">", "passed": True}]
    assert res.stderr.startswith("lossctl: error: 1 of 2 quality gate(s) failed")


def test_gates_beside_csv_and_value_go_to_stderr(dyadic):
    tbl, path = dyadic
    mse = group_value(tbl, "mse")
    res = invoke(["eval", path, "-l", "mse", "--fail-if", "mse > 0", "--value"])
    assert res.exit_code == 1
    assert res.stdout == f"{mse!r}\n"
    assert res.stderr.splitlines()[0] == f"gate FAIL: mse > 0: mse = {mse:.6g} > 0"
    res = invoke(["eval", path, "-l", "mse", "--fail-if", "mse < 0", "-f", "csv"])
    assert res.exit_code == 0
    assert res.stderr == f"gate PASS: mse < 0: mse = {mse:.6g} >= 0\n"
    assert res.stdout.splitlines()[0].startswith("loss,label,reduction,value")


def test_input_errors_keep_exit_3_with_gates(dyadic):
    _, path = dyadic
    msg = run_err(["eval", path, "-l", "mse", "--target", "nope", "--fail-if", "mse > 1"], 3)
    assert "nope" in msg


def test_gate_failure_writes_complete_output_file(dyadic, tmp_path):
    # the per-sample file is committed before the gate's exit 1: a CI job can still upload it
    _, path = dyadic
    out = tmp_path / "per_sample.parquet"
    fails(["eval", path, "-l", "mse", "-r", "none", "-o", out, "--fail-if", "mse > 0"])
    import pyarrow.parquet as pq
    assert pq.read_table(out).num_rows == 24
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".")]


def test_numeric_group_values(tmp_path):
    import pyarrow as pa
    tbl = pa.table({"y_true": [0.0, 0.0, 0.0, 0.0], "y_pred": [1.0, 1.0, 2.0, 2.0], "fold": [3, 3, 7, 7]})
    path = write(tbl, tmp_path / "f.csv")
    res = fails(["eval", path, "-l", "mse", "--by", "fold", "--fail-if", "mse (7) >= 4"])
    assert [(r[1], r[2], r[4]) for r in gate_rows(res.stdout)] == [("fold=7", "4", "FAIL")]
    passes(["eval", path, "-l", "mse", "--by", "fold", "--fail-if", "mse (fold=3.0) >= 4"])
