"""Label mapping and input validation shared by the classification losses' ``prepare`` hooks.

Every function here takes the batch context ``ctx`` (:class:`lossctl.api.BatchContext`: ``error(role, i,
msg)``, ``options``, ``memo``) and raises ``ctx.error(role, i, message)`` -- an InputError naming file,
column and row -- for input it cannot score.  Warnings (the reference only warns) go once per run to
stderr.  Nothing here modifies the arrays it is given.

Class order
-----------
Score column ``k`` is class ``k``.  Numeric labels are class indices.  String labels are mapped through
``--classes`` (``ctx.options["classes"]``, in score-column order) or, without it, through the sorted set of
label names (``np.unique`` order, as scikit-learn's LabelEncoder / LabelBinarizer), which is kept in
``ctx.memo["classes"]`` and reported with the results.  Without ``--classes`` the first batch fixes the
order when it holds as many names as there are score columns; otherwise the names of the whole input are
read once (``collect_label_names`` / ``ctx.options["label_scan"]``), so the order never depends on the
batch size.  Every class must appear and their number must equal the score width.
For one binary score column the width is 2 and the greater (last) name is the positive class.
"""
from __future__ import annotations

import functools
import sys

import numpy as np

# |row sum - 1| allowed before "rows must sum to 1" fires.  scikit-learn warns beyond ~1.5e-8 relative,
# which flags every float32-saved probability matrix; 1e-6 still catches rows that are not distributions.
ROW_SUM_TOL = 1e-6
F64_EPS_LABELS = float(np.finfo(np.float64).eps)
# collect_label_names gives up beyond this many distinct names (the target is then not a class label column)
MAX_DISCOVERED_CLASSES = 100_000


# -- messages ------------------------------------------------------------------------------------------
def located(ctx, role: str, i: int | None, message: str) -> str:
    """``message`` prefixed with 'FILE, column 'COL', row N: ' exactly as an error would be."""
    return str(ctx.error(role, i, message))


def warn_once(ctx, key: str, message: str) -> None:
    """One warning line on stderr per run and key (the references that only warn: sklearn)."""
    warn = getattr(ctx, "warn", None)
    if callable(warn):
        warn(key, message)
        return
    seen = ctx.memo.setdefault("_warned", set())
    if key not in seen:
        seen.add(key)
        print(f"lossctl: warning: {message}", file=sys.stderr)
        ctx.memo.setdefault("_warnings", []).append(message)


def first_row(bad: np.ndarray) -> int:
    """Index of the first row with a True (any column)."""
    if bad.ndim > 1:
        bad = bad.reshape(len(bad), -1).any(axis=1)
    return int(np.argmax(bad))


def _num(v: float) -> str:
    v = float(v)
    return str(int(v)) if v.is_integer() and abs(v) < 1e15 else repr(v)


def is_strings(y: np.ndarray) -> bool:
    return np.asarray(y).dtype.kind in "USO"


# -- string labels -> class indices --------------------------------------------------------------------
def _class_list_text(classes) -> str:
    shown = ", ".join(classes[:12]) + (", ..." if len(classes) > 12 else "")
    return shown


def _given_classes(ctx, width: int | None) -> list[str] | None:
    """--classes as strings, checked against the number of score columns (``width``; None: unknown)."""
    given = ctx.options.get("classes") if getattr(ctx, "options", None) else None
    if not given:
        return None
    classes = [str(c) for c in given]
    if width is not None and len(classes) != width:
        raise ctx.error("pred", None, f"the scores have {width} {'columns' if width != 2 else 'classes'} but "
                        f"--classes lists {len(classes)} ({_class_list_text(classes)}); list one class per "
                        f"score column, in column order")
    return classes


