"""The small-CSV reader (lossctl.io.sources._TinyCsv) against pyarrow's.

A CSV of at most 512 KiB holding plain numbers is parsed without pyarrow (start-up); whatever it takes must
come out as pyarrow reads it (same column types, bitwise the same values, the same names and rows), and
whatever it cannot read the same way it must leave to pyarrow.
"""
from __future__ import annotations

import io
import math

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pytest
from hypothesis import given, settings, strategies as st

import lossctl
from lossctl.io import sources
from lossctl.io.sources import _TinyCsv


def _pyarrow_read(data: bytes, delimiter: str = ","):
    """What lossctl's pyarrow path reads (Source._small_csv's options)."""
    return pcsv.read_csv(io.BytesIO(data), read_options=pcsv.ReadOptions(block_size=len(data) + 1),
                         parse_options=pcsv.ParseOptions(delimiter=delimiter),
                         convert_options=pcsv.ConvertOptions(strings_can_be_null=False,
                                                             quoted_strings_can_be_null=False))


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def _compare(data: bytes, delimiter: str = ",") -> _TinyCsv | None:
    """Check the tiny reader against pyarrow on ``data``; return the tiny reader (None if it declined)."""
    tiny = _TinyCsv.parse(data, delimiter)
    if tiny is None:
        return None
    table = _pyarrow_read(data, delimiter)  # what the tiny reader takes, pyarrow reads without error
    assert table.column_names == tiny.names
    assert table.num_rows == tiny.nrows
    for name in tiny.names:
        col = tiny.column(name)
        if col is None:
            continue
        arr = table.column(name).combine_chunks()
        assert arr.null_count == 0
        if col.dtype == np.int64:
            assert arr.type == pa.int64(), (name, arr.type)
            expected = np.array(arr.to_pylist(), dtype=np.int64)
        else:
            assert arr.type == pa.float64(), (name, arr.type)
            expected = np.array(arr.to_pylist(), dtype=np.float64)
        assert _same_bits(col, expected), name
    return tiny


# tokens pyarrow reads as numbers, and tokens that must send the column (or file) to pyarrow
_NUMBER = st.one_of(
    st.integers(-10**18 + 1, 10**18 - 1).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.floats(allow_nan=False, allow_infinity=False, width=32).map(lambda v: f"{v:.6e}"),
    st.sampled_from(["0", "-0", "007", "1.", ".5", "-.5", "1e5", "1E-5", "1.5e+3", "00.5", "-0.0", "5e0",
                     "1e400", "1e-400", "123456789012345678", "0.1000000000000000055511151231257827"]),
)
_ODD = st.sampled_from(["", "nan", "NaN", "NA", "null", "inf", "-inf", "+1", "1234567890123456789",
                        "12345678901234567890", " 1", "1 ", "1,5", '"1"', "abc", "true", "1e", "--1", "0x10",
                        "1_000", "١", "2020-01-01", "1.5.2"])
_TOKEN = st.one_of(_NUMBER, _NUMBER, _NUMBER, _ODD)


_INTEGER = st.one_of(st.integers(-10**18 + 1, 10**18 - 1).map(str), st.sampled_from(["0", "-0", "007"]))


@st.composite
def _csv_bytes(draw):
    ncol = draw(st.integers(1, 4))
    names = draw(st.lists(st.sampled_from(["a", "b", "y_true", "y_pred", "w", " x", "é", "p,q"]), min_size=ncol,
                          max_size=ncol, unique=True))
    # names plain or quoted as polars and pyarrow write them ("y_true"); one with a comma must be quoted
    quoted = [draw(st.booleans()) or "," in n for n in names]
    header = [f'"{n}"' if q else n for n, q in zip(names, quoted)]
    nrows = draw(st.integers(1, 30))
    columns = []
    for _ in range(ncol):
        # integers only / numbers only: the tiny reader takes them; one odd token among them: it must leave
        # the column to pyarrow (or read it as pyarrow does); a mix of everything
        kind = draw(st.sampled_from(["ints", "numbers", "ints+odd", "numbers+odd", "mixed"]))
        token = {"ints": _INTEGER, "numbers": _NUMBER, "mixed": _TOKEN}.get(kind, _INTEGER if kind == "ints+odd"
                                                                          else _NUMBER)
        col = [draw(token) for _ in range(nrows)]
        if kind.endswith("+odd"):
            col[draw(st.integers(0, nrows - 1))] = draw(_ODD)
        columns.append(col)
    rows = list(zip(*columns))
    ends = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    lines = [",".join(header)] + [",".join(r) for r in rows]
    if draw(st.booleans()):
        lines.insert(draw(st.integers(1, len(lines))), "")  # an empty line (skipped by both)
    text = ends.join(lines) + (ends if draw(st.booleans()) else "")
    return text.encode("utf-8")


@settings(max_examples=600)  # fast (about 2 ms an example): enough to meet each odd token in each kind
@given(_csv_bytes())
def test_tiny_reader_matches_pyarrow(data):
    try:
        _pyarrow_read(data)
    except pa.ArrowInvalid:
        # pyarrow refuses the file (a ragged row...): the tiny reader must refuse it too
        tiny = _TinyCsv.parse(data, ",")
        assert tiny is None or any(tiny.column(n) is None for n in tiny.names)
        return
    _compare(data)


