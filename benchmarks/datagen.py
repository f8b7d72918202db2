"""Deterministic benchmark data for bench.py.

Every dataset is generated from a seeded NumPy generator, written with pyarrow
(Parquet with the default snappy compression, CSV with pyarrow.csv.write_csv,
which round-trips float64 exactly) and cached under the data directory.  A
JSON sidecar per dataset holds the exact reference values computed in NumPy
from the in-memory arrays, so every tool's answer can be checked against it.

The "inputs" job's files (the regression rows as .csv.gz, .csv.zst, Parquet of 10k-row
row groups, a directory of 100 CSV files, JSON Lines of the first 10% of the rows and an
Arrow IPC file) are derived from the regression dataset's Parquet file by ensure_inputs
and cached next to it, in regression_<n>_s<seed>_inputs/.

Run on its own to only generate:  python benchmarks/datagen.py --rows-scale 0.01
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

N_CLASSES = 10
BASE_ROWS = {"regression": 10_000_000, "binary": 10_000_000, "multiclass": 1_000_000}
SMALL_ROWS = 1_000
LARGE_ROWS = 100_000_000
LARGE_FILES = 10
HUBER_DELTA = 1.0
# The "inputs" job: derived files of the regression dataset.
INPUT_CSV_FILES = 100  # the CSV dataset: a directory of this many equal slices
INPUT_JSONL_FRACTION = 0.1  # JSON Lines hold the first 10% of the rows (parsing JSON is slow)
INPUT_ROW_GROUP = 10_000  # the small-row-group Parquet file
GZIP_LEVEL = 6  # the gzip CLI's default
ZSTD_LEVEL = 3  # the zstd CLI's default

# Dataset kind -> an integer folded into the seed, so kinds do not share streams.
_KIND_SALT = {"regression": 1, "binary": 2, "multiclass": 3, "small": 4, "large": 5}


def _rng(seed: int, kind: str, part: int = 0) -> np.random.Generator:
    return np.random.default_rng([seed, _KIND_SALT[kind], part])


def make_regression(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    y_true = rng.standard_normal(n)
    y_pred = y_true + 0.5 * rng.standard_normal(n)
    return {"y_true": y_true, "y_pred": y_pred}


def make_binary(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    y_true = (rng.random(n) < 0.4).astype(np.int64)
    logit = 1.5 * (2 * y_true - 1) + rng.standard_normal(n) * 1.5
    p = 1.0 / (1.0 + np.exp(-logit))
    # Keep p strictly inside (0, 1) and well away from float64 rounding to 0 or 1,
    # so no tool's clipping (sklearn eps, torch's log clamp at -100) changes anything.
    np.clip(p, 1e-9, 1 - 1e-9, out=p)
    return {"y_true": y_true, "p": p}


def make_multiclass(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    label = rng.integers(0, N_CLASSES, n, dtype=np.int64)
    logits = rng.standard_normal((n, N_CLASSES))
    logits[np.arange(n), label] += 1.5
    logits -= logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    cols = {"label": label}
    for k in range(N_CLASSES):
        cols[f"p_{k}"] = np.ascontiguousarray(probs[:, k])
    return cols


# --- reference values (NumPy, float64) -------------------------------------


def _regression_sums(c: dict[str, np.ndarray]) -> dict[str, float]:
    d = c["y_pred"] - c["y_true"]
    ad = np.abs(d)
    huber = np.where(ad < HUBER_DELTA, 0.5 * d * d, HUBER_DELTA * (ad - 0.5 * HUBER_DELTA))
    return {"n": float(d.size), "se": float(np.sum(d * d)), "ae": float(np.sum(ad)),
            "huber": float(np.sum(huber))}


def _regression_refs(s: dict[str, float]) -> dict[str, float]:
    mse = s["se"] / s["n"]
    return {"mse": mse, "mae": s["ae"] / s["n"], "rmse": float(np.sqrt(mse)),
            "huber": s["huber"] / s["n"]}


def reference(kind: str, c: dict[str, np.ndarray]) -> dict[str, float]:
    if kind in ("regression", "small"):
        return _regression_refs(_regression_sums(c))
    if kind == "binary":
        y, p = c["y_true"], c["p"]
        return {"log_loss": float(-np.mean(np.where(y == 1, np.log(p), np.log1p(-p))))}
    if kind == "multiclass":
        y = c["label"]
        picked = np.choose(y, [c[f"p_{k}"] for k in range(N_CLASSES)])
        return {"log_loss": float(-np.mean(np.log(picked)))}
    raise ValueError(kind)


# --- writing ---------------------------------------------------------------


def _table(cols: dict[str, np.ndarray]):
    import pyarrow as pa

    return pa.table({k: pa.array(v) for k, v in cols.items()})


def _write_parquet(table, path: Path) -> None:
    import pyarrow.parquet as pq

    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp)  # pyarrow defaults: snappy, default row-group size
    os.replace(tmp, path)


def _write_csv(table, path: Path) -> None:
    import pyarrow.csv as pcsv

    tmp = path.with_name(path.name + ".tmp")
    pcsv.write_csv(table, tmp)
    os.replace(tmp, path)


def _stem(kind: str, n: int, seed: int) -> str:
    return f"{kind}_{n}_s{seed}"


def dataset_rows(kind: str, scale: float) -> int:
    if kind == "small":
        return SMALL_ROWS
    if kind == "large":
        return max(LARGE_FILES, int(round(LARGE_ROWS * scale)))
    return max(10, int(round(BASE_ROWS[kind] * scale)))


def ensure(kind: str, n: int, data_dir: Path, seed: int = 0, regenerate: bool = False,
           log=print) -> dict:
    """Make sure dataset `kind` with `n` rows exists; return its description.

    Returns {"kind", "rows", "parquet", "csv" (None for "large"), "ref": {...}}.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    stem = _stem(kind, n, seed)
    meta_path = data_dir / f"{stem}.json"
    if kind == "large":
        pq_path, csv_path = data_dir / stem, None  # a directory of Parquet files
    else:
        pq_path, csv_path = data_dir / f"{stem}.parquet", data_dir / f"{stem}.csv"

    if not regenerate and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if Path(meta["parquet"]).exists() and (csv_path is None or Path(meta["csv"]).exists()):
            return meta

    t0 = time.perf_counter()
    if kind == "large":
        pq_path.mkdir(exist_ok=True)
        for old in pq_path.glob("*.parquet"):
            old.unlink()
        total = {"n": 0.0, "se": 0.0, "ae": 0.0, "huber": 0.0}
        base, extra = divmod(n, LARGE_FILES)
        for i in range(LARGE_FILES):
            m = base + (1 if i < extra else 0)
            cols = make_regression(m, _rng(seed, kind, i))
            for k, v in _regression_sums(cols).items():
                total[k] += v
            _write_parquet(_table(cols), pq_path / f"part-{i:03d}.parquet")
            del cols
        ref = _regression_refs(total)
    else:
        maker = {"regression": make_regression, "small": make_regression,
                 "binary": make_binary, "multiclass": make_multiclass}[kind]
        cols = maker(n, _rng(seed, kind))
        ref = reference(kind, cols)
        table = _table(cols)
        _write_parquet(table, pq_path)
        _write_csv(table, csv_path)
        del table, cols

    meta = {"kind": kind, "rows": n, "seed": seed, "parquet": str(pq_path),
            "csv": None if csv_path is None else str(csv_path), "ref": ref}
    meta_path.write_text(json.dumps(meta, indent=1))
    log(f"generated {kind} ({n:,} rows) in {time.perf_counter() - t0:.1f} s -> {pq_path}"
        + ("" if csv_path is None else f", {csv_path.name}"))
    return meta


