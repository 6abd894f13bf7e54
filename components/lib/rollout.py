"""The progressive-delivery engine: drives a :class:`~components.lib.deployment.Deployment`
through a strategy, judges each step with the gates (:mod:`components.lib.gates`) and moves
the version through the registry (staging -> canary -> production | rolled_back).

State lives only in the deployment's ``loopline.io/rollout-*`` annotations (:data:`KEYS`)
and in the registry, so a new :class:`Rollout` on the same deployment resumes where the last
one stopped. Strategies (:class:`RolloutPolicy`):

* ``canary``: the candidate takes ``steps`` percent in turn (e.g. 10, 25, 50, 100); at each
  step, after ``interval_seconds``, a check; ``checks_per_step`` passing checks advance.
  ``max_failed_checks`` failed checks in the whole rollout roll it back.
* ``blue_green``: the candidate starts at 0%; step 0 (smoke) sends ``smoke_requests``
  requests to :meth:`Deployment.candidate_url` through the caller's ``smoke`` function
  before each check; one failed check rolls back (it never took traffic). Step 1 (bake)
  switches 100% at once; the old version keeps running for ``bake_seconds`` under the same
  gates, and one failed check switches traffic back (``set_percent(0)``) right away, then
  rolls back. After the bake, promotion.
* ``shadow``: the candidate gets a mirror of live traffic and never answers clients, for
  ``shadow_seconds``; judged by its own gates (errors, latency on mirrored requests) and,
  with ``min_agreement``, a ``shadow_agreement`` gate whose value comes from the caller's
  ``probes["shadow_agreement"]`` function. Passing, it is promoted.

Inconclusive checks (too few requests, Prometheus down, empty or NaN results) never pass
and never fail: the step is held and checked again; after ``max_inconclusive`` of them in
the rollout, ``on_inconclusive`` decides: ``rollback``, or ``pause`` (``run()`` returns with
the candidate where it is, phase ``paused``, for an operator: ``promote`` / ``rollback`` or
another ``run()``, which resumes with the inconclusive count reset).

Operator actions: ``loopline.io/rollout-action: promote|rollback`` (with an optional
``loopline.io/rollout-action-reason``), as ``kubectl annotate`` or a kustomize overlay sets
it, is honoured at the next check; :func:`promote` and :func:`rollback` do the same at once.

Phases (``loopline.io/rollout-phase``): ``running``, ``paused``, ``promoting`` /
``rolling_back`` (written before the serving side is changed: the intent), ``promoted``,
``rolled_back``. :func:`settle` (the pipeline's exit handler) leaves a consistent state:
a ``running`` rollout is rolled back (the gates did not pass it, even at 100%), unless the
serving side already made the candidate its stable version; ``promoting`` and
``rolling_back`` are finished; ``paused`` is left for the operator; the registry is made to
agree with a finished phase.

Only the standard library at the top (yaml and prometheus_client inside functions).
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from components.lib import gates as gates_lib
from components.lib.deployment import (
    ANNOTATION_PREFIX,
    STRATEGIES,
    Deployment,
    DeploymentError,
    ModelRef,
    Traffic,
)

log = logging.getLogger("loopline.rollout")

# Annotation keys (all under loopline.io/rollout-).
KEYS = {
    "candidate": "candidate",  # the candidate's version
    "stable": "stable",  # the stable version when the rollout started
    "strategy": "strategy",
    "phase": "phase",
    "step": "step",  # index into the strategy's steps
    "percent": "percent",  # the candidate's share of live traffic at this step
    "passed": "passed",  # passing checks at this step
    "failed": "failed",  # failed checks in the rollout
    "inconclusive": "inconclusive",  # inconclusive checks in the rollout
    "checks": "checks",  # checks in the rollout
    "verdict": "verdict",  # the last check: JSON, verdict, requests and each gate's value
    "started": "started",
    "updated": "updated",
    "step_started": "step-started",
    "reason": "reason",  # why it ended (or paused)
    "action": "action",  # operator: promote | rollback
    "action_reason": "action-reason",
    # An operator's record (manifests/rollout's overlays and `loopline rollout` write them).
    "action_version": "action-version",  # the candidate version the action was about
    "actor": "actor",  # who decided
}
RUNNING, PAUSED, PROMOTING, ROLLING_BACK = "running", "paused", "promoting", "rolling_back"
PROMOTED, ROLLED_BACK, DEPLOYED = "promoted", "rolled_back", "deployed"
ACTIONS = ("promote", "rollback")
ON_INCONCLUSIVE = ("rollback", "pause")


def key(name: str) -> str:
    return ANNOTATION_PREFIX + KEYS[name]


class RolloutError(RuntimeError):
    """The rollout cannot start or go on; the message says why."""


class RolloutInProgress(RolloutError):
    """Another candidate's rollout holds the deployment."""


