"""The Dask engine: evaluate fragments of the input on a Dask cluster and merge their states.

``lossctl eval DATA -l mse --engine dask [--scheduler ADDRESS | --workers N]`` (needs ``lossctl[dask]``).

How a run goes:

1. The client plans as for a local run (:func:`lossctl.api.plan_evaluation`: losses, schemas, column
   bindings) without reading any data.
2. The input is cut into fragments: the files of the first input (a directory, prefix or glob), or, for a
   single Parquet file with several row groups, contiguous runs of its row groups.
3. Each fragment is one task.  On a worker it becomes a one-file :class:`~lossctl.io.sources.Source` (same
   format, same filesystem), replaces ``plan.sources[0]`` in a copy of the plan and runs through the very
   code the local engine uses (:func:`~lossctl.api.iter_aligned`, :func:`~lossctl.api.run_plan`), which
   returns a :class:`~lossctl.api.Partial`: mergeable compensated sums, group keys, counts.
4. The client merges the partials in fragment order (:meth:`Partial.merge`) and reduces them
   (:func:`~lossctl.api.make_result`): the numbers equal a local run's to ~1e-15 relative (tests: 1e-12).

Details that make a distributed run answer like a local one:

* Data errors.  A fragment that fails for bad data raises the same :class:`~lossctl.errors.InputError`
  (exit 3), naming the fragment's file and the row within that file.  Data errors are returned, not
  raised, by the task, so they are not retried; the client reports the first bad fragment in input order
  (as a local run meets it), not the first to fail.
* Lost workers.  A task whose worker dies is re-run elsewhere by the scheduler (up to
  ``distributed.scheduler.allowed-failures`` times, default 3); other exceptions are retried ``retries``
  times (default 2).  The plan and the joined labels reach the workers as results of tasks that hold
  them (not scattered data, which a dead worker would take with it), so they are recomputed too.
* Per-sample output (``-r none -o FILE``, ``--format csv|ndjson`` streaming): the workers send their rows
  back and the client writes them in fragment order through the same atomic sink as a local run (a
  temporary file renamed at the end), renumbering the ``row`` column to the global row number.  Workers
  never write files, so this works with a remote cluster that cannot see the client's disk.
* Two inputs joined with ``--on KEY``: the client reads the labels once (as the local engine does) and
  sends them to the workers with the plan; each task joins its fragment and returns which label keys it
  matched, and the client checks unmatched and duplicate keys over all fragments.  Two inputs aligned by
  row (no ``--on``) are evaluated locally, with a note: row alignment needs the rows in one order.
* String class labels without ``--classes``: as the local engine's ``collect_label_names``, the sorted names
  of the whole input fix the class order; the workers scan the label column of their fragments first and
  each fragment's ``label_scan`` answers with the united names (:class:`LabelScan`).  The client checks
  that every fragment used the same classes.  Joined inputs keep first-batch discovery, as locally: the
  first fragment runs first and fixes the order for the others.
* Losses evaluated in row blocks (``block_rows``, e.g. NT-Xent) need fragments whose row counts are
  multiples of the block; otherwise the run is local, with a note.
* Credentials: the plan carries each input's filesystem.  For ``s3://`` with the standard credential chain
  no keys are in it: every worker resolves its own (environment, profile, instance or pod role).  Keys do
  travel inside the task graph when a Python caller passes them in ``storage_options`` (or for fsspec
  protocols configured with explicit tokens, and presigned http(s) URLs, whose query is the secret).
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import io
import logging
import os
import sys
import threading
import uuid
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import pyarrow as pa

from .api import Partial, Plan, Result, _Joiner, iter_aligned, make_result, run_plan
from .errors import InputError, LossctlError, UsageError
from .io.sources import DEFAULT_BATCH_ROWS, Source, _rewrite_arrow_error

DEFAULT_RETRIES = 2


# -- fragments -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Fragment:
    """One task's share of the first input: a file, or a run of row groups of a Parquet file."""

    index: int
    path: str                               # path within the source's filesystem
    shown: str                              # how messages name it (a URL has no secrets)
    row_groups: tuple[int, ...] | None = None
    file_row_offset: int = 0                # rows of the file before this fragment (row-group fragments)
    rows: int | None = None                 # row count when known (Parquet metadata)


