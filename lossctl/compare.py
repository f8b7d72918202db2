"""``lossctl compare``: a candidate's predictions against a baseline's, for the same targets.

Both prediction sets are evaluated in their own streaming pass (each joined to LABELS when given), and
each pass runs a Poisson bootstrap (:mod:`lossctl.bootstrap`) whose counts are keyed by the pairing
key -- the hashed ``--on`` key, or the row position -- so a target row gets the same resampling count on
both sides.  That makes it a *paired* bootstrap without ever holding both files: replicate ``b`` gives
``delta_b = candidate_b - baseline_b``.

* delta = candidate - baseline (losses are lower-is-better: a positive delta is a regression);
  relative delta = delta / |baseline|.
* interval: percentile interval of ``delta_b`` (and of ``delta_b / |baseline_b|``).
* p-value: the two-sided paired-bootstrap test of delta = 0 (Efron & Tibshirani 1993, sec. 16.4;
  Berg-Kirkpatrick et al. 2012): the replicates, shifted to be centred on 0, stand for the null
  distribution, ``p = (1 + #{b : |delta_b - delta| >= |delta|}) / (B + 1)``.  Identical predictions give
  delta_b = 0 for every b and p = 1; the smallest reportable p is 1 / (B + 1).
* gate (``--max-regression``): non-inferiority -- with ``--gate-mode ci`` it passes only when the upper
  end of the interval is within the margin (a one-sided test at level (1 - ci) / 2); with ``point``
  when the delta itself is.

That both sides hold the same targets is checked, not assumed: each pass folds (key, targets, weight,
group) of every row into an order-independent 64-bit fingerprint, and the two must agree.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from .bootstrap import METHOD as BOOT_METHOD
from .bootstrap import PoissonBootstrap, mix64, percentile_interval
from .errors import InputError, UsageError

TEST = "paired-bootstrap"
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_FNV_PRIME = np.uint64(0x100000001B3)
_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
TARGET_ROLES = ("target", "label")  # the ground truth both sides must share; other roles are model output


# -- margins ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Margin:
    value: float        # absolute loss units, or a fraction of the baseline when relative
    relative: bool
    text: str


def parse_margin(text: Any, option: str = "--max-regression") -> Margin:
    """'0.01' (absolute) or '2%' (relative to the baseline); UsageError otherwise.

    >>> parse_margin("2%")
    Margin(value=0.02, relative=True, text='2%')
    """
    s = str(text).strip()
    rel = s.endswith("%")
    num = s[:-1].strip() if rel else s
    try:
        v = float(num)
    except ValueError:
        raise UsageError(f"{option} {text!r}: expected an absolute margin like 0.01 or a percentage like 2%") from None
    if not math.isfinite(v) or v < 0:
        raise UsageError(f"{option} {text!r}: the margin must be a finite number >= 0")
    return Margin(v / 100.0 if rel else v, rel, s)


# -- hashing keys and rows ---------------------------------------------------------------------------------
def hash_keys(arr, where: str) -> np.ndarray:
    """64-bit hash per key of an Arrow array; equal keys hash equal whatever the file format (3 and 3.0 too)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if arr.null_count:
        raise InputError(f"{where}: key has {arr.null_count} missing value(s); every row needs a key to pair it")
    t = arr.type
    if pa.types.is_dictionary(t):
        arr = arr.dictionary_decode()
        t = arr.type
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return _hash_bytes(arr.cast(pa.large_binary()))
    if pa.types.is_floating(t):
        x = arr.to_numpy(zero_copy_only=False).astype(np.float64)
        if np.all(np.isfinite(x)) and np.all(x == np.round(x)) and np.all(np.abs(x) < 2.0 ** 62):
            return _hash_ints(x.astype(np.int64))
        return _hash_ints((x + 0.0).view(np.int64) ^ np.int64(0x5BD1E995))
    if pa.types.is_integer(t) or pa.types.is_boolean(t):
        return _hash_ints(arr.to_numpy(zero_copy_only=False).astype(np.int64))
    try:
        return _hash_ints(pc.cast(arr, pa.int64()).to_numpy(zero_copy_only=False))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return _hash_bytes(pc.cast(arr, pa.string()).cast(pa.large_binary()))