class PolicyError(ValueError):
    """A policy field is missing or wrong; the message names the field."""


# --------------------------------------------------------------------------- the policy


@dataclass(frozen=True)
class RolloutPolicy:
    """How to roll out (see the module docstring). In JSON / YAML::

    strategy: canary            # canary | blue_green | shadow
    interval_seconds: 60        # between checks
    window_seconds: 60          # the PromQL window
    min_requests: 50            # candidate requests in the window for a conclusive check
    max_failed_checks: 2        # failed checks in the rollout before rollback
    checks_per_step: 1          # passing checks to leave a step
    ready_timeout_seconds: 300
    inconclusive: {max_checks: 10, then: rollback}   # then: rollback | pause
    gates:
      - {type: error_rate, threshold: 0.01}
      - {type: latency_p99, threshold: 0.25}
      - {type: prediction_divergence, threshold: 0.1, min_count: 100}
    canary: {steps: [10, 25, 50, 100]}
    blue_green: {smoke_requests: 50, bake_seconds: 300}
    shadow: {duration_seconds: 600, min_agreement: 0.95}
    """

    strategy: str = "canary"
    gates: tuple[gates_lib.Gate, ...] = ()
    steps: tuple[int, ...] = (10, 25, 50, 100)
    interval_seconds: float = 60.0
    window_seconds: float = 60.0
    min_requests: int = 50
    max_failed_checks: int = 2
    checks_per_step: int = 1
    max_inconclusive: int = 10
    on_inconclusive: str = "rollback"
    ready_timeout_seconds: float = 300.0
    smoke_requests: int = 50
    bake_seconds: float = 300.0
    shadow_seconds: float = 600.0
    min_agreement: float | None = None

    def __post_init__(self):
        _check_policy(self)

    def plan(self) -> list[tuple[str, int]]:
        """The steps: (kind, the candidate's percent of live traffic)."""
        if self.strategy == "canary":
            return [("canary", p) for p in self.steps]
        if self.strategy == "blue_green":
            return [("smoke", 0), ("bake", 100)]
        return [("shadow", 0)]

    def all_gates(self) -> tuple[gates_lib.Gate, ...]:
        out = self.gates
        if (
            self.strategy == "shadow"
            and self.min_agreement is not None
            and not any(g.type == "shadow_agreement" for g in out)
        ):
            out = (*out, gates_lib.Gate("shadow_agreement", self.min_agreement))
        return out

    @classmethod
    def from_dict(cls, data: Mapping) -> RolloutPolicy:
        """From the JSON / YAML shape above; a :class:`PolicyError` names the wrong field."""
        if not isinstance(data, Mapping):
            raise PolicyError(f"policy: expected a mapping, got {type(data).__name__}")
        known = {
            "strategy",
            "interval_seconds",
            "window_seconds",
            "min_requests",
            "max_failed_checks",
            "checks_per_step",
            "ready_timeout_seconds",
            "inconclusive",
            "gates",
            "canary",
            "blue_green",
            "shadow",
        }
        _no_extra(data, known, "policy")
        kw: dict = {}
        for name in ("strategy",):
            if name in data:
                kw[name] = _typed(data[name], str, f"policy.{name}")
        for name in ("interval_seconds", "window_seconds", "ready_timeout_seconds"):
            if name in data:
                kw[name] = float(_typed(data[name], (int, float), f"policy.{name}"))
        for name in ("min_requests", "max_failed_checks", "checks_per_step"):
            if name in data:
                kw[name] = _typed(data[name], int, f"policy.{name}")
        inc = _section(data, "inconclusive", {"max_checks", "then"})
        if "max_checks" in inc:
            kw["max_inconclusive"] = _typed(
                inc["max_checks"], int, "policy.inconclusive.max_checks"
            )
        if "then" in inc:
            kw["on_inconclusive"] = _typed(inc["then"], str, "policy.inconclusive.then")
        canary = _section(data, "canary", {"steps"})
        if "steps" in canary:
            steps = _typed(canary["steps"], list, "policy.canary.steps")
            kw["steps"] = tuple(
                _typed(s, int, f"policy.canary.steps[{i}]") for i, s in enumerate(steps)
            )
        bg = _section(data, "blue_green", {"smoke_requests", "bake_seconds"})
        if "smoke_requests" in bg:
            kw["smoke_requests"] = _typed(
                bg["smoke_requests"], int, "policy.blue_green.smoke_requests"
            )
        if "bake_seconds" in bg:
            kw["bake_seconds"] = float(
                _typed(bg["bake_seconds"], (int, float), "policy.blue_green.bake_seconds")
            )
        shadow = _section(data, "shadow", {"duration_seconds", "min_agreement"})
        if "duration_seconds" in shadow:
            kw["shadow_seconds"] = float(
                _typed(shadow["duration_seconds"], (int, float), "policy.shadow.duration_seconds")
            )
        if shadow.get("min_agreement") is not None:
            kw["min_agreement"] = float(
                _typed(shadow["min_agreement"], (int, float), "policy.shadow.min_agreement")
            )
        gate_list = _typed(data.get("gates", []), list, "policy.gates")
        parsed = []
        for i, g in enumerate(gate_list):
            where = f"policy.gates[{i}]"
            if not isinstance(g, Mapping):
                raise PolicyError(f"{where}: expected a mapping, got {type(g).__name__}")
            _no_extra(g, {"type", "threshold", "direction", "name", "min_count"}, where)
            for req in ("type", "threshold"):
                if req not in g:
                    raise PolicyError(f"{where}.{req}: missing")
            try:
                parsed.append(
                    gates_lib.Gate(
                        type=_typed(g["type"], str, f"{where}.type"),
                        threshold=float(_typed(g["threshold"], (int, float), f"{where}.threshold")),
                        direction=_typed(g.get("direction", ""), str, f"{where}.direction"),
                        name=_typed(g.get("name", ""), str, f"{where}.name"),
                        min_count=_typed(g.get("min_count", 100), int, f"{where}.min_count"),
                    )
                )
            except ValueError as exc:
                if isinstance(exc, PolicyError):
                    raise
                raise PolicyError(f"{where}: {exc}") from None
        kw["gates"] = tuple(parsed)
        return cls(**kw)

    @classmethod
    def load(cls, source: str | Path) -> RolloutPolicy:
        """From a JSON or YAML file path, or JSON / YAML text."""
        text = str(source)
        where = "policy"
        looks_like_text = "\n" in text or text.lstrip()[:1] in ("{", "[")
        if not looks_like_text and Path(text).is_file():
            text, where = Path(text).read_text(), text
        try:
            data = json.loads(text)
        except ValueError:
            import yaml

            try:
                data = yaml.safe_load(text)
            except yaml.YAMLError as exc:
                raise PolicyError(f"{where}: neither JSON nor YAML: {exc}") from None
        return cls.from_dict(data)


