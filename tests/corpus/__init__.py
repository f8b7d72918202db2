"""The bad-input corpus: every case builds its input files in a temporary directory (the repository stays
small) and says what lossctl must answer.

A case is a function ``build(d: Path) -> list[str]`` (the command line, files written into ``d``) registered
with :func:`case`, which records the exit code and what the one-line diagnostic must name: the file (a
name relative to ``d``, or an absolute text such as a URL), the column and the 1-based row (header
excluded), plus words it must contain.  Cases with exit code 0 are valid inputs that look suspicious (a
BOM, quoted numbers, -0.0, 1e308, thousands of columns); they give ``value`` (computed here by hand,
independently of lossctl) that ``--value`` must print.

tests/test_corpus.py runs each case through the CLI and checks the exit code, one line on stderr naming
what and where, no traceback, no output file left behind and the inputs untouched.  Fuzz findings
(tests/test_fuzz.py) are kept at the end of this module as fixed cases.
"""
from __future__ import annotations

import gzip
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq


@dataclass
class Case:
    id: str
    build: Callable[[Path], list]
    code: int
    file: str | None = None           # relative to the case directory, or absolute text ("s3://...")
    column: str | None = None
    row: int | None = None
    contains: tuple[str, ...] = ()    # words the message must contain (case-insensitive)
    stdin: bytes | None = None
    value: float | None = None        # valid cases: what --value prints (first loss)
    output: bool = True               # also ask for a per-sample file (-o) and check none is left behind
    click_usage: bool = False         # a usage error Click itself detects (one line ending with a --help pointer), exit 2
    setup: Callable | None = None     # setup(d, monkeypatch): extra arrangements (permission denial, cwd)


CASES: list[Case] = []


def case(id: str, code: int, **kw):
    def deco(fn):
        assert all(c.id != id for c in CASES), id
        CASES.append(Case(id, fn, code, **kw))
        return fn
    return deco


# -- helpers ------------------------------------------------------------------------------------------------
def text(d: Path, name: str, content: str | bytes) -> str:
    p = d / name
    p.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return str(p)


