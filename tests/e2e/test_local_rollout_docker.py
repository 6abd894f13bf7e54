"""The local traffic layer with real parts (pipelines/local_rollout.py): serving containers
of two real versions behind Debian's nginx, scraped by Debian's prometheus, driven through
every step of a progressive rollout. One deployment is shared by the module's tests, which
run in order (each starts from the state the previous one left)."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import requests

from components.lib.deployment import ModelRef
from components.serving.tests.test_server import MODEL, v2_body
from pipelines.local_rollout import LocalDeployment, _alive
from tests import serving

pytestmark = [pytest.mark.docker, pytest.mark.serving]

ROOT = Path(__file__).resolve().parents[2]
INFER = f"/v2/models/{MODEL}/infer"


@pytest.fixture(scope="module")
def versions(tmp_path_factory, bikeshare_csv):
    """Two real versions (two fits of the same data: different files, different records),
    and a third reference to the second's files that serves with a fault."""
    refs = []
    rows = None
    for number in ("1", "2"):
        folder = tmp_path_factory.mktemp(f"rollout-v{number}")
        directory, manifest, rows = serving.make_version(folder, bikeshare_csv)
        refs.append(ModelRef(MODEL, number, directory, manifest))
    refs.append(ModelRef(MODEL, "3", refs[1].storage_uri, refs[1].manifest_sha256))
    return refs, rows


@pytest.fixture(scope="module")
def deployment(built_images, docker_engine, versions, tmp_path_factory):
    work = tmp_path_factory.mktemp("rollout-work")
    # The code under test (the fault flags) in the image's environment.
    with LocalDeployment(
        work, extra_args={"3": ["--fault_error_rate=0.5"]}, code_dir=ROOT
    ) as local:
        yield local


@pytest.fixture(scope="module")
def body(versions):
    _, rows = versions
    return json.dumps(v2_body(rows.iloc[:1]))


def send(url: str, body: str, n: int, session=None, headers=None) -> list[requests.Response]:
    http = session or requests.Session()
    out = []
    for _ in range(n):
        out.append(
            http.post(
                url + INFER,
                data=body,
                headers={"content-type": "application/json", **(headers or {})},
                timeout=30,
            )
        )
    return out


def versions_of(answers) -> Counter:
    return Counter(a.json()["model_version"] if a.ok else a.status_code for a in answers)


def promql(local: LocalDeployment, query: str) -> dict[str, float]:
    answer = requests.get(
        f"{local.prometheus_url}/api/v1/query", params={"query": query}, timeout=10
    )
    answer.raise_for_status()
    return {
        r["metric"].get("version", ""): float(r["value"][1])
        for r in answer.json()["data"]["result"]
    }


def wait_promql(local, query, check, timeout=20.0) -> dict[str, float]:
    deadline = time.monotonic() + timeout
    while True:
        result = promql(local, query)
        if check(result):
            return result
        assert time.monotonic() < deadline, f"{query}: {result}"
        time.sleep(0.5)


