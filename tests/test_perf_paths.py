"""The fast paths of issue 4 give the results of the plain formulations they replace.

Speed itself is measured in benchmarks/ (BENCHMARKS.md), never asserted here.  These tests pin down
what the optimisations must not change: bit-identical per-sample values (log_loss fast path, in-place
regression errors), the same validation verdicts (row-sum screen, unit-interval check), the same
compensated sums, and the background reader's order, errors and shutdown.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lossctl
from lossctl import api
from lossctl.io.sources import DEFAULT_BATCH_ROWS, auto_batch_rows
from lossctl.losses import _labels as L
from lossctl.losses import binary, regression
from lossctl.state import SumState, _neumaier_add

EPS = float(np.finfo(np.float64).eps)


def _log_loss_general(p, y, eps=EPS, row_sums="warn"):
    """sklearn's formulation, as binary.log_loss computed it before the fast path."""
    p = np.asarray(p, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if p.ndim == 1:
        p = np.stack([1.0 - p, p], axis=1)
        y = np.stack([1.0 - y, y], axis=1) if y.ndim == 1 else y
    else:
        if row_sums == "renormalize":
            p = p / np.sum(p, axis=1, keepdims=True)
        if y.ndim == 1:
            y = L.one_hot(y, p.shape[1])
    p = np.clip(p, eps, 1.0 - eps)
    return -np.sum(np.where(y == 0, 0.0, y * np.log(p)), axis=1)


def _probs(rng, n, c):
    p = rng.random((n, c))
    p[rng.random((n, c)) < 0.1] = 0.0  # exact zeros and ones: the clip matters
    p[rng.random((n, c)) < 0.05] = 1.0
    return p


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # all-zero rows renormalised: 0/0, in both forms
@pytest.mark.parametrize("seed", range(20))
def test_log_loss_fast_path_is_bit_identical(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 300))
    p = _probs(rng, n, 1)[:, 0]
    y = (rng.random(n) < 0.5).astype(np.float64)
    np.testing.assert_array_equal(binary.log_loss(p, y), _log_loss_general(p, y))
    eps = float(rng.choice([EPS, 1e-7, 1e-15]))
    np.testing.assert_array_equal(binary.log_loss(p, y, eps=eps), _log_loss_general(p, y, eps=eps))
    soft = rng.random(n)  # soft labels take the general path
    np.testing.assert_array_equal(binary.log_loss(p, soft), _log_loss_general(p, soft))
    c = int(rng.integers(1, 12))
    P = _probs(rng, n, c)
    yi = rng.integers(0, c, n).astype(np.float64)
    for rows in ("warn", "renormalize"):
        np.testing.assert_array_equal(binary.log_loss(P, yi, row_sums=rows),
                                      _log_loss_general(P, yi, row_sums=rows))
    onehot = L.one_hot(yi, c)  # (n, C) targets: general path, same values
    np.testing.assert_array_equal(binary.log_loss(P, onehot), binary.log_loss(P, yi))


@pytest.mark.filterwarnings("ignore:invalid value encountered in cast:RuntimeWarning")  # NaN / 1e30 labels
@pytest.mark.parametrize("layout", ["C", "F", "strided"])
def test_label_column_pick_equals_take_along_axis_and_still_rejects_bad_labels(layout):
    """log_loss's pick of p[i, y[i]] (a flat take on C-ordered matrices) gives take_along_axis's elements for
    any memory layout, and a label outside [0, C) or NaN behaves as there (IndexError, or -1 wrapping round)
    instead of reading a neighbouring row."""
    rng = np.random.default_rng(3)
    base = rng.random((500, 14))
    p = {"C": base[:, :7].copy(), "F": np.asfortranarray(base[:, :7]), "strided": base[:, ::2]}[layout]
    y = rng.integers(0, 7, 500).astype(np.float64)
    want = np.take_along_axis(p, y.astype(np.int64)[:, None], axis=1)[:, 0]
    np.testing.assert_array_equal(binary._pick_columns(p, y), want)
    assert binary._pick_columns(p[:0], y[:0]).shape == (0,)
    for bad in (7.0, -1.0, -8.0, np.nan, 1e30):  # what take_along_axis does (-1 wraps), never a neighbour's value
        y_bad = y.copy()
        y_bad[250] = bad
        try:
            old = np.take_along_axis(p, y_bad.astype(np.int64)[:, None], axis=1)[:, 0]
        except IndexError:
            with pytest.raises(IndexError):
                binary._pick_columns(p, y_bad)
        else:
            np.testing.assert_array_equal(binary._pick_columns(p, y_bad), old)


def test_log_loss_fast_path_keeps_nan_semantics():
    p = np.array([np.nan, 0.3, 0.7])
    y = np.array([1.0, 0.0, 1.0])
    np.testing.assert_array_equal(binary.log_loss(p, y), _log_loss_general(p, y))
    P = np.array([[np.nan, 0.5, 0.5], [0.2, 0.3, 0.5]])  # NaN in a column that is not the label's
    yi = np.array([1.0, 2.0])
    np.testing.assert_array_equal(binary.log_loss(P, yi), _log_loss_general(P, yi))


@pytest.mark.parametrize("fn,plain", [
    (regression.squared_error, lambda d: d * d),
    (regression.absolute_error, np.abs),
    (regression.root_squared_error, np.abs),
    (regression.half_squared_error, lambda d: 0.5 * (d * d)),
])
def test_in_place_regression_errors_match_plain_formulas(fn, plain):
    rng = np.random.default_rng(1)
    pred, target = rng.standard_normal(1000) * 1e3, rng.standard_normal(1000)
    before = pred.copy(), target.copy()
    np.testing.assert_array_equal(fn(pred, target), plain(pred - target))
    np.testing.assert_array_equal(pred, before[0])  # the inputs are never written to
    np.testing.assert_array_equal(target, before[1])


_HUBER_EDGES = [0.0, -0.0, 1.0, -1.0, 0.5, 1e-300, 5e-324, 1e308, -1e308, np.inf, -np.inf, np.nan, 3.0, 1e-8]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=64), st.sampled_from(_HUBER_EDGES)),
                min_size=2, max_size=40),
       st.lists(st.floats(allow_nan=False, allow_infinity=False, width=64), min_size=2, max_size=40),
       st.one_of(st.sampled_from([1.0, 0.5, 2.0, 1e-300, 1e300, np.inf]),
                 st.floats(min_value=1e-12, max_value=1e12)))
def test_huber_without_select_is_bit_identical_to_the_two_branch_formula(pred, target, delta):
    """huber's branch-free form m (|d| - m/2), m = min(|d|, delta), equals torch's two branches
    0.5 d^2 if |d| < delta else delta (|d| - 0.5 delta) bit for bit, NaN and inf included; 2-D rows too."""
    n = min(len(pred), len(target))
    p, t = np.array(pred[:n]), np.array(target[:n])
    with np.errstate(all="ignore"):
        a = np.abs(p - t)
        want = np.where(a < delta, 0.5 * a * a, delta * (a - 0.5 * delta))
        got = regression.huber(p, t, delta=delta)
        np.testing.assert_array_equal(got, want)
        assert np.array_equal(np.signbit(got), np.signbit(want))
        if n >= 2 and n % 2 == 0:
            got2 = regression.huber(p.reshape(-1, 2), t.reshape(-1, 2), delta=delta)
            np.testing.assert_array_equal(got2, np.mean(want.reshape(-1, 2), axis=1))


