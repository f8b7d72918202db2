"""Representation-learning losses on embedding vectors: pairs, triplets and contrastive blocks.

Vectors are list columns (Parquet list / fixed-size list) or several columns (``--pred 'z_*'``), so each
role arrives as an (n, d) float64 array; a single numeric column is a 1-d vector per row.

Roles (the pipeline binds them with --pred / --target / --anchor / --label):

=================== ===================== ===================== =====================
loss                ``pred``              ``target``            other
=================== ===================== ===================== =====================
cosine_embedding    x1                    x2                    ``label`` y = +-1
margin_ranking      x1 (one score)        x2 (one score)        ``label`` y = +-1
triplet             positive              negative              ``anchor``
nt_xent             z_i (first view)      z_j (second view)     --
=================== ===================== ===================== =====================

NT-Xent / InfoNCE (SimCLR) compares every row with every other row, so it is evaluated in blocks of
``block_size`` consecutive rows: row i's pair (z_i, z_j) is the positive, the other 2(B - 1) vectors of the
same block are its negatives.  The registry entry declares ``block_rows = block_size`` and the pipeline cuts
batches at multiples of it, so the result does not depend on the batch size; the last block of the input
may be shorter (fewer negatives).  Memory is O(block_size^2) whatever the file size.

Every function is checked against torch in tests/test_parity_embedding.py.
"""
from __future__ import annotations

import numpy as np

from ..registry import LossSpec, Param, register
from ._numerics import as_f64, logsumexp

# torch's cosine_embedding_loss adds EPSILON = 1e-12 to each squared norm (aten/src/ATen/native/Loss.cpp),
# a float constant: the value added is float32(1e-12) = 9.999999960041972e-13, which is what matters for
# vectors whose squared norm is near 1e-12.
TORCH_COSINE_EMBEDDING_EPS = float(np.float32(1e-12))


def _vectors(x) -> np.ndarray:
    """(n,) -> (n, 1); (n, d) as is."""
    x = as_f64(x)
    return x[:, None] if x.ndim == 1 else x


# -- pairs -------------------------------------------------------------------------------------------------
def cosine_embedding(pred, target, label, *, margin: float = 0.0) -> np.ndarray:
    """torch CosineEmbeddingLoss per pair: 1 - cos(x1, x2) if y = 1, max(0, cos(x1, x2) - margin) if y = -1.

    cos = x1.x2 / sqrt((|x1|^2 + 1e-12)(|x2|^2 + 1e-12)), torch's guard, so a zero vector has cos 0.

    Reference: torch.nn.CosineEmbeddingLoss(margin, reduction='none').

    >>> cosine_embedding([[1.0, 0.0], [1.0, 0.0]], [[1.0, 0.0], [0.0, 1.0]], [1, -1]).round(6).tolist()
    [0.0, 0.0]
    """
    x1, x2 = _vectors(pred), _vectors(target)
    y = as_f64(label).reshape(-1)
    prod = np.sum(x1 * x2, axis=1)
    mag1 = np.sum(x1 * x1, axis=1) + TORCH_COSINE_EMBEDDING_EPS
    mag2 = np.sum(x2 * x2, axis=1) + TORCH_COSINE_EMBEDDING_EPS
    cos = prod / np.sqrt(mag1 * mag2)
    pos = 1.0 - cos
    neg = np.maximum(cos - margin, 0.0)
    return np.where(y == 1, pos, 0.0) + np.where(y == -1, neg, 0.0)


def margin_ranking(pred, target, label, *, margin: float = 0.0) -> np.ndarray:
    """torch MarginRankingLoss per pair: max(0, -y (x1 - x2) + margin); y = 1 means x1 should rank higher.

    Reference: torch.nn.MarginRankingLoss(margin, reduction='none').

    >>> margin_ranking([2.0, 2.0], [1.0, 1.0], [1, -1], margin=0.5).tolist()
    [0.0, 1.5]
    """
    x1 = as_f64(pred).reshape(-1)
    x2 = as_f64(target).reshape(-1)
    y = as_f64(label).reshape(-1)
    return np.maximum(-y * (x1 - x2) + margin, 0.0)


# -- triplets ----------------------------------------------------------------------------------------------
def pairwise_distance(x1, x2, *, p: float = 2.0, eps: float = 1e-6) -> np.ndarray:
    """torch.nn.functional.pairwise_distance: the p-norm of x1 - x2 + eps, row by row.

    eps is added to every component of the difference (torch's guard against a zero-norm gradient), so
    identical vectors are eps * d^(1/p) apart, not 0.

    >>> pairwise_distance([[0.0, 0.0]], [[3.0, 4.0]], eps=0.0).tolist()
    [5.0]
    """
    d = np.abs(_vectors(x1) - _vectors(x2) + eps)
    if p == 2.0:
        return np.sqrt(np.sum(d * d, axis=1))
    if p == 1.0:
        return np.sum(d, axis=1)
    if np.isinf(p):
        return np.max(d, axis=1)
    # scale by the row maximum so |d|^p neither overflows nor underflows for large p
    m = np.max(d, axis=1)
    safe = np.where(m > 0, m, 1.0)
    return m * np.sum((d / safe[:, None]) ** p, axis=1) ** (1.0 / p)


