"""Online feature lookups through the serving image's server: requests/s and p99 of one-row V2
requests that carry only the entity and the time (the model server fetches the other inputs
from the Feast feature server), beside the same row sent with every feature, in one run.

    .venv/bin/python bench/online_features.py [--duration 6] [--warmup 2] [--connections 1,8]
        [--out bench/results/online_features.json]

Set-up (about 25 s): the Bikeshare year materialized into an embedded store (SQLite online
store; ``components.materialize.executor`` in .venv-features), ``feast serve`` on it (one
gunicorn worker, the default; no access log; ``--max-requests 0``), the Bikeshare model
version (tests/serving.make_version) served by two ``python -m components.serving`` processes
from .venv-serving with ``--feature_server_url``, one with ``--feature_calendar server`` (the
default) and one with ``local`` (one worker each, no capture, OMP_NUM_THREADS=1; only the one
a row measures gets requests).
Before measuring, the lookup request's prediction must equal the full request's
(bit-identical), else the benchmark stops.

Rows, each wrk ``--latency`` for ``--warmup`` s (discarded) then ``--duration`` s, at each
connection count:

* ``full``: the row with every model input (the V2 JSON fast lane, no store call): the peer;
* ``lookup``: only ``city`` and ``event_time`` (2011-12-31T23:30Z, within the weather TTL of
  the last observation): the model server calls ``POST /get-online-features`` (both views,
  the on-demand ``calendar`` computed by the feature server), checks the TTL, validates and
  predicts;
* ``lookup_local``: the same request to the ``--feature_calendar local`` server: only the
  weather view from the feature server, the calendar computed in the model server;
* ``feast`` and ``feast_weather``: the two ``/get-online-features`` calls sent to the feature
  server directly (what each lookup adds, measured alone).

Per row: requests/s, p50 / p99 (ms), errors (any error fails the row), and the CPU cores used
by the model server, the feature server and wrk. Everything shares this machine's cores (two
here): the lookup row runs three processes on them. Writes bench/results/online_features.json
and online_features.md; logs to .build/bench/online_features/.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import feature_server, serving  # noqa: E402

_spec = importlib.util.spec_from_file_location("bench_serving", ROOT / "bench" / "serving.py")
bench_serving = importlib.util.module_from_spec(_spec)
sys.modules["bench_serving"] = bench_serving  # its dataclasses look their module up
_spec.loader.exec_module(bench_serving)

MODEL = "bikeshare"
CITY = "washington_dc"
WHEN = "2011-12-31T23:30:00Z"
COLUMNS = ["temp", "atemp", "hum", "windspeed", "hr", "mnth", "weekday", "season", "weathersit", "holiday", "workingday"]  # fmt: skip
STRINGS = {"mnth", "weathersit"}
FLOATS = {"temp", "atemp", "hum", "windspeed"}
FEATURE_REFS = [f"weather:{c}" for c in ("weathersit", "temp", "atemp", "hum", "windspeed")] + [
    f"calendar:{c}" for c in ("hr", "weekday", "mnth", "workingday", "holiday", "season")
]


def bodies(csv: Path) -> dict[str, str]:
    import pandas as pd

    row = pd.read_csv(csv).iloc[-1]  # 2011-12-31 23:00, the last observation
    full = {
        "inputs": [
            {
                "name": c,
                "shape": [1],
                "datatype": "BYTES" if c in STRINGS else "FP64" if c in FLOATS else "INT64",
                "data": [row[c].item() if hasattr(row[c], "item") else row[c]],
            }
            for c in COLUMNS
        ]
    }
    lookup = {
        "inputs": [
            {"name": "city", "shape": [1], "datatype": "BYTES", "data": [CITY]},
            {"name": "event_time", "shape": [1], "datatype": "BYTES", "data": [WHEN]},
        ]
    }
    feast = {"entities": {"city": [CITY], "event_timestamp": [WHEN]}, "features": FEATURE_REFS}
    weather = {"entities": {"city": [CITY]}, "features": FEATURE_REFS[:5]}
    out = {"full": full, "lookup": lookup, "lookup_local": lookup, "feast": feast}
    return {k: json.dumps(v) for k, v in {**out, "feast_weather": weather}.items()}


def start_model_server(version: tuple[str, str], url: str, log: Path, *extra: str) -> tuple:
    port = bench_serving.free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    directory, manifest = version
    proc = subprocess.Popen(
        [str(serving.SERVING_PYTHON), "-m", "components.serving", "--http_port", str(port),
         "--enable_grpc", "false", "--model_name", MODEL, "--model_dir", directory,
         "--manifest_sha256", manifest, "--model_version", "1", "--feature_server_url", url,
         *extra],
        stdout=log.open("w"), stderr=subprocess.STDOUT, env=env, cwd=str(ROOT),
        start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the model server exited: {log.read_text()[-2000:]}")
        try:
            if requests.get(f"{base}/v2/models/{MODEL}/ready", timeout=1).status_code == 200:
                return proc, base
        except requests.ConnectionError:
            pass
        time.sleep(0.3)
    raise RuntimeError("the model server did not become ready")


def measure(url: str, body: str, connections: int, args, build: Path, groups: dict) -> dict:
    script = build / f"body-{abs(hash(body))}.lua"
    script.write_text(bench_serving.lua_script(body))
    log = build / "wrk.log"
    if args.warmup:
        bench_serving.run_wrk(url, script, connections, args.warmup, log)
    before = {k: bench_serving._group_cpu_s(g) for k, g in groups.items()}
    began = time.monotonic()
    figures = bench_serving.run_wrk(url, script, connections, args.duration, log)
    elapsed = time.monotonic() - began
    figures["cpu_cores"] = {
        **{
            k: round((bench_serving._group_cpu_s(g) - before[k]) / elapsed, 2)
            for k, g in groups.items()
        },
        "wrk": figures["cpu_cores"]["wrk"],
    }
    # run_wrk's "other" counts every process but wrk (it was given no group): take ours out.
    figures["cpu_cores"]["other"] = round(
        max(
            0.0,
            figures["cpu_cores"].get("other", 0.0)
            - figures["cpu_cores"]["model_server"]
            - figures["cpu_cores"]["feature_server"],
        ),
        2,
    )
    return figures


def table(rows: list[dict]) -> str:
    lines = [
        "| request | path | connections | requests/s | p50 ms | p99 ms | errors | CPU cores: model server / feature server / wrk / other work |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    paths = {
        "full": "every feature in the request (V2 JSON fast lane, no store call)",
        "lookup": "only city + event_time; model server -> feast serve (weather + on-demand calendar) -> SQLite",
        "lookup_local": "the same, `--feature_calendar local`: weather from feast serve, calendar in the model server",
        "feast": "POST /get-online-features, both views, to feast serve directly",
        "feast_weather": "POST /get-online-features, weather only, to feast serve directly",
    }
    for r in rows:
        cpu = r["cpu_cores"]
        lines.append(
            f"| {r['request']} | {paths[r['request']]} | {r['connections']} | {r['rps']:.0f} | "
            f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['errors']} | "
            f"{cpu['model_server']} / {cpu['feature_server']} / {cpu['wrk']} / {cpu['other']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=6.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--connections", default="1,8")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "online_features.json"))
    args = parser.parse_args(argv)
    conns = [int(c) for c in args.connections.split(",")]
    build = ROOT / ".build" / "bench" / "online_features"
    build.mkdir(parents=True, exist_ok=True)
    csv = ROOT / "examples" / "bikeshare" / "bikeshare.csv"
    began = time.monotonic()
    store = feature_server.materialize(csv, build / "store-run")
    feast = feature_server.FeatureServer(store, build / "feast.log")
    model = local = None
    try:
        feast.wait_ready()
        import shutil

        shutil.rmtree(build / "version", ignore_errors=True)
        (build / "version").mkdir()
        directory, manifest, _ = serving.make_version(build / "version", csv)
        model, base = start_model_server((directory, manifest), feast.url, build / "server.log")
        local, local_base = start_model_server(
            (directory, manifest), feast.url, build / "server-local.log",
            "--feature_calendar", "local",
        )  # fmt: skip
        setup_s = time.monotonic() - began
        texts = bodies(csv)
        infer = f"{base}/v2/models/{MODEL}/infer"
        infer_local = f"{local_base}/v2/models/{MODEL}/infer"
        targets = {
            "full": infer,
            "lookup": infer,
            "lookup_local": infer_local,
            "feast": f"{feast.url}/get-online-features",
            "feast_weather": f"{feast.url}/get-online-features",
        }
        predictions = {}
        for k in ("full", "lookup", "lookup_local"):
            a = requests.post(
                targets[k], data=texts[k], headers={"content-type": "application/json"}
            )
            if a.status_code != 200:
                raise RuntimeError(f"{k} request: {a.status_code} {a.text}")
            predictions[k] = a.json()["outputs"][0]["data"]
        full_pred = predictions["full"]
        if not predictions["lookup"] == predictions["lookup_local"] == full_pred:
            raise RuntimeError(f"lookup predictions {predictions} differ")
        rows = []
        for c in conns:
            for request in targets:
                server_pid = local.pid if request == "lookup_local" else model.pid
                groups = {"model_server": server_pid, "feature_server": feast.process.pid}
                figures = measure(targets[request], texts[request], c, args, build, groups)
                rows.append({"request": request, "connections": c, **figures})
                print(
                    f"{request:7s} c={c}: {figures['rps']:.0f} req/s, p50 {figures['p50_ms']:.2f} "
                    f"ms, p99 {figures['p99_ms']:.2f} ms, errors {figures['errors']}, cpu "
                    f"{figures['cpu_cores']}",
                    flush=True,
                )
                if figures["errors"]:
                    raise RuntimeError(f"{request} at {c} connections: {figures['errors']} errors")
        lookups = requests.get(f"{base}/metrics", timeout=5).text
        ok = sum(
            float(line.rsplit(" ", 1)[1])
            for line in lookups.splitlines()
            if line.startswith("loopline_feature_lookups_total{") and 'outcome="ok"' in line
        )
    finally:
        for proc in (model, local):
            if proc is not None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=20)
        feast.stop()
    result = {
        "command": " ".join(["python bench/online_features.py", *(argv or sys.argv[1:])]),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "request_time": WHEN,
        "prediction": full_pred[0],
        "lookup_equals_full": True,
        "lookups_ok_counted": ok,
        "setup_s": round(setup_s, 1),
        "total_s": round(time.monotonic() - began, 1),
        "rows": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    md = (
        f"Online feature lookups through the model server ({os.cpu_count()} cores shared by "
        f"wrk, the model server and the feature server; one-row V2 requests; "
        f"{args.duration:g} s per row after {args.warmup:g} s of warm-up). The lookup's "
        f"prediction equals the full request's (bit-identical): {full_pred[0]!r}.\n\n"
        + table(rows)
        + f"\n`{result['command']}` (set-up {result['setup_s']} s, total {result['total_s']} s)\n"
    )
    out.with_suffix(".md").write_text(md)
    print(md)
    return result


if __name__ == "__main__":
    main()
