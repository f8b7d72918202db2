"""Plugins: losses from other packages through the ``lossctl.losses`` entry-point group.

The example package tests/plugin_example is built and installed into a temporary directory with pip (from
a copy, so no build/ or egg-info lands in the repository), and lossctl runs in a subprocess with that
directory on PYTHONPATH, exactly as a user who `pip install`ed the plugin would run it.  Broken plugins
are simulated with hand-written dist-info directories (entry points are metadata, so nothing needs
building).  Expected values come from NumPy on the sample data.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pyarrow.csv as pcsv
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "tests", "plugin_example")
SAMPLE = "sample_data/regression.csv"


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory):
    src = tmp_path_factory.mktemp("src") / "plugin_example"
    shutil.copytree(EXAMPLE, src, ignore=shutil.ignore_patterns("tests", "build", "*.egg-info", "__pycache__"))
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
                    "--quiet", "--disable-pip-version-check", "--target", str(target), str(src)],
                   check=True, capture_output=True, text=True)
    assert (target / "my_pkg" / "__init__.py").exists()
    return target


def _dist(site, name: str, entry_points: dict[str, str], modules: dict[str, str]) -> None:
    """A minimal installed distribution: dist-info with entry points, plus its modules."""
    info = site / f"{name}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    eps = "".join(f"{k} = {v}\n" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[lossctl.losses]\n{eps}")
    for mod, code in modules.items():
        (site / f"{mod}.py").write_text(textwrap.dedent(code))


@pytest.fixture(scope="module")
def broken_dir(tmp_path_factory):
    site = tmp_path_factory.mktemp("broken")
    _dist(site, "broken_plugins", {
        "raises": "raises_mod:register",
        "ghost": "no_such_module_for_lossctl:register",
        "halfway": "halfway_mod:register",
        "clash": "clash_mod:register",
    }, {
        "raises_mod": """
            def register():
                raise RuntimeError("boom")
        """,
        "halfway_mod": """
            import numpy as np
            from lossctl.registry import LossSpec, register as reg

            def register():
                reg(LossSpec(name="halfway_l1", kind="regression", fn=lambda p, t: np.abs(p - t),
                             summary="s", formula="f", reference="r"))
                raise ValueError("second loss failed")
        """,
        "clash_mod": """
            import numpy as np
            from lossctl.registry import LossSpec, register as reg

            def register():
                reg(LossSpec(name="mse", kind="regression", fn=lambda p, t: 0 * p,
                             summary="s", formula="f", reference="r"))
        """,
    })
    # an entry point that names a module registering at import, next to the broken ones
    _dist(site, "module_plugin", {"modplug": "modplug_mod"}, {"modplug_mod": """
        import numpy as np
        from lossctl.registry import LossSpec, register

        register(LossSpec(name="cubic_error", kind="regression", fn=lambda p, t: np.abs(p - t) ** 3,
                          summary="s", formula="l = |yhat - y|^3", reference="none"))
    """})
    return site


def lossctl(*args, path=()):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LOSSCTL_DEBUG")}
    env.update({"PYTHONPATH": os.pathsep.join(map(str, path)), "NO_COLOR": "1", "COLUMNS": "100"})
    return subprocess.run([sys.executable, "-m", "lossctl", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


@pytest.fixture(scope="module")
def sample():
    t = pcsv.read_csv(os.path.join(ROOT, SAMPLE))
    return t.column("y_pred").to_numpy(), t.column("y_true").to_numpy()


def _asym(pred, target, alpha):
    d = pred - target
    return np.where(d > 0, 1 - alpha, alpha) * d * d


def test_installed_plugin_end_to_end(plugin_dir, sample):
    pred, target = sample
    r = lossctl("eval", SAMPLE, "-l", "my_pkg:asymmetric_l2", "-l", "my_pkg:asymmetric_l2:alpha=0.8",
                "--format", "json", path=[plugin_dir])
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    res = json.loads(r.stdout)["results"]
    assert [x["loss"] for x in res] == ["asymmetric_l2", "asymmetric_l2"]
    assert res[0]["value"] == pytest.approx(np.mean(_asym(pred, target, 0.5)), rel=1e-12)
    assert res[1]["value"] == pytest.approx(np.mean(_asym(pred, target, 0.8)), rel=1e-12)
    assert res[1]["params"] == {"alpha": 0.8}


def test_plugin_in_list_explain_and_grad(plugin_dir, sample):
    pred, target = sample
    r = lossctl("list", "--json", path=[plugin_dir])
    assert r.returncode == 0, r.stderr
    entry = next(x for x in json.loads(r.stdout) if x["name"] == "asymmetric_l2")
    assert entry["plugin"] == "my_pkg" and "my_pkg:asymmetric_l2" in entry["aliases"]
    r = lossctl("explain", "my_pkg:asymmetric_l2", path=[plugin_dir])
    assert r.returncode == 0 and "plugin:     my_pkg" in r.stdout and "gradient:   analytic" in r.stdout
    # its own example command runs
    example = next(ln.strip() for ln in r.stdout.splitlines() if ln.strip().startswith("lossctl eval"))
    r2 = lossctl(*example.split()[1:], "--value", path=[plugin_dir])
    assert r2.returncode == 0, r2.stderr
    assert float(r2.stdout) == pytest.approx(np.mean(_asym(pred, target, 0.8)), rel=1e-12)
    # its analytic gradient through --grad
    r = lossctl("eval", SAMPLE, "-l", "my_pkg:asymmetric_l2:alpha=0.3", "--grad", "-r", "none", "--format",
                "json", "--limit", "0", path=[plugin_dir])
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)["rows"]
    d = pred - target
    np.testing.assert_allclose([row["d_asymmetric_l2(alpha=0.3)/d_pred"] for row in rows],
                               2 * np.where(d > 0, 0.7, 0.3) * d, rtol=1e-12)


def test_without_the_plugin_the_loss_is_unknown():
    r = lossctl("eval", SAMPLE, "-l", "my_pkg:asymmetric_l2")
    assert r.returncode == 2
    assert r.stderr.startswith("lossctl: error: unknown loss 'my_pkg:asymmetric_l2'") and r.stderr.count("\n") == 1


def test_broken_plugins_warn_once_each_and_do_not_break_other_commands(broken_dir, plugin_dir, sample):
    pred, target = sample
    r = lossctl("eval", SAMPLE, "-l", "mse", "-l", "modplug:cubic_error", "-l", "asymmetric_l2", "--format",
                "json", path=[broken_dir, plugin_dir])
    assert r.returncode == 0, r.stderr
    res = {x["loss"]: x["value"] for x in json.loads(r.stdout)["results"]}
    d = pred - target
    assert res["mse"] == pytest.approx(np.mean(d * d), rel=1e-12)               # the built-in, not the clash
    assert res["cubic_error"] == pytest.approx(np.mean(np.abs(d) ** 3), rel=1e-12)
    assert res["asymmetric_l2"] == pytest.approx(np.mean(_asym(pred, target, 0.5)), rel=1e-12)
    lines = r.stderr.splitlines()
    assert len(lines) == 4, r.stderr
    assert all(ln.startswith("lossctl: warning: plugin ") for ln in lines)
    assert "Traceback" not in r.stderr
    for name, why in (("raises", "RuntimeError: boom"), ("ghost", "ModuleNotFoundError"),
                      ("halfway", "ValueError: second loss failed"), ("clash", "already registered")):
        mine = [ln for ln in lines if f"plugin {name!r}" in ln]
        assert len(mine) == 1 and why in mine[0], (name, lines)
    # what a failed plugin registered before failing is gone
    r = lossctl("eval", SAMPLE, "-l", "halfway_l1", path=[broken_dir])
    assert r.returncode == 2 and "unknown loss 'halfway_l1'" in r.stderr
    # commands that never need a loss are untouched, list still works
    r = lossctl("list", "--json", path=[broken_dir])
    assert r.returncode == 0 and "cubic_error" in r.stdout and "halfway_l1" not in r.stdout
    assert lossctl("--version", path=[broken_dir]).stderr == ""


def test_plugin_example_tests_are_part_of_the_suite():
    """tests/plugin_example/tests run in the normal suite: they sit under pytest's testpaths, match its
    default file pattern, and nothing ignores them (checked statically: a nested pytest run costs seconds)."""
    with open(os.path.join(ROOT, "pyproject.toml")) as fh:
        ini = fh.read().split("[tool.pytest.ini_options]", 1)[1].split("\n[", 1)[0]   # (tomllib is 3.11+)
    assert re.search(r'^testpaths = \["tests"\]$', ini, re.M), ini
    assert "python_files" not in ini and "norecursedirs" not in ini and "--ignore" not in ini
    files = sorted(f for f in os.listdir(os.path.join(EXAMPLE, "tests")) if f.startswith("test_"))
    assert files == ["test_asymmetric_l2.py"]
    with open(os.path.join(ROOT, "tests", "conftest.py")) as fh:
        assert "collect_ignore" not in fh.read()
    with open(os.path.join(EXAMPLE, "tests", files[0])) as fh:
        code = fh.read()
    assert "from lossctl.testing import check_grad, check_invariances, isolated_registry" in code
