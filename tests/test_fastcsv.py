"""lossctl's own CSV number parser (lossctl/_fastcsv.c, lossctl/io/fastcsv.py) agrees with pyarrow.

Every value it returns must be the double pyarrow (and Python's float(), which rounds correctly) gives the
same text, bit for bit; anything it does not take it must hand back (-1), so pyarrow parses it.  And the
reader must really use it for plain numbers, or all of this tests nothing.
"""
from __future__ import annotations

import random
import shutil
import struct
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lossctl.io import fastcsv, sources

from conftest import invoke

ROOT = Path(__file__).resolve().parents[1]
ext = fastcsv._ext
needs_ext = pytest.mark.skipif(ext is None, reason="lossctl._fastcsv is not built (no C compiler); "
                                                   "test_the_extension_is_built says why")


def test_the_extension_is_built():
    """Where a C compiler exists (as here and in CI) the extension must have been built, else every test
    below would skip and the fast path would go untested."""
    if not (shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")):
        pytest.skip("no C compiler on this machine: lossctl parses CSV with pyarrow only")
    assert ext is not None, "lossctl/_fastcsv.c is not built: pip install -e . (see README)"
    assert ext.VERSION == 2


def test_the_powers_of_five_table_is_current():
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import gen_pow5
    finally:
        sys.path.pop(0)
    assert (ROOT / "lossctl" / "_pow5.h").read_text() == gen_pow5.header()
    # and the table is what it says: T = floor(5^q / 2^B), 2^127 <= T < 2^128
    for q, t, b in gen_pow5.rows():
        exact = Fraction(5) ** q / Fraction(2) ** b
        assert t == int(exact) and 1 << 127 <= t < 1 << 128


# -- values ----------------------------------------------------------------------------------------------
def _parse(lines: list[str], kind: int = 1):
    """(rows or -1, values) of a one-column buffer."""
    data = ("\n".join(lines) + "\n").encode()
    out = np.zeros(len(lines) + 1, dtype=np.float64 if kind == 1 else np.int64)
    rows = ext.parse(data, ord(","), bytes([kind]), [out])
    return rows, out[: max(rows, 0)]


def _bits(x: float) -> int:
    return struct.unpack("<q", struct.pack("<d", x))[0]


def _check_floats(strings: list[str], must_take: bool = False) -> int:
    """Each string the parser takes gives float(s) bit for bit (and pyarrow's double); returns how many it
    took.  ``must_take``: all of them (plain numbers of normal doubles, which it must not hand back)."""
    rows, got = _parse(strings)
    if rows == len(strings):
        taken = list(zip(strings, got))
    else:
        assert rows == -1 and not must_take, "a plain number was handed back"
        taken = []
        for s in strings:
            r, v = _parse([s])
            assert r in (1, -1)
            if r == 1:
                taken.append((s, v[0]))
    for s, v in taken:
        assert _bits(float(v)) == _bits(float(s)), (s, float(v), float(s))
    if taken:  # pyarrow agrees (one parse of the whole column)
        text = "x\n" + "\n".join(s for s, _ in taken) + "\n"
        ref = pcsv.read_csv(pa.BufferReader(text.encode()),
                            convert_options=pcsv.ConvertOptions(column_types={"x": pa.float64()}))
        mine = np.array([v for _, v in taken])
        assert np.array_equal(ref.column(0).to_numpy().view(np.int64), mine.view(np.int64))
    return len(taken)


@needs_ext
def test_shortest_reprs_of_doubles_round_trip():
    rng = random.Random(7)
    mags = [rng.uniform(-1, 1) * 10.0 ** rng.randint(-300, 300) for _ in range(30000)]
    unit = [rng.random() for _ in range(30000)] + [-rng.random() for _ in range(10000)]
    bits = [struct.unpack("<d", struct.pack("<Q", rng.getrandbits(64)))[0] for _ in range(30000)]
    bits = [x for x in bits if np.isfinite(x) and (x == 0 or abs(x) >= 2.2250738585072014e-308)]
    for xs in (mags, unit, bits):
        # repr is what pandas, polars and pyarrow write: 17 significant digits at most, all taken
        assert _check_floats([repr(x) for x in xs], must_take=True) == len(xs)
    # the other common writers: fixed digits, %.17g, exponents with a sign and leading zeros
    assert _check_floats([f"{x:.6f}" for x in unit] + [f"{x:.17g}" for x in mags] + [f"{x:.8e}" for x in mags],
                         must_take=True) > 0


def _decimal(rng: random.Random) -> str:
    nd = rng.randint(1, 22)
    d = "".join(rng.choice("0123456789") for _ in range(nd))
    k = rng.randint(1, nd)
    s = d[:k] + ("." + d[k:] if k < nd else "")
    if rng.random() < 0.6:
        s += rng.choice("eE") + rng.choice(["", "+", "-"]) + str(rng.randint(0, 330)).zfill(rng.randint(1, 4))
    return rng.choice(["", "-"]) + s


@needs_ext
def test_random_decimals_round_correctly_or_are_handed_back():
    rng = random.Random(11)
    strings = [_decimal(rng) for _ in range(60000)]
    taken = _check_floats(strings)
    assert taken > 30000  # most are plain numbers of 19 digits or fewer in the normal range


@settings(max_examples=300, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False), st.sampled_from(["r", ".17g", ".15e", ".3f", ".20f"]))
def test_hypothesis_floats(x, fmt):
    if ext is None:
        pytest.skip("extension not built")
    _check_floats([repr(x) if fmt == "r" else format(x, fmt)])


