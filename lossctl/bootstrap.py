"""Confidence intervals by Poisson bootstrap, folded into the one streaming pass.

A classic bootstrap resamples n rows with replacement B times; each resample needs the whole data set.
The Poisson bootstrap (Hanley & MacGibbon 2006; Chamandy et al. 2012, "Estimating uncertainty for
massive data streams") replaces the multinomial resample counts by independent Poisson(1) counts
``P[i, b]``, one per row and replicate, which is the same resampling scheme in the limit of many rows.
Because every lossctl reduction is a function of weighted sums of per-row terms (see
:func:`lossctl.api.finalize_value`), replicate ``b`` only needs

    sums_b[term] = sum_i  w_i * P[i, b] * term_i        i.e.  sums = terms^T @ (w * P)

which is accumulated batch by batch next to the ordinary sums: no second copy of the data, memory
O(terms x groups x B).  A replicate value is ``finalize_value(sums_b)`` and the interval is the
percentile interval of the B replicate values.

Reproducibility
    ``P[i, b]`` depends only on ``(seed, row id i, replicate b)`` -- never on batch boundaries, files or
    workers -- because it is computed by a counter-based generator: a SplitMix64-style hash of the row id
    and of the replicate index, combined and mixed again, gives 64 random bits, i.e. four 16-bit uniforms
    (replicates 4q .. 4q+3).  Each uniform is turned into a Poisson(1) count by inverting the CDF through a
    65536-entry table.  Rows are also processed in chunks aligned to global row positions, so the floating
    point sums (and thus the interval) are bit-for-bit the same for any ``--batch-size``.

    The 16-bit inversion quantises the Poisson(1) probabilities to multiples of 1/65536 (counts 0..8;
    the true P(count >= 9) is 1.1e-6): its mean is exactly 1 and its variance 0.99997, which changes a
    standard error by 0.002 %.

``lossctl compare`` uses the same generator with the join key (hashed) as the row id, so the baseline
and candidate rows of one target get the same counts: a paired bootstrap from two separate passes.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

import numpy as np

DEFAULT_REPLICATES = 1000
DEFAULT_SEED = 0
METHOD = "poisson-bootstrap-percentile"

_U = np.uint64
_M1 = _U(0xBF58476D1CE4E5B9)
_M2 = _U(0x94D049BB133111EB)
_GOLDEN = _U(0x9E3779B97F4A7C15)
_S30, _S27, _S31 = _U(30), _U(27), _U(31)
_MASK64 = (1 << 64) - 1


def mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser (Steele, Lea & Flood 2014), in place on a uint64 array; returns it.

    A bijection of 64-bit words with full avalanche: every input bit flips each output bit with
    probability ~1/2, so hashes of consecutive counters look independent.
    """
    x ^= x >> _S30
    x *= _M1
    x ^= x >> _S27
    x *= _M2
    x ^= x >> _S31
    return x


def _mix_scalar(x: int) -> int:
    x &= _MASK64
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & _MASK64
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def _seed_keys(seed: int) -> tuple[np.uint64, np.uint64]:
    """Two independent 64-bit keys from the user's seed (any Python int)."""
    s = int(seed) & _MASK64
    k1 = _mix_scalar(s ^ 0x243F6A8885A308D3)
    k2 = _mix_scalar(k1 + 0x9E3779B97F4A7C15)
    return _U(k1), _U(k2)


def _poisson1_table() -> np.ndarray:
    """Poisson(1) count for each 16-bit uniform: bucket j covers u in [j, j+1)/65536, and takes the count
    whose CDF interval holds the bucket's midpoint (inversion of the CDF)."""
    cdf, p, edges = 0.0, math.exp(-1.0), []
    for k in range(1, 20):
        cdf += p
        edges.append(cdf)
        p /= k
    mid = (np.arange(65536, dtype=np.float64) + 0.5) / 65536.0
    return np.searchsorted(np.array(edges), mid, side="right").astype(np.uint8)


_TABLE = _poisson1_table()


