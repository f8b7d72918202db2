"""Runs the bad-input corpus (tests/corpus) through the CLI, in-process.

For every case: the documented exit code; for errors exactly one line on stderr, starting with
'lossctl: error: ', naming the file / column / row the case names; nothing on stdout; no traceback; no
output file and no temporary left behind (each eval case also asks for a per-sample file with -o); the
input files untouched.  Valid cases print the value computed by hand in the case.
"""
from __future__ import annotations

import hashlib
import io
import math
import os
import re

import pytest

from conftest import invoke
from corpus import CASES

ERROR_CASES = [c for c in CASES if c.code not in (0, 1)]


def test_corpus_is_large_and_varied():
    assert len(ERROR_CASES) >= 60, len(ERROR_CASES)
    kinds = {c.id.split("-")[0] for c in CASES}
    for k in ("empty", "truncated", "corrupt", "ragged", "bom", "quoted", "mixed", "thousands", "very", "binary",
              "parquet", "nan", "minus", "1e308", "bce", "mismatched", "duplicate", "directory", "unreadable",
              "output", "gate", "config", "s3"):
        assert k in kinds, k


def _snapshot(root):
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for f in files + [x for x in dirs if os.path.islink(os.path.join(dirpath, x))]:
            p = os.path.join(dirpath, f)
            if os.path.islink(p):
                out[p] = "link:" + os.readlink(p)
            else:
                with io.open(p, "rb") as fh:  # io.open: not the open() a permission case replaces
                    out[p] = hashlib.sha256(fh.read()).hexdigest()
    return out


def _where(msg, c, d):
    low = msg.lower()
    if c.file is not None:
        if "://" in c.file or c.file.startswith("<"):
            assert c.file in msg, (c.file, msg)
        else:  # absolute, or relative to the working directory (lossctl check shows paths so)
            f = str(d / c.file)
            assert f in msg or os.path.relpath(f) in msg, (f, msg)
    if c.column is not None:
        assert f"'{c.column}'" in msg, (c.column, msg)
    if c.row is not None:
        assert re.search(rf"\brow {c.row}\b", msg), (c.row, msg)
    for w in c.contains:
        assert w.lower() in low, (w, msg)


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_case(c, tmp_path, monkeypatch):
    d = tmp_path / "in"
    d.mkdir()
    args = [str(a) for a in c.build(d)]
    if c.setup is not None:
        c.setup(d, monkeypatch)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    if c.output and args[0] == "eval" and "-o" not in args:
        args += ["-o", str(out_dir / "per_sample.parquet")]
    monkeypatch.chdir(tmp_path)
    before = _snapshot(tmp_path)
    res = invoke(args, input=c.stdin)
    after = _snapshot(tmp_path)
    assert "Traceback" not in res.stderr and "internal error" not in res.stderr, res.stderr
    assert res.exit_code == c.code, (res.exit_code, res.stdout[-500:], res.stderr)
    if c.code == 0:
        assert res.stderr == "", res.stderr
        if c.value is not None:
            got = float(res.stdout.split()[0])
            if math.isnan(c.value):
                assert math.isnan(got)
            else:
                assert got == pytest.approx(c.value, rel=1e-15, abs=0.0), (got, c.value)
        new = set(after) - set(before)
        assert new == ({str(out_dir / "per_sample.parquet")} if "-o" in args else set()), new
        return
    if c.code == 1:
        assert after == before
        return
    lines = res.stderr.splitlines()
    # Click's own usage errors (c.click_usage) are one line as well, with a pointer to --help
    assert res.stderr.endswith("\n") and len(lines) == 1, repr(res.stderr)
    assert lines[0].startswith("lossctl: error: "), res.stderr
    msg = lines[0][len("lossctl: error: "):]
    assert len(msg) < 1000, msg
    if c.click_usage:
        assert msg.endswith(" --help')"), msg
    if args[0] != "check" or c.code == 2:  # check reports every check on stdout, then exits with the error
        assert res.stdout == "", res.stdout[-500:]
    _where(msg, c, d)
    assert after == before, sorted(set(after) ^ set(before))  # inputs untouched, nothing left behind
