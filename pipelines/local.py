"""Run the compiled pipelines locally with kfp.local, and read what a run produced.

kfp.local runs a pipeline function task by task; with ``DockerRunner`` every task runs
in the image its component names, with the pipeline root bind-mounted at the same path.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from kfp import local
from kfp.local import docker_task_handler, logging_utils
from kfp.local.orchestrator import orchestrator_utils, task_executor

# Quiet mode (see init_docker): where task logs go, and how many lines a failure shows.
_QUIET: dict = {}
FAILURE_TAIL_LINES = 25


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


def task_of(command: list[str]) -> tuple[str, Path] | None:
    """(task name, run folder) of a task, read from the executor input in its command."""
    for arg in command:
        if not arg.startswith("{") or '"outputFile"' not in arg:
            continue
        try:
            output_file = json.loads(arg)["outputs"]["outputFile"]
        except (ValueError, KeyError, TypeError):
            continue
        task_dir = Path(output_file).parent
        return task_dir.name, task_dir.parent
    return None


def _run_container(
    client, image: str, command: list[str], volumes: dict, **container_run_args
) -> int:
    """Runs one task container and returns its real exit code.

    kfp 2.17.0's ``run_docker_container`` starts containers with ``auto_remove=True``;
    when a container exits before ``wait()`` is called it is already gone, and kfp
    then assumes exit code 0: a failed task is reported as SUCCESS (seen here with a
    failing ingest). This version keeps the container until its exit code is read.

    In quiet mode the container's output goes to ``<run folder>/logs/<task>.log`` and
    the terminal gets one line per task (name, state, seconds); a failed task also
    shows its last lines and the path of its log.
    """
    image = docker_task_handler.add_latest_tag_if_not_present(image)
    if not client.images.list(name=image):
        print(f"Pulling image {image!r}")
        client.images.pull(image)
    started = time.monotonic()
    container = client.containers.run(
        image=image,
        command=command,
        detach=True,
        stdout=True,
        stderr=True,
        volumes=volumes,
        **container_run_args,
    )
    where = task_of(command) if _QUIET else None
    try:
        if where is None:
            for line in container.logs(stream=True, follow=True):
                print(line.decode(errors="replace"), end="")
            return int(container.wait()["StatusCode"])
        task, run_dir = where
        if not run_dir.exists():  # the task's user (uid 1000) must still create its folder
            run_dir.mkdir(parents=True)
            run_dir.chmod(0o1777)
        log_path = run_dir / "logs" / f"{task}.log"
        log_path.parent.mkdir(exist_ok=True)
        with log_path.open("ab") as log_file:
            for chunk in container.logs(stream=True, follow=True):
                log_file.write(chunk)
        code = int(container.wait()["StatusCode"])
        _report_task(task, code, time.monotonic() - started, log_path)
        return code
    finally:
        container.remove(force=True)


def _report_task(task: str, code: int, seconds: float, log_path: Path) -> None:
    out = _QUIET["stream"]
    state = "ok" if code == 0 else f"FAILED (exit {code})"
    out.write(f"  {task:<22} {state:<16} {seconds:6.1f} s\n")
    if code != 0:
        lines = log_path.read_text(errors="replace").splitlines()[-FAILURE_TAIL_LINES:]
        out.write(f"  --- last {len(lines)} lines of {task} (full log: {log_path}) ---\n")
        out.write("".join(f"  | {line}\n" for line in lines))
    out.flush()


@contextlib.contextmanager
def _kfp_log_to_file():
    """Replaces kfp.local's logger context: its lines go to the quiet-mode log file."""
    logger = logging.getLogger()
    saved_level, saved_handlers = logger.level, logger.handlers[:]
    handler = logging.FileHandler(_QUIET["kfp_log"])
    handler.setFormatter(logging.Formatter("%(asctime)s - %(levelname)s - %(message)s"))
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        handler.close()
        logger.handlers[:] = saved_handlers
        logger.setLevel(saved_level)


def _dag_output_artifacts(cls, dag_outputs_spec, io_store) -> dict:
    """A DAG's output artifacts, ``dsl.OneOf`` included: the one its branch that ran produced.

    kfp 2.17.0's local orchestrator resolves ``dsl.OneOf`` for parameters only; for an
    artifact it refuses any output with more than one selector ("Expected 1 artifact in
    ArtifactSelectorSpec"), so no pipeline with an artifact ``OneOf`` runs locally, whichever
    branch runs. The KFP backend (2.17.0, kubeflow/pipelines#13436) takes the selector whose
    producer completed; this does the same: exactly one selector's producer must have the
    output, else the run fails naming the output.
    """
    outputs = {}
    for key, spec in dag_outputs_spec.artifacts.items():
        found = []
        for selector in spec.artifact_selectors:
            try:
                found.append(
                    io_store.get_task_output(
                        selector.producer_subtask, selector.output_artifact_key
                    )
                )
            except (KeyError, ValueError):  # that branch did not run
                continue
        if len(found) != 1:
            producers = [s.producer_subtask for s in spec.artifact_selectors]
            raise ValueError(
                f"DAG output artifact {key!r}: {len(found)} of its producers {producers} "
                "produced it; expected exactly one (dsl.OneOf of mutually exclusive branches)"
            )
        outputs[key] = found[0]
    return outputs