class _Ctx:
    def __init__(self):
        self.memo, self.options, self.row0 = {}, {}, 0
        self.warnings = []

    def error(self, role, i, message):
        return ValueError(i, message)


def _row_sum_verdict(p, tol=L.ROW_SUM_TOL):
    """(first bad row, its np.sum) as the plain check computes them, or None."""
    s = np.sum(p, axis=1)
    bad = np.abs(s - 1.0) > tol
    return (int(np.argmax(bad)), float(s[np.argmax(bad)])) if bad.any() else None


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_row_sum_screen_gives_the_exact_verdict(data):
    n = data.draw(st.integers(1, 40))
    c = data.draw(st.integers(1, 30))
    rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 32 - 1)))
    p = rng.random((n, c))
    p /= p.sum(axis=1, keepdims=True)
    i = data.draw(st.integers(0, n - 1))
    # rows right at the tolerance, where the screen's rounding could matter, and non-finite or negative values
    p[i, 0] += data.draw(st.sampled_from([0.0, 1e-6, 1e-6 * (1 + 1e-10), 1e-6 * (1 - 1e-10), -1e-6, 3e-6,
                                          1e-7, np.nan, np.inf, -2.0]))
    want = _row_sum_verdict(p)
    try:
        L.check_row_sums(p, _Ctx(), "pred", "log_loss", action="error")
        got = None
    except ValueError as exc:
        got = exc.args
    if want is None:
        assert got is None
    else:
        assert got is not None and got[0] == want[0] and repr(want[1]) in got[1]


@pytest.mark.parametrize("values,bad_row", [([0.0, 1.0, 0.5], None), ([0.2, np.nan, 0.3], None),
                                            ([0.2, 1.5, -0.1], 1), ([-0.0, 0.0], None), ([], None)])
def test_unit_interval_check(values, bad_row):
    p = np.array(values, dtype=np.float64)
    if bad_row is None:
        L.check_unit_interval(p, _Ctx(), "pred")
    else:
        with pytest.raises(ValueError) as exc:
            L.check_unit_interval(p, _Ctx(), "pred")
        assert exc.value.args[0] == bad_row


def test_scalar_neumaier_matches_the_array_version():
    rng = np.random.default_rng(7)
    for _ in range(300):
        vals = rng.standard_normal(30) * 10.0 ** rng.integers(-30, 30, 30)
        vals[rng.integers(0, 30)] = rng.choice([np.inf, -np.inf, np.nan, 0.0, -0.0])
        hi, lo, s = np.zeros(1), np.zeros(1), SumState()
        for v in vals:
            with np.errstate(all="ignore"):
                _neumaier_add(hi, lo, np.array([v]))
            s._add_total("k", v)
        np.testing.assert_array_equal([s.hi["k"], s.lo["k"]], [hi[0], lo[0]])


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
def test_an_overflowing_sum_is_inf_not_nan():
    s = SumState()
    s.update({"loss": np.array([1e308, 1e308])})  # the batch's sum overflows
    s.update({"loss": np.array([1.0])})
    assert s.total("loss") == np.inf
    g = SumState()
    g.update({"loss": np.array([1e308, 1e308, 1.0])}, groups=np.array([0, 0, 1]), ngroups=2)
    g.update({"loss": np.array([1e308, 2.0])}, groups=np.array([0, 1]), ngroups=2)
    assert g.group_totals(0)["loss"] == np.inf and g.group_totals(1)["loss"] == 3.0


# -- the background reader ------------------------------------------------------------------------------
def test_prefetched_keeps_order_and_raises_after_the_items_before_the_error():
    def gen():
        yield from range(5)
        raise lossctl.errors.InputError("boom at 5")

    got = []
    with pytest.raises(lossctl.errors.InputError, match="boom at 5"):
        for x in api._prefetched(gen(), depth=2):
            got.append(x)
    assert got == [0, 1, 2, 3, 4]


def test_prefetched_stops_the_reader_when_the_consumer_stops():
    produced = []
    finished = threading.Event()

    def gen():
        try:
            for i in range(10_000):
                produced.append(i)
                yield i
        finally:
            finished.set()

    it = api._prefetched(gen(), depth=2)
    assert next(it) == 0
    it.close()
    deadline = time.monotonic() + 5
    while not finished.is_set() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert finished.is_set(), "the reader thread kept running after the consumer stopped"
    assert len(produced) < 10  # bounded read-ahead: never ran far past the consumer


def test_reader_thread_does_not_outlive_an_evaluation(tmp_path):
    x = np.linspace(0, 1, 50_000)
    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"y_true": x, "y_pred": x * 1.5}), path, row_group_size=7_000)
    before = {t.name for t in threading.enumerate()}
    res = lossctl.evaluate(str(path), ["mse"], batch_rows=1000)
    assert res.value("mse") == pytest.approx(float(np.mean((0.5 * x) ** 2)), rel=1e-13)
    time.sleep(0.2)
    left = [t for t in threading.enumerate() if t.name == "lossctl-reader" and t.name not in before]
    assert not left


# -- batch sizes ------------------------------------------------------------------------------------------
def test_auto_batch_rows_shrinks_for_wide_inputs_only():
    assert auto_batch_rows(1) == auto_batch_rows(2) == DEFAULT_BATCH_ROWS
    assert auto_batch_rows(11) < DEFAULT_BATCH_ROWS
    assert auto_batch_rows(10_000) == 4096
    assert all(auto_batch_rows(k) % 1024 == 0 for k in range(1, 200))


def test_default_batching_gives_the_single_batch_result(tmp_path):
    """Wide multiclass input read in the automatic (smaller) batches: the same value as one batch."""
    rng = np.random.default_rng(3)
    n, c = 40_000, 12
    p = rng.random((n, c))
    p /= p.sum(axis=1, keepdims=True)
    cols = {f"p_{k}": p[:, k] for k in range(c)}
    cols["label"] = rng.integers(0, c, n)
    path = tmp_path / "mc.parquet"
    pq.write_table(pa.table(cols), path, row_group_size=9_999)
    auto = lossctl.evaluate(str(path), ["log_loss"], pred="p_*", target="label").value()
    one = lossctl.evaluate(str(path), ["log_loss"], pred="p_*", target="label", batch_rows=n).value()
    ref = float(np.mean(-np.log(np.clip(p[np.arange(n), cols["label"]], EPS, 1 - EPS))))
    assert auto == pytest.approx(one, rel=1e-14)
    assert auto == pytest.approx(ref, rel=1e-13)


# -- the benchmark harness reports a peer it cannot run -------------------------------------------------------
def test_bench_reports_a_peer_that_is_not_installed(monkeypatch):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    try:
        import bench
        import peers
    finally:
        sys.path.pop(0)
    monkeypatch.setitem(peers.REQUIRES, "polars", ["polars", "no_such_module_for_lossctl_tests"])
    monkeypatch.setitem(bench.REQUIRES, "polars", ["polars", "no_such_module_for_lossctl_tests"])
    import importlib.util
    absent = [m for m in ("polars", "no_such_module_for_lossctl_tests") if importlib.util.find_spec(m) is None]
    want = "not installed (" + ", ".join(absent) + ")"
    e = bench.peer_entry("polars", "mse", "x.parquet", 1.0)
    assert e.argv is None and e.missing == want
    job = bench.Job("mse", "parquet", "t", "lossctl",
                    [bench.Entry("lossctl", ["lossctl"], role="lossctl", walls=[1.0], rss_kb=[1000],
                                 values=[1.0], ref=1.0), e])
    rows = bench.job_rows(job)
    assert rows[1][:2] == ["polars", want]


