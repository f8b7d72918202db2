"""Regenerate the mask, box and embedding sample files (seeded, so the files are reproducible).

    python sample_data/generate_overlap.py

masks.parquet       20 soft 8x8 segmentation masks, flattened: image_id, prob_mask (list of 64
                    probabilities), mask (list of 64 0/1 labels); row 4 has an empty target, row 9 both empty
pixels.parquet      the same masks one pixel per row: image_id, pixel, p, y  (Dice per image with --by image_id)
boxes.csv           30 detections: image_id, pred_x1, pred_y1, pred_x2, pred_y2 (prediction, xyxy) and
                    x1, y1, x2, y2 (ground truth); one exact match, a few disjoint misses
bad_boxes.csv       the first 5 of those boxes with x1 and x2 swapped in row 3 (an input error, exit 3)
embeddings.parquet  64 SimCLR pairs of 16-d embeddings: z_i, z_j (lists), y (+1 similar / -1 dissimilar pair
                    label for cosine_embedding), s1, s2 (scores for margin_ranking, y = 1 when s1 should win)
triplets.parquet    64 triplets of 16-d embeddings: a (anchor), p (positive), n (negative)
weights.parquet     the weights of a one-hidden-layer MLP (8 inputs, 16 hidden units, 1 output), one row per
                    hidden unit: w1 (list of its 8 input weights), b1 (its bias), w2 (its output weight) --
                    160 weights for `lossctl penalty` (exclude the biases with --exclude 'b*')
"""
from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

HERE = os.path.dirname(os.path.abspath(__file__))
SIDE = 8


