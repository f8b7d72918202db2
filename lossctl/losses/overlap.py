"""Overlap losses: soft masks (segmentation) and bounding boxes (detection).

Masks
-----
``dice``, ``iou`` (Jaccard), ``tversky`` and ``focal_tversky`` compare a predicted mask with a target mask.
Shapes: ``pred`` and ``target`` are (n, k) -- one flattened mask per row (a Parquet list column, or several
columns) -- or (n,) -- one pixel per row (then ``--by image_id`` gives one value per image).  Values are
probabilities in [0, 1] (``space=logits``: sigmoid, or softmax over the classes when ``classes > 1``);
targets are 0/1 or soft in [0, 1].

Every mask loss is a function of three sums (Keras / optax convention: the intersection is sum(p t), not
sum(min(p, t)) as in segmentation_models_pytorch 0.6)::

    I  = sum p t            (soft true positives)
    FP = sum p (1 - t)      (= P - I, with P = sum p)
    FN = sum (1 - p) t      (= T - I, with T = sum t)

    dice    = 1 - (2I + s) / (P + T + s)         = (FP + FN)        / (2I + FP + FN + s)
    iou     = 1 - (I + s)  / (P + T - I + s)     = (FP + FN)        / (I + FP + FN + s)
    tversky = 1 - (I + s)  / (I + a FP + b FN + s) = (a FP + b FN)  / (I + a FP + b FN + s)
    focal_tversky = tversky ** gamma

The right-hand forms are what is computed: summing FP and FN directly and never forming 1 - ratio keeps
full relative accuracy for near-perfect masks, where P - I and 1 - ratio cancel.  0/0 (both masks empty
with s = 0; only possible then) is defined as loss 0: two empty masks agree perfectly.  optax gives NaN
there with smooth = 0 and 0 with its default smooth = 1, so the convention is optax's limit.

Reduction: the per-row terms I, FP, FN are summed with the sample weights and merged across batches by
adding; ``average=dataset`` (default) reports the ratio of the summed terms (global / micro Dice over all
pixels of all masks, or of each ``--by`` group), which is not the mean of per-batch or per-row ratios.
``average=sample`` reports the (weighted) mean of the per-row losses (optax / Keras ``reduction='mean'``
over a batch of masks).  ``-r none`` gives each row's own loss under either setting.

Classes: ``classes=C`` splits each row of k = C m values into C masks of m pixels, laid out pixel-major
(``class_axis=last``: value j belongs to class j % C, an (H, W, C) array flattened) or class-major
(``class_axis=first``: (C, H, W) flattened).  Each class gets its own I, FP, FN; the loss is the unweighted
mean of the C per-class losses (optax ``dice_loss`` reduction='mean' over classes), per row and at the
dataset level.  A class absent from both masks in a row (or in the whole input) counts as loss 0 with
s = 0 -- the optax value with any s > 0 -- and stays in the mean.

Boxes
-----
``box_iou``, ``giou``, ``diou`` and ``ciou`` reproduce torchvision.ops (generalized_ / distance_ /
complete_box_iou_loss, reduction='none', eps=1e-7) on (n, 4) boxes, converted from ``box_format`` xywh or
cxcywh to xyxy first (torchvision.ops.box_convert).  Boxes with x2 < x1 or y2 < y1 are input errors
(zero-area boxes are allowed).  Two details, both documented in the loss entries: CIoU's aspect angle is
torchvision's atan(w / h) (pi/2 for a zero-height box, as there), except for a zero-width zero-height box,
where torchvision gives NaN (0/0) and lossctl uses angle 0; and torchvision's CIoU passes ``eps`` to its
alpha term only (the IoU and distance terms keep 1e-7) -- lossctl does the same, so the values agree.

Every function is checked against a torch reference in tests/test_parity_overlap.py.
"""
from __future__ import annotations

import math

import numpy as np

from ..registry import LossSpec, Param, register
from ._numerics import as_f64, log_softmax, sigmoid

# ============================================================================================ masks ===


def _safe_ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den with 0/0 = 0.  Callers guarantee 0 <= num <= den, so den == 0 only when num == 0."""
    num = as_f64(num)
    den = as_f64(den)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = num / den
    return np.where(den == 0, 0.0, out)


def _split_classes(x: np.ndarray, classes: int, class_axis: str) -> np.ndarray:
    """(n, k) -> (n, C, m): class c's pixels in [:, c, :]."""
    n, k = x.shape
    m = k // classes
    if class_axis == "last":
        return x.reshape(n, m, classes).transpose(0, 2, 1)
    return x.reshape(n, classes, m)


