"""Parity of the mask (dice, iou, tversky, focal_tversky) and box (box_iou, giou, diou, ciou) losses.

Where the golden values come from (neither optax nor torchvision is importable here):
* Masks: optax.losses.dice_loss (optax/losses/_segmentation.py) is JAX; ``_ref_mask`` transcribes its formula
  in torch ops -- I = sum p t, P = sum p, T = sum t, ratio = (I + s) / (I + alpha (P - I) + beta (T - I) + s),
  softmax over the class axis for multi-class logits, mean over classes -- plus the textbook Dice
  (2I + s) / (P + T + s) and Jaccard (I + s) / (P + T - I + s) (keras.losses.Dice uses the same sum(p t)).
  Note the reference forms 1 - ratio and P - I, as the libraries do; lossctl sums FP and FN directly.
* Boxes: torchvision 0.28.0 (the release for torch 2.13.0) does not import beside this torch build, so
  ``_tv_*`` transcribe torchvision/ops/giou_loss.py, diou_loss.py (``_diou_iou_loss``), ciou_loss.py,
  _utils.py (``_loss_inter_union``) and _box_convert.py line by line in torch ops (torchvision main,
  read via the pytorch/vision sources).
Hand-checkable cases (identical boxes, disjoint boxes, zero-area boxes, empty masks) are worked out in the
comments.  Tolerance: rtol 1e-10 in float64.
"""
from __future__ import annotations

import math
import random

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import lossctl
from lossctl import registry
from lossctl.api import BatchContext
from lossctl.errors import InputError, UsageError
from lossctl.io.columns import Binding
from lossctl.losses import overlap
from lossctl.state import SumState

RTOL = 1e-10
# The references form 1 - ratio (and P - I), which carries ~1e-16 absolute rounding error that is large
# relative to a near-zero loss; lossctl's FP/FN form does not.  This absolute floor covers the reference's
# own cancellation, nothing else.
ATOL_REF = 1e-13
SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MASK_LOSSES = ("dice", "iou", "tversky", "focal_tversky")
BOX_LOSSES = ("box_iou", "giou", "diou", "ciou")


def ctx_for(roles: dict[str, tuple[str, ...]], file: str = "data.parquet") -> BatchContext:
    bindings = {r: Binding(r, 0, cols, file) for r, cols in roles.items()}
    return BatchContext(bindings, {"classes": None, "class_weights": None, "space": None}, {})


def run_spec(name: str, arrays: dict, params: dict | None = None, ctx=None):
    """Run a loss as the pipeline does: resolve params, prepare hook, fn and terms."""
    spec = registry.get(name)
    p = spec.resolve_params(params or {})
    ctx = ctx or ctx_for({r: (r,) for r in spec.roles})
    prep = spec.extra.get("prepare")
    ins = prep(dict(arrays), p, ctx) if prep else arrays
    args = [ins[r] for r in spec.roles]
    values = spec.fn(*args, **p)
    terms = dict(spec.terms(*args, **p)) if spec.terms else {"loss": values}
    return spec, p, values, terms


def reduce_terms(spec, params, batches, weights=None, order=None):
    """Update one SumState per batch of terms (as the pipeline does), merge in ``order``, finalize."""
    states = []
    for k, terms in enumerate(batches):
        st_ = SumState()
        t = dict(terms)
        t["_w"] = 1.0
        st_.update(t, None if weights is None else weights[k])
        states.append(st_)
    order = order or list(range(len(states)))
    acc = SumState()
    for k in order:
        acc.merge(states[k])
    return spec.finalize(acc.totals(), params)


# ================================================================================ mask reference ===
def _ref_mask(name, p, t, *, smooth=0.0, alpha=0.5, beta=0.5, gamma=1.0, classes=1, class_axis="last",
              logits=False, dataset=False, weights=None, class_index=-1):
    """optax dice_loss-style reference in torch: per row (or summed over rows) per class, class mean."""
    P = torch.tensor(np.atleast_2d(np.asarray(p, dtype=np.float64).reshape(len(p), -1)), dtype=torch.float64)
    T = torch.tensor(np.asarray(t, dtype=np.float64).reshape(len(t), -1), dtype=torch.float64)
    n, k = P.shape
    m = k // classes
    if class_axis == "last":
        P, T = P.reshape(n, m, classes), T.reshape(n, m, classes)      # (n, pixels, C): optax layout
    else:
        P, T = P.reshape(n, classes, m).transpose(1, 2), T.reshape(n, classes, m).transpose(1, 2)
    if logits:
        P = torch.sigmoid(P) if classes == 1 else torch.softmax(P, dim=-1)
    inter = (P * T).sum(dim=1)
    psum = P.sum(dim=1)
    tsum = T.sum(dim=1)
    if dataset:
        w = torch.ones(n, dtype=torch.float64) if weights is None else torch.tensor(weights, dtype=torch.float64)
        inter, psum, tsum = ((w[:, None] * x).sum(dim=0, keepdim=True) for x in (inter, psum, tsum))
    if name == "dice":
        ratio = (2 * inter + smooth) / (psum + tsum + smooth)
    elif name == "iou":
        ratio = (inter + smooth) / (psum + tsum - inter + smooth)
    else:  # optax dice_loss generalised (Tversky) coefficient
        ratio = (inter + smooth) / (inter + alpha * (psum - inter) + beta * (tsum - inter) + smooth)
    loss = 1.0 - ratio
    if name == "focal_tversky":
        loss = loss ** gamma
    return (loss[:, class_index] if class_index >= 0 else loss.mean(dim=1)).numpy()


def mask_params(name, smooth, alpha, beta, gamma):
    p = {"smooth": smooth}
    if name in ("tversky", "focal_tversky"):
        p.update(alpha=alpha, beta=beta)
    if name == "focal_tversky":
        p["gamma"] = gamma
    return p


def ref_kw(name, params):
    kw = {"smooth": params["smooth"], "alpha": params.get("alpha", 0.5), "beta": params.get("beta", 0.5),
          "gamma": params.get("gamma", 1.0)}
    if name == "focal_tversky":
        kw.setdefault("alpha", 0.3)
    return kw


@st.composite
def mask_pairs(draw, max_rows=8, max_len=16, classes=1):
    n = draw(st.integers(1, max_rows))
    m = draw(st.integers(1, max_len))
    k = m * classes
    unit = st.floats(0.0, 1.0, allow_nan=False, allow_infinity=False)
    p = draw(hnp.arrays(np.float64, (n, k), elements=unit))
    hard = draw(st.booleans())
    t = draw(hnp.arrays(np.float64, (n, k), elements=st.sampled_from([0.0, 1.0]) if hard else unit))
    return p, t


# positive smooth avoids the 0/0 rows, whose value is a lossctl convention tested separately below
smooths = st.sampled_from([1e-6, 0.5, 1.0, 10.0])
weights_tv = st.one_of(st.just(0.0), st.floats(0.01, 2.0))


