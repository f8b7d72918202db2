"""`eval --top K`, `eval --hist`, `eval --grad`: streaming top-K, the DDSketch and their CLI output.

Expected values are computed here from the sample data with NumPy (not copied from lossctl's output).
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import re

import numpy as np
import pyarrow as pa
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from lossctl.cli import cli
from lossctl.workbench import QuantileSketch, TopK, Workbench, bar

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = os.path.join(ROOT, "sample_data", "regression.csv")


@pytest.fixture(scope="module")
def sample():
    with open(SAMPLE, newline="") as fh:
        rows = list(csv.DictReader(fh))
    return {k: np.array([float(r[k]) if k != "region" else 0.0 for r in rows]) for k in rows[0]}


def run(*args):
    res = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return res


# -- TopK ------------------------------------------------------------------------------------------------
def _brute_top(values, k):
    keys = np.where(np.isnan(values), np.inf, values)
    order = sorted(range(len(values)), key=lambda i: (-keys[i], i))   # ties: the earlier row first
    return order[:k]


def _top_over_batches(values, k, batch):
    top = TopK(k, "v", ["row"])
    for s in range(0, len(values), batch):
        v = values[s:s + batch]
        top.update(pa.record_batch([pa.array(np.arange(s + 1, s + len(v) + 1)), pa.array(v)], names=["row", "v"]))
    return top.rows()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from([0.0, 1.0, 2.0, 2.5, 3.0, math.nan, 7.0]), min_size=1, max_size=60),
       st.integers(1, 8), st.integers(1, 70))
def test_topk_matches_sort_with_ties_for_any_batch_size(values, k, batch):
    values = np.array(values)
    got = _top_over_batches(values, k, batch)
    want = _brute_top(values, k)
    assert [r["row"] - 1 for r in got] == want
    assert [r["rank"] for r in got] == list(range(1, len(want) + 1))
    for r in got:
        v = values[r["row"] - 1]
        assert (r["value"] is None and math.isnan(v)) or r["value"] == v


def test_topk_memory_is_bounded():
    top = TopK(5, "v", ["row"])
    rng = np.random.default_rng(0)
    for s in range(0, 100_000, 1000):
        v = rng.random(1000)
        top.update(pa.record_batch([pa.array(np.arange(s, s + 1000)), pa.array(v)], names=["row", "v"]))
        assert top.kept.num_rows <= 5


def test_topk_merge_equals_one_pass():
    v = np.random.default_rng(1).integers(0, 5, 50).astype(float)
    a, b = TopK(4, "v", ["row"]), TopK(4, "v", ["row"])
    a.update(pa.record_batch([pa.array(np.arange(1, 21)), pa.array(v[:20])], names=["row", "v"]))
    b.update(pa.record_batch([pa.array(np.arange(21, 51)), pa.array(v[20:])], names=["row", "v"]))
    assert a.merge(b).rows() == _top_over_batches(v, 4, 50)


# -- QuantileSketch --------------------------------------------------------------------------------------
def _check_quantiles(sk: QuantileSketch, x: np.ndarray) -> None:
    a = sk.relative_accuracy * (1 + 1e-9)
    for q in (0.0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 1.0):
        exact = float(np.quantile(x, q, method="lower"))
        got = sk.quantile(q)
        assert abs(got - exact) <= a * abs(exact), (q, got, exact)
    assert sk.min == x.min() and sk.max == x.max() and sk.count == len(x)
    assert math.isclose(sk.mean, float(np.mean(x)), rel_tol=1e-12, abs_tol=1e-300)


@pytest.mark.parametrize("dist", ["lognormal", "normal", "zeros+exponential", "constant", "tiny+huge"])
def test_sketch_quantiles_within_relative_accuracy(dist):
    rng = np.random.default_rng(7)
    x = {"lognormal": rng.lognormal(0, 4, 20_000),
         "normal": rng.normal(size=20_000),
         "zeros+exponential": np.r_[np.zeros(3000), rng.exponential(size=7000)],
         "constant": np.full(500, 0.25),
         "tiny+huge": np.r_[(1 + rng.random(100)) * 1e-12, (1 + rng.random(100)) * 1e12]}[dist]
    rng.shuffle(x)
    sk = QuantileSketch()
    for chunk in np.array_split(x, 13):
        sk.update(chunk)
    _check_quantiles(sk, x)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.just(0.0), st.floats(1e-6, 1e6), st.floats(-1e6, -1e-6)), min_size=1, max_size=200),
       st.integers(1, 50))
def test_sketch_any_values_any_split(values, cut):
    x = np.array(values)
    whole = QuantileSketch()
    whole.update(x)
    _check_quantiles(whole, x)
    left, right = QuantileSketch(), QuantileSketch()
    left.update(x[:cut])
    right.update(x[cut:])
    merged = left.merge(right)
    for q in (0.1, 0.5, 0.9, 0.99):
        assert merged.quantile(q) == whole.quantile(q)


def test_sketch_memory_is_bounded_and_collapses_only_the_lowest():
    sk = QuantileSketch(max_bins=2000)      # 2000 buckets of 1% span ~8.7 decades
    x = np.geomspace(1e-20, 1e20, 10_000)
    sk.update(x)
    assert len(sk.pos.counts) <= 2000
    for q in (0.9, 0.99, 0.999):   # the upper quantiles keep their accuracy
        exact = float(np.quantile(x, q, method="lower"))
        assert abs(sk.quantile(q) - exact) <= 0.005 * exact * (1 + 1e-9)
    floor = sk._value(sk.pos.offset)   # everything below the kept range reads as the lowest bucket
    assert floor > 1e10 and sk.quantile(0.1) == floor


def test_sketch_histogram_counts_every_row():
    x = np.random.default_rng(3).lognormal(size=1000)
    sk = QuantileSketch()
    sk.update(x)
    scale, bins = sk.histogram(12)
    assert scale == "log" and len(bins) == 12
    assert sum(b["count"] for b in bins) == 1000
    assert bins[0]["lo"] == x.min() and bins[-1]["hi"] == x.max()
    sk2 = QuantileSketch()
    sk2.update(np.r_[-x, x])
    assert sk2.histogram(10)[0] == "linear"


def test_bar():
    assert bar(10, 10, 4) == "████"
    assert bar(1, 8, 1) == "▏"
    assert bar(0, 8) == ""


def test_workbench_key_columns_and_chaining():
    seen = []
    wb = Workbench(["mse"], top=1, hist=True, then=seen.append)
    b = pa.record_batch([pa.array([7, 8]), pa.array(["a", "b"]), pa.array([0.5, 2.0])], names=["id", "g", "mse"])
    wb(b)
    assert wb.key_columns == ["id", "g"] and seen == [b]
    assert wb.top_rows() == [{"loss": "mse", "rank": 1, "id": 8, "g": "b", "value": 2.0}]


# -- CLI ---------------------------------------------------------------------------------------------------
def test_eval_top_json_matches_numpy(sample):
    r = run("eval", SAMPLE, "-l", "mse,mae", "--top", "5", "--id", "id", "--format", "json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    d = sample["y_pred"] - sample["y_true"]
    for loss, per in (("mse", d * d), ("mae", np.abs(d))):
        rows = [t for t in doc["top"] if t["loss"] == loss]
        order = _brute_top(per, 5)
        assert [t["rank"] for t in rows] == [1, 2, 3, 4, 5]
        assert [t["id"] for t in rows] == [int(sample["id"][i]) for i in order]
        np.testing.assert_allclose([t["value"] for t in rows], per[order], rtol=1e-12)
        assert set(rows[0]) == {"loss", "rank", "id", "value"}


def test_eval_top_row_numbers_without_id_and_batch_size_independent(sample):
    docs = []
    for bs in ("1", "7", "1000"):
        r = run("eval", SAMPLE, "-l", "mae", "--top", "3", "--format", "json", "--batch-size", bs)
        assert r.exit_code == 0, r.output
        docs.append(json.loads(r.stdout)["top"])
    assert docs[0] == docs[1] == docs[2]
    d = np.abs(sample["y_pred"] - sample["y_true"])
    assert [t["row"] for t in docs[0]] == [i + 1 for i in _brute_top(d, 3)]


def test_eval_top_table(sample):
    r = run("eval", SAMPLE, "-l", "mse", "--top", "2", "--id", "id")
    assert r.exit_code == 0, r.output
    d = (sample["y_pred"] - sample["y_true"]) ** 2
    first, second = _brute_top(d, 2)
    out = r.stdout
    assert out.index("mse") < out.index("top 2 rows by mse")          # after the results table
    lines = [ln for ln in out.splitlines() if ln.startswith("│")]
    top_lines = lines[-2:]
    assert top_lines[0].split("│")[1:4] == [f" {'1':>4} ", f" {int(sample['id'][first]):>4} ",
                                           f" {d[first]:.6g} "]
    assert str(int(sample["id"][second])) in top_lines[1]


def test_eval_hist_json_quantiles(sample):
    r = run("eval", SAMPLE, "-l", "mse", "--hist", "--format", "json")
    assert r.exit_code == 0, r.output
    h = json.loads(r.stdout)["hist"]["mse"]
    x = (sample["y_pred"] - sample["y_true"]) ** 2
    assert h["count"] == len(x)
    assert h["max"] == pytest.approx(x.max(), rel=1e-12)
    assert h["min"] == pytest.approx(x.min(), rel=1e-12)
    assert h["mean"] == pytest.approx(x.mean(), rel=1e-12)
    for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
        exact = np.quantile(x, q, method="lower")
        assert abs(h[name] - exact) <= 0.005 * exact * (1 + 1e-9)
    assert h["quantiles"]["method"] == "ddsketch" and h["quantiles"]["relative_accuracy"] == 0.005
    assert sum(b["count"] for b in h["bins"]) == len(x)


def test_eval_hist_table_draws_bars():
    r = run("eval", SAMPLE, "-l", "mae", "--hist")
    assert r.exit_code == 0, r.output
    assert "distribution of mae over 200 rows" in r.stdout
    assert "█" in r.stdout and "p99" in r.stdout


def test_eval_top_with_streamed_csv_keeps_stdout_machine_readable(sample):
    r = run("eval", SAMPLE, "-l", "mse", "-r", "none", "--format", "csv", "--top", "2")
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert len(rows) == 200 and set(rows[0]) == {"row", "mse"}
    assert "top 2 rows by mse" in r.stderr


def test_eval_top_must_be_positive():
    r = run("eval", SAMPLE, "-l", "mse", "--top", "0")
    assert r.exit_code == 2


def test_eval_grad_per_sample(sample):
    r = run("eval", SAMPLE, "-l", "mse,mae", "--grad", "-r", "none", "--format", "json", "--limit", "0")
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)["rows"]
    d = sample["y_pred"] - sample["y_true"]
    np.testing.assert_allclose([row["d_mse/d_pred"] for row in rows], 2 * d, rtol=1e-12)
    np.testing.assert_allclose([row["d_mae/d_pred"] for row in rows], np.sign(d), rtol=0)


def test_eval_grad_to_file(tmp_path, sample):
    out = tmp_path / "g.parquet"
    r = run("eval", SAMPLE, "-l", "mse", "--grad", "-o", str(out))
    assert r.exit_code == 0, r.output
    import pyarrow.parquet as pq
    t = pq.read_table(out)
    assert t.column_names == ["row", "mse", "d_mse/d_pred"]
    np.testing.assert_allclose(t.column("d_mse/d_pred").to_numpy(), 2 * (sample["y_pred"] - sample["y_true"]))


def test_eval_grad_needs_per_sample_output():
    r = run("eval", SAMPLE, "-l", "mse", "--grad")
    assert r.exit_code == 2
    assert "-r none" in r.stderr


def test_eval_top_several_id_columns_and_by(sample):
    r = run("eval", SAMPLE, "-l", "mae", "--top", "4", "--id", "id,region", "--format", "json")
    assert r.exit_code == 0, r.output
    top = json.loads(r.stdout)["top"]
    d = np.abs(sample["y_pred"] - sample["y_true"])
    with open(SAMPLE, newline="") as fh:
        regions = [row["region"] for row in csv.DictReader(fh)]
    order = _brute_top(d, 4)
    assert [(t["id"], t["region"]) for t in top] == [(int(sample["id"][i]), regions[i]) for i in order]
    np.testing.assert_allclose([t["value"] for t in top], d[order], rtol=1e-12)
    # --by columns come along as keys (the top K is over all rows, each row labelled with its group)
    r = run("eval", SAMPLE, "-l", "mae", "--top", "2", "--by", "region", "--format", "json")
    top = json.loads(r.stdout)["top"]
    assert [(t["row"], t["region"]) for t in top] == [(i + 1, regions[i]) for i in order[:2]]


def test_eval_top_streams_in_bounded_memory(sample, monkeypatch):
    """Through the CLI with 7-row batches: TopK sees every batch and never holds more than K rows."""
    sizes = []
    original = TopK.update

    def spy(self, batch):
        original(self, batch)
        sizes.append((batch.num_rows, self.kept.num_rows))
    monkeypatch.setattr(TopK, "update", spy)
    r = run("eval", SAMPLE, "-l", "mse", "--top", "3", "--batch-size", "7", "--format", "json")
    assert r.exit_code == 0, r.output
    assert sum(n for n, _ in sizes) == 200 and len(sizes) == math.ceil(200 / 7)
    assert max(n for n, _ in sizes) <= 7 and max(k for _, k in sizes) <= 3
    d = (sample["y_pred"] - sample["y_true"]) ** 2
    assert [t["row"] - 1 for t in json.loads(r.stdout)["top"]] == _brute_top(d, 3)


def test_eval_hist_table_values_against_numpy(sample):
    r = run("eval", SAMPLE, "-l", "mse", "--hist")
    assert r.exit_code == 0, r.output
    x = (sample["y_pred"] - sample["y_true"]) ** 2
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("mse: p50"))
    got = dict(re.findall(r"(p50|p90|p99|max) (-?\d[\d.e+-]*)", line))
    for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
        exact = float(np.quantile(x, q, method="lower"))
        assert abs(float(got[name]) - exact) <= 0.005 * exact + 5e-6 * exact, (name, got[name], exact)
    assert float(got["max"]) == pytest.approx(x.max(), rel=1e-5)        # 6 significant digits
    assert "quantiles from a DDSketch, within ±0.5%; max exact" in line
    # the bars: one table row per display bin, counts summing to every row
    hist_table = r.stdout.split("distribution of mse", 1)[1]
    counts = [int(m) for m in re.findall(r"^│\s+\S+\s+│\s+\S+\s+│\s+(\d+)\s+│", hist_table, re.M)]
    assert len(counts) == 16 and sum(counts) == len(x)
    assert "distribution of mse over 200 rows (log bins)" in r.stdout


def test_eval_top_and_hist_with_output_file(tmp_path, sample):
    out = tmp_path / "per_sample.csv"
    r = run("eval", SAMPLE, "-l", "mse", "--top", "2", "--hist", "-o", str(out), "--format", "json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    d = (sample["y_pred"] - sample["y_true"]) ** 2
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 200                                               # the file still has every row
    np.testing.assert_allclose([float(row["mse"]) for row in rows], d, rtol=1e-12)
    assert [t["row"] - 1 for t in doc["top"]] == _brute_top(d, 2)
    assert doc["hist"]["mse"]["count"] == 200
