"""The continuous-training pipeline in containers (kfp.local DockerRunner) on real captured
traffic, against a real MLflow registry and a real S3 endpoint: a window from the training
period does not retrain (the nested training pipeline's tasks never run); a drifted,
decayed window does (they run, and register a version); the same window judged again by
another run does not retrain twice.

One champion (the session's training pipeline run on January to June, tests/fixtures.py) and
one capture are shared by the module's tests, which run in order.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime

import pandas as pd
import pytest

from components.lib.registry import Registry
from pipelines import local as local_run
from pipelines.continuous_training.pipeline import continuous_training_pipeline
from tests.fixtures import small_search

pytestmark = [pytest.mark.docker, pytest.mark.mlflow]

BUCKET = "e2e-ct"
CAPTURE = f"s3://{BUCKET}/predictions"
CT = "loopline-continuous-training"
INPUTS = ["season", "mnth", "hr", "holiday", "weekday", "workingday", "weathersit"]
INPUTS += ["temp", "atemp", "hum", "windspeed"]
# Tasks only the nested training pipeline has: their folders say whether it ran.
TRAINING_ONLY = {"ingest", "transform", "tune", "train", "evaluate"}
POLICY = json.dumps({"consecutive_windows": 1})  # the e2e judges single windows


def event_times(rows: pd.DataFrame) -> pd.Series:
    start = pd.Timestamp("2011-01-01", tz="UTC")
    return (
        start + pd.to_timedelta(rows["day"] - 1, unit="D") + pd.to_timedelta(rows["hr"], unit="h")
    )


@pytest.fixture(scope="module")
def loop(january_to_june_run, tracking_uri, s3_store, s3_server, bikeshare_csv):
    """The champion (version 1 of the session's ``january_to_june_run``, trained on January
    to June), the year's snapshot in that run's root, and the traffic it served captured by
    the serving writer: January to April (its training period) and August, with labels for
    August."""
    from components.lib import capture_layout, window
    from components.serving.capture import Capture

    root, name = january_to_june_run.root, january_to_june_run.model_name
    local_run.init_docker(root, network_mode="host", environment=dict(s3_store.credentials))
    registry = Registry(tracking_uri)
    assert registry.champion(name).version == "1"
    model = registry.load_model(name, "1", str(root / "v1"))
    snapshot = root / "bikeshare-2011.csv"
    shutil.copy(bikeshare_csv, snapshot)

    client = s3_store.client()
    client.make_bucket(BUCKET)
    data = pd.read_csv(bikeshare_csv)
    times = event_times(data)
    parts = {
        "train": data[(times < pd.Timestamp("2011-05-01", tz="UTC")).to_numpy()],
        "aug": data[(data["mnth"] == "Aug").to_numpy()],
    }
    capture = Capture(uri=CAPTURE, endpoint=s3_server, model_name=name, model_version="1")
    for tag, rows in parts.items():
        capture.record(
            {c: rows[c].tolist() for c in INPUTS},
            [float(p) for p in model.predict(rows[INPUTS])],
            [f"{tag}-{i}" for i in rows.index],
            received_at=datetime.now(UTC).timestamp(),
            event_times=[t.timestamp() for t in event_times(rows)],
        )
    assert capture.flush(timeout=60)
    capture.close()
    labels = pd.DataFrame(
        {"request_id": [f"aug-{i}" for i in parts["aug"].index], "label": parts["aug"]["bikers"].astype(float)}
    )  # fmt: skip
    window.write_labels(client, BUCKET, capture_layout.labels_prefix("predictions"), name, labels)
    return root, snapshot, tracking_uri, s3_server, name


def monitor(loop, window_end: str, window_hours: int):
    root, snapshot, tracking_uri, s3_server, name = loop
    continuous_training_pipeline(
        source_uri=str(snapshot),
        capture_uri=CAPTURE,
        window_end=window_end,
        window_hours=window_hours,
        retrain_policy=POLICY,
        training_window_start="1",
        training_window_end="244",  # January to August
        search_space=small_search(max_trials=3, parallel_trials=1),
        s3_endpoint=s3_server,
        s3_secure=False,
        model_name=name,
        mlflow_tracking_uri=tracking_uri,
        serving_target="none",
    )
    run_dir = local_run.latest_run(root, CT)
    result = json.loads((run_dir / "detect-drift" / "result" / "result.json").read_text())
    return run_dir, result


def test_the_training_period_does_not_retrain(loop):
    run_dir, result = monitor(loop, "2011-05-01T00:00Z", 24 * 120)
    ran = local_run.ran_tasks(run_dir)
    assert {"find-champion", "read-window", "validate-data", "data-gate", "detect-drift"} <= ran
    assert "retrain-relay" in ran
    assert result["rows"] > 2700 and result["signals"]["decided"]  # Bikeshare lacks some hours
    assert result["signals"]["drift"] is False and result["signals"]["decay"] is False
    assert result["should_retrain"] is False
    # The nested training pipeline really did not run.
    assert not (TRAINING_ONLY & ran), ran & TRAINING_ONLY
    assert not any((run_dir / task).exists() for task in TRAINING_ONLY)
    # The window was validated in the schema's serving environment: no anomaly.
    anomalies = json.loads((run_dir / "validate-data" / "anomalies" / "anomalies.json").read_text())
    assert anomalies["environment"] == "SERVING" and anomalies["anomalies"] == []
    assert {"request_id", "prediction", "event_time"} <= set(anomalies["capture_columns"])


def test_a_drifted_decayed_window_retrains_through_the_nested_training_pipeline(loop):
    _, _, tracking_uri, _, name = loop
    run_dir, result = monitor(loop, "2011-09-01T00:00Z", 24 * 31)
    assert result["signals"]["drift"] and result["signals"]["decay"]
    assert result["realized"]["degraded"] and result["labeled"] == result["rows"] > 700
    assert result["should_retrain"] is True and result["recorded_by_this_run"]
    ran = local_run.ran_tasks(run_dir)
    # The nested training pipeline really ran, on January to August, and registered.
    assert TRAINING_ONLY <= ran, TRAINING_ONLY - ran
    ingested = [
        r for r in local_run.run_artifacts(run_dir) if r.task == "ingest" and r.name == "train"
    ]
    assert ingested and ingested[0].metadata["rows"] > 3500
    versions = {v.version: v for v in Registry(tracking_uri).versions(name)}
    assert "2" in versions and versions["2"].state in ("staging", "rejected")
    log = Registry(tracking_uri).monitoring_log(name)
    assert [r.retrain for r in log] == [False, True]


def test_the_same_window_judged_again_does_not_retrain_twice(loop):
    _, _, tracking_uri, _, name = loop
    run_dir, result = monitor(loop, "2011-09-01T00:00Z", 24 * 31)
    assert result["should_retrain"] is False and not result["recorded_by_this_run"]
    assert "already judged" in result["reason"]
    assert not (TRAINING_ONLY & local_run.ran_tasks(run_dir))
    assert len(Registry(tracking_uri).monitoring_log(name)) == 2
    assert len(Registry(tracking_uri).versions(name)) == 2
