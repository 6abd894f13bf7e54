"""kfp.local resolves ``dsl.OneOf`` of artifacts (pipelines/local.py), as the training
pipeline's examples need: whichever branch ran hands its artifacts, metadata included."""

import pytest
from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from pipelines import local as local_run

pytestmark = pytest.mark.local


@dsl.component
def _rows(tag: str, rows: Output[Dataset]):
    with open(rows.path, "w") as fh:
        fh.write(tag)
    rows.metadata["made_by"] = tag


@dsl.component
def _read(rows: Input[Dataset]) -> str:
    with open(rows.path) as fh:
        return f"{fh.read()} {rows.metadata['made_by']}"


@dsl.pipeline
def _either(store: str = "") -> str:
    with dsl.If(store == "", name="flat"):
        flat = _rows(tag="flat")
    with dsl.Else(name="store"):
        joined = _rows(tag="joined")
    return _read(rows=dsl.OneOf(joined.outputs["rows"], flat.outputs["rows"])).output


def test_the_branch_that_ran_hands_its_artifact(tmp_path):
    local_run.init_subprocess(tmp_path / "root")
    assert _either().output == "flat flat"
    assert _either(store="s3://store").output == "joined joined"
