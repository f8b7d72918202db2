"""The loss registry: one entry per loss, the single source for `list`, `explain`, the CLI and the tests.

Built-in losses register through :func:`register`, the same call a plugin uses.  An entry carries the
per-sample function, its parameters (type, default, range), the input roles it reads, the space its
predictions live in, how it reduces, its formula and the reference implementation it reproduces.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from .errors import UnknownLossError, UsageError

KINDS = ("regression", "binary", "multiclass", "multilabel", "mask", "box", "embedding")
SPACES = ("values", "probabilities", "logits", "log-probabilities", "scores", "boxes", "vectors")


@dataclass(frozen=True)
class Param:
    """A hyperparameter of a loss: ``-l huber:delta=0.5`` on the command line.

    ``low``/``high`` bound numeric values; ``low_open``/``high_open`` make a bound exclusive;
    ``choices`` restricts strings (and numbers); ``type`` is float, int, bool, str or ``list`` (of floats).
    """

    name: str
    type: type
    default: Any
    help: str = ""
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple | None = None
    range_note: str | None = None   # the range as shown, where check_params narrows low/high further

    def range_text(self) -> str:
        if self.range_note is not None:
            return self.range_note
        if self.choices is not None:
            return "one of " + "|".join(str(c) for c in self.choices)
        if self.type is bool:
            return "true|false"
        if self.low is None and self.high is None:
            return "any"
        lo = "-inf" if self.low is None else _num(self.low)
        hi = "inf" if self.high is None else _num(self.high)
        left = "(" if (self.low_open or self.low is None) else "["
        right = ")" if (self.high_open or self.high is None) else "]"
        return f"{left}{lo}, {hi}{right}"

    def parse(self, text: Any, loss: str = "") -> Any:
        """Convert a command-line string (or a Python value) and check its range; UsageError if bad."""
        what = f"parameter {self.name!r} of {loss}" if loss else f"parameter {self.name!r}"
        try:
            if self.type is bool:
                if isinstance(text, bool):
                    value = text
                else:
                    t = str(text).strip().lower()
                    if t in ("1", "true", "yes", "on"):
                        value = True
                    elif t in ("0", "false", "no", "off"):
                        value = False
                    else:
                        raise ValueError
            elif self.type is list:
                if isinstance(text, str):
                    value = tuple(float(x) for x in text.replace(";", ",").replace("/", ",").split(",") if x.strip())
                else:
                    value = tuple(float(x) for x in text)
            elif self.type is int:
                f = float(text)
                if not f.is_integer():
                    raise ValueError
                value = int(f)
            elif self.type is float:
                value = float(text)
                if math.isnan(value):
                    raise ValueError
            else:
                value = str(text)
        except (TypeError, ValueError):
            raise UsageError(
                f"{what} must be {self.type.__name__ if self.type is not list else 'a list of numbers'}"
                f" ({self.range_text()}), got {text!r}"
            ) from None
        if self.choices is not None and value not in self.choices:
            raise UsageError(f"{what} must be {self.range_text()}, got {text!r}")
        if self.type in (int, float):
            bad = (
                (self.low is not None and (value < self.low or (self.low_open and value == self.low)))
                or (self.high is not None and (value > self.high or (self.high_open and value == self.high)))
            )
            if bad:
                raise UsageError(f"{what} must be in {self.range_text()}, got {text!r}")
        return value

    def as_dict(self) -> dict:
        d = {"name": self.name, "type": "list" if self.type is list else self.type.__name__,
             "default": list(self.default) if isinstance(self.default, tuple) else self.default,
             "range": self.range_text(), "help": self.help}
        return d


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


@dataclass(frozen=True)
class LossSpec:
    """A registered loss.

    ``fn(*inputs, **params)`` returns one float64 value per sample, where ``inputs`` are the arrays of
    ``roles`` in order (``("pred", "target")`` for most losses).  Reduction:

    * ``mean`` (default) is ``sum(w * terms["loss"]) / sum(w * terms["norm"])`` unless ``finalize`` says
      otherwise; ``terms`` defaults to ``{"loss": fn(...), "norm": 1}``.  Every term is a per-row array whose
      weighted sum merges by adding, so a result is independent of batching, order and workers.
    * ``sum`` is ``sum(w * fn(...))``; losses with ``post`` (rmse) have no sum reduction.
    * ``none`` is ``fn(...)`` per row.

    ``extra`` holds optional hooks: ``prepare(arrays, params, ctx)`` validates and reshapes the inputs of a
    batch; ``residual(d, **params)`` (with ``residual_terms(d, **params)`` for a loss with ``terms``) is the
    loss as a function of d = pred - target alone, equal to ``fn`` bit for bit and never writing into d:
    when a run has several such losses the engine computes d once per batch and shares it.
    """

    name: str
    fn: Callable[..., Any]
    kind: str
    summary: str
    formula: str
    reference: str
    aliases: tuple[str, ...] = ()
    params: tuple[Param, ...] = ()
    roles: tuple[str, ...] = ("pred", "target")
    space: str = "values"
    latex: str = ""
    when: str = ""
    example: str = ""
    related: tuple[str, ...] = ()
    nonnegative: bool = True
    # reduction hooks (see class docstring)
    terms: Callable[..., Mapping[str, Any]] | None = None
    finalize: Callable[[Mapping[str, float], Mapping[str, Any]], float] | None = None
    post: Callable[[float], float] | None = None
    post_name: str = ""
    reduction_note: str = ""
    # rows that must be evaluated together (NT-Xent blocks): params -> multiple of rows per batch, or None
    block_rows: Callable[[Mapping[str, Any]], int] | None = None
    # analytic gradient d loss / d pred (issue: workbench); same signature as fn
    grad: Callable[..., Any] | None = None
    plugin: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown kind {self.kind!r} for loss {self.name!r}")

    @property
    def has_sum(self) -> bool:
        return self.post is None and self.finalize is None or bool(self.extra.get("has_sum"))

    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.params}

    def resolve_params(self, given: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Defaults overlaid with ``given`` (strings or values), each checked; UsageError if unknown."""
        out = self.defaults()
        by_name = {p.name: p for p in self.params}
        for key, raw in (given or {}).items():
            if key not in by_name:
                allowed = ", ".join(f"{p.name} {p.range_text()}" for p in self.params) or "none"
                raise UsageError(f"unknown parameter {key!r} for loss {self.name}; allowed: {allowed}")
            out[key] = by_name[key].parse(raw, self.name)
        check = self.extra.get("check_params")
        if check is not None:
            check(out)
        return out

    def describe(self) -> dict:
        """What `lossctl list --json` and `explain --json` print."""
        return {
            "name": self.name, "aliases": list(self.aliases), "kind": self.kind, "space": self.space,
            "inputs": list(self.roles), "summary": self.summary, "formula": self.formula,
            "latex": self.latex, "reference": self.reference,
            "params": [p.as_dict() for p in self.params], "when": self.when, "example": self.example,
            "related": list(self.related),
            "reductions": ["mean", "sum", "none"] if self.has_sum else ["mean", "none"],
            "reduction_note": self.reduction_note, "plugin": self.plugin or None,
            "gradient": self.grad is not None,   # --grad can add d loss / d prediction for it
        }


