"""The rollout engine (components/lib/rollout.py) and its gates (components/lib/gates.py)
against a REAL Prometheus (Debian's, a subprocess scraping every second) that scrapes a
metrics endpoint whose traffic each test controls (tests/prometheus.py), a fake deployment
that records every call, and the registry (the real MLflow server where the registry's
answer is the point; an in-memory one with the same state machine elsewhere).

Each test uses its own model name, so its series never mix with another test's. Nothing
asserts a duration: the assertions are on verdicts, calls, annotations and registry states.
"""

from __future__ import annotations

import json
import time

import pytest

from components.lib import gates, rollout
from components.lib.rollout import Rollout, RolloutPolicy, key
from components.lib.tests.fake_deployment import FakeDeployment, FakeRegistry, ref
from tests.prometheus import LocalPrometheus, ServingMetrics

RATE = 200.0  # live requests per second, split by the fake deployment's traffic

BASE = {
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
    "blue_green": {"smoke_requests": 40, "bake_seconds": 4},
    "shadow": {"duration_seconds": 3},
}


def policy(**changes) -> RolloutPolicy:
    data = json.loads(json.dumps(BASE))
    data.update(changes)
    return RolloutPolicy.from_dict(data)


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


def live(serving, prom, model: str, dep: FakeDeployment, **behaviour) -> None:
    """Routes live traffic to ``model`` by ``dep``'s split and waits until Prometheus has
    the stable version's requests in a window."""
    for version, how in behaviour.items():
        serving.behave(model, version.removeprefix("v"), **how)
    serving.route(model, dep.split)
    stable = dep.traffic.stable.version
    prom.wait_for(gates.query("requests", model, stable, 5) + " > 50")


def fake_registry(model: str, stable: str = "1", *candidates: str) -> FakeRegistry:
    reg = FakeRegistry()
    reg.states[(model, stable)] = "production"
    for c in candidates:
        reg.states[(model, c)] = "staging"
    return reg


def calls(dep: FakeDeployment, since: int = 0) -> list:
    return dep.names()[since:] if since else dep.names()


# --------------------------------------------------------------------------- the registry


@pytest.fixture(scope="module")
def trained(tmp_path_factory, bikeshare_csv):
    from tests.fitted import registrable_model

    return registrable_model(tmp_path_factory.mktemp("trained"), bikeshare_csv)


@pytest.fixture(scope="module")
def registry(tracking_uri):
    from components.lib.registry import Registry

    return Registry(tracking_uri, actor="pytest-rollout")


def register(registry, trained, name: str, *states: str) -> str:
    from tests.fitted import register_in

    return register_in(registry, trained, name, *states)


@pytest.fixture(scope="module")
def bad_model(registry, trained):
    """A model with a champion; each rollback test registers its own candidate."""
    return "roll-bad", register(registry, trained, "roll-bad", "staging", "production")


# --------------------------------------------------------------------------- the gates alone


@pytest.mark.unit
def test_jensen_shannon_distance_is_scipys_base_2():
    from scipy.spatial.distance import jensenshannon

    p, q = [5, 10, 0, 3], [1, 2, 9, 3]
    assert gates.jensen_shannon_distance(p, q) == pytest.approx(jensenshannon(p, q, base=2))
    assert gates.jensen_shannon_distance([1, 0], [0, 1]) == pytest.approx(1.0)
    assert gates.jensen_shannon_distance([2, 4], [1, 2]) == pytest.approx(0.0)


