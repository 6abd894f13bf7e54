"""The model server fetching a request's features from the online store: a real Feast feature
server (``feast serve`` from .venv-features) on a SQLite online store materialized from the
Bikeshare year, and a real model server process (.venv-serving) with
``--feature_server_url``.

The online store holds the latest observation, 2011-12-31 23:00 UTC; with the weather view's
TTL of 3 h, lookups are answerable for request times from 23:00 to 02:00 the next day.
"""

from __future__ import annotations

import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests

from tests import feature_server, serving

pytestmark = [pytest.mark.serving, pytest.mark.feature_server]

MODEL = "bikeshare"
COLUMNS = ["temp", "atemp", "hum", "windspeed", "hr", "mnth", "weekday", "season", "weathersit", "holiday", "workingday"]  # fmt: skip
DATATYPES = {"mnth": "BYTES", "weathersit": "BYTES", "temp": "FP64", "atemp": "FP64", "hum": "FP64", "windspeed": "FP64"}  # fmt: skip
CITY = "washington_dc"
LAST = "2011-12-31T23:00:00Z"  # the last observation, what the online store holds


@pytest.fixture(scope="module")
def store(tmp_path_factory, bikeshare_csv):
    return feature_server.materialize(bikeshare_csv, tmp_path_factory.mktemp("feature-store"))


@pytest.fixture(scope="module")
def feast(store, tmp_path_factory):
    proc = feature_server.FeatureServer(store, tmp_path_factory.mktemp("feast") / "feast.log")
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def version(tmp_path_factory, bikeshare_csv):
    directory, manifest, _ = serving.make_version(
        tmp_path_factory.mktemp("lookup-version"), bikeshare_csv
    )
    return directory, manifest


def _server(version, tmp: Path, url: str, *extra: str) -> serving.Server:
    directory, manifest = version
    proc = serving.Server(
        ["--model_name", MODEL, "--model_dir", directory, "--manifest_sha256", manifest,
         "--model_version", "7", "--feature_server_url", url, *extra],
        tmp / "server.log",
    )  # fmt: skip
    proc.wait_live()
    return proc