@pytest.mark.parametrize("name", MASK_LOSSES)
@SETTINGS
@given(data=mask_pairs(), smooth=smooths, alpha=weights_tv, beta=weights_tv, gamma=st.floats(0.25, 3.0))
def test_mask_per_row_matches_reference(name, data, smooth, alpha, beta, gamma):
    p, t = data
    params = mask_params(name, smooth, alpha, beta, gamma)
    spec, rp, values, _ = run_spec(name, {"pred": p, "target": t}, params)
    if name == "focal_tversky":
        # the power amplifies the reference's absolute cancellation error (1e-16 ** 0.25 = 1e-4), so check
        # the base against the reference and the power separately
        g = rp["gamma"]
        base = _ref_mask("tversky", p, t, smooth=smooth, alpha=rp["alpha"], beta=rp["beta"])
        np.testing.assert_allclose(values ** (1 / g), base, rtol=1e-9, atol=ATOL_REF)
        np.testing.assert_allclose(values, overlap.tversky(p, t, smooth=smooth, alpha=rp["alpha"],
                                                           beta=rp["beta"]) ** g, rtol=1e-15)
        expected = _ref_mask(name, p, t, smooth=smooth, alpha=rp["alpha"], beta=rp["beta"], gamma=g)
        # the reference's 1 - ratio has absolute error ~1e-16, i.e. relative error 1e-16 / base, which the
        # power keeps (times gamma): compare end to end only where that stays below RTOL
        big = base > 1e-5
        np.testing.assert_allclose(values[big], expected[big], rtol=RTOL)
        return
    expected = _ref_mask(name, p, t, smooth=smooth, alpha=rp.get("alpha", 0.5), beta=rp.get("beta", 0.5))
    np.testing.assert_allclose(values, expected, rtol=RTOL, atol=ATOL_REF)


@pytest.mark.parametrize("name", MASK_LOSSES)
@SETTINGS
@given(data=mask_pairs(max_rows=12), smooth=smooths, w=st.integers(0, 2**31 - 1))
def test_mask_dataset_value_is_ratio_of_sums(name, data, smooth, w):
    p, t = data
    rng = np.random.default_rng(w)
    weights = rng.integers(0, 4, size=len(p)).astype(np.float64)
    if weights.sum() == 0:
        weights[0] = 1.0
    spec, rp, values, terms = run_spec(name, {"pred": p, "target": t}, {"smooth": smooth})
    got = reduce_terms(spec, rp, [terms], weights=[weights])
    expected = _ref_mask(name, p, t, smooth=smooth, alpha=rp.get("alpha", 0.5), beta=rp.get("beta", 0.5),
                         gamma=rp.get("gamma", 1.0), dataset=True, weights=weights)[0]
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL_REF)
    # average=sample: the weighted mean of the per-row losses
    spec, rp2, values2, terms2 = run_spec(name, {"pred": p, "target": t}, {"smooth": smooth, "average": "sample"})
    got2 = reduce_terms(spec, rp2, [terms2], weights=[weights])
    np.testing.assert_allclose(got2, math.fsum(weights * values2) / weights.sum(), rtol=1e-12)


