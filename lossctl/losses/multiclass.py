"""Multiclass and multi-label losses: one float64 value per sample from (n, C) class scores.

Shapes.  ``pred`` is (n, C): one column per class (several columns, a glob or a list column), as logits,
probabilities or log-probabilities (the ``space`` parameter, set by --logits / --probs / --log-probs).
``target`` is a class index per row (n,) -- numbers 0..C-1 or names mapped through --classes / sorted
names, see :mod:`lossctl.losses._labels` -- or one-hot / soft-label rows (n, C) where the loss allows it.
The ``prepare`` hooks (``_prep_*``) map and validate; the functions assume prepared input.

Every function is checked against its reference in tests/test_parity_classification.py.
"""
from __future__ import annotations

import numpy as np

from ..registry import LossSpec, Param, register
from . import _labels as L
from ._numerics import as_f64, log_sigmoid, log_softmax, xlogy

# torch BCELoss's clamp of log terms, reused for cross_entropy on probabilities (torch itself, through
# NLLLoss(log p), would give inf for p = 0 on the target class).
LOG_CLAMP = -100.0
KERAS_EPSILON = 1e-7  # keras.backend.epsilon(), also for float64


def _weights(class_weights, n_classes: int) -> np.ndarray:
    return np.ones(n_classes) if not class_weights else as_f64(class_weights)


def _log_probs(pred: np.ndarray, space: str) -> np.ndarray:
    x = as_f64(pred)
    if space == "logits":
        return log_softmax(x, axis=1)  # max-shifted: finite for logits of +-1e4
    if space == "log-probabilities":
        return x
    with np.errstate(divide="ignore"):
        return np.maximum(np.log(x), LOG_CLAMP)


def _probs(pred: np.ndarray, space: str) -> np.ndarray:
    x = as_f64(pred)
    if space == "logits":
        return np.exp(log_softmax(x, axis=1))
    if space == "log-probabilities":
        return np.exp(x)
    return x


# -- cross-entropy family ----------------------------------------------------------------------------------
def _ce_terms(pred, target, class_weights=(), ignore_index=-100, label_smoothing=0.0, space="logits"):
    """(numerator per row, denominator per row) of torch's CrossEntropyLoss mean."""
    lp = _log_probs(pred, space)
    n, C = lp.shape
    w = _weights(class_weights, C)
    eps = float(label_smoothing)
    y = as_f64(target)
    if y.ndim == 2:
        # probability targets: l = -sum_c w_c y'_c log p_c, y' = y(1-eps) + eps/C; torch's mean divides by N
        if eps:
            y = y * (1.0 - eps) + eps / C
        return -np.sum(lp * w * y, axis=1), np.ones(n)
    valid = y != ignore_index
    idx = np.where(valid, y, 0).astype(np.int64)
    wy = np.where(valid, w[idx], 0.0)
    l = -lp[np.arange(n), idx] * wy
    if eps:
        # torch: (1-eps) NLL + eps/C * sum_c -w_c log p_c, ignored rows masked, mean over sum of w[y]
        smooth = np.where(valid, -np.sum(lp * w, axis=1), 0.0)
        l = (1.0 - eps) * l + (eps / C) * smooth
    return l, wy


def cross_entropy(pred, target, *, class_weights=(), ignore_index: int = -100, label_smoothing: float = 0.0,
                  space: str = "logits", row_sums: str = "warn", norm: str = "weights") -> np.ndarray:
    """Cross-entropy per sample, torch CrossEntropyLoss(reduction='none') semantics.

    Index target y: l = w_y (-(1-eps) log p_y) + (eps/C) sum_c -w_c log p_c, 0 where y == ignore_index.
    Probability target (n, C): l = -sum_c w_c y'_c log p_c, y' = y(1-eps) + eps/C.
    log p = log_softmax(logits) (space='logits'), the input itself ('log-probabilities', as NLLLoss) or
    max(log p, -100) ('probabilities').  ``row_sums`` is checked by the prepare hook only.  The reduced mean
    (see :func:`cross_entropy_terms`) is torch's:
    sum(l) / sum(w_y) over non-ignored rows for index targets, sum(l) / N for probability targets.

    Reference: torch.nn.CrossEntropyLoss.

    >>> cross_entropy([[2.0, 0.0, 0.0]], [0.0]).round(6).tolist()
    [0.239545]
    """
    return _ce_terms(pred, target, class_weights, ignore_index, label_smoothing, space)[0]


