"""Checks every loss should pass, for lossctl's own tests and for plugin authors.

    from lossctl.testing import check_invariances, check_grad

    def test_my_loss():
        with isolated_registry():
            my_pkg.register()
            check_invariances("my_pkg:asymmetric_l2", pred, target)
            check_grad("my_pkg:asymmetric_l2", pred, target, reference=torch_version_of_it)

:func:`check_invariances` runs the loss through the real pipeline (:func:`lossctl.api.evaluate` on a
Parquet file) and checks what scikit-learn's ``check_sample_weight_invariance`` checks, plus what
streaming needs: no weights == all-ones weights, integer weights == repeated rows (so zero weight ==
dropped row), scaling the weights changes nothing, the batch size changes nothing, and ``-r none`` gives
the loss function's own per-sample values.  :func:`check_grad` compares the registered analytic
gradient with ``torch.autograd`` of a reference implementation, or with central finite differences.
"""
from __future__ import annotations

import contextlib
import math
import os
import tempfile
from typing import Any, Callable, Iterator, Mapping

import numpy as np


@contextlib.contextmanager
def isolated_registry() -> Iterator[None]:
    """Run a block with a copy of the registry; whatever it registers is forgotten afterwards."""
    from . import registry

    registry._ensure_loaded()
    saved = (dict(registry._REGISTRY), dict(registry._ALIASES), registry._loaded)
    try:
        yield
    finally:
        registry._REGISTRY.clear()
        registry._REGISTRY.update(saved[0])
        registry._ALIASES.clear()
        registry._ALIASES.update(saved[1])
        registry._loaded = saved[2]


def _inputs(name: str, pred, target, inputs: Mapping[str, Any] | None) -> tuple[Any, dict[str, np.ndarray]]:
    from . import registry

    spec = registry.get(name)
    arrays = {"pred": pred, "target": target, **dict(inputs or {})}
    missing = [r for r in spec.roles if arrays.get(r) is None]
    if missing:
        raise ValueError(f"{name} needs inputs for roles {missing}")
    return spec, {r: np.asarray(arrays[r]) for r in spec.roles}


