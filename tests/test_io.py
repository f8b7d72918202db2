"""Every input kind lossctl reads, two-file alignment and joins, and automatic column choice."""
from __future__ import annotations

import gzip
import shutil
import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import lossctl
from conftest import col, csv_bytes, dyadic_table, per_row, real_table, run_err, run_ok, wmean, write


def _expected_values(tbl, weighted=True) -> str:
    w = col(tbl, "weight") if weighted else None
    return f"{wmean(per_row('mse', tbl), w)!r}\n{wmean(per_row('mae', tbl), w)!r}\n"


@pytest.mark.parametrize("name,fmt", [
    ("p.csv", "csv"), ("p.tsv", "tsv"), ("p.tab", "tsv"), ("p.txt", "csv"),
    ("p.csv.gz", "csv"), ("p.csv.bz2", "csv"), ("p.csv.zst", "csv"),
    ("p.parquet", "parquet"), ("p.pq", "parquet"), ("p.arrow", "arrow"), ("p.feather", "arrow"),
    ("p.jsonl", "jsonl"), ("p.ndjson", "jsonl"),
])
def test_every_file_format(tmp_path, name, fmt):
    tbl = dyadic_table(n=31, seed=3)
    path = write(tbl, tmp_path / name)
    res = run_ok(["eval", path, "-l", "mse,mae", "-w", "weight", "--value"])
    assert res.stdout == _expected_values(tbl)
    doc = json.loads(run_ok(["eval", path, "-l", "mse", "-f", "json", "--by", "region"]).stdout)
    assert doc["inputs"] == [{"path": path, "format": fmt, "rows": 31, "role": "predictions+targets"}]
    assert [r["count"] for r in doc["results"]] == [31] + [col(tbl, "region").count(g)
                                                          for g in sorted(set(col(tbl, "region")))]


@pytest.mark.parametrize("delim", [";", "|", "\t"])
def test_sniffed_delimiter(tmp_path, delim):
    tbl = dyadic_table(n=19, seed=4)
    path = write(tbl, tmp_path / "semi.txt", delimiter=delim)
    assert open(path).readline().count(delim) == 5
    assert run_ok(["eval", path, "-l", "mse,mae", "-w", "weight", "--value"]).stdout == _expected_values(tbl)


def test_csv_extension_with_semicolons_is_sniffed(tmp_path):
    tbl = dyadic_table(n=12, seed=5)
    path = write(tbl, tmp_path / "semi.txt")
    os.rename(path, tmp_path / "semi.csv")
    out = run_ok(["eval", tmp_path / "semi.csv", "-l", "mse,mae", "-w", "weight", "--value"]).stdout
    assert out == _expected_values(tbl)


def test_arrow_ipc_stream_format(tmp_path):
    tbl = dyadic_table(n=20, seed=6)
    path = tmp_path / "p.arrows"
    with pa.ipc.new_stream(str(path), tbl.schema) as w:
        for b in tbl.to_batches(max_chunksize=6):
            w.write_batch(b)
    assert run_ok(["eval", path, "-l", "mse,mae", "-w", "weight", "--value"]).stdout == _expected_values(tbl)


def test_parquet_directory_and_glob(tmp_path):
    tbl = dyadic_table(n=40, seed=7)
    parts = tmp_path / "parts"
    parts.mkdir()
    for k, start in enumerate(range(0, 40, 15)):
        pq.write_table(tbl.slice(start, 15), parts / f"part-{k}.parquet")
    (parts / "_SUCCESS").write_text("")  # marker files are ignored
    expected = _expected_values(tbl)
    for arg in (parts, str(parts / "*.parquet"), str(tmp_path / "**" / "part-*.parquet")):
        assert run_ok(["eval", arg, "-l", "mse,mae", "-w", "weight", "--value"]).stdout == expected
    doc = json.loads(run_ok(["eval", parts, "-l", "mse", "-f", "json"]).stdout)
    assert doc["inputs"] == [{"path": str(parts), "format": "parquet", "rows": 40, "role": "predictions+targets",
                              "files": 3}]


def test_csv_glob(tmp_path):
    tbl = dyadic_table(n=30, seed=8)
    write(tbl.slice(0, 10), tmp_path / "a.csv")
    write(tbl.slice(10, 20), tmp_path / "b.csv")
    out = run_ok(["eval", str(tmp_path / "*.csv"), "-l", "mse,mae", "-w", "weight", "--value"]).stdout
    assert out == _expected_values(tbl)