def _typed(value, types, where: str):
    if isinstance(value, bool) or not isinstance(value, types):
        want = types.__name__ if isinstance(types, type) else " or ".join(t.__name__ for t in types)
        raise PolicyError(f"{where}: expected {want}, got {value!r}")
    return value


def _no_extra(data: Mapping, known: set[str], where: str) -> None:
    extra = sorted(set(data) - known)
    if extra:
        raise PolicyError(f"{where}.{extra[0]}: unknown field (known: {', '.join(sorted(known))})")


def _section(data: Mapping, name: str, known: set[str]) -> Mapping:
    section = data.get(name) or {}
    if not isinstance(section, Mapping):
        raise PolicyError(f"policy.{name}: expected a mapping, got {section!r}")
    _no_extra(section, known, f"policy.{name}")
    return section


def _check_policy(p: RolloutPolicy) -> None:
    def bad(name: str, why: str):
        raise PolicyError(f"policy.{name}: {why}")

    if p.strategy not in STRATEGIES:
        bad("strategy", f"{p.strategy!r} is not one of {', '.join(STRATEGIES)}")
    if not p.gates and not (p.strategy == "shadow" and p.min_agreement is not None):
        bad("gates", "at least one gate is needed (a rollout with no gates judges nothing)")
    for name in ("interval_seconds", "window_seconds", "ready_timeout_seconds"):
        if not getattr(p, name) > 0:
            bad(name, f"must be above 0, got {getattr(p, name)}")
    if p.min_requests < 1:
        bad("min_requests", f"must be at least 1, got {p.min_requests} (0 would judge silence)")
    for name in ("max_failed_checks", "checks_per_step"):
        if getattr(p, name) < 1:
            bad(name, f"must be at least 1, got {getattr(p, name)}")
    if p.max_inconclusive < 1:
        bad("inconclusive.max_checks", f"must be at least 1, got {p.max_inconclusive}")
    if p.on_inconclusive not in ON_INCONCLUSIVE:
        bad(
            "inconclusive.then", f"{p.on_inconclusive!r} is not one of {', '.join(ON_INCONCLUSIVE)}"
        )
    if p.strategy == "canary":
        if not p.steps:
            bad("canary.steps", "at least one step is needed")
        previous = 0
        for i, s in enumerate(p.steps):
            if not previous < s <= 100:
                bad(f"canary.steps[{i}]", f"{s} is not above {previous} and at most 100")
            previous = s
    if p.strategy == "blue_green":
        if p.smoke_requests < p.min_requests:
            bad(
                "blue_green.smoke_requests",
                f"{p.smoke_requests} is under min_requests {p.min_requests}: no smoke check "
                "could ever be conclusive",
            )
        if p.bake_seconds < 0:
            bad("blue_green.bake_seconds", "must not be negative")
    if p.strategy == "shadow" and p.shadow_seconds < 0:
        bad("shadow.duration_seconds", "must not be negative")
    if p.min_agreement is not None and not 0 <= p.min_agreement <= 1:
        bad("shadow.min_agreement", f"{p.min_agreement} is not within 0..1")