def _list_col(x: np.ndarray, value_type=pa.float64()) -> pa.Array:
    """(n, k) -> a list<value_type> column, one list of k values per row."""
    n, k = x.shape
    offsets = pa.array(np.arange(0, n * k + 1, k, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(x.reshape(-1), type=value_type))


def masks(rng: np.random.Generator) -> None:
    n = 20
    yy, xx = np.mgrid[0:SIDE, 0:SIDE]
    targets = np.zeros((n, SIDE * SIDE))
    probs = np.zeros((n, SIDE * SIDE))
    for i in range(n):
        cy, cx = rng.uniform(1.5, SIDE - 1.5, size=2)
        r = rng.uniform(1.2, 3.0)
        d = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
        t = (d <= r).astype(float)
        # prediction: a shifted, blurred disc, squashed to (0, 1) with some noise
        sy, sx = rng.normal(0.0, 0.6, size=2)
        dp = np.sqrt((yy - cy - sy) ** 2 + (xx - cx - sx) ** 2)
        logit = 2.5 * (r * rng.uniform(0.8, 1.2) - dp) + rng.normal(0.0, 0.7, size=dp.shape)
        p = 1.0 / (1.0 + np.exp(-logit))
        if i == 4:   # object missed by the annotator: empty target, confident-ish prediction
            t[:] = 0.0
        if i == 9:   # empty image, empty prediction: a perfect (loss 0) row
            t[:] = 0.0
            p[:] = 0.0
        targets[i] = t.reshape(-1)
        probs[i] = np.round(p.reshape(-1), 4)
    image_id = np.arange(1, n + 1)
    pq.write_table(pa.table({"image_id": image_id, "prob_mask": _list_col(probs),
                             "mask": _list_col(targets.astype(np.int8), pa.int8())}),
                   os.path.join(HERE, "masks.parquet"))
    pq.write_table(pa.table({"image_id": np.repeat(image_id, SIDE * SIDE),
                             "pixel": np.tile(np.arange(SIDE * SIDE), n),
                             "p": probs.reshape(-1), "y": targets.reshape(-1).astype(np.int8)}),
                   os.path.join(HERE, "pixels.parquet"))


def boxes(rng: np.random.Generator) -> None:
    n = 30
    x1 = rng.uniform(0, 400, n)
    y1 = rng.uniform(0, 300, n)
    w = rng.uniform(20, 160, n)
    h = rng.uniform(20, 160, n)
    gt = np.stack([x1, y1, x1 + w, y1 + h], axis=1)
    jitter = rng.normal(0.0, 0.08, size=(n, 4)) * np.stack([w, h, w, h], axis=1)
    pred = gt + jitter
    pred[:, 2] = np.maximum(pred[:, 2], pred[:, 0] + 1.0)
    pred[:, 3] = np.maximum(pred[:, 3], pred[:, 1] + 1.0)
    pred[7] = gt[7]                                   # exact match
    for i in (12, 21):                                # disjoint misses
        pred[i] = gt[i] + np.array([w[i] + 30, 0.0, w[i] + 30, 0.0])
    gt, pred = np.round(gt, 2), np.round(pred, 2)
    tbl = pa.table({"image_id": np.arange(1, n + 1) // 3 + 1,
                    "pred_x1": pred[:, 0], "pred_y1": pred[:, 1], "pred_x2": pred[:, 2], "pred_y2": pred[:, 3],
                    "x1": gt[:, 0], "y1": gt[:, 1], "x2": gt[:, 2], "y2": gt[:, 3]})
    pcsv.write_csv(tbl, os.path.join(HERE, "boxes.csv"))
    # an invalid prediction (x2 < x1) in row 3, for the input-error example
    bad = pred[:5].copy()
    bad[2, [0, 2]] = bad[2, [2, 0]]
    pcsv.write_csv(pa.table({"pred_x1": bad[:, 0], "pred_y1": bad[:, 1], "pred_x2": bad[:, 2], "pred_y2": bad[:, 3],
                             "x1": gt[:5, 0], "y1": gt[:5, 1], "x2": gt[:5, 2], "y2": gt[:5, 3]}),
                   os.path.join(HERE, "bad_boxes.csv"))


def embeddings(rng: np.random.Generator) -> None:
    n, d = 64, 16
    base = rng.normal(size=(n, d))
    zi = base + 0.35 * rng.normal(size=(n, d))
    zj = base + 0.35 * rng.normal(size=(n, d))
    y = np.where(rng.uniform(size=n) < 0.75, 1, -1).astype(np.int8)
    # dissimilar pairs: replace the second view by another example's view
    other = rng.permutation(n)
    zj = np.where((y == -1)[:, None], zj[other], zj)
    s1 = np.round(rng.normal(size=n), 4)
    s2 = np.round(s1 - 0.5 * y + rng.normal(0.0, 0.6, size=n), 4)
    pq.write_table(pa.table({"z_i": _list_col(np.round(zi, 5)), "z_j": _list_col(np.round(zj, 5)),
                             "y": y, "s1": s1, "s2": s2}),
                   os.path.join(HERE, "embeddings.parquet"))
    a = rng.normal(size=(n, d))
    p = a + 0.5 * rng.normal(size=(n, d))
    neg = a + rng.normal(size=(n, d)) * rng.uniform(0.4, 2.0, size=(n, 1))
    pq.write_table(pa.table({"a": _list_col(np.round(a, 5)), "p": _list_col(np.round(p, 5)),
                             "n": _list_col(np.round(neg, 5))}),
                   os.path.join(HERE, "triplets.parquet"))


def weights(rng: np.random.Generator) -> None:
    hidden, inputs = 16, 8
    w1 = np.round(rng.normal(0.0, 1.0 / np.sqrt(inputs), size=(hidden, inputs)), 4)
    w1[rng.uniform(size=w1.shape) < 0.2] = 0.0        # some exact zeros, as after L1 training
    b1 = np.round(rng.normal(0.0, 0.1, size=hidden), 4)
    w2 = np.round(rng.normal(0.0, 1.0 / np.sqrt(hidden), size=hidden), 4)
    pq.write_table(pa.table({"w1": _list_col(w1), "b1": b1, "w2": w2}),
                   os.path.join(HERE, "weights.parquet"))


def main() -> None:
    rng = np.random.default_rng(20261205)
    masks(rng)
    boxes(rng)
    embeddings(rng)
    weights(rng)


if __name__ == "__main__":
    main()