def test_parquet_row_groups_and_small_batches(tmp_path):
    tbl = real_table(n=300)
    path = write(tbl, tmp_path / "rg.parquet", row_group_size=37)
    assert pq.ParquetFile(path).num_row_groups == 9
    ref = wmean(per_row("mse", tbl), col(tbl, "weight"))
    for b in ("1", "13", "100000"):
        out = run_ok(["eval", path, "-l", "mse", "-w", "weight", "--value", "--batch-size", b]).stdout
        assert float(out) == pytest.approx(ref, rel=1e-12)


def test_numeric_column_types_are_converted(tmp_path):
    n = 16
    rng = np.random.default_rng(9)
    y = rng.integers(0, 50, size=n)
    p = rng.integers(0, 50, size=n)
    tbl = pa.table({"y_true": pa.array(y, pa.int32()), "y_pred": pa.array(p.astype(np.float32)),
                    "weight": pa.array(rng.integers(1, 4, size=n), pa.uint8())})
    path = write(tbl, tmp_path / "types.parquet")
    w = tbl.column("weight").to_pylist()
    ref = wmean([float(a - b) ** 2 for a, b in zip(p, y)], w)
    assert run_ok(["eval", path, "-l", "mse", "-w", "weight", "--value"]).stdout == f"{ref!r}\n"
    # a CSV whose columns hold only integers
    path = write(tbl, tmp_path / "ints.csv")
    assert run_ok(["eval", path, "-l", "mse", "-w", "weight", "--value"]).stdout == f"{ref!r}\n"


def test_stdin_csv_tsv_and_gzip(dyadic):
    tbl, _ = dyadic
    expected = _expected_values(tbl)
    args = ["eval", "-", "-l", "mse,mae", "-w", "weight", "--value"]
    assert run_ok(args, input=csv_bytes(tbl)).stdout == expected
    tsv = csv_bytes(tbl).replace(b",", b"\t")
    assert run_ok(args + ["--input-format", "tsv"], input=tsv).stdout == expected
    assert run_ok(args, input=tsv).stdout == expected  # sniffed
    assert run_ok(args, input=gzip.compress(csv_bytes(tbl))).stdout == expected


def test_stdin_jsonl_and_arrow(tmp_path):
    tbl = dyadic_table(n=15, seed=10)
    expected = _expected_values(tbl)
    args = ["eval", "-", "-l", "mse,mae", "-w", "weight", "--value"]
    jl = "".join(json.dumps(r) + "\n" for r in tbl.to_pylist()).encode()
    assert run_ok(args + ["--input-format", "jsonl"], input=jl).stdout == expected
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, tbl.schema) as w:
        w.write_table(tbl)
    assert run_ok(args + ["--input-format", "arrow"], input=sink.getvalue().to_pybytes()).stdout == expected


# -- two files ---------------------------------------------------------------------------------------------
def test_two_files_aligned_by_row(tmp_path):
    tbl = dyadic_table(n=33, seed=11)
    p = write(tbl.select(["id", "y_pred", "weight"]), tmp_path / "preds.csv")
    t = write(tbl.select(["id", "y_true"]), tmp_path / "labels.parquet")
    assert run_ok(["eval", p, t, "-l", "mse,mae", "-w", "weight", "--value"]).stdout == _expected_values(tbl)
    # different batch boundaries on each side still line up
    out = run_ok(["eval", p, t, "-l", "mse,mae", "-w", "weight", "--value", "--batch-size", "4"]).stdout
    assert out == _expected_values(tbl)


def test_two_files_single_value_columns_are_found(tmp_path):
    tbl = dyadic_table(n=21, seed=12)
    p = write(pa.table({"id": tbl["id"], "score_model_b": tbl["y_pred"]}), tmp_path / "p.csv")
    t = write(pa.table({"id": tbl["id"], "observed_value": tbl["y_true"]}), tmp_path / "t.csv")
    out = run_ok(["eval", p, t, "--on", "id", "-l", "mse,mae", "--value"]).stdout
    assert out == _expected_values(tbl, weighted=False)


