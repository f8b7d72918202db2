"""Peer implementations for bench.py: each computes one number the way a user of
that library would, and prints it with full precision (repr) on stdout.

    python benchmarks/peers.py TOOL JOB FILE
    TOOL: polars | duckdb | pyarrow | pandas+sklearn | torch
    JOB:  mse (columns y_true, y_pred) | log_loss (y_true 0/1, p) | xent (label, p_0..p_9)
    python benchmarks/peers.py polars|duckdb mse_rows FILE OUT.parquet  (per-sample squared error)
    FILE: .parquet file, directory of .parquet files, or .csv
    polars and duckdb also read: .csv.gz / .csv.zst, a directory of .csv files, .jsonl / .ndjson,
    .arrow / .feather / .ipc (polars only: see UNSUPPORTED) and `-`, a CSV on standard input
    (cat x.csv | python benchmarks/peers.py polars mse -)

Only `sys` is imported at module level; each peer imports its own library inside
its function, so a run pays for exactly the imports that peer needs.
"""

import sys

N_CLASSES = 10
PCOLS = [f"p_{k}" for k in range(N_CLASSES)]
COLUMNS = {"mse": ["y_true", "y_pred"], "log_loss": ["y_true", "p"], "xent": ["label"] + PCOLS}


def _is_csv(path):
    return path.endswith(".csv")


def _parquet_target(path):
    """A directory of Parquet files is scanned through a glob."""
    import os

    return os.path.join(path, "*.parquet") if os.path.isdir(path) else path


def _kind(path):
    """What polars and duckdb read at PATH: "stdin" (`-`: CSV), "csv" (also .csv.gz and .csv.zst, which
    both decompress by extension), "csv_dir" (a directory of .csv files), "jsonl", "ipc" (Arrow IPC /
    Feather), else "parquet" (a file or a directory of them)."""
    import os

    low = path.lower()
    if path == "-":
        return "stdin"
    if low.endswith((".csv", ".csv.gz", ".csv.zst")):
        return "csv"
    if low.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    if low.endswith((".arrow", ".feather", ".ipc")):
        return "ipc"
    if os.path.isdir(path) and any(f.endswith(".csv") for f in os.listdir(path)):
        return "csv_dir"
    return "parquet"


# Inputs a peer cannot read, (tool, kind) -> why; bench.py shows "not supported: <why>" for them.
UNSUPPORTED = {
    ("duckdb", "ipc"): "no built-in Arrow IPC reader (the community `arrow` extension is a download)",
}


def unsupported(tool, path):
    """Why `tool` cannot read PATH (resolved from the current directory), or None."""
    return UNSUPPORTED.get((tool, _kind(path)))


# --- polars: lazy scan + expression mean ------------------------------------


def _polars_scan(path):
    import os

    import polars as pl

    kind = _kind(path)
    if kind == "stdin":
        return pl.read_csv(sys.stdin.buffer).lazy()
    if kind == "csv":
        return pl.scan_csv(path)  # .csv.gz / .csv.zst: polars decompresses them itself
    if kind == "csv_dir":
        return pl.scan_csv(os.path.join(path, "*.csv"))
    if kind == "jsonl":
        return pl.scan_ndjson(path)
    if kind == "ipc":
        return pl.scan_ipc(path)
    return pl.scan_parquet(_parquet_target(path))


def polars(job, path):
    import polars as pl

    lf = _polars_scan(path)
    if job == "mse":
        expr = ((pl.col("y_pred") - pl.col("y_true")) ** 2).mean()
    elif job == "log_loss":
        y, p = pl.col("y_true"), pl.col("p")
        expr = -(y * p.log() + (1 - y) * (1 - p).log()).mean()
    else:
        # A when/then chain: 3-4x faster than concat_list(...).list.get(label) here.
        picked = pl.when(pl.col("label") == 0).then(pl.col("p_0"))
        for k in range(1, N_CLASSES):
            picked = picked.when(pl.col("label") == k).then(pl.col(f"p_{k}"))
        expr = -picked.log().mean()
    return lf.select(expr).collect().item()


# --- DuckDB: SQL avg over read_parquet / read_csv ---------------------------


def _sql_lit(s):
    return "'" + s.replace("'", "''") + "'"


def _duckdb_source(path):
    import os

    kind = _kind(path)
    if ("duckdb", kind) in UNSUPPORTED:
        sys.exit("duckdb: not supported: " + UNSUPPORTED["duckdb", kind])
    if kind == "stdin":
        return "read_csv('/dev/stdin')"
    if kind == "csv":
        return f"read_csv({_sql_lit(path)})"  # .csv.gz / .csv.zst: decompressed by extension
    if kind == "csv_dir":
        return f"read_csv({_sql_lit(os.path.join(path, '*.csv'))})"
    if kind == "jsonl":
        return f"read_json({_sql_lit(path)}, format='newline_delimited')"
    return f"read_parquet({_sql_lit(_parquet_target(path))})"


def duckdb(job, path):
    import duckdb as ddb

    src = _duckdb_source(path)
    if job == "mse":
        expr = "avg((y_pred - y_true) * (y_pred - y_true))"
    elif job == "log_loss":
        expr = "avg(-(y_true * ln(p) + (1 - y_true) * ln(1 - p)))"
    else:
        expr = "avg(-ln([" + ", ".join(PCOLS) + "][label + 1]))"
    return ddb.connect().execute(f"SELECT {expr} FROM {src}").fetchone()[0]


