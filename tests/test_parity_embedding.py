"""Parity of the embedding losses (cosine_embedding, margin_ranking, triplet, nt_xent) with torch.

Where the golden values come from:
* cosine_embedding, margin_ranking, triplet: the real torch 2.13.0 functionals
  (torch.nn.functional.cosine_embedding_loss / margin_ranking_loss / triplet_margin_loss, reduction='none').
* nt_xent: torch has no NT-Xent, so ``ref_nt_xent`` writes SimCLR's loss (Chen et al. 2020, eq. 1) with torch
  ops the way SimCLR code does it: z = cat(z_i, z_j), s = F.cosine_similarity(z_a, z_b) / tau for all pairs,
  the diagonal masked with -inf, then F.cross_entropy with row a's target its other view (a + B mod 2B).
  Its mean over the 2B views is SimCLR's loss; lossctl's per-row value is the mean of the row's two views.
Edge cases: zero vectors (cosine 0 in torch's guards), identical vectors (triplet distance eps d^(1/p)),
blocks of one pair (no negatives), a short last block, small temperatures.
Tolerance: rtol 1e-10 in float64.
"""
from __future__ import annotations

import math
import random

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import lossctl
from conftest import invoke, run_err
from lossctl import registry
from lossctl.api import BatchContext
from lossctl.errors import InputError
from lossctl.io.columns import Binding
from lossctl.losses import embedding
from lossctl.state import SumState

RTOL = 1e-10
ATOL = 1e-13   # for values that are 0 up to rounding (hinges at their kink, identical views)
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
EMBEDDING_LOSSES = ("cosine_embedding", "margin_ranking", "triplet", "nt_xent")
SAMPLES = lossctl.__file__.rsplit("/lossctl/", 1)[0] + "/sample_data"


def t64(x) -> torch.Tensor:
    return torch.tensor(np.asarray(x, dtype=np.float64), dtype=torch.float64)


def ctx_for(roles, file="emb.parquet"):
    bindings = {r: Binding(r, 0, (r,), file) for r in roles}
    return BatchContext(bindings, {"classes": None, "class_weights": None, "space": None}, {})


def run_spec(name, arrays, params=None, ctx=None):
    """As the pipeline: resolve params, prepare hook, fn."""
    spec = registry.get(name)
    p = spec.resolve_params(params or {})
    ctx = ctx or ctx_for(spec.roles)
    ins = spec.extra["prepare"](dict(arrays), p, ctx)
    return spec, p, spec.fn(*[ins[r] for r in spec.roles], **p)


# ====================================================================================== references ===
def ref_nt_xent(zi, zj, temperature, block_size, eps=1e-8):
    """SimCLR NT-Xent in torch ops, block by block: (per-row values, per-block torch means)."""
    zi, zj = t64(zi), t64(zj)
    if zi.ndim == 1:
        zi, zj = zi[:, None], zj[:, None]
    rows, means = [], []
    for s in range(0, len(zi), block_size):
        a, b = zi[s:s + block_size], zj[s:s + block_size]
        B = len(a)
        z = torch.cat([a, b], dim=0)
        sim = F.cosine_similarity(z[:, None, :], z[None, :, :], dim=-1, eps=eps) / temperature
        sim = sim.masked_fill(torch.eye(2 * B, dtype=torch.bool), -math.inf)
        labels = torch.cat([torch.arange(B, 2 * B), torch.arange(0, B)])
        per_view = F.cross_entropy(sim, labels, reduction="none")
        rows.append(((per_view[:B] + per_view[B:]) / 2).numpy())
        means.append(float(F.cross_entropy(sim, labels)))       # SimCLR: mean over the 2B views
    return np.concatenate(rows), means


# ====================================================================================== strategies ===
finite = st.floats(-10.0, 10.0, allow_nan=False, allow_infinity=False)


@st.composite
def vectors(draw, count=2, max_rows=12, max_dim=6, zero_rows=True):
    n = draw(st.integers(1, max_rows))
    d = draw(st.integers(1, max_dim))
    out = []
    for _ in range(count):
        x = draw(hnp.arrays(np.float64, (n, d), elements=finite))
        if zero_rows and draw(st.booleans()):
            x[draw(st.integers(0, n - 1))] = 0.0        # a zero vector somewhere
        out.append(x)
    return out


