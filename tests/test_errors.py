"""Every error case: exit code, one stderr line naming file / column / row, no traceback, no output file.

``run_err`` (conftest) checks the shape of the diagnostic: exactly one line on stderr starting with
'lossctl: error: ', nothing on stdout, no traceback, and the exit code (2 usage, 3 input data).
"""
from __future__ import annotations

import os
import re

import numpy as np
import pyarrow as pa
import pytest

from conftest import dyadic_table, run_err, write


def _where(msg: str, file=None, column=None, row=None) -> None:
    if file is not None:
        assert str(file) in msg, msg
    if column is not None:
        assert f"'{column}'" in msg, msg
    if row is not None:
        assert re.search(rf"\brow {row}\b", msg), msg


def _with(tbl: pa.Table, name: str, index: int, value) -> pa.Table:
    vals = tbl.column(name).to_pylist()
    vals[index] = value
    typ = tbl.schema.field(name).type
    return tbl.set_column(tbl.schema.get_field_index(name), name, pa.array(vals, typ))


# -- files ----------------------------------------------------------------------------------------------
def test_missing_file(tmp_path):
    path = tmp_path / "nope.csv"
    msg = run_err(["eval", path, "-l", "mse"], 3)
    _where(msg, file=path)
    assert "no such file" in msg


def test_missing_labels_file(dyadic_csv, tmp_path):
    _, p = dyadic_csv
    msg = run_err(["eval", p, tmp_path / "labels.parquet", "-l", "mse"], 3)
    _where(msg, file=tmp_path / "labels.parquet")


def test_glob_matching_nothing(tmp_path):
    msg = run_err(["eval", str(tmp_path / "*.parquet"), "-l", "mse"], 3)
    _where(msg, file=tmp_path / "*.parquet")


def test_unknown_format(tmp_path):
    path = tmp_path / "blob.bin"
    path.write_bytes(b"\x00\x01\x02\x03\x04binary\x00\xff" * 10)
    msg = run_err(["eval", path, "-l", "mse"], 3)
    _where(msg, file=path)
    assert "format" in msg and "--input-format" in msg


def test_mislabelled_parquet(tmp_path):
    path = tmp_path / "fake.parquet"
    path.write_text("y_pred,y_true\n1,2\n")
    msg = run_err(["eval", path, "-l", "mse"], 3)
    _where(msg, file=path)


def test_empty_file(tmp_path):
    for name in ("empty.csv", "empty.parquet", "empty.jsonl"):
        path = tmp_path / name
        path.write_bytes(b"")
        msg = run_err(["eval", path, "-l", "mse"], 3)
        _where(msg, file=path)
        assert "empty" in msg


def test_header_only_csv(tmp_path):
    path = tmp_path / "header.csv"
    path.write_text("y_pred,y_true\n")
    msg = run_err(["eval", path, "-l", "mse"], 3)
    _where(msg, file=path)
    assert "no rows" in msg or "empty" in msg


def test_zero_row_parquet(tmp_path):
    path = write(dyadic_table().slice(0, 0), tmp_path / "zero.parquet")
    msg = run_err(["eval", path, "-l", "mse"], 3)
    _where(msg, file=path)


def test_empty_stdin():
    msg = run_err(["eval", "-", "-l", "mse"], 3, input=b"")
    assert "<stdin>" in msg


def test_ragged_csv_row(tmp_path):
    path = tmp_path / "ragged.csv"
    path.write_text("y_pred,y_true\n1,2\n3,4,5\n6,7\n")
    msg = run_err(["eval", path, "-l", "mse"], 3)
    _where(msg, file=path)


# -- columns and values ----------------------------------------------------------------------------------
@pytest.mark.parametrize("flag,name", [("--pred", "nope"), ("--target", "truth_x"), ("-w", "wt"), ("--by", "grp"),
                                       ("--id", "key")])
def test_missing_column(dyadic_csv, flag, name):
    _, path = dyadic_csv
    msg = run_err(["eval", path, "-l", "mse", flag, name], 3)
    _where(msg, file=path, column=name)
    assert "y_pred" in msg and "y_true" in msg  # lists the columns there are


