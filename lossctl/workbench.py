"""The hardest samples (``eval --top K``) and the distribution of per-sample losses (``eval --hist``).

Both read the per-sample rows that :func:`lossctl.api.evaluate` streams to a ``row_writer`` (the same
record batches ``-o`` writes: the row number or ``--id`` columns, the ``--by`` columns, one column per
loss), so they see every row exactly once, batch by batch, in bounded memory:

* :class:`TopK` keeps the K largest values per loss: per batch ``np.argpartition`` picks at most K
  candidates, which are merged with the K kept so far.  Ties are broken by row order (the earlier row
  wins), so the answer does not depend on the batch size.
* :class:`QuantileSketch` is a DDSketch (Masson, Rim and Lee, VLDB 2019): values fall into log-spaced
  buckets ``(gamma^(i-1), gamma^i]`` with ``gamma = (1 + a) / (1 - a)``, so any quantile it reports is
  within a relative error ``a`` (default 0.5%) of the exact one, for any input size, while it holds at
  most a few thousand counters.  Sketches merge by adding counts, like every other lossctl state.

The CLI calls :func:`evaluate`; Python users can do the same, or attach a :class:`Workbench` to their own
``row_writer``.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np
import pyarrow as pa

# -- top K ---------------------------------------------------------------------------------------------


def _top_indices(keys: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest ``keys``, ties broken towards the lower index, in index order."""
    n = len(keys)
    if n <= k:
        return np.arange(n)
    kth = np.partition(keys, n - k)[n - k]          # the k-th largest value
    above = np.flatnonzero(keys > kth)
    ties = np.flatnonzero(keys == kth)[: k - len(above)]
    return np.sort(np.concatenate([above, ties]))


class TopK:
    """The K rows with the largest value of one column, over a stream of record batches.

    Memory is O(K) rows whatever the input size.  NaN values rank above everything (a NaN loss is
    worth looking at first).
    """

    def __init__(self, k: int, column: str, key_columns: Sequence[str]):
        if k < 1:
            raise ValueError("k must be at least 1")
        self.k = k
        self.column = column
        self.key_columns = list(key_columns)
        self.kept: pa.Table | None = None

    def update(self, batch: pa.RecordBatch) -> None:
        tbl = pa.Table.from_batches([batch.select([*self.key_columns, self.column])])
        tbl = tbl.take(pa.array(_top_indices(self._keys(tbl), self.k)))
        # kept rows all come before this batch's rows, so concatenation keeps row order for the tie-break
        both = tbl if self.kept is None else pa.concat_tables([self.kept, tbl])
        self.kept = both.take(pa.array(_top_indices(self._keys(both), self.k))).combine_chunks()

    def merge(self, other: "TopK") -> "TopK":
        """Fold ``other`` (rows that come after this one's) into this one; returns self."""
        if other.kept is not None:
            for b in other.kept.to_batches():
                self.update(b)
        return self

    def _keys(self, tbl: pa.Table) -> np.ndarray:
        v = tbl.column(self.column).to_numpy(zero_copy_only=False).astype(np.float64)
        return np.where(np.isnan(v), np.inf, v)

    def rows(self) -> list[dict]:
        """The kept rows, largest value first: ``{"rank", <key columns>, "value"}``."""
        if self.kept is None:
            return []
        keys = self._keys(self.kept)
        order = np.lexsort((np.arange(len(keys)), -keys))
        out = []
        for rank, i in enumerate(order, 1):
            row = {"rank": rank}
            for c in self.key_columns:
                row[c] = self.kept.column(c)[int(i)].as_py()
            row["value"] = _json_float(self.kept.column(self.column)[int(i)].as_py())
            out.append(row)
        return out


# -- quantile sketch -----------------------------------------------------------------------------------