def labels(n, seed):
    return np.where(np.random.default_rng(seed).uniform(size=n) < 0.5, 1.0, -1.0)


# ========================================================================================== pairs ===
@SETTINGS
@given(v=vectors(), margin=st.floats(-1.0, 1.0), seed=st.integers(0, 2**31 - 1))
def test_cosine_embedding_matches_torch(v, margin, seed):
    x1, x2 = v
    y = labels(len(x1), seed)
    _, _, got = run_spec("cosine_embedding", {"pred": x1, "target": x2, "label": y}, {"margin": margin})
    exp = F.cosine_embedding_loss(t64(x1), t64(x2), t64(y), margin=margin, reduction="none").numpy()
    np.testing.assert_allclose(got, exp, rtol=RTOL, atol=ATOL)


def test_cosine_embedding_edge_cases():
    z = np.zeros((2, 3))
    x = np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    y = np.array([1.0, -1.0])
    for a, b in ((z, x), (x, z), (z, z), (x, x), (x, -x)):
        for m in (-0.5, 0.0, 0.5):
            got = embedding.cosine_embedding(a, b, y, margin=m)
            exp = F.cosine_embedding_loss(t64(a), t64(b), t64(y), margin=m, reduction="none").numpy()
            np.testing.assert_allclose(got, exp, rtol=RTOL, atol=ATOL)
    # a zero vector: cosine 0 -> loss 1 for a similar pair, max(0, -margin) for a dissimilar one
    assert embedding.cosine_embedding(z, x, y, margin=-0.25).tolist() == [1.0, 0.25]
    # a single column is a 1-d vector: cos = sign(x1 x2)
    one = embedding.cosine_embedding([2.0, -3.0], [5.0, 4.0], [1.0, 1.0])
    np.testing.assert_allclose(one, [0.0, 2.0], atol=1e-12)


@SETTINGS
@given(x=hnp.arrays(np.float64, st.integers(1, 20), elements=finite), seed=st.integers(0, 2**31 - 1),
       margin=st.floats(-2.0, 2.0))
def test_margin_ranking_matches_torch(x, seed, margin):
    rng = np.random.default_rng(seed)
    x2 = np.where(rng.uniform(size=len(x)) < 0.2, x, rng.normal(0, 3, size=len(x)))  # ties included
    y = labels(len(x), seed)
    _, _, got = run_spec("margin_ranking", {"pred": x, "target": x2, "label": y}, {"margin": margin})
    exp = F.margin_ranking_loss(t64(x), t64(x2), t64(y), margin=margin, reduction="none").numpy()
    np.testing.assert_allclose(got, exp, rtol=RTOL, atol=ATOL)


# ======================================================================================= triplets ===
@SETTINGS
@given(v=vectors(count=3), margin=st.floats(0.01, 3.0), p=st.sampled_from([1.0, 2.0, 3.0, 0.5, 1.5, math.inf]),
       eps=st.sampled_from([0.0, 1e-6, 1e-3]), swap=st.booleans())
def test_triplet_matches_torch(v, margin, p, eps, swap):
    a, pos, neg = v
    params = {"margin": margin, "p": p, "eps": eps, "swap": swap}
    _, _, got = run_spec("triplet", {"anchor": a, "pred": pos, "target": neg}, params)
    exp = F.triplet_margin_loss(t64(a), t64(pos), t64(neg), margin=margin, p=p, eps=eps, swap=swap,
                                reduction="none").numpy()
    np.testing.assert_allclose(got, exp, rtol=RTOL, atol=1e-12)


