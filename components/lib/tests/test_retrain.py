"""The retraining policy (components/lib/retrain.py) and its log in the registry.

The pure :func:`decide` tests prove each rule twice: that it blocks (``blocked_by`` and the
reason name it) and that it lifts once its condition passes. The registry tests run against
the session's real MLflow tracking server (``mlflow_server`` in tests/fixtures.py): a re-run
window is idempotent, two OS processes monitoring at once trigger at most one retrain, and a
rejected retrained version starts the cool-down.
"""

from __future__ import annotations

import json
import multiprocessing
from datetime import UTC, datetime, timedelta

import pytest

from components.lib import registry as reg
from components.lib import retrain
from components.lib.registry import Registry
from components.lib.retrain import PolicyError, RetrainPolicy, WindowRecord, decide
from components.lib.tests import retrain_racer
from tests.fitted import register_in, registrable_model

T0 = datetime(2026, 11, 1, tzinfo=UTC)
H = timedelta(hours=1)
DAY = timedelta(days=1)


def rec(window_id: str, at: datetime, drift=False, decay=False, decided=True, retrain=False):
    """A record as the log holds it (``retrain=True`` marks a trigger)."""
    return WindowRecord(
        window_id=window_id,
        start=(at - DAY).isoformat(),
        end=at.isoformat(),
        at=at.isoformat(),
        drift=drift,
        decay=decay,
        rows=1000 if decided else 3,
        decided=decided,
        retrain=retrain,
        trigger=("drift" if drift else "decay") if retrain else None,
        reason="test",
    )


def run(policy, history, now, drift=True, decay=False, decided=True, **kw):
    return decide(
        policy,
        history,
        window_id="w-now",
        drift=drift,
        decay=decay,
        decided=decided,
        now=now,
        **kw,
    )


# --------------------------------------------------------------------------- decide (pure)

pure = pytest.mark.unit


@pure
def test_consecutive_windows_blocks_a_single_drifted_window_and_lifts_on_the_second():
    policy = RetrainPolicy()
    first = run(policy, [], T0)
    assert (first.retrain, first.blocked_by, first.consecutive) == (False, "consecutive_windows", 1)
    assert "drift in 1 of 2 consecutive windows" in first.reason
    second = run(policy, [rec("w1", T0, drift=True)], T0 + 6 * H)
    assert (second.retrain, second.trigger, second.blocked_by) == (True, "drift", None)
    assert "drift in 2 consecutive windows (policy: 2)" in second.reason
    # A clean decided window in between breaks the streak.
    broken = run(policy, [rec("w1", T0, drift=True), rec("w2", T0 + H)], T0 + 2 * H)
    assert (broken.retrain, broken.blocked_by, broken.consecutive) == (
        False,
        "consecutive_windows",
        1,
    )


@pure
def test_undecided_windows_neither_break_nor_extend_the_streak():
    policy = RetrainPolicy(consecutive_windows=3)
    history = [
        rec("w1", T0, drift=True),
        rec("w2", T0 + H, decided=False),
        rec("w3", T0 + 2 * H, drift=True),
        rec("w4", T0 + 3 * H, decided=False),
    ]
    undecided = run(policy, history, T0 + 4 * H, decided=False)
    assert (undecided.retrain, undecided.trigger, undecided.blocked_by) == (False, None, None)
    assert "no decision" in undecided.reason and "neither breaks nor extends" in undecided.reason
    assert retrain.streaks(history)["drift"] == 2  # w2 and w4 skipped, not counted
    held = run(policy, history, T0 + 4 * H)
    assert (held.retrain, held.trigger, held.consecutive) == (True, "drift", 3)
    assert "drift in 3 consecutive windows (policy: 3)" in held.reason


@pure
def test_no_signal_is_no_retrain_and_nothing_blocked():
    out = run(RetrainPolicy(), [rec("w1", T0, drift=True)], T0 + H, drift=False)
    assert (out.retrain, out.trigger, out.blocked_by) == (False, None, None)
    assert "no drift or decay" in out.reason


@pure
def test_decay_triggers_and_triggers_limits_the_signals():
    history = [rec("w1", T0, decay=True)]
    out = run(RetrainPolicy(), history, T0 + H, drift=False, decay=True)
    assert (out.retrain, out.trigger) == (True, "decay")
    drift_only = RetrainPolicy(triggers=("drift",))
    out = run(drift_only, history, T0 + H, drift=False, decay=True)
    assert (out.retrain, out.blocked_by) == (False, "triggers")
    assert "decay" in out.reason and "triggers are drift" in out.reason


