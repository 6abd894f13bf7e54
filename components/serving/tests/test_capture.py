"""components/serving/capture.py against a real S3 endpoint (moto's server on loopback).

Each test reads back what is in the bucket and checks it row by row: which request ids,
how many times, in which hour partition, with which values.
"""

from __future__ import annotations

import hashlib
import io
import logging
import socket
import threading
import time
import uuid
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from components.serving.capture import Capture
from pipelines import local_s3
from pipelines.local_s3 import free_port

pytestmark = pytest.mark.unit

PREFIX = "capture"
EVENT_2011 = datetime(2011, 3, 13, 7, 25, tzinfo=UTC).timestamp()


@pytest.fixture
def bucket(s3_client) -> str:
    name = f"capture-{uuid.uuid4().hex[:12]}"
    s3_client.make_bucket(name)
    return name


def make_capture(endpoint: str, bucket: str, **kwargs) -> Capture:
    kwargs.setdefault("flush_seconds", 0.1)
    kwargs.setdefault("retry_seconds", 0.05)
    kwargs.setdefault("io_timeout", 2.0)
    return Capture(
        uri=f"s3://{bucket}/{PREFIX}",
        endpoint=endpoint,
        model_name="bikes",
        model_version="7",
        **kwargs,
    )


def objects(client, bucket: str) -> dict[str, bytes]:
    out = {}
    for obj in client.list_objects(bucket, prefix=f"{PREFIX}/", recursive=True):
        response = client.get_object(bucket, obj.object_name)
        try:
            out[obj.object_name] = response.read()
        finally:
            response.close()
            response.release_conn()
    return out


def rows_by_object(client, bucket: str) -> list[tuple[str, dict]]:
    """(object name, row) for every row of every captured object."""
    return [
        (name, row)
        for name, data in objects(client, bucket).items()
        for row in pq.read_table(io.BytesIO(data)).to_pylist()
    ]


