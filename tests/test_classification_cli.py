"""The classification commands of issue 3, run through the CLI on sample_data/, checked against torch / sklearn.

Every expected number is computed here from the sample files with the reference library (torch 2.13.0,
scikit-learn), never copied from lossctl's output.  sigmoid_focal_loss comes from torchvision, which cannot be
installed beside this torch build: its body (torchvision/ops/focal_loss.py) is transcribed in torch ops below.
The sample files are written by sample_data/generate_classification.py (seeded); a test regenerates them into a
temporary directory and checks that the committed files are what the script writes.
"""
from __future__ import annotations

import json
import math
import os
import shlex
import subprocess
import sys
import zlib

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest
import sklearn.metrics as skm
import torch
import torch.nn.functional as F
from conftest import invoke, run_err

from lossctl import registry

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SD = os.path.join(ROOT, "sample_data")
BIN_PQ = os.path.join(SD, "binary.parquet")
BIN_CSV = os.path.join(SD, "binary.csv")
MC_CSV = os.path.join(SD, "multiclass.csv")
MC_PQ = os.path.join(SD, "multiclass.parquet")
SPECIES = ["setosa", "versicolor", "virginica"]
RTOL = 1e-10


# -- helpers --------------------------------------------------------------------------------------------------
def table(path) -> pa.Table:
    return pq.read_table(path) if str(path).endswith(".parquet") else pcsv.read_csv(path)


def arr(tbl: pa.Table, *names) -> np.ndarray:
    """One column as (n,) float64, or several (or one list column) as (n, k)."""
    if len(names) == 1:
        c = tbl.column(names[0])
        if pa.types.is_list(c.type) or pa.types.is_fixed_size_list(c.type):
            return np.array(c.to_pylist(), dtype=np.float64)
        return np.asarray(c.to_pylist(), dtype=np.float64)
    return np.column_stack([arr(tbl, n) for n in names])


def t64(x) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x, dtype=np.float64))


def long(x) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x).astype(np.int64))


def evaluate(*args) -> dict:
    """Run ``lossctl eval ARGS -f json``; returns the JSON document (exit 0 and nothing on stderr required)."""
    res = invoke(["eval", *args, "-f", "json"])
    assert res.exit_code == 0, (res.exit_code, res.stdout, res.stderr)
    assert res.stderr == "", res.stderr
    return json.loads(res.stdout)


def values(doc: dict) -> dict:
    """Overall value per result label."""
    return {r["label"]: r["value"] for r in doc["results"] if r["group"] is None}


def close(ours, ref, rtol=RTOL, atol=0.0):
    np.testing.assert_allclose(np.asarray(ours, dtype=np.float64), np.asarray(ref, dtype=np.float64),
                               rtol=rtol, atol=atol)


def torchvision_sigmoid_focal(inputs, targets, alpha=0.25, gamma=2.0):
    """torchvision/ops/focal_loss.py sigmoid_focal_loss body, reduction='none', in torch ops."""
    p = torch.sigmoid(inputs)
    ce_loss = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce_loss * ((1 - p_t) ** gamma)
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss


@pytest.fixture(scope="module")
def binary():
    return table(BIN_PQ)


@pytest.fixture(scope="module")
def mc_csv():
    return table(MC_CSV)


@pytest.fixture(scope="module")
def mc_pq():
    return table(MC_PQ)


def species_index(tbl: pa.Table) -> np.ndarray:
    names = tbl.column("species").to_pylist()
    return np.array([SPECIES.index(s) for s in names], dtype=np.int64)


# -- the sample files ---------------------------------------------------------------------------------------------
def test_sample_files_are_what_the_generator_writes(tmp_path):
    import importlib.util
    spec = importlib.util.spec_from_file_location("gen_cls", os.path.join(SD, "generate_classification.py"))
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    gen.HERE = str(tmp_path)
    gen.main()
    for name in ("binary.parquet", "binary.csv", "multiclass.csv", "multiclass.parquet"):
        assert table(tmp_path / name).equals(table(os.path.join(SD, name))), name


