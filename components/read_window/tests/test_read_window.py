"""read_window: the executor against a real S3 endpoint (moto's server), and the component
through kfp.local.SubprocessRunner. Partitions are written by the serving image's capture."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from components.lib import capture_layout as layout
from components.lib import tables
from components.read_window import executor

T0 = datetime(2026, 7, 1, 0, tzinfo=UTC)
INPUTS = ["season", "mnth", "day", "hr", "holiday", "weekday", "workingday", "weathersit"]
INPUTS += ["temp", "atemp", "hum", "windspeed"]


@pytest.fixture(scope="module")
def capture_uri(s3_store, s3_server, bikeshare_csv) -> str:
    """300 July Bikeshare rows captured by the serving writer over hours 00..05 of T0
    (version 3; the last 20 rows version 4), plus 30 rows of another model."""
    from components.serving.capture import Capture

    client = s3_store.client()
    client.make_bucket("read-window")
    data = pd.read_csv(bikeshare_csv)
    july = data[data["mnth"] == "July"].head(300).reset_index(drop=True)
    for version, part, model in (
        ("3", july.iloc[:280], "bikeshare"),
        ("4", july.iloc[280:], "bikeshare"),
        ("1", july.iloc[:30], "other"),
    ):
        cap = Capture(
            uri="s3://read-window/predictions",
            endpoint=s3_server,
            model_name=model,
            model_version=version,
        )
        cap.record(
            {c: part[c].tolist() for c in INPUTS},
            part["bikers"].astype(float).tolist(),
            [f"{model}-{i}" for i in part.index],
            received_at=(T0 + timedelta(days=9)).timestamp(),
            event_times=[(T0 + timedelta(minutes=72 * i / 60)).timestamp() for i in part.index],
        )
        assert cap.flush(timeout=20)
        cap.close()
    return "s3://read-window/predictions"


def _run(uri, s3_server, tmp_path, **kwargs):
    args = dict(
        model_name="bikeshare",
        capture_uri=uri,
        window_end="2026-07-01T06:00Z",
        window_hours=6,
        model_version="",
        s3_endpoint=s3_server,
        s3_secure=False,
        min_rows=200,
        window_path=str(tmp_path / "window"),
    )
    args.update(kwargs)
    return executor.run(**args)


@pytest.mark.unit
def test_a_window_is_read_written_as_parquet_and_summarized(capture_uri, s3_server, tmp_path):
    result = _run(capture_uri, s3_server, tmp_path)
    assert result["rows"] == 300 and result["enough_rows"] is True
    assert result["window_id"] == "bikeshare/2026-07-01T00:00Z/2026-07-01T06:00Z"
    assert result["versions"] == {"3": 280, "4": 20}
    assert sum(result["rows_per_hour"].values()) == 300 and len(result["rows_per_hour"]) == 6
    table = tables.read_table(str(tmp_path / "window"), what="window", large_types=False)
    assert table.num_rows == 300
    assert set(INPUTS) | set(layout.RESERVED) == set(table.column_names)
    frame = table.to_pandas()
    assert frame["event_time"].is_monotonic_increasing
    text = executor.markdown(result)
    assert "# Captured window `bikeshare/2026-07-01T00:00Z/2026-07-01T06:00Z`" in text
    assert "| `4` | 20 |" in text and "enough to judge" in text


@pytest.mark.unit
def test_a_version_and_too_few_rows_are_said_not_failed(capture_uri, s3_server, tmp_path):
    result = _run(capture_uri, s3_server, tmp_path, model_version="4")
    assert result["rows"] == 20 and result["enough_rows"] is False
    assert "Too few rows to decide: 20 < min_rows 200" in executor.markdown(result)


@pytest.mark.unit
def test_an_empty_window_writes_a_dataset_with_the_capture_columns(
    capture_uri, s3_server, tmp_path
):
    result = _run(capture_uri, s3_server, tmp_path, window_end="2026-08-01T00", window_hours=24)
    assert result["rows"] == 0 and result["enough_rows"] is False
    table = tables.read_table(
        str(tmp_path / "window"), what="window", require_rows=False, large_types=False
    )
    assert table.num_rows == 0 and table.column_names == list(layout.RESERVED)
    text = executor.markdown(result)
    assert "No rows in this window" in text and "0 of 24 hours have rows" in text


@pytest.mark.unit
def test_the_window_end_defaults_to_the_current_hour():
    now = datetime(2026, 7, 1, 5, 42, tzinfo=UTC)
    assert executor.bounds("", 24, now) == (T0 + timedelta(hours=5 - 24), T0 + timedelta(hours=5))


@pytest.mark.unit
@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"window_end": "2026-07-01T06:30Z"}, "window_end: .* not on a whole hour"),
        ({"window_end": "yesterday"}, "window_end: 'yesterday' is not an ISO 8601 time"),
        ({"window_hours": 0}, "window_hours must be a whole number >= 1"),
        ({"capture_uri": "/local/folder"}, "capture_uri '/local/folder': s3://bucket/prefix"),
        ({"model_name": "a/b"}, "model_name 'a/b'"),
        ({"capture_uri": "s3://no-such-bucket/p"}, "bucket 'no-such-bucket' does not exist"),
    ],
    ids=["not-whole-hour", "not-a-time", "no-hours", "not-s3", "bad-model", "no-bucket"],
)
def test_bad_arguments_are_named(capture_uri, s3_server, tmp_path, kwargs, message):
    with pytest.raises(executor.ReadWindowError, match=message):
        _run(capture_uri, s3_server, tmp_path, **kwargs)


@pytest.mark.local
def test_the_component_runs_in_kfp_local(capture_uri, s3_server, tmp_path):
    from kfp import dsl

    from components.read_window.component import read_window
    from pipelines import local as local_run

    local_run.init_subprocess(tmp_path / "root")

    task = read_window(
        model_name="bikeshare",
        capture_uri=capture_uri,
        window_end="2026-07-01T06:00Z",
        window_hours=6,
        s3_endpoint=s3_server,
        min_rows=400,
    )
    assert task.outputs["rows"] == 300 and task.outputs["enough_rows"] is False
    assert task.outputs["window_id"] == "bikeshare/2026-07-01T00:00Z/2026-07-01T06:00Z"
    window = task.outputs["window"]
    assert isinstance(window, dsl.Dataset) and window.metadata["rows"] == 300
    summary = Path(task.outputs["summary"].path).read_text()
    assert "Too few rows to decide: 300 < min_rows 400" in summary
    json.dumps(window.metadata)  # JSON-serializable metadata
