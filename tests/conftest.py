"""Shared fixtures for the core test suite: a CliRunner wrapper, generated data files, reference sums.

Expected numbers are always computed here, independently of lossctl, from the generated data
(``math.fsum`` over per-row Python floats).  Most CLI tests use *dyadic* data (multiples of 1/16 with
small magnitudes, integer weights): every squared or absolute error and every weighted sum is then exact
in float64, so lossctl's reduced value and the reference are the same correctly rounded quotient and the
tests can compare output text exactly.
"""
from __future__ import annotations

import bz2
import gzip
import json
import math
import os
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from lossctl.cli import cli

# Property-based tests draw the same examples on every run (derandomize), so CI gives the same verdict for
# the same code; HYPOTHESIS_PROFILE=explore draws new random examples (and more of them) to hunt for cases
# worth keeping as explicit edge cases.
from hypothesis import settings  # noqa: E402

settings.register_profile("ci", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False, database=None, max_examples=300)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

REGIONS = ("east", "north", "south", "west")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    """Same rendering everywhere: 80 columns, no colour, no debug tracebacks from the environment."""
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setenv("LINES", "25")
    monkeypatch.setenv("NO_COLOR", "1")
    for var in ("LOSSCTL_DEBUG", "LOSSCTL_FASTCSV", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        monkeypatch.delenv(var, raising=False)


# -- running the CLI ---------------------------------------------------------------------------------
def invoke(args: Sequence[str], input=None):
    """Run ``lossctl ARGS`` in-process; exceptions escaping the CLI fail the test (catch_exceptions=False)."""
    return CliRunner().invoke(cli, [str(a) for a in args], input=input, catch_exceptions=False,
                              prog_name="lossctl")


def run_ok(args: Sequence[str], input=None, stderr: str = ""):
    """Run a command that must succeed with nothing (or exactly ``stderr``) on stderr."""
    res = invoke(args, input=input)
    assert res.exit_code == 0, (res.exit_code, res.stdout, res.stderr)
    assert res.stderr == stderr
    return res


def run_err(args: Sequence[str], code: int, input=None) -> str:
    """Run a command that must fail with ``code`` and a one-line diagnostic; returns that line."""
    res = invoke(args, input=input)
    assert res.exit_code == code, (res.exit_code, res.stdout, res.stderr)
    assert res.stdout == ""
    assert "Traceback" not in res.stderr
    assert res.stderr.endswith("\n") and res.stderr.count("\n") == 1, repr(res.stderr)
    assert res.stderr.startswith("lossctl: error: "), repr(res.stderr)
    return res.stderr[len("lossctl: error: "):-1]


# -- data ---------------------------------------------------------------------------------------------
def dyadic_table(n: int = 24, seed: int = 0) -> pa.Table:
    """Predictions and targets that are multiples of 1/16, integer weights, every region present."""
    rng = np.random.default_rng(seed)
    y = rng.integers(1, 160, size=n) / 16.0          # positive targets
    d = rng.integers(-24, 25, size=n) / 16.0
    yhat = np.abs(y + d) + 1 / 16                     # positive predictions
    var = rng.integers(1, 32, size=n) / 8.0
    w = rng.integers(1, 5, size=n).astype(np.float64)
    region = np.array([REGIONS[i % 4] for i in range(n)])
    rng.shuffle(region)
    return pa.table({"id": np.arange(1001, 1001 + n, dtype=np.int64), "region": region,
                     "y_true": y, "y_pred": yhat, "var": var, "weight": w})


def real_table(n: int = 200, seed: int = 1) -> pa.Table:
    """Realistic (non-dyadic) regression data with outliers: for tests that compare with a tolerance."""
    rng = np.random.default_rng(seed)
    y = rng.gamma(4.0, 0.6, size=n)
    noise = rng.normal(0, 0.25, size=n)
    noise[rng.choice(n, 5, replace=False)] += 2.5
    yhat = np.maximum(y + noise, 0.05)
    return pa.table({"id": np.arange(1, n + 1, dtype=np.int64),
                     "region": rng.choice(list(REGIONS), size=n),
                     "y_true": y, "y_pred": yhat, "var": rng.uniform(0.02, 0.3, size=n),
                     "weight": rng.integers(1, 4, size=n).astype(np.float64)})


def col(tbl: pa.Table, name: str) -> list:
    return tbl.column(name).to_pylist()


def write(tbl: pa.Table, path, **kw) -> str:
    """Write ``tbl`` in the format its file name says (.csv, .tsv, .txt with ';', compressed CSV, ...)."""
    path = str(path)
    low = path.lower()
    if low.endswith((".csv.gz", ".csv.bz2", ".csv.zst")):
        raw = pa.BufferOutputStream()
        pcsv.write_csv(tbl, raw)
        data = raw.getvalue().to_pybytes()
        if low.endswith(".gz"):
            data = gzip.compress(data)
        elif low.endswith(".bz2"):
            data = bz2.compress(data)
        else:
            with pa.CompressedOutputStream(path, "zstd") as out:
                out.write(data)
            return path
        with open(path, "wb") as fh:
            fh.write(data)
    elif low.endswith(".csv"):
        pcsv.write_csv(tbl, path)
    elif low.endswith((".tsv", ".tab")):
        pcsv.write_csv(tbl, path, write_options=pcsv.WriteOptions(delimiter="\t"))
    elif low.endswith(".txt"):
        pcsv.write_csv(tbl, path, write_options=pcsv.WriteOptions(delimiter=kw.get("delimiter", ";")))
    elif low.endswith((".parquet", ".pq")):
        pq.write_table(tbl, path, row_group_size=kw.get("row_group_size"))
    elif low.endswith((".arrow", ".feather")):
        feather.write_feather(tbl, path, compression="uncompressed")
    elif low.endswith((".jsonl", ".ndjson")):
        with open(path, "w") as fh:
            for row in tbl.to_pylist():
                fh.write(json.dumps(row) + "\n")
    else:
        raise ValueError(path)
    return path


def csv_bytes(tbl: pa.Table) -> bytes:
    raw = pa.BufferOutputStream()
    pcsv.write_csv(tbl, raw)
    return raw.getvalue().to_pybytes()


# -- reference values (independent of lossctl) ---------------------------------------------------------
def se(p: float, t: float) -> float:
    return (p - t) * (p - t)


def ae(p: float, t: float) -> float:
    return abs(p - t)


PER_ROW = {"mse": se, "mae": ae}


def per_row(loss: str, tbl: pa.Table, pred: str = "y_pred", target: str = "y_true") -> list[float]:
    f = PER_ROW[loss]
    return [f(p, t) for p, t in zip(col(tbl, pred), col(tbl, target))]


def wmean(values: Sequence[float], weights: Sequence[float] | None = None) -> float:
    """sum(w*l) / sum(w), each sum correctly rounded."""
    if weights is None:
        return math.fsum(values) / len(values)
    return math.fsum(w * v for w, v in zip(weights, values)) / math.fsum(weights)


def wsum(values: Sequence[float], weights: Sequence[float] | None = None) -> float:
    if weights is None:
        return math.fsum(values)
    return math.fsum(w * v for w, v in zip(weights, values))


def g6(v: float) -> str:
    """How the table shows a number."""
    return f"{v:.6g}"


def box_table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[int] = ()) -> str:
    """The text of a rich table in its default (heavy-head) box, drawn independently of rich."""
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]

    def cell(text: str, i: int) -> str:
        return text.rjust(widths[i]) if i in right else text.ljust(widths[i])

    lines = ["┏" + "┳".join("━" * (w + 2) for w in widths) + "┓",
             "┃" + "┃".join(f" {cell(h, i)} " for i, h in enumerate(headers)) + "┃",
             "┡" + "╇".join("━" * (w + 2) for w in widths) + "┩"]
    lines += ["│" + "│".join(f" {cell(c, i)} " for i, c in enumerate(r)) + "│" for r in rows]
    lines.append("└" + "┴".join("─" * (w + 2) for w in widths) + "┘")
    return "\n".join(lines) + "\n"


