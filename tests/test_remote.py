"""Prediction files in object storage: s3:// through pyarrow's S3 filesystem, http:// through fsspec.

Real servers on loopback, stopped by handle: moto's S3-compatible server (``ThreadedMotoServer`` on
127.0.0.1, a free port) and a ``http.server`` thread.  The AWS environment is dummy credentials only:
``AWS_EC2_METADATA_DISABLED=true`` and empty config / credentials files, so no real AWS configuration is
read and nothing reaches outside the machine.  Each remote read is compared with the local read of the
same bytes; each failure must be one line on stderr, exit 3, holding no secret.
"""
from __future__ import annotations

import functools
import http.server
import io
import json
import os
import pickle
import socket
import threading
import urllib.request

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

# the test extra installs these (moto[server] brings boto3): a missing one fails the suite, it is not skipped
import boto3  # noqa: E402
import cloudpickle  # noqa: E402
import distributed  # noqa: E402,F401
import fsspec  # noqa: E402
import moto.server as moto_server  # noqa: E402
from conftest import invoke, run_err  # noqa: E402

from lossctl import api  # noqa: E402

KEY_ID = "AKIALOSSCTLTESTKEY01"
SECRET = "dummy-secret-7f3e9a1c-never-print-me"
BUCKET = "preds"
SIZES = (40, 25, 35)
REL = 1e-12


# -- servers and environment -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def aws_env(tmp_path_factory):
    """Dummy credentials; no instance metadata, no real AWS config files, no endpoint from the environment."""
    d = tmp_path_factory.mktemp("aws")
    (d / "config").write_text("")
    (d / "credentials").write_text("")
    mp = pytest.MonkeyPatch()
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
                 "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_DEFAULT_REGION",
                 "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                 "AWS_CONTAINER_CREDENTIALS_FULL_URI", "DASK_SCHEDULER_ADDRESS"):
        mp.delenv(name, raising=False)
    mp.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    mp.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
    mp.setenv("AWS_CONFIG_FILE", str(d / "config"))
    mp.setenv("AWS_SHARED_CREDENTIALS_FILE", str(d / "credentials"))
    yield
    mp.undo()


def tables():
    rng = np.random.default_rng(7)
    n = sum(SIZES)
    y = rng.normal(2.0, 1.5, n)
    preds = pa.table({"id": np.arange(1, n + 1, dtype=np.int64), "pred": y + rng.normal(0, 0.7, n),
                      "region": np.array(["east", "west"])[rng.integers(0, 2, n)], "w": rng.uniform(0.5, 2, n)})
    labels = pa.table({"id": np.arange(1, n + 1, dtype=np.int64), "target": y}).take(pa.array(rng.permutation(n)))
    return preds, labels


@pytest.fixture(scope="module")
def local_copy(tmp_path_factory):
    """The same files on local disk: what every remote read is compared with."""
    d = tmp_path_factory.mktemp("local")
    preds, labels = tables()
    both = preds.join(labels, "id").sort_by("id")
    (d / "run-7").mkdir()
    start = 0
    for i, k in enumerate(SIZES):
        pq.write_table(both.slice(start, k), d / "run-7" / f"part-{i}.parquet")
        start += k
    pq.write_table(preds, d / "preds.parquet")
    pq.write_table(labels, d / "labels.parquet")
    pcsv.write_csv(both, d / "both.csv")
    (d / "_SUCCESS").write_text("")
    return d


@pytest.fixture(scope="module")
def s3(aws_env, local_copy):
    """A moto S3 server on 127.0.0.1 holding the local files under s3://preds/."""
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        c = boto3.client("s3", endpoint_url=endpoint, region_name="eu-west-1")
        c.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        for root, _, files in os.walk(local_copy):
            for f in files:
                p = os.path.join(root, f)
                c.upload_file(p, BUCKET, os.path.relpath(p, local_copy).replace(os.sep, "/"))
        yield endpoint
    finally:
        server.stop()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def web(local_copy):
    """A plain http.server thread on 127.0.0.1 serving the local files (fsspec's http filesystem reads it)."""
    import aiohttp  # noqa: F401  fsspec's http filesystem needs it: a test dependency, not a reason to skip
    import fsspec  # noqa: F401
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(local_copy)))
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()
        t.join(5)


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _values(res) -> dict:
    return {(r.label, json.dumps(r.group, sort_keys=True)): (r.value, r.count) for r in res.results}


