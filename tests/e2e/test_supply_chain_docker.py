"""The built images: a numeric non-root user, and no credential in any layer, in the image
configs or in the logs of tasks and servers that run with one in their environment.

The layer scan reads every file of every image once (one `docker save` of all of them).
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from components import __version__
from pipelines import local as local_run
from pipelines.local_s3 import SECRET_KEY_ENV
from tests import secrets_scan
from tests.cloudbuild import run_step, substitutions

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]


def _docker(*args: str) -> str:
    return subprocess.run(
        ["docker", *args], check=True, capture_output=True, text=True, timeout=300
    ).stdout


def test_every_image_config_names_a_numeric_non_root_user(built_images):
    for family, image in built_images.items():
        user = _docker("image", "inspect", "--format", "{{.Config.User}}", image).strip()
        uid, _, gid = user.partition(":")
        # Numeric, so that Kubernetes' runAsNonRoot can check it without reading /etc/passwd.
        assert uid.isdigit() and int(uid) > 0, f"{family}: Config.User {user!r}"
        assert not gid or (gid.isdigit() and int(gid) > 0), f"{family}: Config.User {user!r}"


def _build(tag: str, dockerfile: str, files: dict[str, str], tmp_path) -> None:
    context = tmp_path / tag.replace("/", "_").replace(":", "_")
    context.mkdir()
    (context / "Dockerfile").write_text(dockerfile)
    for name, text in files.items():
        (context / name).write_text(text)
    subprocess.run(
        ["docker", "build", "-q", "-t", tag, str(context)],
        check=True,
        capture_output=True,
        env={**os.environ, "DOCKER_BUILDKIT": "0"},
        timeout=300,
    )


def test_cloudbuild_check_non_root_passes_the_images_and_names_one_that_runs_as_root(
    built_images, tmp_path
):
    """cloudbuild.yaml's check-non-root step, run on the built images, then on a copy of them
    in which one image runs as root."""
    ok = run_step("check-non-root", substitutions(_REGISTRY="loopline"), tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.count("uid 1000") == len(built_images)

    registry = f"loopline-rootcheck-{uuid.uuid4().hex[:8]}"
    tags = [f"{registry}/{family}:{__version__}" for family in built_images]
    try:
        for family, image in built_images.items():
            if family != "tuner":
                _docker("tag", image, f"{registry}/{family}:{__version__}")
        root_image = f"{registry}/tuner:{__version__}"
        _build(root_image, f"FROM {built_images['tuner']}\nUSER 0\n", {}, tmp_path)
        bad = run_step("check-non-root", substitutions(_REGISTRY=registry), tmp_path)
        assert bad.returncode == 1
        assert f"{root_image}: Config.User '0' is not a numeric non-root uid" in bad.stdout
    finally:
        subprocess.run(["docker", "rmi", *tags], capture_output=True)


def test_no_credential_in_any_layer_or_config_of_the_images(built_images):
    found = secrets_scan.scan_images(sorted(built_images.values()))
    assert found == [], "\n".join(map(str, found))


def test_a_credential_planted_in_an_image_is_reported_with_its_layer_and_file(
    built_images, tmp_path
):
    image = f"loopline-planted/tuner:{uuid.uuid4().hex[:8]}"
    secret = "Z" * 20 + "/q" * 10
    _build(
        image,
        f"FROM {built_images['tuner']}\nENV LEAKED=minio123\nCOPY credentials /home/loopline/.aws/credentials\n",
        {"credentials": f"[default]\naws_secret_access_key = {secret}\n"},
        tmp_path,
    )
    try:
        found = secrets_scan.scan_images([image])
    finally:
        subprocess.run(["docker", "rmi", image], capture_output=True)
    files = {(f.what, f.where.rsplit(": ", 1)[-1]) for f in found}
    assert ("aws_secret_access_key value", "/home/loopline/.aws/credentials") in files
    assert ("demo credential", "config (Env, labels, history)") in files
    assert all(f.where.startswith(image) for f in found), "\n".join(map(str, found))
    # and the config's copy in the top layer's legacy metadata: nothing else
    assert {what for what, _ in files} == {"aws_secret_access_key value", "demo credential"}


def test_no_credential_in_the_logs_of_a_task_and_the_servers_that_hold_one(
    built_images, s3_store, s3_client, mlflow_server, local_pipeline_root, bikeshare_csv, tmp_path
):
    """ingest in its image, reading S3 with the keys in its environment; the `loopline` CLI,
    verbose, against the MLflow server (which holds the same keys for its artifact store):
    every log line they write is scanned, and a planted copy shows the scan would see one."""
    secret = s3_store.credentials[SECRET_KEY_ENV]
    assert secrets_scan.scan_bytes(secret.encode(), "probe")  # what is looked for
    s3_client.make_bucket("supply-chain-logs")
    data = bikeshare_csv.read_bytes()
    s3_client.put_object("supply-chain-logs", "bikeshare.csv", io.BytesIO(data), len(data))

    terminal = io.StringIO()
    local_run.init_docker(
        local_pipeline_root,
        quiet=True,
        stream=terminal,
        network_mode="host",
        environment=dict(s3_store.credentials),
    )
    from components.ingest.component import ingest

    try:
        task = ingest(
            source_uri="s3://supply-chain-logs/bikeshare.csv",
            time_column="day",
            s3_endpoint=s3_store.endpoint,
        )
    finally:
        local_run.init_docker(local_pipeline_root)  # kfp.local's own logging back
    assert task.outputs["train"].metadata["rows"] == 6034  # it did read S3 with the keys
    task_logs = list(local_pipeline_root.rglob("logs/ingest.log"))
    assert task_logs and "ingest" in terminal.getvalue()

    cli_log = tmp_path / "loopline-cli.log"
    with cli_log.open("w") as out:
        subprocess.run(
            [sys.executable, "-m", "components.cli", "-v", "registry", "list"],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **s3_store.credentials, "MLFLOW_TRACKING_URI": mlflow_server.url},
            check=True,
            timeout=120,
        )
    logs = [*task_logs, local_pipeline_root / "kfp-local.log", mlflow_server.log_path, cli_log]
    assert secrets_scan.scan_paths(logs) == []

    planted = tmp_path / "planted.log"
    planted.write_text(cli_log.read_text() + f"connecting with {secret}\n")
    found = secrets_scan.scan_paths([*logs, planted])
    assert [(f.where, f.match) for f in found] == [(str(planted), secret)]
