#!/usr/bin/env python
"""Benchmark harness for lossctl against polars, DuckDB, pyarrow, pandas + scikit-learn and torch.

Generates deterministic data (cached in benchmarks/.data/), runs every command as a whole
separate process, N times (interleaved, after warm-up runs that also fill the page cache),
and prints the median wall time, the median peak RSS and the ratio lossctl / peer per job.
Each number is checked against lossctl's (and against a NumPy reference computed when the
data was generated), so a fast wrong answer is visible.

    python benchmarks/bench.py --quick                  # smoke run on 1% of the data
    python benchmarks/bench.py                          # full run, median of 5
    python benchmarks/bench.py --large --markdown BENCHMARKS.md   # what BENCHMARKS.md shows (rewrites it)
    python benchmarks/bench.py --jobs mse,five --formats parquet --repeats 9
    python benchmarks/bench.py --dry-run                # print the commands only

Jobs: startup (--help, a 1,000-row CSV, `python -c pass` and a hand-written one-liner as the floor),
mse / log_loss / xent on Parquet and CSV, five losses in one run vs one, per-sample output to Parquet,
"inputs" (MSE of the regression rows read as .csv.gz, .csv.zst, CSV on standard input through `cat`,
Parquet of 10k-row row groups, a directory of 100 CSV files, JSON Lines (the first 10% of the rows) and an
Arrow IPC file, each against polars and DuckDB; a peer that cannot read a kind says "not supported"), and
with --large: flat memory over 100M rows in 10 Parquet files, and the progress bar's cost (stderr on
a pseudo-terminal, benchmarks/_tty.py).  The "Targets" section gives a PASS/FAIL verdict with the ratio
for every target of issue 4.  Children run with bytecode caching on (PYTHONDONTWRITEBYTECODE removed).

Peak RSS is the kernel's ru_maxrss of each command, read by /usr/bin/time -v when present, else
by the tiny benchmarks/_rss.py launcher (never by os.wait4 from this process: a child's
ru_maxrss starts from its spawner's memory, see _rss.py).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from importlib import metadata
from importlib.util import find_spec
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import datagen  # noqa: E402
from peers import PEERS, REQUIRES, unsupported  # noqa: E402

ALL_JOBS = ["startup", "mse", "log_loss", "xent", "five", "per_sample", "inputs", "large", "progress"]
LARGE_JOBS = ("large", "progress")  # need the 100M-row dataset: only with --large (or --jobs)
PEER_NAMES = list(PEERS)
FIVE = "mse,mae,huber,rmse,quadratic"
FLOOR = "floor: pyarrow.csv+numpy+click+rich one-liner"
REL_TOL = 1e-6  # a peer whose answer differs from lossctl's by more than this is flagged

# Children run as a user's shell would run them: with bytecode caching on.  (A PYTHONDONTWRITEBYTECODE
# inherited from a test or CI environment would make every lossctl run recompile its own sources,
# ~70 ms of start-up that no installed copy pays; the warm-up run writes the __pycache__ files.)
CHILD_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


# --- commands ----------------------------------------------------------------


@dataclass
class Entry:
    label: str
    argv: list[str] | None  # None: not runnable (see missing)
    role: str = "peer"  # "lossctl", "peer" or "base"
    parse: str | None = "value"  # "value": numbers on stdout; "rows": check the output file; None
    ref: float | None = None  # NumPy reference for the first value
    missing: str | None = None  # why it does not run: "not installed (polars)", "not supported: ..."
    out: str | None = None  # per-sample output file (parse == "rows")
    walls: list[float] = field(default_factory=list)
    rss_kb: list[int] = field(default_factory=list)
    values: list[float] | None = None
    error: str | None = None
    stderr_tail: str | None = None


@dataclass
class Job:
    key: str
    fmt: str  # "parquet", "csv" or "-"; for the inputs job the input kind ("csv.gz", "stdin", ...)
    title: str
    subject: str  # label of the entry whose wall/RSS is the numerator of the ratio columns
    entries: list[Entry]
    note: str = ""


def resolve_lossctl(override: str | None) -> tuple[list[str], str]:
    """The lossctl command to run, and how it was found.

    Prefers the console script next to this interpreter: a pyenv shim on PATH costs
    ~0.15 s of bash per call, which would swamp the start-up numbers."""
    if override:
        return shlex.split(override), "--lossctl"
    beside = Path(sys.executable).parent / "lossctl"
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside)], "console script beside sys.executable"
    found = shutil.which("lossctl")
    if found and "/shims/" not in found:
        return [found], "console script on PATH"
    return [sys.executable, "-m", "lossctl"], "python -m lossctl (no console script" + (
        "; PATH has only a pyenv shim)" if found else " on PATH)")


def peer_missing(name: str) -> str | None:
    gone = [m for m in REQUIRES[name] if find_spec(m) is None]
    return f"not installed ({', '.join(gone)})" if gone else None


def peer_unsupported(name: str, path: str) -> str | None:
    """"not supported: <why>" when peers.py knows `name` cannot read the input at `path` (repo-relative)."""
    why = unsupported(name, path if path == "-" else str(REPO / path))
    return f"not supported: {why}" if why else None


def piped(src: str, argv: list[str]) -> list[str]:
    """`cat src | argv` through sh, so the command's standard input is a real pipe."""
    return ["sh", "-c", f"cat {shlex.quote(src)} | {shlex.join(argv)}"]


