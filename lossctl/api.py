"""``evaluate()``: the pipeline from files to reduced and per-sample loss values, without Click.

sources -> Arrow record batches -> columns bound to roles -> NumPy arrays (checked) -> per-kind
``prepare`` hooks -> per-sample loss functions -> mergeable states (overall and per group) -> results;
per-sample rows stream to an optional sink.  One pass over the data, whatever its size.
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from . import registry
from ._pa import pa  # imported on first use: the small-CSV path never needs it
from .errors import InputError, UnknownLossError, UsageError
from .io import columns as colmod
from .io.columns import Binding, Converter, check_finite
from .io.sources import DEFAULT_BATCH_ROWS, Source, auto_batch_rows, open_source
from .state import SumState

REDUCTIONS = ("mean", "sum", "none")
NAN_POLICIES = ("error", "omit", "propagate")


# -- loss requests ---------------------------------------------------------------------------------
@dataclass
class LossRequest:
    """One requested loss: its registry entry, resolved parameters and the label it is shown under."""

    spec: registry.LossSpec
    params: dict[str, Any]
    given: dict[str, Any] = field(default_factory=dict)
    label: str = ""

    def __post_init__(self):
        if not self.label:
            self.label = self.spec.name + (
                "(" + ",".join(f"{k}={_fmt_param(v)}" for k, v in self.given.items()) + ")" if self.given else "")


def _fmt_param(v: Any) -> str:
    if isinstance(v, tuple):
        return "/".join(_fmt_param(x) for x in v)
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e15:
        return repr(v)
    return str(v)


def parse_loss_args(texts: Sequence[str]) -> list[tuple[str, dict[str, str]]]:
    """Split ``-l`` values into (name, {param: text}).

    ``-l mse,mae`` gives two losses; ``-l huber:delta=0.5,mae`` gives huber with delta and mae;
    ``-l cross_entropy:label_smoothing=0.1,ignore_index=-1`` gives one loss with two parameters
    (a comma item holding '=' but no ':' continues the previous loss's parameters);
    ``-l my_pkg:asymmetric_l2:alpha=0.3`` is the plugin loss ``my_pkg:asymmetric_l2`` with a parameter.
    """
    out: list[tuple[str, dict[str, str]]] = []
    for text in texts:
        for tok in (t.strip() for t in text.split(",")):
            if not tok:
                continue
            if "=" in tok and ":" not in tok.split("=", 1)[0]:
                if not out:
                    raise UsageError(f"-l {text!r}: parameter {tok!r} comes before any loss name")
                k, v = tok.split("=", 1)
                out[-1][1][k.strip()] = v.strip()
                continue
            # NAME:P=V; a NAME may itself be namespaced, PLUGIN:LOSS (a ':' and no '='), so the
            # parameter starts after the last ':' before the '='
            head, eq, v = tok.partition("=")
            params: dict[str, str] = {}
            if eq:
                name, _, k = head.rpartition(":")
                params[k.strip()] = v.strip()
            else:
                name = tok.rstrip(":")
            out.append((name.strip(), params))
    if not out:
        raise UsageError("no loss given; pass -l NAME (see `lossctl list`)")
    return out


def _is_loss(name: str) -> bool:
    try:
        registry.get(name)
    except UnknownLossError:
        return False
    return True


def make_requests(losses: Iterable[str | tuple[str, Mapping[str, Any]] | LossRequest]) -> list[LossRequest]:
    reqs: list[LossRequest] = []
    items: list = []
    for item in losses:
        if isinstance(item, str):
            items.extend(parse_loss_args([item]))
        else:
            items.append(item)
    for item in items:
        if isinstance(item, LossRequest):
            reqs.append(item)
            continue
        name, given = item
        try:
            spec = registry.get(name)
        except UnknownLossError:
            base, colon, rest = name.rpartition(":")
            if colon and not given and _is_loss(base):
                raise UsageError(f"-l {name}: expected NAME:PARAM=VALUE (a value for {rest!r}) or "
                                 f"PLUGIN:NAME for a plugin's loss") from None
            raise
        params = spec.resolve_params(given)
        reqs.append(LossRequest(spec, params, {k: params[k] for k in given}))
    labels = [r.label for r in reqs]
    dup = {x for x in labels if labels.count(x) > 1}
    if dup:
        raise UsageError(f"loss {sorted(dup)[0]} requested twice")
    return reqs


# -- per-batch context handed to prepare hooks ----------------------------------------------------------
class BatchContext:
    """What a loss's ``prepare`` hook may use: error(), options, memo (persists across batches)."""

    def __init__(self, bindings: Mapping[str, Binding], options: Mapping[str, Any], memo: dict):
        self.bindings = bindings
        self.options = options
        self.memo = memo
        self.row0 = 0
        self.rowmap: np.ndarray | None = None  # batch row -> input row, when --nan-policy omit dropped rows
        self.file = next(iter(bindings.values())).file if bindings else ""

    @property
    def columns(self) -> dict[str, str]:
        return {r: b.label for r, b in self.bindings.items()}

    def error(self, role: str, i: int | None, message: str) -> InputError:
        b = self.bindings.get(role)
        parts = [b.file if b else self.file]
        if b:
            parts.append(f"column {b.label!r}")
        if i is not None:
            i = int(i) if self.rowmap is None else int(self.rowmap[int(i)])
            parts.append(f"row {self.row0 + i + 1}")
        return InputError(", ".join(parts) + ": " + message)

    def warn(self, key: str, message: str) -> None:
        """Print a warning once per run (keyed), on stderr."""
        seen = self.memo.setdefault("_warned", set())
        if key not in seen:
            seen.add(key)
            import sys
            print(f"lossctl: warning: {message}", file=sys.stderr)
            self.memo.setdefault("_warnings", []).append(message)


# -- results ------------------------------------------------------------------------------------
@dataclass
class ResultRow:
    loss: str
    label: str
    params: dict[str, Any]
    reduction: str
    value: float
    count: int
    weight_sum: float
    group: dict[str, Any] | None = None

    def as_dict(self) -> dict:
        return {"loss": self.loss, "label": self.label, "params": _jsonable_params(self.params),
                "reduction": self.reduction, "value": _json_float(self.value), "count": self.count,
                "weight_sum": _json_float(self.weight_sum), "group": self.group}


def _json_float(v: float) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


def _jsonable_params(p: Mapping[str, Any]) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in p.items()}