def _write_table(path: str, arrays: Mapping[str, np.ndarray], weight: np.ndarray | None) -> dict[str, str]:
    """Write roles as columns (2-D roles as ROLE_0, ROLE_1, ...); returns the --col bindings."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols, names, binding = [], [], {}
    for role, a in arrays.items():
        if a.ndim == 1:
            cols.append(pa.array(a))
            names.append(f"c_{role}")
            binding[role] = f"c_{role}"
        else:
            sub = [f"c_{role}_{j}" for j in range(a.shape[1])]
            cols += [pa.array(a[:, j]) for j in range(a.shape[1])]
            names += sub
            binding[role] = ",".join(sub)
    if weight is not None:
        cols.append(pa.array(np.asarray(weight, dtype=np.float64)))
        names.append("w")
    pq.write_table(pa.table(cols, names=names), path)
    return binding


def _close(a: float, b: float, rtol: float, what: str) -> None:
    if not (math.isclose(a, b, rel_tol=rtol, abs_tol=rtol * 1e-3) or (math.isnan(a) and math.isnan(b))):
        raise AssertionError(f"{what}: {a!r} != {b!r} (rtol {rtol})")


def check_invariances(name: str, pred, target, *, params: Mapping[str, Any] | None = None,
                      inputs: Mapping[str, Any] | None = None, rtol: float = 1e-12, seed: int = 0) -> None:
    """Assert the weight, batching and per-sample invariances of loss ``name`` on these inputs.

    ``pred``/``target`` are arrays of one row per sample ((n,) or (n, k)); ``inputs`` gives any other
    role the loss reads (``{"var": ...}``); ``params`` its parameters.  Raises AssertionError naming the
    invariance that failed.
    """
    from . import api

    spec, arrays = _inputs(name, pred, target, inputs)
    n = len(arrays[spec.roles[0]])
    if n < 4:
        raise ValueError("give at least 4 samples")
    params = dict(params or {})
    loss = [(name, params)]
    req = api.make_requests(loss)[0]
    rng = np.random.default_rng(seed)

    values = np.asarray(spec.fn(*[arrays[r] for r in spec.roles], **req.params), dtype=np.float64)
    assert values.shape == (n,), f"{name}: per-sample values have shape {values.shape}, expected ({n},)"
    assert np.isfinite(values).all(), f"{name}: non-finite per-sample values on finite inputs"
    if spec.nonnegative:
        assert (values >= 0).all(), f"{name}: negative per-sample value {values.min()!r} (nonnegative=True)"

    with tempfile.TemporaryDirectory() as tmp:
        def run(arrs, weight=None, **kw):
            path = os.path.join(tmp, f"t{len(os.listdir(tmp))}.parquet")
            cols = _write_table(path, arrs, weight)
            return api.evaluate(path, loss, columns=cols, weight="w" if weight is not None else None, **kw)

        base = run(arrays).value()
        _close(run(arrays, np.ones(n)).value(), base, rtol, f"{name}: all-ones weights vs no weights")
        for b in (1, 3, max(1, n // 2)):
            _close(run(arrays, batch_rows=b).value(), base, rtol, f"{name}: batch size {b} vs one batch")
        per_sample = run(arrays, reduction="none", limit=0)
        got = np.array([row[req.label] for row in per_sample.rows], dtype=np.float64)
        np.testing.assert_allclose(got, values, rtol=rtol, atol=0,
                                   err_msg=f"{name}: -r none differs from the loss function")
        w = rng.integers(0, 4, size=n).astype(np.float64)
        w[0], w[1] = 0.0, 2.0                                  # at least one dropped, one repeated row
        weighted = run(arrays, w).value()
        _close(run(arrays, w * 3.5).value(), weighted, rtol, f"{name}: weights scaled by 3.5")
        if spec.block_rows is None:
            rep = np.repeat(np.arange(n), w.astype(int))
            _close(run({r: a[rep] for r, a in arrays.items()}).value(), weighted, rtol,
                   f"{name}: integer weights vs repeated rows (zero weight vs dropped row)")
        if spec.has_sum:
            _close(run(arrays, reduction="sum").value(), float(np.sum(values)), max(rtol, 1e-12),
                   f"{name}: -r sum vs the sum of per-sample values")


def torch_grad(reference: Callable, arrays: Mapping[str, np.ndarray], wrt: str = "pred") -> np.ndarray:
    """d sum(reference(**tensors)) / d tensors[wrt] by torch.autograd, in float64.

    ``reference`` takes the roles as keyword tensors and returns per-sample losses; since each sample's
    loss depends only on its own row, the gradient of the sum is the per-sample gradient.
    """
    import torch

    ts = {r: torch.tensor(np.asarray(a, dtype=np.float64) if np.asarray(a).dtype.kind == "f" else a,
                          requires_grad=(r == wrt)) for r, a in arrays.items()}
    out = reference(**ts)
    out.sum().backward()
    return ts[wrt].grad.detach().numpy()


def check_grad(name: str, pred, target, *, params: Mapping[str, Any] | None = None,
               inputs: Mapping[str, Any] | None = None, reference: Callable | None = None,
               rtol: float = 1e-8, atol: float = 1e-12) -> None:
    """Assert that the registered gradient of ``name`` w.r.t. its first input matches ``reference``.

    ``reference(**tensors)`` is a torch implementation of the per-sample loss (roles as keyword
    arguments); without one, central finite differences are used (and ``rtol`` is loosened to 1e-5).
    """
    from . import api

    spec, arrays = _inputs(name, pred, target, inputs)
    if spec.grad is None:
        raise AssertionError(f"{name} has no registered gradient")
    req = api.make_requests([(name, dict(params or {}))])[0]
    wrt = spec.roles[0]
    args = [arrays[r] for r in spec.roles]
    got = np.asarray(spec.grad(*args, **req.params), dtype=np.float64)
    x = np.asarray(arrays[wrt], dtype=np.float64)
    assert got.shape == x.shape, f"{name}: gradient shape {got.shape}, input shape {x.shape}"
    if reference is not None:
        want = torch_grad(reference, arrays, wrt)
    else:
        rtol = max(rtol, 1e-5)
        want = np.zeros_like(x)
        for idx in np.ndindex(*x.shape[1:]) if x.ndim > 1 else [()]:
            h = 1e-6 * np.maximum(1.0, np.abs(x[(slice(None), *idx)]))
            up, down = x.copy(), x.copy()
            up[(slice(None), *idx)] += h
            down[(slice(None), *idx)] -= h
            f = lambda v: np.asarray(spec.fn(*[v if r == wrt else arrays[r] for r in spec.roles],  # noqa: E731
                                             **req.params), dtype=np.float64)
            want[(slice(None), *idx)] = (f(up) - f(down)) / (2 * h)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=f"{name}: analytic gradient")
