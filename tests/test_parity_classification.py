"""Parity of the classification losses with the libraries they reproduce, plus their prepare hooks.

Reference values come from the real libraries, called here: torch 2.13.0 (torch.nn.functional), scikit-learn
(sklearn.metrics) and scipy (scipy.spatial.distance.jensenshannon).  A missing library fails the import.

Where the reference is not installable the golden values are computed from the reference's own source
formula with torch ops, and say so:
* torchvision.ops.sigmoid_focal_loss: torchvision cannot be installed beside the torch 2.13.0 CPU build used
  here, so ``_torchvision_sigmoid_focal`` transcribes its body (torchvision/ops/focal_loss.py: BCE with logits
  times (1 - p_t)^gamma, times alpha_t when alpha >= 0) in torch ops and the tests compare against that.
* keras.losses.CategoricalFocalCrossentropy / SquaredHinge, optax perceptron_loss: Keras and optax are not
  installed; ``_keras_categorical_focal`` transcribes keras/src/losses/losses.py (Keras 3), and one check uses
  the float32 value printed in Keras's own docstring.
* exponential loss exp(-y f) has no library function; its golden is torch.exp.

Inputs go through the registry entry (prepare hook -> fn / terms), as the pipeline runs them, with a small
stand-in for lossctl.api.BatchContext.  Tolerance: rtol 1e-10 in float64.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import scipy.spatial.distance as ssd
import sklearn.metrics as skm
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lossctl import registry
from lossctl.errors import InputError, UsageError
from lossctl.losses import _labels

RTOL = 1e-10
EPS = float(np.finfo(np.float64).eps)
SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# -- stand-in batch context --------------------------------------------------------------------------------
class FakeCtx:
    """What a prepare hook may use of lossctl.api.BatchContext: error(), options, memo, file, columns."""

    def __init__(self, classes=None, class_weights=None, space=None, row0=0):
        self.options = {"classes": classes, "class_weights": class_weights, "space": space}
        self.memo: dict = {}
        self.file = "scores.csv"
        self.columns = {"pred": "p", "target": "label"}
        self.row0 = row0

    def error(self, role, i, msg):
        where = f"{self.file}, column {self.columns.get(role, role)!r}"
        if i is not None:
            where += f", row {self.row0 + int(i) + 1}"
        return InputError(f"{where}: {msg}")


def t64(x):
    return torch.as_tensor(np.asarray(x, dtype=np.float64))


def run(name, pred, target, ctx=None, weights=None, **given):
    """(per-sample values, mean, sum) through the registry entry, as the pipeline reduces them."""
    spec = registry.get(name)
    params = spec.resolve_params(given)
    ctx = ctx or FakeCtx()
    ins = {"pred": pred, "target": target}
    prep = spec.extra.get("prepare")
    if prep is not None:
        ins = prep(ins, params, ctx)
    args = [ins[r] for r in spec.roles]
    with np.errstate(all="ignore"):
        values = np.asarray(spec.fn(*args, **params), dtype=np.float64)
        terms = dict(spec.terms(*args, **params)) if spec.terms else {"loss": values}
        s = np.ones(len(values)) if weights is None else np.asarray(weights, dtype=np.float64)
        num = float(np.sum(s * terms["loss"]))
        den = float(np.sum(s * terms.get("norm", 1.0)))
        mean = num / den if den else math.nan
    return values, mean, num


def close(ours, ref, rtol=RTOL, atol=0.0):
    np.testing.assert_allclose(np.asarray(ours, dtype=np.float64), np.asarray(ref, dtype=np.float64),
                               rtol=rtol, atol=atol)


# -- strategies --------------------------------------------------------------------------------------------
N = st.integers(1, 12)
C = st.integers(2, 5)
LOGIT = st.one_of(st.floats(-40, 40), st.sampled_from([0.0, 1e4, -1e4, 700.0, -750.0]))
PROB = st.one_of(st.floats(0, 1), st.sampled_from([0.0, 1.0, 1e-300, 1 - 1e-16]))
SOFT = st.one_of(st.sampled_from([0.0, 1.0]), st.floats(0, 1))


def col(elements, n):
    return hnp.arrays(np.float64, n, elements=elements)


def mat(elements, n, c):
    return hnp.arrays(np.float64, (n, c), elements=elements)


@st.composite
def prob_rows(draw, n, c, zeros=True):
    """Rows of a probability matrix (positive entries, some exact zeros), normalised to sum 1."""
    raw = draw(mat(st.one_of(st.floats(1e-6, 1.0), st.just(0.0)) if zeros else st.floats(1e-6, 1.0), n, c))
    raw[:, 0] = np.where(raw.sum(axis=1) == 0, 1.0, raw[:, 0])
    return raw / raw.sum(axis=1, keepdims=True)


@st.composite
def labels(draw, n, c):
    return draw(col(st.integers(0, c - 1).map(float), n))


# == binary ================================================================================================
@SETTINGS
@given(st.data())
def test_bce_matches_torch_bceloss(data):
    n = data.draw(N)
    k = data.draw(st.sampled_from([None, 1, 3]))
    shape = n if k is None else (n, k)
    p = data.draw(hnp.arrays(np.float64, shape, elements=PROB))
    y = data.draw(hnp.arrays(np.float64, shape, elements=SOFT))
    vals, mean, total = run("bce", p, y)
    ref = F.binary_cross_entropy(t64(p), t64(y), reduction="none").numpy()
    close(vals, ref if ref.ndim == 1 else ref.mean(axis=1))
    close(mean, F.binary_cross_entropy(t64(p), t64(y), reduction="mean").item())
    if k is None:
        close(total, F.binary_cross_entropy(t64(p), t64(y), reduction="sum").item())


def test_bce_clamps_like_torch_at_exact_zero_and_one():
    p = np.array([0.0, 1.0, 0.0, 1.0])
    y = np.array([1.0, 0.0, 0.0, 1.0])
    vals, _, _ = run("bce", p, y)
    close(vals, F.binary_cross_entropy(t64(p), t64(y), reduction="none").numpy())
    assert vals.tolist() == [100.0, 100.0, 0.0, 0.0]


@SETTINGS
@given(st.data())
def test_bce_with_logits_matches_torch(data):
    n = data.draw(N)
    k = data.draw(st.sampled_from([None, 2]))
    shape = n if k is None else (n, k)
    x = data.draw(hnp.arrays(np.float64, shape, elements=LOGIT))
    y = data.draw(hnp.arrays(np.float64, shape, elements=SOFT))
    pw = data.draw(st.one_of(st.just(1.0), st.floats(0, 10)))
    vals, mean, _ = run("bce_with_logits", x, y, pos_weight=pw)
    ref = F.binary_cross_entropy_with_logits(t64(x), t64(y), pos_weight=torch.tensor(pw, dtype=torch.float64),
                                             reduction="none").numpy()
    # torch evaluates (1-y) x - (1+(pw-1)y) log s(x): when the loss is tiny and |x| large it cancels and
    # keeps only ~eps*|x| absolute accuracy; lossctl's log-sigmoid form keeps full relative accuracy.
    atol = 8 * EPS * (np.abs(x) + 1) * (1 + pw)
    close(vals, ref if ref.ndim == 1 else ref.mean(axis=1), atol=float(np.max(atol)))


def test_bce_with_logits_extreme_logits_exact():
    x = np.array([1e4, -1e4, 1e4, -1e4, 200.0, -200.0])
    y = np.array([0.0, 1.0, 1.0, 0.0, 0.0, 1.0])
    vals, _, _ = run("bce_with_logits", x, y)
    ref = F.binary_cross_entropy_with_logits(t64(x), t64(y), reduction="none").numpy()
    close(vals, ref)
    assert vals.tolist() == [1e4, 1e4, 0.0, 0.0, 200.0, 200.0]
    vals3, _, _ = run("bce_with_logits", x, y, pos_weight=3.0)
    close(vals3, F.binary_cross_entropy_with_logits(t64(x), t64(y), pos_weight=t64(3.0), reduction="none").numpy())


def test_bce_with_logits_tiny_losses_keep_relative_accuracy():
    # exact value log1p(exp(-30)); torch's (1-y)x - log s(x) form is ~1.3% off here (documented choice)
    vals, _, _ = run("bce_with_logits", np.array([-30.0]), np.array([0.0]))
    assert vals[0] == pytest.approx(math.log1p(math.exp(-30.0)), rel=1e-15)
    torch_val = F.binary_cross_entropy_with_logits(t64([-30.0]), t64([0.0]), reduction="none").item()
    assert vals[0] == pytest.approx(torch_val, abs=8 * EPS * 31)


@SETTINGS
@given(st.data())
def test_log_loss_binary_matches_sklearn(data):
    n = data.draw(st.integers(2, 12))
    p = data.draw(col(PROB, n))
    y = data.draw(col(st.sampled_from([0.0, 1.0]), n))
    w = data.draw(col(st.floats(0.01, 5), n))
    coding = data.draw(st.sampled_from(["01", "pm1"]))
    yy = y if coding == "01" else 2 * y - 1
    labels_ = [0, 1] if coding == "01" else [-1, 1]
    _, mean, _ = run("log_loss", p, yy)
    close(mean, skm.log_loss(yy, p, labels=labels_))
    _, wmean, wsum = run("log_loss", p, yy, weights=w)
    close(wmean, skm.log_loss(yy, p, labels=labels_, sample_weight=w))
    close(wsum, skm.log_loss(yy, p, labels=labels_, sample_weight=w, normalize=False))


def test_log_loss_exact_zero_costs_sklearn_36():
    vals, _, _ = run("log_loss", np.array([0.0, 1.0, 0.0]), np.array([1.0, 0.0, 0.0]))
    for i in range(2):
        close(vals[i], skm.log_loss([[1.0, 0.0][i]], [[0.0, 1.0][i]], labels=[0, 1]))
    assert vals[0] == pytest.approx(-math.log(EPS), rel=1e-15)   # 36.04, where torch BCELoss gives 100
    assert vals[2] == pytest.approx(-math.log1p(-EPS), rel=1e-12)  # sklearn clips p=0 (y=0) to 1-eps too


@SETTINGS
@given(st.data())
def test_log_loss_multiclass_matches_sklearn(data):
    n, c = data.draw(N), data.draw(C)
    P = data.draw(prob_rows(n, c))
    y = data.draw(labels(n, c))
    w = data.draw(col(st.floats(0.01, 5), n))
    _, mean, total = run("log_loss", P, y, weights=w)
    close(mean, skm.log_loss(y, P, labels=list(range(c)), sample_weight=w))
    close(total, skm.log_loss(y, P, labels=list(range(c)), sample_weight=w, normalize=False))
    # one-hot target rows give the same value
    _, mean_oh, _ = run("log_loss", P, _labels.one_hot(y, c), weights=w)
    close(mean_oh, mean)


def test_log_loss_string_labels_sorted_like_sklearn():
    y = np.array(["spam", "ham", "ham", "spam"])
    P = np.array([[.1, .9], [.9, .1], [.8, .2], [.35, .65]])
    ctx = FakeCtx()
    _, mean, _ = run("log_loss", P, y, ctx=ctx)
    close(mean, skm.log_loss(y, P))
    assert ctx.memo["classes"] == ["ham", "spam"]
    # one binary column: P(positive), the greater name positive (LabelBinarizer)
    _, mean1, _ = run("log_loss", P[:, 1], y, ctx=FakeCtx())
    close(mean1, skm.log_loss(y, P[:, 1]))
    # --classes fixes another order: columns are (spam, ham)
    _, mean2, _ = run("log_loss", P[:, ::-1], y, ctx=FakeCtx(classes=["spam", "ham"]))
    close(mean2, skm.log_loss(y, P))


def test_log_loss_single_class_present_needs_labels_in_sklearn_not_here():
    P = np.array([[0.7, 0.2, 0.1], [0.5, 0.25, 0.25]])
    y = np.array([0.0, 0.0])
    _, mean, _ = run("log_loss", P, y)
    close(mean, skm.log_loss(y, P, labels=[0, 1, 2]))
    with pytest.raises(ValueError):
        skm.log_loss(y, P)


def test_log_loss_rows_not_summing_to_one_warn_once_like_sklearn(capsys):
    P = np.array([[0.5, 0.4], [0.3, 0.3], [0.2, 0.8]])
    y = np.array([0.0, 1.0, 1.0])
    ctx = FakeCtx()
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        ref = skm.log_loss(y, P)
    assert any("do not sum to one" in str(r.message) for r in rec)
    _, mean, _ = run("log_loss", P, y, ctx=ctx)
    _, _, _ = run("log_loss", P, y, ctx=ctx)  # second batch: no second warning
    close(mean, ref)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "row 1" in err[0] and "0.9" in err[0] and "log_loss" in err[0]


@SETTINGS
@given(st.data())
def test_brier_matches_sklearn(data):
    n = data.draw(st.integers(2, 12))
    c = data.draw(st.sampled_from([1, 2, 3, 4]))
    w = data.draw(col(st.floats(0.01, 5), n))
    half = data.draw(st.sampled_from(["auto", "true", "false"]))
    sk_half = {"auto": "auto", "true": True, "false": False}[half]
    if c == 1:
        p = data.draw(col(PROB, n))
        y = data.draw(col(st.sampled_from([0.0, 1.0]), n))
        _, mean, _ = run("brier", p, y, weights=w, scale_by_half=half)
        ref = skm.brier_score_loss(y, p, sample_weight=w, scale_by_half=sk_half, pos_label=1)
    else:
        P = data.draw(prob_rows(n, c))
        y = data.draw(labels(n, c))
        _, mean, _ = run("brier", P, y, weights=w, scale_by_half=half)
        ref = skm.brier_score_loss(y, P, sample_weight=w, scale_by_half=sk_half, labels=list(range(c)))
    close(mean, ref, atol=1e-300)


@SETTINGS
@given(st.data())
def test_zero_one_matches_sklearn(data):
    n = data.draw(st.integers(1, 12))
    w = data.draw(col(st.floats(0.01, 5), n))
    kind = data.draw(st.sampled_from(["probs", "logits", "multiclass", "labels"]))
    if kind == "probs":
        p = data.draw(col(st.one_of(PROB, st.just(0.5)), n))
        y = data.draw(col(st.sampled_from([0.0, 1.0]), n))
        yhat, kw = (p > 0.5).astype(float), {}
    elif kind == "logits":
        p = data.draw(col(st.one_of(LOGIT, st.just(0.0)), n))
        y = data.draw(col(st.sampled_from([-1.0, 1.0]), n))
        yhat, kw = np.where(p > 0, 1.0, -1.0), {"space": "logits"}
    elif kind == "multiclass":
        c = data.draw(C)
        p = data.draw(mat(st.sampled_from([0.0, 1.0, 2.0, -1.0]), n, c))  # ties on purpose
        y = data.draw(labels(n, c))
        yhat, kw = np.argmax(p, axis=1).astype(float), {}
    else:
        names = np.array(["cat", "dog", "emu"])
        p = names[data.draw(col(st.integers(0, 2).map(float), n)).astype(int)]
        y = names[data.draw(col(st.integers(0, 2).map(float), n)).astype(int)]
        yhat, kw = p, {}
    _, mean, total = run("zero_one", p, y, weights=w, **kw)
    close(mean, skm.zero_one_loss(y, yhat, sample_weight=w), atol=1e-15)
    close(total, skm.zero_one_loss(y, yhat, sample_weight=w, normalize=False), atol=1e-14)


def test_zero_one_threshold_and_one_hot_targets():
    vals, _, _ = run("zero_one", np.array([0.2, 0.4, 0.9]), np.array([1.0, 1.0, 1.0]), threshold=0.3)
    assert vals.tolist() == [1.0, 0.0, 0.0]
    P = np.array([[0.1, 0.9], [0.6, 0.4]])
    vals, _, _ = run("zero_one", P, np.array([[0.0, 1.0], [0.0, 1.0]]))
    assert vals.tolist() == [0.0, 1.0]


@SETTINGS
@given(st.data())
def test_hinge_matches_sklearn(data):
    n = data.draw(st.integers(2, 12))
    f = data.draw(col(LOGIT, n))
    y = data.draw(col(st.sampled_from([0.0, 1.0]), n))
    y[0], y[1] = 0.0, 1.0  # sklearn's binary path needs both classes in y_true
    w = data.draw(col(st.floats(0.01, 5), n))
    for yy in (y, 2 * y - 1):
        _, mean, _ = run("hinge", f, yy, weights=w)
        close(mean, skm.hinge_loss(yy, f, sample_weight=w))


@SETTINGS
@given(st.data())
def test_margin_losses_match_torch_and_formulas(data):
    n = data.draw(N)
    f = data.draw(col(st.one_of(st.floats(-40, 40), st.sampled_from([0.0, 1.0, -1.0, 1e4, -1e4])), n))
    y01 = data.draw(col(st.sampled_from([0.0, 1.0]), n))
    ys = t64(2 * y01 - 1)
    ft = t64(f)
    # torch SoftMarginLoss (the real class), finite where torch is finite
    vals, _, _ = run("logistic", f, y01)
    ref = F.soft_margin_loss(ft, ys, reduction="none").numpy()
    fin = np.isfinite(ref)
    close(vals[fin], ref[fin])
    # where torch overflows (-y f > 709.78) lossctl returns the finite value -y f + log1p(exp(y f))
    m = (ys * ft).numpy()
    close(vals[~fin], -m[~fin])
    assert np.isfinite(vals).all()
    # Keras SquaredHinge / optax perceptron / AdaBoost exponential: their formulas in torch ops
    vals, _, _ = run("squared_hinge", f, y01)
    close(vals, torch.clamp(1 - ys * ft, min=0).square().numpy())
    vals, _, _ = run("perceptron", f, y01)
    close(vals, torch.relu(-ys * ft).numpy())
    vals, _, _ = run("exponential", f, 2 * y01 - 1)
    close(vals, torch.exp(-ys * ft).numpy())  # inf where torch is inf too (y f < -709.78)


@SETTINGS
@given(st.data())
def test_soft_margin_mean_matches_torch(data):
    n = data.draw(N)
    f = data.draw(col(st.floats(-40, 40), n))
    y = data.draw(col(st.sampled_from([-1.0, 1.0]), n))
    _, mean, total = run("soft_margin", f, y)
    close(mean, torch.nn.SoftMarginLoss()(t64(f), t64(y)).item())
    close(total, torch.nn.SoftMarginLoss(reduction="sum")(t64(f), t64(y)).item())


def _torchvision_sigmoid_focal(inputs, targets, alpha=0.25, gamma=2.0):
    """torchvision/ops/focal_loss.py sigmoid_focal_loss body, reduction='none' (see module doc)."""
    p = torch.sigmoid(inputs)
    ce_loss = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce_loss * ((1 - p_t) ** gamma)
    if alpha >= 0:
        alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
        loss = alpha_t * loss
    return loss


@SETTINGS
@given(st.data())
def test_focal_matches_torchvision_formula(data):
    n = data.draw(N)
    x = data.draw(col(st.floats(-8, 8), n))
    y = data.draw(col(SOFT, n))
    alpha = data.draw(st.one_of(st.just(0.25), st.just(-1.0), st.floats(0, 1)))
    gamma = data.draw(st.one_of(st.just(2.0), st.just(0.0), st.floats(0, 5)))
    vals, mean, _ = run("focal", x, y, alpha=alpha, gamma=gamma)
    ref = _torchvision_sigmoid_focal(t64(x), t64(y), alpha, gamma)
    # moderate logits: torchvision's 1 - p_t loses at most ~e^8 eps relative, far inside 1e-10
    close(vals, ref.numpy(), atol=1e-300)
    close(mean, ref.mean().item())


@SETTINGS
@given(st.data())
def test_focal_wide_logits_well_conditioned_form(data):
    n = data.draw(N)
    x = data.draw(col(LOGIT, n))
    y = data.draw(col(SOFT, n))
    xt, yt = t64(x), t64(y)
    vals, _, _ = run("focal", x, y)
    # torchvision's formula written without cancellation, in torch ops: BCE as -[y logsig(x) + (1-y) logsig(-x)]
    # and 1 - p_t as y s(-x) + (1-y) s(x) (both algebraically equal to torchvision's)
    ce = -(yt * F.logsigmoid(xt) + (1 - yt) * F.logsigmoid(-xt))
    q = yt * torch.sigmoid(-xt) + (1 - yt) * torch.sigmoid(xt)
    ref = (0.25 * yt + 0.75 * (1 - yt)) * ce * q ** 2
    close(vals, ref.numpy(), atol=1e-300)
    # the literal torchvision body: its BCE keeps ~8 eps |x| absolute accuracy and its 1 - p_t ~eps absolute
    # (0 once s(x) rounds to 1); the difference stays within that error bound
    lit = _torchvision_sigmoid_focal(xt, yt).numpy()
    qn, cen = q.numpy(), ce.numpy()
    bound = 8 * EPS * (np.abs(x) + 1) * qn ** 2 + 4 * EPS * cen * qn + 1e-300
    assert (np.abs(vals - lit) <= bound + RTOL * np.abs(lit)).all()


def test_focal_extreme_logits_equal_torchvision():
    x = np.array([1e4, -1e4, 1e4, -1e4, 0.0])
    y = np.array([0.0, 1.0, 1.0, 0.0, 1.0])
    vals, _, _ = run("focal", x, y)
    close(vals, _torchvision_sigmoid_focal(t64(x), t64(y)).numpy())
    assert vals[:4].tolist() == [7500.0, 2500.0, 0.0, 0.0]


@SETTINGS
@given(st.data())
def test_focal_from_probabilities(data):
    n = data.draw(N)
    p = data.draw(col(PROB, n))
    y = data.draw(col(SOFT, n))
    vals, _, _ = run("focal", p, y, space="probabilities")
    pt, yt = t64(p), t64(y)
    ce = F.binary_cross_entropy(pt, yt, reduction="none")  # torch BCELoss, log clamped at -100
    ref = (0.25 * yt + 0.75 * (1 - yt)) * ce * (1 - (pt * yt + (1 - pt) * (1 - yt))) ** 2
    close(vals, ref.numpy(), atol=1e-15)


def test_focal_alpha_range_is_checked():
    with pytest.raises(UsageError):
        registry.get("focal").resolve_params({"alpha": "-0.5"})
    registry.get("focal").resolve_params({"alpha": "-1"})


# == multiclass =============================================================================================
@SETTINGS
@given(st.data())
def test_cross_entropy_index_targets_match_torch(data):
    n, c = data.draw(N), data.draw(C)
    x = data.draw(mat(LOGIT, n, c))
    y = data.draw(labels(n, c))
    ignore = data.draw(st.sampled_from([-100, -1, 0]))
    if data.draw(st.booleans()):
        y[data.draw(st.integers(0, n - 1))] = ignore
    eps = data.draw(st.one_of(st.just(0.0), st.floats(0, 1)))
    cw = data.draw(st.one_of(st.just(()), st.lists(st.floats(0.1, 5), min_size=c, max_size=c).map(tuple)))
    kw = dict(weight=t64(cw) if cw else None, ignore_index=ignore, label_smoothing=eps)
    xt, yt = t64(x), torch.as_tensor(y.astype(np.int64))
    vals, mean, total = run("cross_entropy", x, y, class_weights=cw, ignore_index=ignore, label_smoothing=eps)
    close(vals, F.cross_entropy(xt, yt, reduction="none", **kw).numpy(), atol=1e-12)
    ref_mean = F.cross_entropy(xt, yt, reduction="mean", **kw).item()
    if math.isnan(ref_mean):
        assert math.isnan(mean)
    else:
        close(mean, ref_mean, atol=1e-12)
    close(total, F.cross_entropy(xt, yt, reduction="sum", **kw).item(), atol=1e-12)


@SETTINGS
@given(st.data())
def test_cross_entropy_probability_targets_match_torch(data):
    n, c = data.draw(N), data.draw(C)
    x = data.draw(mat(LOGIT, n, c))
    T = data.draw(prob_rows(n, c))
    eps = data.draw(st.one_of(st.just(0.0), st.floats(0, 1)))
    cw = data.draw(st.one_of(st.just(()), st.lists(st.floats(0.1, 5), min_size=c, max_size=c).map(tuple)))
    kw = dict(weight=t64(cw) if cw else None, label_smoothing=eps)
    vals, mean, total = run("cross_entropy", x, T, class_weights=cw, label_smoothing=eps)
    close(vals, F.cross_entropy(t64(x), t64(T), reduction="none", **kw).numpy(), atol=1e-12)
    close(mean, F.cross_entropy(t64(x), t64(T), reduction="mean", **kw).item(), atol=1e-12)
    close(total, F.cross_entropy(t64(x), t64(T), reduction="sum", **kw).item(), atol=1e-12)


def test_cross_entropy_edge_cases():
    x = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 0.0], [0.0, 0.0, 0.0]])
    y = np.array([1.0, 1.0, 2.0])
    xt, yt = t64(x), torch.tensor([1, 1, 2])
    vals, _, _ = run("cross_entropy", x, y)
    close(vals, F.cross_entropy(xt, yt, reduction="none").numpy())
    assert vals[0] == 2e4 and np.isfinite(vals).all()
    # all rows ignored: torch gives NaN (Keras 0); so does lossctl's mean
    yi = np.full(3, -100.0)
    _, mean, total = run("cross_entropy", x, yi, label_smoothing=0.1)
    assert math.isnan(mean) and math.isnan(F.cross_entropy(xt, torch.full((3,), -100), label_smoothing=0.1).item())
    assert total == 0.0
    # label smoothing with class weights: torch's weighted mean
    w = (1.0, 2.0, 5.0)
    _, mean, _ = run("cross_entropy", x, y, class_weights=w, label_smoothing=0.2)
    close(mean, F.cross_entropy(xt, yt, weight=t64(w), label_smoothing=0.2).item())
    # a single class present among the targets
    _, mean, _ = run("cross_entropy", x, np.zeros(3), class_weights=w)
    close(mean, F.cross_entropy(xt, torch.zeros(3, dtype=torch.long), weight=t64(w)).item())


def test_cross_entropy_weighted_mean_is_not_mean_of_per_sample_values():
    x = np.array([[2.0, 0.0, -1.0], [0.5, 0.3, 0.2]])
    y = np.array([0.0, 2.0])
    w = (1.0, 1.0, 4.0)
    vals, mean, _ = run("cross_entropy", x, y, class_weights=w)
    close(mean, F.cross_entropy(t64(x), torch.tensor([0, 2]), weight=t64(w)).item())
    assert not math.isclose(mean, vals.mean())
    # sample weights compose with class weights: sum(s w_y l) / sum(s w_y), = row repetition
    _, mean_s, _ = run("cross_entropy", x, y, class_weights=w, weights=[2.0, 1.0])
    xr, yr = np.vstack([x[0], x[0], x[1]]), torch.tensor([0, 0, 2])
    close(mean_s, F.cross_entropy(t64(xr), yr, weight=t64(w)).item())


@SETTINGS
@given(st.data())
def test_cross_entropy_other_spaces_and_nll_match_torch(data):
    n, c = data.draw(N), data.draw(C)
    P = data.draw(prob_rows(n, c))
    y = data.draw(labels(n, c))
    yt = torch.as_tensor(y.astype(np.int64))
    cw = data.draw(st.one_of(st.just(()), st.lists(st.floats(0.1, 5), min_size=c, max_size=c).map(tuple)))
    wt = t64(cw) if cw else None
    with np.errstate(divide="ignore"):
        logp = np.maximum(np.log(P), -100.0)
    # probabilities: torch NLLLoss on log p, clamped at -100 as torch BCELoss does
    vals, mean, _ = run("cross_entropy", P, y, space="probabilities", class_weights=cw)
    close(vals, F.nll_loss(torch.clamp(torch.log(t64(P)), min=-100), yt, weight=wt, reduction="none").numpy())
    close(mean, F.nll_loss(torch.clamp(torch.log(t64(P)), min=-100), yt, weight=wt).item())
    # log-probabilities: torch NLLLoss / CrossEntropyLoss on normalised log-probabilities
    lp = np.log(data.draw(prob_rows(n, c, zeros=False)))
    vals, mean, _ = run("nll", lp, y, class_weights=cw)
    close(vals, F.nll_loss(t64(lp), yt, weight=wt, reduction="none").numpy())
    close(mean, F.nll_loss(t64(lp), yt, weight=wt).item())
    _, mean_ce, _ = run("cross_entropy", lp, y, space="log-probabilities", class_weights=cw)
    close(mean_ce, F.cross_entropy(t64(lp), yt, weight=wt).item(), atol=1e-13)
    del logp


def test_nll_ignore_index_and_all_ignored():
    lp = np.log(np.array([[0.2, 0.8], [0.5, 0.5], [0.9, 0.1]]))
    y = np.array([1.0, -100.0, 0.0])
    vals, mean, _ = run("nll", lp, y)
    yt = torch.tensor([1, -100, 0])
    close(vals, F.nll_loss(t64(lp), yt, reduction="none").numpy())
    close(mean, F.nll_loss(t64(lp), yt).item())
    _, mean, _ = run("nll", lp, np.full(3, -100.0))
    assert math.isnan(mean)


@SETTINGS
@given(st.data())
def test_kl_div_matches_torch_batchmean(data):
    n, c = data.draw(N), data.draw(C)
    P = data.draw(prob_rows(n, c))
    x = data.draw(mat(st.floats(-30, 30), n, c))
    lq = x - np.log(np.sum(np.exp(x - x.max(1, keepdims=True)), 1, keepdims=True)) - x.max(1, keepdims=True)
    vals, mean, total = run("kl_div", lq, P)
    close(vals, F.kl_div(t64(lq), t64(P), reduction="none").sum(1).numpy(), atol=1e-13)
    close(mean, F.kl_div(t64(lq), t64(P), reduction="batchmean").item(), atol=1e-13)
    close(total, F.kl_div(t64(lq), t64(P), reduction="sum").item(), atol=1e-13)
    # log_target
    lp = np.log(data.draw(prob_rows(n, c, zeros=False)))
    _, mean, _ = run("kl_div", lq, lp, log_target=True)
    close(mean, F.kl_div(t64(lq), t64(lp), reduction="batchmean", log_target=True).item(), atol=1e-13)
    # logits space = log_softmax(x) as torch input
    _, mean, _ = run("kl_div", x, P, space="logits")
    close(mean, F.kl_div(F.log_softmax(t64(x), 1), t64(P), reduction="batchmean").item(), atol=1e-13)
    # our mean is batchmean; torch 'mean' divides by C more
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch warns that 'mean' is not the KL
        close(mean / c, F.kl_div(F.log_softmax(t64(x), 1), t64(P), reduction="mean").item(), atol=1e-13)


def test_kl_div_probabilities_zero_model_probability_is_inf():
    vals, _, _ = run("kl_div", np.array([[1.0, 0.0], [0.5, 0.5]]), np.array([[0.5, 0.5], [1.0, 0.0]]),
                     space="probabilities")
    assert vals[0] == math.inf
    close(vals[1], math.log(2.0))


@SETTINGS
@given(st.data())
def test_js_divergence_matches_scipy(data):
    n, c = data.draw(N), data.draw(C)
    P = data.draw(prob_rows(n, c))
    Q = data.draw(prob_rows(n, c))
    vals, _, _ = run("js_divergence", Q, P)
    with np.errstate(invalid="ignore"):
        # scipy returns sqrt(js/2) and gives NaN when its signed sum cancels to a tiny negative number
        ref = np.nan_to_num(ssd.jensenshannon(P, Q, axis=1) ** 2, nan=0.0)
    # scipy sums signed p log(p/m) terms (cancels for near-identical rows); lossctl's terms are all >= 0
    close(vals, ref, atol=1e-14)
    assert (vals >= 0).all() and (vals <= math.log(2) * (1 + 1e-15)).all()
    # unnormalised rows are renormalised, as scipy
    vals2, _, _ = run("js_divergence", Q * 0.5, P)
    close(vals2, vals, atol=1e-15)


@SETTINGS
@given(st.data())
def test_multi_margin_matches_torch(data):
    n, c = data.draw(N), data.draw(C)
    x = data.draw(mat(st.one_of(st.floats(-20, 20), st.sampled_from([1e4, -1e4])), n, c))
    y = data.draw(labels(n, c))
    p = data.draw(st.sampled_from([1, 2]))
    margin = data.draw(st.one_of(st.just(1.0), st.floats(0, 3)))
    cw = data.draw(st.one_of(st.just(()), st.lists(st.floats(0.1, 5), min_size=c, max_size=c).map(tuple)))
    kw = dict(p=p, margin=margin, weight=t64(cw) if cw else None)
    yt = torch.as_tensor(y.astype(np.int64))
    vals, mean, _ = run("multi_margin", x, y, p=p, margin=margin, class_weights=cw)
    close(vals, F.multi_margin_loss(t64(x), yt, reduction="none", **kw).numpy(), atol=1e-12)
    close(mean, F.multi_margin_loss(t64(x), yt, reduction="mean", **kw).item(), atol=1e-12)


@SETTINGS
@given(st.data())
def test_multiclass_hinge_matches_sklearn(data):
    n, c = data.draw(N), data.draw(st.integers(3, 5))
    x = data.draw(mat(st.one_of(st.floats(-20, 20), st.sampled_from([1e4, -1e4, 0.0])), n, c))
    y = data.draw(labels(n, c))
    w = data.draw(col(st.floats(0.01, 5), n))
    _, mean, _ = run("multiclass_hinge", x, y, weights=w)
    close(mean, skm.hinge_loss(y, x, labels=list(range(c)), sample_weight=w))


def _keras_categorical_focal(y_true, y_pred, alpha=0.25, gamma=2.0, from_logits=False, label_smoothing=0.0,
                             epsilon=1e-7):
    """keras/src/losses/losses.py categorical_focal_crossentropy (Keras 3) in torch ops (see module doc)."""
    if label_smoothing:
        y_true = y_true * (1.0 - label_smoothing) + label_smoothing / y_true.shape[-1]
    if from_logits:
        y_pred = torch.softmax(y_pred, dim=-1)
    output = y_pred / torch.sum(y_pred, dim=-1, keepdim=True)
    output = torch.clamp(output, epsilon, 1.0 - epsilon)
    cce = -y_true * torch.log(output)
    modulating_factor = torch.pow(1.0 - output, gamma)
    weighting_factor = modulating_factor * alpha
    return torch.sum(weighting_factor * cce, dim=-1)


@SETTINGS
@given(st.data())
def test_softmax_focal_matches_keras_formula(data):
    n, c = data.draw(N), data.draw(C)
    y = data.draw(labels(n, c))
    Y = _labels.one_hot(y, c)
    alpha = data.draw(st.one_of(st.just(0.25), st.floats(0, 2)))
    gamma = data.draw(st.one_of(st.just(2.0), st.floats(0, 4)))
    ls = data.draw(st.one_of(st.just(0.0), st.floats(0, 1)))
    if data.draw(st.booleans()):
        x = data.draw(mat(LOGIT, n, c))
        vals, _, _ = run("softmax_focal", x, y, alpha=alpha, gamma=gamma, label_smoothing=ls, space="logits")
        ref = _keras_categorical_focal(t64(Y), t64(x), alpha, gamma, True, ls)
    else:
        P = data.draw(prob_rows(n, c)) * data.draw(st.sampled_from([1.0, 1.0 - 1e-7]))
        vals, _, _ = run("softmax_focal", P, y, alpha=alpha, gamma=gamma, label_smoothing=ls)
        ref = _keras_categorical_focal(t64(Y), t64(P), alpha, gamma, False, ls)
        with np.errstate(divide="ignore"):
            x = np.log(P)
    # Keras's (1 - p)^gamma is ill-conditioned where p -> 1: an ulp of p (softmax rounding differs between
    # libraries) moves it by gamma * eps / (1 - p) relative; allow that on top of 1e-10
    p = np.clip(np.exp(x - x.max(1, keepdims=True)) / np.exp(x - x.max(1, keepdims=True)).sum(1, keepdims=True),
                1e-7, 1 - 1e-7)
    cond = gamma * 8 * EPS / np.min(1 - p, axis=1)
    ref = ref.numpy()
    assert (np.abs(vals - ref) <= (RTOL + cond) * np.abs(ref) + 1e-300).all(), (vals, ref)


def test_softmax_focal_keras_docstring_values():
    # keras.losses.categorical_focal_crossentropy docstring: array([2.63401289e-04, 6.75912094e-01], float32)
    y = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    P = np.array([[0.05, 0.9, 0.05], [0.1, 0.85, 0.05]])
    vals, _, _ = run("softmax_focal", P, y)
    close(vals, [2.63401289e-04, 6.75912094e-01], rtol=1e-6)


@SETTINGS
@given(st.data())
def test_multilabel_soft_margin_matches_torch(data):
    n, c = data.draw(N), data.draw(st.integers(1, 5))
    x = data.draw(mat(LOGIT, n, c))
    Y = data.draw(mat(st.sampled_from([0.0, 1.0]), n, c))
    cw = data.draw(st.one_of(st.just(()), st.lists(st.floats(0.1, 5), min_size=c, max_size=c).map(tuple)))
    wt = t64(cw) if cw else None
    vals, mean, _ = run("multilabel_soft_margin", x, Y, class_weights=cw)
    close(vals, F.multilabel_soft_margin_loss(t64(x), t64(Y), weight=wt, reduction="none").numpy(), atol=1e-12)
    close(mean, F.multilabel_soft_margin_loss(t64(x), t64(Y), weight=wt).item(), atol=1e-12)


# == prepare hooks ==========================================================================================
def _prep(name, pred, target, ctx=None, **given):
    spec = registry.get(name)
    params = spec.resolve_params(given)
    return spec.extra["prepare"]({"pred": pred, "target": target}, params, ctx or FakeCtx())


def test_string_labels_unseen_in_classes_names_row():
    ctx = FakeCtx(classes=["setosa", "versicolor", "virginica"], row0=100)
    P = np.full((3, 3), 1 / 3)
    with pytest.raises(InputError, match=r"column 'label', row 103: label 'daisy' is not one of --classes"):
        _prep("log_loss", P, np.array(["setosa", "virginica", "daisy"]), ctx)


def test_string_labels_class_count_must_match_score_width():
    with pytest.raises(InputError, match="--classes lists 2"):
        _prep("cross_entropy", np.zeros((2, 3)), np.array(["a", "b"]), FakeCtx(classes=["a", "b"]))
    with pytest.raises(InputError, match="only 2 distinct label"):
        _prep("cross_entropy", np.zeros((2, 3)), np.array(["a", "b"]))
    with pytest.raises(InputError, match="4 distinct labels"):
        _prep("cross_entropy", np.zeros((4, 3)), np.array(["a", "b", "c", "d"]))


def test_discovered_classes_persist_across_batches():
    ctx = FakeCtx()
    out = _prep("cross_entropy", np.zeros((3, 3)), np.array(["b", "c", "a"]), ctx)
    assert out["target"].tolist() == [1.0, 2.0, 0.0]
    assert ctx.memo["classes"] == ["a", "b", "c"] and ctx.memo["classes_complete"]
    out = _prep("cross_entropy", np.zeros((1, 3)), np.array(["c"]), ctx)
    assert out["target"].tolist() == [2.0]
    ctx.row0 = 3
    with pytest.raises(InputError, match=r"row 4: label 'd' is not among the classes"):
        _prep("cross_entropy", np.zeros((1, 3)), np.array(["d"]), ctx)


def test_pipeline_collected_classes_are_used():
    ctx = FakeCtx()
    ctx.memo.update(classes=["ant", "bee", "cow"], classes_complete=True)
    out = _prep("cross_entropy", np.zeros((1, 3)), np.array(["bee"]), ctx)  # one label seen: still fine
    assert out["target"].tolist() == [1.0]


def test_numeric_labels_integral_and_in_range():
    with pytest.raises(InputError, match=r"row 2: label 1.5 is not an integer"):
        _prep("cross_entropy", np.zeros((2, 3)), np.array([0.0, 1.5]))
    with pytest.raises(InputError, match=r"row 1: class index 3 is out of range for 3 score columns"):
        _prep("cross_entropy", np.zeros((2, 3)), np.array([3.0, 1.0]))
    out = _prep("cross_entropy", np.zeros((2, 3)), np.array([-1.0, 1.0]), ignore_index=-1)
    assert out["target"].tolist() == [-1.0, 1.0]
    with pytest.raises(InputError, match="out of range"):
        _prep("cross_entropy", np.zeros((2, 3)), np.array([-1.0, 1.0]))


def test_probabilities_validated():
    with pytest.raises(InputError, match=r"row 2: probability 1.5 is outside \[0, 1\]; for logits use bce_with_logits"):
        _prep("bce", np.array([0.5, 1.5]), np.array([0.0, 1.0]))
    with pytest.raises(InputError, match=r"row 1: probability -0.1"):
        _prep("log_loss", np.array([[-0.1, 1.1]]), np.array([0.0]))
    with pytest.raises(InputError, match="target 2 is outside"):
        _prep("bce", np.array([0.5]), np.array([2.0]))


def test_binary_labels_codings():
    out = _prep("hinge", np.array([0.5, -1.0]), np.array([0.0, 1.0]))
    assert out["target"].tolist() == [-1.0, 1.0]
    ctx = FakeCtx()
    _prep("hinge", np.array([0.5]), np.array([-1.0]), ctx)
    with pytest.raises(InputError, match="0/1 here but -1/\\+1 in earlier rows"):
        _prep("hinge", np.array([0.5]), np.array([0.0]), ctx)
    with pytest.raises(InputError, match="mix 0 and -1"):
        _prep("hinge", np.array([0.5, 0.1]), np.array([0.0, -1.0]))
    with pytest.raises(InputError, match="label 2 is not a binary label"):
        _prep("log_loss", np.array([0.5]), np.array([2.0]))
    out = _prep("hinge", np.array([0.5, 0.1]), np.array(["yes", "no"]))
    assert out["target"].tolist() == [1.0, -1.0]
    with pytest.raises(InputError, match="only 1 distinct label"):
        _prep("hinge", np.array([0.5]), np.array(["yes"]))


def test_score_width_and_shape_errors():
    with pytest.raises(InputError, match="one score column per class"):
        _prep("cross_entropy", np.zeros(3), np.zeros(3))
    with pytest.raises(InputError, match="class_weights has 2 values but the scores have 3"):
        _prep("cross_entropy", np.zeros((2, 3)), np.zeros(2), class_weights="1,2")
    with pytest.raises(InputError, match="multiclass loss"):
        _prep("bce", np.full((2, 3), 0.5), np.zeros(2))
    with pytest.raises(InputError, match="one-hot / soft targets need one column per class"):
        _prep("cross_entropy", np.zeros((2, 3)), np.zeros((2, 2)))


def test_row_sum_warning_once_per_run_and_target_rows(capsys):
    ctx = FakeCtx()
    T = np.array([[0.5, 0.4, 0.0], [0.2, 0.2, 0.6]])
    _prep("cross_entropy", np.zeros((2, 3)), T, ctx)
    _prep("cross_entropy", np.zeros((2, 3)), T, ctx)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "row 1" in err[0] and "torch does not renormalise" in err[0]


def test_log_probs_must_not_be_positive():
    with pytest.raises(InputError, match="log-probability 0.5 is positive"):
        _prep("nll", np.array([[0.5, -1.0]]), np.array([0.0]))


def test_fake_ctx_contract_matches_real_batch_context():
    """The stand-in mirrors lossctl.api.BatchContext's error format (file, column, 1-based row)."""
    from lossctl.api import BatchContext
    from lossctl.io.columns import Binding
    ctx = BatchContext({"target": Binding("target", 0, ("label",), "scores.csv")}, {"classes": None}, {})
    ctx.row0 = 100
    with pytest.raises(InputError, match=r"^scores.csv, column 'label', row 103: label 'daisy' is not one of"):
        ctx.options = {"classes": ["a", "b"]}
        _prep("log_loss", np.full((3, 2), 0.5), np.array(["a", "b", "daisy"]), ctx)


