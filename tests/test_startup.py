"""Start-up stays light: `lossctl --help` imports no NumPy/pyarrow, a small evaluation no pandas.

Timing is measured in benchmarks/ (not asserted here); these tests pin down the imports that decide it.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

HEAVY = ("pandas", "torch", "sklearn", "scipy", "matplotlib", "dask", "distributed", "polars", "duckdb",
         "fsspec", "pyarrow.dataset")

PROBE = r"""
import json, sys
from lossctl.cli import main
try:
    main({argv!r})
except SystemExit as e:
    code = e.code
print(json.dumps({{"code": code, "modules": sorted(sys.modules)}}), file=sys.stderr)
"""


def _run(argv, cwd):
    proc = subprocess.run([sys.executable, "-c", PROBE.format(argv=argv)], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    last = proc.stderr.strip().splitlines()[-1]
    return proc, json.loads(last)


def _root():
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_help_imports_only_click():
    proc, info = _run(["--help"], _root())
    assert info["code"] in (0, None)
    assert "Usage" in proc.stdout
    loaded = set(info["modules"])
    for mod in ("numpy", "pyarrow", "rich", *HEAVY):
        assert mod not in loaded, f"`lossctl --help` imported {mod}"


def test_small_eval_avoids_heavy_modules(tmp_path):
    path = tmp_path / "small.csv"
    rows = ["y_true,y_pred"] + [f"{i * 0.5},{i * 0.5 + (i % 3) * 0.1}" for i in range(1000)]
    path.write_text("\n".join(rows) + "\n")
    proc, info = _run(["eval", str(path), "-l", "mse"], _root())
    assert info["code"] in (0, None), proc.stderr
    assert "mse" in proc.stdout
    loaded = set(info["modules"])
    for mod in HEAVY:
        assert mod not in loaded, f"a small `lossctl eval` imported {mod}"
    # plugins' entry points are read only when a loss is not a built-in (or the registry is listed)
    assert "importlib.metadata" not in loaded
    # a small CSV of plain numbers is parsed without pyarrow (~35 ms of start-up)
    assert "pyarrow" not in loaded
    # CI gates and the bootstrap only when asked for
    assert "lossctl.gates" not in loaded and "lossctl.bootstrap" not in loaded


def test_small_eval_from_stdin_avoids_pyarrow(tmp_path):
    rows = "y_true,y_pred\n" + "".join(f"{i},{i + 0.5}\n" for i in range(100))
    probe = PROBE.format(argv=["eval", "-", "-l", "mse", "--value"])
    proc = subprocess.run([sys.executable, "-c", probe], input=rows, capture_output=True, text=True,
                          cwd=_root())
    info = json.loads(proc.stderr.strip().splitlines()[-1])
    assert info["code"] in (0, None), proc.stderr
    assert float(proc.stdout) == 0.25
    assert "pyarrow" not in set(info["modules"])


def test_small_csv_with_text_still_reads(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("y_true,y_pred\ncat,0.9\ndog,0.2\ncat,0.6\n")
    proc, info = _run(["eval", str(path), "-l", "log_loss", "--value"], _root())
    assert info["code"] in (0, None), proc.stderr
    import math
    expected = -(math.log(0.1) + math.log(0.2) + math.log(0.4)) / 3  # classes sorted: cat=0, dog=1
    assert abs(float(proc.stdout) - expected) < 1e-12
    assert "pyarrow" in set(info["modules"])  # the text column goes through pyarrow's reader


def test_unknown_loss_name_reads_plugin_entry_points(tmp_path):
    path = tmp_path / "small.csv"
    path.write_text("y_true,y_pred\n1,2\n")
    proc, info = _run(["eval", str(path), "-l", "no_such_loss_anywhere"], _root())
    assert info["code"] == 2, proc.stderr
    assert "importlib.metadata" in set(info["modules"])


def test_parquet_eval_avoids_pandas(tmp_path):
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    x = np.linspace(0, 1, 5000)
    pq.write_table(pa.table({"y_true": x, "y_pred": x * 1.1}), tmp_path / "p.parquet")
    proc, info = _run(["eval", str(tmp_path / "p.parquet"), "-l", "mse,mae", "--value"], _root())
    assert info["code"] in (0, None), proc.stderr
    expected = float(np.mean((x * 1.1 - x) ** 2))
    assert abs(float(proc.stdout.split()[0]) - expected) <= 1e-12 * expected
    assert "pandas" not in set(info["modules"])


def test_console_script_entry_flushes_and_keeps_exit_codes(tmp_path):
    """`python -m lossctl` runs lossctl.cli:run, the console script's entry: it leaves with os._exit after
    flushing, so the output must all be there, the exit codes must be main()'s, and a reader that closes
    the pipe early must not produce an 'Exception ignored' message."""
    path = tmp_path / "r.csv"
    rows = ["y_true,y_pred"] + [f"{i * 0.5},{i * 0.5 + (i % 3) * 0.25}" for i in range(20000)]
    path.write_text("\n".join(rows) + "\n")
    run = [sys.executable, "-m", "lossctl"]
    ok = subprocess.run(run + ["eval", str(path), "-l", "mse", "-r", "none", "-f", "csv"], capture_output=True,
                        text=True, cwd=_root())
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.count("\n") == 20001 and ok.stdout.rstrip().endswith(",0.0625")   # every row, flushed
    bad = subprocess.run(run + ["eval", str(tmp_path / "missing.csv"), "-l", "mse"], capture_output=True,
                         text=True, cwd=_root())
    assert bad.returncode == 3 and bad.stdout == "" and bad.stderr.count("\n") == 1
    usage = subprocess.run(run + ["eval", str(path), "-l", "mse", "--no-such-flag"], capture_output=True,
                           text=True, cwd=_root())
    assert usage.returncode == 2 and usage.stderr.startswith("lossctl: error: No such option")
    head = subprocess.run(" ".join(run + ["eval", str(path), "-l", "mse", "-r", "none", "-f", "csv"]) + " | head -1",
                          shell=True, capture_output=True, text=True, cwd=_root())
    assert head.stdout.strip() == '"row","mse"' and "Exception" not in head.stderr and "Traceback" not in head.stderr


def test_data_commands_use_the_jemalloc_pool_before_reading(tmp_path):
    """The CLI's memory pool is set when pyarrow is loaded, before any reader allocates from it."""
    import pyarrow as pa
    if not hasattr(pa, "jemalloc_memory_pool"):
        return  # a build without jemalloc keeps its default pool (nothing to check)
    import pyarrow.parquet as pq
    pq.write_table(pa.table({"y_true": [1.0, 2.0], "y_pred": [1.5, 2.5]}), tmp_path / "p.parquet")
    probe = r"""
import sys
from lossctl.io import sources
seen = []
real_open = sources._LocalParquet.open.__func__
def spy(cls, *a, **k):
    import pyarrow
    seen.append(pyarrow.default_memory_pool().backend_name)
    return real_open(cls, *a, **k)
sources._LocalParquet.open = classmethod(spy)
from lossctl.cli import main
try:
    main(["eval", sys.argv[1], "-l", "mse", "--value"])
except SystemExit:
    pass
print("POOLS", seen, file=sys.stderr)
"""
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    proc = subprocess.run([sys.executable, "-c", probe, str(tmp_path / "p.parquet")], capture_output=True,
                          text=True, cwd=_root(), env=env)
    assert proc.stdout.strip() == "0.25", proc.stderr
    pools = eval(proc.stderr.strip().splitlines()[-1].split(" ", 1)[1])
    assert pools and set(pools) == {"jemalloc"}, proc.stderr