def triplet_margin(anchor, pred, target, *, margin: float = 1.0, p: float = 2.0, eps: float = 1e-6,
                   swap: bool = False) -> np.ndarray:
    """torch TripletMarginLoss per triplet: max(d(a, pos) - d(a, neg) + margin, 0).

    ``pred`` is the positive and ``target`` the negative; d is :func:`pairwise_distance` (p-norm of the
    difference plus eps).  ``swap`` uses min(d(a, neg), d(pos, neg)) as the negative distance (Balntas et
    al. 2016).

    Reference: torch.nn.TripletMarginLoss(margin, p, eps, swap, reduction='none').

    >>> triplet_margin([[0.0, 0.0]], [[0.0, 1.0]], [[3.0, 0.0]], eps=0.0).tolist()
    [0.0]
    """
    d_pos = pairwise_distance(anchor, pred, p=p, eps=eps)
    d_neg = pairwise_distance(anchor, target, p=p, eps=eps)
    if swap:
        d_neg = np.minimum(d_neg, pairwise_distance(pred, target, p=p, eps=eps))
    return np.maximum(margin + d_pos - d_neg, 0.0)


# -- contrastive blocks ------------------------------------------------------------------------------------
def _nt_xent_block(zi: np.ndarray, zj: np.ndarray, temperature: float, eps: float) -> np.ndarray:
    b = len(zi)
    z = np.concatenate([zi, zj], axis=0)
    # cosine similarity as torch.nn.functional.cosine_similarity: each vector divided by max(|z|, eps)
    norms = np.sqrt(np.sum(z * z, axis=1))
    u = z / np.maximum(norms, eps)[:, None]
    logits = (u @ u.T) / temperature
    np.fill_diagonal(logits, -np.inf)  # a view is not its own negative
    idx = np.arange(b)
    pos = np.concatenate([logits[idx, idx + b], logits[idx + b, idx]])
    # -log softmax at the positive = logsumexp over the 2B - 1 others - positive logit; the shift by the
    # row maximum in logsumexp keeps temperatures like 0.01 (logits up to 100) finite.
    per_view = logsumexp(logits, axis=1) - pos
    return 0.5 * (per_view[:b] + per_view[b:])


def nt_xent(pred, target, *, temperature: float = 0.5, block_size: int = 256, eps: float = 1e-8) -> np.ndarray:
    """NT-Xent (SimCLR / InfoNCE) per pair, negatives from the same block of ``block_size`` rows.

    For a block of B pairs the 2B views z_1..z_2B give s_ab = cos(z_a, z_b) / temperature and, for view a
    with positive view a+,  l_a = -log(exp(s_aa+) / sum_{b != a} exp(s_ab)).  Row i's value is
    (l_i + l_{i+B}) / 2, the mean of its two directions, so the mean over the rows of a block is SimCLR's
    loss (1/2B) sum_a l_a.  Rows are cut into consecutive blocks from the first row of ``pred``; the last
    block may be shorter.  A block of one pair has no negatives and loss 0.

    Reference: SimCLR (Chen et al. 2020) NT-Xent with torch.nn.functional.cosine_similarity (eps = 1e-8);
    optax.losses.ntxent with labels pairing row i with row i + B.

    >>> nt_xent([[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [0.0, 1.0]], temperature=1.0).round(6).tolist()
    [0.551445, 0.551445]
    """
    zi, zj = _vectors(pred), _vectors(target)
    if zi.shape != zj.shape:
        raise ValueError(f"pred {zi.shape} and target {zj.shape} embeddings differ in shape")
    n = len(zi)
    out = np.empty(n, dtype=np.float64)
    for start in range(0, n, block_size):
        stop = min(start + block_size, n)
        out[start:stop] = _nt_xent_block(zi[start:stop], zj[start:stop], temperature, eps)
    return out


# -- validation hooks ----------------------------------------------------------------------------------
def _check_numeric(arrays, ctx, roles):
    for role in roles:
        if arrays[role].dtype.kind not in "fiub":
            raise ctx.error(role, None, "embeddings and scores must be numbers, not text")


def _check_same_dim(arrays, ctx, roles):
    dims = {r: (1 if arrays[r].ndim == 1 else arrays[r].shape[1]) for r in roles}
    first = roles[0]
    for r in roles[1:]:
        if dims[r] != dims[first]:
            raise ctx.error(r, None, f"vectors have {dims[r]} values per row but {first} vectors have "
                                     f"{dims[first]}; all vectors of a loss need the same dimension")


