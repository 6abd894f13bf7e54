"""The training pipeline with its examples from the feature store, in containers: materialize
and feature_join in the built features image, the rest in theirs, against a real MLflow
tracking server (kfp.local DockerRunner; needs a Docker engine)."""

from __future__ import annotations

import json
import os
import shutil
import uuid

import mlflow
import pandas as pd
import pytest

from components.lib.registry import LINEAGE_PREFIX, Registry
from pipelines import local as local_run
from pipelines import local_features
from tests.fixtures import small_search

pytestmark = [pytest.mark.docker, pytest.mark.mlflow]

SPLITS = ("train", "eval_data", "holdout")
JOINS = {"train": "feature-join", "eval_data": "feature-join-2", "holdout": "feature-join-3"}
FEATURES = ["season", "mnth", "hr", "holiday", "weekday", "workingday", "weathersit", "temp",
            "atemp", "hum", "windspeed"]  # fmt: skip


def test_training_from_the_feature_store_joins_validates_and_records_the_view_versions(
    built_images, local_pipeline_root, bikeshare_csv, run_training, tracking_uri
):
    snapshot = local_pipeline_root / "bikeshare.csv"  # the containers see only the root
    shutil.copy(bikeshare_csv, snapshot)
    entities = local_pipeline_root / "entities.parquet"
    local_features.entity_table(snapshot).to_parquet(entities)
    local_run.init_docker(local_pipeline_root, network_mode="host")

    materialized = local_features.materialize(local_pipeline_root, snapshot)
    assert set(materialized.feature_view_versions) == {"weather", "calendar"}
    assert os.stat(materialized.store / "registry.db").st_uid == 1000  # the features image's user

    run_training(
        source_uri=str(entities),
        time_column="event_timestamp",
        feature_store_uri=str(materialized.store),
        search_space=small_search(max_trials=2, parallel_trials=1),
        model_name=(name := f"e2e-store-{uuid.uuid4().hex[:8]}"),
    )
    run_dir = local_run.latest_run(local_pipeline_root, "loopline-training")
    ran = local_run.ran_tasks(run_dir)
    # The store's branch ran and the snapshot's did not; validation, the data gate and the
    # rest ran on the joined rows.
    assert {"ingest-2", *JOINS.values(), "validate-data", "data-gate", "train", "register"} <= ran
    assert "ingest" not in ran
    arts = {(r.task, r.name): r for r in local_run.run_artifacts(run_dir)}

    # Each split holds the snapshot's own features for its hours, joined as of each time, in
    # ingest's split shape; the three splits are the whole year, the time split kept.
    flat = pd.read_csv(snapshot)
    joined = {s: pd.read_parquet(arts[(JOINS[s], "joined")].uri) for s in SPLITS}
    assert sum(len(f) for f in joined.values()) == len(flat) == 8645
    assert joined["train"]["day"].max() <= joined["eval_data"]["day"].min()
    for split, rows in joined.items():
        assert rows.notna().all().all(), split
        expected = rows[["day", "hr"]].merge(flat, on=["day", "hr"], how="left")
        pd.testing.assert_frame_equal(
            rows[FEATURES + ["bikers"]].reset_index(drop=True),
            expected[FEATURES + ["bikers"]].astype(rows[FEATURES + ["bikers"]].dtypes),
            check_dtype=False,
        )
        assert os.stat(arts[(JOINS[split], "joined")].uri).st_uid == 1000
    # validate_data judged the joined rows, every split (and the data gate let them through).
    rows = arts[("validate-data", "statistics")].metadata["rows"]
    assert rows == {"train": 6052, "eval": 1296, "holdout": 1297}
    assert rows == {s.removesuffix("_data"): len(joined[s]) for s in SPLITS}

    # The views' versions are the model's lineage, on to the registered version's tags.
    versions = json.dumps(materialized.feature_view_versions, sort_keys=True)
    model = arts[("train", "model")].metadata
    assert model["feature_view_versions"] == versions
    assert model["data_sha256"] == arts[("feature-join", "joined")].metadata["sha256"]
    (version,) = Registry(tracking_uri).versions(name)
    assert version.lineage["feature_view_versions"] == versions
    tags = mlflow.MlflowClient(tracking_uri).get_model_version(name, version.version).tags
    assert tags[f"{LINEAGE_PREFIX}feature_view_versions"] == versions
