"""Known-bad objects, one of each kind Loopline ships or generates, are rejected with the
field named: a misspelt field (an API server would prune it silently, a strict check
refuses it), a wrong type, a missing required field.

Already covered elsewhere, not repeated here: InferenceService (components/lib/tests/
test_inferenceservice.py, test_known_bad_objects_are_rejected_naming_the_field: misspelt
storageURI and serviceAcountName, a string percent, missing trafficPercent / predictor /
modelFormat); Katib Experiment (components/tune/tests/test_katib_experiment.py: misspelt
maxTrialCounts, a string maxTrialCount, and Katib's webhook rules for what its schema does
not require); ServingRuntime's misspelt protocolVersion and Role's missing verbs
(tests/test_manifests.py); the rollout overlays' misspelt canaryTrafficPercentage
(tests/test_rollout_overlays.py). Kinds whose schema requires no field (ServiceAccount,
ConfigMap, Secret, PodDisruptionBudget) have no missing-field case; the test checks that
their schema indeed requires nothing.
"""

from __future__ import annotations

import copy

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests import schemas
from tests.test_manifests import KUBERNETES_VERSION, ROOT, by_kind_and_name, render

PROD = ROOT / "manifests" / "overlays" / "prod"
TEMPLATE = ROOT / "manifests" / "serving" / "capture-s3-secret.template.yaml"


def _object(kind: str, name: str) -> dict:
    if kind == "Secret":
        return next(d for d in yaml.safe_load_all(TEMPLATE.read_text()) if d)
    return copy.deepcopy(by_kind_and_name(render(PROD))[(kind, name)])


def _rename(path, new):
    def apply(obj):
        node = obj
        for key in path[:-1]:
            node = node[key]
        node[new] = node.pop(path[-1])

    return apply


def _set(path, value):
    def apply(obj):
        node = obj
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return apply


def _drop(path):
    def apply(obj):
        node = obj
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]

    return apply


C0 = ("spec", "template", "spec", "containers", 0)