def _check_labels(arrays, ctx):
    y = arrays["label"]
    if y.dtype.kind not in "fiub":
        raise ctx.error("label", None, "labels must be 1 (similar / x1 ranks higher) or -1, not text")
    if y.ndim != 1:
        raise ctx.error("label", None, "the label is one number per row (1 or -1)")
    bad = (y != 1) & (y != -1)
    if bad.any():
        i = int(np.argmax(bad))
        hint = "; map 0/1 labels to -1/1 first" if y[i] == 0 else ""
        raise ctx.error("label", i, f"label {float(y[i])!r} is not 1 or -1{hint}")


def _prep_cosine(arrays, params, ctx):
    _check_numeric(arrays, ctx, ("pred", "target"))
    _check_same_dim(arrays, ctx, ("pred", "target"))
    _check_labels(arrays, ctx)
    return arrays


def _prep_ranking(arrays, params, ctx):
    _check_numeric(arrays, ctx, ("pred", "target"))
    for role in ("pred", "target"):
        x = arrays[role]
        if x.ndim == 2 and x.shape[1] != 1:
            raise ctx.error(role, None, f"margin_ranking takes one score per row, got {x.shape[1]} values; "
                                        f"choose a single column")
    _check_labels(arrays, ctx)
    return arrays


def _prep_triplet(arrays, params, ctx):
    _check_numeric(arrays, ctx, ("anchor", "pred", "target"))
    _check_same_dim(arrays, ctx, ("anchor", "pred", "target"))
    return arrays


def _prep_pairs(arrays, params, ctx):
    _check_numeric(arrays, ctx, ("pred", "target"))
    _check_same_dim(arrays, ctx, ("pred", "target"))
    return arrays


def _prep_nt_xent(arrays, params, ctx):
    _prep_pairs(arrays, params, ctx)
    rowmap = getattr(ctx, "rowmap", None)
    if rowmap is not None:
        # --nan-policy omit dropped rows of this batch: the blocks would then be cut from the kept rows and
        # shift with the batch boundaries, so the value would depend on --batch-size.  Refuse instead.
        kept = np.asarray(rowmap)
        gaps = np.flatnonzero(kept != np.arange(len(kept)))
        first = int(gaps[0]) if len(gaps) else len(kept)  # kept[j] != j: input row j was dropped
        raise ctx.error("pred", None, f"row {ctx.row0 + first + 1} has a missing value; nt_xent blocks "
                                      f"consecutive rows, so it cannot omit rows (--nan-policy omit): drop "
                                      f"such pairs from the file first, or use --nan-policy propagate")
    return arrays


_MEAN_NOTE = "mean = sum(w*l)/sum(w) (torch reduction='mean' with unit weights)"

register(LossSpec(
    name="cosine_embedding", aliases=("cosine_embedding_loss", "cosineembeddingloss"), kind="embedding",
    fn=cosine_embedding, roles=("pred", "target", "label"), space="vectors",
    params=(Param("margin", float, 0.0, "cosine below which dissimilar pairs cost nothing (torch suggests "
                  "0 to 0.5)", low=-1.0, high=1.0),),
    summary="Cosine embedding loss: pull similar pairs together (1 - cos), push dissimilar below a margin.",
    formula="l = 1 - cos(x1, x2) if y = 1; max(0, cos(x1, x2) - margin) if y = -1",
    latex=r"\ell = \begin{cases} 1 - \cos(x_1, x_2) & y = 1 \\ \max(0, \cos(x_1, x_2) - m) & y = -1 \end{cases}",
    reference="torch.nn.CosineEmbeddingLoss",
    when="Siamese / metric-learning pairs with a similar (1) / dissimilar (-1) label: --pred x1 --target x2 "
         "--label y. Scale-invariant (only directions matter); a zero vector has cosine 0 (torch adds 1e-12 "
         "to squared norms). Labels other than +-1 are input errors (torch silently scores them 0).",
    reduction_note=_MEAN_NOTE,
    example="lossctl eval sample_data/embeddings.parquet -l cosine_embedding --pred z_i --target z_j --label y",
    related=("triplet", "nt_xent", "margin_ranking"),
    extra={"prepare": _prep_cosine},
))