@dataclass
class Result:
    inputs: list[dict]
    columns: dict[str, Any]
    reduction: str
    results: list[ResultRow]
    rows: list[dict] = field(default_factory=list)
    row_columns: list[str] = field(default_factory=list)
    rows_total: int = 0
    output: str | None = None
    warnings: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def value(self, loss: str | None = None) -> float:
        """The overall value of ``loss`` (or of the only loss)."""
        for r in self.results:
            if r.group is None and (loss is None or loss in (r.loss, r.label)):
                return r.value
        raise KeyError(loss)


# -- batch alignment ----------------------------------------------------------------------------------
def _zip_aligned(a: Iterator[pa.RecordBatch], b: Iterator[pa.RecordBatch], sa: Source, sb: Source):
    """Yield [batch_a, batch_b] slices of equal length from two row-aligned streams."""
    ra = rb = None
    while True:
        if ra is None or ra.num_rows == 0:
            ra = next(a, None)
        if rb is None or rb.num_rows == 0:
            rb = next(b, None)
        if ra is None or rb is None:
            if ra is None and rb is None:
                return
            for _ in (a if ra is not None else b):
                pass
            raise InputError(f"{sa.display} has {sa.rows} rows but {sb.display} has {sb.rows}; "
                             f"two files are aligned by row, so their row counts must match "
                             f"(or join them with --on KEY)")
        n = min(ra.num_rows, rb.num_rows)
        yield [ra.slice(0, n), rb.slice(0, n)]
        ra = ra.slice(n)
        rb = rb.slice(n)


def _key_array(arr: pa.Array, where: str, rownum: Callable[[int], int] | None = None) -> np.ndarray:
    """A key or group column as NumPy; ``rownum(i)`` gives the 1-based input row of batch row i (for messages)."""
    def at(i: int) -> str:
        return f", row {rownum(int(i))}" if rownum is not None else ""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if arr.null_count:
        i = colmod._first_null(arr)
        raise InputError(f"{where}{at(i)}: missing key value ({arr.null_count} in these {len(arr)} rows); keys and groups "
                         f"need a value in every row: fill them or drop those rows")
    t = arr.type
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_temporal(t):
        try:  # text that is not valid UTF-8 arrives as binary; dates and times are keyed by their text
            arr = arr.cast(pa.string())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise InputError(f"{where}: values are not UTF-8 text; save the file as UTF-8") from None
        t = arr.type
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_dictionary(t):
        return colmod.strings_to_numpy(arr)
    try:
        out = colmod.primitive_to_numpy(arr)
    except TypeError:
        raise InputError(f"{where}: a column of type {t} cannot be a key or a group; use numbers or text") from None
    if out.dtype.kind == "f" and not np.isfinite(out).all():
        i = int(np.argmax(~np.isfinite(out)))
        raise InputError(f"{where}{at(i)}: key value {float(out[i])!r}; keys and groups must be finite numbers "
                         f"or text: fill them or drop those rows")
    return out


class _Joiner:
    """Joins streamed prediction batches to a label file held in memory, on a key column.

    The label side is read once into NumPy arrays and sorted by key; each prediction batch looks its keys
    up with searchsorted.  Unmatched and duplicate keys are counted over the whole input and reported
    with examples (an error unless ``inner``).
    """

    def __init__(self, right: Source, key_right: str, cols: list[str], float_cols, inner: bool):
        tables = list(right.batches([key_right, *[c for c in cols if c != key_right]], float_columns=float_cols))
        if not tables:
            raise InputError(f"{right.display}: no rows")
        tbl = pa.Table.from_batches(tables).combine_chunks()
        self.right = right
        keys = _key_array(tbl.column(key_right), f"{right.display}, column {key_right!r}")
        order = np.argsort(keys, kind="stable")
        self.sorted_keys = keys[order]
        self.order = order
        uniq, counts = np.unique(self.sorted_keys, return_counts=True)
        dups = uniq[counts > 1]
        if len(dups):
            ex = ", ".join(map(repr, dups[:5].tolist()))
            raise InputError(f"{right.display}, column {key_right!r}: {len(dups)} duplicate key(s) "
                             f"(e.g. {ex}); keys must be unique to join")
        self.table = tbl
        self.hits = np.zeros(len(keys), dtype=np.int64)
        self.inner = inner
        self.unmatched_left = 0
        self.unmatched_examples: list = []

    def join(self, left: pa.RecordBatch, key_left: str, where: str) -> tuple[pa.RecordBatch, pa.RecordBatch]:
        keys = _key_array(left.column(key_left), where)
        if keys.dtype.kind != self.sorted_keys.dtype.kind and not (
                keys.dtype.kind in "iuf" and self.sorted_keys.dtype.kind in "iuf"):
            raise InputError(f"{where}: key type {keys.dtype} does not match {self.right.display} "
                             f"({self.sorted_keys.dtype}); both key columns must be numbers or both text")
        pos = np.searchsorted(self.sorted_keys, keys)
        pos_c = np.minimum(pos, len(self.sorted_keys) - 1)
        found = self.sorted_keys[pos_c] == keys
        if not found.all():
            miss = keys[~found]
            self.unmatched_left += len(miss)
            if len(self.unmatched_examples) < 5:
                self.unmatched_examples.extend(miss[: 5 - len(self.unmatched_examples)].tolist())
        idx = self.order[pos_c[found]]
        np.add.at(self.hits, idx, 1)
        if not found.all():
            left = left.filter(_bool_arrow(found))
        if len(idx) == 0:
            return left, None
        right = self.table.take(_int_arrow(idx)).combine_chunks().to_batches()
        rb = right[0] if len(right) == 1 else pa.Table.from_batches(right).combine_chunks().to_batches()[0]
        return left, rb

    def finish(self, left_name: str, key_left: str, key_right: str) -> dict:
        dup_left = int(np.sum(self.hits > 1))
        unmatched_right = int(np.sum(self.hits == 0))
        if dup_left:
            ex = ", ".join(map(repr, self.sorted_keys[np.argsort(self.order)][self.hits > 1][:5].tolist()))
            raise InputError(f"{left_name}, column {key_left!r}: {dup_left} key(s) appear more than once "
                             f"(e.g. {ex}); keys must be unique to join")
        if not self.inner and (self.unmatched_left or unmatched_right):
            parts = []
            if self.unmatched_left:
                ex = ", ".join(map(repr, self.unmatched_examples))
                parts.append(f"{self.unmatched_left} key(s) of {left_name} have no match in "
                             f"{self.right.display} (e.g. {ex})")
            if unmatched_right:
                keys_in_file_order = self.sorted_keys[np.argsort(self.order)]
                ex = ", ".join(map(repr, keys_in_file_order[self.hits == 0][:5].tolist()))
                parts.append(f"{unmatched_right} key(s) of {self.right.display} have no match in "
                             f"{left_name} (e.g. {ex})")
            raise InputError("; ".join(parts) + "; fix the files or pass --inner to keep only matched rows")
        return {"unmatched_pred": self.unmatched_left, "unmatched_target": unmatched_right}


