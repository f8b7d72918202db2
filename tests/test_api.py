"""The Python API: ``lossctl.evaluate``, per-sample loss functions by name, the registry accessors."""
from __future__ import annotations

import math
import os

import numpy as np
import pyarrow.csv as pacsv
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

import lossctl
from lossctl.cli import cli
from lossctl.errors import InputError, UnknownLossError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = os.path.join(ROOT, "sample_data", "regression.csv")


def _sample():
    t = pacsv.read_csv(SAMPLE)
    return {c: t.column(c).to_numpy() for c in ("y_pred", "y_true", "weight")}, t.column("region").to_pylist()


def test_evaluate_matches_torch_on_sample_data():
    cols, _ = _sample()
    res = lossctl.evaluate(SAMPLE, ["mse", "huber:delta=0.5", ("smooth_l1", {"beta": 0.2})])
    p, y = torch.tensor(cols["y_pred"]), torch.tensor(cols["y_true"])
    assert math.isclose(res.value("mse"), F.mse_loss(p, y).item(), rel_tol=1e-12)
    assert math.isclose(res.value("huber"), F.huber_loss(p, y, delta=0.5).item(), rel_tol=1e-12)
    assert math.isclose(res.value("smooth_l1"), F.smooth_l1_loss(p, y, beta=0.2).item(), rel_tol=1e-12)
    assert [i["rows"] for i in res.inputs] == [len(cols["y_pred"])]


def test_evaluate_weights_and_groups():
    cols, region = _sample()
    res = lossctl.evaluate(SAMPLE, "mae", weight="weight", by=["region"])
    l1 = np.abs(cols["y_pred"] - cols["y_true"])
    w = cols["weight"]
    assert math.isclose(res.value("mae"), float(np.sum(w * l1) / np.sum(w)), rel_tol=1e-12)
    groups = {r.group["region"]: r.value for r in res.results if r.group is not None}
    region = np.array(region)
    assert sorted(groups) == sorted(set(region))
    for key, value in groups.items():
        m = region == key
        assert math.isclose(value, float(np.sum(w[m] * l1[m]) / np.sum(w[m])), rel_tol=1e-12), key


def test_evaluate_per_sample_rows_equal_per_sample_function(tmp_path):
    cols, _ = _sample()
    out = tmp_path / "rows.parquet"
    res = lossctl.evaluate(SAMPLE, ["log_cosh"], reduction="none", output=str(out), ids=["id"])
    assert res.rows_total == len(cols["y_pred"])
    import pyarrow.parquet as pq
    got = pq.read_table(out)
    want = lossctl.log_cosh(cols["y_pred"], cols["y_true"])
    np.testing.assert_array_equal(got.column("log_cosh").to_numpy(), want)
    assert got.column("id").to_pylist() == pacsv.read_csv(SAMPLE).column("id").to_pylist()


def test_per_sample_functions_by_name_and_alias():
    p = np.array([0.0, 1.0, 3.0])
    y = np.array([0.5, 1.0, 1.0])
    np.testing.assert_array_equal(lossctl.mse(p, y), (p - y) ** 2)
    np.testing.assert_array_equal(lossctl.l1(p, y), np.abs(p - y))
    h = lossctl.huber(p, y, delta=0.5)
    np.testing.assert_allclose(h, F.huber_loss(torch.tensor(p), torch.tensor(y), delta=0.5,
                                               reduction="none").numpy(), rtol=1e-15)
    with pytest.raises(AttributeError):
        lossctl.no_such_loss_anywhere


def test_registry_accessors():
    spec = lossctl.get_loss("l2")
    assert spec.name == "mse"
    names = {s.name for s in lossctl.list_losses()}
    assert {"mse", "mae", "huber", "bce", "cross_entropy", "dice", "giou", "nt_xent"} <= names
    with pytest.raises(UnknownLossError) as e:
        lossctl.get_loss("hubr")
    assert "huber" in str(e.value)   # did-you-mean hint


def test_evaluate_errors_are_typed_not_exit():
    with pytest.raises(InputError) as e:
        lossctl.evaluate(os.path.join(ROOT, "sample_data", "does_not_exist.csv"), ["mse"])
    assert "does_not_exist.csv" in str(e.value)


def test_api_and_cli_agree_to_the_last_digit():
    res = lossctl.evaluate(SAMPLE, ["rmse", "mape"])
    out = CliRunner().invoke(cli, ["eval", SAMPLE, "-l", "rmse,mape", "--value"])
    assert out.exit_code == 0, out.output
    assert [float(v) for v in out.output.split()] == [res.value("rmse"), res.value("mape")]


def test_quiet_silences_notes_on_stderr(tmp_path):
    out = tmp_path / "o.csv"
    loud = CliRunner().invoke(cli, ["eval", SAMPLE, "-l", "mse", "-r", "none", "-f", "csv", "-o", str(out)])
    assert loud.exit_code == 0
    assert "wrote 200 rows" in loud.stderr
    out.unlink()
    quiet = CliRunner().invoke(cli, ["eval", SAMPLE, "-l", "mse", "-r", "none", "-f", "csv", "-o", str(out),
                                     "--quiet"])
    assert quiet.exit_code == 0
    assert quiet.stderr == ""
    assert quiet.stdout == loud.stdout
