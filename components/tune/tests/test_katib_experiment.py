"""The Katib Experiment the library generates: Katib's schema (strict) and its webhook rules."""

from __future__ import annotations

import copy

import jsonschema
import pytest

from components.tune import katib, search_space
from tests.schemas import validate_katib

pytestmark = pytest.mark.unit

DATA = {
    "train": "minio://mlpipeline/a/train",
    "eval": "minio://mlpipeline/a/eval",
    "transformer": "minio://mlpipeline/a/transformer",
    "s3_endpoint": "minio-service.kubeflow:9000",
}


def build(spec=None, name="loopline-tune-1"):
    spec = spec or search_space.load("bikeshare")
    return katib.experiment(
        spec,
        name,
        "team-a",
        "gcr.io/acme/loopline/pipeline:0.1.0",
        DATA,
        seed=7,
        credentials_secret="minio-creds",
    )


@pytest.mark.parametrize("algorithm", search_space.ALGORITHMS)
def test_generated_experiment_is_valid_for_every_algorithm(algorithm):
    spec = {**search_space.load("bikeshare"), "algorithm": algorithm}
    if algorithm == "grid":
        spec["parameters"] = [
            {"name": "learning_rate", "type": "double", "min": 0.05, "max": 0.3, "step": 0.05},
            {"name": "max_leaf_nodes", "type": "int", "min": 8, "max": 64, "step": 8},
        ]
    exp = build(spec)
    validate_katib(exp)
    assert exp["spec"]["algorithm"]["algorithmName"] == algorithm
    assert exp["spec"]["maxTrialCount"] == spec["max_trials"]
    assert exp["spec"]["parallelTrialCount"] == spec["parallel_trials"]


def test_trials_run_the_training_entrypoint_with_every_parameter():
    exp = build()
    template = exp["spec"]["trialTemplate"]
    container = template["trialSpec"]["spec"]["template"]["spec"]["containers"][0]
    assert container["name"] == template["primaryContainerName"] == "training"
    assert container["command"][:3] == ["python", "-m", "components.tune.trial"]
    names = [p["name"] for p in exp["spec"]["parameters"]]
    assert [tp["reference"] for tp in template["trialParameters"]] == names
    for name in names:
        assert f"--param={name}=${{trialParameters.{name}}}" in container["command"]
    assert "--metric=rmse" in container["command"]
    assert [(e["name"], e["valueFrom"]["secretKeyRef"]["key"]) for e in container["env"]] == [
        ("AWS_ACCESS_KEY_ID", "accesskey"),
        ("AWS_SECRET_ACCESS_KEY", "secretkey"),
    ]
    assert exp["spec"]["objective"] == {"type": "minimize", "objectiveMetricName": "rmse"}
    assert exp["spec"]["metricsCollectorSpec"] == {"collector": {"kind": "StdOut"}}
    assert exp["spec"]["earlyStopping"]["algorithmName"] == "medianstop"
    lr = next(p for p in exp["spec"]["parameters"] if p["name"] == "learning_rate")
    assert lr["feasibleSpace"] == {"min": "0.02", "max": "0.3", "distribution": "logUniform"}


def test_strict_schema_catches_a_misspelt_field_a_server_would_prune():
    exp = build()
    exp["spec"]["maxTrialCounts"] = exp["spec"].pop("maxTrialCount")
    with pytest.raises(jsonschema.ValidationError, match="maxTrialCounts"):
        validate_katib(exp)
    wrong_type = build()
    wrong_type["spec"]["maxTrialCount"] = "20"
    with pytest.raises(jsonschema.ValidationError, match="is not of type 'integer'"):
        validate_katib(wrong_type)


def _mutate(path, value):
    def apply(exp):
        node = exp
        for key in path[:-1]:
            node = node[key]
        if value is _DELETE:
            del node[path[-1]]
        else:
            node[path[-1]] = value
        return exp

    return apply