def _finite_rows(arrays: Sequence[np.ndarray], n: int) -> np.ndarray | None:
    """Mask of rows where every float input is finite, or None when all are (the common case)."""
    keep = None
    for a in arrays:
        with np.errstate(over="ignore", invalid="ignore"):
            if np.isfinite(np.sum(a)):
                continue
        ok = np.isfinite(a) if a.ndim == 1 else np.isfinite(a).reshape(n, -1).all(axis=1)
        keep = ok if keep is None else keep & ok
    return None if keep is None or keep.all() else keep


def _bool_arrow(mask: np.ndarray) -> pa.Array:
    packed = np.packbits(mask.astype(np.uint8), bitorder="little")
    return pa.Array.from_buffers(pa.bool_(), len(mask), [None, pa.py_buffer(packed)])


def _int_arrow(idx: np.ndarray) -> pa.Array:
    idx = np.ascontiguousarray(idx, dtype=np.int64)
    return pa.Array.from_buffers(pa.int64(), len(idx), [None, pa.py_buffer(idx)])


def _rechunk(it: Iterator[list[pa.RecordBatch]], multiple: int) -> Iterator[list[pa.RecordBatch]]:
    """Regroup aligned batches so each holds a multiple of ``multiple`` rows (the last may be shorter)."""
    carry: list[pa.RecordBatch] | None = None
    for parts in it:
        if carry is not None:
            parts = [pa.Table.from_batches([c, p]).combine_chunks().to_batches()[0] if c.num_rows else p
                     for c, p in zip(carry, parts)]
            carry = None
        n = parts[0].num_rows
        keep = (n // multiple) * multiple
        if keep < n:
            carry = [p.slice(keep) for p in parts]
            parts = [p.slice(0, keep) for p in parts]
        if keep:
            yield parts
    if carry is not None and carry[0].num_rows:
        yield carry


# -- groups --------------------------------------------------------------------------------------------
class _Grouper:
    """Maps --by values (one or more columns) of each batch to stable global group codes."""

    def __init__(self, names: Sequence[str]):
        self.names = list(names)
        self.index: dict[tuple, int] = {}
        self.keys: list[tuple] = []

    def codes(self, arrays: Sequence[pa.Array], where: str, rownum: Callable[[int], int] | None = None) -> np.ndarray:
        per_col = []
        for arr, name in zip(arrays, self.names):
            vals = _key_array(arr, f"{where}, column {name!r}", rownum)
            uniq, inv = np.unique(vals, return_inverse=True)
            per_col.append((uniq.tolist(), inv))
        if len(per_col) == 1:
            uniq, inv = per_col[0]
            lut = np.array([self._code((u,)) for u in uniq], dtype=np.int64)
            return lut[inv]
        stacked = np.stack([inv for _, inv in per_col], axis=1)
        combos, inv = np.unique(stacked, axis=0, return_inverse=True)
        lut = np.array([self._code(tuple(per_col[j][0][c] for j, c in enumerate(row))) for row in combos],
                       dtype=np.int64)
        return lut[inv.reshape(-1)]

    def _code(self, key: tuple) -> int:
        code = self.index.get(key)
        if code is None:
            code = self.index[key] = len(self.keys)
            self.keys.append(key)
        return code

    def label(self, code: int) -> dict[str, Any]:
        return {n: _py(v) for n, v in zip(self.names, self.keys[code])}

    def sorted_codes(self) -> list[int]:
        def k(c):
            return tuple((0, v) if isinstance(v, (int, float)) else (1, str(v)) for v in self.keys[c])
        return sorted(range(len(self.keys)), key=k)


def _py(v):
    if isinstance(v, float) and v.is_integer():
        return int(v) if abs(v) < 2**53 else v
    return v


# -- the pipeline --------------------------------------------------------------------------------------
@dataclass
class Plan:
    """Everything decided before reading data: losses, sources, column bindings, options.

    A plan is picklable (cloudpickle) so that a cluster worker can run it on one fragment of the input.
    """

    paths: list[str]
    reqs: list[LossRequest]
    options: dict[str, Any]
    reduction: str
    sources: list[Source]
    bindings: dict[str, Binding]
    wbind: Binding | None
    by_binds: list[Binding]
    id_binds: list[Binding]
    need: list[list[str]]
    float_cols: list[list[str]]
    string_roles: set[str]
    on: str | None = None
    inner: bool = False
    batch_rows: int = DEFAULT_BATCH_ROWS
    output: str | None = None
    output_format: str | None = None
    limit: int = 10
    grad: bool = False
    per_sample: bool = False
    input_format: str | None = None
    nan_policy: str = "error"

    @property
    def col_pos(self) -> list[dict[str, int]]:
        return [{c: j for j, c in enumerate(n)} for n in self.need]

    @property
    def block_multiple(self) -> int | None:
        blocks = [int(r.spec.block_rows(r.params)) for r in self.reqs if r.spec.block_rows is not None]
        return math.lcm(*blocks) if blocks else None

    def columns_info(self) -> dict[str, Any]:
        cols: dict[str, Any] = {role: (list(b.columns) if len(b.columns) > 1 else b.columns[0])
                                for role, b in self.bindings.items()}
        cols["weight"] = self.wbind.columns[0] if self.wbind else None
        cols["by"] = [b.columns[0] for b in self.by_binds] or None
        cols["id"] = [b.columns[0] for b in self.id_binds] or None
        if self.on:
            cols["on"] = self.on
        return cols


@dataclass
class Partial:
    """The mergeable outcome of running a plan over some of the rows (a file, a fragment, a batch)."""

    states: list[SumState]
    group_keys: list[tuple]
    rows: int = 0
    rows_kept: list[dict] = field(default_factory=list)
    row_columns: list[str] = field(default_factory=list)
    source_rows: list[int] = field(default_factory=list)
    memo: dict = field(default_factory=dict)

    def merge(self, other: "Partial", limit: int = 10) -> "Partial":
        """Fold ``other`` (rows that come after this partial's rows) into this one; returns self."""
        index = {k: i for i, k in enumerate(self.group_keys)}
        codes = []
        for k in other.group_keys:
            if k not in index:
                index[k] = len(self.group_keys)
                self.group_keys.append(k)
            codes.append(index[k])
        lut = np.array(codes, dtype=np.int64)
        for mine, theirs in zip(self.states, other.states):
            mine.merge(theirs.remapped(lut, len(self.group_keys)) if len(lut) else theirs)
        self.rows += other.rows
        if limit == 0 or len(self.rows_kept) < limit:
            room = len(other.rows_kept) if limit == 0 else limit - len(self.rows_kept)
            self.rows_kept.extend(other.rows_kept[:room])
        self.row_columns = self.row_columns or other.row_columns
        self.source_rows = [a + b for a, b in zip(self.source_rows, other.source_rows)] or other.source_rows
        for k, v in other.memo.items():
            if k == "_warnings":
                for w in v:
                    if w not in self.memo.setdefault("_warnings", []):
                        self.memo["_warnings"].append(w)
            else:
                self.memo.setdefault(k, v)
        return self


def plan_evaluation(
    paths: str | Sequence[str],
    losses: Sequence[Any] | str,
    *,
    pred: str | None = None,
    target: str | None = None,
    weight: str | None = None,
    by: Sequence[str] | str = (),
    ids: Sequence[str] | str = (),
    on: str | None = None,
    inner: bool = False,
    columns: Mapping[str, str] | None = None,
    reduction: str = "mean",
    batch_rows: int = DEFAULT_BATCH_ROWS,
    input_format: str | None = None,
    output: str | None = None,
    force: bool = False,
    limit: int = 10,
    classes: Sequence[str] | None = None,
    class_weights: Sequence[float] | None = None,
    space: str | None = None,
    box_format: str | None = None,
    grad: bool = False,
    per_sample: bool = False,
    storage_options: Mapping[str, Any] | None = None,
    nan_policy: str = "error",
) -> Plan:
    """Check options, open the sources (schemas only) and bind every role to columns."""
    if isinstance(paths, (str, bytes)):
        paths = [paths]
    paths = list(paths)
    if isinstance(losses, str):
        losses = [losses]
    if isinstance(by, str):
        by = colmod.split_names(by)
    if isinstance(ids, str):
        ids = colmod.split_names(ids)
    if reduction not in REDUCTIONS:
        raise UsageError(f"unknown reduction {reduction!r}; use mean, sum or none")
    if not 1 <= len(paths) <= 2:
        raise UsageError(f"expected one or two input files (predictions [labels]), got {len(paths)}")
    if batch_rows < 1:
        raise UsageError("--batch-size must be at least 1")
    if nan_policy not in NAN_POLICIES:
        raise UsageError(f"unknown --nan-policy {nan_policy!r}; use error, omit or propagate")
    if on and len(paths) != 2:
        raise UsageError("--on joins two files; give predictions and labels files")
    if paths.count("-") > 1:
        raise UsageError("standard input (-) can be read only once; give the predictions or the labels as a file")

    options = {"classes": list(classes) if classes else None,
               "class_weights": tuple(class_weights) if class_weights else None, "space": space,
               "box_format": box_format}
    reqs = make_requests(losses)
    _apply_options(reqs, options)
    if reduction == "sum":
        for r in reqs:
            if not r.spec.has_sum:
                raise UsageError(f"{r.spec.name} has no sum reduction; use -r mean or -r none")
    if grad:
        nograd = [r.spec.name for r in reqs if r.spec.grad is None]
        if nograd:
            raise UsageError(f"--grad: no gradient defined for {', '.join(nograd)}")

    output_format = None
    if output:
        from .io.sinks import check_output_path
        output_format = check_output_path(output, paths, force)

    sources = [open_source(p, input_format, storage_options) for p in paths]

    # -- bind roles to columns --
    user_cols = dict(columns or {})
    if pred:
        user_cols["pred"] = pred
    if target:
        user_cols["target"] = target
    roles: list[str] = []
    for r in reqs:
        for role in r.spec.roles:
            if role not in roles:
                roles.append(role)
    unknown = [k for k in user_cols if k not in roles]
    if unknown:
        raise UsageError(f"column option for {unknown[0]!r}, which none of the requested losses uses "
                         f"(they use {', '.join(roles)})")
    exclude = [on] if on else []
    exclude += list(ids) + list(by)
    if weight:
        exclude.append(weight)
    bindings: dict[str, Binding] = {}
    for role in roles:
        prefer = 1 if (role == "target" and len(sources) == 2) else 0
        taken = [c for b in bindings.values() for c in b.columns] + exclude
        bindings[role] = colmod.bind(role, user_cols.get(role), sources, prefer=prefer, exclude=taken)
    for a, b in [(x, y) for x in bindings for y in bindings if x < y]:
        ba, bb = bindings[a], bindings[b]
        if ba.source == bb.source and set(ba.columns) & set(bb.columns):
            raise UsageError(f"{ba.file}: column {sorted(set(ba.columns) & set(bb.columns))[0]!r} is used for "
                             f"both {a} and {b}; choose distinct columns with {colmod.option_of(a)} / "
                             f"{colmod.option_of(b)}")
    wbind = colmod.bind("weight", weight, sources) if weight else None
    by_binds = [colmod.bind("by", name, sources) for name in by]
    id_binds = [colmod.bind("id", name, sources) for name in ids]
    for bb in by_binds + id_binds:
        if len(bb.columns) != 1:
            raise UsageError(f"--{bb.role} takes column names, got a pattern matching {len(bb.columns)} columns")

    string_roles = {role for r in reqs for role in r.spec.extra.get("string_roles", ())}
    float_cols: list[list[str]] = [[] for _ in sources]
    need: list[list[str]] = [[] for _ in sources]
    for role, b in bindings.items():
        need[b.source].extend(b.columns)
        if role not in string_roles:
            float_cols[b.source].extend(b.columns)
    for b in ([wbind] if wbind else []):
        need[b.source].extend(b.columns)
        float_cols[b.source].extend(b.columns)
    for b in by_binds + id_binds:
        need[b.source].extend(b.columns)
    if on:
        for s in sources:
            if on not in s.names:
                raise InputError(f"{s.display}: no key column {on!r} for --on; columns are: {', '.join(s.names[:30])}")
        need[0].append(on)
        need[1] = [on, *[c for c in need[1] if c != on]]
    need = [list(dict.fromkeys(n)) for n in need]
    return Plan(paths=paths, reqs=reqs, options=options, reduction=reduction, sources=sources,
                bindings=bindings, wbind=wbind, by_binds=by_binds, id_binds=id_binds, need=need,
                float_cols=float_cols, string_roles=string_roles, on=on, inner=inner, batch_rows=batch_rows,
                output=output, output_format=output_format, limit=limit, grad=grad,
                per_sample=per_sample or reduction == "none" or output is not None, input_format=input_format,
                nan_policy=nan_policy)


_END = object()
_MALLOC_TUNED = False


def _tune_malloc() -> None:
    """glibc: keep freed batch temporaries on the heap for the next batch (once per process).

    A batch's NumPy temporaries are 0.1-2 MiB each.  By default glibc serves such sizes with mmap or
    returns the freed top of the heap to the kernel, so every batch page-faults its temporaries in again:
    a loss with a few temporaries (huber) ran 4-7x slower at 64 Ki rows than with the memory kept.  Fixed
    thresholds (4 MiB to mmap, 64 MiB of free heap before trimming) keep it; glibc's own dynamic thresholds
    reach similar values on their own, later.  Other C libraries: nothing is done."""
    global _MALLOC_TUNED
    if _MALLOC_TUNED:
        return
    _MALLOC_TUNED = True
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes  # (NumPy has imported it already)
        mallopt = ctypes.CDLL(None).mallopt
        mallopt(-3, 4 << 20)  # M_MMAP_THRESHOLD
        mallopt(-1, 64 << 20)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        pass


def _residual_sharing(reqs) -> dict:
    """label -> (residual, residual_terms) of the losses that can share one pred - target per batch: only
    when a run has two or more of them (one loss alone computes its own residual in place)."""
    found = {}
    for req in reqs:
        ex = req.spec.extra
        on_d = ex.get("residual")
        if on_d is not None and tuple(req.spec.roles) == ("pred", "target") and \
                (req.spec.terms is None or ex.get("residual_terms") is not None):
            found[req.label] = (on_d, ex.get("residual_terms") if req.spec.terms is not None else None)
    return found if len(found) >= 2 else {}


def _shared_residual(cache: dict, pred, target) -> np.ndarray:
    """pred - target in float64 (as each loss computes it), once per pair of arrays in a batch, read-only."""
    key = (id(pred), id(target))  # stable ids: the cache holds the arrays for the batch
    hit = cache.get(key)
    if hit is not None:
        return hit[2]
    d = np.asarray(pred, dtype=np.float64) - np.asarray(target, dtype=np.float64)
    d.flags.writeable = False  # every loss reads it; a loss that wrote into it would fail loudly
    cache[key] = (pred, target, d)
    return d


def _prefetched(it: Iterator, depth: int = 2) -> Iterator:
    """Iterate ``it`` in a background thread, up to ``depth`` items ahead: while the losses run on batch k
    (NumPy), batch k+1 is read and decoded (pyarrow; both release the GIL), so two cores overlap the two.
    The items, their order and any exception are exactly those of ``it``; the exception is raised here,
    after the items before it."""
    import queue
    import threading

    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.05)
                return True
            except queue.Full:
                pass
        return False

    def work() -> None:
        try:
            for item in it:
                if not put((item, None)):
                    return  # the consumer stopped early
        except BaseException as exc:  # handed to the consumer, raised there in order
            put((_END, exc))
            return
        put((_END, None))

    threading.Thread(target=work, name="lossctl-reader", daemon=True).start()
    try:
        while True:
            item, exc = q.get()
            if item is _END:
                if exc is not None:
                    raise exc
                return
            yield item
    finally:
        stop.set()


