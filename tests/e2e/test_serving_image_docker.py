"""The serving image as a container, started with the ServingRuntime's own arguments, serving a
version registered in a real MLflow registry: fetched from the real S3 endpoint, verified
against the registry's record, answering a standard V2 client, capturing every request to S3;
then a tampered copy of the same version, refused."""

from __future__ import annotations

import io
import time
import uuid
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import requests
import yaml

from components import _images
from components.lib import artifacts
from components.lib.registry import CHECK_DATA_FILE, REQUEST_SCHEMA_FILE, Registry
from pipelines.local_s3 import free_port
from tests import fitted, serving

pytestmark = [pytest.mark.docker, pytest.mark.mlflow, pytest.mark.serving]

ROOT = Path(__file__).resolve().parents[2]
COLUMNS = ["temp", "atemp", "hum", "windspeed", "hr", "mnth", "weekday", "season", "weathersit", "holiday", "workingday"]  # fmt: skip


def runtime_args(model_name: str) -> list[str]:
    """The arguments the ServingRuntime gives the container, as KServe fills them in."""
    runtime = yaml.safe_load((ROOT / "manifests" / "serving" / "servingruntime.yaml").read_text())
    (container,) = runtime["spec"]["containers"]
    assert container["image"] == _images.SERVING_IMAGE
    return [a.replace("{{.Name}}", model_name) for a in container["args"]]


def run_container(docker_engine, args: list[str], env: dict, mounts: dict | None = None):
    return docker_engine.containers.run(
        _images.SERVING_IMAGE,
        args,
        detach=True,
        network_mode="host",
        environment=env,
        volumes={str(k): {"bind": v, "mode": "ro"} for k, v in (mounts or {}).items()},
    )


def wait_for(url: str, container, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        container.reload()
        if container.status == "exited":
            raise AssertionError(f"the container exited: {container.logs().decode()[-3000:]}")
        try:
            requests.get(url, timeout=1)
            return
        except requests.ConnectionError:
            time.sleep(0.3)
    raise AssertionError(f"no answer from {url}: {container.logs().decode()[-3000:]}")


def test_the_image_serves_a_registered_version_and_captures_every_request(
    built_images, docker_engine, tracking_uri, mlflow_server, s3_store, s3_client, tmp_path,
    bikeshare_csv,
):  # fmt: skip
    import tritonclient.http as httpclient

    # A real version in the real registry, with the files the serving image reads.
    name = f"serve-{uuid.uuid4().hex[:8]}"
    model_dir, lineage, example = fitted.registrable_model(tmp_path / "train", bikeshare_csv)
    schema = serving.REQUEST_SCHEMA.read_bytes()
    holdout = example  # a few rows suffice here; the fast path check is covered elsewhere
    buffer = io.BytesIO()
    holdout[COLUMNS].to_parquet(buffer, index=False)
    registry = Registry(tracking_uri)
    version = registry.register(
        name, model_dir, lineage, "s3://stats/none", example,
        extra_files={REQUEST_SCHEMA_FILE: schema, CHECK_DATA_FILE: buffer.getvalue()},
    )  # fmt: skip
    # Where the registry's artifact store keeps it (push will copy it to a content-addressed
    # path; the server reads any s3:// prefix).
    model_uri = version.source.replace("mlflow-artifacts:", mlflow_server.artifacts_destination)
    assert model_uri.startswith("s3://")

    if not s3_client.bucket_exists("loopline-capture"):
        s3_client.make_bucket("loopline-capture")
    prefix = f"predictions-{uuid.uuid4().hex[:8]}"  # the session's endpoint is shared
    port = free_port()
    args = runtime_args(name) + [
        f"--http_port={port}", f"--registry_uri={tracking_uri}", f"--model_version={version.version}",
        f"--model_dir={model_uri}", "--capture_flush_seconds=0.3",
        f"--capture_uri=s3://loopline-capture/{prefix}",
    ]  # fmt: skip
    env = {"S3_ENDPOINT": s3_store.endpoint, **s3_store.credentials}
    container = run_container(docker_engine, args, env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{url}/v2/health/live", container)
        deadline = time.monotonic() + 60
        while requests.get(f"{url}/v2/models/{name}/ready", timeout=2).status_code != 200:
            assert time.monotonic() < deadline, container.logs().decode()[-3000:]
            time.sleep(0.3)
        client = httpclient.InferenceServerClient(f"127.0.0.1:{port}")
        rows = example.reset_index(drop=True)
        model = artifacts.load_mlflow_model(
            registry.download(name, version.version, str(tmp_path / "dl")), version.manifest_sha256
        )
        want = model.predict(rows[COLUMNS])
        sent = []
        for i in range(len(rows)):
            inputs = []
            for c in COLUMNS:
                value = rows.loc[i, c]
                datatype = (
                    "BYTES"
                    if c in ("mnth", "weathersit")
                    else ("FP64" if isinstance(value, float) else "INT64")
                )
                tensor = httpclient.InferInput(c, [1], datatype)
                tensor.set_data_from_numpy(
                    np.array([value], dtype=object if datatype == "BYTES" else None)
                )
                inputs.append(tensor)
            result = client.infer(name, inputs, request_id=f"e2e-{i}")
            assert result.as_numpy("predict")[0] == want[i]
            sent.append(f"e2e-{i}")
        logs = container.logs().decode()
        assert f"version {version.version} ready" in logs and "verified manifest" in logs, logs[
            -2000:
        ]
        deadline = time.monotonic() + 30
        captured: list[str] = []
        while time.monotonic() < deadline and len(captured) < len(sent):
            captured = []
            for obj in s3_client.list_objects(
                "loopline-capture", prefix=f"{prefix}/", recursive=True
            ):
                data = s3_client.get_object("loopline-capture", obj.object_name).read()
                captured += [r["request_id"] for r in pq.read_table(io.BytesIO(data)).to_pylist()]
            time.sleep(0.3)
        assert sorted(captured) == sorted(sent), container.logs().decode()[-3000:]
    finally:
        container.remove(force=True)

    # The same arguments against a tampered copy of the version: refused, not ready.
    local = Path(registry.download(name, version.version, str(tmp_path / "tampered")))
    with open(local / "model.skops", "ab") as fh:
        fh.write(b"\0")
    port = free_port()
    args = runtime_args(name) + [
        f"--http_port={port}", f"--registry_uri={tracking_uri}", f"--model_version={version.version}",
        "--capture_uri=",
    ]  # fmt: skip
    container = run_container(docker_engine, args, env, mounts={local: "/mnt/models"})
    try:
        wait_for(f"{url.rsplit(':', 1)[0]}:{port}/v2/health/live", container)
        ready = requests.get(f"http://127.0.0.1:{port}/v2/models/{name}/ready", timeout=5)
        assert ready.status_code == 503
        logs = container.logs().decode()
        assert "NOT loaded" in logs and "model.skops does not match the manifest" in logs, logs[
            -2000:
        ]
    finally:
        container.remove(force=True)