# == row sums: warn (sklearn / torch), error, renormalize (Keras) ===========================================
@SETTINGS
@given(st.data())
def test_log_loss_and_brier_renormalize_match_sklearn_on_normalised_rows(data):
    n, c = data.draw(N), data.draw(C)
    P = data.draw(prob_rows(n, c, zeros=False))
    scale = data.draw(col(st.floats(0.3, 1.0), n))
    raw = P * scale[:, None]  # rows summing to 0.3..1, all entries in [0, 1]
    y = data.draw(labels(n, c))
    w = data.draw(col(st.floats(0.01, 5), n))
    Pn = raw / raw.sum(axis=1, keepdims=True)
    _, mean, _ = run("log_loss", raw, y, weights=w, row_sums="renormalize")
    close(mean, skm.log_loss(y, Pn, labels=list(range(c)), sample_weight=w))
    _, mean, _ = run("brier", raw, y, weights=w, row_sums="renormalize")
    close(mean, skm.brier_score_loss(y, Pn, labels=list(range(c)), sample_weight=w), atol=1e-300)


def test_log_loss_keras_convention_is_reachable():
    # keras.losses.CategoricalCrossentropy: y_pred / sum(y_pred), then clip to [1e-7, 1 - 1e-7]
    # (keras/src/backend/*/nn.py categorical_crossentropy); transcribed in torch ops, Keras is not installed
    raw = np.array([[0.0, 0.5, 0.3], [0.2, 0.2, 0.2], [0.6, 0.0, 0.4]])
    y = np.array([0.0, 2.0, 1.0])
    vals, _, _ = run("log_loss", raw, y, eps=1e-7, row_sums="renormalize")
    out = t64(raw) / t64(raw).sum(-1, keepdim=True)
    ref = -(F.one_hot(torch.as_tensor(y.astype(np.int64)), 3) * torch.log(torch.clamp(out, 1e-7, 1 - 1e-7))).sum(-1)
    close(vals, ref.numpy())
    assert vals[0] == pytest.approx(-math.log(1e-7), rel=1e-12)  # Keras's 16.12 at p = 0 (sklearn 36.04)