def iter_aligned(plan: Plan, joiner: "_Joiner | None" = None, numpy_ok: bool = False) -> Iterator[list[pa.RecordBatch]]:
    """The input as lists of equal-length record batches, one per source (joined or row-aligned).

    ``numpy_ok``: the consumer only converts and computes (no per-sample rows, no hook), so a small CSV may
    arrive as NumPy columns (:class:`~lossctl.io.sources.NumpyBatch`), read without loading pyarrow."""
    sources = plan.sources
    need, fc = plan.need, plan.float_cols
    rows = plan.batch_rows
    if rows == DEFAULT_BATCH_ROWS:  # the default: fewer rows per batch for wide inputs (same results)
        rows = auto_batch_rows(sum(len(n) for n in need))
    if len(sources) == 1:
        # NumPy batches only where run_plan reads nothing but their columns: no omitted rows (a filter),
        # no groups, ids or per-sample rows (Arrow columns), no regrouping into blocks
        plain = (numpy_ok and plan.nan_policy == "error" and not plan.by_binds and not plan.id_binds
                 and not plan.per_sample and not plan.block_multiple)
        aligned: Iterator[list[pa.RecordBatch]] = ([b] for b in sources[0].batches(need[0], rows, fc[0],
                                                                                     numpy_ok=plain))
    elif plan.on:
        assert joiner is not None

        def _joined():
            for b in sources[0].batches(need[0], rows, fc[0]):
                left, right = joiner.join(b, plan.on, f"{sources[0].display}, column {plan.on!r}")
                if left.num_rows:
                    yield [left, right]
        aligned = _joined()
    else:
        aligned = _zip_aligned(sources[0].batches(need[0], rows, fc[0]),
                               sources[1].batches(need[1], rows, fc[1]), sources[0], sources[1])
    mult = plan.block_multiple
    if mult:
        aligned = _rechunk(aligned, mult)
    return aligned  # (run_plan reads it in a background thread)