def assert_equal_results(a, b):
    va, vb = _values(a), _values(b)
    assert va.keys() == vb.keys()
    for k in va:
        assert va[k][1] == vb[k][1]
        assert vb[k][0] == pytest.approx(va[k][0], rel=REL, abs=0), k


def no_secret(*texts):
    for t in texts:
        assert SECRET not in t and KEY_ID not in t


# -- s3 through pyarrow ---------------------------------------------------------------------------------
def test_s3_prefix_equals_local(s3, local_copy):
    local = api.evaluate(str(local_copy / "run-7"), ["mse", "mae"], weight="w", by="region")
    remote = api.evaluate(f"s3://{BUCKET}/run-7/", ["mse", "mae"], weight="w", by="region",
                          storage_options={"endpoint_url": s3, "region": "eu-west-1"})
    assert_equal_results(local, remote)
    assert remote.inputs[0]["path"] == f"s3://{BUCKET}/run-7/" and remote.inputs[0]["files"] == len(SIZES)
    assert remote.inputs[0]["rows"] == sum(SIZES)


def test_s3_cli_glob_and_single_object(s3, local_copy):
    ep = ["--endpoint-url", s3, "--region", "eu-west-1"]
    res = invoke(["eval", f"s3://{BUCKET}/run-7/part-[02].parquet", "-l", "mse", "--value", *ep])
    assert res.exit_code == 0, res.stderr
    two = pa.concat_tables([pq.read_table(local_copy / "run-7" / f"part-{i}.parquet") for i in (0, 2)])
    err = two.column("pred").to_numpy() - two.column("target").to_numpy()
    assert float(res.stdout) == pytest.approx(float(np.mean(err ** 2)), rel=1e-15)
    res = invoke(["eval", f"s3://{BUCKET}/both.csv", "-l", "mae", "--format", "json", *ep])
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    local = api.evaluate(str(local_copy / "both.csv"), ["mae"])
    assert doc["results"][0]["value"] == pytest.approx(local.value(), rel=REL, abs=0)
    no_secret(res.stdout, res.stderr)


def test_s3_predictions_joined_to_http_labels(s3, web, local_copy):
    """The issue's third command: remote predictions, labels over https-like fsspec, --on id."""
    local = api.evaluate([str(local_copy / "preds.parquet"), str(local_copy / "labels.parquet")], ["mae"], on="id")
    res = invoke(["eval", f"s3://{BUCKET}/preds.parquet", f"{web}/labels.parquet", "--on", "id", "-l", "mae",
                  "--value", "--endpoint-url", s3, "--region", "eu-west-1"])
    assert res.exit_code == 0, res.stderr
    assert float(res.stdout) == pytest.approx(local.value(), rel=REL, abs=0)


def test_s3_plan_carries_no_keys(s3):
    """Standard chain: the filesystem sent to Dask workers holds the endpoint and region, never the keys."""
    plan = api.plan_evaluation(f"s3://{BUCKET}/run-7/", ["mse"], storage_options={"endpoint_url": s3,
                                                                                  "region": "eu-west-1"})
    blob = cloudpickle.dumps(plan)
    assert SECRET.encode() not in blob and KEY_ID.encode() not in blob
    fs = pickle.loads(pickle.dumps(plan.sources[0].fs))
    assert fs.region == "eu-west-1"