class _RowGroupSource(Source):
    """A Parquet source restricted to some row groups of its one file (a fragment of a large file)."""

    row_groups: tuple[int, ...] = ()

    def batches(self, columns: Sequence[str], batch_rows: int = DEFAULT_BATCH_ROWS,
                float_columns: Sequence[str] = (), numpy_ok: bool = False) -> Iterator[pa.RecordBatch]:
        columns = list(dict.fromkeys(columns))  # (Parquet: always Arrow batches, whatever numpy_ok says)
        self.rows = 0
        try:
            pf = self._parquet(self.files[0], pre_buffer=self.fs is not None)
            for b in pf.iter_batches(batch_size=batch_rows, row_groups=list(self.row_groups), columns=columns,
                                     use_threads=True):
                if b.num_rows:
                    self.rows += b.num_rows
                    yield b
        except InputError:
            raise
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, OSError, EOFError,
                ValueError) as exc:
            raise InputError(_rewrite_arrow_error(self.display, exc, columns, self.rows)) from None


def _shown(src: Source, path: str) -> str:
    from .io.remote import file_display
    return file_display(src, path)


def _parquet_meta(src: Source, files: Sequence[str]) -> list:
    """Parquet footers of ``files`` (read in parallel: one round trip each for remote files)."""
    from concurrent.futures import ThreadPoolExecutor

    def meta(f):
        try:
            return src._parquet(f).metadata
        except (OSError, pa.ArrowInvalid) as exc:
            raise InputError(f"{_shown(src, f)}: cannot read the Parquet footer: {str(exc).splitlines()[0][:200]}") from None
    if len(files) == 1:
        return [meta(files[0])]
    with ThreadPoolExecutor(max_workers=min(16, len(files))) as ex:
        return list(ex.map(meta, files))


def make_fragments(plan: Plan, nthreads: int = 1, split_row_groups: bool | None = None,
                   need_rows: bool = False) -> list[Fragment]:
    """Fragments of the first input: one per file; a single Parquet file is split by row groups.

    ``split_row_groups``: None (default) splits only a single Parquet file, into at most ``2 * nthreads``
    runs of row groups; True gives every row group of every file its own fragment; False never splits.
    """
    src = plan.sources[0]
    files = list(src.files)
    if src.data is not None or src.format != "parquet":
        return [Fragment(i, f, src.display if src.data is not None else _shown(src, f)) for i, f in enumerate(files)]
    split = split_row_groups if split_row_groups is not None else len(files) == 1
    metas = _parquet_meta(src, files) if (split or need_rows) else [None] * len(files)
    out: list[Fragment] = []
    for f, md in zip(files, metas):
        shown = _shown(src, f)
        if md is None:
            out.append(Fragment(len(out), f, shown))
            continue
        counts = [md.row_group(i).num_rows for i in range(md.num_row_groups)]
        if not split or len(counts) <= 1:
            out.append(Fragment(len(out), f, shown, rows=md.num_rows))
            continue
        k = len(counts) if split_row_groups else min(len(counts), max(2, 2 * nthreads))
        offset = 0
        for chunk in np.array_split(np.arange(len(counts)), k):
            rows = int(sum(counts[i] for i in chunk))
            out.append(Fragment(len(out), f, shown, tuple(int(i) for i in chunk), offset, rows))
            offset += rows
    return out


# -- what runs on a worker -------------------------------------------------------------------------------
class _ThreadStderr:
    """sys.stderr for a worker process: writes of a thread running a lossctl task go to that task's buffer
    (its warnings come back in ``Partial.memo`` and the client prints them once), others pass through."""

    def __init__(self, real):
        self._real = real
        self._local = threading.local()

    def write(self, text):
        buf = getattr(self._local, "buf", None)
        return (buf if buf is not None else self._real).write(text)

    def flush(self):
        buf = getattr(self._local, "buf", None)
        (buf if buf is not None else self._real).flush()

    def __getattr__(self, name):
        return getattr(self._real, name)