def test_join_on_key_equals_aligned(tmp_path):
    tbl = real_table(n=150)
    p = write(tbl.select(["id", "y_pred", "weight", "region"]), tmp_path / "preds.csv")
    aligned = write(tbl.select(["id", "y_true"]), tmp_path / "labels.csv")
    perm = np.random.default_rng(13).permutation(150)
    shuffled = write(tbl.select(["id", "y_true"]).take(pa.array(perm)), tmp_path / "labels_shuffled.parquet")
    args = ["-l", "mse,mae", "-w", "weight", "--by", "region", "-f", "json"]
    a = json.loads(run_ok(["eval", p, aligned, *args]).stdout)
    b = json.loads(run_ok(["eval", p, shuffled, "--on", "id", *args]).stdout)
    c = json.loads(run_ok(["eval", p, shuffled, "--on", "id", "--batch-size", "7", *args]).stdout)
    assert a["results"] == b["results"]  # the join restores prediction order: bit-identical
    for x, y in zip(b["results"], c["results"]):
        assert x["value"] == pytest.approx(y["value"], rel=1e-12)
    assert a["results"][0]["value"] == pytest.approx(wmean(per_row("mse", tbl), col(tbl, "weight")), rel=1e-12)
    assert b["inputs"][0]["rows"] == b["inputs"][1]["rows"] == 150
    # the aligned pair without --on gives a different (wrong) answer: the join really matters
    wrong = json.loads(run_ok(["eval", p, shuffled, *args]).stdout)
    assert wrong["results"][0]["value"] != a["results"][0]["value"]


def test_join_string_keys_and_id_in_per_sample_output(tmp_path):
    tbl = dyadic_table(n=12, seed=14)
    keys = [f"k{i:03d}" for i in range(12)]
    p = write(pa.table({"key": keys, "y_pred": tbl["y_pred"]}), tmp_path / "p.csv")
    rev = list(range(11, -1, -1))
    t = write(pa.table({"key": [keys[i] for i in rev], "y_true": tbl["y_true"].take(pa.array(rev))}),
              tmp_path / "t.jsonl")
    doc = json.loads(run_ok(["eval", p, t, "--on", "key", "--id", "key", "-l", "mae", "-r", "none",
                             "--limit", "0", "-f", "json"]).stdout)
    assert doc["rows"] == [{"key": k, "mae": v} for k, v in zip(keys, per_row("mae", tbl))]


def _unmatched_files(tmp_path):
    tbl = dyadic_table(n=20, seed=15)
    p = write(tbl.select(["id", "y_pred"]), tmp_path / "p.csv")
    lab = tbl.select(["id", "y_true"]).slice(3)  # ids 1001..1003 have no label
    extra = pa.table({"id": pa.array([5001, 5002], pa.int64()), "y_true": pa.array([1.0, 2.0])})
    t = write(pa.concat_tables([lab, extra]), tmp_path / "t.csv")
    return tbl, p, t


def test_join_unmatched_keys_error_says_how_many_and_shows_examples(tmp_path):
    _, p, t = _unmatched_files(tmp_path)
    msg = run_err(["eval", p, t, "--on", "id", "-l", "mse"], 3)
    assert "3 key(s)" in msg and "1001" in msg and "1002" in msg and "1003" in msg
    assert "2 key(s)" in msg and "5001" in msg and "5002" in msg
    assert p in msg and t in msg and "--inner" in msg


def test_join_inner_keeps_matched_rows(tmp_path):
    tbl, p, t = _unmatched_files(tmp_path)
    kept = tbl.slice(3)
    res = run_ok(["eval", p, t, "--on", "id", "--inner", "-l", "mse,mae", "--value"])
    assert res.stdout == _expected_values(kept, weighted=False)
    doc = json.loads(run_ok(["eval", p, t, "--on", "id", "--inner", "-l", "mse", "-f", "json"]).stdout)
    assert doc["results"][0]["count"] == 17
    assert (doc["inputs"][0]["unmatched"], doc["inputs"][1]["unmatched"]) == (3, 2)


@pytest.mark.parametrize("side", ["labels", "predictions"])
def test_join_duplicate_keys_error(tmp_path, side):
    tbl = dyadic_table(n=10, seed=16)
    ids = col(tbl, "id")
    dup = ids[:]
    dup[4] = dup[7] = ids[2]
    p_ids, t_ids = (ids, dup) if side == "labels" else (dup, ids)
    p = write(pa.table({"id": p_ids, "y_pred": tbl["y_pred"]}), tmp_path / "p.csv")
    t = write(pa.table({"id": t_ids, "y_true": tbl["y_true"]}), tmp_path / "t.csv")
    msg = run_err(["eval", p, t, "--on", "id", "--inner", "-l", "mse"], 3)
    assert "duplicate" in msg or "more than once" in msg
    assert str(ids[2]) in msg and "'id'" in msg
    assert (t if side == "labels" else p) in msg