def test_s3_on_a_dask_cluster_started_by_the_cli(s3, local_copy, tmp_path):
    """--workers 2 starts worker processes (they inherit the dummy chain) and reads s3 on them."""
    out = tmp_path / "rows.parquet"
    res = invoke(["eval", f"s3://{BUCKET}/run-7/", "-l", "mse", "-l", "mae", "--by", "region", "--format", "json",
                  "--endpoint-url", s3, "--region", "eu-west-1", "--workers", "2", "-r", "none", "-o", out, "-q"])
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["engine"] == {"name": "dask", "fragments": len(SIZES)}
    local = api.evaluate(str(local_copy / "run-7"), ["mse", "mae"], by="region")
    got = {(r["label"], json.dumps(r["group"], sort_keys=True)): r["value"] for r in doc["results"]}
    for (label, group), (value, _) in _values(local).items():
        assert got[(label, group)] == pytest.approx(value, rel=REL, abs=0)
    assert pq.read_table(out).column("row").to_pylist() == list(range(1, sum(SIZES) + 1))
    no_secret(res.stdout, res.stderr)


def test_http_on_a_dask_worker(web, local_copy):
    """The fsspec path on a worker process: the http filesystem travels with the plan and reads there."""
    local = api.evaluate(str(local_copy / "run-7" / "part-0.parquet"), ["mse", "mae"], by="region")
    remote = api.evaluate(f"{web}/run-7/part-0.parquet", ["mse", "mae"], by="region", engine="dask",
                          engine_options={"workers": 1})
    assert remote.extra["engine"] == {"name": "dask", "fragments": 1}
    assert_equal_results(local, remote)


# -- s3 failures: one line, exit 3, no secret -------------------------------------------------------------
def _err(args) -> str:
    msg = run_err(["eval", *args, "-l", "mse"], 3)
    no_secret(msg)
    return msg


def test_s3_unreachable_endpoint(aws_env):
    url = f"http://127.0.0.1:{free_port()}"
    msg = _err([f"s3://{BUCKET}/run-7/", "--endpoint-url", url, "--region", "eu-west-1"])
    assert msg.startswith(f"s3://{BUCKET}/run-7/: cannot connect to the storage endpoint {url}")


def test_s3_missing_bucket(s3):
    msg = _err(["s3://no-such-bucket/run-7/", "--endpoint-url", s3, "--region", "eu-west-1"])
    assert msg.startswith("s3://no-such-bucket/run-7/: bucket 'no-such-bucket' does not exist")


def test_s3_missing_key_and_prefix(s3):
    msg = _err([f"s3://{BUCKET}/run-7/part-9.parquet", "--endpoint-url", s3, "--region", "eu-west-1"])
    assert msg == f"s3://{BUCKET}/run-7/part-9.parquet: no such object"
    msg = _err([f"s3://{BUCKET}/run-8/", "--endpoint-url", s3, "--region", "eu-west-1"])
    assert msg.startswith(f"s3://{BUCKET}/run-8/: no such prefix")
    msg = _err([f"s3://{BUCKET}/run-7/*.csv", "--endpoint-url", s3, "--region", "eu-west-1"])
    assert msg.startswith(f"s3://{BUCKET}/run-7/*.csv: no object matches")


def _moto_auth(endpoint: str, count: str) -> None:
    """moto's documented switch: after ``count`` more requests, every request must carry valid IAM keys."""
    req = urllib.request.Request(f"{endpoint}/moto-api/reset-auth", data=count.encode(), method="POST",
                                 headers={"Content-Type": "text/plain"})
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 200


def test_s3_wrong_credentials(s3, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAWRONGWRONGWRONG1")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret-0123456789")
    _moto_auth(s3, "0")
    try:
        msg = run_err(["eval", f"s3://{BUCKET}/run-7/", "-l", "mse", "--endpoint-url", s3, "--region",
                       "eu-west-1"], 3)
    finally:
        _moto_auth(s3, "inf")
    assert msg.startswith(f"s3://{BUCKET}/run-7/: access denied")
    assert "wrong-secret-0123456789" not in msg and "AKIAWRONG" not in msg


def test_bad_endpoint_url_is_a_usage_error(aws_env):
    res = invoke(["eval", f"s3://{BUCKET}/x.parquet", "-l", "mse", "--endpoint-url", "ftp://host:21"])
    assert res.exit_code == 2 and "--endpoint-url" in res.stderr