@pytest.mark.unit
@pytest.mark.parametrize(
    "data, message",
    [
        ({"strategy": "linear"}, r"policy\.strategy: 'linear' is not one of"),
        ({"canary": {"steps": [10, 50, 25]}}, r"policy\.canary\.steps\[2\]: 25 is not above 50"),
        ({"canary": {"steps": [10, "x"]}}, r"policy\.canary\.steps\[1\]: expected int"),
        ({"gates": [{"type": "error_rate"}]}, r"policy\.gates\[0\]\.threshold: missing"),
        ({"gates": [{"type": "p50", "threshold": 1}]}, r"policy\.gates\[0\]: gate type 'p50'"),
        ({"gates": []}, r"policy\.gates: at least one gate"),
        ({"min_requests": 0}, r"policy\.min_requests: must be at least 1"),
        ({"inconclusive": {"then": "hope"}}, r"policy\.inconclusive\.then: 'hope'"),
        ({"windw_seconds": 5}, r"policy\.windw_seconds: unknown field"),
        (
            {"strategy": "blue_green", "blue_green": {"smoke_requests": 5}},
            r"policy\.blue_green\.smoke_requests: 5 is under min_requests 20",
        ),
    ],
)
def test_policy_errors_name_the_field(data, message):
    with pytest.raises(rollout.PolicyError, match=message):
        policy(**data)


