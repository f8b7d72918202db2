"""``lossctl check``: the TOML configuration (lossctl.toml, [tool.lossctl] of pyproject.toml), config
errors naming file, key and line, JUnit XML and Markdown reports, and the reproducibility signature.

The README's "Use in CI" example is sample_data/ci/lossctl.toml itself, run here, so it cannot rot.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import time
import xml.etree.ElementTree as ET

import numpy
import pyarrow
import pytest

import lossctl
from conftest import invoke, run_err
from lossctl import checkcfg, signature

HERE = os.path.dirname(os.path.abspath(__file__))
CI_DIR = os.path.join(os.path.dirname(HERE), "sample_data", "ci")
EXAMPLE = os.path.join(CI_DIR, "lossctl.toml")


@pytest.fixture
def ci_dir(tmp_path):
    """A copy of sample_data/ci (data and example config) to run checks in."""
    d = tmp_path / "proj"
    shutil.copytree(CI_DIR, d, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    return d


def ref(name: str, loss: str = "mse", region: str | None = None, weighted: bool = False) -> tuple[float, int]:
    """(value, rows) of a loss on a sample file, computed here with math.fsum, independently of lossctl."""
    import math

    import pyarrow.parquet as pq
    t = pq.read_table(os.path.join(CI_DIR, name)).to_pydict()
    rows = [i for i, r in enumerate(t["region"]) if region is None or r == region]
    f = (lambda p, y: (p - y) ** 2) if loss == "mse" else (lambda p, y: abs(p - y))
    w = [t["weight"][i] if weighted else 1.0 for i in rows]
    return math.fsum(wi * f(t["y_pred"][i], t["y_true"][i]) for wi, i in zip(w, rows)) / math.fsum(w), len(rows)


def write_cfg(d, text: str, name: str = "lossctl.toml") -> str:
    p = d / name
    p.write_text(text)
    return str(p)


FAILING = """\
[checks.strict]
inputs = ["candidate.parquet"]
losses = ["mse", "mae"]
by = "region"
fail_if = ["mse > 0.3", "mae (all) > 1"]

