"""Input files as streams of Arrow record batches.

Formats: CSV and TSV (delimiter from the extension, or sniffed), gzip/bz2/zstd-compressed CSV by
extension, Parquet (a file, a directory of files, or a glob), Arrow IPC / Feather, JSON Lines, and ``-``
for standard input (format from ``--input-format``, CSV by default).

Only ``pyarrow.csv``, ``pyarrow.parquet.ParquetFile``, ``pyarrow.ipc`` and ``pyarrow.json`` are used:
``pq.read_table`` / ``pyarrow.dataset`` and ``Array.to_numpy`` import pandas (0.2-0.3 s per run).
"""
from __future__ import annotations

import contextlib
import csv as _csv
import functools
import glob as _glob
import io
import mmap as _mmap
import os
import re
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

from .._pa import load as _load_pyarrow
from .._pa import pa  # imported on first use: a small CSV is parsed without it
from ..errors import InputError, UsageError, shown

FORMATS = ("csv", "tsv", "parquet", "arrow", "jsonl")
_COMPRESSION = {".gz": "gzip", ".gzip": "gzip", ".bz2": "bz2", ".zst": "zstd", ".zstd": "zstd"}
_SLOW_DECODERS = ("gzip", "bz2")  # decompress slower than one thread parses CSV (see Source._csv_ranges)
_EXT = {
    ".csv": "csv", ".txt": "csv", ".tsv": "tsv", ".tab": "tsv",
    ".parquet": "parquet", ".pq": "parquet", ".parq": "parquet",
    ".arrow": "arrow", ".feather": "arrow", ".ipc": "arrow", ".arrows": "arrow",
    ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
}
FORMAT_ALIASES = {"csv": "csv", "tsv": "tsv", "parquet": "parquet", "arrow": "arrow", "feather": "arrow",
                  "ipc": "arrow", "jsonl": "jsonl", "ndjson": "jsonl", "json": "jsonl"}

# Rows per batch: 64 Ki rows keep a batch's float64 columns (0.5 MiB each) and the loss temporaries in the CPU
# caches and the peak memory flat; larger batches were slower (page faults on fresh temporaries) and bigger.
DEFAULT_BATCH_ROWS = 1 << 16
_BATCH_BYTES = 3 << 19  # auto batch size: about 1.5 MiB of float64 input per batch
# local Parquet row groups whose selected columns decode to at most this are read whole
_WHOLE_GROUP_BYTES = 32 << 20
_PARQUET_BUFFER = 1 << 20
_MAP_MIN_BYTES = 4 << 20  # a Parquet file is decoded from a memory map when its row groups hold this much
_FOOTER_BYTES = 16 << 20  # Parquet footers of a dataset's files kept from the schema check for the read
_SMALL_CSV_BYTES = 4 << 20  # a local CSV below this is read whole, at once (see Source._small_csv)
_CSV_RANGE_BYTES = 12 << 20  # a local CSV is parsed in byte ranges of about this size (see Source._csv_ranges)
# (12 MiB: 10M rows of MSE 398 -> 382 ms against 8 MiB, 1M x 10 cross-entropy 283 -> ~265 ms, for +13 MB peak RSS)
# CSV files up to this size are parsed without pyarrow when they hold plain numbers: 512 KiB (two float
# columns, ~13k rows) parse in ~15 ms, less than importing pyarrow (~35 ms); at 1 MiB they would not
_TINY_BYTES = 1 << 19


