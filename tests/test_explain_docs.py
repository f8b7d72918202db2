"""The documentation of every registered loss: `lossctl explain NAME` (text and --json) has everything the
workbench issue asks for, and the example it prints runs on sample_data/.

The registry is the list, so a loss registered tomorrow (a plugin too) is checked the moment it exists.
Examples run in-process through CliRunner from the repository root (they name sample_data/ relatively).
"""
from __future__ import annotations

import json
import os
import re
import shlex

import pytest
from click.testing import CliRunner

from lossctl import registry
from lossctl.cli import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPECS = registry.all_losses()
NAMES = [s.name for s in SPECS]


def explain(*args):
    res = CliRunner().invoke(cli, ["explain", *args], catch_exceptions=False)
    assert res.exit_code == 0, (args, res.exit_code, res.stderr)
    assert res.stderr == ""
    return res.stdout


def _balanced(latex: str) -> bool:
    depth = 0
    for i, ch in enumerate(latex):
        if ch in "{}" and i and latex[i - 1] == "\\":   # \{ and \} are literal braces
            continue
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if depth < 0:
            return False
    return depth == 0


def test_every_loss_is_checked():
    assert len(NAMES) == len(set(NAMES)) and len(NAMES) >= 40


@pytest.mark.parametrize("name", NAMES)
def test_explain_json_has_every_field(name):
    spec = registry.get(name)
    d = json.loads(explain(name, "--json"))
    assert d["name"] == name and d["kind"] == spec.kind
    # formula: plain text and LaTeX
    assert d["formula"].strip() and "\\" not in d["formula"].replace("\\n", ""), "plain formula, no LaTeX"
    latex = d["latex"]
    assert latex.strip() and re.search(r"\\[a-zA-Z]+|[\^_]", latex), f"{name}: latex {latex!r} is not LaTeX"
    assert _balanced(latex), f"{name}: unbalanced braces in latex {latex!r}"
    # parameters with defaults, ranges and help
    assert [p["name"] for p in d["params"]] == [p.name for p in spec.params]
    for p, ps in zip(d["params"], spec.params):
        assert p["range"] and p["help"].strip(), f"{name}.{p['name']}: range and help"
        default = list(ps.default) if isinstance(ps.default, tuple) else ps.default
        assert p["default"] == default
        if ps.default is not None:                      # None: "automatic" (zero_one's threshold)
            assert ps.parse(ps.default, name) == ps.default, f"{name}.{p['name']}: default outside its range"
    # input space and inputs
    assert d["space"] in registry.SPACES and d["inputs"] == list(spec.roles)
    # reduction semantics
    assert "mean" in d["reductions"] and "none" in d["reductions"]
    assert d["reduction_note"].strip(), f"{name}: reduction_note (what mean means) is empty"
    # reference, related losses, when to use
    assert len(d["reference"].strip()) > 5
    assert d["related"], f"{name}: no related losses"
    for other in d["related"]:
        assert registry.get(other).name != name, f"{name} lists itself as related"
    assert len(d["when"].strip()) >= 80, f"{name}: 'when' is too thin to say when to prefer it ({d['when']!r})"
    assert d["summary"].strip()
    assert isinstance(d["gradient"], bool) and d["gradient"] == (spec.grad is not None)
    assert d["example"].startswith("lossctl eval sample_data/")


@pytest.mark.parametrize("name", NAMES)
def test_explain_text_has_every_field(name):
    spec = registry.get(name)
    out = explain(name)
    first = out.splitlines()[0]
    assert first.startswith(f"{name}  ({spec.kind};") and f"predictions as {spec.space}" in first
    assert f"formula:    {spec.formula}" in out
    if spec.params:
        for p in spec.params:
            assert re.search(rf"^  {re.escape(p.name)} = .+\(range {re.escape(p.range_text())}\)", out, re.M), \
                f"{name}: parameter {p.name} line"
    else:
        assert "parameters: none" in out
    assert re.search(r"^reductions: mean, (sum, )?none; \S", out, re.M)
    assert spec.reduction_note in out
    assert f"reference:  {spec.reference}" in out
    assert ("gradient:   analytic d loss / d " in out) == (spec.grad is not None)
    assert "when to use: " + spec.when in out
    assert "related:    " + ", ".join(spec.related) in out
    assert out.rstrip().endswith("example:\n  " + spec.example)


def test_explain_by_alias_and_unknown():
    assert explain("l2", "--json") == explain("mse", "--json")
    res = CliRunner().invoke(cli, ["explain", "hubr"], catch_exceptions=False)
    assert res.exit_code == 2 and "did you mean huber" in res.stderr


@pytest.mark.parametrize("name", NAMES)
def test_example_runs_on_sample_data(name, monkeypatch):
    spec = registry.get(name)
    argv = shlex.split(spec.example)
    assert argv[:2] == ["lossctl", "eval"]
    path = argv[2]
    assert path.startswith("sample_data/")
    monkeypatch.chdir(ROOT)
    assert os.path.exists(path), f"{name}: example input {path} does not exist"
    # the example evaluates this loss (by its name, an alias, or PLUGIN:NAME, with or without parameters)
    losses = [a for i, a in enumerate(argv) if i and argv[i - 1] in ("-l", "--loss")]
    assert losses, f"{name}: example has no -l"
    names = {_loss_of(arg) for arg in losses}
    assert name in names, f"{name}: example evaluates {names}"
    res = CliRunner().invoke(cli, [*argv[1:], "--format", "json"], catch_exceptions=False)
    assert res.exit_code == 0, f"{name}: `{spec.example}` exited {res.exit_code}: {res.stderr}"
    doc = json.loads(res.stdout)
    values = [r for r in doc["results"] if r["loss"] == name]
    assert values and all(isinstance(r["value"], float) for r in values), values
    assert doc["rows_evaluated"] > 0


def _loss_of(arg: str) -> str:
    """The registered name of the first loss in a -l argument (``huber:delta=0.5``, ``my_pkg:asym:alpha=1``)."""
    first = arg.split(",")[0]
    parts = first.split(":")
    # the longest prefix of ':'-separated parts that names a loss (PLUGIN:NAME is an alias)
    for k in range(len(parts), 0, -1):
        candidate = ":".join(parts[:k])
        if "=" in candidate:
            continue
        try:
            return registry.get(candidate).name
        except Exception:
            continue
    raise AssertionError(f"no loss named in {arg!r}")