def counter(url: str, version: str, code: str = "200") -> float:
    text = requests.get(f"{url}/metrics", timeout=5).text
    key = f'loopline_requests_total{{code="{code}",model="{MODEL}",protocol="v2",version="{version}"}}'
    for line in text.splitlines():
        if line.startswith(key + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_deploy_sends_everything_to_the_stable_version(deployment, versions, body):
    (v1, _, _), _ = versions
    assert deployment.get() is None
    deployment.deploy(v1)
    traffic = deployment.wait_ready(60)
    assert traffic.stable == v1 and traffic.candidate is None and traffic.candidate_percent == 0
    assert versions_of(send(deployment.url, body, 50)) == {"1": 50}
    assert deployment.candidate_url() is None
    assert deployment.stable_url() is not None


def test_a_canary_gets_its_share_and_prometheus_sees_it_per_version(deployment, versions, body):
    (_, v2, _), _ = versions
    deployment.start_candidate(v2, 20)
    traffic = deployment.wait_ready(60)
    assert traffic.candidate == v2 and traffic.candidate_percent == 20 and not traffic.mirror
    before = {v: counter(deployment.stable_url() if v == "1" else deployment.candidate_url(), v) for v in "12"}  # fmt: skip
    # In rounds across a few scrapes: rate() needs two samples of a series, and the
    # candidate's appears with its first request.
    answers = []
    for _ in range(5):
        answers += send(deployment.url, body, 200)
        time.sleep(0.6)
    seen = versions_of(answers)
    assert set(seen) == {"1", "2"}
    assert 160 <= seen["2"] <= 240, seen  # 20% +- 4 points (the weighted split is exact: 200)
    # Prometheus scrapes both containers: per-version request counts equal what clients saw,
    # and the gates' rate query answers per version.
    totals = f'sum by (version) (loopline_requests_total{{model="{MODEL}",protocol="v2"}})'
    wait_promql(
        deployment, totals,
        lambda r: r.get("1", 0) - before["1"] >= seen["1"] and r.get("2", 0) - before["2"] >= seen["2"],
    )  # fmt: skip
    got = promql(deployment, totals)
    assert got["2"] - before["2"] == seen["2"] and got["1"] - before["1"] == seen["1"], got
    rates = promql(
        deployment, f'sum by (version) (rate(loopline_requests_total{{model="{MODEL}"}}[30s]))'
    )
    assert rates["1"] > 0 and rates["2"] > 0
    assert 0.1 < rates["2"] / (rates["1"] + rates["2"]) < 0.3, rates


def test_changing_the_weights_under_load_fails_no_request(deployment, body):
    answers: list = []
    failures: list = []
    stop = threading.Event()

    def client():
        http = requests.Session()
        while not stop.is_set():
            try:
                answers.append(send(deployment.url, body, 1, session=http)[0])
            except requests.RequestException as exc:
                failures.append(exc)

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(1)
        for percent in (50, 30, 50):
            deployment.set_percent(percent)
            time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join()
    codes = Counter(a.status_code for a in answers)
    assert not failures and codes.keys() == {200}, (failures[:3], codes)
    assert len(answers) > 100
    assert deployment.get().candidate_percent == 50
    # Spread over a few scrapes: rate() needs two samples of a series, and the 500 series
    # appears with the first failure.
    answers = []
    for _ in range(5):
        answers += send(deployment.url, body, 80)
        time.sleep(0.6)
    seen = versions_of(answers)
    assert seen == {"1": 200, "2": 200}, seen


def test_shadow_mirrors_every_request_with_the_same_request_id(deployment, versions, body):
    (_, v2, _), _ = versions
    deployment.start_candidate(v2, 0, mirror=True)  # the same candidate: the route changes only
    traffic = deployment.wait_ready(30)
    assert traffic.mirror and traffic.candidate_percent == 0
    before = counter(deployment.candidate_url(), "2")
    ours = [f"shadow-{i}" for i in range(100)]
    answers = [
        send(deployment.url, body, 1, headers={"x-request-id": rid})[0] for rid in ours
    ] + send(deployment.url, body, 100)
    assert versions_of(answers) == {"1": 200}  # the client gets the stable answer only
    assert [a.headers["x-request-id"] for a in answers[:100]] == ours
    made = [a.headers["x-request-id"] for a in answers[100:]]  # nginx's $request_id
    assert len(set(made)) == 100 and all(len(m) == 32 for m in made)
    deadline = time.monotonic() + 10
    while counter(deployment.candidate_url(), "2") - before < 200:
        assert time.monotonic() < deadline, counter(deployment.candidate_url(), "2") - before
        time.sleep(0.2)
    assert counter(deployment.candidate_url(), "2") - before == 200
    # Both versions captured each request under the same id (the shadow's rows join the
    # champion's): the capture flushes every second.
    wanted = set(ours) | set(made)
    deadline = time.monotonic() + 15
    while True:
        files = list(deployment.capture_dir.rglob("*.parquet"))
        captured = pd.concat([pd.read_parquet(f) for f in files]) if files else pd.DataFrame()
        by_version = {
            v: set(captured.loc[captured["model_version"] == v, "request_id"]) for v in ("1", "2")
        } if files else {"1": set(), "2": set()}  # fmt: skip
        if wanted <= by_version["1"] and wanted <= by_version["2"]:
            break
        assert time.monotonic() < deadline, {v: len(wanted - s) for v, s in by_version.items()}
        time.sleep(0.5)
    # nginx's access log has the mirrored copy under the same id, to the candidate's port.
    log = (deployment.logs / "nginx-access.log").read_text().splitlines()
    cand_port = deployment.state["candidate"]["port"]
    mirrored = [ln for ln in log if "/_mirror" in ln or f"upstream=127.0.0.1:{cand_port}" in ln]
    assert any(f"rid={made[0]}" in ln for ln in mirrored)


def test_the_tagged_routes_reach_one_version_each(deployment, body):
    assert versions_of(send(deployment.candidate_url(), body, 30)) == {"2": 30}
    assert versions_of(send(deployment.stable_url(), body, 30)) == {"1": 30}


def test_a_second_deployment_on_the_same_folder_resumes_the_same_state(deployment, body):
    deployment.annotate({"loopline.io/rollout-step": "shadow"})
    resumed = LocalDeployment(deployment.workdir, code_dir=ROOT)
    assert resumed.get() == deployment.get()
    assert resumed.url == deployment.url and resumed.prometheus_url == deployment.prometheus_url
    assert resumed.state["candidate"]["container"] == deployment.state["candidate"]["container"]
    assert resumed.state["stable"]["container"] == deployment.state["stable"]["container"]
    assert resumed._nginx_pid() == deployment._nginx_pid()
    assert resumed.state["prometheus_pid"] == deployment.state["prometheus_pid"]
    assert resumed.get().annotations == {"loopline.io/rollout-step": "shadow"}
    deployment.annotate({"loopline.io/rollout-step": ""})
    assert LocalDeployment(deployment.workdir).get().annotations == {}
    # What is missing is started again: nginx stopped, a resumed deployment brings it back.
    subprocess.run(deployment._nginx_cmd("-s", "stop"), check=True)
    deadline = time.monotonic() + 10
    while (
        _alive(deployment._nginx_pid(), "nginx") or (deployment._nginx_dir / "nginx.pid").exists()
    ):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert "nginx is not running" in deployment.get().detail
    again = LocalDeployment(deployment.workdir, code_dir=ROOT)
    assert again.wait_ready(10).ready and again.url == deployment.url
    assert versions_of(send(deployment.url, body, 20)) == {"1": 20}  # mirror on: stable answers


def test_promote_moves_everything_to_the_candidate_and_stops_the_old_version(
    deployment, versions, body, docker_engine
):
    import docker

    (_, v2, _), _ = versions
    old = deployment.state["stable"]["container"]
    deployment.promote()
    traffic = deployment.wait_ready(30)
    assert traffic.stable == v2 and traffic.candidate is None and not traffic.mirror
    assert versions_of(send(deployment.url, body, 50)) == {"2": 50}
    assert deployment.candidate_url() is None
    with pytest.raises(docker.errors.NotFound):
        docker_engine.containers.get(old)
    deployment.promote()  # idempotent: a resumed rollout repeats its last step
    assert deployment.get().stable == v2


def test_a_faulty_candidate_shows_5xx_for_its_version_only_and_rolls_back(
    deployment, versions, body, docker_engine
):
    import docker

    (_, v2, v3), _ = versions
    deployment.start_candidate(v3, 50)
    deployment.wait_ready(60)
    candidate = deployment.state["candidate"]["container"]
    # Spread over a few scrapes: rate() needs two samples of a series, and the 500 series
    # appears with the first failure.
    answers = []
    for _ in range(5):
        answers += send(deployment.url, body, 80)
        time.sleep(0.6)
    seen = versions_of(answers)
    assert seen["2"] == 200 and 60 <= seen[500] <= 140 and seen["2"] + seen["3"] + seen[500] == 400
    errors = wait_promql(
        deployment,
        f'sum by (version) (rate(loopline_requests_total{{model="{MODEL}",code=~"5.."}}[30s]))',
        lambda r: r.get("3", 0) > 0,
    )
    # Every version has the 5xx series from load, at 0; only the faulty one rises.
    assert {v for v, rate in errors.items() if rate > 0} == {"3"}, errors
    kinds = wait_promql(
        deployment,
        f'sum by (version, kind) (loopline_request_errors_total{{model="{MODEL}"}})',
        lambda r: r.get("3") == seen[500],
    )
    assert {v: n for v, n in kinds.items() if n} == {"3": seen[500]}, kinds
    deployment.rollback()
    traffic = deployment.wait_ready(30)
    assert traffic.stable == v2 and traffic.candidate is None and traffic.candidate_percent == 0
    assert versions_of(send(deployment.url, body, 50)) == {"2": 50}
    with pytest.raises(docker.errors.NotFound):
        docker_engine.containers.get(candidate)


def test_close_stops_everything(deployment, docker_engine):
    from pipelines.local_rollout import LABEL

    nginx, prometheus = deployment._nginx_pid(), deployment.state["prometheus_pid"]
    deployment.close()
    assert not docker_engine.containers.list(all=True, filters={"label": f"{LABEL}={deployment.workdir}"})  # fmt: skip
    assert not _alive(nginx, "nginx") and not _alive(prometheus, "prometheus")