def test_dataset_value_is_not_the_mean_of_batch_ratios():
    # two masks: a perfect small one and a missed big one
    p = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    t = np.array([[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    spec, rp, values, terms = run_spec("dice", {"pred": p, "target": t})
    assert values.tolist() == [0.0, 1.0]
    # ratio of sums: I = 1, P = 1, T = 5 -> 1 - 2/6
    assert reduce_terms(spec, rp, [terms]) == pytest.approx(2 / 3, rel=1e-15)
    assert reduce_terms(*run_spec("dice", {"pred": p, "target": t}, {"average": "sample"})[:2],
                        [run_spec("dice", {"pred": p, "target": t}, {"average": "sample"})[3]]) == 0.5


@pytest.mark.parametrize("class_axis", ["last", "first"])
@pytest.mark.parametrize("logits", [False, True])
@SETTINGS
@given(c=st.integers(2, 4), seed=st.integers(0, 2**31 - 1), smooth=smooths)
def test_multiclass_masks_match_optax_formula(class_axis, logits, c, seed, smooth):
    rng = np.random.default_rng(seed)
    n, m = rng.integers(1, 6), rng.integers(1, 10)
    labels = rng.integers(0, c, size=(n, m))
    onehot = np.eye(c)[labels]                                            # (n, m, C)
    scores = rng.normal(0, 3, size=(n, m, c)) if logits else rng.dirichlet(np.ones(c), size=(n, m))
    if class_axis == "first":
        flat_p, flat_t = scores.transpose(0, 2, 1).reshape(n, -1), onehot.transpose(0, 2, 1).reshape(n, -1)
    else:
        flat_p, flat_t = scores.reshape(n, -1), onehot.reshape(n, -1)
    params = {"smooth": smooth, "classes": c, "class_axis": class_axis,
              "space": "logits" if logits else "probabilities"}
    for name in ("tversky", "dice"):
        spec, rp, values, terms = run_spec(name, {"pred": flat_p, "target": flat_t}, params)
        expected = _ref_mask(name, flat_p, flat_t, smooth=smooth, classes=c, class_axis=class_axis, logits=logits)
        np.testing.assert_allclose(values, expected, rtol=RTOL, atol=ATOL_REF)
        got = reduce_terms(spec, rp, [terms])
        exp_ds = _ref_mask(name, flat_p, flat_t, smooth=smooth, classes=c, class_axis=class_axis, logits=logits,
                           dataset=True)[0]
        np.testing.assert_allclose(got, exp_ds, rtol=RTOL, atol=ATOL_REF)


def test_tversky_half_half_is_optax_dice_and_special_cases():
    rng = np.random.default_rng(3)
    p, t = rng.uniform(size=(5, 9)), (rng.uniform(size=(5, 9)) < 0.4).astype(float)
    d0 = overlap.dice(p, t)
    # alpha = beta = 0.5, s = 0: Tversky == Dice; alpha = beta = 1: Tversky == IoU
    np.testing.assert_allclose(overlap.tversky(p, t, alpha=0.5, beta=0.5), d0, rtol=1e-14)
    np.testing.assert_allclose(overlap.tversky(p, t, alpha=1.0, beta=1.0), overlap.iou(p, t), rtol=1e-14)
    # optax dice_loss(alpha=beta=0.5, smooth=s) is (I + s) / ((P + T)/2 + s) = Dice with smooth 2s
    np.testing.assert_allclose(overlap.tversky(p, t, smooth=0.7), overlap.dice(p, t, smooth=1.4), rtol=1e-14)
    # IoU = D / (2 - D) with D the Dice coefficient
    dc = 1 - d0
    np.testing.assert_allclose(1 - overlap.iou(p, t), dc / (2 - dc), rtol=1e-13)
    # focal with gamma = 1 is Tversky
    np.testing.assert_allclose(overlap.focal_tversky(p, t, alpha=0.3, beta=0.7, gamma=1.0),
                               overlap.tversky(p, t, alpha=0.3, beta=0.7), rtol=1e-15)


@pytest.mark.parametrize("name", MASK_LOSSES)
def test_empty_masks(name):
    empty = np.zeros((1, 16))
    full = np.ones((1, 16))
    soft = np.linspace(0.05, 0.8, 16)[None, :]
    # both empty, smooth 0: 0/0 -> defined as loss 0 (two empty masks agree); smooth 1: optax's 1 - 1/1 = 0
    for s in (0.0, 1.0):
        _, rp, v, terms = run_spec(name, {"pred": empty, "target": empty}, {"smooth": s})
        assert v.tolist() == [0.0]
        assert registry.get(name).finalize(
            {k: float(np.sum(x)) for k, x in terms.items() if np.ndim(x)} | {"norm": 1.0, "_w": 1.0}, rp) == 0.0
    # empty prediction, non-empty target (all foreground missed): loss 1 with smooth 0
    assert run_spec(name, {"pred": empty, "target": full})[2].tolist() == [1.0]
    # all-background target with a soft prediction: loss 1 with smooth 0 (no overlap possible) ...
    assert run_spec(name, {"pred": soft, "target": empty})[2].tolist() == [1.0]
    # ... and the reference value with smooth 1 (e.g. dice: 1 - 1/(P + 1))
    _, rp, v, _ = run_spec(name, {"pred": soft, "target": empty}, {"smooth": 1.0})
    exp = _ref_mask(name, soft, empty, **ref_kw(name, rp))
    np.testing.assert_allclose(v, exp, rtol=RTOL)
    # perfect hard mask: exactly 0
    hard = (soft > 0.4).astype(float)
    assert run_spec(name, {"pred": hard, "target": hard})[2].tolist() == [0.0]


def test_near_perfect_masks_keep_relative_accuracy():
    # p = t - d on the foreground: FP = 0, FN = d * 8, I = 8 (1 - d).  Dice loss = 8d / (16 - 8d) exactly
    # up to rounding; the 1 - ratio form loses all digits for d = 1e-13.
    d = 1e-13
    t = np.array([[1.0] * 8 + [0.0] * 8])
    p = t * (1 - d)
    got = overlap.dice(p, t)[0]
    fn = 8 * (1.0 - (1 - d))          # the FN the data actually holds (1 - (1 - d) is not exactly d)
    assert got == pytest.approx(fn / (16 - fn), rel=1e-12)


@pytest.mark.parametrize("name", MASK_LOSSES)
def test_pixel_rows_equal_flattened_masks(name):
    rng = np.random.default_rng(7)
    p, t = rng.uniform(size=(6, 10)), (rng.uniform(size=(6, 10)) < 0.5).astype(float)
    spec, rp, _, terms_masks = run_spec(name, {"pred": p, "target": t})
    _, _, v_pix, terms_pix = run_spec(name, {"pred": p.reshape(-1), "target": t.reshape(-1)})
    assert v_pix.shape == (60,)
    np.testing.assert_allclose(reduce_terms(spec, rp, [terms_pix]), reduce_terms(spec, rp, [terms_masks]),
                               rtol=1e-13)
    # one pixel per row: each row's own ratio (dice of a pixel: |p - t| / (p + t))
    if name == "dice":
        pf, tf = p.reshape(-1), t.reshape(-1)
        np.testing.assert_allclose(v_pix, np.abs(pf - tf) / (pf + tf), rtol=1e-13)


@pytest.mark.parametrize("name", MASK_LOSSES)
@settings(max_examples=30, deadline=None)
@given(data=mask_pairs(max_rows=20, max_len=6), seed=st.integers(0, 2**31 - 1),
       average=st.sampled_from(["dataset", "sample"]))
def test_mask_chunk_and_merge_order_invariance(name, data, seed, average):
    p, t = data
    n = len(p)
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, n), rng.randint(0, n - 1))) if n > 1 else []
    bounds = [0, *cuts, n]
    w = np.array([rng.choice([0.5, 1.0, 2.0, 3.0]) for _ in range(n)])
    spec, rp, _, full_terms = run_spec(name, {"pred": p, "target": t}, {"average": average, "smooth": 0.25})
    whole = reduce_terms(spec, rp, [full_terms], weights=[w])
    parts, wparts = [], []
    for a, b in zip(bounds, bounds[1:]):
        parts.append(run_spec(name, {"pred": p[a:b], "target": t[a:b]}, {"average": average, "smooth": 0.25})[3])
        wparts.append(w[a:b])
    order = list(range(len(parts)))
    rng.shuffle(order)
    chunked = reduce_terms(spec, rp, parts, weights=wparts, order=order)
    assert chunked == pytest.approx(whole, rel=1e-12, abs=1e-15)


def test_mask_input_errors():
    ctx = ctx_for({"pred": ("prob_mask",), "target": ("mask",)}, "masks.parquet")
    p = np.full((3, 4), 0.5)
    t = np.zeros((3, 4))
    bad = p.copy()
    bad[2, 1] = 1.5
    with pytest.raises(InputError, match=r"masks.parquet, column 'prob_mask', row 3: mask value 1.5 outside "
                                         r"\[0, 1\] \(for logits pass --logits"):
        run_spec("dice", {"pred": bad, "target": t}, ctx=ctx)
    # logits are not range-checked (sigmoid maps them)
    run_spec("dice", {"pred": bad * 10 - 5, "target": t}, {"space": "logits"}, ctx=ctx)
    badt = t.copy()
    badt[1, 0] = -1
    with pytest.raises(InputError, match=r"column 'mask', row 2: mask value -1.0 outside \[0, 1\]"):
        run_spec("iou", {"pred": p, "target": badt}, ctx=ctx)
    with pytest.raises(InputError, match="target masks have 3 values per row but predictions have 4"):
        run_spec("dice", {"pred": p, "target": t[:, :3]}, ctx=ctx)
    with pytest.raises(InputError, match="not a multiple of classes=3"):
        run_spec("dice", {"pred": p, "target": t}, {"classes": 3}, ctx=ctx)
    with pytest.raises(UsageError, match="average"):
        registry.get("dice").resolve_params({"average": "micro"})


def test_mask_logits_single_class_is_sigmoid():
    rng = np.random.default_rng(11)
    x = rng.normal(0, 4, size=(4, 12))
    t = (rng.uniform(size=(4, 12)) < 0.5).astype(float)
    np.testing.assert_allclose(overlap.dice(x, t, space="logits"), overlap.dice(1 / (1 + np.exp(-x)), t),
                               rtol=1e-13)
    np.testing.assert_allclose(overlap.dice(x, t, space="logits"), _ref_mask("dice", x, t, logits=True),
                               rtol=RTOL)