@pytest.fixture
def dyadic(tmp_path):
    """(table, parquet path) of the dyadic data set."""
    tbl = dyadic_table()
    return tbl, write(tbl, tmp_path / "preds.parquet")


@pytest.fixture
def dyadic_csv(tmp_path):
    tbl = dyadic_table()
    return tbl, write(tbl, tmp_path / "preds.csv")


@pytest.fixture
def chdir_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def param_loss(monkeypatch):
    """A temporary loss with parameters and an extra 'var' role, registered only for one test.

    ``scaled_se:scale=S,offset=O`` = scale * (pred - target)^2 / var + offset, scale in (0, 10], offset int in
    [0, 3]; exercises NAME:P=V parsing, ranges and extra roles without depending on other loss modules.
    """
    from lossctl import registry

    registry.all_losses()  # load the built-ins first so they are not registered inside the patch

    def fn(pred, target, var, *, scale=1.0, offset=0):
        d = np.asarray(pred, dtype=np.float64) - np.asarray(target, dtype=np.float64)
        return scale * d * d / np.asarray(var, dtype=np.float64) + offset

    spec = registry.LossSpec(
        name="scaled_se", aliases=("sse_test",), kind="regression", fn=fn, roles=("pred", "target", "var"),
        summary="Test-only loss.", formula="l = scale (yhat - y)^2 / var + offset", reference="none (test)",
        params=(registry.Param("scale", float, 1.0, "multiplier", low=0.0, high=10.0, low_open=True),
                registry.Param("offset", int, 0, "added", low=0, high=3)),
        example="lossctl eval preds.csv -l scaled_se:scale=2",
    )
    monkeypatch.setitem(registry._REGISTRY, spec.name, spec)
    monkeypatch.setitem(registry._ALIASES, "sse_test", spec.name)
    return spec