# (kind, name, case, mutation, the field the error must name)
CASES = [
    ("Deployment", "mlflow", "misspelt", _rename(("spec", "replicas"), "replica"), "replica"),
    ("Deployment", "mlflow", "type", _set(("spec", "replicas"), "two"), "replicas"),
    ("Deployment", "mlflow", "missing", _drop(("spec", "selector")), "selector"),
    (
        "StatefulSet",
        "mlflow-postgres",
        "misspelt",
        _rename(("spec", "replicas"), "replica"),
        "replica",
    ),
    (
        "StatefulSet",
        "mlflow-postgres",
        "type",
        _set((*C0, "ports", 0, "containerPort"), "5432"),
        "containerPort",
    ),
    ("StatefulSet", "mlflow-postgres", "missing", _drop((*C0, "name")), "name"),
    ("Service", "mlflow", "misspelt", _rename(("spec", "selector"), "selectors"), "selectors"),
    ("Service", "mlflow", "type", _set(("spec", "ports", 0, "port"), "5000"), "port"),
    ("Service", "mlflow", "missing", _drop(("spec", "ports", 0, "port")), "port"),
    (
        "NetworkPolicy",
        "mlflow",
        "misspelt",
        _rename(("spec", "policyTypes"), "policyType"),
        "policyType",
    ),
    ("NetworkPolicy", "mlflow", "type", _set(("spec", "policyTypes"), "Ingress"), "policyTypes"),
    ("NetworkPolicy", "mlflow", "missing", _drop(("spec", "podSelector")), "podSelector"),
    (
        "Job",
        "loopline-capture-bucket-setup",
        "misspelt",
        _rename(("spec", "backoffLimit"), "backoffLimits"),
        "backoffLimits",
    ),
    (
        "Job",
        "loopline-capture-bucket-setup",
        "type",
        _set(("spec", "backoffLimit"), "3"),
        "backoffLimit",
    ),
    (
        "Job",
        "loopline-capture-bucket-setup",
        "missing",
        _drop(("spec", "template", "spec", "containers")),
        "containers",
    ),
    (
        "Role",
        "loopline-kfp-runtime",
        "misspelt",
        _rename(("rules", 0, "resourceNames"), "resourceName"),
        "resourceName",
    ),
    ("Role", "loopline-kfp-runtime", "type", _set(("rules", 0, "verbs"), "get"), "verbs"),
    (
        "RoleBinding",
        "loopline-pipeline-runner",
        "misspelt",
        _set(("subjects", 0, "namespaces"), "team-a"),
        "namespaces",
    ),
    (
        "RoleBinding",
        "loopline-pipeline-runner",
        "type",
        _set(("subjects",), {"kind": "ServiceAccount"}),
        "subjects",
    ),
    ("RoleBinding", "loopline-pipeline-runner", "missing", _drop(("roleRef",)), "roleRef"),
    (
        "ServiceAccount",
        "loopline-serving",
        "misspelt",
        _rename(("automountServiceAccountToken",), "automountServiceAccountTokens"),
        "automountServiceAccountTokens",
    ),
    (
        "ServiceAccount",
        "loopline-serving",
        "type",
        _set(("automountServiceAccountToken",), "false"),
        "automountServiceAccountToken",
    ),
    (
        "PodDisruptionBudget",
        "loopline-feature-server",
        "misspelt",
        _rename(("spec", "minAvailable"), "minAvailabe"),
        "minAvailabe",
    ),
    (
        "PodDisruptionBudget",
        "loopline-feature-server",
        "type",
        _set(("spec", "selector"), "app=x"),
        "selector",
    ),
    (
        "Secret",
        "loopline-serving-s3",
        "misspelt",
        _rename(("stringData",), "stringDatas"),
        "stringDatas",
    ),
    (
        "Secret",
        "loopline-serving-s3",
        "type",
        _set(("stringData", "accesskey"), 12345),
        "accesskey",
    ),
    (
        "ServingRuntime",
        "loopline-serving",
        "type",
        _set(("spec", "supportedModelFormats", 0, "autoSelect"), "yes"),
        "autoSelect",
    ),
    ("ServingRuntime", "loopline-serving", "missing", _drop(("spec", "containers")), "containers"),
    (
        "ServingRuntime",
        "loopline-serving",
        "missing-name",
        _drop(("spec", "containers", 0, "name")),
        "name",
    ),
]


def _validate(obj: dict) -> None:
    if obj["apiVersion"].startswith("serving.kserve.io/"):
        schemas.validate_kserve(obj)
    else:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize(
    ("kind", "name", "case", "mutate", "field"),
    CASES,
    ids=[f"{kind}-{case}" for kind, _, case, _, _ in CASES],
)
def test_a_known_bad_object_is_rejected_with_the_field_named(kind, name, case, mutate, field):
    obj = _object(kind, name)
    _validate(obj)  # the shipped object is valid
    mutate(obj)
    with pytest.raises(jsonschema.ValidationError) as error:
        _validate(obj)
    where = "/".join(str(p) for p in error.value.absolute_path)
    text = f"{error.value.message} at {where}"
    assert field in text, text


def test_every_kind_prod_ships_has_known_bad_cases():
    kinds = {d["kind"] for d in render(PROD)}
    covered = {kind for kind, *_ in CASES}
    assert kinds - covered <= {"ConfigMap"}, kinds - covered
    # ConfigMap and the kinds without a missing case require no field at all
    for kind in ("ConfigMap", "ServiceAccount", "PodDisruptionBudget", "Secret"):
        assert not _required(kind), kind


def _required(kind: str) -> list[str]:
    """The top-level required fields of ``kind`` in kubernetes-validate's bundled schema."""
    import json
    import os

    folder = os.path.join(
        os.path.dirname(kubernetes_validate.__file__),
        "kubernetes-json-schema",
        f"v{KUBERNETES_VERSION}.0-local-strict",
    )
    group = {"PodDisruptionBudget": "-policy"}.get(kind, "")
    with open(os.path.join(folder, f"{kind.lower()}{group}-v1.json")) as fh:
        return json.load(fh).get("required", [])