# ================================================================================= box reference ===
def _tv_box_convert(b: torch.Tensor, fmt: str) -> torch.Tensor:
    """torchvision/ops/_box_convert.py: _box_xywh_to_xyxy, _box_cxcywh_to_xyxy."""
    if fmt == "xyxy":
        return b
    if fmt == "xywh":
        x, y, w, h = b.unbind(-1)
        return torch.stack([x, y, x + w, y + h], dim=-1)
    cx, cy, w, h = b.unbind(-1)
    return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)


def _tv_loss_inter_union(boxes1, boxes2):
    """torchvision/ops/_utils.py _loss_inter_union."""
    x1, y1, x2, y2 = boxes1.unbind(dim=-1)
    x1g, y1g, x2g, y2g = boxes2.unbind(dim=-1)
    xkis1 = torch.max(x1, x1g)
    ykis1 = torch.max(y1, y1g)
    xkis2 = torch.min(x2, x2g)
    ykis2 = torch.min(y2, y2g)
    intsctk = torch.zeros_like(x1)
    mask = (ykis2 > ykis1) & (xkis2 > xkis1)
    intsctk[mask] = (xkis2[mask] - xkis1[mask]) * (ykis2[mask] - ykis1[mask])
    unionk = (x2 - x1) * (y2 - y1) + (x2g - x1g) * (y2g - y1g) - intsctk
    return intsctk, unionk


def _tv_giou(boxes1, boxes2, eps=1e-7):
    """torchvision/ops/giou_loss.py generalized_box_iou_loss, reduction='none'."""
    intsctk, unionk = _tv_loss_inter_union(boxes1, boxes2)
    iouk = intsctk / (unionk + eps)
    x1, y1, x2, y2 = boxes1.unbind(dim=-1)
    x1g, y1g, x2g, y2g = boxes2.unbind(dim=-1)
    xc1 = torch.min(x1, x1g)
    yc1 = torch.min(y1, y1g)
    xc2 = torch.max(x2, x2g)
    yc2 = torch.max(y2, y2g)
    area_c = (xc2 - xc1) * (yc2 - yc1)
    miouk = iouk - ((area_c - unionk) / (area_c + eps))
    return 1 - miouk


def _tv_diou_iou(boxes1, boxes2, eps=1e-7):
    """torchvision/ops/diou_loss.py _diou_iou_loss."""
    intsct, union = _tv_loss_inter_union(boxes1, boxes2)
    iou = intsct / (union + eps)
    x1, y1, x2, y2 = boxes1.unbind(dim=-1)
    x1g, y1g, x2g, y2g = boxes2.unbind(dim=-1)
    xc1 = torch.min(x1, x1g)
    yc1 = torch.min(y1, y1g)
    xc2 = torch.max(x2, x2g)
    yc2 = torch.max(y2, y2g)
    diagonal_distance_squared = ((xc2 - xc1) ** 2) + ((yc2 - yc1) ** 2) + eps
    x_p = (x2 + x1) / 2
    y_p = (y2 + y1) / 2
    x_g = (x1g + x2g) / 2
    y_g = (y1g + y2g) / 2
    centers_distance_squared = ((x_p - x_g) ** 2) + ((y_p - y_g) ** 2)
    loss = 1 - iou + (centers_distance_squared / diagonal_distance_squared)
    return loss, iou


def _tv_ciou(boxes1, boxes2, eps=1e-7):
    """torchvision/ops/ciou_loss.py complete_box_iou_loss: note _diou_iou_loss is called WITHOUT eps."""
    diou_loss, iou = _tv_diou_iou(boxes1, boxes2)
    x1, y1, x2, y2 = boxes1.unbind(dim=-1)
    x1g, y1g, x2g, y2g = boxes2.unbind(dim=-1)
    w_pred = x2 - x1
    h_pred = y2 - y1
    w_gt = x2g - x1g
    h_gt = y2g - y1g
    v = (4 / (torch.pi ** 2)) * torch.pow((torch.atan(w_gt / h_gt) - torch.atan(w_pred / h_pred)), 2)
    with torch.no_grad():
        alpha = v / (1 - iou + v + eps)
    return diou_loss + alpha * v


def _tv_box_iou_loss(boxes1, boxes2, eps=1e-7):
    intsct, union = _tv_loss_inter_union(boxes1, boxes2)
    return 1 - intsct / (union + eps)


TV = {"box_iou": _tv_box_iou_loss, "giou": _tv_giou, "diou": lambda a, b, eps: _tv_diou_iou(a, b, eps)[0],
      "ciou": _tv_ciou}


def reference_boxes(name, pred, target, fmt="xyxy", eps=1e-7):
    a = _tv_box_convert(torch.tensor(pred, dtype=torch.float64), fmt)
    b = _tv_box_convert(torch.tensor(target, dtype=torch.float64), fmt)
    return TV[name](a, b, eps=eps).numpy()


@st.composite
def box_pairs(draw, fmt="xyxy", zero_sizes=False):
    n = draw(st.integers(1, 10))
    coord = st.floats(-200.0, 200.0, allow_nan=False)
    size = st.one_of(st.floats(0.01, 150.0), st.just(0.0)) if zero_sizes else st.floats(0.01, 150.0)

    def boxes():
        xy = draw(hnp.arrays(np.float64, (n, 2), elements=coord))
        wh = draw(hnp.arrays(np.float64, (n, 2), elements=size))
        if fmt == "xyxy":
            return np.concatenate([xy, xy + wh], axis=1)
        return np.concatenate([xy, wh], axis=1)   # xywh and cxcywh: position then size
    pred = boxes()
    # targets near the predictions half of the time, so overlaps are common
    target = boxes()
    if draw(st.booleans()):
        target = pred + draw(hnp.arrays(np.float64, (n, 4), elements=st.floats(-5.0, 5.0)))
        # keep sizes >= 0.01 like the unperturbed boxes: point boxes are where lossctl departs from
        # torchvision on purpose (test_zero_area_* below, loss-semantics.md), not parity cases
        if fmt == "xyxy":
            target[:, 2:] = np.maximum(target[:, 2:], target[:, :2] + 0.01)
        else:
            target[:, 2:] = np.maximum(np.abs(target[:, 2:]), 0.01)
    return pred, target


@pytest.mark.parametrize("name", BOX_LOSSES)
@pytest.mark.parametrize("fmt", ["xyxy", "xywh", "cxcywh"])
@SETTINGS
@given(data=st.data(), eps=st.sampled_from([1e-7, 1e-3, 1.0]))
def test_boxes_match_torchvision(name, fmt, data, eps):
    pred, target = data.draw(box_pairs(fmt))
    _, _, values, _ = run_spec(name, {"pred": pred, "target": target}, {"box_format": fmt, "eps": eps})
    expected = reference_boxes(name, pred, target, fmt, eps)
    np.testing.assert_allclose(values, expected, rtol=RTOL, atol=ATOL_REF)


