"""README.md stays true: its set-up commands are the ones CI runs, and every `lossctl` command line in its
code blocks runs on sample_data/ with the exit code it documents (``# exit N`` in a trailing comment;
0 otherwise).  Lines that need a network service (URLs, a Dask scheduler or cluster) are covered by
tests/test_remote.py and tests/test_dask.py instead and are listed here as skipped commands, not tests.
"""
from __future__ import annotations

import os
import re
import shlex

import pytest
from click.testing import CliRunner

from lossctl.cli import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
NEEDS_SERVICE = ("://", "--scheduler", "--workers", "--engine dask")


def _blocks(text: str):
    for m in re.finditer(r"^```(\w+)[^\n]*\n(.*?)^```", text, flags=re.S | re.M):
        yield m.group(1), m.group(2)


def _strip_comment(line: str) -> tuple[str, str]:
    """Split off a trailing `# comment` that is outside quotes."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1] == " "):
            return line[:i].rstrip(), line[i + 1:].strip()
    return line.rstrip(), ""


def readme_commands():
    text = open(README, encoding="utf-8").read()
    out = []
    for lang, body in _blocks(text):
        if lang not in ("bash", "console", "sh", "shell"):
            continue
        for raw in body.splitlines():
            line = raw.strip()
            if lang == "console":
                if not line.startswith("$ "):
                    continue
                line = line[2:]
            cmd, comment = _strip_comment(line)
            if "lossctl " not in cmd or cmd.startswith(("pip ", "python ")):
                continue
            out.append((cmd, comment))
    return out


def _expected_exit(comment: str) -> int:
    m = re.search(r"\bexit (\d+)", comment)
    return int(m.group(1)) if m else 0


COMMANDS = readme_commands()


def test_readme_opens_with_the_two_setup_commands_ci_runs():
    text = open(README, encoding="utf-8").read()
    lang, first = next(_blocks(text))
    lines = [ln for ln in first.splitlines() if ln.strip()]
    assert lines[0].startswith("pip install . && lossctl eval sample_data/")
    assert lines[1] == 'pip install -e ".[test]" && python -m pytest -q'
    ci = open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8").read()
    assert 'pip install -q -e ".[test]"' in ci and "python -m pytest -q\n" in ci


def test_readme_has_commands():
    assert len(COMMANDS) >= 10


@pytest.mark.parametrize("cmd,comment", [c for c in COMMANDS if not any(s in c[0] for s in NEEDS_SERVICE)],
                         ids=lambda v: v if isinstance(v, str) and v.startswith(("lossctl", "cat")) else "")
def test_readme_command_runs(cmd, comment, tmp_path, monkeypatch):
    for name in ("sample_data", "docs", "tests"):
        if os.path.exists(os.path.join(ROOT, name)):
            os.symlink(os.path.join(ROOT, name), tmp_path / name)
    monkeypatch.chdir(tmp_path)
    stdin = None
    if "|" in cmd:
        parts = [p.strip() for p in cmd.split("|")]
        lossctl_part = next(p for p in parts if p.startswith("lossctl "))
        before = parts[: parts.index(lossctl_part)]
        if before:
            producer = shlex.split(before[-1])
            assert producer[0] == "cat", f"unsupported README pipe: {cmd}"
            stdin = open(producer[1], "rb").read()
        cmd = lossctl_part
    argv = shlex.split(cmd)
    assert argv[0] == "lossctl"
    res = CliRunner().invoke(cli, argv[1:], input=stdin)
    want = _expected_exit(comment)
    assert res.exit_code == want, (f"README command `{cmd}` exited {res.exit_code} (README says {want}):\n"
                                   f"{res.stderr}{res.exception!r}")
    if want == 0:
        assert res.stdout.strip() or res.stderr.strip(), f"`{cmd}` printed nothing"


def test_use_in_ci_config_is_the_sample_config():
    """The complete configuration that README's "Use in CI" shows is sample_data/ci/lossctl.toml, byte for
    byte, so the README example is the one `lossctl check --config sample_data/ci/lossctl.toml` runs."""
    text = open(README, encoding="utf-8").read()
    section = text.split("\n## Use in CI", 1)[1].split("\n## ", 1)[0]
    tomls = [body for lang, body in _blocks(section) if lang == "toml"]
    sample = open(os.path.join(ROOT, "sample_data", "ci", "lossctl.toml"), encoding="utf-8").read()
    assert sample in tomls, "README's Use in CI toml block differs from sample_data/ci/lossctl.toml"