def cross_entropy_terms(pred, target, *, class_weights=(), ignore_index: int = -100, label_smoothing: float = 0.0,
                        space: str = "logits", row_sums: str = "warn", norm: str = "weights") -> dict:
    """Summable terms: loss = the per-sample value; norm = w_y (0 if ignored) or 1 (probability targets).

    norm='rows' divides by the number of non-ignored rows instead (the plain mean of the per-sample values,
    as when class weights are applied as sample weights, Keras-style); the per-sample values do not change.
    """
    l, wy = _ce_terms(pred, target, class_weights, ignore_index, label_smoothing, space)
    return {"loss": l, "norm": _norm_rows(target, ignore_index, wy) if norm == "rows" else wy}


def _norm_rows(target, ignore_index: int, wy: np.ndarray) -> np.ndarray:
    y = as_f64(target)
    return np.ones(len(wy)) if y.ndim == 2 else (y != ignore_index).astype(np.float64)


def nll(pred, target, *, class_weights=(), ignore_index: int = -100, row_sums: str = "warn",
        norm: str = "weights") -> np.ndarray:
    """Negative log-likelihood of log-probabilities, torch NLLLoss(reduction='none'): -w_y x[y], 0 if ignored.

    Reference: torch.nn.NLLLoss.

    >>> nll([[-0.1, -2.4]], [1.0]).tolist()
    [2.4]
    """
    return _ce_terms(pred, target, class_weights, ignore_index, 0.0, "log-probabilities")[0]


def nll_terms(pred, target, *, class_weights=(), ignore_index: int = -100, row_sums: str = "warn",
              norm: str = "weights") -> dict:
    l, wy = _ce_terms(pred, target, class_weights, ignore_index, 0.0, "log-probabilities")
    return {"loss": l, "norm": _norm_rows(target, ignore_index, wy) if norm == "rows" else wy}


# -- divergences ---------------------------------------------------------------------------------------------
def kl_div(pred, target, *, log_target: bool = False, space: str = "log-probabilities",
           row_sums: str = "warn") -> np.ndarray:
    """KL(target || model) per sample, torch KLDivLoss semantics summed over classes.

    l = sum_c p_c (log p_c - log q_c), p = target (log p if log_target), log q = pred (space
    'log-probabilities', torch's input), log_softmax(pred) ('logits') or log(pred) ('probabilities'; then
    q_c = 0 where p_c > 0 gives inf, the true KL, and p_c = 0 terms are 0).  The mean over rows is torch's
    reduction='batchmean'.

    Reference: torch.nn.KLDivLoss(reduction='batchmean').

    >>> kl_div(np.log([[0.5, 0.5]]), [[1.0, 0.0]]).round(6).tolist()
    [0.693147]
    """
    x = as_f64(pred)
    t = as_f64(target)
    if space == "logits":
        lq = log_softmax(x, axis=1)
    elif space == "probabilities":
        with np.errstate(divide="ignore"):
            lq = np.log(x)
    else:
        lq = x
    with np.errstate(invalid="ignore"):
        if log_target:
            pt = np.exp(t) * (t - lq)
        else:
            pt = xlogy(t, t) - t * lq
    if space == "probabilities":
        pt = np.where((t == 0) if not log_target else np.isneginf(t), 0.0, pt)
    return np.sum(pt, axis=1)


def js_divergence(pred, target, *, space: str = "probabilities") -> np.ndarray:
    """Jensen-Shannon divergence (natural log) between target p and model q, rows renormalised to sum 1.

    JS = (KL(p || m) + KL(q || m)) / 2, m = (p + q) / 2, in [0, log 2].  Evaluated per class as
    m/2 [(1+d) log(1+d) + (1-d) log(1-d)] = m/2 [log1p(-d^2) + 2 d atanh(d)], d = (p-q)/(p+q): every term
    is >= 0, so near-identical rows keep full relative accuracy (the KL form cancels there).

    Reference: scipy.spatial.distance.jensenshannon(p, q) ** 2 (which also renormalises).

    >>> js_divergence([[1.0, 0.0]], [[0.0, 1.0]]).round(6).tolist()
    [0.693147]
    """
    q = _probs(pred, space)
    p = as_f64(target)
    q = q / np.sum(q, axis=1, keepdims=True)
    p = p / np.sum(p, axis=1, keepdims=True)
    s = p + q
    m = 0.5 * s
    with np.errstate(invalid="ignore", divide="ignore"):
        d = np.where(s > 0, (p - q) / s, 0.0)
        edge = np.abs(d) >= 1.0  # one side is 0: (1+1) log 2 / 2 * m
        dd = np.where(edge, 0.0, d)
        inner = np.log1p(-dd * dd) + 2.0 * dd * np.arctanh(dd)
    term = np.where(edge, m * np.log(2.0), 0.5 * m * inner)
    return np.sum(term, axis=1)


