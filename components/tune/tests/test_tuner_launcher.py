"""The Katib launcher with the real Katib SDK (tuner env) and a fake Kubernetes API at its boundary.

No API server can run here. The fake stands in for kubernetes.client.CustomObjectsApi,
the object KatibClient talks to, and follows the Katib controller's documented status
semantics: an Experiment is Created, then Running, then Succeeded with
status.currentOptimalTrial, or Failed with a reason and message.
"""

from __future__ import annotations

import copy

import pytest

from components.tune import katib, katib_launcher, search_space

pytestmark = pytest.mark.tuner

DATA = {
    "train": "minio://b/train",
    "eval": "minio://b/eval",
    "transformer": "minio://b/t",
    "s3_endpoint": "m:9000",
}


class _Thread:
    def __init__(self, value):
        self.value = value

    def get(self, timeout=None):
        return copy.deepcopy(self.value)


def _condition(kind, reason, message):
    return {
        "type": kind,
        "status": "True",
        "reason": reason,
        "message": message,
        "lastTransitionTime": "2026-11-23T12:00:00Z",
        "lastUpdateTime": "2026-11-23T12:00:00Z",
    }


class FakeCustomObjects:
    """CustomObjectsApi for kubeflow.org/v1beta1 experiments, with scripted controller progress."""

    def __init__(self, outcome: str, polls_until_done: int = 2):
        self.outcome, self.polls_until_done = outcome, polls_until_done
        self.store, self.gets = {}, 0

    def create_namespaced_custom_object(self, group, version, namespace, plural, body, **kwargs):
        assert (group, version, plural) == ("kubeflow.org", "v1beta1", "experiments")
        katib.check_webhook_rules(body)  # what the admission webhook would do
        key = (namespace, body["metadata"]["name"])
        if key in self.store:
            raise type("ApiException", (Exception,), {"status": 409})()
        obj = copy.deepcopy(body)
        obj["status"] = {
            "conditions": [_condition("Created", "ExperimentCreated", "Experiment is created")]
        }
        self.store[key] = obj
        return copy.deepcopy(obj)

    def get_namespaced_custom_object(self, group, version, namespace, plural, name, **kwargs):
        obj = self.store[(namespace, name)]
        self.gets += 1
        status = obj["status"]
        if self.gets == 1:
            status["conditions"].append(
                _condition("Running", "ExperimentRunning", "Experiment is running")
            )
            status["trialsRunning"] = obj["spec"]["parallelTrialCount"]
        elif self.gets > self.polls_until_done and self.outcome == "succeed":
            status["conditions"].append(
                _condition(
                    "Succeeded",
                    "ExperimentMaxTrialsReached",
                    "Experiment has succeeded because max trial count has reached",
                )
            )
            status["trialsSucceeded"] = obj["spec"]["maxTrialCount"]
            status["currentOptimalTrial"] = {
                "bestTrialName": f"{name}-abc",
                "parameterAssignments": [
                    {"name": "learning_rate", "value": "0.12"},
                    {"name": "max_iter", "value": "180"},
                    {"name": "loss", "value": "poisson"},
                ],
                "observation": {
                    "metrics": [{"name": "rmse", "latest": "61.5", "min": "61.5", "max": "70.1"}]
                },
            }
        elif self.gets > self.polls_until_done and self.outcome == "fail":
            status["conditions"].append(
                _condition(
                    "Failed",
                    "ExperimentMaxFailedTrialsReached",
                    "Experiment has failed because max failed count has reached",
                )
            )
        result = _Thread(obj)
        return result if kwargs.get("async_req") else result.get()


def _client(fake):
    from kubeflow.katib import KatibClient
    from kubernetes import client

    katib_client = KatibClient(namespace="team-a", client_configuration=client.Configuration())
    katib_client.custom_api = fake
    return katib_client


def _experiment():
    return katib.experiment(
        search_space.load("bikeshare"), "loopline-tune-7", "team-a", "img:1", DATA
    )


def test_success_returns_the_optimal_trial_typed():
    fake = FakeCustomObjects("succeed")
    params, metrics = katib_launcher.launch(_client(fake), _experiment(), timeout_s=5, poll_s=0)
    assert params == {"learning_rate": 0.12, "max_iter": 180, "loss": "poisson"}
    assert metrics == {"rmse": 61.5}
    assert ("team-a", "loopline-tune-7") in fake.store


def test_failure_raises_with_katibs_condition_message():
    with pytest.raises(
        katib_launcher.ExperimentFailed,
        match="ExperimentMaxFailedTrialsReached: Experiment has failed because max failed count has reached",
    ):
        katib_launcher.launch(
            _client(FakeCustomObjects("fail")), _experiment(), timeout_s=5, poll_s=0
        )


def test_timeout_names_the_last_condition():
    with pytest.raises(
        TimeoutError, match=r"did not succeed within 0 s; last: Running: ExperimentRunning"
    ):
        katib_launcher.launch(
            _client(FakeCustomObjects("hang", polls_until_done=10**6)),
            _experiment(),
            timeout_s=0,
            poll_s=0,
        )


def test_an_experiment_the_webhook_would_reject_is_never_sent():
    fake = FakeCustomObjects("succeed")
    bad = _experiment()
    bad["spec"]["parallelTrialCount"] = 50
    with pytest.raises(katib.ExperimentRuleError, match="parallelTrialCount"):
        katib_launcher.launch(_client(fake), bad, timeout_s=5, poll_s=0)
    assert fake.store == {}
