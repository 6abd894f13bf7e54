"""The Katib launcher with the real Katib SDK (tuner env) and a fake Kubernetes API at its boundary.

No API server can run here. The fake stands in for kubernetes.client.CustomObjectsApi,
the object KatibClient talks to, and follows the API server's and the Katib controller's
documented semantics: a name already taken in the namespace is a 409 Conflict, a missing
Experiment a 404, delete removes it; an Experiment is Created, then Running, then
Succeeded with status.currentOptimalTrial, or Failed with a reason and message.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
from pathlib import Path

import pytest
import yaml
from kubernetes.client.rest import ApiException

from components.tune import katib, katib_launcher, search_space

pytestmark = pytest.mark.tuner

DATA = {
    "train": "minio://b/train",
    "eval": "minio://b/eval",
    "transformer": "minio://b/t",
    "s3_endpoint": "m:9000",
}
COMPONENT_YAML = Path(katib_launcher.__file__).with_name("katib_component.yaml")


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

    def __init__(self, outcome: str, polls_until_done: int = 2, best_values=None):
        self.outcome, self.polls_until_done = outcome, polls_until_done
        self.best_values = best_values or {
            "learning_rate": "0.12",
            "max_iter": "180",
            "loss": "poisson",
        }
        self.store, self.gets, self.created, self.deleted = {}, {}, [], []

    @staticmethod
    def _check(group, version, plural):
        assert (group, version, plural) == ("kubeflow.org", "v1beta1", "experiments")

    def _find(self, namespace, name):
        if (namespace, name) not in self.store:
            raise ApiException(status=404, reason="Not Found")
        return self.store[(namespace, name)]

    def create_namespaced_custom_object(self, group, version, namespace, plural, body, **kwargs):
        self._check(group, version, plural)
        katib.check_webhook_rules(body)  # what the admission webhook would do
        key = (namespace, body["metadata"]["name"])
        if key in self.store:
            raise ApiException(status=409, reason="Conflict")
        self.created.append(copy.deepcopy(body))
        obj = copy.deepcopy(body)
        obj["status"] = {
            "conditions": [_condition("Created", "ExperimentCreated", "Experiment is created")]
        }
        self.store[key] = obj
        return copy.deepcopy(obj)

    def delete_namespaced_custom_object(self, group, version, namespace, plural, name, **kwargs):
        self._check(group, version, plural)
        self._find(namespace, name)
        del self.store[(namespace, name)]
        self.deleted.append((namespace, name))
        return {"kind": "Status", "apiVersion": "v1", "status": "Success"}

    def get_namespaced_custom_object(self, group, version, namespace, plural, name, **kwargs):
        self._check(group, version, plural)
        obj = self._find(namespace, name)
        gets = self.gets[(namespace, name)] = self.gets.get((namespace, name), 0) + 1
        status = obj["status"]
        if gets == 1:
            status["conditions"].append(
                _condition("Running", "ExperimentRunning", "Experiment is running")
            )
            status["trialsRunning"] = obj["spec"]["parallelTrialCount"]
        elif gets > self.polls_until_done and self.outcome == "succeed":
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
                    {"name": k, "value": v} for k, v in self.best_values.items()
                ],
                "observation": {
                    "metrics": [{"name": "rmse", "latest": "61.5", "min": "61.5", "max": "70.1"}]
                },
            }
        elif gets > self.polls_until_done and self.outcome == "fail":
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


def test_success_returns_the_optimal_trial_typed_and_deletes_the_experiment():
    fake = FakeCustomObjects("succeed")
    params, metrics = katib_launcher.launch(_client(fake), _experiment(), timeout_s=5, poll_s=0)
    assert params == {"learning_rate": 0.12, "max_iter": 180, "loss": "poisson"}
    assert metrics == {"rmse": 61.5}
    assert fake.deleted == [("team-a", "loopline-tune-7")] and fake.store == {}


def test_katibs_text_values_come_back_as_the_trial_read_them():
    fake = FakeCustomObjects("succeed", best_values={"a": "True", "b": "true", "c": "None"})
    params, _ = katib_launcher.launch(_client(fake), _experiment(), timeout_s=5, poll_s=0)
    assert params == {"a": True, "b": True, "c": None}


def test_keep_leaves_the_experiment_in_place():
    fake = FakeCustomObjects("succeed")
    katib_launcher.launch(_client(fake), _experiment(), timeout_s=5, poll_s=0, keep=True)
    assert list(fake.store) == [("team-a", "loopline-tune-7")] and fake.deleted == []


def test_failure_raises_with_katibs_condition_message_and_deletes():
    fake = FakeCustomObjects("fail")
    with pytest.raises(
        katib_launcher.ExperimentFailed,
        match="ExperimentMaxFailedTrialsReached: Experiment has failed because max failed count has reached",
    ):
        katib_launcher.launch(_client(fake), _experiment(), timeout_s=5, poll_s=0)
    assert fake.deleted == [("team-a", "loopline-tune-7")]


def test_timeout_names_the_last_condition_and_stops_the_trials():
    fake = FakeCustomObjects("hang", polls_until_done=10**6)
    with pytest.raises(
        TimeoutError, match=r"did not succeed within 0 s; last: Running: ExperimentRunning"
    ):
        katib_launcher.launch(_client(fake), _experiment(), timeout_s=0, poll_s=0)
    assert fake.deleted == [("team-a", "loopline-tune-7")]


def test_a_failed_delete_is_logged_and_the_result_kept(caplog):
    fake = FakeCustomObjects("succeed")

    def forbidden(*args, **kwargs):
        raise ApiException(status=403, reason="Forbidden")

    fake.delete_namespaced_custom_object = forbidden
    with caplog.at_level(logging.WARNING, logger="loopline.tune.katib"):
        params, _ = katib_launcher.launch(_client(fake), _experiment(), timeout_s=5, poll_s=0)
    assert params["max_iter"] == 180
    assert "kubectl -n team-a delete experiment loopline-tune-7" in caplog.text


def test_an_experiment_the_webhook_would_reject_is_never_sent():
    fake = FakeCustomObjects("succeed")
    bad = _experiment()
    bad["spec"]["parallelTrialCount"] = 50
    with pytest.raises(katib.ExperimentRuleError, match="parallelTrialCount"):
        katib_launcher.launch(_client(fake), bad, timeout_s=5, poll_s=0)
    assert fake.store == {}


# ---- main(), run as the compiled component runs it


def _as_kfp_renders(value, kind: str) -> str:
    """A parameter as the KFP backend substitutes it into args (PbValueToText: strconv's
    FormatBool, and FormatFloat(v, 'f', -1, 64): 60.0 -> "60")."""
    if kind == "STRING":
        return value
    if kind == "BOOLEAN":
        return "true" if value else "false"
    number = float(value)
    return str(int(number)) if number.is_integer() else repr(number)


# The transformer artifact's metadata as the transform step records it.
TRANSFORMER = {"sha256": "ab" * 32, "spec_sha256": "cd" * 32, "sklearn_version": "1.9.0"}


def compiled_argv(out: Path, **params) -> list[str]:
    """The launcher's argv from katib_component.yaml, placeholders filled as KFP fills them."""
    spec = yaml.safe_load(COMPONENT_YAML.read_text())
    container = spec["deploymentSpec"]["executors"]["exec-tune-katib"]["container"]
    assert container["command"] == ["python", "-m", "components.tune.katib_launcher"]
    inputs = spec["components"]["comp-tune-katib"]["inputDefinitions"]
    assert set(params) <= set(inputs["parameters"]), "not a parameter of the component"
    fill = {
        f"{{{{$.inputs.parameters['{k}']}}}}": _as_kfp_renders(
            params.get(k, d.get("defaultValue")), d["parameterType"]
        )
        for k, d in inputs["parameters"].items()
    }
    for artifact in inputs["artifacts"]:
        fill[f"{{{{$.inputs.artifacts['{artifact}'].uri}}}}"] = f"minio://mlpipeline/r/{artifact}"
    fill["{{$.outputs.parameters['best_params'].output_file}}"] = str(out / "best_params")
    fill["{{$.outputs.artifacts['report'].path}}"] = str(out / "report.md")
    fill["{{$}}"] = json.dumps(
        {"inputs": {"artifacts": {"transformer": {"artifacts": [{"metadata": TRANSFORMER}]}}}}
    )
    argv = [fill.get(arg, arg) for arg in container["args"]]
    assert not [arg for arg in argv if "{{" in arg], argv
    return argv + ["--poll-seconds=0"]  # not a component parameter: 15 s on a cluster