@needs_ext
def test_half_way_cases_round_to_even_or_are_handed_back():
    """Decimals exactly half-way between two doubles (the one case the 128-bit product cannot decide) and
    their neighbours one digit off, at 17-19 significant digits."""
    rng = random.Random(3)
    strings = []
    for _ in range(3000):
        m = rng.getrandbits(52) | (1 << 52)
        k = rng.randint(-3, 11)  # the half-way point (2m+1) * 2^(k-1) in at most 19 digits
        v = Fraction(2 * m + 1) * Fraction(2) ** (k - 1)
        if v.denominator == 1:
            s = str(v.numerator)
        else:
            places = {2: 1, 4: 2, 8: 3, 16: 4}[v.denominator]
            s = f"{int(v)}.{str(int((v - int(v)) * 10 ** places)).zfill(places)}"
        if len(s.replace(".", "")) > 19:
            continue
        strings += [s, s[:-1] + str((int(s[-1]) + 1) % 10), s[:-1] + str((int(s[-1]) + 9) % 10)]
    strings += [str(2 ** 53 + i) for i in range(-4, 5)] + ["9007199254740993", "9223372036854775807",
                                                           "18446744073709551615", "1844674407370955161"]
    assert len(strings) > 3000
    _check_floats(strings)
    # a tie whose digits w <= 2^53 (exponent notation: w * 10^q, q <= 22) is rounded by one IEEE operation
    # (Clinger), not handed back: w odd and 5^q * w of exactly 54 bits
    ties = []
    for q in (1, 2, 5, 20):
        lo, hi = -(-(1 << 53) // 5 ** q), (1 << 54) // 5 ** q
        ties += [f"{w}e{q}" for w in range(lo | 1, min(hi, 1 << 53), max(2, (hi - lo) // 7) | 1)
                 if (w * 5 ** q).bit_length() == 54 and w % 2]
    assert len(ties) > 10
    for tie in ties:
        assert _parse([tie])[0] == 1 and _bits(_parse([tie])[1][0]) == _bits(float(tie)), tie
    # an integer tie (w > 2^53, q = 0) is rounded by the integer-to-double conversion, also correct
    rng = random.Random(8)
    int_ties = ["9007199254740993"]
    for _ in range(300):
        bits = rng.randint(55, 63)  # doubles there are 2^(bits - 53) apart: a tie is an odd multiple of half that
        j = bits - 53
        v = (rng.getrandbits(bits) | 1 << (bits - 1)) >> j << j | 1 << (j - 1)
        int_ties.append(str(v))
    assert all(abs(int(float(t)) - int(t)) == 1 << (len(bin(int(t))) - 2 - 54) for t in int_ties)  # ties indeed
    for tie in int_ties:
        assert _parse([tie])[0] == 1 and _bits(_parse([tie])[1][0]) == _bits(float(tie)), tie
    assert _parse(["90071992547409930e-1"])[0] == -1  # w > 2^53 and q != 0: handed back


@needs_ext
def test_edges_of_the_double_range():
    edges = ["2.2250738585072014e-308", "2.2250738585072011e-308", "2.225073858507201e-308",
             "4.9406564584124654e-324", "5e-324", "1e-320", "1.7976931348623157e308", "1.7976931348623158e308",
             "1.7976931348623159e308", "1e308", "1e309", "1e-400", "0e400", "-0", "-0.0", "0.000", "00000.5",
             "1e0000000000000000000000005", "0.00000000000000000000000000000000000001", "123456789012345678e-10",
             "1234567890123456789e-300", "12345678901234567890", "0.1234567890123456789", "1.00000000000000000001"]
    _check_floats(edges)
    for taken in ("2.2250738585072014e-308", "1.7976931348623157e308", "1e308", "0e400", "-0.0", "0.000",
                  "00000.5", "1e0000000000000000000000005", "0.00000000000000000000000000000000000001",
                  "123456789012345678e-10", "1234567890123456789e-300", "0.1234567890123456789"):
        assert _parse([taken])[0] == 1, taken
    assert _parse(["-0"])[1][0] == 0 and np.signbit(_parse(["-0"])[1][0])
    for handed_back in ("1e309", "1e-400", "5e-324", "12345678901234567890", "1.00000000000000000001"):
        assert _parse([handed_back])[0] == -1, handed_back


@needs_ext
def test_integers():
    rng = random.Random(5)
    ints = [str(rng.randint(-10 ** rng.randint(1, 18) + 1, 10 ** rng.randint(1, 18) - 1)) for _ in range(20000)]
    ints += ["0", "-0", "007", "-00", "999999999999999999", "-999999999999999999"]
    rows, got = _parse(ints, kind=2)
    assert rows == len(ints)
    ref = pcsv.read_csv(pa.BufferReader(("x\n" + "\n".join(ints) + "\n").encode()))
    assert ref.schema.types[0] == pa.int64() and ref.column(0).to_pylist() == got.tolist()
    for s in ("1234567890123456789", "1.0", "1e3", "+1", " 1", "", "0x1"):
        assert _parse([s], kind=2)[0] == -1, s


@needs_ext
@pytest.mark.parametrize("text", ["+1", ".5", "1.", "nan", "NaN", "inf", "-inf", " 1", "1 ", '"1"', "", "1e",
                                  "1e+", "--1", "0x10", "1_000", "1,5", "١", "1.5.2", "-", "e5", "1d5", "1e5.0"])
def test_anything_else_is_handed_back(text):
    assert _parse([text])[0] == -1


@needs_ext
def test_lines():
    f64 = b"\x01"
    def parse(data: bytes, kinds: bytes, n: int, delim: str = ","):
        outs = [np.zeros(8, dtype=np.float64 if k == 1 else np.int64) for k in kinds if k]
        r = ext.parse(data, ord(delim), kinds, outs)
        return r, [o[: max(r, 0)].tolist() for o in outs]
    assert parse(b"1,2\r\n3,4\r\n", f64 * 2, 2) == (2, [[1.0, 3.0], [2.0, 4.0]])
    assert parse(b"1,2\n3,4", f64 * 2, 2) == (2, [[1.0, 3.0], [2.0, 4.0]])  # no final line end
    assert parse(b"", f64 * 2, 0) == (0, [[], []])
    assert parse(b"x,1,abc d\ny,2,\n", b"\x00\x02\x00", 2) == (2, [[1, 2]])  # skipped fields, even empty
    assert parse(b"1\t2\n", f64 * 2, 1, "\t") == (1, [[1.0], [2.0]])
    for bad in (b"1,2\n\n3,4\n", b"1,2,3\n", b"1\n", b"1,2\r3,4\n", b"1,2\r", b"1,2,\n", b'1,"2"\n'):
        assert parse(bad, f64 * 2, 3)[0] == -1, bad
    assert parse(b'"a",1\n', b"\x00\x01", 1)[0] == -1  # a quote in a skipped field: pyarrow's
    with pytest.raises(ValueError):
        ext.parse(b"1\n", ord(","), f64 * 2, [np.zeros(2)])  # one output per read field
    with pytest.raises(BufferError):
        ext.parse(b"1\n", ord(","), f64, [b"12345678"])  # outputs must be writable
    assert ext.parse(b"1\n2\n3\n", ord(","), f64, [np.zeros(2)]) == -2  # no room (no overrun): -2


@needs_ext
def test_room_for_more_lines_than_the_first_64k_suggest():
    """The room for a piece's lines is estimated from its first 64 KiB; a piece of longer lines first and
    short ones after is parsed again with room for all."""
    long_rows = [f"{'x' * 500},{i / 3!r}" for i in range(200)]
    short_rows = [f",{i}" for i in range(200000)]
    data = ("\n".join(long_rows + short_rows) + "\n").encode()
    calls = []
    real = ext.parse

    def spy(*a):
        calls.append(real(*a))
        return calls[-1]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ext, "parse", spy)
        tbl = fastcsv.parse(pa.py_buffer(data), ",", b"\x00\x01", ["t", "v"], ["v"], split=False)
    assert calls == [-2, 200200]
    v = tbl.column("v").to_numpy()
    assert len(v) == 200200 and v[199] == 199 / 3 and v[200] == 0 and v[-1] == 199999


# -- the reader ------------------------------------------------------------------------------------------
def _read(path, columns, float_columns=(), chunk_bytes=4096, fast=True, monkeypatch=None, numpy_ok=False):
    """The batches of the range reader as one table.  ``numpy_ok``: the NumPy path (no pyarrow; taken for
    files past _SMALL_CSV_BYTES, here 1 KiB), whose batches are NumpyBatch until pyarrow takes over."""
    monkeypatch.setenv("LOSSCTL_FASTCSV", "1" if fast else "0")
    monkeypatch.setattr(sources, "_CSV_RANGE_BYTES", chunk_bytes)
    monkeypatch.setattr(sources, "_SMALL_CSV_BYTES", 1024)
    monkeypatch.setattr(fastcsv, "_SPLIT_BYTES", 1024)  # two halves on two threads, even here
    src = sources.open_source(str(path))
    monkeypatch.setattr(src, "_small_csv", lambda: None)  # ranges, even for a small file
    monkeypatch.setattr(src, "_tiny", lambda: None)
    batches = list(src.batches(columns, 1000, float_columns=float_columns, numpy_ok=numpy_ok))
    assert sum(b.num_rows for b in batches) == src.rows
    if numpy_ok and fast:
        assert isinstance(batches[0], sources.NumpyBatch)
    return pa.Table.from_batches([b if not isinstance(b, sources.NumpyBatch) else
                                  pa.RecordBatch.from_arrays([pa.array(a) for a in b.arrays], names=list(columns))
                                  for b in batches])


def _spy(monkeypatch):
    calls = {"fast": 0, "taken": 0, "pyarrow": 0}
    real_parse, real_read = ext.parse, pcsv.read_csv

    def parse(*a):
        calls["fast"] += 1
        r = real_parse(*a)
        calls["taken"] += r >= 0
        return r

    def read(*a, **k):
        calls["pyarrow"] += 1
        return real_read(*a, **k)
    monkeypatch.setattr(ext, "parse", parse)
    monkeypatch.setattr(pcsv, "read_csv", read)
    return calls


@needs_ext
def test_plain_numbers_are_parsed_by_lossctl_and_equal_pyarrow(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    n = 3000
    y = rng.integers(0, 5, n)
    p = rng.standard_normal((n, 3)) * 10.0 ** rng.integers(-5, 5, (n, 3))
    pl = p.tolist()
    lines = [f"r{i},{y[i]},{pl[i][0]!r},x y,{pl[i][1]!r},{pl[i][2]:.6e}" for i in range(n)]
    path = tmp_path / "a.csv"
    path.write_text("id,label,p0,note,p1,p2\r\n" + "\r\n".join(lines) + "\r\n")
    cols = ["p1", "label", "p0", "p2"]
    calls = _spy(monkeypatch)
    fast = _read(path, cols, ["p0", "p1", "p2"], monkeypatch=monkeypatch)
    assert calls["fast"] > 20 and calls["taken"] == calls["fast"]
    assert calls["pyarrow"] == 0  # (the schema read uses pyarrow's streaming reader, not read_csv)
    slow = _read(path, cols, ["p0", "p1", "p2"], fast=False, monkeypatch=monkeypatch)
    assert fast.schema == slow.schema and fast.schema.field("label").type == pa.int64()
    for c in cols:
        a, b = fast.column(c).to_numpy(), slow.column(c).to_numpy()
        assert np.array_equal(a.view(np.int64), b.view(np.int64)), c
    assert np.array_equal(fast.column("p0").to_numpy(), p[:, 0])  # and the values written


@needs_ext
@pytest.mark.parametrize("odd", ['"0.5"', "nan", "", "1e999", "0.12345678901234567890123", "+1"])
def test_a_range_it_hands_back_and_the_rest_go_to_pyarrow(tmp_path, monkeypatch, odd):
    rng = np.random.default_rng(1)
    vals = [repr(v) for v in rng.random(4000).tolist()]
    vals[2500] = odd
    path = tmp_path / "b.csv"
    path.write_text("y,p\n" + "".join(f"{i % 2},{v}\n" for i, v in enumerate(vals)))
    calls = _spy(monkeypatch)
    fast = _read(path, ["y", "p"], ["p"], monkeypatch=monkeypatch)
    handed_back = calls["fast"] - calls["taken"]
    assert calls["taken"] > 5 and handed_back >= 1 and calls["pyarrow"] >= 2
    slow = _read(path, ["y", "p"], ["p"], fast=False, monkeypatch=monkeypatch)
    assert fast.equals(slow)


@needs_ext
def test_errors_are_pyarrows(tmp_path, monkeypatch):
    """A bad value deep in the file: the same one-line message (file, column, row) either way."""
    path = tmp_path / "c.csv"
    path.write_text("y_true,y_pred\n" + "".join(f"{i / 3!r},{'abc' if i == 3500 else i / 7!r}\n"
                                                 for i in range(4000)))
    monkeypatch.setattr(sources, "_CSV_RANGE_BYTES", 4096)
    monkeypatch.setattr(sources.Source, "_small_csv", lambda self: None)
    out = {}
    for fast in ("1", "0"):
        monkeypatch.setenv("LOSSCTL_FASTCSV", fast)
        res = invoke(["eval", path, "-l", "mse"])
        assert res.exit_code == 3 and "Traceback" not in res.stderr
        out[fast] = res.stderr
    assert out["1"] == out["0"] and "y_pred" in out["1"] and "row 3501:" in out["1"], out


@needs_ext
@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(-10 ** 6, 10 ** 6), st.floats(allow_nan=False, allow_infinity=False,
                                                                      width=64), st.sampled_from(["\n", "\r\n"])),
                min_size=1, max_size=300),
       st.integers(64, 2048), st.booleans())