def test_lazy_pyarrow_module_loads_on_first_use_and_runs_hooks_once():
    probe = r"""
import sys
from lossctl import _pa
calls = []
_pa.on_import(lambda mod: calls.append(mod.__name__))
assert "pyarrow" not in sys.modules and calls == []
t = _pa.pa.float64()             # first attribute: imports pyarrow, runs the hook
assert "pyarrow" in sys.modules and calls == ["pyarrow"]
assert _pa.pa.float64 is sys.modules["pyarrow"].float64 and str(t) == "double"
_pa.load()
_pa.on_import(lambda mod: calls.append("late"))   # after loading: runs at once
assert calls == ["pyarrow", "late"], calls
print("ok")
"""
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=_root())
    assert proc.stdout.strip() == "ok", proc.stderr


def test_console_entry_quiets_blas_workers_before_numpy_loads():
    """run() (the console script, `python -m lossctl`) sets OPENBLAS_THREAD_TIMEOUT before NumPy is imported
    (OpenBLAS reads it once, when it starts its workers); a value the user set is kept."""
    probe = r"""
import os, sys
import lossctl.cli as c
def fake_main(argv=None):
    print("SEEN", os.environ.get("OPENBLAS_THREAD_TIMEOUT"), "numpy" in sys.modules, file=sys.stderr)
    import numpy  # what an eval does next: OpenBLAS starts here and reads the variable
    sys.exit(0)
c.main = fake_main
c.run()
"""
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=_root(), env=env)
    assert proc.returncode == 0 and "SEEN 4 False" in proc.stderr, proc.stderr
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=_root(),
                          env={**env, "OPENBLAS_THREAD_TIMEOUT": "28"})
    assert proc.returncode == 0 and "SEEN 28 False" in proc.stderr, proc.stderr
    # a library user's process is left alone
    lib = subprocess.run([sys.executable, "-c", "import os, lossctl.api; print(os.environ.get('OPENBLAS_THREAD_TIMEOUT'))"],
                         capture_output=True, text=True, cwd=_root(), env=env)
    assert lib.stdout.strip() == "None", lib.stderr