def run_plan(plan: Plan, aligned: Iterable[list[pa.RecordBatch]], *, sink=None,
             row_writer: Callable[[pa.RecordBatch], None] | None = None,
             progress: Callable[[int], None] | None = None,
             batch_hook: Callable[[list, dict], None] | None = None, row_offset: int = 0) -> Partial:
    """One pass over aligned batches: convert, validate, compute every loss, update the states."""
    _tune_malloc()
    reqs, bindings, wbind = plan.reqs, plan.bindings, plan.wbind
    col_pos = plan.col_pos
    lenient = plan.nan_policy != "error"  # missing values become NaN, then omitted or propagated
    omit_ok = not plan.block_multiple  # row-block losses (NT-Xent) refuse --nan-policy omit: do not suggest it
    convs = {role: Converter(b, allow_strings=role in plan.string_roles, null_as_nan=lenient, omit_ok=omit_ok)
             for role, b in bindings.items()}
    wconv = Converter(wbind, null_as_nan=lenient, omit_ok=omit_ok) if wbind else None
    grouper = _Grouper([b.columns[0] for b in plan.by_binds]) if plan.by_binds else None
    memo: dict = {"omitted_rows": 0}
    ctx = BatchContext(bindings, plan.options, memo)
    states = [SumState() for _ in reqs]
    per_sample_needed = plan.per_sample or row_writer is not None
    share_residual = _residual_sharing(reqs)
    rows_kept: list[dict] = []
    row_columns: list[str] = []
    limit = plan.limit
    total = 0
    evaluated = 0

    def converted():
        """Arrow -> NumPy and the finiteness checks, batch by batch: run in the reader thread (below), next
        to the decoding, so the copies (e.g. stacking score columns) read cache-warm data off the main thread."""
        row0 = row_offset
        for parts in aligned:
            arrays: dict[str, np.ndarray] = {}
            for role, b in bindings.items():
                cols = [parts[b.source].column(col_pos[b.source][c]) for c in b.columns]
                x = convs[role].convert(cols, row0)
                if x.dtype.kind == "f" and not lenient and not convs[role].known_finite \
                        and not getattr(parts[b.source], "finite", False):  # (NumpyBatch of lossctl's parser)
                    check_finite(x, b, row0, omit_ok)
                arrays[role] = x
            w = None
            if wconv is not None:
                w = wconv.convert([parts[wbind.source].column(col_pos[wbind.source][wbind.columns[0]])], row0)
                if not lenient and not wconv.known_finite:
                    check_finite(w, wbind, row0, omit_ok)
                if w.ndim != 1:
                    raise InputError(f"{wbind.file}, column {wbind.label!r}: weights must be one number per row")
            yield parts, row0, arrays, w
            row0 += parts[0].num_rows

    # Reading, decoding and converting batch k+1 (a background thread) overlap the losses on batch k; the
    # items, their order and every error are those of the plain loop (see _prefetched).
    for parts, row0, arrays, w in _prefetched(converted()):
        n = n_in = parts[0].num_rows
        ctx.row0 = row0
        ctx.rowmap = None
        if plan.nan_policy == "omit":
            keep = _finite_rows([a for a in arrays.values() if a.dtype.kind == "f"] + ([w] if w is not None else []), n)
            if keep is not None:
                memo["omitted_rows"] += int(n - keep.sum())
                ctx.rowmap = np.flatnonzero(keep)
                arrays = {r: a[keep] for r, a in arrays.items()}
                w = w[keep] if w is not None else None
                mask = _bool_arrow(keep)
                parts = [p.filter(mask) for p in parts]
                n = parts[0].num_rows
                if n == 0:
                    total += n_in
                    continue
        elif plan.nan_policy == "propagate":  # counted, so the output can say why values are NaN
            keep = _finite_rows([a for a in arrays.values() if a.dtype.kind == "f"] + ([w] if w is not None else []), n)
            if keep is not None:
                memo["nan_rows"] = memo.get("nan_rows", 0) + int(n - keep.sum())
        if w is not None:
            if (w < 0).any():
                i = int(np.argmax(w < 0))
                raise InputError(f"{wbind.file}, column {wbind.label!r}, row {row0 + i + 1}: negative weight "
                                 f"{float(w[i])!r}; sample weights must be >= 0")
        gcodes = None
        if grouper is not None:
            rmap = ctx.rowmap
            gcodes = grouper.codes([parts[b.source].column(col_pos[b.source][b.columns[0]]) for b in plan.by_binds],
                                   plan.sources[plan.by_binds[0].source].display,
                                   lambda i: row0 + 1 + (int(rmap[i]) if rmap is not None else i))
        out_cols: dict[str, np.ndarray] = {}
        batch_terms: dict[str, dict] = {}
        residuals: dict = {}  # pred - target of this batch, by the identity of the (prepared) arrays
        for req, state in zip(reqs, states):
            ins = {role: arrays[role] for role in req.spec.roles}
            prep = req.spec.extra.get("prepare")
            if prep is not None:
                ins = prep(ins, req.params, ctx)
            args = [ins[role] for role in req.spec.roles]
            with np.errstate(all="ignore"):
                values = None
                if share_residual and req.label in share_residual:
                    d = _shared_residual(residuals, args[0], args[1])
                    on_d, terms_on_d = share_residual[req.label]
                    if terms_on_d is not None:
                        terms = dict(terms_on_d(d, **req.params))
                        if per_sample_needed:
                            values = on_d(d, **req.params)
                    else:
                        values = on_d(d, **req.params)
                        terms = {"loss": values}
                elif req.spec.terms is not None:
                    terms = dict(req.spec.terms(*args, **req.params))
                    if per_sample_needed:
                        values = req.spec.fn(*args, **req.params)
                else:
                    values = req.spec.fn(*args, **req.params)
                    terms = {"loss": values}
                terms["_w"] = 1.0
                state.update(terms, w, gcodes, len(grouper.keys) if grouper else 0)
                if values is not None:
                    out_cols[req.label] = np.asarray(values, dtype=np.float64)
                if plan.grad and per_sample_needed:
                    g = np.asarray(req.spec.grad(*args, **req.params), dtype=np.float64)
                    if g.ndim == 2:  # one gradient per score column
                        for j in range(g.shape[1]):
                            out_cols[f"d_{req.label}/d_{req.spec.roles[0]}_{j}"] = g[:, j]
                    else:
                        out_cols[f"d_{req.label}/d_{req.spec.roles[0]}"] = g
            batch_terms[req.label] = terms
        if batch_hook is not None:
            batch_hook(parts, {"arrays": arrays, "weight": w, "groups": gcodes, "row0": row0, "n": n,
                               "terms": batch_terms, "values": out_cols, "requests": reqs, "grouper": grouper})
        if per_sample_needed:
            rb = _per_sample_batch(parts, plan.id_binds, plan.by_binds, col_pos, out_cols, row0, ctx.rowmap)
            if not row_columns:
                row_columns = list(rb.schema.names)
            if sink is not None:
                sink.write(rb)
            if row_writer is not None:
                row_writer(rb)
            if limit == 0 or len(rows_kept) < limit:
                take = n if limit == 0 else min(n, limit - len(rows_kept))
                rows_kept.extend(rb.slice(0, take).to_pylist())
        total += n_in
        evaluated += n
        if progress is not None:
            progress(total)
    return Partial(states=states, group_keys=list(grouper.keys) if grouper else [], rows=evaluated,
                   rows_kept=rows_kept, row_columns=row_columns, source_rows=[s.rows for s in plan.sources],
                   memo=memo)