def test_hypothesis_files(rows, chunk, last_newline):
    """Any file of numbers, cut into ranges anywhere: the values of pyarrow's whole-file parse."""
    import tempfile
    text = "k,v\n" + "".join(f"{k},{v!r}{nl}" for k, v, nl in rows)
    if not last_newline:
        text = text.rstrip("\r\n")
    with tempfile.TemporaryDirectory() as d, pytest.MonkeyPatch.context() as mp:
        path = Path(d) / "h.csv"
        path.write_bytes(text.encode())
        calls = _spy(mp)
        got = _read(path, ["v", "k"], ["v"], chunk_bytes=chunk, monkeypatch=mp)
        # all taken, unless a subnormal (handed back: pyarrow rounds those)
        plain = all(v == 0 or abs(v) >= 2.2250738585072014e-308 for _, v, _ in rows)
        assert calls["fast"] > 0 and (calls["taken"] == calls["fast"] or not plain)
        # and the NumPy path (no pyarrow), where the first block types k (a file of a few rows: none)
        as_numpy = _read(path, ["v", "k"], ["v"], chunk_bytes=chunk, monkeypatch=mp, numpy_ok=True) \
            if len(text) > 1024 and plain and fastcsv.first_block_kinds(text.encode()[: 1 << 20], ",") else got
    ref = pcsv.read_csv(pa.BufferReader(text.encode()),
                        convert_options=pcsv.ConvertOptions(column_types={"v": pa.float64()}))
    for t in (got, as_numpy):
        assert t.column("k").to_pylist() == ref.column("k").to_pylist()
        assert np.array_equal(t.column("v").to_numpy().view(np.int64), ref.column("v").to_numpy().view(np.int64))