@pytest.mark.parametrize("labels", [[0.0, 1.0, 1.0], [1.0, 1.0], [0.0, 0.0], [-0.0, 1.0], [-1.0, 1.0, 1.0],
                                    [0.0, 0.5], [1.0, 2.0], [np.nan, 1.0], [[0.0, 1.0], [1.0, 1.0]], []])
def test_binary_label_check_agrees_with_the_plain_rule(labels):
    y = np.array(labels, dtype=np.float64)
    ok = (y == 0) | (y == 1) | (y == -1)
    ctx = _Ctx()
    if not ok.all():
        with pytest.raises(ValueError) as exc:
            L.binary_labels(y, ctx, "target")
        assert exc.value.args[0] == L.first_row(~ok)
        return
    got = L.binary_labels(y, ctx, "target")
    np.testing.assert_array_equal(got, np.where(y > 0, 1.0, 0.0))
    want = "0/1" if (y == 0).any() else ("-1/+1" if (y == -1).any() else None)
    assert ctx.memo.get("binary_coding") == want


def test_parquet_evaluation_skips_the_pyarrow_parquet_module(tmp_path):
    """Reading goes through ParquetReader: pyarrow.parquet (and pyarrow.fs, ssl) stay unimported."""
    import json
    import os
    import subprocess

    x = np.linspace(0, 1, 3000)
    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"y_true": x, "y_pred": x * 1.1}), path)
    probe = ("import json, sys\nfrom lossctl.cli import main\ntry:\n    main(['eval', %r, '-l', 'mse', '--value'])\n"
             "except SystemExit:\n    pass\nprint(json.dumps(sorted(sys.modules)), file=sys.stderr)\n" % str(path))
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    loaded = set(json.loads(proc.stderr.strip().splitlines()[-1]))
    assert float(proc.stdout) == pytest.approx(float(np.mean((0.1 * x) ** 2)), rel=1e-12)
    assert "pyarrow.parquet" not in loaded and "pyarrow.fs" not in loaded


@pytest.mark.parametrize("mapped", [True, False])
def test_a_line_longer_than_a_range_and_errors_after_it_are_located(tmp_path, monkeypatch, mapped):
    """CSV ranges are parsed ahead in a thread: rows and errors still come in file order; the same when the
    file cannot be memory-mapped (the ranges are read instead)."""
    from lossctl.io import sources

    calls = []
    real_open = sources._Mapped.open.__func__

    def spy(cls, p):
        calls.append(p)
        return real_open(cls, p) if mapped else None
    monkeypatch.setattr(sources._Mapped, "open", classmethod(spy))

    rows = [f"{i},{i + 0.5}" for i in range(30_000)]
    rows[12_345] = "1," + "2" * 200 + ".0"  # a long line
    rows[25_000] = "oops,1.0"
    path = tmp_path / "r.csv"
    path.write_text("y_true,y_pred\n" + "\n".join(rows) + "\n")
    src = sources.open_source(str(path))
    got = []
    with pytest.raises(lossctl.errors.InputError, match=r"row 25001"):
        for b in src._csv_ranges(["y_true", "y_pred"], {"y_true": pa.float64(), "y_pred": pa.float64()},
                                 [str(path)], chunk_bytes=4096):
            got.extend(b.column(0).to_pylist())
    # the ranges before the one holding the bad row arrived whole and in file order
    want = [float(r.split(",")[0]) for r in rows[:25_000]]
    assert 24_000 < len(got) <= 25_000 and got == want[:len(got)]
    assert calls == [str(path)]


def test_parquet_row_groups_read_whole_or_streamed_give_the_same_values(tmp_path, monkeypatch):
    """Small row groups are read whole and cut into batches; a row group over the cap streams page by page.
    Both give the same values, for any batch size, and the cap really selects the path."""
    from lossctl.io import sources

    rng = np.random.default_rng(5)
    n = 50_000
    y = rng.normal(size=n)
    path = tmp_path / "rg.parquet"
    pq.write_table(pa.table({"y_true": y, "y_pred": y + rng.normal(0, 0.3, n), "w": rng.uniform(0.5, 2, n)}),
                   path, row_group_size=7_000)
    calls = {"whole": 0}
    whole = sources._LocalParquet._whole_groups

    def counting(self, *a, **k):
        calls["whole"] += 1
        return whole(self, *a, **k)
    monkeypatch.setattr(sources._LocalParquet, "_whole_groups", counting)
    got = {}
    for cap in (sources._WHOLE_GROUP_BYTES, 1):     # 1 byte: every row group is "large"
        monkeypatch.setattr(sources, "_WHOLE_GROUP_BYTES", cap)
        before = calls["whole"]
        for batch in (1000, 65536):
            res = api.evaluate(str(path), ["mse", "huber:delta=0.5"], weight="w", batch_rows=batch)
            got[(cap, batch)] = (res.value("mse"), res.value("huber"))
        assert (calls["whole"] > before) == (cap > 1)
    first = got[(1, 1000)]
    for v in got.values():   # batches cut at other rows: the same sums to the last bit or two
        assert v == pytest.approx(first, rel=1e-14, abs=0.0), got
    d = (y + 0) - pq.read_table(path).column("y_pred").to_numpy()
    w = pq.read_table(path).column("w").to_numpy()
    assert got[(1, 1000)][0] == pytest.approx(float(np.sum(w * d * d) / np.sum(w)), rel=1e-12)


def test_parquet_row_groups_decoded_from_a_memory_map_match_pyarrow_and_release_pages(tmp_path, monkeypatch):
    """Whole row groups are decoded from a read-only memory map of the file: the batches equal pyarrow's own
    reading (dictionary-encoded text, nulls, lists, integers, a column subset), each row group's byte range
    is released once decoded, in file order, and an unmappable file reads the same through the reader."""
    from lossctl.io import sources

    rng = np.random.default_rng(11)
    n = 23_456
    tbl = pa.table({
        "y_true": rng.normal(size=n),
        "y_pred": pa.array(np.where(rng.random(n) < 0.1, np.nan, rng.normal(size=n)),
                           mask=rng.random(n) < 0.05),
        "label": pa.array(rng.choice(["cat", "dog", "eel"], n)),
        "k": rng.integers(-5, 5, n),
        "vec": pa.array([[float(i), float(-i)] for i in range(n)], type=pa.list_(pa.float64())),
    })
    path = tmp_path / "m.parquet"
    pq.write_table(tbl, path, row_group_size=4_000, compression="snappy")
    released: list[tuple[int, int]] = []
    real_release = sources._Mapped.release

    def spy(self, start, end):
        released.append((start, end))
        return real_release(self, start, end)
    monkeypatch.setattr(sources._Mapped, "release", spy)
    monkeypatch.setattr(sources, "_MAP_MIN_BYTES", 0)  # (a file this small is otherwise read without a map)
    cols = ["y_pred", "label", "k", "vec"]
    want = pq.read_table(path, columns=cols)
    md = pq.ParquetFile(path).metadata
    for batch in (1000, 4096, 65536):
        released.clear()
        pf = sources._LocalParquet.open(str(path), pre_buffer=False, buffer_size=1 << 20)
        got = pa.Table.from_batches(list(pf.iter_batches(batch_size=batch, columns=cols)))
        assert _same_table(got, want)
        # row groups are read in runs of consecutive groups (up to 4 batches of rows), one release per run
        runs = [[g] for g in range(md.num_row_groups)] if batch == 1000 else None
        if batch == 4096:
            runs = [[0, 1, 2, 3], [4, 5]]
        if batch == 65536:
            runs = [list(range(md.num_row_groups))]
        assert len(released) == len(runs)
        for k, (run, (start, end)) in enumerate(zip(runs, released)):
            for g in run:
                rg = md.row_group(g)
                chunks = [rg.column(j) for j in range(rg.num_columns)
                          if rg.column(j).path_in_schema.split(".")[0] in cols]
                first = [c.dictionary_page_offset if c.has_dictionary_page else c.data_page_offset for c in chunks]
                assert start <= min(first)
                assert end >= max(f + c.total_compressed_size for f, c in zip(first, chunks))
            assert k == 0 or start >= released[k - 1][0]
    monkeypatch.setattr(sources._Mapped, "open", classmethod(lambda cls, p: None))
    released.clear()
    pf = sources._LocalParquet.open(str(path), pre_buffer=False, buffer_size=1 << 20)
    assert _same_table(pa.Table.from_batches(list(pf.iter_batches(batch_size=3000, columns=cols))), want)
    assert released == []


