"""CSV of plain numbers parsed by lossctl's C parser (``lossctl/_fastcsv.c``) instead of pyarrow.

Batch scoring reads files of numbers most: predictions, targets, class labels.  pyarrow's CSV reader is
general (quoting, nulls, type inference, dates) and parses such a file at ~330 MB/s per core here; the C
parser takes only lines of plain numbers, at ~1.1 GB/s per core, with the same float64 values bit for bit
(correctly rounded, as pyarrow and Python round them).  Whatever it does not take -- a quote, a missing
value, a NaN, an unusual spelling, a line of other width -- it hands back, and that range (and every range
after it) is parsed by pyarrow as before: errors, nulls and types keep pyarrow's meaning.

Used three ways by :mod:`lossctl.io.sources`: the ranges of the CSV range reader (Arrow tables,
:func:`parse`); a large local file's first block typed without pyarrow (:func:`first_block_kinds`); and
that file read into NumPy columns without importing pyarrow at all (:func:`parse_arrays`).

The extension is optional (built by ``pip install`` where a C compiler is found).  ``LOSSCTL_FASTCSV=0``
turns it off, e.g. to compare the two.
"""
from __future__ import annotations

import os
from typing import Sequence

from .._pa import pa  # (imported on first use: the NumPy path never does)

try:  # built by setup.py; an in-place build of another version is ignored
    from .. import _fastcsv as _ext
    if getattr(_ext, "VERSION", None) != 2:
        _ext = None
except ImportError:  # no C compiler at install time, or a platform it is not built for
    _ext = None

_SKIP, _F64, _I64 = 0, 1, 2
_SPLIT_BYTES = 1 << 20  # a range at least this long is parsed in two halves, one per thread


def available() -> bool:
    return _ext is not None and os.environ.get("LOSSCTL_FASTCSV", "1") != "0"


def first_block_kinds(block: bytes, delimiter: str) -> tuple[list[str], bytes] | None:
    """(names, kinds) of a CSV whose first block (``block``: its first 1 MiB, as ``Source._csv_schema`` reads
    it) pyarrow's reader would type as numbers, or None where that takes pyarrow: the header's names (plain
    or wholly quoted, UTF-8) and, where every field below it is a number this parser takes, int64 (kind 2)
    for the columns written as integers and float64 (kind 1) for the others.  The same lines as pyarrow's:
    those whose line end lies in the block.  ~1 ms instead of pyarrow's ~10 ms (a parse and type inference
    of the whole block), and no pyarrow."""
    from .sources import _header_names
    if not available() or len(delimiter) != 1 or not delimiter.isascii() or delimiter in '"\r\n':
        return None
    if block.startswith(b"\xef\xbb\xbf"):
        return None
    head = block.find(b"\n")
    last = block.rfind(b"\n")
    if head < 0 or last == head:  # no line below the header ends in the block
        return None
    names = _header_names(block[:head].rstrip(b"\r"), delimiter.encode())
    if not names or not all(names):
        return None
    kinds = _ext.infer(memoryview(block)[head + 1: last + 1], ord(delimiter), len(names))
    return None if kinds is None else (names, kinds)


def first_block_schema(block: bytes, delimiter: str):
    """The schema pyarrow's reader infers from a CSV's first block, where :func:`first_block_kinds` knows it."""
    found = first_block_kinds(block, delimiter)
    if found is None:
        return None
    return schema_of(*found)


def schema_of(names: Sequence[str], kinds: bytes):
    return pa.schema([(n, pa.int64() if k == _I64 else pa.float64()) for n, k in zip(names, kinds)])


def field_kinds(names: Sequence[str], columns: Sequence[str], column_types: dict, types: dict,
                delimiter: str) -> bytes | None:
    """What the parser does with each field of a line (skip, float64, int64), or None where it cannot
    read these columns the way pyarrow would: a column asked for as float64, or one typed int64 in the
    file's first block (pyarrow infers the type of each range: a range of integers is int64 there too, and
    any other spelling is handed back).  A column only inferred as float64 is not taken: pyarrow types a
    range of it that holds only integers int64."""
    if not available() or len(delimiter) != 1 or not delimiter.isascii() or delimiter in '"\r\n':
        return None
    if len(set(names)) != len(names) or not set(columns) <= set(names):
        return None
    kinds = bytearray(len(names))
    for i, name in enumerate(names):
        if name not in columns:
            continue
        if name in column_types:
            if column_types[name] != pa.float64():
                return None
            kinds[i] = _F64
        elif types.get(name) == pa.int64():
            kinds[i] = _I64
        else:
            return None
    return bytes(kinds)


def parse(buf, delimiter: str, kinds: bytes, names: Sequence[str], columns: Sequence[str],
          split: bool = True):
    """The table of ``columns`` parsed from the lines in ``buf`` (no header), or None where the C parser
    hands the range back.  ``split``: parse the two halves of a long range on two threads."""
    parts = parse_arrays(buf, delimiter, kinds, split)
    if parts is None:
        return None
    order = [names[i] for i, k in enumerate(kinds) if k != _SKIP]
    arrays = {}
    for j, name in enumerate(order):
        chunks = [p[j] for p in parts if len(p[j])]
        t = pa.float64() if kinds[names.index(name)] == _F64 else pa.int64()
        arrays[name] = pa.chunked_array([pa.Array.from_buffers(t, len(c), [None, pa.py_buffer(c)]) for c in chunks],
                                        type=t)
    return pa.table([arrays[c] for c in columns], names=list(columns))


def parse_arrays(buf, delimiter: str, kinds: bytes, split: bool = True) -> list[list] | None:
    """The lines in ``buf`` as NumPy columns, one list of the read fields' arrays (in field order) per piece
    (two halves parsed on two threads, with ``split``), or None where the C parser hands them back."""
    from .sources import _in_thread
    view = memoryview(buf)
    n = len(view)
    if split and n >= _SPLIT_BYTES:
        mid = n // 2
        k = bytes(view[mid: mid + (1 << 16)]).find(b"\n")
        if k >= 0 and mid + k + 1 < n:
            first = _in_thread(_parse_piece, view[: mid + k + 1], delimiter, kinds)
            second = _parse_piece(view[mid + k + 1:], delimiter, kinds)
            parts = [first(), second]
            return None if any(p is None for p in parts) else parts
    part = _parse_piece(view, delimiter, kinds)
    return None if part is None else [part]


def _parse_piece(view, delimiter: str, kinds: bytes):
    import numpy as np
    nread = sum(1 for k in kinds if k != _SKIP)
    n = len(view)
    # Room for the lines: estimated from the first 64 KiB, with a margin; if the piece holds more, it is
    # parsed again with room for the most it can hold (a line holds at least one byte per read field and a
    # separator or line end per field).  Not that bound at once: at ~10x the lines, each column would be an
    # allocation past the 4 MiB that glibc serves from the heap (api._tune_malloc), i.e. fresh pages from
    # the kernel (faulted in and zeroed) for every range, instead of the same heap memory again.
    bound = (n + 1) // (len(kinds) + nread) + 1
    lines = bytes(view[: 1 << 16]).count(b"\n")
    cap = min(bound, n * max(lines, 1) // min(n, 1 << 16) * 5 // 4 + 64)
    while True:
        outs = [np.empty(cap, dtype=np.float64 if k == _F64 else np.int64) for k in kinds if k != _SKIP]
        rows = _ext.parse(view, ord(delimiter), kinds, outs)
        if rows != -2 or cap >= bound:
            break
        cap = bound
    if rows < 0:
        return None
    return [o[:rows] for o in outs]