def hour_of(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H")


def wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


# --- what arrives -------------------------------------------------------------------------


def test_every_row_arrives_once_in_its_hour_partition(s3_store, s3_client, bucket, tmp_path):
    # flush_seconds long: the one explicit flush decides the files (the thread still runs)
    capture = make_capture(s3_store.endpoint, bucket, flush_seconds=60)
    capture.start()
    try:
        received = time.time()
        for i in range(3):  # single rows, as one request each
            capture.record(
                {"temp": [20.5 + i], "hour": [i], "season": ["spring"]},
                [100.0 + i],
                [f"s{i}"],
                received,
            )
        # one batch: numpy columns, a 2011 event time on odd rows, no `season` column
        ids = [f"b{i}" for i in range(6)]
        capture.record(
            {"temp": np.linspace(0, 1, 6), "hour": np.arange(6)},
            np.arange(6, dtype=float),
            ids,
            received,
            event_times=[EVENT_2011 + i if i % 2 else None for i in range(6)],
        )
        assert capture.flush(timeout=10)
    finally:
        capture.close()

    rows = rows_by_object(s3_client, bucket)
    got = [row["request_id"] for _, row in rows]
    assert sorted(got) == sorted(["s0", "s1", "s2", *ids])  # each exactly once
    for name, row in rows:
        when = row["event_time"] or row["received_at"]
        assert name.startswith(f"{PREFIX}/model=bikes/hour={hour_of(when)}/part-"), name
        assert name.endswith(".parquet")
        assert (row["model_name"], row["model_version"]) == ("bikes", "7")
    by_id = {row["request_id"]: row for _, row in rows}
    assert {hour_of(by_id[f"b{i}"]["event_time"]) for i in (1, 3, 5)} == {"2011-03-13T07"}
    assert by_id["b1"]["event_time"].timestamp() == pytest.approx(EVENT_2011 + 1)
    assert by_id["b0"]["event_time"] is None
    assert by_id["b0"]["received_at"].timestamp() == pytest.approx(received, abs=1e-3)
    receive_hour = hour_of(datetime.fromtimestamp(received, UTC))
    assert {n for n, r in rows if r["event_time"] is None} == {
        n for n in dict(rows) if f"hour={receive_hour}/" in n
    }
    assert by_id["s2"] | {"received_at": None} == {
        "request_id": "s2",
        "received_at": None,
        "event_time": None,
        "model_name": "bikes",
        "model_version": "7",
        "prediction": 102.0,
        "temp": 22.5,
        "hour": 2,
        "season": "spring",
    }
    assert by_id["b4"]["season"] is None  # the batch had no such column
    assert by_id["b4"]["hour"] == 4 and by_id["b4"]["prediction"] == 4.0
    assert capture.stats == {
        "rows_recorded": 9,
        "rows_written": 9,
        "rows_pending": 0,
        "rows_dropped": 0,
        "write_failures": 0,
        "files_written": 2,  # one flush, two hours
        "records_rejected": 0,
        "event_times_invalid": 0,
    }


def test_the_files_read_as_one_hive_partitioned_dataset(s3_store, s3_client, bucket, tmp_path):
    capture = make_capture(s3_store.endpoint, bucket)
    now = time.time()
    capture.record({"x": [1.0, 2.0]}, [0.1, 0.2], ["a", "b"], now, [EVENT_2011, None])
    assert capture.flush(timeout=10)  # no thread started: flush writes from here
    capture.record({"x": [3.0]}, [0.3], ["c"], now)
    assert capture.flush(timeout=10)
    for name, data in objects(s3_client, bucket).items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    table = ds.dataset(tmp_path / PREFIX, format="parquet", partitioning="hive").to_table()
    schema = table.schema
    assert schema.field("request_id").type == pa.string()
    assert schema.field("received_at").type == pa.timestamp("ms", tz="UTC")
    assert schema.field("event_time").type == pa.timestamp("ms", tz="UTC")
    assert schema.field("prediction").type == pa.float64()
    assert schema.field("x").type == pa.float64()
    rows = {r["request_id"]: r for r in table.to_pylist()}
    assert set(rows) == {"a", "b", "c"}
    assert {k: (r["model"], r["hour"]) for k, r in rows.items()} == {
        "a": ("bikes", "2011-03-13T07"),
        "b": ("bikes", hour_of(datetime.fromtimestamp(now, UTC))),
        "c": ("bikes", hour_of(datetime.fromtimestamp(now, UTC))),
    }
    assert capture.stats["files_written"] == 3


def test_string_predictions_for_classifiers(s3_store, s3_client, bucket):
    capture = make_capture(s3_store.endpoint, bucket, prediction_type="string")
    capture.record({"x": [1, 2]}, ["rain", "sun"], ["a", "b"], time.time())
    assert capture.flush(timeout=10)
    [(_, data)] = objects(s3_client, bucket).items()
    table = pq.read_table(io.BytesIO(data))
    assert table.schema.field("prediction").type == pa.string()
    assert table.column("prediction").to_pylist() == ["rain", "sun"]


# --- governance ---------------------------------------------------------------------------


def test_dropped_columns_are_absent_and_hashed_ones_are_salted_sha256(s3_store, s3_client, bucket):
    salt = "pepper-17"
    capture = make_capture(
        s3_store.endpoint,
        bucket,
        drop_columns=["email"],
        hash_columns=["user_id", "station"],
        hash_salt=salt,
    )
    emails = [f"rider{i}-7f3c9a@example.org" for i in range(3)]
    capture.record(
        {"email": emails, "user_id": ["u-1", "u-2", None], "station": [17, 18, 19], "x": [1, 2, 3]},
        [1.0, 2.0, 3.0],
        ["a", "b", "c"],
        time.time(),
    )
    assert capture.flush(timeout=10)
    stored = objects(s3_client, bucket)
    [data] = stored.values()
    table = pq.read_table(io.BytesIO(data))
    assert "email" not in table.column_names
    assert not [e for e in emails if e.encode() in data]
    rows = {r["request_id"]: r for r in table.to_pylist()}

    def sha(value: str) -> str:
        return hashlib.sha256((salt + value).encode()).hexdigest()

    assert [rows[k]["user_id"] for k in "abc"] == [sha("u-1"), sha("u-2"), None]
    assert [rows[k]["station"] for k in "abc"] == [sha("17"), sha("18"), sha("19")]
    assert table.schema.field("station").type == pa.string()
    assert b"u-1" not in data
    assert [rows[k]["x"] for k in "abc"] == [1, 2, 3]


def test_a_column_cannot_be_both_dropped_and_hashed():
    with pytest.raises(ValueError, match="both dropped and hashed"):
        Capture(
            uri="/tmp/x", model_name="m", model_version="1", drop_columns=["a"], hash_columns=["a"]
        )


# --- failures -----------------------------------------------------------------------------


class RestartableS3:
    """moto's server on a fixed port that can be stopped and started again. The servers of
    one process share moto's in-memory backend, so buckets survive a restart."""

    def __init__(self, credentials: dict[str, str]) -> None:
        self.credentials = credentials
        self.port = free_port()
        self.endpoint = f"127.0.0.1:{self.port}"
        self.store = None

    def start(self) -> None:
        self.store = local_s3.start(self.credentials, port=self.port)

    def stop(self) -> None:
        self.store.stop()
        self.store = None


def test_an_unreachable_endpoint_delays_rows_but_loses_or_repeats_none(
    s3_store, s3_client, bucket, caplog
):
    caplog.set_level(logging.INFO, logger="loopline.serving.capture")
    store = RestartableS3(s3_store.credentials)
    store.start()
    capture = make_capture(store.endpoint, bucket)
    capture.start()
    try:
        capture.record({"x": [0.0]}, [0.0], ["before"], time.time())
        assert capture.flush(timeout=10)
        store.stop()

        ids = [f"down-{i}" for i in range(40)]
        slowest = 0.0
        for i in range(0, 40, 4):
            started = time.perf_counter()
            capture.record(
                {"x": [float(j) for j in range(i, i + 4)]}, [1.0] * 4, ids[i : i + 4], time.time()
            )
            slowest = max(slowest, time.perf_counter() - started)
            time.sleep(0.02)
        wait_for(lambda: capture.stats["write_failures"] >= 3)
        assert slowest < 0.05, f"record() took {slowest:.3f} s while the endpoint was down"
        assert not capture.flush(timeout=0.3)
        stats = capture.stats
        assert stats["rows_pending"] == 40 and stats["rows_written"] == 1
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1, [r.getMessage() for r in warnings]  # once per streak
        message = warnings[0].getMessage()
        assert f"{PREFIX}/model=bikes/hour=" in message and ".parquet" in message
        assert "MaxRetryError" in message or "Connection refused" in message, message

        store.start()
        assert capture.flush(timeout=10)
    finally:
        capture.close()
        if store.store is not None:
            store.stop()

    rows = rows_by_object(s3_client, bucket)
    got = [row["request_id"] for _, row in rows]
    assert sorted(got) == sorted(["before", *ids]) and len(got) == len(set(got))
    assert sorted(row["x"] for _, row in rows) == [0.0, *map(float, range(40))]
    stats = capture.stats
    assert stats["rows_written"] == 41 and stats["rows_pending"] == 0
    assert stats["write_failures"] >= 3 and stats["rows_dropped"] == 0
    assert any("again" in r.getMessage() and r.levelno == logging.INFO for r in caplog.records)


def test_record_never_waits_for_a_hanging_endpoint(s3_store):
    # An endpoint that accepts connections and never answers: every put hangs until the
    # client's timeout, on the writer thread only.
    silent = socket.create_server(("127.0.0.1", 0), backlog=16)
    capture = Capture(
        uri="s3://nowhere/capture",
        endpoint=f"127.0.0.1:{silent.getsockname()[1]}",
        model_name="bikes",
        model_version="7",
        batch_rows=1,
        flush_seconds=0.05,
        retry_seconds=0.05,
        io_timeout=1.0,
    )
    capture.start()
    try:
        capture.record({"x": [1.0]}, [1.0], ["first"], time.time())
        time.sleep(0.2)  # the writer is inside a put now
        durations = []
        for i in range(200):
            started = time.perf_counter()
            capture.record({"x": [1.0]}, [1.0], [f"r{i}"], time.time())
            durations.append(time.perf_counter() - started)
        assert max(durations) < 0.05, max(durations)
        assert capture.stats["rows_pending"] == 201
        wait_for(lambda: capture.stats["write_failures"] >= 1, timeout=5)
    finally:
        capture.close(timeout=0.1)
        silent.close()
    assert capture.stats["rows_dropped"] == 201  # unwritten at close: counted


def test_rows_beyond_the_buffer_cap_are_dropped_and_counted(s3_store, s3_client, bucket):
    capture = make_capture(s3_store.endpoint, bucket, max_pending_rows=10)
    now = time.time()
    capture.record({"x": [1.0] * 4}, [1.0] * 4, ["a0", "a1", "a2", "a3"], now)
    capture.record({"x": [1.0] * 4}, [1.0] * 4, ["b0", "b1", "b2", "b3"], now)
    capture.record({"x": [1.0] * 4}, [1.0] * 4, ["c0", "c1", "c2", "c3"], now)  # 12 > 10
    capture.record({"x": [1.0] * 2}, [1.0] * 2, ["d0", "d1"], now)  # exactly 10
    assert capture.stats | {"rows_pending": capture.stats["rows_pending"]} == {
        "rows_recorded": 14,
        "rows_written": 0,
        "rows_pending": 10,
        "rows_dropped": 4,
        "write_failures": 0,
        "files_written": 0,
        "records_rejected": 0,
        "event_times_invalid": 0,
    }
    assert capture.flush(timeout=10)
    got = sorted(row["request_id"] for _, row in rows_by_object(s3_client, bucket))
    assert got == ["a0", "a1", "a2", "a3", "b0", "b1", "b2", "b3", "d0", "d1"]
    # room again once written
    capture.record({"x": [1.0] * 4}, [1.0] * 4, ["e0", "e1", "e2", "e3"], now)
    assert capture.stats["rows_pending"] == 4 and capture.stats["rows_dropped"] == 4


ODD_INPUTS = {
    "more-predictions-than-ids": (({"x": [1.0]}, [1.0, 2.0], ["a"], 1.0e9), 2),
    "short-column": (({"x": [1.0]}, [1.0, 2.0], ["a", "b"], 1.0e9), 2),
    "columns-not-a-mapping": ((None, [1.0], ["a"], 1.0e9), 1),
    "a-string-as-a-column": (({"x": "abc"}, [1.0, 2.0, 3.0], ["a", "b", "c"], 1.0e9), 3),
    "predictions-none": (({"x": [1.0]}, None, ["a"], 1.0e9), 1),
    "received-at-not-a-time": (({"x": [1.0]}, [1.0], ["a"], "yesterday"), 1),
    "received-at-nan": (({"x": [1.0]}, [1.0], ["a"], float("nan")), 1),
    "event-times-short": (({"x": [1.0, 2.0]}, [1.0, 2.0], ["a", "b"], 1.0e9, [None]), 2),
    "ids-an-int": (({"x": [1.0]}, [1.0], 5, 1.0e9), 1),
}


@pytest.mark.parametrize("args,rows", ODD_INPUTS.values(), ids=ODD_INPUTS.keys())
def test_record_never_raises_on_malformed_input(tmp_path, caplog, args, rows):
    capture = Capture(uri=str(tmp_path), model_name="m", model_version="1", flush_seconds=0.05)
    assert capture.record(*args) is None
    assert capture.stats["records_rejected"] == 1
    assert capture.stats["rows_dropped"] == rows and capture.stats["rows_pending"] == 0
    [warning] = [r for r in caplog.records if r.name == "loopline.serving.capture"]
    assert "malformed record dropped" in warning.getMessage()
    # and the capture goes on
    capture.record({"x": [1.0]}, [1.0], ["ok"], 1.0e9)
    assert capture.flush(timeout=5)
    [path] = list(tmp_path.rglob("*.parquet"))
    assert pq.read_table(path).column("request_id").to_pylist() == ["ok"]


def test_malformed_event_times_become_null_and_the_receive_hour(tmp_path):
    capture = Capture(uri=str(tmp_path), model_name="m", model_version="1")
    received = datetime(2024, 5, 1, 12, 30, tzinfo=UTC).timestamp()
    capture.record(
        {"x": [1.0, 2.0, 3.0, 4.0]},
        [1.0, 2.0, 3.0, 4.0],
        ["ms-not-s", "text", "iso", "nan"],
        received,
        [EVENT_2011 * 1000, "soon", "2011-03-13T07:25:00+00:00", float("nan")],
    )
    assert capture.flush(timeout=5)
    table = ds.dataset(tmp_path, format="parquet", partitioning="hive").to_table()
    hours = {r["request_id"]: r["hour"] for r in table.to_pylist()}
    assert hours == {
        "ms-not-s": "2024-05-01T12",
        "text": "2024-05-01T12",
        "iso": "2011-03-13T07",
        "nan": "2024-05-01T12",
    }
    assert capture.stats["event_times_invalid"] == 2


def test_an_unencodable_batch_is_dropped_without_blocking_the_rest(tmp_path):
    capture = Capture(uri=str(tmp_path), model_name="m", model_version="1")
    capture.record({"x": [1.0]}, ["not a number"], ["bad"], 1.0e9)  # prediction_type float
    capture.record({"x": [2.0]}, [2.0], ["good"], 1.0e9)
    assert capture.flush(timeout=5)
    [path] = list(tmp_path.rglob("*.parquet"))
    assert pq.read_table(path).column("request_id").to_pylist() == ["good"]
    assert capture.stats["rows_dropped"] == 1 and capture.stats["rows_written"] == 1


def test_concurrent_record_calls_lose_nothing(tmp_path):
    capture = Capture(
        uri=str(tmp_path), model_name="m", model_version="1", batch_rows=50, flush_seconds=0.05
    )
    capture.start()

    def worker(k: int) -> None:
        for i in range(200):
            capture.record({"x": [float(i)]}, [1.0], [f"{k}-{i}"], time.time())

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    capture.close(timeout=10)
    table = ds.dataset(tmp_path, format="parquet", partitioning="hive").to_table()
    ids = table.column("request_id").to_pylist()
    assert len(ids) == 1600 and len(set(ids)) == 1600
    assert capture.stats["rows_written"] == 1600 and capture.stats["files_written"] > 1


# --- metrics -------------------------------------------------------------------------------


def test_metrics_count_recorded_written_dropped_and_failed(tmp_path):
    import prometheus_client as prom

    labels = {"model": "metered", "version": "1"}

    def value(name: str) -> float:
        return prom.REGISTRY.get_sample_value(name, labels) or 0.0

    before = {
        n: value(n)
        for n in (
            "loopline_capture_rows_total",
            "loopline_capture_rows_written_total",
            "loopline_capture_rows_dropped_total",
            "loopline_capture_write_failures_total",
        )
    }
    blocker = tmp_path / "file"
    blocker.write_text("a file where the capture folder should be")
    capture = Capture(uri=str(blocker), model_name="metered", model_version="1", max_pending_rows=3)
    capture.record({"x": [1.0, 2.0]}, [1.0, 2.0], ["a", "b"], 1.0e9)
    capture.record({"x": [1.0, 2.0]}, [1.0, 2.0], ["c", "d"], 1.0e9)  # over the cap
    assert value("loopline_capture_rows_pending") == 2
    assert not capture.flush(timeout=0.2)  # cannot create a folder under a file
    blocker.unlink()
    assert capture.flush(timeout=5)
    delta = {n: value(n) - v for n, v in before.items()}
    assert delta["loopline_capture_rows_total"] == 4
    assert delta["loopline_capture_rows_written_total"] == 2
    assert delta["loopline_capture_rows_dropped_total"] == 2
    assert delta["loopline_capture_write_failures_total"] >= 1
    assert value("loopline_capture_rows_pending") == 0
