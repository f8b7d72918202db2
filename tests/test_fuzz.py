"""Fuzzing the readers and the CLI with mutated sample files (hypothesis).

Each example takes one of the files in sample_data/ with the command that evaluates it, mutates its
bytes (truncate, flip bits, insert junk, delete or duplicate a span, overwrite with text that looks like
numbers) and runs ``lossctl eval`` in-process with a per-sample output file.  The only acceptable
answers are the documented ones: exit 0 (the mutation left valid data), or exit 2 / 3 with exactly one
'lossctl: error: ' line on stderr, nothing on stdout, no traceback, never exit 1 or 70 (an internal
error), never an exception escaping; on an error no output file or temporary is left behind.

Inputs that once failed here are kept as fixed cases in tests/corpus (section "fuzz findings").
Set LOSSCTL_FUZZ_EXAMPLES=5000 (and LOSSCTL_FUZZ_RANDOM=1 for new examples on each run) to fuzz longer
locally; CI runs the default, derandomized (the same examples every time).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import invoke

SAMPLES = Path(__file__).resolve().parent.parent / "sample_data"

# file -> the eval arguments that read it (as in each loss's documented example)
TARGETS = {
    "regression.csv": ["-l", "mse,huber", "-w", "weight", "--by", "region"],
    "regression.tsv": ["-l", "mae"],
    "regression.csv.gz": ["-l", "rmse"],
    "regression.parquet": ["-l", "mse", "--by", "region"],
    "regression.arrow": ["-l", "gaussian_nll", "--var", "var"],
    "regression.jsonl": ["-l", "msle", "-w", "weight"],
    "preds.csv": ["-l", "mse", "--pred", "y_pred", "--target", "id"],
    "boxes.csv": ["-l", "giou", "--pred", "pred_x1,pred_y1,pred_x2,pred_y2", "--target", "x1,y1,x2,y2"],
    "masks.parquet": ["-l", "dice", "--pred", "prob_mask", "--target", "mask"],
    "embeddings.parquet": ["-l", "cosine_embedding", "--pred", "z_i", "--target", "z_j", "--label", "y"],
    "triplets.parquet": ["-l", "triplet", "--anchor", "a", "--pred", "p", "--target", "n"],
    "pixels.parquet": ["-l", "bce", "--pred", "p", "--target", "y"],
}
TARGETS = {k: v for k, v in TARGETS.items() if (SAMPLES / k).is_file()}
_CACHE: dict[str, bytes] = {}


def _bytes(name: str) -> bytes:
    if name not in _CACHE:
        _CACHE[name] = (SAMPLES / name).read_bytes()
    return _CACHE[name]


def mutate(data: bytes, ops) -> bytes:
    b = bytearray(data)
    for op, pos, arg in ops:
        if not b:
            break
        if isinstance(arg, int) and op != "flip":
            arg = bytes([arg])
        elif isinstance(arg, bytes) and op == "flip":
            arg = arg[0]
        i = pos % len(b)
        if op == "truncate":
            del b[i:]
        elif op == "flip":
            b[i] ^= (arg % 255) + 1
        elif op == "insert":
            b[i:i] = arg
        elif op == "delete":
            del b[i:i + 1 + len(arg) * 7]
        elif op == "duplicate":
            b[i:i] = b[i:i + 1 + len(arg) * 11]
        elif op == "text":
            b[i:i + len(arg)] = arg
    return bytes(b)


_junk = st.one_of(st.binary(min_size=1, max_size=12),
                  st.sampled_from([b",", b"\n", b'"', b"\r\n", b"nan", b"-inf", b"1e308", b"\x00", b"\xef\xbb\xbf",
                                   b"PAR1", b"ARROW1", b"{", b"}", b"\t", b";", b"-0.0", b"9" * 40]))
_op = st.tuples(st.sampled_from(["truncate", "flip", "insert", "delete", "duplicate", "text"]),
                st.integers(0, 2**31 - 1), _junk)
_op = st.one_of(_op, st.tuples(st.sampled_from(["flip"]), st.integers(0, 2**31 - 1), st.integers(0, 254)))


def check_answer(args, d: Path, out: Path, input=None, src: Path | None = None) -> None:
    res = invoke(args, input=input)
    assert "Traceback" not in res.stderr, res.stderr
    assert res.exit_code in (0, 2, 3), (res.exit_code, res.stderr[-2000:])
    if res.exit_code == 0:
        assert out.exists()
        assert all(line.startswith("lossctl: warning: ") for line in res.stderr.splitlines()), res.stderr
        return
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("lossctl: error: "), res.stderr
    assert len(lines[0]) < 1200, lines[0][:300]
    assert res.stdout == ""
    assert sorted(p.name for p in d.iterdir()) == [(src or Path(args[1])).name], list(d.iterdir())


def suffix(path: str) -> str:
    name = os.path.basename(path)
    return name[name.index("."):] if "." in name else ""


@settings(max_examples=int(os.environ.get("LOSSCTL_FUZZ_EXAMPLES", "120")), deadline=None,
          derandomize=not os.environ.get("LOSSCTL_FUZZ_RANDOM"),
          database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(name=st.sampled_from(sorted(TARGETS)), ops=st.lists(_op, min_size=1, max_size=3), stdin=st.booleans(),
       fmt=st.sampled_from(["table", "json"]))
def test_mutated_sample_files(name, ops, stdin, fmt):
    data = mutate(_bytes(name), ops)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        src = d / ("in" + suffix(name))
        src.write_bytes(data)
        out = d / "out.parquet"
        if stdin:  # the same bytes on standard input, the format from --input-format
            infmt = {".csv": "csv", ".tsv": "tsv", ".gz": "csv", ".parquet": "parquet", ".arrow": "arrow",
                   ".jsonl": "jsonl"}[os.path.splitext(name)[1]]
            check_answer(["eval", "-", *TARGETS[name], "--input-format", infmt, "-r", "none", "-o", str(out),
                          "--format", fmt], d, out, input=data, src=src)
        else:
            check_answer(["eval", str(src), *TARGETS[name], "-r", "none", "-o", str(out), "--format", fmt], d, out)


def test_fuzz_targets_exist_and_are_valid():
    """The unmutated files are accepted (so the fuzz starts from valid input)."""
    assert len(TARGETS) >= 10, sorted(TARGETS)
    for name, extra in TARGETS.items():
        with tempfile.TemporaryDirectory() as tmp:
            d = Path(tmp)
            src = d / ("in" + suffix(name))
            src.write_bytes(_bytes(name))
            res = invoke(["eval", str(src), *extra, "--value"])
            assert res.exit_code == 0, (name, res.stderr)


@pytest.mark.parametrize("name", sorted(TARGETS))
@pytest.mark.parametrize("cut", [0.0, 0.1, 0.5, 0.9, 0.999])
def test_truncated_sample_files(name, cut):
    """Every sample file cut short at a few fixed points (deterministic, cheap)."""
    data = _bytes(name)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        src = d / ("in" + suffix(name))
        src.write_bytes(data[: int(len(data) * cut)])
        out = d / "out.parquet"
        check_answer(["eval", str(src), *TARGETS[name], "-r", "none", "-o", str(out)], d, out)


CONFIG = b"""[defaults]
seed = 0