# -- margins -------------------------------------------------------------------------------------------------
def multi_margin(pred, target, *, p: int = 1, margin: float = 1.0, class_weights=(),
                 space: str = "scores") -> np.ndarray:
    """Weston-Watkins multiclass margin loss, torch MultiMarginLoss(reduction='none') semantics.

    l = (1/C) sum_{i != y} w_y max(0, margin - x_y + x_i)^p (torch multiplies w_y after the power and
    divides by C, not C - 1).  ``space`` only records that logits are scores too.

    Reference: torch.nn.MultiMarginLoss.

    >>> multi_margin([[0.1, 0.2, 0.4, 0.8]], [3.0]).round(6).tolist()
    [0.325]
    """
    x = as_f64(pred)
    n, C = x.shape
    idx = as_f64(target).astype(np.int64)
    rows = np.arange(n)
    z = np.maximum(0.0, margin - x[rows, idx][:, None] + x)
    z[rows, idx] = 0.0
    h = z if p == 1 else z * z
    return _weights(class_weights, C)[idx] * np.sum(h, axis=1) / C


def multiclass_hinge(pred, target) -> np.ndarray:
    """Crammer-Singer multiclass hinge loss max(0, 1 - (f_y - max_{j != y} f_j)).

    Reference: sklearn.metrics.hinge_loss (multiclass); optax.losses.multiclass_hinge_loss.

    >>> multiclass_hinge([[2.0, 1.5, -1.0], [0.0, 1.0, 0.0]], [0.0, 0.0]).tolist()
    [0.5, 2.0]
    """
    x = as_f64(pred)
    n = len(x)
    idx = as_f64(target).astype(np.int64)
    rows = np.arange(n)
    others = x.copy()
    others[rows, idx] = -np.inf
    margin = x[rows, idx] - np.max(others, axis=1)
    return np.maximum(0.0, 1.0 - margin)


def softmax_focal(pred, target, *, alpha: float = 0.25, gamma: float = 2.0, eps: float = KERAS_EPSILON,
                  label_smoothing: float = 0.0, space: str = "probabilities") -> np.ndarray:
    """Softmax (categorical) focal loss, keras CategoricalFocalCrossentropy semantics.

    l = -sum_c alpha (1 - p_c)^gamma y_c log p_c, p = softmax(logits) or the probabilities renormalised
    to sum 1, clipped to [eps, 1 - eps] (Keras: eps = 1e-7); y = one-hot or soft rows, smoothed to
    y(1 - ls) + ls/C.  eps=0 with logits uses log_softmax for exact log p.

    Reference: keras.losses.CategoricalFocalCrossentropy.

    >>> softmax_focal([[0.05, 0.9, 0.05]], [[0.0, 1.0, 0.0]]).round(7).tolist()  # Keras docs: 2.634e-04
    [0.0002634]
    """
    y = as_f64(target)
    x = as_f64(pred)
    C = x.shape[1]
    if y.ndim == 1:
        y = L.one_hot(y, C)
    if label_smoothing:
        y = y * (1.0 - label_smoothing) + label_smoothing / C
    if space == "logits" and eps == 0:
        lp = log_softmax(x, axis=1)
        p = np.exp(lp)
    else:
        p = _probs(x, space)
        p = p / np.sum(p, axis=1, keepdims=True)
        p = np.clip(p, eps, 1.0 - eps)
        with np.errstate(divide="ignore"):
            lp = np.log(p)
    with np.errstate(invalid="ignore"):
        l = alpha * (1.0 - p) ** gamma * np.where(y == 0, 0.0, -y * lp)
    return np.sum(l, axis=1)