class _Store:
    """Counts per integer bucket index in a dense array that grows to at most ``max_bins``.

    When the indices would span more than ``max_bins`` buckets, the lowest ones are collapsed into one
    (DDSketch's collapsing-lowest store): only quantiles among the smallest values lose accuracy, and
    ``max_bins = 8192`` buckets of 1% width span 35 decades before that happens.
    """

    def __init__(self, max_bins: int):
        self.max_bins = max_bins
        self.offset = 0                      # bucket index of counts[0]
        self.counts = np.zeros(0, dtype=np.int64)

    def add(self, idx: np.ndarray) -> None:
        if len(idx) == 0:
            return
        lo, hi = int(idx.min()), int(idx.max())
        self._extend(lo, hi)
        idx = np.maximum(idx, self.offset)   # collapsed lowest buckets
        self.counts += np.bincount(idx - self.offset, minlength=len(self.counts))[: len(self.counts)]

    def add_counts(self, offset: int, counts: np.ndarray) -> None:
        nz = np.flatnonzero(counts)
        if len(nz) == 0:
            return
        lo, hi = offset + int(nz[0]), offset + int(nz[-1])
        self._extend(lo, hi)
        idx = np.maximum(np.arange(lo, hi + 1), self.offset) - self.offset
        np.add.at(self.counts, idx, counts[nz[0]: nz[-1] + 1])

    def _extend(self, lo: int, hi: int) -> None:
        if len(self.counts) == 0:
            hi_new = hi
            lo_new = max(lo, hi - self.max_bins + 1)
            self.offset = lo_new
            self.counts = np.zeros(hi_new - lo_new + 1, dtype=np.int64)
            return
        cur_lo, cur_hi = self.offset, self.offset + len(self.counts) - 1
        new_lo, new_hi = min(lo, cur_lo), max(hi, cur_hi)
        new_lo = max(new_lo, new_hi - self.max_bins + 1)
        if new_lo == cur_lo and new_hi == cur_hi:
            return
        counts = np.zeros(new_hi - new_lo + 1, dtype=np.int64)
        old_idx = np.maximum(np.arange(cur_lo, cur_hi + 1), new_lo) - new_lo
        np.add.at(counts, old_idx, self.counts)
        self.offset, self.counts = new_lo, counts

    @property
    def total(self) -> int:
        return int(self.counts.sum())


