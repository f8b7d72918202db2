"""Reports of ``lossctl check`` for CI systems: JUnit XML and Markdown.

JUnit XML (the Ant/Jenkins format that GitLab, Jenkins, Azure DevOps and the GitHub test-report actions
read): ``<testsuites>`` holds one ``<testsuite>`` per check and one ``<testcase>`` per gate (one per
group for a gate that covers every ``--by`` group); a failed gate is a ``<failure message=...>``, a check
that could not run (missing file, bad column) a ``<error message=...>``.  Values are testsuite
``<properties>``.

Markdown is a job summary: a headline, then per check its values (with intervals), its gates and its
comparisons, as GitHub-flavoured tables.
"""
from __future__ import annotations

import math
import os
import tempfile
import time
import xml.etree.ElementTree as ET
from typing import Sequence


def write_atomic(path: str, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file in the same directory, renamed when complete."""
    from .errors import UsageError
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise UsageError(f"{path}: directory {parent} does not exist; create it first")
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".part", dir=parent)
    try:
        from .io.sinks import _umask
        # mkstemp creates 0600; a report is an ordinary file (an existing one keeps its mode)
        os.fchmod(fd, os.stat(path).st_mode & 0o7777 if os.path.exists(path) else 0o666 & ~_umask())
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise UsageError(f"{path}: cannot write: {exc.strerror or exc}") from None


def _num(v) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "nan"
    return repr(float(v))


def _group(g: dict | None) -> str:
    return ", ".join(f"{k}={v}" for k, v in g.items()) if g else "(all)"


def _all_gates(o) -> list:
    return list(o.gates) + [g for c in o.comparisons for g in c.gates]


# -- JUnit XML -------------------------------------------------------------------------------------------
def junit_xml(outcomes: Sequence, suite_name: str = "lossctl check") -> str:
    """JUnit XML text for the outcomes of :func:`lossctl.checkcfg.run`."""
    root = ET.Element("testsuites", name=suite_name)
    tot = {"tests": 0, "failures": 0, "errors": 0}
    total_time = 0.0
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())  # UTC, as JUnit's xs:dateTime without a zone
    for o in outcomes:
        gates = _all_gates(o)
        n_fail = sum(1 for g in gates if not g.passed)
        n_err = 1 if o.error is not None else 0
        n_tests = len(gates) + n_err
        suite = ET.SubElement(root, "testsuite", name=o.name, tests=str(n_tests), failures=str(n_fail),
                              errors=str(n_err), skipped="0", time=f"{o.seconds:.3f}", timestamp=stamp)
        props = _properties(o)
        if props:
            pe = ET.SubElement(suite, "properties")
            for k, v in props:
                ET.SubElement(pe, "property", name=k, value=v)
        classname = f"lossctl.check.{o.name}"
        for g in gates:
            tc = ET.SubElement(suite, "testcase", name=g.name, classname=classname, time="0")
            if not g.passed:
                f = ET.SubElement(tc, "failure", message=g.describe(), type="GateFailed")
                f.text = _failure_text(g)
        if o.error is not None:
            tc = ET.SubElement(suite, "testcase", name=f"{o.name}: evaluate", classname=classname,
                               time=f"{o.seconds:.3f}")
            e = ET.SubElement(tc, "error", message=o.error.message, type=type(o.error).__name__)
            e.text = o.error.message
        tot["tests"] += n_tests
        tot["failures"] += n_fail
        tot["errors"] += n_err
        total_time += o.seconds
    for k, v in tot.items():
        root.set(k, str(v))
    root.set("time", f"{total_time:.3f}")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _properties(o) -> list[tuple[str, str]]:
    out = []
    if o.result is not None:
        for r in o.result.results:
            name = r.label + (f" [{_group(r.group)}]" if r.group else "")
            out.append((name, _num(r.value)))
    for c in o.comparisons:
        if c.comparison is None:
            continue
        for r in c.comparison.rows:
            name = f"delta {r.label} vs {c.spec.baseline}" + (f" [{_group(r.group)}]" if r.group else "")
            out.append((name, _num(r.delta)))
    return out


def _failure_text(g) -> str:
    lines = [f"gate: {g.expr}", f"group: {_group(g.group)}", f"value: {_num(g.value)}",
             f"fails if: value {g.op} {_num(g.threshold)}"]
    ci = g.detail.get("ci") if g.detail else None
    if ci and ci.get("low") is not None:
        lines.append(f"{ci.get('level', 0) * 100:g}% CI: [{_num(ci.get('low'))}, {_num(ci.get('high'))}]")
    return "\n".join(lines)


# -- Markdown --------------------------------------------------------------------------------------------
def _md(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _v(v) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "nan"
    return f"{v:.6g}"


def markdown(outcomes: Sequence, title: str = "lossctl check") -> str:
    """A Markdown summary (GitHub-flavoured) of the outcomes of :func:`lossctl.checkcfg.run`."""
    gates = [g for o in outcomes for g in _all_gates(o)]
    n_fail = sum(1 for g in gates if not g.passed)
    errors = [o for o in outcomes if o.error is not None]
    ok = not n_fail and not errors
    head = (f"## {'✅' if ok else '❌'} {_md(title)}: {len(gates) - n_fail} of {len(gates)} gates passed"
            + (f", {n_fail} failed" if n_fail else "") + (f", {len(errors)} check(s) could not run" if errors else ""))
    lines = [head, ""]
    for o in outcomes:
        og = _all_gates(o)
        bad = o.error is not None or any(not g.passed for g in og)
        lines += [f"### {'❌' if bad else '✅'} {_md(o.name)}", ""]
        if o.error is not None:
            lines += [f"**error** ({type(o.error).__name__}, exit {o.error.exit_code}): {_md(o.error.message)}", ""]
        if o.result is not None:
            res = o.result
            inputs = ", ".join(f"`{_md(i['path'])}` ({i.get('rows', '?')} rows)" for i in res.inputs)
            boot = res.extra.get("bootstrap")
            lines += [f"Inputs: {inputs}" + (f"; {boot['level'] * 100:g}% CI by Poisson bootstrap "
                                             f"({boot['replicates']} replicates, seed {boot['seed']})" if boot else ""),
                      ""]
            by = (res.columns or {}).get("by")
            hdr = ["loss"] + ([", ".join(by)] if by else []) + [res.reduction if res.reduction != "none" else "mean",
                                                              "rows"] + (["CI"] if boot else [])
            lines += ["| " + " | ".join(hdr) + " |", "|" + "|".join(["---"] * (1 + bool(by)) + ["---:"] * (len(hdr) - 1 - bool(by))) + "|"]
            for r in res.results:
                cells = [_md(r.label)] + ([_md(_group(r.group))] if by else []) + [_v(r.value), str(r.count)]
                if boot:
                    ci = getattr(r, "ci", None) or {}
                    cells.append(f"{_v(ci.get('low'))} – {_v(ci.get('high'))}")
                lines.append("| " + " | ".join(cells) + " |")
            lines.append("")
        from .compare import fmt_p
        for c in o.comparisons:
            cmp = c.comparison
            if cmp is None:
                continue
            lines += [f"Compared with baseline `{_md(c.spec.baseline)}` (delta = candidate − baseline; "
                      f"{cmp.level * 100:g}% CI and p-value by paired bootstrap, {cmp.replicates} replicates, "
                      f"seed {cmp.seed}):", "",
                      "| loss | group | baseline | candidate | delta | delta % | CI | p |",
                      "|---|---|---:|---:|---:|---:|---:|---:|"]
            for r in cmp.rows:
                rel = "nan" if not math.isfinite(r.rel_delta) else f"{r.rel_delta * 100:+.3g}%"
                lines.append(f"| {_md(r.label)} | {_md(_group(r.group))} | {_v(r.base)} | {_v(r.cand)} | "
                             f"{_v(r.delta)} | {rel} | {_v(r.ci_low)} – {_v(r.ci_high)} | {fmt_p(r.p_value)} |")
            lines.append("")
        if og:
            lines += ["| gate | group | value | fails if | result |", "|---|---|---:|---|---|"]
            for g in og:
                lines.append(f"| `{_md(g.expr)}` | {_md(_group(g.group))} | {g.show(g.value)} | "
                             f"{g.op} {g.show(g.threshold)} | {'✅ pass' if g.passed else '❌ FAIL'} |")
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"