def test_triplet_edge_cases():
    a = np.array([[1.0, -2.0, 0.5]])
    far = np.array([[9.0, 9.0, 9.0]])
    for p in (1.0, 2.0, 3.0, math.inf):
        # identical anchor and positive: d = ||eps 1||_p = eps d^(1/p) (torch's eps inside the norm)
        d = embedding.pairwise_distance(a, a, p=p, eps=1e-6)
        assert d[0] == pytest.approx(1e-6 * (3 ** (1 / p) if p != math.inf else 1.0), rel=1e-12)
        np.testing.assert_allclose(d, F.pairwise_distance(t64(a), t64(a), p=p, eps=1e-6).numpy(), rtol=RTOL)
        for swap in (False, True):
            for trip in ((a, a, far), (a, far, a), (a, a, a), (np.zeros_like(a),) * 3):
                got = embedding.triplet_margin(*trip, p=p, swap=swap)
                exp = F.triplet_margin_loss(*map(t64, trip), p=p, swap=swap, reduction="none").numpy()
                np.testing.assert_allclose(got, exp, rtol=RTOL, atol=1e-12)
    # all three equal: d_pos = d_neg -> exactly the margin
    assert embedding.triplet_margin(a, a, a, margin=0.7).tolist() == [0.7]
    # large p with large components: scaled by the row maximum, no overflow (|x|^64 of 1e6 is inf)
    big = np.array([[1e6, 2e6]])
    got = embedding.pairwise_distance(big, np.zeros_like(big), p=64.0, eps=0.0)
    assert np.isfinite(got).all()
    assert got[0] == pytest.approx(2e6 * (1 + 0.5 ** 64) ** (1 / 64), rel=1e-14)


# ========================================================================================= NT-Xent ===
@SETTINGS
@given(v=vectors(max_rows=14), temperature=st.sampled_from([0.05, 0.1, 0.5, 1.0, 2.0]),
       block=st.integers(1, 16))
def test_nt_xent_matches_simclr_reference(v, temperature, block):
    zi, zj = v
    _, _, got = run_spec("nt_xent", {"pred": zi, "target": zj}, {"temperature": temperature, "block_size": block})
    exp, block_means = ref_nt_xent(zi, zj, temperature, block)
    np.testing.assert_allclose(got, exp, rtol=RTOL, atol=ATOL)
    # the mean over a block's rows is SimCLR's mean over its 2B views
    for k, m in enumerate(block_means):
        rows = got[k * block:(k + 1) * block]
        assert math.fsum(rows) / len(rows) == pytest.approx(m, rel=RTOL, abs=ATOL)


def ref_optax_ntxent(zi, zj, temperature):
    """optax.losses.ntxent (optax/losses/_self_supervised.py) on one block, in torch ops: embeddings
    cat(z_i, z_j) with labels [0..B-1, 0..B-1]; per positive pair s_pos - log(exp(s_pos) + sum_neg exp(s_neg)),
    averaged over the positive pairs.  optax floors the cosine norms at float eps (torch: 1e-8), which only
    matters for vectors of norm < 1e-8."""
    z = torch.cat([t64(zi), t64(zj)])
    B = len(zi)
    labels = torch.cat([torch.arange(B), torch.arange(B)])
    u = z / torch.linalg.vector_norm(z, dim=1, keepdim=True)
    xcs = (u @ u.T) / temperature
    same = labels[:, None] == labels[None, :]
    matches = same & ~torch.eye(2 * B, dtype=torch.bool)
    neg = torch.where(~same, xcs, -math.inf)
    denom = torch.logsumexp(neg, dim=1)          # log sum over the negatives (B >= 2: there are some)
    pos = xcs[matches].reshape(2 * B)            # one positive per view, in row order
    per_view = -(pos - torch.logaddexp(pos, denom))
    return float(per_view.mean())


@SETTINGS
@given(seed=st.integers(0, 2**31 - 1), b=st.integers(2, 12), d=st.integers(1, 6),
       temperature=st.sampled_from([0.07, 0.5, 1.0]))
def test_nt_xent_block_mean_matches_optax_formula(seed, b, d, temperature):
    rng = np.random.default_rng(seed)
    zi, zj = rng.normal(size=(b, d)), rng.normal(size=(b, d))
    got = embedding.nt_xent(zi, zj, temperature=temperature, block_size=b)
    assert math.fsum(got) / b == pytest.approx(ref_optax_ntxent(zi, zj, temperature), rel=RTOL)