def _resolve_artifact_oneof() -> None:
    orchestrator_utils.OrchestratorUtils.get_dag_output_artifacts = classmethod(
        _dag_output_artifacts
    )


_KFP_EXECUTE_SINGLE_TASK = task_executor.execute_single_task


def _execute_once(task_name, task_spec, *args, **kwargs):
    """kfp.local's task executor with the task's retry policy cleared: locally a task runs once.

    The pipelines' retry policies (pipelines/resilience.py) are for a cluster's transient
    failures (a pod evicted, an endpoint restarting). kfp.local 2.17 honours them with the
    same back-off, so a task that fails for a reason a rerun cannot change (a bad snapshot, a
    refused model) would run 3 more times over 3.5 minutes before the run reports it. The
    compiled YAML keeps the policies (tests/test_resilience.py)."""
    if task_spec.HasField("retry_policy"):
        task_spec = type(task_spec).FromString(task_spec.SerializeToString())
        task_spec.ClearField("retry_policy")
    return _KFP_EXECUTE_SINGLE_TASK(task_name, task_spec, *args, **kwargs)


def _local_semantics() -> None:
    _resolve_artifact_oneof()
    task_executor.execute_single_task = _execute_once


def init_docker(
    pipeline_root: str | os.PathLike, quiet: bool = False, stream=None, **container_run_args
) -> Path:
    """``kfp.local.init`` with ``DockerRunner``; extra args go to ``docker run`` (e.g. network_mode).

    Also makes DockerRunner report a failed task as failed (see :func:`_run_container`),
    kfp.local resolve ``dsl.OneOf`` of artifacts (see :func:`_dag_output_artifacts`) and run
    each task once (see :func:`_execute_once`).
    ``quiet``: each task's output goes to a log file in the run folder, kfp.local's own
    lines to ``<pipeline root>/kfp-local.log``, and ``stream`` (stdout) gets one line per
    task; a failing task's last lines are shown with the path of its full log.
    """
    docker_task_handler.run_docker_container = _run_container
    _local_semantics()
    root = prepare_pipeline_root(pipeline_root)
    _QUIET.clear()
    if quiet:
        _QUIET.update(stream=stream or sys.stdout, kfp_log=str(root / "kfp-local.log"))
        logging_utils.local_logger_context = _kfp_log_to_file
        logging_utils.print_horizontal_line = lambda: None
    else:
        logging_utils.local_logger_context = _KFP_LOGGER_CONTEXT
        logging_utils.print_horizontal_line = _KFP_HORIZONTAL_LINE
    local.init(runner=local.DockerRunner(**container_run_args), pipeline_root=str(root))
    return root


_KFP_LOGGER_CONTEXT = logging_utils.local_logger_context
_KFP_HORIZONTAL_LINE = logging_utils.print_horizontal_line


def init_subprocess(pipeline_root: str | os.PathLike) -> Path:
    """``kfp.local.init`` with ``SubprocessRunner`` in the current interpreter (fast tests);
    ``dsl.OneOf`` of artifacts resolved and each task run once, as with :func:`init_docker`."""
    _local_semantics()
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
    """Names of the tasks that finished successfully in ``run_dir`` (they wrote their outputs).

    A task that ran and failed writes no ``executor_output.json``; see :func:`task_states`.
    """
    return {
        p.parent.relative_to(run_dir).as_posix()
        for p in Path(run_dir).rglob("executor_output.json")
    }


def task_states(run_dir: str | os.PathLike, failed: str | None = None) -> dict[str, str]:
    """Each task of ``run_dir``: ``succeeded`` (outputs written) or ``failed`` (its folder
    exists, no outputs: it started and did not finish). ``failed`` names the task kfp
    reported as failed, which may have created no folder. Tasks that never ran are absent."""
    states = {}
    for task_dir in Path(run_dir).iterdir():
        if not task_dir.is_dir() or task_dir.name == "logs":
            continue
        done = any(task_dir.rglob("executor_output.json"))
        states[task_dir.name] = "succeeded" if done else "failed"
    if failed:
        states[failed] = "failed"
    return states


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def failed_task(error: BaseException) -> str | None:
    """The innermost failed task kfp.local names in a pipeline failure, without colour codes."""
    match = re.search(r"Inner task failed: '([^']+)'", _ANSI.sub("", str(error)))
    return match.group(1) if match else None