[checks.reg]
inputs = ["preds.csv", "labels.csv"]
on = "id"
losses = ["mse", "huber:delta=0.5", { name = "mae" }]
fail_if = ["mse > 5", "mae (all) > 5"]
description = "regression"

[checks.grouped]
inputs = ["regression.csv"]
columns = { weight = "weight" }
losses = ["mse"]
by = ["region"]
"""


@settings(max_examples=int(os.environ.get("LOSSCTL_FUZZ_EXAMPLES", "120")) // 2, deadline=None,
          derandomize=not os.environ.get("LOSSCTL_FUZZ_RANDOM"), database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(ops=st.lists(_op, min_size=1, max_size=3), which=st.sampled_from(["lossctl.toml", "preds.csv", "labels.csv"]))
def test_mutated_check_configuration_and_joined_inputs(ops, which):
    """lossctl check on a mutated lossctl.toml or a mutated file of a --on join: exit 0/1/2/3, the error
    (if any) one line on stderr (the checks that ran are still reported on stdout)."""
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        files = {"lossctl.toml": CONFIG, "preds.csv": _bytes("preds.csv"), "labels.csv": _bytes("labels.csv"),
                 "regression.csv": _bytes("regression.csv")}
        files[which] = mutate(files[which], ops)
        for name, data in files.items():
            (d / name).write_bytes(data)
        res = invoke(["check", "--config", str(d / "lossctl.toml"), "--junit-xml", str(d / "r.xml")])
        assert "Traceback" not in res.stderr, res.stderr
        assert res.exit_code in (0, 1, 2, 3), (res.exit_code, res.stderr[-2000:])
        errors = [ln for ln in res.stderr.splitlines() if not ln.startswith("lossctl: warning: ")]
        if res.exit_code in (2, 3):
            assert len(errors) == 1 and errors[0].startswith("lossctl: error: "), res.stderr
        if res.exit_code == 2 and "lossctl.toml" in errors[0]:   # a configuration error: nothing ran
            assert not (d / "r.xml").exists()
        assert not [p for p in d.iterdir() if p.name.endswith(".part")]


# -- option values: the hand-written parsers (-l NAME:P=V, --fail-if, --ci, --col, ...) -----------------------------
_text = st.one_of(
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=30),
    st.text(alphabet="msehubr_lpiqntacx:=,.()<>!0123456789-+eE '\"*?[]", max_size=30),
    st.sampled_from(["mse", "huber:delta=0.5", "mse > 0.1", "mse (east) > 1", "mse (region=east) <= 1e308",
                     "huber:delta=0.5 > inf", "cross_entropy:label_smoothing=0.1,ignore_index=-1", "nan", "1e999",
                     "-0", "0x10", "1_000", "(all)", "mse(all)>1", "mse >= -inf", "mse > nan", "a=b=c"]))
_OPTIONS = ["-l", "--fail-if", "--ci", "--col", "--class-weights", "--classes", "--pred", "--target", "-w", "--by",
            "--id", "--bootstrap", "--seed", "--batch-size", "--limit", "--top", "--nan-policy", "-r", "--on"]


@settings(max_examples=int(os.environ.get("LOSSCTL_FUZZ_EXAMPLES", "120")), deadline=None,
          derandomize=not os.environ.get("LOSSCTL_FUZZ_RANDOM"), database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(opts=st.lists(st.tuples(st.sampled_from(_OPTIONS), _text), min_size=1, max_size=3), loss=_text)
def test_fuzzed_option_values(opts, loss):
    """Any option text gets an answer: exit 0/1 (it happened to be valid), or 2/3 with one error line
    (Click's own usage errors included); never a traceback or an internal error."""
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "r.csv"
        src.write_bytes(_bytes("regression.csv"))
        args = ["eval", str(src), "-l", loss]
        for flag, value in opts:
            args += [flag, value]
        res = invoke(args + ["--value"])
        assert "Traceback" not in res.stderr and "internal error" not in res.stderr, res.stderr
        assert res.exit_code in (0, 1, 2, 3), (res.exit_code, res.stderr)
        if res.exit_code in (2, 3):
            lines = res.stderr.splitlines()
            assert len(lines) == 1 and lines[0].startswith("lossctl: error: "), res.stderr