def test_missing_join_key(tmp_path, dyadic_csv):
    tbl, p = dyadic_csv
    t = write(tbl.select(["y_true"]), tmp_path / "t.csv")
    msg = run_err(["eval", p, t, "--on", "id", "-l", "mse"], 3)
    _where(msg, file=t, column="id")


@pytest.mark.parametrize("row,batch", [(2, None), (23, "5")])
def test_non_numeric_value_csv(tmp_path, row, batch):
    tbl = dyadic_table()
    tbl = _with(tbl.set_column(3, "y_pred", tbl.column("y_pred").cast(pa.string())), "y_pred", row - 1, "n/a?")
    path = write(tbl, tmp_path / "text.csv")
    msg = run_err(["eval", path, "-l", "mse", *(["--batch-size", batch] if batch else [])], 3)
    _where(msg, file=path, column="y_pred", row=row)
    assert "n/a?" in msg


def test_non_numeric_value_late_in_a_large_csv(tmp_path):
    n = 60_000
    rng = np.random.default_rng(0)
    y = rng.integers(0, 100, size=n).astype(str).astype(object)
    y[54_321] = "oops"
    path = tmp_path / "big.csv"
    with open(path, "w") as fh:
        fh.write("y_pred,y_true\n")
        fh.writelines(f"{i % 7},{v}\n" for i, v in enumerate(y))
    msg = run_err(["eval", path, "-l", "mse", "--batch-size", "1000"], 3)
    _where(msg, file=path, column="y_true", row=54_322)


def test_non_numeric_string_column_parquet(tmp_path):
    tbl = dyadic_table()
    tbl = _with(tbl.set_column(2, "y_true", tbl.column("y_true").cast(pa.string())), "y_true", 8, "ten")
    path = write(tbl, tmp_path / "s.parquet")
    msg = run_err(["eval", path, "-l", "mse"], 3)
    _where(msg, file=path, column="y_true", row=9)
    assert "ten" in msg


@pytest.mark.parametrize("column,value,word", [("y_pred", float("nan"), "NaN"), ("y_true", float("inf"), "inf"),
                                               ("y_pred", float("-inf"), "inf"), ("weight", float("nan"), "NaN")])
def test_nan_and_inf_parquet(tmp_path, column, value, word):
    path = write(_with(dyadic_table(), column, 16, value), tmp_path / "bad.parquet")
    msg = run_err(["eval", path, "-l", "mse", "-w", "weight", "--batch-size", "5"], 3)
    _where(msg, file=path, column=column, row=17)
    assert word in msg


@pytest.mark.parametrize("text", ["inf", "-inf", "nan", "NaN"])
def test_nan_and_inf_csv(tmp_path, text):
    path = tmp_path / "bad.csv"
    path.write_text("y_pred,y_true\n1,2\n3,4\n5," + text + "\n7,8\n")
    msg = run_err(["eval", path, "-l", "mse"], 3)
    _where(msg, file=path, column="y_true", row=3)


def test_nan_in_extra_role_column(tmp_path):
    path = write(_with(dyadic_table(), "var", 3, float("nan")), tmp_path / "v.parquet")
    msg = run_err(["eval", path, "-l", "gaussian_nll", "--var", "var"], 3)
    _where(msg, file=path, column="var", row=4)


@pytest.mark.parametrize("ext", ["parquet", "csv", "jsonl"])
def test_missing_values(tmp_path, ext):
    path = write(_with(dyadic_table(), "y_true", 10, None), tmp_path / f"nulls.{ext}")
    msg = run_err(["eval", path, "-l", "mse"], 3)
    _where(msg, file=path, column="y_true", row=11)
    assert "missing" in msg


def test_negative_weight(tmp_path):
    path = write(_with(dyadic_table(), "weight", 5, -1.0), tmp_path / "w.parquet")
    msg = run_err(["eval", path, "-l", "mse", "-w", "weight"], 3)
    _where(msg, file=path, column="weight", row=6)
    assert "-1.0" in msg and "np." not in msg  # the value as the user wrote it, not a NumPy repr


