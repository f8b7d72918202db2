"""Losses from installed packages through the ``lossctl.losses`` entry-point group.

A plugin package declares, in its pyproject.toml::

    [project.entry-points."lossctl.losses"]
    my_pkg = "my_pkg:register"

and ``my_pkg.register()`` calls :func:`lossctl.registry.register` for each of its losses, the same call
the built-ins use (the entry point may also name a module that registers at import).  Every loss a
plugin registers is then also reachable as ``PLUGIN:NAME`` (``-l my_pkg:asymmetric_l2``), where PLUGIN is
the entry point's name, and its ``plugin`` field says where it came from (``lossctl list``/``explain``).

Plugins are loaded when lossctl first needs a loss that is not a built-in, or lists the whole registry
(``lossctl list``); a run that names only built-ins never reads the entry points.  A plugin that fails to
load then gives one warning naming it on stderr; it never breaks unrelated commands.  Its losses are
unknown, as if it were not installed.
"""
from __future__ import annotations

import dataclasses
import sys

GROUP = "lossctl.losses"


def load_plugins() -> None:
    from importlib.metadata import entry_points

    from . import registry

    try:
        eps = entry_points(group=GROUP)
    except Exception:  # pragma: no cover - broken metadata
        return
    for ep in sorted(eps, key=lambda e: e.name):
        before = dict(registry._REGISTRY)
        try:
            obj = ep.load()
            if callable(obj):
                obj()
            _namespace(ep.name, before)
        except Exception as exc:  # a broken plugin must not crash the tool
            # forget whatever it registered before failing, so nothing half-registered stays behind
            registry._REGISTRY.clear()
            registry._REGISTRY.update(before)
            registry._ALIASES.clear()
            for spec in registry._REGISTRY.values():
                registry._ALIASES.update({a: spec.name for a in spec.aliases})
            print(f"lossctl: warning: plugin {ep.name!r} ({ep.value}) failed to load: "
                  f"{type(exc).__name__}: {exc}", file=sys.stderr)


def _namespace(plugin: str, before: dict) -> None:
    """Give each loss the plugin just registered the alias ``PLUGIN:NAME`` and its ``plugin`` field."""
    from . import registry

    for name, spec in list(registry._REGISTRY.items()):
        if before.get(name) is spec:
            continue
        alias = f"{plugin}:{spec.name}"
        aliases = spec.aliases if alias in spec.aliases else (*spec.aliases, alias)
        registry.register(dataclasses.replace(spec, aliases=aliases, plugin=spec.plugin or plugin), replace=True)