@pytest.mark.parametrize("name", BOX_LOSSES)
@SETTINGS
@given(data=box_pairs(zero_sizes=True))
def test_zero_area_boxes_match_torchvision_where_it_is_finite(name, data):
    pred, target = data
    _, _, values, _ = run_spec(name, {"pred": pred, "target": target})
    expected = reference_boxes(name, pred, target)
    assert np.isfinite(values).all()
    point = lambda b: (b[:, 2] == b[:, 0]) & (b[:, 3] == b[:, 1])  # noqa: E731
    ok = ~(point(pred) | point(target)) if name == "ciou" else np.ones(len(pred), bool)
    np.testing.assert_allclose(values[ok], expected[ok], rtol=RTOL, atol=ATOL_REF)
    if name == "ciou":
        # torchvision's atan(0/0) is NaN exactly there; lossctl uses aspect angle 0 (documented)
        assert np.isnan(expected[~ok]).all()


def test_identical_boxes():
    # IoU = A / (A + eps) exactly, every penalty 0: all four losses are eps / (A + eps)
    b = np.array([[0.0, 0.0, 2.0, 2.0], [10.0, 5.0, 13.0, 9.0]])
    areas = np.array([4.0, 12.0])
    for name in BOX_LOSSES:
        _, _, v, _ = run_spec(name, {"pred": b, "target": b})
        np.testing.assert_allclose(v, 1 - areas / (areas + 1e-7), rtol=1e-12)
        assert (v < 1e-7).all()
        np.testing.assert_allclose(v, reference_boxes(name, b, b), rtol=RTOL)


def test_disjoint_boxes_hand_values():
    p = np.array([[0.0, 0.0, 1.0, 1.0]])
    g = np.array([[2.0, 0.0, 3.0, 1.0]])
    # IoU 0; enclosing box 3 x 1, union 2: GIoU loss = 1 + (3 - 2)/3 = 4/3 > 1
    giou = overlap.giou_loss(p, g)[0]
    assert giou > 1
    assert giou == pytest.approx(1 + 1 / (3 + 1e-7), rel=1e-15)
    # centres 2 apart, enclosing diagonal^2 = 9 + 1: DIoU loss = 1 + 4/10
    assert overlap.diou_loss(p, g)[0] == pytest.approx(1 + 4 / (10 + 1e-7), rel=1e-15)
    # same aspect ratio: CIoU = DIoU
    assert overlap.ciou_loss(p, g)[0] == overlap.diou_loss(p, g)[0]
    assert overlap.box_iou_loss(p, g)[0] == 1.0
    # symmetric, as torchvision says
    for name, f in (("giou", overlap.giou_loss), ("diou", overlap.diou_loss), ("ciou", overlap.ciou_loss)):
        assert f(g, p)[0] == pytest.approx(f(p, g)[0], rel=1e-15), name


def test_zero_area_hand_values():
    point = np.array([[1.0, 1.0, 1.0, 1.0]])
    square = np.array([[0.0, 0.0, 2.0, 2.0]])
    line = np.array([[0.0, 0.0, 2.0, 0.0]])
    # a point inside a 2x2 box: no intersection, union 4, enclosing = the box, same centre -> all 1
    for f in (overlap.box_iou_loss, overlap.giou_loss, overlap.diou_loss):
        assert f(point, square)[0] == 1.0
    # CIoU: aspect angles 0 (point, lossctl convention) and atan(1) = pi/4 -> v = 4/pi^2 (pi/4)^2 = 1/4,
    # alpha = v / (1 - 0 + v + eps): loss = 1 + v^2 / (1 + v + eps)
    assert overlap.ciou_loss(point, square)[0] == pytest.approx(1 + 0.0625 / (1.25 + 1e-7), rel=1e-14)
    # two identical points: IoU 0/(0+eps) = 0, everything else 0 -> loss 1 (torchvision: 1 for giou/diou)
    for name in ("box_iou", "giou", "diou"):
        assert run_spec(name, {"pred": point, "target": point})[2][0] == 1.0
        assert reference_boxes(name, point, point)[0] == 1.0
    assert overlap.ciou_loss(point, point)[0] == 1.0
    # a zero-height segment: atan(2/0) = pi/2 in torch too, so CIoU matches torchvision
    np.testing.assert_allclose(overlap.ciou_loss(line, square), reference_boxes("ciou", line, square), rtol=RTOL)


def test_box_format_conversion():
    xyxy = np.array([[1.0, 2.0, 5.0, 8.0]])
    np.testing.assert_array_equal(overlap.to_xyxy([[1.0, 2.0, 4.0, 6.0]], "xywh"), xyxy)
    np.testing.assert_array_equal(overlap.to_xyxy([[3.0, 5.0, 4.0, 6.0]], "cxcywh"), xyxy)
    tv = _tv_box_convert(torch.tensor([[3.0, 5.0, 4.0, 6.0]], dtype=torch.float64), "cxcywh").numpy()
    np.testing.assert_array_equal(tv, xyxy)


def test_invalid_boxes_are_input_errors():
    ctx = ctx_for({"pred": ("pred_x1", "pred_y1", "pred_x2", "pred_y2"), "target": ("x1", "y1", "x2", "y2")},
                  "boxes.csv")
    ok = np.array([[0.0, 0.0, 1.0, 1.0]] * 3)
    bad = ok.copy()
    bad[1] = [5.0, 0.0, 4.0, 1.0]
    with pytest.raises(InputError, match=r"^boxes.csv, column 'pred_x1,...,pred_y2 \(4 columns\)', row 2: invalid box: "
                                         r"x2=4.0 < x1=5.0; boxes are read as xyxy"):
        run_spec("giou", {"pred": bad, "target": ok}, ctx=ctx)
    bady = ok.copy()
    bady[2] = [0.0, 3.0, 1.0, 2.0]
    with pytest.raises(InputError, match=r"column 'x1,...,y2 \(4 columns\)', row 3: invalid box: y2=2.0 < y1=3.0"):
        run_spec("ciou", {"pred": ok, "target": bady}, ctx=ctx)
    # xywh: a negative width names the format
    xywh = np.array([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, -2.0, 1.0]])
    with pytest.raises(InputError, match=r"row 2: invalid box: negative width -2.0 \(box_format=xywh"):
        run_spec("diou", {"pred": xywh, "target": xywh}, {"box_format": "xywh"}, ctx=ctx)
    with pytest.raises(InputError, match="a box needs 4 numbers per row"):
        run_spec("box_iou", {"pred": ok[:, :3], "target": ok}, ctx=ctx)
    with pytest.raises(InputError, match="a box needs 4 numbers per row"):
        run_spec("box_iou", {"pred": ok[:, 0], "target": ok}, ctx=ctx)
    # the pure function refuses too (Python API)
    with pytest.raises(ValueError, match="invalid box"):
        overlap.giou_loss(bad, ok)
    with pytest.raises(UsageError):
        registry.get("giou").resolve_params({"box_format": "yxyx"})
    with pytest.raises(UsageError):
        registry.get("giou").resolve_params({"eps": "0"})


# ================================================================================ through evaluate ===
SAMPLES = lossctl.__file__.rsplit("/lossctl/", 1)[0] + "/sample_data"