class QuantileSketch:
    """DDSketch: mergeable quantiles with relative error at most ``relative_accuracy``.

    A positive value ``x`` goes to bucket ``i = ceil(log_gamma(x))`` (``gamma^(i-1) < x <= gamma^i``) and
    is reported back as ``2 gamma^i / (gamma + 1)``, which is within ``a = (gamma - 1) / (gamma + 1)`` of
    every value of the bucket, relatively.  Negative values use a mirrored store; zeros (and values
    below ``1e-300``) are counted apart.  ``quantile(q)`` returns the value of rank ``floor(q (n - 1))``
    in sorted order (``numpy.quantile(..., method="lower")``) to within that relative error; ``min``,
    ``max``, ``count`` and ``mean`` are exact.  Memory: at most ``2 * max_bins`` counters.

    >>> s = QuantileSketch()
    >>> s.update(np.arange(1.0, 1001.0))
    >>> abs(s.quantile(0.5) - 500.0) <= 0.005 * 500.0
    True
    """

    MIN_POSITIVE = 1e-300

    def __init__(self, relative_accuracy: float = 0.005, max_bins: int = 8192):
        if not 0 < relative_accuracy < 1:
            raise ValueError("relative_accuracy must be in (0, 1)")
        self.relative_accuracy = relative_accuracy
        self.gamma = (1 + relative_accuracy) / (1 - relative_accuracy)
        self._log_gamma = math.log(self.gamma)
        self.max_bins = max_bins
        self.pos = _Store(max_bins)
        self.neg = _Store(max_bins)
        self.zeros = 0
        self.nan = 0
        self.count = 0
        self.min = math.inf
        self.max = -math.inf
        self._sum = 0.0
        self._sum_c = 0.0   # Neumaier compensation, so the mean does not depend on batch size

    # -- building --
    def _index(self, x: np.ndarray) -> np.ndarray:
        return np.ceil(np.log(x) / self._log_gamma).astype(np.int64)

    def update(self, values: np.ndarray) -> None:
        v = np.asarray(values, dtype=np.float64).ravel()
        nan = np.isnan(v)
        if nan.any():
            self.nan += int(nan.sum())
            v = v[~nan]
        if len(v) == 0:
            return
        self.count += len(v)
        self.min = min(self.min, float(v.min()))
        self.max = max(self.max, float(v.max()))
        self._add_sum(float(np.sum(v)))
        # +-inf: exact in min/max (and the mean), counted in the extreme bucket of their side
        finite = np.where(np.isinf(v), np.sign(v) * np.finfo(np.float64).max, v)
        pos = finite > self.MIN_POSITIVE
        neg = finite < -self.MIN_POSITIVE
        self.zeros += int(len(v) - pos.sum() - neg.sum())
        self.pos.add(self._index(finite[pos]))
        self.neg.add(self._index(-finite[neg]))

    def _add_sum(self, x: float) -> None:
        t = self._sum + x
        self._sum_c += (self._sum - t) + x if abs(self._sum) >= abs(x) else (x - t) + self._sum
        self._sum = t

    def merge(self, other: "QuantileSketch") -> "QuantileSketch":
        """Add ``other``'s counts (same accuracy) into this sketch; returns self."""
        if other.gamma != self.gamma:
            raise ValueError("cannot merge sketches of different relative accuracy")
        self.pos.add_counts(other.pos.offset, other.pos.counts)
        self.neg.add_counts(other.neg.offset, other.neg.counts)
        self.zeros += other.zeros
        self.nan += other.nan
        self.count += other.count
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)
        self._add_sum(other._sum)
        self._add_sum(other._sum_c)
        return self

    # -- reading --
    def _value(self, i: int) -> float:
        return 2.0 * self.gamma ** i / (self.gamma + 1.0)

    @property
    def mean(self) -> float:
        return (self._sum + self._sum_c) / self.count if self.count else math.nan

    def quantile(self, q: float) -> float:
        """The value of rank ``floor(q * (count - 1))``, within the relative accuracy (exact at 0 and 1)."""
        if not 0 <= q <= 1:
            raise ValueError("q must be in [0, 1]")
        if self.count == 0:
            return math.nan
        if q == 0:
            return self.min
        if q == 1:
            return self.max
        rank = math.floor(q * (self.count - 1))
        neg = self.neg.counts[::-1]          # most negative first
        ncum = np.cumsum(neg)
        if len(neg) and rank < ncum[-1]:
            j = int(np.searchsorted(ncum, rank, side="right"))
            i = self.neg.offset + len(neg) - 1 - j
            v = -self._value(i)
        elif rank < self.neg.total + self.zeros:
            v = 0.0
        else:
            r = rank - self.neg.total - self.zeros
            j = int(np.searchsorted(np.cumsum(self.pos.counts), r, side="right"))
            v = self._value(self.pos.offset + j)
        return min(max(v, self.min), self.max)   # never outside the observed range

    def buckets(self) -> tuple[np.ndarray, np.ndarray]:
        """Representative values and counts of every non-empty bucket, in increasing value order."""
        reps, counts = [], []
        if len(self.neg.counts):
            idx = np.arange(self.neg.offset, self.neg.offset + len(self.neg.counts))[::-1]
            reps.append(-2.0 * self.gamma ** idx.astype(np.float64) / (self.gamma + 1))
            counts.append(self.neg.counts[::-1])
        if self.zeros:
            reps.append(np.array([0.0]))
            counts.append(np.array([self.zeros]))
        if len(self.pos.counts):
            idx = np.arange(self.pos.offset, self.pos.offset + len(self.pos.counts))
            reps.append(2.0 * self.gamma ** idx.astype(np.float64) / (self.gamma + 1))
            counts.append(self.pos.counts)
        if not reps:
            return np.zeros(0), np.zeros(0, dtype=np.int64)
        r, c = np.concatenate(reps), np.concatenate(counts)
        keep = c > 0
        return np.clip(r[keep], self.min, self.max), c[keep]

    def histogram(self, bins: int = 16) -> tuple[str, list[dict]]:
        """``bins`` display bins over [min, max]: log-spaced when the values are positive and span more
        than two decades (loss distributions are skewed), linear otherwise.  Counts come from the
        sketch's buckets, so a bin edge is placed to within the relative accuracy."""
        lo, hi = self.min, self.max
        if self.count == 0 or not (math.isfinite(lo) and math.isfinite(hi)):
            return "linear", []
        if hi == lo:
            return "linear", [{"lo": lo, "hi": hi, "count": self.count}]
        log = lo > 0 and hi / lo > 100
        edges = np.geomspace(lo, hi, bins + 1) if log else np.linspace(lo, hi, bins + 1)
        reps, counts = self.buckets()
        where = np.clip(np.searchsorted(edges, reps, side="right") - 1, 0, bins - 1)
        per_bin = np.bincount(where, weights=counts, minlength=bins).astype(np.int64)
        return ("log" if log else "linear",
                [{"lo": float(edges[i]), "hi": float(edges[i + 1]), "count": int(per_bin[i])} for i in range(bins)])

    QUANTILES = (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))

    def summary(self, bins: int = 16) -> dict:
        """What ``--format json`` prints under ``"hist"``."""
        d = {"count": self.count, "min": _json_float(self.min), "mean": _json_float(self.mean)}
        for name, q in self.QUANTILES:
            d[name] = _json_float(self.quantile(q))
        d["max"] = _json_float(self.max)
        if self.nan:
            d["nan"] = self.nan
        d["quantiles"] = {"method": "ddsketch", "relative_accuracy": self.relative_accuracy,
                          "rank": "floor(q*(count-1)), as numpy.quantile(method='lower')",
                          "exact": ["count", "min", "mean", "max"]}
        d["scale"], d["bins"] = self.histogram(bins)
        return d


