"""Fixtures shared by every test folder (loaded with ``-p tests.fixtures``)."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIKESHARE_CSV = ROOT / "examples" / "bikeshare" / "bikeshare.csv"


@pytest.fixture(scope="session")
def bikeshare_csv() -> Path:
    return BIKESHARE_CSV


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server():
    """A real S3 API endpoint on loopback (moto's server), with credentials in the env."""
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    os.environ["AWS_ACCESS_KEY_ID"] = "loopline-test"
    os.environ["AWS_SECRET_ACCESS_KEY"] = "loopline-test-secret"
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="session")
def s3_client(s3_server):
    from minio import Minio

    return Minio(
        s3_server,
        access_key=os.environ["AWS_ACCESS_KEY_ID"],
        secret_key=os.environ["AWS_SECRET_ACCESS_KEY"],
        secure=False,
    )


@pytest.fixture(scope="session")
def docker_engine():
    """A Docker engine that answers; fails (never skips) when there is none."""
    try:
        import docker

        client = docker.from_env()
        client.ping()
    except Exception as exc:  # noqa: BLE001 - any failure means no usable engine
        pytest.fail(
            f"no Docker engine answers ({exc}); run `make engine` (or `make test`, which does)"
        )
    return client


@pytest.fixture(scope="session")
def built_images(docker_engine):
    """The images the compiled YAMLs name, built from this checkout; fails when missing."""
    from components import _images

    uris = {family: _images.image(family) for family in _images.FAMILIES}
    missing = [uri for uri in uris.values() if not docker_engine.images.list(name=uri)]
    if missing:
        pytest.fail(f"images not built: {', '.join(missing)}; run `make images`")
    return uris


def docker_run(image: str, *args: str) -> str:
    """``docker run --rm image args...`` and its stdout."""
    return subprocess.run(
        ["docker", "run", "--rm", image, *args], check=True, capture_output=True, text=True
    ).stdout


@pytest.fixture
def local_pipeline_root(tmp_path) -> Path:
    """A pipeline root that the images' non-root user (uid 1000) can write to."""
    root = tmp_path / "pipeline_root"
    root.mkdir()
    root.chmod(0o1777)
    return root
