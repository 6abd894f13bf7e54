"""The training pipeline in containers stops every corpus batch before transform, and continues on clean data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pipelines import local as local_run
from pipelines.training.pipeline import training_pipeline
from tests import corpus

pytestmark = pytest.mark.docker

PIPELINE = "loopline-training"
# The tasks before the gate; transform, tuning and training hang off the gate's success.
GATED = {"ingest", "validate-data", "data-gate"}


def _run(root: Path, source: Path):
    local_run.init_docker(root)
    training_pipeline(source_uri=str(source), time_column="day")


def test_clean_data_passes_the_gate(built_images, local_pipeline_root, bikeshare_csv):
    source = local_pipeline_root / "bikeshare.csv"
    shutil.copy(bikeshare_csv, source)
    _run(local_pipeline_root, source)
    run_dir = local_run.latest_run(local_pipeline_root, PIPELINE)
    assert local_run.ran_tasks(run_dir) == GATED
    found = json.loads((run_dir / "validate-data" / "anomalies" / "anomalies.json").read_text())
    assert found["anomalies"] == [] and found["schema_version"] == "bikeshare-1.0.0"
    assert (run_dir / "validate-data" / "report").read_text().startswith("<!doctype html>")


@pytest.mark.parametrize("case", corpus.CASES, ids=[c.name for c in corpus.CASES])
def test_corpus_batch_is_stopped_before_transform(case, built_images, local_pipeline_root, capfd):
    source = corpus.build(case, local_pipeline_root)
    with pytest.raises(RuntimeError, match="finished with status .*FAILURE"):
        _run(local_pipeline_root, source)
    logs = capfd.readouterr()
    run_dir = local_run.latest_run(local_pipeline_root, PIPELINE)
    ran = local_run.ran_tasks(run_dir)
    if case.stage == "ingest":
        assert ran == set(), ran
        assert case.expect in logs.out + logs.err
        return
    # Validation finished and named the column; the gate failed; nothing after it ran.
    assert ran == {"ingest", "validate-data"}, ran
    found = json.loads((run_dir / "validate-data" / "anomalies" / "anomalies.json").read_text())
    assert {"column": case.column, "kind": case.expect} in [
        {"column": a["column"], "kind": a["kind"]} for a in found["anomalies"]
    ]
    assert f"{case.column}: {case.expect}" in logs.out + logs.err  # the gate's failure message
