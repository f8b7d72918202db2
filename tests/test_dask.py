"""The Dask engine: a distributed run gives the local engine's numbers, rows, errors and exit codes.

One real ``distributed.LocalCluster`` (two worker processes on 127.0.0.1, dashboard on a free loopback
port) serves the whole module and is closed by handle at the end.  Every equality test runs the same
plan through the local engine and through the cluster and compares every result row (overall and per
group) to 1e-12 relative.  The data are generated here from fixed seeds and split into several files
(or row groups) so that each run really is cut into fragments that different workers evaluate.
"""
from __future__ import annotations

import logging
import math
import os
import signal
import threading

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

import distributed  # noqa: E402  (the test extra installs it: missing, the suite fails rather than skips)

from conftest import invoke, run_err  # noqa: E402

from lossctl import api  # noqa: E402
from lossctl import dask_engine  # noqa: E402
from lossctl.errors import InputError, UsageError  # noqa: E402

SIZES = (37, 50, 23, 41)          # rows per file: unequal on purpose
REL = 1e-12


# -- the cluster ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, host="127.0.0.1",
                                       dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR)
    c = distributed.Client(cluster, set_as_default=False)
    try:
        yield c
    finally:
        c.close()
        cluster.close()


# -- data -------------------------------------------------------------------------------------------
def _rng(seed):
    return np.random.default_rng(seed)


def _common(rng, n):
    return {"id": np.arange(1, n + 1, dtype=np.int64),
            "region": np.array(["east", "north", "west"])[rng.integers(0, 3, n)],
            "seg": rng.integers(0, 2, n).astype(np.int64),
            "w": rng.uniform(0.2, 3.0, n)}


def regression_table(n=sum(SIZES), seed=1):
    rng = _rng(seed)
    y = rng.normal(3.0, 2.0, n)
    return pa.table({**_common(rng, n), "pred": y + rng.normal(0, 1.0, n), "target": y})


