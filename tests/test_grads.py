"""Analytic gradients (`eval --grad`, LossSpec.grad) against torch.autograd, in float64, to 1e-8 relative.

The registry is the list: every built-in loss with a gradient must have a case in CASES (a torch
implementation of the per-sample loss written from the reference library's definition, and inputs in its
domain, away from kinks), and every loss without one must be in NO_GRAD with the reason.  Each torch
reference is first checked to give the loss's own values, so the gradients compared are of the same
function.
"""
from __future__ import annotations

import json
import math
import os

import numpy as np
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from lossctl import registry
from lossctl.cli import cli
from lossctl.testing import check_grad, torch_grad

N = 48
EPS64 = float(np.finfo(np.float64).eps)

# Losses with no analytic gradient, and why.  A loss that gains one must leave this list.
NO_GRAD = {
    "zero_one": "piecewise constant in the prediction: the gradient is 0 almost everywhere and undefined at "
                "the threshold, so there is nothing useful to report",
    "nt_xent": "each row's loss depends on every row of its block, so there is no per-sample gradient",
}



def rng(seed=0):
    return np.random.default_rng(seed)


def away_from(x: np.ndarray, kinks, gap=1e-3) -> np.ndarray:
    """Move values that sit within ``gap`` of a kink (where the gradient jumps) off it."""
    x = x.copy()
    for k in kinks:
        near = np.abs(x - k) < gap
        x[near] += 2 * gap
    return x


def reg(pred, target):
    return {"pred": pred, "target": target}


def normal_pair(seed=0, k=None):
    r = rng(seed)
    shape = (N,) if k is None else (N, k)
    y = r.normal(size=shape)
    return reg(y + away_from(r.normal(size=shape) * 1.5, [0.0]), y)


def positive_pair(seed=0, k=None):
    r = rng(seed)
    shape = (N,) if k is None else (N, k)
    return reg(r.uniform(0.2, 4.0, size=shape), r.uniform(0.2, 4.0, size=shape))


def mean_k(t):
    return t if t.dim() == 1 else t.mean(dim=1)


def _clamp_d(beta):
    def make(seed=0, k=None):
        d = normal_pair(seed, k)
        d["pred"] = d["target"] + away_from(d["pred"] - d["target"], [-beta, beta, 0.0])
        return d
    return make


def tweedie_ref(p):
    def ref(pred, target):
        mu, y = pred, target
        if p == 0:
            return (y - mu) ** 2
        if p == 1:
            return 2 * (torch.xlogy(y, y / mu) - y + mu)
        if p == 2:
            return 2 * (torch.log(mu / y) + y / mu - 1)
        yp = torch.clamp(y, min=0) if p < 0 else y
        return 2 * (yp ** (2 - p) / ((1 - p) * (2 - p)) - y * mu ** (1 - p) / (1 - p) + mu ** (2 - p) / (2 - p))
    return ref


def gaussian_inputs(k=None, var_shape=None):
    def make(seed=0):
        d = normal_pair(seed, k)
        d["var"] = rng(seed + 1).uniform(0.1, 2.0, size=var_shape or d["pred"].shape[:1])
        d["var"][:3] = 1e-9                         # below eps: clamped, as torch
        return d
    return make


# -- binary inputs ---------------------------------------------------------------------------------------
def probs01(seed=0, soft=False, k=None):
    r = rng(seed)
    shape = (N,) if k is None else (N, k)
    y = r.uniform(0, 1, size=shape) if soft else r.integers(0, 2, size=shape).astype(float)
    return reg(r.uniform(0.01, 0.99, size=shape), y)


def logits01(seed=0, soft=False, k=None):
    r = rng(seed)
    shape = (N,) if k is None else (N, k)
    y = r.uniform(0, 1, size=shape) if soft else r.integers(0, 2, size=shape).astype(float)
    return reg(r.normal(0, 3, size=shape), y)


def margins(kinks=(1.0,)):
    def make(seed=0):
        r = rng(seed)
        y = r.choice([-1.0, 1.0], size=N)
        m = away_from(r.normal(0, 2, size=N), list(kinks))   # the margin y f, off the kinks
        return reg(m * y, y)
    return make


def focal_ref(alpha, gamma, space):
    def ref(pred, target):
        y = target
        if space == "logits":
            p = torch.sigmoid(pred)
            ce = F.binary_cross_entropy_with_logits(pred, y, reduction="none")
        else:
            p = pred
            ce = F.binary_cross_entropy(pred, y, reduction="none")
        p_t = p * y + (1 - p) * (1 - y)
        loss = ce * (1 - p_t) ** gamma
        if alpha >= 0:
            loss = (alpha * y + (1 - alpha) * (1 - y)) * loss
        return mean_k(loss)
    return ref


def log_loss_ref(eps=EPS64):
    def ref(pred, target):
        if pred.dim() == 1:
            p = torch.stack([1 - pred, pred], dim=1)
            y = torch.stack([1 - target, target], dim=1)
        else:
            p = pred
            y = F.one_hot(target.long(), pred.shape[1]).double() if target.dim() == 1 else target
        p = torch.clamp(p, eps, 1 - eps)
        return -(torch.where(y == 0, torch.zeros_like(p), y * torch.log(p))).sum(dim=1)
    return ref