def peer_entry(name: str, job: str, path: str, ref: float | None, stdin_from: str | None = None) -> Entry:
    """A peer's row; with stdin_from, the peer reads `-` (standard input) from `cat stdin_from`."""
    if stdin_from is not None:
        path = "-"
    missing = peer_missing(name) or peer_unsupported(name, path)
    argv = [sys.executable, str(HERE / "peers.py"), name, job, path]
    if stdin_from is not None:
        argv = piped(stdin_from, argv)
    return Entry(name, None if missing else argv, ref=ref, missing=missing)


def build_jobs(a, lossctl: list[str], data: dict) -> list[Job]:
    jobs: list[Job] = []
    py = sys.executable
    peers = [p for p in PEER_NAMES if p in a.peers]

    if "startup" in a.jobs:
        small = data["small"]
        es = [
            Entry("python -c pass", [py, "-c", "pass"], role="base", parse=None),
            Entry("lossctl --help", lossctl + ["--help"], role="lossctl", parse=None),
            Entry("lossctl eval small.csv -l mse", lossctl + ["eval", small["csv"], "-l", "mse"],
                  role="lossctl", parse=None),
            Entry("lossctl eval small.csv -l mse --value",
                  lossctl + ["eval", small["csv"], "-l", "mse", "--value"], role="lossctl",
                  ref=small["ref"]["mse"]),
        ]
        fl = peer_entry("floor", "mse", small["csv"], small["ref"]["mse"])
        fl.label, fl.role = FLOOR, "base"
        es.append(fl)
        es += [peer_entry(p, "mse", small["csv"], small["ref"]["mse"]) for p in peers]
        jobs.append(Job("startup", "csv", f"Start-up: MSE of a {small['rows']:,}-row CSV",
                        "lossctl eval small.csv -l mse", es,
                        note="Targets: `lossctl --help` < 0.1 s, `lossctl eval small.csv -l mse` "
                             "(table output) < 0.16 s. Value check uses the --value row. "
                             f"`{FLOOR}` is the issue's hand-written one-liner (pyarrow.csv + NumPy "
                             "frombuffer + click + a rich table; 158 ms where the issue was measured): "
                             "the floor for a tool that reads the file with pyarrow (lossctl parses a small "
                             "CSV of plain numbers without it, so it can start faster than this)."))

    specs = [
        ("mse", "regression", "MSE", ["-l", "mse", "--pred", "y_pred", "--target", "y_true"], "mse"),
        ("log_loss", "binary", "Binary log loss", ["-l", "log_loss", "--pred", "p", "--target", "y_true"],
         "log_loss"),
        ("xent", "multiclass", f"Multiclass cross-entropy ({datagen.N_CLASSES} probability columns)",
         ["-l", "log_loss", "--pred", "p_*", "--target", "label"], "log_loss"),
    ]
    for key, kind, name, largs, refkey in specs:
        if key not in a.jobs:
            continue
        d = data[kind]
        for fmt in a.formats:
            path = d[fmt]
            ref = d["ref"][refkey]
            es = [Entry("lossctl", lossctl + ["eval", path] + largs + ["--value"], role="lossctl", ref=ref)]
            es += [peer_entry(p, key, path, ref) for p in peers]
            jobs.append(Job(key, fmt, f"{name}, {d['rows']:,} rows, {fmt_label(fmt)} "
                                      f"({mb(datagen.size_bytes(str(REPO / path)))} MB)", "lossctl", es))

    if "five" in a.jobs:
        d = data["regression"]
        for fmt in a.formats:
            path = d[fmt]
            base = ["eval", path, "--pred", "y_pred", "--target", "y_true", "--value"]
            es = [
                Entry(f"lossctl -l {FIVE}", lossctl + base + ["-l", FIVE], role="lossctl",
                      ref=d["ref"]["mse"]),
                Entry("lossctl -l mse", lossctl + base + ["-l", "mse"], role="lossctl", ref=d["ref"]["mse"]),
            ]
            jobs.append(Job("five", fmt, f"Five losses in one run vs one, {d['rows']:,} rows, "
                                         f"{fmt_label(fmt)}", es[0].label, es,
                            note="Target: five losses cost at most 1.5x one loss (data read once). "
                                 "Value check: the first value (mse)."))

    if "per_sample" in a.jobs:
        d = data["regression"]
        outdir = Path(relpath(str(Path(a.data_dir) / "out")))
        (REPO / outdir).mkdir(parents=True, exist_ok=True)
        for fmt in a.formats:
            path = d[fmt]
            ref = d["ref"]["mse"]
            lo = str(outdir / f"lossctl_{fmt}.parquet")
            es = [Entry("lossctl", lossctl + ["eval", path, "-l", "mse", "--pred", "y_pred", "--target",
                                              "y_true", "-r", "none", "-o", lo, "--force"],
                        role="lossctl", parse="rows", ref=ref, out=lo)]
            for p in ("polars", "duckdb"):
                if p not in peers:
                    continue
                out = str(outdir / f"{p}_{fmt}.parquet")
                e = peer_entry(p, "mse_rows", path, ref)
                e.parse, e.out = "rows", out
                if e.argv:
                    e.argv.append(out)
                es.append(e)
            jobs.append(Job("per_sample", fmt, f"Per-sample squared error to Parquet, {d['rows']:,} rows, "
                                               f"{fmt_label(fmt)}", "lossctl", es,
                            note="`-r none -o out.parquet`; value check: mean of the written column."))

    if "inputs" in a.jobs:
        jobs += inputs_jobs(lossctl, data, peers)

    if "large" in a.jobs:
        big, d = data["large"], data["regression"]
        largs = ["-l", "mse", "--pred", "y_pred", "--target", "y_true", "--value"]
        es = [
            Entry(f"lossctl ({big['rows']:,} rows, {datagen.LARGE_FILES} files)",
                  lossctl + ["eval", big["parquet"]] + largs, role="lossctl", ref=big["ref"]["mse"]),
            Entry(f"lossctl ({d['rows']:,} rows, 1 file)", lossctl + ["eval", d["parquet"]] + largs,
                  role="lossctl", ref=d["ref"]["mse"]),
        ]
        es += [peer_entry(p, "mse", big["parquet"], big["ref"]["mse"])
               for p in ("polars", "duckdb") if p in peers]
        jobs.append(Job("large", "parquet", f"Flat memory: MSE over {big['rows']:,} rows in "
                                            f"{datagen.LARGE_FILES} Parquet files "
                                            f"({mb(datagen.size_bytes(str(REPO / big['parquet'])))} MB)",
                        es[0].label, es,
                        note="Target: peak RSS for the large dataset within 10% of the single-file run. "
                             "Only the streaming peers (polars, DuckDB) run here."))
    if "progress" in a.jobs:
        big = data["large"]
        largs = ["eval", big["parquet"], "-l", "mse", "--pred", "y_pred", "--target", "y_true", "--value"]
        tty = [sys.executable, "-I", "-S", str(HERE / "_tty.py")]
        es = [Entry("lossctl, stderr a terminal (progress bar)", tty + lossctl + largs, role="lossctl",
                    ref=big["ref"]["mse"]),
              Entry("lossctl -q, stderr a terminal (no bar)", tty + lossctl + largs + ["-q"], role="lossctl",
                    ref=big["ref"]["mse"])]
        jobs.append(Job("progress", "parquet", f"Progress bar cost: MSE over {big['rows']:,} rows "
                                               f"({datagen.LARGE_FILES} Parquet files)", es[0].label, es,
                        note="Both runs have stderr on a pseudo-terminal (benchmarks/_tty.py), so lossctl draws "
                             "its bar in the first and is quiet in the second. Target: no measurable cost."))
    return jobs