@pure
def test_min_interval_blocks_after_a_retrain_and_lifts_after_it():
    policy = RetrainPolicy()
    history = [
        rec("w1", T0, drift=True),
        rec("w2", T0 + 6 * H, drift=True, retrain=True),
        rec("w3", T0 + 8 * H, drift=True),
    ]
    blocked = run(policy, history, T0 + 11 * H)
    assert (blocked.retrain, blocked.blocked_by) == (False, "min_interval_hours")
    assert "blocked: last retrain 5.0 h ago < min_interval_hours 24" in blocked.reason
    lifted = run(policy, history, T0 + 30 * H)
    assert (lifted.retrain, lifted.trigger, lifted.blocked_by) == (True, "drift", None)
    # A retrain outside the log (last_retrain_at) counts too.
    outside = run(policy, history[:1], T0 + 30 * H, last_retrain_at=T0 + 20 * H)
    assert (outside.retrain, outside.blocked_by) == (False, "min_interval_hours")


@pure
def test_the_trigger_window_uses_up_its_streak():
    policy = RetrainPolicy()
    history = [rec("w1", T0, drift=True), rec("w2", T0 + H, drift=True, retrain=True)]
    out = run(policy, history, T0 + 2 * DAY)  # min interval long passed; streak 1 since w2
    assert (out.retrain, out.blocked_by, out.consecutive) == (False, "consecutive_windows", 1)


@pure
def test_cooldown_after_a_rejected_retrain_blocks_and_lifts():
    policy = RetrainPolicy()
    history = [
        rec("w1", T0, drift=True),
        rec("w2", T0 + H, drift=True, retrain=True),
        rec("w3", T0 + 30 * H, drift=True),
    ]
    rejected = [T0 + 10 * H]
    blocked = run(policy, history, T0 + 40 * H, rejected_at=rejected)
    assert (blocked.retrain, blocked.blocked_by) == (False, "cooldown_after_reject_hours")
    assert "rejected 30.0 h ago < cooldown_after_reject_hours 72" in blocked.reason
    lifted = run(policy, history, T0 + 82 * H, rejected_at=rejected)
    assert (lifted.retrain, lifted.trigger) == (True, "drift")


@pure
def test_max_per_period_caps_retrains_and_lifts_when_the_oldest_leaves_the_period():
    policy = RetrainPolicy(max_per_period=2, period_days=7, min_interval_hours=0)
    history = [
        rec("a1", T0, drift=True),
        rec("a2", T0 + H, drift=True, retrain=True),
        rec("b1", T0 + DAY, drift=True),
        rec("b2", T0 + DAY + H, drift=True, retrain=True),
        rec("c1", T0 + 2 * DAY, drift=True),
    ]
    blocked = run(policy, history, T0 + 2 * DAY + H)
    assert (blocked.retrain, blocked.blocked_by) == (False, "max_per_period")
    assert "2 retrains in the last 7 days >= max_per_period 2" in blocked.reason
    lifted = run(policy, history, T0 + 7 * DAY + 2 * H)  # a2 is now older than the period
    assert (lifted.retrain, lifted.trigger) == (True, "drift")


@pure
def test_schedule_retrains_without_drift_when_due_and_is_off_by_default():
    history = [rec("w1", T0, drift=True), rec("w2", T0 + H, drift=True, retrain=True)]
    weekly = RetrainPolicy(schedule_days=7)
    early = run(weekly, history, T0 + 6 * DAY, drift=False)
    assert (early.retrain, early.trigger, early.blocked_by) == (False, None, None)
    due = run(weekly, history, T0 + H + 7 * DAY, drift=False)
    assert (due.retrain, due.trigger, due.blocked_by) == (True, "schedule", None)
    assert "schedule_days 7" in due.reason
    # A short drift streak does not stop a due schedule.
    assert run(weekly, history, T0 + H + 7 * DAY).trigger == "schedule"
    off = run(RetrainPolicy(), history, T0 + 30 * DAY, drift=False)
    assert (off.retrain, off.trigger) == (False, None)
    # Before any retrain, the schedule counts from the first monitored window.
    first = [rec("w1", T0)]
    assert run(weekly, first, T0 + 7 * DAY, drift=False).trigger == "schedule"
    assert not run(weekly, [], T0, drift=False).retrain


@pure
def test_a_schedule_trigger_still_obeys_the_guard_rails():
    policy = RetrainPolicy(schedule_days=1, min_interval_hours=48)
    history = [rec("w1", T0, drift=True), rec("w2", T0 + H, drift=True, retrain=True)]
    out = run(policy, history, T0 + 30 * H, drift=False)
    assert (out.retrain, out.blocked_by) == (False, "min_interval_hours")
    assert "schedule" in out.reason


