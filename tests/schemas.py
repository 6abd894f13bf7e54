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