def auto_batch_rows(n_columns: int) -> int:
    """Rows per batch when the user gave no --batch-size: DEFAULT_BATCH_ROWS, fewer for wide inputs
    (many score columns) so that a batch and the loss temporaries stay cache-sized and peak memory low."""
    rows = _BATCH_BYTES // (8 * max(1, n_columns))
    return max(4096, min(DEFAULT_BATCH_ROWS, rows // 1024 * 1024))


def _is_glob(path: str) -> bool:
    return any(c in path for c in "*?[")


def _split_ext(path: str) -> tuple[str, str | None]:
    """Return (format-extension, compression) of a file name, e.g. 'x.csv.gz' -> ('.csv', 'gzip')."""
    base = path.lower()
    comp = None
    for ext, c in _COMPRESSION.items():
        if base.endswith(ext):
            comp = c
            base = base[: -len(ext)]
            break
    return os.path.splitext(base)[1], comp


def _sniff_bytes(head: bytes) -> tuple[str | None, str | None]:
    """Guess (format, compression) from magic bytes."""
    if head.startswith(b"PAR1"):
        return "parquet", None
    if head.startswith(b"ARROW1") or head[:4] == b"\xff\xff\xff\xff":
        return "arrow", None
    if head.startswith(b"\x1f\x8b"):
        return None, "gzip"
    if head.startswith(b"BZh"):
        return None, "bz2"
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return None, "zstd"
    return None, None


def _sniff_delimiter(sample: bytes, path: str) -> str:
    text = sample.decode("utf-8", errors="replace")
    lines = [ln for ln in text.splitlines()[:20] if ln.strip()]
    if not lines:
        return ","
    try:
        return _csv.Sniffer().sniff("\n".join(lines), delimiters=",\t;|").delimiter
    except _csv.Error:
        counts = {d: lines[0].count(d) for d in ",\t;|"}
        best = max(counts, key=counts.get)
        return best if counts[best] else ","


@dataclass
class Source:
    """One logical input: a file, stdin, or a set of Parquet/Arrow/CSV files (directory or glob)."""

    path: str
    format: str
    files: list[str]
    compression: str | None = None
    delimiter: str = ","
    data: bytes | None = None  # stdin contents
    rows: int = 0
    _names: list[str] | None = field(default=None, repr=False)
    _types: dict | None = field(default=None, repr=False)
    # remote inputs (lossctl.io.remote): a pyarrow.fs.FileSystem that ``files`` are paths in; None = local
    fs: "pyarrow.fs.FileSystem | None" = field(default=None, repr=False)

    @property
    def display(self) -> str:
        if self.path == "-":
            return "<stdin>"
        if "://" in self.path:  # user:password@, ?signature= and #fragments never reach output or messages
            from .remote import redact_url
            return redact_url(self.path)
        return self.path

    # -- schema ---------------------------------------------------------------------------------
    def schema(self) -> pa.Schema:
        if self._types is None:
            sch = self._read_schema()
            try:
                names = list(sch.names)
            except UnicodeDecodeError:
                raise InputError(f"{self.display}: the column names are not UTF-8 text; save the file as "
                                 f"UTF-8") from None
            self._set_names(names)
            self._types = {f.name: f.type for f in sch}
            self._schema = sch
        return self._schema

    def _set_names(self, names: list[str]) -> None:
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise InputError(f"{self.display}: duplicate column name(s) {', '.join(map(repr, dup))}; "
                             f"rename them so each column is unique")
        self._names = names

    @property
    def names(self) -> list[str]:
        if self._names is None:
            tiny = self._tiny()
            head = self._numbers_head() if tiny is None else None
            if tiny is not None:
                self._set_names(list(tiny.names))
            elif head is not None:
                self._set_names(list(head[0]))
            else:
                self.schema()
        return list(self._names or [])

    def type_of(self, name: str) -> pa.DataType:
        if self._types is None:
            tiny = self._tiny()
            col = tiny.column(name) if tiny is not None and name in tiny.index else None
            if col is not None:
                return pa.int64() if col.dtype.kind == "i" else pa.float64()
            head = self._numbers_head()
            if head is not None and name in head[0]:
                return pa.int64() if head[1][head[0].index(name)] == 2 else pa.float64()
        self.schema()
        return self._types[name]

    def is_text(self, name: str) -> bool:
        """Whether a column holds strings (plain or dictionary-encoded); a small CSV's numeric columns answer
        without pyarrow."""
        if self._types is None:
            tiny = self._tiny()
            if tiny is not None and name in tiny.index and tiny.column(name) is not None:
                return False
            head = self._numbers_head()
            if head is not None and name in head[0]:
                return False
        t = self.type_of(name)
        if pa.types.is_dictionary(t):
            t = t.value_type
        return pa.types.is_string(t) or pa.types.is_large_string(t)

    def _tiny(self) -> "_TinyCsv | None":
        """A small local CSV (or standard input) of plain numbers, parsed without pyarrow; None otherwise."""
        tiny = self.__dict__.get("_tiny_csv", False)
        if tiny is False:
            tiny = None
            if (self.format in ("csv", "tsv") and len(self.files) == 1 and self.compression is None
                    and self.fs is None):
                data = self.data
                if data is None:
                    try:
                        if os.path.getsize(self.files[0]) <= _TINY_BYTES:
                            with open(self.files[0], "rb") as fh:
                                data = fh.read(_TINY_BYTES + 1)
                    except OSError:
                        data = None
                if data is not None and len(data) <= _TINY_BYTES:
                    tiny = _TinyCsv.parse(data, self.delimiter)
            self.__dict__["_tiny_csv"] = tiny
        return tiny

    def _numbers_head(self) -> "tuple[list[str], bytes] | None":
        """(names, kinds: 1 float64 / 2 int64) of a large local CSV whose first block is plain numbers, typed
        by lossctl's parser as pyarrow's reader types it (see fastcsv.first_block_kinds), without pyarrow;
        None otherwise.  Such a file can be read into NumPy columns without importing pyarrow at all."""
        head = self.__dict__.get("_numbers_head_", False)
        if head is False:
            head = None
            if (self.format in ("csv", "tsv") and len(self.files) == 1 and self.data is None
                    and self.compression is None and self.fs is None):
                from . import fastcsv
                if fastcsv.available():
                    try:
                        if os.path.getsize(self.files[0]) >= _SMALL_CSV_BYTES:
                            with open(self.files[0], "rb") as fh:
                                head = fastcsv.first_block_kinds(fh.read(1 << 20), self.delimiter)
                    except OSError:
                        head = None
            self.__dict__["_numbers_head_"] = head
        return head

    def _read_schema(self) -> pa.Schema:
        _load_pyarrow()  # first, so that the CLI's memory pool is set before a reader allocates
        fmt = self.format
        cur = self.files[0]
        try:
            if fmt in ("parquet", "arrow"):
                def read(f):
                    return self._parquet(f).schema_arrow if fmt == "parquet" else self._ipc_reader(f).schema
                first = read(self.files[0])
                for f in self.files[1:]:
                    cur = f
                    other = read(f)
                    if not other.equals(first):
                        raise InputError(
                            f"{f}: schema differs from {self.files[0]} (columns {other.names} vs "
                            f"{first.names}); a dataset's files must share one schema")
                return first
            if fmt in ("csv", "tsv"):
                small = self._small_csv()
                if small is not None:
                    return small.schema
                first = self._csv_schema()
                # the byte-range reader names the columns of every file after the first file's header:
                # a file with other columns (or another order) would be read into the wrong columns
                for f in self.files[1:]:
                    cur = f
                    names = self._csv_header(f)
                    if names != first.names:
                        raise InputError(
                            f"{f}: columns {names[:20]} differ from {self.files[0]}'s {first.names[:20]}; "
                            f"the CSV files of a dataset must share one header (same names, same order)")
                return first
            if fmt == "jsonl":
                return self._json_schema()
        except InputError:
            raise
        except (pa.ArrowException, OSError, ValueError, EOFError) as exc:
            # (ArrowException: also ArrowMemoryError, when a corrupt length field asks for terabytes)
            where = cur if len(self.files) > 1 and self.fs is None else self.display
            if fmt in ("csv", "tsv", "jsonl"):
                msg = _rewrite_arrow_error(where, exc, [], 0, what=f"cannot read as {fmt}")
            else:
                msg = f"{where}: cannot read as {fmt}: {_short(exc)}"
            raise InputError(msg) from None
        raise UsageError(f"unknown input format {fmt!r}")  # pragma: no cover

    # -- readers --------------------------------------------------------------------------------
    def _stream(self, path: str):
        if self.data is not None:
            if self.compression is None:
                return pa.BufferReader(self.data)
            raw = (pa.PythonFile(io.BufferedReader(_SpooledReader(self.data), 1 << 20), mode="r")
                   if isinstance(self.data, _mmap.mmap) else pa.BufferReader(self.data))
            return pa.CompressedInputStream(raw, self.compression)
        if self.fs is not None:
            return self.fs.open_input_stream(path, compression=self.compression)
        return pa.input_stream(path, compression=self.compression)

    def _random_access(self, path: str):
        # A local Arrow file is read batch by batch into memory (pread), not memory-mapped: the batches of a
        # map are views of its pages, which would stay in this process's memory until the end (peak RSS the
        # size of the file: 210 MB for 10M rows of two columns, against 63 MB read this way, for ~13 ms more).
        return self.fs.open_input_file(path) if self.fs is not None else pa.OSFile(path, "r")

    def _parquet(self, path: str, **kwargs):
        if self.data is None and self.fs is None:
            # a footer parsed by the schema check is not parsed again (a dataset of 1000 small files: 50 ms)
            footers = self.__dict__.setdefault("_footers", {})
            local = _LocalParquet.open(path, metadata=footers.get(path), **kwargs)
            if local is not None:
                if len(self.files) > 1 and path not in footers:
                    kept = self.__dict__.get("_footer_bytes", 0) + local.metadata.serialized_size
                    if kept <= _FOOTER_BYTES:  # (a dataset of wide files keeps only the first footers)
                        footers[path] = local.metadata
                        self.__dict__["_footer_bytes"] = kept
                return local
        import pyarrow.parquet as pq
        if self.data is not None:  # standard input, already read into memory
            return pq.ParquetFile(pa.BufferReader(self.data), **kwargs)
        return pq.ParquetFile(self.fs.open_input_file(path) if self.fs is not None else path, **kwargs)

    def _csv_schema(self, path=None) -> pa.Schema:
        """The header's names and the types of the first block (1 MiB; the data is read in ranges later)."""
        block = 1 << 20
        if self.data is None and self.compression is None and self.fs is None:
            # a first block of plain numbers is typed by lossctl's parser as pyarrow would type it (1 ms, not 10)
            from . import fastcsv
            head = self._numbers_head() if (path or self.files[0]) == self.files[0] else None
            if head is not None:
                return fastcsv.schema_of(*head)
            if fastcsv.available():
                with open(path or self.files[0], "rb") as fh:
                    sch = fastcsv.first_block_schema(fh.read(block), self.delimiter)
                if sch is not None:
                    return sch
        import pyarrow.csv as pcsv
        po = pcsv.ParseOptions(delimiter=self.delimiter)
        co = pcsv.ConvertOptions(strings_can_be_null=False, quoted_strings_can_be_null=False)
        while True:
            ro = pcsv.ReadOptions(block_size=block, use_threads=True)
            try:
                return pcsv.open_csv(self._stream(path or self.files[0]), read_options=ro, parse_options=po,
                                     convert_options=co).schema
            except pa.ArrowInvalid as exc:
                # a line longer than a block (a huge field): pyarrow needs every row inside one block
                if "straddl" not in str(exc) or block >= 1 << 30:
                    raise
                block *= 4

    def _csv_header(self, path: str) -> list[str]:
        """The names in a CSV file's header line, read alone (a dataset's later files: their types come from
        the first file, so parsing a block of each, as a schema read does, only costs: 100 files of 100k rows
        spent 0.38 s there)."""
        import pyarrow.csv as pcsv
        with self._stream(path) as f:
            head = b""
            while b"\n" not in head:
                more = f.read(1 << 16)
                if not more:
                    break
                head += more
        line = head[: head.find(b"\n") + 1] if b"\n" in head else head
        ro = pcsv.ReadOptions(block_size=len(line) + 1, use_threads=False)
        return pcsv.read_csv(pa.BufferReader(line), read_options=ro,
                             parse_options=pcsv.ParseOptions(delimiter=self.delimiter)).schema.names

    def _small_csv(self):
        """Read a small local CSV (< 4 MiB) whole, once, as one block: the one-liner fast path (the schema
        and the data come from a single parse, and type inference sees every row)."""
        if getattr(self, "_small", None) is not None:
            return self._small
        if len(self.files) != 1 or self.compression is not None or getattr(self, "fs", None) is not None:
            return None
        size = len(self.data) if self.data is not None else os.path.getsize(self.files[0])
        if size >= _SMALL_CSV_BYTES:
            return None
        import pyarrow.csv as pcsv
        ro = pcsv.ReadOptions(block_size=size + 1, use_threads=False)
        po = pcsv.ParseOptions(delimiter=self.delimiter)
        co = pcsv.ConvertOptions(strings_can_be_null=False, quoted_strings_can_be_null=False)
        src = pa.BufferReader(self.data) if self.data is not None else self.files[0]
        self._small = pcsv.read_csv(src, read_options=ro, parse_options=po, convert_options=co)
        return self._small

    def _csv_ranges(self, columns, column_types, paths: Sequence[str], chunk_bytes: int | None = None,
                    start: tuple[int, int] | None = None):
        """Parse a CSV in byte ranges split at line ends, each range with the multi-threaded ``read_csv``: as
        fast as reading the whole file at once, with memory bounded by one range.  The ranges come from a
        memory map (a local file), from memory (standard input, a pipe) or from a stream read ahead while the
        previous range is parsed (a compressed or remote file): see :meth:`_byte_ranges`.

        (The streaming ``open_csv`` reader is single-threaded, 2-3x slower; ``read_csv`` of the whole file
        holds it all in memory.)  Quoted fields holding newlines are not supported here, as in pyarrow's
        own block splitting with ``newlines_in_values=False``.  ``start``: (byte offset of a line, rows before
        it) where to begin in a single local file (the NumPy path hands a file over there).
        """
        import pyarrow.csv as pcsv
        chunk_bytes = chunk_bytes or _CSV_RANGE_BYTES
        names = self.names
        po = pcsv.ParseOptions(delimiter=self.delimiter)
        co = pcsv.ConvertOptions(include_columns=columns, column_types=column_types or {},
                                 strings_can_be_null=False, quoted_strings_can_be_null=False)
        # First try each range without the null tokens: matching every field against pyarrow's list of null
        # spellings is ~5% of the parse's instructions (callgrind).  The result is kept only where it must
        # equal the default parse (see _null_free); otherwise (a missing value, a NaN, ...) the range is
        # parsed again with the defaults, and so is every range after it.
        co_fast = pcsv.ConvertOptions(include_columns=columns, column_types=column_types or {}, null_values=[],
                                      strings_can_be_null=False, quoted_strings_can_be_null=False)
        null_tokens = co.null_values

        # A gzip or bzip2 stream decompresses slower (gzip: ~270 MB/s) than one thread parses: the reading
        # thread is the bottleneck, and a parse on every core would take cores from it (10M rows of .csv.gz,
        # interleaved runs: 2.29 s parsed on the pool, 1.65 s parsed by one thread beside the decompression).
        threads = self.compression not in _SLOW_DECODERS

        def read(buf, opts):
            n = buf.size
            ro = pcsv.ReadOptions(column_names=names, use_threads=threads,
                                  block_size=max(1 << 20, n // 4 + 1))  # 4 blocks: both cores busy
            try:
                return pcsv.read_csv(pa.BufferReader(buf), read_options=ro, parse_options=po, convert_options=opts)
            except pa.ArrowInvalid as exc:
                if "straddl" not in str(exc):
                    raise
                # a line longer than a block: parse the range as a single block
                ro = pcsv.ReadOptions(column_names=names, use_threads=False, block_size=n + 1)
                return pcsv.read_csv(pa.BufferReader(buf), read_options=ro, parse_options=po, convert_options=opts)

        # Only for columns of numbers (and truth values) in the file's first block: checking a text column for
        # null spellings costs more than it saves (+25% instructions with an id column).  After the first
        # range that needs the defaults, the rest use them: a file with missing values is not parsed twice.
        self.schema()  # (the column types of the first block: known by now for a file read in ranges)
        fast = [_numbers_only(columns, column_types or {}, self._types or {})]
        # Lines of plain numbers: lossctl's own parser (lossctl.io.fastcsv), ~3x pyarrow's speed.  The first
        # range it hands back (a quote, a missing value, ...) and all after it go to pyarrow.
        from . import fastcsv
        kinds = [fastcsv.field_kinds(names, columns, column_types or {}, self._types or {}, self.delimiter)]

        def parse(buf):
            if kinds[0] is not None:
                tbl = fastcsv.parse(buf, self.delimiter, kinds[0], names, columns, split=threads)
                if tbl is not None:
                    return tbl
                kinds[0] = None
            if fast[0]:
                try:
                    tbl = read(buf, co_fast)
                except (pa.ArrowInvalid, pa.ArrowTypeError):
                    tbl = None
                if tbl is not None and _null_free(tbl, null_tokens):
                    return tbl
                fast[0] = False
            return read(buf, co)

        def located(where: str, buf, exc: BaseException, rows_before: int) -> str:
            if "Row #" not in str(exc):  # the parallel parser does not say where: parse again serially
                try:
                    ro = pcsv.ReadOptions(column_names=names, use_threads=False, block_size=buf.size + 1)
                    pcsv.read_csv(pa.BufferReader(buf), read_options=ro, parse_options=po, convert_options=co)
                except (pa.ArrowInvalid, pa.ArrowTypeError) as exc2:
                    exc = exc2
            return _rewrite_arrow_error(where, exc, names, rows_before, header=False)

        for _, tbl in self._parsed_ranges(paths, chunk_bytes, True, parse, located, start=start):
            yield from tbl.to_batches()  # one batch per parsed block, no copy

    def _parsed_ranges(self, paths: Sequence[str], chunk_bytes: int, header: bool, parse, located,
                       start: tuple[int, int] | None = None):
        """``(where, table)`` for each byte range of ``paths`` parsed by ``parse(buffer)``.  Range k+1 is
        parsed (in a thread, by pyarrow's pool) while range k+2 is found (read and decompressed, for a
        stream) and the table of range k is handed on: the parser never waits for the consumer.  The ranges
        of a dataset's files follow each other in one pipeline.  A parse error is an InputError whose
        message is ``located(where, buffer, error, rows of the file before the range)``."""
        ranges = self._ranges_of_files(paths, chunk_bytes, header=header, start=start)
        with contextlib.closing(_read_ahead(ranges, lambda r: parse(r[1]))) as ahead:
            for (path, buf, release, rows_before), result in ahead:
                where = path if self.data is None else self.display
                try:
                    tbl = result()
                except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                    raise InputError(located(where, buf, exc, rows_before[0])) from None
                rows_before[0] += tbl.num_rows
                del buf
                if release is not None:
                    release()  # the parsed columns are new buffers: the range's bytes can go
                yield where, tbl

    def _ranges_of_files(self, paths: Sequence[str], chunk_bytes: int, header: bool = True,
                         start: tuple[int, int] | None = None):
        """The byte ranges of each file in turn, as ``(path, buffer, release, rows_before)``: ``rows_before``
        is a one-item list the reader adds each range's rows to (the rows of that file before the range).
        ``start``: (offset, rows before it) to begin at, in a single local file."""
        for path in paths:
            rows_before = [start[1] if start else 0]
            for buf, release in self._byte_ranges(path, chunk_bytes, header=header,
                                                  start=start[0] if start else None):
                yield path, buf, release, rows_before

    def _byte_ranges(self, path, chunk_bytes: int, header: bool = True, start: int | None = None):
        """The data lines of a CSV as Arrow buffers of about ``chunk_bytes`` that end at a line end (the last
        one maybe not), each with a function that frees it once parsed (or None); the header line is skipped.

        - a local uncompressed file: zero-copy slices of a memory map, whose pages are handed back once the
          range is parsed (RSS holds about one range, not the file);
        - standard input or a pipe, uncompressed: zero-copy slices of the bytes already in memory;
        - a compressed or remote file (or compressed standard input): read (and decompressed) from a stream
          one range at a time, ahead of the parse of the range before it."""
        if self.data is not None and self.compression is None:
            data = pa.py_buffer(self.data)
            raw = self.data
            spooled = isinstance(raw, _mmap.mmap)  # a spooled pipe: each range's pages go back once parsed
            for buf, (p, e) in _split_ranges(data.size, chunk_bytes, lambda p, e: data.slice(p, e - p),
                                             lambda p, n: raw[p: p + n], spans=True, header=header,
                                             start=start):
                yield buf, (functools.partial(_give_back, raw, p, e) if spooled else None)
            return
        if self.data is None and self.compression is None and self.fs is None:
            fmap = _Mapped.open(path)
            if fmap is not None:
                def slice_of(p: int, e: int):
                    fmap.check(e)
                    return fmap.slice(p, e)
                whole = memoryview(fmap.whole)
                for buf, (p, e) in _split_ranges(fmap.size, chunk_bytes, slice_of,
                                                 lambda p, n: whole[p: p + n].tobytes(), spans=True,
                                                 header=header, start=start):
                    yield buf, functools.partial(fmap.release, p, e)
                return
            with pa.OSFile(path, "r") as f:  # a file that cannot be mapped (or empty): read each range
                size = f.size()
                def read_range(p: int, e: int):
                    f.seek(p)
                    return f.read_buffer(e - p)  # Arrow-owned
                yield from _split_ranges(size, chunk_bytes, read_range, lambda p, n: f.read_at(n, p),
                                         header=header, start=start)
            return
        with self._stream(path) as stream:
            yield from _stream_ranges(stream, chunk_bytes, header=header)

    def _json_schema(self) -> pa.Schema:
        """The fields of a JSON Lines input and their types, from its first block (1 MiB)."""
        import pyarrow.json as pj
        ro = pj.ReadOptions(block_size=1 << 20, use_threads=True)
        return pj.open_json(self._stream(self.files[0]), read_options=ro).schema

    def _json_ranges(self, columns, column_types, paths: Sequence[str], chunk_bytes: int | None = None):
        """Parse JSON Lines in byte ranges split at line ends, each with the multi-threaded ``read_json``
        (the streaming ``open_json`` is single-threaded: 1M rows took 0.30 s, 0.18 s in ranges).  Only the
        columns read are parsed, with their types fixed (float64 where lossctl wants floats, else the type
        in the first block, as the streaming reader fixed them), so every range gives the same schema."""
        import pyarrow.json as pj
        chunk_bytes = chunk_bytes or _CSV_RANGE_BYTES
        types = {c: column_types.get(c) or self.type_of(c) for c in columns if c in self.names}
        if any(pa.types.is_null(t) for t in types.values()):
            # a read column with no value in the first block: its type is inferred range by range
            po = pj.ParseOptions(explicit_schema=pa.schema(column_types) if column_types else None,
                                 unexpected_field_behavior="infer")
        else:
            po = pj.ParseOptions(explicit_schema=pa.schema(types), unexpected_field_behavior="ignore")

        def read(buf, threads: bool = True):
            n = buf.size
            ro = pj.ReadOptions(use_threads=threads, block_size=max(1 << 20, n // 4 + 1) if threads else n + 1)
            return pj.read_json(pa.BufferReader(buf), read_options=ro, parse_options=po)

        def located(where: str, buf, exc: BaseException, rows_before: int) -> str:
            try:  # row numbers of the threaded reader count from its block: parse the range as one
                read(buf, threads=False)
            except (pa.ArrowInvalid, pa.ArrowTypeError) as exc2:
                exc = exc2
            return _rewrite_arrow_error(where, exc, [], rows_before)

        for where, tbl in self._parsed_ranges(paths, chunk_bytes, False, read, located):
            missing = [c for c in columns if c not in tbl.schema.names]
            if missing:
                raise InputError(f"{where}: column {missing[0]!r} missing in part of the file")
            yield from tbl.select(columns).to_batches()

    def _ipc_reader(self, path):
        src = pa.BufferReader(self.data) if self.data is not None else self._random_access(path)
        try:
            return pa.ipc.open_file(src)
        except pa.ArrowInvalid:
            src = pa.BufferReader(self.data) if self.data is not None else self._random_access(path)
            return pa.ipc.open_stream(src)

    def batches(self, columns: Sequence[str], batch_rows: int = DEFAULT_BATCH_ROWS,
                float_columns: Sequence[str] = (), numpy_ok: bool = False) -> Iterator[pa.RecordBatch]:
        """Yield record batches holding ``columns`` (in that order). Counts rows into ``self.rows``.

        ``float_columns`` are read as float64 where the format infers types (CSV, JSON), so a column whose
        first block holds integers does not fail on a later '1.5'.  ``numpy_ok``: the caller takes
        :class:`NumpyBatch` too (only ``.column(i)`` and ``.num_rows``), which a small CSV of plain numbers
        is read into without loading pyarrow.
        """
        columns = list(dict.fromkeys(columns))
        self.rows = 0
        fmt = self.format
        if numpy_ok and fmt in ("csv", "tsv") and self._tiny() is not None:
            arrays = self._tiny().columns(columns)
            if arrays:
                n = len(arrays[0])
                for off in range(0, n, batch_rows):
                    b = NumpyBatch([a[off: off + batch_rows] for a in arrays])
                    self.rows += b.num_rows
                    yield b
                return
        if numpy_ok and fmt in ("csv", "tsv"):
            numpy_batches = self._numpy_ranges(columns, float_columns, batch_rows)
            if numpy_batches is not None:
                yield from numpy_batches
                return
        _load_pyarrow()
        if fmt in ("csv", "tsv", "jsonl") and not (fmt != "jsonl" and self._small_csv() is not None):
            # a dataset's files in one pipeline of byte ranges: the parse of a file's first range overlaps
            # the end of the file before it (100 CSV files of 100k rows: 0.91 -> 0.79 s)
            types = {c: pa.float64() for c in float_columns}
            reader = self._json_ranges if fmt == "jsonl" else self._csv_ranges
            yield from self._counted(reader(columns, types, self.files), batch_rows, self.display, columns)
            return
        if len(self.files) > 1:  # a dataset of small files: fewer, larger batches (see _coalesced)
            yield from _coalesced(self._file_batches(columns, batch_rows), batch_rows)
        else:
            yield from self._file_batches(columns, batch_rows)

    def _numpy_ranges(self, columns: list, float_columns: Sequence[str], batch_rows: int):
        """The batches (NumpyBatch) of a large local CSV of plain numbers, parsed by lossctl's parser from a
        memory map in ranges, without importing pyarrow (~23 ms of start-up and ~45 ms of CPU); None where
        that cannot be (see _numbers_head; a column only inferred as float64, as in fastcsv.field_kinds).
        From the first range the parser hands back, the rest of the file is read by pyarrow's range reader
        (_csv_ranges, from that range's first line): its types, values and messages are then those of every
        other file."""
        head = self._numbers_head()
        if head is None:
            return None
        names, head_kinds = head
        if not set(columns) <= set(names):
            return None
        kinds = bytearray(len(names))
        for i, name in enumerate(names):
            if name in columns:
                if name in float_columns:
                    kinds[i] = 1
                elif head_kinds[i] == 2:
                    kinds[i] = 2
                else:
                    return None
        return self._numpy_range_batches(columns, names, bytes(kinds), list(float_columns), batch_rows)

    def _numpy_range_batches(self, columns, names, kinds: bytes, float_columns, batch_rows: int):
        from . import fastcsv
        path = self.files[0]
        fh = open(path, "rb")
        size = os.fstat(fh.fileno()).st_size
        mm = _mmap.mmap(fh.fileno(), 0, access=_mmap.ACCESS_READ)
        view = memoryview(mm)
        order = [names[i] for i, k in enumerate(kinds) if k]  # the parser's columns, in file order
        pick = [order.index(c) for c in columns]

        def check(end: int) -> None:  # before the map is read up to end (see _Mapped.check)
            now = os.fstat(fh.fileno()).st_size
            if now < min(end, size):  # rewritten in place: a page past the new end would be SIGBUS
                raise InputError(f"{path}: the file shrank from {size} to {now} bytes while it was read "
                                 f"(another program is rewriting it); run again once it is written")

        def window(p: int, n: int) -> bytes:
            check(p + n)
            return mm[p: p + n]

        def parse(span):
            check(span[1])
            return fastcsv.parse_arrays(view[span[0]: span[1]], self.delimiter, kinds)

        ranges = _split_ranges(size, _CSV_RANGE_BYTES, lambda p, e: (p, e), window)
        ahead = _read_ahead(ranges, lambda r: parse(r[0]))
        rows_before = 0
        try:
            for (span, _), result in ahead:
                parts = result()
                if parts is None:  # handed back: pyarrow reads on from this range's first line
                    ahead.close()  # (after the next range's parse, no longer wanted: not beside pyarrow's)
                    _load_pyarrow()
                    types = {c: pa.float64() for c in float_columns}
                    yield from self._counted(self._csv_ranges(columns, types, [path], start=(span[0], rows_before)),
                                             batch_rows, self.display, columns)
                    return
                _give_back(mm, span[0], span[1])
                for part in parts:
                    cols = [part[j] for j in pick]
                    n = len(cols[0]) if cols else 0
                    rows_before += n
                    for off in range(0, n, batch_rows):
                        b = NumpyBatch([c[off: off + batch_rows] for c in cols], finite=True)
                        self.rows += b.num_rows
                        yield b
        finally:
            ahead.close()
            fh.close()  # (the map stays open while a batch still uses it)

    def _counted(self, batches: Iterator[pa.RecordBatch], batch_rows: int, where: str, columns: list,
                 cut: bool = True) -> Iterator[pa.RecordBatch]:
        """The non-empty batches, counted into ``self.rows`` and (``cut``) cut to ``batch_rows``; pyarrow's
        errors while reading them become one InputError naming ``where``."""
        try:
            for b in batches:
                if b.num_rows == 0:
                    continue
                self.rows += b.num_rows
                if cut and b.num_rows > batch_rows:
                    for off in range(0, b.num_rows, batch_rows):
                        yield b.slice(off, batch_rows)
                else:
                    yield b
        except InputError:
            raise
        except (pa.ArrowException, OSError, EOFError, ValueError) as exc:
            raise InputError(_rewrite_arrow_error(where, exc, self._names or columns, self.rows)) from None

    def _file_batches(self, columns: list, batch_rows: int) -> Iterator[pa.RecordBatch]:
        """The batches of a Parquet or Arrow input (or of a small CSV read whole), file by file."""
        # A spooled pipe (see _read_all) is read from its map in place; after each batch the map's pages go
        # back (those still in use are read in again from the file): 10M rows through `cat`, peak RSS of
        # Arrow IPC 218 -> 99 MB, of Parquet 265 -> 110 MB, at the same speed.
        spooled = isinstance(self.data, _mmap.mmap)
        for path in self.files:
            for b in self._counted(self._batches_of(path, columns, batch_rows), batch_rows,
                                   path if self.data is None else self.display, columns,
                                   cut=self.format != "parquet"):
                yield b
                if spooled:
                    _give_back(self.data, 0, len(self.data))

    def _batches_of(self, path: str, columns: list, batch_rows: int) -> Iterator[pa.RecordBatch]:
        fmt = self.format
        if fmt == "parquet":
            # pre_buffer=False: same speed here, half the peak memory (no whole-row-group prefetch)
            # (remote files: pre_buffer coalesces the column-chunk reads into few requests);
            # buffer_size: read each column chunk through a 1 MiB buffer, page by page, instead of
            # holding whole column chunks (up to a row group's worth of every column) in memory
            local = self.fs is None
            pf = self._parquet(path, pre_buffer=not local, buffer_size=_PARQUET_BUFFER if local else 0)
            yield from pf.iter_batches(batch_size=batch_rows, columns=columns, use_threads=True)
        elif fmt == "arrow":
            rd = self._ipc_reader(path)
            it = ((rd.get_batch(i) for i in range(rd.num_record_batches))
                  if isinstance(rd, pa.ipc.RecordBatchFileReader) else iter(rd))
            for b in it:
                missing = [c for c in columns if c not in b.schema.names]
                if missing:
                    raise InputError(f"{path}: column {missing[0]!r} missing in part of the file")
                yield b.select(columns)
        else:  # a small CSV, read whole once
            yield from self._small.select(columns).combine_chunks().to_batches(max_chunksize=batch_rows)


def _coalesced(batches: Iterator[pa.RecordBatch], max_rows: int) -> Iterator[pa.RecordBatch]:
    """Consecutive small batches (the files of a dataset of small files) joined into batches of up to
    ``max_rows`` rows: 1000 Parquet files of 10k rows were 1000 batches, each paying the per-batch work
    of the losses.  A batch of at least half that size, or with a column that cannot simply be
    concatenated (dictionary-encoded), passes as it is."""
    acc: list = []
    rows = 0
    for b in batches:
        k = b.num_rows
        if acc and rows + k > max_rows:
            yield _joined(acc)
            acc, rows = [], 0
        if k * 2 >= max_rows or any(pa.types.is_dictionary(t) for t in b.schema.types):
            if acc:
                yield _joined(acc)
                acc, rows = [], 0
            yield b
            continue
        acc.append(b)
        rows += k
    if acc:
        yield _joined(acc)


def _joined(batches: list) -> pa.RecordBatch:
    if len(batches) == 1:
        return batches[0]
    first = batches[0]
    cols = [pa.concat_arrays([b.column(i) for b in batches]) for i in range(first.num_columns)]
    return pa.RecordBatch.from_arrays(cols, schema=first.schema)


def _find_newline(window: Callable[[int, int], bytes], p: int, size: int) -> int:
    """The offset of the first line end at or after ``p`` in a source of ``size`` bytes (-1: none), looking
    through ``window(p, n)`` (n bytes at p) in growing steps: a line is rarely longer than the first step."""
    n = 4096
    while p < size:
        m = min(n, size - p)
        k = window(p, m).find(b"\n")
        if k >= 0:
            return p + k
        p += m
        n *= 4
    return -1


def _split_ranges(size: int, chunk_bytes: int, slice_of: Callable[[int, int], Any],
                  window: Callable[[int, int], bytes], spans: bool = False, header: bool = True,
                  start: int | None = None) -> Iterator[tuple]:
    """The ranges of a byte source with random access, after its header line (or from ``start``, a line's
    first byte): each ends at the first line end past ``chunk_bytes`` from its start (the last at the end),
    as ``(slice_of(p, e), None)``, or ``(slice_of(p, e), (p, e))`` with ``spans``."""
    pos = 0
    if start is not None:
        pos = start
    elif header:
        nl = _find_newline(window, 0, size)
        if nl < 0:
            return  # a header and no line end: no rows
        pos = nl + 1
    while pos < size:
        e = pos + chunk_bytes
        if e < size:
            k = _find_newline(window, e, size)
            e = size if k < 0 else k + 1
        else:
            e = size
        yield slice_of(pos, e), ((pos, e) if spans else None)
        pos = e


def _stream_ranges(stream, chunk_bytes: int, header: bool = True) -> Iterator[tuple]:
    """The ranges of a stream (decompressed, or remote) after its header line, as ``(buffer, None)``: each is
    read straight into a new Arrow buffer behind the unfinished line the previous read ended with, and ends
    at the last line end read (the last range at the end of the stream)."""
    import numpy as np
    carry = b""  # the start of a line the previous read did not finish
    while True:
        size = len(carry) + chunk_bytes
        buf = pa.allocate_buffer(size)
        view = np.frombuffer(buf, dtype=np.uint8)
        view[: len(carry)] = np.frombuffer(carry, dtype=np.uint8)
        n = len(carry)
        while n < size:
            got = stream.readinto(view[n:])
            if not got:
                break
            n += got
        last = n < size
        start = 0
        if header:
            k = _find_newline(lambda p, m: view[p: p + m].tobytes(), 0, n)
            if k < 0:
                if last:
                    return  # a header and no line end: no rows
                carry = view[:n].tobytes()
                continue
            start, header = k + 1, False
        if last:
            if n > start:
                yield buf.slice(start, n - start), None
            return
        # the last line end read: usually within the last line's length of the end
        lo = max(start, n - 65536)
        ends = np.flatnonzero(view[lo:n] == 10)
        if not len(ends) and lo > start:
            ends = np.flatnonzero(view[start:lo] == 10)
            lo = start
        if not len(ends):
            carry = view[start:n].tobytes()  # no line end yet: a line longer than a range
            continue
        k = lo + int(ends[-1])
        carry = view[k + 1: n].tobytes()
        yield buf.slice(start, k + 1 - start), None


def _numbers_only(columns: Sequence[str], column_types: dict, types: dict) -> bool:
    """Whether every column is read as a number or a truth value (given a type, or so typed in the file's
    first block): where the CSV ranges try the parse without null spellings first."""
    def numeric(t) -> bool:
        return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)
    return all(c in column_types or (c in types and numeric(types[c])) for c in columns)


def _null_free(tbl: pa.Table, null_tokens: Sequence[str]) -> bool:
    """Whether ``tbl``, parsed with ``null_values=[]``, is what the default options give for the same bytes.

    It is when no field is one of the default null spellings.  Such a field cannot hide in a numeric or
    boolean, date or time column (it is none of these) unless it is a NaN spelling ('nan', 'NaN', ...),
    which the float parser takes: so float columns must hold no NaN.  A text column must not hold one
    (the defaults could have typed it as numbers with nulls).  Any other type is parsed again, to be sure.
    """
    from .columns import primitive_to_numpy
    for col in tbl.columns:
        t = col.type
        if pa.types.is_integer(t) or pa.types.is_boolean(t):
            continue
        if pa.types.is_floating(t):
            for chunk in col.chunks:
                # a NaN makes the sum NaN (so does inf - inf: a needless second parse, never a wrong one)
                s = float(primitive_to_numpy(chunk).sum())
                if s != s:
                    return False
        elif pa.types.is_temporal(t) or pa.types.is_binary(t):
            # no null spelling reads as a date or a time; binary means a field that is not UTF-8 text, which
            # no spelling is, so the defaults give the same type (their text keeps null spellings as text)
            continue
        elif pa.types.is_string(t):
            import pyarrow.compute as pc
            if pc.any(pc.is_in(col, value_set=pa.array(list(null_tokens), type=t))).as_py():
                return False
        else:
            return False
    return True


class NumpyBatch:
    """Equal-length NumPy columns standing in for a record batch (``.column(i)``, ``.num_rows``).
    ``finite``: every value is known finite (lossctl's CSV parser takes no NaN, infinity or number beyond a
    double's range), so the consumer skips its NaN/infinity check."""

    __slots__ = ("arrays", "num_rows", "finite")

    def __init__(self, arrays: list, finite: bool = False):
        self.arrays = arrays
        self.num_rows = len(arrays[0]) if arrays else 0
        self.finite = finite

    def column(self, i: int):
        return self.arrays[i]


_INT = rb"-?[0-9]{1,18}"
_NUM = rb"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?"
_INT_COLUMN = re.compile(_INT + rb"(?:\n" + _INT + rb")*")
_NUM_COLUMN = re.compile(_NUM + rb"(?:\n" + _NUM + rb")*")


def _header_names(line: bytes, d: bytes) -> list[str] | None:
    """The names of a header line whose fields are plain or wholly quoted ("y_true", as polars and pyarrow
    write them) with no quote inside; None for anything else (or names that are not UTF-8)."""
    try:
        if b'"' not in line:
            return line.decode("utf-8").split(d.decode())
        field = re.compile(rb'"([^"]*)"|([^"' + re.escape(d) + rb']*)')
        names, pos = [], 0
        while True:
            m = field.match(line, pos)
            names.append((m.group(1) if m.group(1) is not None else m.group(2)).decode("utf-8"))
            pos = m.end()
            if pos == len(line):
                return names
            if line[pos: pos + 1] != d:
                return None
            pos += 1
    except UnicodeDecodeError:
        return None


class _TinyCsv:
    """A small CSV of plain numbers, parsed without pyarrow (the one-liner's start-up: pyarrow's import is
    ~35 ms).  It takes only what pyarrow would read the same way: no byte-order mark; a header of non-empty
    UTF-8 names, plain or wholly quoted; no quotes below it; the same number of fields on every line; and
    in a column either integers of at most 18 digits (int64, as pyarrow infers them) or decimal numbers
    (float64, parsed by Python's correctly rounded ``float`` as pyarrow's parser rounds them).  Empty lines
    are skipped and \\n, \\r\\n and \\r end lines, as in pyarrow.  Anything else (missing values, text, 'nan',
    '+1', a 19-digit integer) leaves the column, or the file, to pyarrow, whose answers and messages are then
    those of every other file.  tests/test_tiny_csv.py checks the two readers against each other."""

    def __init__(self, names: list[str], fields: list[bytes], nrows: int):
        self.names = names
        self.index = {n: i for i, n in enumerate(names)}
        self.fields = fields
        self.nrows = nrows
        self._cols: dict[str, object] = {}

    @classmethod
    def parse(cls, data: bytes, delimiter: str) -> "_TinyCsv | None":
        if not data or data.startswith(b"\xef\xbb\xbf") or len(delimiter) != 1 or not delimiter.isascii() \
                or delimiter in "\r\n\"":
            return None
        d = delimiter.encode()
        lines = data.splitlines()
        if not lines[0] or b'"' in data[len(lines[0]):]:  # quotes: in the header only
            return None
        body = [ln for ln in lines[1:] if ln]
        if not body:
            return None
        names = _header_names(lines[0], d)
        if names is None or not all(names):
            return None
        k = len(names) - 1
        if any(ln.count(d) != k for ln in body):
            return None
        return cls(names, d.join(body).split(d), len(body))

    def column(self, name: str):
        """The column as an int64 or float64 array, or None when pyarrow has to read it."""
        if name not in self._cols:
            import numpy as np
            vals = self.fields[self.index[name]::len(self.names)]
            text = b"\n".join(vals)
            if _INT_COLUMN.fullmatch(text):
                arr = np.array(list(map(int, vals)), dtype=np.int64)
            elif (b"." in text or b"e" in text or b"E" in text) and _NUM_COLUMN.fullmatch(text):
                # a decimal point or an exponent somewhere: pyarrow types the column float64 too (numbers
                # alone that failed the integer pattern have 19+ digits: pyarrow's int64, left to it)
                arr = np.array(list(map(float, vals)), dtype=np.float64)
            else:
                arr = None
            self._cols[name] = arr
        return self._cols[name]

    def columns(self, names: Sequence[str]) -> list | None:
        out = []
        for n in names:
            col = self.column(n) if n in self.index else None
            if col is None:
                return None
            out.append(col)
        return out


class _LocalParquet:
    """What lossctl uses of ``pyarrow.parquet.ParquetFile`` (schema_arrow, metadata, iter_batches by column
    name) for a local file, on the ``ParquetReader`` underneath it: ``import pyarrow.parquet`` also loads
    pyarrow.fs and ssl, ~18 ms of every run's start-up.  Column names select their leaf columns as
    ParquetFile does (a list or struct column is all of its leaves)."""

    def __init__(self, reader, path: str | None = None):
        self.reader = reader
        self.path = path
        self._leaves: dict[str, list[int]] | None = None

    @classmethod
    def open(cls, path: str, pre_buffer: bool = True, buffer_size: int = 0,
             metadata=None) -> "_LocalParquet | None":
        """``metadata``: the file's footer, already parsed (by the schema check of a dataset's files)."""
        try:
            from pyarrow._parquet import ParquetReader
            reader = ParquetReader()
        except (ImportError, AttributeError, TypeError):  # pragma: no cover - another pyarrow layout
            return None
        reader.open(path, pre_buffer=pre_buffer, buffer_size=buffer_size, metadata=metadata)
        return cls(reader, path)

    @property
    def schema_arrow(self) -> pa.Schema:
        return self.reader.schema_arrow

    @property
    def metadata(self):
        return self.reader.metadata

    def iter_batches(self, batch_size: int, row_groups=None, columns=None, use_threads: bool = True):
        if self._leaves is None:
            self._leaves = {}
            for i, path in enumerate(self.reader.column_paths):
                self._leaves.setdefault(path[0], []).append(i)
        idx = None if columns is None else [i for c in columns for i in self._leaves.get(c, ())]
        groups = range(self.reader.num_row_groups) if row_groups is None else row_groups
        if self._small_groups(groups, idx):
            return self._whole_groups(groups, idx, batch_size, use_threads)
        return self.reader.iter_batches(batch_size, row_groups=groups, column_indices=idx, use_threads=use_threads)

    def _small_groups(self, groups, idx) -> bool:
        """Whether every row group's selected columns decode to at most _WHOLE_GROUP_BYTES."""
        md = self.reader.metadata
        for g in groups:
            rg = md.row_group(g)
            cols = range(rg.num_columns) if idx is None else idx
            if sum(rg.column(j).total_uncompressed_size for j in cols) > _WHOLE_GROUP_BYTES:
                return False
        return True

    def _whole_groups(self, groups, idx, batch_size: int, use_threads: bool):
        """One read per row group, cut into batches without copying.  Decoding a whole row group (its
        columns in parallel) is ~1.7x faster than iter_batches' page-by-page reading (100M rows: 0.66 s
        against 1.14 s), for at most _WHOLE_GROUP_BYTES held per row group in flight; larger row groups
        are streamed page by page.

        A local file's row groups are decoded straight from a read-only memory map (see _Mapped): the
        decode of 10M rows took 32 ms instead of 63 ms through pread and a read buffer, and the whole
        `eval -l mse` run 0.199 s instead of 0.209 s; each row group's pages are released once decoded."""
        md = self.reader.metadata
        # (a file of a few MiB is read as fast without a map, which costs ~0.1 ms to set up and tear down:
        # a dataset of 1000 files of 10k rows, 0.52 -> 0.44 s)
        small = sum(md.row_group(g).total_byte_size for g in groups) < _MAP_MIN_BYTES
        mapped = _Mapped.open(self.path) if self.path is not None and not small else None
        reader = self.reader
        if mapped is not None:
            from pyarrow._parquet import ParquetReader
            reader = ParquetReader()
            reader.open(mapped.file, pre_buffer=False, buffer_size=0, metadata=self.reader.metadata)  # no 2nd parse
        for run in _runs_of_groups(md, list(groups), idx, 4 * batch_size):
            if mapped is not None:
                spans = [_chunk_range(md.row_group(g), idx) for g in run]
                start, end = min(a for a, _ in spans), max(b for _, b in spans)
                mapped.check(end)
            if len(run) == 1:
                table = reader.read_row_group(run[0], column_indices=idx, use_threads=use_threads)
            else:  # small row groups: one read, combined into one chunk (a copy) to be cut into whole batches
                table = reader.read_row_groups(run, column_indices=idx, use_threads=use_threads).combine_chunks()
            if mapped is not None:  # decoded (copied out): the group's file pages can leave our memory
                mapped.release(start, end)
            yield from table.to_batches(max_chunksize=batch_size)
            del table


def _runs_of_groups(md, groups: list, idx, max_rows: int) -> Iterator[list]:
    """Consecutive row groups read together: up to ``max_rows`` rows and _WHOLE_GROUP_BYTES of selected
    columns (a group over either is read alone).  A file of small row groups (a streaming writer's, or one
    written with a small ``row_group_size``) would otherwise cost a read and a batch per row group: 10M rows
    in 10k-row groups took 0.37 s, 0.22 s read in runs of 4 batches (polars 0.24 s; 1M-row groups: 0.20 s)."""
    run: list = []
    rows = size = 0
    for g in groups:
        rg = md.row_group(g)
        n = rg.num_rows
        b = sum(rg.column(j).total_uncompressed_size for j in (range(rg.num_columns) if idx is None else idx))
        if run and (rows + n > max_rows or size + b > _WHOLE_GROUP_BYTES):
            yield run
            run, rows, size = [], 0, 0
        run.append(g)
        rows += n
        size += b
    if run:
        yield run


def _chunk_range(rg, idx) -> tuple[int, int]:
    """Byte range [start, end) of a row group's selected column chunks in the file (a chunk starts at its
    dictionary page when it has one)."""
    spans = []
    for j in (range(rg.num_columns) if idx is None else idx):
        c = rg.column(j)
        d = c.dictionary_page_offset
        first = min(d, c.data_page_offset) if c.has_dictionary_page and d else c.data_page_offset
        spans.append((first, first + c.total_compressed_size))
    return min(a for a, _ in spans), max(b for _, b in spans)


class _Mapped:
    """A local file mapped read-only by Arrow (``pa.memory_map``), for pyarrow to decode from without
    copying it into read buffers (10M rows of Parquet decoded in 32 ms; 63 ms through pread and a buffer).
    The pages of what has been decoded are released (MADV_DONTNEED: they stay in the page cache but leave
    this process's memory), so the mapped part of the file held at once is about one row group or range.

    Arrow's own map, not Python's ``mmap`` wrapped by ``pa.py_buffer``: a buffer backed by a Python object
    takes the GIL when its last reference goes, and if that happens on an Arrow pool thread while the
    interpreter exits, the thread is stopped inside C++ and the process aborts ("terminate called without
    an active exception").

    A mapped file that shrinks under the reader (rewritten in place by another program) would kill the
    process with SIGBUS when a page past the new end is touched; :meth:`check` (before each row group or
    range) turns that into an input error, leaving only the few milliseconds of one decode exposed."""

    __slots__ = ("file", "size", "whole", "base", "path", "fh")

    def __init__(self, f, size: int, path: str, fh):
        self.file = f
        self.size = size
        self.whole = f.read_buffer(size)  # the whole map as one zero-copy Arrow buffer
        self.base = self.whole.address
        self.path = path
        self.fh = fh  # the same file, for fstat

    def check(self, end: int) -> None:
        """Raise an input error if the file no longer holds bytes up to ``end``."""
        now = os.fstat(self.fh.fileno()).st_size
        if now < min(end, self.size):
            raise InputError(f"{self.path}: the file shrank from {self.size} to {now} bytes while it was read "
                             f"(another program is rewriting it); run again once it is written")

    def slice(self, start: int, end: int):
        """Bytes [start, end) of the file, zero-copy."""
        return self.whole.slice(start, end - start)

    @classmethod
    def open(cls, path: str) -> "_Mapped | None":
        """The map of a local file, or None: empty, not mappable, or a platform whose pages cannot be
        released (without madvise the whole file would stay in memory: the readers read it instead)."""
        if not hasattr(_mmap, "MADV_DONTNEED"):  # pragma: no cover - Windows
            return None
        try:
            fh = open(path, "rb")
        except OSError:
            return None
        try:
            f = pa.memory_map(path, "r")
            size = f.size()
            if size == 0 or os.fstat(fh.fileno()).st_size != size:  # empty, or changing right now
                f.close()
                fh.close()
                return None
            return cls(f, size, path, fh)
        except (OSError, pa.ArrowException, ValueError):  # not mappable (a pipe, a special file)
            fh.close()
            return None

    def release(self, start: int, end: int) -> None:
        """Give back the whole pages of bytes [start, end) of the file."""
        lo = (max(0, start) // _mmap.PAGESIZE) * _mmap.PAGESIZE
        hi = min(self.size, end)
        if hi > lo:
            _madvise_dontneed(self.base + lo, hi - lo)


@functools.lru_cache(maxsize=None)
def _libc_madvise():
    """libc's madvise through ctypes, or None (_Mapped is only used where mmap.MADV_DONTNEED exists)."""
    try:
        import ctypes
        fn = ctypes.CDLL(None).madvise
    except (OSError, AttributeError, TypeError):  # pragma: no cover - no libc madvise
        return None
    fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


def _madvise_dontneed(addr: int, length: int) -> None:
    """madvise(addr, length, MADV_DONTNEED), best effort (an error code is ignored: the pages just stay)."""
    fn = _libc_madvise()
    if fn is not None:
        fn(addr, length, _mmap.MADV_DONTNEED)


def _read_ahead(items: Iterator, fn: Callable) -> Iterator[tuple]:
    """``(item, result)`` for each of ``items``, where ``result()`` waits for ``fn(item)`` (or raises its
    error): fn of the next item runs in a thread while the caller uses this one, so the parse never waits
    for the consumer.  Closed early, it waits for the work in flight and closes ``items``."""
    pending = None
    try:
        nxt = next(items, None)
        pending = _in_thread(fn, nxt) if nxt is not None else None
        while pending is not None:
            cur, result = nxt, pending
            pending = None
            nxt = next(items, None)
            if nxt is not None:
                pending = _in_thread(fn, nxt)
            yield cur, result
    finally:
        if pending is not None:
            with contextlib.suppress(Exception):  # (its result is not wanted; it no longer uses the cores)
                pending()
        items.close()


def _in_thread(fn, *args):
    """Start fn(*args) in a daemon thread; return a function that waits for it and returns its result
    (or raises its exception)."""
    import threading
    box: dict = {}

    def run():
        try:
            box["value"] = fn(*args)
        except BaseException as exc:  # handed to whoever waits
            box["error"] = exc

    t = threading.Thread(target=run, name="lossctl-csv", daemon=True)
    t.start()

    def result():
        t.join()
        if "error" in box:
            raise box["error"]
        return box["value"]
    return result


def _short(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return msg[:300]


_CSV_CONV = re.compile(r"In CSV column #(\d+): (?:Row #(\d+): )?CSV conversion error to (\w+): invalid value '(.*)'")


def _rewrite_arrow_error(path: str, exc: BaseException, columns: Sequence[str], rows_before: int,
                         header: bool = True, what: str = "cannot read") -> str:
    """Turn pyarrow's reader errors into 'FILE, column 'C', row N: ...' where the message allows.

    ``columns``: the names of all the file's columns, in file order (pyarrow's CSV messages number the
    file's columns, whichever of them are read)."""
    text = str(exc)
    if isinstance(exc, MemoryError):
        return f"{path}: cannot read: out of memory ({_short(exc)}); is the file corrupt?"
    if "Empty CSV file" in text:
        return f"{path}: no rows (the file is empty or holds only a header line)"
    m = re.search(r"Column\(/?([^)]*)\) changed from (\w+) to (\w+) in row (\d+)", text)
    j = re.search(r"JSON parse error: (.*?)\.? in row (\d+)", text)
    if j and not m:
        return (f"{path}, row {rows_before + int(j.group(2)) + 1}: not valid JSON ({j.group(1)}); JSON Lines hold "
                f"one object per line ({{\"column\": value, ...}})")
    if m and not m.group(1):  # the line itself is not an object
        return (f"{path}, row {rows_before + int(m.group(4)) + 1}: {'an' if m.group(3)[:1] in 'aeiou' else 'a'} "
                f"{m.group(3)} where a JSON object was "
                f"expected; JSON Lines hold one object per line ({{\"column\": value, ...}})")
    if m:  # pyarrow.json: rows of the block counted from 0
        return (f"{path}, column {m.group(1)!r}, row {rows_before + int(m.group(4)) + 1}: a {m.group(3)} among "
                f"{m.group(2)}s; every value of a column must have the same type")
    m = _CSV_CONV.search(text)
    if m:
        col_i = int(m.group(1))
        col = columns[col_i] if col_i < len(columns) else f"#{col_i}"
        # pyarrow counts lines of the range it parsed from 1, the header line included when there is one
        row = f", row {rows_before + int(m.group(2)) - (1 if header else 0)}" if m.group(2) else ""
        return (f"{path}, column {col!r}{row}: {shown(m.group(4))} is not a number "
                f"(expected {m.group(3)}); fix the value or choose another column")
    m = re.search(r"(?:Row #(\d+): )?Expected (\d+) columns, got (\d+): (.*)", text)
    if m:
        # pyarrow counts the lines it parsed from 1, the header line included when there is one
        row = f", row {rows_before + int(m.group(1)) - (1 if header else 0)}" if m.group(1) else ""
        hint = ""
        if not header and m.group(4).count('"') % 2:  # the byte-range reader split a quoted field at its line break
            hint = ("; quoted fields holding line breaks are not supported in CSV files over 4 MiB: "
                    "remove the line breaks or convert the file to Parquet")
        return (f"{path}{row}: the row has {m.group(3)} fields where the header has {m.group(2)} "
                f"(row text: {shown(m.group(4))}); fix the ragged row{hint}")
    return f"{path}: {what}: {_short(exc)}"


def open_source(path: str, input_format: str | None = None, storage_options=None) -> Source:
    """Resolve a path (file, directory, glob, URL or '-') into a :class:`Source`; InputError if unusable."""
    if "://" in path and not path.startswith("file://"):
        from .remote import open_remote_source
        return open_remote_source(path, input_format, storage_options or {})
    if path.startswith("file://"):
        path = path[len("file://"):]
    fmt = None
    if input_format:
        key = input_format.lower()
        if key not in FORMAT_ALIASES:
            raise UsageError(f"unknown --input-format {input_format!r}; use one of {', '.join(FORMATS)}")
        fmt = FORMAT_ALIASES[key]
    if path == "-" or _is_stream(path):
        # standard input, a named pipe or a process substitution (<(zcat x.csv.gz) is /dev/fd/N): bytes that
        # can be read once, so they are read whole; within one command (read_once_scope) a pipe is read once
        data = _read_once(path)
        ext, comp = (None, None) if path == "-" else _split_ext(path)
        if not data:
            raise InputError("<stdin>: no data on standard input (empty input)" if path == "-"
                             else f"{path}: no data in the pipe (empty input)")
        sfmt, scomp = _sniff_bytes(data[:8])
        comp = comp or scomp
        fmt = fmt or _EXT.get(ext) or sfmt or "csv"
        src = Source(path=path, format=fmt, files=[path], compression=comp, data=data)
        if fmt in ("csv", "tsv"):
            src.delimiter = "\t" if fmt == "tsv" else _sniff_delimiter(_head_of(src), src.display)
        return src

    if os.path.isdir(path):
        files = sorted(
            os.path.join(root, f) for root, _, fs in os.walk(path) for f in fs
            if not f.startswith((".", "_")) and _split_ext(f)[0] in _EXT)
        if not files:
            raise InputError(f"{path}: directory holds no readable data files (.parquet, .csv, ...)")
    elif _is_glob(path):
        files = sorted(f for f in _glob.glob(path, recursive=True) if os.path.isfile(f))
        if not files:
            raise InputError(f"{path}: no file matches this pattern")
    else:
        if not os.path.exists(path):
            raise InputError(f"{path}: no such file")
        if not os.access(path, os.R_OK):
            raise InputError(f"{path}: permission denied")
        files = [path]

    ext, comp = _split_ext(files[0])
    if fmt is None:
        kinds = {_EXT.get(_split_ext(f)[0]) for f in files}
        if len(files) > 1 and len(kinds) > 1:
            raise InputError(f"{path}: mixes file formats ({', '.join(sorted(k or '?' for k in kinds))}); "
                             f"point at one kind of file")
        fmt = _EXT.get(ext)
    try:
        with open(files[0], "rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        raise InputError(f"{files[0]}: cannot open: {exc.strerror}") from None
    if not head:
        raise InputError(f"{files[0]}: file is empty (no header, no rows)")
    sfmt, scomp = _sniff_bytes(head)
    comp = comp or scomp
    if fmt is None:
        if sfmt:
            fmt = sfmt
        elif comp or _looks_like_text(files[0]):
            fmt = "csv"
        else:
            raise InputError(f"{files[0]}: unknown file format; name it .csv/.tsv/.parquet/.arrow/.jsonl "
                             f"or pass --input-format")
    elif sfmt and sfmt != fmt and comp is None:
        if input_format:
            raise InputError(f"{files[0]}: --input-format {input_format} but the content is {sfmt}; "
                             f"pass --input-format {sfmt} (or leave it out)")
        raise InputError(f"{files[0]}: file extension says {fmt} but the content is {sfmt}; "
                         f"rename it or pass --input-format {sfmt}")
    elif fmt in ("parquet", "arrow") and sfmt is None:
        raise InputError(f"{files[0]}: not a valid {fmt} file (bad magic bytes); is it truncated or mislabelled?")
    src = Source(path=path, format=fmt, files=files, compression=comp)
    if fmt == "tsv":
        src.delimiter = "\t"
    elif fmt == "csv":
        src.delimiter = "," if ext == ".csv" else _sniff_delimiter(_head_of(src), files[0])
        if ext == ".csv":
            head_text = _head_of(src)
            first = head_text.split(b"\n", 1)[0]
            if b"," not in first and (b"\t" in first or b";" in first):
                src.delimiter = _sniff_delimiter(head_text, files[0])
    return src


_READ_ONCE: "dict[str, bytes] | None" = None  # a pipe's bytes, by path, inside read_once_scope()


@contextlib.contextmanager
def read_once_scope():
    """Within this (one CLI command), a pipe named twice (say, the --on check of compare, then the
    evaluation) is read once and its bytes reused; outside it, every open reads the pipe afresh."""
    global _READ_ONCE
    saved, _READ_ONCE = _READ_ONCE, {}
    try:
        yield
    finally:
        _READ_ONCE = saved


def _is_stream(path: str) -> bool:
    """A path that names a pipe, socket or character device (not a file that can be read twice)."""
    import stat
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


_SPOOL_AFTER = 64 << 20  # a pipe's bytes beyond this go to a temporary file (see _read_all)


def _give_back(mm: _mmap.mmap, start: int, end: int) -> None:
    """Hand back the whole pages of bytes [start, end) of a spooled pipe's read-only map (read in again from
    its file if still used); nothing where the platform has no madvise (Windows)."""
    lo = start // _mmap.PAGESIZE * _mmap.PAGESIZE
    hi = end if end >= len(mm) else end // _mmap.PAGESIZE * _mmap.PAGESIZE
    if hi > lo and hasattr(_mmap, "MADV_DONTNEED"):
        mm.madvise(_mmap.MADV_DONTNEED, lo, hi - lo)


class _SpooledReader(io.RawIOBase):
    """A spooled pipe's map read as a stream (by a decompressor) that hands back the pages behind it."""

    def __init__(self, mm: _mmap.mmap):
        super().__init__()
        self.mm = mm
        self.pos = self.freed = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = min(len(b), len(self.mm) - self.pos)
        b[:n] = self.mm[self.pos: self.pos + n]
        self.pos += n
        if self.pos - self.freed >= 8 << 20:  # every 8 MiB read: give back the pages read
            _give_back(self.mm, self.freed, self.pos)
            self.freed = self.pos
        return n


def _read_all(fh, name: str):
    """All the bytes of a pipe: up to _SPOOL_AFTER in memory; a longer input is written on to an unnamed
    temporary file (TMPDIR) and mapped read-only, so that the parse, which hands back the pages of each
    range it has parsed, holds about one range in memory instead of the whole input (a 392 MB CSV through
    `cat`: peak RSS 519 -> 112 MB, 1.68 -> 1.10 s).  Bytes-like either way (len, slices, find, buffer)."""
    chunks, size = [], 0
    while size <= _SPOOL_AFTER:
        chunk = fh.read(min(1 << 20, _SPOOL_AFTER + 1 - size))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
    import shutil
    import tempfile
    try:
        with tempfile.TemporaryFile(prefix="lossctl-pipe-") as tmp:
            for chunk in chunks:
                tmp.write(chunk)
            del chunks, chunk
            shutil.copyfileobj(fh, tmp, 8 << 20)
            tmp.flush()
            return _mmap.mmap(tmp.fileno(), 0, access=_mmap.ACCESS_READ)  # (the map keeps the file)
    except OSError as exc:
        raise InputError(f"{name}: cannot keep the input in a temporary file ({exc.strerror}; TMPDIR="
                         f"{tempfile.gettempdir()}); free space there, set TMPDIR, or write the input to a "
                         f"file first") from None


def _read_once(path: str):
    if path == "-":
        return _read_all(sys.stdin.buffer, "<stdin>")
    if _READ_ONCE is not None and path in _READ_ONCE:
        return _READ_ONCE[path]
    try:
        with open(path, "rb") as fh:
            data = _read_all(fh, path)
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror}") from None
    if _READ_ONCE is not None:
        _READ_ONCE[path] = data
    return data


def _looks_like_text(path: str) -> bool:
    with open(path, "rb") as fh:
        chunk = fh.read(4096)
    if b"\x00" in chunk:
        return False
    try:
        chunk.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start > len(chunk) - 4  # a multi-byte character cut at the end of the sample
    return True


def _head_of(src: Source, n: int = 65536) -> bytes:
    try:
        if src.compression is None and src.fs is None:  # plain bytes: no need to load pyarrow for them
            if src.data is not None:
                return src.data[:n]
            with open(src.files[0], "rb") as fh:
                return fh.read(n)
        stream = src._stream(src.files[0])
        return stream.read(n)
    except (OSError, pa.ArrowInvalid) as exc:
        raise InputError(f"{src.display}: cannot read: {_short(exc)}") from None