_REG = ["eval", "sample_data/regression.csv", "-l", "mse,mae"]
_CMP = ["compare", "sample_data/ci/baseline.parquet", "sample_data/ci/candidate.parquet", "--on", "id", "-l", "mse"]


@pytest.mark.parametrize("args,code", [
    (_REG + ["-f", "table"], 0), (_REG + ["-r", "none"], 0), (_REG + ["-r", "none", "-f", "csv"], 0),
    (_REG + ["-f", "json"], 0), (_REG + ["--value"], 0),
    # with gates the output is dropped and the gates still decide: a failed one exits 1, not 0
    (_REG + ["--fail-if", "mse > 0.0001"], 1), (_REG + ["--fail-if", "mse > 100"], 0),
    (_REG + ["-r", "none", "-f", "csv", "--fail-if", "mse > 0.0001"], 1),
    (_REG + ["-f", "json", "--fail-if", "mse > 0.0001"], 1),
    (_CMP + ["--max-regression", "0%"], 1), (_CMP + ["--max-regression", "50%"], 0),
    (["check", "-c", "sample_data/ci/lossctl.toml"], 0), (["list"], 0),
])
def test_a_reader_gone_before_the_output_is_not_an_error(args, code):
    """`lossctl ... | head -1`: when the reader of stdout has gone, the output is not an error (rich's own
    handling would exit 1, a failed gate in lossctl's codes), and a command with gates still exits 1 when one
    fails (the gates run after the output).  The pipe's read end is closed before lossctl starts, so every
    write fails: no race with a real reader."""
    r, w = os.pipe()
    os.close(r)
    try:
        proc = subprocess.run([sys.executable, "-m", "lossctl", *args], stdout=w, stderr=subprocess.PIPE, text=True,
                              cwd=_root(), timeout=120)
    finally:
        os.close(w)
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr and "Broken" not in proc.stderr and "Exception" not in proc.stderr
    if code == 0:
        assert proc.stderr == ""
    else:
        assert proc.stderr.splitlines()[-1].startswith("lossctl: error: 1 of 1 quality gate(s) failed")


def test_pyarrow_loads_without_importing_cloudpickle_which_stays_importable():
    """pyarrow.lib imports cloudpickle (installed with Dask) and then rebinds the name to the standard pickle;
    lossctl loads pyarrow with that import refused (5-8 ms of start-up) and allows it again at once.  The
    first probe pins pyarrow's behaviour down: if pyarrow.lib ever keeps cloudpickle, the refusal must go."""
    plain = ("import pickle, sys, pyarrow.lib\n"
             "print(pyarrow.lib.pickle is pickle, 'cloudpickle' in sys.modules)")
    ours = ("import pickle, sys\nfrom lossctl import _pa\npa = _pa.load()\nimport pyarrow.lib\n"
            "before = 'cloudpickle' in sys.modules\nimport cloudpickle\n"
            "print(pyarrow.lib.pickle is pickle, before, cloudpickle.__name__, type(sys.modules['cloudpickle']).__name__)")
    got_plain = subprocess.run([sys.executable, "-c", plain], capture_output=True, text=True, cwd=_root())
    got_ours = subprocess.run([sys.executable, "-c", ours], capture_output=True, text=True, cwd=_root())
    assert got_plain.stdout.split() == ["True", "True"], got_plain.stderr  # cloudpickle imported, then unused
    assert got_ours.stdout.split() == ["True", "False", "cloudpickle", "module"], got_ours.stderr
