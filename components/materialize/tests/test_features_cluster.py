"""The feature store's ``cluster`` target for real (.venv-features): materialize's CLI writes
the offline store's Parquet and the registry to an S3 endpoint and materializes into a real
Redis with a password; the online features read back from Redis, by the SDK and by the Feast
feature server started with manifests/features' own command line, equal the offline store's
latest values.

Real servers on loopback: ``redis-server`` (Debian's redis-server package; ``make system``
installs it) and moto's S3 server, run from the main env (``.venv``, where moto is: the
features env holds the image's lock only). Either missing fails the tests, never skips them.
The Redis connection string is the manifests' form, ``host:port,password=${REDIS_PASSWORD}``,
with the password in the environment, as the feature server and a pipeline task get it.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
import yaml

from components.lib import featurestore as fs
from components.lib.feature_repos import bikeshare as repo
from components.materialize import executor
from pipelines.local_s3 import free_port

pytestmark = pytest.mark.features

ROOT = Path(__file__).resolve().parents[3]
MOTO_SERVER = ROOT / ".venv" / "bin" / "moto_server"
PASSWORD = "loopline0test0redis"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "loopline-test", "AWS_SECRET_ACCESS_KEY": "loopline-secret"}
BUCKET = "mlpipeline"
STORAGE = f"s3://{BUCKET}/private/test-ns/feast/bikeshare"
ROWS = 1000


def _wait(ready, what: str, process: subprocess.Popen, seconds: float = 60.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{what} exited with {process.returncode}")
        try:
            if ready():
                return
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(0.2)
    pytest.fail(f"{what} did not answer within {seconds:.0f} s")


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    """``host:port`` of a real redis-server with a password, on loopback."""
    import redis

    binary = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if os.access("/usr/bin/redis-server", os.X_OK) else None
    )
    if not binary:
        pytest.fail("redis-server is not on PATH (Debian: apt-get install redis-server)")
    port = free_port()
    folder = tmp_path_factory.mktemp("redis")
    config = folder / "redis.conf"
    config.write_text(f'requirepass "{PASSWORD}"\n')
    process = subprocess.Popen(
        [binary, str(config), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder)]
        + ["--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    client = redis.Redis(host="127.0.0.1", port=port, password=PASSWORD)
    try:
        _wait(client.ping, "redis-server", process)
        yield f"127.0.0.1:{port}"
    finally:
        client.close()
        _stop(process)


@pytest.fixture(scope="module")
def s3_endpoint():
    """``host:port`` of moto's S3 server (from the main env) with the bucket created."""
    import boto3

    if not os.access(MOTO_SERVER, os.X_OK):
        pytest.fail(f"{MOTO_SERVER} is missing: `make setup` installs moto in the main env")
    port = free_port()
    process = subprocess.Popen(
        [str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    client = boto3.client("s3", endpoint_url=url, region_name="us-east-1", **_keys())
    try:
        _wait(lambda: client.list_buckets() is not None, "moto_server", process)
        client.create_bucket(Bucket=BUCKET)
        yield f"127.0.0.1:{port}"
    finally:
        _stop(process)


def _keys() -> dict:
    return {
        "aws_access_key_id": CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    }


@pytest.fixture(scope="module")
def cluster_env(s3_endpoint):
    """The environment a cluster pod gets: object-store keys and endpoint, the password."""
    env = {
        **CREDENTIALS,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://{s3_endpoint}",
        "FEAST_S3_ENDPOINT_URL": f"http://{s3_endpoint}",
        "REDIS_PASSWORD": PASSWORD,
        "FEAST_USAGE": "False",
    }
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        yield env


@pytest.fixture(scope="module")
def materialized(bikeshare_csv, redis_server, s3_endpoint, cluster_env, tmp_path_factory):
    """materialize's CLI run with the cluster target; its outputs folder."""
    tmp = tmp_path_factory.mktemp("cluster")
    snapshot = tmp / "train.parquet"
    pd.read_csv(bikeshare_csv).iloc[:ROWS].to_parquet(snapshot, index=False)
    out = tmp / "out"
    args = ["--dataset", str(snapshot), "--target", "cluster", "--storage", STORAGE]
    args += ["--redis", f"{redis_server},password=${{REDIS_PASSWORD}}"]
    args += ["--s3-endpoint", s3_endpoint, "--s3-secure", "false"]
    for name in ("feature-store", "offline-store", "summary", "feature-view-versions"):
        args += [f"--{name}-out", str(out / name.replace("-", "_"))]
    assert executor.main(args) == 0
    return out


def _offline_from_s3(s3_endpoint) -> pd.DataFrame:
    import boto3
    import pyarrow.parquet as pq

    client = boto3.client(
        "s3", endpoint_url=f"http://{s3_endpoint}", region_name="us-east-1", **_keys()
    )
    key = f"{STORAGE.split('/', 3)[3]}/{fs.OFFLINE_FILE}"
    body = client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    return pq.read_table(io.BytesIO(body)).to_pandas()


def test_materialize_writes_s3_and_redis_and_online_equals_offline_latest(
    materialized, redis_server, s3_endpoint, tmp_path
):
    import boto3
    import redis

    record = json.loads((materialized / "feature_store" / "materialize.json").read_text())
    assert record["target"] == "cluster" and record["rows"] == ROWS
    assert record["offline_uri"] == f"{STORAGE}/{fs.OFFLINE_FILE}"
    assert record["registry_uri"] == f"{STORAGE}/registry.db"
    # The password stays a reference in every record and in the rendered configuration.
    rendered = (materialized / "feature_store" / "feature_store.yaml").read_text()
    assert "${REDIS_PASSWORD}" in rendered and PASSWORD not in rendered
    assert PASSWORD not in json.dumps(record)

    # The offline store and the registry are objects on the S3 endpoint.
    client = boto3.client(
        "s3", endpoint_url=f"http://{s3_endpoint}", region_name="us-east-1", **_keys()
    )
    prefix = STORAGE.split("/", 3)[3]
    keys = {o["Key"] for o in client.list_objects_v2(Bucket=BUCKET)["Contents"]}
    assert {f"{prefix}/{fs.OFFLINE_FILE}", f"{prefix}/registry.db"} <= keys
    offline = _offline_from_s3(s3_endpoint)
    local = pd.read_parquet(materialized / "offline_store" / "weather.parquet")
    pd.testing.assert_frame_equal(offline, local)
    assert len(offline) == ROWS

    # Redis holds the materialized rows (and refuses a client without the password).
    host, port = redis_server.split(":")
    with redis.Redis(host=host, port=int(port), password=PASSWORD) as db:
        assert db.dbsize() > 0
    with (
        redis.Redis(host=host, port=int(port)) as anonymous,
        pytest.raises(redis.AuthenticationError),
    ):
        anonymous.dbsize()

    # A fresh store (another pod's view: only the S3 registry and Redis in common) reads the
    # online features: the offline store's latest values.
    where = fs.location(
        STORAGE, "cluster", f"{redis_server},password=${{REDIS_PASSWORD}}", f"http://{s3_endpoint}"
    )
    store = fs.open_store(where, str(tmp_path / "reader"))
    last = offline.sort_values("event_timestamp").iloc[-1]
    online = fs.online_features(store, [last["event_timestamp"]])
    for name in repo.WEATHER_FEATURES:
        assert online[name].iloc[0] == last[name], name


def test_the_feature_server_from_the_manifest_serves_the_offline_latest_values(
    materialized, redis_server, s3_endpoint, cluster_env, tmp_path
):
    # The container's command line as manifests/features/feature-server.yaml writes it, with
    # the manifests' configuration template rendered for these loopback servers.
    manifest = ROOT / "manifests" / "features" / "feature-server.yaml"
    [deployment] = [
        d for d in yaml.safe_load_all(manifest.read_text()) if d and d["kind"] == "Deployment"
    ]
    [feast] = deployment["spec"]["template"]["spec"]["containers"]
    config_dir = Path(next(m for m in feast["volumeMounts"] if m["name"] == "config")["mountPath"])
    command = list(feast["command"])
    assert command[1:3] == ["--chdir", str(config_dir)]
    repo_dir = tmp_path / "etc-feast"
    repo_dir.mkdir()
    where = fs.location(
        STORAGE, "cluster", f"{redis_server},password=${{REDIS_PASSWORD}}", f"http://{s3_endpoint}"
    )
    (repo_dir / "feature_store.yaml").write_text(fs.render_config(where))
    command[2] = str(repo_dir)
    port = free_port()
    loopback = {"--host": "--host=127.0.0.1", "--port": f"--port={port}"}
    args = [loopback.get(a.split("=", 1)[0], a) for a in feast["args"]]
    feast_bin = str(Path(sys.executable).parent / command[0])
    env = {**os.environ, **cluster_env, "HOME": str(tmp_path)}
    process = subprocess.Popen(
        [feast_bin, *command[1:], *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    probe = feast["readinessProbe"]["httpGet"]["path"]

    def healthy() -> bool:
        with urllib.request.urlopen(base + probe, timeout=2) as response:
            return response.status == 200

    try:
        try:
            _wait(healthy, "feast serve", process, seconds=90)
        except BaseException:
            process.kill()
            print(process.communicate(timeout=10)[0].decode(errors="replace")[-3000:])
            raise
        features = [f"{repo.WEATHER_VIEW}:{f}" for f in repo.WEATHER_FEATURES]
        request = urllib.request.Request(
            base + "/get-online-features",
            data=json.dumps(
                {"features": features, "entities": {repo.ENTITY: [repo.CITY]}}
            ).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            body = json.loads(response.read())
    finally:
        if process.poll() is None:
            _stop(process)
    names = body["metadata"]["feature_names"]
    values = {n: r["values"][0] for n, r in zip(names, body["results"], strict=True)}
    statuses = {n: r["statuses"][0] for n, r in zip(names, body["results"], strict=True)}
    offline = pd.read_parquet(materialized / "offline_store" / "weather.parquet")
    last = offline.sort_values("event_timestamp").iloc[-1]
    for name in repo.WEATHER_FEATURES:
        assert statuses[name] == "PRESENT", name
        assert values[name] == last[name], name
