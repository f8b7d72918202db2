"""Regenerate the regression sample files (seeded, so the files are reproducible).

    python sample_data/generate.py

House-price-like predictions: 200 rows with a region, a sample weight, a predicted variance and a
few outliers, written in every input format lossctl reads.
"""
from __future__ import annotations

import gzip
import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.feather as feather
import pyarrow.parquet as pq

HERE = os.path.dirname(os.path.abspath(__file__))


def main() -> None:
    rng = np.random.default_rng(20261122)
    n = 200
    ids = np.arange(1001, 1001 + n)
    region = rng.choice(["north", "south", "east", "west"], size=n)
    y = np.round(rng.gamma(4.0, 0.6, size=n), 4)  # target in 100k units, positive
    noise = rng.normal(0.0, 0.25, size=n)
    noise[rng.choice(n, 6, replace=False)] += rng.choice([-2.0, 2.5], 6)  # a few outliers
    yhat = np.round(np.maximum(y + noise, 0.05), 4)
    var = np.round(rng.uniform(0.02, 0.3, size=n), 4)
    w = rng.integers(1, 4, size=n).astype(float)
    tbl = pa.table({"id": ids, "region": region, "y_true": y, "y_pred": yhat, "var": var, "weight": w})

    pcsv.write_csv(tbl, os.path.join(HERE, "regression.csv"))
    pq.write_table(tbl, os.path.join(HERE, "regression.parquet"))
    feather.write_feather(tbl, os.path.join(HERE, "regression.arrow"))
    pcsv.write_csv(tbl, os.path.join(HERE, "regression.tsv"), write_options=pcsv.WriteOptions(delimiter="\t"))
    with open(os.path.join(HERE, "regression.csv"), "rb") as src, open(
            os.path.join(HERE, "regression.csv.gz"), "wb") as raw:
        with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as dst:
            dst.write(src.read())
    with open(os.path.join(HERE, "regression.jsonl"), "w") as fh:
        for row in tbl.to_pylist():
            fh.write(json.dumps(row) + "\n")
    # A Parquet dataset in parts (a directory)
    part_dir = os.path.join(HERE, "regression_parts")
    os.makedirs(part_dir, exist_ok=True)
    for k, start in enumerate(range(0, n, 50)):
        pq.write_table(tbl.slice(start, 50), os.path.join(part_dir, f"part-{k}.parquet"))
    # Predictions and labels in two files: labels in another order, keyed by id
    pcsv.write_csv(tbl.select(["id", "y_pred"]), os.path.join(HERE, "preds.csv"))
    order = rng.permutation(n)
    pcsv.write_csv(tbl.select(["id", "y_true"]).take(pa.array(order)), os.path.join(HERE, "labels_shuffled.csv"))
    pcsv.write_csv(tbl.select(["id", "y_true"]), os.path.join(HERE, "labels.csv"))
    # A broken export for the error examples: row 17's prediction is missing
    with open(os.path.join(HERE, "regression.csv")) as src:
        lines = src.read().splitlines()[:31]
    cells = lines[17].split(",")
    cells[3] = ""
    lines[17] = ",".join(cells)
    with open(os.path.join(HERE, "bad_rows.csv"), "w") as fh:
        fh.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