register(LossSpec(
    name="margin_ranking", aliases=("margin_ranking_loss", "marginrankingloss", "ranking_hinge"),
    kind="embedding", fn=margin_ranking, roles=("pred", "target", "label"), space="scores",
    params=(Param("margin", float, 0.0, "required score gap"),),
    summary="Margin ranking loss on score pairs: max(0, -y (x1 - x2) + margin).",
    formula="l = max(0, -y (x1 - x2) + margin)", latex=r"\ell = \max(0, -y(x_1 - x_2) + m)",
    reference="torch.nn.MarginRankingLoss",
    when="Pairwise ranking (learning to rank, preference models): y = 1 when x1 should score higher than x2, "
         "-1 otherwise (--pred x1 --target x2 --label y). One score per row; labels must be +-1.",
    reduction_note=_MEAN_NOTE,
    example="lossctl eval sample_data/embeddings.parquet -l margin_ranking:margin=0.1 --pred s1 --target s2 "
            "--label y",
    related=("cosine_embedding", "triplet"),
    extra={"prepare": _prep_ranking},
))

register(LossSpec(
    name="triplet", aliases=("triplet_margin", "triplet_margin_loss", "tripletmarginloss", "triplet_loss"),
    kind="embedding", fn=triplet_margin, roles=("anchor", "pred", "target"), space="vectors",
    params=(Param("margin", float, 1.0, "required gap between negative and positive distance (torch: > 0)",
                  low=0.0, low_open=True),
            Param("p", float, 2.0, "norm degree of the distance (inf = max norm)", low=0.0, low_open=True),
            Param("eps", float, 1e-6, "added to each component of the difference (torch pairwise_distance)",
                  low=0.0),
            Param("swap", bool, False, "distance swap: negative distance min(d(a,n), d(p,n))")),
    summary="Triplet margin loss: the anchor must be closer to the positive than to the negative by a margin.",
    formula="l = max(d(a, pos) - d(a, neg) + margin, 0), d(x, y) = ||x - y + eps||_p",
    latex=r"\ell = \max(\|a - p + \epsilon\|_p - \|a - n + \epsilon\|_p + m,\ 0)",
    reference="torch.nn.TripletMarginLoss",
    when="Metric learning with mined triplets: --anchor a --pred positive --target negative. Measures how "
         "many triplets still violate the margin (0 once all are satisfied); swap=true also checks the "
         "positive-negative distance.",
    reduction_note=_MEAN_NOTE,
    example="lossctl eval sample_data/triplets.parquet -l triplet:margin=1 --anchor a --pred p --target n",
    related=("cosine_embedding", "nt_xent", "margin_ranking"),
    extra={"prepare": _prep_triplet},
))

register(LossSpec(
    name="nt_xent", aliases=("ntxent", "info_nce", "infonce", "simclr", "nt_xent_loss"), kind="embedding",
    fn=nt_xent, roles=("pred", "target"), space="vectors",
    params=(Param("temperature", float, 0.5, "softmax temperature tau on cosine similarities (SimCLR 0.1-0.5; "
                  "optax default 0.07)", low=0.0, low_open=True),
            Param("block_size", int, 256, "pairs per block: each pair's negatives are the other rows of its "
                  "block (the training batch size); memory O(block_size^2)", low=1),
            Param("eps", float, 1e-8, "norm floor of the cosine similarity (torch cosine_similarity)", low=0.0,
                  low_open=True)),
    summary="NT-Xent / InfoNCE (SimCLR): cross-entropy of each view against its pair among all views of its block.",
    formula="l_i = (l(z_i -> z_j) + l(z_j -> z_i)) / 2; "
            "l(a -> a+) = -log(exp(s(a,a+)/tau) / sum_{b != a} exp(s(a,b)/tau)), "
            "s = cosine similarity, b over the 2B views of the block",
    latex=r"\ell_{a} = -\log\frac{\exp(s_{a a^+}/\tau)}{\sum_{b \ne a} \exp(s_{ab}/\tau)},\quad "
          r"\ell_i = \tfrac12(\ell_{i} + \ell_{i+B})",
    reference="SimCLR NT-Xent (Chen et al. 2020); optax.losses.ntxent on each block (labels pairing z_i with z_j)",
    when="Self-supervised contrastive models: row i holds two views of one example (--pred z_i --target z_j). "
         "Set block_size to the training batch size: the value depends on how many negatives each pair sees "
         "(log(2B - 1) for random embeddings). Blocks are consecutive rows from the start of the input; the "
         "last block may be shorter. With --by, rows are still blocked in file order and each group averages "
         "its rows' values. --nan-policy omit is refused (dropping a row would shift the blocks).",
    reduction_note="mean = sum(w*l)/sum(w) of per-pair values (unit weights: SimCLR's mean over all 2N views); "
                   "blocks never straddle a batch (the pipeline cuts batches at multiples of block_size)",
    example="lossctl eval sample_data/embeddings.parquet -l nt_xent:temperature=0.5 --pred z_i --target z_j",
    related=("triplet", "cosine_embedding", "cross_entropy"),
    block_rows=lambda params: int(params["block_size"]),
    extra={"prepare": _prep_nt_xent},
))
