"""The progressive-delivery engine (components/lib/rollout.py) driving a LocalDeployment
(pipelines/local_rollout.py) with real parts: serving containers of versions registered in
a real MLflow registry (downloaded, verified, mounted), Debian's nginx as the route, Debian's
Prometheus scraping the containers, and a background client sending live requests through
nginx during every rollout and recording every answer.

One deployment (and one champion lineage) is shared by the module's tests, which run in
order: each rollout starts from the champion the previous one left. Every rollout's
timeline (time, step, percent, verdict, gate values, the serving side's changes) is printed,
so a failing test shows it (pytest prints a failing test's output).
"""

from __future__ import annotations

import io
import json
import logging
import random
import re
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import requests

from components.lib import rollout
from components.lib.deployment import ModelRef
from components.lib.registry import CHECK_DATA_FILE, REQUEST_SCHEMA_FILE, Registry
from components.lib.rollout import Rollout, RolloutPolicy, key
from components.serving.tests.test_server import COLUMNS, v2_body
from pipelines.local_rollout import LocalDeployment, shadow_agreement
from tests import fitted, serving

pytestmark = [pytest.mark.docker, pytest.mark.serving, pytest.mark.mlflow, pytest.mark.prometheus]

ROOT = Path(__file__).resolve().parents[2]
NAME = f"e2e-rollout-{uuid.uuid4().hex[:6]}"
RATE = 50.0  # live requests per second through nginx

# A short policy: 8 s windows, a check every 4 s, 10 -> 50 -> 100. The divergence of ~25
# predictions (10% of 5 s) from the same model reached 0.45 by chance; a shift of 400 is 0.93.
BASE = {
    "strategy": "canary",
    "interval_seconds": 4,
    "window_seconds": 8,
    "min_requests": 8,
    "max_failed_checks": 2,
    "ready_timeout_seconds": 120,
    "inconclusive": {"max_checks": 6, "then": "rollback"},
    "gates": [
        {"type": "error_rate", "threshold": 0.05},
        {"type": "latency_p99", "threshold": 0.1},
        {"type": "prediction_divergence", "threshold": 0.6, "min_count": 15},
    ],
    "canary": {"steps": [10, 50, 100]},
    "blue_green": {"smoke_requests": 30, "bake_seconds": 8},
    "shadow": {"duration_seconds": 8, "min_agreement": 0.95},
}


def policy(**changes) -> RolloutPolicy:
    data = json.loads(json.dumps(BASE))
    data.update(changes)
    return RolloutPolicy.from_dict(data)


# --------------------------------------------------------------------------- the client


@dataclass
class Answer:
    sent: float  # epoch seconds
    done: float
    rid: str
    status: int | None  # None: no HTTP answer at all
    version: str | None  # the answering version (from the body; from nginx's log for errors)
    error: str = ""


class Client:
    """Live traffic: ``threads`` senders sharing one pace of ``rate`` requests per second
    through ``url``, one real Bikeshare row per request, each with its own x-request-id."""

    def __init__(self, url: str, rows: pd.DataFrame, rate: float = RATE, threads: int = 4):
        self.url = url + f"/v2/models/{NAME}/infer"
        self.bodies = [json.dumps(v2_body(rows.iloc[i : i + 1])) for i in range(len(rows))]
        self.rate, self.threads = rate, threads
        self.answers: list[Answer] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._workers: list[threading.Thread] = []
        self._n = 0
        self.tag = ""

    def start(self, tag: str) -> Client:
        self.tag, self._n, self.answers = tag, 0, []
        self._stop.clear()
        self._began = time.monotonic()
        self._workers = [
            threading.Thread(target=self._run, daemon=True) for _ in range(self.threads)
        ]
        for w in self._workers:
            w.start()
        return self

    def stop(self) -> list[Answer]:
        self._stop.set()
        for w in self._workers:
            w.join(30)
        self._workers = []
        return self.answers

    def _run(self) -> None:
        http = requests.Session()
        pick = random.Random()
        while not self._stop.is_set():
            with self._lock:
                n = self._n
                self._n += 1
            wait = self._began + n / self.rate - time.monotonic()
            if wait > 0 and self._stop.wait(wait):
                return
            rid = f"{self.tag}-{n}"
            sent = time.time()
            try:
                r = http.post(
                    self.url,
                    data=pick.choice(self.bodies),
                    headers={"content-type": "application/json", "x-request-id": rid},
                    timeout=20,
                )
                version = r.json().get("model_version") if r.ok else None
                answer = Answer(sent, time.time(), rid, r.status_code, version)
            except Exception as exc:  # noqa: BLE001 - every failure is recorded and asserted on
                answer = Answer(sent, time.time(), rid, None, None, f"{type(exc).__name__}: {exc}")
            with self._lock:
                self.answers.append(answer)