# -- automatic column choice --------------------------------------------------------------------------------
@pytest.mark.parametrize("pred,target", [("y_pred", "y_true"), ("pred", "target"), ("prediction", "label"),
                                         ("y_hat", "y")])
def test_auto_columns(tmp_path, pred, target):
    tbl = dyadic_table(n=14, seed=17)
    t = pa.table({"id": tbl["id"], target: tbl["y_true"], "note": tbl["region"], pred: tbl["y_pred"]})
    path = write(t, tmp_path / "auto.csv")
    out = run_ok(["eval", path, "-l", "mse,mae", "--value"]).stdout
    assert out == _expected_values(tbl, weighted=False)
    doc = json.loads(run_ok(["eval", path, "-l", "mse", "-f", "json"]).stdout)
    assert (doc["columns"]["pred"], doc["columns"]["target"]) == (pred, target)


def test_ambiguous_columns_error_lists_columns(tmp_path):
    tbl = dyadic_table(n=5)
    path = write(pa.table({"y_pred": tbl["y_pred"], "prediction": tbl["y_pred"], "y_true": tbl["y_true"]}),
                 tmp_path / "amb.csv")
    msg = run_err(["eval", path, "-l", "mse"], 2)
    assert path in msg and "y_pred" in msg and "prediction" in msg and "--pred" in msg
    # naming the column resolves it
    assert run_ok(["eval", path, "-l", "mse", "--pred", "prediction", "--value"]).stdout == \
        f"{wmean(per_row('mse', tbl))!r}\n"


def test_no_recognisable_column_error_lists_columns(tmp_path):
    tbl = dyadic_table(n=5)
    path = write(pa.table({"alpha": tbl["y_pred"], "beta": tbl["y_true"]}), tmp_path / "anon.parquet")
    msg = run_err(["eval", path, "-l", "mse"], 2)
    assert path in msg and "alpha" in msg and "beta" in msg and "--pred" in msg


def test_api_reads_the_same_as_cli(tmp_path):
    tbl = real_table(n=64)
    path = write(tbl, tmp_path / "r.feather")
    res = lossctl.evaluate(path, ["mse"], weight="weight")
    out = run_ok(["eval", path, "-l", "mse", "-w", "weight", "--value"]).stdout
    assert out == f"{res.value('mse')!r}\n"


def test_per_sample_parquet_delta_encodes_integer_columns(tmp_path):
    """Row numbers and integer ids are written DELTA_BINARY_PACKED (smaller, faster to write) and read back
    exactly; float losses stay plain, text ids dictionary-encoded."""
    n = 70_000  # more than one batch
    rng = np.random.default_rng(3)
    pred, target = rng.normal(size=n), rng.normal(size=n)
    src = tmp_path / "p.parquet"
    pq.write_table(pa.table({"uid": np.arange(n, dtype=np.int64) * 7 + 3, "name": [f"n{i % 13}" for i in range(n)],
                             "y_pred": pred, "y_true": target}), src)
    def encodings(path):
        pf = pq.ParquetFile(path)
        rg = pf.metadata.row_group(0)
        return pf.read(), {rg.column(j).path_in_schema: rg.column(j).encodings for j in range(rg.num_columns)}

    out = tmp_path / "ids.parquet"
    run_ok(["eval", str(src), "-l", "mse", "-r", "none", "--id", "uid", "--id", "name", "-o", str(out)])
    back, enc = encodings(out)
    assert "DELTA_BINARY_PACKED" in enc["uid"]
    assert "DELTA_BINARY_PACKED" not in enc["mse"] and "RLE_DICTIONARY" not in enc["mse"]
    assert "RLE_DICTIONARY" in enc["name"]
    assert back.column("uid").to_pylist() == (np.arange(n) * 7 + 3).tolist()
    assert back.column("name").to_pylist() == [f"n{i % 13}" for i in range(n)]
    assert np.array_equal(back.column("mse").to_numpy(), (pred - target) ** 2)
    out = tmp_path / "rows.parquet"  # without --id: row numbers
    run_ok(["eval", str(src), "-l", "mse", "-r", "none", "-o", str(out)])
    back, enc = encodings(out)
    assert "DELTA_BINARY_PACKED" in enc["row"]
    assert back.column("row").to_pylist() == list(range(1, n + 1))


