"""The training pipeline in containers through evaluate and register, against a real MLflow
tracking server: the first run promotes (no champion), the second is judged against it."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pandas as pd
import pytest

from components.lib.registry import CHECK_DATA_FILE, REQUEST_SCHEMA_FILE, Registry
from pipelines import local as local_run
from pipelines.training.pipeline import training_pipeline
from tests import corpus
from tests.fixtures import small_search

pytestmark = [pytest.mark.docker, pytest.mark.mlflow]

PIPELINE = "loopline-training"


def _registration(run_dir):
    """(task, decision, state) of the register task that ran, from its artifact's metadata."""
    found = [
        (r.task, r.metadata["decision"], r.metadata["state"])
        for r in local_run.run_artifacts(run_dir)
        if r.name == "registration"
    ]
    assert len(found) == 1, found  # exactly one branch ran
    return found[0]


def test_first_run_promotes_to_production_and_the_same_model_again_is_rejected(
    built_images, local_pipeline_root, tracking_uri
):
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    source = corpus.build_control(corpus.CONTROLS_BY_NAME["january_to_june"], local_pipeline_root)
    local_run.init_docker(local_pipeline_root, network_mode="host")
    arguments = dict(
        source_uri=str(source),
        search_space=small_search(max_trials=3, parallel_trials=1),
        model_name=name,
        mlflow_tracking_uri=tracking_uri,
        serving_target="none",  # no Kubernetes API under kfp.local: stop after register
    )

    training_pipeline(**arguments)
    first = local_run.latest_run(local_pipeline_root, PIPELINE)
    assert {"find-champion", "evaluate", "decision-relay"} <= local_run.ran_tasks(first)
    champion = {r.name: r for r in local_run.run_artifacts(first) if r.task == "find-champion"}
    assert champion["champion"].metadata["found"] is False
    evaluation = json.loads((first / "evaluate" / "evaluation" / "evaluation.json").read_text())
    assert evaluation["decision"] == "promote"
    assert _registration(first)[1:] == ("promote", "production")
    registry = Registry(tracking_uri)
    v1 = registry.champion(name)
    assert v1 is not None and v1.version == "1"
    # The drift baseline of the next run is this run's validation statistics.
    assert v1.statistics_uri == str(first / "validate-data" / "statistics")
    # The serving image's files travel with the version, under its manifest: validate_data's
    # request schema and the holdout's model input columns.
    path = registry.download(name, v1.version, str(local_pipeline_root / "v1"))  # verified
    request = json.loads(Path(path, REQUEST_SCHEMA_FILE).read_text())
    assert request == {
        **json.loads((first / "validate-data" / "statistics" / "schema.json").read_text()),
        "target": "bikers",
    }
    assert request["schema_version"] == "bikeshare-1.1.0" and "temp" in request["columns"]
    rows = pd.read_parquet(Path(path, CHECK_DATA_FILE))
    assert len(rows) > 0 and "bikers" not in rows.columns

    # The same data and seed again: the same model, not better than the champion.
    training_pipeline(**arguments)
    second = local_run.latest_run(local_pipeline_root, PIPELINE)
    champion = {r.name: r for r in local_run.run_artifacts(second) if r.task == "find-champion"}
    assert champion["champion"].metadata["found"] is True
    assert champion["champion"].metadata["version"] == "1"
    anomalies = json.loads((second / "validate-data" / "anomalies" / "anomalies.json").read_text())
    assert anomalies["baseline"]["kind"] == "champion"
    assert anomalies["baseline"]["source"] == v1.statistics_uri
    evaluation = json.loads((second / "evaluate" / "evaluation" / "evaluation.json").read_text())
    assert evaluation["decision"] == "reject"
    assert any("champion" in reason for reason in evaluation["reasons"]), evaluation["reasons"]
    assert _registration(second)[1:] == ("reject", "rejected")
    assert registry.champion(name).version == "1"  # the champion keeps serving
    assert registry.get(name, "2").state == "rejected"