class PoissonCounts:
    """Counter-based Poisson(1) counts: ``counts(ids)[i, b]`` is a function of (seed, ids[i], b) only."""

    def __init__(self, replicates: int, seed: int = DEFAULT_SEED):
        if replicates < 1:
            raise ValueError("replicates must be >= 1")
        self.replicates = int(replicates)
        self.seed = int(seed)
        self._krow, kq = _seed_keys(seed)
        q = (self.replicates + 3) // 4
        with np.errstate(over="ignore"):
            self._hq = mix64(np.arange(q, dtype=np.uint64) * _GOLDEN + kq)

    def counts(self, ids: np.ndarray) -> np.ndarray:
        """(n, B) uint8 counts for uint64 row ids (n,)."""
        ids = np.asarray(ids, dtype=np.uint64)
        with np.errstate(over="ignore"):
            hr = mix64(ids * _GOLDEN ^ self._krow)
            x = hr[:, None] + self._hq[None, :]  # (n, B/4) words, one per (row, 4 replicates)
            mix64(x)
        # four little-endian 16-bit lanes per word: lane j of word q is replicate 4q + j on any platform
        u = x.astype("<u8", copy=False).view("<u2")[:, : self.replicates]
        return np.take(_TABLE, u)


def chunk_rows_for(replicates: int) -> int:
    """Rows per bootstrap chunk: about 512k (row, replicate) cells, so the counts stay in cache.

    A function of B only: chunks start at multiples of it in the global row order, which makes the
    floating-point sums independent of the reader's batch size.
    """
    target = (512 * 1024) // max(1, replicates)
    return int(min(4096, max(16, 1 << max(0, target.bit_length() - 1))))


def row_ids(row0: int, n: int) -> np.ndarray:
    return np.arange(row0, row0 + n, dtype=np.uint64)