def test_mismatched_row_counts(tmp_path):
    tbl = dyadic_table()
    p = write(tbl.select(["y_pred"]), tmp_path / "p.csv")
    t = write(tbl.select(["y_true"]).slice(0, 20), tmp_path / "t.parquet")
    for extra in ([], ["--batch-size", "3"]):
        msg = run_err(["eval", p, t, "-l", "mse", *extra], 3)
        _where(msg, file=p)
        _where(msg, file=t)
        assert "24" in msg and "20" in msg


# -- losses and parameters ------------------------------------------------------------------------------------
def test_unknown_loss(dyadic_csv):
    _, path = dyadic_csv
    msg = run_err(["eval", path, "-l", "mse,msee"], 2)
    assert "'msee'" in msg and "mse" in msg.split("'msee'")[1]  # suggests the close name
    msg = run_err(["explain", "no_such_loss"], 2)
    assert "'no_such_loss'" in msg


def test_unknown_parameter(dyadic_csv):
    _, path = dyadic_csv
    msg = run_err(["eval", path, "-l", "huber:delat=0.5"], 2)
    assert "'delat'" in msg and "huber" in msg and "delta" in msg  # names it and lists the allowed ones
    msg = run_err(["eval", path, "-l", "mse:delta=1"], 2)
    assert "'delta'" in msg and "mse" in msg


@pytest.mark.parametrize("loss,param", [("huber:delta=-1", "delta"), ("huber:delta=0", "delta"),
                                        ("huber:delta=abc", "delta"), ("quantile:alpha=1.5", "alpha"),
                                        ("smooth_l1:beta=-0.1", "beta")])
def test_out_of_range_parameter(dyadic_csv, loss, param):
    _, path = dyadic_csv
    msg = run_err(["eval", path, "-l", loss], 2)
    assert f"'{param}'" in msg and loss.split("=")[1] in msg  # repeats what was given


@pytest.mark.parametrize("given,expect", [("scale=0", "(0, 10]"), ("scale=10.5", "(0, 10]"),
                                          ("offset=1.5", "[0, 3]"), ("offset=4", "[0, 3]"), ("scale=nan", "(0, 10]")])
def test_parameter_range_is_shown(dyadic, param_loss, given, expect):
    _, path = dyadic
    msg = run_err(["eval", path, "-l", f"scaled_se:{given}"], 2)
    assert expect in msg and given.split("=")[0] in msg and "scaled_se" in msg


def test_parameter_before_loss_name(dyadic_csv):
    _, path = dyadic_csv
    assert "delta=1" in run_err(["eval", path, "-l", "delta=1"], 2)


def test_sum_of_rmse_is_refused(dyadic_csv):
    _, path = dyadic_csv
    assert "rmse" in run_err(["eval", path, "-l", "rmse", "-r", "sum"], 2)


def test_unused_column_option(dyadic_csv):
    _, path = dyadic_csv
    assert "var" in run_err(["eval", path, "-l", "mse", "--var", "var"], 2)


def test_on_needs_two_files(dyadic_csv):
    _, path = dyadic_csv
    assert "--on" in run_err(["eval", path, "-l", "mse", "--on", "id"], 2)


@pytest.mark.parametrize("args", [["-r", "median"], ["--format", "xml"], ["--batch-size", "0"],
                                  ["--limit", "-1"], ["--value", "-r", "none"], ["--col", "var"],
                                  ["--input-format", "xlsx"]])
def test_click_usage_errors_exit_2(dyadic_csv, args):
    from conftest import invoke
    _, path = dyadic_csv
    res = invoke(["eval", path, "-l", "mse", *args])
    assert res.exit_code == 2
    assert res.stdout == "" and "Traceback" not in res.stderr
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("lossctl: error: ") and "--help" in lines[0], res.stderr


def test_loss_flag_is_required(dyadic_csv):
    from conftest import invoke
    _, path = dyadic_csv
    res = invoke(["eval", path])
    assert res.exit_code == 2 and "'-l'" in res.stderr


# -- output files ------------------------------------------------------------------------------------------------
def test_output_into_missing_directory(dyadic_csv, tmp_path):
    _, path = dyadic_csv
    out = tmp_path / "no" / "such" / "dir" / "o.parquet"
    msg = run_err(["eval", path, "-l", "mse", "-r", "none", "-o", out], 2)
    assert str(out) in msg and "does not exist" in msg
    assert not (tmp_path / "no").exists()