def attribute_errors(deployment: LocalDeployment, answers: list[Answer], ports: dict) -> None:
    """The version behind each non-200 answer, from nginx's access log (rid -> upstream)."""
    upstream = {}
    route = f"port={deployment.state['ports']['route']} "
    for line in (deployment.logs / "nginx-access.log").read_text().splitlines():
        if route in line:
            rid = re.search(r"rid=(\S+)", line)
            port = re.search(r"upstream=127\.0\.0\.1:(\d+)", line)
            if rid and port:
                upstream[rid.group(1)] = ports.get(int(port.group(1)), f"port {port.group(1)}")
    for a in answers:
        if a.status != 200 and a.version is None:
            a.version = upstream.get(a.rid)


# --------------------------------------------------------------------------- the timeline


class Timeline:
    """Records the serving side's changes and every check (time, step, percent, verdict,
    requests, gate values) by wrapping the deployment's methods; ``print()`` shows it."""

    CALLS = ("start_candidate", "set_percent", "promote", "rollback")

    def __init__(self, deployment: LocalDeployment, title: str):
        self.deployment, self.title = deployment, title
        self.began = time.time()
        self.rows: list[str] = []
        self.events: list[tuple[float, str, tuple]] = []
        self.ports: dict[int, str] = {}
        self.started: dict[str, float] = {}  # when the first call of each began
        self._note_ports()
        for name in self.CALLS:
            setattr(deployment, name, self._wrap(name, getattr(deployment, name)))
        self._annotate = deployment.annotate
        deployment.annotate = self._on_annotate

    def _note_ports(self) -> None:
        for role in ("stable", "candidate"):
            entry = self.deployment.state.get(role)
            if entry:
                self.ports[int(entry["port"])] = entry["version"]

    def _wrap(self, name, method):
        def wrapped(*args, **kwargs):
            t = time.time()
            self.started.setdefault(name, t)
            try:
                return method(*args, **kwargs)
            finally:
                self._note_ports()
                args = args + tuple(kwargs.values())
                self.events.append((time.time(), name, args))
                shown = ", ".join(
                    f"v{a.version}" if isinstance(a, ModelRef) else str(a) for a in args
                )
                self.rows.append(
                    f"{t - self.began:7.1f}s  {name}({shown}) took {time.time() - t:.1f} s"
                )

        return wrapped

    def _on_annotate(self, values):
        self._annotate(values)
        verdict = values.get(key("verdict"))
        if verdict:
            ann = self.deployment.state["annotations"]
            v = json.loads(verdict)
            gates = " ".join(
                f"{g}={'n/a' if x is None else f'{float(x):.4g}'}" for g, x in v["gates"].items()
            )
            n = "n/a" if v["requests"] is None else f"{v['requests']:.0f}"
            self.rows.append(
                f"{time.time() - self.began:7.1f}s  check step {ann.get(key('step'))} "
                f"{ann.get(key('percent'))}%: {v['verdict']:<12} requests {n}  {gates}"
            )

    def when(self, name: str) -> float | None:
        """When the first call ``name`` returned."""
        return next((t for t, n, _ in self.events if n == name), None)

    def close(self) -> None:
        for name in (*self.CALLS, "annotate"):
            self.deployment.__dict__.pop(name, None)
        print(self.text())

    def text(self) -> str:
        return f"--- {self.title}: timeline ---\n" + "\n".join(self.rows)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def trained(tmp_path_factory, bikeshare_csv):
    """A real fitted Bikeshare model, the files the serving image reads, and request rows
    (hours after the training rows)."""
    folder = tmp_path_factory.mktemp("rollout-trained")
    model_dir, lineage, example = fitted.registrable_model(folder, bikeshare_csv)
    schema = json.loads(serving.REQUEST_SCHEMA.read_text())
    schema["target"] = lineage.get("target", "bikers")
    rows = pd.read_csv(bikeshare_csv).iloc[3600:4600].reset_index(drop=True)
    buffer = io.BytesIO()
    rows[COLUMNS].head(200).to_parquet(buffer, index=False)
    extra = {
        REQUEST_SCHEMA_FILE: json.dumps(schema).encode(),
        CHECK_DATA_FILE: buffer.getvalue(),
    }
    return model_dir, lineage, example, extra, rows