def brier_ref(half):
    def ref(pred, target):
        if pred.dim() == 1:
            p = torch.stack([1 - pred, pred], dim=1)
            y = torch.stack([1 - target, target], dim=1)
        else:
            p = pred
            y = F.one_hot(target.long(), pred.shape[1]).double() if target.dim() == 1 else target
        l = ((y - p) ** 2).sum(dim=1)
        return 0.5 * l if half else l
    return ref


# -- multiclass inputs -----------------------------------------------------------------------------------
C = 4


def class_scores(space="logits", target="index", seed=0, ignore=None):
    def make(seed=seed):
        r = rng(seed)
        x = r.normal(0, 2, size=(N, C))
        if space == "probabilities":
            x = np.exp(x) / np.exp(x).sum(axis=1, keepdims=True)
        elif space == "log-probabilities":
            x = x - np.log(np.exp(x).sum(axis=1, keepdims=True))
        if target == "index":
            y = r.integers(0, C, size=N).astype(float)
            if ignore is not None:
                y[::7] = ignore
        else:
            y = r.dirichlet(np.ones(C), size=N)
        return reg(x, y)
    return make


def ce_ref(class_weights=(), ignore_index=-100, label_smoothing=0.0, space="logits"):
    w = torch.tensor(class_weights, dtype=torch.float64) if class_weights else None

    def ref(pred, target):
        tgt = target.long() if target.dim() == 1 else target
        if space == "logits":
            return F.cross_entropy(pred, tgt, weight=w, ignore_index=ignore_index, label_smoothing=label_smoothing,
                                   reduction="none")
        lp = pred if space == "log-probabilities" else torch.clamp(torch.log(pred), min=-100.0)
        # NLLLoss on log p, with torch's label smoothing written out (cross_entropy applies it to log p)
        nll = F.nll_loss(lp, tgt, weight=w, ignore_index=ignore_index, reduction="none")
        if not label_smoothing:
            return nll
        wv = w if w is not None else torch.ones(pred.shape[1], dtype=torch.float64)
        smooth = torch.where(tgt != ignore_index, -(lp * wv).sum(dim=1), torch.zeros_like(nll))
        return (1 - label_smoothing) * nll + label_smoothing / pred.shape[1] * smooth
    return ref


def kl_ref(log_target=False, space="log-probabilities"):
    def ref(pred, target):
        if space == "logits":
            inp = F.log_softmax(pred, dim=1)
        elif space == "probabilities":
            inp = torch.log(pred)
        else:
            inp = pred
        return F.kl_div(inp, target, reduction="none", log_target=log_target).sum(dim=1)
    return ref


def kl_inputs(space, log_target=False):
    def make(seed=0):
        d = class_scores(space, "soft")(seed)
        if log_target:
            d["target"] = np.log(d["target"])
        return d
    return make


def js_ref(space):
    def ref(pred, target):
        if space == "logits":
            q = torch.softmax(pred, dim=1)
        elif space == "log-probabilities":
            q = torch.exp(pred)
        else:
            q = pred
        q = q / q.sum(dim=1, keepdim=True)
        p = target / target.sum(dim=1, keepdim=True)
        m = (p + q) / 2
        return 0.5 * (torch.xlogy(p, p / m) + torch.xlogy(q, q / m)).sum(dim=1)
    return ref


def js_inputs(space):
    def make(seed=0):
        d = class_scores(space, "soft")(seed)
        if space == "probabilities":
            d["pred"] = d["pred"] * 1.7          # not normalised: the loss renormalises
        return d
    return make


def margin_inputs(margin=1.0):
    def make(seed=0):
        d = class_scores("logits")(seed)
        x, y = d["pred"], d["target"].astype(int)
        # keep every margin - x_y + x_i away from 0 (the hinge's kink)
        for _ in range(5):
            z = margin - x[np.arange(N), y][:, None] + x
            near = np.abs(z) < 1e-3
            near[np.arange(N), y] = False
            x = x + near * 0.01
        d["pred"] = x
        return d
    return make


def multi_margin_ref(p=1, margin=1.0, class_weights=()):
    w = torch.tensor(class_weights, dtype=torch.float64) if class_weights else None

    def ref(pred, target):
        return F.multi_margin_loss(pred, target.long(), p=p, margin=margin, weight=w, reduction="none")
    return ref


def crammer_singer_ref(pred, target):
    hot = F.one_hot(target.long(), pred.shape[1]).bool()
    runner_up = pred.masked_fill(hot, -math.inf).max(dim=1).values
    true = pred[hot]
    return torch.clamp(1 - (true - runner_up), min=0)