def _probs(p: np.ndarray, classes: int, space: str) -> np.ndarray:
    """(n, C, m) scores -> probabilities: as given, sigmoid (one class) or softmax over classes."""
    if space == "probabilities":
        return p
    if classes == 1:
        return sigmoid(p)
    # softmax over the class axis via log-softmax: no overflow for logits of +-1e4
    return np.exp(log_softmax(p, axis=1))


def mask_stats(pred, target, *, classes: int = 1, class_axis: str = "last",
               space: str = "probabilities") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-row, per-class soft intersection I, false positives FP and false negatives FN, each (n, C).

    ``pred`` and ``target`` are (n,) (one pixel per row) or (n, k) with k a multiple of ``classes``.

    >>> I, FP, FN = mask_stats([[1.0, 0.5, 0.0]], [[1.0, 1.0, 0.0]])
    >>> I.tolist(), FP.tolist(), FN.tolist()
    ([[1.5]], [[0.0]], [[0.5]])
    """
    p = as_f64(pred)
    t = as_f64(target)
    if p.ndim == 1:
        p = p[:, None]
    if t.ndim == 1:
        t = t[:, None]
    if p.shape != t.shape:
        raise ValueError(f"pred {p.shape} and target {t.shape} masks differ in shape")
    if p.shape[1] % classes:
        raise ValueError(f"mask length {p.shape[1]} is not a multiple of classes={classes}")
    p = _probs(_split_classes(p, classes, class_axis), classes, space)
    t = _split_classes(t, classes, class_axis)
    # FP and FN are summed directly rather than as P - I and T - I, which cancel for near-perfect masks.
    inter = np.sum(p * t, axis=2)
    fp = np.sum(p * (1.0 - t), axis=2)
    fn = np.sum((1.0 - p) * t, axis=2)
    return inter, fp, fn


def _loss_from_stats(name: str, inter, fp, fn, *, smooth: float, alpha: float = 0.5, beta: float = 0.5,
                     gamma: float = 1.0) -> np.ndarray:
    """The mask loss of each (row, class) -- or of summed stats -- from I, FP, FN (see module docstring)."""
    if name == "dice":
        err = fp + fn
        return _safe_ratio(err, 2.0 * inter + err + smooth)
    if name == "iou":
        err = fp + fn
        return _safe_ratio(err, inter + err + smooth)
    err = alpha * fp + beta * fn
    loss = _safe_ratio(err, inter + err + smooth)
    if name == "focal_tversky":
        loss = loss ** gamma
    return loss


def _mask_fn(name: str):
    def fn(pred, target, *, smooth: float = 0.0, alpha: float = 0.5, beta: float = 0.5, gamma: float = 1.0,
           classes: int = 1, class_axis: str = "last", space: str = "probabilities",
           average: str = "dataset", class_index: int = -1) -> np.ndarray:
        inter, fp, fn_ = mask_stats(pred, target, classes=classes, class_axis=class_axis, space=space)
        per_class = _loss_from_stats(name, inter, fp, fn_, smooth=smooth, alpha=alpha, beta=beta, gamma=gamma)
        return _class_value(per_class, class_index)
    return fn


def _class_value(per_class: np.ndarray, class_index: int) -> np.ndarray:
    """(n, C) per-class losses -> (n,): the mean over classes, or class ``class_index`` alone."""
    if class_index >= 0:
        if class_index >= per_class.shape[1]:
            raise ValueError(f"class_index={class_index} but the masks have {per_class.shape[1]} classes")
        return per_class[:, class_index]
    return np.mean(per_class, axis=1)


def _mask_terms(name: str):
    def terms(pred, target, *, smooth: float = 0.0, alpha: float = 0.5, beta: float = 0.5, gamma: float = 1.0,
              classes: int = 1, class_axis: str = "last", space: str = "probabilities",
              average: str = "dataset", class_index: int = -1) -> dict:
        inter, fp, fn_ = mask_stats(pred, target, classes=classes, class_axis=class_axis, space=space)
        out: dict = {}
        for c in range(inter.shape[1]):
            out[f"inter_{c}"] = inter[:, c]
            out[f"fp_{c}"] = fp[:, c]
            out[f"fn_{c}"] = fn_[:, c]
        # each row's own loss (for average=sample and -r sum), from the same stats as the function
        per_class = _loss_from_stats(name, inter, fp, fn_, smooth=smooth, alpha=alpha, beta=beta, gamma=gamma)
        out["loss"] = _class_value(per_class, class_index)
        out["norm"] = 1.0
        return out
    return terms


def _mask_finalize(name: str):
    def finalize(sums, params) -> float:
        if params.get("average", "dataset") == "sample":
            norm = sums.get("norm", sums.get("_w", 0.0))
            return sums.get("loss", 0.0) / norm if norm else math.nan
        c_count = int(params.get("classes", 1))
        k = int(params.get("class_index", -1))
        per_class = [
            float(_loss_from_stats(name, np.float64(sums.get(f"inter_{c}", 0.0)),
                                   np.float64(sums.get(f"fp_{c}", 0.0)), np.float64(sums.get(f"fn_{c}", 0.0)),
                                   smooth=params.get("smooth", 0.0), alpha=params.get("alpha", 0.5),
                                   beta=params.get("beta", 0.5), gamma=params.get("gamma", 1.0)))
            for c in range(c_count)
        ]
        return per_class[k] if k >= 0 else float(np.mean(per_class))
    return finalize


def _check_mask_params(params) -> None:
    k, c = int(params.get("class_index", -1)), int(params.get("classes", 1))
    if k >= c:
        from ..errors import UsageError
        raise UsageError(f"class_index={k} needs classes > {k} (classes={c}); class_index is 0-based, "
                         f"-1 averages over the classes")


def _prep_masks(arrays, params, ctx):
    """Check mask shapes and ranges; name the first offending row."""
    roles = ("pred", "target")
    p, t = arrays["pred"], arrays["target"]
    for role, x in zip(roles, (p, t)):
        if x.dtype.kind not in "fiub":
            raise ctx.error(role, None, "masks must be numbers (probabilities or 0/1), not text")
        if x.ndim > 2:
            raise ctx.error(role, None, "a mask must be one number per row or one flat list per row")
    ps = p.shape if p.ndim == 2 else (len(p), 1)
    ts = t.shape if t.ndim == 2 else (len(t), 1)
    if ps != ts:
        raise ctx.error("target", None, f"target masks have {ts[1]} values per row but predictions have "
                                        f"{ps[1]}; both masks must have the same size")
    c = params.get("classes", 1)
    if ps[1] % c:
        raise ctx.error("pred", None, f"a row holds {ps[1]} values, not a multiple of classes={c}; set "
                                      f"classes to the number of class channels in each mask")
    checks = [("target", t)]
    if params.get("space", "probabilities") == "probabilities":
        checks.insert(0, ("pred", p))
    for role, x in checks:
        bad = (x < 0) | (x > 1)
        if bad.any():
            flat = bad.reshape(len(x), -1).any(axis=1)
            i = int(np.argmax(flat))
            v = x[i] if x.ndim == 1 else x[i][bad[i]][0]
            hint = (" (for logits pass --logits or space=logits)" if role == "pred" else
                    " (targets are 0/1 or soft labels in [0, 1])")
            raise ctx.error(role, i, f"mask value {float(v)!r} outside [0, 1]{hint}")
    return arrays


_MASK_PARAMS = (
    Param("smooth", float, 0.0, "added to numerator and denominator (optax default 1; 0 = exact ratio, "
          "with 0/0 = loss 0)", low=0.0),
    Param("average", str, "dataset", "dataset: ratio of summed I, FP, FN over all rows (or each --by group); "
          "sample: mean of the per-row losses", choices=("dataset", "sample")),
    Param("classes", int, 1, "class channels per mask row (per-class losses, averaged)", low=1),
    Param("class_index", int, -1, "with classes > 1: the loss of this class alone (0-based; one -l per class "
          "reports each class), -1 = the mean over classes", low=-1),
    Param("class_axis", str, "last", "layout of a row with classes > 1: last = (H, W, C) flattened, "
          "first = (C, H, W) flattened", choices=("last", "first")),
    Param("space", str, "probabilities", "probabilities as given, or logits (sigmoid; softmax over classes "
          "when classes > 1); --logits sets it", choices=("probabilities", "logits")),
)
_TV_PARAMS = (
    Param("alpha", float, 0.5, "weight of false positives FP = sum p(1-t)", low=0.0),
    Param("beta", float, 0.5, "weight of false negatives FN = sum (1-p)t", low=0.0),
)
_MASK_NOTE = ("mean (average=dataset, default) = loss of the summed weighted terms sum w*I, sum w*FP, "
              "sum w*FN over all rows (a ratio of sums, merged across batches by adding; per class then "
              "averaged); average=sample: sum(w*l)/sum(w) of the per-row losses; sum = sum(w*l) of the per-row "
              "losses; none = each row's own ratio")
_MASK_WHEN = ("Rows are whole masks (list column) or single pixels (then group pixels into images with --by). "
              "Intersection is sum(p*t) (Keras/optax), so soft predictions are scored without thresholding. "
              "Two empty masks score 0 (perfect) with smooth=0. With classes=C each row holds C masks; the loss is "
              "the unweighted mean of the C per-class losses (optax), a class absent from both masks counting "
              "as 0 (perfect) and staying in the mean; class_index=k reports class k alone (one -l per class "
              "for a per-class table). ")


def _register_mask(name, aliases, summary, formula, latex, reference, when, extra_params=(), related=(),
                   example=""):
    register(LossSpec(
        name=name, aliases=aliases, kind="mask", fn=globals()[name], space="probabilities",
        params=extra_params + _MASK_PARAMS, summary=summary, formula=formula, latex=latex,
        reference=reference, when=_MASK_WHEN + when, related=related,
        example=example or f"lossctl eval sample_data/masks.parquet -l {name} --pred prob_mask --target mask",
        terms=_mask_terms(name), finalize=_mask_finalize(name), reduction_note=_MASK_NOTE,
        extra={"prepare": _prep_masks, "has_sum": True, "check_params": _check_mask_params},
    ))


dice = _mask_fn("dice")
dice.__name__ = dice.__qualname__ = "dice"
dice.__doc__ = """Soft Dice loss per row: 1 - (2 I + s) / (P + T + s), I = sum(p t).