[checks.relaxed]
inputs = ["candidate.parquet"]
losses = ["mse"]
fail_if = "mse > 1"
"""


# -- the README example ------------------------------------------------------------------------------------
def test_readme_example_config_loads_and_passes(tmp_path, monkeypatch):
    cfg = checkcfg.load(EXAMPLE)
    assert [c.name for c in cfg.checks] == ["absolute", "vs_baseline"]
    absolute, vs = cfg.checks
    assert absolute.seed == 7 and absolute.ci == 0.95 and absolute.bootstrap == 1000
    assert absolute.by == ["region"] and absolute.weight == "weight"
    assert [g.expr for g in absolute.fail_if] == ["mse > 0.35", "mae (all) > 0.4", "huber:delta=0.5 (region=west) > 0.2"]
    [comp] = vs.compare
    assert comp.margin.relative and comp.margin.value == pytest.approx(0.2) and comp.gate_mode == "ci"
    # run from elsewhere: paths are relative to the configuration file
    monkeypatch.chdir(tmp_path)
    res = invoke(["check", "--config", EXAMPLE, "-f", "json"])
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["passed"] is True
    assert doc["summary"] == {"checks": 2, "gates": 9, "failed_gates": 0, "errors": 0}


def test_example_config_found_from_a_subdirectory(ci_dir, monkeypatch):
    (ci_dir / "sub" / "deeper").mkdir(parents=True)
    monkeypatch.chdir(ci_dir / "sub" / "deeper")
    res = invoke(["check", "--list"])
    assert res.exit_code == 0
    assert res.stdout.splitlines() == [
        "absolute: ../../candidate.parquet (mse, mae, huber:delta=0.5)",
        "vs_baseline: ../../candidate.parquet (mse, mae)"]


# -- exit codes ----------------------------------------------------------------------------------------------
def test_failed_gate_exits_1_after_running_every_check(ci_dir, monkeypatch):
    monkeypatch.chdir(ci_dir)
    write_cfg(ci_dir, FAILING)
    res = invoke(["check"])
    assert res.exit_code == 1
    out = res.stdout
    assert "check strict: FAIL (5 of 6 gates passed" in out and "check relaxed: PASS (1 of 1 gates passed" in out
    assert out.rstrip().endswith("2 check(s): 6 of 7 gates passed, 1 failed")
    west, _ = ref("candidate.parquet", region="west")
    assert west > 0.3 and all(ref("candidate.parquet", region=r)[0] <= 0.3 for r in ("east", "north", "south"))
    assert res.stderr == ("lossctl: error: 1 of 7 quality gate(s) failed in check(s) strict: "
                          f"mse (region=west) = {west:.6g} > 0.3\n")
    # only the check that passes
    assert invoke(["check", "relaxed"]).exit_code == 0
    assert "no check named 'strcit'; did you mean strict?" in run_err(["check", "strcit"], 2)


def test_input_error_in_one_check_is_reported_and_the_others_still_run(ci_dir, monkeypatch):
    monkeypatch.chdir(ci_dir)
    write_cfg(ci_dir, FAILING.replace('inputs = ["candidate.parquet"]\nlosses = ["mse"]',
                                      'inputs = ["missing.parquet"]\nlosses = ["mse"]'))
    res = invoke(["check", "--junit-xml", "r.xml", "-f", "json"])
    assert res.exit_code == 3
    doc = json.loads(res.stdout)
    strict, relaxed = doc["checks"]
    assert strict["passed"] is False and len(strict["gates"]) == 6
    assert relaxed["error"]["exit_code"] == 3 and "missing.parquet" in relaxed["error"]["message"]
    root = ET.parse(ci_dir / "r.xml").getroot()
    suite = root.find("testsuite[@name='relaxed']")
    assert suite.get("errors") == "1" and suite.find("testcase/error") is not None
    assert root.get("errors") == "1" and root.get("failures") == "1"


# -- JUnit XML -----------------------------------------------------------------------------------------------
def test_junit_xml_has_one_testcase_per_gate(ci_dir, monkeypatch):
    monkeypatch.chdir(ci_dir)
    write_cfg(ci_dir, FAILING)
    res = invoke(["check", "--junit-xml", "out/report.xml"])
    assert res.exit_code == 2 and "out/report.xml: directory" in res.stderr     # no such directory: usage error
    (ci_dir / "out").mkdir()
    res = invoke(["check", "--junit-xml", "out/report.xml"])
    assert res.exit_code == 1
    assert os.listdir(ci_dir / "out") == ["report.xml"]                # written whole, no temporary left
    root = ET.parse(ci_dir / "out" / "report.xml").getroot()
    assert root.tag == "testsuites"
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == ["strict", "relaxed"]
    total = {"tests": 0, "failures": 0, "errors": 0}
    for s in suites:
        for attr in ("name", "tests", "failures", "errors", "time", "timestamp"):
            assert s.get(attr) is not None, attr
        cases = s.findall("testcase")
        assert int(s.get("tests")) == len(cases)
        assert int(s.get("failures")) == len([c for c in cases if c.find("failure") is not None])
        for c in cases:
            assert c.get("name") and c.get("classname") == f"lossctl.check.{s.get('name')}"
            float(c.get("time"))
        for k in total:
            total[k] += int(s.get(k))
        float(s.get("time"))
    assert {k: int(root.get(k)) for k in total} == total == {"tests": 7, "failures": 1, "errors": 0}
    strict = suites[0]
    names = [c.get("name") for c in strict.findall("testcase")]
    assert names == ["mse > 0.3", "mse > 0.3 [region=east]", "mse > 0.3 [region=north]", "mse > 0.3 [region=south]",
                     "mse > 0.3 [region=west]", "mae (all) > 1"]
    [failed] = [c for c in strict.findall("testcase") if c.find("failure") is not None]
    f = failed.find("failure")
    assert failed.get("name") == "mse > 0.3 [region=west]"
    west, _ = ref("candidate.parquet", region="west")
    assert f.get("message") == f"mse (region=west) = {west:.6g} > 0.3" and f.get("type") == "GateFailed"
    lines = f.text.splitlines()
    assert lines[0] == "gate: mse > 0.3" and lines[1] == "group: region=west"
    assert float(lines[2].removeprefix("value: ")) == pytest.approx(west, rel=1e-14)
    assert lines[3] == "fails if: value > 0.3"
    props = {p.get("name"): p.get("value") for p in strict.find("properties")}
    assert float(props["mse [region=west]"]) == pytest.approx(west, rel=1e-14)
    assert float(props["mae"]) == pytest.approx(ref("candidate.parquet", "mae")[0], rel=1e-14)


@pytest.mark.parametrize("target", ["candidate.parquet", "baseline.parquet", "lossctl.toml"])
def test_a_report_never_replaces_an_input(ci_dir, monkeypatch, target):
    monkeypatch.chdir(ci_dir)
    before = (ci_dir / target).read_bytes()
    for opt in ("--junit-xml", "--markdown"):
        msg = run_err(["check", opt, target], 2)
        assert msg.startswith(f"{target}: is ") and "which the checks read" in msg
    assert (ci_dir / target).read_bytes() == before


def test_reports_on_stdout(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = invoke(["check", "--config", EXAMPLE, "--junit-xml", "-"])
    assert res.exit_code == 0
    assert ET.fromstring(res.stdout.split("\n", 1)[1]).get("tests") == "9"
    assert not os.path.exists(tmp_path / "-")
    for args in (["--junit-xml", "-", "--markdown", "-"], ["--markdown", "-", "-f", "json"]):
        res = invoke(["check", "--config", EXAMPLE, *args])
        assert res.exit_code == 2 and "would both write to standard output" in res.stderr


def test_junit_and_markdown_for_a_passing_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = invoke(["check", "--config", EXAMPLE, "--junit-xml", "r.xml", "--markdown", "s.md"])
    assert res.exit_code == 0
    root = ET.parse(tmp_path / "r.xml").getroot()
    assert root.get("tests") == "9" and root.get("failures") == "0"
    assert not root.findall(".//failure") and not root.findall(".//error")
    md = (tmp_path / "s.md").read_text()
    assert md.startswith("## ✅ lossctl check: ")
    assert md.splitlines()[0].endswith(": 9 of 9 gates passed")
    # reports are ordinary files (the umask's mode), not the 0600 of the temporary file they were written to
    umask = os.umask(0o022)
    os.umask(umask)
    for name in ("r.xml", "s.md"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~umask
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".part")]


# -- Markdown ------------------------------------------------------------------------------------------------
def test_markdown_summary(ci_dir, monkeypatch):
    monkeypatch.chdir(ci_dir)
    write_cfg(ci_dir, FAILING + """
