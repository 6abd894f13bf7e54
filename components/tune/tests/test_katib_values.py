"""Katib carries every parameter value as text; one parser turns it back, for trials and launcher."""

from __future__ import annotations

import pytest

from components.tune import katib, katib_values, search_space

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0.12", 0.12),
        ("1e-05", 1e-05),
        ("180", 180),
        ("-3", -3),
        ("poisson", "poisson"),
        ("True", True),
        ("true", True),
        ("FALSE", False),
        ("false", False),
        ("None", None),
        ("null", None),
        ("", ""),
    ],
)
def test_parse(text, value):
    parsed = katib_values.parse(text)
    assert parsed == value and type(parsed) is type(value)


def _spec(values, kind="categorical"):
    spec = search_space.load("bikeshare")
    spec["parameters"] = [{"name": "p", "type": kind, "values": values}]
    return spec


def test_every_value_of_a_valid_spec_comes_back_from_the_experiment_as_itself():
    values = ["squared_error", True, False, None, 3, 0.5, 1e-05]
    data = {"train": "minio://b/t", "eval": "minio://b/e", "transformer": "minio://b/x"}
    exp = katib.experiment(_spec(values), "loopline-tune-1", "team-a", "img:1", data)
    texts = exp["spec"]["parameters"][0]["feasibleSpace"]["list"]
    parsed = [katib_values.parse(t) for t in texts]
    assert parsed == values and [type(v) for v in parsed] == [type(v) for v in values]


@pytest.mark.parametrize(("value", "back"), [("1", "1"), ("true", "True"), ("null", "None")])
def test_a_value_katib_would_change_is_rejected(value, back):
    with pytest.raises(
        search_space.SearchSpaceError,
        match=f"parameter 'p': value '{value}' would come back from Katib's text as {back}",
    ):
        search_space.validate(_spec(["a", value]))