class PoissonBootstrap:
    """Replicate sums of every loss's terms, overall and per group; usable as ``evaluate(batch_hook=...)``.

    ``ids`` (optional) maps ``(parts, info)`` of a batch to uint64 row ids; the default is the global row
    index.  ``lossctl compare`` passes hashed join keys instead so both sides draw the same counts.

    >>> import lossctl
    >>> boot = PoissonBootstrap(replicates=200, seed=7)
    >>> res = lossctl.evaluate("sample_data/regression.csv", ["mse"], batch_hook=boot)  # doctest: +SKIP
    >>> boot.attach(res, level=0.95)  # doctest: +SKIP
    >>> res.results[0].ci["low"] < res.results[0].value < res.results[0].ci["high"]  # doctest: +SKIP
    True
    """

    def __init__(self, replicates: int = DEFAULT_REPLICATES, seed: int = DEFAULT_SEED,
                 ids: Callable[[list, dict], np.ndarray] | None = None, chunk_rows: int | None = None):
        self.gen = PoissonCounts(replicates, seed)
        self.replicates = self.gen.replicates
        self.seed = self.gen.seed
        self.chunk = int(chunk_rows or chunk_rows_for(self.replicates))
        self._ids = ids
        self.keys: list[tuple[str, str]] = []      # (loss label, term name) per column of the term matrix
        self._kidx: dict[tuple[str, str], int] = {}
        self.acc = np.zeros((0, 1, self.replicates))   # (K terms, G groups or 1, B)
        self._pending: list[tuple[np.ndarray, np.ndarray, np.ndarray | None]] = []
        self._npending = 0
        self.grouper = None
        self.requests: list = []
        self.rows = 0

    # -- streaming ------------------------------------------------------------------------------
    def __call__(self, parts: list, info: Mapping[str, Any]) -> None:
        n = int(info["n"])
        if n == 0:
            return
        self.requests = list(info.get("requests") or self.requests)
        self.grouper = info.get("grouper")
        # row id = position among the evaluated rows: the global row index, and still independent of
        # batching when --nan-policy omit drops rows (a batch's row0 counts input rows, not kept ones)
        ids = self._ids(parts, info) if self._ids is not None else row_ids(self.rows, n)
        self.add(info["terms"], info.get("weight"), info.get("groups"), ids, n)

    def add(self, terms: Mapping[str, Mapping[str, Any]], weight: np.ndarray | None,
            groups: np.ndarray | None, ids: np.ndarray, n: int) -> None:
        """Queue one batch: ``terms[label][term]`` per-row arrays (or scalars), weights, group codes, ids."""
        for label, tt in terms.items():
            for name in tt:
                if (label, name) not in self._kidx:
                    self._kidx[(label, name)] = len(self.keys)
                    self.keys.append((label, name))
        mat = np.zeros((n, len(self.keys)))
        for label, tt in terms.items():
            for name, v in tt.items():
                col = self._kidx[(label, name)]
                if np.ndim(v) == 0:
                    mat[:, col] = float(v)
                else:
                    mat[:, col] = np.asarray(v, dtype=np.float64).reshape(n)
        if weight is not None:
            mat *= np.asarray(weight, dtype=np.float64)[:, None]
        g = None if groups is None else np.asarray(groups, dtype=np.int64)
        self._pending.append((np.asarray(ids, dtype=np.uint64), mat, g))
        self._npending += n
        self.rows += n
        if self._npending >= self.chunk:
            self._drain(final=False)

    def finish(self) -> None:
        """Process the rows still queued (call once, after the last batch)."""
        self._drain(final=True)

    def _drain(self, final: bool) -> None:
        if not self._pending:
            return
        k = len(self.keys)
        ids = np.concatenate([p[0] for p in self._pending])
        mat = np.concatenate([np.pad(p[1], ((0, 0), (0, k - p[1].shape[1]))) for p in self._pending])
        grouped = self._pending[0][2] is not None
        g = np.concatenate([p[2] for p in self._pending]) if grouped else None
        total = len(ids)
        stop = total if final else (total // self.chunk) * self.chunk
        for a in range(0, stop, self.chunk):
            b = min(a + self.chunk, stop)
            self._process(ids[a:b], mat[a:b], None if g is None else g[a:b])
        self._pending = [] if stop == total else [(ids[stop:], mat[stop:], None if g is None else g[stop:])]
        self._npending = total - stop

    def _process(self, ids: np.ndarray, mat: np.ndarray, g: np.ndarray | None) -> None:
        k = mat.shape[1]
        ngroups = 1 if g is None else int(g.max()) + 1
        if self.acc.shape[0] < k or self.acc.shape[1] < ngroups:
            grown = np.zeros((max(k, self.acc.shape[0]), max(ngroups, self.acc.shape[1]), self.replicates))
            grown[: self.acc.shape[0], : self.acc.shape[1]] = self.acc
            self.acc = grown
        counts = self.gen.counts(ids).astype(np.float64)
        # (K x n) @ (n x B) with K tiny: einsum's own loop, not BLAS, whose threads only contend on a
        # shared machine for a product this skinny (4x slower under load, measured on 2 cores)
        if g is None:
            self.acc[:k, 0] += np.einsum("nk,nb->kb", mat, counts)
            return
        order = np.argsort(g, kind="stable")
        gs = g[order]
        cuts = np.flatnonzero(np.diff(gs)) + 1
        for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, len(gs)]):
            idx = order[lo:hi]
            self.acc[:k, gs[lo]] += np.einsum("nk,nb->kb", mat[idx], counts[idx])

    # -- results ------------------------------------------------------------------------------
    def replicate_sums(self, label: str, group: int | None = None) -> dict[str, np.ndarray]:
        """{term: (B,) replicate sums} for one loss, overall (group None) or for one group code."""
        out = {}
        for col, (lab, name) in enumerate(self.keys):
            if lab != label:
                continue
            if col >= self.acc.shape[0]:
                out[name] = np.zeros(self.replicates)
            elif self.grouper is None:
                out[name] = self.acc[col, 0].copy()
            elif group is None:
                # overall = sum of the groups, in sorted-group order (independent of code assignment)
                s = np.zeros(self.replicates)
                for code in self.grouper.sorted_codes():
                    if code < self.acc.shape[1]:
                        s += self.acc[col, code]
                out[name] = s
            else:
                out[name] = self.acc[col, group].copy() if group < self.acc.shape[1] else np.zeros(self.replicates)
        return out

    def replicate_values(self, req, reduction: str, group: int | None = None) -> np.ndarray:
        """(B,) replicate values of one loss via :func:`lossctl.api.finalize_value`.

        All replicates at once when the loss's reduction works elementwise on arrays (a mean, a
        ratio of sums); one replicate at a time otherwise (a finalize hook written for scalars).
        """
        from .api import finalize_value
        sums = self.replicate_sums(req.label, group)
        red = "mean" if reduction == "none" else reduction
        vec = _finalize_vectorised(req, sums, red, self.replicates)
        if vec is not None:
            return vec
        out = np.empty(self.replicates)
        for b in range(self.replicates):
            out[b] = finalize_value(req, {k: float(v[b]) for k, v in sums.items()}, red)
        return out

    def rows_to_replicates(self, res) -> list[tuple[Any, np.ndarray]]:
        """Pairs (ResultRow, replicate values) for every row of ``res``."""
        self.finish()
        reqs = {r.label: r for r in self.requests}
        codes: dict[tuple, int] = {}
        if self.grouper is not None:
            for c in range(len(self.grouper.keys)):
                codes[tuple(self.grouper.label(c).items())] = c
        out = []
        for row in res.results:
            req = reqs[row.label]
            code = None if row.group is None else codes[tuple(row.group.items())]
            out.append((row, self.replicate_values(req, res.reduction, code)))
        return out

    def attach(self, res, level: float) -> None:
        """Set ``row.ci`` on every result row of ``res`` and ``res.extra['bootstrap']``."""
        for row, vals in self.rows_to_replicates(res):
            lo, hi, valid = percentile_interval(vals, level)
            row.ci = ci_dict(level, lo, hi, self.replicates, self.seed, valid)
        res.extra["bootstrap"] = {"method": METHOD, "level": level, "replicates": self.replicates,
                                  "seed": self.seed}