def _same_table(a: pa.Table, b: pa.Table) -> bool:
    """Equal schemas and values, NaN equal to NaN (repr of a Python float round-trips exactly)."""
    return a.schema == b.schema and all(repr(a.column(c).to_pylist()) == repr(b.column(c).to_pylist())
                                        for c in a.column_names)


def test_memory_map_release_drops_the_pages_from_this_process(tmp_path):
    """_Mapped.release gives the decoded part of the file back: the mapping's resident pages fall (Linux)."""
    from lossctl.io import sources

    if not sys.platform.startswith("linux"):
        pytest.skip("reads the mapping's Rss from /proc/self/smaps (Linux only)")
    path = tmp_path / "big.bin"
    path.write_bytes(np.random.default_rng(0).bytes(8 << 20))
    m = sources._Mapped.open(str(path))
    assert m is not None and m.size == 8 << 20
    view = np.frombuffer(m.slice(0, m.size), dtype=np.uint8)   # a zero-copy view of the map
    assert view.ctypes.data == m.base

    def rss_kb():
        addr = view.ctypes.data
        smaps = Path("/proc/self/smaps").read_text().split("\n")
        for i, line in enumerate(smaps):
            head = line.split(" ", 1)[0]
            if "-" in head and all(c in "0123456789abcdef-" for c in head):
                lo, hi = (int(x, 16) for x in head.split("-"))
                if lo <= addr < hi:
                    for rest in smaps[i + 1:]:
                        if rest.startswith("Rss:"):
                            return int(rest.split()[1])
        raise AssertionError("mapping not found")
    assert int(view[::4096].astype(np.int64).sum()) >= 0   # touch every page
    full = rss_kb()
    assert full >= 7 * 1024
    m.release(0, 6 << 20)
    assert rss_kb() <= full - 5 * 1024
    assert bytes(view[:16]) == path.read_bytes()[:16]       # released pages read back from the file


_RESIDUAL_LOSSES = ["mse", "mae", "rmse", "quadratic", "huber:delta=0.7", "smooth_l1:beta=0.3", "smooth_l1:beta=0",
                    "log_cosh"]


@pytest.mark.parametrize("name", _RESIDUAL_LOSSES)
@pytest.mark.parametrize("width", [1, 3])
def test_residual_forms_equal_the_losses_bit_for_bit_and_leave_the_residual_alone(name, width):
    """extra['residual'](d) (and 'residual_terms') of a regression loss equal fn(pred, target) (and terms)
    on d = pred - target, specials included, and never write into the shared, read-only d."""
    req_name, _, param = name.partition(":")
    spec = lossctl.get_loss(req_name)
    params = {}
    if param:
        k, v = param.split("=")
        params[k] = float(v)
    rng = np.random.default_rng(len(name) * 7 + width)
    n = 600
    p = rng.normal(size=(n, width)) * rng.choice([1e-9, 1.0, 1e3], size=(n, width))
    t = rng.normal(size=(n, width))
    p.flat[:8] = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e308, -1e308, 5e-324]
    if width == 1:
        p, t = p[:, 0], t[:, 0]
    d = p - t
    d.flags.writeable = False
    with np.errstate(all="ignore"):
        want = spec.fn(p, t, **params)
        got = spec.extra["residual"](d, **params)
        np.testing.assert_array_equal(got, want)
        assert np.array_equal(np.signbit(got), np.signbit(want))
        if spec.terms is not None:
            tw, tg = spec.terms(p, t, **params), spec.extra["residual_terms"](d, **params)
            assert tw.keys() == tg.keys()
            for k in tw:
                np.testing.assert_array_equal(tg[k], tw[k])
    np.testing.assert_array_equal(d, p - t)