def inputs_jobs(lossctl: list[str], data: dict, peers: list[str]) -> list[Job]:
    """The inputs job: MSE of the regression rows in other input kinds, one table per kind."""
    inp = data["inputs"]
    largs = ["-l", "mse", "--pred", "y_pred", "--target", "y_true", "--value"]
    rows, sub = inp["rows"], inp["jsonl_rows"]
    ref, ref_sub = inp["ref"]["mse"], inp["ref_jsonl"]["mse"]
    csv_mb = mb(datagen.size_bytes(str(REPO / inp["csv"])))
    groups = -(-rows // inp["row_group"])
    # fmt, path, read from standard input, rows, reference, what (title), note ("{size}": the MB)
    kinds = [
        ("csv.gz", inp["csv_gz"], False, rows, ref, f"CSV gzip-compressed (level {datagen.GZIP_LEVEL})",
         (f"The regression CSV ({csv_mb} MB) compressed with gzip level {datagen.GZIP_LEVEL} (the gzip CLI's "
          "default) to {size} MB; each tool decompresses it as it reads (lossctl and DuckDB by the extension, "
          "polars `scan_csv`).")),
        ("csv.zst", inp["csv_zst"], False, rows, ref, f"CSV zstd-compressed ({inp['zstd'].split(',')[0]})",
         (f"The regression CSV ({csv_mb} MB) compressed with zstd ({inp['zstd']}; one standard frame, "
          "`zstd -d` reads it) to {size} MB; each tool decompresses it as it reads.")),
        ("stdin", inp["csv"], True, rows, ref, "CSV on standard input (`cat x.csv |`)",
         ("The regression CSV ({size} MB) piped by `cat` through `sh -c`, so standard input is a real pipe: "
          "`cat x.csv | lossctl eval - ...`, polars `pl.read_csv(sys.stdin.buffer)`, DuckDB "
          "`read_csv('/dev/stdin')`. Wall time and peak RSS are the pipeline's (peak RSS: its largest process).")),
        ("parquet-rg10k", inp["parquet_rg"], False, rows, ref, f"Parquet, {inp['row_group']:,}-row row groups",
         (f"The same rows written by pyarrow with `row_group_size={inp['row_group']:_}` ({groups:,} row groups, "
          "snappy), {size} MB; the mse job's Parquet file has pyarrow's default row groups.")),
        ("csv-dir", inp["csv_dir"], False, rows, ref, f"CSV dataset, {inp['csv_files']} files",
         (f"A directory of {inp['csv_files']} CSV files, equal slices of the rows in order (`part-000.csv` ..., "
          "each with its header), {size} MB in all: lossctl gets the directory, polars `scan_csv('dir/*.csv')`, "
          "DuckDB `read_csv('dir/*.csv')`.")),
        ("jsonl", inp["jsonl"], False, sub, ref_sub, "JSON Lines (the first 10% of the rows)",
         (f"The first {sub:,} rows (10%) as JSON Lines, one `{{\"y_true\": ..., \"y_pred\": ...}}` object a line, "
          "floats written by repr (they round-trip), {size} MB: polars `scan_ndjson`, DuckDB "
          "`read_json(..., format='newline_delimited')`. Reference: the NumPy MSE of those rows.")),
        ("arrow", inp["arrow"], False, rows, ref, "Arrow IPC file (Feather v2, uncompressed)",
         ("The rows as an uncompressed Arrow IPC file (`pyarrow.feather.write_feather(..., "
          "compression='uncompressed')`), {size} MB: polars `scan_ipc`; DuckDB has no built-in Arrow IPC reader.")),
    ]
    jobs = []
    for fmt, path, from_stdin, n, r, what, note in kinds:
        size = mb(datagen.size_bytes(str(REPO / path)))
        if from_stdin:
            es = [Entry("lossctl", piped(path, lossctl + ["eval", "-"] + largs), role="lossctl", ref=r)]
            es += [peer_entry(p, "mse", path, r, stdin_from=path) for p in ("polars", "duckdb") if p in peers]
        else:
            es = [Entry("lossctl", lossctl + ["eval", path] + largs, role="lossctl", ref=r)]
            es += [peer_entry(p, "mse", path, r) for p in ("polars", "duckdb") if p in peers]
        jobs.append(Job("inputs", fmt, f"Input kinds: MSE, {n:,} rows, {what} ({size} MB)", "lossctl", es,
                        note=note.replace("{size}", size)))
    return jobs


def shown(argv: list[str], lossctl: list[str]) -> str:
    """argv for people: `python` for this interpreter, `lossctl` for the resolved lossctl script
    (also after the pipe of an `sh -c 'cat F | ...'` command)."""
    if len(argv) == 3 and argv[:2] == ["sh", "-c"] and " | " in argv[2]:
        src, _, cmd = argv[2].partition(" | ")
        return shlex.join(["sh", "-c", src + " | " + shown(shlex.split(cmd), lossctl)])
    out = []
    for i, tok in enumerate(argv):
        if i == 0 and len(lossctl) == 1 and tok == lossctl[0]:
            tok = "lossctl"
        elif i == 0 and tok == sys.executable:
            tok = "python"
        out.append(tok)
    return shlex.join(out)


def relpath(p: str | None) -> str | None:
    """Data paths relative to the repo (children run there), so commands read well."""
    if p is None:
        return None
    try:
        return str(Path(p).resolve().relative_to(REPO))
    except ValueError:
        return p


def fmt_label(fmt: str) -> str:
    return {"parquet": "Parquet", "csv": "CSV"}.get(fmt, fmt)


def mb(nbytes: float) -> str:
    return f"{nbytes / 1e6:,.0f}"


# --- measuring ---------------------------------------------------------------


def first_error_line(stderr: str, stdout: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    if not lines:
        lines = [ln.strip() for ln in stdout.splitlines() if ln.strip()]
    if not lines:
        return "(no output)"
    # A Python traceback's first line says nothing; its last line names the error.
    return lines[-1] if lines[0].startswith("Traceback") else lines[0]


def run_once(argv: list[str], timeout: float, rss_via: str) -> dict:
    """Run argv once; return wall seconds, peak RSS (KB), exit code, stdout, stderr.

    Never measured with os.wait4 from this process: a child's ru_maxrss starts from the
    memory of whoever spawned it (see _rss.py), and bench.py holds NumPy, pyarrow and the
    data it generated.  /usr/bin/time (~2 MB) or the _rss.py launcher (~9 MB) spawns it."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile(suffix=".rss") as tf:
        if rss_via == "time":
            cmd = ["/usr/bin/time", "-v", "-o", tf.name] + argv
        else:
            cmd = [sys.executable, "-I", "-S", str(HERE / "_rss.py"), tf.name] + argv
        timed_out = threading.Event()
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=REPO,
                                env=CHILD_ENV, start_new_session=True)

        def kill():
            timed_out.set()
            try:
                os.killpg(proc.pid, 9)  # the launcher and the command under it
            except ProcessLookupError:
                pass

        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            rc = proc.wait()
        finally:
            wall = time.perf_counter() - t0
            timer.cancel()
        text = Path(tf.name).read_text(errors="replace")
        rss = 0
        if rss_via == "time":  # wall from here: includes /usr/bin/time's own ~1 ms fork + exec
            for line in text.splitlines():
                if "Maximum resident set size" in line:
                    rss = int(line.rsplit(":", 1)[1])
        elif text.strip():
            w, r, c = text.split()
            wall, rss, rc = float(w), int(r), int(c)
        out.seek(0)
        err.seek(0)
        res = {"wall": wall, "rss_kb": rss, "rc": rc,
               "stdout": out.read().decode(errors="replace"), "stderr": err.read().decode(errors="replace")}
        if timed_out.is_set():
            res["rc"], res["stderr"] = -9, f"timeout after {timeout:g} s"
        return res


def parse_values(stdout: str) -> list[float]:
    vals = []
    for tok in stdout.replace(",", " ").split():
        try:
            vals.append(float(tok))
        except ValueError:
            pass
    return vals


def check_rows(path: str) -> float:
    """Mean of the loss column written by a per-sample run ('mse', else the last float column)."""
    import numpy as np
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    names = pf.schema_arrow.names
    col = "mse" if "mse" in names else [n for n in names
                                        if str(pf.schema_arrow.field(n).type) in ("double", "float")][-1]
    total, n = 0.0, 0
    for b in pf.iter_batches(columns=[col]):
        arr = b.column(0).to_numpy(zero_copy_only=False)
        total += float(np.sum(arr))
        n += arr.size
    return total / n


def run_job(job: Job, a, log) -> None:
    runnable = [e for e in job.entries if e.argv]
    rounds = [("warmup", i) for i in range(a.warmup)] + [("run", i) for i in range(a.repeats)]
    for phase, _ in rounds:
        for e in runnable:  # interleaved, so drift in the machine hits every tool alike
            if e.error:
                continue
            r = run_once(e.argv, a.timeout, a.rss_via)
            if r["rc"] != 0:
                e.error = "error: " + first_error_line(r["stderr"], r["stdout"])
                e.stderr_tail = r["stderr"][-2000:]
                log(f"  [{job.key}/{job.fmt}] {e.label}: {e.error}")
                continue
            if e.parse == "value" and e.values is None:
                vals = parse_values(r["stdout"])
                if not vals:
                    e.error = "error: no number in output: " + (r["stdout"].strip().splitlines() or [""])[0][:80]
                    log(f"  [{job.key}/{job.fmt}] {e.label}: {e.error}")
                    continue
                e.values = vals
            if phase == "run":
                e.walls.append(r["wall"])
                e.rss_kb.append(r["rss_kb"])
    for e in runnable:
        if e.parse == "rows" and not e.error and e.out:
            try:
                e.values = [check_rows(str(REPO / e.out))]
            except Exception as exc:  # the output is lossctl's to define; report, don't crash
                e.values = None
                e.stderr_tail = f"could not read {e.out}: {exc}"
        if e.walls:
            log(f"  [{job.key}/{job.fmt}] {e.label}: {statistics.median(e.walls):.3f} s, "
                f"{statistics.median(e.rss_kb) / 1024:.0f} MB")


# --- reporting ---------------------------------------------------------------


def med(xs):
    return statistics.median(xs) if xs else None


def rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-300)


def job_rows(job: Job) -> list[list[str]]:
    subj = next(e for e in job.entries if e.label == job.subject)
    s_wall, s_rss = med(subj.walls), med(subj.rss_kb)
    lossctl_val = next((e.values[0] for e in job.entries
                        if e.role == "lossctl" and e.values and e.parse is not None), None)
    rows = []
    for e in job.entries:
        if e.missing:
            rows.append([e.label, e.missing, "", "", "", "", ""])
            continue
        if e.error:
            rows.append([e.label, e.error[:110], "", "", "", "", ""])
            continue
        wall, rss = med(e.walls), med(e.rss_kb)
        rw = f"{s_wall / wall:.2f}" if s_wall and e is not subj else ("1" if e is subj else "")
        rr = f"{s_rss / rss:.2f}" if s_rss and e is not subj else ("1" if e is subj else "")
        val, diff = "", ""
        if e.values:
            v = e.values[0]
            val = f"{v:.12g}" + (f" (+{len(e.values) - 1})" if len(e.values) > 1 else "")
            if e.role == "lossctl" or lossctl_val is None:
                d, against = (rel(v, e.ref), "ref") if e.ref is not None else (None, "")
            else:
                d, against = rel(v, lossctl_val), ""
            if d is not None:
                diff = f"{d:.1e}" + (" ref" if against else "") + (" MISMATCH" if d > REL_TOL else "")
        elif e.parse == "rows" and e.stderr_tail:
            diff = "unreadable output"
        rows.append([e.label, f"{wall:.3f}", f"{rss / 1024:.0f}", rw, rr, val, diff])
    return rows


HEADER = ["tool", "wall s", "peak RSS MB", "wall ratio", "RSS ratio", "value", "rel diff"]


def md_table(rows: list[list[str]]) -> str:
    table = [HEADER] + rows
    widths = [max(len(r[i]) for r in table) for i in range(len(HEADER))]
    right = {1, 2, 3, 4}

    def line(r):
        return "| " + " | ".join(c.rjust(w) if i in right else c.ljust(w)
                                 for i, (c, w) in enumerate(zip(r, widths))) + " |"

    sep = "|" + "|".join(("-" * (w + 1) + ":") if i in right else "-" * (w + 2)
                         for i, w in enumerate(widths)) + "|"
    return "\n".join([line(HEADER), sep] + [line(r) for r in rows])


def wall_of(jobs, key, fmt, label):
    for j in jobs:
        if j.key == key and j.fmt == fmt:
            for e in j.entries:
                if e.label == label and e.walls:
                    return med(e.walls), med(e.rss_kb)
    return None, None


def targets(jobs: list[Job], a) -> list[str]:
    out = []

    def verdict(ok, text):
        out.append(f"- {'PASS' if ok else 'FAIL'}  {text}")

    def na(text):
        out.append(f"- n/a   {text}")

    for key in ("mse", "log_loss", "xent"):
        for fmt in a.formats:
            if key not in a.jobs:
                continue
            lw, lr = wall_of(jobs, key, fmt, "lossctl")
            pw, pr = wall_of(jobs, key, fmt, "polars")
            dw, dr = wall_of(jobs, key, fmt, "duckdb")
            sw, _ = wall_of(jobs, key, fmt, "pandas+sklearn")
            name = f"{key} {fmt_label(fmt)}"
            if lw is None:
                na(f"{name}: lossctl did not run")
                continue
            if fmt == "parquet":
                best = min(x for x in (pw, dw, float("inf")) if x is not None)
                if best == float("inf"):
                    na(f"{name}: wall <= min(polars, DuckDB): neither ran")
                else:
                    verdict(lw <= best, f"{name}: wall {lw:.3f} s <= min(polars, DuckDB) {best:.3f} s "
                                        f"(ratio {lw / best:.2f})")
            else:
                if dw is not None:
                    verdict(lw <= dw, f"{name}: wall {lw:.3f} s <= DuckDB {dw:.3f} s (ratio {lw / dw:.2f})")
                else:
                    na(f"{name}: DuckDB did not run")
                if pw is not None:
                    verdict(lw <= 1.1 * pw, f"{name}: wall {lw:.3f} s <= 1.1 x polars {1.1 * pw:.3f} s "
                                            f"(ratio to polars {lw / pw:.2f})")
                else:
                    na(f"{name}: polars did not run")
            if sw is not None:
                ctx = ("; polars: " + (f"{sw / pw:.1f}x" if pw else "n/a")
                       + ", DuckDB: " + (f"{sw / dw:.1f}x" if dw else "n/a"))
                verdict(sw / lw >= 5, f"{name}: {sw / lw:.1f}x faster than pandas + scikit-learn (>= 5x{ctx})")
            else:
                na(f"{name}: pandas + scikit-learn did not run")
            if dr is not None:
                verdict(lr <= dr, f"{name}: peak RSS {lr / 1024:.0f} MB <= DuckDB {dr / 1024:.0f} MB "
                                  f"(ratio {lr / dr:.2f})")
            else:
                na(f"{name}: DuckDB RSS not measured")
    if "five" in a.jobs:
        for fmt in a.formats:
            fw, _ = wall_of(jobs, "five", fmt, f"lossctl -l {FIVE}")
            ow, _ = wall_of(jobs, "five", fmt, "lossctl -l mse")
            if fw and ow:
                verdict(fw <= 1.5 * ow, f"five losses {fmt_label(fmt)}: {fw:.3f} s <= 1.5 x one {1.5 * ow:.3f} s "
                                        f"(ratio {fw / ow:.2f})")
            else:
                na(f"five losses {fmt_label(fmt)}: lossctl did not run")
    if "per_sample" in a.jobs:
        for fmt in a.formats:
            lw, lr = wall_of(jobs, "per_sample", fmt, "lossctl")
            _, dr = wall_of(jobs, "per_sample", fmt, "duckdb")
            _, mr = wall_of(jobs, "mse", fmt, "lossctl")
            if lw is None:
                na(f"per-sample {fmt_label(fmt)}: lossctl did not run")
                continue
            also = f"; {lr / mr:.2f}x the RSS of the reduced mse run on the same file" if mr else ""
            if dr is not None:
                verdict(lr <= dr, f"per-sample {fmt_label(fmt)} (-r none -o out.parquet): peak RSS {lr / 1024:.0f} MB "
                                  f"<= DuckDB {dr / 1024:.0f} MB (ratio {lr / dr:.2f}{also})")
            else:
                na(f"per-sample {fmt_label(fmt)}: DuckDB did not run{also}")
    if "startup" in a.jobs:
        base, _ = wall_of(jobs, "startup", "csv", "python -c pass")
        floor_w, _ = wall_of(jobs, "startup", "csv", FLOOR)
        for label, limit in (("lossctl --help", 0.1), ("lossctl eval small.csv -l mse", 0.16)):
            w, _ = wall_of(jobs, "startup", "csv", label)
            if w is None:
                na(f"{label}: did not run")
                continue
            extra = (f" (python -c pass: {base:.3f} s, lossctl {1000 * (w - base):.0f} ms over it"
                     if base is not None else " (")
            if floor_w is not None and "eval" in label:
                extra += f"; the one-liner floor: {floor_w:.3f} s, lossctl {1000 * (w - floor_w):+.0f} ms against it"
            verdict(w < limit, f"{label}: {w:.3f} s < {limit} s" + extra + ")")
    if "large" in a.jobs:
        lj = next(j for j in jobs if j.key == "large")
        big, one = lj.entries[0], lj.entries[1]
        if big.rss_kb and one.rss_kb:
            r = med(big.rss_kb) / med(one.rss_kb)
            verdict(abs(r - 1) <= 0.10, f"flat memory: peak RSS {med(big.rss_kb) / 1024:.0f} MB "
                                        f"({big.label}) vs {med(one.rss_kb) / 1024:.0f} MB ({one.label}): "
                                        f"{r:.2f}x (within 10%)")
        else:
            na("flat memory: lossctl did not run")
    if "progress" in a.jobs:
        bw, _ = wall_of(jobs, "progress", "parquet", "lossctl, stderr a terminal (progress bar)")
        qw, _ = wall_of(jobs, "progress", "parquet", "lossctl -q, stderr a terminal (no bar)")
        if bw and qw:
            verdict(bw <= 1.03 * qw, f"progress bar: {bw:.3f} s with the bar vs {qw:.3f} s without "
                                     f"({bw / qw:.2f}x; within 3%)")
        else:
            na("progress bar: lossctl did not run")
    return out


def versions() -> dict[str, str]:
    v = {}
    for dist in ("lossctl", "numpy", "pyarrow", "polars", "duckdb", "pandas", "scikit-learn", "torch"):
        try:
            v[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            v[dist] = "not installed"
    return v


def machine() -> str:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 1024 ** 2:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return f"{os.cpu_count()} cores ({cpu}){mem}, {platform.system()} {platform.release()}"


def git_rev() -> str:
    try:
        rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "lossctl"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return rev + (" (lossctl/ has uncommitted changes)" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def install_mode() -> str:
    """How lossctl is installed: an editable install (pip install -e) runs an import hook on every start
    (~10-15 ms here), which users of `pip install .` do not pay; the report says which one was measured."""
    import glob
    import sysconfig
    purelib = sysconfig.get_paths()["purelib"]
    if glob.glob(os.path.join(purelib, "__editable__*lossctl*")):
        return "editable install (pip install -e .; its import hook adds ~10-15 ms per run)"
    if glob.glob(os.path.join(purelib, "lossctl", "__init__.py")):
        return "installed with pip install . (as users get it)"
    return "install mode unknown"


def report(jobs: list[Job], a, lossctl: list[str], how: str, command: str) -> str:
    v = versions()
    parts = [
        "# lossctl benchmarks",
        "",
        f"Reproduce: `{command}`",
        "",
        f"- Machine: {machine()}",
        f"- Python {platform.python_version()}; " + ", ".join(f"{k} {val}" for k, val in v.items()),
        f"- lossctl command: `{shlex.join(lossctl)}` ({how}); commit {git_rev()}; {install_mode()}",
        f"- Each command is a whole separate process; median of {a.repeats} runs after {a.warmup} warm-up "
        f"run(s) (files in page cache), runs of a job interleaved. Peak RSS: ru_maxrss "
        f"({'/usr/bin/time -v' if a.rss_via == 'time' else 'benchmarks/_rss.py launcher'}), median over runs.",
        "- wall ratio / RSS ratio: the job's lossctl command divided by that row (below 1: lossctl is "
        "faster / smaller). rel diff: against lossctl's value; lossctl's own row (and every row when "
        f"lossctl failed) against the NumPy reference, marked `ref`. MISMATCH above {REL_TOL:g}.",
    ]
    if a.quick or a.rows_scale != 1.0:
        parts.append(f"- Rows scaled by {a.rows_scale:g}" + (" (--quick smoke run: timings are not "
                                                             "comparable with the targets)" if a.quick else ""))
    t = targets(jobs, a)
    if t:
        met = sum(x.startswith("- PASS") for x in t)
        failed = sum(x.startswith("- FAIL") for x in t)
        rest = len(t) - met - failed
        parts += ["", "## Targets (issue 4)", "",
                  f"{met} met, {failed} not met" + (f", {rest} not measured" if rest else "")
                  + " in this run (verdicts computed by the harness from the medians below; the wall-time "
                  "targets only mean something on a quiet machine).", ""] + t
    parts += ["", "## How lossctl reads and computes", "", HOW]
    for j in jobs:
        parts += ["", f"## {j.title}", ""]
        if j.note:
            parts += [j.note, ""]
        parts.append(md_table(job_rows(j)))
    errs = [(j, e) for j in jobs for e in j.entries if e.error]
    if errs:
        parts += ["", "## Failed commands", ""]
        for j, e in errs:
            parts.append(f"- [{j.key}/{j.fmt}] {e.label}: `{shown(e.argv, lossctl)}` -> {e.error}")
    return "\n".join(parts) + "\n"


HOW = """\
- Streaming: the input is read in batches (64 Ki rows; fewer for wide inputs, about 1.5 MiB of float64 per
  batch) and every loss is reduced into mergeable compensated sums, so memory does not grow with the file.
- Parquet through pyarrow's `ParquetReader` (what `ParquetFile` wraps): a row group whose selected columns
  decode to at most 32 MiB is read whole (its columns decoded in parallel) from a read-only memory map of
  the file, whose pages are released once the row group is decoded, and sliced into batches; larger ones
  are read page by page (`iter_batches`, 1 MiB read buffer); consecutive small row groups are read
  together, up to four batches of rows; the rows of a dataset's small files are joined into full batches,
  each footer parsed once, and files under 4 MiB read without a map; no `pyarrow.dataset`, no pandas, not even
  `pyarrow.parquet`; columns become NumPy arrays with `np.frombuffer`, without a copy.
- CSV in 12 MiB byte ranges split at line ends, straight from a memory map (the pages of a parsed range are
  released at once). Lines of plain numbers go to lossctl's own C parser (`lossctl/_fastcsv.c`, built by
  `pip install` where a C compiler exists): each range in two halves on two threads, ~790 MB/s per core
  against pyarrow's ~330, the same doubles bit for bit (correctly rounded; whatever it does not take, from
  a quote to a NaN, it hands back to pyarrow from that range on). Otherwise each range is parsed by
  pyarrow's multi-threaded `read_csv`; columns of numbers are parsed
  first without matching every field against pyarrow's null spellings (`null_values=[]`, ~4% fewer
  instructions); a range where that
  could differ from the default parse (a NaN in a float column, a null spelling in a text column, a
  conversion error) is parsed again with the defaults, as are the ranges after it. Standard input and
  pipes are cut into ranges in memory, compressed and remote files as their stream is read (ahead of the
  parse; after gzip or bzip2, slower to decompress than to parse, each range is parsed on one thread).
  JSON Lines are parsed in ranges the same way (`read_json`), only the columns read. A pipe past 64 MiB is
  spooled to an unnamed temporary file and mapped. Arrow IPC is read batch by batch (not mapped).