def test_nt_xent_edge_cases():
    rng = np.random.default_rng(5)
    zi = rng.normal(size=(6, 4))
    # a block of one pair has no negatives: loss 0 (torch reference: cross-entropy over one finite logit)
    got = embedding.nt_xent(zi, zi + 1.0, block_size=1)
    assert got.tolist() == [0.0] * 6
    np.testing.assert_allclose(got, ref_nt_xent(zi, zi + 1.0, 0.5, 1)[0], atol=0)
    # zero vectors: every cosine is 0, so each view's loss is log(2B - 1)
    z = np.zeros((4, 3))
    np.testing.assert_allclose(embedding.nt_xent(z, z, block_size=4), np.full(4, math.log(7)), rtol=1e-14)
    np.testing.assert_allclose(embedding.nt_xent(z, z, block_size=4), ref_nt_xent(z, z, 0.5, 4)[0], rtol=RTOL)
    # a zero vector among others, short last block (6 rows in blocks of 4: 4 + 2)
    zj = zi.copy()
    zj[2] = 0.0
    np.testing.assert_allclose(embedding.nt_xent(zi, zj, block_size=4, temperature=0.1),
                               ref_nt_xent(zi, zj, 0.1, 4)[0], rtol=RTOL)
    # small temperature, near-identical views: logits up to 100 stay finite
    tiny = embedding.nt_xent(zi, zi * 1.0000001, temperature=0.01, block_size=6)
    assert np.isfinite(tiny).all()
    np.testing.assert_allclose(tiny, ref_nt_xent(zi, zi * 1.0000001, 0.01, 6)[0], rtol=RTOL, atol=ATOL)
    # scale invariance (cosine similarity)
    np.testing.assert_allclose(embedding.nt_xent(3 * zi, 0.5 * zj), embedding.nt_xent(zi, zj), rtol=1e-12)


def test_nt_xent_blocks_are_consecutive_rows_from_the_start():
    rng = np.random.default_rng(9)
    zi, zj = rng.normal(size=(10, 3)), rng.normal(size=(10, 3))
    got = embedding.nt_xent(zi, zj, block_size=4)
    for s in (0, 4, 8):
        np.testing.assert_allclose(got[s:s + 4], embedding.nt_xent(zi[s:s + 4], zj[s:s + 4], block_size=999),
                                   rtol=1e-15)
    # a row's value changes with its block's other rows, so block membership matters
    assert not np.allclose(got, embedding.nt_xent(zi, zj, block_size=5))


# ============================================================================ chunks and merge order ===
def _make_inputs(name, rng, n, d=4):
    if name == "margin_ranking":
        return {"pred": rng.normal(size=n), "target": rng.normal(size=n), "label": labels(n, 1)}
    if name == "cosine_embedding":
        return {"pred": rng.normal(size=(n, d)), "target": rng.normal(size=(n, d)), "label": labels(n, 2)}
    if name == "triplet":
        return {"anchor": rng.normal(size=(n, d)), "pred": rng.normal(size=(n, d)), "target": rng.normal(size=(n, d))}
    return {"pred": rng.normal(size=(n, d)), "target": rng.normal(size=(n, d))}


@pytest.mark.parametrize("name", EMBEDDING_LOSSES)
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 30))
def test_chunk_and_merge_order_invariance(name, seed, n):
    """Cut the rows into batches (at multiples of the block for nt_xent, as the pipeline does), reduce each
    into its own state, merge in a random order: the same mean and sum as one batch."""
    rng = np.random.default_rng(seed)
    r = random.Random(seed)
    ins = _make_inputs(name, rng, n)
    params = {"block_size": 3} if name == "nt_xent" else {}
    w = rng.choice([0.5, 1.0, 2.0, 3.0], size=n)
    step = 3 if name == "nt_xent" else 1
    cuts = sorted(r.sample(range(step, n, step), r.randint(0, len(range(step, n, step))))) if n > step else []
    bounds = [0, *cuts, n]
    spec, p, whole_values = run_spec(name, ins, params)
    whole = SumState()
    whole.update({"loss": whole_values, "_w": 1.0}, w)
    states = []
    for a, b in zip(bounds, bounds[1:]):
        _, _, v = run_spec(name, {k: x[a:b] for k, x in ins.items()}, params)
        np.testing.assert_allclose(v, whole_values[a:b], rtol=1e-15, atol=0)
        s = SumState()
        s.update({"loss": v, "_w": 1.0}, w[a:b])
        states.append(s)
    r.shuffle(states)
    merged = SumState()
    for s in states:
        merged.merge(s)
    assert merged.total("loss") == pytest.approx(whole.total("loss"), rel=1e-12)
    assert merged.total("loss") / merged.total("_w") == pytest.approx(math.fsum(w * whole_values) / w.sum(),
                                                                        rel=1e-12)