def test_losses_of_one_run_share_the_residual_and_give_what_each_gives_alone(tmp_path, monkeypatch):
    """Several residual losses in one run: pred - target is computed once per batch, and every value
    (reduced, weighted, per group, per sample) is the one each loss gives in a run of its own."""
    rng = np.random.default_rng(8)
    n = 30_000
    y = rng.normal(size=n)
    path = tmp_path / "r.parquet"
    pq.write_table(pa.table({"y_true": y, "y_pred": y + rng.standard_t(3, size=n), "w": rng.uniform(0.1, 3, n),
                             "g": rng.choice(["a", "b", "c"], n)}), path, row_group_size=9_000)
    computed = {"n": 0}
    real = api._shared_residual

    def counting(cache, pred, target):
        before = len(cache)
        d = real(cache, pred, target)
        computed["n"] += len(cache) - before
        return d
    monkeypatch.setattr(api, "_shared_residual", counting)
    names = ["mse", "mae", "huber:delta=0.5", "rmse", "quadratic", "smooth_l1:beta=2", "log_cosh", "mape"]
    for batch in (4096, 65536):
        computed["n"] = 0
        together = api.evaluate(str(path), names, weight="w", by=["g"], batch_rows=batch)
        batches = -(-n // batch) if batch < 9_000 else 4  # one computation per batch
        assert 0 < computed["n"] <= batches + 4
        rows_together = api.evaluate(str(path), names, reduction="none", batch_rows=batch, limit=0)
        for name in names:
            alone = api.evaluate(str(path), [name], weight="w", by=["g"], batch_rows=batch)
            label = name.split(":")[0]
            a = [(r.group, r.value) for r in together.results if r.loss == label]
            b = [(r.group, r.value) for r in alone.results if r.loss == label]
            assert a == b, (name, a, b)
            rows_alone = api.evaluate(str(path), [name], reduction="none", batch_rows=batch, limit=0)
            col = [k for k in rows_alone.rows[0] if k != "row"][0]
            va = [row[col] for row in rows_together.rows]
            vb = [row[col] for row in rows_alone.rows]
            assert len(va) == n and repr(va) == repr(vb), name
    computed["n"] = 0
    api.evaluate(str(path), ["mse"], batch_rows=4096)     # a loss alone computes its own residual in place
    assert computed["n"] == 0


_SHRINK_PROBE = r"""
import os, sys
path, out = sys.argv[1], sys.argv[2]
from lossctl.io import sources
real_check = sources._Mapped.check
calls = []
def check(self, end):
    calls.append(end)
    if len(calls) == 2:
        os.truncate(path, 1000)   # another program rewrites the file in place, before the 2nd read
    return real_check(self, end)
sources._Mapped.check = check
sources._CSV_RANGE_BYTES = 64 << 10


def in_order(fn, *args):  # each CSV range parsed before the next is found: no parse reads the map as it shrinks
    try:
        value = fn(*args)
    except BaseException as exc:
        def fail():
            raise exc
        return fail
    return lambda: value
sources._in_thread = in_order
from lossctl.cli import main
main(["eval", path, "-l", "mse", "-r", "none", "-o", out])
"""


@pytest.mark.parametrize("kind", ["parquet", "csv"])
def test_a_file_shrinking_under_the_memory_mapped_reader_is_an_input_error(tmp_path, kind):
    """A file rewritten in place while lossctl reads it from a memory map would end the process with SIGBUS
    at the first page past its new end; the size check before each row group / range makes it one line,
    exit 3, and no output file (run in a subprocess: a missing check would kill the test process)."""
    import subprocess

    rng = np.random.default_rng(3)
    n = 400_000
    path = tmp_path / f"shrink.{kind}"
    y = rng.random(n)
    if kind == "parquet":
        pq.write_table(pa.table({"y_true": y, "y_pred": y * 0.9}), path, row_group_size=100_000)
    else:
        path.write_text("y_true,y_pred\n" + "".join(f"{float(a)!r},{float(a) * 0.9!r}\n" for a in y[:600_000]))
    out = tmp_path / "rows.parquet"
    proc = subprocess.run([sys.executable, "-c", _SHRINK_PROBE, str(path), str(out)], capture_output=True,
                          text=True, cwd=str(Path(__file__).resolve().parents[1]), timeout=120)
    assert proc.returncode == 3, (proc.returncode, proc.stderr[-500:])
    assert proc.stderr.count("\n") == 1 and "shrank from" in proc.stderr and str(path) in proc.stderr
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == [path.name]


_SHRINK_NUMPY_PROBE = r"""
import os, sys
path = sys.argv[1]
from lossctl.io import sources, fastcsv
real_parse = fastcsv.parse_arrays
def parse_arrays(*a, **k):
    out = real_parse(*a, **k)
    os.truncate(path, 1000)   # another program rewrites the file in place, after the 1st range
    return out
fastcsv.parse_arrays = parse_arrays
sources._CSV_RANGE_BYTES = 64 << 10
""" + _SHRINK_PROBE.split("sources._CSV_RANGE_BYTES = 64 << 10")[1].replace(
    'main(["eval", path, "-l", "mse", "-r", "none", "-o", out])', 'main(["eval", path, "-l", "mse", "--value"])')


def test_a_file_shrinking_under_the_numpy_csv_reader_is_an_input_error(tmp_path):
    """The same for a large CSV of numbers read without pyarrow (a Python memory map): the size check
    before each range makes a file rewritten in place one line, exit 3."""
    import subprocess

    from lossctl.io import fastcsv
    if not fastcsv.available():
        pytest.skip("lossctl._fastcsv is not built: no NumPy path (tests/test_fastcsv.py says why)")
    rng = np.random.default_rng(3)
    path = tmp_path / "shrink.csv"
    y = rng.random(200_000)
    path.write_text("y_true,y_pred\n" + "".join(f"{float(a)!r},{float(a) * 0.9!r}\n" for a in y))
    assert path.stat().st_size > 4 << 20
    proc = subprocess.run([sys.executable, "-c", _SHRINK_NUMPY_PROBE, str(path)], capture_output=True,
                          text=True, cwd=str(Path(__file__).resolve().parents[1]), timeout=120)
    assert proc.returncode == 3, (proc.returncode, proc.stderr[-500:])
    assert proc.stderr.count("\n") == 1 and "shrank from" in proc.stderr and str(path) in proc.stderr
    assert proc.stdout == ""


_ARROW_REWRITE_PROBE = r"""
import os, sys
import numpy as np
from lossctl.io.sources import open_source
path = sys.argv[1]
src = open_source(path)
it = src.batches(["y_true", "y_pred"], 1 << 16)
first = next(it)
expect = float(np.sum(first.column(0).to_numpy()))
os.truncate(path, 0)          # another program rewrites the file in place while the batch is in use
print(repr(float(np.sum(first.column(0).to_numpy())) == expect))
"""


@pytest.mark.parametrize("kind", ["file", "stream"])
def test_arrow_batches_are_read_into_memory_not_views_of_a_map(tmp_path, kind):
    """An Arrow file is read batch by batch (pread), not memory-mapped: a mapped file's batches are views of
    its pages, which stay in the process's memory to the end (peak RSS the size of the file) and end it with
    SIGBUS if the file shrinks under them.  A batch read here must survive its file being truncated (a
    subprocess: the mapped reader would kill the test process)."""
    import subprocess

    n = 200_000
    y = np.random.default_rng(4).random(n)
    tbl = pa.table({"y_true": y, "y_pred": y * 0.5})
    path = tmp_path / f"data.{'arrow' if kind == 'file' else 'arrows'}"
    with pa.OSFile(str(path), "wb") as sink:
        writer = pa.ipc.new_file if kind == "file" else pa.ipc.new_stream
        with writer(sink, tbl.schema) as w:
            w.write_table(tbl, max_chunksize=50_000)
    proc = subprocess.run([sys.executable, "-c", _ARROW_REWRITE_PROBE, str(path)], capture_output=True, text=True,
                          cwd=str(Path(__file__).resolve().parents[1]), timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "True", (proc.returncode, proc.stderr[-500:])


# -- CSV ranges parsed first without the null spellings ------------------------------------------------
_CSV_TOKENS = ["", "NA", "N/A", "#N/A", "null", "NULL", "nan", "NaN", "-nan", "NAN", "+nan", "inf", "-inf",
               "1.#IND", "1", "-3", "07", "2.5", "1e3", "-0.0", "true", "false", "True", "abc", '"7"', '""',
               '"NA"', " 4 ", "2024-01-02", "2024-01-02 03:04:05", "12:30:00", "\xe9t\xe9"]


def _csv_range_table(path, columns, types, fast, monkeypatch):
    """Every batch of the range reader as one table (or the error line), with the fast parse off (False),
    as lossctl chooses it (True), or tried whatever the column types ("always")."""
    from lossctl.io import sources

    real, real_numbers = sources._null_free, sources._numbers_only
    used = []

    def check(tbl, tokens):
        ok = real(tbl, tokens) if fast else False
        used.append(ok)
        return ok
    monkeypatch.setattr(sources, "_null_free", check)
    if fast == "always":
        monkeypatch.setattr(sources, "_numbers_only", lambda *a: True)
    src = sources.open_source(str(path))
    try:
        batches = list(src._csv_ranges(columns, types, [str(path)], chunk_bytes=48))
    except lossctl.errors.InputError as exc:
        return ("error", str(exc)), used
    finally:
        monkeypatch.setattr(sources, "_null_free", real)
        monkeypatch.setattr(sources, "_numbers_only", real_numbers)
    cols = {c: [] for c in columns}
    for b in batches:
        for i, c in enumerate(columns):
            cols[c].append((str(b.column(i).type),
                            ["nan" if isinstance(v, float) and v != v else v for v in b.column(i).to_pylist()]))
    return cols, used


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(*[st.one_of(st.sampled_from(_CSV_TOKENS),
                                           st.integers(-10**6, 10**6).map(str),
                                           st.floats(allow_nan=False, width=64).map(repr))] * 3),
                     min_size=1, max_size=30))