@needs_ext
def test_cli_results_are_identical_with_and_without(tmp_path, monkeypatch):
    rng = np.random.default_rng(2)
    n = 5000
    p = rng.dirichlet(np.ones(4), n)
    path = tmp_path / "m.csv"
    path.write_text("label,p_0,p_1,p_2,p_3,y,yhat\n" + "".join(
        f"{rng.integers(0, 4)},{','.join(repr(v) for v in p[i].tolist())},{i / 9!r},{i / 11!r}\n" for i in range(n)))
    monkeypatch.setattr(sources, "_CSV_RANGE_BYTES", 8192)
    monkeypatch.setattr(sources.Source, "_small_csv", lambda self: None)
    out = {}
    for fast in ("1", "0"):
        monkeypatch.setenv("LOSSCTL_FASTCSV", fast)
        a = invoke(["eval", path, "-l", "log_loss", "--pred", "p_*", "--target", "label", "-f", "json"])
        b = invoke(["eval", path, "-l", "mse", "-l", "huber", "--pred", "yhat", "--target", "y", "-f", "json"])
        assert a.exit_code == 0 and b.exit_code == 0, (a.stderr, b.stderr)
        out[fast] = (a.stdout, b.stdout)
    assert out["1"] == out["0"]


def test_off_switch(monkeypatch):
    monkeypatch.setenv("LOSSCTL_FASTCSV", "0")
    assert fastcsv.field_kinds(["a"], ["a"], {"a": pa.float64()}, {}, ",") is None