@pytest.fixture(scope="module")
def registry(tracking_uri):
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # the S3 endpoint's access log
    return Registry(tracking_uri, actor="pytest-rollout-e2e")


@pytest.fixture(scope="module")
def register(registry, trained, tmp_path_factory):
    """register(*states) -> a ModelRef of a new version of the real model, downloaded from the
    registry (verified against its manifest) into a local folder."""
    model_dir, lineage, example, extra, _ = trained

    def make(*states: str) -> ModelRef:
        version = registry.register(NAME, model_dir, lineage, "s3://stats/e2e", example, extra)
        for state in states:
            registry.transition(NAME, version.version, state, reason=f"test: to {state}")
        dest = tmp_path_factory.mktemp(f"v{version.version}")
        path = registry.download(NAME, version.version, str(dest))
        return ModelRef(NAME, version.version, path, version.manifest_sha256)

    return make


@pytest.fixture(scope="module")
def deployment(built_images, docker_engine, register, tmp_path_factory):
    """The champion (version 1, production) serving behind nginx, scraped by Prometheus."""
    champion = register("staging", "production")
    work = tmp_path_factory.mktemp("rollout-e2e")
    with LocalDeployment(work, code_dir=ROOT) as local:
        local.deploy(champion)
        local.wait_ready(120)
        yield local


@pytest.fixture(scope="module")
def client(deployment, trained):
    c = Client(deployment.url, trained[4])
    yield c
    c.stop()


@pytest.fixture
def timeline(deployment, registry, request):
    t = Timeline(deployment, request.node.name)
    yield t
    t.close()
    # A test that failed mid-rollout leaves no candidate behind for the next one.
    traffic = deployment.get()
    if traffic is not None and traffic.candidate is not None:
        rollout.rollback(deployment, registry, NAME, "test teardown: a rollout was left open")


def run(deployment, registry, p, candidate, client=None, tag="", **kw) -> rollout.Outcome:
    """One rollout with the client sending live traffic during all of it (when given)."""
    if client is not None:
        client.start(tag or f"r{candidate.version}")
        time.sleep(2)  # the champion has requests in Prometheus' window before the rollout
    began = time.monotonic()
    try:
        out = Rollout(
            deployment, registry, deployment.prometheus_url, p, NAME, candidate, **kw
        ).run()
    finally:
        if client is not None:
            time.sleep(1)  # a little traffic after the end: the stable version answers it
            client.stop()
    print(
        f"rollout of version {candidate.version}: {out.phase} in {time.monotonic() - began:.1f} s"
    )
    return out


def champion_version(deployment) -> str:
    return deployment.get().stable.version


def assert_champion_answers_all(answers: list[Answer], champion: str) -> None:
    mine = [a for a in answers if a.version == champion]
    assert mine, "the champion answered nothing"
    bad = [a for a in answers if a.status != 200 and a.version in (champion, None)]
    assert not bad, f"failed requests not from the candidate: {bad[:5]}"


def history_reason(registry, version: str) -> str:
    last = registry.history(NAME, version)[-1]
    return f"{last.to_state}: {last.reason}"