def softmax_focal_ref(alpha=0.25, gamma=2.0, eps=1e-7, label_smoothing=0.0, space="probabilities"):
    def ref(pred, target):
        y = F.one_hot(target.long(), pred.shape[1]).double() if target.dim() == 1 else target
        if label_smoothing:
            y = y * (1 - label_smoothing) + label_smoothing / pred.shape[1]
        if space == "logits" and eps == 0:
            lp = F.log_softmax(pred, dim=1)
            p = torch.exp(lp)
        else:
            u = torch.softmax(pred, dim=1) if space == "logits" else torch.exp(pred) if space == "log-probabilities" \
                else pred
            p = torch.clamp(u / u.sum(dim=1, keepdim=True), eps, 1 - eps)
            lp = torch.log(p)
        return (alpha * (1 - p) ** gamma * torch.where(y == 0, torch.zeros_like(p), -y * lp)).sum(dim=1)
    return ref


def multilabel_ref(class_weights=()):
    w = torch.tensor(class_weights, dtype=torch.float64) if class_weights else None

    def ref(pred, target):
        return F.multilabel_soft_margin_loss(pred, target, weight=w, reduction="none")
    return ref


def multilabel_inputs(seed=0):
    r = rng(seed)
    return reg(r.normal(0, 2, size=(N, C)), r.integers(0, 2, size=(N, C)).astype(float))


# -- masks -------------------------------------------------------------------------------------------------
K_PIX = 12


def mask_inputs(space="probabilities", soft=False, pixels=K_PIX, flat=False):
    def make(seed=0):
        r = rng(seed)
        shape = (N,) if flat else (N, pixels)
        t = r.uniform(0, 1, size=shape) if soft else r.integers(0, 2, size=shape).astype(float)
        x = r.normal(0, 2, size=shape) if space == "logits" else r.uniform(0.02, 0.98, size=shape)
        return reg(x, t)
    return make


def mask_ref(name, smooth=0.0, alpha=0.5, beta=0.5, gamma=1.0, classes=1, class_axis="last",
             space="probabilities", class_index=-1):
    """Per-row mask loss from I = sum p t, FP = sum p (1 - t), FN = sum (1 - p) t (optax / Keras
    convention), the mean over ``classes`` masks of m pixels laid out as ``class_axis`` says."""
    a, b, k = (1.0, 1.0, 2.0) if name == "dice" else (1.0, 1.0, 1.0) if name == "iou" else (alpha, beta, 1.0)

    def ref(pred, target):
        x = pred[:, None] if pred.dim() == 1 else pred
        t = target[:, None] if target.dim() == 1 else target
        n, kk = x.shape
        m = kk // classes
        if class_axis == "last":
            x, t = x.reshape(n, m, classes).transpose(1, 2), t.reshape(n, m, classes).transpose(1, 2)
        else:
            x, t = x.reshape(n, classes, m), t.reshape(n, classes, m)
        if space == "logits":
            p = torch.sigmoid(x) if classes == 1 else torch.softmax(x, dim=1)
        else:
            p = x
        inter, fp, fn = (p * t).sum(2), (p * (1 - t)).sum(2), ((1 - p) * t).sum(2)
        err = a * fp + b * fn
        loss = err / (k * inter + err + smooth)
        if name == "focal_tversky":
            loss = loss ** gamma
        return loss[:, class_index] if class_index >= 0 else loss.mean(dim=1)
    return ref


def mask_cases(name, extra=None):
    base = dict(extra or {})
    variants = [
        ({}, mask_inputs()),
        ({"smooth": 1.0}, mask_inputs(soft=True)),
        ({"space": "logits"}, mask_inputs("logits")),
        ({"classes": 3, "space": "logits"}, mask_inputs("logits")),
        ({"classes": 3, "space": "logits", "class_index": 1}, mask_inputs("logits")),
        ({"classes": 4, "class_axis": "first"}, mask_inputs(soft=True)),
        ({"classes": 4, "class_axis": "first", "class_index": 3}, mask_inputs(soft=True)),
        ({"smooth": 0.5}, mask_inputs(flat=True)),          # one pixel per row
    ]
    out = []
    for params, make in variants:
        params = {**base, **params}
        out.append((params, make, mask_ref(name, **params)))
    return out


# -- boxes -------------------------------------------------------------------------------------------------
def box_inputs(box_format="xyxy", disjoint=False):
    """Pairs of boxes, mostly overlapping (some disjoint with ``disjoint``), no two edges within 1e-3 (the
    max/min and the overlap test have kinks there), in ``box_format``."""
    def make(seed=0):
        r = rng(seed)
        g = np.empty((N, 4))
        g[:, :2] = r.uniform(0, 10, size=(N, 2))
        g[:, 2:] = g[:, :2] + r.uniform(1, 5, size=(N, 2))
        p = g + r.normal(0, 0.8, size=(N, 4))
        if disjoint:
            p[::4, [0, 2]] += 12.0                        # every fourth pair misses
        p[:, 2:] = np.maximum(p[:, 2:], p[:, :2] + 0.3)
        for j in range(4):                                 # off every edge of the other box
            for i2 in range(4):
                near = np.abs(p[:, j] - g[:, i2]) < 1e-3
                p[near, j] += 5e-3
        out = {"xyxy": lambda b: b,
               "xywh": lambda b: np.c_[b[:, :2], b[:, 2:] - b[:, :2]],
               "cxcywh": lambda b: np.c_[(b[:, :2] + b[:, 2:]) / 2, b[:, 2:] - b[:, :2]]}[box_format]
        return reg(out(p), out(g))
    return make