_STDERR_LOCK = threading.Lock()


@contextlib.contextmanager
def _captured_stderr():
    with _STDERR_LOCK:
        if not isinstance(sys.stderr, _ThreadStderr):
            sys.stderr = _ThreadStderr(sys.stderr)
        proxy = sys.stderr
    proxy._local.buf = io.StringIO()
    try:
        yield
    finally:
        proxy._local.buf = None


@dataclass
class _Done:
    partial: Partial
    rows: list | None
    join: tuple | None


@dataclass
class _Failed:
    kind: type
    message: str


def fragment_plan(plan: Plan, frag: Fragment, options: Mapping[str, Any] | None = None) -> Plan:
    """A copy of ``plan`` whose first input is only ``frag`` (errors then name the fragment's file)."""
    src = copy.copy(plan.sources[0])
    if frag.row_groups is not None:
        src.__class__ = _RowGroupSource
        src.row_groups = frag.row_groups
    src.__dict__.pop("_small", None)
    src.files = [frag.path]
    src.path = frag.shown if src.data is None else src.path
    src.rows = 0
    p = copy.copy(plan)
    p.sources = [src, *plan.sources[1:]]

    def rebind(b):
        return dataclasses.replace(b, file=src.display) if b is not None and b.source == 0 else b
    p.bindings = {role: rebind(b) for role, b in plan.bindings.items()}
    p.wbind = rebind(plan.wbind)
    p.by_binds = [rebind(b) for b in plan.by_binds]
    p.id_binds = [rebind(b) for b in plan.id_binds]
    p.output = None
    if options is not None:
        p.options = dict(options)
    return p


def run_fragment(plan: Plan, frag: Fragment, joiner: _Joiner | None = None, want_rows: bool = False,
                 options: Mapping[str, Any] | None = None):
    """The task: evaluate one fragment; data errors are returned (so they are not retried), not raised."""
    fplan = fragment_plan(plan, frag, options)
    rows: list | None = [] if want_rows else None
    j = None
    if joiner is not None:  # the scattered joiner is shared by the tasks of a worker: count in a copy
        j = copy.copy(joiner)
        j.hits = np.zeros_like(joiner.hits)
        j.unmatched_left = 0
        j.unmatched_examples = []
    try:
        with _captured_stderr():
            part = run_plan(fplan, iter_aligned(fplan, j), row_writer=rows.append if rows is not None else None,
                            row_offset=frag.file_row_offset)
    except LossctlError as exc:
        return _Failed(type(exc), exc.message)
    join = (j.hits, j.unmatched_left, list(j.unmatched_examples)) if j is not None else None
    return _Done(part, rows, join)


# -- the client ------------------------------------------------------------------------------------------
def _note(message: str) -> None:
    print(f"lossctl: note: {message}", file=sys.stderr)


@contextlib.contextmanager
def connect(scheduler: str | None = None, workers: int | None = None, client=None,
            threads_per_worker: int = 1, timeout: float = 10.0):
    """A ``distributed.Client``: the one given, one connected to ``scheduler``, or one on a LocalCluster of
    ``workers`` processes on 127.0.0.1 (dashboard on a free loopback port), closed afterwards."""
    if client is not None:
        yield client
        return
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise UsageError("--engine dask needs Dask: pip install 'lossctl[dask]'") from None
    if scheduler and workers:
        raise UsageError("--scheduler and --workers exclude each other: --workers N starts a local cluster, "
                         "--scheduler ADDRESS uses a running one")
    if not scheduler and not workers:
        import dask
        scheduler = dask.config.get("scheduler-address", None)  # DASK_SCHEDULER_ADDRESS
    if scheduler:
        from .io.remote import redact_url
        try:
            c = Client(scheduler, timeout=timeout, set_as_default=False)
        except (OSError, TimeoutError, ValueError) as exc:
            raise UsageError(f"--scheduler {redact_url(scheduler)}: cannot connect "
                             f"({type(exc).__name__}); is the scheduler running at that address?") from None
        try:
            yield c
        finally:
            c.close()
        return
    n = int(workers or os.cpu_count() or 1)
    if n < 1:
        raise UsageError("--workers must be at least 1")
    cluster = c = None
    try:
        with _deferred_signals():  # a half-started cluster cannot be closed cleanly: let it start first
            cluster = LocalCluster(n_workers=n, threads_per_worker=threads_per_worker, processes=True,
                                   host="127.0.0.1", dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR)
            c = Client(cluster, set_as_default=False)
        yield c
    finally:
        with _deferred_signals():  # and closed whole, even when a second signal comes
            if c is not None:
                c.close()
            if cluster is not None:
                cluster.close()


