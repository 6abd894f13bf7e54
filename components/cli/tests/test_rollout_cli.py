"""``loopline rollout status|promote|rollback`` in-process (``main(argv)``), with the faked
Kubernetes API (tests/fake_kserve.py: KServe v0.20's controller semantics) put into the
CLI's client factory and the session's real MLflow tracking server; and once as the console
script against a kube config whose API server does not answer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest

from components.cli import main as cli_main
from components.cli import rollout as cli_rollout
from components.cli.tests import invoke
from components.cli.tests.invoke import run
from components.lib import rollout
from components.lib.deployment import ModelRef
from components.lib.inferenceservice import KServeDeployment
from components.lib.registry import Registry
from pipelines.local_s3 import free_port
from tests.fake_kserve import FakeKServe

NS = "team-a"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
# The console script's entry point, on this checkout's code (python -m components.cli).
LOOPLINE = [sys.executable, "-m", "components.cli"]


def failed_with(result: tuple[int, str, str], *needles: str) -> None:
    """invoke.failed_with, and nothing on stdout."""
    invoke.failed_with(result, *needles)
    assert result[1] == ""


@pytest.fixture
def api(monkeypatch) -> FakeKServe:
    fake = FakeKServe()
    monkeypatch.setattr(cli_rollout, "API_FACTORY", lambda args: fake)
    return fake


@pytest.fixture(scope="module")
def trained(tmp_path_factory, bikeshare_csv):
    from tests.fitted import registrable_model

    return registrable_model(tmp_path_factory.mktemp("trained"), bikeshare_csv)


def in_progress(api: FakeKServe, tracking_uri: str, trained, mode: str = "knative"):
    """A model whose version 2 is a canary at 25% (step 1) beside version 1, with the
    annotations and registry states a running rollout leaves."""
    name = f"cli-ro-{uuid.uuid4().hex[:6]}"
    registry = Registry(tracking_uri, actor="pytest")
    model_dir, lineage, example = trained
    refs = []
    for states in (("staging", "production"), ("staging", "canary")):
        v = registry.register(name, model_dir, lineage, "s3://stats/x", example).version
        for state in states:
            registry.transition(name, v, state, reason=f"test: to {state}")
        refs.append(ModelRef(name, v, f"s3://models/{name}/{v}/", "0" * 64))
    stable, candidate = refs
    dep = KServeDeployment(api, name, NS, mode)
    dep.deploy(stable)
    dep.start_candidate(candidate, 25)
    verdict = {
        "verdict": "fail",
        "requests": 240.0,
        "reason": "failing: error_rate=0.08 (pass if <= 0.05): fail",
        "gates": {"error_rate": 0.08, "latency_p99": 0.0049, "prediction_divergence": 0.07},
    }
    dep.annotate(
        {
            rollout.key("candidate"): candidate.version,
            rollout.key("stable"): stable.version,
            rollout.key("strategy"): "canary",
            rollout.key("phase"): "running",
            rollout.key("step"): "1",
            rollout.key("percent"): "25",
            rollout.key("passed"): "0",
            rollout.key("failed"): "1",
            rollout.key("inconclusive"): "2",
            rollout.key("checks"): "4",
            rollout.key("verdict"): json.dumps(verdict),
        }
    )
    return name, stable.version, candidate.version, registry


@pytest.mark.unit
def test_help_names_the_commands_and_options(capsys):
    with pytest.raises(SystemExit) as caught:
        cli_main.main(["rollout", "--help"])
    assert caught.value.code == 0
    text = capsys.readouterr().out
    for command in ("status", "promote", "rollback"):
        assert command in text
    assert "loopline.io/rollout-actor" in text
    for command in ("status", "promote", "rollback"):
        with pytest.raises(SystemExit):
            cli_main.main(["rollout", command, "--help"])
        text = capsys.readouterr().out
        for option in ("--namespace NS", "--kubeconfig FILE", "--context NAME", "--tracking-uri"):
            assert option in text, (command, option)
        if command == "status":
            assert "--prometheus-url URL" in text
        else:
            assert "--reason TEXT" in text and "--actor NAME" in text
    with pytest.raises(SystemExit) as caught:
        cli_main.main(["rollout", "promote", "m"])  # no --reason
    assert caught.value.code == 2
    capsys.readouterr()


@pytest.mark.mlflow
def test_status_prints_the_step_checks_gate_values_and_registry_states(
    api, capsys, tracking_uri, trained
):
    name, stable, candidate, _ = in_progress(api, tracking_uri, trained)
    code, out, err = run(
        capsys, "rollout", "status", name, "-n", NS, "--tracking-uri", tracking_uri
    )
    assert code == 0, err
    assert f"InferenceService {NS}/{name} (knative mode): ready" in out
    assert f"version {stable} (stable) 75%, version {candidate} (candidate) 25%" in out
    assert f"canary of version {candidate} over stable {stable}: running" in out
    assert "percent 25" in out
    assert "checks:        4: failed 1, inconclusive 2" in out
    assert "last check:    fail on 240 requests: error_rate=0.08" in out
    assert "latency_p99=0.0049" in out and "prediction_divergence=0.07" in out
    assert f"version {stable} production (champion), version {candidate} canary" in out

    code, out, _ = run(capsys, "rollout", "status", name, "-n", NS, "--json")
    body = json.loads(out)
    assert code == 0 and body["in_progress"] is True and body["registry"] is None
    assert body["rollout"]["verdict"]["gates"]["error_rate"] == 0.08
    assert body["candidate_percent"] == 25 and body["mode"] == "knative"


@pytest.mark.mlflow
@pytest.mark.parametrize("action", ["promote", "rollback"])
def test_promote_and_rollback_act_now_and_record_the_operator(
    api, capsys, tracking_uri, trained, action
):
    name, stable, candidate, registry = in_progress(api, tracking_uri, trained, "standard")
    code, out, err = run(
        capsys, "rollout", action, name, "-n", NS, "--tracking-uri", tracking_uri,
        "--reason", "ticket 42", "--actor", "jane@example.com",
    )  # fmt: skip
    assert code == 0, err
    served = api.served(NS, name)
    last = registry.history(name, candidate)[-1]
    assert last.actor == "jane@example.com" and "ticket 42" in last.reason
    assert "operator" in last.reason
    if action == "promote":
        assert served == {candidate: 100}
        assert registry.champion(name).version == candidate
        assert registry.get(name, stable).state == "archived"
        assert f"version {candidate}: promoted by jane@example.com" in out
    else:
        assert served == {stable: 100}
        assert registry.get(name, candidate).state == "rolled_back"
        assert registry.champion(name).version == stable
        assert f"version {candidate}: rolled_back by jane@example.com" in out
    ann = KServeDeployment(api, name, NS, "standard").get().annotations
    assert ann["loopline.io/rollout-actor"] == "jane@example.com"
    assert ann["loopline.io/rollout-action-version"] == candidate
    assert ann[rollout.key("phase")] == ("promoted" if action == "promote" else "rolled_back")

    # Done: a second decision finds no rollout in progress, and changes nothing.
    writes = len(api.writes())
    failed_with(
        run(capsys, "rollout", action, name, "-n", NS, "--tracking-uri", tracking_uri,
            "--reason", "again"),
        "no rollout in progress", f"{NS}/{name}", f"version {candidate}",
    )  # fmt: skip
    assert len(api.writes()) == writes
    code, out, _ = run(capsys, "rollout", "status", name, "-n", NS)
    assert code == 0 and "(not in progress)" in out and "operator:      jane@example.com" in out


@pytest.mark.unit
def test_clear_failures(api, capsys):
    failed_with(
        run(capsys, "rollout", "status", "absent", "-n", NS),
        f"no InferenceService {NS}/absent",
    )
    # An InferenceService with no rollout recorded: nothing to decide.
    dep = KServeDeployment(api, "quiet", NS, "knative")
    dep.deploy(ModelRef("quiet", "1", "s3://models/quiet/1/", "0" * 64))
    failed_with(
        run(capsys, "rollout", "rollback", "quiet", "-n", NS, "--reason", "x"),
        "no rollout in progress",
        "none is recorded",
    )
    code, out, _ = run(capsys, "rollout", "status", "quiet", "-n", NS)
    assert code == 0 and "rollout:       none recorded" in out
    failed_with(run(capsys, "rollout", "status", "Not_A_Name", "-n", NS), "cannot name")


@pytest.mark.unit
def test_an_api_server_that_does_not_answer_is_named(tmp_path):
    port = free_port()  # nothing listens there
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        f"""apiVersion: v1
kind: Config
clusters:
- name: nowhere
  cluster: {{server: "http://127.0.0.1:{port}"}}
contexts:
- name: nowhere
  context: {{cluster: nowhere, user: nobody, namespace: team-b}}
current-context: nowhere
users:
- name: nobody
  user: {{token: x}}
"""
    )
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "MLFLOW_TRACKING_URI")}
    result = subprocess.run(
        [*LOOPLINE, "rollout", "status", "bikeshare", "--kubeconfig", str(kubeconfig)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 1, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot reach the Kubernetes API" in lines[0], result.stderr
    assert str(port) in lines[0] and result.stdout == ""

    missing = subprocess.run(
        [*LOOPLINE, "rollout", "status", "bikeshare", "--kubeconfig", str(tmp_path / "absent")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert missing.returncode == 1 and "no Kubernetes API configuration" in missing.stderr
