"""The rollout and settle components against the faked Kubernetes API with KServe's
controller semantics (tests/fake_kserve.py: no API server runs here), a REAL Prometheus
scraping a metrics endpoint whose traffic follows the fake InferenceService's split
(tests/prometheus.py), and the real MLflow tracking server (tests/fixtures.py).

Each test uses its own model name, so its series never mix with another test's. Every
object sent to the API is checked against KServe v0.20's CRD schema.
"""

from __future__ import annotations

import json
import uuid

import pytest
from kfp import dsl

from components.lib import gates, inferenceservice
from components.lib import rollout as engine
from components.lib.deployment import ModelRef
from components.lib.inferenceservice import KServeDeployment
from components.rollout import executor
from components.rollout.component import rollout as rollout_component
from components.rollout.component import settle as settle_component
from tests.fake_kserve import FakeKServe
from tests.prometheus import LocalPrometheus, ServingMetrics
from tests.schemas import validate_kserve

NS = "team-a"
RATE = 200.0  # live requests per second, split as the fake KServe routes them

POLICY = {
    "strategy": "canary",
    "interval_seconds": 1.5,
    "window_seconds": 5,
    "min_requests": 20,
    "max_failed_checks": 2,
    "inconclusive": {"max_checks": 8, "then": "rollback"},
    "gates": [
        {"type": "error_rate", "threshold": 0.05},
        {"type": "latency_p99", "threshold": 0.1},
        {"type": "prediction_divergence", "threshold": 0.35, "min_count": 20},
    ],
    "canary": {"steps": [10, 25, 50, 100]},
}


# --------------------------------------------------------------------------- the policy


@pytest.mark.unit
def test_the_bundled_canary_policy():
    policy = executor.load_policy("canary")
    assert policy.strategy == "canary" and policy.steps == (10, 25, 50, 100)
    assert [g.type for g in policy.gates] == ["error_rate", "latency_p99", "prediction_divergence"]
    assert all(g.threshold > 0 for g in policy.gates)
    assert policy.max_failed_checks == 2 and policy.min_requests >= 1
    assert policy.on_inconclusive in engine.ON_INCONCLUSIVE
    assert policy.interval_seconds > 0 and policy.window_seconds > 0
    assert executor.load_policy("").steps == policy.steps  # the default
    assert executor.load_policy(json.dumps(POLICY)).interval_seconds == 1.5
    assert executor.load_policy("strategy: canary\ngates: [{type: error_rate, threshold: 0.1}]")


@pytest.mark.unit
def test_an_unknown_policy_name_lists_the_bundled_ones():
    with pytest.raises(executor.RolloutInputError, match=r"policy 'linear'.*bundled: canary"):
        executor.load_policy("linear")
    with pytest.raises(engine.PolicyError, match=r"policy\.canary\.steps\[2\]"):
        executor.load_policy(json.dumps({**POLICY, "canary": {"steps": [10, 50, 25]}}))


@pytest.mark.unit
def test_settle_with_serving_target_none_touches_nothing():
    def no_api():
        raise AssertionError("the cluster's API was used")

    out = executor.settle_run("bikeshare", "", serving_target="none", api=no_api)
    assert out["outcome"] == "skipped"
    with pytest.raises(executor.RolloutInputError, match="serving_target 'ollama'"):
        executor.settle_run("bikeshare", "", serving_target="ollama")


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def serving():
    metrics = ServingMetrics()
    yield metrics
    metrics.stop()


@pytest.fixture(scope="module")
def prom(serving, tmp_path_factory):
    server = LocalPrometheus(tmp_path_factory.mktemp("prometheus"), [serving.target])
    server.wait_for("up == 1")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def trained(tmp_path_factory, bikeshare_csv):
    from tests.fitted import registrable_model

    return registrable_model(tmp_path_factory.mktemp("trained"), bikeshare_csv)


@pytest.fixture(scope="module")
def registry(tracking_uri):
    from components.lib.registry import Registry

    return Registry(tracking_uri, actor="pytest-rollout-component")


def register(registry, trained, name: str, *states: str) -> ModelRef:
    """A version in ``states`` with a serving copy recorded (as push leaves it)."""
    from tests.fitted import register_in

    version = register_in(registry, trained, name, *states)
    sha = registry.get(name, version).manifest_sha256
    uri = f"s3://loopline-models/models/{name}/{sha}/"
    registry.set_serving_uri(name, version, uri)
    return ModelRef(name, version, uri, sha)


