"""Deterministic benchmark data for bench.py.

Every dataset is generated from a seeded NumPy generator, written with pyarrow
(Parquet with the default snappy compression, CSV with pyarrow.csv.write_csv,
which round-trips float64 exactly) and cached under the data directory.  A
JSON sidecar per dataset holds the exact reference values computed in NumPy
from the in-memory arrays, so every tool's answer can be checked against it.

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


def size_bytes(path: str | None) -> int:
    if path is None:
        return 0
    p = Path(path)
    if p.is_dir():
        return sum(f.stat().st_size for f in p.glob("*.parquet"))
    return p.stat().st_size if p.exists() else 0


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=Path(__file__).resolve().parent / ".data")
    ap.add_argument("--rows-scale", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--large", action="store_true", help="also the 100M-row multi-file dataset")
    ap.add_argument("--regenerate", action="store_true")
    a = ap.parse_args()
    kinds = ["small", "regression", "binary", "multiclass"] + (["large"] if a.large else [])
    for kind in kinds:
        meta = ensure(kind, dataset_rows(kind, a.rows_scale), a.data_dir, a.seed, a.regenerate)
        print(kind, meta["rows"], meta["parquet"], meta["csv"], meta["ref"])
