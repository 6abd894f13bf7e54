"""A real Prometheus for tests, and a model server's metrics whose traffic a test controls.

* :class:`LocalPrometheus`: Debian's ``/usr/bin/prometheus`` as a subprocess (its own data
  folder, a free loopback port, ``scrape_interval`` 1 s) scraping the given targets;
  :meth:`~LocalPrometheus.query` and :meth:`~LocalPrometheus.wait_for` for tests.
* :class:`ServingMetrics`: the series of ``components/serving/metrics.py`` (same names,
  labels and latency buckets) in a ``prometheus_client`` registry of its own, served on a
  free port, with a background thread that "answers" requests per model and version at the
  rates a test routes (e.g. following a fake deployment's traffic split), each request with
  the behaviour the test sets: error ratio, latency, prediction distribution.

Reusable by any test that needs gates, dashboards or alert rules judged on real PromQL.
"""

from __future__ import annotations

import contextlib
import random
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PREDICTION_BUCKETS = tuple(float(b) for b in range(0, 1001, 50))


class LocalPrometheus:
    """``prometheus`` scraping ``targets`` (``host:port`` strings) every ``scrape_interval``."""

    def __init__(self, folder: Path, targets: list[str], scrape_interval: str = "1s"):
        from pipelines.local_s3 import free_port

        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = self.folder / "prometheus.yml"
        config.write_text(
            "global:\n"
            f"  scrape_interval: {scrape_interval}\n"
            f"  evaluation_interval: {scrape_interval}\n"
            "scrape_configs:\n"
            "  - job_name: serving\n"
            "    static_configs:\n"
            f"      - targets: [{', '.join(repr(t) for t in targets)}]\n"
        )
        self.log_path = self.folder / "prometheus.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={config}",
                f"--storage.tsdb.path={self.folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self._wait_ready()

    def _wait_ready(self, timeout: float = 30.0) -> None:
        import requests

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(
            f"prometheus did not get ready on {self.url}: {self.log_path.read_text()[-2000:]}"
        )

    def query(self, promql: str) -> list:
        import requests

        body = requests.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=5).json()
        assert body["status"] == "success", body
        return body["data"]["result"]

    def wait_for(self, promql: str, timeout: float = 30.0) -> list:
        """Until ``promql`` returns a non-empty result (e.g. ``... > 20``)."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.query(promql)
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"no result for {promql} after {timeout} s")
            time.sleep(0.25)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._log.close()


@dataclass
class Behaviour:
    """How one model version answers: the share of 500s, the latency (seconds, +-10%), and
    the predictions (normal, mean and standard deviation)."""

    error_ratio: float = 0.0
    latency: float = 0.004
    mean: float = 200.0
    sd: float = 50.0


class ServingMetrics:
    """A model server's ``/metrics`` with traffic under the test's control."""

    def __init__(self, tick: float = 0.1, seed: int = 7):
        from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

        from components.serving.metrics import LATENCY_BUCKETS
        from pipelines.local_s3 import free_port

        self.registry = CollectorRegistry()
        self.requests = Counter(
            "loopline_requests_total",
            "Inference requests answered",
            ["model", "version", "protocol", "code"],
            registry=self.registry,
        )
        self.errors = Counter(
            "loopline_request_errors_total",
            "Inference errors by kind",
            ["model", "version", "kind"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "loopline_request_duration_seconds",
            "Request latency",
            ["model", "version", "protocol"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.prediction = Histogram(
            "loopline_prediction",
            "Predicted values",
            ["model", "version"],
            buckets=PREDICTION_BUCKETS,
            registry=self.registry,
        )
        self.port = free_port()
        self.target = f"127.0.0.1:{self.port}"
        self._server, _ = start_http_server(self.port, addr="127.0.0.1", registry=self.registry)
        self._behaviour: dict[tuple[str, str], Behaviour] = {}
        self._routes: dict[str, Callable[[], dict[str, float]]] = {}
        self._owed: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()
        self._random = random.Random(seed)
        self._tick = tick
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="serving-metrics", daemon=True)
        self._thread.start()

    def behave(self, model: str, version: str, **kwargs) -> None:
        """Sets how ``model`` ``version`` answers from now on (creates its series at 0)."""
        with self._lock:
            self._behaviour[(model, str(version))] = Behaviour(**kwargs)
            for code in ("200", "500"):
                self.requests.labels(model, str(version), "v2", code).inc(0)
            self.errors.labels(model, str(version), "internal").inc(0)
            self.latency.labels(model, str(version), "v2")
            self.prediction.labels(model, str(version))

    def route(self, model: str, split: Callable[[], dict[str, float]]) -> None:
        """``split()`` gives requests per second by version, read every tick."""
        with self._lock:
            self._routes[model] = split

    def burst(self, model: str, version: str, count: int) -> None:
        """``count`` requests to one version now (a smoke test)."""
        with self._lock:
            for _ in range(count):
                self._answer(model, str(version))

    def _answer(self, model: str, version: str) -> None:
        b = self._behaviour.get((model, version)) or Behaviour()
        failed = self._random.random() < b.error_ratio
        code = "500" if failed else "200"
        self.requests.labels(model, version, "v2", code).inc()
        seconds = b.latency * self._random.uniform(0.9, 1.1)
        self.latency.labels(model, version, "v2").observe(seconds)
        if failed:
            self.errors.labels(model, version, "internal").inc()
        else:
            self.prediction.labels(model, version).observe(self._random.gauss(b.mean, b.sd))

    def _loop(self) -> None:
        last = time.monotonic()
        while not self._stop.wait(self._tick):
            now = time.monotonic()
            dt, last = now - last, now
            with self._lock:
                for model, split in list(self._routes.items()):
                    try:
                        rates = split()
                    except Exception:  # noqa: BLE001 - a broken route sends nothing
                        continue
                    for version, rate in rates.items():
                        owed = self._owed.get((model, version), 0.0) + rate * dt
                        whole = int(owed)
                        self._owed[(model, version)] = owed - whole
                        for _ in range(whole):
                            self._answer(model, str(version))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._server.shutdown()
        self._server.server_close()
