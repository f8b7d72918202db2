"""Every flag of ``lossctl eval`` and the ``list`` / ``explain`` / ``--version`` commands, through CliRunner.

Expected numbers come from conftest's independent references (math.fsum over Python floats); the data
is dyadic so that output text can be compared exactly.
"""
from __future__ import annotations

import json
import math
from importlib.metadata import version as dist_version

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest

import lossctl
from conftest import (box_table, col, csv_bytes, dyadic_table, g6, invoke, per_row, real_table, run_err, run_ok,
                      wmean, wsum, write)


def _num(v: float) -> str:
    """A float as pyarrow's CSV writer prints it (shortest round-trip digits, no trailing '.0')."""
    r = repr(float(v))
    return r[:-2] if r.endswith(".0") else r


def _summary(rows, n, header="mean"):
    return box_table(["loss", header, "rows"], [[name, g6(v), str(n)] for name, v in rows], right=(1, 2))


# -- reduced values: table, json, csv, ndjson, --value ---------------------------------------------------
def test_default_table_exact(dyadic):
    tbl, path = dyadic
    mse, mae = wmean(per_row("mse", tbl)), wmean(per_row("mae", tbl))
    res = run_ok(["eval", path, "-l", "mse", "-l", "mae"])
    assert res.stdout == _summary([("mse", mse), ("mae", mae)], 24)


def test_loss_flag_repeat_comma_and_alias_give_the_same_output(dyadic):
    _, path = dyadic
    a = run_ok(["eval", path, "-l", "mse", "-l", "mae", "--value"]).stdout
    b = run_ok(["eval", path, "-l", "mse,mae", "--value"]).stdout
    c = run_ok(["eval", path, "--loss", "l2, l1", "--value"]).stdout
    d = run_ok(["eval", path, "-l", "MSE", "-l", "mean-absolute-error", "--value"]).stdout
    assert a == b == c == d


def test_value_is_bare_full_precision(dyadic):
    tbl, path = dyadic
    res = run_ok(["eval", path, "-l", "mse,mae", "--value"])
    assert res.stdout == f"{wmean(per_row('mse', tbl))!r}\n{wmean(per_row('mae', tbl))!r}\n"


def test_value_full_precision_on_real_data_round_trips(tmp_path):
    tbl = real_table()
    path = write(tbl, tmp_path / "real.parquet")
    out = run_ok(["eval", path, "-l", "mse", "--value"]).stdout
    assert out.endswith("\n") and out.count("\n") == 1
    v = float(out)
    assert out == repr(v) + "\n"
    assert v == lossctl.evaluate(path, ["mse"]).value("mse")
    assert v == pytest.approx(wmean(per_row("mse", tbl)), rel=1e-12)


def test_sum_reduction(dyadic):
    tbl, path = dyadic
    res = run_ok(["eval", path, "-l", "mse,mae", "-r", "sum", "--value"])
    assert res.stdout == f"{wsum(per_row('mse', tbl))!r}\n{wsum(per_row('mae', tbl))!r}\n"
    res = run_ok(["eval", path, "-l", "mse", "--reduction", "sum"])
    assert res.stdout == _summary([("mse", wsum(per_row("mse", tbl)))], 24, header="sum")


def test_weights_and_groups_table_exact(dyadic):
    tbl, path = dyadic
    w = col(tbl, "weight")
    region = col(tbl, "region")
    rows = []
    for loss in ("mse", "mae"):
        rows.append([loss, "(all)", g6(wmean(per_row(loss, tbl), w)), "24", g6(math.fsum(w))])
    for g in sorted(set(region)):
        idx = [i for i, r in enumerate(region) if r == g]
        for loss in ("mse", "mae"):
            l = per_row(loss, tbl)
            rows.append([loss, g, g6(wmean([l[i] for i in idx], [w[i] for i in idx])), str(len(idx)),
                         g6(math.fsum(w[i] for i in idx))])
    res = run_ok(["eval", path, "-l", "mse,mae", "-w", "weight", "--by", "region"])
    assert res.stdout == box_table(["loss", "region", "mean", "rows", "weight sum"], rows, right=(2, 3, 4))


