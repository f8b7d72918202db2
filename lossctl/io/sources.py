"""Input files as streams of Arrow record batches.

Formats: CSV and TSV (delimiter from the extension, or sniffed), gzip/bz2/zstd-compressed CSV by
extension, Parquet (a file, a directory of files, or a glob), Arrow IPC / Feather, JSON Lines, and ``-``
for standard input (format from ``--input-format``, CSV by default).

Only ``pyarrow.csv``, ``pyarrow.parquet.ParquetFile``, ``pyarrow.ipc`` and ``pyarrow.json`` are used:
``pq.read_table`` / ``pyarrow.dataset`` and ``Array.to_numpy`` import pandas (0.2-0.3 s per run).
"""
from __future__ import annotations

import csv as _csv
import glob as _glob
import io
import os
import re
import sys
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import pyarrow as pa

from ..errors import InputError, UsageError

FORMATS = ("csv", "tsv", "parquet", "arrow", "jsonl")
_COMPRESSION = {".gz": "gzip", ".gzip": "gzip", ".bz2": "bz2", ".zst": "zstd", ".zstd": "zstd"}
_EXT = {
    ".csv": "csv", ".txt": "csv", ".tsv": "tsv", ".tab": "tsv",
    ".parquet": "parquet", ".pq": "parquet", ".parq": "parquet",
    ".arrow": "arrow", ".feather": "arrow", ".ipc": "arrow", ".arrows": "arrow",
    ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
}
FORMAT_ALIASES = {"csv": "csv", "tsv": "tsv", "parquet": "parquet", "arrow": "arrow", "feather": "arrow",
                  "ipc": "arrow", "jsonl": "jsonl", "ndjson": "jsonl", "json": "jsonl"}