def box_ref(name, box_format="xyxy", eps=1e-7):
    """torchvision.ops box losses (reduction='none'), written out in torch from torchvision's definitions:
    _loss_inter_union (intersection 0 unless both overlaps are positive); eps in the IoU, in giou's enclosing
    area and in diou's diagonal; ciou calls the diou part with its default 1e-7 and uses eps only in alpha,
    which it computes under torch.no_grad()."""
    tv = 1e-7

    def xyxy(b):
        if box_format == "xyxy":
            return b.unbind(1)
        if box_format == "xywh":
            x, y, w, h = b.unbind(1)
            return x, y, x + w, y + h
        cx, cy, w, h = b.unbind(1)
        return cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h

    def ref(pred, target):
        x1, y1, x2, y2 = xyxy(pred)
        x1g, y1g, x2g, y2g = xyxy(target)
        xk1, yk1 = torch.max(x1, x1g), torch.max(y1, y1g)
        xk2, yk2 = torch.min(x2, x2g), torch.min(y2, y2g)
        inter = torch.where((yk2 > yk1) & (xk2 > xk1), (xk2 - xk1) * (yk2 - yk1), torch.zeros_like(x1))
        union = (x2 - x1) * (y2 - y1) + (x2g - x1g) * (y2g - y1g) - inter
        e = tv if name == "ciou" else eps
        iou = inter / (union + e)
        if name == "box_iou":
            return 1 - iou
        xc1, yc1 = torch.min(x1, x1g), torch.min(y1, y1g)
        xc2, yc2 = torch.max(x2, x2g), torch.max(y2, y2g)
        if name == "giou":
            area_c = (xc2 - xc1) * (yc2 - yc1)
            return 1 - (iou - (area_c - union) / (area_c + eps))
        diag = (xc2 - xc1) ** 2 + (yc2 - yc1) ** 2 + e
        dist = ((x2 + x1) / 2 - (x1g + x2g) / 2) ** 2 + ((y2 + y1) / 2 - (y1g + y2g) / 2) ** 2
        diou = 1 - iou + dist / diag
        if name == "diou":
            return diou
        v = (4 / math.pi ** 2) * (torch.atan((x2g - x1g) / (y2g - y1g)) - torch.atan((x2 - x1) / (y2 - y1))) ** 2
        with torch.no_grad():
            alpha = v / (1 - iou + v + eps)
        return diou + alpha * v
    return ref


def box_cases(name):
    return [({}, box_inputs(disjoint=True), box_ref(name)),
            ({"box_format": "xywh"}, box_inputs("xywh"), box_ref(name, "xywh")),
            ({"box_format": "cxcywh", "eps": 1e-3}, box_inputs("cxcywh", disjoint=True),
             box_ref(name, "cxcywh", 1e-3))]


# -- embeddings ------------------------------------------------------------------------------------------
def pair_inputs(dim=5, margin=0.0):
    """x1, x2 vectors and +-1 labels, with cos(x1, x2) kept away from ``margin`` (the kink of y = -1)."""
    def make(seed=0):
        r = rng(seed)
        x1, x2 = r.normal(size=(N, dim)), r.normal(size=(N, dim))
        cos = np.sum(x1 * x2, axis=1) / np.linalg.norm(x1, axis=1) / np.linalg.norm(x2, axis=1)
        keep = np.abs(cos - margin) > 1e-3
        x1, x2 = x1[keep], x2[keep]
        return {"pred": x1, "target": x2, "label": r.choice([-1.0, 1.0], size=len(x1))}
    return make


def ranking_inputs(margin=0.0):
    def make(seed=0):
        r = rng(seed)
        y = r.choice([-1.0, 1.0], size=N)
        x2 = r.normal(size=N)
        z = away_from(r.normal(0, 1, size=N), [0.0])          # z = -y (x1 - x2) + margin, off the kink at 0
        x1 = x2 - y * (z - margin)
        return {"pred": x1, "target": x2, "label": y}
    return make


def triplet_inputs(dim=4, margin=1.0, p=2.0, eps=1e-6, swap=False):
    """Anchors, positives and negatives with the hinge max(., 0), the swap's min and |.| of every
    component of a - x + eps (p = 1) all away from their kinks."""
    def make(seed=0):
        r = rng(seed)
        a, pos, neg = (r.normal(size=(N * 2, dim)) for _ in range(3))
        pos = a + 0.7 * (pos - a)

        def dist(u, v):
            d = np.abs(u - v + eps)
            return d.max(axis=1) if np.isinf(p) else (d ** p).sum(axis=1) ** (1 / p)
        d_neg = dist(a, neg)
        if swap:
            d_pn = dist(pos, neg)
            d_neg = np.minimum(d_neg, d_pn)
        z = margin + dist(a, pos) - d_neg
        ok = np.abs(z) > 1e-3
        ok &= np.all(np.abs(a - pos + eps) > 1e-3, axis=1) & np.all(np.abs(a - neg + eps) > 1e-3, axis=1)
        if swap:
            ok &= np.abs(dist(a, neg) - d_pn) > 1e-3
        return {"anchor": a[ok][:N], "pred": pos[ok][:N], "target": neg[ok][:N]}
    return make