# -- both, attached to an evaluation -------------------------------------------------------------------


class Workbench:
    """A ``row_writer`` that feeds every per-sample batch to a :class:`TopK` and/or a sketch per loss.

    ``labels`` are the loss labels (the per-sample value columns); the key columns (row number or
    ``--id`` columns, then ``--by`` columns) are the columns that come before the first label.
    """

    def __init__(self, labels: Sequence[str], *, top: int = 0, hist: bool = False,
                 then: Callable[[pa.RecordBatch], None] | None = None, relative_accuracy: float = 0.005):
        self.labels = list(labels)
        self.top_k = top
        self.hist = hist
        self.then = then
        self.relative_accuracy = relative_accuracy
        self.tops: dict[str, TopK] = {}
        self.sketches: dict[str, QuantileSketch] = {}
        self.key_columns: list[str] | None = None

    def __call__(self, batch: pa.RecordBatch) -> None:
        if self.key_columns is None:
            names = batch.schema.names
            first = min(names.index(lb) for lb in self.labels)
            self.key_columns = names[:first]
        for lb in self.labels:
            if self.top_k:
                self.tops.setdefault(lb, TopK(self.top_k, lb, self.key_columns)).update(batch)
            if self.hist:
                v = batch.column(lb).to_numpy(zero_copy_only=False)
                self.sketches.setdefault(lb, QuantileSketch(self.relative_accuracy)).update(v)
        if self.then is not None:
            self.then(batch)

    def top_rows(self) -> list[dict]:
        """``"top"`` in JSON: one entry per kept row, ``{"loss", "rank", <keys>, "value"}``, per loss."""
        return [{"loss": lb, **row} for lb in self.labels if lb in self.tops for row in self.tops[lb].rows()]

    def hist_summary(self, bins: int = 16) -> dict:
        """``"hist"`` in JSON: per loss label, count/min/mean/p50/p90/p99/max and display bins."""
        return {lb: self.sketches[lb].summary(bins) for lb in self.labels if lb in self.sketches}

    def attach(self, res) -> None:
        """Put the findings in ``res.extra`` (JSON output carries them as ``top`` and ``hist``)."""
        if self.top_k:
            res.extra["top"] = self.top_rows()
        if self.hist:
            res.extra["hist"] = self.hist_summary()


