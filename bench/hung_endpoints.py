"""How long each client waits on a hung endpoint before it fails, with the default limits.

    .venv/bin/python bench/hung_endpoints.py

A hung endpoint (tests/hung.py: a loopback socket that accepts and never answers) per
client kind; every call runs at once in its own thread, with the limits of
components/lib/network.py as the environment leaves them (unset: the defaults). Prints a
Markdown table (seconds until the error, connections the endpoint accepted, the error's
first words); writes bench/results/hung_endpoints.json. Takes about as long as the slowest
kind, about four minutes.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT = ROOT / "bench" / "results" / "hung_endpoints.json"

from components.lib import gates, network, schedule, storage  # noqa: E402
from components.lib.inferenceservice import cluster_api  # noqa: E402
from components.lib.registry import Registry  # noqa: E402
from tests.hung import HungServer  # noqa: E402


def _kubernetes(h: HungServer) -> None:
    path = os.path.join(tempfile.mkdtemp(), "kubeconfig")
    Path(path).write_text(
        f"""apiVersion: v1
kind: Config
clusters: [{{name: c, cluster: {{server: "{h.url}"}}}}]
users: [{{name: u, user: {{token: t}}}}]
contexts: [{{name: x, context: {{cluster: c, user: u}}}}]
current-context: x
"""
    )
    cluster_api(path).get_namespaced_custom_object(
        "serving.kserve.io", "v1beta1", "ns", "inferenceservices", "m"
    )


CALLS = {
    "s3: storage.read_object": ("s3", lambda h: storage.read_object("s3://bucket/k", h.endpoint)),
    "kubernetes: get an InferenceService": ("kubernetes", _kubernetes),
    "kfp: schedule.connect (healthz)": ("kfp", lambda h: schedule.connect(h.url)),
    "http: Prometheus query": ("http", lambda h: gates.Prometheus(h.url).query("up")),
    "mlflow: Registry.get": ("mlflow", lambda h: Registry(h.url).get("m", 1)),
}


def _limits(kind: str) -> str:
    if kind == "mlflow":
        values = network.mlflow_env()
        return (
            f"read {values['MLFLOW_HTTP_REQUEST_TIMEOUT']} s, "
            f"{values['MLFLOW_HTTP_REQUEST_MAX_RETRIES']} retries"
        )
    return network.limits(kind).describe()


def main() -> int:
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    import logging

    logging.disable(logging.CRITICAL)
    rows: dict[str, dict] = {}

    def measure(label: str, kind: str, call) -> None:
        with HungServer() as hung:
            began = time.monotonic()
            try:
                call(hung)
                error = "(returned)"
            except Exception as exc:  # noqa: BLE001 - what the caller would see
                error = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
            rows[label] = {
                "limits": _limits(kind),
                "seconds": round(time.monotonic() - began, 1),
                "connections": hung.accepted,
                "error": error[:400],
            }

    threads = [
        threading.Thread(target=measure, args=(label, kind, call))
        for label, (kind, call) in CALLS.items()
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print("| call | limits | seconds to fail | connections | error |")
    print("|---|---|---|---|---|")
    for label in CALLS:
        r = rows[label]
        print(
            f"| {label} | {r['limits']} | {r['seconds']} | {r['connections']} | "
            f"{r['error'][:90]}... |"
        )
    OUT.write_text(json.dumps(rows, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
