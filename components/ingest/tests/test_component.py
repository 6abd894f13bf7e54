"""The ingest component through kfp.local.SubprocessRunner (the dev venv, no container)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from kfp import local

from components.ingest.component import ingest

pytestmark = pytest.mark.local


@pytest.fixture
def subprocess_runner(tmp_path):
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"))


def test_component_writes_splits_with_metadata_and_report(subprocess_runner, bikeshare_csv):
    task = ingest(
        source_uri=str(bikeshare_csv), time_column="day", window_start="1", window_end="182"
    )
    train, eval_data, holdout = (task.outputs[k] for k in ("train", "eval_data", "holdout"))
    rows = [pq.read_metadata(a.path).num_rows for a in (train, eval_data, holdout)]
    assert [a.metadata["rows"] for a in (train, eval_data, holdout)] == rows
    assert sum(rows) == (pd.read_csv(bikeshare_csv)["day"] < 182).sum()  # January to June
    assert train.metadata["window"] == {"column": "day", "start": "1", "end": "182"}
    report = Path(task.outputs["report"].path).read_text()
    assert f"| train | {rows[0]} | 15 | `{train.metadata['sha256']}` |" in report


def test_component_fails_with_the_cause(subprocess_runner, tmp_path, capfd):
    bad = tmp_path / "bad.csv"
    bad.write_text("day,hr\n")
    with pytest.raises(RuntimeError, match="ingest"):
        ingest(source_uri=str(bad), time_column="day")
    logs = capfd.readouterr()
    assert "header (2 columns) but no data rows" in logs.out + logs.err