def test_json_contract(dyadic):
    tbl, path = dyadic
    w = col(tbl, "weight")
    region = col(tbl, "region")
    res = run_ok(["eval", path, "-l", "mse", "--weight", "weight", "--by", "region", "--format", "json"])
    doc = json.loads(res.stdout)
    assert doc["schema_version"] == 1
    assert doc["version"] == lossctl.__version__ == dist_version("lossctl")
    assert doc["inputs"] == [{"path": path, "format": "parquet", "rows": 24, "role": "predictions+targets"}]
    assert doc["reduction"] == "mean"
    l = per_row("mse", tbl)
    expected = [{"loss": "mse", "label": "mse", "params": {}, "reduction": "mean", "value": wmean(l, w),
                 "count": 24, "weight_sum": math.fsum(w), "group": None}]
    for g in sorted(set(region)):
        idx = [i for i, r in enumerate(region) if r == g]
        expected.append({"loss": "mse", "label": "mse", "params": {}, "reduction": "mean",
                         "value": wmean([l[i] for i in idx], [w[i] for i in idx]), "count": len(idx),
                         "weight_sum": math.fsum(w[i] for i in idx), "group": {"region": g}})
    assert doc["results"] == expected


def test_json_params_and_two_inputs(tmp_path, param_loss):
    tbl = dyadic_table()
    p = write(tbl.select(["y_pred", "var"]), tmp_path / "p.csv")
    t = write(tbl.select(["y_true"]), tmp_path / "t.jsonl")
    doc = json.loads(run_ok(["eval", p, t, "-l", "scaled_se:scale=2.5", "--format", "json"]).stdout)
    assert doc["inputs"] == [{"path": p, "format": "csv", "rows": 24, "role": "predictions"},
                             {"path": t, "format": "jsonl", "rows": 24, "role": "labels"}]
    (r,) = doc["results"]
    assert r["loss"] == "scaled_se" and r["label"] == "scaled_se(scale=2.5)"
    assert r["params"] == {"scale": 2.5, "offset": 0}
    ref = wmean([2.5 * (a - b) ** 2 / v for a, b, v in zip(col(tbl, "y_pred"), col(tbl, "y_true"), col(tbl, "var"))])
    assert r["value"] == pytest.approx(ref, rel=1e-12)


def test_json_floats_round_trip(tmp_path):
    tbl = real_table()
    path = write(tbl, tmp_path / "real.csv")
    res = run_ok(["eval", path, "-l", "mse,mae", "-w", "weight", "--format", "json"])
    doc = json.loads(res.stdout)
    api = lossctl.evaluate(path, ["mse", "mae"], weight="weight")
    for r in doc["results"]:
        assert r["value"] == api.value(r["loss"])  # bit-identical after the JSON round trip
        assert f'"value": {r["value"]!r}' in res.stdout
        ref = wmean(per_row(r["loss"], tbl), col(tbl, "weight"))
        assert r["value"] == pytest.approx(ref, rel=1e-12)
        assert r["weight_sum"] == math.fsum(col(tbl, "weight"))


def test_csv_format_exact(dyadic):
    tbl, path = dyadic
    res = run_ok(["eval", path, "-l", "mse,mae", "--format", "csv"])
    mse, mae = wmean(per_row("mse", tbl)), wmean(per_row("mae", tbl))
    assert res.stdout == ("loss,label,reduction,value,count,weight_sum\n"
                          f"mse,mse,mean,{mse!r},24,24.0\n"
                          f"mae,mae,mean,{mae!r},24,24.0\n")


def test_csv_format_with_groups(dyadic):
    tbl, path = dyadic
    region = col(tbl, "region")
    l = per_row("mae", tbl)
    lines = ["loss,label,region,reduction,value,count,weight_sum", f"mae,mae,,sum,{wsum(l)!r},24,24.0"]
    for g in sorted(set(region)):
        idx = [i for i, r in enumerate(region) if r == g]
        lines.append(f"mae,mae,{g},sum,{wsum([l[i] for i in idx])!r},{len(idx)},{float(len(idx))!r}")
    res = run_ok(["eval", path, "-l", "mae", "-r", "sum", "--by", "region", "-f", "csv"])
    assert res.stdout == "\n".join(lines) + "\n"