def binary_table(n=sum(SIZES), seed=2):
    rng = _rng(seed)
    logit = rng.normal(0, 2.0, n)
    label = (rng.uniform(size=n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    return pa.table({**_common(rng, n), "logit": logit, "prob": 1 / (1 + np.exp(-logit)), "label": label,
                     "answer": np.where(label == 1, "yes", "no")})


def multiclass_table(n=sum(SIZES), seed=3):
    rng = _rng(seed)
    logits = rng.normal(0, 1.5, (n, 3))
    label = rng.integers(0, 3, n)
    cols = {f"logit_{k}": logits[:, k] for k in range(3)}
    return pa.table({**_common(rng, n), **cols, "label": label.astype(np.int64),
                     "species": np.array(["ant", "bee", "cat"])[label]})


def _list_col(m, typ=pa.float64()):
    return pa.array(list(m), type=pa.list_(typ))


def mask_table(n=sum(SIZES), seed=4, pixels=16):
    rng = _rng(seed)
    mask = (rng.uniform(size=(n, pixels)) < 0.3).astype(np.int8)
    prob = np.clip(mask * 0.7 + rng.uniform(0, 0.3, (n, pixels)), 0, 1)
    return pa.table({**_common(rng, n), "prob_mask": _list_col(prob), "mask": _list_col(mask, pa.int8())})


def box_table(n=sum(SIZES), seed=5):
    rng = _rng(seed)
    x1, y1 = rng.uniform(0, 100, n), rng.uniform(0, 100, n)
    w, h = rng.uniform(5, 40, n), rng.uniform(5, 40, n)
    dx, dy = rng.normal(0, 6, (2, n))
    return pa.table({**_common(rng, n), "px1": x1 + dx, "py1": y1 + dy, "px2": x1 + dx + w * rng.uniform(0.7, 1.3, n),
                     "py2": y1 + dy + h * rng.uniform(0.7, 1.3, n), "x1": x1, "y1": y1, "x2": x1 + w, "y2": y1 + h})


def embedding_table(n=sum(SIZES), seed=6, dim=8):
    rng = _rng(seed)
    zi = rng.normal(size=(n, dim))
    zj = zi + rng.normal(0, 0.8, (n, dim))
    neg = rng.normal(size=(n, dim))
    return pa.table({**_common(rng, n), "z_i": _list_col(zi), "z_j": _list_col(zj), "z_n": _list_col(neg),
                     "y": np.where(rng.uniform(size=n) < 0.6, 1, -1).astype(np.int64)})


def write_parts(tbl: pa.Table, root, sizes=SIZES, fmt="parquet") -> str:
    root.mkdir(parents=True, exist_ok=True)
    assert sum(sizes) == tbl.num_rows
    start = 0
    for i, k in enumerate(sizes):
        part = tbl.slice(start, k)
        if fmt == "parquet":
            pq.write_table(part, root / f"part-{i}.parquet")
        else:
            pcsv.write_csv(part, root / f"part-{i}.csv")
        start += k
    return str(root)


def write_row_groups(tbl: pa.Table, path, size=17) -> str:
    pq.write_table(tbl, path, row_group_size=size)
    assert pq.ParquetFile(path).metadata.num_row_groups > 2
    return str(path)


# -- comparing -----------------------------------------------------------------------------------------
def both(client, path, losses, dask_opts=None, **opts):
    """(local result, Dask result) of the same evaluation."""
    local = api.evaluate(path, losses, **opts)
    dist = api.evaluate(path, losses, engine="dask", engine_options={"client": client, **(dask_opts or {})},
                        **opts)
    return local, dist


def assert_same(local, dist, groups=None, inputs=True):
    assert dist.extra["engine"]["name"] == "dask" and dist.extra["engine"]["fragments"] > 1
    assert len(local.results) == len(dist.results)
    if groups is not None:
        assert {tuple(sorted(r.group.items())) for r in local.results if r.group} == groups
    for a, b in zip(local.results, dist.results):
        assert (a.label, a.group, a.count, a.reduction) == (b.label, b.group, b.count, b.reduction)
        assert math.isfinite(a.value), a
        assert b.value == pytest.approx(a.value, rel=REL, abs=0), (a.label, a.group)
        assert b.weight_sum == pytest.approx(a.weight_sum, rel=REL, abs=0)
    assert local.rows_total == dist.rows_total
    if inputs:
        assert local.inputs == dist.inputs


def _groups(tbl, *names):
    return {tuple(sorted(zip(names, vals))) for vals in zip(*(tbl.column(n).to_pylist() for n in names))}


# -- equality for every kind of loss ----------------------------------------------------------------
def test_regression_weighted_by_two_columns(client, tmp_path):
    tbl = regression_table()
    d = write_parts(tbl, tmp_path / "reg")
    local, dist = both(client, d, ["mse", "mae", "huber:delta=0.5", "rmse", "quantile:alpha=0.9", "smape"],
                       weight="w", by=["region", "seg"])
    assert_same(local, dist, _groups(tbl, "region", "seg"))
    assert dist.extra["engine"]["fragments"] == len(SIZES)


def test_regression_csv_parts(client, tmp_path):
    d = write_parts(regression_table(seed=11), tmp_path / "csv", fmt="csv")
    local, dist = both(client, d, ["mse", "mae"], by="region")
    assert_same(local, dist)


def test_regression_row_groups_of_one_file(client, tmp_path):
    tbl = regression_table(seed=12)
    f = write_row_groups(tbl, tmp_path / "one.parquet")
    local, dist = both(client, f, ["mse", "log_cosh"], dask_opts={"split_row_groups": True}, weight="w", by="seg")
    assert_same(local, dist)
    assert dist.extra["engine"]["fragments"] == pq.ParquetFile(f).metadata.num_row_groups


def test_binary(client, tmp_path):
    tbl = binary_table()
    d = write_parts(tbl, tmp_path / "bin")
    local, dist = both(client, d, ["log_loss", "brier", "focal"], pred="prob", target="label", weight="w",
                       by="region")
    assert_same(local, dist, _groups(tbl, "region"))
    local, dist = both(client, d, ["bce_with_logits", "hinge", "zero_one"], pred="logit", target="label",
                       space="logits", by="seg")
    assert_same(local, dist)


def test_binary_string_labels_class_order(client, tmp_path):
    d = write_parts(binary_table(seed=21), tmp_path / "bins")
    local, dist = both(client, d, ["log_loss"], pred="prob", target="answer")
    assert_same(local, dist)
    assert local.extra["classes"] == dist.extra["classes"] == ["no", "yes"]


def test_multiclass(client, tmp_path):
    tbl = multiclass_table()
    d = write_parts(tbl, tmp_path / "mc")
    local, dist = both(client, d, ["cross_entropy", "softmax_focal:space=logits", "multi_margin"],
                       pred="logit_*", target="label", weight="w", by=["region", "seg"])
    assert_same(local, dist, _groups(tbl, "region", "seg"))


def test_multiclass_string_labels_first_file_lacks_a_class(client, tmp_path):
    """The class order comes from the whole input: the first fragment alone does not hold every class."""
    tbl = multiclass_table(seed=31)
    order = np.argsort(np.array(tbl.column("species").to_pylist()) == "ant", kind="stable")  # 'ant' rows last
    tbl = tbl.take(pa.array(order))
    d = write_parts(tbl, tmp_path / "mcs")
    assert "ant" not in pq.read_table(os.path.join(d, "part-0.parquet")).column("species").to_pylist()
    local, dist = both(client, d, ["cross_entropy"], pred="logit_*", target="species")
    # the local engine's own inputs[0]["rows"] counts the rows of its label scan too (a local-engine issue)
    assert_same(local, dist, inputs=False)
    assert dist.inputs[0]["rows"] == tbl.num_rows
    assert local.extra["classes"] == dist.extra["classes"] == ["ant", "bee", "cat"]
    given = api.evaluate(d, ["cross_entropy"], pred="logit_*", target="species", classes=["ant", "bee", "cat"])
    assert dist.value() == pytest.approx(given.value(), rel=REL, abs=0)


def test_mask_ratio_losses(client, tmp_path):
    """Dice / IoU / Tversky are ratios of sums over all rows: the merged sums give the local ratio."""
    tbl = mask_table()
    d = write_parts(tbl, tmp_path / "mask")
    local, dist = both(client, d, ["dice", "iou", "tversky:alpha=0.3,beta=0.7", "dice:average=sample"],
                       pred="prob_mask", target="mask", weight="w", by="region")
    assert_same(local, dist, _groups(tbl, "region"))


def test_box_losses(client, tmp_path):
    d = write_parts(box_table(), tmp_path / "box")
    local, dist = both(client, d, ["box_iou", "giou", "diou", "ciou"], pred="px1,py1,px2,py2",
                       target="x1,y1,x2,y2", weight="w", by="seg")
    assert_same(local, dist)


def test_embedding_losses(client, tmp_path):
    d = write_parts(embedding_table(), tmp_path / "emb")
    local, dist = both(client, d, ["cosine_embedding:margin=0.2"], pred="z_i", target="z_j",
                       columns={"label": "y"}, weight="w", by="region")
    assert_same(local, dist)
    local, dist = both(client, d, ["triplet:margin=1"], pred="z_j", target="z_n", columns={"anchor": "z_i"},
                       by="seg")
    assert_same(local, dist)


def test_nt_xent_blocks_on_workers(client, tmp_path):
    """Files of whole blocks: each worker forms the same blocks the local engine forms."""
    sizes = (16, 24, 8, 13)
    tbl = embedding_table(n=sum(sizes), seed=7)
    d = write_parts(tbl, tmp_path / "ntx", sizes)
    local, dist = both(client, d, ["nt_xent:temperature=0.5,block_size=8"], pred="z_i", target="z_j",
                       weight="w", by="region")
    assert_same(local, dist)
    assert dist.extra["engine"]["fragments"] == 4


def test_nt_xent_blocks_straddling_files_run_locally(client, tmp_path, capfd):
    sizes = (12, 20)
    d = write_parts(embedding_table(n=32, seed=8), tmp_path / "ntx2", sizes)
    local = api.evaluate(d, ["nt_xent:block_size=8"], pred="z_i", target="z_j")
    dist = api.evaluate(d, ["nt_xent:block_size=8"], pred="z_i", target="z_j", engine="dask",
                        engine_options={"client": client})
    assert "evaluating locally" in capfd.readouterr().err
    assert "engine" not in dist.extra
    assert dist.value() == pytest.approx(local.value(), rel=REL, abs=0)


def test_join_on_key(client, tmp_path):
    """Predictions in parts, labels in one file joined with --on: the labels travel once to the workers."""
    tbl = regression_table(seed=41)
    d = write_parts(tbl.select(["id", "pred", "region"]), tmp_path / "preds")
    perm = _rng(0).permutation(tbl.num_rows)
    labels = tmp_path / "labels.parquet"
    pq.write_table(tbl.select(["id", "target", "w"]).take(pa.array(perm)), labels)
    local, dist = both(client, [d, str(labels)], ["mse", "mae"], on="id", weight="w", by="region")
    assert_same(local, dist)


def test_join_unmatched_keys_error_like_local(client, tmp_path):
    tbl = regression_table(seed=42)
    d = write_parts(tbl.select(["id", "pred"]), tmp_path / "preds")
    labels = tmp_path / "labels.parquet"
    pq.write_table(tbl.select(["id", "target"]).slice(0, tbl.num_rows - 3), labels)
    msgs = []
    for kw in ({}, {"engine": "dask", "engine_options": {"client": client}}):
        with pytest.raises(InputError) as ei:
            api.evaluate([d, str(labels)], ["mse"], on="id", **kw)
        msgs.append(ei.value.message)
    assert msgs[0] == msgs[1]
    assert "3 key(s)" in msgs[0]


# -- per-sample output ----------------------------------------------------------------------------------
def test_per_sample_file_equals_local(client, tmp_path):
    tbl = regression_table(seed=51)
    d = write_parts(tbl, tmp_path / "reg")
    out_l, out_d = tmp_path / "local.parquet", tmp_path / "dask.parquet"
    local, dist = both(client, d, ["mse", "mae"], reduction="none", by="region")
    api.evaluate(d, ["mse", "mae"], reduction="none", output=str(out_l))
    res = api.evaluate(d, ["mse", "mae"], reduction="none", output=str(out_d), engine="dask",
                       engine_options={"client": client})
    assert res.extra["engine"]["fragments"] == len(SIZES)
    a, b = pq.read_table(out_l), pq.read_table(out_d)
    assert a.num_rows == b.num_rows == tbl.num_rows
    assert a.schema == b.schema
    assert b.column("row").to_pylist() == list(range(1, tbl.num_rows + 1))
    np.testing.assert_allclose(b.column("mse").to_numpy(), a.column("mse").to_numpy(), rtol=REL, atol=0)
    np.testing.assert_allclose(b.column("mse").to_numpy(),
                               (tbl.column("pred").to_numpy() - tbl.column("target").to_numpy()) ** 2,
                               rtol=1e-15, atol=0)
    assert dist.rows == local.rows  # the first --limit rows shown


def test_per_sample_row_groups_and_omitted_rows(client, tmp_path):
    """Row numbers stay global when fragments are row groups and --nan-policy omit drops rows."""
    tbl = regression_table(seed=52)
    pred = tbl.column("pred").to_numpy().copy()
    pred[[3, 20, 40, 99]] = np.nan
    tbl = tbl.set_column(tbl.schema.get_field_index("pred"), "pred", pa.array(pred))
    f = write_row_groups(tbl, tmp_path / "one.parquet", size=13)
    out_l, out_d = tmp_path / "l.csv", tmp_path / "d.csv"
    api.evaluate(f, ["mae"], reduction="none", nan_policy="omit", output=str(out_l))
    res = api.evaluate(f, ["mae"], reduction="none", nan_policy="omit", output=str(out_d), engine="dask",
                       engine_options={"client": client, "split_row_groups": True})
    assert res.extra["engine"]["fragments"] > 2 and res.extra["omitted_rows"] == 4
    assert out_d.read_text() == out_l.read_text()
    rows = pcsv.read_csv(out_d).column("row").to_pylist()
    assert [r for r in range(1, tbl.num_rows + 1) if r not in rows] == [4, 21, 41, 100]


def test_cli_streams_rows_and_writes_file(client, tmp_path):
    d = write_parts(binary_table(seed=53), tmp_path / "bin")
    addr = client.scheduler.address
    args = ["eval", d, "-l", "log_loss", "--pred", "prob", "--target", "label", "-r", "none", "--format", "csv",
            "--id", "id", "-q"]
    a = invoke(args)
    b = invoke(args + ["--scheduler", addr])
    assert a.exit_code == b.exit_code == 0, (b.stdout, b.stderr)
    assert a.stdout == b.stdout and a.stdout.count("\n") == sum(SIZES) + 1
    out = tmp_path / "rows.jsonl"
    c = invoke(["eval", d, "-l", "brier", "--pred", "prob", "--target", "label", "-r", "none", "-o", out,
                "--scheduler", addr, "--format", "json"])
    assert c.exit_code == 0, c.stderr
    assert out.read_text().count("\n") == sum(SIZES)


def test_failing_gate_leaves_no_file(client, tmp_path):
    d = write_parts(regression_table(seed=54), tmp_path / "reg")
    out = tmp_path / "o.parquet"
    res = invoke(["eval", d, "-l", "mse", "-o", out, "--scheduler", client.scheduler.address,
                  "--by", "region", "--fail-if", "mse (region=nowhere) > 1"])
    assert res.exit_code == 2, (res.exit_code, res.stderr)
    assert not out.exists() and not list(tmp_path.glob("*.tmp*"))


# -- errors --------------------------------------------------------------------------------------------
def test_bad_data_names_the_file_exit_3(client, tmp_path):
    tbl = regression_table(seed=61)
    pred = tbl.column("pred").to_numpy().copy()
    bad_global = SIZES[0] + SIZES[1] + 6          # 0-based: row 7 of part-2
    pred[bad_global] = np.nan
    tbl = tbl.set_column(tbl.schema.get_field_index("pred"), "pred", pa.array(pred))
    d = write_parts(tbl, tmp_path / "bad")
    local = run_err(["eval", d, "-l", "mse"], 3)
    dist = run_err(["eval", d, "-l", "mse", "--scheduler", client.scheduler.address], 3)
    part = os.path.join(d, "part-2.parquet")
    assert local.startswith(f"{d}, column 'pred', row {bad_global + 1}: ")
    assert dist.startswith(f"{part}, column 'pred', row 7: ")   # the row within that file
    # the same message; the rows it counts in are numbered in the same frame as the row it names
    import re

    def norm(msg):
        return re.sub(r"\(1 in rows \d+-\d+\)", "(1 in rows ...)", msg.split(": ", 1)[1])
    assert norm(dist) == norm(local) and "(1 in rows ...)" in norm(local)
    assert "(1 in rows 1-" in dist


def test_bad_labels_on_a_worker(client, tmp_path):
    tbl = binary_table(seed=62)
    label = tbl.column("label").to_numpy().copy()
    label[SIZES[0] + 4] = 3
    tbl = tbl.set_column(tbl.schema.get_field_index("label"), "label", pa.array(label))
    d = write_parts(tbl, tmp_path / "bad")
    dist = run_err(["eval", d, "-l", "log_loss", "--pred", "prob", "--target", "label", "--scheduler",
                    client.scheduler.address], 3)
    assert dist.startswith(f"{os.path.join(d, 'part-1.parquet')}, column 'label', row 5: label 3 is not a binary")


def test_corrupt_file_on_a_worker(client, tmp_path):
    d = write_parts(regression_table(seed=63), tmp_path / "bad")
    p = os.path.join(d, "part-3.parquet")
    data = open(p, "rb").read()
    footer = int.from_bytes(data[-8:-4], "little") + 8
    with open(p, "wb") as fh:   # keep the footer (the client reads the schema), zero every data page
        fh.write(data[:4] + bytes(len(data) - 4 - footer) + data[-footer:])
    local = invoke(["eval", d, "-l", "mse"])
    res = invoke(["eval", d, "-l", "mse", "--scheduler", client.scheduler.address])
    assert local.exit_code == res.exit_code == 3, (local.stderr, res.exit_code, res.stderr)
    assert res.stderr.startswith(f"lossctl: error: {p}: ") and res.stderr.count("\n") == 1
    assert "Traceback" not in res.stderr


def test_scheduler_unreachable_exit_2(tmp_path):
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    d = write_parts(regression_table(seed=64), tmp_path / "r")
    with pytest.raises(UsageError) as ei:  # the CLI's --scheduler waits 10 s; the API's timeout is shorter here
        api.evaluate(d, ["mse"], engine="dask", engine_options={"scheduler": f"tcp://127.0.0.1:{port}",
                                                                 "timeout": 1.0})
    assert ei.value.message.startswith(f"--scheduler tcp://127.0.0.1:{port}: cannot connect")
    assert ei.value.exit_code == 2


def test_engine_flags_are_checked():
    res = invoke(["eval", "x.csv", "-l", "mse", "--scheduler", "tcp://127.0.0.1:1", "--workers", "2"])
    assert res.exit_code == 2
    res = invoke(["eval", "x.csv", "-l", "mse", "--engine", "local", "--workers", "2"])
    assert res.exit_code == 2


# -- a worker dies mid-run -----------------------------------------------------------------------------
def _slow_fragments(delay):
    """Run on each worker: make every fragment task take ``delay`` s longer (undone by restoring it)."""
    import time

    from lossctl import dask_engine as de
    if not hasattr(de, "_real_run_fragment"):
        de._real_run_fragment = de.run_fragment

    def slow(*a, **k):
        time.sleep(delay)
        return de._real_run_fragment(*a, **k)
    de.run_fragment = slow if delay else de._real_run_fragment
    return os.getpid()


def test_worker_killed_mid_run(client, tmp_path):
    """SIGKILL one worker after the first fragment is back: its fragments are re-run, the value is right."""
    sizes = tuple([15] * 12)
    tbl = regression_table(n=sum(sizes), seed=71)
    d = write_parts(tbl, tmp_path / "many", sizes)
    local = api.evaluate(d, ["mse", "mae"], by="region")
    pids = client.run(_slow_fragments, 0.3)
    victim = sorted(pids.values())[0]
    killed = threading.Event()

    def progress(rows):
        if not killed.is_set():
            killed.set()
            os.kill(victim, signal.SIGKILL)
    try:
        dist = api.evaluate(d, ["mse", "mae"], by="region", progress=progress, engine="dask",
                            engine_options={"client": client})
    finally:
        client.run(_slow_fragments, 0)
    assert killed.is_set()
    assert_same(local, dist)
    client.wait_for_workers(2, timeout=60)   # the nanny restarts it
    assert victim not in client.run(os.getpid).values()


def test_too_many_label_names_is_an_input_error_on_both_engines(client, tmp_path):
    tbl = multiclass_table(seed=81)
    species = np.array(tbl.column("species").to_pylist(), dtype=object)
    species[SIZES[0] + SIZES[1] + 2] = "dog"       # a fourth name for three score columns, in part-2
    tbl = tbl.set_column(tbl.schema.get_field_index("species"), "species", pa.array(species.astype(str)))
    d = write_parts(tbl, tmp_path / "mc4")
    local = run_err(["eval", d, "-l", "cross_entropy", "--pred", "logit_*", "--target", "species"], 3)
    dist = run_err(["eval", d, "-l", "cross_entropy", "--pred", "logit_*", "--target", "species", "--scheduler",
                    client.scheduler.address], 3)
    row = SIZES[0] + SIZES[1] + 3
    # (the small files' rows are read as one batch locally too, so the wording is the whole-batch check's)
    assert local.startswith(f"{d}, column 'species', row {row}: 4 distinct labels (ant, bee, cat, dog) but the "
                            f"scores have 3 columns; label 'dog' is one too many")
    # the fragment's first batch already holds four names, so its wording is the whole-input check's
    assert dist.startswith(f"{os.path.join(d, 'part-2.parquet')}, column 'species', row 3: 4 distinct labels "
                           f"(ant, bee, cat, dog) but the scores have 3 columns; label 'dog' is one too many")


def test_first_bad_fragment_in_input_order_is_reported(client, tmp_path):
    """Two bad files: the error is the first one in input order (as locally), though a later, smaller
    file fails first on the other worker."""
    sizes = (400_000, 10, 10)
    tbl = regression_table(n=sum(sizes), seed=82)
    pred = tbl.column("pred").to_numpy().copy()
    pred[sizes[0] - 1] = np.inf                      # part-0, last row: found late
    pred[sizes[0] + 2] = np.nan                      # part-1, row 3: found at once
    tbl = tbl.set_column(tbl.schema.get_field_index("pred"), "pred", pa.array(pred))
    d = write_parts(tbl, tmp_path / "bad2", sizes)
    msg = run_err(["eval", d, "-l", "mse", "--batch-size", "1000", "--scheduler", client.scheduler.address], 3)
    assert msg.startswith(f"{os.path.join(d, 'part-0.parquet')}, column 'pred', row {sizes[0]}: ")


def test_row_aligned_inputs_run_locally_with_a_note(client, tmp_path, capfd):
    tbl = regression_table(seed=83)
    d = write_parts(tbl.select(["pred"]), tmp_path / "p")
    labels = tmp_path / "labels.parquet"
    pq.write_table(tbl.select(["target"]), labels)
    local = api.evaluate([d, str(labels)], ["mse"])
    dist = api.evaluate([d, str(labels)], ["mse"], engine="dask", engine_options={"client": client})
    assert "two inputs aligned by row are evaluated locally" in capfd.readouterr().err
    assert dist.value() == local.value() and "engine" not in dist.extra


def _children(pid: int) -> set[int]:
    out: set[int] = set()
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
                out.update(int(x) for x in fh.read().split())
    except OSError:
        pass
    return out


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="needs Linux /proc to see worker processes")
def test_sigterm_while_the_local_cluster_starts(tmp_path):
    """SIGTERM as --workers is spawning its worker processes: exit 143, one line, no file, no workers left."""
    import subprocess
    import sys
    import time

    d = write_parts(regression_table(seed=91), tmp_path / "r")
    out = tmp_path / "rows.parquet"
    code = "import sys; from lossctl.cli import main; sys.argv[0] = 'lossctl'; main()"
    p = subprocess.Popen([sys.executable, "-c", code, "eval", d, "-l", "mse", "--workers", "2", "-r", "none",
                          "-o", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seen: set[int] = set()
    deadline = time.monotonic() + 60
    while not seen and p.poll() is None and time.monotonic() < deadline:
        seen = _children(p.pid)
        time.sleep(0.01)
    assert seen, "the cluster never started a process"
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 143, err
    assert err.decode() == "lossctl: terminated\n"
    assert not out.exists() and not list(tmp_path.glob("*rows*"))
    left = {pid: _cmdline(pid) for pid in seen if _alive(pid)}
    deadline = time.monotonic() + 30   # processes that were told to stop may take a moment to go
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = {pid: cmd for pid, cmd in left.items() if _alive(pid)}
    assert not left, left


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace")[:200]
    except OSError:
        return ""