def test_output_equal_to_input(dyadic_csv, monkeypatch, tmp_path):
    tbl, path = dyadic_csv
    before = open(path, "rb").read()
    msg = run_err(["eval", path, "-l", "mse", "-r", "none", "-o", path, "--force"], 2)
    assert "input" in msg
    monkeypatch.chdir(tmp_path)  # the same file by another spelling
    run_err(["eval", path, "-l", "mse", "-r", "none", "-o", "./" + os.path.basename(path), "--force"], 2)
    labels = write(tbl.select(["y_true"]), tmp_path / "labels.csv")
    run_err(["eval", path, labels, "--pred", "y_pred", "-l", "mse", "-o", labels, "--force"], 2)
    assert open(path, "rb").read() == before


def test_output_exists_without_force(dyadic_csv, tmp_path):
    _, path = dyadic_csv
    out = tmp_path / "o.parquet"
    out.write_bytes(b"keep me")
    msg = run_err(["eval", path, "-l", "mse", "-r", "none", "-o", out], 2)
    assert str(out) in msg and "--force" in msg
    assert out.read_bytes() == b"keep me"


def test_output_unknown_extension(dyadic_csv, tmp_path):
    _, path = dyadic_csv
    msg = run_err(["eval", path, "-l", "mse", "-r", "none", "-o", tmp_path / "o.xlsx"], 2)
    assert ".xlsx" in msg


@pytest.mark.parametrize("ext", ["parquet", "csv", "jsonl", "arrow"])
def test_failed_run_leaves_no_output_file(tmp_path, ext):
    tbl = _with(dyadic_table(n=45), "y_pred", 44, float("nan"))  # in the last batch of 10
    path = write(tbl, tmp_path / "in.parquet")
    out = tmp_path / "out" / f"o.{ext}"
    out.parent.mkdir()
    msg = run_err(["eval", path, "-l", "mse", "-r", "none", "-o", out, "--batch-size", "10"], 3)
    _where(msg, file=path, column="y_pred", row=45)
    assert list(out.parent.iterdir()) == []  # neither the file nor a temporary
    # with --force, a failed run keeps the old file intact
    out.write_bytes(b"previous results")
    run_err(["eval", path, "-l", "mse", "-r", "none", "-o", out, "--batch-size", "10", "--force"], 3)
    assert out.read_bytes() == b"previous results"
    assert [p.name for p in out.parent.iterdir()] == [out.name]


def test_failed_streaming_run_leaves_no_output_file(tmp_path):
    tbl = _with(dyadic_table(n=45), "y_true", 41, float("inf"))
    path = write(tbl, tmp_path / "in.csv")
    out = tmp_path / "out" / "o.csv"
    out.parent.mkdir()
    from conftest import invoke
    res = invoke(["eval", path, "-l", "mse", "-r", "none", "-f", "csv", "-o", out, "--batch-size", "10"])
    assert res.exit_code == 3
    assert res.stderr.count("\n") == 1 and "row 42" in res.stderr and "Traceback" not in res.stderr
    assert list(out.parent.iterdir()) == []


# -- --nan-policy error|omit|propagate ------------------------------------------------------------------------
def _nan_table():
    """13 rows: NaN predictions at rows 3, 5, 8 (1-based), an inf target at row 11, a missing target at 12."""
    p = [1.0, 2.0, None, 4.0, None, 6.0, 7.0, None, 9.0, 10.0, 11.0, 12.0, 13.0]
    p = [float("nan") if v is None else v for v in p]
    t = [0.5 * i for i in range(13)]
    t[10] = float("inf")
    t = [None if i == 11 else v for i, v in enumerate(t)]
    return pa.table({"y_pred": pa.array(p), "y_true": pa.array(t, pa.float64()),
                     "g": pa.array(list("ababababababa")), "w": pa.array([1.0 + (i % 3) for i in range(13)])})


BAD_ROWS = {3, 5, 8, 11, 12}


def _kept(tbl):
    return [(i + 1, r) for i, r in enumerate(tbl.to_pylist()) if i + 1 not in BAD_ROWS]