# --------------------------------------------------------------------------- canary


def test_a_healthy_canary_goes_through_every_step_and_becomes_production(
    deployment, registry, register, client, timeline
):
    champion = champion_version(deployment)
    candidate = register("staging")

    out = run(deployment, registry, policy(), candidate, client)
    answers = client.answers
    attribute_errors(deployment, answers, timeline.ports)

    assert out.phase == rollout.PROMOTED, (out.reason, timeline.text())
    percents = [args[0] if n == "set_percent" else args[1] for _, n, args in timeline.events if n != "promote"]  # fmt: skip
    assert percents == [10, 50, 100] and timeline.events[-1][1] == "promote"
    assert [c["verdict"] for c in out.checks].count("pass") == 3
    assert "fail" not in [c["verdict"] for c in out.checks]
    assert registry.get(NAME, candidate.version).state == "production"
    assert registry.get(NAME, champion).state == "archived"
    assert registry.champion(NAME).version == candidate.version
    # Every client request answered, by one version or the other; the new one after promote.
    assert Counter(a.status for a in answers) == {200: len(answers)}, Counter(a.error for a in answers)  # fmt: skip
    promoted = timeline.when("promote")
    assert all(a.version == candidate.version for a in answers if a.sent > promoted)
    assert {a.version for a in answers} == {champion, candidate.version}


@pytest.mark.parametrize(
    "fault, gate",
    [
        (["--fault_error_rate=0.5"], "error_rate"),
        (["--fault_latency_ms=400"], "latency_p99"),
        (["--fault_prediction_shift=400"], "prediction_divergence"),
    ],
    ids=["errors", "latency", "shifted"],
)
def test_a_faulty_canary_is_rolled_back_within_max_failed_checks_while_the_champion_answers(
    deployment, registry, register, client, timeline, fault, gate
):
    champion = champion_version(deployment)
    candidate = register("staging")
    deployment.extra_args[candidate.version] = fault

    out = run(deployment, registry, policy(), candidate, client)
    answers = client.answers
    attribute_errors(deployment, answers, timeline.ports)

    assert out.phase == rollout.ROLLED_BACK, (out.reason, timeline.text())
    verdicts = [c["verdict"] for c in out.checks]
    assert verdicts.count("fail") == 2 and "pass" not in verdicts, verdicts
    assert [n for _, n, _ in timeline.events] == ["start_candidate", "rollback"]
    failing = {r["gate"] for c in out.checks if c["verdict"] == "fail" for r in c["gates"] if r["verdict"] == "fail"}  # fmt: skip
    assert gate in failing, failing
    # The registry: rolled back, naming the gate; the champion is still the champion.
    assert registry.get(NAME, candidate.version).state == "rolled_back"
    assert f"{gate}=" in history_reason(registry, candidate.version)
    assert registry.champion(NAME).version == champion
    # The clients: the champion failed nothing; only the candidate's answers failed, and
    # none after the rollback.
    assert_champion_answers_all(answers, champion)
    failed = [a for a in answers if a.status != 200]
    assert {a.version for a in failed} <= {candidate.version}
    back = timeline.when("rollback")
    assert not [a for a in answers if a.sent > back and (a.status != 200 or a.version != champion)]
    if gate == "error_rate":
        assert failed, "the faulty candidate failed no request"
        served = [a for a in answers if a.version == candidate.version]
        assert 0.25 < len(failed) / len(served) < 0.75, (len(failed), len(served))
    else:
        assert not failed
    print(f"client: {len(answers)} requests, {Counter((a.version, a.status) for a in answers)}")


# --------------------------------------------------------------------------- resume


class Killed(Exception):
    pass