@needs_ext
def test_which_columns_it_reads(monkeypatch):
    monkeypatch.delenv("LOSSCTL_FASTCSV", raising=False)
    kinds = fastcsv.field_kinds
    f, i, s = pa.float64(), pa.int64(), pa.string()
    assert kinds(["id", "y", "p"], ["p", "y"], {"p": f}, {"id": s, "y": i, "p": f}, ",") == b"\x00\x02\x01"
    assert kinds(["y", "p"], ["y", "p"], {"y": f, "p": f}, {"y": i, "p": i}, ",") == b"\x01\x01"
    assert kinds(["id", "p"], ["id", "p"], {"p": f}, {"id": s, "p": f}, ",") is None  # text is pyarrow's
    assert kinds(["b", "p"], ["b"], {}, {"b": pa.bool_()}, ",") is None
    # inferred float64 (not asked for): pyarrow types a range of integers in it int64, so it is pyarrow's
    assert kinds(["y", "p"], ["y", "p"], {}, {"y": i, "p": f}, ",") is None
    assert kinds(["y", "y"], ["y"], {"y": f}, {}, ",") is None  # duplicate names
    assert kinds(["y", "p"], ["y"], {"y": f}, {}, "ab") is None and kinds(["y"], ["y"], {"y": f}, {}, '"') is None