def test_plain_numbers_are_taken():
    tiny = _compare(b"y_true,y_pred,k\n1,0.5,3\n2,1e-3,-4\r\n\n3,.25,007\n")
    assert tiny is not None
    assert tiny.column("y_true").dtype == np.int64
    assert tiny.column("y_pred").dtype == np.float64
    assert tiny.column("k").tolist() == [3, -4, 7]


def test_quoted_header_is_taken():
    tiny = _compare(b'"y_true","y,pred"\n1,0.5\n2,0.25\n')
    assert tiny is not None and tiny.names == ["y_true", "y,pred"]


@pytest.mark.parametrize("data", [
    b'a,b\n"1",2\n',            # quotes below the header
    b'"a""b",c\n1,2\n',         # an escaped quote in a name
    b'"a"b,c\n1,2\n',           # a name that is not wholly quoted
    b"\xef\xbb\xbfa,b\n1,2\n",  # byte-order mark
    b"a,b\n1,2\n3\n",           # ragged row
    b"a,b\n",                   # no rows
    b"a,,b\n1,2,3\n",           # an empty column name
    b"\na,b\n1,2\n",            # empty first line
    b"a\xff,b\n1,2\n",          # names not UTF-8
])
def test_files_left_to_pyarrow(data):
    assert _TinyCsv.parse(data, ",") is None


@pytest.mark.parametrize("value", ["", "nan", "NA", "inf", "+1", "1234567890123456789", " 1", "abc", "true"])
def test_columns_left_to_pyarrow(value):
    tiny = _TinyCsv.parse(f"a,b\n1,{value}\n2,3\n".encode(), ",")
    assert tiny is not None
    assert tiny.column("a") is not None
    assert tiny.column("b") is None


CASES = [
    ("y_true,y_pred\n" + "".join(f"{i % 7 * 0.25},{math.sin(i):.17g}\n" for i in range(2000)),
     ["mse", "mae", "huber:delta=0.3", "rmse", "log_cosh", "quantile:alpha=0.2"], {}),
    ("y_true,y_pred,w\n" + "".join(f"{i % 5},{i % 5 + math.cos(i)},{i % 3}\n" for i in range(500)),
     ["mse", "mape", "mean_bias"], {"weight": "w"}),
    ("y,p\n" + "".join(f"{i % 2},{(i % 97 + 1) / 99:.6f}\n" for i in range(3000)),
     ["log_loss", "bce", "brier", "zero_one"], {"pred": "p", "target": "y"}),
    ("target,p_0,p_1,p_2\n" + "".join(f"{i % 3},{0.2 + (i % 5) / 20},{0.3},{0.5 - (i % 5) / 20}\n"
                                      for i in range(1200)),
     ["cross_entropy", "zero_one"], {"pred": "p_*", "target": "target", "space": "probabilities"}),
]


@pytest.mark.parametrize("text,losses,options", CASES, ids=["regression", "weighted", "binary", "multiclass"])
@pytest.mark.parametrize("batch_rows", [7, 1000, 1 << 16])
def test_results_equal_pyarrow_path(tmp_path, monkeypatch, text, losses, options, batch_rows):
    path = tmp_path / "small.csv"
    path.write_text(text)
    assert _compare(path.read_bytes()) is not None
    tiny = lossctl.evaluate(str(path), losses, batch_rows=batch_rows, **options)
    monkeypatch.setattr(sources, "_TINY_BYTES", -1)  # the pyarrow reader for the same file
    full = lossctl.evaluate(str(path), losses, batch_rows=batch_rows, **options)
    assert [r.as_dict() for r in tiny.results] == [r.as_dict() for r in full.results]
    assert tiny.inputs == full.inputs and tiny.extra == full.extra


def test_tiny_path_is_used(tmp_path, monkeypatch):
    path = tmp_path / "small.csv"
    path.write_text("y_true,y_pred\n1,2\n3,5\n")
    seen = []
    real = sources.Source.batches

    def spy(self, *args, **kwargs):
        for b in real(self, *args, **kwargs):
            seen.append(type(b).__name__)
            yield b
    monkeypatch.setattr(sources.Source, "batches", spy)
    assert lossctl.evaluate(str(path), ["mse"]).value("mse") == 2.5
    assert seen == ["NumpyBatch"]
    seen.clear()
    # per-sample rows need Arrow batches: the same file goes through pyarrow
    res = lossctl.evaluate(str(path), ["mse"], reduction="none")
    assert [r["mse"] for r in res.rows] == [1.0, 4.0]
    assert seen == ["RecordBatch"]


@pytest.mark.parametrize("name,text,delimiter", [
    ("small.tsv", "y_true\ty_pred\n1\t1.5\n2\t2.25\n", "\t"),
    ("small.csv", "y_true;y_pred\n1;1.5\n2;2.25\n", ";"),
])
def test_other_delimiters(tmp_path, monkeypatch, name, text, delimiter):
    path = tmp_path / name
    path.write_text(text)
    assert _compare(path.read_bytes(), delimiter) is not None
    src = sources.open_source(str(path))
    assert src.delimiter == delimiter and src._tiny() is not None
    tiny = lossctl.evaluate(str(path), ["mse"]).value("mse")
    monkeypatch.setattr(sources, "_TINY_BYTES", -1)
    assert tiny == lossctl.evaluate(str(path), ["mse"]).value("mse") == (0.25 + 0.0625) / 2