def test_nan_policy_error_names_the_first_offending_rows(tmp_path):
    path = write(_nan_table(), tmp_path / "n.parquet")
    msg = run_err(["eval", path, "-l", "mse"], 3)
    _where(msg, file=path, column="y_pred", row=3)
    assert "(3 in rows 1-13: rows 3, 5, 8)" in msg and "--nan-policy omit" in msg
    # the same, in a later batch: rows are counted over the whole input, and the count says which rows it covers
    msg = run_err(["eval", path, "-l", "mse", "--batch-size", "4"], 3)
    _where(msg, file=path, column="y_pred", row=3)
    assert "(1 in rows 1-4)" in msg
    tbl = _nan_table()
    path = write(tbl.set_column(0, "y_pred", pa.array([1.0] * 13)), tmp_path / "t.parquet")
    msg = run_err(["eval", path, "-l", "mse", "--batch-size", "4"], 3)
    _where(msg, file=path, column="y_true", row=11)   # the inf in the third batch, before the missing value
    assert "inf" in msg


def test_nan_policy_omit_counts_rows_in_json_and_table(tmp_path):
    import json
    import math

    from conftest import run_ok
    tbl = _nan_table()
    path = write(tbl, tmp_path / "n.parquet")
    kept = _kept(tbl)
    exp = math.fsum((r["y_pred"] - r["y_true"]) ** 2 for _, r in kept) / len(kept)
    wexp = (math.fsum(r["w"] * (r["y_pred"] - r["y_true"]) ** 2 for _, r in kept)
            / math.fsum(r["w"] for _, r in kept))
    for batch in ("1000", "4", "1"):
        doc = json.loads(run_ok(["eval", path, "-l", "mse", "--nan-policy", "omit", "--format", "json",
                                 "--batch-size", batch]).stdout)
        assert doc["nan_policy"] == "omit" and doc["omitted_rows"] == len(BAD_ROWS)
        assert doc["rows_evaluated"] == 13 - len(BAD_ROWS)
        assert doc["results"][0]["count"] == 13 - len(BAD_ROWS)
        assert doc["results"][0]["value"] == pytest.approx(exp, rel=1e-15)
        doc = json.loads(run_ok(["eval", path, "-l", "mse", "-w", "w", "--nan-policy", "omit", "--format", "json",
                                 "--batch-size", batch]).stdout)
        assert doc["results"][0]["value"] == pytest.approx(wexp, rel=1e-15)
    out = run_ok(["eval", path, "-l", "mse", "--nan-policy", "omit"]).stdout
    assert "omitted 5 row(s)" in out
    # the default policy is error: no omitted count without asking
    doc = json.loads(run_ok(["eval", write(tbl.slice(0, 2), tmp_path / "ok.parquet"), "-l", "mse",
                             "--format", "json"]).stdout)
    assert "omitted_rows" not in doc and "nan_policy" not in doc


def test_nan_policy_omit_keeps_input_row_numbers_in_per_sample_output(tmp_path):
    import pyarrow.parquet as pq

    from conftest import run_ok
    tbl = _nan_table()
    path = write(tbl, tmp_path / "n.parquet")
    out = tmp_path / "o.parquet"
    run_ok(["eval", path, "-l", "mse", "--nan-policy", "omit", "-r", "none", "-o", out, "--batch-size", "4",
            "--format", "json"])
    got = pq.read_table(out).to_pylist()
    kept = _kept(tbl)
    assert [r["row"] for r in got] == [i for i, _ in kept]
    assert [r["mse"] for r in got] == [(r["y_pred"] - r["y_true"]) ** 2 for _, r in kept]


def test_nan_policy_omit_counts_weights_and_missing_csv_fields(tmp_path):
    import json

    from conftest import run_ok
    path = tmp_path / "n.csv"
    path.write_text("y_pred,y_true,w\n1,2,1\n,3,1\n4,5,nan\n6,,1\n8,8,\n1,1,1\n")
    doc = json.loads(run_ok(["eval", path, "-l", "mae", "-w", "w", "--nan-policy", "omit", "--format",
                             "json"]).stdout)
    assert doc["omitted_rows"] == 4 and doc["results"][0]["count"] == 2
    assert doc["results"][0]["value"] == 0.5
    # a column that is missing everywhere in a batch (Arrow's null type) is omitted too, not an error
    path.write_text("y_pred,y_true\nnan,1\n")
    msg = run_err(["eval", path, "-l", "mse", "--nan-policy", "omit"], 3)
    assert "all 1 rows" in msg and "omit" in msg