@needs_ext
def test_batch_types_are_pyarrows_for_inferred_columns(tmp_path, monkeypatch):
    """Columns not asked for as float64 keep the types pyarrow infers range by range: a float column whose
    later range holds only integers is int64 there (found by the Hypothesis test of the range reader)."""
    rows = [f"{i},{i / 3!r}" for i in range(300)] + [f"{i},{i}" for i in range(300)] + [f"{i},{i / 7!r}" for i in range(300)]
    path = tmp_path / "t.csv"
    path.write_text("k,v\n" + "\n".join(rows) + "\n")
    got = {}
    for fast in (True, False):
        monkeypatch.setenv("LOSSCTL_FASTCSV", "1" if fast else "0")
        src = sources.open_source(str(path))
        monkeypatch.setattr(src, "_small_csv", lambda: None)
        batches = list(src._csv_ranges(["k", "v"], {}, [str(path)], chunk_bytes=1024))
        got[fast] = [([str(t) for t in b.schema.types], b.column(0).to_pylist(), b.column(1).to_pylist())
                     for b in batches]
    assert got[True] == got[False]
    assert ["int64", "int64"] in [t for t, _, _ in got[False]]  # the integer range of v
    assert ["int64", "double"] in [t for t, _, _ in got[False]]


# -- the first block's schema ------------------------------------------------------------------------------
def _schemas(path, monkeypatch):
    """(lossctl's first-block schema, pyarrow's) of a CSV file."""
    out = []
    for fast in ("1", "0"):
        monkeypatch.setenv("LOSSCTL_FASTCSV", fast)
        out.append(sources.open_source(str(path))._csv_schema())
    return out