def _list_col(x):
    n, k = x.shape
    return pa.ListArray.from_arrays(pa.array(np.arange(0, n * k + 1, k, dtype=np.int32)), pa.array(x.reshape(-1)))


def test_nt_xent_pipeline_independent_of_batch_size(tmp_path):
    rng = np.random.default_rng(21)
    n, d, block = 37, 5, 8
    zi, zj = rng.normal(size=(n, d)), rng.normal(size=(n, d))
    path = tmp_path / "emb.parquet"
    pq.write_table(pa.table({"z_i": _list_col(zi), "z_j": _list_col(zj)}), path, row_group_size=5)
    exp_rows, _ = ref_nt_xent(zi, zj, 0.2, block)
    loss = f"nt_xent:temperature=0.2,block_size={block}"
    for batch in (1, 3, 7, 8, 13, 16, 100):
        sizes = []
        res = lossctl.evaluate(str(path), [loss], pred="z_i", target="z_j", batch_rows=batch, reduction="none",
                               limit=0, batch_hook=lambda parts, info: sizes.append(info["n"]))
        # every batch but the last is a whole number of blocks
        assert all(s % block == 0 for s in sizes[:-1]), (batch, sizes)
        assert sum(sizes) == n
        got = np.array([row[res.results[0].label] for row in res.rows])
        np.testing.assert_allclose(got, exp_rows, rtol=RTOL)
        assert res.value() == pytest.approx(math.fsum(exp_rows) / n, rel=1e-12)


def test_nt_xent_refuses_to_omit_rows(tmp_path):
    path = tmp_path / "e.csv"
    path.write_text("a,b,c,d\n1,2,1,2\n2,1,2,1\n,3,3,4\n,1,1,1\n1,1,1,1\n")
    msg = run_err(["eval", path, "-l", "nt_xent:block_size=2", "--pred", "a,b", "--target", "c,d",
                   "--nan-policy", "omit"], 3)
    assert "row 3 has a missing value" in msg and "cannot omit rows" in msg


@pytest.mark.parametrize("value,what", [("", "missing value"), ("inf", "inf value")])
def test_nt_xent_bad_value_message_does_not_suggest_omit(tmp_path, value, what):
    """The default policy's message must not point at --nan-policy omit when the run refuses it."""
    path = tmp_path / "e.csv"
    path.write_text(f"a,b,c,d\n1,2,1,2\n2,1,2,1\n{value},3,3,4\n1,1,1,1\n")
    msg = run_err(["eval", path, "-l", "nt_xent:block_size=2", "--pred", "a,b", "--target", "c,d"], 3)
    assert f"column 'a', row 3: {what}" in msg and "omit" not in msg
    # a loss without row blocks keeps the hint
    msg = run_err(["eval", path, "-l", "mse", "--pred", "a,b", "--target", "c,d"], 3)
    assert "--nan-policy omit" in msg