def test_sample_file_shapes(binary, mc_csv, mc_pq):
    assert {"id", "segment", "prob", "logit", "label", "churn", "weight"} <= set(binary.column_names)
    assert set(binary.column("label").to_pylist()) == {0, 1}
    assert sorted(set(mc_csv.column("species").to_pylist())) == SPECIES
    assert pa.types.is_list(mc_pq.schema.field("logits").type)
    assert pa.types.is_fixed_size_list(mc_pq.schema.field("probs").type)
    assert -1 in mc_pq.column("label_masked").to_pylist()


# -- the issue's commands -----------------------------------------------------------------------------------------
def test_bce_on_probabilities(binary):
    doc = evaluate(BIN_PQ, "-l", "bce", "--pred", "prob", "--target", "label")
    p, y = arr(binary, "prob"), arr(binary, "label")
    close(values(doc)["bce"], F.binary_cross_entropy(t64(p), t64(y)).item())
    assert doc["columns"]["pred"] == "prob" and doc["columns"]["target"] == "label"


def test_bce_with_logits_pos_weight_finds_the_label_column(binary):
    doc = evaluate(BIN_PQ, "-l", "bce_with_logits:pos_weight=3", "--pred", "logit")
    x, y = arr(binary, "logit"), arr(binary, "label")
    ref = F.binary_cross_entropy_with_logits(t64(x), t64(y), pos_weight=t64(3.0)).item()
    close(values(doc)["bce_with_logits(pos_weight=3.0)"], ref)
    assert doc["columns"]["target"] == "label"


def test_cross_entropy_one_column_per_class_glob(mc_pq):
    doc = evaluate(MC_PQ, "-l", "cross_entropy", "--pred", "logit_*", "--target", "label")
    assert doc["columns"]["pred"] == ["logit_0", "logit_1", "logit_2"]
    x, y = arr(mc_pq, "logit_0", "logit_1", "logit_2"), arr(mc_pq, "label")
    close(values(doc)["cross_entropy"], F.cross_entropy(t64(x), long(y)).item())


@pytest.mark.parametrize("target", [None, "label_masked"])
def test_cross_entropy_list_column_label_smoothing_ignore_index(mc_pq, target):
    args = [MC_PQ, "-l", "cross_entropy:label_smoothing=0.1,ignore_index=-1", "--pred", "logits"]
    if target:
        args += ["--target", target]
    doc = evaluate(*args)
    x, y = arr(mc_pq, "logits"), arr(mc_pq, target or "label")
    assert x.shape == (300, 3)
    ref = F.cross_entropy(t64(x), long(y), label_smoothing=0.1, ignore_index=-1).item()
    close(values(doc)["cross_entropy(label_smoothing=0.1,ignore_index=-1)"], ref)


def test_string_labels_sorted_names_reported(mc_csv):
    doc = evaluate(MC_CSV, "-l", "log_loss", "-l", "zero_one", "-l", "brier", "--pred", "p_*", "--target", "species")
    assert doc["classes"] == SPECIES  # the sorted label names, reported
    assert doc["columns"]["pred"] == ["p_setosa", "p_versicolor", "p_virginica"]
    names = np.array(mc_csv.column("species").to_pylist())
    P = arr(mc_csv, "p_setosa", "p_versicolor", "p_virginica")
    v = values(doc)
    close(v["log_loss"], skm.log_loss(names, P))  # sklearn maps the names through their sorted order too
    close(v["zero_one"], skm.zero_one_loss(names, np.array(SPECIES)[np.argmax(P, axis=1)]))
    close(v["brier"], skm.brier_score_loss(names, P))


def test_string_labels_mapped_through_classes(mc_csv):
    order = ["virginica", "setosa", "versicolor"]
    doc = evaluate(MC_CSV, "-l", "log_loss", "--pred", "p_virginica,p_setosa,p_versicolor", "--target", "species",
                   "--classes", ",".join(order))
    assert doc["classes"] == order
    names = np.array(mc_csv.column("species").to_pylist())
    # sklearn takes the probability columns in sorted-name order whatever labels= says: give it those
    close(values(doc)["log_loss"], skm.log_loss(names, arr(mc_csv, "p_setosa", "p_versicolor", "p_virginica")))
    # a mapping that disagrees with the columns changes the value (the order is really used)
    other = values(evaluate(MC_CSV, "-l", "log_loss", "--pred", "p_virginica,p_setosa,p_versicolor", "--target",
                            "species", "--classes", ",".join(SPECIES)))["log_loss"]
    assert not math.isclose(other, values(doc)["log_loss"], rel_tol=1e-3)