def test_ndjson_format(dyadic):
    tbl, path = dyadic
    res = run_ok(["eval", path, "-l", "mse,mae", "--format", "ndjson"])
    lines = res.stdout.splitlines()
    assert [json.loads(x) for x in lines] == [
        {"loss": loss, "label": loss, "params": {}, "reduction": "mean", "value": wmean(per_row(loss, tbl)),
         "count": 24, "weight_sum": 24.0, "group": None} for loss in ("mse", "mae")]
    assert all(x.startswith("{") and x.endswith("}") for x in lines)


# -- per-sample output: -r none, --limit, --id, -o -----------------------------------------------------
def test_reduction_none_table_with_limit(dyadic):
    tbl, path = dyadic
    l = per_row("mse", tbl)
    res = run_ok(["eval", path, "-l", "mse", "-r", "none", "--limit", "3"])
    assert res.stdout == ("per-sample losses (first 3 of 24 rows)\n"
                          + box_table(["row", "mse"], [[str(i + 1), g6(l[i])] for i in range(3)], right=(0, 1))
                          + _summary([("mse", wmean(l))], 24))


def test_reduction_none_default_limit_is_10_and_0_means_all(dyadic):
    tbl, path = dyadic
    l = per_row("mae", tbl)
    ids = col(tbl, "id")
    res = run_ok(["eval", path, "-l", "mae", "-r", "none", "--id", "id"])
    assert res.stdout.startswith("per-sample losses (first 10 of 24 rows)\n"
                                 + box_table(["id", "mae"], [[str(ids[i]), g6(l[i])] for i in range(10)],
                                             right=(0, 1)))
    doc = json.loads(run_ok(["eval", path, "-l", "mae", "-r", "none", "--id", "id", "--limit", "0",
                             "--format", "json"]).stdout)
    assert doc["rows"] == [{"id": i, "mae": v} for i, v in zip(ids, l)]
    assert doc["results"][0]["value"] == wmean(l)
    assert doc["results"][0]["reduction"] == "mean"
    doc = json.loads(run_ok(["eval", path, "-l", "mae", "-r", "none", "--limit", "2", "-f", "json"]).stdout)
    assert doc["rows"] == [{"row": 1, "mae": l[0]}, {"row": 2, "mae": l[1]}]


def test_reduction_none_streams_csv_and_ndjson(dyadic):
    tbl, path = dyadic
    mse, mae = per_row("mse", tbl), per_row("mae", tbl)
    ids = col(tbl, "id")
    res = run_ok(["eval", path, "-l", "mse,mae", "-r", "none", "-f", "csv", "--id", "id", "--batch-size", "5"])
    assert res.stdout == '"id","mse","mae"\n' + "".join(
        f"{i},{_num(a)},{_num(b)}\n" for i, a, b in zip(ids, mse, mae))
    res = run_ok(["eval", path, "-l", "mse", "-r", "none", "-f", "ndjson"])
    assert [json.loads(x) for x in res.stdout.splitlines()] == [{"row": k + 1, "mse": v} for k, v in enumerate(mse)]


@pytest.mark.parametrize("ext", ["parquet", "csv", "jsonl", "arrow"])
def test_output_file_round_trip(tmp_path, ext):
    tbl = real_table(n=57)
    src = write(tbl, tmp_path / "in.parquet")
    out = tmp_path / f"per_sample.{ext}"
    res = run_ok(["eval", src, "-l", "mse,mae", "-r", "none", "--id", "id", "-o", out, "--batch-size", "10"])
    assert res.stdout.endswith(f"wrote 57 rows to {out}\n")
    if ext == "parquet":
        back = pq.read_table(out)
    elif ext == "csv":
        back = pcsv.read_csv(out)
    elif ext == "arrow":
        back = feather.read_table(out)
    else:
        back = pa.Table.from_pylist([json.loads(x) for x in out.read_text().splitlines()])
    assert back.column_names == ["id", "mse", "mae"]
    assert col(back, "id") == col(tbl, "id")
    assert col(back, "mse") == per_row("mse", tbl)  # per-sample values are exact, whatever the format
    assert col(back, "mae") == per_row("mae", tbl)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left


