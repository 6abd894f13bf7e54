"""`make demo`: the Loopline loop on the Bikeshare data, every task in its container.

The snapshot is put in an object store first, as on a cluster (MinIO there; here a
real S3 API endpoint on loopback, moto's server), and the training pipeline reads it
through the same ``s3://`` path and MinIO client; a real MLflow tracking server (sqlite
store, artifacts on that endpoint) is the model registry. The training pipeline runs twice:
on January to June 2011 (the natural first training window: the data gate reports the
season's temperature drift against the schema's whole-year reference and lets it train; the
model has no champion, passes the evaluation gate's thresholds and becomes production), then
on January to September (validated against the champion's training statistics, judged
against the champion on the same holdout: promoted to staging or rejected, with reasons).
After each run it prints the gate's decision, its scorecard and the registry's state.
Tasks run with kfp.local.DockerRunner on the images ``make images`` built; containers
share the host network to reach the endpoint.

The terminal shows one line per task (name, state, seconds) and then the summary; each
task's full log is in ``<run folder>/logs/<task>.log`` (``--verbose`` streams them). On a
failure the failing task's last lines and the path of its log are shown. At the end the
script lists every artifact: where it is and what it holds.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import shutil
import sys
import time
import warnings
from pathlib import Path

from components import _images
from components.lib import logs
from pipelines import local as local_run
from pipelines import local_mlflow, local_s3
from pipelines.training.pipeline import training_pipeline

HERE = Path(__file__).resolve().parent
SNAPSHOT = HERE / "bikeshare.csv"
BUCKET, KEY = "loopline-demo", "snapshots/bikeshare/2011.csv"
# Credentials of the throwaway loopback endpoint; on a cluster they come from a Secret.
DEMO_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "loopline-demo",
    "AWS_SECRET_ACCESS_KEY": "loopline-demo-secret",
}


def start_object_store():
    """Starts an S3 endpoint on loopback and uploads the snapshot; returns the running store."""
    store = local_s3.start(DEMO_CREDENTIALS)
    client = store.client()
    client.make_bucket(BUCKET)
    client.fput_object(BUCKET, KEY, str(SNAPSHOT), content_type="text/csv")
    print(
        f"demo: object store at {store.endpoint}; uploaded {SNAPSHOT.name} to s3://{BUCKET}/{KEY}"
    )
    return store


def describe(meta: dict) -> str:
    """One line about an artifact, from its metadata."""
    if "model_type" in meta:
        scores = ", ".join(f"{k} {v:.4g}" for k, v in meta["eval_metrics"].items())
        return (
            f"{meta['model_type']} {meta['task']}, eval {scores}; sha256 {meta['sha256'][:16]}, "
            f"data {meta['data_sha256'][:12]}, schema {meta['schema_version']}, transform {meta['transform_version']}"
        )
    if "transform_version" in meta:
        return (
            f"transform {meta['transform_version']}: {len(meta['features_in'])} features -> "
            f"{len(meta['features_out'])} columns, fitted on {int(meta['fitted_rows'])} train rows"
        )
    if "num_columns" in meta:
        return (
            f"{int(meta['rows'])} rows x {int(meta['num_columns'])} cols, sha256 {meta['sha256']}"
        )
    if "best_value" in meta:
        return f"best objective {meta['best_value']:.5g} over {int(meta['trials'])} trials"
    parts = [f"schema {meta['schema_version']}"] if "schema_version" in meta else []
    if "rows" in meta:
        parts.append(", ".join(f"{k}: {int(v)} rows" for k, v in meta["rows"].items()))
    if "count" in meta:
        parts.append(
            f"{int(meta['count'])} blocking"
            + (f" in {', '.join(meta['columns'])}" if meta["columns"] else "")
        )
    if "reported" in meta:
        parts.append(
            f"{int(meta['reported'])} drift findings reported"
            + (f" ({', '.join(meta['reported_columns'])})" if meta["reported_columns"] else "")
        )
    if not parts and meta:
        parts.append(
            ", ".join(f"{k} {v:.4g}" for k, v in meta.items() if isinstance(v, int | float))
        )
    return "; ".join(parts)


SUMMARY_LINES = 16  # of each Markdown report on the terminal; the files hold the rest


def print_artifacts(run_dir: Path) -> None:
    print(f"\ndemo: run folder {run_dir}")
    records = local_run.run_artifacts(run_dir)
    for record in records:
        print(
            f"  {record.task:<14} {record.name:<12} {describe(record.metadata)}\n  {'':<27} {record.uri}"
        )
    for record in records:
        if record.name in ("report", "summary") and not record.uri.endswith(".html"):
            text = Path(record.uri).read_text()
            if not text.lstrip().startswith("<"):
                lines = text.rstrip().splitlines()
                shown = "\n".join(lines[:SUMMARY_LINES])
                more = f"\n... ({len(lines) - SUMMARY_LINES} more lines in the file)"
                print(
                    f"\n--- {record.task} {record.name} ({record.uri}) ---\n{shown}"
                    + (more if len(lines) > SUMMARY_LINES else "")
                )


# The two runs: the first model has no champion (judged on thresholds alone, it becomes
# production); the second, trained on more of the year, is judged against it.
RUNS = [("January to June", "1", "182"), ("January to September", "1", "274")]
MODEL_NAME = "bikeshare"


def start_registry(root: Path, store):
    """A real MLflow tracking server on loopback: sqlite store under the pipeline root,
    artifacts on the demo's S3 endpoint (as MinIO on a cluster). Both start empty on every
    demo: the object store lives in memory, so a registry kept from an earlier demo would
    name artifacts that are gone."""
    shutil.rmtree(root / "mlflow", ignore_errors=True)
    server = local_mlflow.start(
        root / "mlflow",
        store.endpoint,
        DEMO_CREDENTIALS,
        progress=lambda line: print(f"demo: {line}"),
    )
    print(
        f"demo: MLflow tracking server (the model registry) at {server.url}, healthy in "
        f"{server.started_in:.1f} s; the MLflow UI is at that address while the demo runs"
    )
    return server


def registry_state(tracking_uri: str) -> list[str]:
    from components.lib.registry import Registry

    registry = Registry(tracking_uri)
    return [
        f"  {v.name} version {v.version}: {v.state}"
        + (" (champion)" if "champion" in v.aliases else "")
        + f", data {str(v.lineage.get('data_sha256', ''))[:12]}, run {v.lineage.get('pipeline_run_id', '')}"
        for v in registry.versions(MODEL_NAME)
    ]


def print_judgement(run_dir: Path, tracking_uri: str) -> None:
    """The evaluation gate's decision and scorecard, and the registry after the run."""
    evaluation = json.loads((run_dir / "evaluate" / "evaluation" / "evaluation.json").read_text())
    print(f"\ndemo: evaluation gate: {evaluation['decision'].upper()}")
    scorecard = (run_dir / "evaluate" / "scorecard").read_text().rstrip().splitlines()
    print("\n".join(f"  {line}" for line in scorecard[:SUMMARY_LINES]))
    if len(scorecard) > SUMMARY_LINES:
        print(
            f"  ... ({len(scorecard) - SUMMARY_LINES} more lines in {run_dir / 'evaluate' / 'scorecard'})"
        )
    print("demo: registry:")
    print("\n".join(registry_state(tracking_uri)))


