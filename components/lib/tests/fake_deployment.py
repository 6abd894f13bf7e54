"""An in-memory :class:`components.lib.deployment.Deployment` for the rollout's tests: it
keeps a :class:`Traffic`, records every call, and tells listeners about traffic changes (so
a traffic simulator can follow its split). Also an in-memory registry with the real state
machine (``registry.check_transition``) for tests that need no MLflow server."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from components.lib.deployment import ANNOTATION_PREFIX, DeploymentError, ModelRef, Traffic
from components.lib.registry import PRODUCTION, check_transition


def ref(name: str, version: str) -> ModelRef:
    return ModelRef(name, str(version), f"s3://models/{name}/{version}", "0" * 64)


class FakeDeployment:
    def __init__(self, stable: ModelRef | None, rate: float = 100.0):
        self.traffic = Traffic(stable=stable, ready=True) if stable else None
        self.calls: list[tuple] = []
        self.listeners: list[Callable[[str, tuple], None]] = []
        self.rate = rate  # live requests per second, split by the current traffic
        self.fail_on: dict[str, Exception] = {}

    # what a traffic simulator reads
    def split(self) -> dict[str, float]:
        t = self.traffic
        if t is None or t.stable is None:
            return {}
        out = {t.stable.version: self.rate * (100 - t.candidate_percent) / 100}
        if t.candidate is not None:
            share = self.rate * t.candidate_percent / 100
            out[t.candidate.version] = share + (out[t.stable.version] if t.mirror else 0)
        return out

    def _call(self, name: str, *args) -> None:
        self.calls.append((name, *args))
        if name in self.fail_on:
            raise self.fail_on[name]
        for listener in self.listeners:
            listener(name, args)

    def names(self) -> list:
        return [c for c in self.calls if c[0] not in ("get", "annotate", "wait_ready")]

    @property
    def annotations(self) -> dict[str, str]:
        return self.traffic.annotations if self.traffic else {}

    # the protocol
    def get(self) -> Traffic | None:
        return copy.deepcopy(self.traffic)

    def deploy(self, stable: ModelRef) -> None:
        self._call("deploy", stable.version)
        self.traffic = Traffic(stable=stable, ready=True)

    def start_candidate(self, candidate: ModelRef, percent: int, mirror: bool = False) -> None:
        self.traffic.candidate = candidate
        self.traffic.candidate_percent = percent
        self.traffic.mirror = mirror
        self._call("start_candidate", candidate.version, percent, mirror)

    def set_percent(self, percent: int) -> None:
        if self.traffic.candidate is None:
            raise DeploymentError("no candidate to set a percent for")
        self.traffic.candidate_percent = percent
        self._call("set_percent", percent)

    def promote(self) -> None:
        t = self.traffic
        t.stable, t.candidate, t.candidate_percent, t.mirror = t.candidate, None, 0, False
        self._call("promote")

    def rollback(self) -> None:
        t = self.traffic
        t.candidate, t.candidate_percent, t.mirror = None, 0, False
        self._call("rollback")

    def annotate(self, values: Mapping[str, str]) -> None:
        for k, v in values.items():
            assert k.startswith(ANNOTATION_PREFIX), k
            if v == "":
                self.traffic.annotations.pop(k, None)
            else:
                self.traffic.annotations[k] = str(v)
        self.calls.append(("annotate", dict(values)))

    def wait_ready(self, timeout: float) -> Traffic:
        self.calls.append(("wait_ready",))
        return self.get()

    def candidate_url(self) -> str | None:
        return "http://candidate.local" if self.traffic.candidate else None

    def stable_url(self) -> str | None:
        return "http://stable.local"


@dataclass
class _V:
    state: str


@dataclass
class FakeRegistry:
    """Versions' states and the recorded transitions, with the registry's own rules."""

    states: dict[tuple[str, str], str] = field(default_factory=dict)
    moves: list[tuple[str, str, str, str, str]] = field(default_factory=list)

    def get(self, name: str, version: str) -> _V:
        return _V(self.states[(name, str(version))])

    def transition(self, name, version, to_state, reason, actor=None, force=False, rollback=False):
        version = str(version)
        current = self.states[(name, version)]
        had = any(m[0] == name and m[3] == PRODUCTION for m in self.moves)
        check_transition(
            name, version, current, to_state, had_production=had, force=force, rollback=rollback
        )
        assert reason
        if to_state == PRODUCTION:
            for (n, v), s in list(self.states.items()):
                if n == name and s == PRODUCTION:
                    self.states[(n, v)] = "archived"
                    self.moves.append((n, v, s, "archived", reason))
        self.states[(name, version)] = to_state
        self.moves.append((name, version, current, to_state, reason))
        return self.get(name, version)
