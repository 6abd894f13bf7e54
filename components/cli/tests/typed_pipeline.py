"""A pipeline with one root input of each KFP parameter type (the submit tests compile it).

No ``from __future__ import annotations`` here: kfp reads the annotations as types."""

from kfp import dsl


@dsl.component(base_image="python:3.11-slim")
def echo(text: str) -> str:
    return text


@dsl.pipeline(name="typed")
def typed(
    name: str,
    count: int,
    rate: float = 0.5,
    flag: bool = False,
    options: dict = {"a": 1},  # noqa: B006 - a pipeline default, compiled into the YAML
    items: list = [1, 2],  # noqa: B006
):
    echo(text=name)