def string_label_indices(y: np.ndarray, ctx, role: str, width: int | None) -> np.ndarray:
    """Map string labels to float64 class indices (see the module docstring for the class order).

    ``width`` is the number of classes the scores have (2 for one binary column), or None if unknown.
    """
    y = np.asarray(y)
    names, inv = np.unique(y, return_inverse=True)
    names = [str(s) for s in names]
    classes = _given_classes(ctx, width)
    if classes:
        lut = {c: k for k, c in enumerate(classes)}
        codes = np.array([lut.get(s, -1) for s in names], dtype=np.int64)
        if (codes < 0).any():
            missing = codes < 0
            i = first_row(missing[inv])
            raise ctx.error(role, i, f"label {str(y[i])!r} is not one of --classes ({_class_list_text(classes)}); "
                                     f"add it to --classes or fix the label")
        ctx.memo["classes"] = classes  # reported with the results, as the discovered order would be
        return codes[inv].astype(np.float64)

    memo = ctx.memo
    known = memo.get("classes")
    scan = ctx.options.get("label_scan") if ctx.options else None
    if known is None and width is not None and len(names) != width and callable(scan):
        # this batch alone cannot fix the class order: use the names of the whole input (collect_label_names)
        everything = scan()
        if everything is not None:
            known, rows = everything
            memo["classes"] = list(known)
            memo["classes_complete"] = True
            if len(known) > width:
                extra = sorted(known, key=lambda c: rows[c])[width]  # the first label beyond the width
                i = None if getattr(ctx, "rowmap", None) is not None else rows[extra] - ctx.row0
                raise ctx.error(role, i, f"{len(known)} distinct labels ({_class_list_text(known)}) but the scores "
                                         f"have {width} {'classes' if width == 2 else 'columns'}; label {extra!r} "
                                         f"is one too many: check --pred / --target or pass --classes in "
                                         f"score-column order")
            if len(known) < width:
                raise ctx.error(role, None, f"only {len(known)} distinct label(s) ({_class_list_text(known)}) in "
                                            f"the whole input but the scores have {width} "
                                            f"{'classes' if width == 2 else 'columns'}; without --classes the "
                                            f"class order is the sorted label names, which needs every class to "
                                            f"appear; pass --classes A,B,... in score-column order")
    if known is not None and memo.get("classes_complete"):
        lut = {c: k for k, c in enumerate(known)}
        codes = np.array([lut.get(s, -1) for s in names], dtype=np.int64)
        if (codes < 0).any():
            i = first_row((codes < 0)[inv])
            raise ctx.error(role, i, f"label {str(y[i])!r} is not among the classes fixed by the labels before it "
                                     f"({_class_list_text(known)}: sorted names, one per score column); "
                                     f"pass --classes listing every class in score-column order")
        if width is not None and len(known) != width:
            raise ctx.error("pred", None, f"the scores have {width} columns but the labels name {len(known)} "
                                          f"classes ({_class_list_text(known)}); pass --classes in score-column order")
        return codes[inv].astype(np.float64)

    merged = sorted(set(known or ()) | set(names))
    if width is not None and len(merged) != width:
        if len(merged) > width:
            new = [c for c in merged if c not in (known or ())]
            at = {c: int(np.argmax(y == c)) for c in new}
            order = sorted(new, key=at.__getitem__)  # in order of first appearance
            extra = order[min(len(order) - 1, max(0, width - len(known or ())))]
            raise ctx.error(role, at[extra], f"{len(merged)} distinct labels ({_class_list_text(merged)}) but the "
                                             f"scores have {width} {'classes' if width == 2 else 'columns'}; label "
                                             f"{extra!r} is one too many: check --pred / --target or pass --classes "
                                             f"in score-column order")
        raise ctx.error(role, None, f"only {len(merged)} distinct label(s) ({_class_list_text(merged)}) but the "
                                    f"scores have {width} {'classes' if width == 2 else 'columns'}; without --classes "
                                    f"the class order is the sorted label names, which needs every class to appear; "
                                    f"pass --classes A,B,... in score-column order")
    if known is not None and merged[: len(known)] != list(known):
        new = [c for c in merged if c not in known][0]
        i = int(np.argmax(y == new))
        raise ctx.error(role, i, f"label {new!r} first appears here and sorts before earlier labels "
                                 f"({_class_list_text(known)}), which would change the class indices; "
                                 f"pass --classes in score-column order")
    memo["classes"] = merged
    if width is not None:
        memo["classes_complete"] = True
    lut = {c: k for k, c in enumerate(merged)}
    return np.array([lut[s] for s in names], dtype=np.float64)[inv]