@pytest.fixture
def cluster(monkeypatch):
    """KatibClient() as main() builds it, talking to the fake (no kube config here)."""
    import kubernetes

    fake = FakeCustomObjects("succeed")

    def custom_objects_api(api_client=None):
        fake.api_client = (
            api_client  # the real ApiClient KatibClient made, as the real API keeps it
        )
        return fake

    monkeypatch.setattr(kubernetes.config, "load_kube_config", lambda **kwargs: None)
    monkeypatch.setattr(kubernetes.client, "CustomObjectsApi", custom_objects_api)
    return fake


def _trial_pod(body: dict) -> dict:
    return body["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]


def test_every_run_creates_its_own_experiment_with_credentials_then_deletes_it(cluster, tmp_path):
    runs = {
        "run-a": "7c1e5a2b-0d3f-4e5a-9b8c-1d2e3f4a5b6c",
        "run-b": "0a1b2c3d-0d3f-4e5a-9b8c-1d2e3f4a5b6c",
    }
    for out, run_id in runs.items():
        argv = compiled_argv(
            tmp_path / out, run_id=run_id, namespace="team-a", s3_credentials_secret="team-a-minio"
        )
        assert katib_launcher.main(argv) == 0
    names = [body["metadata"]["name"] for body in cluster.created]
    assert names == [katib.experiment_name("loopline-tune", r) for r in runs.values()]
    assert len(set(names)) == 2 and all(len(n) <= katib.MAX_NAME_LENGTH for n in names)
    assert {body["metadata"]["namespace"] for body in cluster.created} == {"team-a"}
    for body in cluster.created:
        pod = _trial_pod(body)
        assert pod["serviceAccountName"] == "loopline-pipeline-runner"
        assert pod["containers"][0]["env"] == [
            {
                "name": env,
                "valueFrom": {
                    "secretKeyRef": {"name": "team-a-minio", "key": key, "optional": True}
                },
            }
            for env, key in (
                ("AWS_ACCESS_KEY_ID", "accesskey"),
                ("AWS_SECRET_ACCESS_KEY", "secretkey"),
            )
        ]
        command = pod["containers"][0]["command"]
        assert "--train=minio://mlpipeline/r/train_data" in command
        # The trials get the transformer's record, and refuse anything else.
        assert f"--transformer-sha256={TRANSFORMER['sha256']}" in command
        assert f"--spec-sha256={TRANSFORMER['spec_sha256']}" in command
        assert f"--sklearn-version={TRANSFORMER['sklearn_version']}" in command
    assert cluster.deleted == [("team-a", n) for n in names] and cluster.store == {}
    best = json.loads((tmp_path / "run-b" / "best_params").read_text())
    assert best == {"learning_rate": 0.12, "max_iter": 180, "loss": "poisson"}
    report = (tmp_path / "run-b" / "report.md").read_text()
    assert f"Experiment `team-a/{names[1]}` (deleted)" in report


def test_a_kept_experiment_stays_and_its_name_is_never_reused(cluster, tmp_path):
    argv = compiled_argv(tmp_path, run_id="run-1", namespace="team-a", keep_experiment=True)
    assert katib_launcher.main(argv) == 0
    kept = cluster.created[0]["metadata"]["name"]
    assert list(cluster.store) == [("team-a", kept)]
    assert f"`team-a/{kept}` (kept)" in (tmp_path / "report.md").read_text()
    # The same run id while that Experiment is kept: the API server refuses the name, and
    # the launcher leaves the Experiment it did not create alone.
    with pytest.raises(Exception, match=f"team-a/{kept} already exists"):
        katib_launcher.main(argv)
    assert list(cluster.store) == [("team-a", kept)] and cluster.deleted == []


def test_the_katib_clients_requests_carry_the_kubernetes_timeouts(cluster, tmp_path, monkeypatch):
    """The Katib SDK sends no timeout; the launcher gives its API client the ``kubernetes``
    limits of components.lib.network (here set by the environment), and a request sent
    through it carries them."""
    from components.lib import network

    monkeypatch.setenv("LOOPLINE_KUBERNETES_READ_TIMEOUT", "12")
    assert katib_launcher.main(compiled_argv(tmp_path, run_id="run-t")) == 0
    api_client = cluster.api_client
    assert network.request_timeout(api_client) == network.Limits("kubernetes", 10.0, 12.0, 3)
    sent = {}

    class Rest:
        def GET(self, url, **kwargs):  # noqa: N802 - the REST client's method name
            sent.update(kwargs, url=url)
            raise RuntimeError("recorded")

    api_client.rest_client = Rest()
    with pytest.raises(RuntimeError, match="recorded"):
        api_client.call_api("/apis", "GET", _return_http_data_only=True)
    assert sent["_request_timeout"] == (10.0, 12.0)


def test_without_a_run_id_the_name_is_still_unique(cluster, tmp_path):
    for run in ("a", "b"):
        assert katib_launcher.main(compiled_argv(tmp_path / run, run_id="")) == 0
    assert len({body["metadata"]["name"] for body in cluster.created}) == 2


def test_a_transformer_without_its_record_stops_the_launcher(cluster, tmp_path):
    argv = compiled_argv(tmp_path, run_id="run-1")
    at = argv.index("--executor-input") + 1
    unrecorded = {"sha256": "ab" * 32}
    argv[at] = json.dumps(
        {"inputs": {"artifacts": {"transformer": {"artifacts": [{"metadata": unrecorded}]}}}}
    )
    with pytest.raises(SystemExit, match="records no spec_sha256, sklearn_version"):
        katib_launcher.main(argv)
    assert cluster.created == []


@pytest.mark.parametrize("outcome", ["succeed", "fail", "hang"])
def test_the_launcher_makes_exactly_the_katib_requests_the_role_allows(outcome):
    # Recorded at the client boundary under the real KatibClient: what
    # manifests/base/rbac.yaml must allow (tests/pipeline_api_calls.py KATIB; the main env's
    # tests/test_manifests_rbac.py checks the rendered Roles allow it and nothing more).
    from tests.pipeline_api_calls import KATIB, RecordingApi

    fake = RecordingApi(
        FakeCustomObjects(outcome, polls_until_done=10**6 if outcome == "hang" else 2)
    )
    with (
        pytest.raises((katib_launcher.ExperimentFailed, TimeoutError))
        if outcome != "succeed"
        else contextlib.nullcontext()
    ):
        katib_launcher.launch(
            _client(fake), _experiment(), timeout_s=0 if outcome == "hang" else 5, poll_s=0
        )
    assert fake.requests == KATIB
    assert fake.namespaces == {"team-a"}
