"""The serving image as a local container: what KServe runs on a cluster, here on the host network.

:func:`start` runs ``loopline/serving`` with the arguments of the ServingRuntime
(manifests/serving/servingruntime.yaml, KServe's ``{{.Name}}`` filled in) plus the ones
``push`` puts on an InferenceService (the version, where it is, the registry to check it
against) and local overrides (port, S3 endpoint, capture URI). :func:`model_uri` maps a
registry version's artifact location to the ``s3://`` prefix the server fetches.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from components import _images
from pipelines.local_s3 import free_port

ROOT = Path(__file__).resolve().parent.parent
RUNTIME = ROOT / "manifests" / "serving" / "servingruntime.yaml"


def runtime_args(model_name: str) -> list[str]:
    """The ServingRuntime's container arguments, as KServe fills them in for ``model_name``."""
    runtime = yaml.safe_load(RUNTIME.read_text())
    (container,) = runtime["spec"]["containers"]
    return [a.replace("{{.Name}}", model_name) for a in container["args"]]


def model_uri(source: str, artifacts_destination: str) -> str:
    """A version's ``mlflow-artifacts:/...`` source as the ``s3://`` prefix behind the tracking
    server's artifact proxy (``--artifacts-destination``)."""
    prefix = "mlflow-artifacts:"
    if source.startswith(prefix):
        return artifacts_destination.rstrip("/") + "/" + source[len(prefix) :].lstrip("/")
    return source


@dataclass
class LocalModelServer:
    container: object
    url: str
    model_name: str

    def logs(self) -> str:
        return self.container.logs().decode(errors="replace")

    def stop(self) -> None:
        self.container.remove(force=True)


def start(
    model_name: str,
    args: list[str],
    environment: Mapping[str, str],
    *,
    image: str = _images.SERVING_IMAGE,
    timeout: float = 120.0,
    progress: Callable[[str], None] = lambda line: None,
    name: str | None = None,
    labels: Mapping[str, str] | None = None,
    volumes: Mapping[str, tuple[str, str]] | None = None,
) -> LocalModelServer:
    """Starts the server container and waits until the model is ready (or not-ready for good).

    Args:
        args: After the ServingRuntime's: the version's (``--model_dir``, ``--model_version``,
            ``--manifest_sha256``), local overrides, test-only ``--fault_*`` flags.
        name: The container's name (one with that name already there is removed first).
        labels: Container labels (how :mod:`pipelines.local_rollout` finds its containers).
        volumes: Host path -> (path in the container, ``"ro"`` or ``"rw"``).

    Raises:
        RuntimeError: The container exited, or the model did not become ready in ``timeout``
            seconds; the message ends with the container's last log lines.
    """
    import docker
    import requests

    port = free_port()
    client = docker.from_env()
    if name:
        with contextlib.suppress(docker.errors.NotFound):
            client.containers.get(name).remove(force=True)
    container = client.containers.run(
        image,
        [*runtime_args(model_name), *args, f"--http_port={port}"],
        detach=True,
        network_mode="host",
        environment=dict(environment),
        name=name,
        labels=dict(labels or {}),
        volumes={
            host: {"bind": bind, "mode": mode} for host, (bind, mode) in (volumes or {}).items()
        },
    )
    server = LocalModelServer(container, f"http://127.0.0.1:{port}", model_name)
    began = time.monotonic()
    last = ""
    while time.monotonic() - began < timeout:
        container.reload()
        if container.status == "exited":
            raise RuntimeError(f"the model server exited: {server.logs()[-2000:]}")
        try:
            ready = requests.get(f"{server.url}/v2/models/{model_name}/ready", timeout=2)
        except requests.ConnectionError:
            state = "starting"
        else:
            if ready.status_code == 200:
                return server
            state = "not ready"
            logs = server.logs()
            if "NOT loaded" in logs:
                server.stop()
                raise RuntimeError(f"the model server refused the model: {logs[-2000:]}")
        if state != last:
            progress(f"model server {state} ({time.monotonic() - began:.0f} s)")
            last = state
        time.sleep(0.3)
    logs = server.logs()
    server.stop()
    raise RuntimeError(f"the model was not ready in {timeout:.0f} s: {logs[-2000:]}")