# =========================================================================== columns, globs, errors ===
def test_vectors_from_column_globs_equal_list_columns(tmp_path):
    t = pq.read_table(f"{SAMPLES}/triplets.parquet")
    a, p, n = (np.array(t.column(c).to_pylist()) for c in ("a", "p", "n"))
    d = a.shape[1]
    cols = {}
    for name, x in (("anc", a), ("pos", p), ("neg", n)):
        for j in range(d):
            cols[f"{name}_{j}"] = x[:, j]
    csv = tmp_path / "trip.csv"
    pcsv.write_csv(pa.table(cols), csv)
    exp = F.triplet_margin_loss(t64(a), t64(p), t64(n), margin=0.5, swap=True).item()
    res_glob = lossctl.evaluate(str(csv), ["triplet:margin=0.5,swap=true"], columns={"anchor": "anc_*"},
                                pred="pos_*", target="neg_*")
    res_list = lossctl.evaluate(f"{SAMPLES}/triplets.parquet", ["triplet:margin=0.5,swap=true"],
                                columns={"anchor": "a"}, pred="p", target="n")
    assert res_glob.value() == pytest.approx(exp, rel=RTOL)
    assert res_list.value() == pytest.approx(exp, rel=RTOL)
    # pairs too, through the CLI, with natural column order (x_10 after x_9)
    zi, zj = np.random.default_rng(3).normal(size=(2, 9, 11))
    y = labels(9, 4)
    cols = {f"u_{j}": zi[:, j] for j in range(11)} | {f"v_{j}": zj[:, j] for j in range(11)} | {"y": y}
    pcsv.write_csv(pa.table(cols), tmp_path / "pairs.csv")
    res = invoke(["eval", tmp_path / "pairs.csv", "-l", "cosine_embedding:margin=0.2", "--pred", "u_*",
                  "--target", "v_*", "--label", "y", "--value"])
    assert res.exit_code == 0, res.stderr
    exp = F.cosine_embedding_loss(t64(zi), t64(zj), t64(y), margin=0.2).item()
    assert float(res.stdout) == pytest.approx(exp, rel=RTOL)