# -- other URLs through fsspec -------------------------------------------------------------------------
def test_http_reads_equal_local(web, local_copy):
    for name, kw in (("both.csv", {}), ("run-7/part-1.parquet", {"by": "region"})):
        local = api.evaluate(str(local_copy / name), ["mse", "huber:delta=0.5"], weight="w", **kw)
        remote = api.evaluate(f"{web}/{name}", ["mse", "huber:delta=0.5"], weight="w", **kw)
        assert_equal_results(local, remote)


def test_http_secret_in_url_never_shown(web, local_copy):
    """user:password@ and ?token= of a URL reach the server but no output, message or signature."""
    port = web.rsplit(":", 1)[1]
    secret_url = f"http://reader:{SECRET}@127.0.0.1:{port}/labels.parquet?X-Amz-Signature={SECRET}"
    res = invoke(["eval", f"{web}/preds.parquet", secret_url, "--on", "id", "-l", "mae", "--format", "json"])
    assert res.exit_code == 0, res.stderr
    no_secret(res.stdout, res.stderr)
    doc = json.loads(res.stdout)
    assert doc["inputs"][1]["path"] == f"http://127.0.0.1:{port}/labels.parquet"
    missing = secret_url.replace("labels.parquet", "nope.parquet")
    msg = run_err(["eval", missing, "-l", "mse"], 3)
    assert msg == f"http://127.0.0.1:{port}/nope.parquet: no such object"


def test_http_unreachable_and_missing(web):
    port = free_port()
    msg = _err([f"http://127.0.0.1:{port}/preds.parquet"])
    assert msg.startswith(f"http://127.0.0.1:{port}/preds.parquet: cannot connect to 127.0.0.1:{port}")
    msg = _err([f"{web}/nope.parquet"])
    assert msg == f"{web}/nope.parquet: no such object"


def test_unknown_protocol_is_a_usage_error():
    res = invoke(["eval", "nosuchproto://bucket/x.parquet", "-l", "mse"])
    assert res.exit_code == 2, res.stderr
    assert res.stderr.count("\n") == 1 and "nosuchproto://" in res.stderr


def test_memory_filesystem_directory():
    """Any fsspec protocol works: memory:// holding a directory of Parquet parts (and a _SUCCESS marker)."""
    fs = fsspec.filesystem("memory")
    rng = np.random.default_rng(3)
    tbls = [pa.table({"pred": rng.normal(size=k), "target": rng.normal(size=k)}) for k in (5, 8)]
    for i, t in enumerate(tbls):
        buf = io.BytesIO()
        pq.write_table(t, buf)
        fs.pipe(f"/lossctl-test/parts/part-{i}.parquet", buf.getvalue())
    fs.pipe("/lossctl-test/parts/_SUCCESS", b"")
    try:
        res = api.evaluate("memory://lossctl-test/parts/", ["mse"])
        t = pa.concat_tables(tbls)
        expected = float(np.mean((t.column("pred").to_numpy() - t.column("target").to_numpy()) ** 2))
        assert res.value() == pytest.approx(expected, rel=1e-15)
        assert res.inputs[0]["files"] == 2
        one = api.evaluate("memory://lossctl-test/parts/part-[1].parquet", ["mse"])
        t = tbls[1]
        assert one.value() == pytest.approx(float(np.mean((t.column("pred").to_numpy()
                                                           - t.column("target").to_numpy()) ** 2)), rel=1e-15)
    finally:
        fs.rm("/lossctl-test", recursive=True)


@pytest.mark.parametrize("port", [40363, 40133, 8080])
def test_a_missing_object_is_not_access_denied_because_of_digits_in_its_url(port):
    """'403' / '401' are status codes only outside the URL: a missing object on port 40363 (a random port
    of the test server once) was reported as access denied; a real 403 still is."""
    from lossctl.io.remote import describe_error

    url = f"http://127.0.0.1:{port}/4031/nope.parquet"
    missing = FileNotFoundError(url)
    assert describe_error(missing, url, None, []) == f"{url}: no such object"
    denied = OSError(f"403, message='Forbidden', url='{url}'")
    assert describe_error(denied, url, None, []).startswith(f"{url}: access denied (Forbidden)")
    status = OSError(f"Client error 401 for url {url}")
    assert describe_error(status, url, None, []).startswith(f"{url}: access denied (401)")
