"""Strict validation against the upstream API schemas: KServe v0.20.0 CRDs, Katib v0.19.0 OpenAPI.

The folder comes from ``$LOOPLINE_SCHEMAS_DIR``; by default ``../shared/schemas`` beside the
checkout. Cloud Build's first step downloads the same pinned files there (cloudbuild.yaml,
fetch-schemas) and the tests step sets the variable. A missing folder fails the test, naming
the variable.

Neither upstream schema closes its objects, and an API server prunes unknown fields of
a custom resource silently, so a misspelt field would pass a plain check and then do
nothing. Like `kubectl --validate=strict`, every object schema with `properties` (and
without `x-kubernetes-preserve-unknown-fields`) is treated as closed here.
"""

from __future__ import annotations

import copy
import json
import os
from functools import cache
from pathlib import Path

import jsonschema
import pytest

SCHEMAS_ENV = "LOOPLINE_SCHEMAS_DIR"
DEFAULT_SCHEMAS_DIR = Path(__file__).resolve().parent.parent.parent / "shared" / "schemas"
# The files every schema test reads, relative to the folder (cloudbuild.yaml fetches these).
FILES = (
    "kserve-v0.20.0/serving.kserve.io_inferenceservices.yaml",
    "kserve-v0.20.0/serving.kserve.io_servingruntimes.yaml",
    "kserve-v0.20.0/serving.kserve.io_clusterservingruntimes.yaml",
    "katib-v0.19.0/swagger.json",
    "katib-v0.19.0/experiment-crd.yaml",
)


def configured_dir() -> Path:
    """``$LOOPLINE_SCHEMAS_DIR``, else ../shared/schemas beside the checkout (unchecked)."""
    value = os.environ.get(SCHEMAS_ENV, "")
    return Path(value) if value else DEFAULT_SCHEMAS_DIR


def schemas_dir() -> Path:
    """The folder of upstream schemas: ``$LOOPLINE_SCHEMAS_DIR``, else ../shared/schemas."""
    value = os.environ.get(SCHEMAS_ENV, "")
    path = configured_dir()
    if not path.is_dir():
        source = f"{SCHEMAS_ENV}={value}" if value else f"{SCHEMAS_ENV} unset: the default"
        pytest.fail(
            f"the upstream schemas folder is missing: {path} ({source}); set {SCHEMAS_ENV} to "
            "a folder holding kserve-v0.20.0/ and katib-v0.19.0/ (cloudbuild.yaml's "
            "fetch-schemas step downloads them), or put ../shared/schemas beside the checkout"
        )
    return path


def schema_file(rel: str) -> Path:
    """One schema file of the folder; fails naming the file and the variable when absent."""
    path = schemas_dir() / rel
    if not path.is_file():
        pytest.fail(f"the schema {rel} is missing from {path.parent} (set by {SCHEMAS_ENV})")
    return path


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
    path = schema_file("katib-v0.19.0/swagger.json")
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

    path = schema_file(f"kserve-v0.20.0/{KSERVE_CRDS[kind]}")
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