@pytest.mark.parametrize("name, kw, pred", [
    ("log_loss", {}, [[0.5, 0.5], [0.3, 0.3]]),
    ("brier", {}, [[0.5, 0.5], [0.3, 0.3]]),
    ("cross_entropy", {"space": "probabilities"}, [[0.5, 0.5], [0.3, 0.3]]),
    ("nll", {}, np.log([[0.5, 0.5], [0.3, 0.3]])),
    ("kl_div", {"space": "probabilities"}, [[0.5, 0.5], [0.3, 0.3]]),
])
def test_row_sums_error_names_the_row(name, kw, pred, capsys):
    pred = np.asarray(pred, dtype=np.float64)
    target = np.array([0.0, 1.0]) if name != "kl_div" else np.array([[0.5, 0.5], [0.5, 0.5]])
    run(name, pred, target, **kw)  # default: a warning, the values as given
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "row " in err and "sum to" in err
    with pytest.raises(InputError, match=r"column 'p', row 2: probabilities sum to 0\.6"):
        run(name, pred, target, row_sums="error", **kw)


def test_cross_entropy_soft_target_rows_error():
    T = np.array([[0.5, 0.5], [0.7, 0.7]])
    with pytest.raises(InputError, match=r"column 'label', row 2: probabilities sum to 1\.4"):
        run("cross_entropy", np.zeros((2, 2)), T, row_sums="error")