def test_table_names_the_class_order_of_string_labels():
    order = ["virginica", "setosa", "versicolor"]
    res = invoke(["eval", MC_CSV, "-l", "log_loss", "--pred", "p_virginica,p_setosa,p_versicolor",
                  "--target", "species", "--classes", ",".join(order)])
    assert res.exit_code == 0, res.stderr
    assert "classes (score-column order): virginica, setosa, versicolor" in res.stdout
    res = invoke(["eval", MC_CSV, "-l", "log_loss", "--pred", "p_*", "--target", "species"])
    assert "classes (score-column order): " + ", ".join(SPECIES) in res.stdout
    res = invoke(["eval", MC_PQ, "-l", "cross_entropy", "--pred", "logits", "--target", "label"])
    assert res.exit_code == 0 and "classes" not in res.stdout  # integer labels: nothing to name


def test_class_weights_torch_weighted_mean(mc_pq):
    doc = evaluate(MC_PQ, "-l", "cross_entropy", "--class-weights", "1,2,5", "--pred", "logits")
    x, y = arr(mc_pq, "logits"), arr(mc_pq, "label")
    ref = F.cross_entropy(t64(x), long(y), weight=t64([1.0, 2.0, 5.0])).item()
    close(values(doc)["cross_entropy"], ref)
    assert doc["results"][0]["params"]["class_weights"] == [1.0, 2.0, 5.0]


def test_class_weights_with_string_labels_and_sample_weights(mc_csv):
    doc = evaluate(MC_CSV, "-l", "cross_entropy", "--pred", "logit_*", "--target", "species",
                   "--class-weights", "1,2,5", "-r", "sum")
    x, y = arr(mc_csv, "logit_setosa", "logit_versicolor", "logit_virginica"), species_index(mc_csv)
    close(values(doc)["cross_entropy"], F.cross_entropy(t64(x), long(y), weight=t64([1, 2, 5]), reduction="sum").item())


def test_focal_detector_file_without_column_flags():
    tbl = table(BIN_CSV)
    doc = evaluate(BIN_CSV, "-l", "focal:alpha=0.25,gamma=2", "--logits")
    assert doc["columns"] == {**doc["columns"], "pred": "logit", "target": "label"}
    ref = torchvision_sigmoid_focal(t64(arr(tbl, "logit")), t64(arr(tbl, "label"))).mean().item()
    close(values(doc)["focal(alpha=0.25,gamma=2.0)"], ref)


# -- spaces: --logits / --probs / --log-probs ------------------------------------------------------------------------
def test_probs_and_log_probs_flags(mc_csv):
    y = long(species_index(mc_csv))
    P = arr(mc_csv, "p_setosa", "p_versicolor", "p_virginica")
    LP = arr(mc_csv, "logp_setosa", "logp_versicolor", "logp_virginica")
    doc = evaluate(MC_CSV, "-l", "cross_entropy", "--pred", "p_*", "--target", "species", "--probs")
    close(values(doc)["cross_entropy"], F.nll_loss(torch.log(t64(P)), y).item())
    doc = evaluate(MC_CSV, "-l", "nll", "-l", "cross_entropy", "--pred", "logp_*", "--target", "species",
                   "--log-probs")
    close(values(doc)["nll"], F.nll_loss(t64(LP), y).item())
    close(values(doc)["cross_entropy"], F.cross_entropy(t64(LP), y).item())


def test_focal_on_probabilities(binary):
    doc = evaluate(BIN_PQ, "-l", "focal", "--pred", "prob", "--target", "label", "--probs")
    p, y = t64(arr(binary, "prob")), t64(arr(binary, "label"))
    ref = (0.25 * y + 0.75 * (1 - y)) * F.binary_cross_entropy(p, y, reduction="none") \
        * (1 - (p * y + (1 - p) * (1 - y))) ** 2
    close(values(doc)["focal"], ref.mean().item())