@contextlib.contextmanager
def _deferred_signals():
    """Hold SIGINT / SIGTERM during the block and deliver the first one after it (main thread only).

    A signal in the middle of starting or stopping a LocalCluster leaves it half made: distributed then
    fails to close it at exit, with a traceback.  Python-level handlers only: worker processes started
    meanwhile keep the default dispositions (a blocked signal mask would be inherited by them)."""
    import signal

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got: list[int] = []
    old = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        h = signal.getsignal(sig)
        if h is not signal.SIG_IGN and h is not None:
            old[sig] = h
            signal.signal(sig, lambda n, _f: got.append(n))
    try:
        yield
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)
        if got:
            signal.raise_signal(got[0])  # the restored handler raises (KeyboardInterrupt, lossctl's SIGTERM)


def _needs_class_order(plan: Plan) -> bool:
    """String labels without --classes: the class order must be fixed once for all fragments."""
    if plan.options.get("classes"):
        return False
    for role in plan.string_roles:
        b = plan.bindings.get(role)
        if b is not None and any(plan.sources[b.source].is_text(c) for c in b.columns):
            return True
    return False


def _shift_rows(rb: pa.RecordBatch, delta: int) -> pa.RecordBatch:
    if not delta or "row" not in rb.schema.names:
        return rb
    import pyarrow.compute as pc
    i = rb.schema.get_field_index("row")
    return rb.set_column(i, rb.schema.field(i), pc.add(rb.column(i), pa.scalar(delta, pa.int64())))  # (not null)


def _rows_read(part: Partial) -> int:
    """Rows a fragment read (after a join, before --nan-policy omit dropped any): what row numbers count."""
    return part.rows + int(part.memo.get("omitted_rows", 0) or 0)


def run_local(plan: Plan, row_writer=None, progress=None, on_result=None) -> Result:
    """The local engine on an existing plan (the fallback for inputs the Dask engine does not split)."""
    from .losses._labels import collect_label_names
    collect_label_names(plan)  # as api.evaluate: the class order of string labels over the whole input
    joiner = _Joiner(plan.sources[1], plan.on, plan.need[1], plan.float_cols[1], plan.inner) if plan.on else None
    sink = None
    if plan.output:
        from .io.sinks import Sink
        sink = Sink(plan.output, plan.output_format)
    try:
        part = run_plan(plan, iter_aligned(plan, joiner), sink=sink, row_writer=row_writer, progress=progress)
        join_info = joiner.finish(plan.sources[0].display, plan.on, plan.on) if joiner else {}
        res = make_result(plan, part, join_info)
        if on_result is not None:
            on_result(res)
        if sink is not None:
            sink.commit()
            sink = None
    finally:
        if sink is not None:
            sink.abort()
    return res