@pytest.mark.parametrize("name", ["rows.parquet", "rows.jsonl"])
@pytest.mark.parametrize("fail_at", [0, 2])
def test_write_error_in_the_writer_thread_is_one_input_error_and_leaves_no_file(tmp_path, monkeypatch, fail_at,
                                                                                name):
    """A full disk while the writer thread encodes batch k: the run fails with the documented one-line
    error (InputError, exit 3), and neither the output nor its temporary file is left behind."""
    import errno
    from lossctl.errors import InputError
    from lossctl.io import sinks

    n = 5000
    rng = np.random.default_rng(4)
    src = tmp_path / "in.parquet"
    pq.write_table(pa.table({"y_pred": rng.normal(size=n), "y_true": rng.normal(size=n)}), src)
    real = sinks.Sink._write_now
    calls = []

    def failing(self, batch):
        calls.append(batch.num_rows)
        if len(calls) > fail_at:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(self, batch)
    monkeypatch.setattr(sinks.Sink, "_write_now", failing)
    out = tmp_path / "out" / name
    out.parent.mkdir()
    with pytest.raises(InputError, match=rf"-o .*{name.replace('.', '[.]')}: cannot write: No space left on device"):
        lossctl.evaluate(str(src), ["mse"], reduction="none", output=str(out), batch_rows=500)
    assert list(out.parent.iterdir()) == []
    assert not sinks._ACTIVE


# -- pipes: process substitution, named pipes, /dev/stdin ------------------------------------------------
_BASH = shutil.which("bash") if os.name == "posix" else None


def _sh(cmd: str, **kw):
    """Run ``cmd`` in bash from the repository root, lossctl as ``python -m lossctl``."""
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return subprocess.run([_BASH, "-c", cmd.replace("LOSSCTL", f"{sys.executable} -m lossctl")], cwd=root,
                          capture_output=True, text=True, timeout=120, **kw)


@pytest.mark.skipif(_BASH is None, reason="process substitution needs bash on a POSIX system")
def test_process_substitution_reads_each_pipe_once_and_gives_the_file_results():
    """`<(...)` is a pipe (/dev/fd/N) that can be read once: lossctl reads it whole, once per command, so
    the sniffing, the two-file join and compare's --on check all see the same bytes."""
    same = [
        ("LOSSCTL eval <(gzip -dc sample_data/regression.csv.gz) -l mse,mae --value",
         "LOSSCTL eval sample_data/regression.csv -l mse,mae --value"),
        ("LOSSCTL eval <(cat sample_data/preds.csv) <(cat sample_data/labels_shuffled.csv) --on id -l mse --value",
         "LOSSCTL eval sample_data/preds.csv sample_data/labels_shuffled.csv --on id -l mse --value"),
        ("LOSSCTL eval <(cat sample_data/regression.parquet) -l huber --value",
         "LOSSCTL eval sample_data/regression.parquet -l huber --value"),
        ("LOSSCTL compare <(cat sample_data/ci/baseline.parquet) <(cat sample_data/ci/candidate.parquet) "
         "--on id -l mse --seed 3 -f json | python -c 'import json,sys; print(json.load(sys.stdin)[\"comparisons\"])'",
         "LOSSCTL compare sample_data/ci/baseline.parquet sample_data/ci/candidate.parquet "
         "--on id -l mse --seed 3 -f json | python -c 'import json,sys; print(json.load(sys.stdin)[\"comparisons\"])'"),
        ("cat sample_data/regression.tsv | LOSSCTL eval /dev/stdin -l mse --value",
         "LOSSCTL eval sample_data/regression.tsv -l mse --value"),
    ]
    for piped, plain in same:
        got, want = _sh(piped), _sh(plain)
        assert want.returncode == 0 and want.stdout.strip(), want.stderr
        assert (got.returncode, got.stdout, got.stderr) == (0, want.stdout, ""), piped

    empty = _sh("LOSSCTL eval <(true) -l mse")
    assert empty.returncode == 3 and empty.stdout == ""
    assert empty.stderr.strip().startswith("lossctl: error: /dev/fd/") and empty.stderr.strip().endswith(
        ": no data in the pipe (empty input)")
    sig = _sh("LOSSCTL eval <(cat sample_data/regression.csv) -l mse -f json")
    assert sig.returncode == 0, sig.stderr
    (entry,) = json.loads(sig.stdout)["signature"]["inputs"]
    assert entry["sha256"] is None and entry["note"] == "pipe: bytes not kept" and entry["rows"] > 0


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
def test_a_named_pipe_is_read_by_its_extension(tmp_path):
    """A FIFO named x.parquet is read as Parquet (the extension decides, as for files) while a writer feeds it."""
    import subprocess
    import sys
    import threading

    tbl = dyadic_table(n=40, seed=3)
    src = tmp_path / "src.parquet"
    pq.write_table(tbl, src)
    fifo = tmp_path / "preds.parquet"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_bytes(src.read_bytes()), daemon=True)
    writer.start()
    got = subprocess.run([sys.executable, "-m", "lossctl", "eval", str(fifo), "-l", "mse,mae", "-w", "weight",
                          "--value"], capture_output=True, text=True, timeout=120)
    writer.join(10)
    assert got.returncode == 0, got.stderr
    assert got.stdout == _expected_values(tbl)


