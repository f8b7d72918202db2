"""Quality gates: ``--fail-if`` threshold expressions and their evaluation against a result.

Grammar (a small hand-written scanner; nothing is ever passed to ``eval``)::

    gate    := loss [group] op number
    loss    := NAME [":" PARAM "=" VALUE ("," PARAM "=" VALUE)*]      -- as in -l: huber:delta=0.5
             (NAME may be a plugin's PLUGIN:LOSS)
    group   := "(" "all" ")"                                          -- the overall row only
             | "(" item ("," item)* ")"
    item    := [COLUMN "="] VALUE          -- VALUE bare (no , ) = space) or quoted '...' / "..."
    op      := "<" | "<=" | ">" | ">="
    number  := [+-] digits [. digits] [e [+-] digits]  | [+-] inf

A gate *fails* when ``value OP number`` holds (``--fail-if 'mse > 0.25'`` fails when mse exceeds 0.25).
Without a group, a gate checks the overall row and, with ``--by``, every group; ``(north)`` or
``(region=north)`` checks the matching group(s) only; ``(all)`` the overall row only.  A value that is
NaN (an empty group) fails its gate: a gate must be shown to hold.

Syntax errors, unknown losses and groups that do not exist are usage errors (exit 2); a failed gate is
exit 1 (:class:`lossctl.errors.GateFailed`), raised by the caller after everything is printed.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from .errors import GateFailed, UsageError

OPS = ("<=", ">=", "<", ">")
_NAME_START = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")
_NAME_CHARS = _NAME_START | set("0123456789-.")
_PLUGIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class Gate:
    """A parsed ``--fail-if`` expression."""

    expr: str
    loss: str                                  # name or alias as written
    params: tuple[tuple[str, str], ...] = ()    # as written: (("delta", "0.5"),)
    group: tuple[tuple[str | None, str], ...] | None = None   # ((column or None, value), ...); None = every row
    overall_only: bool = False
    op: str = ">"
    threshold: float = 0.0

    @property
    def loss_ref(self) -> str:
        return self.loss + (":" + ",".join(f"{k}={v}" for k, v in self.params) if self.params else "")


@dataclass
class GateResult:
    """One check of one gate against one result row (a gate with --by gives one per group)."""

    expr: str
    loss: str
    group: dict | None
    value: float | None
    threshold: float
    op: str
    passed: bool
    kind: str = "fail_if"
    detail: dict = field(default_factory=dict)
    several: bool = True       # the gate checks several rows (so its name needs the group)

    @property
    def name(self) -> str:
        """A short unique name: the expression, with the group when the gate covers several rows."""
        g = _group_text(self.group)
        return f"{self.expr} [{g}]" if g and self.several else self.expr

    def describe(self) -> str:
        """'mse (region=north) = 0.36 > 0.25' -- the relation that holds, so a failure reads as its reason."""
        where = f" ({_group_text(self.group)})" if self.group else ""
        what = self.detail.get("quantity", self.loss)
        if self.value is None or not math.isfinite(self.value):
            return f"{what}{where} = nan (no value to check, so the gate fails)"
        op = _negate(self.op) if self.passed else self.op
        return f"{what}{where} = {self.show(self.value)} {op} {self.show(self.threshold)}"

    def show(self, v: float | None) -> str:
        """A value or threshold as text: a percentage for relative (--max-regression N%) gates."""
        if v is None or not math.isfinite(v):
            return "nan" if v is None or math.isnan(v) else ("inf" if v > 0 else "-inf")
        return f"{v * 100:.4g}%" if self.detail.get("relative") else f"{v:.6g}"

    def as_dict(self) -> dict:
        d = {"expr": self.expr, "kind": self.kind, "loss": self.loss, "group": self.group,
             "value": _json_float(self.value), "threshold": _json_float(self.threshold), "op": self.op,
             "passed": self.passed}
        d.update(self.detail)
        return d


def _negate(op: str) -> str:
    return {"<": ">=", "<=": ">", ">": "<=", ">=": "<"}[op]


def _num(x: float) -> str:
    return f"{x:.6g}"


def _json_float(v):
    return None if v is None or not math.isfinite(v) else float(v)


def _group_text(group: dict | None) -> str:
    if not group:
        return ""
    return ", ".join(f"{k}={v}" for k, v in group.items())


# -- parsing ---------------------------------------------------------------------------------------
class _Scanner:
    def __init__(self, text: str, option: str):
        self.s = text
        self.i = 0
        self.option = option

    def error(self, msg: str, at: int | None = None) -> UsageError:
        pos = self.i if at is None else at
        return UsageError(f"{self.option} {self.s!r}, column {pos + 1}: {msg}; a gate is LOSS [(GROUP)] OP NUMBER "
                          f"with OP one of < <= > >=, e.g. 'mse > 0.25' or 'mae (region=north) >= 0.4'")

    def ws(self) -> None:
        while self.i < len(self.s) and self.s[self.i].isspace():
            self.i += 1

    def peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def name(self) -> str:
        start = self.i
        if self.peek() not in _NAME_START:
            raise self.error("expected a loss name" if self.peek() else "expected a loss name, got nothing")
        while self.peek() and self.peek() in _NAME_CHARS:
            self.i += 1
        return self.s[start:self.i]

    def params(self) -> list[tuple[str, str]]:
        """After ':' -- PARAM=VALUE pairs separated by ',' (values end at whitespace, '(' or an operator)."""
        out = []
        while True:
            start = self.i
            while self.peek() and (self.peek().isalnum() or self.peek() == "_"):
                self.i += 1
            key = self.s[start:self.i]
            if not key or self.peek() != "=":
                raise self.error("expected PARAM=VALUE after ':'", at=start)
            self.i += 1
            vstart = self.i
            while self.peek() and not self.peek().isspace() and self.peek() not in "(),<>=":
                self.i += 1
            val = self.s[vstart:self.i]
            if not val:
                raise self.error(f"parameter {key!r} has no value", at=vstart)
            out.append((key, val))
            if self.peek() != ",":
                return out
            self.i += 1

    def value(self) -> tuple[str, bool]:
        """A group value: quoted ('...' or "...") or bare up to , ) = ; returns (text, quoted)."""
        q = self.peek()
        if q in ("'", '"'):
            end = self.s.find(q, self.i + 1)
            if end < 0:
                raise self.error(f"unclosed quote {q}")
            v = self.s[self.i + 1:end]
            self.i = end + 1
            return v, True
        start = self.i
        while self.peek() and self.peek() not in ",)=":
            self.i += 1
        v = self.s[start:self.i].strip()
        if not v:
            raise self.error("empty group value", at=start)
        return v, False

    def group(self) -> tuple[list[tuple[str | None, str]], bool]:
        """After '(' -- items up to ')'; also whether it is the bare word all (the overall row)."""
        items: list[tuple[str | None, str]] = []
        quoted_first = False
        while True:
            self.ws()
            first, quoted = self.value()
            quoted_first = quoted_first or (quoted and not items)
            self.ws()
            if self.peek() == "=":
                self.i += 1
                self.ws()
                items.append((first, self.value()[0]))
            else:
                items.append((None, first))
            self.ws()
            c = self.peek()
            if c == ",":
                self.i += 1
                continue
            if c == ")":
                self.i += 1
                break
            raise self.error("expected ',' or ')' in the group" if c else "missing ')' after the group")
        overall = items == [(None, "all")] and not quoted_first
        return items, overall

    def op(self) -> str:
        for op in OPS:
            if self.s.startswith(op, self.i):
                self.i += len(op)
                return op
        c = self.s[self.i:self.i + 2]
        if c.startswith(("==", "!=", "=")):
            raise self.error(f"unsupported operator {c.rstrip() if c != '==' else '=='!r}: gates compare with "
                             f"< <= > >= only")
        raise self.error("expected an operator (< <= > >=)" + (f", got {self.peek()!r}" if self.peek() else ""))

    def number(self) -> float:
        start = self.i
        rest = self.s[self.i:].strip()
        if not rest:
            raise self.error("expected a number after the operator")
        txt = rest
        if txt.endswith("%"):
            raise self.error("thresholds are absolute numbers (no %); write 0.02, not 2%")
        j = 0
        if j < len(txt) and txt[j] in "+-":
            j += 1
        if txt[j:].lower() in ("inf", "infinity"):
            self.i = len(self.s)
            return float(txt)
        digits = 0
        while j < len(txt) and txt[j].isdigit():
            j += 1
            digits += 1
        if j < len(txt) and txt[j] == ".":
            j += 1
            while j < len(txt) and txt[j].isdigit():
                j += 1
                digits += 1
        if digits == 0:
            raise self.error(f"expected a number, got {txt!r}", at=start)
        if j < len(txt) and txt[j] in "eE":
            k = j + 1
            if k < len(txt) and txt[k] in "+-":
                k += 1
            if k < len(txt) and txt[k].isdigit():
                while k < len(txt) and txt[k].isdigit():
                    k += 1
                j = k
            else:
                raise self.error(f"bad exponent in {txt!r}", at=start)
        if j != len(txt):
            lead = len(self.s[self.i:]) - len(self.s[self.i:].lstrip())
            raise self.error(f"unexpected {txt[j:]!r} after the number", at=self.i + lead + j)
        self.i = len(self.s)
        return float(txt[:j])


def parse(text: str, option: str = "--fail-if") -> Gate:
    """Parse one gate expression; UsageError (exit 2) that points at the offending column.

    >>> parse("mse > 0.25")
    Gate(expr='mse > 0.25', loss='mse', params=(), group=None, overall_only=False, op='>', threshold=0.25)
    >>> parse("huber:delta=0.5 (region=north) <= 1e-3").group
    (('region', 'north'),)
    """
    if not isinstance(text, str):
        raise UsageError(f"{option} {text!r}: a gate is a string like 'mse > 0.25'")
    sc = _Scanner(text, option)
    sc.ws()
    loss = sc.name()
    # a plugin's loss is PLUGIN:NAME (a ':' followed by a name and no '='), as in -l
    while sc.peek() == ":":
        m = _PLUGIN_NAME.match(sc.s, sc.i + 1)
        if not m or sc.s[m.end():m.end() + 1] == "=":
            break
        sc.i = m.end()
        loss = loss + ":" + m.group(0)
    params: list[tuple[str, str]] = []
    if sc.peek() == ":":
        sc.i += 1
        params = sc.params()
    sc.ws()
    group = None
    overall = False
    if sc.peek() == "(":
        sc.i += 1
        items, overall = sc.group()
        group = None if overall else tuple(items)
        sc.ws()
    op = sc.op()
    sc.ws()
    thr = sc.number()
    if math.isnan(thr):
        raise sc.error("the threshold is not a number")
    return Gate(expr=text.strip(), loss=loss, params=tuple(params), group=group, overall_only=overall, op=op,
                threshold=thr)


def parse_all(texts: Iterable[str], option: str = "--fail-if") -> list[Gate]:
    return [parse(t, option) for t in texts]


# -- resolution and evaluation ------------------------------------------------------------------------
def _matching_labels(gate: Gate, rows: Sequence[Any], option: str) -> list[str]:
    """Labels of the evaluated losses this gate refers to (exactly one, or a UsageError)."""
    from . import registry
    labels = list(dict.fromkeys(r.label for r in rows))
    if gate.loss_ref in labels:
        return [gate.loss_ref]
    spec = registry.get(gate.loss)   # UnknownLossError is a UsageError (exit 2)
    given = dict(gate.params)
    resolved = spec.resolve_params(given) if given else {}
    found = []
    for r in rows:
        if r.loss != spec.name or r.label in found:
            continue
        if all(_same(r.params.get(k), resolved[k]) for k in given):
            found.append(r.label)
    if not found:
        have = ", ".join(labels) or "none"
        raise UsageError(f"{option} {gate.expr!r}: {gate.loss_ref} is not among the evaluated losses ({have}); "
                         + (f"add -l {gate.loss_ref}" if option.startswith("-") else
                            f"add {gate.loss_ref!r} to the losses"))
    if len(found) > 1:
        raise UsageError(f"{option} {gate.expr!r}: {gate.loss} is evaluated with several parameter sets "
                         f"({', '.join(found)}); name one, e.g. '{found[0].replace('(', ':').rstrip(')')} "
                         f"{gate.op} {_num(gate.threshold)}'")
    return found


def _same(a, b) -> bool:
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        return list(a or ()) == list(b or ())
    if isinstance(a, float) or isinstance(b, float):
        try:
            return float(a) == float(b)
        except (TypeError, ValueError):
            return False
    return a == b


def _group_matches(gate: Gate, group: dict, by: Sequence[str]) -> bool:
    names = list(group)
    items = gate.group or ()
    positional = [v for k, v in items if k is None]
    if positional and len(positional) != len(items):
        return False
    if positional:
        if len(positional) != len(names):
            return False
        return all(_value_eq(group[n], v) for n, v in zip(names, positional))
    return all(k in group and _value_eq(group[k], v) for k, v in items)


def _value_eq(actual: Any, text: str) -> bool:
    if str(actual) == text:
        return True
    if isinstance(actual, (int, float)) and not isinstance(actual, bool):
        try:
            return float(text) == float(actual)
        except ValueError:
            return False
    return False


def check_group_syntax(gate: Gate, by: Sequence[str], option: str = "--fail-if") -> None:
    """Before evaluating: a group needs --by, named columns must be --by columns, positional items one per column."""
    if gate.group is None:
        return
    if not by:
        raise UsageError(f"{option} {gate.expr!r}: names a group but no --by column is given")
    keyed = [k for k, _ in gate.group if k is not None]
    if keyed and len(keyed) != len(gate.group):
        raise UsageError(f"{option} {gate.expr!r}: mix of COLUMN=VALUE and bare values in the group; use one style")
    for k in keyed:
        if k not in by:
            raise UsageError(f"{option} {gate.expr!r}: {k!r} is not a --by column ({', '.join(by)})")
    if not keyed and len(gate.group) != len(by):
        raise UsageError(f"{option} {gate.expr!r}: the group has {len(gate.group)} value(s) but there are "
                         f"{len(by)} --by columns ({', '.join(by)}); give one value per column or COLUMN=VALUE")


def precheck(gates: Sequence[Gate], requests: Sequence[Any], by: Sequence[str], option: str = "--fail-if") -> None:
    """Resolve losses and group syntax against the requested losses before any data is read."""
    rows = [_ReqRow(r) for r in requests]
    for g in gates:
        _matching_labels(g, rows, option)
        check_group_syntax(g, by, option)


@dataclass
class _ReqRow:
    req: Any

    @property
    def label(self):
        return self.req.label

    @property
    def loss(self):
        return self.req.spec.name

    @property
    def params(self):
        return self.req.params


def evaluate(gates: Sequence[Gate], res, option: str = "--fail-if") -> list[GateResult]:
    """Check every gate against the rows of ``res`` (an :class:`lossctl.api.Result`)."""
    by = (res.columns or {}).get("by") or []
    out: list[GateResult] = []
    for g in gates:
        check_group_syntax(g, by, option)
        label = _matching_labels(g, res.results, option)[0]
        rows = [r for r in res.results if r.label == label]
        if g.overall_only:
            rows = [r for r in rows if r.group is None]
        elif g.group is not None:
            rows = [r for r in rows if r.group is not None and _group_matches(g, r.group, by)]
            if not rows:
                groups = sorted({_group_text(r.group) for r in res.results if r.group})
                more = "" if len(groups) <= 8 else f", ... ({len(groups)} groups)"
                raise UsageError(f"{option} {g.expr!r}: no group {_group_text(dict(_named(g.group, by)))} in "
                                 f"the data; groups are: {', '.join(groups[:8])}{more}")
        for r in rows:
            out.append(check(g, label, r.group, r.value, ci=getattr(r, "ci", None)))
            out[-1].several = len(rows) > 1
    return out


def _named(items, by):
    if items and items[0][0] is None:
        return list(zip(by, [v for _, v in items]))
    return list(items)


def check(g: Gate, label: str, group: dict | None, value: float | None, ci: dict | None = None) -> GateResult:
    fails = value is None or not math.isfinite(value) or _holds(value, g.op, g.threshold)
    detail = {}
    if ci:
        detail["ci"] = {"low": ci.get("low"), "high": ci.get("high"), "level": ci.get("level")}
    return GateResult(expr=g.expr, loss=label, group=group, value=value, threshold=g.threshold, op=g.op,
                      passed=not fails, detail=detail)


def _holds(value: float, op: str, thr: float) -> bool:
    if op == "<":
        return value < thr
    if op == "<=":
        return value <= thr
    if op == ">":
        return value > thr
    return value >= thr


# -- output ---------------------------------------------------------------------------------------
def failed(results: Sequence[GateResult]) -> list[GateResult]:
    return [r for r in results if not r.passed]


def raise_if_failed(results: Sequence[GateResult]) -> None:
    """GateFailed (exit 1) naming the failed checks, if any failed."""
    bad = failed(results)
    if bad:
        shown = "; ".join(r.describe() for r in bad[:3]) + ("; ..." if len(bad) > 3 else "")
        raise GateFailed(f"{len(bad)} of {len(results)} quality gate(s) failed: {shown}")


def print_table(results: Sequence[GateResult], out=None, title: str | None = None) -> None:
    """The gates as a rich table: gate, loss, group, value, threshold, result."""
    from rich.table import Table

    from .render import console, print_whole
    t = Table(title=title)
    t.add_column("gate")
    t.add_column("group")
    t.add_column("value", justify="right")
    t.add_column("fails if", justify="right")
    t.add_column("result")
    for r in results:
        t.add_row(r.expr, _group_text(r.group) or "(all)", r.show(r.value), f"{r.op} {r.show(r.threshold)}",
                  "PASS" if r.passed else "FAIL")
    print_whole(console(out), t)


def print_lines(results: Sequence[GateResult], file) -> None:
    """One plain line per gate (for machine formats, where gates go to stderr)."""
    for r in results:
        file.write(f"gate {'PASS' if r.passed else 'FAIL'}: {r.expr}"
                   f"{' [' + _group_text(r.group) + ']' if r.group else ''}: {r.describe()}\n")