def evaluate_dask(plan: Plan, *, row_writer: Callable[[pa.RecordBatch], None] | None = None,
                  progress: Callable[[int], None] | None = None, scheduler: str | None = None,
                  workers: int | None = None, client=None, retries: int = DEFAULT_RETRIES,
                  split_row_groups: bool | None = None, threads_per_worker: int = 1,
                  timeout: float = 10.0, on_result: Callable[[Result], None] | None = None) -> Result:
    """Evaluate ``plan`` on a Dask cluster (see the module docstring); same Result as the local engine.

    ``scheduler``: address of a running scheduler (``tcp://host:8786``); ``workers``: start a local cluster
    of that many worker processes; neither: ``DASK_SCHEDULER_ADDRESS`` if set, else a local cluster with
    one worker per core.  ``client``: an existing ``distributed.Client`` (Python API).  ``on_result``: called
    with the result before the per-sample file is committed (as in :func:`lossctl.api.evaluate`).
    """
    if len(plan.sources) == 2 and not plan.on:
        _note("two inputs aligned by row are evaluated locally (the Dask engine splits one input into "
              "fragments; join them with --on KEY to evaluate on the cluster)")
        return run_local(plan, row_writer, progress, on_result)
    if plan.sources[0].data is not None:
        _note(f"{plan.sources[0].display} is evaluated locally (standard input and pipes are read into this process)")
        return run_local(plan, row_writer, progress, on_result)
    mult = plan.block_multiple
    with connect(scheduler, workers, client, threads_per_worker, timeout) as c:
        nthreads = max(1, sum(c.nthreads().values()))
        frags = make_fragments(plan, nthreads, split_row_groups, need_rows=bool(mult))
        if mult and any(f.rows is None or f.rows % mult for f in frags[:-1]):
            _note(f"a loss evaluated in blocks of {mult} rows needs fragments whose row counts are multiples "
                  f"of {mult}; evaluating locally")
            return run_local(plan, row_writer, progress, on_result)
        return _run_on_cluster(c, plan, frags, row_writer, progress, retries, on_result)


def _run_on_cluster(c, plan: Plan, frags: list[Fragment], row_writer, progress, retries: int,
                    on_result=None) -> Result:
    from distributed import as_completed
    from distributed.client import FutureCancelledError

    try:
        from distributed.scheduler import KilledWorker
    except ImportError:  # pragma: no cover
        KilledWorker = RuntimeError  # noqa: N806
    want_rows = plan.output is not None or row_writer is not None
    joiner = _Joiner(plan.sources[1], plan.on, plan.need[1], plan.float_cols[1], plan.inner) if plan.on else None
    token = uuid.uuid4().hex[:8]
    # the plan (and the joiner's labels) reach the workers as the results of tasks that hold them, not as
    # scattered data: a worker that dies with its copy then costs a recomputation, not the run
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Ll]arge graph.*")
        plan_f = c.submit(_identity, plan, pure=False, key=f"lossctl-plan-{token}")
        joiner_f = (c.submit(_identity, joiner, pure=False, key=f"lossctl-labels-{token}")
                    if joiner is not None else None)

    def submit(frag: Fragment, options=None):
        return c.submit(run_fragment, plan_f, frag, joiner_f, want_rows, options, retries=retries, pure=False,
                        key=f"lossctl-fragment-{frag.index}-{token}")

    results: list[_Done | None] = [None] * len(frags)
    done_rows = 0

    def take(frag: Fragment, fut, raise_failed: bool = True) -> _Done | _Failed:
        nonlocal done_rows
        r = _outcome(frag, fut, KilledWorker, FutureCancelledError)
        if isinstance(r, _Failed):
            if raise_failed:
                raise r.kind(r.message)
            return r
        results[frag.index] = r
        done_rows += _rows_read(r.partial)
        if progress is not None:
            progress(done_rows)
        return r

    futures = []
    try:
        options = None
        per_frag: list[dict] | None = None
        first = 0
        if _needs_class_order(plan) and frags and not plan.on:
            # as the local engine's collect_label_names: the names of the whole input fix the class order;
            # the workers scan the label column of their fragments, the client unites the names
            per_frag = _scan_labels(c, plan_f, plan, frags, token, retries)
        elif _needs_class_order(plan) and frags:
            # joined inputs keep first-batch discovery, as locally: the first fragment fixes the order
            r0 = take(frags[0], submit(frags[0]))
            classes = r0.partial.memo.get("classes")
            if classes:
                options = {**plan.options, "classes": list(classes)}
            first = 1
        futures = [(f, submit(f, per_frag[f.index] if per_frag else options)) for f in frags[first:]]
        if want_rows:
            # in order: a fragment's rows stay on its worker until the client writes them
            sink = None
            if plan.output:
                from .io.sinks import Sink
                sink = Sink(plan.output, plan.output_format)
            try:
                offset = 0
                for i, frag in enumerate(frags):
                    r = results[i] if results[i] is not None else take(frag, futures[i - first][1])
                    delta = offset - frag.file_row_offset if not plan.id_binds else 0
                    for rb in r.rows or ():
                        rb = _shift_rows(rb, delta)
                        if sink is not None:
                            sink.write(rb)
                        if row_writer is not None:
                            row_writer(rb)
                    r.rows = None
                    offset += _rows_read(r.partial)
                merged, join_info = _merge(plan, frags, results, joiner)
                res = make_result(plan, merged, join_info)
                _finish(res, len(frags), on_result)
                if sink is not None:
                    sink.commit()
                    sink = None
            finally:
                if sink is not None:
                    sink.abort()
        else:
            by_key = {fut.key: (frag, fut) for frag, fut in futures}
            pending = {frag.index for frag, _ in futures}
            failed: dict[int, _Failed] = {}
            for fut in as_completed([f for _, f in futures], loop=c.loop):
                frag = by_key[fut.key][0]
                pending.discard(frag.index)
                r = take(frag, fut, raise_failed=False)
                if isinstance(r, _Failed):
                    failed[frag.index] = r
                if failed and min(failed) < min(pending, default=len(frags)):
                    # the first bad fragment in input order, as a local run meets it (not the first to fail)
                    bad = failed[min(failed)]
                    raise bad.kind(bad.message)
            merged, join_info = _merge(plan, frags, results, joiner)
            res = make_result(plan, merged, join_info)
            _finish(res, len(frags), on_result)
    finally:
        for fut in [f for _, f in futures] + [plan_f] + ([joiner_f] if joiner_f is not None else []):
            fut.cancel()  # a shared cluster keeps nothing of this run
    return res