def multilabel_soft_margin(pred, target, *, class_weights=()) -> np.ndarray:
    """Multi-label soft margin loss, torch MultiLabelSoftMarginLoss(reduction='none') semantics.

    l = -(1/C) sum_c w_c [y_c log s(x_c) + (1 - y_c) log s(-x_c)], s = sigmoid (log-sigmoid form).

    Reference: torch.nn.MultiLabelSoftMarginLoss.

    >>> multilabel_soft_margin([[0.0, 0.0]], [[1.0, 0.0]]).round(6).tolist()
    [0.693147]
    """
    x = as_f64(pred)
    y = as_f64(target)
    C = x.shape[1]
    l = -(y * log_sigmoid(x) + (1.0 - y) * log_sigmoid(-x)) * _weights(class_weights, C)
    return np.sum(l, axis=1) / C


# -- prepare hooks ---------------------------------------------------------------------------------------
_ONE_COLUMN_HINT = "for one binary column use bce / bce_with_logits / log_loss"


def _scores(arrays, params, ctx, loss: str, space: str | None = None, *, rows: str = "warn",
            consequence: str = "uses them as given") -> np.ndarray:
    """Validate the (n, C) prediction matrix for its space."""
    pred = L.class_scores(arrays["pred"], ctx, "pred", loss, one_column_hint=_ONE_COLUMN_HINT)
    space = space or params.get("space", "logits")
    if space == "probabilities":
        L.check_unit_interval(pred, ctx, "pred")
        L.check_row_sums(pred, ctx, "pred", loss, action=rows, consequence=consequence)
    elif space == "log-probabilities":
        L.check_log_probs(pred, ctx, "pred", loss, action=rows)
    return pred


def _index_target(arrays, ctx, C: int, loss: str, ignore_index=None, *, alt: str = "") -> np.ndarray:
    t = arrays["target"]
    if not L.is_strings(t) and np.asarray(t).ndim == 2:
        if t.shape[1] == 1:
            t = t[:, 0]
        else:
            raise ctx.error("target", None, f"{loss} takes one class label per row, got {t.shape[1]} target "
                                            f"columns" + (f"; {alt}" if alt else ""))
    return L.class_indices(t, ctx, "target", C, ignore_index)


def _dist_target(arrays, ctx, C: int, loss: str, *, ignore_index=None, one_hot: bool = True,
                 rows: str = "warn", consequence: str = "uses them as given") -> np.ndarray:
    """Labels (n,) -> indices (or one-hot), or (n, C) probability rows checked."""
    t = arrays["target"]
    if not L.is_strings(t) and np.asarray(t).ndim == 2 and t.shape[1] > 1:
        t = L.targets_2d(t, ctx, "target", C)
        L.check_row_sums(t, ctx, "target", loss, action=rows, consequence=consequence)
        return t
    if not L.is_strings(t) and np.asarray(t).ndim == 2:
        t = t[:, 0]
    idx = L.class_indices(t, ctx, "target", C, ignore_index)
    return L.one_hot(idx, C) if one_hot else idx


def _prep_cross_entropy(arrays, params, ctx):
    space = params.get("space", "logits")
    rows = params.get("row_sums", "warn")
    note = "uses them as given (torch does not renormalise; row_sums=error to reject them)"
    pred = _scores(arrays, params, ctx, "cross_entropy", space, rows=rows, consequence=note)
    C = pred.shape[1]
    L.check_class_weights(params.get("class_weights"), C, ctx)
    target = _dist_target(arrays, ctx, C, "cross_entropy", ignore_index=params.get("ignore_index"),
                          one_hot=False, rows=rows, consequence=note)
    return {"pred": pred, "target": target}


def _prep_nll(arrays, params, ctx):
    pred = _scores(arrays, params, ctx, "nll", "log-probabilities", rows=params.get("row_sums", "warn"))
    C = pred.shape[1]
    L.check_class_weights(params.get("class_weights"), C, ctx)
    target = _index_target(arrays, ctx, C, "nll", params.get("ignore_index"),
                           alt="for soft targets use cross_entropy:space=log-probabilities")
    return {"pred": pred, "target": target}


