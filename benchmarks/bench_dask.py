#!/usr/bin/env python
"""Local engine vs the Dask engine on a multi-file Parquet dataset.

Generates a deterministic dataset (cached in benchmarks/.data/, git-ignored): FILES Parquet files of ROWS
rows each (pred, target, weight, region), then times whole ``lossctl eval`` processes:

* local            ``lossctl eval DIR -l mse,mae,huber -w weight --by region --value``
* dask --workers 2  the same with ``--engine dask --workers 2`` (starts and stops a LocalCluster: the
                    cost a one-off command pays)
* dask --scheduler  the same against a LocalCluster this script started beforehand (2 worker processes,
                    127.0.0.1): the engine's own cost on a cluster that is already running

It prints the median wall time of REPEATS runs (after one warm-up run each, which also fills the page
cache), the ratio to the local engine, and checks that every engine printed the same values (1e-12
relative).  On one machine the workers share its cores with each other and with the client, so the
ratio says what the engine costs, not what a cluster of separate machines gains.

    python benchmarks/bench_dask.py                    # 8 files x 500k rows, median of 3
    python benchmarks/bench_dask.py --quick            # 4 files x 50k rows, 1 run
    python benchmarks/bench_dask.py --files 16 --rows 1000000 --repeats 5
"""
from __future__ import annotations

import argparse
import logging
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
LOSSES = "mse,mae,huber"
REGIONS = np.array(["east", "north", "south", "west"])


def dataset(files: int, rows: int, seed: int, regenerate: bool = False) -> Path:
    """FILES Parquet files of ROWS rows under benchmarks/.data/; generated once per (files, rows, seed)."""
    root = HERE / ".data" / f"dask_{files}x{rows}_s{seed}"
    done = root / "_COMPLETE"
    if done.exists() and not regenerate:
        return root
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    for i in range(files):
        rng = np.random.default_rng([seed, i])
        y = rng.normal(0.0, 1.0, rows)
        tbl = pa.table({"pred": y + rng.normal(0.0, 0.5, rows), "target": y,
                        "weight": rng.uniform(0.5, 2.0, rows), "region": REGIONS[rng.integers(0, 4, rows)]})
        pq.write_table(tbl, root / f"part-{i:03d}.parquet", row_group_size=256 * 1024)
    done.write_text("")  # names starting with '_' are not read as data
    return root


def lossctl_argv() -> list[str]:
    exe = shutil.which("lossctl")
    real = Path(sys.executable).with_name("lossctl")
    if real.exists():  # skip the pyenv shim (~80 ms a call)
        exe = str(real)
    return [exe] if exe else [sys.executable, "-m", "lossctl"]


def run(argv: list[str]) -> tuple[float, list[float]]:
    t0 = time.perf_counter()
    p = subprocess.run(argv, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit(f"failed ({p.returncode}): {' '.join(argv)}\n{p.stderr.strip()}")
    return dt, [float(x) for x in p.stdout.split()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--rows", type=int, default=500_000, help="rows per file")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="4 files x 50k rows, one run")
    ap.add_argument("--regenerate", action="store_true")
    a = ap.parse_args()
    if a.quick:
        a.files, a.rows, a.repeats = 4, 50_000, 1

    root = dataset(a.files, a.rows, a.seed, a.regenerate)
    size = sum(f.stat().st_size for f in root.glob("*.parquet"))
    base = [*lossctl_argv(), "eval", str(root), "-l", LOSSES, "-w", "weight", "--by", "region", "--value", "-q"]

    from distributed import Client, LocalCluster
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                           dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR)
    client = Client(cluster)
    try:
        variants = {
            "local": base,
            "dask --workers 2": base + ["--engine", "dask", "--workers", "2"],
            "dask --scheduler": base + ["--engine", "dask", "--scheduler", cluster.scheduler_address],
        }
        times: dict[str, list[float]] = {k: [] for k in variants}
        values: dict[str, list[float]] = {}
        for name, argv in variants.items():  # warm-up: page cache, imports, the workers' first import
            _, values[name] = run(argv)
        for _ in range(a.repeats):  # interleaved, so a busy moment hits every variant alike
            for name, argv in variants.items():
                dt, v = run(argv)
                times[name].append(dt)
                values[name] = v
    finally:
        client.close()
        cluster.close()

    ref = values["local"]
    for name, v in values.items():
        if len(v) != len(ref) or any(not math.isclose(x, y, rel_tol=1e-12, abs_tol=0) for x, y in zip(v, ref)):
            sys.exit(f"{name} printed {v}, local printed {ref}")
    print(f"dataset: {a.files} Parquet files x {a.rows:,} rows = {a.files * a.rows:,} rows, {size / 2**20:.0f} MiB "
          f"({root.relative_to(HERE.parent)})")
    print(f"command: lossctl eval DIR -l {LOSSES} -w weight --by region --value  [engine options]")
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end; median of "
          f"{a.repeats} run(s), each a whole process")
    t_local = statistics.median(times["local"])
    print(f"{'engine':<20}{'wall s':>10}{'vs local':>10}")
    for name, ts in times.items():
        m = statistics.median(ts)
        print(f"{name:<20}{m:>10.2f}{m / t_local:>9.2f}x")
    print("values: identical across engines to 1e-12 relative")


if __name__ == "__main__":
    main()
