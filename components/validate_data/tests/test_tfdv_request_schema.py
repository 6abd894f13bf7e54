"""The request schema (schema.request_schema) in the TFDV env: what a model version carries
for the serving image's request checks."""

from __future__ import annotations

import json

import pytest

from components.validate_data import schema

pytestmark = pytest.mark.tfdv

MONTHS = ["Jan", "Feb", "March", "April", "May", "June"]
MONTHS += ["July", "Aug", "Sept", "Oct", "Nov", "Dec"]


def _parse(text: str):
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2

    return text_format.Parse(text, schema_pb2.Schema())


def test_the_bikeshare_schema_becomes_its_request_schema():
    versioned = schema.load("bikeshare")
    out = schema.request_schema(versioned.schema, versioned.version)
    assert out["format"] == "loopline-request-schema-1"
    assert out["schema_version"] == "bikeshare-1.1.0"
    columns = out["columns"]
    # Every feature of the schema, in its order: the target and unused columns too.
    assert list(columns) == [f.name for f in versioned.schema.feature]
    assert {"day", "bikers", "casual", "registered"} <= set(columns)
    assert columns["temp"] == {
        "type": "float",
        "min": 0.0,
        "max": 1.0,
        "nullable": True,
        "allow_nan": False,
        "allow_inf": False,
    }
    assert columns["hr"] == {"type": "int", "min": 0, "max": 23, "nullable": False}
    assert type(columns["hr"]["min"]) is int and type(columns["temp"]["min"]) is float
    # A named domain (`domain: "mnth"`) resolves to the top-level string domain.
    assert columns["mnth"] == {"type": "string", "values": MONTHS, "nullable": False}
    assert columns["weathersit"]["values"][0] == "clear"
    assert len(columns["weathersit"]["values"]) == 4
    assert columns["bikers"] == {"type": "int", "min": 0, "max": 2000, "nullable": False}
    # Strict JSON, and it reads back equal.
    assert json.loads(json.dumps(out, allow_nan=False)) == out


def test_only_what_the_schema_states_is_in_the_request_schema():
    parsed = _parse(
        """
        feature { name: "n" type: INT }
        feature { name: "lo" type: INT presence { min_fraction: 0.5 } int_domain { min: -3 } }
        feature { name: "f" type: FLOAT presence { min_fraction: 1.0 } float_domain { max: 0.99 } }
        feature { name: "g" type: FLOAT float_domain { disallow_inf: true } }
        feature { name: "s" type: BYTES }
        feature { name: "c" type: BYTES string_domain { value: "a" value: "b" } }
        feature { name: "r" type: FLOAT domain: "ratio" }
        float_domain { name: "ratio" min: 0.25 max: 4 disallow_nan: true }
        """
    )
    columns = schema.request_schema(parsed, "t-0.1.0")["columns"]
    assert columns == {
        "n": {"type": "int", "nullable": True},  # no presence: nullable
        "lo": {"type": "int", "min": -3, "nullable": True},
        # float_domain bounds are float32: stated as the decimal the schema wrote.
        "f": {
            "type": "float",
            "max": 0.99,
            "nullable": False,
            "allow_nan": True,
            "allow_inf": True,
        },
        "g": {"type": "float", "nullable": True, "allow_nan": True, "allow_inf": False},
        "s": {"type": "string", "nullable": True},
        "c": {"type": "string", "values": ["a", "b"], "nullable": True},
        "r": {
            "type": "float",
            "min": 0.25,
            "max": 4.0,
            "nullable": True,
            "allow_nan": False,
            "allow_inf": True,
        },
    }


@pytest.mark.parametrize(
    "text, message",
    [
        ('feature { name: "m" type: BYTES domain: "months" }', "names the domain 'months'"),
        ('feature { name: "x" type: STRUCT }', "type STRUCT has no request-schema type"),
    ],
    ids=["unknown-domain", "struct"],
)
def test_what_has_no_request_schema_is_refused_naming_the_feature(text, message):
    with pytest.raises(schema.SchemaError, match=message):
        schema.request_schema(_parse(text), "t-0.1.0")


def test_the_serving_tests_fixture_is_the_bikeshare_request_schema():
    """components/serving/tests runs in envs without TFDV on a copy of this conversion."""
    from pathlib import Path

    fixture = Path(__file__).parents[2] / "serving" / "tests" / "request_schema_bikeshare.json"
    loaded = schema.load("bikeshare")
    assert json.loads(fixture.read_text()) == schema.request_schema(loaded.schema, loaded.version)
