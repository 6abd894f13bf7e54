"""The monitoring window and the labels (components/lib/window.py) against a real S3 endpoint
(moto's server), with partitions written by the serving image's own capture writer."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from components.lib import capture_layout as layout
from components.lib import window

pytestmark = pytest.mark.unit

T0 = datetime(2026, 7, 1, 0, tzinfo=UTC)


def capture(s3_server: str, bucket: str, version: str, rows: list[tuple], **kwargs) -> None:
    """Writes ``rows`` (event time, request id, temp) through components/serving/capture.py."""
    from components.serving.capture import Capture

    cap = Capture(
        uri=f"s3://{bucket}/capture",
        endpoint=s3_server,
        model_name="bikes",
        model_version=version,
        **kwargs,
    )
    cap.record(
        {"temp": [r[2] for r in rows], "hr": [r[0].hour for r in rows]},
        [10.0 * i for i in range(len(rows))],
        [r[1] for r in rows],
        received_at=(T0 + timedelta(days=30)).timestamp(),
        event_times=[r[0].timestamp() for r in rows],
    )
    assert cap.flush(timeout=20)
    cap.close()


@pytest.fixture(scope="module")
def captured(s3_store, s3_server):
    """Bucket ``window-test``: hours 00..03 of T0 (versions 1 and 2), one row the day before."""
    client = s3_store.client()
    client.make_bucket("window-test")
    rows_v1 = [(T0 + timedelta(minutes=20 * i), f"a{i}", 0.2 + i / 100) for i in range(9)]
    capture(s3_server, "window-test", "1", rows_v1)  # 00:00 .. 02:40
    rows_v2 = [(T0 + timedelta(hours=2, minutes=50 + i), f"b{i}", 0.5) for i in range(5)]
    capture(s3_server, "window-test", "2", rows_v2)  # 02:50 .. 02:54, 03:?? none
    capture(s3_server, "window-test", "1", [(T0 - timedelta(hours=1), "old", 0.1)])
    return client


def test_layout_of_a_window_and_its_partitions():
    start, end = T0, T0 + timedelta(hours=3)
    assert layout.window_partitions("p", "bikes", start, end) == [
        "p/model=bikes/hour=2026-07-01T00/",
        "p/model=bikes/hour=2026-07-01T01/",
        "p/model=bikes/hour=2026-07-01T02/",
    ]
    assert layout.window_partitions("", "bikes", start, start + timedelta(hours=1)) == [
        "model=bikes/hour=2026-07-01T00/"
    ]
    assert layout.window_id("bikes", start, end) == "bikes/2026-07-01T00:00Z/2026-07-01T03:00Z"
    assert layout.parse_hour("2026-07-01T05") == T0 + timedelta(hours=5)
    assert layout.parse_hour("2026-07-01T07:00:00+02:00") == T0 + timedelta(hours=5)
    with pytest.raises(ValueError, match="not on a whole hour"):
        layout.parse_hour("2026-07-01T05:30Z")
    with pytest.raises(ValueError, match="not after its start"):
        layout.window_hours(end, start)
    assert layout.labels_prefix("capture/") == "capture/labels"
    assert (
        layout.labels_partition("capture/labels", "bikes", T0)
        == "capture/labels/model=bikes/date=2026-07-01/"
    )


def test_the_capture_writes_what_the_layout_names(captured):
    names = sorted(o.object_name for o in captured.list_objects("window-test", recursive=True))
    assert names and all(
        n.startswith("capture/model=bikes/hour=") and n.endswith(".parquet") for n in names
    )
    hours = {layout.partition_value(n, "hour") for n in names}
    assert hours == {"2026-06-30T23", "2026-07-01T00", "2026-07-01T01", "2026-07-01T02"}


def test_read_window_reads_the_window_in_event_time_order(captured):
    frame = window.read_window(
        captured, "window-test", "capture", "bikes", T0, T0 + timedelta(hours=3)
    )
    assert len(frame) == 14  # not the row of the hour before
    assert list(frame["request_id"][:3]) == ["a0", "a1", "a2"]
    assert frame["event_time"].is_monotonic_increasing
    assert set(layout.RESERVED) <= set(frame.columns) and {"temp", "hr"} <= set(frame.columns)
    assert sorted(frame["model_version"].unique()) == ["1", "2"]

    only_v2 = window.read_window(
        captured,
        "window-test",
        "capture",
        "bikes",
        T0,
        T0 + timedelta(hours=3),
        model_version="2",
    )
    assert list(only_v2["request_id"]) == [f"b{i}" for i in range(5)]

    # Naive bounds are UTC; a window of one hour reads one partition.
    first = window.read_window(
        captured, "window-test", "capture", "bikes", datetime(2026, 7, 1), datetime(2026, 7, 1, 1)
    )
    assert list(first["request_id"]) == ["a0", "a1", "a2"]


def test_a_long_window_lists_the_model_once_and_reads_the_same_rows(captured, monkeypatch):
    short = window.read_window(
        captured, "window-test", "capture", "bikes", T0, T0 + timedelta(hours=3)
    )
    listed = []
    real = window._list
    monkeypatch.setattr(window, "_list", lambda *a: listed.append(a[2]) or real(*a))
    # 30 days before T0 to 3 hours after: 723 hour partitions, one listing.
    long = window.read_window(
        captured,
        "window-test",
        "capture",
        "bikes",
        T0 - timedelta(days=30),
        T0 + timedelta(hours=3),
    )
    assert listed == ["capture/model=bikes/"]
    hour_before = long[long["event_time"] < T0]
    assert list(long[long["event_time"] >= T0]["request_id"]) == list(short["request_id"])
    assert len(hour_before) == 1  # the row of the hour before, inside this longer window


def test_rows_in_a_wrong_partition_are_dropped_by_their_time(captured, s3_store):
    """A file in hour 03 whose rows say 05:00 (written by hand, as any writer might)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {
            "request_id": ["stray"],
            "received_at": pa.array([T0 + timedelta(hours=5)], pa.timestamp("ms", tz="UTC")),
            "event_time": pa.array([None], pa.timestamp("ms", tz="UTC")),
            "model_name": ["bikes"],
            "model_version": ["1"],
            "prediction": [1.0],
        }
    )
    buf = io.BytesIO()
    pq.write_table(table, buf)
    key = "capture/model=bikes/hour=2026-07-01T03/part-stray.parquet"
    captured.put_object("window-test", key, io.BytesIO(buf.getvalue()), len(buf.getvalue()))
    try:
        frame = window.read_window(
            captured, "window-test", "capture", "bikes", T0, T0 + timedelta(hours=4)
        )
        assert "stray" not in set(frame["request_id"]) and len(frame) == 14
    finally:
        captured.remove_object("window-test", key)