# --- the "inputs" job: the regression rows in other input kinds ---------------


def _write_gzip_csv(table, path: Path) -> None:
    import gzip

    import pyarrow.csv as pcsv

    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as raw, \
            gzip.GzipFile(filename="", mode="wb", compresslevel=GZIP_LEVEL, fileobj=raw, mtime=0) as f:
        pcsv.write_csv(table, f)  # no name or time in the header: the same bytes on every run
    os.replace(tmp, path)


def _write_zstd_csv(table, path: Path) -> str:
    """Write the CSV as one standard zstd frame at ZSTD_LEVEL; return how.

    pyarrow's CompressedOutputStream(path, "zstd") takes no level and uses Arrow's default (1), so
    the zstandard module or the zstd CLI is preferred when present; pyarrow is the last resort."""
    import shutil
    import subprocess
    from importlib.util import find_spec

    import pyarrow.csv as pcsv

    tmp = path.with_name(path.name + ".tmp")
    if find_spec("zstandard") is not None:
        import zstandard

        with open(tmp, "wb") as raw, \
                zstandard.ZstdCompressor(level=ZSTD_LEVEL).stream_writer(raw, closefd=False) as f:
            pcsv.write_csv(table, f)
        how = f"level {ZSTD_LEVEL}, zstandard module"
    elif shutil.which("zstd"):
        proc = subprocess.Popen(["zstd", f"-{ZSTD_LEVEL}", "-q", "-f", "-o", str(tmp)], stdin=subprocess.PIPE)
        try:
            pcsv.write_csv(table, proc.stdin)
        finally:
            proc.stdin.close()
        if proc.wait() != 0:
            raise RuntimeError(f"zstd exited with {proc.returncode} writing {tmp}")
        how = f"level {ZSTD_LEVEL}, zstd CLI"
    else:
        import pyarrow as pa

        with pa.CompressedOutputStream(str(tmp), "zstd") as f:
            pcsv.write_csv(table, f)
        how = f"level {pa.Codec.default_compression_level('zstd')}, pyarrow CompressedOutputStream"
    os.replace(tmp, path)
    return how


