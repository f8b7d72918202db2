"""Binary classification losses: one float64 value per sample from scores and 0/1 (or -1/+1) labels.

Shapes.  ``pred`` is one score column (n,) -- a probability, a logit or a decision value -- or (n, k) for
k independent binary labels (multi-label files), in which case ``target`` is (n, k) too and the
per-sample value is the mean over the k columns (so the reduced mean is torch's mean over all elements).
``log_loss``, ``brier`` and ``zero_one`` also take an (n, C) class-probability / score matrix with one
class label per row (scikit-learn's multiclass form).

Labels.  0/1 or -1/+1 (one coding per run), or two names (``--classes NEG,POS``, else sorted names, the
greater positive, as scikit-learn's LabelBinarizer).  torch-style losses (bce, bce_with_logits, focal) also
take soft labels in [0, 1].  The ``prepare`` hooks (``_prep_*``) map and validate; the functions assume
prepared input: labels in {0, 1} (margin losses: {-1, +1}).

Every function is checked against its reference in tests/test_parity_classification.py.
"""
from __future__ import annotations

import numpy as np

from ..errors import UsageError
from ..registry import LossSpec, Param, register
from . import _labels as L
from ._numerics import as_f64, log_sigmoid, sigmoid, softplus

# torch BCELoss clamps each log term at -100 (also in float64): p = 0 with y = 1 costs exactly 100.
TORCH_LOG_CLAMP = -100.0
F64_EPS = float(np.finfo(np.float64).eps)


def _rowmean(l: np.ndarray) -> np.ndarray:
    """Per-sample value of an elementwise loss: itself for (n,), the mean over labels for (n, k)."""
    return l if l.ndim == 1 else np.mean(l, axis=1)


