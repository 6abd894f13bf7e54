"""Where a model serves, as the rollout sees it: one interface, two implementations.

* On a cluster: a KServe InferenceService (``components/lib/inferenceservice.py``), in
  Knative ("Serverless") mode with ``canaryTrafficPercent`` or Standard (RawDeployment) mode
  with ``spec.canary[]``, its state in the object itself (spec, status, annotations).
* Locally: serving containers behind Debian's nginx, which splits traffic by the step's
  weights as the Knative route does and mirrors it for shadow
  (``pipelines/local_rollout.py``), its state in a JSON file that plays the object's part.

The rollout (``components/lib/rollout.py``) drives a :class:`Deployment` and reads its gates
from Prometheus with the same PromQL in both places; it keeps no state of its own, so an
interrupted rollout resumes from :meth:`Deployment.get` (the traffic and the
``loopline.io/rollout-*`` annotations) and the registry.

Only the standard library here: every image imports it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

# Annotations the rollout keeps its state in (on the InferenceService; locally in the state file).
ANNOTATION_PREFIX = "loopline.io/rollout-"
STRATEGIES = ("canary", "blue_green", "shadow")


class DeploymentError(RuntimeError):
    """The serving side refused or failed a change; the message names the object and the cause."""


@dataclass(frozen=True)
class ModelRef:
    """One registry version as the serving side loads it."""

    name: str  # the registry model name, also the InferenceService's name
    version: str
    storage_uri: str  # s3://... : the content-addressed copy of the version's MLflow directory
    manifest_sha256: str  # the registry's record: the server verifies the copy against it


@dataclass
class Traffic:
    """What serves now. ``candidate_percent`` of live requests go to the candidate and the rest
    to the stable version; with ``mirror`` the candidate also gets a copy of every request to
    the stable one, whose answers are discarded (shadow)."""

    stable: ModelRef | None
    candidate: ModelRef | None = None
    candidate_percent: int = 0
    mirror: bool = False
    ready: bool = False  # every revision that should serve is ready
    annotations: dict[str, str] = field(default_factory=dict)
    detail: str = ""  # what the serving side says when not ready


class Deployment(Protocol):
    """The operations a rollout needs; each is idempotent (a resumed rollout repeats its last)."""

    def get(self) -> Traffic | None:
        """The current state, or None when nothing is deployed."""

    def deploy(self, stable: ModelRef) -> None:
        """The first deploy: ``stable`` takes 100% (nothing else serving)."""

    def start_candidate(self, candidate: ModelRef, percent: int, mirror: bool = False) -> None:
        """Runs ``candidate`` beside the stable version with ``percent`` of live traffic
        (0 for blue-green and shadow), mirrored traffic when ``mirror``."""

    def set_percent(self, percent: int) -> None:
        """The candidate's share of live traffic, 0..100."""

    def promote(self) -> None:
        """The candidate becomes the stable version at 100%; the old stable one stops."""

    def rollback(self) -> None:
        """The candidate is removed; the stable version takes 100%."""

    def annotate(self, values: Mapping[str, str]) -> None:
        """Stores the rollout's state (keys start with :data:`ANNOTATION_PREFIX`; a value of
        "" removes the key)."""

    def wait_ready(self, timeout: float) -> Traffic:
        """Until every serving revision is ready; raises :class:`DeploymentError` (with the
        serving side's reason) after ``timeout`` seconds."""

    def candidate_url(self) -> str | None:
        """A URL that reaches the candidate alone (blue-green's smoke load), or None."""

    def stable_url(self) -> str | None:
        """A URL that reaches the stable version alone, or None."""