def test_csv_ranges_without_null_spellings_give_the_default_parse(tmp_path_factory, monkeypatch, rows):
    """The range reader parses first with ``null_values=[]`` and keeps that only where the defaults give the
    same thing: types, values, nulls and error lines equal a reader that always uses pyarrow's defaults, for
    fields mixing null spellings, NaN spellings, numbers, booleans, text and quoted fields."""
    path = tmp_path_factory.mktemp("nullfree") / "t.csv"
    path.write_bytes(("a,b,c\n" + "".join(",".join(r) + "\n" for r in rows)).encode("latin-1"))  # é: not UTF-8
    for columns, types in ((["a", "b", "c"], {"a": pa.float64()}), (["b", "c"], {})):
        want, _ = _csv_range_table(path, columns, types, False, monkeypatch)
        for fast in (True, "always"):  # "always": the check itself, on text and date columns too
            got, used = _csv_range_table(path, columns, types, fast, monkeypatch)
            assert got == want


def test_csv_ranges_keep_the_fast_parse_for_plain_numbers_only(tmp_path, monkeypatch):
    """The fast parse is really kept for columns of numbers (labels inferred as integers), not tried when a
    text column is read, and given up from the first range holding a missing value or a NaN.  (pyarrow's
    path: lossctl's own parser, which comes before it for plain numbers, is off here.)"""
    import pyarrow.csv as pcsv
    monkeypatch.setenv("LOSSCTL_FASTCSV", "0")

    from lossctl.io import sources

    real = pcsv.read_csv
    calls = []

    def spy(src, read_options=None, parse_options=None, convert_options=None):
        calls.append("fast" if convert_options.null_values == [] else "default")
        return real(src, read_options=read_options, parse_options=parse_options, convert_options=convert_options)
    monkeypatch.setattr(pcsv, "read_csv", spy)

    def ranges(path, columns, types):
        src = sources.open_source(str(path))
        src.schema()  # (a small file's schema comes from a parse of its own)
        calls.clear()
        return [b for b in src._csv_ranges(columns, types, [str(path)], chunk_bytes=512)]

    plain = tmp_path / "plain.csv"
    plain.write_text("id,y,p\n" + "".join(f"r{i},{i % 2},{i / 7!r}\n" for i in range(200)))
    ranges(plain, ["y", "p"], {"p": pa.float64()})
    assert len(calls) > 3 and set(calls) == {"fast"}
    ranges(plain, ["id", "y", "p"], {"p": pa.float64()})  # a text column: not worth checking, defaults at once
    assert len(calls) > 3 and set(calls) == {"default"}
    for k, bad in enumerate(("", "NaN", "nan", "NA")):
        f = tmp_path / f"bad{k}.csv"
        f.write_text("y,p\n" + "".join(f"{i % 2},{bad if i == 100 else repr(i / 7)}\n" for i in range(200)))
        batches = ranges(f, ["y", "p"], {"p": pa.float64()})
        # fast up to the range holding row 100, which is parsed again with the defaults, as are the ranges
        # after it (a file with missing values is not parsed twice over)
        first = calls.index("default")
        assert set(calls[:first]) == {"fast"} and set(calls[first:]) == {"default"}
        assert first > 3 and len(calls) == len(batches) + 1 and len(calls) - first > 2
        p = [v for b in batches for v in b.column(1).to_pylist()]
        assert p[100] is None and p[99] == 99 / 7 and p[199] == 199 / 7 and len(p) == 200


# -- CSV byte ranges from a map, from memory and from a stream ------------------------------------------
_LINE = st.text(alphabet="ab,1.\r\"", max_size=12)


def _ranges_of(kind: str, data: bytes, chunk: int) -> list[bytes]:
    from lossctl.io import sources

    if kind == "stream":
        return [buf.to_pybytes() for buf, _ in sources._stream_ranges(pa.BufferReader(data), chunk)]
    whole = pa.py_buffer(data)
    got = [(buf.to_pybytes(), span) for buf, span in sources._split_ranges(
        len(data), chunk, lambda p, e: whole.slice(p, e - p), lambda p, n: data[p: p + n], spans=True)]
    for b, (p, e) in got:
        assert data[p:e] == b
    return [b for b, _ in got]


@pytest.mark.parametrize("kind", ["stream", "split"])
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(header=_LINE, lines=st.lists(_LINE, max_size=12), end=st.sampled_from([b"", b"\n", b"\r\n"]),
       chunk=st.sampled_from([1, 2, 3, 7, 16, 64, 1 << 20]))
def test_byte_ranges_cover_the_lines_after_the_header_and_end_at_line_ends(kind, header, lines, end, chunk):
    """The ranges a CSV is parsed in, from a stream (compressed files, remote files) or with random access
    (a map, bytes in memory): together exactly the bytes after the header line, none empty, each but the
    last ending at a line end, and each holding whole lines (lines longer than a range included)."""
    data = "\n".join([header] + lines).encode() + (end if lines else b"")
    ranges = _ranges_of(kind, data, chunk)
    nl = data.find(b"\n")
    assert b"".join(ranges) == (data[nl + 1:] if nl >= 0 else b"")
    assert all(ranges)
    assert all(r.endswith(b"\n") for r in ranges[:-1])
    if chunk == 1 << 20 and ranges:
        assert len(ranges) == 1


@pytest.mark.parametrize("how", ["gzip", "bz2", "zstd", "stdin", "stdin-gzip", "plain"])
def test_compressed_and_piped_csv_parsed_in_ranges_give_the_file_values_and_error_rows(tmp_path, monkeypatch,
                                                                                       how):
    """A compressed CSV, or one on standard input, is parsed in ranges like a local file (it was read by
    pyarrow's single-threaded streaming reader): the same value, and an error in a later range names the
    same row and column (a column after one not read: pyarrow numbers the file's columns)."""
    import gzip

    from click.testing import CliRunner

    from lossctl.cli import cli
    from lossctl.io import sources

    monkeypatch.setattr(sources, "_CSV_RANGE_BYTES", 64 << 10)  # ~80 ranges
    rng = np.random.default_rng(11)
    n = 110_000  # over 4 MiB: not the whole-file reader of small files
    y = [float(v) for v in rng.normal(size=n)]
    rows = [f"r{i},{a!r},{a * 0.5 + 0.25!r}" for i, a in enumerate(y)]
    text = "id,y_true,y_pred\n" + "\n".join(rows) + "\n"
    bad_row = n - 122  # 1-based data row, in the last ranges
    rows[bad_row - 1] = rows[bad_row - 1].rsplit(",", 1)[0] + ",oops"
    bad = "id,y_true,y_pred\n" + "\n".join(rows) + "\n"
    d = np.array(y) - (np.array(y) * 0.5 + 0.25)
    want = float(np.mean(d * d))

    def run(content: str, name: str):
        raw = content.encode()
        if how.startswith("stdin"):
            return CliRunner().invoke(cli, ["eval", "-", "-l", "mse", "--value"],
                                      input=gzip.compress(raw) if how == "stdin-gzip" else raw)
        path = tmp_path / (name + {"gzip": ".csv.gz", "bz2": ".csv.bz2", "zstd": ".csv.zst", "plain": ".csv"}[how])
        if how == "plain":
            path.write_bytes(raw)
        else:
            with pa.CompressedOutputStream(str(path), how) as out:
                out.write(raw)
        return CliRunner().invoke(cli, ["eval", str(path), "-l", "mse", "--value"])

    ok = run(text, "good")
    assert ok.exit_code == 0, ok.output
    assert float(ok.output) == pytest.approx(want, rel=1e-12)
    err = run(bad, "bad")
    assert err.exit_code == 3, err.output
    assert f"row {bad_row}" in err.output and "'y_pred'" in err.output and "oops" in err.output, err.output
    assert err.output.count("\n") == 1