def test_per_sample_parquet_computed_columns_are_required(tmp_path):
    """Row numbers and per-sample losses (and gradients) are written as REQUIRED Parquet columns (no
    definition levels), across batches; an --id column keeps the input's nullability and its nulls."""
    n = 70_000  # more than one batch
    rng = np.random.default_rng(4)
    pred, target = rng.normal(size=n), rng.normal(size=n)
    name = [None if i == 5 else f"n{i % 13}" for i in range(n)]
    src = tmp_path / "p.parquet"
    pq.write_table(pa.table({"name": name, "y_pred": pred, "y_true": target}), src)

    def repetition(path):
        schema = pq.ParquetFile(path).schema
        return {schema.column(j).name: schema.column(j).max_definition_level for j in range(len(schema))}

    out = tmp_path / "rows.parquet"
    run_ok(["eval", str(src), "-l", "mse,mae", "-r", "none", "--grad", "-o", str(out)])
    levels = repetition(out)
    assert set(levels) >= {"row", "mse", "mae"} and len(levels) > 3 and set(levels.values()) == {0}
    back = pq.read_table(out)
    assert not any(f.nullable for f in back.schema)
    assert back.column("row").to_pylist() == list(range(1, n + 1))
    assert np.array_equal(back.column("mae").to_numpy(), np.abs(pred - target))
    out = tmp_path / "ids.parquet"
    run_ok(["eval", str(src), "-l", "mse", "-r", "none", "--id", "name", "-o", str(out)])
    assert repetition(out) == {"name": 1, "mse": 0}
    back = pq.read_table(out)
    assert back.column("name").to_pylist() == name and back.schema.field("name").nullable


def _odd_batches(k: int = 9, n: int = 700):
    """Record batches with text that needs quoting, nulls, booleans, NaN/inf and large integers."""
    rng = np.random.default_rng(8)
    out = []
    for j in range(k):
        m = 0 if j == 3 else n  # an empty batch in the middle
        v = rng.normal(size=m)
        v[::97] = np.nan
        v[1::101] = np.inf
        out.append(pa.RecordBatch.from_arrays([
            pa.array(np.arange(j * n, j * n + m, dtype=np.int64) * 10**12),
            pa.array([None if i % 50 == 0 else f'a,"b"\t{i}' for i in range(m)], type=pa.string()),
            pa.array([i % 3 == 0 for i in range(m)]),
            pa.array(v)], names=["row", "name", "flag", "loss"]))
    return out


@pytest.mark.parametrize("delimiter", [",", "\t"])
def test_csv_chunks_give_the_text_of_one_csv_writer(delimiter):
    """CSV encoded on two threads, in order, is byte for byte pyarrow's single CSV writer's text (header once),
    with a few batches waiting or many."""
    import pyarrow.csv as pcsv

    from lossctl.io.sinks import CsvChunks

    batches = _odd_batches()
    want = pa.BufferOutputStream()
    with pcsv.CSVWriter(want, batches[0].schema, write_options=pcsv.WriteOptions(delimiter=delimiter)) as w:
        for b in batches:
            w.write_batch(b)
    for ahead in (0, 1, 4, 100):
        enc = CsvChunks(delimiter)
        enc.AHEAD = ahead
        got = b"".join(bytes(c) for b in batches for c in enc.put(b))
        got += b"".join(bytes(c) for c in enc.finish())
        assert got == want.getvalue().to_pybytes()