_REGISTRY: dict[str, LossSpec] = {}
_ALIASES: dict[str, str] = {}
_loaded = False
_plugins_loaded = False


def register(spec: LossSpec, *, replace: bool = False) -> LossSpec:
    """Add a loss to the registry (built-ins and plugins alike). Names and aliases must be unique."""
    names = (spec.name, *spec.aliases)
    if not replace:
        for n in names:
            if n in _REGISTRY or n in _ALIASES:
                raise ValueError(f"loss name {n!r} is already registered")
    _REGISTRY[spec.name] = spec
    for a in spec.aliases:
        _ALIASES[a] = spec.name
    return spec


def _ensure_loaded(plugins: bool = True) -> None:
    """Register the built-ins, and (``plugins``) the losses of installed plugins.  Plugins are loaded only
    when a name is not a built-in or the whole registry is listed: reading the installed packages'
    metadata costs 10-30 ms, which a one-line ``lossctl eval -l mse`` should not pay."""
    global _loaded, _plugins_loaded
    if not _loaded:
        _loaded = True
        from . import losses  # noqa: F401  (registers the built-ins)
    if plugins and not _plugins_loaded:
        _plugins_loaded = True
        from .plugins import load_plugins
        load_plugins()


def _lookup(name: str) -> LossSpec | None:
    key = name.strip()
    for candidate in (key, key.lower(), key.lower().replace("-", "_")):
        if candidate in _REGISTRY:
            return _REGISTRY[candidate]
        if candidate in _ALIASES:
            return _REGISTRY[_ALIASES[candidate]]
    return None


def get(name: str) -> LossSpec:
    """Look a loss up by name or alias (case-insensitive, '-' and '_' alike)."""
    _ensure_loaded(plugins=False)
    spec = _lookup(name)
    if spec is None:
        _ensure_loaded()
        spec = _lookup(name)
    if spec is not None:
        return spec
    key = name.strip()
    import difflib
    known = sorted([*_REGISTRY, *_ALIASES])
    close = difflib.get_close_matches(key.lower(), known, n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else "; `lossctl list` shows them all"
    raise UnknownLossError(f"unknown loss {name!r}{hint}")


def all_losses() -> list[LossSpec]:
    _ensure_loaded()
    return sorted(_REGISTRY.values(), key=lambda s: (KINDS.index(s.kind), s.name))
