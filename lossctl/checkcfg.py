"""``lossctl check``: named checks declared in TOML, all evaluated in one run.

The configuration is ``lossctl.toml`` or the ``[tool.lossctl]`` table of ``pyproject.toml``, found in
the current directory or the nearest parent that has one (or given with ``--config``)::

    [defaults]                      # optional: keys every check inherits (a check's own keys win)
    seed = 0
    ci = 0.95

    [checks.regression]
    inputs = ["preds.parquet", "labels.parquet"]   # predictions [labels], relative to this file
    on = "id"                                       # join key (optional; default: aligned by row)
    columns = { pred = "y_hat", target = "y", weight = "w" }
    losses = ["mse", "huber:delta=0.5", { name = "mae" }]
    by = ["region"]
    fail_if = ["mse > 0.25", "mae (region=north) > 0.4"]
    bootstrap = 1000                                # with ci: intervals on every value

    [[checks.regression.compare]]                   # baseline comparisons (a table or a list of tables)
    baseline = "baseline.parquet"                   # predictions of the same targets
    max_regression = "2%"                           # or an absolute 0.01
    gate_mode = "ci"                                # ci (non-inferiority) | point

Keys of a check: inputs (required), losses (required), on, inner, columns, weight, by, reduction,
fail_if, ci, bootstrap, seed, input_format, batch_size, compare, description.  Keys of a comparison:
baseline (required), labels, losses, by, max_regression, gate_mode, ci, bootstrap, seed.

Every configuration error names the file, the line and the key (``lossctl.toml, line 12, key
checks.regression.losses[1]: unknown loss 'msee'; did you mean mse?``) and exits 2, before any data is
read.  The line is found by scanning the TOML text for the key (tomllib does not keep positions).
"""
from __future__ import annotations

import difflib
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

from .errors import GateFailed, LossctlError, UsageError

CHECK_KEYS = ("inputs", "losses", "on", "inner", "columns", "weight", "by", "reduction", "fail_if", "ci",
              "bootstrap", "seed", "input_format", "batch_size", "compare", "description")
COMPARE_KEYS = ("baseline", "labels", "losses", "by", "max_regression", "gate_mode", "ci", "bootstrap", "seed")
INPUT_FORMATS = ("csv", "tsv", "parquet", "arrow", "feather", "jsonl")


# -- finding lines in TOML text ---------------------------------------------------------------------------
_BARE = re.compile(r"[A-Za-z0-9_-]+")


def _split_key(text: str) -> list[str] | None:
    """'a."b c".d' -> ['a', 'b c', 'd'] (TOML dotted keys, bare or quoted); None if not a key."""
    parts, i, s = [], 0, text.strip()
    while i < len(s):
        while i < len(s) and s[i] in " \t":
            i += 1
        if i < len(s) and s[i] in "\"'":
            q = s[i]
            j = s.find(q, i + 1)
            if j < 0:
                return None
            parts.append(s[i + 1:j])
            i = j + 1
        else:
            m = _BARE.match(s, i)
            if not m:
                return None
            parts.append(m.group(0))
            i = m.end()
        while i < len(s) and s[i] in " \t":
            i += 1
        if i < len(s):
            if s[i] != ".":
                return None
            i += 1
    return parts or None