# --------------------------------------------------------------------------- outcomes


@dataclass
class Outcome:
    """How ``run()`` (or an operator function) left the rollout."""

    phase: str  # promoted | rolled_back | paused | deployed
    version: str
    step: int
    reason: str
    checks: list[dict] = field(default_factory=list)


def _now_iso(clock: Callable[[], float]) -> str:
    return datetime.fromtimestamp(clock(), UTC).isoformat(timespec="seconds")


def _epoch(value: str | None, default: float) -> float:
    try:
        return datetime.fromisoformat(value).timestamp() if value else default
    except ValueError:
        return default


def _int(annotations: Mapping[str, str], name: str) -> int:
    try:
        return int(annotations.get(key(name)) or 0)
    except ValueError:
        return 0


# --------------------------------------------------------------------------- gauges


_GAUGES: dict | None = None


def _gauges() -> dict | None:
    """The rollout's gauges (the names manifests/monitoring's rules and dashboard read):
    loopline_rollout_step, _traffic_percent, _failed_checks, _inconclusive_checks and
    _last_transition_timestamp_seconds, in this process's default prometheus_client registry
    (None without prometheus_client)."""
    global _GAUGES
    if _GAUGES is None:
        try:
            from prometheus_client import Gauge
        except ImportError:
            return None
        labels = ["model", "version", "strategy"]
        _GAUGES = {
            "step": Gauge("loopline_rollout_step", "The rollout's step index", labels),
            "percent": Gauge(
                "loopline_rollout_traffic_percent",
                "The candidate's percent of live traffic",
                labels,
            ),
            "transition": Gauge(
                "loopline_rollout_last_transition_timestamp_seconds",
                "Unix time of the rollout's last step change",
                labels,
            ),
            "failed": Gauge("loopline_rollout_failed_checks", "Failed checks so far", labels),
            "inconclusive": Gauge(
                "loopline_rollout_inconclusive_checks", "Inconclusive checks so far", labels
            ),
        }
    return _GAUGES


# --------------------------------------------------------------------------- the engine