def test_sample_boxes_through_the_pipeline():
    import pyarrow.csv as pcsv
    tbl = pcsv.read_csv(f"{SAMPLES}/boxes.csv")
    pred = np.column_stack([tbl.column(c).to_numpy() for c in ("pred_x1", "pred_y1", "pred_x2", "pred_y2")])
    gt = np.column_stack([tbl.column(c).to_numpy() for c in ("x1", "y1", "x2", "y2")])
    res = lossctl.evaluate(f"{SAMPLES}/boxes.csv", list(BOX_LOSSES), pred="pred_x1,pred_y1,pred_x2,pred_y2",
                           target="x1,y1,x2,y2", batch_rows=7)
    for name in BOX_LOSSES:
        exp = math.fsum(reference_boxes(name, pred, gt)) / len(pred)
        assert res.value(name) == pytest.approx(exp, rel=1e-12)


def test_sample_masks_through_the_pipeline(tmp_path):
    tbl = pq.read_table(f"{SAMPLES}/masks.parquet")
    p = np.array(tbl.column("prob_mask").to_pylist())
    t = np.array(tbl.column("mask").to_pylist(), dtype=np.float64)
    losses = ["dice", "iou", "tversky:alpha=0.3,beta=0.7", "focal_tversky"]
    res = lossctl.evaluate(f"{SAMPLES}/masks.parquet", losses, pred="prob_mask", target="mask", batch_rows=3)
    for r in res.results:
        params = dict(r.params)
        exp = _ref_mask(r.loss, p, t, smooth=0.0, alpha=params.get("alpha", 0.5), beta=params.get("beta", 0.5),
                        gamma=params.get("gamma", 1.0), dataset=True)[0]
        assert r.value == pytest.approx(exp, rel=1e-12), r.label
    # one pixel per row, grouped by image: the same dataset value, and each group = that image's own loss
    pix = lossctl.evaluate(f"{SAMPLES}/pixels.parquet", ["dice"], pred="p", target="y", by="image_id",
                           batch_rows=50)
    per_image = lossctl.evaluate(f"{SAMPLES}/masks.parquet", ["dice"], pred="prob_mask", target="mask",
                                 reduction="none", limit=0)
    assert pix.value("dice") == pytest.approx(res.value("dice"), rel=1e-12)
    by_img = {r.group["image_id"]: r.value for r in pix.results if r.group}
    for row in per_image.rows:
        assert by_img[row["row"]] == pytest.approx(row["dice"], rel=1e-12, abs=1e-15)
    # batch size does not matter for the ratio of sums
    for b in (1, 4, 1000):
        again = lossctl.evaluate(f"{SAMPLES}/pixels.parquet", ["dice", "focal_tversky"], pred="p", target="y",
                                 batch_rows=b)
        assert again.value("dice") == pytest.approx(res.value("dice"), rel=1e-12)
        assert again.value("focal_tversky") == pytest.approx(res.value("focal_tversky"), rel=1e-12)


def test_invalid_box_row_number_through_the_pipeline(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("x1,y1,x2,y2,gx1,gy1,gx2,gy2\n0,0,1,1,0,0,1,1\n0,0,1,1,0,0,1,1\n3,0,1,1,0,0,1,1\n")
    with pytest.raises(InputError, match=r"bad.csv, column 'x1,...,y2 \(4 columns\)', row 3: invalid box: x2=1.0 < x1=3.0"):
        lossctl.evaluate(str(path), ["giou"], pred="x1,y1,x2,y2", target="gx1,gy1,gx2,gy2", batch_rows=2)


# ============================================================================ box chunks and merge order ===
@pytest.mark.parametrize("name", BOX_LOSSES)
@settings(max_examples=25, deadline=None)
@given(data=box_pairs(), seed=st.integers(0, 2**31 - 1))
def test_box_chunk_and_merge_order_invariance(name, data, seed):
    pred, target = data
    n = len(pred)
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, n), rng.randint(0, n - 1))) if n > 1 else []
    bounds = [0, *cuts, n]
    w = np.array([rng.choice([0.5, 1.0, 2.0, 3.0]) for _ in range(n)])
    _, _, whole_values, _ = run_spec(name, {"pred": pred, "target": target})
    states = []
    for a, b in zip(bounds, bounds[1:]):
        _, _, v, _ = run_spec(name, {"pred": pred[a:b], "target": target[a:b]})
        np.testing.assert_array_equal(v, whole_values[a:b])
        s = SumState()
        s.update({"loss": v, "_w": 1.0}, w[a:b])
        states.append(s)
    rng.shuffle(states)
    acc = SumState()
    for s in states:
        acc.merge(s)
    assert acc.total("loss") / acc.total("_w") == pytest.approx(math.fsum(w * whole_values) / w.sum(), rel=1e-12)


def test_box_pipeline_independent_of_batch_size():
    vals = {}
    for b in (1, 4, 7, 1000):
        res = lossctl.evaluate(f"{SAMPLES}/boxes.csv", list(BOX_LOSSES), pred="pred_x1,pred_y1,pred_x2,pred_y2",
                               target="x1,y1,x2,y2", batch_rows=b, by="image_id")
        vals[b] = [(r.label, r.group and r.group["image_id"], r.value) for r in res.results]
    for b in (4, 7, 1000):
        for (l0, g0, v0), (l1, g1, v1) in zip(vals[1], vals[b]):
            assert (l0, g0) == (l1, g1) and v1 == pytest.approx(v0, rel=1e-12)


# ============================================================================ the issue's commands (CLI) ===
from conftest import invoke, run_err  # noqa: E402


def _cli_values(args):
    res = invoke(args + ["-f", "json"])
    assert res.exit_code == 0, (res.exit_code, res.stderr)
    import json
    return json.loads(res.stdout)["results"]


def test_issue_command_masks():
    tbl = pq.read_table(f"{SAMPLES}/masks.parquet")
    p = np.array(tbl.column("prob_mask").to_pylist())
    t = np.array(tbl.column("mask").to_pylist(), dtype=np.float64)
    got = _cli_values(["eval", f"{SAMPLES}/masks.parquet", "-l", "dice", "-l", "iou", "-l",
                       "tversky:alpha=0.3,beta=0.7", "--pred", "prob_mask", "--target", "mask"])
    assert [r["label"] for r in got] == ["dice", "iou", "tversky(alpha=0.3,beta=0.7)"]
    for r, (name, kw) in zip(got, [("dice", {}), ("iou", {}), ("tversky", {"alpha": 0.3, "beta": 0.7})]):
        assert r["value"] == pytest.approx(_ref_mask(name, p, t, dataset=True, **kw)[0], rel=1e-12)
    # average=sample with smoothing: optax's per-mask mean
    got = _cli_values(["eval", f"{SAMPLES}/masks.parquet", "-l", "dice:average=sample,smooth=1", "--pred",
                       "prob_mask", "--target", "mask"])
    assert got[0]["value"] == pytest.approx(float(np.mean(_ref_mask("dice", p, t, smooth=1.0))), rel=1e-12)