# -- numeric labels ------------------------------------------------------------------------------------
def class_indices(y: np.ndarray, ctx, role: str, n_classes: int, ignore_index: int | None = None) -> np.ndarray:
    """Class-index targets (n,) as float64: strings mapped, integral and in [0, n_classes) checked.

    Rows equal to ``ignore_index`` pass unchecked (torch ``ignore_index``).
    """
    if is_strings(y):
        return string_label_indices(y, ctx, role, n_classes)
    y = np.asarray(y, dtype=np.float64)
    if y.ndim != 1:
        raise ctx.error(role, None, f"expected one class label per row, got {y.shape[1]} columns")
    given = _given_classes(ctx, n_classes)
    if given:  # index targets: --classes names the score columns, reported with the results
        ctx.memo["classes"] = given
    frac = y != np.floor(y)
    if frac.any():
        i = first_row(frac)
        raise ctx.error(role, i, f"label {_num(y[i])} is not an integer class index; labels must be whole "
                                 f"numbers 0..{n_classes - 1} (or names with --classes)")
    valid = np.ones(len(y), bool) if ignore_index is None else y != ignore_index
    bad = valid & ((y < 0) | (y >= n_classes))
    if bad.any():
        i = first_row(bad)
        hint = f" or ignore_index={ignore_index}" if ignore_index is not None else ""
        raise ctx.error(role, i, f"class index {_num(y[i])} is out of range for {n_classes} score columns; "
                                 f"labels must be 0..{n_classes - 1}{hint}")
    return y


def is_01(y: np.ndarray) -> bool:
    """True when y is non-empty and every value is 0 or 1 (NaN: False): two reductions and two counts,
    no mask kept (the check ``((y == 0) | (y == 1)).all()`` makes three full-size temporaries)."""
    return _min_if_01(y) is not None


def _min_if_01(y: np.ndarray):
    """The smallest label if y is non-empty and all 0/1, else None (the min tells whether a 0 is there)."""
    if isinstance(y, Labels01):
        return y.min() if y.size else None
    if not y.size:
        return None
    lo, hi = y.min(), y.max()
    # (count_nonzero on a bool mask is ~4x faster than on the float64 values themselves)
    ok = lo >= 0 and hi <= 1 and np.count_nonzero(y == 1) + np.count_nonzero(y == 0) == y.size
    return lo if ok else None


def binary_labels(y: np.ndarray, ctx, role: str, *, soft: bool = False, signed: bool = False) -> np.ndarray:
    """Binary targets as float64 in {0, 1} (``signed``: {-1, +1}).

    Accepted: 0/1 or -1/+1 labels (one coding per run), names (2 classes, the second positive) and,
    when ``soft``, any value in [0, 1] (torch BCE soft labels; ``signed`` then rejects them).
    """
    if is_strings(y):
        if np.asarray(y).ndim != 1:
            raise ctx.error(role, None, "string labels must be one column")
        y01 = string_label_indices(y, ctx, role, 2)
        return 2.0 * y01 - 1.0 if signed else y01
    y = np.asarray(y, dtype=np.float64)
    if y.ndim == 1:
        given = _given_classes(ctx, 2)  # numeric labels: --classes names 0 and 1 (checked: two names)
        if given:
            ctx.memo["classes"] = given  # reported with the results, as for index targets
    if soft:
        bad = (y < 0) | (y > 1)
        if bad.any():
            i = first_row(bad)
            v = y.reshape(len(y), -1)[i][bad.reshape(len(y), -1)[i]][0]
            raise ctx.error(role, i, f"target {_num(v)} is outside [0, 1]; this loss takes 0/1 labels or soft "
                                     f"labels in [0, 1]")
        return y
    lo = _min_if_01(y)
    fast = lo is not None
    if fast:  # the usual 0/1 labels: the same verdict in fewer passes (the min says if a 0 is there)
        has_zero, has_neg = bool(lo == 0.0), False
    else:
        ok = (y == 0) | (y == 1) | (y == -1)
        if not ok.all():
            bad = ~ok
            i = first_row(bad)
            v = y.reshape(len(y), -1)[i][bad.reshape(len(y), -1)[i]][0]
            raise ctx.error(role, i, f"label {_num(v)} is not a binary label; use 0/1 or -1/+1 (or two names, "
                                     f"with --classes NEG,POS)")
        has_zero, has_neg = bool((y == 0).any()), bool((y == -1).any())
    coding = ctx.memo.get("binary_coding")
    if has_zero and has_neg:
        i = first_row(y == (-1 if coding != "-1/+1" else 0))
        raise ctx.error(role, i, "labels mix 0 and -1; binary labels are 0/1 or -1/+1, not both")
    now = "0/1" if has_zero else ("-1/+1" if has_neg else None)
    if now is not None:
        if coding is not None and coding != now:
            i = first_row(y == (0 if now == "0/1" else -1))
            raise ctx.error(role, i, f"labels {now} here but {coding} in earlier rows; use one coding")
        ctx.memo["binary_coding"] = now
    if signed:
        return np.where(y > 0, 1.0, -1.0)
    y01 = y + 0.0 if fast else np.where(y > 0, 1.0, 0.0)  # (for 0/1 labels the same values: -0.0 + 0.0 = 0.0)
    return y01.view(Labels01)