SERVED_ROWS = 200  # requests sent to the champion: October 2011 hours, one row each
CAPTURE = f"s3://{BUCKET}/capture"


def serve_champion(tracking_uri: str, artifacts_destination: str, store) -> None:
    """The champion in the serving image, as KServe would run it, with real requests.

    The container gets the ServingRuntime's arguments plus the version and the registry to
    verify it against; it fetches the version from the object store, checks its manifest
    against the registry's record, and captures every request to ``CAPTURE``. The demo sends
    it one-row V2 requests for hours it never trained on (their event time set), one bad
    request, and shows the answers, the server's metrics and the captured rows.
    """
    import io
    import statistics

    import pandas as pd
    import pyarrow.parquet as pq
    import requests

    from components.lib.registry import Registry
    from pipelines import local_serving

    champion = Registry(tracking_uri).champion(MODEL_NAME)
    if champion is None:
        print("demo: no champion to serve")
        return
    uri = local_serving.model_uri(champion.source, artifacts_destination)
    print(f"\ndemo: serving the champion, {MODEL_NAME} version {champion.version}, from {uri}")
    began = time.monotonic()
    server = local_serving.start(
        MODEL_NAME,
        [f"--model_dir={uri}", f"--registry_uri={tracking_uri}",
         f"--model_version={champion.version}", f"--capture_uri={CAPTURE}",
         "--capture_flush_seconds=1"],
        {"S3_ENDPOINT": store.endpoint, **DEMO_CREDENTIALS},
        progress=lambda line: print(f"demo:   {line}"),
    )  # fmt: skip
    try:
        ready_line = next(
            (ln for ln in server.logs().splitlines() if "ready in" in ln), "ready"
        ).split("loopline.serving ", 1)[-1]
        print(f"demo:   {ready_line} ({time.monotonic() - began:.1f} s with the container)")
        data = pd.read_csv(SNAPSHOT)
        rows = data[data["mnth"] == "Oct"].head(SERVED_ROWS).reset_index(drop=True)
        # The model's inputs as the server describes them (V2 model metadata).
        meta = requests.get(f"{server.url}/v2/models/{MODEL_NAME}", timeout=5).json()["inputs"]
        session = requests.Session()
        latencies, predictions = [], []
        for i, row in rows.iterrows():
            event = pd.Timestamp("2011-01-01", tz="UTC") + pd.Timedelta(
                days=int(row["day"]) - 1, hours=int(row["hr"])
            )
            body = {
                "id": f"demo-{i}",
                "parameters": {"event_time": event.isoformat()},
                "inputs": [
                    {"name": m["name"], "shape": [1], "datatype": m["datatype"],
                     "data": [row[m["name"]].item() if hasattr(row[m["name"]], "item") else row[m["name"]]]}
                    for m in meta
                ],
            }  # fmt: skip
            sent = time.perf_counter()
            answer = session.post(
                f"{server.url}/v2/models/{MODEL_NAME}/infer", json=body, timeout=10
            )
            latencies.append(time.perf_counter() - sent)
            answer.raise_for_status()
            predictions.append(answer.json()["outputs"][0]["data"][0])
        error = (pd.Series(predictions) - rows["bikers"]).pow(2).mean() ** 0.5
        print(
            f"demo:   {len(rows)} one-row V2 requests (October 2011, never trained on): "
            f"median {statistics.median(latencies) * 1000:.1f} ms per request from Python, "
            f"RMSE {error:.1f} against the real counts"
        )
        for i in range(3):
            print(
                f"demo:     request demo-{i} (day {rows.loc[i, 'day']}, {rows.loc[i, 'hr']}h): "
                f"predicted {predictions[i]:.0f}, actual {rows.loc[i, 'bikers']}"
            )
        bad = json.loads(json.dumps(body))
        bad["inputs"][[m["name"] for m in meta].index("hr")]["data"] = [31]
        answer = session.post(f"{server.url}/v2/models/{MODEL_NAME}/infer", json=bad, timeout=10)
        print(
            f"demo:   a bad request (hr = 31): HTTP {answer.status_code} {answer.json()['error']}"
        )
        deadline = time.monotonic() + 30
        captured = []
        client = store.client()
        while time.monotonic() < deadline and len(captured) < len(rows):
            captured = []
            for obj in client.list_objects(BUCKET, prefix="capture/", recursive=True):
                blob = client.get_object(BUCKET, obj.object_name).read()
                captured += [
                    (obj.object_name, r["request_id"])
                    for r in pq.read_table(io.BytesIO(blob)).to_pylist()
                ]
            time.sleep(0.5)
        hours = sorted({name.split("/hour=")[1].split("/")[0] for name, _ in captured})
        print(
            f"demo:   captured {len(captured)} rows to {CAPTURE} in {len(hours)} hour partitions "
            f"by event time ({hours[0] if hours else '-'} .. {hours[-1] if hours else '-'})"
        )
        metrics = requests.get(f"{server.url}/metrics", timeout=5).text.splitlines()
        shown = [ln for ln in metrics if ln.startswith(("loopline_requests_total{", "loopline_request_errors_total{", "loopline_model_info{"))]  # fmt: skip
        print("demo:   metrics (/metrics):\n" + "\n".join(f"demo:     {ln}" for ln in shown))
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--pipeline-root", default=".build/pipeline_root", help="where run artifacts go"
    )
    parser.add_argument(
        "--verbose", action="store_true", help="stream every task's log instead of one line each"
    )
    parser.add_argument(
        "--serve",
        action="store_true",
        help="keep the MLflow server and object store up after the runs (Ctrl-C ends them)",
    )
    args = parser.parse_args(argv)
    logs.setup(logging.WARNING)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # the S3 endpoint's access log
    # kfp.local notes that display names and resource requests do nothing locally.
    warnings.filterwarnings("ignore", message=".*have no effect in the current local runner")

    started = time.monotonic()
    root = local_run.prepare_pipeline_root(args.pipeline_root)
    store = start_object_store()
    server = None
    try:
        server = start_registry(root, store)
        local_run.init_docker(
            root, quiet=not args.verbose, network_mode="host", environment=DEMO_CREDENTIALS
        )
        print(f"demo: kfp.local DockerRunner, image {_images.PIPELINE_IMAGE}, pipeline root {root}")
        for number, (label, start, end) in enumerate(RUNS, 1):
            print(
                f"\ndemo: run {number} of {len(RUNS)}: training on {label} 2011 "
                f"(window day in [{start}, {end})); tasks:"
            )
            try:
                training_pipeline(
                    source_uri=f"s3://{BUCKET}/{KEY}",
                    s3_endpoint=store.endpoint,
                    s3_secure=False,
                    time_column="day",
                    window_start=start,
                    window_end=end,
                    model_name=MODEL_NAME,
                    mlflow_tracking_uri=server.url,
                    # No Kubernetes API here: the champion is served below, not on KServe.
                    serving_target="none",
                )
            except RuntimeError as exc:
                run_dir = local_run.latest_run(root, "loopline-training")
                task = local_run.failed_task(exc) or "?"
                print(
                    f"demo: FAILED in task {task} after {time.monotonic() - started:.1f} s; "
                    f"logs in {run_dir / 'logs'} (kfp.local's own: {root / 'kfp-local.log'})"
                )
                return 1
            print_judgement(local_run.latest_run(root, "loopline-training"), server.url)
        run_dir = local_run.latest_run(root, "loopline-training")
        try:
            serve_champion(server.url, server.artifacts_destination, store)
        except RuntimeError as exc:
            print(f"demo: FAILED serving the champion: {exc}")
            return 1
        print_artifacts(run_dir)
        print(
            f"demo: finished in {time.monotonic() - started:.1f} s; task logs in {run_dir / 'logs'}. "
            f"With --serve the MLflow UI and `loopline registry list --tracking-uri {server.url}` "
            "stay up until Ctrl-C"
        )
        if args.serve:
            print(f"demo: serving the MLflow UI at {server.url} until Ctrl-C")
            with contextlib.suppress(KeyboardInterrupt):
                while True:
                    time.sleep(3600)
    finally:
        if server is not None:
            server.stop()
        store.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
