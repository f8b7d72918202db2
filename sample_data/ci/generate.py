"""Regenerate the CI sample files (seeded, so the files are reproducible).

    python sample_data/ci/generate.py

Two models' predictions of the same 400 targets (house prices in 100k units, four regions, a sample
weight, an ``id`` key):

* ``baseline.parquet``  -- the model in production: noise sd 0.45 everywhere.
* ``candidate.parquet`` -- a retrained model: better in east/north/south (sd 0.38), worse in west
  (sd 0.55), so its overall MSE improves while one region regresses.  Rows are written in another order
  than the baseline's, so pairing needs ``--on id``.
* ``labels.parquet``    -- the targets alone (id, y_true), for the three-file form of ``compare``.

``lossctl.toml`` beside this file declares the checks that the README's "Use in CI" section runs
(and that tests/test_check.py loads, so the example cannot drift from the code).
"""
from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

HERE = os.path.dirname(os.path.abspath(__file__))
REGIONS = ("east", "north", "south", "west")


def main() -> None:
    rng = np.random.default_rng(20261123)
    n = 400
    ids = np.arange(1, n + 1, dtype=np.int64)
    region = rng.choice(REGIONS, size=n)
    y = np.round(rng.gamma(4.0, 0.6, size=n), 4)
    w = rng.integers(1, 4, size=n).astype(np.float64)
    base = np.round(np.maximum(y + rng.normal(0.0, 0.45, size=n), 0.05), 4)
    sd = np.where(region == "west", 0.55, 0.38)
    cand = np.round(np.maximum(y + rng.normal(0.0, 1.0, size=n) * sd, 0.05), 4)
    cols = {"id": ids, "region": region, "y_true": y, "weight": w}
    pq.write_table(pa.table({**cols, "y_pred": base}), os.path.join(HERE, "baseline.parquet"))
    order = rng.permutation(n)
    cand_tbl = pa.table({**cols, "y_pred": cand}).take(pa.array(order))
    pq.write_table(cand_tbl, os.path.join(HERE, "candidate.parquet"))
    pq.write_table(pa.table({"id": ids, "y_true": y}), os.path.join(HERE, "labels.parquet"))


if __name__ == "__main__":
    main()
