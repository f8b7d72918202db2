"""Output safety: atomic per-sample files, no overwrite without --force, inputs never overwritten, and
interrupted runs (SIGINT, SIGTERM) that leave no partial file and exit 130 / 143.

The signal tests run ``lossctl.cli:main`` (the console script's entry point) in a subprocess on a
large generated Parquet file with a small --batch-size (a run of several seconds), wait until the
temporary output file holds data (output has begun), send the signal and check the exit code, the one
stderr line and the directory.
"""
from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import lossctl
from conftest import dyadic_table, invoke, run_err, run_ok, write

N_BIG = 2_000_000


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    d = tmp_path_factory.mktemp("big")
    rng = np.random.default_rng(0)
    path = d / "big.parquet"
    pq.write_table(pa.table({"y_pred": rng.normal(size=N_BIG), "y_true": rng.normal(size=N_BIG)}), path,
                   row_group_size=N_BIG // 8)
    return path


def _lossctl() -> list[str]:
    return [sys.executable, "-c", "from lossctl.cli import main; main()"]


def _wait_for_output(p: subprocess.Popen, out_dir, stream=False) -> None:
    """Until a temporary file in ``out_dir`` holds bytes (or stdout has, with ``stream``)."""
    deadline = time.monotonic() + 120  # a guard against hanging, not a timed assertion
    while time.monotonic() < deadline:
        assert p.poll() is None, ("the run ended before the signal could be sent", p.returncode,
                                  p.stderr.read() if p.stderr else "")
        if stream:
            if p.stdout.peek(1) if hasattr(p.stdout, "peek") else False:
                return
        else:
            parts = [f for f in os.listdir(out_dir) if f.endswith(".part")]
            if parts and os.path.getsize(os.path.join(out_dir, parts[0])) > 0:
                return
        time.sleep(0.01)
    raise AssertionError("no output began")


@pytest.mark.parametrize("sig,code,word", [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")])
@pytest.mark.parametrize("ext", ["csv", "parquet"])
def test_signal_mid_run_leaves_no_partial_file(big, tmp_path, sig, code, word, ext):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / f"per_sample.{ext}"
    before = (big.stat().st_size, big.stat().st_mtime_ns)
    p = subprocess.Popen(_lossctl() + ["eval", str(big), "-l", "mse", "-r", "none", "-o", str(out),
                                       "--batch-size", "200", "-q"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        _wait_for_output(p, out_dir)
        p.send_signal(sig)
        stdout, stderr = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == code, (p.returncode, stderr)
    assert stderr.decode() == f"lossctl: {word}\n"
    assert stdout == b""
    assert os.listdir(out_dir) == []           # neither the file nor the temporary
    assert (big.stat().st_size, big.stat().st_mtime_ns) == before


def test_sigterm_with_force_keeps_the_previous_file(big, tmp_path):
    out = tmp_path / "per_sample.csv"
    out.write_bytes(b"previous results\n")
    p = subprocess.Popen(_lossctl() + ["eval", str(big), "-l", "mse", "-r", "none", "-o", str(out), "--force",
                                       "--batch-size", "200", "-q"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait_for_output(p, tmp_path)
        p.send_signal(signal.SIGTERM)
        _, stderr = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 143, stderr
    assert out.read_bytes() == b"previous results\n"
    assert sorted(os.listdir(tmp_path)) == ["per_sample.csv"]


def test_sigint_while_streaming_rows_to_stdout(big, tmp_path):
    out = tmp_path / "per_sample.parquet"
    p = subprocess.Popen(_lossctl() + ["eval", str(big), "-l", "mse", "-r", "none", "-f", "csv", "-o", str(out),
                                       "--batch-size", "200", "-q"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        first = p.stdout.read(64)  # rows are on stdout: output has begun
        assert first.startswith(b'"row","mse"\n')
        p.send_signal(signal.SIGINT)
        _, stderr = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, stderr
    assert stderr.decode() == "lossctl: interrupted\n"
    assert os.listdir(tmp_path) == []


# -- atomic writes, in-process --------------------------------------------------------------------------------
def test_per_sample_file_is_written_under_a_temporary_name(tmp_path):
    tbl = dyadic_table(n=50)
    src = write(tbl, tmp_path / "in.parquet")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "o.parquet"
    seen = []

    def progress(rows):
        names = os.listdir(out_dir)
        seen.append(names)
        assert "o.parquet" not in names                      # not under its name until complete
        assert len(names) == 1 and names[0].startswith(".o.parquet.") and names[0].endswith(".part")

    res = lossctl.evaluate(src, ["mse"], reduction="none", output=str(out), batch_rows=7, progress=progress)
    assert len(seen) == 8                                    # every batch was observed
    assert os.listdir(out_dir) == ["o.parquet"]
    assert pq.read_table(out).num_rows == 50 == res.rows_total


def test_per_sample_file_mode_is_as_for_a_plain_file(tmp_path, dyadic):
    """The temporary file (mkstemp: 0600) gets the mode open() would give, or the replaced file's mode."""
    _, src = dyadic
    old = os.umask(0o022)
    try:
        out = tmp_path / "o.csv"
        run_ok(["eval", src, "-l", "mse", "-r", "none", "-o", out, "-q"])
        assert stat.S_IMODE(out.stat().st_mode) == 0o644
        os.chmod(out, 0o640)
        run_ok(["eval", src, "-l", "mse", "-r", "none", "-o", out, "-q", "--force"])
        assert stat.S_IMODE(out.stat().st_mode) == 0o640
    finally:
        os.umask(old)


def test_force_replaces_and_without_force_keeps(dyadic, tmp_path):
    _, src = dyadic
    out = tmp_path / "o.csv"
    out.write_text("old\n")
    msg = run_err(["eval", src, "-l", "mse", "-r", "none", "-o", out], 2)
    assert "--force" in msg and out.read_text() == "old\n"
    run_ok(["eval", src, "-l", "mse", "-r", "none", "-o", out, "--force", "-q"])
    assert out.read_text().startswith('"row","mse"\n') and len(out.read_text().splitlines()) == 25


def test_input_is_never_overwritten(tmp_path, monkeypatch):
    tbl = dyadic_table()
    files = {ext: write(tbl, tmp_path / f"in.{ext}") for ext in ("csv", "parquet", "jsonl", "arrow")}
    before = {p: open(p, "rb").read() for p in files.values()}
    monkeypatch.chdir(tmp_path)
    for ext, p in files.items():
        for spelled in (p, os.path.basename(p), "./" + os.path.basename(p), str(tmp_path / "." / f"in.{ext}")):
            msg = run_err(["eval", p, "-l", "mse", "-r", "none", "-o", spelled, "--force"], 2)
            assert "input" in msg
    os.link(files["csv"], tmp_path / "hard.csv")  # the same file under another name (a hard link)
    msg = run_err(["eval", files["csv"], "-l", "mse", "-r", "none", "-o", tmp_path / "hard.csv", "--force"], 2)
    assert "input" in msg
    assert {p: open(p, "rb").read() for p in files.values()} == before


def test_no_temporary_left_after_an_internal_failure(tmp_path, dyadic, monkeypatch):
    """Even a bug (an unexpected exception mid-run: exit 70) leaves no output file or temporary."""
    from lossctl.io import sinks
    _, src = dyadic
    real = sinks.Sink.write
    calls = []

    def boom(self, batch):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("simulated bug")
        return real(self, batch)

    monkeypatch.setattr(sinks.Sink, "write", boom)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    res = invoke(["eval", src, "-l", "mse", "-r", "none", "-o", out_dir / "o.parquet", "--batch-size", "5"])
    assert res.exit_code == 70 and "simulated bug" in res.stderr and res.stderr.count("\n") == 1
    assert os.listdir(out_dir) == []


def test_report_files_are_written_atomically(tmp_path, monkeypatch):
    """lossctl check --junit-xml / --markdown: written to a temporary beside the target, then renamed."""
    (tmp_path / "g.csv").write_text("y_pred,y_true\n1,2\n3,3\n")
    (tmp_path / "lossctl.toml").write_text("[checks.a]\ninputs = ['g.csv']\nlosses = ['mse']\nfail_if = ['mse > 1']\n")
    monkeypatch.chdir(tmp_path)
    real = os.replace
    renames = []

    def spy(src, dst):
        src, dst = str(src), str(dst)
        assert not os.path.exists(dst)                       # nothing under the final name before the rename
        assert os.path.dirname(os.path.abspath(src)) == os.path.dirname(os.path.abspath(dst))
        assert os.path.basename(src).endswith(".part") and os.path.getsize(src) > 0
        renames.append(os.path.basename(dst))
        return real(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    res = invoke(["check", "--junit-xml", "r.xml", "--markdown", "s.md"])
    assert res.exit_code == 0, res.stderr
    assert sorted(renames) == ["r.xml", "s.md"]
    assert (tmp_path / "r.xml").read_text().startswith("<?xml")
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".part")]