class Labels01(np.ndarray):
    """A float64 array that :func:`binary_labels` has checked holds only 0.0 and 1.0: the loss functions
    skip checking it again (:func:`is_01`).  Any slice or copy of it holds only 0/1 too; arithmetic on it
    gives plain arrays (``__array_wrap__``), so the mark never reaches values that are not labels."""

    def __array_wrap__(self, obj, context=None, return_scalar=False):
        obj = obj.view(np.ndarray)
        return obj[()] if return_scalar else obj


# -- scores and probabilities --------------------------------------------------------------------------
def check_unit_interval(p: np.ndarray, ctx, role: str, *, hint: str = "pass --logits if these are logits") -> None:
    """Error on the first value outside [0, 1] (torch BCELoss and sklearn both raise)."""
    if p.size and p.min() >= 0 and p.max() <= 1:  # fast path: two reductions, no temporaries (NaN: below)
        return
    bad = (p < 0) | (p > 1)
    if bad.any():
        i = first_row(bad)
        v = p.reshape(len(p), -1)[i][bad.reshape(len(p), -1)[i]][0]
        raise ctx.error(role, i, f"probability {_num(v)} is outside [0, 1]; {hint}")


def check_row_sums(p: np.ndarray, ctx, role: str, loss: str, *, action: str = "warn", consequence: str = "",
                   tol: float = ROW_SUM_TOL) -> None:
    """Rows of a probability matrix must sum to 1 within ``tol``: warn once (default) or error."""
    if p.ndim != 2 or action == "none":
        return
    if len(p) and p.shape[1] and p.min() >= 0:  # (False for NaN)
        # Screen with einsum (5x faster than a row-wise np.sum over short C-order rows; no BLAS threads);
        # it differs from np.sum by at most 2 (C-1) eps * sum for non-negative rows, so only rows within a
        # wider margin can be bad, and those are decided on their exact np.sum as below.
        approx = np.einsum("ij->i", p)
        cand = np.flatnonzero(np.abs(approx - 1.0) > tol - 4 * p.shape[1] * F64_EPS_LABELS * (1.0 + approx))
        if not len(cand):
            return
        s = np.zeros(len(p))
        s[cand] = np.sum(p[cand], axis=1)
        bad = np.zeros(len(p), dtype=bool)
        bad[cand] = np.abs(s[cand] - 1.0) > tol
    else:
        s = np.sum(p, axis=1)
        bad = np.abs(s - 1.0) > tol
    if not bad.any():
        return
    i = first_row(bad)
    msg = f"probabilities sum to {float(s[i])!r}, not 1 (tolerance {tol:g})"
    if action == "error":
        raise ctx.error(role, i, msg + f" and {loss} has row_sums=error; pass --logits if these are scores, "
                                       f"normalise the rows, or use row_sums=warn")
    warn_once(ctx, f"rowsum:{loss}:{role}", located(ctx, role, i, f"{msg}; {loss} {consequence or 'uses them as given'}"
                                                   f" (first such row shown)"))


def check_log_probs(lp: np.ndarray, ctx, role: str, loss: str, *, action: str = "warn") -> None:
    """Log-probabilities must be <= 0; rows whose exp does not sum to 1 give a warning (``action``)."""
    bad = lp > 0
    if bad.any():
        i = first_row(bad)
        v = lp.reshape(len(lp), -1)[i][bad.reshape(len(lp), -1)[i]][0]
        from .. import registry
        try:
            takes_space = any(p.name == "space" for p in registry.get(loss).params)
        except Exception:  # a name the registry does not know (a direct call): give the general hint
            takes_space = False
        hint = (f"if these are probabilities or logits, pass --probs or --logits" if takes_space else
                f"for probabilities or logits use cross_entropy --probs / --logits (or log_loss)")
        raise ctx.error(role, i, f"log-probability {_num(v)} is positive; {loss} reads log-probabilities here: "
                                 f"{hint}")
    if lp.ndim == 2 and lp.shape[1] > 1:
        with np.errstate(all="ignore"):
            check_row_sums(np.exp(lp), ctx, role, loss, action=action)


