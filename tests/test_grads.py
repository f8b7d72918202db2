"""Analytic gradients (`eval --grad`, LossSpec.grad) against torch.autograd, in float64, to 1e-8 relative.

The registry is the list: every built-in loss with a gradient must have a case in CASES (a torch
implementation of the per-sample loss written from the reference library's definition, and inputs in its
domain, away from kinks), and every loss without one must be in NO_GRAD with the reason.  Each torch
reference is first checked to give the loss's own values, so the gradients compared are of the same
function.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lossctl import registry
from lossctl.testing import check_grad, torch_grad

N = 48
EPS64 = float(np.finfo(np.float64).eps)

# Losses with no analytic gradient, and why.  A loss that gains one must leave this list.
NO_GRAD = {
    "zero_one": "piecewise constant in the prediction: the gradient is 0 almost everywhere and undefined at "
                "the threshold, so there is nothing useful to report",
    "nt_xent": "each row's loss depends on every row of its block, so there is no per-sample gradient",
}


# Gradients that exist but whose torch autograd CASES are still being written (the list may only shrink).
AWAITING_CASES = {"box_iou", "ciou", "cosine_embedding", "dice", "diou", "focal_tversky", "giou", "iou",
                  "margin_ranking", "triplet", "tversky"}


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
    missing = with_grad - set(CASES) - AWAITING_CASES
    assert not AWAITING_CASES & set(CASES), "a loss with CASES must leave AWAITING_CASES"
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
    import pyarrow.parquet as pq

    from lossctl import api

    d = class_scores()(0)
    cols = {f"s{j}": d["pred"][:, j] for j in range(C)}
    pq.write_table(pa.table({**cols, "y": d["target"].astype(np.int64)}), tmp_path / "mc.parquet")
    res = api.evaluate(str(tmp_path / "mc.parquet"), ["cross_entropy"], pred="s0,s1,s2,s3", target="y",
                       reduction="none", grad=True, limit=0)
    got = np.array([[row[f"d_cross_entropy/d_pred_{j}"] for j in range(C)] for row in res.rows])
    want = torch_grad(ce_ref(), {"pred": d["pred"], "target": d["target"]})
    np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-13)