def evaluate(paths, losses, *, top: int = 0, hist: bool = False, row_writer=None, **options: Any):
    """:func:`lossctl.api.evaluate` plus ``top`` (K largest per-sample losses) and ``hist`` (sketch).

    The result's ``extra`` holds ``"top"`` (list) and ``"hist"`` (dict by loss label).

    >>> res = evaluate("sample_data/regression.csv", ["mae"], top=2, hist=True)  # doctest: +SKIP
    >>> [r["rank"] for r in res.extra["top"]]  # doctest: +SKIP
    [1, 2]
    """
    from . import api

    if top < 0:
        from .errors import UsageError
        raise UsageError(f"--top must be at least 1, got {top}")
    if not top and not hist:
        return api.evaluate(paths, losses, row_writer=row_writer, **options)
    labels = [r.label for r in api.make_requests([losses] if isinstance(losses, str) else losses)]
    wb = Workbench(labels, top=top, hist=hist, then=row_writer)
    res = api.evaluate(paths, losses, row_writer=wb, **options)
    wb.attach(res)
    return res


# -- rendering -----------------------------------------------------------------------------------------
_EIGHTHS = " ▏▎▍▌▋▊▉█"


def bar(count: int, biggest: int, width: int = 30) -> str:
    """A horizontal bar of ``width * count / biggest`` cells in eighth-block characters."""
    if biggest <= 0 or count <= 0:
        return ""
    eighths = max(1, round(8 * width * count / biggest))
    return "█" * (eighths // 8) + (_EIGHTHS[eighths % 8] if eighths % 8 else "")


def render(res, con) -> None:
    """Print ``--top`` and ``--hist`` findings (from ``res.extra``) as rich tables on ``con``."""
    from rich.table import Table

    from .render import fmt_value

    top = res.extra.get("top")
    if top is not None:
        by_loss: dict[str, list[dict]] = {}
        for row in top:
            by_loss.setdefault(row["loss"], []).append(row)
        for label, rows in by_loss.items():
            keys = [k for k in rows[0] if k not in ("loss", "rank", "value")]
            t = Table(title=f"top {len(rows)} rows by {label}", title_justify="left")
            t.add_column("rank", justify="right")
            for k in keys:
                t.add_column(k, justify="right")
            t.add_column(label, justify="right")
            for row in rows:
                t.add_row(str(row["rank"]), *[str(row[k]) for k in keys], fmt_value(row["value"]))
            con.print(t)
    hist = res.extra.get("hist")
    if hist is not None:
        for label, h in hist.items():
            t = Table(title=f"distribution of {label} over {h['count']} rows ({h['scale']} bins)",
                      title_justify="left")
            t.add_column("from", justify="right")
            t.add_column("to", justify="right")
            t.add_column("rows", justify="right")
            t.add_column("", no_wrap=True)
            biggest = max((b["count"] for b in h["bins"]), default=0)
            for b in h["bins"]:
                t.add_row(f"{b['lo']:.3g}", f"{b['hi']:.3g}", str(b["count"]), bar(b["count"], biggest))
            con.print(t)
            q = "  ".join(f"{k} {fmt_value(h[k])}" for k in ("p50", "p90", "p99", "max"))
            con.print(f"{label}: {q}  (quantiles from a DDSketch, within ±{h['quantiles']['relative_accuracy']:.1%};"
                      f" max exact)", soft_wrap=True)


def _json_float(v):
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None