def test_space_flag_refused_by_a_loss_without_that_space():
    msg = run_err(["eval", BIN_PQ, "-l", "bce", "--pred", "logit", "--target", "label", "--logits"], 2)
    assert "bce takes probabilities" in msg


# -- other input shapes -----------------------------------------------------------------------------------------------
def test_fixed_size_list_probabilities_with_weights_and_groups(mc_pq):
    doc = evaluate(MC_PQ, "-l", "log_loss", "--pred", "probs", "--target", "label", "-w", "weight",
                   "--by", "segment")
    P, y, w = arr(mc_pq, "probs"), arr(mc_pq, "label"), arr(mc_pq, "weight")
    seg = np.array(mc_pq.column("segment").to_pylist())
    close(values(doc)["log_loss"], skm.log_loss(y, P, sample_weight=w))
    groups = {r["group"]["segment"] if isinstance(r["group"], dict) else r["group"]: r["value"]
              for r in doc["results"] if r["group"] is not None}
    assert len(groups) == 2
    for g, v in groups.items():
        key = g if isinstance(g, str) else g[0]
        m = seg == key
        close(v, skm.log_loss(y[m], P[m], sample_weight=w[m], labels=[0, 1, 2]))


def test_soft_targets_list_column(mc_pq):
    doc = evaluate(MC_PQ, "-l", "cross_entropy", "-l", "kl_div", "--pred", "logits", "--target", "teacher",
                   "--logits")
    x, T = t64(arr(mc_pq, "logits")), t64(arr(mc_pq, "teacher"))
    v = values(doc)
    close(v["cross_entropy"], F.cross_entropy(x, T).item())
    close(v["kl_div"], F.kl_div(F.log_softmax(x, 1), T, reduction="batchmean").item())


def test_one_hot_target_columns(tmp_path, mc_pq):
    x, y = arr(mc_pq, "logits"), arr(mc_pq, "label").astype(int)
    onehot = np.eye(3)[y]
    path = tmp_path / "onehot.parquet"
    pq.write_table(pa.table({**{f"s{k}": x[:, k] for k in range(3)}, **{f"y{k}": onehot[:, k] for k in range(3)}}),
                   path)
    doc = evaluate(path, "-l", "cross_entropy", "-l", "zero_one", "--pred", "s0,s1,s2", "--target", "y*")
    v = values(doc)
    close(v["cross_entropy"], F.cross_entropy(t64(x), t64(onehot)).item())
    close(v["zero_one"], skm.zero_one_loss(y, np.argmax(x, axis=1)))


def test_multilabel_columns_by_glob(binary):
    doc = evaluate(BIN_PQ, "-l", "multilabel_soft_margin", "-l", "bce_with_logits", "--pred", "tag_logit_*",
                   "--target", "tag_[0-9]")
    x = t64(arr(binary, "tag_logit_0", "tag_logit_1", "tag_logit_2"))
    Y = t64(arr(binary, "tag_0", "tag_1", "tag_2"))
    v = values(doc)
    close(v["multilabel_soft_margin"], F.multilabel_soft_margin_loss(x, Y).item())
    close(v["bce_with_logits"], F.binary_cross_entropy_with_logits(x, Y).item())


def test_binary_string_labels_and_margin_losses(binary):
    doc = evaluate(BIN_PQ, "-l", "hinge", "-l", "bce_with_logits", "--pred", "logit", "--target", "churn")
    assert doc["classes"] == ["no", "yes"]  # sorted: 'yes' is the positive class (sklearn LabelBinarizer)
    names = np.array(binary.column("churn").to_pylist())
    f, y = arr(binary, "logit"), arr(binary, "label")
    assert ((names == "yes") == (y == 1)).all()
    close(values(doc)["hinge"], skm.hinge_loss(names, f))
    close(values(doc)["bce_with_logits"], F.binary_cross_entropy_with_logits(t64(f), t64(y)).item())
    doc = evaluate(BIN_PQ, "-l", "log_loss", "--pred", "prob", "--target", "churn")
    close(values(doc)["log_loss"], skm.log_loss(names, arr(binary, "prob")))
    # --classes NEG,POS: with 'no' positive, prob is read as P(no); sklearn (greater name positive) gets 1 - prob
    doc = evaluate(BIN_PQ, "-l", "log_loss", "--pred", "prob", "--target", "churn", "--classes", "yes,no")
    assert doc["classes"] == ["yes", "no"]
    close(values(doc)["log_loss"], skm.log_loss(names, 1.0 - arr(binary, "prob")))


