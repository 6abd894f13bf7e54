"""The training pipeline in containers stops every corpus batch before transform, and trains on clean data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest

from pipelines import local as local_run
from pipelines.training.pipeline import training_pipeline
from tests import corpus

pytestmark = pytest.mark.docker

PIPELINE = "loopline-training"
ALL_TASKS = {"ingest", "validate-data", "data-gate", "transform", "tune", "train"}
# A small search, so that the test stays quick; the bundled one runs in `make demo`.
SEARCH = {
    "objective": {"metric": "rmse", "goal": "minimize"},
    "algorithm": "tpe",
    "max_trials": 4,
    "parallel_trials": 2,
    "model_type": "gradient_boosting",
    "parameters": [
        {"name": "learning_rate", "type": "double", "min": 0.05, "max": 0.3, "log": True}
    ],
}


def _run(root: Path, source: Path):
    local_run.init_docker(root)
    training_pipeline(source_uri=str(source), time_column="day", search_space=json.dumps(SEARCH))


def test_clean_data_runs_through_to_a_model_that_reloads_identically(
    built_images, local_pipeline_root, bikeshare_csv
):
    source = local_pipeline_root / "bikeshare.csv"
    shutil.copy(bikeshare_csv, source)
    _run(local_pipeline_root, source)
    run_dir = local_run.latest_run(local_pipeline_root, PIPELINE)
    assert local_run.ran_tasks(run_dir) == ALL_TASKS
    found = json.loads((run_dir / "validate-data" / "anomalies" / "anomalies.json").read_text())
    assert found["anomalies"] == [] and found["schema_version"] == "bikeshare-1.0.0"
    assert (run_dir / "validate-data" / "report").read_text().startswith("<!doctype html>")

    arts = {(r.task, r.name): r for r in local_run.run_artifacts(run_dir)}
    model = arts[("train", "model")]
    # Lineage: the model names the data, schema and transform versions it came from.
    assert model.metadata["data_sha256"] == arts[("ingest", "train")].metadata["sha256"]
    assert model.metadata["schema_version"] == "bikeshare-1.0.0"
    assert (
        model.metadata["transform_version"]
        == arts[("transform", "transformer")].metadata["transform_version"]
    )
    assert json.loads(model.metadata["params"]).keys() == {"learning_rate"}
    # Trained in the container, loaded here: the same predictions on raw eval rows.
    loaded = joblib.load(Path(model.uri) / "model.joblib")
    raw = pd.read_parquet(arts[("ingest", "eval_data")].uri)
    in_container = pd.read_parquet(arts[("train", "eval_predictions")].uri)["prediction"]
    np.testing.assert_array_equal(loaded.predict(raw), in_container)


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