def test_input_errors_name_file_column_and_row(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text("x1,x2,y\n1,2,1\n2,1,-1\n3,3,0\n")
    msg = run_err(["eval", path, "-l", "margin_ranking", "--pred", "x1", "--target", "x2", "--label", "y"], 3)
    assert msg == f"{path}, column 'y', row 3: label 0.0 is not 1 or -1; map 0/1 labels to -1/1 first"
    path2 = tmp_path / "vec.csv"
    path2.write_text("a0,a1,b0,b1,b2,y\n1,2,1,2,3,1\n")
    msg = run_err(["eval", path2, "-l", "cosine_embedding", "--pred", "a0,a1", "--target", "b0,b1,b2",
                   "--label", "y"], 3)
    assert "vectors have 3 values per row but pred vectors have 2" in msg
    msg = run_err(["eval", path2, "-l", "margin_ranking", "--pred", "a0,a1", "--target", "b0", "--label", "y"], 3)
    assert "margin_ranking takes one score per row, got 2 values" in msg
    with pytest.raises(InputError, match=r"emb.parquet, column 'label', row 2: label 2.0 is not 1 or -1"):
        run_spec("cosine_embedding", {"pred": np.ones((2, 2)), "target": np.ones((2, 2)),
                                      "label": np.array([1.0, 2.0])})
    # torch refuses margin <= 0 for the triplet loss; so does lossctl (usage error, exit 2)
    msg = run_err(["eval", f"{SAMPLES}/triplets.parquet", "-l", "triplet:margin=0", "--anchor", "a", "--pred", "p",
                   "--target", "n"], 2)
    assert "margin" in msg


# ===================================================================== the issue's commands, explain ===
def _sample(name, *cols):
    t = pq.read_table(f"{SAMPLES}/{name}")
    return [np.array(t.column(c).to_pylist(), dtype=np.float64) for c in cols]


def test_issue_command_nt_xent_on_sample_embeddings():
    zi, zj = _sample("embeddings.parquet", "z_i", "z_j")
    res = invoke(["eval", f"{SAMPLES}/embeddings.parquet", "-l", "nt_xent:temperature=0.5", "--pred", "z_i",
                  "--target", "z_j", "--value"])
    assert res.exit_code == 0, res.stderr
    _, means = ref_nt_xent(zi, zj, 0.5, 256)         # 64 rows: one block
    assert float(res.stdout) == pytest.approx(means[0], rel=RTOL)
    res = invoke(["eval", f"{SAMPLES}/embeddings.parquet", "-l", "nt_xent:temperature=0.1,block_size=16",
                  "--pred", "z_i", "--target", "z_j", "--value", "--batch-size", "10"])
    rows, _ = ref_nt_xent(zi, zj, 0.1, 16)
    assert float(res.stdout) == pytest.approx(math.fsum(rows) / len(rows), rel=RTOL)


def test_issue_command_triplet_on_sample_triplets():
    a, p, n = _sample("triplets.parquet", "a", "p", "n")
    res = invoke(["eval", f"{SAMPLES}/triplets.parquet", "-l", "triplet:margin=1", "--anchor", "a", "--pred", "p",
                  "--target", "n", "--value"])
    assert res.exit_code == 0, res.stderr
    assert float(res.stdout) == pytest.approx(F.triplet_margin_loss(t64(a), t64(p), t64(n), margin=1.0).item(),
                                              rel=RTOL)


def test_pair_losses_on_sample_embeddings():
    zi, zj, y, s1, s2 = _sample("embeddings.parquet", "z_i", "z_j", "y", "s1", "s2")
    res = invoke(["eval", f"{SAMPLES}/embeddings.parquet", "-l", "cosine_embedding:margin=0.1", "--pred", "z_i",
                  "--target", "z_j", "--label", "y", "--value"])
    assert float(res.stdout) == pytest.approx(
        F.cosine_embedding_loss(t64(zi), t64(zj), t64(y), margin=0.1).item(), rel=RTOL)
    res = invoke(["eval", f"{SAMPLES}/embeddings.parquet", "-l", "margin_ranking:margin=0.1", "--pred", "s1",
                  "--target", "s2", "--label", "y", "--value"])
    assert float(res.stdout) == pytest.approx(F.margin_ranking_loss(t64(s1), t64(s2), t64(y), margin=0.1).item(),
                                              rel=RTOL)


@pytest.mark.parametrize("name", EMBEDDING_LOSSES)
def test_explain_is_complete_and_its_example_runs(name, monkeypatch):
    spec = registry.get(name)
    for field in ("summary", "formula", "latex", "reference", "when", "example", "space", "reduction_note"):
        assert getattr(spec, field).strip(), field
    assert spec.related and all(registry.get(r) for r in spec.related)
    assert spec.params and all(p.help and p.range_text() for p in spec.params)
    res = invoke(["explain", name])
    assert res.exit_code == 0, res.stderr
    assert spec.formula in res.stdout and spec.example in res.stdout and spec.reference in res.stdout
    # the example runs from the repository root, on a sample file
    monkeypatch.chdir(SAMPLES.rsplit("/", 1)[0])
    args = spec.example.split()
    assert args[:2] == ["lossctl", "eval"] and args[2].startswith("sample_data/")
    import shlex
    res = invoke(shlex.split(spec.example)[1:])
    assert res.exit_code == 0, res.stderr
    assert spec.name in res.stdout


def test_cosine_embedding_tiny_vectors_use_torchs_float_epsilon():
    # squared norm 6e-16 next to torch's EPSILON: the float32 value of 1e-12 decides the 10th digit
    x1, x2, y = np.array([[1.0]]), np.array([[2.46641448e-08]]), np.array([1.0])
    exp = F.cosine_embedding_loss(t64(x1), t64(x2), t64(y), reduction="none").numpy()
    np.testing.assert_allclose(embedding.cosine_embedding(x1, x2, y), exp, rtol=1e-14)


def test_nt_xent_two_files_with_different_batch_boundaries(tmp_path):
    """Views in two row-aligned files whose row groups differ: blocks are still rows [0, B), [B, 2B), ..."""
    rng = np.random.default_rng(8)
    n, block = 23, 6
    zi, zj = rng.normal(size=(n, 3)), rng.normal(size=(n, 3))
    pq.write_table(pa.table({"z": _list_col(zi)}), tmp_path / "a.parquet", row_group_size=5)
    pq.write_table(pa.table({"z": _list_col(zj)}), tmp_path / "b.parquet", row_group_size=7)
    exp_rows, _ = ref_nt_xent(zi, zj, 0.3, block)
    for batch in (2, 5, 9, 50):
        res = lossctl.evaluate([str(tmp_path / "a.parquet"), str(tmp_path / "b.parquet")],
                               [f"nt_xent:temperature=0.3,block_size={block}"], pred="z", target="z",
                               batch_rows=batch, reduction="none", limit=0)
        got = np.array([row[res.results[0].label] for row in res.rows])
        np.testing.assert_allclose(got, exp_rows, rtol=RTOL)