@pytest.fixture(scope="module")
def server(version, feast, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lookup-server")
    proc = _server(
        version, tmp, feast.url,
        "--capture_uri", str(tmp / "capture"), "--capture_flush_seconds", "0.2",
    )  # fmt: skip
    proc.capture_dir = tmp / "capture"
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def flat_last(bikeshare_csv) -> dict:
    """The CSV's last hour (2011-12-31 23:00), the model's inputs as the flat file has them."""
    row = pd.read_csv(bikeshare_csv).iloc[-1]
    return {c: row[c].item() if hasattr(row[c], "item") else row[c] for c in COLUMNS}


def full_body(row: dict, request_id: str) -> dict:
    inputs = [
        {"name": c, "shape": [1], "datatype": DATATYPES.get(c, "INT64"), "data": [row[c]]}
        for c in COLUMNS
    ]
    return {"id": request_id, "inputs": inputs}


def lookup_body(times: list[str], request_id: str, cities: list[str] | None = None) -> dict:
    n = len(times)
    return {
        "id": request_id,
        "inputs": [
            {"name": "city", "shape": [n], "datatype": "BYTES", "data": cities or [CITY] * n},
            {"name": "event_time", "shape": [n], "datatype": "BYTES", "data": times},
        ],
    }


def infer(server, body: dict) -> requests.Response:
    return requests.post(f"{server.url}/v2/models/{MODEL}/infer", json=body, timeout=30)


def prediction(answer: requests.Response) -> list[float]:
    assert answer.status_code == 200, answer.text
    return answer.json()["outputs"][0]["data"]


def captured(server, timeout: float = 15.0, want: set[str] | None = None) -> pd.DataFrame:
    deadline = time.monotonic() + timeout
    frame = pd.DataFrame()
    while time.monotonic() < deadline:
        files = sorted(Path(server.capture_dir).rglob("*.parquet"))
        if files:
            frame = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
            if want is None or want <= set(frame["request_id"]):
                return frame
        time.sleep(0.2)
    return frame


def metric(server, name: str, **labels) -> float:
    text = requests.get(f"{server.url}/metrics", timeout=5).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_entity_and_time_only_get_the_full_requests_prediction(server, flat_last):
    full = prediction(infer(server, full_body(flat_last, "full-1")))
    # 23:00 and 23:59:59 see the 23:00 observation and the same calendar (hour 23, Saturday).
    fetched = prediction(infer(server, lookup_body([LAST, "2011-12-31T23:59:59Z"], "lookup-1")))
    assert fetched == full * 2  # bit-identical (JSON floats round-trip exactly)
    # V1, the time in the body, the same answer.
    v1 = requests.post(
        f"{server.url}/v1/models/{MODEL}:predict",
        json={"instances": [{"city": CITY}], "event_time": LAST},
        timeout=30,
    )
    assert v1.status_code == 200, v1.text
    assert v1.json()["predictions"] == full
    # parameters.event_time, no per-row time.
    body = lookup_body([LAST], "lookup-2")
    body["inputs"] = body["inputs"][:1]
    body["parameters"] = {"event_time": LAST}
    assert prediction(infer(server, body)) == full


def test_fetched_features_equal_the_offline_stores_latest_values_and_are_captured(
    server, store, flat_last
):
    times = [LAST, "2012-01-01T01:30:00Z", "2012-01-01T02:00:00Z"]  # within the 3 h TTL
    ids = []
    for i, t in enumerate(times):
        ids.append(f"consistency-{i}")
        prediction(infer(server, lookup_body([t], ids[-1])))
    rows = captured(server, want=set(ids))
    rows = rows.set_index("request_id").loc[ids]
    reference = feature_server.reference(store, times)
    for i, t in enumerate(times):
        offline, online = reference["offline"][i], reference["online"][i]
        for column in COLUMNS:
            got = rows.iloc[i][column]
            got = got.item() if hasattr(got, "item") else got
            # The serving image's values = the offline store's point-in-time values = the
            # online store's, for every model input (exact equality, floats included).
            assert got == offline[column] == online[column], (t, column, got, offline[column])
        assert rows.iloc[i]["city"] == CITY
    # The weather at every time is the last observation, as the flat file has it.
    for column in ("temp", "atemp", "hum", "windspeed", "weathersit"):
        assert set(rows[column]) == {flat_last[column]}
    # The capture's event time is the request's time (its hour partition too).
    assert (
        pd.to_datetime(rows["event_time"], utc=True).tolist()
        == pd.to_datetime(times, utc=True).tolist()
    )


@pytest.mark.parametrize(
    "times, cities, reason",
    [
        (["2012-01-01T02:00:01Z"], [CITY], "older than the TTL of view 'weather' (3:00:00)"),
        ([LAST], ["nowhere"], "not found"),
        (["2011-12-31T22:00:00Z"], [CITY], "after the request time"),
    ],
    ids=["ttl-expired", "unknown-city", "before-the-latest-observation"],
)
def test_missing_features_are_a_422_naming_them_and_nothing_is_predicted(
    server, times, cities, reason
):
    before = metric(server, "loopline_feature_lookups_total", outcome="missing")
    request_id = f"missing-{cities[0]}-{times[0]}"
    answer = infer(server, lookup_body(times, request_id, cities))
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert "temp, atemp, hum, windspeed, weathersit: " in error, error  # every weather input
    assert f"city={cities[0]!r}" in error and times[0] in error and reason in error, error
    assert metric(server, "loopline_feature_lookups_total", outcome="missing") == before + 1
    assert metric(server, "loopline_request_errors_total", kind="features_missing") >= 1
    # The server keeps serving, and the refused request never reaches the capture.
    prediction(infer(server, lookup_body([LAST], f"after-{request_id}")))
    rows = captured(server, want={f"after-{request_id}"})
    assert request_id not in set(rows["request_id"])


def test_some_features_but_not_all_are_refused_naming_the_rest(server, flat_last):
    body = full_body(flat_last, "partial")
    body["inputs"] = [i for i in body["inputs"] if i["name"] in ("temp", "hr")]
    body["inputs"].append({"name": "city", "shape": [1], "datatype": "BYTES", "data": [CITY]})
    answer = infer(server, body)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert "'atemp' is required and missing" in error and "windspeed" in error, error
    assert "only the entity ('city') and the time" in error, error
    # A full request that also names the city: no lookup, the city is captured beside it.
    before = metric(server, "loopline_feature_lookups_total")
    prediction(infer(server, {**full_body(flat_last, "full-city"), "inputs": [
        *full_body(flat_last, "x")["inputs"],
        {"name": "city", "shape": [1], "datatype": "BYTES", "data": [CITY]}]}))  # fmt: skip
    assert metric(server, "loopline_feature_lookups_total") == before


def test_lookup_metrics_carry_the_model_and_version(server):
    prediction(infer(server, lookup_body([LAST], "metrics-1")))
    assert metric(server, "loopline_feature_lookups_total", model=MODEL, version="7", outcome="ok")
    assert metric(
        server, "loopline_feature_lookup_duration_seconds_count", model=MODEL, version="7"
    )


def test_feature_server_down_is_a_503_and_full_requests_still_served(version, tmp_path, flat_last):
    # A socket that accepts connections (the kernel's backlog) and never answers: a timeout;
    # then closed: nothing listens, the connection is refused.
    silent = socket.create_server(("127.0.0.1", 0), backlog=64)
    url = f"http://127.0.0.1:{silent.getsockname()[1]}"
    proc = _server(version, tmp_path, url, "--feature_server_timeout", "0.5")
    try:
        # The lookup waits on the silent server without blocking the event loop: a full
        # request sent meanwhile is answered before the lookup times out.
        with ThreadPoolExecutor(1) as pool:
            began = time.monotonic()
            pending = pool.submit(infer, proc, lookup_body([LAST], "timeout-1"))
            time.sleep(0.1)
            assert prediction(infer(proc, full_body(flat_last, "full-during")))
            assert time.monotonic() - began < 0.45 and not pending.done()
            answer = pending.result()
        assert answer.status_code == 503, answer.text
        assert f"the feature server {url} did not answer within 0.5 s" in answer.json()["error"]
        assert time.monotonic() - began < 5
        silent.close()
        answer = infer(proc, lookup_body([LAST], "down-1"))
        assert answer.status_code == 503, answer.text
        assert f"the feature server {url} cannot be reached" in answer.json()["error"]
        full = prediction(infer(proc, full_body(flat_last, "full-after")))
        assert np.isfinite(full).all()
        assert requests.get(f"{proc.url}/v2/health/ready", timeout=5).status_code == 200
        assert metric(proc, "loopline_feature_lookups_total", outcome="timeout") == 1
        assert metric(proc, "loopline_feature_lookups_total", outcome="unreachable") == 1
        assert metric(proc, "loopline_requests_total", protocol="v2", code="503") == 2
    finally:
        silent.close()
        proc.stop()


def test_lookup_is_off_without_the_flag(version, tmp_path):
    directory, manifest = version
    proc = serving.Server(
        ["--model_name", MODEL, "--model_dir", directory, "--manifest_sha256", manifest],
        tmp_path / "server.log",
    )
    try:
        proc.wait_live()
        answer = infer(proc, lookup_body([LAST], "off-1"))
        assert answer.status_code == 400, answer.text
        assert "input 'city' is not a column of the model's schema" in answer.json()["error"]
    finally:
        proc.stop()


def test_calendar_computed_locally_gives_the_same_predictions(
    version, feast, server, tmp_path, flat_last
):
    times = [LAST, "2012-01-01T00:00:00Z", "2012-01-01T01:30:00Z", "2012-01-01T02:00:00Z"]
    by_server = prediction(infer(server, lookup_body(times, "calendar-server")))
    proc = _server(version, tmp_path, feast.url, "--feature_calendar", "local")
    try:
        assert "computed here" in proc.log()
        assert prediction(infer(proc, lookup_body(times, "calendar-local"))) == by_server
        assert prediction(infer(proc, lookup_body([LAST], "local-1"))) == prediction(
            infer(proc, full_body(flat_last, "local-full"))
        )
        expired = infer(proc, lookup_body(["2012-01-01T02:00:01Z"], "local-expired"))
        assert expired.status_code == 422, expired.text
        assert "older than the TTL of view 'weather'" in expired.json()["error"]
    finally:
        proc.stop()
