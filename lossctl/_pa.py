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


def load():
    """Import pyarrow (once), run the hooks, and return it."""
    global _loaded
    import pyarrow
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
