"""Fixtures shared by every test folder (loaded with ``-p tests.fixtures``)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def small_search(max_trials: int = 4, parallel_trials: int = 2) -> str:
    """A small search space (JSON), so that end-to-end runs stay quick; the bundled one runs
    in `make demo`. One trial at a time: the same seed gives the same trials."""
    return json.dumps(
        {
            "objective": {"metric": "rmse", "goal": "minimize"},
            "algorithm": "tpe",
            "max_trials": max_trials,
            "parallel_trials": parallel_trials,
            "model_type": "gradient_boosting",
            "parameters": [
                {"name": "learning_rate", "type": "double", "min": 0.05, "max": 0.3, "log": True}
            ],
        }
    )


BIKESHARE_CSV = ROOT / "examples" / "bikeshare" / "bikeshare.csv"


@pytest.fixture(scope="session")
def bikeshare_csv() -> Path:
    return BIKESHARE_CSV


@pytest.fixture(scope="session")
def s3_store():
    """A real S3 API endpoint on loopback (moto's server), with credentials in the env."""
    from pipelines import local_s3

    credentials = {
        local_s3.ACCESS_KEY_ENV: "loopline-test",
        local_s3.SECRET_KEY_ENV: "loopline-test-secret",
    }
    store = local_s3.start(credentials)
    saved = {k: os.environ.get(k) for k in credentials}
    os.environ.update(credentials)
    try:
        yield store
    finally:
        store.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="session")
def s3_server(s3_store) -> str:
    """``host:port`` of the loopback S3 endpoint."""
    return s3_store.endpoint


@pytest.fixture(scope="session")
def s3_client(s3_store):
    return s3_store.client()


@pytest.fixture(scope="session")
def mlflow_server(s3_store, tmp_path_factory):
    """A real MLflow tracking server process on loopback (``pipelines/local_mlflow.py``):
    sqlite store in a temporary folder, artifacts proxied to the loopback S3 endpoint.
    One per test session; fails (never skips) when it cannot start."""
    from pipelines import local_mlflow

    folder = tmp_path_factory.mktemp("mlflow")
    try:
        server = local_mlflow.start(
            folder, s3_store.endpoint, s3_store.credentials, progress=lambda line: print(line)
        )
    except Exception as exc:  # noqa: BLE001 - any failure means no server
        pytest.fail(f"the MLflow tracking server did not start: {exc}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def tracking_uri(mlflow_server) -> str:
    """``http://127.0.0.1:PORT`` of the session's MLflow tracking server."""
    return mlflow_server.url


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

    uris = {family: _images.image(family) for family in _images.FAMILIES + _images.SERVICES}
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
    return _pipeline_root(tmp_path)


def _pipeline_root(folder: Path) -> Path:
    root = folder / "pipeline_root"
    root.mkdir()
    root.chmod(0o1777)  # the images' non-root user (uid 1000) writes there
    return root


@pytest.fixture
def no_unpickling(monkeypatch):
    """``joblib.load`` raises AssertionError: a refusal must come before it is called."""
    import joblib

    def refuse(*args, **kwargs):
        raise AssertionError("joblib.load was called: the artifact was not refused first")

    monkeypatch.setattr(joblib, "load", refuse)


@pytest.fixture
def run_training(tracking_uri):
    """``training_pipeline`` as the end-to-end tests run it: the session's MLflow server is
    the registry (the pipeline's default names the cluster's in-namespace service) and the
    model name is the test's own, so no test judges against another test's champion.
    Containers reach the loopback server through the host network (init_docker's
    ``network_mode="host"``). ``serving_target="none"``: kfp.local has no Kubernetes API,
    so the run stops after register (the exit handler, settle, then touches nothing)."""
    import uuid

    from pipelines.training.pipeline import training_pipeline

    name = f"e2e-{uuid.uuid4().hex[:8]}"

    def run(**kwargs):
        kwargs.setdefault("mlflow_tracking_uri", tracking_uri)
        kwargs.setdefault("model_name", name)
        kwargs.setdefault("serving_target", "none")
        return training_pipeline(**kwargs)

    return run


@dataclasses.dataclass(frozen=True)
class TrainedRun:
    """A training pipeline run in the images: its pipeline root, run folder and model name."""

    root: Path
    run_dir: Path
    model_name: str


@pytest.fixture(scope="session")
def january_to_june_run(built_images, tracking_uri, s3_store, tmp_path_factory) -> TrainedRun:
    """The training pipeline in the images (DockerRunner) on January to June 2011, as a
    dashboard user starts it: only ``source_uri`` set, every other parameter at the compiled
    pipeline's default (the bundled search space: 20 trials) but the registry, which is the
    session's MLflow server (the default names the cluster's in-namespace service), the model
    name (the session's own) and ``serving_target="none"``. Version 1 of that name is its
    champion. One run for the session: the validation gate's clean control asserts on it and
    the continuous-training tests start from its champion. The containers get the S3
    endpoint's credentials (the continuous-training pipeline reads captured traffic)."""
    import uuid

    from pipelines import local as local_run
    from pipelines.training.pipeline import training_pipeline
    from tests import corpus

    root = _pipeline_root(tmp_path_factory.mktemp("january-to-june"))
    local_run.init_docker(root, network_mode="host", environment=dict(s3_store.credentials))
    source = corpus.build_control(corpus.CONTROLS_BY_NAME["january_to_june"], root)
    name = f"e2e-jan-{uuid.uuid4().hex[:6]}"
    training_pipeline(
        source_uri=str(source),
        mlflow_tracking_uri=tracking_uri,
        model_name=name,
        serving_target="none",
    )
    return TrainedRun(root, local_run.latest_run(root, "loopline-training"), name)