def served_split(api: FakeKServe, name: str):
    """Requests per second by version, as the fake KServe routes them now."""

    def split():
        return {v: RATE * p / 100 for v, p in api.served(NS, name).items()}

    return split


def model_with_champion(registry, trained, serving, prom, mode: str, **candidate_behaviour):
    """A champion serving alone on a fresh InferenceService, a staged candidate, and live
    traffic routed by the InferenceService's split."""
    name = f"rc-{mode[:4]}-{uuid.uuid4().hex[:6]}"
    champion = register(registry, trained, name, "staging", "production")
    candidate = register(registry, trained, name, "staging")
    api = FakeKServe()
    KServeDeployment(api, name, NS, mode, validate=validate_kserve).deploy(champion)
    assert api.served(NS, name) == {champion.version: 100}
    serving.behave(name, champion.version)
    serving.behave(name, candidate.version, **candidate_behaviour)
    serving.route(name, served_split(api, name))
    prom.wait_for(gates.query("requests", name, champion.version, 5) + " > 50")
    return name, champion, candidate, api


# --------------------------------------------------------------------------- rollouts


@pytest.mark.prometheus
@pytest.mark.mlflow
def test_a_healthy_candidate_is_promoted_and_the_report_lists_every_check(
    registry, trained, serving, prom, tracking_uri, tmp_path, monkeypatch
):
    name, champion, candidate, api = model_with_champion(
        registry, trained, serving, prom, "knative"
    )
    # The component's own body, as the pipeline runs it; its cluster API is the fake one.
    monkeypatch.setattr(inferenceservice, "cluster_api", lambda: api)
    report = dsl.Markdown(uri=str(tmp_path / "report.md"))
    summary = dsl.HTML(uri=str(tmp_path / "summary.html"))
    outcome = rollout_component.python_func(
        report=report,
        summary=summary,
        model_name=name,
        model_version=candidate.version,
        mlflow_tracking_uri=tracking_uri,
        prometheus_url=prom.url,
        namespace=NS,
        deployment_mode="knative",
        policy=json.dumps(POLICY),
        pipeline_run_id="run-7",
    )

    assert outcome == "promoted"
    assert api.served(NS, name) == {candidate.version: 100}
    assert registry.get(name, candidate.version).state == "production"
    assert registry.get(name, champion.version).state == "archived"
    assert registry.champion(name).version == candidate.version
    last = registry.history(name, candidate.version)[-1]
    assert last.actor == "loopline-rollout (pipeline run run-7)"

    text = (tmp_path / "report.md").read_text()
    assert f"# rollout: {name} version {candidate.version}: promoted" in text
    header = next(line for line in text.splitlines() if line.startswith("| # |"))
    for gate in ("error_rate (<= 0.05)", "latency_p99 (<= 0.1)", "prediction_divergence"):
        assert gate in header
    rows = [line for line in text.splitlines() if line.startswith("| ") and "| pass |" in line]
    assert report.metadata["checks"] >= 4 and len(rows) == 4  # one passing check per step
    steps = [row.split("|")[3].strip() for row in rows]
    percents = [row.split("|")[4].strip() for row in rows]
    assert steps == ["0", "1", "2", "3"] and percents == ["10", "25", "50", "100"]
    assert all(row.split("|")[6].strip() == "0 (pass)" for row in rows)  # error_rate: none
    assert "`loopline.io/rollout-phase` | promoted" in text
    page = (tmp_path / "summary.html").read_text()
    assert "promoted" in page and page.count("<tr>") == report.metadata["checks"] + 1
    assert report.metadata["outcome"] == "promoted"