@pytest.mark.unit
def test_policy_loads_from_yaml_and_json(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text(
        "strategy: shadow\ngates:\n  - {type: error_rate, threshold: 0.01}\n"
        "shadow: {duration_seconds: 60, min_agreement: 0.9}\n"
    )
    loaded = RolloutPolicy.load(path)
    assert loaded.strategy == "shadow" and loaded.shadow_seconds == 60
    assert [g.type for g in loaded.all_gates()] == ["error_rate", "shadow_agreement"]
    assert RolloutPolicy.load(json.dumps(BASE)).steps == (10, 25, 50, 100)


@pytest.mark.prometheus
def test_a_query_error_is_inconclusive_never_a_pass(tmp_path, serving):
    stopped = LocalPrometheus(tmp_path / "p", [serving.target])
    url = stopped.url
    stopped.stop()  # Prometheus gone: every query fails
    check = gates.evaluate(
        url,
        policy().gates,
        model="anything",
        candidate="2",
        stable="1",
        window_seconds=5,
        min_requests=1,
    )
    assert check.verdict == gates.INCONCLUSIVE
    assert all(r.verdict == gates.INCONCLUSIVE for r in check.results)
    assert "did not answer" in check.reason

    # And a rollout on it never promotes: it pauses for the operator, as configured.
    dep, reg = FakeDeployment(ref("qerr", "1")), fake_registry("qerr", "1", "2")
    p = policy(interval_seconds=0.1, inconclusive={"max_checks": 3, "then": "pause"})
    out = Rollout(dep, reg, url, p, "qerr", ref("qerr", "2")).run()
    assert out.phase == rollout.PAUSED
    assert "did not answer" in out.reason
    assert [c["verdict"] for c in out.checks] == ["inconclusive"] * 3
    assert ("promote",) not in dep.calls and reg.states[("qerr", "2")] == "canary"
    assert dep.annotations[key("phase")] == "paused"
    # The exit handler leaves a paused rollout to the operator.
    assert rollout.settle(dep, reg, "qerr").phase == rollout.PAUSED
    assert dep.traffic.candidate.version == "2"


# --------------------------------------------------------------------------- canary


@pytest.mark.prometheus
@pytest.mark.mlflow
def test_a_healthy_canary_goes_through_every_step_and_is_promoted(serving, prom, registry, trained):
    name = "roll-ok"
    champion = register(registry, trained, name, "staging", "production")
    candidate = register(registry, trained, name, "staging")
    dep = FakeDeployment(ref(name, champion), rate=RATE)
    live(serving, prom, name, dep, **{champion: {}, candidate: {}})

    out = Rollout(dep, registry, prom.url, policy(), name, ref(name, candidate)).run()

    assert out.phase == rollout.PROMOTED, out.reason
    assert calls(dep) == [
        ("start_candidate", candidate, 10, False),
        ("set_percent", 25),
        ("set_percent", 50),
        ("set_percent", 100),
        ("promote",),
    ]
    assert [c["verdict"] for c in out.checks].count("pass") == 4
    assert "fail" not in [c["verdict"] for c in out.checks]
    assert registry.get(name, candidate).state == "production"
    assert registry.get(name, champion).state == "archived"
    assert registry.champion(name).version == candidate
    ann = dep.annotations
    assert ann[key("phase")] == "promoted" and ann[key("candidate")] == candidate
    assert ann[key("strategy")] == "canary" and ann[key("step")] == "3"
    verdict = json.loads(ann[key("verdict")])
    assert verdict["verdict"] == "pass" and verdict["gates"]["error_rate"] == 0
    assert ann[key("started")] <= ann[key("updated")]


@pytest.mark.prometheus
@pytest.mark.mlflow
@pytest.mark.parametrize(
    "behaviour, gate",
    [
        ({"error_ratio": 0.3}, "error_rate"),
        ({"latency": 0.4}, "latency_p99"),
        ({"mean": 600.0}, "prediction_divergence"),
    ],
    ids=["errors", "slow", "shifted"],
)
def test_a_bad_candidate_is_rolled_back_within_max_failed_checks(
    serving, prom, registry, trained, bad_model, behaviour, gate
):
    name, champion = bad_model
    candidate = register(registry, trained, name, "staging")
    dep = FakeDeployment(ref(name, champion), rate=RATE)
    live(serving, prom, name, dep, **{champion: {}, candidate: behaviour})

    out = Rollout(dep, registry, prom.url, policy(), name, ref(name, candidate)).run()

    assert out.phase == rollout.ROLLED_BACK
    verdicts = [c["verdict"] for c in out.checks]
    assert verdicts.count("fail") == 2 and "pass" not in verdicts  # max_failed_checks
    assert calls(dep) == [("start_candidate", candidate, 10, False), ("rollback",)]
    got = registry.get(name, candidate)
    assert got.state == "rolled_back"
    assert registry.champion(name).version == champion
    last = registry.history(name, candidate)[-1]
    assert last.to_state == "rolled_back" and f"{gate}=" in last.reason
    assert "fail" in last.reason
    assert dep.annotations[key("phase")] == "rolled_back"
    assert dep.annotations[key("failed")] == "2"


@pytest.mark.prometheus
def test_no_traffic_is_inconclusive_then_rolled_back_by_policy(serving, prom):
    name = "roll-idle"
    dep = FakeDeployment(ref(name, "1"), rate=0.0)
    reg = fake_registry(name, "1", "2")
    serving.behave(name, "1")
    serving.behave(name, "2")
    serving.route(name, dep.split)
    p = policy(interval_seconds=0.5, inconclusive={"max_checks": 4, "then": "rollback"})

    out = Rollout(dep, reg, prom.url, p, name, ref(name, "2")).run()

    assert [c["verdict"] for c in out.checks] == ["inconclusive"] * 4
    # Before its first scrape the candidate has no series; after it, zero requests.
    assert all(
        "under min_requests" in c["reason"] or "no requests series" in c["reason"]
        for c in out.checks
    )
    assert "answered 0 requests" in out.checks[-1]["reason"]
    assert out.phase == rollout.ROLLED_BACK and "4 inconclusive checks" in out.reason
    assert ("promote",) not in dep.calls
    assert reg.states[(name, "2")] == "rolled_back"
    assert reg.states[(name, "1")] == "production"


@pytest.mark.prometheus
def test_an_interrupted_rollout_resumes_at_its_step_and_refuses_another_candidate(serving, prom):
    name = "roll-resume"
    dep = FakeDeployment(ref(name, "1"), rate=RATE)
    reg = fake_registry(name, "1", "2", "3")
    live(serving, prom, name, dep, v1={}, v2={})

    class Killed(Exception):
        pass

    def dies_at_step_2(seconds):
        if dep.annotations.get(key("step")) == "2":
            raise Killed
        time.sleep(seconds)

    first = Rollout(dep, reg, prom.url, policy(), name, ref(name, "2"), sleep=dies_at_step_2)
    with pytest.raises(Killed):
        first.run()
    assert dep.traffic.candidate_percent == 50 and dep.annotations[key("phase")] == "running"
    checks_before = int(dep.annotations[key("checks")])

    # Another candidate while this one is in progress: refused, nothing changed.
    with pytest.raises(rollout.RolloutInProgress, match="rollout of version 2 is running"):
        Rollout(dep, reg, prom.url, policy(), name, ref(name, "3")).run()
    assert reg.states[(name, "3")] == "staging"

    seen = len(calls(dep))
    out = Rollout(dep, reg, prom.url, policy(), name, ref(name, "2")).run()
    assert out.phase == rollout.PROMOTED, out.reason
    assert calls(dep, seen) == [("set_percent", 100), ("promote",)]  # not back to 10%
    assert int(dep.annotations[key("checks")]) > checks_before
    assert reg.states[(name, "2")] == "production" and reg.states[(name, "1")] == "archived"


@pytest.mark.prometheus
@pytest.mark.parametrize("action", ["promote", "rollback"])
def test_an_operator_annotation_is_honoured_at_the_next_check(serving, prom, action):
    name = f"roll-op-{action}"
    dep = FakeDeployment(ref(name, "1"), rate=RATE)
    reg = fake_registry(name, "1", "2")
    live(serving, prom, name, dep, v1={}, v2={})

    def operator_after_first_check(seconds):
        if dep.annotations.get(key("checks")) == "1":
            # as `kubectl annotate isvc NAME loopline.io/rollout-action=...` would
            dep.annotate({key("action"): action, key("action_reason"): "ticket 42"})
        time.sleep(seconds)

    out = Rollout(
        dep, reg, prom.url, policy(), name, ref(name, "2"), sleep=operator_after_first_check
    ).run()

    assert int(dep.annotations[key("checks")]) == 1  # acted at the next check
    assert key("action") not in dep.annotations
    if action == "promote":
        assert out.phase == rollout.PROMOTED and calls(dep)[-1] == ("promote",)
        assert reg.states[(name, "2")] == "production"
    else:
        assert out.phase == rollout.ROLLED_BACK and calls(dep)[-1] == ("rollback",)
        assert reg.states[(name, "2")] == "rolled_back"
    assert "operator" in reg.moves[-1][-1] and "ticket 42" in reg.moves[-1][-1]


@pytest.mark.prometheus
def test_an_operator_action_for_another_version_is_ignored(serving, prom):
    """A stale overlay (its action-version names an earlier candidate) does not act."""
    name = "roll-op-stale"
    dep = FakeDeployment(ref(name, "1"), rate=RATE)
    reg = fake_registry(name, "1", "2")
    live(serving, prom, name, dep, v1={}, v2={})

    def stale_rollback_after_first_check(seconds):
        if dep.annotations.get(key("checks")) == "1" and key("reason") not in dep.annotations:
            dep.annotate({key("action"): "rollback", key("action_version"): "9"})
        time.sleep(seconds)

    out = Rollout(
        dep, reg, prom.url, policy(), name, ref(name, "2"), sleep=stale_rollback_after_first_check
    ).run()

    assert out.phase == rollout.PROMOTED, out
    assert reg.states[(name, "2")] == "production"
    assert ("rollback",) not in calls(dep)


# --------------------------------------------------------------------------- blue-green


@pytest.mark.prometheus
@pytest.mark.parametrize("breaks_at_bake", [False, True], ids=["healthy", "breaks"])
def test_blue_green_smokes_switches_and_switches_back_within_one_check(
    serving, prom, breaks_at_bake
):
    name = f"roll-bg-{breaks_at_bake}"
    dep = FakeDeployment(ref(name, "1"), rate=RATE)
    reg = fake_registry(name, "1", "2")
    live(serving, prom, name, dep, v1={}, v2={})
    smokes = []

    def smoke(url, count):
        smokes.append((url, count))
        serving.burst(name, "2", count)

    def on_change(call, args):
        if call == "set_percent" and args == (100,) and breaks_at_bake:
            serving.behave(name, "2", error_ratio=0.5)

    dep.listeners.append(on_change)
    # 200 smoke requests: the prediction histogram of 40 draws from the champion's own
    # distribution was 0.36 away from it by chance (Jensen-Shannon distance, 20 buckets; about
    # sqrt(19 / (8 * 40 * ln 2)) = 0.29 expected), over the 0.35 gate; of 200, about 0.13.
    p = policy(strategy="blue_green", blue_green={"smoke_requests": 200, "bake_seconds": 4})
    out = Rollout(dep, reg, prom.url, p, name, ref(name, "2"), smoke=smoke).run()

    assert smokes and smokes[0] == ("http://candidate.local", 200)
    start = [("start_candidate", "2", 0, False), ("set_percent", 100)]
    if not breaks_at_bake:
        assert out.phase == rollout.PROMOTED, out.reason
        assert calls(dep) == [*start, ("promote",)]
        assert reg.states[(name, "2")] == "production"
    else:
        assert out.phase == rollout.ROLLED_BACK
        assert calls(dep) == [*start, ("set_percent", 0), ("rollback",)]
        bake = [c for c in out.checks[-1:]]
        assert bake[0]["verdict"] == "fail"
        assert dep.annotations[key("failed")] == "1"  # one failed check switched back
        assert reg.states[(name, "2")] == "rolled_back" and "error_rate=" in reg.moves[-1][-1]


# --------------------------------------------------------------------------- shadow


@pytest.mark.prometheus
@pytest.mark.parametrize("agreement", [0.99, 0.5])
def test_shadow_mirrors_and_is_judged_by_its_own_gates_and_agreement(serving, prom, agreement):
    name = f"roll-shadow-{int(agreement * 100)}"
    dep = FakeDeployment(ref(name, "1"), rate=RATE)
    reg = fake_registry(name, "1", "2")
    live(serving, prom, name, dep, v1={}, v2={})
    p = policy(strategy="shadow", shadow={"duration_seconds": 3, "min_agreement": 0.9})

    out = Rollout(
        dep, reg, prom.url, p, name, ref(name, "2"), probes={"shadow_agreement": lambda: agreement}
    ).run()

    assert calls(dep)[0] == ("start_candidate", "2", 0, True)  # mirrored, no live share
    assert not [c for c in calls(dep) if c[0] == "set_percent"]
    if agreement > 0.9:
        assert out.phase == rollout.PROMOTED, out.reason
    else:
        assert out.phase == rollout.ROLLED_BACK
        assert "shadow_agreement=0.5" in reg.moves[-1][-1]


# --------------------------------------------------------------------------- the exit handler


@pytest.mark.unit
def test_settle_rolls_back_an_unfinished_rollout_and_finishes_a_begun_promotion():
    name = "settle"
    dep = FakeDeployment(ref(name, "1"))
    reg = fake_registry(name, "1", "2", "3")
    reg.transition(name, "2", "canary", reason="test")
    dep.start_candidate(ref(name, "2"), 100)
    dep.annotate({key("candidate"): "2", key("phase"): "running", key("step"): "3"})
    # At 100% but not passed by the gates: rolled back, never promoted by the exit handler.
    out = rollout.settle(dep, reg, name)
    assert out.phase == rollout.ROLLED_BACK and dep.traffic.candidate is None
    assert reg.states[(name, "2")] == "rolled_back" and "exit handler" in reg.moves[-1][-1]

    # A promotion that had begun (intent written, then the run died): finished.
    reg.transition(name, "3", "canary", reason="test")
    dep.start_candidate(ref(name, "3"), 100)
    dep.annotate({key("candidate"): "3", key("phase"): "promoting", key("reason"): "gates ok"})
    out = rollout.settle(dep, reg, name)
    assert out.phase == rollout.PROMOTED and dep.traffic.stable.version == "3"
    assert reg.states[(name, "3")] == "production" and reg.states[(name, "1")] == "archived"
    assert rollout.status(dep)["rollout"]["phase"] == "promoted"
    # Nothing left to settle: settling again changes nothing.
    before = list(reg.moves)
    assert rollout.settle(dep, reg, name).phase == rollout.PROMOTED and reg.moves == before