def _finish(res: Result, fragments: int, on_result) -> None:
    """Print the workers' warnings once (they ran in other processes), tag the engine, run ``on_result``
    (the CLI's gates) -- all before a per-sample file is committed."""
    for w in res.warnings:
        print(f"lossctl: warning: {w}", file=sys.stderr)
    res.extra.setdefault("engine", {"name": "dask", "fragments": fragments})
    if on_result is not None:
        on_result(res)


def _outcome(frag: Fragment, fut, KilledWorker, FutureCancelledError):  # noqa: N803
    try:
        return fut.result()
    except KilledWorker:
        raise InputError(f"{frag.shown}: the Dask workers running this fragment died repeatedly (out of "
                         f"memory?); see the workers' logs") from None
    except FutureCancelledError:
        raise InputError(f"{frag.shown}: the Dask task was cancelled (did the cluster shut down?)") from None


def _identity(x):
    return x


class LabelScan:
    """``options["label_scan"]`` of a fragment: (sorted label names of the whole input, {name: row}), the rows
    in the fragment's own numbering (names first seen in other fragments after its own)."""

    def __init__(self, names: list[str], rows: dict[str, int]):
        self.names, self.rows = names, rows

    def __call__(self):
        return self.names, self.rows


def scan_fragment(plan: Plan, frag: Fragment):
    """The task: (sorted names, {name: first row within the fragment}) of the string target, or None."""
    from .losses._labels import _scan_label_names

    fplan = fragment_plan(plan, frag)
    b = fplan.bindings["target"]
    try:
        with _captured_stderr():
            return _scan_label_names(fplan.sources[b.source], b.columns[0], max(plan.batch_rows, 1 << 16))
    except LossctlError as exc:
        return _Failed(type(exc), exc.message)