def make_result(plan: Plan, part: Partial, join_info: Mapping[str, int] | None = None) -> Result:
    """Reduce a (merged) partial into the result rows, overall first, then groups in sorted order."""
    if part.rows == 0:
        omitted = int(part.memo.get("omitted_rows", 0))
        if omitted:
            raise InputError(f"{' + '.join(s.display for s in plan.sources)}: no rows left to evaluate: all "
                             f"{omitted} rows have NaN, inf or missing inputs (--nan-policy omit dropped them)")
        raise InputError(f"{' + '.join(s.display for s in plan.sources)}: no rows to evaluate (empty input)")
    grouper = None
    if plan.by_binds:
        grouper = _Grouper([b.columns[0] for b in plan.by_binds])
        for k in part.group_keys:
            grouper._code(k)
    results = _results(plan.reqs, part.states, plan.reduction, grouper)
    inputs = []
    for i, s in enumerate(plan.sources):
        rows = part.source_rows[i] if i < len(part.source_rows) else s.rows
        d = {"path": s.display, "format": s.format, "rows": rows,
             "role": ("predictions" if i == 0 else "labels") if len(plan.sources) == 2 else "predictions+targets"}
        if len(s.files) > 1:
            d["files"] = len(s.files)
        inputs.append(d)
    if plan.on and join_info:
        inputs[0]["unmatched"] = join_info.get("unmatched_pred", 0)
        inputs[1]["unmatched"] = join_info.get("unmatched_target", 0)
    res = Result(inputs=inputs, columns=plan.columns_info(), reduction=plan.reduction, results=results,
                 rows=part.rows_kept, row_columns=part.row_columns, rows_total=part.rows, output=plan.output,
                 warnings=list(part.memo.get("_warnings", [])))
    if "classes" in part.memo:
        res.extra["classes"] = list(part.memo["classes"])
    if plan.nan_policy != "error":
        res.extra["nan_policy"] = plan.nan_policy
        res.extra["omitted_rows"] = int(part.memo.get("omitted_rows", 0))
    if plan.nan_policy == "propagate":
        res.extra["nan_rows"] = int(part.memo.get("nan_rows", 0))
    return res