def test_an_empty_window_has_the_capture_columns_and_no_rows(captured):
    frame = window.read_window(
        captured, "window-test", "capture", "bikes", T0 + timedelta(days=3), T0 + timedelta(days=4)
    )
    assert len(frame) == 0 and list(frame.columns) == list(layout.RESERVED)
    with pytest.raises(window.WindowError, match="bucket 'nope' does not exist"):
        window.read_window(captured, "nope", "capture", "bikes", T0, T0 + timedelta(hours=1))
    with pytest.raises(window.WindowError, match="not on a whole hour"):
        window.read_window(
            captured, "window-test", "capture", "bikes", T0 + timedelta(minutes=5), T0
        )


def test_labels_round_trip_latest_wins_and_join(captured):
    prefix = layout.labels_prefix("capture")
    first = pd.DataFrame(
        {
            "request_id": ["a0", "a1", "b0", "zzz"],
            "label": [5, 6, 7, 8],
            "labeled_at": pd.to_datetime(["2026-07-02T00:00Z"] * 4),
        }
    )
    key = window.write_labels(captured, "window-test", prefix, "bikes", first)
    assert key.startswith("capture/labels/model=bikes/date=2026-07-02/part-")
    correction = pd.DataFrame({"request_id": ["a1"], "label": [60.5]})  # labeled_at: now
    window.write_labels(captured, "window-test", prefix, "bikes", correction)

    labels = window.read_labels(captured, "window-test", prefix, "bikes")
    assert list(labels.columns) == list(layout.LABEL_COLUMNS)
    assert dict(zip(labels["request_id"], labels["label"], strict=True)) == {
        "a0": 5.0,
        "a1": 60.5,
        "b0": 7.0,
        "zzz": 8.0,
    }
    assert str(labels["label"].dtype) == "float64"
    recent = window.read_labels(
        captured, "window-test", prefix, "bikes", since=datetime.now(UTC) - timedelta(hours=1)
    )
    assert list(recent["request_id"]) == ["a1"]

    frame = window.read_window(
        captured, "window-test", "capture", "bikes", T0, T0 + timedelta(hours=3)
    )
    joined = window.join_labels(frame, labels)
    assert len(joined) == len(frame) and "label" in joined.columns
    assert joined.attrs["labels"] == {"joined": 3, "unjoined": 11, "unmatched": 1}
    assert joined.loc[joined["request_id"] == "a1", "label"].item() == 60.5
    with pytest.raises(window.WindowError, match="already has column"):
        window.join_labels(joined, labels)


@pytest.mark.parametrize(
    "frame, message",
    [
        (pd.DataFrame({"request_id": ["x"]}), "no column 'label'"),
        (pd.DataFrame({"id": ["x"], "label": [1]}), "no column 'request_id'"),
        (pd.DataFrame({"request_id": ["x", None], "label": [1, 2]}), "'request_id' has 1 null"),
        (pd.DataFrame({"request_id": ["x", ""], "label": [1, 2]}), "'request_id' has 1 null"),
        (pd.DataFrame({"request_id": ["x", "y"], "label": [1, None]}), "'label' has 1 null"),
    ],
    ids=["no-label", "no-request-id", "null-id", "empty-id", "null-label"],
)
def test_write_labels_refuses_naming_the_column(captured, frame, message):
    with pytest.raises(window.WindowError, match=message):
        window.write_labels(captured, "window-test", "capture/labels", "bikes", frame)


def test_string_labels_stay_strings(captured):
    frame = pd.DataFrame({"request_id": ["s1", "s2"], "label": ["high", "low"]})
    window.write_labels(captured, "window-test", "other/labels", "classes", frame)
    labels = window.read_labels(captured, "window-test", "other/labels", "classes")
    assert list(labels["label"]) == ["high", "low"]


def test_the_captured_entity_columns_are_the_feature_repositories_entity_keys():
    # What the serving image captures beside a row fetched from the feature store: every
    # repository's entity key, which validate_data then leaves out of the serving statistics.
    from components.lib import featurestore

    keys = {spec.ENTITY for spec in featurestore.REPOS.values()}
    assert set(layout.ENTITY_COLUMNS) == keys
    assert keys <= set(layout.NOT_INPUTS) and not keys & set(layout.RESERVED)