def test_issue_command_pixels_by_image():
    tbl = pq.read_table(f"{SAMPLES}/pixels.parquet")
    img = np.array(tbl.column("image_id").to_pylist())
    p = np.array(tbl.column("p").to_pylist())
    y = np.array(tbl.column("y").to_pylist(), dtype=np.float64)
    got = _cli_values(["eval", f"{SAMPLES}/pixels.parquet", "-l", "dice", "--pred", "p", "--target", "y",
                       "--by", "image_id", "--batch-size", "100"])
    assert got[0]["group"] is None
    assert got[0]["value"] == pytest.approx(_ref_mask("dice", p[None, :], y[None, :])[0], rel=1e-12)
    groups = {r["group"]["image_id"]: r["value"] for r in got[1:]}
    assert sorted(groups) == sorted(set(img.tolist()))
    empty = 0
    for g, v in groups.items():
        m = img == g
        if not p[m].any() and not y[m].any():
            # image 10: both masks empty, 0/0 in the reference with smooth 0; lossctl's convention is 0, the
            # reference's value with any smooth > 0
            empty += 1
            assert v == 0.0 and _ref_mask("dice", p[m][None, :], y[m][None, :], smooth=1.0)[0] == 0.0
            continue
        assert v == pytest.approx(_ref_mask("dice", p[m][None, :], y[m][None, :])[0], rel=1e-12, abs=1e-15)
    assert empty == 1


def test_issue_command_boxes_and_formats(tmp_path):
    import pyarrow.csv as pcsv
    tbl = pcsv.read_csv(f"{SAMPLES}/boxes.csv")
    pred = np.column_stack([tbl.column(c).to_numpy() for c in ("pred_x1", "pred_y1", "pred_x2", "pred_y2")])
    gt = np.column_stack([tbl.column(c).to_numpy() for c in ("x1", "y1", "x2", "y2")])
    got = _cli_values(["eval", f"{SAMPLES}/boxes.csv", "-l", "giou", "-l", "diou", "-l", "ciou", "--pred",
                       "pred_x1,pred_y1,pred_x2,pred_y2", "--target", "x1,y1,x2,y2"])
    for r in got:
        assert r["value"] == pytest.approx(math.fsum(reference_boxes(r["loss"], pred, gt)) / len(pred), rel=1e-12)
    # the same boxes written as xywh and cxcywh give the same values
    def xywh(b):
        return np.column_stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]])

    def cxcywh(b):
        return np.column_stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2, b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]])
    for fmt, conv in (("xywh", xywh), ("cxcywh", cxcywh)):
        P, G = conv(pred), conv(gt)
        path = tmp_path / f"{fmt}.csv"
        pcsv.write_csv(pa.table({f"p{j}": P[:, j] for j in range(4)} | {f"g{j}": G[:, j] for j in range(4)}), path)
        got = _cli_values(["eval", str(path), "-l", f"giou:box_format={fmt}", "-l", f"ciou:box_format={fmt}",
                           "--pred", "p*", "--target", "g*"])
        for r in got:
            exp = math.fsum(reference_boxes(r["loss"], P, G, fmt)) / len(P)
            assert r["value"] == pytest.approx(exp, rel=1e-10)