def test_renormalize_rejects_all_zero_rows():
    with pytest.raises(InputError, match=r"row 2: all probabilities are 0"):
        run("log_loss", np.array([[0.5, 0.5], [0.0, 0.0]]), np.array([0.0, 1.0]), row_sums="renormalize")


def test_renormalized_log_loss_gradient_matches_torch_autograd():
    raw = np.array([[0.2, 0.5, 0.1], [0.3, 0.3, 0.3]])
    y = np.array([1.0, 2.0])
    spec = registry.get("log_loss")
    g = spec.grad(raw, y, **spec.resolve_params({"row_sums": "renormalize"}))
    p = t64(raw).requires_grad_(True)
    q = torch.clamp(p / p.sum(-1, keepdim=True), EPS, 1 - EPS)
    (-(F.one_hot(torch.tensor([1, 2]), 3) * torch.log(q)).sum()).backward()
    close(g, p.grad.numpy())


def test_kl_div_logits_of_1e4_match_torch():
    x = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4]])
    P = np.array([[0.2, 0.3, 0.5], [1.0, 0.0, 0.0]])
    vals, _, _ = run("kl_div", x, P, space="logits")
    close(vals, F.kl_div(F.log_softmax(t64(x), 1), t64(P), reduction="none").sum(1).numpy())
    assert np.isfinite(vals).all()