def evaluate(
    paths: str | Sequence[str],
    losses: Sequence[Any] | str,
    *,
    row_writer: Callable[[pa.RecordBatch], None] | None = None,
    progress: Callable[[int], None] | None = None,
    batch_hook: Callable[[list, dict], None] | None = None,
    engine: str = "local",
    engine_options: Mapping[str, Any] | None = None,
    on_result: Callable[[Result], None] | None = None,
    **options: Any,
) -> Result:
    """Evaluate losses on prediction files.

    Parameters
    ----------
    paths : one path (predictions and targets in one file) or two (predictions, labels), each a file,
        directory, glob or ``-`` (stdin).
    losses : names with optional parameters, e.g. ``["mse", "huber:delta=0.5"]`` or
        ``[("huber", {"delta": 0.5})]``.
    options : pred, target, weight, by, ids, on, inner, columns, reduction ('mean' | 'sum' | 'none'),
        batch_rows, input_format, output (per-sample file, written atomically), force, limit, classes,
        class_weights, space, box_format, grad: see :func:`plan_evaluation`.
    engine : 'local' (default) or 'dask' (``engine_options``: scheduler, workers; needs lossctl[dask]).
    on_result : called with the result before the per-sample file is committed (the CLI checks its
        ``--fail-if`` gates there), so an error it raises leaves no output file behind.

    Examples
    --------
    >>> import lossctl
    >>> res = lossctl.evaluate("sample_data/regression.csv", ["mse", "huber:delta=0.5"])
    >>> round(res.value("mse"), 6)
    0.252316
    """
    plan = plan_evaluation(paths, losses, per_sample=row_writer is not None, **options)
    if engine == "dask":
        from .dask_engine import evaluate_dask
        # on_result runs inside, before a per-sample file is committed (a failing gate leaves no file)
        return evaluate_dask(plan, row_writer=row_writer, progress=progress, on_result=on_result,
                             **dict(engine_options or {}))
    if engine != "local":
        raise UsageError(f"unknown engine {engine!r}; use local or dask")
    from .losses._labels import collect_label_names
    collect_label_names(plan)  # string labels without --classes: class order independent of the batch size
    joiner = _Joiner(plan.sources[1], plan.on, plan.need[1], plan.float_cols[1], plan.inner) if plan.on else None
    sink = None
    if plan.output:
        from .io.sinks import Sink
        sink = Sink(plan.output, plan.output_format)
    try:
        plain = sink is None and row_writer is None and batch_hook is None
        part = run_plan(plan, iter_aligned(plan, joiner, numpy_ok=plain), sink=sink, row_writer=row_writer,
                        progress=progress, batch_hook=batch_hook)
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