# name -> [(params, make_inputs(seed) -> {role: array}, torch reference(**tensors) -> per-sample loss)]
CASES = {
    "mse": [({}, normal_pair, lambda pred, target: (pred - target) ** 2),
            ({}, lambda s=0: normal_pair(s, 3), lambda pred, target: ((pred - target) ** 2).mean(dim=1))],
    "rmse": [({}, normal_pair, lambda pred, target: torch.abs(pred - target)),
             ({}, lambda s=0: normal_pair(s, 3), lambda pred, target: torch.sqrt(((pred - target) ** 2).mean(dim=1)))],
    "quadratic": [({}, normal_pair, lambda pred, target: 0.5 * (pred - target) ** 2)],
    "mae": [({}, normal_pair, lambda pred, target: torch.abs(pred - target)),
            ({}, lambda s=0: normal_pair(s, 2), lambda pred, target: torch.abs(pred - target).mean(dim=1))],
    "huber": [({"delta": dl}, _clamp_d(dl),
               lambda pred, target, dl=dl: F.huber_loss(pred, target, delta=dl, reduction="none"))
              for dl in (1.0, 0.3, 2.5)]
             + [({"delta": 0.5}, lambda s=0: _clamp_d(0.5)(s, 3),
                 lambda pred, target: F.huber_loss(pred, target, delta=0.5, reduction="none").mean(dim=1))],
    "smooth_l1": [({"beta": b}, _clamp_d(b),
                   lambda pred, target, b=b: F.smooth_l1_loss(pred, target, beta=b, reduction="none"))
                  for b in (1.0, 0.2, 0.0)],
    "log_cosh": [({}, normal_pair, lambda pred, target: torch.log(torch.cosh(pred - target)))],
    "quantile": [({"alpha": a}, normal_pair,
                  lambda pred, target, a=a: torch.where(target - pred >= 0, a * (target - pred),
                                                         (a - 1) * (target - pred)))
                 for a in (0.5, 0.1, 0.9)],
    "poisson_nll": [({"log_input": li, "full": full}, positive_pair,
                     lambda pred, target, li=li, full=full: F.poisson_nll_loss(pred, target, log_input=li,
                                                                               full=full, reduction="none"))
                    for li in (True, False) for full in (False, True)],
    "poisson_deviance": [({}, positive_pair, tweedie_ref(1))],
    "gamma_deviance": [({}, positive_pair, tweedie_ref(2))],
    "tweedie_deviance": [({"power": p}, positive_pair, tweedie_ref(p)) for p in (0.0, 1.0, 1.5, 2.0, 3.0, -0.5)],
    "gaussian_nll": [({"full": full}, gaussian_inputs(),
                      lambda pred, target, var, full=full: F.gaussian_nll_loss(pred, target, var, full=full,
                                                                               reduction="none"))
                     for full in (False, True)]
                    + [({}, gaussian_inputs(k=3),
                        lambda pred, target, var: F.gaussian_nll_loss(pred, target, var[:, None],
                                                                      reduction="none").mean(dim=1))],
    "msle": [({}, positive_pair, lambda pred, target: (torch.log1p(pred) - torch.log1p(target)) ** 2)],
    "rmsle": [({}, positive_pair, lambda pred, target: torch.abs(torch.log1p(pred) - torch.log1p(target))),
              ({}, lambda s=0: positive_pair(s, 3),
               lambda pred, target: torch.sqrt(((torch.log1p(pred) - torch.log1p(target)) ** 2).mean(dim=1)))],
    "mape": [({"percent": pc}, normal_pair,
              lambda pred, target, pc=pc: (100.0 if pc else 1.0) * torch.abs(pred - target)
              / torch.clamp(torch.abs(target), min=EPS64))
             for pc in (False, True)],
    "smape": [({}, normal_pair,
               lambda pred, target: 2 * torch.abs(pred - target)
               / torch.clamp(torch.abs(pred) + torch.abs(target), min=EPS64))],
    "mean_bias": [({}, normal_pair, lambda pred, target: pred - target)],
    # binary
    "bce": [({}, probs01, lambda pred, target: F.binary_cross_entropy(pred, target, reduction="none")),
            ({}, lambda s=0: probs01(s, soft=True), lambda pred, target: F.binary_cross_entropy(pred, target,
                                                                                               reduction="none")),
            ({}, lambda s=0: probs01(s, k=3),
             lambda pred, target: F.binary_cross_entropy(pred, target, reduction="none").mean(dim=1))],
    "bce_with_logits": [({"pos_weight": pw}, lambda s=0: logits01(s, soft=True),
                         lambda pred, target, pw=pw: F.binary_cross_entropy_with_logits(
                             pred, target, pos_weight=torch.tensor(pw, dtype=torch.float64), reduction="none"))
                        for pw in (1.0, 3.0)]
                       + [({}, lambda s=0: logits01(s, k=3),
                           lambda pred, target: F.binary_cross_entropy_with_logits(pred, target,
                                                                                   reduction="none").mean(dim=1))],
    "log_loss": [({}, probs01, log_loss_ref()),
                 ({"eps": 0.05}, probs01, log_loss_ref(0.05)),
                 ({}, class_scores("probabilities"), log_loss_ref()),
                 ({}, class_scores("probabilities", "soft"), log_loss_ref())],
    "brier": [({}, probs01, brier_ref(True)),
              ({"scale_by_half": "false"}, probs01, brier_ref(False)),
              ({}, class_scores("probabilities"), brier_ref(False)),
              ({"scale_by_half": "true"}, class_scores("probabilities", "soft"), brier_ref(True))],
    "focal": [({"alpha": a, "gamma": g}, lambda s=0: logits01(s, soft=True), focal_ref(a, g, "logits"))
              for a in (0.25, -1.0) for g in (2.0, 0.5, 0.0)]
             + [({"space": "probabilities"}, probs01, focal_ref(0.25, 2.0, "probabilities")),
                ({}, lambda s=0: logits01(s, k=3), focal_ref(0.25, 2.0, "logits"))],
    "hinge": [({}, margins(), lambda pred, target: torch.clamp(1 - target * pred, min=0))],
    "squared_hinge": [({}, margins(), lambda pred, target: torch.clamp(1 - target * pred, min=0) ** 2)],
    "perceptron": [({}, margins((0.0,)), lambda pred, target: torch.clamp(-target * pred, min=0))],
    "exponential": [({}, margins(()), lambda pred, target: torch.exp(-target * pred))],
    "logistic": [({}, margins(()), lambda pred, target: F.soft_margin_loss(pred, target, reduction="none"))],
    # multiclass
    "cross_entropy": [
        ({}, class_scores(), ce_ref()),
        ({"class_weights": (1.0, 2.0, 0.5, 3.0), "label_smoothing": 0.1}, class_scores(ignore=-100),
         ce_ref((1.0, 2.0, 0.5, 3.0), -100, 0.1)),
        ({"ignore_index": 2}, class_scores(), ce_ref(ignore_index=2)),
        ({"label_smoothing": 0.2}, class_scores(target="soft"), ce_ref(label_smoothing=0.2)),
        ({"class_weights": (1.0, 2.0, 0.5, 3.0)}, class_scores(target="soft"), ce_ref((1.0, 2.0, 0.5, 3.0))),
        ({"space": "log-probabilities", "label_smoothing": 0.1}, class_scores("log-probabilities"),
         ce_ref(label_smoothing=0.1, space="log-probabilities")),
        ({"space": "probabilities"}, class_scores("probabilities"), ce_ref(space="probabilities")),
    ],
    "nll": [({}, class_scores("log-probabilities"), ce_ref(space="log-probabilities")),
            ({"class_weights": (2.0, 1.0, 1.0, 0.5), "ignore_index": 1}, class_scores("log-probabilities"),
             ce_ref((2.0, 1.0, 1.0, 0.5), 1, space="log-probabilities"))],
    "kl_div": [({}, kl_inputs("log-probabilities"), kl_ref()),
               ({"log_target": True}, kl_inputs("log-probabilities", True), kl_ref(True)),
               ({"space": "logits"}, kl_inputs("logits"), kl_ref(space="logits")),
               ({"space": "probabilities"}, kl_inputs("probabilities"), kl_ref(space="probabilities"))],
    "js_divergence": [({"space": sp}, js_inputs(sp), js_ref(sp))
                      for sp in ("probabilities", "logits", "log-probabilities")],
    "multi_margin": [({"p": p, "margin": m, "class_weights": cw}, margin_inputs(m), multi_margin_ref(p, m, cw))
                     for p, m, cw in ((1, 1.0, ()), (2, 0.5, ()), (1, 2.0, (1.0, 2.0, 3.0, 0.5)))],
    "multiclass_hinge": [({}, margin_inputs(), crammer_singer_ref)],
    "softmax_focal": [
        ({}, class_scores("probabilities"), softmax_focal_ref()),
        ({"gamma": 0.5, "label_smoothing": 0.1}, class_scores("probabilities", "soft"),
         softmax_focal_ref(gamma=0.5, label_smoothing=0.1)),
        ({"space": "logits"}, class_scores("logits"), softmax_focal_ref(space="logits")),
        ({"space": "logits", "eps": 0.0, "alpha": 1.0}, class_scores("logits"),
         softmax_focal_ref(alpha=1.0, eps=0.0, space="logits")),
        ({"space": "logits", "gamma": 0.0}, class_scores("logits", "soft"),
         softmax_focal_ref(gamma=0.0, space="logits")),
    ],
    "multilabel_soft_margin": [({}, multilabel_inputs, multilabel_ref()),
                               ({"class_weights": (1.0, 2.0, 0.5, 4.0)}, multilabel_inputs,
                                multilabel_ref((1.0, 2.0, 0.5, 4.0)))],
    # masks (a torch version of the I, FP, FN formulas; optax / Keras are not torch)
    "dice": mask_cases("dice"),
    "iou": mask_cases("iou"),
    "tversky": mask_cases("tversky", {"alpha": 0.3, "beta": 0.7}),
    "focal_tversky": mask_cases("focal_tversky", {"alpha": 0.3, "beta": 0.7, "gamma": 0.75})
                     + mask_cases("focal_tversky", {"alpha": 0.5, "beta": 0.5, "gamma": 2.0})[:2],
    # boxes (torchvision.ops written out in torch; torchvision itself is not installable here)
    "box_iou": box_cases("box_iou"),
    "giou": box_cases("giou"),
    "diou": box_cases("diou"),
    "ciou": box_cases("ciou"),
    # embeddings (torch.nn.functional itself)
    "cosine_embedding": [({"margin": m}, pair_inputs(margin=m),
                          lambda pred, target, label, m=m: F.cosine_embedding_loss(pred, target, label, margin=m,
                                                                                   reduction="none"))
                         for m in (0.0, 0.3, -0.4)],
    "margin_ranking": [({"margin": m}, ranking_inputs(m),
                        lambda pred, target, label, m=m: F.margin_ranking_loss(pred, target, label, margin=m,
                                                                               reduction="none"))
                       for m in (0.0, 0.5)],
    "triplet": [({"margin": m, "p": p, "eps": e, "swap": sw}, triplet_inputs(margin=m, p=p, eps=e, swap=sw),
                 lambda anchor, pred, target, m=m, p=p, e=e, sw=sw: F.triplet_margin_loss(
                     anchor, pred, target, margin=m, p=p, eps=e, swap=sw, reduction="none"))
                for m, p, e, sw in ((1.0, 2.0, 1e-6, False), (0.5, 1.0, 1e-6, False), (2.0, 3.0, 0.0, False),
                                    (1.0, 2.0, 1e-6, True), (1.0, math.inf, 1e-6, False))],
}