def test_classes_with_numeric_binary_labels_name_them_or_fail(binary):
    """--classes with 0/1 labels names class 0 and class 1 (reported); a list of another length is an error,
    not silently ignored."""
    doc = evaluate(BIN_PQ, "-l", "bce_with_logits", "--pred", "logit", "--target", "label", "--classes", "neg,pos")
    assert doc["classes"] == ["neg", "pos"]
    plain = evaluate(BIN_PQ, "-l", "bce_with_logits", "--pred", "logit", "--target", "label")
    assert values(doc) == values(plain) and "classes" not in plain
    msg = run_err(["eval", BIN_PQ, "-l", "bce_with_logits", "--pred", "logit", "--target", "label",
                   "--classes", "a,b,c"], 3)
    assert "--classes lists 3 (a, b, c)" in msg


def test_zero_one_on_predicted_labels(mc_csv):
    doc = evaluate(MC_CSV, "-l", "zero_one", "--pred", "pred_species", "--target", "species")
    close(values(doc)["zero_one"], skm.zero_one_loss(mc_csv.column("species").to_pylist(),
                                                     mc_csv.column("pred_species").to_pylist()))


def test_batch_size_does_not_change_string_label_results(mc_csv):
    base = values(evaluate(MC_CSV, "-l", "log_loss", "-l", "cross_entropy", "--pred", "p_*", "--target", "species",
                           "--probs"))
    for b in ("1", "7"):
        got = values(evaluate(MC_CSV, "-l", "log_loss", "-l", "cross_entropy", "--pred", "p_*", "--target",
                              "species", "--probs", "--batch-size", b))
        for k in base:
            close(got[k], base[k], rtol=1e-12)


# -- documented choices -------------------------------------------------------------------------------------------------
def test_all_targets_ignored_gives_nan_like_torch(tmp_path):
    path = tmp_path / "ign.csv"
    path.write_text("a,b,label\n0.5,0.1,-1\n0.2,0.3,-1\n")
    res = invoke(["eval", path, "-l", "cross_entropy:ignore_index=-1", "--pred", "a,b", "--value"])
    assert res.exit_code == 0 and res.stdout.strip() == "nan"
    assert math.isnan(F.cross_entropy(t64([[0.5, 0.1], [0.2, 0.3]]), long([-1, -1]), ignore_index=-1).item())