def _apply_options(reqs: list[LossRequest], options: Mapping[str, Any]) -> None:
    """Route --logits/--probs/--log-probs, --class-weights and --box-format to the losses that take them
    (a parameter given on the loss itself, ``giou:box_format=xywh``, wins)."""
    space = options.get("space")
    if space:
        for r in reqs:
            pspec = {p.name: p for p in r.spec.params}.get("space")
            if pspec is not None:
                if "space" not in r.given:
                    r.params["space"] = pspec.parse(space, r.spec.name)
            elif r.spec.space != space:
                alt = [n for n in r.spec.related if _reads(n, space)]
                instead = f" ({alt[0]} reads {space})" if alt else ""
                raise UsageError(f"{r.spec.name} takes {r.spec.space}, not {space}; drop --{_space_flag(space)} "
                                 f"or evaluate it separately{instead}")
    cw = options.get("class_weights")
    if cw:
        _route(reqs, "class_weights", "--class-weights", "class weights", lambda r, p: tuple(float(x) for x in cw))
    box_format = options.get("box_format")
    if box_format:
        _route(reqs, "box_format", "--box-format", "boxes (iou, giou, diou, ciou)",
               lambda r, p: p.parse(box_format, r.spec.name))


def _route(reqs: list[LossRequest], name: str, flag: str, what: str, value: Callable) -> None:
    """Give parameter ``name`` the value of a run-wide ``flag`` on every requested loss that has it and
    did not set it itself; usage error when no requested loss has it."""
    takers = [r for r in reqs if any(p.name == name for p in r.spec.params)]
    if not takers:
        raise UsageError(f"{flag}: none of the requested losses takes {what}")
    for r in takers:
        if name not in r.given:
            r.params[name] = value(r, {p.name: p for p in r.spec.params}[name])
            check = r.spec.extra.get("check_params")
            if check is not None:
                check(r.params)


def _reads(name: str, space: str) -> bool:
    """Whether the registered loss ``name`` reads predictions in ``space`` (by default or through its
    ``space`` parameter)."""
    try:
        spec = registry.get(name)
    except UsageError:
        return False
    p = {q.name: q for q in spec.params}.get("space")
    return spec.space == space or (p is not None and space in (p.choices or ()))


def _space_flag(space: str) -> str:
    return {"logits": "logits", "probabilities": "probs", "log-probabilities": "log-probs"}.get(space, space)


def _per_sample_batch(parts, id_binds, by_binds, col_pos, out_cols, row0, rowmap=None) -> pa.RecordBatch:
    """Row numbers (or the --id / --by columns) and the per-sample values of one batch.  The columns lossctl
    computes are declared non-nullable: Parquet then stores them as required columns, without definition
    levels (writing 10M rows takes ~5% fewer instructions), and readers see that they hold no nulls."""
    from .io.sinks import numpy_to_arrow
    arrays, fields = [], []
    if not id_binds:
        n = parts[0].num_rows
        rows = np.arange(row0 + 1, row0 + n + 1, dtype=np.int64) if rowmap is None else row0 + 1 + rowmap
        arrays.append(numpy_to_arrow(rows.astype(np.int64)))
        fields.append(pa.field("row", pa.int64(), nullable=False))
    names = {f.name for f in fields}
    for b in id_binds + by_binds:
        c = b.columns[0]
        if c in names:
            continue
        source = parts[b.source]
        arrays.append(source.column(col_pos[b.source][c]))
        fields.append(source.schema.field(col_pos[b.source][c]))  # as the input has it (may hold nulls)
        names.add(c)
    for label, v in out_cols.items():
        a = numpy_to_arrow(v)
        arrays.append(a)
        fields.append(pa.field(label, a.type, nullable=a.null_count > 0))
    return pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields))


def finalize_value(req: LossRequest, sums: Mapping[str, float], reduction: str) -> float:
    """The reduced value of one loss from its summed terms."""
    if reduction == "sum":
        return sums.get("loss", 0.0)
    if req.spec.finalize is not None:
        with np.errstate(all="ignore"):
            return float(req.spec.finalize(sums, req.params))
    norm = sums.get("norm", sums.get("_w", 0.0))
    if norm == 0:
        return math.nan
    v = sums.get("loss", 0.0) / norm
    if req.spec.post is not None:
        v = float(req.spec.post(v))
    return v


def _results(reqs, states, reduction, grouper) -> list[ResultRow]:
    red = "mean" if reduction == "none" else reduction
    out: list[ResultRow] = []
    for req, st in zip(reqs, states):
        sums = st.totals()
        out.append(ResultRow(req.spec.name, req.label, req.params, red, finalize_value(req, sums, red),
                             st.rows, sums.get("_w", 0.0)))
    if grouper is not None:
        for g in grouper.sorted_codes():
            for req, st in zip(reqs, states):
                sums = st.group_totals(g)
                out.append(ResultRow(req.spec.name, req.label, req.params, red, finalize_value(req, sums, red),
                                     int(st.grows[g]), sums.get("_w", 0.0), grouper.label(g)))
    return out
