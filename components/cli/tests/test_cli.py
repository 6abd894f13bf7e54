"""The ``loopline`` console script, run as a subprocess against the session's real MLflow
tracking server: every registry command, and a non-zero exit with one line on every failure."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime

import pytest

from components.lib.registry import Registry
from pipelines.local_s3 import free_port
from tests.fitted import registrable_model

LOOPLINE = shutil.which("loopline", path=os.path.dirname(sys.executable))
COMMANDS = ("list", "show", "history", "champion", "transition")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return {**env, **extra}


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    assert LOOPLINE, "no `loopline` console script beside this Python: `pip install -e .`"
    return subprocess.run(
        [LOOPLINE, *args], capture_output=True, text=True, env=env or _env(), timeout=120
    )


def run_all(*commands: tuple[str, ...], env: dict | None = None) -> list:
    """Several read-only commands at once (each process imports mlflow: ~1.5 s)."""
    procs = [
        subprocess.Popen(
            [LOOPLINE, *c],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env or _env(),
        )
        for c in commands
    ]
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=120)
        out.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
    return out


def failed_with(result: subprocess.CompletedProcess, *needles: str) -> None:
    """Exit 1, nothing on stdout, exactly one line on stderr holding every needle."""
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("loopline: error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert result.stdout == ""


@pytest.mark.unit
def test_help_is_complete_and_needs_no_server():
    results = run_all(
        ("--help",), ("registry", "--help"), *[("registry", c, "--help") for c in COMMANDS]
    )
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
    top, group, *commands = (r.stdout for r in results)
    assert "registry" in top and "MLFLOW_TRACKING_URI" in top
    for command in COMMANDS:
        assert command in group
    assert "archived   -> production (only with --rollback)" in group
    for text in commands:
        assert "--tracking-uri URI" in text and "MLFLOW_TRACKING_URI" in text
    transition = commands[-1]
    for option in ("--reason TEXT", "--force", "--rollback", "--actor NAME", "MODEL VERSION STATE"):
        assert option in transition
    bare = run("registry")
    assert bare.returncode == 2 and "list" in bare.stderr
    assert run("registry", "transition", "m", "1", "staging").returncode == 2  # no --reason


@pytest.fixture(scope="module")
def cli_model(tracking_uri, tmp_path_factory, bikeshare_csv):
    """Model ``cli``: version 1 in production, version 2 a candidate."""
    model_dir, lineage, example = registrable_model(tmp_path_factory.mktemp("cli"), bikeshare_csv)
    registry = Registry(tracking_uri, actor="pytest")
    v1 = registry.register("cli", model_dir, lineage, "s3://stats/cli/1", example).version
    v2 = registry.register("cli", model_dir, lineage, "s3://stats/cli/2", example).version
    registry.transition("cli", v1, "staging", "good")
    registry.transition("cli", v1, "production", "first model")
    return registry, lineage, (v1, v2)


@pytest.mark.mlflow
def test_list_show_history_and_champion(cli_model, tracking_uri):
    registry, lineage, (v1, v2) = cli_model
    uri = ("--tracking-uri", tracking_uri)
    listed, as_json, shown, shown_json, history, history_v1, champion = run_all(
        ("registry", "list", *uri),
        ("registry", "list", "cli", "--json", *uri),
        ("registry", "show", "cli", v1, *uri),
        ("registry", "show", "cli", v1, "--json", *uri),
        ("registry", "history", "cli", *uri),
        ("registry", "history", "cli", v1, "--json", *uri),
        ("registry", "champion", "cli", *uri),
    )
    for result in (listed, as_json, shown, shown_json, history, history_v1, champion):
        assert result.returncode == 0, result.stderr
    rows = {tuple(line.split()[:4]) for line in listed.stdout.splitlines()}
    assert ("cli", v1, "production", "champion") in rows
    assert ("cli", v2, "candidate", "-") in rows
    assert [(v["version"], v["state"]) for v in json.loads(as_json.stdout)] == [
        (v1, "production"),
        (v2, "candidate"),
    ]
    assert "data_sha256:" in shown.stdout and lineage["data_sha256"] in shown.stdout
    assert "state:       production (champion)" in shown.stdout
    detail = json.loads(shown_json.stdout)
    assert detail["lineage"] == lineage and detail["statistics_uri"] == "s3://stats/cli/1"
    assert "staging -> production" in history.stdout and "first model" in history.stdout
    assert [(t["from"], t["to"]) for t in json.loads(history_v1.stdout)] == [
        (None, "candidate"),
        ("candidate", "staging"),
        ("staging", "production"),
    ]
    assert champion.stdout.strip() == v1


@pytest.mark.mlflow
def test_transition_records_actor_and_reason_and_refuses_illegal_moves(cli_model, tracking_uri):
    registry, _, (v1, v2) = cli_model
    env = _env(MLFLOW_TRACKING_URI=tracking_uri)  # the URI from the environment
    before_promotion = datetime.now(UTC).isoformat()
    ok = run(
        "registry",
        "transition",
        "cli",
        v2,
        "staging",
        "--reason",
        "passed the gate",
        "--actor",
        "bob",
        env=env,
    )
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == f"cli version {v2}: candidate -> staging; recorded for bob"
    last = registry.history("cli", v2)[-1]
    assert (last.actor, last.reason, last.to_state) == ("bob", "passed the gate", "staging")

    history_before = registry.history("cli")
    illegal = run(
        "registry", "transition", "cli", v2, "production", "--reason", "skip canary", env=env
    )
    failed_with(illegal, f"version {v2}", "staging -> production", "first production version")
    assert registry.history("cli") == history_before
    assert registry.get("cli", v2).state == "staging" and registry.champion("cli").version == v1

    forced = run(
        "registry",
        "transition",
        "cli",
        v2,
        "production",
        "--reason",
        "INC-7 hotfix",
        "--force",
        "--actor",
        "alice",
        env=env,
    )
    assert forced.returncode == 0, forced.stderr
    assert "(forced, now the champion)" in forced.stdout
    assert registry.champion("cli").version == v2 and registry.get("cli", v1).state == "archived"
    assert registry.history("cli")[-1].force
    at = run_all(("registry", "champion", "cli", "--at", before_promotion), env=env)[0]
    assert at.stdout.strip() == v1


@pytest.mark.mlflow
def test_every_failure_exits_non_zero_with_one_line(cli_model, tracking_uri):
    uri = ("--tracking-uri", tracking_uri)
    down = f"http://127.0.0.1:{free_port()}"
    unknown_model, unknown_version, unreachable, no_uri, bad_state, bad_time, history_of = run_all(
        ("registry", "show", "nope", "1", *uri),
        ("registry", "show", "cli", "99", *uri),
        ("registry", "list", "--tracking-uri", down),
        ("registry", "list"),
        ("registry", "transition", "cli", "1", "retired", "--reason", "x", *uri),
        ("registry", "champion", "cli", "--at", "yesterday", *uri),
        ("registry", "history", "cli", "99", *uri),
    )
    failed_with(unknown_model, "model 'nope' does not exist")
    failed_with(unknown_version, "model 'cli' version 99 does not exist")
    failed_with(unreachable, "cannot reach the MLflow tracking server", down)
    failed_with(no_uri, "no tracking URI", "--tracking-uri", "MLFLOW_TRACKING_URI")
    failed_with(bad_state, "unknown state 'retired'")
    failed_with(bad_time, "--at 'yesterday' is not an ISO 8601 time")
    failed_with(history_of, "version 99 does not exist")
