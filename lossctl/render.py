"""Rendering results: rich table, JSON, CSV, NDJSON, bare value.

Machine formats are written with the standard library straight to stdout (never through rich);
the table goes through a rich Console that only colours a terminal and honours NO_COLOR.
"""
from __future__ import annotations

import csv
import math
import os
import sys
from typing import Any, TextIO

SCHEMA_VERSION = 1


def fmt_value(v: float | None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "nan"
    if isinstance(v, float) and math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f"{v:.6g}"


def full_value(v: float | None) -> str:
    """Shortest text that round-trips the float (what --value prints)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "nan"
    return repr(float(v))


def json_doc(res, version: str) -> dict:
    doc: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "tool": "lossctl",
        "version": version,
        "inputs": res.inputs,
        "columns": res.columns,
        "reduction": res.reduction,
        "rows_evaluated": res.rows_total,
        "results": [result_dict(r) for r in res.results],
    }
    if res.reduction == "none":
        doc["rows"] = [_clean(r) for r in res.rows]
    if res.output:
        doc["output"] = res.output
    if res.extra.get("classes") is not None:
        doc["classes"] = res.extra["classes"]
    for k, v in res.extra.items():
        if k not in doc and k != "classes":
            doc[k] = v
    if res.warnings:
        doc["warnings"] = res.warnings
    from .signature import build as _signature
    doc["signature"] = _signature(res)
    return doc


def result_dict(r) -> dict:
    """A result row as JSON, with its bootstrap interval ("ci") when one was computed."""
    d = r.as_dict()
    if getattr(r, "ci", None) is not None:
        d["ci"] = r.ci
    return d


def _clean(row: dict) -> dict:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}


def dumps(doc: Any) -> str:
    import json
    return json.dumps(doc, allow_nan=False, ensure_ascii=False, indent=2)


def _to_devnull(stream) -> None:
    """Point the file descriptor under ``stream`` at /dev/null: its buffered bytes then flush without error."""
    try:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, stream.fileno())
        os.close(fd)
    except (OSError, ValueError, AttributeError):
        pass


def write_bytes(stream: TextIO, data) -> None:
    """UTF-8 bytes to the binary stream under a text stream (after its pending text), or decoded into a text
    stream that has none (a StringIO)."""
    raw = getattr(stream, "buffer", None)
    if raw is None:
        stream.write(bytes(data).decode("utf-8"))
        return
    stream.flush()
    raw.write(data)


class PipeSafe:
    """Standard output for a command whose gates decide the exit code: when the reader goes away
    (`lossctl check | head -3`), the rest of the output is dropped and the command goes on, so a failed
    gate still exits 1 (a BrokenPipeError would end the command before its gates, with exit 0)."""

    def __init__(self, stream: TextIO):
        self._stream = stream
        self.gone = False

    def write(self, text: str) -> int:
        if not self.gone:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self._gone()
        return len(text)

    def flush(self) -> None:
        if not self.gone:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._gone()

    def write_bytes(self, data) -> None:
        if not self.gone:
            try:
                write_bytes(self._stream, data)
            except BrokenPipeError:
                self._gone()

    def _gone(self) -> None:
        self.gone = True
        _to_devnull(self._stream)

    def __getattr__(self, name: str):  # isatty, fileno, encoding, ...: the stream's own
        return getattr(self._stream, name)


def stdout(keep_going: bool) -> TextIO:
    """sys.stdout, wrapped in :class:`PipeSafe` when the command has gates to run after its output."""
    return PipeSafe(sys.stdout) if keep_going else sys.stdout


def console(file: TextIO | None = None, stderr: bool = False):
    from rich.console import Console

    class _Console(Console):
        def on_broken_pipe(self) -> None:
            # rich exits 1 here, which lossctl's exit codes reserve for a failed quality gate: hand the
            # BrokenPipeError to the CLI instead (`lossctl eval ... | head` exits 0, as with CSV output).
            # (A command with gates writes through PipeSafe, which never lets the error reach rich.)
            self.quiet = True
            _to_devnull(self.file)
            raise BrokenPipeError(32, "Broken pipe")

    return _Console(file=file or (sys.stderr if stderr else sys.stdout), highlight=False, soft_wrap=False)


def print_whole(con, table) -> None:
    """Print a table without cropping its cells when the output is not a terminal (a CI log, a file):
    rich would squeeze it into 80 columns and cut numbers short ("0.003…"); a terminal still fits it."""
    if con.is_terminal:
        con.print(table)
        return
    from rich.measure import Measurement
    need = Measurement.get(con, con.options.update(width=10_000), table).maximum
    width = con.width
    con.width = max(width, need)
    try:
        con.print(table)
    finally:
        con.width = width


def _group_text(group: dict | None) -> str:
    if not group:
        return "(all)"
    return ", ".join(f"{v}" for v in group.values())


def print_table(res, out: TextIO | None = None) -> None:
    from rich.table import Table
    con = console(out)
    grouped = any(r.group for r in res.results)
    weighted = res.columns.get("weight") is not None
    if res.reduction == "none" and res.rows:
        con.print(f"per-sample losses (first {len(res.rows)} of {res.rows_total} rows)", soft_wrap=True, markup=False)
        t = Table()
        for c in res.row_columns:
            t.add_column(c, justify="right")
        for row in res.rows:
            t.add_row(*[fmt_value(v) if isinstance(v, float) else str(v) for v in row.values()])
        con.print(t)
    t = Table(title=None)
    t.add_column("loss")
    if grouped:
        t.add_column(", ".join(res.columns.get("by") or ["group"]))
    t.add_column(res.reduction if res.reduction != "none" else "mean", justify="right")
    t.add_column("rows", justify="right")
    if weighted:
        t.add_column("weight sum", justify="right")
    with_ci = any(getattr(r, "ci", None) for r in res.results)
    if with_ci:
        level = next(r.ci["level"] for r in res.results if getattr(r, "ci", None))
        t.add_column(f"{level * 100:g}% CI lo", justify="right")
        t.add_column("hi", justify="right")
    for r in res.results:
        cells = [r.label]
        if grouped:
            cells.append(_group_text(r.group))
        cells += [fmt_value(r.value), str(r.count)]
        if weighted:
            cells.append(fmt_value(r.weight_sum))
        if with_ci:
            ci = getattr(r, "ci", None) or {}
            cells += [fmt_value(ci.get("low")), fmt_value(ci.get("high"))]
        t.add_row(*cells)
    print_whole(con, t)
    if res.extra.get("classes"):  # string labels: which score column is which class
        con.print("classes (score-column order): " + ", ".join(str(c) for c in res.extra["classes"]),
                  soft_wrap=True, markup=False)
    if res.extra.get("omitted_rows"):
        con.print(f"omitted {res.extra['omitted_rows']} row(s) with NaN, inf or missing inputs (--nan-policy omit)",
                  soft_wrap=True)
    if res.extra.get("nan_rows"):
        con.print(f"{res.extra['nan_rows']} row(s) with NaN, inf or missing inputs made the values they enter NaN "
                  f"(--nan-policy propagate)", soft_wrap=True)
    if res.output:
        con.print(f"wrote {res.rows_total} rows to {res.output}", soft_wrap=True, markup=False)  # a path is never wrapped or parsed as markup


def print_csv(res, out: TextIO) -> None:
    by = res.columns.get("by") or []
    w = csv.writer(out, lineterminator="\n")
    with_ci = any(getattr(r, "ci", None) for r in res.results)
    w.writerow(["loss", "label", *by, "reduction", "value", "count", "weight_sum"]
               + (["ci_level", "ci_low", "ci_high"] if with_ci else []))
    for r in res.results:
        g = [(r.group or {}).get(b, "") for b in by]
        ci = (getattr(r, "ci", None) or {}) if with_ci else None
        w.writerow([r.loss, r.label, *g, r.reduction, full_value(r.value), r.count, full_value(r.weight_sum)]
                   + ([ci.get("level"), full_value(ci.get("low")), full_value(ci.get("high"))] if with_ci else []))


def print_ndjson(res, out: TextIO) -> None:
    import json
    for r in res.results:
        out.write(json.dumps(result_dict(r), allow_nan=False, ensure_ascii=False) + "\n")


def print_values(res, out: TextIO) -> None:
    for r in res.results:
        if r.group is None:
            out.write(full_value(r.value) + "\n")


class StreamRows:
    """Writes per-sample record batches to stdout as CSV or NDJSON while evaluation runs; ``close`` writes
    what is still being encoded (CSV is encoded on two threads, see :class:`lossctl.io.sinks.CsvChunks`)."""

    def __init__(self, fmt: str, out: TextIO):
        self.fmt = fmt
        self.out = out
        self._csv = None
        self._schema = None

    def __call__(self, batch) -> None:
        if self.fmt == "ndjson":
            from .io.sinks import write_jsonl
            write_jsonl(self.out, batch)
            return
        if self._csv is None:
            from .io.sinks import CsvChunks
            self._csv = CsvChunks()
            self._schema = batch.schema
        self._write(lambda: self._csv.put(batch))

    def close(self) -> None:
        if self._csv is not None:
            self._write(self._csv.finish)
            self._csv = None

    def discard(self) -> None:
        """Drop what is still being encoded (an interrupted run)."""
        if self._csv is not None:
            self._csv.discard()
            self._csv = None

    def _write(self, encoded) -> None:
        try:
            ready = encoded()
        except Exception as exc:  # a column CSV cannot hold (a list of values per row)
            self._csv.discard()
            self._csv = None
            import pyarrow as pa

            from .errors import InputError
            odd = [f"{f.name!r} ({f.type})" for f in self._schema if pa.types.is_nested(f.type)]
            raise InputError(f"<stdout>: cannot write the per-sample rows as CSV: {' '.join(str(exc).split())}"
                             + (f"; column {odd[0]} holds lists: use --format ndjson or -o FILE.parquet"
                                if odd else "")) from None
        for chunk in ready:
            self._emit(chunk)

    def _emit(self, chunk) -> None:
        """CSV bytes straight to the binary stream (no decode and re-encode)."""
        if isinstance(self.out, PipeSafe):
            self.out.write_bytes(chunk)  # (a reader that has gone: dropped)
        else:
            write_bytes(self.out, chunk)