def _hash_ints(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return mix64(np.asarray(x, dtype=np.int64).view(np.uint64) * _GOLDEN + np.uint64(1))


def _hash_bytes(arr) -> np.ndarray:
    """FNV-1a over each value's bytes, vectorised over rows (one step per byte position), then mixed."""
    n = len(arr)
    bufs = arr.buffers()
    offsets = np.frombuffer(bufs[1], dtype=np.int64)[arr.offset: arr.offset + n + 1]
    data = np.frombuffer(bufs[2], dtype=np.uint8) if bufs[2] is not None else np.zeros(0, np.uint8)
    starts, lens = offsets[:-1], np.diff(offsets)
    h = np.full(n, _FNV_OFFSET, dtype=np.uint64)
    maxlen = int(lens.max()) if n else 0
    padded = np.concatenate([data, np.zeros(1, np.uint8)])
    with np.errstate(over="ignore"):
        for j in range(maxlen):
            live = lens > j
            pos = np.where(live, starts + j, len(data))
            h = np.where(live, (h ^ padded[pos].astype(np.uint64)) * _FNV_PRIME, h)
        return mix64(h ^ (lens.astype(np.uint64) * _GOLDEN))


def _hash_values(a: np.ndarray) -> np.ndarray:
    """64-bit hash per row of an input array (1-D or 2-D numbers, or strings)."""
    a = np.asarray(a)
    if a.dtype.kind in "fiub":
        x = a.astype(np.float64) + 0.0  # -0.0 -> 0.0
        if x.ndim == 1:
            x = x[:, None]
        x = x.reshape(len(x), -1)
        h = np.zeros(len(x), dtype=np.uint64)
        with np.errstate(over="ignore"):
            for j in range(x.shape[1]):
                h = mix64(h * _GOLDEN ^ np.ascontiguousarray(x[:, j]).view(np.uint64) + np.uint64(j + 1))
        return h
    uniq, inv = np.unique(a.astype(str), return_inverse=True)
    lut = np.array([int.from_bytes(hashlib.blake2b(u.encode(), digest_size=8).digest(), "little") for u in uniq],
                   dtype=np.uint64)
    return lut[inv.reshape(-1)]


def _label_hash(label: dict) -> int:
    return int.from_bytes(hashlib.blake2b(repr(sorted(label.items())).encode(), digest_size=8).digest(), "little")


class _Side:
    """One pass's batch hook: the keyed bootstrap plus the pairing fingerprint (and duplicate keys)."""

    def __init__(self, name: str, path: str, on: str | None, check_duplicates: bool, replicates: int, seed: int):
        self.name = name
        self.path = path
        self.on = on
        self.check_duplicates = check_duplicates
        self.boot = PoissonBootstrap(replicates, seed, ids=self._ids if on else None)
        self.count = 0
        self.fp = np.uint64(0)
        self.key_hashes: list[np.ndarray] = []
        self._cur: np.ndarray | None = None

    def _ids(self, parts, info) -> np.ndarray:
        batch = parts[0]
        idx = batch.schema.get_field_index(self.on)
        if idx < 0:
            raise InputError(f"{self.path}: no key column {self.on!r} for --on")
        self._cur = hash_keys(batch.column(idx), f"{self.path}, column {self.on!r}")
        return self._cur

    def __call__(self, parts, info) -> None:
        n = int(info["n"])
        if n == 0:
            return
        pos = self.count
        self.boot(parts, info)  # sets self._cur when keyed
        ids = self._cur if self.on else np.arange(pos, pos + n, dtype=np.uint64)
        if self.check_duplicates:
            self.key_hashes.append(ids.copy())
        h = mix64(ids.astype(np.uint64) * _GOLDEN ^ np.uint64(0xA5A5A5A5))
        arrays = info["arrays"]
        with np.errstate(over="ignore"):
            for k, role in enumerate(r for r in TARGET_ROLES if r in arrays):
                h = mix64(h ^ (_hash_values(arrays[role]) + np.uint64(k + 7)))
            if info.get("weight") is not None:
                h = mix64(h ^ _hash_values(info["weight"]) * np.uint64(3))
            g = info.get("groups")
            if g is not None:
                grouper = info["grouper"]
                lut = np.array([_label_hash(grouper.label(c)) for c in range(len(grouper.keys))], dtype=np.uint64)
                h = mix64(h ^ lut[g])
            self.fp = np.uint64(self.fp + np.sum(h, dtype=np.uint64))
        self.count += n

    def finish(self) -> None:
        self.boot.finish()
        if self.check_duplicates and self.key_hashes:
            allk = np.concatenate(self.key_hashes)
            uniq, counts = np.unique(allk, return_counts=True)
            dup = int(np.sum(counts > 1))
            if dup:
                raise InputError(f"{self.path}, column {self.on!r}: {dup} key value(s) appear more than once; "
                                 f"keys must be unique to pair the rows of the two prediction sets")
            self.key_hashes = []


# -- the comparison --------------------------------------------------------------------------------------
@dataclass
class CompareRow:
    loss: str
    label: str
    params: dict
    group: dict | None
    base: float
    cand: float
    delta: float
    rel_delta: float
    ci_low: float
    ci_high: float
    rel_low: float
    rel_high: float
    p_value: float
    count: int
    finite_replicates: int

    def as_dict(self, level: float, replicates: int, seed: int) -> dict:
        from .api import _jsonable_params
        f = _jf
        d = {"loss": self.loss, "label": self.label, "params": _jsonable_params(self.params), "group": self.group,
             "baseline": f(self.base), "candidate": f(self.cand), "delta": f(self.delta),
             "rel_delta": f(self.rel_delta), "count": self.count,
             "ci": {"level": level, "low": f(self.ci_low), "high": f(self.ci_high), "rel_low": f(self.rel_low),
                    "rel_high": f(self.rel_high), "method": "paired-" + BOOT_METHOD, "replicates": replicates,
                    "seed": seed},
             "p_value": f(self.p_value), "test": TEST}
        if self.finite_replicates != replicates:
            d["ci"]["finite_replicates"] = self.finite_replicates
        return d


def _jf(v):
    return None if v is None or not math.isfinite(v) else float(v)


@dataclass
class Comparison:
    baseline: Any               # api.Result
    candidate: Any              # api.Result
    rows: list[CompareRow]
    level: float
    replicates: int
    seed: int
    on: str | None
    labels: str | None
    paths: dict = field(default_factory=dict)

    def row(self, label: str, group: dict | None = None) -> CompareRow:
        for r in self.rows:
            if r.label == label and r.group == group or r.loss == label and r.group == group:
                return r
        raise KeyError((label, group))


def paired_p_value(delta: float, reps: np.ndarray) -> float:
    """Two-sided paired-bootstrap p-value of delta = 0 from the replicate deltas (centred at delta)."""
    r = reps[np.isfinite(reps)]
    if not math.isfinite(delta) or len(r) == 0:
        return math.nan
    extreme = int(np.sum(np.abs(r - delta) >= abs(delta)))
    return (1 + extreme) / (len(r) + 1)


def compare(baseline: str, candidate: str, labels: str | None, losses: Sequence[Any] | str, *,
            on: str | None = None, level: float = 0.95, replicates: int = 1000, seed: int = 0,
            **options: Any) -> Comparison:
    """Evaluate ``losses`` on both prediction sets with a paired bootstrap; see the module docstring.

    ``options`` go to :func:`lossctl.api.evaluate` (pred, target, weight, by, columns, batch_rows,
    input_format, ...), the same for both sides.
    """
    from . import api
    if options.get("reduction", "mean") == "none":
        raise UsageError("compare works on reduced values; use -r mean or -r sum")
    for bad in ("output", "row_writer", "batch_hook", "inner", "ids"):
        if options.get(bad):
            raise UsageError(f"compare does not take {bad}")
    if on and not labels:
        # the key rides along as an id column; say --on, not --id, when a file lacks it
        from .io.sources import open_source
        for path in (p for p in (baseline, candidate) if p != "-"):  # stdin can be read only once
            names = open_source(path, options.get("input_format"), options.get("storage_options")).names
            if on not in names:
                raise InputError(f"{path}: no key column {on!r} for --on; columns are: {', '.join(names[:30])}")
        options["ids"] = [on]
    sides = []
    results = []
    for name, path in (("baseline", baseline), ("candidate", candidate)):
        side = _Side(name, path, on, check_duplicates=bool(on and not labels), replicates=replicates, seed=seed)
        paths = [path, labels] if labels else [path]
        res = api.evaluate(paths, losses, on=on if labels else None, batch_hook=side, **options)
        side.finish()
        sides.append(side)
        results.append(res)
    b, c = sides
    if b.count != c.count:
        raise InputError(f"{baseline} has {b.count} rows to compare but {candidate} has {c.count}; compare needs "
                         f"two prediction sets of the same targets" + ("" if on else " (or pair them with --on KEY)"))
    if b.fp != c.fp:
        what = ", ".join(r for r in TARGET_ROLES if r in (results[0].columns or {}))
        extra = [x for x, v in (("weights", options.get("weight")), ("groups", options.get("by"))) if v]
        raise InputError(f"{baseline} and {candidate} do not hold the same {' and '.join([what or 'targets'] + extra)} "
                         f"for the same {'keys (--on ' + on + ')' if on else 'rows (paired by position)'}; compare "
                         f"needs two prediction sets of the same targets"
                         + ("" if on else "; if the rows are in different orders, pair them with --on KEY"))
    base_reps = dict(((r.label, _gkey(r.group)), (r, v)) for r, v in b.boot.rows_to_replicates(results[0]))
    rows: list[CompareRow] = []
    for crow, cvals in c.boot.rows_to_replicates(results[1]):
        brow, bvals = base_reps[(crow.label, _gkey(crow.group))]
        with np.errstate(all="ignore"):
            d = cvals - bvals
            rel = d / np.abs(bvals)
            delta = crow.value - brow.value
            rel_delta = delta / abs(brow.value) if brow.value != 0 else (0.0 if delta == 0 else math.copysign(math.inf, delta))
        if delta == 0:
            rel_delta = 0.0
        rel = np.where(d == 0, 0.0, rel)
        lo, hi, valid = percentile_interval(d, level)
        rlo, rhi, _ = percentile_interval(rel, level)
        rows.append(CompareRow(crow.loss, crow.label, crow.params, crow.group, brow.value, crow.value, delta,
                               rel_delta, lo, hi, rlo, rhi, paired_p_value(delta, d), crow.count, valid))
    return Comparison(results[0], results[1], rows, level, replicates, seed, on, labels,
                      {"baseline": baseline, "candidate": candidate, "labels": labels})


def _gkey(group: dict | None):
    return None if group is None else tuple(group.items())


# -- gates -----------------------------------------------------------------------------------------------
def regression_gates(cmp: Comparison, margin: Margin, mode: str = "ci", rows: Sequence[CompareRow] | None = None):
    """One gate per compared row (every loss, overall and per group): fails when the regression exceeds
    the margin -- its upper interval bound (mode 'ci', non-inferiority) or the delta itself ('point')."""
    from .gates import GateResult
    if mode not in ("ci", "point"):
        raise UsageError(f"--gate-mode {mode!r}: use ci or point")
    out = []
    pct = f"{cmp.level * 100:g}%"
    for r in (cmp.rows if rows is None else rows):
        if margin.relative:
            value = r.rel_high if mode == "ci" else r.rel_delta
            quantity = (f"{r.label} relative delta, upper {pct} bound" if mode == "ci" else f"{r.label} relative delta")
        else:
            value = r.ci_high if mode == "ci" else r.delta
            quantity = f"{r.label} delta, upper {pct} bound" if mode == "ci" else f"{r.label} delta"
        fails = value is None or not math.isfinite(value) or value > margin.value
        how = f"upper {pct} bound" if mode == "ci" else "point"
        out.append(GateResult(expr=f"{r.label} max-regression {margin.text} ({how})", loss=r.label, group=r.group,
                              value=value, threshold=margin.value, op=">", passed=not fails, kind="max_regression",
                              detail={"mode": mode, "margin": margin.text, "relative": margin.relative,
                                      "quantity": quantity, "delta": _jf(r.delta),
                                      "ci": {"level": cmp.level, "low": _jf(r.rel_low if margin.relative else r.ci_low),
                                             "high": _jf(r.rel_high if margin.relative else r.ci_high)}}))
    return out


# -- output ----------------------------------------------------------------------------------------------
def json_doc(cmp: Comparison, version: str, gate_results: Sequence = ()) -> dict:
    from . import signature
    from .render import SCHEMA_VERSION
    doc = {
        "schema_version": SCHEMA_VERSION, "tool": "lossctl", "version": version, "command": "compare",
        "inputs": {"baseline": cmp.baseline.inputs, "candidate": cmp.candidate.inputs},
        "columns": cmp.candidate.columns, "on": cmp.on, "reduction": cmp.candidate.reduction,
        "rows_compared": cmp.candidate.rows_total,
        "delta": "candidate - baseline", "test": TEST,
        "bootstrap": {"method": "paired-" + BOOT_METHOD, "level": cmp.level, "replicates": cmp.replicates,
                      "seed": cmp.seed},
        "comparisons": [r.as_dict(cmp.level, cmp.replicates, cmp.seed) for r in cmp.rows],
    }
    if gate_results:
        doc["gates"] = [g.as_dict() for g in gate_results]
    doc["signature"] = signature.build(cmp.baseline, cmp.candidate, seed=cmp.seed)
    return doc


def fmt_pct(v: float | None) -> str:
    if v is None or not math.isfinite(v):
        return "nan" if v is None or math.isnan(v) else ("+inf%" if v > 0 else "-inf%")
    return f"{v * 100:+.3g}%"


def fmt_p(p: float) -> str:
    if p is None or not math.isfinite(p):
        return "nan"
    return f"{p:.2g}"


def _signed(v: float | None, digits: int = 3) -> str:
    if v is None or not math.isfinite(v):
        return "nan" if v is None or math.isnan(v) else ("+inf" if v > 0 else "-inf")
    return f"{v:+.{digits}g}"


def _short(v: float | None) -> str:
    if v is None or not math.isfinite(v):
        return "nan" if v is None or math.isnan(v) else ("inf" if v > 0 else "-inf")
    return f"{v:.4g}"


def print_table(cmp: Comparison, out=None) -> None:
    """loss | group | base | cand | delta | delta % | CI lo | hi | p (4 digits; JSON has them all)."""
    from rich.table import Table

    from .render import console, print_whole
    grouped = any(r.group for r in cmp.rows)
    con = console(out)
    con.print(f"delta = candidate - baseline; {cmp.level * 100:g}% CI and two-sided p-value by paired "
              f"bootstrap ({cmp.replicates} replicates, seed {cmp.seed})", soft_wrap=True, markup=False)
    t = Table(show_edge=False)
    t.add_column("loss")
    if grouped:
        t.add_column(", ".join((cmp.candidate.columns or {}).get("by") or ["group"]))
    for c in ("base", "cand", "delta", "delta%", "CI lo", "CI hi", "p"):
        t.add_column(c, justify="right")
    for r in cmp.rows:
        cells = [r.label]
        if grouped:
            cells.append(", ".join(str(v) for v in r.group.values()) if r.group else "(all)")
        cells += [_short(r.base), _short(r.cand), _signed(r.delta), fmt_pct(r.rel_delta), _signed(r.ci_low),
                  _signed(r.ci_high), fmt_p(r.p_value)]
        t.add_row(*cells)
    print_whole(con, t)