@pytest.mark.parametrize("how", ["file", "gzip", "stdin"])
def test_json_lines_parsed_in_ranges_give_the_parquet_values_and_error_rows(tmp_path, monkeypatch, how):
    """JSON Lines are parsed in ranges (the streaming reader was single-threaded): values equal the same rows
    read from Parquet, only the columns read are parsed past the first block (a column that is not read
    and changes type later is no error), and an error in a later range names its row counted from the
    start of the file."""
    import gzip
    import json

    from click.testing import CliRunner

    from lossctl.cli import cli
    from lossctl.io import sources

    monkeypatch.setattr(sources, "_CSV_RANGE_BYTES", 64 << 10)
    rng = np.random.default_rng(21)
    n = 60_000
    y = rng.random(n)
    p = np.clip(y * 0.8 + rng.random(n) * 0.2, 0.001, 0.999)
    labels = (y > 0.5).astype(int)
    rows = [{"id": f"r{i}", "note": (i if i < 20_000 else "text"), "y_true": int(labels[i]), "p": float(p[i]),
             "cls": ["neg", "pos"][labels[i]]} for i in range(n)]
    pq.write_table(pa.table({"y_true": labels, "p": p, "cls": [r["cls"] for r in rows]}), tmp_path / "same.parquet")

    def run(lines: list, name: str, *args):
        raw = "".join(json.dumps(r) + "\n" for r in lines).encode()
        if how == "stdin":
            return CliRunner().invoke(cli, ["eval", "-", "--input-format", "jsonl", *args], input=raw)
        path = tmp_path / (name + (".jsonl.gz" if how == "gzip" else ".jsonl"))
        path.write_bytes(gzip.compress(raw) if how == "gzip" else raw)
        return CliRunner().invoke(cli, ["eval", str(path), *args])

    for args in (["-l", "log_loss,brier", "--pred", "p", "--target", "y_true"],
                 ["-l", "log_loss", "--pred", "p", "--target", "cls", "--classes", "neg,pos"]):
        got = run(rows, "good", *args, "--value")
        want = CliRunner().invoke(cli, ["eval", str(tmp_path / "same.parquet"), *args, "--value"])
        assert got.exit_code == 0 and want.exit_code == 0, (got.output, want.output)
        assert [float(v) for v in got.output.split()] == pytest.approx([float(v) for v in want.output.split()],
                                                                          rel=1e-12)
    bad_row = n - 77  # 1-based
    rows[bad_row - 1] = dict(rows[bad_row - 1], p="high")
    err = run(rows, "bad", "-l", "log_loss", "--pred", "p", "--target", "y_true")
    assert err.exit_code == 3, err.output
    assert f"row {bad_row}" in err.output and "'p'" in err.output, err.output
    assert err.output.count("\n") == 1


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_dataset_of_text_files_is_one_pipeline_of_ranges_with_errors_located_per_file(tmp_path, monkeypatch,
                                                                                        fmt):
    """The files of a CSV / JSON Lines dataset go through one pipeline of byte ranges: the values are those
    of the rows in one file, an error names its file and its row in that file, and a CSV file whose header
    differs from the first file's (read from its header line alone) is refused, naming it; the same names
    quoted are the same header."""
    import json

    from click.testing import CliRunner

    from lossctl.cli import cli
    from lossctl.io import sources

    monkeypatch.setattr(sources, "_CSV_RANGE_BYTES", 16 << 10)
    rng = np.random.default_rng(8)
    sizes = [30_000, 25_000, 35_000]
    data = [(rng.normal(size=k), rng.normal(size=k)) for k in sizes]

    def lines(t, p, bad_at=None):
        if fmt == "csv":
            out = [f"{a!r},{b!r}" for a, b in zip(t.tolist(), p.tolist())]
            if bad_at:
                out[bad_at - 1] = out[bad_at - 1].split(",")[0] + ",x1"
            return out
        out = [json.dumps({"y_true": a, "y_pred": b}) for a, b in zip(t.tolist(), p.tolist())]
        if bad_at:
            out[bad_at - 1] = json.dumps({"y_true": 1.0, "y_pred": [1]})
        return out

    def write_all(d, bad=None, header2="y_true,y_pred"):
        d.mkdir()
        for k, (t, p) in enumerate(data):
            rows = lines(t, p, bad[1] if bad and bad[0] == k else None)
            head = ([header2 if k == 2 else "y_true,y_pred"] if fmt == "csv" else [])
            (d / f"part-{k}.{fmt}").write_text("\n".join(head + rows) + "\n")

    def run(d):
        return CliRunner().invoke(cli, ["eval", str(d), "-l", "mse,mae", "--value"])

    t = np.concatenate([a for a, _ in data])
    p = np.concatenate([b for _, b in data])
    good = tmp_path / "good"
    write_all(good, header2='"y_true","y_pred"' if fmt == "csv" else "")
    res = run(good)
    assert res.exit_code == 0, res.output
    assert [float(v) for v in res.output.split()] == pytest.approx(
        [float(np.mean((p - t) ** 2)), float(np.mean(np.abs(p - t)))], rel=1e-12)
    bad = tmp_path / "bad"
    write_all(bad, bad=(1, 20_001))
    res = run(bad)
    assert res.exit_code == 3 and res.output.count("\n") == 1, res.output
    assert str(bad / f"part-1.{fmt}") in res.output and "row 20001" in res.output, res.output
    if fmt == "csv":
        other = tmp_path / "other"
        write_all(other, header2="y_pred,y_true")
        res = run(other)
        assert res.exit_code == 3 and str(other / "part-2.csv") in res.output and "share one header" in res.output


# -- a long pipe is spooled to a temporary file and mapped ----------------------------------------------
@pytest.mark.parametrize("kind", ["csv", "csv.gz", "jsonl", "parquet"])
def test_a_pipe_longer_than_the_spool_limit_gives_the_values_of_the_file(tmp_path, monkeypatch, kind):
    """Standard input past _SPOOL_AFTER bytes goes to a temporary file that is mapped read-only (bytes-like,
    so every reader works on it unchanged): the same values as the file itself, for text, compressed and
    Parquet input."""
    import gzip
    import json

    from click.testing import CliRunner

    from lossctl.cli import cli
    from lossctl.io import sources

    monkeypatch.setattr(sources, "_SPOOL_AFTER", 64 << 10)
    monkeypatch.setattr(sources, "_CSV_RANGE_BYTES", 32 << 10)
    rng = np.random.default_rng(5)
    n = 40_000
    t, p = rng.normal(size=n), rng.normal(size=n)
    path = tmp_path / f"x.{kind}"
    if kind == "parquet":
        pq.write_table(pa.table({"y_true": t, "y_pred": p}), path, row_group_size=7_000)
    elif kind == "jsonl":
        path.write_text("".join(json.dumps({"y_true": a, "y_pred": b}) + "\n" for a, b in zip(t.tolist(), p.tolist())))
    else:
        text = "y_true,y_pred\n" + "".join(f"{a!r},{b!r}\n" for a, b in zip(t.tolist(), p.tolist()))
        path.write_bytes(gzip.compress(text.encode()) if kind == "csv.gz" else text.encode())
    raw = path.read_bytes()
    assert len(raw) > sources._SPOOL_AFTER
    fmt = {"csv.gz": "csv"}.get(kind, kind)
    piped = CliRunner().invoke(cli, ["eval", "-", "--input-format", fmt, "-l", "mse,mae", "--value"], input=raw)
    direct = CliRunner().invoke(cli, ["eval", str(path), "-l", "mse,mae", "--value"])
    assert piped.exit_code == 0 and direct.exit_code == 0, (piped.output, direct.output)
    assert [float(v) for v in piped.output.split()] == pytest.approx([float(v) for v in direct.output.split()],
                                                                       rel=1e-12)
    monkeypatch.setattr(sys, "stdin", type("In", (), {"buffer": __import__("io").BytesIO(raw)})())
    import mmap
    assert isinstance(sources.open_source("-", fmt).data, mmap.mmap)