def test_invalid_box_is_exit_3_naming_the_row(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("x1,y1,x2,y2,gx1,gy1,gx2,gy2\n0,0,1,1,0,0,1,1\n0,0,1,1,0,0,1,1\n3,0,1,1,0,0,1,1\n")
    msg = run_err(["eval", str(path), "-l", "giou", "--pred", "x1,y1,x2,y2", "--target", "gx1,gy1,gx2,gy2"], 3)
    assert msg.startswith(f"{path}, column 'x1,...,y2 (4 columns)', row 3: invalid box: x2=1.0 < x1=3.0")
    msg = run_err(["eval", f"{SAMPLES}/bad_boxes.csv", "-l", "ciou", "--pred", "pred_x1,pred_y1,pred_x2,pred_y2",
                   "--target", "x1,y1,x2,y2"], 3)
    assert msg.startswith(f"{SAMPLES}/bad_boxes.csv, column 'pred_x1,...,pred_y2 (4 columns)', row 3: invalid box: "
                          f"x2=210.62 < x1=284.22")
    neg = tmp_path / "neg.csv"
    neg.write_text("x,y,w,h,gx,gy,gw,gh\n0,0,1,1,0,0,1,1\n0,0,1,-2,0,0,1,1\n")
    msg = run_err(["eval", str(neg), "-l", "diou:box_format=xywh", "--pred", "x,y,w,h", "--target",
                   "gx,gy,gw,gh"], 3)
    assert "row 2: invalid box: negative height -2.0 (box_format=xywh" in msg
    msg = run_err(["eval", f"{SAMPLES}/masks.parquet", "-l", "dice", "--pred", "prob_mask", "--target", "mask",
                   "--by", "image_id", "-l", "dice:smooth=-1"], 2)
    assert "smooth" in msg


# ============================================================================ explain ===
@pytest.mark.parametrize("name", MASK_LOSSES + BOX_LOSSES)
def test_explain_is_complete_and_its_example_runs(name, monkeypatch):
    import shlex
    spec = registry.get(name)
    for field in ("summary", "formula", "latex", "reference", "when", "example", "space", "reduction_note"):
        assert getattr(spec, field).strip(), field
    assert spec.related and all(registry.get(r) for r in spec.related)
    assert spec.params and all(p.help and p.range_text() for p in spec.params)
    res = invoke(["explain", name])
    assert res.exit_code == 0, res.stderr
    assert spec.formula in res.stdout and spec.example in res.stdout and spec.reference in res.stdout
    monkeypatch.chdir(SAMPLES.rsplit("/", 1)[0])
    args = shlex.split(spec.example)
    assert args[:2] == ["lossctl", "eval"] and args[2].startswith("sample_data/")
    res = invoke(args[1:])
    assert res.exit_code == 0, res.stderr
    assert spec.name in res.stdout


@pytest.mark.parametrize("logits", [False, True])
def test_per_class_masks_through_the_cli(tmp_path, logits):
    rng = np.random.default_rng(17)
    n, m, c = 7, 12, 3
    labels = rng.integers(0, c, size=(n, m))
    labels[0] = 0                                  # row 1's target has no pixel of classes 1 and 2
    onehot = np.eye(c)[labels].reshape(n, -1)
    scores = rng.normal(0, 2, size=(n, m, c)) if logits else rng.dirichlet(np.ones(c), size=(n, m))
    flat = scores.reshape(n, -1)
    k = m * c
    offs = pa.array(np.arange(0, n * k + 1, k, dtype=np.int32))
    path = tmp_path / "mc.parquet"
    pq.write_table(pa.table({"p": pa.ListArray.from_arrays(offs, pa.array(flat.reshape(-1))),
                             "t": pa.ListArray.from_arrays(offs, pa.array(onehot.reshape(-1)))}), path)
    args = ["eval", str(path), "-l", "dice:classes=3", "-l", "iou:classes=3,average=sample", "--pred", "p",
            "--target", "t", "--batch-size", "2"] + (["--logits"] if logits else [])
    got = _cli_values(args)
    exp_dice = _ref_mask("dice", flat, onehot, classes=c, logits=logits, dataset=True)[0]
    exp_iou = float(np.mean(_ref_mask("iou", flat, onehot, classes=c, logits=logits)))
    assert got[0]["value"] == pytest.approx(exp_dice, rel=1e-12)
    assert got[1]["value"] == pytest.approx(exp_iou, rel=1e-12)


@pytest.mark.parametrize("name", ["dice", "iou", "tversky", "focal_tversky"])
@pytest.mark.parametrize("logits", [False, True])
def test_each_class_reported_with_class_index(tmp_path, name, logits):
    """class_index=k is class k's own loss (dataset ratio over its channel, after the softmax over all
    classes for logits), per row and at dataset level; the mean over k is the classes=C value."""
    rng = np.random.default_rng(23)
    n, m, c = 9, 10, 3
    labels = rng.integers(0, c, size=(n, m))
    labels[:, :2] = 0
    onehot = np.eye(c)[labels].reshape(n, -1)
    scores = rng.normal(0, 2, size=(n, m, c)) if logits else rng.dirichlet(np.ones(c), size=(n, m))
    flat = scores.reshape(n, -1)
    k = m * c
    offs = pa.array(np.arange(0, n * k + 1, k, dtype=np.int32))
    path = tmp_path / "mc.parquet"
    pq.write_table(pa.table({"p": pa.ListArray.from_arrays(offs, pa.array(flat.reshape(-1))),
                             "t": pa.ListArray.from_arrays(offs, pa.array(onehot.reshape(-1)))}), path)
    extra = ",alpha=0.3,beta=0.7" if "tversky" in name else ""
    kw = {"alpha": 0.3, "beta": 0.7} if "tversky" in name else {}
    ref_kw = {**kw, "gamma": registry.get(name).resolve_params({})["gamma"]} if name == "focal_tversky" else kw
    args = ["eval", str(path), "-l", f"{name}:classes=3{extra}", "--pred", "p", "--target", "t", "--batch-size", "4"]
    for j in range(c):
        args += ["-l", f"{name}:classes=3,class_index={j}{extra}"]
    got = [r["value"] for r in _cli_values(args + (["--logits"] if logits else []))]
    for j in range(c):
        exp = _ref_mask(name, flat, onehot, classes=c, logits=logits, dataset=True, class_index=j, **ref_kw)[0]
        assert got[1 + j] == pytest.approx(exp, rel=1e-12)
    assert got[0] == pytest.approx(float(np.mean(got[1:])), rel=1e-12)
    # per row too (the function), and an index past the classes is a usage error
    spec = registry.get(name)
    p = spec.resolve_params({"classes": 3, "class_index": 2, "space": "logits" if logits else "probabilities", **kw})
    rows = spec.fn(flat, onehot, **p)
    np.testing.assert_allclose(rows, _ref_mask(name, flat, onehot, classes=c, logits=logits, class_index=2,
                                               **ref_kw), rtol=1e-12)
    msg = run_err(["eval", str(path), "-l", f"{name}:classes=3,class_index=3", "--pred", "p", "--target", "t"], 2)
    assert "class_index=3 needs classes > 3" in msg


def test_boxes_as_list_columns(tmp_path):
    rng = np.random.default_rng(2)
    xy = rng.uniform(0, 50, size=(9, 2))
    pred = np.concatenate([xy, xy + rng.uniform(1, 30, size=(9, 2))], axis=1)
    gt = pred + rng.normal(0, 4, size=(9, 4))
    gt[:, 2:] = np.maximum(gt[:, 2:], gt[:, :2] + 0.5)
    path = tmp_path / "lb.parquet"
    pq.write_table(pa.table({"pb": pa.FixedSizeListArray.from_arrays(pa.array(pred.reshape(-1)), 4),
                             "gb": [list(map(float, r)) for r in gt]}), path)
    got = _cli_values(["eval", str(path), "-l", "diou", "-l", "ciou", "--pred", "pb", "--target", "gb"])
    for r in got:
        assert r["value"] == pytest.approx(math.fsum(reference_boxes(r["loss"], pred, gt)) / 9, rel=1e-12)


def test_box_format_flag_and_glob_in_file_order(tmp_path):
    """--box-format sets box_format on every box loss (one given on the loss wins), and a glob such as
    'pred_*' keeps the file's column order (x1, y1, x2, y2), so it equals the explicit list."""
    import pyarrow.csv as pcsv
    tbl = pcsv.read_csv(f"{SAMPLES}/boxes.csv")
    pred = np.column_stack([tbl.column(c).to_numpy() for c in ("pred_x1", "pred_y1", "pred_x2", "pred_y2")])
    gt = np.column_stack([tbl.column(c).to_numpy() for c in ("x1", "y1", "x2", "y2")])
    want = {r["loss"]: r["value"] for r in _cli_values(["eval", f"{SAMPLES}/boxes.csv", "-l", "giou,ciou",
                                                        "--pred", "pred_x1,pred_y1,pred_x2,pred_y2",
                                                        "--target", "x1,y1,x2,y2"])}
    got = {r["loss"]: r["value"] for r in _cli_values(["eval", f"{SAMPLES}/boxes.csv", "-l", "giou,ciou",
                                                       "--pred", "pred_*", "--target", "x1,y1,x2,y2"])}
    assert got == want
    P = np.column_stack([pred[:, 0], pred[:, 1], pred[:, 2] - pred[:, 0], pred[:, 3] - pred[:, 1]])
    G = np.column_stack([gt[:, 0], gt[:, 1], gt[:, 2] - gt[:, 0], gt[:, 3] - gt[:, 1]])
    path = tmp_path / "xywh.csv"
    pcsv.write_csv(pa.table({f"p{j}": P[:, j] for j in range(4)} | {f"g{j}": G[:, j] for j in range(4)}), path)
    got = {r["loss"]: r["value"] for r in _cli_values(["eval", str(path), "-l", "giou,ciou", "--pred", "p*",
                                                       "--target", "g*", "--box-format", "xywh"])}
    for name in ("giou", "ciou"):
        assert got[name] == pytest.approx(want[name], rel=1e-12)
    # the loss's own parameter wins over the flag: read as xyxy, these boxes are invalid
    msg = run_err(["eval", str(path), "-l", "giou:box_format=xyxy", "--pred", "p*", "--target", "g*",
                   "--box-format", "xywh"], 3)
    assert "invalid box" in msg and "--box-format xywh" in msg
    msg = run_err(["eval", str(path), "-l", "mse", "--pred", "p0", "--target", "g0", "--box-format", "xywh"], 2)
    assert msg == "--box-format: none of the requested losses takes boxes (iou, giou, diou, ciou)"
