"""The example plugin's own tests: lossctl's invariance and gradient checks, applied to its loss."""
import os
import sys

import numpy as np
import pytest
import torch

# importable without installing the example package (an installed plugin would not need this)
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import my_pkg  # noqa: E402
from lossctl.testing import check_grad, check_invariances, isolated_registry


@pytest.fixture
def registered():
    with isolated_registry():
        my_pkg.register()
        yield


def _data(n=40, seed=3):
    rng = np.random.default_rng(seed)
    return rng.normal(size=n), rng.normal(size=n)


@pytest.mark.parametrize("alpha", [0.5, 0.1, 0.9])
def test_invariances(registered, alpha):
    pred, target = _data()
    check_invariances("asymmetric_l2", pred, target, params={"alpha": alpha})


@pytest.mark.parametrize("alpha", [0.5, 0.25])
def test_grad_matches_torch(registered, alpha):
    pred, target = _data()

    def reference(pred, target):
        d = pred - target
        return torch.where(d > 0, 1.0 - alpha, alpha) * d * d

    check_grad("asymmetric_l2", pred, target, params={"alpha": alpha}, reference=reference)


def test_half_mse_at_alpha_half(registered):
    pred, target = _data()
    np.testing.assert_allclose(my_pkg.asymmetric_l2(pred, target), 0.5 * (pred - target) ** 2, rtol=1e-15)