class TomlLines:
    """Maps key paths (tuples of names; list indexes allowed) to 1-based line numbers of a TOML text."""

    def __init__(self, text: str, root: tuple = ()):
        self.entries: list[tuple[tuple, int]] = []   # (full key path, line)
        self.root = root
        self.text_lines = text.splitlines()
        table: tuple = ()
        counts: dict[tuple, int] = {}
        for n, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("[["):
                end = line.find("]]")
                key = _split_key(line[2:end]) if end > 0 else None
                if key:
                    t = tuple(key)
                    idx = counts.get(t, 0)
                    counts[t] = idx + 1
                    table = t + (idx,)
                    self.entries.append((t, n))
                    self.entries.append((table, n))
                continue
            if line.startswith("["):
                end = line.find("]")
                key = _split_key(line[1:end]) if end > 0 else None
                if key:
                    table = _with_indexes(tuple(key), counts)
                    self.entries.append((table, n))
                continue
            eq = _find_eq(line)
            if eq > 0:
                key = _split_key(line[:eq])
                if key:
                    self.entries.append((table + tuple(key), n))

    def line_of(self, path: Sequence, hint: str | None = None) -> int | None:
        """The line of the longest prefix of ``path`` (relative to the root table) that the text names.

        When only a prefix is found (an element of a multi-line list, a key of an inline table) and
        ``hint`` is given, the first line from there on that holds ``hint`` (quoted) is preferred.
        """
        full = tuple(self.root) + tuple(path)
        for k in range(len(full), len(self.root), -1):
            want = full[:k]
            for key, n in self.entries:
                if key == want:
                    if k < len(full) and hint:
                        for j in range(n - 1, min(len(self.text_lines), n + 200)):
                            ln = self.text_lines[j]
                            if f'"{hint}"' in ln or f"'{hint}'" in ln:
                                return j + 1
                    return n
        return None


def _with_indexes(key: tuple, counts: dict) -> tuple:
    """[a.b.c] inside [[a.b]]: the path goes through the last element of the array a.b."""
    out: tuple = ()
    for part in key:
        out = out + (part,)
        if out in counts and len(out) < len(key):
            out = out + (counts[out] - 1,)
    return out


def _find_eq(line: str) -> int:
    """Position of the '=' of a key/value line (outside quotes), or -1."""
    q = None
    for i, c in enumerate(line):
        if q:
            if c == q:
                q = None
        elif c in "\"'":
            q = c
        elif c == "=":
            return i
        elif c == "#":
            return -1
    return -1


# -- the configuration ------------------------------------------------------------------------------------
@dataclass
class CompareSpec:
    baseline: str
    labels: str | None
    losses: list | None
    by: list | None
    margin: Any            # compare.Margin or None
    gate_mode: str
    ci: float | None
    bootstrap: int | None
    seed: int | None
    key: tuple             # key path, for messages


@dataclass
class CheckSpec:
    name: str
    inputs: list[str]
    losses: list
    on: str | None = None
    inner: bool = False
    columns: dict = field(default_factory=dict)
    weight: str | None = None
    by: list = field(default_factory=list)
    reduction: str = "mean"
    fail_if: list = field(default_factory=list)   # parsed gates.Gate
    ci: float | None = None
    bootstrap: int | None = None
    seed: int = 0
    input_format: str | None = None
    batch_size: int | None = None
    compare: list[CompareSpec] = field(default_factory=list)
    description: str = ""

    def loss_texts(self) -> list[str]:
        return [x if isinstance(x, str) else x[0] + (":" + ",".join(f"{k}={v}" for k, v in x[1].items())
                                                     if x[1] else "") for x in self.losses]


@dataclass
class Config:
    path: str
    display: str
    checks: list[CheckSpec]

    def select(self, names: Sequence[str]) -> list[CheckSpec]:
        if not names:
            return list(self.checks)
        known = {c.name: c for c in self.checks}
        out = []
        for n in names:
            if n not in known:
                close = difflib.get_close_matches(n, list(known), n=3)
                hint = f"; did you mean {', '.join(close)}?" if close else ""
                raise UsageError(f"{self.display}: no check named {n!r}{hint} (checks: {', '.join(known) or 'none'})")
            out.append(known[n])
        return out


class _Ctx:
    """Builds error messages that name the file, line and key."""

    def __init__(self, display: str, lines: TomlLines, root: tuple):
        self.display = display
        self.lines = lines
        self.root = root

    def error(self, key: Sequence, message: str, hint: str | None = None) -> UsageError:
        dotted = _dotted(tuple(self.root) + tuple(key))
        n = self.lines.line_of(tuple(key), hint)
        where = f"{self.display}, line {n}, key {dotted}" if n else f"{self.display}, key {dotted}"
        return UsageError(f"{where}: {message}")


def _dotted(path: Sequence) -> str:
    out = ""
    for p in path:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            p = str(p)
            out += ("." if out else "") + (p if _BARE.fullmatch(p) else f'"{p}"')
    return out