def test_csv_output_file_and_stdout_stream_equal_the_single_writer(tmp_path):
    """`-o x.csv` / `.tsv` (Sink) and `-r none -f csv` (StreamRows, on a text stream and on a binary-backed
    one, after text already written) give the bytes of one CSVWriter; no encoding thread or temporary file
    is left behind."""
    import io
    import threading

    import pyarrow.csv as pcsv

    from lossctl import render
    from lossctl.io.sinks import Sink

    batches = _odd_batches()

    def single_writer(delim: str) -> bytes:
        out = pa.BufferOutputStream()
        with pcsv.CSVWriter(out, batches[0].schema, write_options=pcsv.WriteOptions(delimiter=delim)) as w:
            for b in batches:
                w.write_batch(b)
        return out.getvalue().to_pybytes()

    for ext, delim in (("csv", ","), ("tsv", "\t")):
        path = tmp_path / f"out.{ext}"
        sink = Sink(str(path), ext)
        for b in batches:
            sink.write(b)
        sink.commit()
        assert path.read_bytes() == single_writer(delim)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv", "out.tsv"]
    for stream in (io.StringIO(), io.TextIOWrapper(io.BytesIO(), encoding="utf-8")):
        stream.write("before\n")
        rows = render.StreamRows("csv", stream)
        for b in batches:
            rows(b)
        rows.close()
        stream.flush()
        text = stream.getvalue().encode() if isinstance(stream, io.StringIO) else stream.buffer.getvalue()
        assert text == b"before\n" + single_writer(",")
    assert not [t for t in threading.enumerate() if t.name.startswith("lossctl-csv")]


def test_a_list_column_in_per_sample_csv_is_one_input_error(tmp_path):
    """An --id column of lists cannot be CSV: streaming to stdout says so in one line (exit 3, naming the
    column and what to use instead), as -o x.csv does, and leaves no file; JSON Lines takes it."""
    path = tmp_path / "lists.parquet"
    pq.write_table(pa.table({"tags": [[1, 2], [3], [4, 5]] * 50, "y_true": [1.0, 2.0, 3.0] * 50,
                             "y_pred": [1.5, 2.5, 2.0] * 50}), path)
    args = ["eval", str(path), "-l", "mse", "--id", "tags", "-r", "none"]
    msg = run_err(args + ["-f", "csv"], 3)
    assert msg.startswith("<stdout>: cannot write the per-sample rows as CSV: ")
    assert msg.endswith("column 'tags' (list<element: int64>) holds lists: use --format ndjson or -o FILE.parquet")
    out = tmp_path / "rows.csv"
    assert run_err(args + ["-o", str(out)], 3).startswith(f"-o {out}: cannot write: ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lists.parquet"]
    rows = [json.loads(line) for line in run_ok(args + ["-f", "ndjson"]).stdout.splitlines()]
    assert len(rows) == 150 and rows[1] == {"tags": [3], "mse": 0.25}


def test_per_sample_csv_stream_keeps_the_rows_before_an_input_error(tmp_path):
    """`-r none -f csv` streams rows while it reads: the rows of every batch before the one holding a missing
    value are on stdout (encoded on two threads, written before the error line), then exit 3."""
    from conftest import invoke

    rows = [f"{i % 7},{(i % 5) / 4}" for i in range(12_000)]
    rows[5_499] = "3,"  # row 5500: batch 6 of 1000 rows
    path = tmp_path / "gap.csv"
    path.write_text("y_true,y_pred\n" + "\n".join(rows) + "\n")
    res = invoke(["eval", str(path), "-l", "mse", "-r", "none", "-f", "csv", "--batch-size", "1000"])
    assert res.exit_code == 3 and "row 5500: missing value" in res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == '"row","mse"' and len(lines) == 1 + 5_000
    got = [tuple(map(float, line.split(","))) for line in lines[1:]]
    assert got == [(i + 1, (i % 7 - (i % 5) / 4) ** 2) for i in range(5_000)]