def test_an_interrupted_rollout_resumes_at_its_step_with_a_new_rollout(
    deployment, registry, register, client, timeline
):
    champion = champion_version(deployment)
    candidate = register("staging")

    def dies_at_step_1(seconds):
        if deployment.state["annotations"].get(key("step")) == "1":
            raise Killed  # the process running the rollout dies
        time.sleep(seconds)

    client.start("resume")
    try:
        time.sleep(2)
        with pytest.raises(Killed):
            Rollout(
                deployment, registry, deployment.prometheus_url, policy(), NAME, candidate,
                sleep=dies_at_step_1,
            ).run()  # fmt: skip
        assert deployment.get().candidate_percent == 50
        assert deployment.get().annotations[key("phase")] == "running"
        assert registry.get(NAME, candidate.version).state == "canary"
        checks = int(deployment.get().annotations[key("checks")])
        # A new process: a new LocalDeployment on the same folder and a new Rollout.
        resumed = LocalDeployment(deployment.workdir, code_dir=ROOT)
        assert resumed.get().candidate_percent == 50
        after = Timeline(resumed, "after the resume")
        try:
            out = Rollout(
                resumed, registry, resumed.prometheus_url, policy(), NAME, candidate
            ).run()
        finally:
            after.close()
            deployment.state = deployment._load()  # the fixture's object reads the new state
    finally:
        time.sleep(1)
        answers = client.stop()
    attribute_errors(deployment, answers, timeline.ports)

    assert out.phase == rollout.PROMOTED, out.reason
    # Resumed at 50%: checked at step 1, then 100%; never back to 10%.
    assert [(n, args) for _, n, args in after.events] == [("set_percent", (100,)), ("promote", ())]
    assert "check step 1 50%" in "\n".join(after.rows)
    assert int(resumed.get().annotations[key("checks")]) > checks
    assert registry.get(NAME, candidate.version).state == "production"
    assert registry.get(NAME, champion).state == "archived"
    assert deployment.get().stable.version == candidate.version
    assert Counter(a.status for a in answers) == {200: len(answers)}


# --------------------------------------------------------------------------- blue-green


def test_blue_green_switches_back_within_one_check_when_the_candidate_degrades_in_the_bake(
    deployment, registry, register, client, timeline, docker_engine
):
    """The candidate is healthy through the smoke check; right after the switch its container
    is starved of CPU (a noisy neighbour: a quota of 25% of a CPU per 400 ms period, and a busy
    process in the container that eats most of it), so the server stalls for up to ~300 ms at
    a time under live traffic only: its p99 latency rises past the gate in the bake."""
    champion = champion_version(deployment)
    candidate = register("staging")
    smokes = []

    def smoke(url, count):
        session = requests.Session()
        for i in range(count):
            r = session.post(
                f"{url}/v2/models/{NAME}/infer",
                data=client.bodies[i % len(client.bodies)],
                headers={"content-type": "application/json", "x-request-id": f"smoke-{len(smokes)}-{i}"},
                timeout=20,
            )  # fmt: skip
            assert r.ok, r.text
        smokes.append(count)

    starved = []
    set_percent = deployment.set_percent

    def degrade_after_switch(percent):
        set_percent(percent)
        if percent == 100 and not starved:
            container = docker_engine.containers.get(deployment.state["candidate"]["container"])
            container.update(cpu_period=400000, cpu_quota=100000)
            container.exec_run(["sh", "-c", "while :; do :; done"], detach=True, user="root")
            starved.append(time.time())

    deployment.set_percent = degrade_after_switch
    try:
        out = run(
            deployment, registry, policy(strategy="blue_green"), candidate, client, smoke=smoke
        )
    finally:
        deployment.__dict__.pop("set_percent", None)
    answers = client.answers
    attribute_errors(deployment, answers, timeline.ports)

    assert out.phase == rollout.ROLLED_BACK, (out.reason, timeline.text())
    assert smokes and starved
    verdicts = [c["verdict"] for c in out.checks]
    assert verdicts[-1] == "fail" and verdicts.count("fail") == 1, verdicts
    # The smoke check passed at 0%, then exactly one failing check in the bake.
    assert "pass" in verdicts[:-1]
    percents = [args[0] for _, n, args in timeline.events if n == "set_percent"]
    assert percents == [100, 0], timeline.events
    assert [n for _, n, _ in timeline.events][-1] == "rollback"
    assert registry.get(NAME, candidate.version).state == "rolled_back"
    assert "latency_p99=" in history_reason(registry, candidate.version)
    assert registry.champion(NAME).version == champion
    assert Counter(a.status for a in answers) == {200: len(answers)}
    back = [t for t, n, args in timeline.events if n == "set_percent" and args == (0,)][0]
    assert {a.version for a in answers if a.sent > back} == {champion}