def test_empty_input_is_an_input_error(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("prob,label\n")
    msg = run_err(["eval", path, "-l", "bce", "-l", "log_loss", "--pred", "prob", "--target", "label"], 3)
    assert msg == f"{path}: no rows to evaluate (empty input)"
    with pytest.raises(ValueError):  # sklearn raises too (torch's mean would be NaN)
        skm.log_loss([], [])


def test_row_sums_warn_by_default_error_or_renormalize_on_request(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text("p0,p1,p2,y\n0.2,0.3,0.5,0\n0.2,0.2,0.2,2\n0.1,0.1,0.8,2\n")
    P = np.array([[0.2, 0.3, 0.5], [0.2, 0.2, 0.2], [0.1, 0.1, 0.8]])
    y = [0, 2, 2]
    res = invoke(["eval", path, "-l", "log_loss", "--pred", "p*", "--target", "y", "--value"])
    assert res.exit_code == 0
    with pytest.warns(UserWarning, match="do not sum to one"):
        ref = skm.log_loss(y, P, labels=[0, 1, 2])
    close(float(res.stdout), ref)
    assert res.stderr.count("\n") == 1 and f"{path}, column 'p0,p1,p2', row 2: probabilities sum to" in res.stderr
    msg = run_err(["eval", path, "-l", "log_loss:row_sums=error", "--pred", "p*", "--target", "y"], 3)
    assert msg.startswith(f"{path}, column 'p0,p1,p2', row 2: probabilities sum to 0.6")
    res = invoke(["eval", path, "-l", "log_loss:row_sums=renormalize", "--pred", "p*", "--target", "y", "--value"])
    assert res.exit_code == 0 and res.stderr == ""
    close(float(res.stdout), skm.log_loss(y, P / P.sum(axis=1, keepdims=True), labels=[0, 1, 2]))


# -- validation errors: exit 3, one line naming file, column and row --------------------------------------------------
def _csv(tmp_path, text, name="bad.csv"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("text, args, expected", [
    ("prob,label\n0.5,1\n0.2,0\n1.2,1\n", ["-l", "bce", "--pred", "prob", "--target", "label"],
     "{f}, column 'prob', row 3: probability 1.2 is outside [0, 1]; for logits use bce_with_logits"),
    ("p0,p1,label\n0.5,0.5,0\n-0.1,1.1,1\n", ["-l", "log_loss", "--pred", "p0,p1", "--target", "label"],
     "{f}, column 'p0,p1', row 2: probability -0.1 is outside [0, 1]"),
    ("a,b,c,label\n1,2,3,0\n1,2,3,1.5\n", ["-l", "cross_entropy", "--pred", "a,b,c", "--target", "label"],
     "{f}, column 'label', row 2: label 1.5 is not an integer class index"),
    ("a,b,c,label\n1,2,3,0\n1,2,3,2\n1,2,3,3\n", ["-l", "cross_entropy", "--pred", "a,b,c", "--target", "label"],
     "{f}, column 'label', row 3: class index 3 is out of range for 3 score columns"),
    ("a,b,c,label\n1,2,3,-1\n", ["-l", "multi_margin", "--pred", "a,b,c", "--target", "label"],
     "{f}, column 'label', row 1: class index -1 is out of range for 3 score columns"),
    ("a,b,c,sp\n1,2,3,x\n1,2,3,daisy\n", ["-l", "cross_entropy", "--pred", "a,b,c", "--target", "sp", "--classes",
                                          "x,y,z"],
     "{f}, column 'sp', row 2: label 'daisy' is not one of --classes (x, y, z)"),
    ("a,b,c,sp\n1,2,3,x\n1,2,3,y\n", ["-l", "cross_entropy", "--pred", "a,b,c", "--target", "sp", "--classes", "x,y"],
     "{f}, column 'a,b,c': the scores have 3 columns but --classes lists 2 (x, y)"),
    ("a,b,c,label\n1,2,3,0\n", ["-l", "cross_entropy", "--pred", "a,b,c", "--class-weights", "1,2"],
     "{f}, column 'a,b,c': class_weights has 2 values but the scores have 3 columns"),
    ("a,b,c,y0,y1\n1,2,3,0,1\n", ["-l", "cross_entropy", "--pred", "a,b,c", "--target", "y0,y1"],
     "{f}, column 'y0,y1': 2 target columns for 3 score columns"),
    ("a,b,c,sp\n1,2,3,x\n1,2,3,y\n1,2,3,z\n1,2,3,w\n", ["-l", "cross_entropy", "--pred", "a,b,c", "--target", "sp"],
     "{f}, column 'sp', row 4: 4 distinct labels (w, x, y, z) but the scores have 3 columns; label 'w' is one too"),
    ("a,b,c,sp\n1,2,3,x\n1,2,3,y\n", ["-l", "cross_entropy", "--pred", "a,b,c", "--target", "sp"],
     "{f}, column 'sp': only 2 distinct label(s) (x, y) in the whole input but the scores have 3 columns"),
    ("a,b,label\n-0.1,-2,0\n0.5,-1,1\n", ["-l", "nll", "--pred", "a,b", "--target", "label"],
     "{f}, column 'a,b', row 2: log-probability 0.5 is positive"),
    ("logit,label\n0.5,1\n0.1,2\n", ["-l", "hinge", "--pred", "logit", "--target", "label"],
     "{f}, column 'label', row 2: label 2 is not a binary label"),
])
def test_validation_errors(tmp_path, text, args, expected):
    f = _csv(tmp_path, text)
    msg = run_err(["eval", f, *args], 3)
    assert msg.startswith(expected.format(f=f)), msg


def test_validation_errors_count_rows_across_batches(tmp_path):
    rows = "".join("0.5,1\n" for _ in range(9)) + "1.5,0\n"
    f = _csv(tmp_path, "prob,label\n" + rows)
    msg = run_err(["eval", f, "-l", "bce", "--pred", "prob", "--target", "label", "--batch-size", "4"], 3)
    assert msg.startswith(f"{f}, column 'prob', row 10: probability 1.5")


# -- explain: every classification loss documents itself and its example runs --------------------------------------
CLASSIFICATION = [s.name for s in registry.all_losses() if s.kind in ("binary", "multiclass", "multilabel")]


def test_issue_losses_are_registered():
    required = {"bce", "bce_with_logits", "log_loss", "zero_one", "hinge", "squared_hinge", "perceptron",
                "exponential", "logistic", "brier", "focal", "cross_entropy", "nll", "kl_div", "js_divergence",
                "multi_margin", "multiclass_hinge", "softmax_focal", "multilabel_soft_margin"}
    assert required <= set(CLASSIFICATION), sorted(required - set(CLASSIFICATION))


@pytest.mark.parametrize("name", CLASSIFICATION)
def test_explain_fields_filled(name):
    d = registry.get(name).describe()
    for key in ("summary", "formula", "latex", "reference", "when", "example", "related", "space"):
        assert d[key], (name, key)
    for p in d["params"]:
        assert p["help"] and p["range"], (name, p)
    assert d["example"].startswith(f"lossctl eval sample_data/") and f"-l {name}" in d["example"]
    for r in d["related"]:
        registry.get(r)


@pytest.mark.parametrize("name", CLASSIFICATION)
def test_explain_example_runs(name, monkeypatch):
    monkeypatch.chdir(ROOT)
    argv = shlex.split(registry.get(name).describe()["example"])
    assert argv[:2] == ["lossctl", "eval"]
    res = invoke([*argv[1:], "--value"])
    assert res.exit_code == 0, (res.stdout, res.stderr)
    assert math.isfinite(float(res.stdout.split()[0]))


def test_module_entry_point_runs_an_issue_command():
    """One real subprocess (the installed CLI path), beside the in-process runs above."""
    out = subprocess.run([sys.executable, "-m", "lossctl", "eval", BIN_PQ, "-l", "bce", "--pred", "prob",
                          "--target", "label", "--value"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    tbl = table(BIN_PQ)
    close(float(out.stdout), F.binary_cross_entropy(t64(arr(tbl, "prob")), t64(arr(tbl, "label"))).item())


# -- weights / batch size / row order invariances of every classification loss --------------------------------------
# (tests/test_invariance.py covers the regression losses; these use lossctl.testing.check_invariances, which feeds
# the loss function prepared inputs too, so margin losses get -1/+1 labels here)
def _cls_inputs(rng, name, n=23):
    c = 3
    logits = rng.normal(0.0, 2.0, size=(n, c))
    logits[0] = [1e4, -1e4, 0.0]
    lp = logits - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1, keepdims=True)) \
        - logits.max(1, keepdims=True)
    probs = np.exp(lp)
    y = rng.integers(0, c, size=n).astype(np.float64)
    y01 = rng.integers(0, 2, size=n).astype(np.float64)
    y01[:2] = [0.0, 1.0]
    x1 = rng.normal(0.0, 2.0, size=n)
    p1 = 1.0 / (1.0 + np.exp(-x1))
    soft = np.exp(rng.normal(size=(n, c)))
    soft /= soft.sum(1, keepdims=True)
    return {
        "bce": (p1, rng.uniform(size=n)), "bce_with_logits": (x1, y01), "log_loss": (probs, y),
        "log_loss/binary": (p1, y01), "brier": (probs, y), "brier/binary": (p1, y01), "focal": (x1, y01),
        "focal/probs": (p1, y01), "hinge": (x1, 2 * y01 - 1), "squared_hinge": (x1, 2 * y01 - 1),
        "perceptron": (x1, 2 * y01 - 1), "exponential": (x1, 2 * y01 - 1), "logistic": (x1, 2 * y01 - 1),
        "zero_one": (probs, y), "cross_entropy": (logits, np.where(np.arange(n) % 5 == 2, -100.0, y)),
        "cross_entropy/soft": (logits, soft),
        "cross_entropy/rows": (logits, np.where(np.arange(n) % 5 == 2, -100.0, y)), "nll": (lp, y), "kl_div": (lp, soft), "js_divergence": (probs, soft),
        "multi_margin": (logits, y), "multiclass_hinge": (logits, y), "softmax_focal": (probs, y),
        "multilabel_soft_margin": (logits, (rng.uniform(size=(n, c)) < 0.4).astype(np.float64)),
    }[name]


INVARIANCE_CASES = [
    ("bce", {}), ("bce_with_logits", {"pos_weight": 3.0}), ("log_loss", {}), ("log_loss/binary", {}),
    ("brier", {}), ("brier/binary", {}), ("focal", {}), ("focal/probs", {"space": "probabilities"}),
    ("hinge", {}), ("squared_hinge", {}), ("perceptron", {}), ("exponential", {}), ("logistic", {}),
    ("zero_one", {}), ("cross_entropy", {"class_weights": (1.0, 2.0, 5.0), "label_smoothing": 0.1}),
    ("cross_entropy/soft", {"class_weights": (1.0, 2.0, 5.0)}),
    ("cross_entropy/rows", {"class_weights": (1.0, 2.0, 5.0), "norm": "rows"}), ("nll", {"class_weights": (2.0, 1.0, 0.5)}),
    ("kl_div", {}), ("js_divergence", {}), ("multi_margin", {"p": 2, "class_weights": (1.0, 2.0, 5.0)}),
    ("multiclass_hinge", {}), ("softmax_focal", {}), ("multilabel_soft_margin", {}),
]


def test_invariance_cases_cover_every_classification_loss():
    assert {c.split("/")[0] for c, _ in INVARIANCE_CASES} == set(CLASSIFICATION)


@pytest.mark.parametrize("case, params", INVARIANCE_CASES, ids=[c for c, _ in INVARIANCE_CASES])
def test_classification_invariances(case, params, tmp_path):
    import lossctl
    from lossctl.testing import check_invariances
    name = case.split("/")[0]
    rng = np.random.default_rng(zlib.crc32(case.encode()))
    pred, target = _cls_inputs(rng, case)
    check_invariances(name, pred, target, params=params, rtol=1e-12)
    # row order (check_invariances covers weights and batch size)
    perm = rng.permutation(len(pred))
    res = []
    for order in (np.arange(len(pred)), perm):
        tbl = {}
        for role, a in (("pred", pred[order]), ("target", target[order])):
            if a.ndim == 1:
                tbl[role] = a
            else:
                tbl.update({f"{role}_{j}": a[:, j] for j in range(a.shape[1])})
        path = tmp_path / f"order{len(res)}.parquet"
        pq.write_table(pa.table(tbl), path)
        cols = {r: ",".join(k for k in tbl if k == r or k.startswith(r + "_")) for r in ("pred", "target")}
        res.append(lossctl.evaluate(str(path), [(name, params)], columns=cols, batch_rows=5).value())
    assert res[0] == pytest.approx(res[1], rel=1e-12)


@pytest.mark.parametrize("batch, expected", [
    ("3", "row 5: label 'w' is not among the classes fixed by the labels before it (x, y, z"),
    ("2", "row 5: 4 distinct labels (w, x, y, z) but the scores have 3 columns; label 'w' is one too many"),
])
def test_extra_label_in_a_later_batch_names_its_row(tmp_path, batch, expected):
    f = _csv(tmp_path, "a,b,c,sp\n1,2,3,x\n1,2,3,y\n1,2,3,z\n1,2,3,x\n1,2,3,w\n1,2,3,y\n")
    msg = run_err(["eval", f, "-l", "cross_entropy", "--pred", "a,b,c", "--target", "sp", "--batch-size", batch], 3)
    assert msg.startswith(f"{f}, column 'sp', {expected}"), msg