def _write_jsonl(cols: dict[str, np.ndarray], path: Path) -> None:
    """One {"y_true": ..., "y_pred": ...} object a line; floats by repr, so they round-trip."""
    tmp = path.with_name(path.name + ".tmp")
    names = list(cols)
    lists = [cols[k].tolist() for k in names]
    with open(tmp, "w", encoding="ascii", buffering=1 << 20) as f:
        f.writelines("{" + ", ".join(f'"{k}": {v!r}' for k, v in zip(names, row)) + "}\n"
                     for row in zip(*lists))
    os.replace(tmp, path)


def _write_feather(table, path: Path) -> None:
    import pyarrow.feather as pf

    tmp = path.with_name(path.name + ".tmp")
    pf.write_feather(table, str(tmp), compression="uncompressed")
    os.replace(tmp, path)


def jsonl_rows(n: int) -> int:
    return max(1, round(n * INPUT_JSONL_FRACTION))


def ensure_inputs(meta: dict, data_dir: Path, regenerate: bool = False, log=print) -> dict:
    """Make sure the "inputs" job's files derived from the regression dataset `meta` (what
    ensure("regression", ...) returned) exist; return their description.

    Returns {"rows", "jsonl_rows", "csv" (the source CSV, read through `cat` for stdin), "csv_gz",
    "csv_zst", "zstd", "parquet_rg", "row_group", "csv_dir", "csv_files", "jsonl", "arrow",
    "ref": {...} (all rows), "ref_jsonl": {...} (the JSON Lines rows)}.
    """
    import pyarrow.parquet as pq

    n, seed = meta["rows"], meta["seed"]
    out_dir = data_dir / f"{_stem('regression', n, seed)}_inputs"
    meta_path = out_dir / "inputs.json"
    stem = f"regression_{n}"
    paths = {"csv_gz": out_dir / f"{stem}.csv.gz", "csv_zst": out_dir / f"{stem}.csv.zst",
             "parquet_rg": out_dir / f"{stem}_rg{INPUT_ROW_GROUP}.parquet", "csv_dir": out_dir / f"{stem}_csv",
             "jsonl": out_dir / f"{stem}_head{jsonl_rows(n)}.jsonl", "arrow": out_dir / f"{stem}.arrow"}

    if not regenerate and meta_path.exists():
        old = json.loads(meta_path.read_text())
        # Same source rows (their reference value stands in for a checksum) and every file still there.
        if (old.get("rows") == n and old.get("source_mse") == meta["ref"]["mse"]
                and all(Path(old[k]).exists() for k in paths)):
            return old

    t0 = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    meta_path.unlink(missing_ok=True)  # a run killed half-way must not leave a valid-looking cache
    table = pq.read_table(meta["parquet"], columns=["y_true", "y_pred"])
    cols = {k: table.column(k).to_numpy() for k in ("y_true", "y_pred")}
    ref = _regression_refs(_regression_sums(cols))
    m = jsonl_rows(n)
    ref_jsonl = _regression_refs(_regression_sums({k: v[:m] for k, v in cols.items()}))

    _write_gzip_csv(table, paths["csv_gz"])
    zstd_how = _write_zstd_csv(table, paths["csv_zst"])
    tmp = paths["parquet_rg"].with_name(paths["parquet_rg"].name + ".tmp")
    pq.write_table(table, tmp, row_group_size=INPUT_ROW_GROUP)  # snappy, like the source
    os.replace(tmp, paths["parquet_rg"])
    csv_dir = paths["csv_dir"]
    csv_dir.mkdir(exist_ok=True)
    for old in csv_dir.glob("*.csv"):
        old.unlink()
    base, extra = divmod(n, INPUT_CSV_FILES)
    start = 0
    for i in range(INPUT_CSV_FILES):
        size = base + (1 if i < extra else 0)
        _write_csv(table.slice(start, size), csv_dir / f"part-{i:03d}.csv")
        start += size
    _write_jsonl({k: v[:m] for k, v in cols.items()}, paths["jsonl"])
    _write_feather(table, paths["arrow"])
    del table, cols

    out = {"rows": n, "seed": seed, "source": meta["parquet"], "csv": meta["csv"],
           **{k: str(v) for k, v in paths.items()}, "zstd": zstd_how, "row_group": INPUT_ROW_GROUP,
           "csv_files": INPUT_CSV_FILES, "jsonl_rows": m, "ref": ref, "ref_jsonl": ref_jsonl,
           "source_mse": meta["ref"]["mse"]}
    meta_path.write_text(json.dumps(out, indent=1))
    log(f"generated the inputs job's files ({n:,} rows) in {time.perf_counter() - t0:.1f} s -> {out_dir}")
    return out