@pytest.mark.prometheus
@pytest.mark.mlflow
def test_a_failing_candidate_is_rolled_back_in_standard_mode(
    registry, trained, serving, prom, tracking_uri
):
    name, champion, candidate, api = model_with_champion(
        registry, trained, serving, prom, "standard", error_ratio=0.3
    )
    result = executor.run(
        name,
        candidate.version,
        tracking_uri,
        prom.url,
        NS,
        "standard",
        json.dumps(POLICY),
        api=api,
        validate=validate_kserve,
        poll=0.05,
    )

    assert result["outcome"] == "rolled_back"
    assert api.served(NS, name) == {champion.version: 100}
    obj = api.get_namespaced_custom_object(
        "serving.kserve.io", "v1beta1", NS, "inferenceservices", name
    )
    assert "canary" not in obj["spec"]  # the candidate's Deployment is gone
    assert registry.get(name, candidate.version).state == "rolled_back"
    assert registry.champion(name).version == champion.version
    verdicts = [c["verdict"] for c in result["checks"]]
    assert verdicts.count("fail") == 2 and "pass" not in verdicts
    assert all(c["percent"] == 10 for c in result["checks"])  # never left the first step
    text = executor.markdown(result)
    failing = [line for line in text.splitlines() if "**FAIL**" in line]
    assert len(failing) == 2 and all("error_rate=" in line for line in failing)
    assert "version " + champion.version in text and "rolled_back" in text
    assert result["annotations"]["phase"] == "rolled_back"


@pytest.mark.mlflow
def test_the_first_version_needs_no_rollout(registry, trained, tracking_uri):
    name = f"rc-first-{uuid.uuid4().hex[:6]}"
    first = register(registry, trained, name, "staging", "production")
    api = FakeKServe()
    KServeDeployment(api, name, NS, "knative").deploy(first)  # push's first deploy
    writes = len(api.writes())
    result = executor.run(
        name, first.version, tracking_uri, "http://127.0.0.1:9", NS, "knative", api=api
    )
    assert result["outcome"] == "deployed" and result["checks"] == []
    assert len(api.writes()) == writes  # nothing changed
    assert "nothing to roll out" in executor.markdown(result)


@pytest.mark.mlflow
def test_a_version_that_was_not_pushed_is_refused(registry, trained, tracking_uri):
    name = f"rc-nopush-{uuid.uuid4().hex[:6]}"
    model_dir, lineage, example = trained
    version = registry.register(name, model_dir, lineage, "s3://stats/x", example).version
    with pytest.raises(executor.RolloutInputError, match="no serving copy.*push it"):
        executor.run(name, version, tracking_uri, "http://127.0.0.1:9", NS, api=FakeKServe())


@pytest.mark.prometheus
@pytest.mark.mlflow
def test_settle_rolls_back_a_rollout_whose_run_died(
    registry, trained, serving, prom, tracking_uri, monkeypatch
):
    name, champion, candidate, api = model_with_champion(
        registry, trained, serving, prom, "knative"
    )

    class Killed(Exception):
        pass

    def dies_at_step_1(seconds):
        obj = api.objects[("serving.kserve.io", NS, "inferenceservices", name)]
        if obj["metadata"]["annotations"].get(engine.key("step")) == "1":
            raise Killed  # the pod is gone mid-rollout
        import time

        time.sleep(seconds)

    with pytest.raises(Killed):
        executor.run(
            name,
            candidate.version,
            tracking_uri,
            prom.url,
            NS,
            "knative",
            json.dumps(POLICY),
            api=api,
            poll=0.05,
            sleep=dies_at_step_1,
        )
    assert api.served(NS, name) == {candidate.version: 25, champion.version: 75}
    assert registry.get(name, candidate.version).state == "canary"

    # The exit handler, as the pipeline runs it.
    monkeypatch.setattr(inferenceservice, "cluster_api", lambda: api)
    outcome = settle_component.python_func(
        model_name=name, mlflow_tracking_uri=tracking_uri, namespace=NS, pipeline_run_id="run-8"
    )
    assert outcome == "rolled_back"
    assert api.served(NS, name) == {champion.version: 100}
    assert registry.get(name, candidate.version).state == "rolled_back"
    assert registry.champion(name).version == champion.version
    assert "exit handler" in registry.history(name, candidate.version)[-1].reason
    # Settling again changes nothing.
    writes = len(api.writes())
    assert executor.settle_run(name, tracking_uri, NS, api=api)["outcome"] == "rolled_back"
    assert len(api.writes()) == writes
    # No InferenceService: nothing to settle.
    assert executor.settle_run("rc-absent", tracking_uri, NS, api=api)["outcome"] == "none"