def test_output_with_json_format_and_without_id(dyadic, tmp_path):
    tbl, path = dyadic
    out = tmp_path / "o.parquet"
    doc = json.loads(run_ok(["eval", path, "-l", "mse", "-r", "none", "-o", out, "-f", "json"]).stdout)
    assert doc["output"] == str(out)
    assert doc["rows_evaluated"] == 24
    back = pq.read_table(out)
    assert back.column_names == ["row", "mse"]
    assert col(back, "row") == list(range(1, 25))
    assert col(back, "mse") == per_row("mse", tbl)


def test_output_force_replaces(dyadic, tmp_path):
    tbl, path = dyadic
    out = tmp_path / "o.csv"
    out.write_text("old\n")
    run_err(["eval", path, "-l", "mae", "-r", "none", "-o", out], 2)
    assert out.read_text() == "old\n"
    run_ok(["eval", path, "-l", "mae", "-r", "none", "-o", out, "--force"])
    assert col(pcsv.read_csv(out), "mae") == per_row("mae", tbl)


def test_output_with_reduced_run_writes_rows_too(dyadic, tmp_path):
    tbl, path = dyadic
    out = tmp_path / "o.jsonl"
    res = run_ok(["eval", path, "-l", "mse", "-o", out, "--value"])
    assert res.stdout == f"{wmean(per_row('mse', tbl))!r}\n"
    assert [json.loads(x)["mse"] for x in out.read_text().splitlines()] == per_row("mse", tbl)


# -- columns, parameters, batches, stdin -------------------------------------------------------------------
def test_pred_target_weight_flags_with_custom_names(tmp_path):
    tbl = dyadic_table()
    t = pa.table({"model_a": tbl["y_pred"], "obs": tbl["y_true"], "w8": tbl["weight"],
                  "y_pred": pa.array(np.zeros(24)), "y_true": pa.array(np.ones(24))})  # decoys
    path = write(t, tmp_path / "custom.parquet")
    w = col(tbl, "weight")
    res = run_ok(["eval", path, "--pred", "model_a", "--target", "obs", "-w", "w8", "-l", "mse", "--value"])
    assert res.stdout == f"{wmean(per_row('mse', tbl), w)!r}\n"


def test_params_repeat_and_comma_continuation(tmp_path, param_loss):
    tbl = dyadic_table()
    path = write(tbl, tmp_path / "d.parquet")
    p, t, v = col(tbl, "y_pred"), col(tbl, "y_true"), col(tbl, "var")
    ref = wmean([2 * (a - b) ** 2 / c + 1 for a, b, c in zip(p, t, v)])
    res = run_ok(["eval", path, "-l", "scaled_se:scale=2,offset=1,mae", "-f", "csv"])
    lines = res.stdout.splitlines()
    assert lines[0] == "loss,label,reduction,value,count,weight_sum"
    assert lines[1].startswith('scaled_se,"scaled_se(scale=2.0,offset=1)",mean,')  # a label with a comma is quoted
    assert lines[1].endswith(",24,24.0")
    assert float(lines[1].split(",")[4]) == pytest.approx(ref, rel=1e-12)
    assert lines[2] == f"mae,mae,mean,{wmean(per_row('mae', tbl))!r},24,24.0"
    assert len(lines) == 3
    same = run_ok(["eval", path, "-l", "sse_test:scale=2", "-l", "scaled_se:offset=1", "--value"]).stdout.split()
    assert float(same[0]) == pytest.approx(wmean([2 * (a - b) ** 2 / c for a, b, c in zip(p, t, v)]), rel=1e-12)
    assert float(same[1]) == pytest.approx(wmean([(a - b) ** 2 / c + 1 for a, b, c in zip(p, t, v)]), rel=1e-12)


@pytest.mark.parametrize("how", [["--var", "sigma2"], ["--col", "var=sigma2"], []])
def test_var_and_col_bind_extra_roles(tmp_path, param_loss, how):
    tbl = dyadic_table()
    name = "sigma2" if how else "var"  # without a flag, a column named 'var' is found automatically
    t = pa.table({"y_pred": tbl["y_pred"], "y_true": tbl["y_true"], name: tbl["var"]})
    path = write(t, tmp_path / "v.csv")
    out = run_ok(["eval", path, "-l", "scaled_se", *how, "--value"]).stdout
    ref = wmean([(a - b) ** 2 / c for a, b, c in zip(col(tbl, "y_pred"), col(tbl, "y_true"), col(tbl, "var"))])
    assert float(out) == pytest.approx(ref, rel=1e-12)


