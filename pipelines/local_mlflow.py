"""A real MLflow tracking server process on loopback, for the tests and ``make demo``.

The server runs from the side env ``.venv-mlflow`` (full ``mlflow==3.17.2``, which needs
pyarrow < 26 and so cannot live in the main env: README, "Dependencies"), with

* a sqlite backend store in a given folder (the registry's data: models, versions, tags,
  aliases; on a cluster a database, see manifests/),
* its artifacts on an S3 endpoint (``--artifacts-destination s3://bucket/prefix``; here the
  loopback S3 server of :mod:`pipelines.local_s3`, MinIO on a cluster), reached with
  ``MLFLOW_S3_ENDPOINT_URL`` and the credentials given to :func:`start`,
* artifacts proxied (``--serve-artifacts``, MLflow's default): clients upload and download
  through the tracking server's own API (``mlflow-artifacts:/`` URIs), so they need no S3
  credentials, only the tracking URI.

Like ``local_s3``, this module is in no image and imports nothing heavy: it only starts and
stops a process and polls its ``/health`` endpoint.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from pipelines.local_s3 import ACCESS_KEY_ENV, SECRET_KEY_ENV, free_port

ROOT = Path(__file__).resolve().parent.parent
MLFLOW_VENV = ROOT / ".venv-mlflow"
LOG_FILE = "mlflow-server.log"
DB_FILE = "mlflow.db"
# Environment variables of the caller that must not leak into the server (it is configured
# by its arguments only).
_CLIENT_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_ARTIFACT_URI")

log = logging.getLogger("loopline.local_mlflow")


class ServerError(RuntimeError):
    """The tracking server could not be started; the message says why (and the log's tail)."""


@dataclass
class LocalTrackingServer:
    """A running server: ``url`` is the tracking URI clients use (``http://host:port``)."""

    process: subprocess.Popen
    url: str
    folder: Path
    artifacts_destination: str
    log_path: Path
    started_in: float  # seconds from the process start to the first healthy /health

    def healthy(self, timeout: float = 2.0) -> bool:
        return _health(self.url, timeout)

    def stop(self, timeout: float = 15.0) -> None:
        """Stops the server and its workers (its whole process group): SIGTERM, then SIGKILL."""
        if self.process.poll() is None:
            _signal_group(self.process, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout)
        # Whatever of the group is left (workers that outlive the server process).
        _signal_group(self.process, signal.SIGKILL)
        self.process.wait(timeout)


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)  # the server was started in its own session


def _health(url: str, timeout: float) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def ensure_bucket(s3_endpoint: str, credentials: Mapping[str, str], bucket: str) -> None:
    """Creates ``bucket`` on the S3 endpoint (plain HTTP) unless it exists."""
    from minio import Minio

    client = Minio(
        s3_endpoint,
        access_key=credentials[ACCESS_KEY_ENV],
        secret_key=credentials[SECRET_KEY_ENV],
        secure=False,
    )
    if not client.bucket_exists(bucket):
        client.make_bucket(bucket)


def start(
    folder: str | os.PathLike,
    s3_endpoint: str,
    credentials: Mapping[str, str],
    bucket: str = "mlflow",
    prefix: str = "artifacts",
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    workers: int = 1,
    venv: str | os.PathLike = MLFLOW_VENV,
    timeout: float = 120.0,
    progress: Callable[[str], None] | None = None,
) -> LocalTrackingServer:
    """Starts ``mlflow server`` and waits until its ``/health`` answers.

    Args:
        folder: Where the sqlite backend store (``mlflow.db``) and the server's log go
            (created if missing; an existing store is reused).
        s3_endpoint: ``host:port`` of the S3 API endpoint (plain HTTP) for the artifacts.
        credentials: ``AWS_ACCESS_KEY_ID`` and ``AWS_SECRET_ACCESS_KEY`` for that endpoint;
            only the server gets them.
        bucket: The artifact bucket (created if missing).
        prefix: The key prefix of every artifact in the bucket.
        host: The address to listen on (loopback: nothing outside this machine reaches it).
        port: The port; a free one when ``None``.
        workers: Server worker processes (1 is enough on loopback; requests still run
            concurrently in its thread pool).
        venv: The virtualenv with full mlflow (``make setup`` makes ``.venv-mlflow``).
        timeout: Seconds to wait for ``/health`` (about 12 s here).
        progress: Called with a line of progress now and then (default: the log).

    Raises:
        ServerError: No mlflow in ``venv``, the process exited, or ``/health`` did not
            answer in time (the message holds the tail of the server's log).
    """
    say = progress or log.info
    missing = [k for k in (ACCESS_KEY_ENV, SECRET_KEY_ENV) if not credentials.get(k)]
    if missing:
        raise ServerError(f"credentials lack {', '.join(missing)}")
    executable = Path(venv) / "bin" / "mlflow"
    if not executable.exists():
        raise ServerError(f"no MLflow server at {executable}; run `make setup` (it makes {venv})")
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    ensure_bucket(s3_endpoint, credentials, bucket)
    port = port or free_port(host)
    url = f"http://{host}:{port}"
    destination = f"s3://{bucket}/{prefix.strip('/')}" if prefix.strip("/") else f"s3://{bucket}"
    env = {k: v for k, v in os.environ.items() if k not in _CLIENT_ENV}
    env.update(
        {
            ACCESS_KEY_ENV: credentials[ACCESS_KEY_ENV],
            SECRET_KEY_ENV: credentials[SECRET_KEY_ENV],
            "MLFLOW_S3_ENDPOINT_URL": f"http://{s3_endpoint}",
            "AWS_DEFAULT_REGION": env.get("AWS_DEFAULT_REGION", "us-east-1"),
            "MLFLOW_DISABLE_TELEMETRY": "true",
            # No GenAI job runners (two extra huey processes): the registry needs none.
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            "DO_NOT_TRACK": "true",
            "PYTHONUNBUFFERED": "1",
        }
    )
    command = [
        str(executable),
        "server",
        "--backend-store-uri",
        f"sqlite:///{folder / DB_FILE}",
        "--artifacts-destination",
        destination,
        "--serve-artifacts",
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    log_path = folder / LOG_FILE
    say(
        f"mlflow: starting the tracking server at {url} (store {folder / DB_FILE}, artifacts {destination})"
    )
    began = time.monotonic()
    with open(log_path, "ab") as log_file:
        process = subprocess.Popen(
            command,
            cwd=folder,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = LocalTrackingServer(process, url, folder, destination, log_path, 0.0)
    next_note = began + 3
    while True:
        if _health(url, 1.0):
            server.started_in = time.monotonic() - began
            say(f"mlflow: tracking server ready at {url} in {server.started_in:.1f} s")
            return server
        if process.poll() is not None:
            raise ServerError(
                f"the MLflow server exited with code {process.returncode} before answering "
                f"{url}/health; its log ({log_path}) ends:\n{_tail(log_path)}"
            )
        now = time.monotonic()
        if now - began > timeout:
            server.stop()
            raise ServerError(
                f"the MLflow server did not answer {url}/health within {timeout:.0f} s; "
                f"its log ({log_path}) ends:\n{_tail(log_path)}"
            )
        if now >= next_note:
            say(f"mlflow: waiting for {url}/health ({now - began:.0f} s)")
            next_note = now + 3
        time.sleep(0.25)
