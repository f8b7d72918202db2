"""lossctl: compute loss functions on saved model predictions.

Python API::

    import lossctl
    res = lossctl.evaluate("preds.parquet", ["mse", "huber:delta=0.5"])
    res.value("mse")
    lossctl.huber(pred, target, delta=0.5)        # per-sample values

Heavy modules (NumPy, pyarrow) load on first use so that ``lossctl --help`` starts fast.
"""
from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["evaluate", "get_loss", "list_losses", "register", "LossSpec", "Param", "__version__"]


_SUBMODULES = {"api", "cli", "errors", "registry", "render", "state", "losses", "io", "plugins", "penalty",
               "gates", "compare", "check", "plot", "bootstrap", "engine", "remote", "report", "signature",
               "workbench", "sketch", "progress", "fastcsv", "dask_engine",
               "cli_workbench", "cli_ci", "testing"}


def __getattr__(name: str):
    if name in _SUBMODULES or name.startswith("_"):
        import importlib
        try:
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError:
            raise AttributeError(name) from None
    # Lazy public API: `lossctl.evaluate`, `lossctl.get_loss`, and every registered loss's per-sample
    # function by name or alias (`lossctl.mse(pred, target)`, `lossctl.huber(..., delta=0.5)`).
    if name == "evaluate":
        from .api import evaluate
        return evaluate
    if name in ("register", "LossSpec", "Param"):
        from . import registry
        return getattr(registry, name)
    if name == "get_loss":
        from .registry import get
        return get
    if name == "list_losses":
        from .registry import all_losses
        return all_losses
    from . import registry
    from .errors import UnknownLossError
    try:
        return registry.get(name).fn
    except UnknownLossError:
        raise AttributeError(f"module 'lossctl' has no attribute {name!r}") from None