def _prep_kl(arrays, params, ctx):
    space = params.get("space", "log-probabilities")
    rows = params.get("row_sums", "warn")
    note = "uses them as given (torch does not check; row_sums=error to reject them)"
    pred = _scores(arrays, params, ctx, "kl_div", space, rows=rows, consequence=note)
    C = pred.shape[1]
    t = arrays["target"]
    if params.get("log_target"):
        if L.is_strings(t) or np.asarray(t).ndim != 2 or t.shape[1] != C:
            raise ctx.error("target", None, f"log_target=true needs {C} log-probability target columns "
                                            f"(one per class)")
        L.check_log_probs(t, ctx, "target", "kl_div", action=rows)
        return {"pred": pred, "target": t}
    return {"pred": pred, "target": _dist_target(arrays, ctx, C, "kl_div", rows=rows, consequence=note)}


def _prep_js(arrays, params, ctx):
    space = params.get("space", "probabilities")
    note = "renormalises each row to sum 1 (as scipy)"
    pred = _scores(arrays, params, ctx, "js_divergence", space, consequence=note)
    C = pred.shape[1]
    target = _dist_target(arrays, ctx, C, "js_divergence", consequence=note)
    for role, a in (("pred", pred if space == "probabilities" else None), ("target", target)):
        if a is not None:
            zero = np.sum(a, axis=1) <= 0
            if zero.any():
                raise ctx.error(role, L.first_row(zero), "all probabilities are 0; a row must hold a distribution")
    return {"pred": pred, "target": target}


def _prep_margin(loss):
    def prepare(arrays, params, ctx):
        pred = L.class_scores(arrays["pred"], ctx, "pred", loss, one_column_hint="for one decision-value column "
                                                                                 "use hinge")
        C = pred.shape[1]
        L.check_class_weights(params.get("class_weights"), C, ctx)
        return {"pred": pred, "target": _index_target(arrays, ctx, C, loss)}
    return prepare


def _prep_softmax_focal(arrays, params, ctx):
    space = params.get("space", "probabilities")
    note = "renormalises each row to sum 1 (as Keras)"
    pred = _scores(arrays, params, ctx, "softmax_focal", space, consequence=note)
    if space == "probabilities":
        zero = np.sum(pred, axis=1) <= 0
        if zero.any():
            raise ctx.error("pred", L.first_row(zero), "all probabilities are 0; a row must hold a distribution")
    C = pred.shape[1]
    return {"pred": pred, "target": _dist_target(arrays, ctx, C, "softmax_focal")}


def _prep_multilabel(arrays, params, ctx):
    pred = L.class_scores(arrays["pred"], ctx, "pred", "multilabel_soft_margin", min_classes=1)
    C = pred.shape[1]
    L.check_class_weights(params.get("class_weights"), C, ctx)
    t = arrays["target"]
    if L.is_strings(t) or np.asarray(t).ndim != 2:
        raise ctx.error("target", None, f"multilabel_soft_margin needs {C} 0/1 target columns (one per label), "
                                        f"got one column; for one class per row use cross_entropy")
    if t.shape[1] != C:
        raise ctx.error("target", None, f"{t.shape[1]} target columns for {C} score columns; one 0/1 target "
                                        f"per label")
    return {"pred": pred, "target": L.binary_labels(t, ctx, "target", soft=True)}


def _check_margin(params) -> None:
    L.check_class_weights_param(params)


# -- registration ---------------------------------------------------------------------------------------------
_STR = {"string_roles": ("target",)}
_CW = Param("class_weights", list, (), "one weight per class (also --class-weights 1,2,5); empty = all 1")
_IGNORE = Param("ignore_index", int, -100, "target value whose rows are skipped (contribute 0 to sum and norm)")
_SPACE3 = ("logits", "log-probabilities", "probabilities")
_ROWS = L.row_sums_param(("warn", "error"), "torch neither checks nor renormalises")
_NORM = Param("norm", str, "weights", "denominator of the mean: weights = sum of the target-class weights of the "
              "non-ignored rows (torch); rows = their number (the plain mean of the per-sample values, as class "
              "weights applied as sample weights, Keras / sklearn style)", choices=("weights", "rows"))

