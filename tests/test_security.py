"""Security: no eval/exec/pickle in lossctl, pyarrow without the known deserialisation CVE, plugins only
from installed entry points, credentials never printed.
"""
from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import tomllib
from importlib.metadata import entry_points, version
from pathlib import Path

from conftest import invoke

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "lossctl"
SOURCES = sorted(PKG.rglob("*.py"))

BANNED_CALLS = {"eval", "exec", "compile", "__import__"}
BANNED_MODULES = {"pickle", "cPickle", "dill", "shelve", "marshal", "cloudpickle", "joblib", "runpy"}


def _trees():
    for path in SOURCES:
        yield path, ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def test_sources_are_found():
    assert len(SOURCES) > 20 and PKG / "cli.py" in SOURCES


def test_no_eval_exec_or_pickle():
    problems = []
    for path, tree in _trees():
        rel = path.relative_to(ROOT)
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                f = node.func
                name = f.id if isinstance(f, ast.Name) else (f.attr if isinstance(f, ast.Attribute) else None)
                if isinstance(f, ast.Name) and name in BANNED_CALLS:
                    problems.append(f"{rel}:{node.lineno}: {name}()")
                if name in ("load", "loads") and isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) \
                        and f.value.id in BANNED_MODULES | {"yaml"}:
                    problems.append(f"{rel}:{node.lineno}: {f.value.id}.{name}()")
                for kw in node.keywords:
                    if kw.arg == "allow_pickle" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False):
                        problems.append(f"{rel}:{node.lineno}: allow_pickle={ast.unparse(kw.value)}")
                    if kw.arg == "shell" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False):
                        problems.append(f"{rel}:{node.lineno}: shell={ast.unparse(kw.value)}")
                # np.load must say allow_pickle=False explicitly
                if name == "load" and isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) \
                        and f.value.id in ("np", "numpy") and not any(k.arg == "allow_pickle" for k in node.keywords):
                    problems.append(f"{rel}:{node.lineno}: np.load without allow_pickle=False")
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.split(".")[0] in BANNED_MODULES:
                        problems.append(f"{rel}:{node.lineno}: import {a.name}")
            elif isinstance(node, ast.ImportFrom):
                if (node.module or "").split(".")[0] in BANNED_MODULES:
                    problems.append(f"{rel}:{node.lineno}: from {node.module} import ...")
    assert problems == []


def test_no_eval_or_pickle_text():
    """The plain-text check the issue asks for, on code with comments and docstrings removed."""
    pat = re.compile(r"(?<![\w.])(eval|exec)\s*\(|allow_pickle\s*=\s*True|\bpickle\.loads?\(|os\.system\(")
    hits = []
    for path, tree in _trees():
        code = ast.unparse(_strip_docstrings(tree))
        hits += [f"{path.name}: {m.group(0)}" for m in pat.finditer(code)]
    assert hits == []


def _strip_docstrings(tree):
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.body \
                and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant) \
                and isinstance(node.body[0].value.value, str):
            node.body = node.body[1:] or [ast.Pass()]
    return tree


def test_the_checks_can_fail(tmp_path):
    """The scanners above do catch what they look for."""
    bad = "import pickle\nx = eval('1')\nimport numpy as np\nnp.load('a.npy', allow_pickle=True)\n"
    tree = ast.parse(bad)
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
    assert any(isinstance(c.func, ast.Name) and c.func.id == "eval" for c in calls)
    assert any(k.arg == "allow_pickle" and k.value.value is True for c in calls for k in c.keywords)
    pat = re.compile(r"(?<![\w.])(eval|exec)\s*\(|allow_pickle\s*=\s*True")
    assert len(pat.findall(ast.unparse(tree))) == 2
    assert not pat.search("res = api.evaluate(x); self._eval(y)")


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", text)[:3])


def test_pyarrow_pin_without_the_ipc_deserialisation_cve():
    """CVE-2023-47248 (arbitrary code execution reading IPC / Parquet files) is fixed in pyarrow 14.0.1."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (spec,) = [d for d in deps if re.match(r"pyarrow\b", d)]
    m = re.fullmatch(r"pyarrow\s*>=\s*([\d.]+)(,.*)?", spec.replace(" ", ""))
    assert m, spec
    assert _version_tuple(m.group(1)) >= (14, 0, 1), spec
    assert _version_tuple(version("pyarrow")) >= (14, 0, 1)


def test_plugins_load_only_through_entry_points():
    """plugins.py discovers plugins with importlib.metadata.entry_points(group='lossctl.losses') and
    nothing else: no import of a module by a name from the environment, a path or the command line."""
    tree = ast.parse((PKG / "plugins.py").read_text())
    src = (PKG / "plugins.py").read_text()
    assert 'GROUP = "lossctl.losses"' in src
    calls = {(n.func.attr if isinstance(n.func, ast.Attribute) else getattr(n.func, "id", None))
             for n in ast.walk(tree) if isinstance(n, ast.Call)}
    assert "entry_points" in calls
    assert not calls & {"import_module", "spec_from_file_location", "exec_module", "load_source", "run_path"}
    assert "os.environ" not in src and "sys.path" not in src
    # anywhere in lossctl: importlib.import_module only of lossctl's own submodules
    for path, tree in _trees():
        for n in ast.walk(tree):
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr in (
                    "import_module", "spec_from_file_location", "run_path"):
                arg = ast.unparse(n.args[0]) if n.args else ""
                assert n.func.attr == "import_module" and arg.startswith("f'{__name__}."), (path, arg)


def test_an_importable_but_uninstalled_plugin_is_not_loaded(tmp_path):
    """tests/plugin_example/my_pkg on PYTHONPATH (importable, but no installed entry point) and an
    environment that names it: its loss must not appear."""
    installed = {ep.name for ep in entry_points(group="lossctl.losses")}
    env = dict(os.environ, PYTHONPATH=str(ROOT / "tests" / "plugin_example"), LOSSCTL_PLUGINS="my_pkg",
               NO_COLOR="1")
    out = subprocess.run([sys.executable, "-c", "from lossctl.cli import main; main()", "list", "--json"],
                         capture_output=True, text=True, env=env, cwd=tmp_path, check=True)
    plugins = {d["plugin"] for d in json.loads(out.stdout) if d["plugin"]}
    assert plugins <= installed
    if "my_pkg" not in installed:
        assert not any(d["name"].startswith("asymmetric") for d in json.loads(out.stdout))


def test_credentials_are_never_printed(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAFAKEKEY0000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "sekrit-value-123")
    for args in (["s3://bucket/x.parquet?token=tok-SECRET-9", "--endpoint-url", "http://user:pw-SECRET-77@127.0.0.1:1"],
                 ["https://user:pw-SECRET-77@127.0.0.1:1/x.csv?sig=SECRET-5"]):
        res = invoke(["eval", *args, "-l", "mse"])
        assert res.exit_code == 3, res.stderr
        text = res.stdout + res.stderr
        assert res.stderr.count("\n") == 1 and "127.0.0.1" in text
        for secret in ("SECRET", "sekrit", "AKIAFAKEKEY0000", "pw-"):
            assert secret not in text, text
