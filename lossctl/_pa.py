"""pyarrow, imported on first use.

``from .._pa import pa`` gives a stand-in for the ``pyarrow`` module that imports pyarrow the first time an
attribute is read (``pa.RecordBatch``, ``pa.types``, ...) and from then on holds pyarrow's names itself, so
later lookups cost what a module's do.  Importing pyarrow costs ~35 ms of a run's start-up; the small-CSV
path (``lossctl eval small.csv -l mse``) parses its file without it and never pays that.

``on_import(fn)`` runs ``fn(pyarrow)`` once pyarrow is loaded through :func:`load` (at once if it already
is): the CLI sets pyarrow's memory pool that way.
"""
from __future__ import annotations

import sys
import threading
import types
from typing import Callable

_hooks: list[Callable] = []
_loaded = False
_lock = threading.Lock()  # (the reader thread may be the first to load pyarrow)


class _LazyPyarrow(types.ModuleType):
    def __getattr__(self, name: str):
        if name.startswith("__") and name.endswith("__"):  # copy, pickle, help() probing: not a reason to load
            raise AttributeError(name)
        return getattr(load(), name)


pa = _LazyPyarrow("pyarrow")


def _import_pyarrow():
    """``import pyarrow``, without the ``import cloudpickle`` of pyarrow.lib.

    When cloudpickle is installed (Dask brings it), pyarrow.lib imports it as ``pickle`` and a few lines later
    rebinds that name to the standard ``pickle``: 5-8 ms of start-up for a module nothing then uses.  The
    import is refused while pyarrow loads, and allowed again at once (Dask imports it later as usual).
    """
    blocked = "cloudpickle" not in sys.modules
    if blocked:
        sys.modules["cloudpickle"] = None  # type: ignore[assignment]  (None: "import cloudpickle" fails)
    try:
        import pyarrow
    finally:
        if blocked and "cloudpickle" in sys.modules and sys.modules["cloudpickle"] is None:
            del sys.modules["cloudpickle"]
    return pyarrow


def load():
    """Import pyarrow (once), run the hooks, and return it."""
    global _loaded
    if "pyarrow" in sys.modules:
        import pyarrow  # (waits for an import under way in another thread)
    else:
        pyarrow = _import_pyarrow()
    if not _loaded:
        with _lock:
            if not _loaded:
                pa.__dict__.update({k: v for k, v in vars(pyarrow).items() if not k.startswith("__")})
                while _hooks:
                    _hooks.pop(0)(pyarrow)
                _loaded = True
    return pyarrow


def on_import(fn: Callable) -> None:
    """Run ``fn(pyarrow)`` when pyarrow is loaded through :func:`load` (now, if it already was)."""
    with _lock:
        if not _loaded and "pyarrow" not in sys.modules:
            _hooks.append(fn)
            return
    fn(load())