register(LossSpec(
    grad=L.grad_with_row_sums("cross_entropy"),
    name="cross_entropy", aliases=("ce", "crossentropy", "softmax_cross_entropy", "categorical_cross_entropy",
                                   "crossentropyloss"),
    kind="multiclass", fn=cross_entropy, terms=cross_entropy_terms, space="logits",
    params=(_CW, _IGNORE,
            Param("label_smoothing", float, 0.0, "mix eps of the uniform distribution into the target (torch: eps/C)",
                  low=0.0, high=1.0),
            Param("space", str, "logits", "logits (torch), log-probabilities (as NLLLoss) or probabilities "
                  "(log clamped at -100)", choices=_SPACE3),
            _ROWS, _NORM),
    summary="Softmax cross-entropy from logits (torch CrossEntropyLoss): index, one-hot or soft targets.",
    formula="l = -w_y [(1-eps) log p_y] - (eps/C) sum_c w_c log p_c, p = softmax(x); soft y: -sum_c w_c y_c log p_c",
    latex=r"\ell = -(1-\epsilon)\,w_y \log p_y - \frac{\epsilon}{C}\sum_c w_c \log p_c,\ p = \mathrm{softmax}(x)",
    reference="torch.nn.CrossEntropyLoss",
    when="The standard multiclass training loss; logits by default (log-sum-exp, exact for logits of +-1e4). "
         "Targets: class indices or names (one column) or one-hot / soft rows (n, C), not renormalised (torch). "
         "With class weights the mean is torch's weighted mean sum(w_y l)/sum(w_y), not the plain mean of "
         "per-sample values (norm=rows gives that plain mean); all rows ignored gives NaN (torch; Keras would "
         "give 0). Label smoothing is torch's "
         "eps/C uniform mix, applied with the class weights as torch does. --probs takes log p clamped at "
         "-100 (torch NLLLoss(log p) would give inf at p=0); for sklearn's clipping use log_loss. Probability "
         "rows (--probs input, soft targets) that do not sum to 1 are used as given with a warning naming the "
         "first row (torch does not check); row_sums=error rejects them. Empty input is an input error (exit 3; "
         "torch's mean would be NaN).",
    reduction_note="mean = sum(s*l)/sum(s*w_y) over non-ignored rows for index targets (torch's weighted mean, "
                   "s = sample weight), sum(s*l)/sum(s) for one-hot/soft targets (torch divides by N); norm=rows: "
                   "sum(s*l)/sum(s) over non-ignored rows; sum = torch reduction='sum'",
    example="lossctl eval sample_data/multiclass.csv -l cross_entropy --pred 'logit_*' --target species",
    related=("nll", "log_loss", "softmax_focal", "kl_div"),
    extra={**_STR, "prepare": _prep_cross_entropy, "check_params": L.check_class_weights_param},
))

register(LossSpec(
    grad=L.grad_with_row_sums("nll"),
    name="nll", aliases=("nll_loss", "nllloss", "negative_log_likelihood"), kind="multiclass", fn=nll,
    terms=nll_terms, space="log-probabilities", params=(_CW, _IGNORE, _ROWS, _NORM),
    summary="Negative log-likelihood of log-probabilities (torch NLLLoss).",
    formula="l = -w_y x_y, x = log-probabilities; 0 where y == ignore_index",
    latex=r"\ell = -w_y\, x_y",
    reference="torch.nn.NLLLoss",
    when="Models saved as log-probabilities (log_softmax outputs). Values are used as given (torch does not "
         "renormalise; rows whose exp does not sum to 1 give a warning, row_sums=error rejects them). Class "
         "weights use torch's weighted mean; all rows ignored gives NaN (torch; Keras would give 0).",
    reduction_note="mean = sum(s*l)/sum(s*w_y) over non-ignored rows (torch's weighted mean); norm=rows: "
                   "sum(s*l)/sum(s) over non-ignored rows",
    example="lossctl eval sample_data/multiclass.csv -l nll --pred 'logp_*' --target species --log-probs",
    related=("cross_entropy", "log_loss"),
    extra={**_STR, "prepare": _prep_nll, "check_params": L.check_class_weights_param},
))