@needs_ext
@pytest.mark.parametrize("off", [-3, -1, 0, 1, 2])
def test_first_block_types_match_pyarrow_at_the_block_edge(tmp_path, monkeypatch, off):
    """Integers up to a line holding a decimal whose line end lies just before, at or after the end of the
    first 1 MiB: pyarrow types the column by the lines ending inside the block, and so must lossctl."""
    block = 1 << 20
    header, line = b'"a","b"\n', b"7,12345\n"
    nl = block + off - 1  # where the decimal's line ends
    k = (nl - 12 - len(header)) // len(line)
    start = len(header) + k * len(line)
    decimal = b"1," + b"1.5".ljust(nl - start - 2, b"0") + b"\n"
    body = header + line * k + decimal + line * 20
    assert body.index(decimal) + len(decimal) - 1 == nl
    path = tmp_path / "edge.csv"
    path.write_bytes(body)
    calls = []
    real = ext.infer
    monkeypatch.setattr(ext, "infer", lambda *a: calls.append(real(*a)) or calls[-1])
    mine, theirs = _schemas(path, monkeypatch)
    assert calls and calls[0] is not None  # lossctl's inference answered
    assert mine == theirs and mine.field("b").type == (pa.float64() if off <= 0 else pa.int64())


@needs_ext
@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(["int", "float", "sci", "neg0", "big"]), min_size=1, max_size=4),
       st.integers(1, 400), st.booleans())
def test_hypothesis_first_block_schemas(kinds, rows, crlf):
    rng = random.Random(rows)
    gen = {"int": lambda: str(rng.randint(-10**6, 10**6)), "float": lambda: repr(rng.uniform(-5, 5)),
           "sci": lambda: f"{rng.uniform(-5, 5):.3e}", "neg0": lambda: rng.choice(["-0", "0", "-00"]),
           "big": lambda: str(rng.randint(10**17, 10**18 - 1))}
    nl = "\r\n" if crlf else "\n"
    text = ",".join(f"c{i}" for i in range(len(kinds))) + nl + "".join(
        ",".join(gen[k]() for k in kinds) + nl for _ in range(rows))
    import tempfile
    with tempfile.TemporaryDirectory() as d, pytest.MonkeyPatch.context() as mp:
        path = Path(d) / "s.csv"
        path.write_text(text, newline="")
        calls = []
        real = ext.infer
        mp.setattr(ext, "infer", lambda *a: calls.append(real(*a)) or calls[-1])
        mine, theirs = _schemas(path, mp)
        assert mine == theirs and calls[0] is not None  # (and it was lossctl's inference that answered)


@needs_ext
@pytest.mark.parametrize("body", ["a,b\n1,x\n", "a,b\n1,\n", 'a,b\n1,"2"\n', "\ufeffa,b\n1,2\n", "a,b\n",
                                  "a,b\n1,1234567890123456789\n", "a,b\n1,2\n\n3,4\n", "a,b\n1,nan\n", "a,,c\n1,2,3\n"])
def test_first_block_schema_leaves_the_rest_to_pyarrow(tmp_path, monkeypatch, body):
    path = tmp_path / "r.csv"
    path.write_bytes(body.encode())
    assert fastcsv.first_block_schema(path.read_bytes(), ",") is None
    mine, theirs = _schemas(path, monkeypatch)
    assert mine == theirs


# -- the NumPy path: a large CSV of numbers without pyarrow ------------------------------------------------
@needs_ext
def test_a_large_csv_of_numbers_is_read_without_pyarrow(tmp_path):
    """Past 4 MiB, a CSV of plain numbers is typed, parsed and evaluated without importing pyarrow (~23 ms
    of start-up and ~45 ms of CPU); the value is the NumPy reference's."""
    rng = np.random.default_rng(4)
    y, p = rng.standard_normal(130_000), rng.standard_normal(130_000)
    path = tmp_path / "big.csv"
    path.write_text("y_true,y_pred\n" + "".join(f"{a!r},{b!r}\n" for a, b in zip(y.tolist(), p.tolist())))
    assert path.stat().st_size > sources._SMALL_CSV_BYTES
    probe = ("import sys\nfrom lossctl.cli import main\n"
             "try:\n    main(['eval', sys.argv[1], '-l', 'mse', '--value'])\n"
             "except SystemExit as e:\n    assert not e.code, e.code\n"
             "print('pyarrow' in sys.modules, file=sys.stderr)\n")
    for fast, imported in (("1", "False"), ("0", "True")):
        env = {**__import__("os").environ, "LOSSCTL_FASTCSV": fast}
        out = subprocess.run([sys.executable, "-c", probe, str(path)], capture_output=True, text=True, env=env,
                             cwd=str(ROOT), timeout=120)
        assert out.returncode == 0, out.stderr
        assert out.stderr.strip().splitlines()[-1] == imported, out.stderr
        assert float(out.stdout) == pytest.approx(float(np.mean((p - y) ** 2)), rel=1e-12)