@SETTINGS
@given(st.data())
def test_cross_entropy_norm_rows_is_the_plain_mean_of_torch_per_sample_values(data):
    n, c = data.draw(N), data.draw(C)
    x = data.draw(mat(LOGIT, n, c))
    y = data.draw(labels(n, c))
    y[data.draw(st.integers(0, n - 1))] = -100
    cw = tuple(data.draw(st.lists(st.floats(0.1, 5), min_size=c, max_size=c)))
    s = data.draw(col(st.floats(0.01, 5), n))
    eps = data.draw(st.one_of(st.just(0.0), st.floats(0, 1)))
    yt = torch.as_tensor(y.astype(np.int64))
    per = F.cross_entropy(t64(x), yt, weight=t64(cw), label_smoothing=eps, reduction="none").numpy()
    valid = y != -100
    ref = np.sum((s * per)[valid]) / np.sum(s[valid]) if valid.any() else math.nan
    _, mean, _ = run("cross_entropy", x, y, weights=s, class_weights=cw, label_smoothing=eps, norm="rows")
    if math.isnan(ref):
        assert math.isnan(mean)
    else:
        close(mean, ref, atol=1e-12)
    lp = np.log(data.draw(prob_rows(n, c, zeros=False)))
    per = F.nll_loss(t64(lp), yt, weight=t64(cw), reduction="none").numpy()
    _, mean, _ = run("nll", lp, y, class_weights=cw, norm="rows")
    if valid.any():
        close(mean, per[valid].mean())