# --- pyarrow: read the whole table, to_numpy, NumPy --------------------------


def pyarrow(job, path):
    import numpy as np

    cols = COLUMNS[job]
    if _is_csv(path):
        import pyarrow.csv as pcsv

        t = pcsv.read_csv(path, convert_options=pcsv.ConvertOptions(include_columns=cols))
    else:
        import pyarrow.parquet as pq

        t = pq.read_table(path, columns=cols)
    if job == "mse":
        d = t["y_pred"].to_numpy() - t["y_true"].to_numpy()
        return float(np.mean(d * d))
    if job == "log_loss":
        y, p = t["y_true"].to_numpy(), t["p"].to_numpy()
        return float(-np.mean(np.where(y == 1, np.log(p), np.log(1 - p))))
    y = t["label"].to_numpy()
    P = np.column_stack([t[c].to_numpy() for c in PCOLS])
    return float(-np.mean(np.log(P[np.arange(len(y)), y])))


# --- pandas + scikit-learn ---------------------------------------------------


def _pandas_read(job, path):
    import pandas as pd

    cols = COLUMNS[job]
    if _is_csv(path):
        return pd.read_csv(path, usecols=cols)
    return pd.read_parquet(path, columns=cols)


def pandas_sklearn(job, path):
    df = _pandas_read(job, path)
    if job == "mse":
        from sklearn.metrics import mean_squared_error

        return float(mean_squared_error(df["y_true"], df["y_pred"]))
    from sklearn.metrics import log_loss

    if job == "log_loss":
        return float(log_loss(df["y_true"], df["p"]))
    return float(log_loss(df["label"], df[PCOLS].to_numpy(), labels=list(range(N_CLASSES))))


# --- torch: pandas read -> tensors -> torch.nn.functional --------------------


def torch(job, path):
    df = _pandas_read(job, path)
    import warnings

    import torch as th
    import torch.nn.functional as F

    # from_numpy on pandas' read-only buffers warns; the tensors are only read.
    warnings.filterwarnings("ignore", message="The given NumPy array is not writable")

    if job == "mse":
        return F.mse_loss(th.from_numpy(df["y_pred"].to_numpy()),
                          th.from_numpy(df["y_true"].to_numpy())).item()
    if job == "log_loss":
        return F.binary_cross_entropy(th.from_numpy(df["p"].to_numpy()),
                                      th.from_numpy(df["y_true"].to_numpy()).double()).item()
    P = th.from_numpy(df[PCOLS].to_numpy())
    return F.nll_loss(th.log(P), th.from_numpy(df["label"].to_numpy())).item()


# --- the start-up floor: the hand-written one-liner -------------------


def floor(job, path):
    """MSE of a small CSV the cheapest way with lossctl's own building blocks: pyarrow.csv, NumPy
    frombuffer, click and a rich table (the issue's 158 ms reference).  Prints the table, returns the value."""
    import click  # noqa: F401  (a CLI pays for it)
    import numpy as np
    import pyarrow.csv as pcsv
    from rich.console import Console
    from rich.table import Table

    t = pcsv.read_csv(path)

    def col(name):
        a = t.column(name).combine_chunks()
        return np.frombuffer(a.buffers()[1], dtype=np.float64, count=len(a), offset=a.offset * 8)

    d = col("y_pred") - col("y_true")
    value = float(np.mean(d * d))
    table = Table("loss", "mean", "rows")
    table.add_row("mse", f"{value:.6g}", str(len(d)))
    Console(file=sys.stderr).print(table)
    return value


# --- per-sample output: one loss value per row written to Parquet ------------


def polars_rows(job, path, out):
    import polars as pl

    lf = _polars_scan(path)
    lf.select(((pl.col("y_pred") - pl.col("y_true")) ** 2).alias("mse")).sink_parquet(out)


def duckdb_rows(job, path, out):
    import duckdb as ddb

    src = _duckdb_source(path)
    ddb.connect().execute(f"COPY (SELECT (y_pred - y_true) * (y_pred - y_true) AS mse FROM {src}) "
                          f"TO {_sql_lit(out)} (FORMAT parquet)")


ROW_PEERS = {"polars": polars_rows, "duckdb": duckdb_rows}

PEERS = {
    "polars": polars,
    "duckdb": duckdb,
    "pyarrow": pyarrow,
    "pandas+sklearn": pandas_sklearn,
    "torch": torch,
}
EXTRA = {"floor": floor}  # not a peer: a baseline row of the start-up job

# Modules a peer needs; bench.py reports "not installed" when one is missing.
REQUIRES = {
    "polars": ["polars"],
    "duckdb": ["duckdb"],
    "pyarrow": ["pyarrow", "numpy"],
    "pandas+sklearn": ["pandas", "sklearn", "pyarrow"],
    "torch": ["torch", "pandas", "pyarrow"],
    "floor": ["numpy", "pyarrow", "click", "rich"],
}


if __name__ == "__main__":
    tool, job, path = sys.argv[1:4]
    if job == "mse_rows":  # python peers.py TOOL mse_rows FILE OUT.parquet
        ROW_PEERS[tool](job, path, sys.argv[4])
    else:
        print(repr(float({**PEERS, **EXTRA}[tool](job, path))))