DEFAULT_BATCH_ROWS = 1 << 20
_CSV_BLOCK = 16 << 20


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
        return "<stdin>" if self.path == "-" else self.path

    # -- schema ---------------------------------------------------------------------------------
    def schema(self) -> pa.Schema:
        if self._types is None:
            sch = self._read_schema()
            self._names = list(sch.names)
            self._types = {f.name: f.type for f in sch}
            if len(set(self._names)) != len(self._names):
                dup = sorted({n for n in self._names if self._names.count(n) > 1})
                raise InputError(f"{self.display}: duplicate column name(s) {', '.join(map(repr, dup))}; "
                                 f"rename them so each column is unique")
            self._schema = sch
        return self._schema

    @property
    def names(self) -> list[str]:
        self.schema()
        return list(self._names or [])

    def type_of(self, name: str) -> pa.DataType:
        self.schema()
        return self._types[name]

    def _read_schema(self) -> pa.Schema:
        fmt = self.format
        try:
            if fmt == "parquet":
                first = self._parquet(self.files[0]).schema_arrow
                for f in self.files[1:]:
                    other = self._parquet(f).schema_arrow
                    if not other.equals(first):
                        raise InputError(
                            f"{f}: schema differs from {self.files[0]} (columns {other.names} vs "
                            f"{first.names}); a dataset's files must share one schema")
                return first
            if fmt == "arrow":
                return self._ipc_reader(self.files[0]).schema
            if fmt in ("csv", "tsv"):
                small = self._small_csv()
                if small is not None:
                    return small.schema
                return self._csv_reader(None, column_types=None).schema
            if fmt == "jsonl":
                return self._json_reader(None).schema
        except InputError:
            raise
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError, ValueError, EOFError) as exc:
            raise InputError(f"{self.display}: cannot read as {fmt}: {_short(exc)}") from None
        raise UsageError(f"unknown input format {fmt!r}")  # pragma: no cover

    # -- readers --------------------------------------------------------------------------------
    def _stream(self, path: str):
        if self.data is not None:
            return pa.BufferReader(self.data) if self.compression is None else pa.CompressedInputStream(
                pa.BufferReader(self.data), self.compression)
        if self.fs is not None:
            return self.fs.open_input_stream(path, compression=self.compression)
        return pa.input_stream(path, compression=self.compression)

    def _random_access(self, path: str):
        return self.fs.open_input_file(path) if self.fs is not None else pa.memory_map(path, "r")

    def _parquet(self, path: str, **kwargs):
        import pyarrow.parquet as pq
        if self.data is not None:  # standard input, already read into memory
            return pq.ParquetFile(pa.BufferReader(self.data), **kwargs)
        return pq.ParquetFile(self.fs.open_input_file(path) if self.fs is not None else path, **kwargs)

    def _csv_reader(self, columns, column_types, path=None):
        import pyarrow.csv as pcsv
        ro = pcsv.ReadOptions(block_size=_CSV_BLOCK if columns is not None else 1 << 20, use_threads=True)
        po = pcsv.ParseOptions(delimiter=self.delimiter)
        co = pcsv.ConvertOptions(include_columns=columns, column_types=column_types or {},
                                 strings_can_be_null=False, quoted_strings_can_be_null=False)
        return pcsv.open_csv(self._stream(path or self.files[0]), read_options=ro, parse_options=po,
                             convert_options=co)

    def _small_csv(self):
        """Read a small local CSV (< 4 MiB) whole, once, as one block: the one-liner fast path (the schema
        and the data come from a single parse, and type inference sees every row)."""
        if getattr(self, "_small", None) is not None:
            return self._small
        if len(self.files) != 1 or self.compression is not None or getattr(self, "fs", None) is not None:
            return None
        size = len(self.data) if self.data is not None else os.path.getsize(self.files[0])
        if size >= 4 << 20:
            return None
        import pyarrow.csv as pcsv
        ro = pcsv.ReadOptions(block_size=size + 1, use_threads=False)
        po = pcsv.ParseOptions(delimiter=self.delimiter)
        co = pcsv.ConvertOptions(strings_can_be_null=False, quoted_strings_can_be_null=False)
        src = pa.BufferReader(self.data) if self.data is not None else self.files[0]
        self._small = pcsv.read_csv(src, read_options=ro, parse_options=po, convert_options=co)
        return self._small

    def _csv_ranges(self, columns, column_types, path, chunk_bytes: int = 16 << 20):
        """Parse a local CSV in byte ranges split at line ends, each range with the multi-threaded
        ``read_csv``: as fast as reading the whole file at once, with memory bounded by one range.

        (The streaming ``open_csv`` reader is single-threaded, 2-3x slower; ``read_csv`` of the whole file
        holds it all in memory.)  Quoted fields holding newlines are not supported here, as in pyarrow's
        own block splitting with ``newlines_in_values=False``.
        """
        import pyarrow.csv as pcsv
        names = self.names
        mm = pa.OSFile(path, "r")  # plain reads: a memory map would count the whole file in RSS
        size = mm.size()
        head = mm.read_at(min(size, 1 << 20), 0)
        nl = head.find(b"\n")
        if nl < 0:
            return
        pos = nl + 1
        po = pcsv.ParseOptions(delimiter=self.delimiter)
        co = pcsv.ConvertOptions(include_columns=columns, column_types=column_types or {},
                                 strings_can_be_null=False, quoted_strings_can_be_null=False)
        rows_before = 0
        while pos < size:
            end = min(pos + chunk_bytes, size)
            if end < size:
                probe = mm.read_at(min(1 << 20, size - end), end)
                k = probe.find(b"\n")
                end = size if k < 0 else end + k + 1
            mm.seek(pos)
            buf = mm.read_buffer(end - pos)
            ro = pcsv.ReadOptions(column_names=names, use_threads=True,
                                  block_size=max(1 << 20, (end - pos) // 4 + 1))  # 4 blocks: both cores busy
            try:
                tbl = pcsv.read_csv(pa.BufferReader(buf), read_options=ro, parse_options=po, convert_options=co)
            except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                raise InputError(_rewrite_arrow_error(path, exc, columns, rows_before, header=False)) from None
            rows_before += tbl.num_rows
            for b in tbl.combine_chunks().to_batches():
                yield b
            pos = end

    def _json_reader(self, column_types, path=None):
        import pyarrow.json as pj
        ro = pj.ReadOptions(block_size=_CSV_BLOCK, use_threads=True)
        po = pj.ParseOptions(explicit_schema=pa.schema(column_types) if column_types else None,
                             unexpected_field_behavior="infer")
        return pj.open_json(self._stream(path or self.files[0]), read_options=ro, parse_options=po)

    def _ipc_reader(self, path):
        src = pa.BufferReader(self.data) if self.data is not None else self._random_access(path)
        try:
            return pa.ipc.open_file(src)
        except pa.ArrowInvalid:
            src = pa.BufferReader(self.data) if self.data is not None else self._random_access(path)
            return pa.ipc.open_stream(src)

    def batches(self, columns: Sequence[str], batch_rows: int = DEFAULT_BATCH_ROWS,
                float_columns: Sequence[str] = ()) -> Iterator[pa.RecordBatch]:
        """Yield record batches holding ``columns`` (in that order). Counts rows into ``self.rows``.

        ``float_columns`` are read as float64 where the format infers types (CSV, JSON), so a column whose
        first block holds integers does not fail on a later '1.5'.
        """
        columns = list(dict.fromkeys(columns))
        self.rows = 0
        fmt = self.format
        for path in self.files:
            try:
                if fmt == "parquet":
                    # pre_buffer=False: same speed here, half the peak memory (no whole-row-group prefetch)
                    # (remote files: pre_buffer coalesces the column-chunk reads into few requests)
                    pf = self._parquet(path, pre_buffer=self.fs is not None)
                    it = pf.iter_batches(batch_size=batch_rows, columns=columns, use_threads=True)
                elif fmt == "arrow":
                    rd = self._ipc_reader(path)
                    if isinstance(rd, pa.ipc.RecordBatchFileReader):
                        it = (rd.get_batch(i) for i in range(rd.num_record_batches))
                    else:
                        it = iter(rd)
                elif fmt in ("csv", "tsv") and self._small_csv() is not None:
                    it = self._small.select(columns).combine_chunks().to_batches(max_chunksize=batch_rows)
                elif fmt in ("csv", "tsv"):
                    types = {c: pa.float64() for c in float_columns}
                    if self.data is None and self.compression is None and getattr(self, "fs", None) is None:
                        it = self._csv_ranges(columns, types, path)
                    else:
                        it = self._csv_reader(columns, types, path)
                else:
                    types = {c: pa.float64() for c in float_columns}
                    it = self._json_reader(types, path)
                for b in it:
                    if fmt in ("arrow", "jsonl"):
                        missing = [c for c in columns if c not in b.schema.names]
                        if missing:
                            raise InputError(f"{path}: column {missing[0]!r} missing in part of the file")
                        b = b.select(columns)
                    if b.num_rows == 0:
                        continue
                    self.rows += b.num_rows
                    if b.num_rows > batch_rows and fmt != "parquet":
                        for off in range(0, b.num_rows, batch_rows):
                            yield b.slice(off, batch_rows)
                    else:
                        yield b
            except InputError:
                raise
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, OSError, EOFError,
                    ValueError) as exc:
                raise InputError(_rewrite_arrow_error(path if self.data is None else self.display,
                                                      exc, columns, self.rows)) from None


def _short(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return msg[:300]


_CSV_CONV = re.compile(r"In CSV column #(\d+): (?:Row #(\d+): )?CSV conversion error to (\w+): invalid value '(.*)'")


def _rewrite_arrow_error(path: str, exc: BaseException, columns: Sequence[str], rows_before: int,
                         header: bool = True) -> str:
    """Turn pyarrow's reader errors into 'FILE, column 'C', row N: ...' where the message allows."""
    text = str(exc)
    m = _CSV_CONV.search(text)
    if m:
        col_i = int(m.group(1))
        col = columns[col_i] if col_i < len(columns) else f"#{col_i}"
        # pyarrow counts lines of the range it parsed from 1, the header line included when there is one
        row = f", row {rows_before + int(m.group(2)) - (1 if header else 0)}" if m.group(2) else ""
        return (f"{path}, column {col!r}{row}: {m.group(4)!r} is not a number "
                f"(expected {m.group(3)}); fix the value or choose another column")
    m = re.search(r"Expected (\d+) columns, got (\d+): (.*)", text)
    if m:
        return (f"{path}: a row has {m.group(2)} fields where the header has {m.group(1)} "
                f"(row text: {m.group(3)[:80]!r}); fix the ragged row")
    return f"{path}: cannot read: {_short(exc)}"


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
    if path == "-":
        data = sys.stdin.buffer.read()
        if not data:
            raise InputError("<stdin>: no data on standard input (empty input)")
        sfmt, comp = _sniff_bytes(data[:8])
        fmt = fmt or sfmt or "csv"
        src = Source(path="-", format=fmt, files=["-"], compression=comp, data=data)
        if fmt in ("csv", "tsv"):
            src.delimiter = "\t" if fmt == "tsv" else _sniff_delimiter(_head_of(src), "-")
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
        stream = src._stream(src.files[0])
        return stream.read(n)
    except (OSError, pa.ArrowInvalid) as exc:
        raise InputError(f"{src.display}: cannot read: {_short(exc)}") from None