def class_scores(pred: np.ndarray, ctx, role: str, loss: str, *, min_classes: int = 2,
                 one_column_hint: str = "") -> np.ndarray:
    """A (n, C) score matrix with C >= ``min_classes``; a clear error for one column."""
    pred = np.asarray(pred)
    if is_strings(pred):
        raise ctx.error(role, None, f"{loss} needs numeric scores, got text")
    if pred.ndim == 1 or pred.shape[1] < min_classes:
        c = 1 if pred.ndim == 1 else pred.shape[1]
        raise ctx.error(role, None, f"{loss} needs one score column per class (at least {min_classes}), got {c}; "
                                    f"pass several columns (--pred 'p_*' or a comma list) or a list column"
                                    + (f"; {one_column_hint}" if one_column_hint else ""))
    return pred


def binary_scores(pred: np.ndarray, ctx, role: str, loss: str) -> np.ndarray:
    """One score column per binary task: (n,), or (n, k) for k independent labels; (n, 1) is squeezed."""
    pred = np.asarray(pred)
    if is_strings(pred):
        raise ctx.error(role, None, f"{loss} needs numeric scores, got text")
    if pred.ndim == 2 and pred.shape[1] == 1:
        pred = pred[:, 0]
    return pred


def match_binary_shapes(pred: np.ndarray, target: np.ndarray, ctx, loss: str) -> None:
    """Binary losses work elementwise: target must have pred's shape (never broadcast)."""
    if pred.shape != target.shape:
        if pred.ndim == 2 and target.ndim == 1:
            raise ctx.error("pred", None, f"{loss} scores each column as its own binary label, so {pred.shape[1]} "
                                          f"score columns need {pred.shape[1]} target columns; for one label per row "
                                          f"over {pred.shape[1]} classes use a multiclass loss (cross_entropy, "
                                          f"log_loss, multiclass_hinge)")
        tw = 1 if target.ndim == 1 else target.shape[1]
        pw = 1 if pred.ndim == 1 else pred.shape[1]
        raise ctx.error("target", None, f"{tw} target column(s) for {pw} score column(s); {loss} needs one "
                                        f"target per score column")


def targets_2d(target: np.ndarray, ctx, role: str, n_classes: int, *, what: str = "target") -> np.ndarray:
    """Check a one-hot / soft-label target matrix: width n_classes, values in [0, 1]."""
    if target.shape[1] != n_classes:
        raise ctx.error(role, None, f"{target.shape[1]} {what} columns for {n_classes} score columns; "
                                    f"one-hot / soft targets need one column per class")
    bad = (target < 0) | (target > 1)
    if bad.any():
        i = first_row(bad)
        v = target[i][bad[i]][0]
        raise ctx.error(role, i, f"{what} probability {_num(v)} is outside [0, 1]; one-hot / soft targets "
                                 f"are probabilities (give class indices as one column)")
    return target


def one_hot(idx: np.ndarray, n_classes: int) -> np.ndarray:
    """(n,) float class indices -> (n, C) one-hot float64."""
    out = np.zeros((len(idx), n_classes))
    out[np.arange(len(idx)), idx.astype(np.int64)] = 1.0
    return out


def check_class_weights(weights, n_classes: int, ctx) -> None:
    if weights and len(weights) != n_classes:
        raise ctx.error("pred", None, f"class_weights has {len(weights)} values but the scores have {n_classes} "
                                      f"columns; give one weight per class (--class-weights or class_weights=)")


def check_class_weights_param(params) -> None:
    """check_params hook: class weights must be finite and >= 0."""
    from ..errors import UsageError
    w = params.get("class_weights") or ()
    for v in w:
        if not np.isfinite(v) or v < 0:
            raise UsageError(f"class_weights must be finite numbers >= 0, got {'/'.join(map(str, w))}")


