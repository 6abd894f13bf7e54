"""validate_data on served traffic (data_name="serving", TFDV's SERVING environment), TFDV env.

The windows are real Bikeshare rows shaped as read_window writes them: the model's 12 input
columns plus the capture's own columns (components/lib/capture_layout.py), in another order.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from components.lib import capture_layout
from components.validate_data import executor
from tests import corpus

pytestmark = pytest.mark.tfdv

LABELS = ["casual", "registered", "bikers"]
# What the serving image captures: the model's 11 input columns (no `day`, the snapshot's
# time column: a request's time is its event_time).
INPUTS = ["season", "mnth", "hr", "holiday", "weekday", "workingday", "weathersit"]
INPUTS += ["temp", "atemp", "hum", "windspeed"]


def _outputs(tmp_path: Path) -> dict[str, str]:
    return {
        "statistics_out": str(tmp_path / "statistics"),
        "anomalies_out": str(tmp_path / "anomalies"),
        "report_out": str(tmp_path / "report.html"),
        "summary_out": str(tmp_path / "summary.md"),
        "anomalies_found_out": str(tmp_path / "anomalies_found"),
    }


def _rows(month: str) -> pd.DataFrame:
    data = pd.read_csv(corpus.BIKESHARE)
    return data[data["mnth"] == month].reset_index(drop=True)


def _window(rows: pd.DataFrame, path: Path, **change) -> str:
    """``rows``' inputs as a captured window (Parquet): capture columns first, inputs reversed."""
    n = len(rows)
    start = pd.Timestamp("2026-07-01", tz="UTC")
    times = [start + pd.Timedelta(minutes=5 * i) for i in range(n)]
    frame = pd.DataFrame(
        {
            "request_id": [f"r{i}" for i in range(n)],
            "received_at": times,
            "event_time": times,
            "model_name": "bikeshare",
            "model_version": "3",
            "prediction": rows["bikers"].astype(float) * 0.9,
        }
    )
    for column in reversed(INPUTS):
        frame[column] = rows[column].values
    for column, values in change.items():
        if values is None:
            frame = frame.drop(columns=[column])
        else:
            frame[column] = values
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
    return str(path)


@pytest.fixture(scope="module")
def january_statistics(tmp_path_factory) -> str:
    """A champion's training statistics: January's rows (winter), as validate_data writes them."""
    out = tmp_path_factory.mktemp("champion")
    _rows("Jan").to_csv(out / "train.csv", index=False)
    result = executor.validate({"train": str(out / "train.csv")}, "bikeshare")
    executor.write_outputs(result, **_outputs(out))
    return str(out / "statistics")


def test_the_entity_of_feature_store_lookups_is_a_capture_column_not_a_new_feature(tmp_path):
    # The serving image captures `city` beside the rows it fetched from the feature store
    # (null for full requests): not a model input, so not the schema's business.
    rows = _rows("Jan")
    city = ["washington_dc" if i % 3 == 0 else None for i in range(len(rows))]
    window = _window(rows, tmp_path / "window.parquet", city=city)
    result = executor.validate({"serving": window}, "bikeshare")
    assert [f for f in result.findings if f.level == "block"] == []
    assert not result.anomalies_found
    assert result.capture_columns == [*capture_layout.RESERVED, "city"]


def test_a_clean_july_window_passes_with_its_large_drift_reported_not_blocking(
    january_statistics, tmp_path
):
    window = _window(_rows("July"), tmp_path / "window.parquet")
    result = executor.validate(
        {"serving": window}, "bikeshare", baseline_statistics=january_statistics
    )
    assert result.environment == "SERVING"
    assert [f for f in result.findings if f.level == "block"] == []
    assert not result.anomalies_found
    # July against January: temperature's drift is far above the policy's block level ...
    temp = {(m.check, m.verdict) for m in result.measurements if m.feature == "temp"}
    assert ("drift", "block_reported") in temp
    # ... and skew is measured against the champion's statistics (no training_statistics given).
    assert ("skew", "block_reported") in temp
    reported = {(f.column, f.reason.split(":")[0]) for f in result.reported}
    assert {("temp", "drift"), ("temp", "skew")} <= reported
    assert all(
        "serving data: reported only" in f.reason
        for f in result.reported
        if "block " in f.reason and f.column == "temp"
    )
    assert result.capture_columns == list(capture_layout.RESERVED)
    assert result.excluded_columns == []

    executor.write_outputs(result, **_outputs(tmp_path))
    assert Path(tmp_path / "anomalies_found").read_text() == "false"
    summary = json.loads((tmp_path / "anomalies" / "anomalies.json").read_text())
    assert summary["environment"] == "SERVING" and summary["anomalies"] == []
    assert summary["capture_columns"] == list(capture_layout.RESERVED)
    markdown = Path(tmp_path / "summary.md").read_text()
    assert "capture columns, not validated: `request_id`" in markdown
    assert "above block: reported only (serving data)" in markdown
    assert "**Passes the gate: no blocking findings.**" in markdown
    # Only the inputs were measured: the statistics hold no capture column.
    import tensorflow_data_validation as tfdv

    stats = tfdv.load_stats_binary(str(tmp_path / "statistics" / executor.STATS_FILE))
    names = {f.path.step[0] for f in stats.datasets[0].features}
    assert names == set(INPUTS)


def test_the_same_july_rows_as_a_training_batch_block_on_that_drift(january_statistics, tmp_path):
    rows = _rows("July")
    rows.to_csv(tmp_path / "july.csv", index=False)
    result = executor.validate(
        {"train": str(tmp_path / "july.csv")}, "bikeshare", baseline_statistics=january_statistics
    )
    assert result.environment == "TRAINING"
    assert ("temp", "block") in {(f.column, f.level) for f in result.findings}


@pytest.mark.parametrize(
    "change, column, kind",
    [
        ({"hum": None}, "hum", "SCHEMA_MISSING_COLUMN"),
        ({"temp": "warm"}, "temp", "UNEXPECTED_DATA_TYPE"),
    ],
    ids=["missing-input", "bad-type"],
)
def test_a_window_missing_an_input_or_with_a_bad_type_blocks_naming_the_column(
    change, column, kind, tmp_path
):
    window = _window(_rows("July"), tmp_path / "window.parquet", **change)
    result = executor.validate({"serving": window}, "bikeshare")
    blocking = {(f.column, f.kind) for f in result.blocking}
    assert (column, kind) in blocking, blocking
    assert result.anomalies_found
    executor.write_outputs(result, **_outputs(tmp_path))
    assert Path(tmp_path / "anomalies_found").read_text() == "true"
    assert f"`{column}`" in Path(tmp_path / "summary.md").read_text()


def test_absent_labels_are_no_anomaly_in_serving_but_required_in_training(tmp_path):
    rows = _rows("July")
    rows.drop(columns=LABELS).to_csv(tmp_path / "inputs.csv", index=False)
    served = executor.validate({"serving": str(tmp_path / "inputs.csv")}, "bikeshare")
    assert served.blocking == [] and served.capture_columns == []
    trained = executor.validate({"train": str(tmp_path / "inputs.csv")}, "bikeshare")
    missing = {f.column for f in trained.blocking if f.kind == "SCHEMA_MISSING_COLUMN"}
    assert missing == set(LABELS)


def test_labels_sent_along_with_served_traffic_are_dropped_and_listed(tmp_path):
    rows = _rows("July")
    window = _window(rows, tmp_path / "window.parquet", bikers=rows["bikers"].values)
    result = executor.validate({"serving": window}, "bikeshare")
    assert result.blocking == [] and result.excluded_columns == ["bikers"]