class Rollout:
    """One candidate's rollout on one deployment (see the module docstring).

    Args:
        deployment: Where the model serves (the protocol of ``components/lib/deployment.py``).
        registry: A ``components.lib.registry.Registry`` (or anything with its ``get`` and
            ``transition``).
        prometheus_url: The Prometheus that scrapes the model servers.
        policy: A :class:`RolloutPolicy`.
        model_name: The registry model name (the ``model`` label of the series).
        candidate: The version to roll out (registry state staging, or canary on resume).
        smoke: Blue-green: ``smoke(candidate_url, count)`` sends ``count`` requests.
        probes: Values for ``shadow_agreement`` / ``callable`` gates, by gate name or type.
        clock / sleep: Injectable time (epoch seconds) and waiting.
    """

    def __init__(
        self,
        deployment: Deployment,
        registry,
        prometheus_url: str,
        policy: RolloutPolicy,
        model_name: str,
        candidate: ModelRef,
        *,
        smoke: Callable[[str, int], None] | None = None,
        probes: Mapping[str, Callable[[], float | None]] | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.deployment = deployment
        self.registry = registry
        self.prometheus = gates_lib.Prometheus(prometheus_url)
        self.policy = policy
        self.model = model_name
        self.candidate = candidate
        self.version = str(candidate.version)
        self.smoke = smoke
        self.probes = dict(probes or {})
        self.clock = clock
        self.sleep = sleep
        self.plan = policy.plan()
        self.checks: list[dict] = []

    # ----------------------------------------------------------------- the loop

    def run(self) -> Outcome:
        """Drives the rollout to its end (promoted, rolled_back) or to a pause."""
        begun = self._begin()
        if isinstance(begun, Outcome):
            return begun
        state = begun
        while True:
            kind, percent = self.plan[state["step"]]
            traffic = self._apply(kind, percent, state)
            if isinstance(traffic, Outcome):
                return traffic
            if kind == "smoke":
                self._smoke()
            self.sleep(self.policy.interval_seconds)

            traffic = self._traffic()
            ann = traffic.annotations
            stopped = self._stopped(ann)
            if stopped is not None:
                return stopped
            action = (ann.get(key("action")) or "").strip()
            about = (ann.get(key("action_version")) or "").strip()
            if action and about and about != self.version:
                # An action written for another candidate (a stale overlay): not this one's.
                log.error(
                    "ignoring %s %r: it names version %s, the candidate is %s",
                    key("action"), action, about, self.version,
                )  # fmt: skip
                self.deployment.annotate({key("action"): "", key("action_reason"): ""})
                self._annotate({"reason": f"ignored {action!r} for version {about}"})
            elif action:
                return self._operator(action, ann.get(key("action_reason")) or "")

            check = gates_lib.evaluate(
                self.prometheus,
                self.policy.all_gates(),
                model=self.model,
                candidate=self.version,
                stable=traffic.stable.version if traffic.stable else state.get("stable"),
                window_seconds=self.policy.window_seconds,
                min_requests=self.policy.min_requests,
                probes=self.probes,
                reference_window_seconds=self.policy.window_seconds
                + max(0.0, self.clock() - state["rollout_started"]),
            )
            state["checks"] += 1
            self.checks.append(
                {
                    **check.as_dict(),
                    "check": state["checks"],
                    "step": state["step"],
                    "percent": percent,
                    "time": _now_iso(self.clock),
                }
            )
            log.info(
                "model %s version %s, %s step %d (%d%%): %s (%s)",
                self.model,
                self.version,
                self.policy.strategy,
                state["step"],
                percent,
                check.verdict,
                check.summary(),
            )
            where = f"{self.policy.strategy} step {state['step']} ({percent}%)"
            if check.verdict == gates_lib.FAIL:
                state["failed"] += 1
                self._record(state, check)
                limit = 1 if self.policy.strategy == "blue_green" else self.policy.max_failed_checks
                if state["failed"] >= limit:
                    return self._rollback(
                        f"rollout {where}: {state['failed']} failed check(s) (limit {limit}); "
                        f"last: {check.reason}",
                        switch_back=kind == "bake",
                    )
                continue
            if check.verdict == gates_lib.INCONCLUSIVE:
                state["inconclusive"] += 1
                self._record(state, check)
                if state["inconclusive"] >= self.policy.max_inconclusive:
                    why = (
                        f"rollout {where}: {state['inconclusive']} inconclusive checks "
                        f"(max {self.policy.max_inconclusive}); last: {check.reason}"
                    )
                    if self.policy.on_inconclusive == "rollback":
                        return self._rollback(why, switch_back=kind == "bake")
                    self._annotate({"phase": PAUSED, "reason": why})
                    return Outcome(PAUSED, self.version, state["step"], why, self.checks)
                continue
            state["passed"] += 1
            self._record(state, check)
            if self._step_done(kind, state):
                if state["step"] + 1 >= len(self.plan):
                    return self._promote(
                        f"rollout {self.policy.strategy} passed every step; last check: "
                        f"{check.summary()}"
                    )
                self._next_step(state)

    def _begin(self) -> dict | Outcome:
        traffic = self.deployment.get()
        if traffic is None or traffic.stable is None:
            return self._first_deploy()
        ann = traffic.annotations
        theirs = ann.get(key("candidate"))
        phase = ann.get(key("phase"))
        active = phase in (RUNNING, PAUSED, PROMOTING, ROLLING_BACK)
        if active and theirs and theirs != self.version:
            raise RolloutInProgress(
                f"model {self.model}: a {ann.get(key('strategy'), '?')} rollout of version "
                f"{theirs} is {phase} on this deployment (step {ann.get(key('step'), '?')}); "
                f"finish it (loopline rollout promote|rollback) before rolling out version "
                f"{self.version}"
            )
        if traffic.candidate is not None and traffic.candidate.version != self.version:
            raise RolloutInProgress(
                f"model {self.model}: version {traffic.candidate.version} is already serving "
                f"as a candidate ({traffic.candidate_percent}%); finish its rollout before "
                f"rolling out version {self.version}"
            )
        if theirs == self.version and phase in (PROMOTING, ROLLING_BACK):
            return settle(self.deployment, self.registry, self.model, clock=self.clock)
        if theirs == self.version and phase in (PROMOTED, ROLLED_BACK):
            return Outcome(phase, self.version, _int(ann, "step"), ann.get(key("reason"), ""))
        if theirs == self.version and active:
            if ann.get(key("strategy")) != self.policy.strategy:
                raise RolloutError(
                    f"model {self.model} version {self.version}: its rollout is a "
                    f"{ann.get(key('strategy'))} rollout, not {self.policy.strategy}"
                )
            self._ensure_canary_state(resuming=True)
            state = {
                "step": min(_int(ann, "step"), len(self.plan) - 1),
                "passed": _int(ann, "passed"),
                "failed": _int(ann, "failed"),
                "inconclusive": 0 if phase == PAUSED else _int(ann, "inconclusive"),
                "checks": _int(ann, "checks"),
                "stable": ann.get(key("stable")),
                "step_started": _epoch(ann.get(key("step_started")), self.clock()),
                "rollout_started": _epoch(ann.get(key("started")), self.clock()),
            }
            log.info(
                "model %s version %s: resuming the %s rollout at step %d",
                self.model,
                self.version,
                self.policy.strategy,
                state["step"],
            )
            if phase == PAUSED:
                self._annotate({"phase": RUNNING, "inconclusive": "0", "reason": ""})
            return state
        # A new rollout.
        self._ensure_canary_state(resuming=False, stable=traffic.stable.version)
        now = _now_iso(self.clock)
        state = {
            "step": 0,
            "passed": 0,
            "failed": 0,
            "inconclusive": 0,
            "checks": 0,
            "stable": traffic.stable.version,
            "step_started": self.clock(),
            "rollout_started": self.clock(),
        }
        self._annotate(
            {
                "candidate": self.version,
                "stable": traffic.stable.version,
                "strategy": self.policy.strategy,
                "phase": RUNNING,
                "step": "0",
                "percent": str(self.plan[0][1]),
                "passed": "0",
                "failed": "0",
                "inconclusive": "0",
                "checks": "0",
                "verdict": "",
                "started": now,
                "updated": now,
                "step_started": now,
                "reason": "",
                "action": "",
                "action_reason": "",
                "action_version": "",
                "actor": "",
            }
        )
        return state

    def _first_deploy(self) -> Outcome:
        """Nothing serves yet: the candidate is deployed at 100% (a model's first production
        version needs no canary; the registry allows staging -> production only then)."""
        self.deployment.deploy(self.candidate)
        self.deployment.wait_ready(self.policy.ready_timeout_seconds)
        reason = "first deploy: nothing was serving"
        if self.registry.get(self.model, self.version).state != "production":
            self.registry.transition(self.model, self.version, "production", reason=reason)
        return Outcome(DEPLOYED, self.version, 0, reason)

    def _ensure_canary_state(self, resuming: bool, stable: str | None = None) -> None:
        state = self.registry.get(self.model, self.version).state
        if state == "canary":
            return
        if state == "staging":
            self.registry.transition(
                self.model,
                self.version,
                "canary",
                reason=f"rollout {self.policy.strategy} started (stable version {stable})",
            )
            return
        raise RolloutError(
            f"model {self.model} version {self.version} is {state} in the registry; a rollout "
            f"{'resumes from canary' if resuming else 'starts from staging'}"
        )

    def _traffic(self) -> Traffic:
        traffic = self.deployment.get()
        if traffic is None:
            raise RolloutError(f"model {self.model}: the deployment disappeared mid-rollout")
        return traffic

    def _stopped(self, ann: Mapping[str, str]) -> Outcome | None:
        """Someone else (an operator function) ended or took over the rollout."""
        phase = ann.get(key("phase"))
        if ann.get(key("candidate")) != self.version or phase not in (RUNNING,):
            return Outcome(
                phase or "", self.version, _int(ann, "step"), ann.get(key("reason"), "stopped")
            )
        return None

    def _apply(self, kind: str, percent: int, state: dict) -> Traffic | Outcome:
        """Makes the serving side match the step (idempotent: a resume repeats it)."""
        traffic = self._traffic()
        mirror = kind == "shadow"
        try:
            if traffic.candidate is None:
                self.deployment.start_candidate(self.candidate, percent, mirror=mirror)
                traffic = self.deployment.wait_ready(self.policy.ready_timeout_seconds)
            elif traffic.candidate_percent != percent:
                self.deployment.set_percent(percent)
                traffic = self.deployment.wait_ready(self.policy.ready_timeout_seconds)
        except DeploymentError as exc:
            return self._rollback(
                f"rollout {self.policy.strategy} step {state['step']} ({percent}%): the serving "
                f"side failed: {exc}",
                switch_back=False,
            )
        self._annotate({"percent": str(percent)})
        self._gauge(state, percent)
        return traffic

    def _smoke(self) -> None:
        url = self.deployment.candidate_url()
        if self.smoke is None or url is None:
            log.warning("blue-green smoke: no smoke function or candidate URL; checking as is")
            return
        self.smoke(url, self.policy.smoke_requests)

    def _step_done(self, kind: str, state: dict) -> bool:
        if state["passed"] < self.policy.checks_per_step:
            return False
        need = {"bake": self.policy.bake_seconds, "shadow": self.policy.shadow_seconds}.get(
            kind, 0.0
        )
        return self.clock() - state["step_started"] >= need

    def _next_step(self, state: dict) -> None:
        state["step"] += 1
        state["passed"] = 0
        state["step_started"] = self.clock()
        self._annotate(
            {
                "step": str(state["step"]),
                "percent": str(self.plan[state["step"]][1]),
                "passed": "0",
                "step_started": _now_iso(self.clock),
            }
        )

    def _record(self, state: dict, check: gates_lib.Check) -> None:
        verdict = {
            "verdict": check.verdict,
            "requests": check.requests,
            "reason": check.reason[:500],
            "gates": {r.gate: r.value for r in check.results},
        }
        self._annotate(
            {
                "passed": str(state["passed"]),
                "failed": str(state["failed"]),
                "inconclusive": str(state["inconclusive"]),
                "checks": str(state["checks"]),
                "verdict": json.dumps(verdict, sort_keys=True, default=str),
            }
        )
        self._gauge(state, self.plan[state["step"]][1])

    def _gauge(self, state: dict, percent: int) -> None:
        gauges = _gauges()
        if gauges is None:
            return
        labels = (self.model, self.version, self.policy.strategy)
        if getattr(self, "_gauged_step", None) != state["step"]:
            gauges["transition"].labels(*labels).set(self.clock())
            self._gauged_step = state["step"]
        gauges["step"].labels(*labels).set(state["step"])
        gauges["percent"].labels(*labels).set(percent)
        gauges["failed"].labels(*labels).set(state["failed"])
        gauges["inconclusive"].labels(*labels).set(state["inconclusive"])

    def _annotate(self, values: Mapping[str, str]) -> None:
        out = {key(k): v for k, v in values.items()}
        out[key("updated")] = _now_iso(self.clock)
        self.deployment.annotate(out)

    def _operator(self, action: str, reason: str) -> Outcome:
        who = f"operator ({key('action')}: {action})" + (f": {reason}" if reason else "")
        self.deployment.annotate({key("action"): "", key("action_reason"): ""})
        if action == "promote":
            return self._promote(who)
        if action == "rollback":
            return self._rollback(who, switch_back=True)
        log.error("ignoring unknown %s %r (expected promote or rollback)", key("action"), action)
        self._annotate({"reason": f"ignored unknown action {action!r}"})
        return self.run()

    def _promote(self, reason: str) -> Outcome:
        out = _finish_promote(self.deployment, self.registry, self.model, reason, self.clock)
        out.checks = self.checks
        return out

    def _rollback(self, reason: str, switch_back: bool) -> Outcome:
        if switch_back:
            try:
                self.deployment.set_percent(0)
            except DeploymentError as exc:
                log.error("switching traffic back failed (%s); rolling back", exc)
        out = _finish_rollback(self.deployment, self.registry, self.model, reason, self.clock)
        out.checks = self.checks
        return out


# --------------------------------------------------------------------------- endings


def _candidate(deployment, model: str, action: str):
    """(traffic, annotations, the candidate version): the rollout's, else the deployment's."""
    traffic = deployment.get()
    ann = traffic.annotations if traffic else {}
    version = ann.get(key("candidate")) or (
        traffic.candidate.version if traffic and traffic.candidate else ""
    )
    if not version:
        raise RolloutError(f"model {model}: no rollout or candidate to {action}")
    return traffic, ann, version


def _finish_promote(deployment, registry, model, reason, clock=time.time) -> Outcome:
    """Intent (phase promoting), the serving side, the registry, then phase promoted."""
    traffic, ann, version = _candidate(deployment, model, "promote")
    now = _now_iso(clock)
    deployment.annotate({key("phase"): PROMOTING, key("reason"): reason, key("updated"): now})
    if traffic is not None and traffic.candidate is not None:
        deployment.promote()
    state = registry.get(model, version).state
    if state == "canary":
        registry.transition(model, version, "production", reason=reason)
    elif state != "production":
        registry.transition(model, version, "production", reason=reason, force=True)
    deployment.annotate(
        {key("phase"): PROMOTED, key("percent"): "100", key("updated"): _now_iso(clock)}
    )
    log.info("model %s version %s promoted: %s", model, version, reason)
    return Outcome(PROMOTED, version, _int(ann, "step"), reason)


def _finish_rollback(deployment, registry, model, reason, clock=time.time) -> Outcome:
    """Intent (phase rolling_back), the serving side, the registry, then phase rolled_back."""
    traffic, ann, version = _candidate(deployment, model, "roll back")
    if traffic is not None and traffic.stable is not None and traffic.stable.version == version:
        raise RolloutError(
            f"model {model} version {version} already is the stable version (promoted); roll "
            "back to an archived version through the registry instead"
        )
    deployment.annotate(
        {key("phase"): ROLLING_BACK, key("reason"): reason, key("updated"): _now_iso(clock)}
    )
    if traffic is not None and traffic.candidate is not None:
        deployment.rollback()
    state = registry.get(model, version).state
    if state == "canary":
        registry.transition(model, version, "rolled_back", reason=reason)
    elif state == "staging":
        registry.transition(model, version, "rolled_back", reason=reason, force=True)
    deployment.annotate(
        {key("phase"): ROLLED_BACK, key("percent"): "0", key("updated"): _now_iso(clock)}
    )
    log.warning("model %s version %s rolled back: %s", model, version, reason)
    return Outcome(ROLLED_BACK, version, _int(ann, "step"), reason)


# --------------------------------------------------------------------------- for the CLI


def status(deployment: Deployment) -> dict:
    """The rollout as the annotations and the serving side tell it (for ``loopline rollout
    status``)."""
    traffic = deployment.get()
    if traffic is None:
        return {"deployed": False}
    ann = traffic.annotations
    out = {name: ann[key(name)] for name in KEYS if key(name) in ann and ann[key(name)] != ""}
    if "verdict" in out:
        with contextlib.suppress(ValueError):
            out["verdict"] = json.loads(out["verdict"])
    return {
        "deployed": True,
        "stable": traffic.stable.version if traffic.stable else None,
        "candidate": traffic.candidate.version if traffic.candidate else None,
        "candidate_percent": traffic.candidate_percent,
        "mirror": traffic.mirror,
        "ready": traffic.ready,
        "rollout": out,
    }


def promote(deployment: Deployment, registry, model_name: str, reason: str, clock=time.time):
    """An operator's promotion, now, past the gates (the reason is required and recorded)."""
    if not (reason or "").strip():
        raise RolloutError("an operator's promotion needs a reason")
    return _finish_promote(deployment, registry, model_name, f"operator: {reason}", clock)


def rollback(deployment: Deployment, registry, model_name: str, reason: str, clock=time.time):
    """An operator's rollback, now (the reason is required and recorded)."""
    if not (reason or "").strip():
        raise RolloutError("an operator's rollback needs a reason")
    return _finish_rollback(deployment, registry, model_name, f"operator: {reason}", clock)


def settle(
    deployment: Deployment,
    registry,
    model_name: str,
    reason: str = "the pipeline ended before the rollout did (exit handler)",
    clock=time.time,
) -> Outcome | None:
    """The exit handler: leaves the deployment and the registry consistent (module docstring).

    Returns the outcome, or None when no rollout is recorded on the deployment.
    """
    traffic = deployment.get()
    if traffic is None:
        return None
    ann = traffic.annotations
    version = ann.get(key("candidate"))
    if not version:
        return None
    phase = ann.get(key("phase"))
    step = _int(ann, "step")
    if phase == PAUSED:
        return Outcome(PAUSED, version, step, ann.get(key("reason"), "paused"))
    if phase == PROMOTING or (
        phase == RUNNING and traffic.stable is not None and traffic.stable.version == version
    ):
        return _finish_promote(
            deployment, registry, model_name, ann.get(key("reason")) or reason, clock
        )
    if phase in (ROLLING_BACK, RUNNING):
        why = ann.get(key("reason")) if phase == ROLLING_BACK else ""
        why = why or f"{reason}: the rollout was at step {step} ({ann.get(key('percent'), '?')}%)"
        return _finish_rollback(deployment, registry, model_name, why, clock)
    # A finished phase: make the registry agree (a crash between the two leaves it behind).
    state = registry.get(model_name, version).state
    if phase == PROMOTED and state != "production":
        return _finish_promote(
            deployment, registry, model_name, ann.get(key("reason")) or reason, clock
        )
    if phase == ROLLED_BACK and state in ("canary", "staging"):
        return _finish_rollback(
            deployment, registry, model_name, ann.get(key("reason")) or reason, clock
        )
    return Outcome(phase or "", version, step, ann.get(key("reason"), ""))