# --------------------------------------------------------------------------- the policy


@pure
def test_the_bundled_default_is_the_dataclass_default_and_every_form_loads():
    assert RetrainPolicy.load("default") == RetrainPolicy()
    assert RetrainPolicy.load("") == RetrainPolicy()
    assert retrain.bundled_policies() == ["default"]
    assert RetrainPolicy.load('{"schedule_days": 7}').schedule_days == 7
    text = "consecutive_windows: 3\ntriggers: [decay]\n"
    assert RetrainPolicy.load(text) == RetrainPolicy(consecutive_windows=3, triggers=("decay",))


@pure
def test_a_policy_file_path_loads(tmp_path):
    path = tmp_path / "weekly.yaml"
    path.write_text("schedule_days: 7\nmax_per_period: 1\n")
    assert RetrainPolicy.load(str(path)) == RetrainPolicy(schedule_days=7, max_per_period=1)
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"period_days": 14}))
    assert RetrainPolicy.load(str(path)).period_days == 14


@pure
@pytest.mark.parametrize(
    "spec, message",
    [
        ('{"consecutive_window": 2}', "policy.consecutive_window: unknown field"),
        ('{"consecutive_windows": 0}', "policy.consecutive_windows: expected an integer >= 1"),
        ('{"consecutive_windows": 1.5}', "policy.consecutive_windows: expected an integer"),
        ('{"max_per_period": true}', "policy.max_per_period: expected an integer"),
        ("min_interval_hours: -1", "policy.min_interval_hours: expected a number >= 0"),
        ("cooldown_after_reject_hours: soon", "policy.cooldown_after_reject_hours"),
        ("period_days: 0", "policy.period_days: expected a number > 0"),
        ("schedule_days: .nan", "policy.schedule_days"),
        ("triggers: [drift, weather]", "policy.triggers[1]: 'weather' is not a signal"),
        ("triggers: drift", "policy.triggers: expected a list"),
        ("triggers: [drift, drift]", "policy.triggers: repeated signal"),
        ("[1, 2]", "policy: expected a mapping"),
        ("weekly", "policy 'weekly': no such file and no bundled policy"),
        ("{bad: [", "neither JSON nor YAML"),
    ],
)
def test_bad_policies_are_refused_naming_the_key(spec, message):
    with pytest.raises(PolicyError) as caught:
        RetrainPolicy.load(spec)
    assert message in str(caught.value)


@pure
def test_a_window_record_round_trips_through_json():
    record = rec("w1", T0, drift=True, retrain=True)
    assert WindowRecord.from_dict(json.loads(json.dumps(record.to_dict()))) == record


# --------------------------------------------------------------------------- in the registry

mlflow = pytest.mark.mlflow


@pytest.fixture(scope="module")
def registry(tracking_uri) -> Registry:
    return Registry(tracking_uri, actor="pytest")


def _model(registry: Registry, name: str) -> str:
    registry._ensure_model(name)
    return name


def _window(registry, name, window_id, drift=True, now=None, **kw):
    return registry.monitor_window(
        name,
        RetrainPolicy(),
        window_id=window_id,
        start=f"{window_id}-start",
        end=f"{window_id}-end",
        drift=drift,
        decay=False,
        rows=kw.pop("rows", 5000),
        now=now,
        **kw,
    )


def _monitor_tags(registry: Registry, name: str) -> dict:
    tags = registry.client.get_registered_model(name).tags
    return {k: v for k, v in tags.items() if k.startswith(reg.MONITOR_PREFIX)}


@mlflow
def test_a_window_monitored_twice_returns_the_recorded_decision_and_appends_nothing(registry):
    name = _model(registry, "monitor-idem")
    first = _window(registry, name, "2026-11-01")
    second = _window(registry, name, "2026-11-02", run_id="run-a")
    assert (first.retrain, second.retrain, second.trigger) == (False, True, "drift")
    before = _monitor_tags(registry, name)
    assert sorted(before) == [f"{reg.MONITOR_PREFIX}00000001", f"{reg.MONITOR_PREFIX}00000002"]
    # The same window again, from another run, even with other signals: the recorded decision.
    again = _window(registry, name, "2026-11-02", drift=False, run_id="run-b")
    assert again == second and again.run_id == "run-a"
    assert _monitor_tags(registry, name) == before
    log = registry.monitoring_log(name)
    assert [r.window_id for r in log] == ["2026-11-01", "2026-11-02"]
    assert [r.seq for r in log] == [1, 2] and log[1] == second
    assert [r.retrain for r in log].count(True) == 1  # no storm from repeated runs