def ignore_space(fn):
    """``fn`` accepting (and ignoring) a ``space`` keyword: for losses whose space Param only documents that
    logits are decision values too, so --logits is accepted."""
    @functools.wraps(fn)
    def wrapper(*inputs, space: str = "scores", **params):
        return fn(*inputs, **params)
    return wrapper


def row_sums_param(choices: tuple[str, ...], reference: str):
    """The ``row_sums`` Param: what to do with probability rows whose sum is not 1 (beyond ROW_SUM_TOL)."""
    from ..registry import Param
    text = {"warn": "warn once with the first row, use as given", "error": "input error (exit 3) naming the row",
            "renormalize": "divide each row by its sum (Keras)"}
    return Param("row_sums", str, "warn", f"rows of probabilities whose sum is not 1 within {ROW_SUM_TOL:g}: "
                 + "; ".join(f"{c} = {text[c]}" for c in choices) + f" (default warn: {reference})",
                 choices=choices)


def check_positive_rows(p: np.ndarray, ctx, role: str) -> None:
    """Rows to be renormalised must have a positive sum."""
    zero = np.sum(p, axis=1) <= 0
    if zero.any():
        raise ctx.error(role, first_row(zero), "all probabilities are 0; a row must hold a distribution")


def grad_with_row_sums(name: str):
    """The analytic gradient of loss ``name`` (``lossctl.losses.grads.GRADS``) for a loss with ``row_sums``.

    ``row_sums`` only validates (warn / error) unless it is 'renormalize', where the loss is evaluated at
    q = p / s (s = row sum); then dL/dp_j = (g_j - sum_k g_k q_k) / s with g = dL/dq (chain rule).
    ``norm`` (cross_entropy / nll) only changes the mean's denominator, not the per-sample gradient.
    """
    def grad(pred, target, *, row_sums: str = "warn", norm: str = "weights", **params):
        from .grads import GRADS  # grads imports this module: resolve at call time
        g = GRADS[name]
        p = np.asarray(pred, dtype=np.float64)
        if row_sums != "renormalize" or p.ndim != 2:
            return g(pred, target, **params)
        s = np.sum(p, axis=1, keepdims=True)
        q = p / s
        gq = np.asarray(g(q, target, **params), dtype=np.float64)
        return (gq - np.sum(gq * q, axis=1, keepdims=True)) / s
    grad.__name__ = f"{name}_grad"
    return grad


# -- whole-input class discovery (called by the pipeline before the main pass) ----------------------------------
def collect_label_names(plan) -> None:
    """String labels without --classes: let the class order come from the whole input when needed.

    The sorted names of the labels (scikit-learn's LabelEncoder order) fix the class indices.  When the first
    batch holds exactly as many names as there are score columns, that batch fixes them (a later unseen name
    is an error naming its row).  Otherwise -- a small --batch-size, a rare class -- the hook calls
    ``plan.options["label_scan"]()``, set here, which reads only the string target column once (Parquet:
    that column chunk; stdin is buffered) and returns (sorted names, first input row of each name), so the
    result does not depend on the batch size.  Joined inputs (--on) keep first-batch discovery.
    """
    if plan.options.get("classes") or plan.on or "target" not in plan.string_roles:
        return
    b = plan.bindings.get("target")
    if b is None or len(b.columns) != 1:
        return
    src = plan.sources[b.source]
    if not src.is_text(b.columns[0]):
        return
    cache: list = []

    def scan():
        if not cache:
            cache.append(_scan_label_names(src, b.columns[0], max(plan.batch_rows, 1 << 16)))
        return cache[0]

    plan.options["label_scan"] = scan


def _scan_label_names(src, column: str, batch_rows: int):
    """(sorted names, {name: first row}) of a string column, or None if it has nulls or too many names."""
    from ..io.columns import strings_to_numpy

    first: dict[str, int] = {}
    row0 = 0
    for batch in src.batches([column], batch_rows):
        col = batch.column(0)
        if col.null_count:
            return None  # the main pass reports the missing label with its row
        names, idx = np.unique(strings_to_numpy(col), return_index=True)
        for s, i in zip(names.tolist(), idx.tolist()):
            first.setdefault(s, row0 + i)
        if len(first) > MAX_DISCOVERED_CLASSES:
            return None  # not class labels (an id column?): the main pass reports the mismatch
        row0 += batch.num_rows
    return sorted(first), first