register(LossSpec(
    grad=L.grad_with_row_sums("kl_div"),
    name="kl_div", aliases=("kl", "kl_divergence", "kldiv", "kldivloss", "relative_entropy"), kind="multiclass",
    fn=kl_div, space="log-probabilities",
    params=(Param("log_target", bool, False, "target columns are log-probabilities (torch log_target)"),
            Param("space", str, "log-probabilities", "model input: log-probabilities (torch), logits or "
                  "probabilities", choices=("log-probabilities", "logits", "probabilities")),
            _ROWS),
    summary="Kullback-Leibler divergence KL(target || model) per sample (torch KLDivLoss, batchmean).",
    formula="l = sum_c p_c (log p_c - log q_c); p = target, log q = pred",
    latex=r"\ell = \sum_c p_c (\log p_c - \log q_c)",
    reference="torch.nn.KLDivLoss(reduction='batchmean')",
    when="Distillation and calibration against a reference distribution. As torch, the model input is "
         "log-probabilities by default (--logits / --probs convert) and the target comes second: KL(target || "
         "model) (torchmetrics puts the reference first; Keras clips both sides to [1e-7, 1]). Rows are not "
         "renormalised (a warning if they do not sum to 1; row_sums=error rejects them). With --probs a zero "
         "model probability where the target is positive gives inf, the true KL (the one finite input that "
         "gives inf, as in torch).",
    reduction_note="per-sample value sums over classes, so mean = torch reduction='batchmean' (the mathematical "
                   "KL); torch's reduction='mean' would further divide by C",
    example="lossctl eval sample_data/multiclass.csv -l kl_div --pred 'logit_*' --target 'q_*' --logits",
    related=("js_divergence", "cross_entropy"),
    extra={**_STR, "prepare": _prep_kl},
))

register(LossSpec(
    name="js_divergence", aliases=("js", "jensen_shannon", "jsd"), kind="multiclass", fn=js_divergence,
    space="probabilities",
    params=(Param("space", str, "probabilities", "model input space", choices=("probabilities", "logits",
                                                                            "log-probabilities")),),
    summary="Jensen-Shannon divergence between target and predicted distributions (natural log).",
    formula="l = (KL(p||m) + KL(q||m)) / 2, m = (p + q)/2",
    latex=r"\ell = \tfrac12 \mathrm{KL}(p\|m) + \tfrac12 \mathrm{KL}(q\|m),\ m = \tfrac{p+q}{2}",
    reference="scipy.spatial.distance.jensenshannon(p, q) ** 2",
    when="A symmetric, bounded ([0, log 2]) divergence that stays finite when one side has zeros; its square "
         "root is a metric (scipy returns that root). Rows are renormalised to sum 1 as scipy does (warning "
         "when they did not). Natural log: divide by log 2 for bits.",
    reduction_note="mean = sum(w*l)/sum(w) over rows",
    example="lossctl eval sample_data/multiclass.csv -l js_divergence --pred 'p_*' --target species",
    related=("kl_div", "log_loss"),
    extra={**_STR, "prepare": _prep_js},
))

register(LossSpec(
    name="multi_margin", aliases=("multimargin", "multi_margin_loss", "weston_watkins"), kind="multiclass",
    fn=multi_margin, space="scores",
    params=(Param("p", int, 1, "1 (hinge) or 2 (squared hinge)", choices=(1, 2)),
            Param("margin", float, 1.0, "required score gap"),
            _CW,
            Param("space", str, "scores", "class scores (logits are scores too)", choices=("scores", "logits"))),
    summary="Weston-Watkins multiclass margin loss (torch MultiMarginLoss).",
    formula="l = (1/C) sum_{i != y} w_y max(0, margin - x_y + x_i)^p",
    latex=r"\ell = \frac{1}{C}\sum_{i\ne y} w_y \max(0, m - x_y + x_i)^p",
    reference="torch.nn.MultiMarginLoss",
    when="Multiclass SVM-style training: every wrong class within `margin` of the true one is penalised "
         "(Crammer-Singer, multiclass_hinge, penalises only the worst). Divided by C, not C-1 (torch). Class "
         "weights multiply each sample's loss (torch applies w_y after the power) and the mean divides by N, "
         "not by the weights.",
    reduction_note="mean = sum(s*l)/sum(s) (torch divides by N even with class weights)",
    example="lossctl eval sample_data/multiclass.csv -l multi_margin:p=2 --pred 'logit_*' --target species",
    related=("multiclass_hinge", "hinge", "cross_entropy"),
    extra={**_STR, "prepare": _prep_margin("multi_margin"), "check_params": _check_margin},
))