def find_config(start: str | None = None) -> str | None:
    d = os.path.abspath(start or os.getcwd())
    while True:
        cand = os.path.join(d, "lossctl.toml")
        if os.path.isfile(cand):
            return cand
        pp = os.path.join(d, "pyproject.toml")
        if os.path.isfile(pp):
            try:
                with open(pp, "rb") as fh:
                    if b"[tool.lossctl" in fh.read():
                        return pp
            except OSError:
                pass
        parent = os.path.dirname(d)
        if parent == d:
            return None
        d = parent


def load(path: str | None = None) -> Config:
    """Read and validate the configuration; UsageError (exit 2) naming file, line and key on any problem."""
    try:
        import tomllib
    except ImportError:  # Python 3.10: the same parser as the tomli package
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ImportError:
            raise UsageError("lossctl check reads TOML with tomllib (Python 3.11+); on Python 3.10 "
                             "pip install tomli") from None
    if path is None:
        path = find_config()
        if path is None:
            raise UsageError(f"no lossctl.toml, and no pyproject.toml with [tool.lossctl], in {os.getcwd()} or its "
                             f"parents; write one (see `lossctl check --help` and README 'Use in CI') or pass --config")
    display = os.path.relpath(path) if not os.path.isabs(path) or path.startswith(os.getcwd()) else path
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the configuration: {exc.strerror or exc}") from None
    text = raw.decode("utf-8", errors="replace")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        m = re.search(r"\(at line (\d+), column (\d+)\)", msg)
        where = f"{display}, line {m.group(1)}" if m else display
        raise UsageError(f"{where}: invalid TOML: {re.sub(r' *[(]at line.*[)]', '', msg)}") from None
    is_pyproject = os.path.basename(path) == "pyproject.toml"
    root: tuple = ("tool", "lossctl") if is_pyproject else ()
    lines = TomlLines(text, root)
    ctx = _Ctx(display, lines, root)
    if is_pyproject:
        data = data.get("tool", {}).get("lossctl")
        if data is None:
            raise UsageError(f"{display}: no [tool.lossctl] table; add [tool.lossctl.checks.NAME] tables")
    base_dir = os.path.dirname(os.path.abspath(path))
    unknown = [k for k in data if k not in ("checks", "defaults")]
    if unknown:
        raise ctx.error((unknown[0],), f"unknown key; the top level holds [checks.NAME] tables and an optional "
                                       f"[defaults] table{_did_you_mean(unknown[0], ('checks', 'defaults'))}")
    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict):
        raise ctx.error(("defaults",), "must be a table of check keys")
    for k in defaults:
        if k not in CHECK_KEYS:
            raise ctx.error(("defaults", k), f"unknown key{_did_you_mean(k, CHECK_KEYS)}; allowed: {', '.join(CHECK_KEYS)}")
    checks = data.get("checks")
    if not isinstance(checks, dict) or not checks:
        raise ctx.error(("checks",), "no checks declared; add a [checks.NAME] table with inputs and losses")
    out = []
    for name, body in checks.items():
        if not isinstance(body, dict):
            raise ctx.error(("checks", name), "must be a table ([checks.NAME]) with inputs and losses")
        merged = {**defaults, **body}
        out.append(_check(ctx, name, merged, set(body), base_dir))
    return Config(path=path, display=display, checks=out)


