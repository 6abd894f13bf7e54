"""Fault injection (``--fault_*``, tests and demos only) through a real server process: each
flag does what it says on both lanes (the V2 JSON fast lane and KServe's V1 path), and with
none given nothing changes."""

from __future__ import annotations

import concurrent.futures
import time
from pathlib import Path

import numpy as np
import pytest
import requests

from components.serving.tests.test_server import COLUMNS, MODEL, expected, infer, v2_body
from tests import serving

pytestmark = pytest.mark.serving


@pytest.fixture(scope="module")
def version(tmp_path_factory, bikeshare_csv):
    folder = tmp_path_factory.mktemp("faults-version")
    directory, manifest, rows = serving.make_version(folder, bikeshare_csv)
    return Path(directory), manifest, rows


def start(version, tmp_path, *flags: str) -> serving.Server:
    directory, manifest, _ = version
    proc = serving.Server(
        ["--model_name", MODEL, "--model_dir", str(directory), "--manifest_sha256", manifest,
         "--model_version", "3", *flags],
        tmp_path / "server.log",
    )  # fmt: skip
    try:
        proc.wait_live()
        deadline = time.monotonic() + 60
        while requests.get(f"{proc.url}/v2/models/{MODEL}/ready", timeout=2).status_code != 200:
            assert time.monotonic() < deadline, proc.log()[-3000:]
            time.sleep(0.2)
    except BaseException:
        proc.stop()
        raise
    return proc


def series(server, name: str) -> dict[str, float]:
    text = requests.get(f"{server.url}/metrics", timeout=5).text
    return {
        ln.rsplit(" ", 1)[0]: float(ln.rsplit(" ", 1)[1])
        for ln in text.splitlines()
        if ln.startswith(name)
    }


def v1(server, rows) -> requests.Response:
    instances = rows[COLUMNS].to_dict(orient="records")
    return requests.post(
        f"{server.url}/v1/models/{MODEL}:predict", json={"instances": instances}, timeout=30
    )


def test_without_fault_flags_nothing_changes(version, tmp_path):
    _, _, rows = version
    server = start(version, tmp_path)
    try:
        for _ in range(20):
            answer = infer(server, v2_body(rows.iloc[:5]))
            assert answer.status_code == 200, answer.text
            np.testing.assert_array_equal(
                answer.json()["outputs"][0]["data"], expected(version, rows.iloc[:5])
            )
        np.testing.assert_array_equal(
            v1(server, rows.iloc[:3]).json()["predictions"], expected(version, rows.iloc[:3])
        )
        began = time.perf_counter()
        infer(server, v2_body(rows.iloc[:1]))
        assert time.perf_counter() - began < 0.2
        # The error series exist from load (at 0, for the rollout's gates) and stay at 0.
        assert not [k for k, v in series(server, "loopline_request_errors_total{").items() if v]
        assert "FAULT INJECTION" not in server.log()
    finally:
        server.stop()


def test_fault_error_rate_answers_that_share_with_500_counted_as_internal(version, tmp_path):
    _, _, rows = version
    server = start(version, tmp_path, "--fault_error_rate", "0.5")
    try:
        answers = [infer(server, v2_body(rows.iloc[i : i + 1])) for i in range(300)]
        codes = [a.status_code for a in answers]
        failed = codes.count(500)
        assert set(codes) == {200, 500}
        assert 0.40 * 300 < failed < 0.60 * 300, failed  # binomial: 3.5 sd either side
        bad = next(a for a in answers if not a.ok)
        assert "fault injected (--fault_error_rate 0.5)" in bad.json()["error"]
        v1_codes = [v1(server, rows.iloc[:1]).status_code for _ in range(40)]
        assert set(v1_codes) == {200, 500}  # KServe's path fails the same way
        errors = series(server, "loopline_request_errors_total{")
        assert errors == {
            'loopline_request_errors_total{kind="internal",model="bikeshare",version="3"}': float(
                failed + v1_codes.count(500)
            )
        }
        counted = series(server, "loopline_requests_total{")
        key = 'loopline_requests_total{code="500",model="bikeshare",protocol="%s",version="3"}'
        assert counted[key % "v2"] == failed
        assert counted[key % "v1"] == v1_codes.count(500)
        assert "FAULT INJECTION ON" in server.log()
    finally:
        server.stop()


def test_fault_latency_delays_every_request_without_blocking_the_others(version, tmp_path):
    _, _, rows = version
    server = start(version, tmp_path, "--fault_latency_ms", "400")
    try:
        began = time.perf_counter()
        assert infer(server, v2_body(rows.iloc[:1])).status_code == 200
        assert time.perf_counter() - began >= 0.4
        began = time.perf_counter()
        assert v1(server, rows.iloc[:1]).status_code == 200
        assert time.perf_counter() - began >= 0.4
        # 8 at once: served side by side (about 0.4 s in all), not one after another (3.2 s).
        began = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            answers = list(
                pool.map(lambda i: infer(server, v2_body(rows.iloc[i : i + 1])), range(8))
            )
        took = time.perf_counter() - began
        assert all(a.status_code == 200 for a in answers)
        assert 0.4 <= took < 1.2, took
        # Not an inference route: not delayed.
        began = time.perf_counter()
        requests.get(f"{server.url}/v2/health/live", timeout=5)
        assert time.perf_counter() - began < 0.2
    finally:
        server.stop()


def test_fault_prediction_shift_moves_every_prediction(version, tmp_path):
    _, _, rows = version
    server = start(version, tmp_path, "--fault_prediction_shift", "100")
    try:
        batch = rows.iloc[:50]
        want = expected(version, batch) + 100
        answer = infer(server, v2_body(batch))
        np.testing.assert_allclose(answer.json()["outputs"][0]["data"], want, rtol=1e-12)
        np.testing.assert_allclose(
            v1(server, rows.iloc[:3]).json()["predictions"], want[:3], rtol=1e-12
        )
        # The prediction histogram sees the shifted values, as it would a bad model's.
        total = series(server, "loopline_prediction_sum{")
        assert total['loopline_prediction_sum{model="bikeshare",version="3"}'] == pytest.approx(
            float(want.sum() + want[:3].sum())
        )
    finally:
        server.stop()
