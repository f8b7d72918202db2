"""Structural risk: L1, L2 and elastic-net penalties of a weight vector.

The regularised objective of a model is empirical risk + penalty(w).  lossctl reports the empirical risk
(``lossctl eval``); this module computes the penalty term from the model's weights saved in a file, so
that ``loss + regularisation`` can be printed alone or added to a loss result.

Conventions (the two common parametrisations; both are offered, state which one you use):

* Keras ``L1L2(l1, l2)``:  penalty = l1 * ||w||_1 + l2 * ||w||_2^2  (no 1/2; ``--l1 --l2``).
* scikit-learn ``ElasticNet(alpha, l1_ratio)``:
  penalty = alpha * l1_ratio * ||w||_1 + 0.5 * alpha * (1 - l1_ratio) * ||w||_2^2
  (Lasso is l1_ratio = 1; Ridge's ``alpha ||w||^2`` is l2 = alpha in the Keras form).
  torch SGD ``weight_decay=lambda`` is the gradient of (lambda / 2) ||w||_2^2, i.e. l2 = lambda / 2.

Weights file: every numeric value of the selected columns is one weight (scalar columns, several columns,
or list columns holding whole tensors); by default all numeric columns.  The sums are accumulated batch by
batch with compensated summation (:class:`lossctl.state.SumState`), so the result does not depend on
batching, and a :class:`PenaltyState` merges by adding.

Command line (lossctl/cli_penalty.py): ``lossctl penalty weights.parquet --l1 0.01 --l2 0.001`` prints the
norms and the penalty per column and in total; ``--risk VALUE`` or ``--add-to EVAL.json`` (the output of
``lossctl eval -f json``, ``-`` for stdin) adds it to a loss result and reports risk + penalty.

Python::

    >>> import numpy as np
    >>> penalty([1.0, -2.0, 0.5], l1=0.1, l2=0.01)
    0.4025
    >>> round(elastic_net([1.0, -2.0, 0.5], alpha=0.1, l1_ratio=0.5), 6)
    0.30625
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .errors import InputError, UsageError
from .state import SumState


# -- pure functions ------------------------------------------------------------------------------------
def _flat(w) -> np.ndarray:
    return np.asarray(w, dtype=np.float64).reshape(-1)


def l1_norm(w) -> float:
    """||w||_1 = sum |w_i|.

    >>> l1_norm([3.0, -4.0])
    7.0
    """
    return float(np.sum(np.abs(_flat(w))))


def l2_squared(w) -> float:
    """||w||_2^2 = sum w_i^2 (the L2 penalty uses the squared norm).

    >>> l2_squared([3.0, -4.0])
    25.0
    """
    x = _flat(w)
    return float(np.sum(x * x))


def penalty(w, *, l1: float = 0.0, l2: float = 0.0) -> float:
    """Keras L1L2 penalty: l1 * ||w||_1 + l2 * ||w||_2^2.

    Reference: keras.regularizers.L1L2(l1, l2) (called on the weight tensor).

    >>> penalty([3.0, -4.0], l1=0.5, l2=0.1)
    6.0
    """
    _check_strengths(l1, l2)
    return l1 * l1_norm(w) + l2 * l2_squared(w)


def elastic_net(w, *, alpha: float = 1.0, l1_ratio: float = 0.5) -> float:
    """scikit-learn's elastic-net penalty: alpha l1_ratio ||w||_1 + 0.5 alpha (1 - l1_ratio) ||w||_2^2.

    Reference: the penalty term of sklearn.linear_model.ElasticNet's objective.

    >>> elastic_net([3.0, -4.0], alpha=1.0, l1_ratio=1.0)  # Lasso
    7.0
    """
    l1, l2 = elastic_net_strengths(alpha, l1_ratio)
    return penalty(w, l1=l1, l2=l2)


def elastic_net_strengths(alpha: float, l1_ratio: float) -> tuple[float, float]:
    """(l1, l2) of the Keras form equal to sklearn's (alpha, l1_ratio): (alpha r, alpha (1 - r) / 2).

    >>> elastic_net_strengths(0.2, 0.25)
    (0.05, 0.07500000000000001)
    """
    if not (alpha >= 0 and np.isfinite(alpha)):
        raise UsageError(f"alpha must be a finite number >= 0, got {alpha!r}")
    if not 0.0 <= l1_ratio <= 1.0:
        raise UsageError(f"l1_ratio must be in [0, 1], got {l1_ratio!r}")
    return alpha * l1_ratio, 0.5 * alpha * (1.0 - l1_ratio)


def objective(risk: float, penalty_value: float) -> float:
    """Regularised objective (structural risk) = empirical risk + penalty."""
    return float(risk) + float(penalty_value)


def _check_strengths(l1: float, l2: float) -> None:
    for name, v in (("l1", l1), ("l2", l2)):
        if not (v >= 0 and np.isfinite(v)):
            raise UsageError(f"--{name} must be a finite number >= 0, got {v!r}")


# -- mergeable accumulator -----------------------------------------------------------------------------
class PenaltyState:
    """Compensated sums of |w| and w^2 and the weight count, overall and per column; merges by adding."""

    def __init__(self) -> None:
        self.sums = SumState()
        self.columns: list[str] = []

    def update(self, values: Mapping[str, np.ndarray] | np.ndarray) -> "PenaltyState":
        """Add weights: an array (any shape) or {column: array (n,) or (n, k)} of one batch."""
        if not isinstance(values, Mapping):
            values = {"w": values}
        terms: dict[str, np.ndarray] = {}
        for col, x in values.items():
            x = np.asarray(x, dtype=np.float64)
            x2 = x.reshape(len(x), -1) if x.ndim > 1 else x.reshape(-1, 1)
            if col not in self.columns:
                self.columns.append(col)
            terms[f"abs:{col}"] = np.sum(np.abs(x2), axis=1)
            terms[f"sq:{col}"] = np.sum(x2 * x2, axis=1)
            terms[f"n:{col}"] = np.full(len(x2), float(x2.shape[1]))
        if terms:
            n = len(next(iter(terms.values())))
            if any(len(v) != n for v in terms.values()):
                # columns of different lengths (separate arrays): add them one by one
                for key, v in terms.items():
                    self.sums.update({key: v})
            else:
                self.sums.update(terms)
        return self

    def merge(self, other: "PenaltyState") -> "PenaltyState":
        self.sums.merge(other.sums)
        for c in other.columns:
            if c not in self.columns:
                self.columns.append(c)
        return self

    def column_totals(self, col: str) -> tuple[float, float, int]:
        """(||w||_1, ||w||_2^2, count) of one column."""
        return (self.sums.total(f"abs:{col}"), self.sums.total(f"sq:{col}"),
                int(round(self.sums.total(f"n:{col}"))))

    def totals(self) -> tuple[float, float, int]:
        """(||w||_1, ||w||_2^2, count) over all columns (per-column totals added with compensation)."""
        acc = SumState()
        for c in self.columns:
            a, s, n = self.column_totals(c)
            acc.update({"abs": np.array([a]), "sq": np.array([s]), "n": np.array([float(n)])})
        if not self.columns:
            return 0.0, 0.0, 0
        return acc.total("abs"), acc.total("sq"), int(round(acc.total("n")))


# -- results -------------------------------------------------------------------------------------------
@dataclass
class PenaltyResult:
    """The penalty of a weight file: strengths, norms, value, and the same per column."""

    l1: float
    l2: float
    l1_norm: float
    l2_squared: float
    count: int
    value: float
    convention: str = "keras"  # 'keras' (l1, l2) or 'sklearn' (alpha, l1_ratio)
    alpha: float | None = None
    l1_ratio: float | None = None
    inputs: list[dict] = field(default_factory=list)
    columns: list[dict] = field(default_factory=list)

    @property
    def l2_norm(self) -> float:
        return float(np.sqrt(self.l2_squared))

    def with_risk(self, risk: float) -> float:
        """Empirical risk + this penalty."""
        return objective(risk, self.value)

    def as_dict(self) -> dict[str, Any]:
        d = {"penalty": self.value, "l1": self.l1, "l2": self.l2, "l1_norm": self.l1_norm,
             "l2_norm": self.l2_norm, "l2_squared": self.l2_squared, "count": self.count,
             "convention": self.convention, "inputs": self.inputs, "columns": self.columns,
             "formula": ("penalty = l1 * ||w||_1 + l2 * ||w||_2^2" if self.convention == "keras" else
                         "penalty = alpha * l1_ratio * ||w||_1 + 0.5 * alpha * (1 - l1_ratio) * ||w||_2^2")}
        if self.convention == "sklearn":
            d["alpha"], d["l1_ratio"] = self.alpha, self.l1_ratio
        return d


def resolve_strengths(l1: float | None = None, l2: float | None = None, alpha: float | None = None,
                      l1_ratio: float | None = None) -> tuple[float, float, str]:
    """(l1, l2, convention) from either --l1/--l2 or --alpha/--l1-ratio (not both); UsageError otherwise."""
    keras = l1 is not None or l2 is not None
    sk = alpha is not None or l1_ratio is not None
    if keras and sk:
        raise UsageError("give --l1/--l2 (Keras L1L2) or --alpha/--l1-ratio (scikit-learn ElasticNet), not both")
    if sk:
        l1v, l2v = elastic_net_strengths(1.0 if alpha is None else alpha, 0.5 if l1_ratio is None else l1_ratio)
        return l1v, l2v, "sklearn"
    if not keras:
        raise UsageError("no penalty strength given; pass --l1 and/or --l2 (or --alpha with --l1-ratio)")
    l1v, l2v = float(l1 or 0.0), float(l2 or 0.0)
    _check_strengths(l1v, l2v)
    return l1v, l2v, "keras"


def result_from_state(state: PenaltyState, l1: float, l2: float, convention: str = "keras",
                      alpha: float | None = None, l1_ratio: float | None = None,
                      inputs: list[dict] | None = None) -> PenaltyResult:
    a, s, n = state.totals()
    cols = []
    for c in state.columns:
        ca, cs, cn = state.column_totals(c)
        cols.append({"column": c, "count": cn, "l1_norm": ca, "l2_squared": cs, "penalty": l1 * ca + l2 * cs})
    return PenaltyResult(l1=l1, l2=l2, l1_norm=a, l2_squared=s, count=n, value=l1 * a + l2 * s,
                         convention=convention, alpha=alpha, l1_ratio=l1_ratio, inputs=list(inputs or []),
                         columns=cols)


def _select_columns(names: Sequence[str], types: Mapping[str, Any], columns: str | Sequence[str] | None,
                    exclude: str | Sequence[str] | None, display: str) -> list[str]:
    import pyarrow as pa
    from .io import columns as colmod

    def numeric(t) -> bool:
        if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
            t = t.value_type
        if pa.types.is_dictionary(t):
            t = t.value_type
        return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)

    if columns:
        spec = columns if isinstance(columns, str) else ",".join(columns)
        picked = colmod.match_columns(spec, names)
        if not picked:
            raise InputError(f"{display}: no column {spec!r} for --columns; columns are: {', '.join(names[:30])}")
        bad = [c for c in picked if not numeric(types[c])]
        if bad:
            raise InputError(f"{display}, column {bad[0]!r}: weights must be numbers (column type {types[bad[0]]})")
    else:
        picked = [c for c in names if numeric(types[c])]
    if exclude:
        pats = colmod.split_names(exclude) if isinstance(exclude, str) else list(exclude)
        picked = [c for c in picked if not any(fnmatch.fnmatchcase(c, p) for p in pats)]
    if not picked:
        raise InputError(f"{display}: no numeric weight columns to penalise"
                         + (" after --exclude" if exclude else "") + f"; columns are: {', '.join(names[:30])}")
    return picked


def evaluate_penalty(paths: str | Iterable[str], *, l1: float | None = None, l2: float | None = None,
                     alpha: float | None = None, l1_ratio: float | None = None,
                     columns: str | Sequence[str] | None = None, exclude: str | Sequence[str] | None = None,
                     input_format: str | None = None, batch_rows: int | None = None,
                     storage_options: Mapping[str, Any] | None = None) -> PenaltyResult:
    """Penalty of the weights stored in one or more files (each file, directory or glob a weight source).

    ``columns``: names / globs of the weight columns (default: every numeric column); ``exclude``: globs to
    leave out (e.g. ``'*bias*'``: biases are usually not regularised).  NaN / inf weights are input errors.
    """
    from .io.columns import Binding, Converter, check_finite
    from .io.sources import DEFAULT_BATCH_ROWS, open_source

    l1v, l2v, conv = resolve_strengths(l1, l2, alpha, l1_ratio)
    if isinstance(paths, str):
        paths = [paths]
    state = PenaltyState()
    inputs = []
    for path in paths:
        src = open_source(path, input_format, storage_options)
        names = src.names
        types = {n: src.type_of(n) for n in names}
        picked = _select_columns(names, types, columns, exclude, src.display)
        convs = {c: Converter(Binding("weight", 0, (c,), src.display)) for c in picked}
        row0 = 0
        for batch in src.batches(picked, batch_rows or DEFAULT_BATCH_ROWS, picked):
            vals = {}
            for j, c in enumerate(picked):
                x = convs[c].convert([batch.column(j)], row0)
                check_finite(x, convs[c].b, row0)
                vals[c if len(paths) == 1 else f"{src.display}:{c}"] = x
            state.update(vals)
            row0 += batch.num_rows
        inputs.append({"path": src.display, "format": src.format, "rows": src.rows, "columns": picked})
    return result_from_state(state, l1v, l2v, conv,
                             alpha=(1.0 if alpha is None else alpha) if conv == "sklearn" else None,
                             l1_ratio=(0.5 if l1_ratio is None else l1_ratio) if conv == "sklearn" else None,
                             inputs=inputs)
