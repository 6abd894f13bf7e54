"""The model server as a process (``python -m components.serving`` from the serving env),
serving a real Bikeshare registry version, reached over HTTP by plain requests and by a
standard Open Inference Protocol client (tritonclient)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import requests

from components.lib import artifacts
from tests import serving

pytestmark = pytest.mark.serving

MODEL = "bikeshare"
COLUMNS = ["temp", "atemp", "hum", "windspeed", "hr", "mnth", "weekday", "season", "weathersit", "holiday", "workingday"]  # fmt: skip
DATATYPES = {"mnth": "BYTES", "weathersit": "BYTES", "temp": "FP64", "atemp": "FP64", "hum": "FP64", "windspeed": "FP64"}  # fmt: skip


@pytest.fixture(scope="module")
def version(tmp_path_factory, bikeshare_csv):
    folder = tmp_path_factory.mktemp("serving-version")
    directory, manifest, rows = serving.make_version(folder, bikeshare_csv)
    return Path(directory), manifest, rows


@pytest.fixture(scope="module")
def server(version, tmp_path_factory):
    directory, manifest, _ = version
    log = tmp_path_factory.mktemp("serving-log") / "server.log"
    proc = serving.Server(
        ["--model_name", MODEL, "--model_dir", str(directory), "--manifest_sha256", manifest,
         "--model_version", "7"],
        log,
    )  # fmt: skip
    try:
        proc.wait_live()
        yield proc
    finally:
        proc.stop()


def v2_body(rows, request_id: str | None = None, **extra) -> dict:
    inputs = []
    for c in COLUMNS:
        values = rows[c].tolist()
        inputs.append(
            {
                "name": c,
                "shape": [len(values)],
                "datatype": DATATYPES.get(c, "INT64"),
                "data": values,
            }
        )
    body = {"inputs": inputs, **extra}
    if request_id:
        body["id"] = request_id
    return body


def infer(server, body, raw: bytes | None = None, headers=None) -> requests.Response:
    return requests.post(
        f"{server.url}/v2/models/{MODEL}/infer",
        data=raw if raw is not None else json.dumps(body),
        headers={"content-type": "application/json", **(headers or {})},
        timeout=30,
    )


def expected(version, rows) -> np.ndarray:
    directory, manifest, _ = version
    model = artifacts.load_mlflow_model(directory, manifest)
    return model.predict(rows[COLUMNS])


def test_ready_and_reports_the_fast_path(server):
    assert requests.get(f"{server.url}/v2/models/{MODEL}/ready", timeout=5).status_code == 200
    assert requests.get(f"{server.url}/v2/health/ready", timeout=5).status_code == 200
    log = server.log()
    assert "predict path numpy" in log, log[-2000:]
    meta = requests.get(f"{server.url}/v2/models/{MODEL}", timeout=5).json()
    assert [i["name"] for i in meta["inputs"]] == COLUMNS
    assert {i["name"]: i["datatype"] for i in meta["inputs"]}["mnth"] == "BYTES"


def test_v2_predictions_equal_scikit_learn_on_every_row(server, version):
    _, _, rows = version
    batch = rows.iloc[:1000]
    answer = infer(server, v2_body(batch, "batch-1"))
    assert answer.status_code == 200, answer.text
    got = np.array(answer.json()["outputs"][0]["data"])
    np.testing.assert_array_equal(got, expected(version, batch))
    assert answer.json()["model_version"] == "7"
    assert answer.json()["parameters"]["request_ids"].split(",")[:2] == ["batch-1-0", "batch-1-1"]


def test_request_id_is_kept_or_made(server, version):
    _, _, rows = version
    kept = infer(server, v2_body(rows.iloc[:1], "client-id-42"))
    assert kept.json()["id"] == "client-id-42"
    assert kept.headers["x-request-id"] == "client-id-42"
    made = infer(server, v2_body(rows.iloc[:1]))
    assert len(made.json()["id"]) == 32 and made.headers["x-request-id"] == made.json()["id"]
    from_header = infer(server, v2_body(rows.iloc[:1]), headers={"x-request-id": "hdr-1"})
    assert from_header.json()["id"] == "hdr-1"


def test_v1_named_columns(server, version):
    _, _, rows = version
    instances = rows.iloc[:3][COLUMNS].to_dict(orient="records")
    answer = requests.post(
        f"{server.url}/v1/models/{MODEL}:predict", json={"instances": instances}, timeout=30
    )
    assert answer.status_code == 200, answer.text
    np.testing.assert_array_equal(answer.json()["predictions"], expected(version, rows.iloc[:3]))
    bad = requests.post(
        f"{server.url}/v1/models/{MODEL}:predict",
        json={"instances": [{**instances[0], "hr": 31}]},
        timeout=30,
    )
    assert bad.status_code == 400 and "column 'hr'" in bad.json()["error"]


def test_tritonclient_json_and_binary(server, version):
    import tritonclient.http as httpclient

    _, _, rows = version
    batch = rows.iloc[:5]
    client = httpclient.InferenceServerClient(server.url.removeprefix("http://"))
    assert client.is_model_ready(MODEL)
    for binary in (False, True):
        inputs = []
        for c in COLUMNS:
            datatype = DATATYPES.get(c, "INT64")
            values = batch[c].to_numpy(dtype=object if datatype == "BYTES" else None)
            if datatype == "INT64":
                values = values.astype(np.int64)
            tensor = httpclient.InferInput(c, [len(batch)], datatype)
            tensor.set_data_from_numpy(values, binary_data=binary)
            inputs.append(tensor)
        result = client.infer(MODEL, inputs, request_id=f"triton-{binary}")
        np.testing.assert_array_equal(result.as_numpy("predict"), expected(version, batch))
        assert result.get_response()["id"] == f"triton-{binary}"


def _with(body: dict, column: str, **change) -> dict:
    body = json.loads(json.dumps(body))
    for item in body["inputs"]:
        if item["name"] == column:
            item.update(change)
    return body


def corpus(good: dict) -> list[tuple[str, dict | None, bytes | None, int, str]]:
    """(case, body, raw bytes, expected status, what the message must name)."""
    without_hum = json.loads(json.dumps(good))
    without_hum["inputs"] = [i for i in without_hum["inputs"] if i["name"] != "hum"]
    unknown = json.loads(json.dumps(good))
    unknown["inputs"].append({"name": "colour", "shape": [1], "datatype": "BYTES", "data": ["red"]})
    nan_raw = json.dumps(_with(good, "temp", data=[math.nan])).encode()  # NaN literal
    assert b"NaN" in nan_raw
    huge = json.dumps(_with(good, "weathersit", data=["x" * (10 << 20)])).encode()
    empty = json.loads(json.dumps(good))
    for item in empty["inputs"]:
        item.update(shape=[0], data=[])
    return [
        ("bad JSON", None, b'{"inputs": [', 400, "not valid JSON"),
        ("wrong shape", _with(good, "hr", shape=[2, 3]), None, 400, "input 'hr': shape"),
        ("shape vs data", _with(good, "hr", shape=[2]), None, 400, "input 'hr': shape [2]"),
        ("wrong dtype", _with(good, "temp", datatype="BYTES"), None, 400, "column 'temp': datatype BYTES"),
        ("missing column", without_hum, None, 400, "column 'hum' is required"),
        ("NaN", None, nan_raw, 400, "column 'temp': NaN"),
        ("unknown column", unknown, None, 400, "input 'colour'"),
        ("10 MB body", None, huge, 413, "request body is over"),
        ("empty batch", empty, None, 400, "empty batch"),
        ("string for a number", _with(good, "windspeed", data=["calm"]), None, 400, "column 'windspeed': 'calm'"),
        ("out of range", _with(good, "hr", data=[24]), None, 400, "column 'hr': value 24"),
        ("not in domain", _with(good, "mnth", data=["Smarch"]), None, 400, "column 'mnth': value 'Smarch'"),
        ("fraction for an int", _with(good, "weekday", data=[2.5]), None, 400, "column 'weekday': takes whole numbers"),
        ("no inputs field", {"id": "x"}, None, 400, "field inputs"),
        ("null in a required column", _with(good, "hr", data=[None]), None, 400, "column 'hr': a value is missing"),
    ]  # fmt: skip


def test_malformed_corpus_gets_4xx_naming_the_field_and_serving_goes_on(server, version):
    _, _, rows = version
    good = v2_body(rows.iloc[:1])
    want = expected(version, rows.iloc[:1])[0]
    for case, body, raw, status, named in corpus(good):
        answer = infer(server, body, raw=raw)
        assert answer.status_code == status, f"{case}: {answer.status_code} {answer.text[:300]}"
        message = answer.json()["error"]
        assert named in message, f"{case}: {message!r} does not name {named!r}"
        after = infer(server, good)
        assert after.status_code == 200, f"after {case}: {after.text[:300]}"
        assert after.json()["outputs"][0]["data"] == [want], f"after {case}"


def test_a_missing_reading_is_allowed_where_the_schema_allows_it(server, version):
    _, _, rows = version
    answer = infer(server, _with(v2_body(rows.iloc[:1]), "temp", data=[None]))
    assert answer.status_code == 200, answer.text
    frame = rows.iloc[:1][COLUMNS].copy()
    frame["temp"] = np.nan
    directory, manifest, _ = version
    model = artifacts.load_mlflow_model(directory, manifest)
    assert answer.json()["outputs"][0]["data"] == [model.predict(frame)[0]]


def test_metrics_count_requests_errors_latency_and_predictions(server, version):
    _, _, rows = version
    infer(server, v2_body(rows.iloc[:2]))
    infer(server, _with(v2_body(rows.iloc[:1]), "hr", data=[99]))
    text = requests.get(f"{server.url}/metrics", timeout=5).text
    lines = {
        ln.split(" ")[0]: float(ln.split(" ")[1])
        for ln in text.splitlines()
        if ln and not ln.startswith("#")
    }
    ok = lines['loopline_requests_total{code="200",model="bikeshare",protocol="v2",version="7"}']
    assert ok >= 2
    assert lines['loopline_request_errors_total{kind="range",model="bikeshare",version="7"}'] >= 1
    assert (
        lines[
            'loopline_request_duration_seconds_count{model="bikeshare",protocol="v2",version="7"}'
        ]
        >= ok
    )
    assert lines['loopline_prediction_count{model="bikeshare",version="7"}'] >= 2
    assert 'loopline_prediction_bucket{le="80.0",model="bikeshare",version="7"}' in lines
    info = [k for k in lines if k.startswith("loopline_model_info")]
    assert info and 'path="numpy"' in info[0]


def test_fast_path_off_serves_the_same_predictions(version, tmp_path, server):
    directory, manifest, rows = version
    other = serving.Server(
        ["--model_name", MODEL, "--model_dir", str(directory), "--manifest_sha256", manifest,
         "--fast_path", "off"],
        tmp_path / "off.log",
    )  # fmt: skip
    try:
        other.wait_live()
        batch = rows.iloc[:300]
        slow = infer(other, v2_body(batch)).json()["outputs"][0]["data"]
        fast = infer(server, v2_body(batch)).json()["outputs"][0]["data"]
        assert slow == fast
        assert "predict path sklearn (--fast_path off)" in other.log()
    finally:
        other.stop()


def test_a_tampered_model_is_refused_and_the_server_stays_not_ready(version, tmp_path):
    directory, manifest, rows = version
    tampered = tmp_path / "tampered"
    shutil.copytree(directory, tampered)
    with open(tampered / "model.skops", "ab") as fh:
        fh.write(b"\0")
    proc = serving.Server(
        ["--model_name", MODEL, "--model_dir", str(tampered), "--manifest_sha256", manifest],
        tmp_path / "tampered.log",
    )
    try:
        proc.wait_live()
        ready = requests.get(f"{proc.url}/v2/models/{MODEL}/ready", timeout=5)
        assert ready.status_code == 503
        assert requests.get(f"{proc.url}/v2/health/ready", timeout=5).status_code == 503
        answer = infer(proc, v2_body(rows.iloc[:1]))
        assert answer.status_code == 503, answer.text
        log = proc.log()
        assert "NOT loaded" in log and "model.skops does not match the manifest" in log, log[-2000:]
    finally:
        proc.stop()


def test_a_wrong_record_is_refused(version, tmp_path):
    directory, _, _ = version
    proc = serving.Server(
        ["--model_name", MODEL, "--model_dir", str(directory), "--manifest_sha256", "0" * 64],
        tmp_path / "wrong.log",
    )
    try:
        proc.wait_live()
        assert requests.get(f"{proc.url}/v2/models/{MODEL}/ready", timeout=5).status_code == 503
        assert "manifest" in proc.log() and "NOT loaded" in proc.log()
    finally:
        proc.stop()


def test_capture_writes_exactly_one_row_per_request_through_an_outage(
    version, tmp_path, s3_store, s3_client
):
    """N requests -> exactly N captured rows with their request ids, in the real S3 endpoint,
    although the endpoint was unreachable for part of them; event time cuts the hour."""
    import io
    import time

    import pyarrow.parquet as pq

    from components.serving.tests.test_capture import RestartableS3

    directory, manifest, rows = version
    store = RestartableS3(s3_store.credentials)
    store.start()
    s3_client.make_bucket("served")
    proc = serving.Server(
        ["--model_name", MODEL, "--model_dir", str(directory), "--manifest_sha256", manifest,
         "--model_version", "3", "--capture_uri", "s3://served/traffic", "--s3_endpoint", store.endpoint,
         "--capture_flush_seconds", "0.3", "--capture_hash", "weathersit", "--capture_drop", "windspeed"],
        tmp_path / "capture.log",
        env={"LOOPLINE_CAPTURE_SALT": "pepper", **s3_store.credentials},
    )  # fmt: skip
    sent = []
    try:
        proc.wait_live()
        for i in range(10):
            assert infer(proc, v2_body(rows.iloc[i : i + 1], f"up-{i}")).status_code == 200
            sent.append(f"up-{i}")
        store.stop()
        for i in range(10):
            started = time.perf_counter()
            body = v2_body(
                rows.iloc[i : i + 1], f"down-{i}", parameters={"event_time": "2011-03-01T08:15:00Z"}
            )
            assert infer(proc, body).status_code == 200
            assert time.perf_counter() - started < 1.0
            sent.append(f"down-{i}")
        time.sleep(2)
        failures = [ln for ln in requests.get(f"{proc.url}/metrics", timeout=5).text.splitlines()
                    if ln.startswith("loopline_capture_write_failures_total{")]  # fmt: skip
        assert failures and float(failures[0].split()[-1]) >= 1, failures
        store.start()
        deadline = time.monotonic() + 60
        captured = []
        while time.monotonic() < deadline:
            captured = []
            for obj in s3_client.list_objects("served", prefix="traffic/", recursive=True):
                data = s3_client.get_object("served", obj.object_name).read()
                captured += [
                    (obj.object_name, r) for r in pq.read_table(io.BytesIO(data)).to_pylist()
                ]
            if len(captured) >= len(sent):
                break
            time.sleep(0.5)
    finally:
        proc.stop()
        if store.store is not None:
            store.stop()
    ids = [r["request_id"] for _, r in captured]
    assert sorted(ids) == sorted(sent), f"captured {len(ids)} rows for {len(sent)} requests"
    by_id = {r["request_id"]: (name, r) for name, r in captured}
    name, row = by_id["down-3"]
    assert "model=bikeshare/hour=2011-03-01T08/" in name
    assert row["model_version"] == "3" and "windspeed" not in row
    import hashlib

    assert (
        row["weathersit"]
        == hashlib.sha256(b"pepper" + rows.loc[3, "weathersit"].encode()).hexdigest()
    )
    name, row = by_id["up-0"]
    assert row["event_time"] is None and "hour=2011" not in name
    assert row["prediction"] == pytest.approx(
        float(expected(version, rows.iloc[:1])[0]), rel=0, abs=0
    )