def _scan_labels(c, plan_f, plan: Plan, frags: list[Fragment], token: str, retries: int) -> list[dict] | None:
    """Each fragment's options, with a label_scan that answers with the label names of every fragment."""
    futs = [c.submit(scan_fragment, plan_f, f, retries=retries, pure=False, key=f"lossctl-labels-{f.index}-{token}")
            for f in frags]
    from distributed.client import FutureCancelledError
    from distributed.scheduler import KilledWorker

    scans = []
    for f, fut in zip(frags, futs):  # in input order: the first bad fragment is the one reported
        r = _outcome(f, fut, KilledWorker, FutureCancelledError)
        if isinstance(r, _Failed):
            raise r.kind(r.message)
        if r is None:  # nulls or not class labels: the main pass reports it, with its row
            return None
        scans.append(r)
    first_seen: dict[str, tuple[int, int]] = {}
    for i, (_, rows) in enumerate(scans):
        for name, row in rows.items():
            first_seen.setdefault(name, (i, row))
    names = sorted(first_seen)
    order = sorted(names, key=first_seen.__getitem__)
    per_frag = []
    for i, (f, (_, rows)) in enumerate(zip(frags, scans)):
        # rows in the fragment's own numbering for the names it shows first; names first shown by other
        # fragments keep their place in the input's order (before or after), which picks the same
        # 'one too many' label as a local run
        before = [n for n in order if first_seen[n][0] < i]
        after = [n for n in order if first_seen[n][0] > i]
        end = f.file_row_offset + (max(rows.values()) + 1 if rows else 0)
        mine = {n: f.file_row_offset + r for n, r in rows.items() if first_seen[n][0] == i}
        mine.update({n: f.file_row_offset - len(before) + k for k, n in enumerate(before)})
        mine.update({n: end + k for k, n in enumerate(after)})
        per_frag.append({**plan.options, "label_scan": LabelScan(names, mine)})
    return per_frag


def _merge(plan: Plan, frags: list[Fragment], results: list[_Done], joiner: _Joiner | None):
    """Merge the fragments' partials in fragment order; check what must hold over all of them."""
    merged: Partial | None = None
    offset = 0
    omitted = nan_rows = 0
    codings: dict[str, str] = {}
    classes: tuple[list, str] | None = None
    for frag, r in zip(frags, results):
        part = r.partial
        found = part.memo.get("classes")
        if found is not None:  # string labels: every fragment must have used the same class indices
            if classes is None:
                classes = (list(found), frag.shown)
            elif list(found) != classes[0]:
                raise InputError(f"{frag.shown}: the labels here fix the classes as {', '.join(map(str, found))} "
                                 f"but {', '.join(map(str, classes[0]))} in {classes[1]}; pass --classes in "
                                 f"score-column order")
        coding = part.memo.get("binary_coding")
        if coding is not None and coding not in codings:
            codings[coding] = frag.shown
        if len(codings) > 1:
            (ca, fa), (cb, fb) = list(codings.items())[:2]
            raise InputError(f"{fb}: labels are {cb} here but {ca} in {fa}; use one coding")
        omitted += int(part.memo.get("omitted_rows", 0) or 0)
        nan_rows += int(part.memo.get("nan_rows", 0) or 0)
        delta = offset - frag.file_row_offset
        if delta and not plan.id_binds and "row" in part.row_columns:
            for d in part.rows_kept:
                d["row"] += delta
        offset += _rows_read(part)
        merged = part if merged is None else merged.merge(part, plan.limit)
    assert merged is not None
    merged.memo["omitted_rows"] = omitted
    merged.memo["nan_rows"] = nan_rows
    if len(plan.sources) == 2:
        merged.source_rows = [merged.source_rows[0] if merged.source_rows else 0, plan.sources[1].rows]
    join_info: dict = {}
    if joiner is not None:
        hits = np.zeros_like(joiner.hits)
        examples: list = []
        unmatched = 0
        for r in results:
            h, n, ex = r.join
            hits += h
            unmatched += n
            examples.extend(ex[: max(0, 5 - len(examples))])
        joiner.hits, joiner.unmatched_left, joiner.unmatched_examples = hits, unmatched, examples
        join_info = joiner.finish(plan.sources[0].display, plan.on, plan.on)
    return merged, join_info