Reference: optax.losses.dice_loss (alpha = beta = 0.5 there is (I + s) / ((P + T)/2 + s), i.e. this with
smooth 2s); keras.losses.Dice (s = 0, with a 1e-7 epsilon in the denominator).

>>> dice([[1.0, 1.0, 0.0, 0.0]], [[1.0, 0.0, 0.0, 0.0]]).round(6).tolist()
[0.333333]
>>> dice([[0.0, 0.0]], [[0.0, 0.0]]).tolist()  # two empty masks agree
[0.0]
"""
iou = _mask_fn("iou")
iou.__name__ = iou.__qualname__ = "iou"
iou.__doc__ = """Soft IoU (Jaccard) loss per row: 1 - (I + s) / (P + T - I + s), I = sum(p t).

Reference: 1 - soft Jaccard index (segmentation_models_pytorch JaccardLoss with sum(p t) intersection);
for 0/1 masks 1 - sklearn.metrics.jaccard_score.

>>> iou([[1.0, 1.0, 0.0, 0.0]], [[1.0, 0.0, 0.0, 0.0]]).tolist()
[0.5]
"""
tversky = _mask_fn("tversky")
tversky.__name__ = tversky.__qualname__ = "tversky"
tversky.__doc__ = """Tversky loss per row: 1 - (I + s) / (I + alpha FP + beta FN + s).

