"""Strict validation against the upstream API schemas in ../shared/schemas.

Neither upstream schema closes its objects, and an API server prunes unknown fields of
a custom resource silently, so a misspelt field would pass a plain check and then do
nothing. Like `kubectl --validate=strict`, every object schema with `properties` (and
without `x-kubernetes-preserve-unknown-fields`) is treated as closed here.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path

import jsonschema
import pytest

SHARED_SCHEMAS = Path(__file__).resolve().parent.parent.parent / "shared" / "schemas"


def _close(node):
    if isinstance(node, dict):
        if (
            "properties" in node
            and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")
        ):
            node["additionalProperties"] = False
        for value in node.values():
            _close(value)
    elif isinstance(node, list):
        for value in node:
            _close(value)
    return node


@cache
def _katib_components() -> dict:
    path = SHARED_SCHEMAS / "katib-v0.19.0" / "swagger.json"
    if not path.exists():
        pytest.fail(
            f"the Katib schema is missing: {path} (../shared/schemas must sit beside the checkout)"
        )
    return _close(copy.deepcopy(json.loads(path.read_text())["components"]))


def validate_katib(obj: dict, kind: str = "v1beta1.Experiment") -> None:
    """Raises jsonschema.ValidationError when ``obj`` breaks the Katib v0.19.0 API schema (strictly)."""
    root = {"$ref": f"#/components/schemas/{kind}", "components": _katib_components()}
    jsonschema.Draft7Validator(root).validate(obj)


KSERVE_CRDS = {
    "InferenceService": "serving.kserve.io_inferenceservices.yaml",
    "ServingRuntime": "serving.kserve.io_servingruntimes.yaml",
    "ClusterServingRuntime": "serving.kserve.io_clusterservingruntimes.yaml",
}


@cache
def _kserve_schema(kind: str, version: str) -> dict:
    import yaml

    path = SHARED_SCHEMAS / "kserve-v0.20.0" / KSERVE_CRDS[kind]
    if not path.exists():
        pytest.fail(
            f"the KServe schema is missing: {path} (../shared/schemas must sit beside the checkout)"
        )
    crd = yaml.safe_load(path.read_text())
    for entry in crd["spec"]["versions"]:
        if entry["name"] == version:
            return _close(copy.deepcopy(entry["schema"]["openAPIV3Schema"]))
    pytest.fail(f"{path} has no version {version}")


def validate_kserve(obj: dict) -> None:
    """Raises jsonschema.ValidationError when ``obj`` breaks the KServe v0.20.0 CRD schema of
    its kind (strictly: unknown fields are errors, as the API server would prune them)."""
    group, version = obj["apiVersion"].split("/")
    assert group == "serving.kserve.io", obj["apiVersion"]
    schema = _kserve_schema(obj["kind"], version)
    jsonschema.Draft7Validator(schema).validate(obj)
