"""Losses from installed packages through the ``lossctl.losses`` entry-point group.

Each entry point names a callable (or module) that registers its losses through
:func:`lossctl.registry.register`. A plugin that fails to load gives one warning naming it; it never
breaks unrelated commands.
"""
from __future__ import annotations

import sys

GROUP = "lossctl.losses"


def load_plugins() -> None:
    from importlib.metadata import entry_points

    try:
        eps = entry_points(group=GROUP)
    except Exception:  # pragma: no cover - broken metadata
        return
    for ep in eps:
        try:
            obj = ep.load()
            if callable(obj):
                obj()
        except Exception as exc:  # a broken plugin must not crash the tool
            print(f"lossctl: warning: plugin {ep.name!r} ({ep.value}) failed to load: "
                  f"{type(exc).__name__}: {exc}", file=sys.stderr)