alpha weighs false positives, beta false negatives (Salehi et al. 2017; optax dice_loss(alpha, beta),
keras.losses.Tversky).  alpha = beta = 0.5 with s = 0 is Dice; alpha = beta = 1 is IoU.

>>> tversky([[1.0, 1.0, 0.0, 0.0]], [[1.0, 0.0, 0.0, 0.0]], alpha=0.3, beta=0.7).round(6).tolist()
[0.230769]
"""
focal_tversky = _mask_fn("focal_tversky")
focal_tversky.__name__ = focal_tversky.__qualname__ = "focal_tversky"
focal_tversky.__doc__ = """Focal Tversky loss per row: (1 - TI) ** gamma, TI the Tversky index.

Abraham & Khan 2019 write (1 - TI)^(1/g) with g = 4/3; gamma here is that exponent directly
(segmentation_models_pytorch TverskyLoss(gamma)), so gamma = 0.75 is their setting.

>>> focal_tversky([[1.0, 1.0, 0.0, 0.0]], [[1.0, 0.0, 0.0, 0.0]], alpha=0.3, beta=0.7, gamma=1.0).round(6).tolist()
[0.230769]
"""

_register_mask(
    "dice", ("dice_loss", "soft_dice", "sorensen_dice"),
    "Soft Dice loss 1 - 2|P∩T|/(|P|+|T|) for segmentation masks; dataset value is a ratio of sums.",
    "l = 1 - (2 sum(p t) + s) / (sum p + sum t + s)",
    r"\ell = 1 - \frac{2\sum_i p_i t_i + s}{\sum_i p_i + \sum_i t_i + s}",
    "optax.losses.dice_loss (alpha=beta=0.5); keras.losses.Dice",
    "Standard for imbalanced foreground/background segmentation (ignores true negatives). Dataset-level "
    "(micro) Dice weights large objects more; average=sample gives every mask equal weight.",
    related=("iou", "tversky", "focal_tversky", "bce"),
)
_register_mask(
    "iou", ("jaccard", "soft_jaccard", "jaccard_loss", "soft_iou"),
    "Soft IoU / Jaccard loss 1 - |P∩T|/|P∪T| for segmentation masks; dataset value is a ratio of sums.",
    "l = 1 - (sum(p t) + s) / (sum p + sum t - sum(p t) + s)",
    r"\ell = 1 - \frac{\sum_i p_i t_i + s}{\sum_i p_i + \sum_i t_i - \sum_i p_i t_i + s}",
    "segmentation_models_pytorch JaccardLoss (intersection sum(p t)); 1 - sklearn jaccard_score on 0/1 masks",
    "The segmentation benchmark metric (mIoU); stricter than Dice (IoU = D/(2-D)). For boxes use box_iou.",
    related=("dice", "tversky", "box_iou"),
)
_register_mask(
    "tversky", ("tversky_loss",),
    "Tversky loss: Dice with separate weights on false positives (alpha) and false negatives (beta).",
    "l = 1 - (I + s) / (I + alpha FP + beta FN + s); I = sum p t, FP = sum p(1-t), FN = sum (1-p)t",
    r"\ell = 1 - \frac{I + s}{I + \alpha\,FP + \beta\,FN + s}",
    "optax.losses.dice_loss(alpha, beta); keras.losses.Tversky",
    "beta > alpha penalises missed foreground more (small lesions: alpha=0.3, beta=0.7). alpha=beta=0.5 is "
    "Dice, alpha=beta=1 is IoU (with smooth=0).",
    extra_params=_TV_PARAMS, related=("dice", "focal_tversky", "iou"),
    example="lossctl eval sample_data/masks.parquet -l tversky:alpha=0.3,beta=0.7 --pred prob_mask --target mask",
)
_register_mask(
    "focal_tversky", ("focal_tversky_loss", "ftl"),
    "Focal Tversky loss (1 - Tversky index)^gamma: emphasises masks that are segmented badly.",
    "l = (1 - (I + s) / (I + alpha FP + beta FN + s)) ** gamma",
    r"\ell = \left(1 - \frac{I + s}{I + \alpha\,FP + \beta\,FN + s}\right)^{\gamma}",
    "Abraham & Khan 2019 (exponent 1/gamma there); segmentation_models_pytorch TverskyLoss(gamma)",
    "gamma < 1 (0.75, the paper's 1/(4/3)) raises the loss of well-segmented masks less than of bad ones "
    "when averaged per sample; with classes > 1 gamma applies per class before the class mean.",
    extra_params=(Param("alpha", float, 0.3, "weight of false positives FP = sum p(1-t)", low=0.0),
                  Param("beta", float, 0.7, "weight of false negatives FN = sum (1-p)t", low=0.0),
                  Param("gamma", float, 0.75, "focal exponent on (1 - TI)", low=0.0, low_open=True)),
    related=("tversky", "dice"),
)

# ============================================================================================ boxes ===

TORCHVISION_EPS = 1e-7
BOX_FORMATS = ("xyxy", "xywh", "cxcywh")


def to_xyxy(boxes, box_format: str = "xyxy") -> np.ndarray:
    """(n, 4) boxes in ``box_format`` as (x1, y1, x2, y2), as torchvision.ops.box_convert.

    >>> to_xyxy([[10.0, 20.0, 4.0, 6.0]], "cxcywh").tolist()
    [[8.0, 17.0, 12.0, 23.0]]
    """
    b = as_f64(boxes)
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"boxes must be (n, 4), got shape {b.shape}")
    if box_format == "xyxy":
        return b
    a, c, w, h = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    if box_format == "xywh":
        return np.stack([a, c, a + w, c + h], axis=1)
    if box_format == "cxcywh":
        return np.stack([a - 0.5 * w, c - 0.5 * h, a + 0.5 * w, c + 0.5 * h], axis=1)
    raise ValueError(f"unknown box_format {box_format!r}; use one of {', '.join(BOX_FORMATS)}")


def _box_parts(pred, target, box_format: str):
    b1 = to_xyxy(pred, box_format)
    b2 = to_xyxy(target, box_format)
    if b1.shape != b2.shape:
        raise ValueError(f"pred {b1.shape} and target {b2.shape} box arrays differ in shape")
    bad = (b1[:, 2] < b1[:, 0]) | (b1[:, 3] < b1[:, 1]) | (b2[:, 2] < b2[:, 0]) | (b2[:, 3] < b2[:, 1])
    if bad.any():
        raise ValueError(f"invalid box (x2 < x1 or y2 < y1) in row {int(np.argmax(bad))}")
    return b1.T, b2.T


def _inter_union(p, g):
    """torchvision.ops._utils._loss_inter_union: intersection 0 unless both overlaps are positive."""
    x1, y1, x2, y2 = p
    x1g, y1g, x2g, y2g = g
    xk1 = np.maximum(x1, x1g)
    yk1 = np.maximum(y1, y1g)
    xk2 = np.minimum(x2, x2g)
    yk2 = np.minimum(y2, y2g)
    overlap = (yk2 > yk1) & (xk2 > xk1)
    inter = np.where(overlap, (xk2 - xk1) * (yk2 - yk1), 0.0)
    union = (x2 - x1) * (y2 - y1) + (x2g - x1g) * (y2g - y1g) - inter
    return inter, union


def _enclosing(p, g):
    x1, y1, x2, y2 = p
    x1g, y1g, x2g, y2g = g
    return np.minimum(x1, x1g), np.minimum(y1, y1g), np.maximum(x2, x2g), np.maximum(y2, y2g)


def box_iou_loss(pred, target, *, box_format: str = "xyxy", eps: float = TORCHVISION_EPS) -> np.ndarray:
    """1 - IoU of paired boxes, IoU = inter / (union + eps) as in torchvision's box losses.

    Reference: the IoU term of torchvision.ops.generalized_box_iou_loss (1 - torchvision.ops.box_iou
    diagonal, up to eps).

    >>> box_iou_loss([[0.0, 0.0, 2.0, 2.0]], [[1.0, 0.0, 3.0, 2.0]], eps=0.0).tolist()
    [0.6666666666666667]
    """
    p, g = _box_parts(pred, target, box_format)
    inter, union = _inter_union(p, g)
    return 1.0 - inter / (union + eps)


def giou_loss(pred, target, *, box_format: str = "xyxy", eps: float = TORCHVISION_EPS) -> np.ndarray:
    """Generalized IoU loss 1 - IoU + (C - U)/C, C the smallest enclosing box (Rezatofighi et al. 2019).

    Reference: torchvision.ops.generalized_box_iou_loss(reduction='none', eps).  In [0, 2); > 1 for
    disjoint boxes.

    >>> giou_loss([[0.0, 0.0, 1.0, 1.0]], [[2.0, 0.0, 3.0, 1.0]], eps=0.0).round(6).tolist()
    [1.333333]
    """
    p, g = _box_parts(pred, target, box_format)
    inter, union = _inter_union(p, g)
    iou = inter / (union + eps)
    xc1, yc1, xc2, yc2 = _enclosing(p, g)
    area_c = (xc2 - xc1) * (yc2 - yc1)
    return 1.0 - (iou - (area_c - union) / (area_c + eps))


def _diou(p, g, eps: float):
    inter, union = _inter_union(p, g)
    iou = inter / (union + eps)
    xc1, yc1, xc2, yc2 = _enclosing(p, g)
    diag2 = (xc2 - xc1) ** 2 + (yc2 - yc1) ** 2 + eps
    x1, y1, x2, y2 = p
    x1g, y1g, x2g, y2g = g
    # centres as (x2 + x1) / 2, torchvision's order of operations
    dist2 = ((x2 + x1) / 2 - (x1g + x2g) / 2) ** 2 + ((y2 + y1) / 2 - (y1g + y2g) / 2) ** 2
    return 1.0 - iou + dist2 / diag2, iou


def diou_loss(pred, target, *, box_format: str = "xyxy", eps: float = TORCHVISION_EPS) -> np.ndarray:
    """Distance IoU loss 1 - IoU + rho^2 / c^2: squared centre distance over squared enclosing diagonal.

    Reference: torchvision.ops.distance_box_iou_loss(reduction='none', eps) (Zheng et al. 2020).

    >>> diou_loss([[0.0, 0.0, 2.0, 2.0]], [[0.0, 0.0, 2.0, 2.0]], eps=0.0).tolist()
    [0.0]
    """
    p, g = _box_parts(pred, target, box_format)
    return _diou(p, g, eps)[0]


def _aspect_angle(w: np.ndarray, h: np.ndarray) -> np.ndarray:
    # torchvision: atan(w / h).  w / 0 = inf gives pi/2 there too; 0 / 0 (a point box) is NaN in torchvision
    # and angle 0 here (atan2(0, 0)), so a degenerate box costs no aspect penalty instead of poisoning a mean.
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.arctan(w / h)
    return np.where((w == 0) & (h == 0), 0.0, a)


def ciou_loss(pred, target, *, box_format: str = "xyxy", eps: float = TORCHVISION_EPS) -> np.ndarray:
    """Complete IoU loss: DIoU loss + alpha v, v = 4/pi^2 (atan(w_g/h_g) - atan(w/h))^2.

    alpha = v / (1 - IoU + v + eps).  Reference: torchvision.ops.complete_box_iou_loss(reduction='none',
    eps), which passes ``eps`` to alpha only -- its IoU and distance terms keep 1e-7; reproduced here.

    >>> ciou_loss([[0.0, 0.0, 2.0, 2.0]], [[0.0, 0.0, 2.0, 2.0]]).round(6).tolist()
    [0.0]
    """
    p, g = _box_parts(pred, target, box_format)
    d, iou = _diou(p, g, TORCHVISION_EPS)
    x1, y1, x2, y2 = p
    x1g, y1g, x2g, y2g = g
    v = (4.0 / (math.pi ** 2)) * (_aspect_angle(x2g - x1g, y2g - y1g) - _aspect_angle(x2 - x1, y2 - y1)) ** 2
    alpha = v / (1.0 - iou + v + eps)
    return d + alpha * v


def _prep_boxes(arrays, params, ctx):
    """(n, 4) numeric boxes, valid after conversion to xyxy; errors name the row and the format."""
    fmt = params.get("box_format", "xyxy")
    for role in ("pred", "target"):
        x = arrays[role]
        if x.dtype.kind not in "fiub":
            raise ctx.error(role, None, "box coordinates must be numbers")
        if x.ndim != 2 or x.shape[1] != 4:
            got = 1 if x.ndim == 1 else (x.shape[1] if x.ndim == 2 else x.shape[1:])
            raise ctx.error(role, None, f"a box needs 4 numbers per row ({_FORMAT_TEXT[fmt]}), got {got}; pass "
                                        f"four columns, e.g. --{role} 'x1,y1,x2,y2', or a list column of length 4")
        b = to_xyxy(x, fmt)
        for axis, (lo, hi) in (("x", (0, 2)), ("y", (1, 3))):
            bad = b[:, hi] < b[:, lo]
            if bad.any():
                i = int(np.argmax(bad))
                if fmt == "xyxy":
                    msg = (f"invalid box: {axis}2={float(b[i, hi])!r} < {axis}1={float(b[i, lo])!r}; boxes are "
                           f"read as xyxy (x1,y1,x2,y2) in the order given -- check the column order, or if "
                           f"the columns hold a width/height, pass --box-format xywh or cxcywh")
                else:
                    wh = "width" if axis == "x" else "height"
                    msg = (f"invalid box: negative {wh} {float(x[i, 2 if axis == 'x' else 3])!r} "
                           f"(box_format={fmt}: {_FORMAT_TEXT[fmt]})")
                raise ctx.error(role, i, msg)
    return arrays


_FORMAT_TEXT = {"xyxy": "x1, y1, x2, y2", "xywh": "x, y, width, height", "cxcywh": "centre x, centre y, width, height"}

_BOX_PARAMS = (
    Param("box_format", str, "xyxy", "xyxy = x1,y1,x2,y2; xywh = x,y,w,h; cxcywh = centre x,y,w,h "
          "(converted to xyxy as torchvision.ops.box_convert)", choices=BOX_FORMATS),
    Param("eps", float, TORCHVISION_EPS, "added to denominators (torchvision default 1e-7; > 0 keeps two "
          "zero-area boxes finite)", low=0.0, low_open=True),
)
_BOX_WHEN = ("Rows are (pred box, target box) pairs. Each box is 4 columns (or a list of 4) in box_format; "
             "x2 < x1 or y2 < y1 is an input error naming the row; zero-area boxes are allowed (IoU 0). ")
_BOX_NOTE = "mean = sum(w*l)/sum(w) of the per-box losses (torchvision reduction='mean' with unit weights)"


def _register_box(name, fn, aliases, summary, formula, latex, reference, when, related):
    register(LossSpec(
        name=name, aliases=aliases, kind="box", fn=fn, space="boxes", params=_BOX_PARAMS, summary=summary,
        formula=formula, latex=latex, reference=reference, when=_BOX_WHEN + when, related=related,
        example=(f"lossctl eval sample_data/boxes.csv -l {name} --pred 'pred_x1,pred_y1,pred_x2,pred_y2' "
                 f"--target 'x1,y1,x2,y2'"),
        reduction_note=_BOX_NOTE, extra={"prepare": _prep_boxes},
    ))


_register_box(
    "box_iou", box_iou_loss, ("box_iou_loss", "iou_box"),
    "Box IoU loss 1 - IoU of paired boxes.",
    "l = 1 - inter / (union + eps)", r"\ell = 1 - \frac{|B \cap B^{gt}|}{|B \cup B^{gt}| + \epsilon}",
    "torchvision.ops.box_iou (diagonal), IoU term of torchvision.ops.generalized_box_iou_loss",
    "Scale-invariant overlap; flat (loss 1, no gradient) for every non-overlapping pair -- prefer giou/diou "
    "to rank misses.", ("giou", "diou", "ciou", "iou"),
)
_register_box(
    "giou", giou_loss, ("giou_loss", "generalized_box_iou_loss", "generalized_iou"),
    "Generalized IoU loss: 1 - IoU + (enclosing area - union) / enclosing area.",
    "l = 1 - IoU + (C - U) / (C + eps), C = area of the smallest enclosing box",
    r"\ell = 1 - \mathrm{IoU} + \frac{|C| - |B \cup B^{gt}|}{|C| + \epsilon}",
    "torchvision.ops.generalized_box_iou_loss",
    "Distinguishes near from far misses (values in [0, 2), > 1 when boxes are disjoint).",
    ("box_iou", "diou", "ciou"),
)
_register_box(
    "diou", diou_loss, ("diou_loss", "distance_box_iou_loss", "distance_iou"),
    "Distance IoU loss: 1 - IoU + squared centre distance / squared enclosing diagonal.",
    "l = 1 - IoU + rho^2(b, b_gt) / (c^2 + eps)",
    r"\ell = 1 - \mathrm{IoU} + \frac{\rho^2(b, b^{gt})}{c^2 + \epsilon}",
    "torchvision.ops.distance_box_iou_loss",
    "Penalises centre offset directly; converges faster than GIoU when one box contains the other.",
    ("giou", "ciou", "box_iou"),
)
_register_box(
    "ciou", ciou_loss, ("ciou_loss", "complete_box_iou_loss", "complete_iou"),
    "Complete IoU loss: DIoU plus an aspect-ratio consistency term.",
    "l = 1 - IoU + rho^2/c^2 + alpha v; v = 4/pi^2 (atan(w_gt/h_gt) - atan(w/h))^2, alpha = v/(1 - IoU + v + eps)",
    r"\ell = 1 - \mathrm{IoU} + \frac{\rho^2}{c^2} + \alpha v,\ v = \frac{4}{\pi^2}\left(\arctan\frac{w^{gt}}"
    r"{h^{gt}} - \arctan\frac{w}{h}\right)^2",
    "torchvision.ops.complete_box_iou_loss",
    "Adds aspect-ratio agreement (YOLO-style box regression). As torchvision, eps reaches only alpha (IoU and "
    "distance keep 1e-7). A zero-width zero-height box gets aspect angle 0 here (torchvision: NaN).",
    ("diou", "giou", "box_iou"),
)