@mlflow
def test_an_undecided_window_is_recorded_without_a_decision(registry):
    name = _model(registry, "monitor-few")
    record = _window(registry, name, "w1", decided=False, rows=3)
    assert (record.decided, record.retrain, record.rows) == (False, False, 3)
    assert "no decision" in record.reason
    assert registry.monitoring_log(name) == [record]


@mlflow
def test_an_unknown_model_and_an_empty_window_id_are_refused(registry):
    with pytest.raises(reg.NotFound, match="no-such-model"):
        _window(registry, "no-such-model", "w1")
    name = _model(registry, "monitor-empty")
    with pytest.raises(reg.RegistryError, match="window id"):
        _window(registry, name, " ")
    assert registry.monitoring_log(name) == []


def _race(uri, name, window_ids, hold=0.5, use_lock=True) -> dict:
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(len(window_ids)), ctx.Queue()
    procs = [
        ctx.Process(
            target=retrain_racer.monitor, args=(uri, name, w, barrier, results, hold, use_lock)
        )
        for w in window_ids
    ]
    for p in procs:
        p.start()
    out = dict(results.get(timeout=180) for _ in procs)
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    return out


@mlflow
def test_two_concurrent_monitoring_runs_trigger_at_most_one_retrain(registry, tracking_uri):
    """Each racer alone would trigger (a drifted window already in the log, and its own
    drifted window makes two); under the lock the second decides on a log holding the
    first's trigger and is blocked by min_interval_hours."""
    name = _model(registry, "monitor-race")
    assert not _window(registry, name, "day-1").retrain
    out = _race(tracking_uri, name, ["day-2a", "day-2b"])
    assert all(isinstance(r, dict) for r in out.values()), out
    assert sorted(r["retrain"] for r in out.values()) == [False, True], out
    [loser] = [r for r in out.values() if not r["retrain"]]
    assert loser["blocked_by"] == "min_interval_hours", loser
    assert "blocked: last retrain 0.0 h ago < min_interval_hours 24" in loser["reason"]
    log = registry.monitoring_log(name)
    assert [r.seq for r in log] == [1, 2, 3]
    assert [r.retrain for r in log] == [False, True, False]
    assert {r.window_id for r in log[1:]} == {"day-2a", "day-2b"}


@mlflow
def test_without_the_lock_the_same_race_triggers_twice(registry, tracking_uri):
    """The control: through MLflow's API alone both racers decide on the same log and both
    trigger (and write the same sequence number: one record overwrites the other, or the
    tracking server refuses the second write of that tag)."""
    name = _model(registry, "monitor-race-nolock")
    _window(registry, name, "day-1")
    out = _race(tracking_uri, name, ["day-2a", "day-2b"], hold=1.0, use_lock=False)
    assert all(isinstance(r, dict) for r in out.values()), out
    assert [r["retrain"] for r in out.values()] == [True, True], out
    assert sum("write_error" in r for r in out.values()) <= 1, out
    assert len(registry.monitoring_log(name)) == 2  # two decisions, one record left


@pytest.fixture(scope="module")
def trained(tmp_path_factory, bikeshare_csv):
    return registrable_model(tmp_path_factory.mktemp("trained"), bikeshare_csv)


@mlflow
def test_a_rejected_retrain_starts_the_cooldown(registry, trained):
    name = _model(registry, "monitor-reject")
    old = register_in(registry, trained, name, "rejected")  # before any trigger: not a retrain
    _window(registry, name, "d1")
    assert _window(registry, name, "d2").trigger == "drift"
    # Its old rejection counts only until the retrain; the retrained version is rejected now.
    assert registry.get(name, old).state == "rejected"
    retrained = register_in(registry, trained, name, "rejected")
    rejected_at = registry.history(name, retrained)[-1].time
    later = datetime.now(UTC) + 25 * H  # past min_interval_hours
    _window(registry, name, "d3", now=later)
    blocked = _window(registry, name, "d4", now=later + H)
    assert (blocked.retrain, blocked.blocked_by) == (False, "cooldown_after_reject_hours")
    assert "cooldown_after_reject_hours 72" in blocked.reason
    lifted = _window(registry, name, "d5", now=rejected_at + 73 * H)
    assert (lifted.retrain, lifted.trigger, lifted.consecutive) == (True, "drift", 3)
    assert [r.window_id for r in registry.monitoring_log(name) if r.retrain] == ["d2", "d5"]