@needs_ext
@pytest.mark.parametrize("odd", ["nan", "", '"0.5"', "abc", "1e999", "7"])
def test_the_numpy_path_hands_a_file_over_to_pyarrow_midway(tmp_path, monkeypatch, odd):
    """A range the parser hands back, and every range after it, go to pyarrow's range reader from that
    range's first line: the same output and the same message (its row counted from the file's start), with
    NumPy batches before it.  (The odd value lies past the first 1 MiB, which must be plain numbers.)"""
    import json
    rng = np.random.default_rng(5)
    vals = [repr(v) for v in rng.random(40_000).tolist()]
    vals[33_000] = odd
    path = tmp_path / "late.csv"
    path.write_text("label,y_true,y_pred\n" + "".join(f"{i % 3},{i / 9!r},{v}\n" for i, v in enumerate(vals)))
    assert path.read_bytes().index(b"\n" + str(33_000 % 3).encode() + b"," + repr(33_000 / 9).encode()) > 1 << 20
    monkeypatch.setattr(sources, "_SMALL_CSV_BYTES", 1024)
    monkeypatch.setattr(sources, "_CSV_RANGE_BYTES", 65536)
    made = []
    real = sources.NumpyBatch.__init__

    def counted(self, arrays, **kw):
        made.append(len(arrays[0]))
        real(self, arrays, **kw)
    monkeypatch.setattr(sources.NumpyBatch, "__init__", counted)
    out = {}
    for fast in ("1", "0"):
        monkeypatch.setenv("LOSSCTL_FASTCSV", fast)
        made.clear()
        res = invoke(["eval", path, "-l", "mse", "-l", "mae", "--target", "y_true", "--pred", "y_pred", "-f", "json"])
        out[fast] = (res.exit_code, json.loads(res.stdout) if res.stdout else None, res.stderr)
        if fast == "1" and odd == "7":  # a plain number: NumPy batches to the end
            assert sum(made) == 40_000 and len(made) > 20
        elif fast == "1":
            assert 30_000 < sum(made) <= 33_000  # NumPy batches up to the range holding row 33001
        else:
            assert not made
    (code1, doc1, err1), (code0, doc0, err0) = out["1"], out["0"]
    assert code1 == code0 and err1 == err0
    if odd in ("abc", "", "nan", "1e999"):  # (an infinite prediction is an error too)
        assert code1 == 3 and "row 33001" in err1 and doc1 is None
    else:
        # other batch boundaries: the values agree to 1e-12 (the batch-size contract), the rest exactly
        for r1, r0 in zip(doc1["results"], doc0["results"]):
            assert r1.pop("value") == pytest.approx(r0.pop("value"), rel=1e-12)
        assert doc1 == doc0


@needs_ext
def test_numpy_path_batches_skip_the_finiteness_check_only_there(tmp_path, monkeypatch):
    """NumPy batches of lossctl's parser are finite by construction (NaN, infinities and numbers beyond a
    double are handed back to pyarrow), so the consumer's NaN/infinity pass is skipped for them alone."""
    from lossctl import api
    rng = np.random.default_rng(6)
    path = tmp_path / "f.csv"
    path.write_text("y_true,y_pred\n" + "".join(f"{a!r},{b!r}\n" for a, b in rng.random((3000, 2)).tolist()))
    monkeypatch.setattr(sources, "_SMALL_CSV_BYTES", 1024)
    monkeypatch.setattr(sources, "_TINY_BYTES", 0)
    monkeypatch.setattr(sources, "_CSV_RANGE_BYTES", 8192)
    calls = []
    real = api.check_finite
    monkeypatch.setattr(api, "check_finite", lambda *a, **k: calls.append(1) or real(*a, **k))
    values = {}
    for fast in ("1", "0"):
        monkeypatch.setenv("LOSSCTL_FASTCSV", fast)
        calls.clear()
        res = invoke(["eval", path, "-l", "mse", "--value"])
        assert res.exit_code == 0, res.stderr
        values[fast] = float(res.stdout)
        assert (len(calls) == 0) if fast == "1" else (len(calls) > 0)
    assert values["1"] == pytest.approx(values["0"], rel=1e-12)