- The console script sets `OPENBLAS_THREAD_TIMEOUT=4` before NumPy loads (unless set): NumPy's idle
  OpenBLAS worker otherwise busy-waits ~0.1 s of a core after `import numpy`, a core the decoder needs.
- A CSV of at most 512 KiB holding plain numbers (the one-liner's file) is parsed without loading pyarrow,
  whose import is ~35 ms of the start-up: integers and decimals only, typed and rounded as pyarrow reads
  them (tests compare the two readers); anything else in the file goes to pyarrow.
- A background thread reads and decodes batch k+1 while NumPy computes the losses on batch k; columns
  that are integers by type (labels) skip the NaN/inf check.
- Loss kernels avoid per-class work where the label picks one column (log loss: one `log` per row, not one
  per class, and the label's probability picked without a data-dependent branch; huber without a select);
  losses of the residual alone (mse, mae, rmse, huber, ...) share one `pred - target` per batch; glibc
  keeps the batch temporaries on the heap instead of page-faulting them in again for every batch.  Data commands
  use pyarrow's jemalloc pool (flat, lower peak memory than mimalloc here), and the console script
  leaves without tearing the interpreter down (~20 ms).  Results do not depend on
  any of this: the invariance and parity tests run at many batch sizes."""


# --- main ----------------------------------------------------------------------


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: --rows-scale 0.01, 1 repeat, no warm-up (unless given)")
    ap.add_argument("--rows-scale", type=float, default=None,
                    help="scale the 10M/10M/1M (and 100M) row counts (default 1, --quick 0.01)")
    ap.add_argument("--repeats", "-n", type=int, default=None, help="measured runs per command (default 5)")
    ap.add_argument("--warmup", type=int, default=None, help="unmeasured runs first (default 1)")
    ap.add_argument("--jobs", default=None,
                    help=f"comma list from {','.join(ALL_JOBS)} (default: all but large and progress, "
                         "which --large adds)")
    ap.add_argument("--large", action="store_true",
                    help=f"add the jobs on the {datagen.LARGE_ROWS:,}-row multi-file Parquet dataset: "
                         "flat memory and progress-bar cost")
    ap.add_argument("--formats", default="parquet,csv", help="comma list: parquet,csv")
    ap.add_argument("--peers", default=",".join(PEER_NAMES), help="comma list of peers to run")
    ap.add_argument("--lossctl", default=None,
                    help="lossctl command (default: console script beside this python, else python -m lossctl)")
    ap.add_argument("--data-dir", default=str(HERE / ".data"), help="data cache (default benchmarks/.data)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--regenerate", action="store_true", help="rewrite the cached data")
    ap.add_argument("--timeout", type=float, default=600, help="seconds per run (default 600)")
    ap.add_argument("--rss-via", choices=["time", "launcher"], default=None,
                    help="peak RSS from /usr/bin/time -v (default when present) or from the "
                         "benchmarks/_rss.py launcher (ru_maxrss of its child; wall timed inside it)")
    ap.add_argument("--markdown", metavar="FILE", help="also write the report (BENCHMARKS.md style) here")
    ap.add_argument("--json", metavar="FILE", help="also write every run's raw numbers here")
    ap.add_argument("--dry-run", action="store_true", help="generate data, print the commands, run nothing")
    a = ap.parse_args(argv)
    if a.rows_scale is None:
        a.rows_scale = 0.01 if a.quick else 1.0
    if a.repeats is None:
        a.repeats = 1 if a.quick else 5
    if a.warmup is None:
        a.warmup = 0 if a.quick else 1
    a.jobs = [j.strip() for j in (a.jobs or ",".join(x for x in ALL_JOBS if x not in LARGE_JOBS)).split(",")
              if j.strip()]
    if a.large:
        a.jobs += [j for j in LARGE_JOBS if j not in a.jobs]
    bad = [j for j in a.jobs if j not in ALL_JOBS]
    a.formats = [f.strip() for f in a.formats.split(",") if f.strip()]
    a.peers = [p.strip() for p in a.peers.split(",") if p.strip()]
    bad += [f for f in a.formats if f not in ("parquet", "csv")] + [p for p in a.peers if p not in PEERS]
    if bad:
        ap.error(f"unknown: {', '.join(bad)}")
    has_time = os.access("/usr/bin/time", os.X_OK)
    if a.rss_via is None:
        a.rss_via = "time" if has_time else "launcher"
    if a.rss_via == "time" and not has_time:
        ap.error("--rss-via time needs /usr/bin/time")
    if a.repeats < 1:
        ap.error("--repeats must be >= 1")
    return a


def main(argv=None) -> int:
    a = parse_args(argv)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    argv_shown = sys.argv[1:] if argv is None else argv
    script = os.path.relpath(__file__, Path.cwd()) if Path.cwd() in Path(__file__).parents else __file__
    command = shlex.join(["python", script] + list(argv_shown))

    data_dir = Path(a.data_dir)
    need = set()
    if "startup" in a.jobs:
        need.add("small")
    need |= {"regression" for j in ("mse", "five", "per_sample", "inputs", "large") if j in a.jobs}
    need |= {"binary"} if "log_loss" in a.jobs else set()
    need |= {"multiclass"} if "xent" in a.jobs else set()
    need |= {"large"} if ("large" in a.jobs or "progress" in a.jobs) else set()
    data = {}
    for kind in ("small", "regression", "binary", "multiclass", "large"):
        if kind in need:
            meta = datagen.ensure(kind, datagen.dataset_rows(kind, a.rows_scale), data_dir, a.seed,
                                  a.regenerate, log=log)
            data[kind] = dict(meta, parquet=relpath(meta["parquet"]), csv=relpath(meta["csv"]))
            if kind == "regression" and "inputs" in a.jobs:
                inp = datagen.ensure_inputs(meta, data_dir, a.regenerate, log=log)
                data["inputs"] = dict(inp, **{k: relpath(inp[k]) for k in ("csv", "csv_gz", "csv_zst",
                                                                           "parquet_rg", "csv_dir", "jsonl",
                                                                           "arrow")})

    lossctl, how = resolve_lossctl(a.lossctl)
    log(f"lossctl: {shlex.join(lossctl)} ({how})")
    jobs = build_jobs(a, lossctl, data)

    if a.dry_run:
        for j in jobs:
            print(f"## {j.key}/{j.fmt}: {j.title}")
            for e in j.entries:
                print(f"  {e.label}: " + (shown(e.argv, lossctl) if e.argv else e.missing))
        return 0

    t0 = time.perf_counter()
    for j in jobs:
        log(f"[{j.key}/{j.fmt}] {j.title}")
        run_job(j, a, log)
    log(f"done in {time.perf_counter() - t0:.0f} s")

    text = report(jobs, a, lossctl, how, command)
    print(text)
    if a.markdown:
        Path(a.markdown).write_text(text)
        log(f"wrote {a.markdown}")
    if a.json:
        raw = {"command": command, "args": {k: v for k, v in vars(a).items()}, "versions": versions(),
               "machine": machine(), "lossctl": lossctl,
               "jobs": [{"key": j.key, "format": j.fmt, "title": j.title, "entries": [
                   {"label": e.label, "argv": e.argv, "missing": e.missing, "error": e.error,
                    "stderr_tail": e.stderr_tail, "wall_s": e.walls, "rss_kb": e.rss_kb, "values": e.values,
                    "ref": e.ref} for e in j.entries]} for j in jobs]}
        Path(a.json).write_text(json.dumps(raw, indent=1))
        log(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