def _finalize_vectorised(req, sums: Mapping[str, np.ndarray], reduction: str, n: int) -> np.ndarray | None:
    """:func:`lossctl.api.finalize_value` on (B,) arrays of sums, or None if the loss's hooks need scalars."""
    zeros = np.zeros(n)
    try:
        with np.errstate(all="ignore"):
            if reduction == "sum":
                out = sums.get("loss", zeros)
            elif req.spec.finalize is not None:
                out = req.spec.finalize(dict(sums), req.params)
            else:
                norm = sums.get("norm", sums.get("_w", zeros))
                out = np.where(norm == 0, np.nan, sums.get("loss", zeros) / np.where(norm == 0, 1.0, norm))
                if req.spec.post is not None:
                    out = req.spec.post(out)
            out = np.array(out, dtype=np.float64)   # a copy: never a view of the accumulator
    except (TypeError, ValueError, ArithmeticError):
        return None
    return out if out.shape == (n,) else None


def percentile_interval(values: np.ndarray, level: float) -> tuple[float, float, int]:
    """(low, high, number of finite replicates): the (1-level)/2 and (1+level)/2 percentiles of the finite
    replicate values (linear interpolation).  NaN when fewer than half the replicates are finite (a
    group too small to be resampled reliably)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if len(v) == 0 or 2 * len(v) < len(values):
        return math.nan, math.nan, len(v)
    lo, hi = np.percentile(v, [50.0 * (1.0 - level), 50.0 * (1.0 + level)])
    return float(lo), float(hi), len(v)


def ci_dict(level: float, low: float, high: float, replicates: int, seed: int, valid: int | None = None) -> dict:
    d = {"level": level, "low": _jf(low), "high": _jf(high), "method": METHOD, "replicates": replicates,
         "seed": seed}
    if valid is not None and valid != replicates:
        d["finite_replicates"] = valid
    return d


def _jf(v: float) -> float | None:
    return float(v) if v is not None and math.isfinite(v) else None


def parse_level(text: Any, option: str = "--ci") -> float:
    """'0.95', '95%' or 0.95 -> 0.95; UsageError otherwise."""
    from .errors import UsageError
    s = str(text).strip()
    try:
        v = float(s[:-1]) / 100.0 if s.endswith("%") else float(s)
    except ValueError:
        raise UsageError(f"{option} {text!r}: expected a confidence level like 0.95 or 95%") from None
    if not 0.0 < v < 1.0:
        raise UsageError(f"{option} {text!r}: the level must be between 0 and 1 (exclusive), e.g. 0.95")
    return v


def evaluate(paths: str | Sequence[str], losses: Sequence[Any] | str, *, ci: float = 0.95,
             replicates: int = DEFAULT_REPLICATES, seed: int = DEFAULT_SEED, **kwargs):
    """:func:`lossctl.api.evaluate` plus a Poisson-bootstrap percentile interval on every result row.

    Each ``ResultRow`` gets ``.ci`` ({level, low, high, method, replicates, seed}); ``result.extra['bootstrap']``
    records the method, level, B and seed.
    """
    from . import api
    boot = PoissonBootstrap(replicates, seed)
    hook = kwargs.pop("batch_hook", None)
    if hook is not None:
        def both(parts, info):
            boot(parts, info)
            hook(parts, info)
        res = api.evaluate(paths, losses, batch_hook=both, **kwargs)
    else:
        res = api.evaluate(paths, losses, batch_hook=boot, **kwargs)
    boot.attach(res, ci)
    return res