def table(n: int = 12, seed: int = 0) -> pa.Table:
    """Small regression data in quarter steps (every squared error exact in float64)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(-20, 20, size=n) / 4.0
    p = y + rng.integers(-6, 7, size=n) / 4.0
    return pa.table({"id": np.arange(1, n + 1, dtype=np.int64), "y_pred": p, "y_true": y,
                     "w": rng.integers(1, 4, size=n).astype(np.float64),
                     "region": np.array(["a", "b", "c"])[np.arange(n) % 3]})


def parquet_bytes(tbl: pa.Table | None = None) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(tbl if tbl is not None else table(), sink)
    return sink.getvalue().to_pybytes()


def arrow_bytes(tbl: pa.Table | None = None) -> bytes:
    sink = pa.BufferOutputStream()
    feather.write_feather(tbl if tbl is not None else table(), sink, compression="uncompressed")
    return sink.getvalue().to_pybytes()


def csv_text(rows, header="y_pred,y_true") -> str:
    return header + "\n" + "".join(",".join(str(v) for v in r) + "\n" for r in rows)


def mse(pairs) -> float:
    return math.fsum((p - t) ** 2 for p, t in pairs) / len(pairs)


def ev(path, *args) -> list:
    return ["eval", str(path), *[str(a) for a in args]]


GOOD = csv_text([(1.5, 1.0), (2.0, 3.0), (0.25, 0.0)])
GOOD_MSE = mse([(1.5, 1.0), (2.0, 3.0), (0.25, 0.0)])


# == readers: empty, truncated, corrupt, mislabelled ==========================================================
for _ext in ("csv", "parquet", "jsonl", "arrow", "tsv"):
    case(f"empty-{_ext}", 3, file=f"empty.{_ext}", contains=("empty",))(
        lambda d, e=_ext: ev(text(d, f"empty.{e}", b""), "-l", "mse"))


@case("header-only-csv", 3, file="h.csv", contains=("no rows",))
def _(d):
    return ev(text(d, "h.csv", "y_pred,y_true\n"), "-l", "mse")


@case("header-only-csv-no-newline", 3, file="h.csv", contains=("no rows",))
def _(d):
    return ev(text(d, "h.csv", "y_pred,y_true"), "-l", "mse")


@case("zero-row-parquet", 3, file="z.parquet", contains=("no rows",))
def _(d):
    return ev(text(d, "z.parquet", parquet_bytes(table().slice(0, 0))), "-l", "mse")


@case("blank-lines-only-csv", 3, file="b.csv")
def _(d):
    return ev(text(d, "b.csv", "\n\n\n"), "-l", "mse")


@case("truncated-parquet-half", 3, file="t.parquet")
def _(d):
    b = parquet_bytes()
    return ev(text(d, "t.parquet", b[: len(b) // 2]), "-l", "mse")


@case("truncated-parquet-footer", 3, file="t.parquet")
def _(d):
    b = parquet_bytes()
    return ev(text(d, "t.parquet", b[:-4]), "-l", "mse")


@case("truncated-parquet-magic-only", 3, file="t.parquet")
def _(d):
    return ev(text(d, "t.parquet", b"PAR1"), "-l", "mse")


@case("corrupt-parquet-footer", 3, file="c.parquet")
def _(d):
    b = bytearray(parquet_bytes())
    flen = int.from_bytes(b[-8:-4], "little")
    start = len(b) - 8 - flen
    for i in range(start, start + flen, 3):   # scramble the Thrift footer
        b[i] ^= 0xA5
    return ev(text(d, "c.parquet", bytes(b)), "-l", "mse")


@case("corrupt-parquet-footer-length", 3, file="c.parquet")
def _(d):
    b = bytearray(parquet_bytes())
    b[-8:-4] = (10 ** 9).to_bytes(4, "little")  # a footer longer than the file
    return ev(text(d, "c.parquet", bytes(b)), "-l", "mse")


@case("truncated-arrow", 3, file="t.arrow")
def _(d):
    b = arrow_bytes()
    return ev(text(d, "t.arrow", b[: len(b) // 2]), "-l", "mse")


@case("truncated-gzip-csv", 3, file="t.csv.gz")
def _(d):
    z = gzip.compress((GOOD * 200).encode())
    return ev(text(d, "t.csv.gz", z[: len(z) // 2]), "-l", "mse")


@case("gz-name-plain-content", 3, file="p.csv.gz")
def _(d):
    return ev(text(d, "p.csv.gz", GOOD), "-l", "mse")


@case("binary-junk-csv", 3, file="junk.csv")
def _(d):
    rng = np.random.default_rng(3)
    return ev(text(d, "junk.csv", rng.integers(0, 256, size=5000, dtype=np.uint8).tobytes()), "-l", "mse")


@case("binary-junk-no-extension", 3, file="junk", contains=("format",))
def _(d):
    return ev(text(d, "junk", b"\x00\x01\x02\xfe\xff" * 400), "-l", "mse")


@case("binary-junk-stdin", 3, file="<stdin>", stdin=bytes(range(256)) * 20)
def _(d):
    return ["eval", "-", "-l", "mse"]


@case("parquet-named-csv", 3, file="p.csv", contains=("parquet",))
def _(d):
    return ev(text(d, "p.csv", parquet_bytes()), "-l", "mse")


@case("csv-named-parquet", 3, file="c.parquet", contains=("parquet",))
def _(d):
    return ev(text(d, "c.parquet", GOOD), "-l", "mse")


@case("arrow-named-parquet", 3, file="a.parquet", contains=("arrow",))
def _(d):
    return ev(text(d, "a.parquet", arrow_bytes()), "-l", "mse")


@case("parquet-named-jsonl", 3, file="p.jsonl", contains=("parquet",))
def _(d):
    return ev(text(d, "p.jsonl", parquet_bytes()), "-l", "mse")


@case("csv-named-arrow", 3, file="c.arrow", contains=("arrow",))
def _(d):
    return ev(text(d, "c.arrow", GOOD), "-l", "mse")


@case("jsonl-broken-line", 3, file="b.jsonl", row=2, contains=("JSON",))
def _(d):
    return ev(text(d, "b.jsonl", '{"y_pred": 1, "y_true": 2}\n{"y_pred": 3, "y_tr\n'), "-l", "mse")


@case("jsonl-string-among-numbers", 3, file="m.jsonl", column="y_true")
def _(d):
    return ev(text(d, "m.jsonl", '{"y_pred": 1, "y_true": 2}\n{"y_pred": 3, "y_true": "four"}\n'), "-l", "mse")


@case("jsonl-not-objects", 3, file="a.jsonl")
def _(d):
    return ev(text(d, "a.jsonl", "[1, 2]\n[3, 4]\n"), "-l", "mse")


@case("latin1-in-numeric-column", 3, file="l.csv", column="y_true")
def _(d):
    return ev(text(d, "l.csv", b"y_pred,y_true\n1,2\n3,\xe94\n"), "-l", "mse")


@case("nul-bytes-in-csv", 3, file="n.csv")
def _(d):
    return ev(text(d, "n.csv", b"y_pred,y_true\n1,2\n\x00\x00\x00,4\n"), "-l", "mse")


# == CSV shapes: ragged rows, quoting, BOM, mixed types, wide and long ==============================================
@case("ragged-row-extra-field", 3, file="r.csv", row=2, contains=("fields",))
def _(d):
    return ev(text(d, "r.csv", "y_pred,y_true\n1,2\n3,4,5\n6,7\n"), "-l", "mse")


@case("ragged-row-missing-field", 3, file="r.csv", row=2, contains=("fields",))
def _(d):
    return ev(text(d, "r.csv", "y_pred,y_true\n1,2\n3\n6,7\n"), "-l", "mse")


@case("ragged-row-large-csv", 3, file="big.csv", row=600_001, contains=("fields",))
def _(d):
    rows = "".join(f"{i},{i % 7}\n" for i in range(600_000))  # > 4 MiB: the byte-range reader
    return ev(text(d, "big.csv", "y_pred,y_true\n" + rows + "1,2,3\n" + "4,5\n"), "-l", "mse")


@case("unclosed-quote", 3, file="q.csv")
def _(d):
    return ev(text(d, "q.csv", 'y_pred,y_true\n1,2\n"3,4\n5,6\n'), "-l", "mse")


@case("bom-csv", 0, value=GOOD_MSE)
def _(d):
    return ev(text(d, "bom.csv", "\ufeff" + GOOD), "-l", "mse", "--value")


@case("bom-csv-named-column", 0, value=GOOD_MSE)
def _(d):
    return ev(text(d, "bom.csv", "\ufeff" + GOOD), "-l", "mse", "--pred", "y_pred", "--target", "y_true", "--value")


@case("quoted-numbers", 0, value=GOOD_MSE)
def _(d):
    return ev(text(d, "q.csv", '"y_pred","y_true"\n"1.5","1"\n"2","3.0"\n"0.25","0"\n'), "-l", "mse", "--value")


@case("crlf-line-ends", 0, value=GOOD_MSE)
def _(d):
    return ev(text(d, "crlf.csv", GOOD.replace("\n", "\r\n")), "-l", "mse", "--value")


@case("semicolon-txt", 0, value=GOOD_MSE)
def _(d):
    return ev(text(d, "s.txt", GOOD.replace(",", ";")), "-l", "mse", "--value")


@case("mixed-types-column", 3, file="m.csv", column="y_pred", row=3, contains=("abc", "not a number"))
def _(d):
    return ev(text(d, "m.csv", "y_pred,y_true\n1,2\n3,4\nabc,6\n7,8\n"), "-l", "mse")


@case("mixed-types-late-row-batched", 3, file="m.csv", column="y_true", row=40)
def _(d):
    rows = [(i, i + 1) for i in range(39)] + [(1, "1.2.3")] + [(i, i) for i in range(10)]
    return ev(text(d, "m.csv", csv_text(rows)), "-l", "mse", "--batch-size", "7")


@case("boolean-text-column", 3, file="b.csv", column="y_true")
def _(d):
    return ev(text(d, "b.csv", "y_pred,y_true\n1,yes\n2,no\n"), "-l", "mse")


@case("thousands-of-columns", 0, value=GOOD_MSE)
def _(d):
    names = [f"x{i}" for i in range(3000)] + ["y_pred", "y_true"]
    rows = [[0] * 3000 + [p, t] for p, t in [(1.5, 1.0), (2.0, 3.0), (0.25, 0.0)]]
    return ev(text(d, "wide.csv", csv_text(rows, ",".join(names))), "-l", "mse", "--value")


@case("thousands-of-columns-parquet", 0, value=GOOD_MSE)
def _(d):
    cols = {f"x{i}": np.zeros(3) for i in range(3000)}
    cols.update(y_pred=np.array([1.5, 2.0, 0.25]), y_true=np.array([1.0, 3.0, 0.0]))
    return ev(text(d, "wide.parquet", parquet_bytes(pa.table(cols))), "-l", "mse", "--value")


@case("thousands-of-columns-none-usable", 2, file="wide.csv", contains=("--pred",))
def _(d):
    names = [f"x{i}" for i in range(3000)]
    return ev(text(d, "wide.csv", ",".join(names) + "\n" + ",".join(["1"] * 3000) + "\n"), "-l", "mse")


@case("very-long-line", 0, value=GOOD_MSE)
def _(d):
    long = "z" * (6 << 20)  # a 6 MiB field in a column that is not read (the large-file reader)
    return ev(text(d, "long.csv", "note,y_pred,y_true\n" + f"{long},1.5,1\nb,2,3\nc,0.25,0\n"), "-l", "mse",
              "--value")


@case("very-long-number-field", 3, file="long.csv", column="y_pred", row=2)
def _(d):
    return ev(text(d, "long.csv", "y_pred,y_true\n1,2\n" + "9" * 200_000 + "x,4\n"), "-l", "mse")


@case("one-column-only", 2, file="one.csv", contains=("target",))
def _(d):
    return ev(text(d, "one.csv", "y_pred\n1\n2\n"), "-l", "mse")


@case("duplicate-column-names-csv", 3, file="dup.csv", contains=("duplicate", "y_pred"))
def _(d):
    return ev(text(d, "dup.csv", "y_pred,y_true,y_pred\n1,2,3\n4,5,6\n"), "-l", "mse")


@case("duplicate-column-names-parquet", 3, file="dup.parquet", contains=("duplicate", "y_true"))
def _(d):
    t = pa.Table.from_arrays([pa.array([1.0, 2.0]), pa.array([1.0, 2.0]), pa.array([3.0, 4.0])],
                             names=["y_pred", "y_true", "y_true"])
    return ev(text(d, "dup.parquet", parquet_bytes(t)), "-l", "mse")


# == directories, globs, permissions ==================================================================================
@case("directory-mixed-schemas", 3, file="parts", contains=("schema",))
def _(d):
    (d / "parts").mkdir()
    text(d / "parts", "a.parquet", parquet_bytes())
    text(d / "parts", "b.parquet", parquet_bytes(table().rename_columns(["id", "y_hat", "y_true", "w", "region"])))
    return ev(d / "parts", "-l", "mse")


@case("directory-mixed-types", 3, file="parts", contains=("schema",))
def _(d):
    (d / "parts").mkdir()
    text(d / "parts", "a.parquet", parquet_bytes())
    t = table()
    text(d / "parts", "b.parquet", parquet_bytes(t.set_column(1, "y_pred", t.column("y_pred").cast(pa.float32()))))
    return ev(d / "parts", "-l", "mse")


@case("directory-mixed-formats", 3, file="parts", contains=("mixes",))
def _(d):
    (d / "parts").mkdir()
    text(d / "parts", "a.parquet", parquet_bytes())
    text(d / "parts", "b.csv", GOOD)
    return ev(d / "parts", "-l", "mse")


@case("directory-empty", 3, file="parts", contains=("no readable",))
def _(d):
    (d / "parts").mkdir()
    text(d / "parts", "notes.md", "hello")
    return ev(d / "parts", "-l", "mse")


@case("directory-one-truncated-part", 3, file="parts/b.parquet")
def _(d):
    (d / "parts").mkdir()
    text(d / "parts", "a.parquet", parquet_bytes())
    b = parquet_bytes()
    text(d / "parts", "b.parquet", b[: len(b) - 30])
    return ev(d / "parts", "-l", "mse")


@case("glob-matches-nothing", 3, file="*.parquet", contains=("no file",))
def _(d):
    return ev(d / "*.parquet", "-l", "mse")


@case("missing-file", 3, file="nope.csv", contains=("no such file",))
def _(d):
    return ev(d / "nope.csv", "-l", "mse")


def _deny_read(name):
    """Make ``name`` unreadable: chmod 000 where that works; as root (where it does not), deny it in
    os.access and open() the way the kernel would for another user."""
    def setup(d, monkeypatch):
        p = d / name
        os.chmod(p, 0)
        if os.geteuid() != 0:
            return
        import builtins
        real_access, real_open = os.access, builtins.open
        target = os.path.realpath(p)

        def access(path, mode, *a, **k):
            if isinstance(path, (str, os.PathLike)) and os.path.realpath(path) == target and mode & os.R_OK:
                return False
            return real_access(path, mode, *a, **k)

        def fake_open(path, *a, **k):
            if isinstance(path, (str, os.PathLike)) and os.path.realpath(path) == target:
                raise PermissionError(13, "Permission denied", str(path))
            return real_open(path, *a, **k)
        monkeypatch.setattr(os, "access", access)
        monkeypatch.setattr(builtins, "open", fake_open)
    return setup


@case("unreadable-file", 3, file="secret.csv", contains=("permission",), setup=_deny_read("secret.csv"))
def _(d):
    return ev(text(d, "secret.csv", GOOD), "-l", "mse")


@case("unreadable-labels-file", 3, file="labels.csv", contains=("permission",), setup=_deny_read("labels.csv"))
def _(d):
    text(d, "labels.csv", "y_true\n1\n2\n")
    return ev(text(d, "p.csv", "y_pred\n1\n2\n"), d / "labels.csv", "-l", "mse")


# == values: NaN, inf, -0.0, 1e308, missing ==========================================================================
@case("nan-text", 3, file="n.csv", column="y_true", row=2, contains=("missing", "--nan-policy omit"))
def _(d):
    return ev(text(d, "n.csv", "y_pred,y_true\n1,2\n3,nan\n"), "-l", "mse")


@case("nan-parquet", 3, file="n.parquet", column="y_true", row=2, contains=("NaN value", "--nan-policy omit"))
def _(d):
    return ev(text(d, "n.parquet", parquet_bytes(pa.table({"y_pred": [1.0, 2.0], "y_true": [1.0, math.nan]}))),
              "-l", "mse")


@case("inf-text", 3, file="i.csv", column="y_pred", row=1, contains=("inf",))
def _(d):
    return ev(text(d, "i.csv", "y_pred,y_true\ninf,2\n3,4\n"), "-l", "mse")


@case("minus-inf-parquet", 3, file="i.parquet", column="y_pred", row=5, contains=("-inf",))
def _(d):
    t = table()
    p = t.column("y_pred").to_pylist()
    p[4] = -math.inf
    return ev(text(d, "i.parquet", parquet_bytes(t.set_column(1, "y_pred", pa.array(p)))), "-l", "mse")


@case("nan-weight", 3, file="w.csv", column="w", row=2, contains=("NaN",))
def _(d):
    return ev(text(d, "w.csv", "y_pred,y_true,w\n1,2,1\n3,4,nan\n"), "-l", "mse", "-w", "w")


@case("negative-weight", 3, file="w.csv", column="w", row=2, contains=("negative",))
def _(d):
    return ev(text(d, "w.csv", "y_pred,y_true,w\n1,2,1\n3,4,-0.5\n"), "-l", "mse", "-w", "w")


@case("all-zero-weights", 0, value=math.nan, output=False)
def _(d):
    return ev(text(d, "w.csv", "y_pred,y_true,w\n1,2,0\n3,4,0\n"), "-l", "mse", "-w", "w", "--value")


@case("empty-field", 3, file="e.csv", column="y_true", row=2, contains=("missing",))
def _(d):
    return ev(text(d, "e.csv", "y_pred,y_true\n1,2\n3,\n"), "-l", "mse")


@case("null-in-parquet", 3, file="e.parquet", column="y_pred", row=3, contains=("missing",))
def _(d):
    t = pa.table({"y_pred": pa.array([1.0, 2.0, None]), "y_true": pa.array([1.0, 2.0, 3.0])})
    return ev(text(d, "e.parquet", parquet_bytes(t)), "-l", "mse")


@case("all-null-column", 3, file="e.jsonl", column="y_pred")
def _(d):
    return ev(text(d, "e.jsonl", '{"y_pred": null, "y_true": 1}\n{"y_pred": null, "y_true": 2}\n'), "-l", "mse")


@case("minus-zero", 0, value=0.0)
def _(d):
    return ev(text(d, "z.csv", "y_pred,y_true\n-0.0,0.0\n0.0,-0.0\n"), "-l", "mse", "--value")


@case("minus-zero-msle", 0, value=0.0)
def _(d):
    return ev(text(d, "z.csv", "y_pred,y_true\n-0.0,0\n0,-0.0\n"), "-l", "msle", "--value")


@case("1e308-equal", 0, value=0.0)
def _(d):
    return ev(text(d, "b.csv", "y_pred,y_true\n1e308,1e308\n-1e308,-1e308\n"), "-l", "mae", "--value")


@case("1e308-half", 0, value=0.5e308)
def _(d):
    return ev(text(d, "b.csv", "y_pred,y_true\n1e308,0\n0,0\n"), "-l", "mae", "--value")


@case("1e308-overflow", 0, value=math.inf)
def _(d):  # finite inputs whose squared error exceeds float64: the mean is inf, not an error
    return ev(text(d, "b.csv", "y_pred,y_true\n1e308,-1e308\n1,2\n"), "-l", "mse", "--value")


@case("subnormal-values", 0, value=mse([(5e-324, 0.0), (1e-310, 0.0)]))
def _(d):
    return ev(text(d, "s.csv", "y_pred,y_true\n5e-324,0\n1e-310,0\n"), "-l", "mse", "--value")


# == binary / multiclass: probabilities and labels =====================================================================
@case("bce-probability-exactly-0-and-1", 0, value=100.0 / 2)
def _(d):  # torch clamps log(p) at -100: one certain hit (0) and one certain miss (100)
    return ev(text(d, "b.csv", "p,y\n1,1\n0,1\n"), "-l", "bce", "--pred", "p", "--target", "y", "--value")


@case("bce-probability-above-1", 3, file="b.csv", column="p", row=2, contains=("1.0000001",))
def _(d):
    return ev(text(d, "b.csv", "p,y\n0.5,1\n1.0000001,0\n"), "-l", "bce", "--pred", "p", "--target", "y")


@case("bce-probability-below-0", 3, file="b.csv", column="p", row=3)
def _(d):
    return ev(text(d, "b.csv", "p,y\n0.5,1\n0.25,0\n-1e-12,0\n"), "-l", "bce", "--pred", "p", "--target", "y")


@case("brier-label-out-of-range", 3, file="b.csv", column="y", row=2)
def _(d):
    return ev(text(d, "b.csv", "p,y\n0.5,1\n0.5,2\n"), "-l", "brier", "--pred", "p", "--target", "y")


@case("hinge-fractional-label", 3, file="b.csv", column="y", row=1)
def _(d):
    return ev(text(d, "b.csv", "s,y\n0.5,0.5\n0.5,1\n"), "-l", "hinge", "--pred", "s", "--target", "y")


@case("log-loss-three-labels-one-column", 3, file="b.csv", column="y")
def _(d):
    return ev(text(d, "b.csv", "p,y\n0.5,0\n0.5,1\n0.5,2\n"), "-l", "log_loss", "--pred", "p", "--target", "y")


@case("cross-entropy-label-out-of-range", 3, file="m.csv", column="y", row=2)
def _(d):
    return ev(text(d, "m.csv", "s_0,s_1,s_2,y\n1,2,3,0\n1,2,3,5\n"), "-l", "cross_entropy", "--pred", "s_*",
              "--target", "y")


@case("cross-entropy-negative-label", 3, file="m.csv", column="y", row=1)
def _(d):
    return ev(text(d, "m.csv", "s_0,s_1,s_2,y\n1,2,3,-2\n1,2,3,1\n"), "-l", "cross_entropy", "--pred", "s_*",
              "--target", "y")


@case("cross-entropy-fractional-label", 3, file="m.csv", column="y", row=2)
def _(d):
    return ev(text(d, "m.csv", "s_0,s_1,s_2,y\n1,2,3,0\n1,2,3,1.5\n"), "-l", "cross_entropy", "--pred", "s_*",
              "--target", "y")


@case("cross-entropy-unknown-string-label", 3, file="m.csv", column="y", contains=("dog",))
def _(d):
    return ev(text(d, "m.csv", "s_0,s_1,y\n1,2,cat\n1,2,dog\n"), "-l", "cross_entropy", "--pred", "s_*",
              "--target", "y", "--classes", "cat,bird")


@case("nll-probabilities-not-log", 3, file="m.csv", column="s_0,s_1,s_2")
def _(d):  # log-probabilities must be <= 0
    return ev(text(d, "m.csv", "s_0,s_1,s_2,y\n0.2,0.3,0.5,0\n"), "-l", "nll", "--pred", "s_*", "--target", "y")


@case("js-divergence-negative-probability", 3, file="m.csv", row=2)
def _(d):
    return ev(text(d, "m.csv", "p_0,p_1,y\n0.5,0.5,0\n1.5,-0.5,1\n"), "-l", "js_divergence", "--pred", "p_*",
              "--target", "y")


# == masks, boxes, embeddings, extra roles =============================================================================
def _list_parquet(d, name, **cols):
    return text(d, name, parquet_bytes(pa.table({k: pa.array(v) for k, v in cols.items()})))


@case("dice-mask-value-out-of-range", 3, file="m.parquet", column="mask", row=2)
def _(d):
    return ev(_list_parquet(d, "m.parquet", p=[[0.5, 0.5], [0.2, 0.9]], mask=[[0, 1], [1, 3]]), "-l", "dice",
              "--pred", "p", "--target", "mask")


@case("dice-ragged-mask-lists", 3, file="m.parquet", column="p", row=2, contains=("length",))
def _(d):
    return ev(_list_parquet(d, "m.parquet", p=[[0.5, 0.5], [0.2]], mask=[[0, 1], [1]]), "-l", "dice",
              "--pred", "p", "--target", "mask")


@case("dice-mask-shapes-differ", 3, file="m.parquet")
def _(d):
    return ev(_list_parquet(d, "m.parquet", p=[[0.5, 0.5, 0.1], [0.2, 0.1, 0.3]], mask=[[0, 1], [1, 0]]),
              "-l", "dice", "--pred", "p", "--target", "mask")


@case("box-x2-before-x1", 3, file="b.csv", row=2)
def _(d):
    hdr = "px1,py1,px2,py2,x1,y1,x2,y2"
    return ev(text(d, "b.csv", hdr + "\n0,0,2,2,0,0,1,1\n5,0,2,2,0,0,1,1\n"), "-l", "giou", "--pred",
              "px1,py1,px2,py2", "--target", "x1,y1,x2,y2")


@case("box-three-coordinates", 3, file="b.csv", column="a,b,c", contains=("4",))
def _(d):
    return ev(text(d, "b.csv", "a,b,c,x1,y1,x2,y2\n0,0,2,0,0,1,1\n"), "-l", "box_iou", "--pred", "a,b,c",
              "--target", "x1,y1,x2,y2")


@case("embedding-dimensions-differ", 3, file="e.parquet")
def _(d):
    return ev(_list_parquet(d, "e.parquet", a=[[1.0, 0.0], [0.0, 1.0]], b=[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]],
                            y=[1, -1]), "-l", "cosine_embedding", "--pred", "a", "--target", "b", "--label", "y")


@case("cosine-embedding-label-not-pm1", 3, file="e.parquet", column="y", row=2)
def _(d):
    return ev(_list_parquet(d, "e.parquet", a=[[1.0, 0.0], [0.0, 1.0]], b=[[1.0, 0.0], [0.0, 1.0]], y=[1, 0]),
              "-l", "cosine_embedding", "--pred", "a", "--target", "b", "--label", "y")


@case("gaussian-nll-negative-variance", 3, file="g.csv", column="v", row=2)
def _(d):
    return ev(text(d, "g.csv", "y_pred,y_true,v\n1,2,0.5\n1,2,-0.5\n"), "-l", "gaussian_nll", "--var", "v")


@case("msle-negative-target", 3, file="g.csv", column="y_true", row=1)
def _(d):
    return ev(text(d, "g.csv", "y_pred,y_true\n1,-2\n1,2\n"), "-l", "msle")


@case("poisson-deviance-negative-prediction", 3, file="g.csv", column="y_pred", row=2)
def _(d):
    return ev(text(d, "g.csv", "y_pred,y_true\n1,2\n-1,2\n"), "-l", "poisson_deviance")


@case("gamma-deviance-zero-target", 3, file="g.csv", column="y_true", row=2)
def _(d):
    return ev(text(d, "g.csv", "y_pred,y_true\n1,2\n1,0\n"), "-l", "gamma_deviance")


@case("string-column-as-prediction", 3, file="r.csv", column="region", row=1)
def _(d):
    return ev(text(d, "r.csv", "region,y_true\nnorth,1\nsouth,2\n"), "-l", "mse", "--pred", "region")


# == two files: mismatched lengths, joins ==============================================================================
@case("mismatched-lengths", 3, file="p.csv", contains=("t.csv", "3", "2"))
def _(d):
    return ev(text(d, "p.csv", "y_pred\n1\n2\n3\n"), text(d, "t.csv", "y_true\n1\n2\n"), "-l", "mse")


@case("mismatched-lengths-labels-longer", 3, file="p.parquet", contains=("t.csv",))
def _(d):
    p = text(d, "p.parquet", parquet_bytes(pa.table({"y_pred": [1.0, 2.0]})))
    return ev(p, text(d, "t.csv", "y_true\n1\n2\n3\n4\n"), "-l", "mse", "--batch-size", "1")


@case("join-unmatched-keys", 3, file="p.csv", contains=("--inner",))
def _(d):
    return ev(text(d, "p.csv", "id,y_pred\n1,1\n2,2\n9,3\n"), text(d, "t.csv", "id,y_true\n1,1\n2,2\n3,3\n"),
              "--on", "id", "-l", "mse")


@case("join-duplicate-keys", 3, file="t.csv", column="id", contains=("duplicate",))
def _(d):
    return ev(text(d, "p.csv", "id,y_pred\n1,1\n2,2\n"), text(d, "t.csv", "id,y_true\n1,1\n1,2\n2,3\n"),
              "--on", "id", "-l", "mse")


@case("join-key-types-differ", 3, file="p.csv", column="id")
def _(d):
    return ev(text(d, "p.csv", "id,y_pred\n1,1\n2,2\n"), text(d, "t.csv", "id,y_true\na,1\nb,2\n"),
              "--on", "id", "-l", "mse")


@case("join-key-missing", 3, file="t.csv", column="id")
def _(d):
    return ev(text(d, "p.csv", "id,y_pred\n1,1\n"), text(d, "t.csv", "key,y_true\n1,1\n"), "--on", "id", "-l", "mse")


# == losses and parameters =============================================================================================
_P = [("unknown-loss", "msee", ("msee", "mse")), ("unknown-parameter", "huber:delat=1", ("delat", "delta")),
      ("parameter-out-of-range", "huber:delta=-1", ("delta", "-1")),
      ("parameter-nan", "quantile:alpha=nan", ("alpha",)), ("parameter-empty", "huber:delta=", ("delta",)),
      ("parameter-inf", "quantile:alpha=inf", ("alpha",)),
      ("parameter-not-a-number", "smooth_l1:beta=abc", ("beta", "abc")),
      ("int-parameter-fractional", "multi_margin:p=1.5", ("p",)),
      ("bool-parameter-garbage", "poisson_nll:full=maybe", ("full", "maybe")),
      ("choice-parameter-unknown", "box_iou:box_format=xyz", ("box_format", "xyz")),
      ("label-smoothing-above-1", "cross_entropy:label_smoothing=1.5", ("label_smoothing",)),
      ("tweedie-power-forbidden", "tweedie_deviance:power=0.5", ("power",)),
      ("parameter-before-name", "delta=1", ("delta=1",)), ("empty-loss-list", ",", ("loss",)),
      ("loss-twice", "mse,mse", ("twice",)), ("colon-without-value", "huber:delta", ("huber:delta",))]
for _id, _loss, _words in _P:
    case(_id, 2, contains=_words)(lambda d, loss=_loss: ev(text(d, "g.csv", GOOD), "-l", loss))


@case("sum-of-rmse", 2, contains=("rmse",))
def _(d):
    return ev(text(d, "g.csv", GOOD), "-l", "rmse", "-r", "sum")


@case("class-weights-not-numbers", 2, click_usage=True, contains=("--class-weights",))
def _(d):
    return ev(text(d, "g.csv", GOOD), "-l", "cross_entropy", "--class-weights", "a,b")


@case("class-weights-for-mse", 2, contains=("class weights",))
def _(d):
    return ev(text(d, "g.csv", GOOD), "-l", "mse", "--class-weights", "1,2")


@case("logits-flag-for-mse", 2, contains=("mse",))
def _(d):
    return ev(text(d, "g.csv", GOOD), "-l", "mse", "--logits")


@case("column-option-unused", 2, contains=("var",))
def _(d):
    return ev(text(d, "g.csv", GOOD), "-l", "mse", "--var", "v")


@case("missing-column", 3, file="g.csv", column="nope", contains=("y_pred",))
def _(d):
    return ev(text(d, "g.csv", GOOD), "-l", "mse", "--pred", "nope")


@case("same-column-twice", 2, column="y_pred")
def _(d):
    return ev(text(d, "g.csv", GOOD), "-l", "mse", "--pred", "y_pred", "--target", "y_pred")


@case("batch-size-zero", 2, click_usage=True, contains=("--batch-size",))
def _(d):
    return ev(text(d, "g.csv", GOOD), "-l", "mse", "--batch-size", "0")


# == gates (--fail-if) and intervals ===================================================================================
_G = [("gate-no-threshold", "mse >", ()), ("gate-no-operator", "mse 0.25", ()),
      ("gate-threshold-not-number", "mse > abc", ("abc",)), ("gate-unknown-loss", "msee > 1", None),
      ("gate-loss-not-evaluated", "mae > 1", ("mae",)), ("gate-group-without-by", "mse (north) > 1", ("--by",)),
      ("gate-empty", "", ()), ("gate-double-operator", "mse >> 1", ()),
      ("gate-unclosed-group", "mse (region=a > 1", ()), ("gate-trailing-junk", "mse > 1 and mae > 2", ())]
for _id, _expr, _words in _G:
    case(_id, 2, contains=("--fail-if",) + _words if _words is not None else ("msee",))(
        lambda d, e=_expr: ev(text(d, "g.csv", GOOD), "-l", "mse", "--fail-if", e))


@case("gate-unknown-group", 2, contains=("--fail-if", "nowhere"))
def _(d):
    return ev(text(d, "g.csv", "y_pred,y_true,r\n1,2,a\n3,4,b\n"), "-l", "mse", "--by", "r",
              "--fail-if", "mse (nowhere) > 1")


@case("ci-level-out-of-range", 2, contains=("1.5",))
def _(d):
    return ev(text(d, "g.csv", GOOD), "-l", "mse", "--ci", "1.5")


@case("gate-fails-exit-1", 1, output=False)
def _(d):  # not an error: the gate holds, everything is printed, exit 1
    return ev(text(d, "g.csv", GOOD), "-l", "mse", "--fail-if", "mse > 0.1", "--value")


# == configuration files (lossctl check) ===============================================================================
def _cfg(d, body: str):
    text(d, "g.csv", GOOD)
    text(d, "lossctl.toml", body)
    return ["check", "--config", str(d / "lossctl.toml")]


_C = [("config-toml-syntax", "[checks.a\ninputs = ['g.csv']\n", ("line",)),
      ("config-missing-inputs", "[checks.a]\nlosses = ['mse']\n", ("inputs",)),
      ("config-missing-losses", "[checks.a]\ninputs = ['g.csv']\n", ("losses",)),
      ("config-unknown-loss", "[checks.a]\ninputs = ['g.csv']\nlosses = ['mse', 'msee']\n", ("msee", "line 3")),
      ("config-unknown-key", "[checks.a]\ninputs = ['g.csv']\nlosses = ['mse']\nlosess = 1\n", ("losess",)),
      ("config-wrong-type", "[checks.a]\ninputs = 'g.csv'\nlosses = 5\n", ()),
      ("config-bad-gate", "[checks.a]\ninputs = ['g.csv']\nlosses = ['mse']\nfail_if = ['mse >']\n", ("fail_if",)),
      ("config-bad-parameter", "[checks.a]\ninputs = ['g.csv']\nlosses = ['huber:delta=-1']\n", ("delta",)),
      ("config-no-checks", "[defaults]\nseed = 1\n", ("check",)),
      ("config-binary-junk", "\x00\x01\x02\xff", ())]
for _id, _body, _words in _C:
    case(_id, 2, file="lossctl.toml", contains=_words, output=False)(lambda d, b=_body: _cfg(d, b))


@case("config-input-missing", 3, file="missing.csv", output=False)
def _(d):
    return _cfg(d, "[checks.a]\ninputs = ['missing.csv']\nlosses = ['mse']\n")


@case("config-input-has-nan", 3, column="y_true", row=2, output=False)
def _(d):
    text(d, "n.csv", "y_pred,y_true\n1,2\n3,nan\n")
    return _cfg(d, "[checks.a]\ninputs = ['n.csv']\nlosses = ['mse']\n")


@case("config-file-missing", 2, file="nope.toml", output=False)
def _(d):
    return ["check", "--config", str(d / "nope.toml")]


@case("config-unknown-check-name", 2, contains=("nightly",), output=False)
def _(d):
    return _cfg(d, "[checks.a]\ninputs = ['g.csv']\nlosses = ['mse']\n")[:1] + ["nightly"] + \
        ["--config", str(d / "lossctl.toml")]


# == remote inputs ======================================================================================================
@case("s3-endpoint-refused", 3, file="s3://bucket/x.parquet", contains=("127.0.0.1:1",))
def _(d):
    return ["eval", "s3://bucket/x.parquet", "--endpoint-url", "http://127.0.0.1:1", "-l", "mse"]


@case("http-refused", 3, file="http://127.0.0.1:1/x.csv")
def _(d):
    return ["eval", "http://127.0.0.1:1/x.csv", "-l", "mse"]


@case("unknown-protocol", 2, file="foo://x/y.csv", contains=("foo",))
def _(d):
    return ["eval", "foo://x/y.csv", "-l", "mse"]


@case("s3-bad-endpoint-url", 2, contains=("--endpoint-url",))
def _(d):
    return ["eval", "s3://bucket/x.parquet", "--endpoint-url", "ftp://127.0.0.1:1", "-l", "mse"]


# == output paths =======================================================================================================
@case("output-missing-directory", 2, file="no/such/o.parquet", contains=("does not exist",), output=False)
def _(d):
    return ev(text(d, "g.csv", GOOD), "-l", "mse", "-r", "none", "-o", d / "no" / "such" / "o.parquet")


@case("output-equal-to-input", 2, contains=("input",), output=False)
def _(d):
    p = text(d, "g.csv", GOOD)
    return ev(p, "-l", "mse", "-r", "none", "-o", p, "--force")


@case("output-inside-input-directory", 2, contains=("input",), output=False)
def _(d):
    (d / "parts").mkdir()
    text(d / "parts", "a.parquet", parquet_bytes())
    return ev(d / "parts", "-l", "mse", "-r", "none", "-o", d / "parts" / "o.parquet", "--force")


@case("output-equal-to-labels-by-symlink", 2, contains=("input",), output=False)
def _(d):
    t = text(d, "t.csv", "y_true\n1\n2\n")
    os.symlink(t, d / "link.csv")
    return ev(text(d, "p.csv", "y_pred\n1\n2\n"), t, "-l", "mse", "-o", d / "link.csv", "--force")


@case("output-exists-without-force", 2, contains=("--force",), output=False)
def _(d):
    text(d, "o.csv", "keep me\n")
    return ev(text(d, "g.csv", GOOD), "-l", "mse", "-r", "none", "-o", d / "o.csv")


@case("output-is-a-directory", 2, output=False)
def _(d):
    (d / "o.parquet").mkdir()
    return ev(text(d, "g.csv", GOOD), "-l", "mse", "-r", "none", "-o", d / "o.parquet", "--force")


@case("output-unknown-extension", 2, contains=(".xlsx",), output=False)
def _(d):
    return ev(text(d, "g.csv", GOOD), "-l", "mse", "-r", "none", "-o", d / "o.xlsx")


@case("junit-report-in-missing-directory", 2, contains=("no",), output=False)
def _(d):
    return _cfg(d, "[checks.a]\ninputs = ['g.csv']\nlosses = ['mse']\n") + ["--junit-xml", str(d / "no" / "r.xml")]


# == fuzz findings (tests/test_fuzz.py): inputs that once crashed or broke the one-line rule, kept fixed =========
@case("fuzz-column-names-not-utf8", 3, file="u.csv", contains=("UTF-8",))
def _(d):  # the first byte of boxes.csv flipped: pyarrow's schema.names raised UnicodeDecodeError (exit 70)
    return ev(text(d, "u.csv", b'\xa2"y_pred","y_true"\n1,2\n'), "-l", "mse", "--pred", "y_pred", "--target", "y_true")


@case("fuzz-newline-in-column-name", 3, file="nl.csv", column="nope", contains=("\\n",))
def _(d):  # a quoted header holding a newline was echoed raw: a two-line error
    return ev(text(d, "nl.csv", '"y_pred\n",y_true\n1,2\n'), "-l", "mse", "--pred", "nope")


@case("fuzz-group-column-not-utf8", 3, file="g.csv", column="region", contains=("UTF-8",))
def _(d):  # a byte flipped inside a text column made it Arrow binary: primitive_to_numpy raised TypeError (70)
    return ev(text(d, "g.csv", b"y_pred,y_true,region\n1,2,north\n3,4,so\xffuth\n"), "-l", "mse", "--by", "region")


@case("fuzz-join-key-not-utf8", 3, file="p.csv", column="id", contains=("UTF-8",))
def _(d):
    return ev(text(d, "p.csv", b"id,y_pred\na\xff,1\nb,2\n"), text(d, "t.csv", "id,y_true\na,1\nb,2\n"), "--on", "id",
              "-l", "mse")


@case("group-by-list-column", 3, file="l.parquet", column="tags", contains=("group",))
def _(d):
    return ev(_list_parquet(d, "l.parquet", y_pred=[1.0, 2.0], y_true=[1.0, 3.0], tags=[[1, 2], [3]]), "-l", "mse",
              "--by", "tags")


@case("group-by-timestamp-column", 0, value=0.5)
def _(d):
    import datetime as dt
    t = pa.table({"y_pred": [1.0, 2.0], "y_true": [1.0, 3.0],
                  "day": pa.array([dt.date(2024, 1, 1), dt.date(2024, 1, 2)])})
    return ev(text(d, "ts.parquet", parquet_bytes(t)), "-l", "mse", "--by", "day", "--value")


@case("tab-in-error-value", 3, file="t.csv", column="y_pred", row=1, contains=("\\t",))
def _(d):
    return ev(text(d, "t.csv", 'y_pred,y_true\n"1\t2",3\n'), "-l", "mse")


@case("fuzz-arrow-corrupt-length", 3, file="f.arrow", contains=("corrupt",))
def _(d):  # one bit of sample_data/regression.arrow flipped: a buffer length of 2**48, ArrowMemoryError (exit 70)
    data = bytearray((Path(__file__).resolve().parents[2] / "sample_data" / "regression.arrow").read_bytes())
    data[4478] ^= 1
    return ev(text(d, "f.arrow", bytes(data)), "-l", "gaussian_nll", "--var", "var")


@case("output-hard-link-to-input", 2, contains=("input",), output=False)
def _(d):
    p = text(d, "g.csv", GOOD)
    os.link(p, d / "same.csv")
    return ev(p, "-l", "mse", "-r", "none", "-o", d / "same.csv", "--force")


# == column types ========================================================================================================
@case("struct-column-as-prediction", 3, file="s.parquet", column="y_pred", contains=("struct",))
def _(d):
    t = pa.table({"y_pred": pa.array([{"a": 1}, {"a": 2}]), "y_true": [1.0, 2.0]})
    return ev(text(d, "s.parquet", parquet_bytes(t)), "-l", "mse")


@case("timestamp-column-as-prediction", 3, file="t.parquet", column="y_pred", contains=("timestamp",))
def _(d):
    import datetime as dt
    t = pa.table({"y_pred": pa.array([dt.datetime(2024, 1, 1), dt.datetime(2024, 1, 2)]), "y_true": [1.0, 2.0]})
    return ev(text(d, "t.parquet", parquet_bytes(t)), "-l", "mse")


@case("decimal-column", 0, value=((1.5 - 1.0) ** 2 + (2.25 - 2.0) ** 2) / 2)
def _(d):
    import decimal
    t = pa.table({"y_pred": pa.array([decimal.Decimal("1.50"), decimal.Decimal("2.25")]), "y_true": [1.0, 2.0]})
    return ev(text(d, "dec.parquet", parquet_bytes(t)), "-l", "mse", "--value")


@case("dictionary-encoded-floats", 0, value=0.25)
def _(d):
    t = pa.table({"y_pred": pa.array([1.5, 2.5, 1.5]).dictionary_encode(), "y_true": [1.0, 2.0, 1.0]})
    return ev(text(d, "dict.parquet", parquet_bytes(t)), "-l", "mse", "--value")


@case("float16-column", 0, value=0.125)
def _(d):
    t = pa.table({"y_pred": pa.array(np.array([1.5, 2.0], dtype=np.float16)), "y_true": [1.0, 2.0]})
    return ev(text(d, "f16.parquet", parquet_bytes(t)), "-l", "mse", "--value")


@case("boolean-labels", 0, value=-(math.log(0.9) + math.log(0.8)) / 2)
def _(d):
    t = pa.table({"p": [0.9, 0.2], "y": pa.array([True, False])})
    return ev(text(d, "b.parquet", parquet_bytes(t)), "-l", "bce", "--pred", "p", "--target", "y", "--value")


@case("no-usable-columns-parquet", 2, file="n.parquet", contains=("--pred",))
def _(d):
    return ev(text(d, "n.parquet", parquet_bytes(pa.table({"a": pa.array([None, None], pa.null())}))), "-l", "mse")


# == explicit --input-format that contradicts the content =================================================================
@case("input-format-contradicts-content", 3, file="p.parquet", contains=("--input-format parquet",))
def _(d):
    return ev(text(d, "p.parquet", parquet_bytes()), "-l", "mse", "--input-format", "csv")


@case("csv-read-as-jsonl", 3, file="g.csv", row=1, contains=("not valid JSON",))
def _(d):
    return ev(text(d, "g.csv", GOOD), "-l", "mse", "--input-format", "jsonl")


@case("jsonl-array-line", 3, file="a.jsonl", row=2, contains=("an array",))
def _(d):
    return ev(text(d, "a.jsonl", '{"y_pred": 1, "y_true": 2}\n[1, 2]\n'), "-l", "mse")


@case("csv-stdin-read-as-arrow", 3, file="<stdin>", stdin=GOOD.encode())
def _(d):
    return ["eval", "-", "-l", "mse", "--input-format", "arrow"]


@case("output-matched-by-input-glob", 2, contains=("input",), output=False)
def _(d):  # found in review: a glob input's file was replaced by -o ... --force
    (d / "parts").mkdir()
    text(d / "parts", "a.parquet", parquet_bytes())
    text(d / "parts", "b.parquet", parquet_bytes())
    return ev(d / "parts" / "*.parquet", "-l", "mse", "-r", "none", "-o", d / "parts" / "b.parquet", "--force")


# == group and key columns ==============================================================================================
@case("group-key-nan", 3, file="g.parquet", column="g", row=2, contains=("nan",))
def _(d):  # found in review: a NaN group key reached the JSON writer (allow_nan=False): internal error 70
    t = pa.table({"y_pred": [1.0, 2.0, 3.0], "y_true": [1.0, 1.0, 1.0], "g": [1.0, math.nan, 2.0]})
    return ev(text(d, "g.parquet", parquet_bytes(t)), "-l", "mse", "--by", "g", "--format", "json")


@case("group-key-missing", 3, file="g.parquet", column="g", row=3, contains=("missing",))
def _(d):  # (in CSV an empty text field is the empty string, a group of its own)
    t = pa.table({"y_pred": [1.0, 2.0, 3.0], "y_true": [1.0, 1.0, 1.0], "g": ["a", "b", None]})
    return ev(text(d, "g.parquet", parquet_bytes(t)), "-l", "mse", "--by", "g", "--batch-size", "2")


@case("group-key-missing-after-omitted-rows", 3, file="g.parquet", column="g", row=4, contains=("missing",))
def _(d):  # --nan-policy omit drops row 2; the row number still counts the input rows
    t = pa.table({"y_pred": [1.0, math.nan, 3.0, 4.0], "y_true": [1.0] * 4, "g": ["a", "b", "a", None]})
    return ev(text(d, "g.parquet", parquet_bytes(t)), "-l", "mse", "--by", "g", "--nan-policy", "omit")


@case("join-key-inf", 3, file="p.parquet", column="id", contains=("inf",))
def _(d):
    p = text(d, "p.parquet", parquet_bytes(pa.table({"id": [1.0, math.inf], "y_pred": [1.0, 2.0]})))
    return ev(p, text(d, "t.csv", "id,y_true\n1,1\n2,2\n"), "--on", "id", "-l", "mse")


@case("stdin-twice", 2, contains=("standard input",), stdin=GOOD.encode())
def _(d):
    return ["eval", "-", "-", "-l", "mse"]


# == datasets of several CSV / Arrow files ===============================================================================
def _csv_dir(d, second: str):
    (d / "parts").mkdir()
    text(d / "parts", "a.csv", "y_pred,y_true\n1,2\n2,2\n")
    text(d / "parts", "b.csv", second)
    return d / "parts"


@case("csv-directory-other-header", 3, file="parts/b.csv", contains=("header",))
def _(d):  # found in review: the byte-range reader named b.csv's columns after a.csv's header (y_hat read as y_pred)
    return ev(_csv_dir(d, "y_hat,y_true\n5,2\n"), "-l", "mse")


@case("csv-directory-columns-reordered", 3, file="parts/b.csv", contains=("order",))
def _(d):  # found in review: columns matched by position, so y_true was read as y_pred and back: a silent wrong value
    return ev(_csv_dir(d, "y_true,y_pred\n2,5\n"), "-l", "mse")


@case("csv-directory-same-header", 0, value=mse([(1, 2), (2, 2), (5, 2)]))
def _(d):
    return ev(_csv_dir(d, "y_pred,y_true\n5,2\n"), "-l", "mse", "--value")


@case("arrow-directory-mixed-schemas", 3, file="parts/b.arrow", contains=("schema",))
def _(d):
    (d / "parts").mkdir()
    text(d / "parts", "a.arrow", arrow_bytes())
    text(d / "parts", "b.arrow", arrow_bytes(table().rename_columns(["id", "y_hat", "y_true", "w", "region"])))
    return ev(d / "parts", "-l", "mse")


@case("csv-glob-other-header", 3, file="parts/b.csv", contains=("header",))
def _(d):
    return ev(_csv_dir(d, "y_hat,y_true\n5,2\n") / "*.csv", "-l", "mse")