register(LossSpec(
    name="multiclass_hinge", aliases=("crammer_singer", "multiclass_hinge_loss"),
    kind="multiclass", fn=L.ignore_space(multiclass_hinge),
    space="scores",
    params=(Param("space", str, "scores", "class scores (logits are scores too)", choices=("scores", "logits")),),
    summary="Crammer-Singer multiclass hinge loss (sklearn hinge_loss, multiclass).",
    formula="l = max(0, 1 - (f_y - max_{j != y} f_j))",
    latex=r"\ell = \max\left(0, 1 - f_y + \max_{j\ne y} f_j\right)",
    reference="sklearn.metrics.hinge_loss (multiclass); optax.losses.multiclass_hinge_loss",
    when="Multiclass max-margin scoring: zero once the true class beats every other by 1. sklearn needs all "
         "classes in y_true or labels=; here the score width fixes them.",
    reduction_note="mean = sum(w*l)/sum(w) (sklearn with sample_weight)",
    example="lossctl eval sample_data/multiclass.csv -l multiclass_hinge --pred 'logit_*' --target species",
    related=("multi_margin", "hinge"),
    extra={**_STR, "prepare": _prep_margin("multiclass_hinge")},
))

register(LossSpec(
    name="softmax_focal", aliases=("categorical_focal", "categorical_focal_crossentropy", "focal_multiclass"),
    kind="multiclass", fn=softmax_focal, space="probabilities",
    params=(Param("alpha", float, 0.25, "overall weight (Keras scalar alpha)", low=0.0),
            Param("gamma", float, 2.0, "focusing exponent on (1 - p_c)", low=0.0),
            Param("eps", float, KERAS_EPSILON, "clip p to [eps, 1-eps] (Keras 1e-7); 0 = no clip (exact "
                  "log_softmax for logits)", low=0.0, high=0.5, high_open=True),
            Param("label_smoothing", float, 0.0, "y(1-ls) + ls/C", low=0.0, high=1.0),
            Param("space", str, "probabilities", "probabilities (Keras default) or logits (from_logits)",
                  choices=("probabilities", "logits"))),
    summary="Softmax focal loss (Keras CategoricalFocalCrossentropy): cross-entropy down-weighted on easy classes.",
    formula="l = -sum_c alpha (1 - p_c)^gamma y_c log p_c, p clipped to [eps, 1-eps]",
    latex=r"\ell = -\sum_c \alpha (1-p_c)^\gamma\, y_c \log p_c",
    reference="keras.losses.CategoricalFocalCrossentropy",
    when="Imbalanced multiclass problems where easy examples dominate cross-entropy. Keras semantics: softmax "
         "based (segmentation_models_pytorch's focal is sigmoid one-vs-all: use focal on the columns), "
         "probability rows renormalised to sum 1, p clipped to [1e-7, 1-1e-7], so a confident mistake costs at "
         "most alpha*16.12.",
    reduction_note="mean = sum(w*l)/sum(w) (Keras sum_over_batch_size with sample weights)",
    example="lossctl eval sample_data/multiclass.csv -l softmax_focal:gamma=2 --pred 'p_*' --target species",
    related=("focal", "cross_entropy"),
    extra={**_STR, "prepare": _prep_softmax_focal},
))

register(LossSpec(
    name="multilabel_soft_margin", aliases=("multilabel_soft_margin_loss", "multilabelsoftmargin"),
    kind="multilabel", fn=multilabel_soft_margin, space="logits", params=(_CW,),
    summary="Multi-label soft margin loss: mean over labels of the logistic loss (torch MultiLabelSoftMarginLoss).",
    formula="l = -(1/C) sum_c w_c [y_c log s(x_c) + (1 - y_c) log s(-x_c)]",
    latex=r"\ell = -\frac1C \sum_c w_c\left[y_c\log\sigma(x_c) + (1-y_c)\log\sigma(-x_c)\right]",
    reference="torch.nn.MultiLabelSoftMarginLoss",
    when="Multi-label files: one logit column and one 0/1 target column per label. Equals bce_with_logits on "
         "the same columns (mean over labels) with optional per-label weights.",
    reduction_note="mean = sum(s*l)/sum(s) (torch divides by N)",
    example="lossctl eval sample_data/binary.parquet -l multilabel_soft_margin --pred 'tag_logit_*' "
            "--target 'tag_[0-9]'",
    related=("bce_with_logits", "focal"),
    extra={"prepare": _prep_multilabel, "check_params": L.check_class_weights_param},
))