def test_huber_with_delta_matches_formula(dyadic):
    tbl, path = dyadic

    def huber(p, t, delta):
        d = abs(p - t)
        return 0.5 * d * d if d < delta else delta * (d - 0.5 * delta)

    out = run_ok(["eval", path, "-l", "mae", "-l", "huber:delta=0.5", "--value"]).stdout.split()
    assert out == [repr(wmean(per_row("mae", tbl))),
                   repr(wmean([huber(p, t, 0.5) for p, t in zip(col(tbl, "y_pred"), col(tbl, "y_true"))]))]


@pytest.mark.parametrize("batch", ["1", "7", "1000"])
def test_batch_size_does_not_change_output(tmp_path, batch):
    tbl = real_table(n=83)
    path = write(tbl, tmp_path / "r.csv")
    base = lossctl.evaluate(path, ["mse", "mae"], weight="weight", by=["region"])
    doc = json.loads(run_ok(["eval", path, "-l", "mse,mae", "-w", "weight", "--by", "region",
                             "--batch-size", batch, "-f", "json"]).stdout)
    assert len(doc["results"]) == len(base.results) == 10
    for r, b in zip(doc["results"], base.results):
        assert (r["loss"], r["group"], r["count"]) == (b.loss, b.group, b.count)
        assert r["value"] == pytest.approx(b.value, rel=1e-12)
        assert r["weight_sum"] == b.weight_sum


def test_batch_size_exact_on_dyadic(dyadic):
    _, path = dyadic
    outs = {run_ok(["eval", path, "-l", "mse,mae", "--batch-size", b, "-f", "csv"]).stdout for b in ("1", "5", "24")}
    assert len(outs) == 1


def test_stdin_csv_default(dyadic):
    tbl, _ = dyadic
    res = run_ok(["eval", "-", "-l", "mse", "--value"], input=csv_bytes(tbl))
    assert res.stdout == f"{wmean(per_row('mse', tbl))!r}\n"


def test_stdin_with_input_format_parquet(dyadic):
    tbl, path = dyadic
    with open(path, "rb") as fh:
        data = fh.read()
    res = run_ok(["eval", "-", "-l", "mae", "--value", "--input-format", "parquet"], input=data)
    assert res.stdout == f"{wmean(per_row('mae', tbl))!r}\n"
    doc = json.loads(run_ok(["eval", "-", "-l", "mae", "-f", "json", "--input-format", "parquet"], input=data).stdout)
    assert doc["inputs"] == [{"path": "<stdin>", "format": "parquet", "rows": 24, "role": "predictions+targets"}]


@pytest.mark.parametrize("fmt,writer_ext", [("csv", "csv"), ("tsv", "tsv"), ("jsonl", "jsonl"),
                                            ("parquet", "parquet"), ("arrow", "arrow"), ("feather", "arrow")])
def test_input_format_overrides_unknown_extension(tmp_path, fmt, writer_ext):
    tbl = dyadic_table()
    src = write(tbl, tmp_path / f"x.{writer_ext}")
    odd = tmp_path / "predictions.dat"
    (tmp_path / f"x.{writer_ext}").rename(odd)
    res = run_ok(["eval", odd, "-l", "mse", "--value", "--input-format", fmt])
    assert res.stdout == f"{wmean(per_row('mse', tbl))!r}\n"
    assert src  # written


# -- list, explain, --version --------------------------------------------------------------------------------
def test_version():
    res = run_ok(["--version"])
    assert res.stdout == f"lossctl, version {dist_version('lossctl')}\n"
    assert run_ok(["-V"]).stdout == res.stdout


def test_python_dash_m(tmp_path):
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-m", "lossctl", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout == f"lossctl, version {dist_version('lossctl')}\n"


def _only(monkeypatch, *specs):
    from lossctl import registry
    registry.all_losses()
    monkeypatch.setattr(registry, "_REGISTRY", {s.name: s for s in specs})


