"""Every task of the compiled pipelines that touches the network has a deadline, and a retry
policy unless a rerun is unsafe (pipelines/resilience.py says which and why)."""

import re
from pathlib import Path

import pytest
import yaml

from pipelines import resilience

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent
# The component each compiled task runs -> its name in resilience.POLICY.
NETWORKED = {
    "find-champion": "find-champion",
    "ingest": "ingest",
    "feature-join": "feature-join",
    "validate-data": "validate",
    "register": "register",
    "push": "push",
    "rollout": "rollout",
    "settle": "settle",
    "tune-katib": "tune-katib",
    "read-window": "read-window",
    "detect-drift": "detect-drift",
}


def _tasks(path: Path):
    spec, platform = yaml.safe_load_all(path.read_text())
    deadlines = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]

    def walk(dag):
        for name, task in dag.get("tasks", {}).items():
            component = spec["components"][task["componentRef"]["name"]]
            if "dag" in component:
                yield from walk(component["dag"])
            else:
                yield name, task, deadlines.get(component["executorLabel"], {})

    yield from walk(spec["root"]["dag"])


@pytest.mark.parametrize("pipeline", ["training", "continuous_training"])
def test_every_networked_task_has_its_deadline_and_retry_policy(pipeline):
    seen = set()
    for name, task, platform in _tasks(ROOT / "pipelines" / pipeline / "pipeline.yaml"):
        base = re.sub(r"-\d+$", "", name)
        if base not in NETWORKED:
            assert "retryPolicy" not in task, name
            continue
        retries, deadline = resilience.POLICY[NETWORKED[base]]
        seen.add(base)
        assert int(platform.get("activeDeadlineSeconds", 0)) == deadline, name
        assert task.get("retryPolicy", {}).get("maxRetryCount", 0) == retries, name
    expected = {"training": {"ingest", "validate-data", "push", "register", "rollout", "settle"}}
    assert expected.get(pipeline, {"read-window", "detect-drift"}) <= seen


def test_the_tasks_that_must_not_rerun_have_no_retries():
    for name in ("register", "rollout", "tune-katib"):
        assert resilience.POLICY[name][0] == 0