# --------------------------------------------------------------------------- shadow


@pytest.mark.parametrize("shift", [400, 0], ids=["shifted", "equal"])
def test_a_shadow_never_answers_a_client_and_is_judged_on_agreement(
    deployment, registry, register, client, timeline, shift
):
    champion = champion_version(deployment)
    candidate = register("staging")
    if shift:
        deployment.extra_args[candidate.version] = [f"--fault_prediction_shift={shift}"]
    since = time.time()
    values = []

    def probe():
        values.append(shadow_agreement(deployment.capture_dir, champion, candidate.version, since))
        return values[-1]

    p = policy(strategy="shadow", gates=[{"type": "error_rate", "threshold": 0.05}, {"type": "latency_p99", "threshold": 0.1}])  # fmt: skip
    out = run(deployment, registry, p, candidate, client, probes={"shadow_agreement": probe})
    answers = client.answers
    attribute_errors(deployment, answers, timeline.ports)
    print(f"shadow agreement per check: {values}")

    starts = [args for _, n, args in timeline.events if n == "start_candidate"]
    assert starts == [(candidate, 0, True)], starts  # mirrored, no live share
    assert not [e for e in timeline.events if e[1] == "set_percent"]
    # Every client answer came from the champion (until a promotion, for the equal one).
    promoted = timeline.when("promote") or float("inf")
    before = [a for a in answers if a.done < timeline.started.get("promote", promoted)]
    assert Counter((a.version, a.status) for a in before) == {(champion, 200): len(before)}
    assert all(a.version == candidate.version for a in answers if a.sent > promoted)
    known = [v for v in values if v is not None]
    assert known
    if shift:
        assert out.phase == rollout.ROLLED_BACK, (out.reason, timeline.text())
        assert max(known) < 0.1
        assert registry.get(NAME, candidate.version).state == "rolled_back"
        assert "shadow_agreement=" in history_reason(registry, candidate.version)
        assert registry.champion(NAME).version == champion
    else:
        assert out.phase == rollout.PROMOTED, (out.reason, timeline.text())
        assert min(known) == 1.0
        assert registry.champion(NAME).version == candidate.version


# --------------------------------------------------------------------------- no traffic


def test_with_no_traffic_no_gate_passes_and_the_inconclusive_policy_is_followed(
    deployment, registry, register, timeline
):
    champion = champion_version(deployment)
    candidate = register("staging")
    p = policy(interval_seconds=2, inconclusive={"max_checks": 3, "then": "pause"})

    out = run(deployment, registry, p, candidate)

    assert out.phase == rollout.PAUSED, (out.reason, timeline.text())
    assert [c["verdict"] for c in out.checks] == ["inconclusive"] * 3
    assert all(r["verdict"] == "inconclusive" for c in out.checks for r in c["gates"])
    assert "3 inconclusive checks" in out.reason
    assert registry.get(NAME, candidate.version).state == "canary"
    assert deployment.get().candidate_percent == 10  # held where it was, for the operator
    # The operator rolls it back; the champion never changed.
    done = rollout.rollback(deployment, registry, NAME, "no traffic to judge it on")
    assert done.phase == rollout.ROLLED_BACK and deployment.get().candidate is None
    assert registry.get(NAME, candidate.version).state == "rolled_back"
    assert registry.champion(NAME).version == champion


def test_the_deployment_stops_everything(deployment, docker_engine):
    from pipelines.local_rollout import LABEL, _alive

    nginx, prometheus = deployment._nginx_pid(), deployment.state["prometheus_pid"]
    deployment.close()
    assert not docker_engine.containers.list(all=True, filters={"label": f"{LABEL}={deployment.workdir}"})  # fmt: skip
    assert not _alive(nginx, "nginx") and not _alive(prometheus, "prometheus")