def _did_you_mean(key: str, allowed: Sequence[str]) -> str:
    close = difflib.get_close_matches(key, list(allowed), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def _resolve_path(p: str, base_dir: str) -> str:
    """A path of the configuration, relative to its directory, as a path from the current directory."""
    if p == "-" or "://" in p or os.path.isabs(p):
        return p
    return os.path.normpath(os.path.join(os.path.relpath(base_dir), p))


def _str_list(ctx, key, v, what="a string or a list of strings") -> list[str]:
    if isinstance(v, str):
        return [v]
    if isinstance(v, list) and all(isinstance(x, str) for x in v):
        return list(v)
    raise ctx.error(key, f"must be {what}, got {_tname(v)}")


def _tname(v) -> str:
    return {str: "a string", int: "an integer", float: "a number", bool: "true/false", list: "a list",
            dict: "a table"}.get(type(v), type(v).__name__)


def _check(ctx: _Ctx, name: str, d: dict, own: set, base_dir: str) -> CheckSpec:
    from . import api, gates
    from .bootstrap import parse_level
    k0 = ("checks", name)

    def key(*rest):
        # a key inherited from [defaults] is reported where it is written
        return (("defaults",) if rest and rest[0] not in own else k0) + rest

    for k in d:
        if k not in CHECK_KEYS:
            raise ctx.error(key(k), f"unknown key{_did_you_mean(k, CHECK_KEYS)}; a check takes: {', '.join(CHECK_KEYS)}")
    if "inputs" not in d:
        raise ctx.error(k0, "missing key 'inputs' (the predictions file, and optionally a labels file)")
    inputs = _str_list(ctx, key("inputs"), d["inputs"])
    if not 1 <= len(inputs) <= 2:
        raise ctx.error(key("inputs"), f"expected 1 or 2 paths (predictions [labels]), got {len(inputs)}")
    spec = CheckSpec(name=name, inputs=[_resolve_path(p, base_dir) for p in inputs], losses=[])
    if "losses" not in d:
        raise ctx.error(k0, "missing key 'losses' (e.g. losses = [\"mse\", \"huber:delta=0.5\"])")
    losses = d["losses"]
    if isinstance(losses, (str, dict)):
        losses = [losses]
    if not isinstance(losses, list) or not losses:
        raise ctx.error(key("losses"), "must be a non-empty list of loss names or {name = ..., PARAM = ...} tables")
    for i, item in enumerate(losses):
        try:
            if isinstance(item, str):
                parsed = api.parse_loss_args([item])
            elif isinstance(item, dict):
                if "name" not in item or not isinstance(item["name"], str):
                    raise UsageError("a loss table needs name = \"LOSS\"")
                params = dict(item.get("params", {})) if isinstance(item.get("params"), dict) else {}
                params.update({k: v for k, v in item.items() if k not in ("name", "params")})
                parsed = [(item["name"], params)]
            else:
                raise UsageError(f"expected a loss name or a table, got {_tname(item)}")
            api.make_requests(parsed)
        except UsageError as exc:
            raise ctx.error(key("losses", i), exc.message, hint=item if isinstance(item, str) else None) from None
        spec.losses.extend(parsed)
    try:
        reqs = api.make_requests(spec.losses)
    except UsageError as exc:
        raise ctx.error(key("losses"), exc.message) from None
    if "on" in d:
        if not isinstance(d["on"], str):
            raise ctx.error(key("on"), f"must be a column name (string), got {_tname(d['on'])}")
        spec.on = d["on"]
    if "inner" in d:
        if not isinstance(d["inner"], bool):
            raise ctx.error(key("inner"), "must be true or false")
        spec.inner = d["inner"]
    if "columns" in d:
        cols = d["columns"]
        if not isinstance(cols, dict) or not all(isinstance(v, str) for v in cols.values()):
            raise ctx.error(key("columns"), "must be a table of ROLE = \"COLUMN\" (e.g. { pred = \"y_hat\", target = \"y\" })")
        cols = dict(cols)
        if "weight" in cols:
            spec.weight = cols.pop("weight")
        roles = {role for r in reqs for role in r.spec.roles}
        for role in cols:
            if role not in roles:
                raise ctx.error(key("columns", role), f"none of the losses uses the role {role!r} (they use "
                                                      f"{', '.join(sorted(roles))}, and weight)")
        spec.columns = cols
    if "weight" in d:
        if not isinstance(d["weight"], str):
            raise ctx.error(key("weight"), "must be a column name (string)")
        spec.weight = d["weight"]
    if "by" in d:
        spec.by = _str_list(ctx, key("by"), d["by"])
    if "reduction" in d:
        if d["reduction"] not in ("mean", "sum"):
            raise ctx.error(key("reduction"), f"must be \"mean\" or \"sum\", got {d['reduction']!r}")
        spec.reduction = d["reduction"]
    if "fail_if" in d:
        exprs = _str_list(ctx, key("fail_if"), d["fail_if"], "a gate expression or a list of them")
        for i, e in enumerate(exprs):
            try:
                g = gates.parse(e, option="fail_if")
                gates.precheck([g], reqs, spec.by, option="fail_if")
            except UsageError as exc:
                raise ctx.error(key("fail_if", i), exc.message, hint=e) from None
            spec.fail_if.append(g)
    if "ci" in d:
        try:
            spec.ci = parse_level(d["ci"], option="ci")
        except UsageError as exc:
            raise ctx.error(key("ci"), exc.message) from None
    if "bootstrap" in d:
        spec.bootstrap = _int(ctx, key("bootstrap"), d["bootstrap"], 10)
        if spec.ci is None:
            spec.ci = 0.95
    if "seed" in d:
        spec.seed = _int(ctx, key("seed"), d["seed"], None)
    if "input_format" in d:
        if d["input_format"] not in INPUT_FORMATS:
            raise ctx.error(key("input_format"), f"must be one of {', '.join(INPUT_FORMATS)}")
        spec.input_format = d["input_format"]
    if "batch_size" in d:
        spec.batch_size = _int(ctx, key("batch_size"), d["batch_size"], 1)
    if "description" in d:
        spec.description = str(d["description"])
    if "compare" in d:
        comps = d["compare"]
        items = [comps] if isinstance(comps, dict) else comps
        if not isinstance(items, list) or not all(isinstance(x, dict) for x in items):
            raise ctx.error(key("compare"), "must be a table ([checks.NAME.compare]) or a list of tables "
                                            "([[checks.NAME.compare]])")
        for i, c in enumerate(items):
            ck = key("compare") + ((i,) if isinstance(comps, list) else ())
            spec.compare.append(_compare(ctx, ck, c, spec, reqs, base_dir))
    return spec


def _int(ctx, key, v, minimum) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ctx.error(key, f"must be an integer, got {_tname(v)}")
    if minimum is not None and v < minimum:
        raise ctx.error(key, f"must be at least {minimum}, got {v}")
    return v


def _compare(ctx, ck: tuple, c: dict, check: CheckSpec, reqs, base_dir) -> CompareSpec:
    from . import api, compare
    from .bootstrap import parse_level
    for k in c:
        if k not in COMPARE_KEYS:
            raise ctx.error(ck + (k,), f"unknown key{_did_you_mean(k, COMPARE_KEYS)}; a comparison takes: "
                                       f"{', '.join(COMPARE_KEYS)}")
    if "baseline" not in c or not isinstance(c["baseline"], str):
        raise ctx.error(ck, "needs baseline = \"PATH\" (predictions of the same targets by the baseline model)")
    labels = c.get("labels")
    if labels is not None and not isinstance(labels, str):
        raise ctx.error(ck + ("labels",), "must be a path (string)")
    losses = None
    if "losses" in c:
        losses = []
        for i, x in enumerate(_str_list(ctx, ck + ("losses",), c["losses"])):
            try:
                parsed = api.parse_loss_args([x])
                api.make_requests(parsed)
            except UsageError as exc:
                raise ctx.error(ck + ("losses", i), exc.message, hint=x) from None
            losses.extend(parsed)
    margin = None
    if "max_regression" in c:
        v = c["max_regression"]
        if isinstance(v, bool) or not isinstance(v, (str, int, float)):
            raise ctx.error(ck + ("max_regression",), "must be a number (absolute) or a string like \"2%\"")
        try:
            margin = compare.parse_margin(v, option="max_regression")
        except UsageError as exc:
            raise ctx.error(ck + ("max_regression",), exc.message) from None
    mode = c.get("gate_mode", "ci")
    if mode not in ("ci", "point"):
        raise ctx.error(ck + ("gate_mode",), f"must be \"ci\" or \"point\", got {mode!r}")
    level = None
    if "ci" in c:
        try:
            level = parse_level(c["ci"], option="ci")
        except UsageError as exc:
            raise ctx.error(ck + ("ci",), exc.message) from None
    by = _str_list(ctx, ck + ("by",), c["by"]) if "by" in c else None
    if len(check.inputs) == 2 and labels is None:
        labels_path = check.inputs[1]
    else:
        labels_path = _resolve_path(labels, base_dir) if labels else None
    return CompareSpec(baseline=_resolve_path(c["baseline"], base_dir), labels=labels_path, losses=losses, by=by,
                       margin=margin, gate_mode=mode, ci=level,
                       bootstrap=_int(ctx, ck + ("bootstrap",), c["bootstrap"], 10) if "bootstrap" in c else None,
                       seed=_int(ctx, ck + ("seed",), c["seed"], None) if "seed" in c else None, key=ck)


def refuse_to_overwrite_inputs(checks: Sequence[CheckSpec], reports: Sequence[str],
                               config_path: str | None = None) -> None:
    """UsageError if a report file would replace an input, a baseline, a labels file or the configuration."""
    protected: dict[str, str] = {}
    for c in checks:
        for p in list(c.inputs) + [x for cs in c.compare for x in (cs.baseline, cs.labels) if x]:
            if "://" not in p and p != "-":
                protected[os.path.realpath(p)] = p
    if config_path:
        protected.setdefault(os.path.realpath(config_path), config_path)
    for out in reports:
        hit = protected.get(os.path.realpath(out))
        if hit is not None:
            raise UsageError(f"{out}: is {hit}, which the checks read; write the report somewhere else")


# -- running ----------------------------------------------------------------------------------------------
@dataclass
class CompareOutcome:
    spec: CompareSpec
    comparison: Any = None      # compare.Comparison
    gates: list = field(default_factory=list)


@dataclass
class Outcome:
    check: CheckSpec
    result: Any = None          # api.Result
    gates: list = field(default_factory=list)
    comparisons: list[CompareOutcome] = field(default_factory=list)
    error: LossctlError | None = None
    seconds: float = 0.0

    @property
    def name(self) -> str:
        return self.check.name

    @property
    def passed(self) -> bool:
        return self.error is None and all(g.passed for g in self.all_gates)

    @property
    def all_gates(self) -> list:
        return list(self.gates) + [g for c in self.comparisons for g in c.gates]


def _options(c: CheckSpec) -> dict:
    opts: dict[str, Any] = dict(weight=c.weight, by=list(c.by), columns=dict(c.columns), reduction=c.reduction,
                                input_format=c.input_format)
    if c.batch_size:
        opts["batch_rows"] = c.batch_size
    return opts


def run_one(c: CheckSpec) -> Outcome:
    from . import api, bootstrap, compare, gates
    out = Outcome(check=c)
    t0 = time.perf_counter()
    try:
        if c.fail_if or not c.compare:
            opts = _options(c)
            if len(c.inputs) == 2:  # with one input, `on` is only the pairing key of the comparisons
                opts.update(on=c.on, inner=c.inner)
            if c.ci is not None:
                out.result = bootstrap.evaluate(c.inputs, list(c.losses), ci=c.ci,
                                                replicates=c.bootstrap or bootstrap.DEFAULT_REPLICATES, seed=c.seed,
                                                **opts)
            else:
                out.result = api.evaluate(c.inputs, list(c.losses), **opts)
            out.gates = gates.evaluate(c.fail_if, out.result, option="fail_if")
            if out.gates:
                out.result.extra["gates"] = [g.as_dict() for g in out.gates]
        for cs in c.compare:
            opts = _options(c)
            if cs.by is not None:
                opts["by"] = cs.by
            co = CompareOutcome(cs)
            out.comparisons.append(co)
            co.comparison = compare.compare(
                cs.baseline, c.inputs[0], cs.labels, list(cs.losses or c.losses), on=c.on,
                level=cs.ci or c.ci or 0.95, replicates=cs.bootstrap or c.bootstrap or bootstrap.DEFAULT_REPLICATES,
                seed=c.seed if cs.seed is None else cs.seed, **opts)
            if cs.margin is not None:
                co.gates = compare.regression_gates(co.comparison, cs.margin, cs.gate_mode)
    except GateFailed:
        raise
    except LossctlError as exc:
        out.error = type(exc)(f"check {c.name!r}: {exc.message}")
    out.seconds = time.perf_counter() - t0
    return out


def run(checks: Sequence[CheckSpec]) -> list[Outcome]:
    """Run every check (one after another); errors of one check are recorded and the others still run."""
    return [run_one(c) for c in checks]


def raise_for(outcomes: Sequence[Outcome]) -> None:
    """The exit: the first check error (its own code: 2 usage, 3 input), else GateFailed if a gate failed."""
    for o in outcomes:
        if o.error is not None:
            raise o.error
    gates = [g for o in outcomes for g in o.all_gates]
    bad = [g for g in gates if not g.passed]
    if bad:
        failed_checks = [o.name for o in outcomes if not o.passed]
        shown = "; ".join(g.describe() for g in bad[:3]) + ("; ..." if len(bad) > 3 else "")
        raise GateFailed(f"{len(bad)} of {len(gates)} quality gate(s) failed in check(s) "
                         f"{', '.join(failed_checks)}: {shown}")


# -- output -----------------------------------------------------------------------------------------------
def json_doc(outcomes: Sequence[Outcome], cfg: Config, version: str) -> dict:
    from . import compare, signature
    from .render import SCHEMA_VERSION, json_doc as eval_doc
    checks = []
    results = []
    for o in outcomes:
        d: dict[str, Any] = {"name": o.name, "passed": o.passed, "seconds": round(o.seconds, 3)}
        if o.check.description:
            d["description"] = o.check.description
        if o.error is not None:
            d["error"] = {"type": type(o.error).__name__, "exit_code": o.error.exit_code, "message": o.error.message}
        if o.result is not None:
            d["eval"] = eval_doc(o.result, version)
            results.append(o.result)
        if o.comparisons:
            d["comparisons"] = []
            for co in o.comparisons:
                if co.comparison is None:
                    continue
                cd = compare.json_doc(co.comparison, version, co.gates)
                cd["baseline"] = co.spec.baseline
                d["comparisons"].append(cd)
                results += [co.comparison.baseline, co.comparison.candidate]
        d["gates"] = [g.as_dict() for g in o.all_gates]
        checks.append(d)
    gates = [g for o in outcomes for g in o.all_gates]
    seeds: list[int] = []   # every bootstrap seed used: one number, or a list when checks differ
    for o in outcomes:
        boot = (o.result.extra.get("bootstrap") or {}) if o.result is not None else {}
        for s in ([boot["seed"]] if "seed" in boot else []) + [co.comparison.seed for co in o.comparisons
                                                               if co.comparison is not None]:
            if s not in seeds:
                seeds.append(s)
    sig = signature.build(*results, seed=seeds[0] if len(seeds) == 1 else (seeds or None)) if results \
        else signature.versions()
    return {"schema_version": SCHEMA_VERSION, "tool": "lossctl", "version": version, "command": "check",
            "config": cfg.display, "passed": all(o.passed for o in outcomes),
            "summary": {"checks": len(outcomes), "gates": len(gates),
                        "failed_gates": sum(1 for g in gates if not g.passed),
                        "errors": sum(1 for o in outcomes if o.error is not None)},
            "checks": checks, "signature": sig}


def print_table(outcomes: Sequence[Outcome], out=None) -> None:
    from . import compare, gates, render
    con = render.console(out)
    for o in outcomes:
        og = o.all_gates
        status = "ERROR" if o.error is not None else ("PASS" if o.passed else "FAIL")
        n_fail = sum(1 for g in og if not g.passed)
        con.print(f"check {o.name}: {status} ({len(og) - n_fail} of {len(og)} gates passed, {o.seconds:.2f} s)")
        if o.error is not None:
            con.print(f"  error: {o.error.message}")
        if o.result is not None:
            render.print_table(o.result, out)
        for co in o.comparisons:
            if co.comparison is not None:
                con.print(f"compared with baseline {co.spec.baseline}")
                compare.print_table(co.comparison, out)
        if og:
            gates.print_table(og, out)
    gates_all = [g for o in outcomes for g in o.all_gates]
    n_fail = sum(1 for g in gates_all if not g.passed)
    n_err = sum(1 for o in outcomes if o.error is not None)
    con.print(f"{len(outcomes)} check(s): {len(gates_all) - n_fail} of {len(gates_all)} gates passed"
              + (f", {n_fail} failed" if n_fail else "") + (f", {n_err} could not run" if n_err else ""))