def test_a_pipe_that_cannot_be_spooled_is_one_input_error(monkeypatch):
    """No room for the temporary file: one line naming the input, the reason and the ways out, exit 3."""
    import tempfile

    from click.testing import CliRunner

    from lossctl.cli import cli
    from lossctl.io import sources

    monkeypatch.setattr(sources, "_SPOOL_AFTER", 1 << 10)

    def full(*a, **k):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(tempfile, "TemporaryFile", full)
    res = CliRunner().invoke(cli, ["eval", "-", "-l", "mse"], input=b"y_true,y_pred\n" + b"1.5,2.5\n" * 1000)
    assert res.exit_code == 3 and res.output.count("\n") == 1, res.output
    assert "<stdin>" in res.output and "No space left on device" in res.output and "TMPDIR" in res.output


_RSS_PROBE = r"""
import sys
from lossctl.io import sources
sources._SPOOL_AFTER = int(sys.argv[1])
sources._CSV_RANGE_BYTES = int(sys.argv[2])  # (small ranges: the plateau is reached well inside 15 MB)
from lossctl.cli import main
try:
    main(["eval", "-", "-l", "mse", "--value"])
finally:
    # this process's peak RSS (VmHWM: ru_maxrss would count the parent's pages copied by fork before exec)
    with open("/proc/self/status") as f:
        print([line.split()[1] for line in f if line.startswith("VmHWM:")][0], file=sys.stderr)
"""


@pytest.mark.parametrize("kind", ["csv", "arrow", "parquet"])
def test_a_spooled_pipe_keeps_peak_memory_flat_in_the_input_size(tmp_path, kind):
    """Through standard input, spooled and mapped with the pages handed back as the input is parsed (CSV:
    each range; Arrow IPC and Parquet: after each batch), peak RSS hardly grows with the input: ~60 MB
    against a quarter of it (subprocesses: VmHWM, Linux).  Measured: +12 / +1 / +3 MB for CSV / Arrow /
    Parquet; without the pages handed back +57 / +44 / +50 MB."""
    import subprocess

    if not os.path.exists("/proc/self/status"):
        pytest.skip("peak RSS read from /proc/self/status (Linux)")
    rng = np.random.default_rng(2)

    def encoded(n: int) -> tuple[bytes, float]:
        y = rng.normal(size=n)
        ref = float(np.mean((y * 0.5 - y) ** 2))
        if kind == "csv":
            return ("y_true,y_pred\n" + "".join(f"{a!r},{a * 0.5!r}\n" for a in y.tolist())).encode(), ref
        tbl = pa.table({"y_true": y, "y_pred": y * 0.5})
        sink = pa.BufferOutputStream()
        if kind == "arrow":
            with pa.ipc.new_stream(sink, tbl.schema) as w:
                w.write_table(tbl, max_chunksize=65_536)
        else:
            pq.write_table(tbl, sink, row_group_size=200_000)
        return sink.getvalue().to_pybytes(), ref

    n = 1_500_000 if kind == "csv" else 3_800_000
    peaks = []
    for rows in (n // 4, n):
        data, ref = encoded(rows)
        proc = subprocess.run([sys.executable, "-c", _RSS_PROBE, str(1 << 20), str(4 << 20)], input=data, capture_output=True,
                              cwd=str(Path(__file__).resolve().parents[1]), timeout=300)
        assert proc.returncode == 0, proc.stderr[-500:]
        assert float(proc.stdout) == pytest.approx(ref, rel=1e-12)
        peaks.append(int(proc.stderr.decode().split()[-1]) / 1024)  # kB -> MB
    assert len(data) > 55 << 20
    assert peaks[1] - peaks[0] < 20, peaks


# -- datasets of many small files -----------------------------------------------------------------------
def test_coalesced_joins_small_batches_in_order_and_passes_the_others():
    """Small batches are joined up to max_rows, in order; a batch of half max_rows or more, or one with a
    dictionary column, passes as it is; the rows are those given, whatever the mix."""
    from lossctl.io.sources import _coalesced

    rng = np.random.default_rng(9)
    sizes = [3, 5, 40, 2, 2, 2, 100, 1, 30, 31, 9]
    batches, start = [], 0
    for k, n in enumerate(sizes):
        col = pa.array(np.arange(start, start + n, dtype=np.float64))
        other = pa.array(rng.integers(0, 3, n)).dictionary_encode() if k == 8 else pa.array(rng.integers(0, 3, n))
        batches.append(pa.RecordBatch.from_arrays([col, other], names=["x", "k"]))
        start += n
    out = list(_coalesced(iter(batches), 64))
    got = [v for b in out for v in b.column(0).to_pylist()]
    assert got == [float(i) for i in range(sum(sizes))]
    # 3+5 | 40 (half or more) | 2+2+2 | 100 | 1 | 30 (dictionary) | 31+9
    assert [b.num_rows for b in out] == [8, 40, 6, 100, 1, 30, 40]


def test_a_dataset_of_small_parquet_files_is_read_in_fewer_batches_with_each_footer_parsed_once(tmp_path,
                                                                                                monkeypatch):
    """300 files of 97 rows: the values of the rows in one file at any batch size, the files' rows joined
    into batches of up to the batch size, and each file's footer parsed once (by the schema check; the
    read reuses it)."""
    from lossctl.io import sources

    rng = np.random.default_rng(17)
    n_files, rows = 300, 97
    t, p, w = rng.normal(size=n_files * rows), rng.normal(size=n_files * rows), rng.uniform(0.5, 2, n_files * rows)
    d = tmp_path / "parts"
    d.mkdir()
    for i in range(n_files):
        s = slice(i * rows, (i + 1) * rows)
        pq.write_table(pa.table({"y_true": t[s], "y_pred": p[s], "w": w[s]}), d / f"part-{i:04d}.parquet")
    opened = []
    real = sources._LocalParquet.open.__func__

    def spy(cls, path, pre_buffer=True, buffer_size=0, metadata=None):
        opened.append(metadata is None)
        return real(cls, path, pre_buffer, buffer_size, metadata)
    monkeypatch.setattr(sources._LocalParquet, "open", classmethod(spy))
    src = sources.open_source(str(d))
    src.schema()
    parses = sum(opened)
    batches = list(src.batches(["y_true", "y_pred"], 1000))
    assert parses == n_files and sum(opened) == n_files  # no footer parsed twice
    assert [b.num_rows for b in batches] == [970] * 30
    assert np.array_equal(np.concatenate([b.column(0).to_numpy() for b in batches]), t)
    for batch in (1, 500, 65536):
        res = api.evaluate(str(d), ["mse", "mae"], weight="w", batch_rows=batch)
        assert res.value("mse") == pytest.approx(float(np.sum(w * (p - t) ** 2) / np.sum(w)), rel=1e-12)
        assert res.value("mae") == pytest.approx(float(np.sum(w * np.abs(p - t)) / np.sum(w)), rel=1e-12)