[checks.compare]
inputs = ["candidate.parquet"]
on = "id"
losses = ["mse"]
compare = { baseline = "baseline.parquet", max_regression = 0.05, gate_mode = "point", bootstrap = 200 }
""")
    res = invoke(["check", "--markdown", "-"])
    assert res.exit_code == 1
    md = res.stdout.splitlines()
    assert md[0] == "## ❌ lossctl check: lossctl.toml: 7 of 8 gates passed, 1 failed"
    assert "### ❌ strict" in md and "### ✅ relaxed" in md and "### ✅ compare" in md
    assert "| loss | region | mean | rows |" in md
    west, n_west = ref("candidate.parquet", region="west")
    east, _ = ref("candidate.parquet", region="east")
    assert f"| mse | region=west | {west:.6g} | {n_west} |" in md
    assert f"| `mse > 0.3` | region=west | {west:.6g} | > 0.3 | ❌ FAIL |" in md
    assert f"| `mse > 0.3` | region=east | {east:.6g} | > 0.3 | ✅ pass |" in md
    i = md.index("| loss | group | baseline | candidate | delta | delta % | CI | p |")
    b, c = ref("baseline.parquet")[0], ref("candidate.parquet")[0]
    assert md[i + 2].startswith(f"| mse | (all) | {b:.6g} | {c:.6g} | {c - b:.6g} | {(c - b) / b * 100:+.3g}% | ")
    assert f"| `mse max-regression 0.05 (point)` | (all) | {c - b:.6g} | > 0.05 | ✅ pass |" in md
    assert any(ln.startswith("Compared with baseline `baseline.parquet`") and "paired bootstrap" in ln for ln in md)
    # pipes in names cannot break a table
    from lossctl import report
    assert report._md("a|b") == "a\\|b"


# -- signature -----------------------------------------------------------------------------------------------
def test_signature_fields_and_sha256(ci_dir, monkeypatch):
    monkeypatch.chdir(ci_dir)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "hunter2-very-secret")
    res = invoke(["eval", "candidate.parquet", "-l", "huber:delta=0.5", "-l", "mse", "-r", "sum", "--ci", "0.9",
                  "--seed", "13", "-f", "json"])
    assert res.exit_code == 0
    sig = json.loads(res.stdout)["signature"]
    assert sig["lossctl"] == lossctl.__version__
    assert sig["numpy"] == numpy.__version__ and sig["pyarrow"] == pyarrow.__version__
    assert sig["losses"] == [{"loss": "huber", "label": "huber(delta=0.5)", "params": {"delta": 0.5}},
                             {"loss": "mse", "label": "mse", "params": {}}]
    assert sig["reduction"] == "sum" and sig["seed"] == 13
    [inp] = sig["inputs"]
    want = hashlib.sha256((ci_dir / "candidate.parquet").read_bytes()).hexdigest()
    assert inp == {"path": "candidate.parquet", "rows": 400, "role": "predictions+targets", "sha256": want}
    assert "hunter2" not in res.stdout
    # without a bootstrap there is no seed
    res = invoke(["eval", "candidate.parquet", "-l", "mse", "-f", "json"])
    assert json.loads(res.stdout)["signature"]["seed"] is None


def test_signature_of_a_check_lists_every_input(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = invoke(["check", "--config", EXAMPLE, "-f", "json"])
    doc = json.loads(res.stdout)
    sig = doc["signature"]
    paths = {os.path.basename(i["path"]): i for i in sig["inputs"]}
    assert set(paths) == {"candidate.parquet", "baseline.parquet"}
    for name, i in paths.items():
        assert i["sha256"] == hashlib.sha256(open(os.path.join(CI_DIR, name), "rb").read()).hexdigest()
        assert i["rows"] == 400
    assert sig["seed"] == 7
    # each check's own documents carry theirs
    assert doc["checks"][0]["eval"]["signature"]["seed"] == 7
    assert doc["checks"][1]["comparisons"][0]["signature"]["seed"] == 7


def test_signature_of_a_directory_hashes_each_file(tmp_path):
    import pyarrow.parquet as pq
    tbl = pq.read_table(os.path.join(CI_DIR, "candidate.parquet"))
    d = tmp_path / "parts"
    d.mkdir()
    pq.write_table(tbl.slice(0, 150), d / "a.parquet")
    pq.write_table(tbl.slice(150), d / "b.parquet")
    res = invoke(["eval", str(d), "-l", "mse", "-f", "json"])
    [inp] = json.loads(res.stdout)["signature"]["inputs"]
    assert inp["rows"] == 400
    assert [(os.path.basename(f["path"]), f["sha256"]) for f in inp["files"]] == [
        (n, hashlib.sha256((d / n).read_bytes()).hexdigest()) for n in ("a.parquet", "b.parquet")]


def test_signature_hashes_are_computed_beside_the_run(tmp_path, monkeypatch):
    """`eval -f json` hashes its inputs in a background thread while the run reads them: the JSON carries
    the same SHA-256 (each file read once for it), a file changed afterwards is hashed again, and inputs
    that are not local files start nothing."""
    from lossctl import signature
    p = tmp_path / "p.csv"
    p.write_text("y_true,y_pred\n" + "".join(f"{i / 3!r},{i / 7!r}\n" for i in range(2000)))
    monkeypatch.setattr(signature, "_CACHE", {})
    opened = []
    real_open = open

    def counting_open(f, *a, **k):
        if str(f) == str(p) and a[:1] == ("rb",):
            opened.append(threading.current_thread().name)
        return real_open(f, *a, **k)
    monkeypatch.setattr("builtins.open", counting_open)
    res = invoke(["eval", p, "-l", "mse", "-f", "json"])
    [inp] = json.loads(res.stdout)["signature"]["inputs"]
    assert inp["sha256"] == hashlib.sha256(p.read_bytes()).hexdigest()
    assert opened.count("lossctl-sha256") == 1 and not signature._PREFETCH  # hashed once, by the prefetch
    # changed after the prefetch: hashed again where the signature is built
    signature.prefetch([str(p)])
    time.sleep(0.01)
    p.write_text("y_true,y_pred\n1,2\n")
    os.utime(p, ns=(1, 1))
    assert signature.sha256_file(str(p)) == hashlib.sha256(p.read_bytes()).hexdigest()
    # standard input, URLs, missing paths: nothing to hash ahead
    before = threading.active_count()
    signature.prefetch(["-", "s3://bucket/x.parquet", str(tmp_path / "missing.csv")])
    assert not signature._PREFETCH and threading.active_count() == before


@pytest.mark.parametrize("url, want", [
    ("s3://AKIA:secretkey@bucket/p.parquet", "s3://bucket/p.parquet"),
    ("https://user:pw@host:8443/data/p.parquet?X-Amz-Signature=abc&X-Amz-Credential=x#frag",
     "https://host:8443/data/p.parquet"),
    ("gs://bucket/dir/", "gs://bucket/dir/"),
    ("local/p.csv", "local/p.csv"),
])
def test_signature_never_keeps_credentials(url, want):
    assert signature.safe_path(url) == want
    entry = signature.input_entry({"path": url, "rows": 3})
    assert entry["path"] == want
    assert "secret" not in json.dumps(entry) and "pw" not in json.dumps(entry).replace("p.parquet", "")


# -- configuration errors: file, key and line -----------------------------------------------------------------
GOOD_CHECK = '[checks.a]\ninputs = ["candidate.parquet"]\nlosses = ["mse"]\n'


@pytest.mark.parametrize("text, line, key, needle", [
    ('[checks.a]\ninputs = ["candidate.parquet"]\nlosses = ["mse",\n  "msee"]\n', 4, "checks.a.losses[1]",
     "unknown loss 'msee'"),
    (GOOD_CHECK + 'fail_if = ["mse > 0.3",\n   "mse >> 1"]\n', 5, "checks.a.fail_if[1]", "fail_if 'mse >> 1'"),
    (GOOD_CHECK + 'fail_if = "mae > 1"\n', 4, "checks.a.fail_if[0]", "add 'mae' to the losses"),
    (GOOD_CHECK + "threshold = 3\n", 4, "checks.a.threshold", "unknown key"),
    (GOOD_CHECK + "by = 3\n", 4, "checks.a.by", "must be a string or a list of strings, got an integer"),
    (GOOD_CHECK + "ci = 2\n", 4, "checks.a.ci", "between 0 and 1"),
    (GOOD_CHECK + "bootstrap = 3\n", 4, "checks.a.bootstrap", "at least 10"),
    (GOOD_CHECK + 'reduction = "none"\n', 4, "checks.a.reduction", 'must be "mean" or "sum"'),
    (GOOD_CHECK + 'columns = { pred = "y_pred", var = "v" }\n', 4, "checks.a.columns.var", "role 'var'"),
    ('[checks.a]\ninputs = ["candidate.parquet"]\n', 1, "checks.a", "missing key 'losses'"),
    ('[checks.a]\nlosses = ["mse"]\n', 1, "checks.a", "missing key 'inputs'"),
    (GOOD_CHECK + '\n[[checks.a.compare]]\nbaseline = "baseline.parquet"\nmax_regression = "2 percent"\n', 7,
     "checks.a.compare[0].max_regression", "expected an absolute margin"),
    (GOOD_CHECK + '\n[[checks.a.compare]]\nbaseline = "b.parquet"\n\n[[checks.a.compare]]\nbaseline = "c.parquet"\n'
     'gate_mode = "strict"\n', 10, "checks.a.compare[1].gate_mode", 'must be "ci" or "point"'),
    (GOOD_CHECK + '\n[checks.a.compare]\nmax_regression = 0.1\n', 5, "checks.a.compare", "needs baseline"),
    ("[defaults]\nsed = 3\n\n" + GOOD_CHECK, 2, "defaults.sed", "unknown key (did you mean seed?)"),
    ("[defaults]\nbootstrap = 1\n\n" + GOOD_CHECK, 2, "defaults.bootstrap", "at least 10"),
    ("title = 'x'\n" + GOOD_CHECK, 1, "title", "unknown key"),
    ("[defaults]\nseed = 1\n", None, "checks", "no checks declared"),   # no line holds the missing key
])
def test_config_errors_name_file_line_and_key(ci_dir, monkeypatch, text, line, key, needle):
    monkeypatch.chdir(ci_dir)
    write_cfg(ci_dir, text)
    msg = run_err(["check"], 2)
    where = f"lossctl.toml, line {line}, key {key}: " if line else f"lossctl.toml, key {key}: "
    assert msg.startswith(where), msg
    assert needle in msg, msg


def test_invalid_toml_names_the_line(ci_dir, monkeypatch):
    monkeypatch.chdir(ci_dir)
    write_cfg(ci_dir, '[checks.a]\ninputs = ["x.csv"\nlosses = ["mse"]\n')
    msg = run_err(["check"], 2)
    assert msg.startswith("lossctl.toml, line 3: invalid TOML: ")


def test_pyproject_tool_table(ci_dir, monkeypatch):
    monkeypatch.chdir(ci_dir)
    os.remove(ci_dir / "lossctl.toml")
    write_cfg(ci_dir, '[project]\nname = "demo"\n\n[tool.lossctl.checks.a]\ninputs = ["candidate.parquet"]\n'
                      'losses = ["mse"]\nfail_if = ["mse > 1"]\n', name="pyproject.toml")
    res = invoke(["check", "-f", "json"])
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout)["config"] == "pyproject.toml"
    write_cfg(ci_dir, '[project]\nname = "demo"\n\n[tool.lossctl.checks.a]\ninputs = ["candidate.parquet"]\n'
                      'losses = ["mse"]\nfail_if = ["mse > x"]\n', name="pyproject.toml")
    msg = run_err(["check"], 2)
    assert msg.startswith("pyproject.toml, line 7, key tool.lossctl.checks.a.fail_if[0]: fail_if 'mse > x'"), msg


def test_no_configuration_is_a_usage_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # a pyproject.toml without [tool.lossctl] is not a lossctl configuration
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    msg = run_err(["check"], 2)
    assert msg.startswith("no lossctl.toml, and no pyproject.toml with [tool.lossctl]")
    assert run_err(["check", "--config", "nope.toml"], 2).startswith("nope.toml: cannot read the configuration")


def test_loss_tables_with_parameters(ci_dir, monkeypatch):
    monkeypatch.chdir(ci_dir)
    write_cfg(ci_dir, '[checks.a]\ninputs = ["candidate.parquet"]\n'
                      'losses = [{ name = "huber", delta = 0.5 }, { name = "quantile", params = { alpha = 0.9 } }]\n'
                      'fail_if = ["huber:delta=0.5 > 1", "quantile > 1"]\n')
    res = invoke(["check", "-f", "json"])
    assert res.exit_code == 0, res.stderr
    sig = json.loads(res.stdout)["signature"]
    assert [(x["loss"], x["params"]) for x in sig["losses"]] == [("huber", {"delta": 0.5}), ("quantile", {"alpha": 0.9})]
    write_cfg(ci_dir, '[checks.a]\ninputs = ["candidate.parquet"]\nlosses = [{ name = "huber", delta = -1 }]\n')
    msg = run_err(["check"], 2)
    assert msg.startswith("lossctl.toml, line 3, key checks.a.losses[0]: ") and "delta" in msg


def test_defaults_are_inherited_and_overridden(ci_dir):
    path = write_cfg(ci_dir, "[defaults]\nseed = 3\nci = 0.9\n\n" + GOOD_CHECK + "\n[checks.b]\n"
                     'inputs = ["candidate.parquet"]\nlosses = ["mae"]\nseed = 5\n')
    a, b = checkcfg.load(path).checks
    assert (a.seed, a.ci, b.seed, b.ci) == (3, 0.9, 5, 0.9)
    assert a.inputs == [os.path.relpath(ci_dir / "candidate.parquet")]
