"""Run the compiled pipelines locally with kfp.local, and read what a run produced.

kfp.local runs a pipeline function task by task; with ``DockerRunner`` every task runs
in the image its component names, with the pipeline root bind-mounted at the same path.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from kfp import local
from kfp.local import docker_task_handler


@dataclass(frozen=True)
class ArtifactRecord:
    task: str
    name: str
    uri: str
    metadata: dict


def prepare_pipeline_root(pipeline_root: str | os.PathLike) -> Path:
    """Creates the pipeline root so that the images' non-root user (uid 1000) can write to it.

    The root is sticky and world-writable (like /tmp); each task's folder belongs to
    the user that ran the task.
    """
    root = Path(pipeline_root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o1777)
    return root


def _run_container(
    client, image: str, command: list[str], volumes: dict, **container_run_args
) -> int:
    """Runs one task container and returns its real exit code.

    kfp 2.17.0's ``run_docker_container`` starts containers with ``auto_remove=True``;
    when a container exits before ``wait()`` is called it is already gone, and kfp
    then assumes exit code 0: a failed task is reported as SUCCESS (seen here with a
    failing ingest). This version keeps the container until its exit code is read.
    """
    image = docker_task_handler.add_latest_tag_if_not_present(image)
    if not client.images.list(name=image):
        print(f"Pulling image {image!r}")
        client.images.pull(image)
    container = client.containers.run(
        image=image,
        command=command,
        detach=True,
        stdout=True,
        stderr=True,
        volumes=volumes,
        **container_run_args,
    )
    try:
        for line in container.logs(stream=True, follow=True):
            print(line.decode(errors="replace"), end="")
        return int(container.wait()["StatusCode"])
    finally:
        container.remove(force=True)


def init_docker(pipeline_root: str | os.PathLike, **container_run_args) -> Path:
    """``kfp.local.init`` with ``DockerRunner``; extra args go to ``docker run`` (e.g. network_mode).

    Also makes DockerRunner report a failed task as failed (see :func:`_run_container`).
    """
    docker_task_handler.run_docker_container = _run_container
    root = prepare_pipeline_root(pipeline_root)
    local.init(runner=local.DockerRunner(**container_run_args), pipeline_root=str(root))
    return root


def init_subprocess(pipeline_root: str | os.PathLike) -> Path:
    """``kfp.local.init`` with ``SubprocessRunner`` in the current interpreter (fast tests)."""
    root = prepare_pipeline_root(pipeline_root)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root))
    return root


def latest_run(pipeline_root: str | os.PathLike, pipeline_name: str) -> Path:
    """The newest run folder of ``pipeline_name`` under ``pipeline_root``."""
    runs = sorted(Path(pipeline_root).glob(f"{pipeline_name}-*"), key=lambda p: p.stat().st_mtime)
    if not runs:
        raise FileNotFoundError(f"no run of {pipeline_name!r} under {pipeline_root}")
    return runs[-1]


def run_artifacts(run_dir: str | os.PathLike) -> list[ArtifactRecord]:
    """Every output artifact of every task that finished in ``run_dir``, in task order."""
    records = []
    outputs = sorted(Path(run_dir).rglob("executor_output.json"), key=lambda p: p.stat().st_mtime)
    for path in outputs:
        task = path.parent.relative_to(run_dir).as_posix()
        for name, entry in json.loads(path.read_text()).get("artifacts", {}).items():
            for artifact in entry.get("artifacts", []):
                records.append(
                    ArtifactRecord(task, name, artifact["uri"], artifact.get("metadata", {}))
                )
    return records


def ran_tasks(run_dir: str | os.PathLike) -> set[str]:
    """Names of the tasks that finished in ``run_dir``."""
    return {
        p.parent.relative_to(run_dir).as_posix()
        for p in Path(run_dir).rglob("executor_output.json")
    }