def builtins():
    return [s for s in registry.all_losses() if not s.plugin]


def test_every_loss_has_a_gradient_or_a_reason():
    with_grad = {s.name for s in builtins() if s.grad is not None}
    without = {s.name for s in builtins() if s.grad is None}
    assert without == set(NO_GRAD), ("losses without a gradient must be listed in NO_GRAD with a reason "
                                     f"(missing: {sorted(without - set(NO_GRAD))}; have one now: "
                                     f"{sorted(set(NO_GRAD) - without)})")
    assert all(reason.strip() for reason in NO_GRAD.values())
    missing = with_grad - set(CASES)
    assert not missing, f"losses with a gradient but no torch reference in CASES: {sorted(missing)}"
    assert not set(CASES) - with_grad, f"CASES for losses without a gradient: {sorted(set(CASES) - with_grad)}"


def _cases():
    for name, cases in CASES.items():
        for i, (params, make, ref) in enumerate(cases):
            yield pytest.param(name, params, make, ref, id=f"{name}-{i}")


@pytest.mark.parametrize("name,params,make,ref", list(_cases()))
def test_gradient_matches_torch_autograd(name, params, make, ref):
    spec = registry.get(name)
    for seed in (0, 1):
        arrays = make(seed)
        inputs = {r: arrays[r] for r in spec.roles}
        # the torch reference is the loss itself: same values first
        req_params = spec.resolve_params(params)
        ours = spec.fn(*[inputs[r] for r in spec.roles], **req_params)
        with torch.no_grad():
            theirs = ref(**{r: torch.tensor(a, dtype=torch.float64) for r, a in inputs.items()}).numpy()
        np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-13, err_msg=f"{name} {params}: values")
        check_grad(name, inputs["pred"], inputs.get("target"), params=params,
                   inputs={r: a for r, a in inputs.items() if r not in ("pred", "target")}, reference=ref,
                   rtol=1e-8, atol=1e-13)