def size_bytes(path: str | None) -> int:
    """Size of a file, or of the files in a directory (a dataset)."""
    if path is None:
        return 0
    p = Path(path)
    if p.is_dir():
        return sum(f.stat().st_size for f in p.iterdir() if f.is_file() and not f.name.endswith(".tmp"))
    return p.stat().st_size if p.exists() else 0


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=Path(__file__).resolve().parent / ".data")
    ap.add_argument("--rows-scale", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--large", action="store_true", help="also the 100M-row multi-file dataset")
    ap.add_argument("--inputs", action="store_true", help="also the inputs job's files (from regression)")
    ap.add_argument("--regenerate", action="store_true")
    a = ap.parse_args()
    kinds = ["small", "regression", "binary", "multiclass"] + (["large"] if a.large else [])
    for kind in kinds:
        meta = ensure(kind, dataset_rows(kind, a.rows_scale), a.data_dir, a.seed, a.regenerate)
        print(kind, meta["rows"], meta["parquet"], meta["csv"], meta["ref"])
        if kind == "regression" and a.inputs:
            inp = ensure_inputs(meta, a.data_dir, a.regenerate)
            print("inputs", inp["rows"], Path(inp["csv_gz"]).parent, inp["ref"]["mse"], inp["ref_jsonl"]["mse"])