def test_nan_policy_propagate(tmp_path):
    import json

    from conftest import run_ok
    tbl = _nan_table()
    path = write(tbl, tmp_path / "n.parquet")
    doc = json.loads(run_ok(["eval", path, "-l", "mse,mae", "--nan-policy", "propagate", "--by", "g",
                             "--format", "json"]).stdout)
    assert doc["nan_policy"] == "propagate" and doc["omitted_rows"] == 0
    assert doc["nan_rows"] == 5     # rows 3, 5, 8 (NaN), 11 (inf), 12 (missing): counted, at any batch size
    small = json.loads(run_ok(["eval", path, "-l", "mse", "--nan-policy", "propagate", "--batch-size", "4",
                               "--format", "json"]).stdout)
    assert small["nan_rows"] == 5
    table = run_ok(["eval", path, "-l", "mse", "--nan-policy", "propagate"]).stdout
    assert "5 row(s) with NaN, inf or missing inputs made the values they enter NaN" in table
    overall = [r for r in doc["results"] if r["group"] is None]
    assert [r["value"] for r in overall] == [None, None] and all(r["count"] == 13 for r in overall)
    assert run_ok(["eval", path, "-l", "mse", "--nan-policy", "propagate", "--value"]).stdout == "nan\n"
    # a group without bad rows keeps its value
    clean = write(tbl.slice(0, 2), tmp_path / "clean.parquet")
    a = run_ok(["eval", clean, "-l", "mse", "--nan-policy", "propagate", "--value"]).stdout
    b = run_ok(["eval", clean, "-l", "mse", "--value"]).stdout
    assert a == b and a != "nan\n"
    assert "nan" in run_ok(["eval", path, "-l", "mse", "--nan-policy", "propagate"]).stdout
    # a gate on a NaN value fails (exit 1): a gate must be shown to hold
    from conftest import invoke
    res = invoke(["eval", path, "-l", "mse", "--nan-policy", "propagate", "--fail-if", "mse > 100", "--value"])
    assert res.exit_code == 1 and "Traceback" not in res.stderr


def test_nan_policy_unknown_value(dyadic_csv):
    from conftest import invoke
    _, path = dyadic_csv
    res = invoke(["eval", path, "-l", "mse", "--nan-policy", "ignore"])
    assert res.exit_code == 2 and "--nan-policy" in res.stderr and "Traceback" not in res.stderr


def test_large_csv_quoted_line_break_split_by_the_range_reader(tmp_path):
    """Files over 4 MiB are parsed in byte ranges cut at line ends; a quoted field holding a line break that
    a cut lands in must be an error that says so (never a silent mis-parse).  Small ranges stand in for the
    16 MiB ones here."""
    import pyarrow as pa

    from lossctl.errors import InputError
    from lossctl.io.sources import open_source
    text = ("note,y_pred,y_true\n" + "".join(f"n{i},{i % 10},{i % 7}\n" for i in range(900)) + '"aaaa\nbbbb",1,2\n'
            + "".join(f"n{i},{i % 10},{i % 7}\n" for i in range(100)))
    path = tmp_path / "q.csv"
    path.write_text(text)
    src = open_source(str(path))
    cut = text.index('"aaaa') + 3 - (text.index("\n") + 1)
    types = {"y_pred": pa.float64(), "y_true": pa.float64()}
    with pytest.raises(InputError) as err:
        list(src._csv_ranges(["y_pred", "y_true"], types, [str(path)], chunk_bytes=cut))
    msg = str(err.value)
    _where(msg, file=path, row=901)
    assert "line breaks" in msg and "Parquet" in msg
    # without a cut inside the quotes the same reader reads it (and agrees with the one-block reader)
    rows = sum(b.num_rows for b in src._csv_ranges(["y_pred", "y_true"], types, [str(path)], chunk_bytes=1 << 20))
    assert rows == 1001