def test_gradient_shape_follows_pred():
    x = rng(3).normal(size=(5, C))
    g = registry.get("cross_entropy").grad(x, np.array([0.0, 1, 2, 3, 0]))
    assert g.shape == (5, C)
    np.testing.assert_allclose(g.sum(axis=1), 0.0, atol=1e-15)    # softmax gradients sum to 0 per row


def test_torch_grad_helper_sums_per_sample():
    pred, target = rng(4).normal(size=6), rng(5).normal(size=6)
    g = torch_grad(lambda pred, target: (pred - target) ** 2, {"pred": pred, "target": target})
    np.testing.assert_allclose(g, 2 * (pred - target), rtol=1e-15)


def test_check_grad_without_reference_uses_finite_differences():
    d = normal_pair(7)
    check_grad("log_cosh", d["pred"], d["target"])
    with pytest.raises(AssertionError):
        check_grad("zero_one", d["pred"], d["target"])


def test_grad_columns_for_class_scores(tmp_path):
    import pyarrow as pa

    from lossctl import api

    d = class_scores()(0)
    cols = {f"s{j}": d["pred"][:, j] for j in range(C)}
    pq.write_table(pa.table({**cols, "y": d["target"].astype(np.int64)}), tmp_path / "mc.parquet")
    res = api.evaluate(str(tmp_path / "mc.parquet"), ["cross_entropy"], pred="s0,s1,s2,s3", target="y",
                       reduction="none", grad=True, limit=0)
    got = np.array([[row[f"d_cross_entropy/d_pred_{j}"] for j in range(C)] for row in res.rows])
    want = torch_grad(ce_ref(), {"pred": d["pred"], "target": d["target"]})
    np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-13)