def test_list_table_exact(monkeypatch, param_loss):
    from lossctl import registry
    tiny = registry.LossSpec(name="tiny", aliases=("t1", "t2"), kind="regression", fn=lambda p, t: p - t,
                             summary="s", formula="f", reference="ref.tiny")
    _only(monkeypatch, tiny, param_loss)
    res = run_ok(["list"])
    assert res.stdout == box_table(["name", "aliases", "kind", "parameters", "reference"], [
        ["scaled_se", "sse_test", "regression", "scale=1.0, offset=0", "none (test)"],
        ["tiny", "t1, t2", "regression", "", "ref.tiny"]])


def test_list_json_and_kind(monkeypatch, param_loss):
    from lossctl import registry
    specs = registry.all_losses()
    doc = json.loads(run_ok(["list", "--json"]).stdout)
    assert [d["name"] for d in doc] == [s.name for s in specs]
    for d in doc:
        assert {"name", "aliases", "kind", "params", "reference", "formula", "summary", "example"} <= set(d)
    (mine,) = [d for d in doc if d["name"] == "scaled_se"]
    assert mine["aliases"] == ["sse_test"]
    assert mine["kind"] == "regression"
    assert mine["inputs"] == ["pred", "target", "var"]
    assert mine["reference"] == "none (test)"
    assert mine["params"] == [
        {"name": "scale", "type": "float", "default": 1.0, "range": "(0, 10]", "help": "multiplier"},
        {"name": "offset", "type": "int", "default": 0, "range": "[0, 3]", "help": "added"}]
    reg = json.loads(run_ok(["list", "--json", "--kind", "regression"]).stdout)
    assert {d["name"] for d in reg} == {s.name for s in specs if s.kind == "regression"}
    assert {"mse", "mae", "scaled_se"} <= {d["name"] for d in reg}
    assert all(d["kind"] == "regression" for d in reg)
    table = run_ok(["list", "--kind", "regression"]).stdout
    for s in specs:
        if s.kind != "regression":
            assert f"│ {s.name} " not in table
    assert "│ scaled_se " in table and "│ mse " in table


def test_explain_text_exact(param_loss):
    res = run_ok(["explain", "scaled_se"])
    assert res.stdout == "\n".join([
        "scaled_se  (regression; inputs: pred, target, var; predictions as values)",
        "aliases: sse_test",
        "",
        "Test-only loss.",
        "",
        "formula:    l = scale (yhat - y)^2 / var + offset",
        "parameters:",
        "  scale = 1.0  (range (0, 10])  multiplier",
        "  offset = 0  (range [0, 3])  added",
        "reductions: mean, sum, none; mean = sum(w*l)/sum(w) over rows",
        "reference:  none (test)",
        "",
        "example:",
        "  lossctl eval preds.csv -l scaled_se:scale=2",
    ]) + "\n"
    assert run_ok(["explain", "sse_test"]).stdout == res.stdout  # by alias


def test_explain_builtin_and_json(param_loss):
    text = run_ok(["explain", "l2"]).stdout
    assert text.startswith("mse  (regression; inputs: pred, target; predictions as values)\n")
    for piece in ("formula:", "reference:", "example:", "when to use:", "lossctl eval "):
        assert piece in text
    doc = json.loads(run_ok(["explain", "scaled_se", "--json"]).stdout)
    assert doc["name"] == "scaled_se" and doc["aliases"] == ["sse_test"]
    assert doc["formula"] == "l = scale (yhat - y)^2 / var + offset"
    assert doc["params"][0] == {"name": "scale", "type": "float", "default": 1.0, "range": "(0, 10]",
                                "help": "multiplier"}
    assert doc["reductions"] == ["mean", "sum", "none"]
    assert doc["example"] == "lossctl eval preds.csv -l scaled_se:scale=2"
    assert json.loads(run_ok(["explain", "mse", "--json"]).stdout)["reference"].startswith("torch.nn.MSELoss")


def test_debug_flag_raises_instead_of_one_line(tmp_path):
    from click.testing import CliRunner

    from lossctl.cli import cli
    missing = str(tmp_path / "nope.csv")
    for args in (["--debug", "eval", missing, "-l", "mse"], ["eval", missing, "-l", "mse", "--debug"]):
        res = CliRunner().invoke(cli, args)
        assert type(res.exception).__name__ == "InputError"
        assert missing in str(res.exception)