def _bce_elementwise(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    # torch computes log(1 - p) as log1p(-p): exact for small p, where log(1 - p) loses all digits.
    with np.errstate(divide="ignore"):
        lp = np.maximum(np.log(p), TORCH_LOG_CLAMP)
        l1p = np.maximum(np.log1p(-p), TORCH_LOG_CLAMP)
    return -(y * lp + (1.0 - y) * l1p)


def _bce_logits_elementwise(x: np.ndarray, y: np.ndarray, pos_weight: float) -> np.ndarray:
    # -[pw y log s(x) + (1-y) log s(-x)] with log-sigmoid: no overflow for |x| = 1e4, no cancellation.
    # torch evaluates (1-y) x - (1 + (pw-1) y) log s(x), which for y = 0 and x << 0 subtracts two numbers of
    # size |x| and keeps only ~1e-16 |x| absolute accuracy; the two agree to that absolute error.
    return -(pos_weight * y * log_sigmoid(x) + (1.0 - y) * log_sigmoid(-x))


# -- probabilistic losses ----------------------------------------------------------------------------
def binary_cross_entropy(pred, target) -> np.ndarray:
    """Binary cross-entropy on probabilities, torch BCELoss semantics.

    l = -[y log p + (1 - y) log(1 - p)], each log clamped at -100 (so p = 0 with y = 1 gives 100).
    ``target`` may be a soft label in [0, 1].  (n, k) inputs give the mean over the k labels per row.

    Reference: torch.nn.BCELoss(reduction='none').

    >>> binary_cross_entropy([0.9, 0.0], [1.0, 1.0]).round(6).tolist()
    [0.105361, 100.0]
    """
    return _rowmean(_bce_elementwise(as_f64(pred), as_f64(target)))


def binary_cross_entropy_with_logits(pred, target, *, pos_weight: float = 1.0) -> np.ndarray:
    """Binary cross-entropy on logits, torch BCEWithLogitsLoss semantics.

    l = -[pw y log s(x) + (1 - y) log(1 - s(x))], s = sigmoid, computed with log-sigmoid.

    Reference: torch.nn.BCEWithLogitsLoss(pos_weight=pw, reduction='none').

    >>> binary_cross_entropy_with_logits([0.0, 1e4], [1.0, 0.0]).round(6).tolist()
    [0.693147, 10000.0]
    """
    return _rowmean(_bce_logits_elementwise(as_f64(pred), as_f64(target), float(pos_weight)))


def _pick_columns(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    """p[i, y[i]] for each row: a flat np.take on a C-ordered matrix (2x faster than take_along_axis's
    fancy indexing); labels outside [0, C) go to take_along_axis, which raises as before."""
    n, c = p.shape
    yi = y.astype(np.intp)
    if n and p.flags.c_contiguous and yi.min() >= 0 and yi.max() < c:
        yi += np.arange(0, n * c, c, dtype=np.intp)
        return np.take(p.reshape(-1), yi)
    return np.take_along_axis(p, yi[:, None], axis=1)[:, 0]


def log_loss(pred, target, *, eps: float = F64_EPS, row_sums: str = "warn") -> np.ndarray:
    """Logistic loss on probabilities, scikit-learn log_loss semantics (per sample).

    Binary (pred (n,) = P(positive), y in {0, 1}): l = -log(clip(p_y, eps, 1 - eps)) with p_1 = p,
    p_0 = 1 - p.  Multiclass (pred (n, C), y a class index, or (n, C) one-hot / soft rows):
    l = -sum_c y_c log(clip(p_c, eps, 1 - eps)).  eps = float64 machine epsilon, so p = 0 costs 36.04.
    row_sums='renormalize' divides each (n, C) row by its sum first (Keras); otherwise rows are used as
    given (sklearn only warns, in the prepare hook).

    Reference: sklearn.metrics.log_loss (its mean; normalize=False is lossctl's sum reduction).

    >>> log_loss([0.9, 0.0], [1.0, 1.0]).round(4).tolist()
    [0.1054, 36.0437]
    """
    p = as_f64(pred)
    checked = isinstance(target, L.Labels01)  # 0/1 labels the prepare hook checked
    y = as_f64(target)
    # Fast path, bit-identical to the general formula below: with hard labels only the label's own column
    # has y_c != 0, so the row's sum is exactly -log(clip(p_y)) (the other terms are exact zeros); one log
    # per row instead of one per class, and no (n, C) temporaries.
    if p.ndim == 1 and y.ndim == 1 and len(y) == len(p) and checked:
        # the prepare hook checked p in [0, 1] (or NaN) and y in {0, 1}: |(1 - y) - p| is p where y = 1 and
        # 1 - p (the same rounding) where y = 0, bit for bit what np.where(y == 1, p, 1 - p) gives, without
        # np.where's per-element branch (7x slower on shuffled labels)
        picked = np.subtract(1.0, y)
        np.subtract(picked, p, out=picked)
        np.abs(picked, out=picked)
    elif p.ndim == 1 and y.ndim == 1 and len(y) == len(p) and L.is_01(y):
        picked = np.where(y == 1, p, 1.0 - p)
    elif p.ndim == 2 and y.ndim == 1 and len(y) == len(p):
        picked = _pick_columns(p, y)
        if row_sums == "renormalize":
            picked = picked / np.sum(p, axis=1)
    else:
        picked = None
    if picked is not None:
        l = np.log(np.clip(picked, eps, 1.0 - eps, out=picked), out=picked)  # picked is always a new array
        return np.negative(l, out=l)
    if p.ndim == 1:
        # sklearn stacks [1 - p, p] and clips both columns; the same arithmetic here.
        p = np.stack([1.0 - p, p], axis=1)
        y = np.stack([1.0 - y, y], axis=1) if y.ndim == 1 else y
    else:
        if row_sums == "renormalize":
            p = p / np.sum(p, axis=1, keepdims=True)
        if y.ndim == 1:
            y = L.one_hot(y, p.shape[1])
    p = np.clip(p, eps, 1.0 - eps)
    return -np.sum(np.where(y == 0, 0.0, y * np.log(p)), axis=1)


def brier_score(pred, target, *, scale_by_half: str = "auto", row_sums: str = "warn") -> np.ndarray:
    """Brier score per sample, scikit-learn brier_score_loss semantics.

    l = sum_c (y_c - p_c)^2 over the class columns; a binary column p is the two columns [1 - p, p].
    scale_by_half: 'auto' halves for one column or two classes (binary, range [0, 1]) and not for C >= 3
    (range [0, 2]), as sklearn 1.9; 'true' / 'false' force it.  row_sums='renormalize' divides each
    (n, C) row by its sum first; otherwise rows are used as given (sklearn warns, in the prepare hook).

    Reference: sklearn.metrics.brier_score_loss(scale_by_half='auto').

    >>> brier_score([0.1, 0.9], [0.0, 0.0]).round(6).tolist()
    [0.01, 0.81]
    """
    p = as_f64(pred)
    y = as_f64(target)
    if p.ndim == 1:
        p = np.stack([1.0 - p, p], axis=1)
        y = np.stack([1.0 - y, y], axis=1)
    else:
        if row_sums == "renormalize":
            p = p / np.sum(p, axis=1, keepdims=True)
        if y.ndim == 1:
            y = L.one_hot(y, p.shape[1])
    d = y - p
    l = np.sum(d * d, axis=1)
    half = p.shape[1] < 3 if scale_by_half == "auto" else scale_by_half == "true"
    return 0.5 * l if half else l


def sigmoid_focal(pred, target, *, alpha: float = 0.25, gamma: float = 2.0, space: str = "logits") -> np.ndarray:
    """Sigmoid focal loss, torchvision.ops.sigmoid_focal_loss semantics.

    l = alpha_t (1 - p_t)^gamma BCE, p_t = p y + (1 - p)(1 - y), alpha_t = alpha y + (1 - alpha)(1 - y)
    (alpha = -1: alpha_t = 1).  space='logits' (torchvision): BCE with logits; space='probabilities':
    torch BCELoss on p (log clamped at -100).  (n, k) inputs give the mean over the k labels per row.

    Reference: torchvision.ops.sigmoid_focal_loss(reduction='none').

    >>> sigmoid_focal([0.0], [1.0]).round(6).tolist()   # 0.25 * 0.5**2 * log 2
    [0.043322]
    """
    x = as_f64(pred)
    y = as_f64(target)
    if space == "logits":
        ce = _bce_logits_elementwise(x, y, 1.0)
        # 1 - p_t = y s(-x) + (1-y) s(x): torchvision forms 1 - p_t from p = s(x), which rounds to 0 once
        # s(x) rounds to 1 (|x| > 37); this form keeps the tiny factor (values below ~1e-30 differ).
        q = y * sigmoid(-x) + (1.0 - y) * sigmoid(x)
    else:
        ce = _bce_elementwise(x, y)
        q = y * (1.0 - x) + (1.0 - y) * x
    l = ce * q ** gamma
    if alpha >= 0:
        l = (alpha * y + (1.0 - alpha) * (1.0 - y)) * l
    return _rowmean(l)


# -- margin losses (labels -1/+1, decision values f) -------------------------------------------------
def hinge(pred, target) -> np.ndarray:
    """Hinge loss max(0, 1 - y f), y in {-1, +1} (0/1 labels are mapped to -1/+1 by prepare).

    Reference: sklearn.metrics.hinge_loss (binary); keras.losses.Hinge.

    >>> hinge([0.5, -2.0, 3.0], [1.0, 1.0, -1.0]).tolist()
    [0.5, 3.0, 4.0]
    """
    return _rowmean(np.maximum(0.0, 1.0 - as_f64(target) * as_f64(pred)))


def squared_hinge(pred, target) -> np.ndarray:
    """Squared hinge loss max(0, 1 - y f)^2, y in {-1, +1}.

    Reference: keras.losses.SquaredHinge (0/1 labels converted to -1/+1, as Keras does).

    >>> squared_hinge([0.5, -2.0], [1.0, 1.0]).tolist()
    [0.25, 9.0]
    """
    h = np.maximum(0.0, 1.0 - as_f64(target) * as_f64(pred))
    return _rowmean(h * h)


def perceptron(pred, target) -> np.ndarray:
    """Perceptron loss max(0, -y f), y in {-1, +1}.

    Reference: optax.losses.perceptron_loss.

    >>> perceptron([0.5, -2.0], [1.0, 1.0]).tolist()
    [0.0, 2.0]
    """
    return _rowmean(np.maximum(0.0, -as_f64(target) * as_f64(pred)))


def exponential(pred, target) -> np.ndarray:
    """Exponential (AdaBoost) loss exp(-y f), y in {-1, +1}.

    Overflows to inf for y f < -709.78, where the value exceeds the float64 range.

    Reference: the AdaBoost loss (Friedman, Hastie & Tibshirani 2000); no library function.

    >>> exponential([0.0, 1.0], [1.0, -1.0]).round(6).tolist()
    [1.0, 2.718282]
    """
    with np.errstate(over="ignore"):
        return _rowmean(np.exp(-as_f64(target) * as_f64(pred)))


def logistic(pred, target) -> np.ndarray:
    """Logistic / soft-margin loss log(1 + exp(-y f)), y in {-1, +1}, computed as softplus(-y f).

    torch SoftMarginLoss evaluates log(1 + exp(-y f)) directly and returns inf once -y f > 709.78;
    the softplus form returns the finite value (-y f + log1p(exp(y f))) there and agrees elsewhere.

    Reference: torch.nn.SoftMarginLoss(reduction='none').

    >>> logistic([0.0, 1e4], [1.0, -1.0]).round(6).tolist()
    [0.693147, 10000.0]
    """
    return _rowmean(softplus(-as_f64(target) * as_f64(pred)))


def zero_one(pred, target, *, threshold: float | None = None, space: str = "probabilities") -> np.ndarray:
    """0-1 loss: 1 where the predicted class differs from the label, else 0.

    pred (n,): positive iff pred > threshold (default 0.5 for probabilities, 0 for logits / scores,
    log 0.5 for log-probabilities; a tie counts as negative, as sklearn's predict).  pred (n, C): the
    argmax (first on ties, as numpy / sklearn predict).  space='labels': pred holds predicted labels.
    target: labels (n,) (class indices / 0-1), or one-hot rows (n, C).

    Reference: sklearn.metrics.zero_one_loss (normalize=True is the mean, False the sum).

    >>> zero_one([0.7, 0.2, 0.5], [1.0, 1.0, 1.0]).tolist()
    [0.0, 1.0, 1.0]
    """
    p = np.asarray(pred)
    y = np.asarray(target)
    if space == "labels" or L.is_strings(p):
        yhat = p
    elif p.ndim == 2 and p.shape[1] > 1:
        yhat = np.argmax(p, axis=1).astype(np.float64)
    else:
        p = as_f64(p).reshape(len(p))
        t = _default_threshold(space) if threshold is None else float(threshold)
        yhat = (p > t).astype(np.float64)
    if y.ndim == 2:
        y = np.argmax(y, axis=1).astype(np.float64)
    return (yhat != y).astype(np.float64)


def _default_threshold(space: str) -> float:
    return {"probabilities": 0.5, "log-probabilities": float(np.log(0.5))}.get(space, 0.0)


# -- prepare hooks ---------------------------------------------------------------------------------------
def _prep_elementwise(loss: str, *, probs: bool, soft: bool, signed: bool):
    """Elementwise binary losses: pred (n,) or (n, k), target of the same shape."""
    def prepare(arrays, params, ctx):
        pred = L.binary_scores(arrays["pred"], ctx, "pred", loss)
        is_probs = probs if not isinstance(probs, str) else params.get("space") == "probabilities"
        if is_probs:
            L.check_unit_interval(pred, ctx, "pred", hint=_LOGIT_HINT.get(loss, "pass --logits if these are logits"))
        target = arrays["target"]
        if not L.is_strings(target) and target.ndim == 2 and target.shape[1] == 1:
            target = target[:, 0]
        target = L.binary_labels(target, ctx, "target", soft=soft, signed=signed)
        L.match_binary_shapes(pred, target, ctx, loss)
        return {"pred": pred, "target": target}
    return prepare


# what to say when a loss on probabilities gets values outside [0, 1] (logits, most likely)
_LOGIT_HINT = {
    "bce": "for logits use bce_with_logits (or focal --logits)",
    "log_loss": "for logits use bce_with_logits (one column) or cross_entropy (one column per class)",
    "brier": "brier takes probabilities; convert logits with a sigmoid / softmax first",
}


def _prep_proba(loss: str, *, consequence: str = "uses them as given (sklearn only warns; row_sums=error or "
                                                  "row_sums=renormalize to change that)"):
    """log_loss / brier: a P(positive) column with binary labels, or an (n, C) matrix with class labels."""
    def prepare(arrays, params, ctx):
        pred = L.binary_scores(arrays["pred"], ctx, "pred", loss)
        target = arrays["target"]
        L.check_unit_interval(pred, ctx, "pred", hint=_LOGIT_HINT[loss])
        if pred.ndim == 1:
            if not L.is_strings(target) and target.ndim == 2:
                raise ctx.error("target", None, f"{target.shape[1]} target columns for one probability column; "
                                                f"{loss} takes one label per row (0/1, -1/+1 or names)")
            target = L.binary_labels(target, ctx, "target")
        else:
            C = pred.shape[1]
            if not L.is_strings(target) and target.ndim == 2:
                target = L.targets_2d(target, ctx, "target", C)
            else:
                target = L.class_indices(target, ctx, "target", C)
            rows = params.get("row_sums", "warn")
            if rows == "renormalize":
                L.check_positive_rows(pred, ctx, "pred")
            else:
                L.check_row_sums(pred, ctx, "pred", loss, action=rows, consequence=consequence)
        return {"pred": pred, "target": target}
    return prepare


def _prep_zero_one(arrays, params, ctx):
    pred = np.asarray(arrays["pred"])
    target = arrays["target"]
    space = params.get("space", "probabilities")
    if space == "labels" or L.is_strings(pred):
        if pred.ndim != 1:
            raise ctx.error("pred", None, "predicted labels must be one column")
        if L.is_strings(pred) != L.is_strings(target):
            if L.is_strings(pred):
                raise ctx.error("pred", None, "predicted labels are names but the targets are numbers; "
                                              "use the same kind of label in both columns")
            width = len(ctx.options["classes"]) if ctx.options.get("classes") else None
            if width is None:
                raise ctx.error("target", None, "string labels with numeric predicted labels need --classes "
                                                "(class names in index order)")
            target = L.class_indices(target, ctx, "target", width)
        if not L.is_strings(pred):
            pred = np.asarray(pred, dtype=np.float64)
            if not L.is_strings(target) and np.asarray(target).ndim == 2:
                target = L.class_indices(np.argmax(target, axis=1).astype(np.float64), ctx, "target",
                                         np.asarray(target).shape[1])
        return {"pred": pred, "target": target}
    pred = L.binary_scores(pred, ctx, "pred", "zero_one")
    if pred.ndim == 1:
        if space == "probabilities":
            L.check_unit_interval(pred, ctx, "pred", hint="pass --logits (threshold 0) or zero_one:space=scores")
        if not L.is_strings(target) and target.ndim == 2:
            raise ctx.error("target", None, f"{target.shape[1]} target columns for one score column; "
                                            f"zero_one takes one label per row")
        target = L.binary_labels(target, ctx, "target")
    else:
        C = pred.shape[1]
        if not L.is_strings(target) and target.ndim == 2:
            t = L.targets_2d(target, ctx, "target", C)
            hot = (t == 0) | (t == 1)
            bad = ~hot.all(axis=1) | (t.sum(axis=1) != 1)
            if bad.any():
                i = L.first_row(bad)
                raise ctx.error("target", i, "zero_one needs one-hot target rows (exactly one 1), got soft labels")
            target = np.argmax(t, axis=1).astype(np.float64)
        else:
            target = L.class_indices(target, ctx, "target", C)
    return {"pred": pred, "target": target}


def _check_focal(params) -> None:
    a = params.get("alpha", 0.25)
    if not (0.0 <= a <= 1.0) and a != -1.0:
        raise UsageError(f"parameter 'alpha' of focal must be in [0, 1] or -1 (no weighting), got {a!r}")


# -- registration ----------------------------------------------------------------------------------------
_STR = {"string_roles": ("target",)}
_MULTILABEL_NOTE = ("(n, k) score columns with (n, k) targets are k binary labels: the per-sample value is "
                    "their mean, so the mean reduction equals torch's mean over all elements")

register(LossSpec(
    name="bce", aliases=("binary_cross_entropy", "bceloss", "binary_crossentropy"), kind="binary",
    fn=binary_cross_entropy, space="probabilities",
    summary="Binary cross-entropy on probabilities (torch BCELoss, log clamped at -100).",
    formula="l = -[y log p + (1 - y) log(1 - p)], each log clamped at -100",
    latex=r"\ell = -\left[y \log p + (1-y)\log(1-p)\right],\ \log(\cdot) \ge -100",
    reference="torch.nn.BCELoss",
    when="Binary or multi-label classifiers that output probabilities; a proper scoring rule, so it "
         "rewards calibration. p exactly 0 or 1 on the wrong side costs 100 (torch's clamp); sklearn's "
         "log_loss gives 36.04 there (float64 eps clip) and Keras 16.12 (1e-7). Soft labels in [0, 1] are "
         "allowed. For logits use bce_with_logits (more accurate than sigmoid then bce). torch has no BCE label "
         "smoothing; Keras's binary y(1-eps) + eps/2 is cross_entropy:label_smoothing=eps --probs on the two "
         "columns [1-p, p]. Empty input is an input error (exit 3, as sklearn raises; torch's mean is NaN).",
    reduction_note="mean = sum(w*l)/sum(w) with -w weights, as sklearn's sample_weight (torch BCELoss(weight=w) "
    "divides by n instead: use -r sum and divide by the row count for that); "
                   + _MULTILABEL_NOTE,
    example="lossctl eval sample_data/binary.parquet -l bce --pred prob --target label",
    related=("bce_with_logits", "log_loss", "focal", "brier"),
    extra={**_STR, "prepare": _prep_elementwise("bce", probs=True, soft=True, signed=False)},
))

register(LossSpec(
    name="bce_with_logits", aliases=("bcewithlogits", "sigmoid_cross_entropy", "binary_cross_entropy_with_logits"),
    kind="binary", fn=binary_cross_entropy_with_logits, space="logits",
    params=(Param("pos_weight", float, 1.0, "weight of the positive term (n_neg/n_pos balances classes)", low=0.0),),
    summary="Binary cross-entropy on logits with pos_weight (torch BCEWithLogitsLoss).",
    formula="l = -[pw y log s(x) + (1 - y) log(1 - s(x))], s = sigmoid",
    latex=r"\ell = -\left[p_w\, y \log\sigma(x) + (1-y)\log(1-\sigma(x))\right]",
    reference="torch.nn.BCEWithLogitsLoss",
    when="Binary or multi-label classifiers saved as logits. Uses log-sigmoid, so logits of +-1e4 give exact "
         "values (10000 for the wrong side) and never inf. pos_weight > 1 raises recall on imbalanced data. "
         "torch's own formula loses ~1e-16*|x| absolute accuracy when the loss is tiny (correct side, large "
         "|x|); lossctl keeps full relative accuracy there.",
    reduction_note="mean = sum(w*l)/sum(w) with -w weights, as sklearn's sample_weight (torch's weight= "
    "argument divides by n instead: use -r sum and divide by the row count for that); " + _MULTILABEL_NOTE,
    example="lossctl eval sample_data/binary.parquet -l bce_with_logits:pos_weight=3 --pred logit --target label",
    related=("bce", "logistic", "focal"),
    extra={**_STR, "prepare": _prep_elementwise("bce_with_logits", probs=False, soft=True, signed=False)},
))

register(LossSpec(
    grad=L.grad_with_row_sums("log_loss"),
    name="log_loss", aliases=("logloss", "multiclass_log_loss", "logistic_regression_loss"), kind="binary",
    fn=log_loss, space="probabilities",
    params=(Param("eps", float, F64_EPS, "clip probabilities to [eps, 1-eps]; sklearn: float64 machine eps "
                  "(p=0 costs 36.04); Keras: 1e-7 (16.12)", low=0.0, high=0.5, high_open=True),
            L.row_sums_param(("warn", "error", "renormalize"), "sklearn warns")),
    summary="Log loss / cross-entropy on probabilities, binary or multiclass (sklearn log_loss).",
    formula="l = -sum_c y_c log clip(p_c, eps, 1-eps); one column p means [1-p, p]",
    latex=r"\ell = -\sum_c y_c \log \operatorname{clip}(p_c, \epsilon, 1-\epsilon)",
    reference="sklearn.metrics.log_loss",
    when="Scoring saved predict_proba output: one P(positive) column for binary tasks or one column per "
         "class (class k = column k; string labels map through --classes, else sorted names, as sklearn). "
         "Clips at float64 eps (p=0 costs 36.04, where torch BCELoss gives 100). Rows that do not sum to 1 "
         "get a warning with the first row number and are used as given (sklearn only warns; torch and sklearn "
         "never renormalise, Keras does: row_sums=renormalize; row_sums=error makes it an input error). "
         "Empty input is an input error (exit 3), as sklearn raises (torch's mean would be NaN). sklearn needs "
         "labels= when one class is absent; here the score width fixes the classes. One-hot or soft target "
         "rows (n, C) are accepted.",
    reduction_note="mean = sum(w*l)/sum(w) (sklearn normalize=True with sample_weight); sum = normalize=False",
    example="lossctl eval sample_data/multiclass.csv -l log_loss --pred 'p_*' --target species",
    related=("bce", "cross_entropy", "brier", "zero_one"),
    extra={**_STR, "prepare": _prep_proba("log_loss")},
))

register(LossSpec(
    grad=L.grad_with_row_sums("brier"),
    name="brier", aliases=("brier_score", "brier_score_loss"), kind="binary", fn=brier_score,
    space="probabilities",
    params=(Param("scale_by_half", str, "auto", "halve the score: auto = for binary input only (sklearn 1.9)",
                  choices=("auto", "true", "false")),
            L.row_sums_param(("warn", "error", "renormalize"), "sklearn warns")),
    summary="Brier score: squared error of the predicted class probabilities (sklearn brier_score_loss).",
    formula="l = sum_c (y_c - p_c)^2, halved for binary input (scale_by_half=auto)",
    latex=r"\ell = \tfrac{1}{2}^{[\text{binary}]} \sum_c (y_c - p_c)^2",
    reference="sklearn.metrics.brier_score_loss",
    when="A proper scoring rule that, unlike log loss, stays bounded: a confident mistake costs at most 1 "
         "(binary) or 2 (multiclass). Binary input (one P(positive) column, or two class columns) is halved "
         "to the usual [0, 1] range; three or more classes are not (sklearn 1.9 scale_by_half='auto'). "
         "Rows not summing to 1 give a warning (sklearn; row_sums=error / renormalize change that).",
    reduction_note="mean = sum(w*l)/sum(w), as sklearn with sample_weight",
    example="lossctl eval sample_data/binary.parquet -l brier --pred prob --target churn",
    related=("log_loss", "bce", "mse"),
    extra={**_STR, "prepare": _prep_proba("brier")},
))

register(LossSpec(
    name="focal", aliases=("sigmoid_focal", "sigmoid_focal_loss", "binary_focal"), kind="binary",
    fn=sigmoid_focal, space="logits",
    params=(Param("alpha", float, 0.25, "weight of positives (1-alpha for negatives); -1 disables",
                  low=-1.0, high=1.0, range_note="[0, 1] or -1"),
            Param("gamma", float, 2.0, "focusing exponent on (1 - p_t); 0 gives alpha-weighted BCE", low=0.0),
            Param("space", str, "logits", "predictions are logits (torchvision) or probabilities "
                  "(--logits / --probs)", choices=("logits", "probabilities"))),
    summary="Sigmoid focal loss (torchvision sigmoid_focal_loss): BCE down-weighted on easy examples.",
    formula="l = alpha_t (1 - p_t)^gamma BCE(x, y), p_t = p y + (1-p)(1-y), alpha_t = alpha y + (1-alpha)(1-y)",
    latex=r"\ell = \alpha_t (1-p_t)^\gamma\,\mathrm{BCE},\ p_t = p y + (1-p)(1-y),\ "
          r"\alpha_t = \alpha y + (1-\alpha)(1-y)",
    reference="torchvision.ops.sigmoid_focal_loss",
    when="Dense detection and heavily imbalanced binary / multi-label tasks (RetinaNet): easy, confidently "
         "right examples are down-weighted by (1-p_t)^gamma. Default input is logits (torchvision); with "
         "--probs the BCE is torch BCELoss on p (log clamped at -100). (1-p_t) is computed as "
         "y s(-x) + (1-y) s(x), so for |x| > ~37 on the correct side lossctl returns the tiny true value where "
         "torchvision rounds it to 0 (both below 1e-30).",
    reduction_note="mean = sum(w*l)/sum(w) with -w weights (torchvision 'mean' when unweighted); " + _MULTILABEL_NOTE,
    example="lossctl eval sample_data/binary.csv -l focal:alpha=0.25,gamma=2 --logits",
    related=("bce_with_logits", "softmax_focal", "bce"),
    extra={**_STR, "prepare": _prep_elementwise("focal", probs="space", soft=True, signed=False),
           "check_params": _check_focal},
))

_MARGIN_SPACE = Param("space", str, "scores", "decision values; logits are decision values too (--logits)",
                      choices=("scores", "logits"))
_MARGIN_WHEN = (" Labels 0/1 are mapped to -1/+1 (sklearn/Keras); names map through --classes NEG,POS (else "
                "sorted, the greater positive). Scores are decision values f (logits, SVM margins).")


def _margin(name, aliases, fn, summary, formula, latex, reference, when, related):
    register(LossSpec(
        name=name, aliases=aliases, kind="binary", fn=L.ignore_space(fn),
        space="scores", params=(_MARGIN_SPACE,), summary=summary, formula=formula, latex=latex,
        reference=reference, when=when + _MARGIN_WHEN,
        reduction_note="mean = sum(w*l)/sum(w); (n, k) columns with (n, k) labels: mean over the k per row",
        example=f"lossctl eval sample_data/binary.csv -l {name} --pred logit --target label",
        related=related,
        extra={**_STR, "prepare": _prep_elementwise(name, probs=False, soft=False, signed=True)},
    ))


_margin("hinge", ("hinge_loss",), hinge,
        "Hinge loss max(0, 1 - y f) on decision values (sklearn hinge_loss, binary).",
        "l = max(0, 1 - y f), y in {-1, +1}", r"\ell = \max(0, 1 - y f)",
        "sklearn.metrics.hinge_loss; keras.losses.Hinge",
        "Max-margin classifiers (linear SVMs): zero once the margin y f reaches 1, linear beyond; not a "
        "probability score. For C class scores use multiclass_hinge (Crammer-Singer) or multi_margin.",
        ("squared_hinge", "multiclass_hinge", "perceptron", "logistic"))
_margin("squared_hinge", ("squaredhinge",), squared_hinge,
        "Squared hinge loss max(0, 1 - y f)^2 (Keras SquaredHinge).",
        "l = max(0, 1 - y f)^2, y in {-1, +1}", r"\ell = \max(0, 1 - y f)^2",
        "keras.losses.SquaredHinge",
        "Smooth (differentiable) margin loss, as L2-SVMs; punishes margin violations quadratically.",
        ("hinge", "logistic"))
_margin("perceptron", ("perceptron_loss",), perceptron,
        "Perceptron loss max(0, -y f): zero for any correct sign.",
        "l = max(0, -y f), y in {-1, +1}", r"\ell = \max(0, -y f)",
        "optax.losses.perceptron_loss",
        "Measures how far wrong-side predictions are, ignoring margins; 0 for every correctly signed score.",
        ("hinge", "zero_one"))
_margin("exponential", ("exp_loss", "adaboost"), exponential,
        "Exponential loss exp(-y f), the loss AdaBoost minimises.",
        "l = exp(-y f), y in {-1, +1}", r"\ell = e^{-y f}",
        "AdaBoost exponential loss (Friedman, Hastie & Tibshirani 2000); no library function",
        "Boosting diagnostics; very sensitive to outliers (grows exponentially with the wrong-side margin) "
        "and overflows to inf for y f < -709.78, where the value exceeds float64.",
        ("logistic", "hinge"))
_margin("logistic", ("soft_margin", "soft_margin_loss", "softmargin"), logistic,
        "Logistic / soft-margin loss log(1 + exp(-y f)) (torch SoftMarginLoss).",
        "l = log(1 + exp(-y f)) = softplus(-y f), y in {-1, +1}", r"\ell = \log(1 + e^{-y f})",
        "torch.nn.SoftMarginLoss",
        "Logistic regression's loss on -1/+1 labels; equal to bce_with_logits on 0/1 labels. Computed as "
        "softplus, so it stays finite where torch SoftMarginLoss overflows to inf (-y f > 709.78).",
        ("bce_with_logits", "hinge", "exponential"))

register(LossSpec(
    name="zero_one", aliases=("zero_one_loss", "0-1", "error_rate", "misclassification"), kind="binary",
    fn=zero_one, space="probabilities",
    params=(Param("threshold", float, None, "binary score threshold: positive iff score > threshold "
                  "(default 0.5 for probabilities, 0 for logits/scores)"),
            Param("space", str, "probabilities", "what pred holds; for several class columns the argmax is "
                  "used whatever the space; labels = predicted labels",
                  choices=("probabilities", "logits", "log-probabilities", "scores", "labels"))),
    summary="0-1 loss: the error rate (1 - accuracy), binary or multiclass (sklearn zero_one_loss).",
    formula="l = 1[yhat != y]; yhat = score > threshold, or argmax_c score_c",
    latex=r"\ell = \mathbb{1}[\hat y \ne y]",
    reference="sklearn.metrics.zero_one_loss",
    when="Plain error rate for dashboards and gates; not differentiable and blind to confidence (pair it "
         "with log_loss or brier). One score column: thresholded (strictly greater; 0.5 for probabilities, 0 "
         "for --logits); several columns: argmax, first on ties; space=labels (or a text column) compares "
         "predicted labels to targets.",
    reduction_note="mean = sum(w*l)/sum(w) = 1 - accuracy (sklearn normalize=True); sum = weighted count of "
                   "mistakes (normalize=False)",
    example="lossctl eval sample_data/multiclass.csv -l zero_one --pred 'p_*' --target species",
    related=("log_loss", "brier", "hinge"),
    extra={"string_roles": ("pred", "target"), "prepare": _prep_zero_one},
))