# -- `lossctl eval --grad` through the CLI ------------------------------------------------------------------
SAMPLE_DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "sample_data")


def _cli_rows(*args):
    res = CliRunner().invoke(cli, [*args, "--grad", "-r", "none", "--format", "json", "--limit", "0"],
                             catch_exceptions=False)
    assert res.exit_code == 0, (res.exit_code, res.stderr)
    return json.loads(res.stdout)["rows"]


def test_cli_grad_boxes_against_torch():
    t = pcsv.read_csv(f"{SAMPLE_DATA}/boxes.csv")
    pred = np.stack([t.column(c).to_numpy() for c in ("pred_x1", "pred_y1", "pred_x2", "pred_y2")], axis=1)
    target = np.stack([t.column(c).to_numpy() for c in ("x1", "y1", "x2", "y2")], axis=1)
    rows = _cli_rows("eval", f"{SAMPLE_DATA}/boxes.csv", "-l", "ciou", "--pred", "pred_x1,pred_y1,pred_x2,pred_y2",
                     "--target", "x1,y1,x2,y2")
    got = np.array([[row[f"d_ciou/d_pred_{j}"] for j in range(4)] for row in rows])
    want = torch_grad(box_ref("ciou"), {"pred": pred, "target": target})
    np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-13)
    assert np.abs(got).max() > 0
    # the sample holds a perfect box (row 8) and boxes sharing edges: torch splits the gradient at a tie
    assert (pred == target).all(axis=1).any() and ((pred == target).any(axis=1) & ~(pred == target).all(axis=1)).any()


@pytest.mark.parametrize("name", ["box_iou", "giou", "diou", "ciou"])
def test_box_gradient_at_ties_is_torch_subgradient(name):
    """A predicted box equal to its target or sharing an edge with it: max/min tie, torch gives half of the
    gradient to each side; the analytic gradient does the same."""
    g = np.array([[0.0, 0.0, 4.0, 3.0], [1.0, 1.0, 3.0, 5.0], [0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 2.0, 2.0]])
    p = np.array([[0.0, 0.0, 4.0, 3.0], [1.0, 0.5, 3.5, 5.0], [3.0, 0.0, 5.0, 2.0], [0.5, 0.0, 2.0, 2.0]])
    check_grad(name, p, g, reference=box_ref(name), rtol=1e-8, atol=1e-13)


def test_cli_grad_triplet_is_with_respect_to_the_anchor():
    t = pq.read_table(f"{SAMPLE_DATA}/triplets.parquet")
    arr = {r: np.array(t.column(c).to_pylist()) for r, c in (("anchor", "a"), ("pred", "p"), ("target", "n"))}
    rows = _cli_rows("eval", f"{SAMPLE_DATA}/triplets.parquet", "-l", "triplet:margin=1", "--anchor", "a",
                     "--pred", "p", "--target", "n")
    d = arr["anchor"].shape[1]
    got = np.array([[row[f"d_triplet(margin=1.0)/d_anchor_{j}"] for j in range(d)] for row in rows])
    want = torch_grad(lambda anchor, pred, target: F.triplet_margin_loss(anchor, pred, target, margin=1.0,
                                                                         reduction="none"), arr, "anchor")
    np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-13)


def test_cli_grad_logits_space_is_d_loss_d_logit():
    # focal on logits: the column is d loss / d logit (torch autograd through sigmoid_focal_loss's formula)
    t = pcsv.read_csv(f"{SAMPLE_DATA}/binary.csv")
    x = t.column("logit").to_numpy().astype(float)
    y = t.column("label").to_numpy().astype(float)
    rows = _cli_rows("eval", f"{SAMPLE_DATA}/binary.csv", "-l", "focal", "--pred", "logit", "--target", "label",
                     "--logits")
    got = np.array([row["d_focal/d_pred"] for row in rows])
    want = torch_grad(focal_ref(0.25, 2.0, "logits"), {"pred": x, "target": y})
    np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-13)


def test_cli_grad_refused_for_a_loss_without_gradient():
    res = CliRunner().invoke(cli, ["eval", f"{SAMPLE_DATA}/embeddings.parquet", "-l", "nt_xent", "--pred", "z_i",
                                   "--target", "z_j", "--grad", "-r", "none"], catch_exceptions=False)
    assert res.exit_code == 2
    assert "no gradient defined for nt_xent" in res.stderr and "Traceback" not in res.stderr
