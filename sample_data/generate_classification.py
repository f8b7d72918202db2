"""Regenerate the classification sample files (seeded, so the files are reproducible).

    python sample_data/generate_classification.py

binary.parquet   400 rows of a churn classifier: id, segment, prob (P(churn)), logit, label (0/1 int),
                 churn ('yes' / 'no' strings: sorted, 'yes' is the positive class), weight, and a 3-tag multi-label head:
                 tag_logit_0..2 with 0/1 targets tag_0..2.
binary.csv       the same rows as a detector export: id, logit, label only (so `lossctl eval
                 sample_data/binary.csv -l focal --logits` finds its columns without --pred/--target).
multiclass.csv   300 iris-like rows: id, species (string target: setosa / versicolor / virginica),
                 p_setosa, p_versicolor, p_virginica (softmax probabilities, columns in sorted-name order),
                 logit_*, logp_* (log-probabilities), q_* (a teacher's soft distribution), pred_species.
multiclass.parquet the same rows with integer targets: id, segment, label (0..2), label_masked (some -1, for
                 ignore_index=-1), logits (list<double> column), probs (fixed-size list of 3),
                 teacher (list column of soft targets), logit_0..logit_2, weight.
"""
from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

HERE = os.path.dirname(os.path.abspath(__file__))
SPECIES = ("setosa", "versicolor", "virginica")


def _log_softmax(x: np.ndarray) -> np.ndarray:
    m = x.max(axis=1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=1, keepdims=True))


def binary(rng: np.random.Generator) -> None:
    n = 400
    ids = np.arange(1, n + 1)
    segment = rng.choice(["consumer", "smb", "enterprise"], size=n, p=[0.6, 0.3, 0.1])
    label = (rng.uniform(size=n) < 0.25).astype(np.int64)  # imbalanced: about 1 positive in 4
    logit = np.round(np.where(label == 1, 1.1, -1.3) + rng.normal(0.0, 1.4, size=n), 6)
    logit[rng.choice(n, 3, replace=False)] *= 6.0  # a few over-confident scores
    prob = 1.0 / (1.0 + np.exp(-logit))
    churn = np.where(label == 1, "yes", "no")
    weight = rng.integers(1, 4, size=n).astype(np.float64)
    tags = (rng.uniform(size=(n, 3)) < np.array([0.5, 0.2, 0.05])).astype(np.int64)
    tag_logit = np.round(np.where(tags == 1, 1.0, -1.5) + rng.normal(0.0, 1.2, size=(n, 3)), 6)
    cols = {"id": ids, "segment": segment, "prob": prob, "logit": logit, "label": label, "churn": churn,
            "weight": weight}
    cols.update({f"tag_logit_{k}": tag_logit[:, k] for k in range(3)})
    cols.update({f"tag_{k}": tags[:, k] for k in range(3)})
    pq.write_table(pa.table(cols), os.path.join(HERE, "binary.parquet"))
    pcsv.write_csv(pa.table({"id": ids, "logit": logit, "label": label}), os.path.join(HERE, "binary.csv"))


def multiclass(rng: np.random.Generator) -> None:
    n = 300
    ids = np.arange(1, n + 1)
    label = rng.choice(3, size=n, p=[0.5, 0.3, 0.2])
    centre = np.array([[2.0, 0.0, -1.0], [-0.5, 1.6, 0.4], [-1.0, 0.6, 1.8]])
    logits = np.round(centre[label] + rng.normal(0.0, 1.1, size=(n, 3)), 6)
    logp = _log_softmax(logits)
    probs = np.exp(logp)
    teacher = np.exp(_log_softmax(0.5 * (logits + centre[label])))  # a smoother teacher's distribution
    species = np.array(SPECIES)[label]
    pred_species = np.array(SPECIES)[np.argmax(logits, axis=1)]
    masked = label.copy()
    masked[rng.choice(n, 20, replace=False)] = -1  # unlabelled rows, for ignore_index=-1
    segment = rng.choice(["lab", "field"], size=n)
    weight = rng.integers(1, 4, size=n).astype(np.float64)

    csv = {"id": ids, "species": species, "pred_species": pred_species}
    csv.update({f"p_{s}": probs[:, k] for k, s in enumerate(SPECIES)})
    csv.update({f"logit_{s}": logits[:, k] for k, s in enumerate(SPECIES)})
    csv.update({f"logp_{s}": logp[:, k] for k, s in enumerate(SPECIES)})
    csv.update({f"q_{s}": teacher[:, k] for k, s in enumerate(SPECIES)})
    pcsv.write_csv(pa.table(csv), os.path.join(HERE, "multiclass.csv"))

    lists = pa.array(list(map(list, logits)), type=pa.list_(pa.float64()))
    fixed = pa.FixedSizeListArray.from_arrays(pa.array(probs.reshape(-1)), 3)
    soft = pa.array(list(map(list, teacher)), type=pa.list_(pa.float64()))
    pqcols = {"id": pa.array(ids), "segment": pa.array(segment), "label": pa.array(label.astype(np.int64)),
              "label_masked": pa.array(masked.astype(np.int64)), "logits": lists, "probs": fixed,
              "teacher": soft}
    pqcols.update({f"logit_{k}": pa.array(logits[:, k]) for k in range(3)})
    pqcols["weight"] = pa.array(weight)
    pq.write_table(pa.table(pqcols), os.path.join(HERE, "multiclass.parquet"))


def main() -> None:
    rng = np.random.default_rng(20261122)
    binary(rng)
    multiclass(rng)


if __name__ == "__main__":
    main()
