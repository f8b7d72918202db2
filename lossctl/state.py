"""Mergeable accumulators: update(batch) / merge(other) / compute().

Every reduction in lossctl is a function of a few weighted sums of per-row terms (a mean is
sum(w*l) / sum(w); Dice is a ratio of summed intersections and sums).  :class:`SumState` keeps those
sums for the whole input and per group.  Within a batch NumPy's pairwise summation is used; across
batches, files, threads and workers the partial sums are combined with Neumaier's compensated addition,
so the result does not depend on batch size, file order or worker count (to ~1e-15 relative for
same-signed terms).  States merge by adding, which is what makes streaming, parallel and distributed
evaluation one code path.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

# Below this many groups a masked pairwise np.sum per group is used (exact-ish and fast); above it,
# np.bincount (sequential summation, still float64) keeps the cost linear in rows.
_MASK_GROUPS = 32


def _neumaier_add(hi: np.ndarray, lo: np.ndarray, x: np.ndarray) -> None:
    """hi + lo += x, in place, elementwise, carrying the rounding error of each addition in lo.

    A sum that overflows to inf (or is NaN) has no rounding error to carry: lo is left alone there, so the
    total is inf, not inf - inf = NaN."""
    t = hi + x
    big = np.abs(hi) >= np.abs(x)
    with np.errstate(invalid="ignore"):
        lo += np.where(np.isfinite(t), np.where(big, (hi - t) + x, (x - t) + hi), 0.0)
    hi[...] = t


def group_sums(values: np.ndarray, groups: np.ndarray | None, ngroups: int) -> np.ndarray:
    """Sum ``values`` (n,) into ``ngroups`` bins given integer codes ``groups`` (n,)."""
    if groups is None:
        return np.array([np.sum(values)], dtype=np.float64)
    if ngroups <= _MASK_GROUPS:
        return np.array([np.sum(values[groups == g]) for g in range(ngroups)], dtype=np.float64)
    return np.bincount(groups, weights=values, minlength=ngroups).astype(np.float64)


class SumState:
    """Compensated weighted sums of named per-row terms, overall and per group.

    ``totals(key)`` gives the overall sum; ``group_totals(key)`` an array indexed by group code.
    """

    __slots__ = ("hi", "lo", "ghi", "glo", "rows", "grows")

    def __init__(self) -> None:
        self.hi: dict[str, float] = {}
        self.lo: dict[str, float] = {}
        self.ghi: dict[str, np.ndarray] = {}
        self.glo: dict[str, np.ndarray] = {}
        self.rows = 0
        self.grows = np.zeros(0, dtype=np.int64)

    # -- building -------------------------------------------------------------------------------
    def _add_total(self, key: str, value: float) -> None:
        # _neumaier_add on scalars, in Python floats (the same IEEE operations, ~10x less overhead per batch)
        hi = self.hi.get(key, 0.0)
        x = float(value)
        t = hi + x
        if t - t == 0.0:  # t is finite (inf and NaN carry no rounding error; see _neumaier_add)
            self.lo[key] = self.lo.get(key, 0.0) + (((hi - t) + x) if abs(hi) >= abs(x) else ((x - t) + hi))
        else:
            self.lo.setdefault(key, 0.0)
        self.hi[key] = t

    def _grow(self, ngroups: int) -> None:
        if ngroups > len(self.grows):
            pad = ngroups - len(self.grows)
            self.grows = np.concatenate([self.grows, np.zeros(pad, dtype=np.int64)])
            for d in (self.ghi, self.glo):
                for k in d:
                    d[k] = np.concatenate([d[k], np.zeros(pad)])

    def _add_groups(self, key: str, sums: np.ndarray) -> None:
        n = len(self.grows)
        if key not in self.ghi:
            self.ghi[key] = np.zeros(n)
            self.glo[key] = np.zeros(n)
        s = np.zeros(n)
        s[: len(sums)] = sums
        _neumaier_add(self.ghi[key], self.glo[key], s)

    def update(self, terms: Mapping[str, np.ndarray | float], weight: np.ndarray | None = None,
               groups: np.ndarray | None = None, ngroups: int = 0) -> None:
        """Add one batch: ``terms`` are per-row arrays (or scalars, broadcast over the rows)."""
        n = None
        for v in terms.values():
            if np.ndim(v):
                n = len(v)
                break
        if n is None:
            n = len(weight) if weight is not None else (len(groups) if groups is not None else 0)
        self.rows += n
        if groups is not None:
            self._grow(ngroups)
            self.grows[:ngroups] += np.bincount(groups, minlength=ngroups)[:ngroups]
        wsum = None
        for key, v in terms.items():
            if not np.ndim(v) and groups is None:
                # a constant term (the row count or weight sum): no per-row array needed
                if weight is None:
                    self._add_total(key, float(v) * n)
                else:
                    if wsum is None:
                        wsum = float(np.sum(weight))
                    self._add_total(key, float(v) * wsum)
                continue
            arr = np.broadcast_to(np.asarray(v, dtype=np.float64), (n,)) if not np.ndim(v) else v
            x = arr if weight is None else arr * weight
            self._add_total(key, float(np.sum(x)))
            if groups is not None:
                self._add_groups(key, group_sums(x, groups, ngroups))

    def merge(self, other: "SumState") -> "SumState":
        """Fold another state into this one (by adding); returns self."""
        for key in other.hi:
            self._add_total(key, other.hi[key])
            self._add_total(key, other.lo[key])
        if len(other.grows):
            self._grow(len(other.grows))
            self.grows[: len(other.grows)] += other.grows
            for key in other.ghi:
                self._add_groups(key, other.ghi[key])
                self._add_groups(key, other.glo[key])
        self.rows += other.rows
        return self

    def remapped(self, codes: np.ndarray, ngroups: int) -> "SumState":
        """A copy whose group g is moved to group ``codes[g]`` of ``ngroups`` (to merge states built with
        different group numberings, e.g. on two cluster workers)."""
        out = SumState()
        out.hi, out.lo, out.rows = dict(self.hi), dict(self.lo), self.rows
        out.grows = np.zeros(ngroups, dtype=np.int64)
        np.add.at(out.grows, codes[: len(self.grows)], self.grows)
        for k in self.ghi:
            out.ghi[k] = np.zeros(ngroups)
            out.glo[k] = np.zeros(ngroups)
            np.add.at(out.ghi[k], codes[: len(self.grows)], self.ghi[k])
            np.add.at(out.glo[k], codes[: len(self.grows)], self.glo[k])
        return out

    # -- reading --------------------------------------------------------------------------------
    def total(self, key: str) -> float:
        return self.hi.get(key, 0.0) + self.lo.get(key, 0.0)

    def totals(self) -> dict[str, float]:
        return {k: self.total(k) for k in self.hi}

    def group_totals(self, g: int) -> dict[str, float]:
        return {k: float(self.ghi[k][g] + self.glo[k][g]) for k in self.ghi}

    @property
    def ngroups(self) -> int:
        return len(self.grows)