_DELETE = object()
RULES = {
    "name not lower case": (_mutate(["metadata", "name"], "Loopline_Tune"), "metadata.name"),
    "name starting with a digit": (
        _mutate(["metadata", "name"], "7-tune"),
        "starting with a letter",
    ),
    "name over 40 characters": (
        _mutate(["metadata", "name"], "loopline-tune-" + "a" * 27),
        "at most 40 characters",
    ),
    "maxTrialCount not positive": (
        _mutate(["spec", "maxTrialCount"], 0),
        "spec.maxTrialCount must be > 0",
    ),
    "parallelTrialCount not positive": (
        _mutate(["spec", "parallelTrialCount"], 0),
        "spec.parallelTrialCount must be > 0",
    ),
    "maxFailedTrialCount negative": (
        _mutate(["spec", "maxFailedTrialCount"], -1),
        "spec.maxFailedTrialCount must be >= 0",
    ),
    "parallel above max": (
        _mutate(["spec", "parallelTrialCount"], 99),
        r"parallelTrialCount \(99\) must be <= spec.maxTrialCount",
    ),
    "failed above max": (
        _mutate(["spec", "maxFailedTrialCount"], 99),
        r"maxFailedTrialCount \(99\) must be <= spec.maxTrialCount",
    ),
    "parameters and nasConfig": (
        _mutate(["spec", "nasConfig"], {"graphConfig": {}}),
        "exactly one of spec.parameters and spec.nasConfig",
    ),
    "objective type": (
        _mutate(["spec", "objective", "type"], "lowest"),
        "spec.objective.type 'lowest'",
    ),
    "objective metric missing": (
        _mutate(["spec", "objective", "objectiveMetricName"], ""),
        "objectiveMetricName must be set",
    ),
    "objective in additional metrics": (
        _mutate(["spec", "objective", "additionalMetricNames"], ["rmse"]),
        "additionalMetricNames must not contain",
    ),
    "unknown algorithm": (
        _mutate(["spec", "algorithm", "algorithmName"], "annealing"),
        "algorithmName 'annealing'",
    ),
    "parameter without feasibleSpace": (
        lambda e: (e["spec"]["parameters"][0].pop("feasibleSpace"), e)[1],
        r"feasibleSpace must be set",
    ),
    "categorical without list": (
        lambda e: (e["spec"]["parameters"][0].update(parameterType="categorical"), e)[1],
        r"feasibleSpace.list must be set",
    ),
    "no primaryContainerName": (
        _mutate(["spec", "trialTemplate", "primaryContainerName"], _DELETE),
        "primaryContainerName must be set",
    ),
    "no successCondition": (
        _mutate(["spec", "trialTemplate", "successCondition"], _DELETE),
        "successCondition must be set",
    ),
    "no failureCondition": (
        _mutate(["spec", "trialTemplate", "failureCondition"], _DELETE),
        "failureCondition must be set",
    ),
    "no trialParameters": (
        _mutate(["spec", "trialTemplate", "trialParameters"], []),
        "trialParameters must be set",
    ),
    "trialParameter without reference": (
        lambda e: (e["spec"]["trialTemplate"]["trialParameters"][0].pop("reference"), e)[1],
        "needs name and reference",
    ),
    "trialSpec and configMap": (
        _mutate(["spec", "trialTemplate", "configMap"], {"configMapName": "x"}),
        "exactly one of trialSpec and configMap",
    ),
}


@pytest.mark.parametrize("rule", list(RULES), ids=list(RULES))
def test_each_webhook_rule_rejects_its_violation(rule):
    mutate, message = RULES[rule]
    exp = mutate(copy.deepcopy(build()))
    with pytest.raises(katib.ExperimentRuleError, match=message):
        katib.check_webhook_rules(exp)


def test_bad_search_space_never_becomes_an_experiment():
    spec = {**search_space.load("bikeshare"), "max_trials": 1, "parallel_trials": 2}
    with pytest.raises(
        search_space.SearchSpaceError, match=r"max_trials \(1\) is below parallel_trials \(2\)"
    ):
        build(spec)


def test_each_run_gets_its_own_valid_experiment_name():
    uuid_a, uuid_b = "7C1E5A2B-0D3F-4E5A-9B8C-1D2E3F4A5B6C", "7c1e5a2b-0d3f-4e5a-9b8c-1d2e3f4a5b6d"
    run_a = katib.experiment_name("loopline-tune", uuid_a)
    run_b = katib.experiment_name("loopline-tune", uuid_b)
    assert run_a != run_b and run_a.startswith("loopline-tune-")
    assert katib.experiment_name("loopline-tune", uuid_a) == run_a  # a retried task: same name
    long_prefix = katib.experiment_name("Loopline-Tune-" + "x" * 60, uuid_a)
    for name in (
        run_a,
        run_b,
        long_prefix,
        katib.experiment_name("a-----------------------------", ""),
    ):
        assert len(name) <= katib.MAX_NAME_LENGTH
        katib.check_webhook_rules({**build(), "metadata": {"name": name, "namespace": "team-a"}})
