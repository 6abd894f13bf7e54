"""End to end through kfp.local.DockerRunner on the built images (needs a Docker engine)."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess

import pytest

from components import __version__, _images
from pipelines import local as local_run
from tests.fixtures import small_search

pytestmark = pytest.mark.docker


@pytest.mark.parametrize("family", _images.FAMILIES + _images.SERVICES)
def test_images_run_as_non_root_with_oci_labels(built_images, family):
    # The user every process of the image runs as (whatever its entry point).
    uid = subprocess.run(
        ["docker", "run", "--rm", "--entrypoint", "id", built_images[family], "-u"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    assert int(uid) > 0
    labels = json.loads(
        subprocess.run(
            ["docker", "image", "inspect", "-f", "{{json .Config.Labels}}", built_images[family]],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    assert labels["org.opencontainers.image.version"] == __version__
    assert labels["org.opencontainers.image.title"] == f"loopline-{family}"


def _run_training(run_training, root, source_uri, task="ingest", **kwargs):
    run_training(source_uri=source_uri, time_column="day", **kwargs)
    run_dir = local_run.latest_run(root, "loopline-training")
    records = local_run.run_artifacts(run_dir)
    if task is None:
        return {(r.task, r.name): r for r in records}
    return {r.name: r for r in records if r.task == task}


def _image_revision(image: str) -> str:
    return subprocess.run(
        [
            "docker",
            "image",
            "inspect",
            "-f",
            '{{index .Config.Labels "org.opencontainers.image.revision"}}',
            image,
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def test_training_pipeline_in_containers_is_reproducible_from_a_file_and_from_s3(
    built_images, local_pipeline_root, bikeshare_csv, s3_server, s3_client, run_training
):
    """Two runs on the same snapshot, the first reading it from a file, the second from S3
    inside the container (the session's S3 endpoint, credentials from the environment): the
    same data, transform and model, byte for byte."""
    # The container sees only the pipeline root: put the snapshot there, and in a bucket.
    snapshot = local_pipeline_root / "bikeshare.csv"
    shutil.copy(bikeshare_csv, snapshot)
    s3_client.make_bucket("docker-e2e")
    data = bikeshare_csv.read_bytes()
    s3_client.put_object("docker-e2e", "bikeshare.csv", io.BytesIO(data), len(data))
    creds = {k: os.environ[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    local_run.init_docker(local_pipeline_root, network_mode="host", environment=creds)
    search = small_search(max_trials=3, parallel_trials=1)

    first = _run_training(
        run_training, local_pipeline_root, str(snapshot), None, search_space=search
    )
    second = _run_training(
        run_training,
        local_pipeline_root,
        "s3://docker-e2e/bikeshare.csv",
        None,
        search_space=search,
        s3_endpoint=s3_server,
        s3_secure=False,
    )
    assert second[("ingest", "train")].metadata["source_uri"] == "s3://docker-e2e/bikeshare.csv"
    assert first[("ingest", "train")].metadata["source_uri"] == str(snapshot)

    def hashes(arts):
        return {
            key: a.metadata["sha256"]
            for key, a in arts.items()
            if key in {("ingest", s) for s in ("train", "eval_data", "holdout")}
            or key in {("transform", "transformer"), ("train", "model")}
        }

    assert len(hashes(first)) == 5
    assert hashes(first) == hashes(second)
    assert (
        first[("transform", "transformer")].metadata["spec_sha256"]
        == second[("transform", "transformer")].metadata["spec_sha256"]
    )
    assert (
        first[("train", "model")].metadata["params"]
        == second[("train", "model")].metadata["params"]
    )
    assert second[("ingest", "train")].metadata["rows"] == 6034
    rows = sum(first[("ingest", n)].metadata["rows"] for n in ("train", "eval_data", "holdout"))
    assert rows == 8645
    # It ran in the image: files belong to the image's user, and the model's lineage carries the
    # revision the image was built from (the image's environment; this process has none).
    assert os.stat(first[("ingest", "train")].uri).st_uid == 1000
    model = first[("train", "model")].metadata
    assert model["code_revision"] == _image_revision(built_images["pipeline"]) != "unknown"


def test_bad_snapshot_fails_the_run_with_the_cause(
    built_images, local_pipeline_root, capfd, run_training
):
    bad = local_pipeline_root / "header_only.csv"
    bad.write_text("day,hr,bikers\n")
    local_run.init_docker(local_pipeline_root, network_mode="host")
    with pytest.raises(RuntimeError, match="Inner task failed.*ingest"):
        run_training(source_uri=str(bad), time_column="day")
    out = capfd.readouterr()
    assert "header (3 columns) but no data rows" in out.out + out.err
    run_dir = local_run.latest_run(local_pipeline_root, "loopline-training")
    # Nothing after ingest ran but the exit handler (settle: serving_target none, a no-op).
    assert local_run.ran_tasks(run_dir) <= {"find-champion", "settle"}


def test_a_task_container_that_exits_at_once_reports_its_exit_code(built_images, docker_engine):
    # kfp 2.17.0's own runner loses the code of a container that is gone before wait().
    codes = [
        local_run._run_container(
            docker_engine, built_images["pipeline"], ["sh", "-c", f"exit {c}"], {}
        )
        for c in (3, 0, 1)
    ]
    assert codes == [3, 0, 1]
    assert not docker_engine.containers.list(
        all=True, filters={"ancestor": built_images["pipeline"]}
    )
