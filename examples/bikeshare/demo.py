"""`make demo`: the whole Loopline loop on the Bikeshare data, every task in its container.

The snapshot is put in an object store first, as on a cluster (MinIO there; here a
real S3 API endpoint on loopback, moto's server), and the pipelines read it through the
same ``s3://`` path and MinIO client; a real MLflow tracking server (sqlite store,
artifacts on that endpoint) is the model registry.

1. The year's weather goes into the feature store (``materialize`` in the features image:
   Parquet offline store, SQLite online store), and the training pipeline trains version 1
   on January to June 2011 from the store: its examples are an entity / label table (city,
   time, counts) whose features Feast's point-in-time join fetches (``feature_join``), then
   validated and gated like any batch; the feature views' versions are in its lineage (no
   champion yet: it passes the evaluation gate's thresholds and becomes production).
2. The serving image serves it (the ServingRuntime's arguments, verified against the
   registry) and captures every request to the object store; with Feast's feature server
   (``feast serve`` in the features image) behind it, a request that names only the city and
   the time gets the same prediction as one that carries every feature.
3. Window by window, served traffic is replayed through the serving container with each
   row's own event time (the training period January to April, then July, then August),
   labels (the real counts) arrive for July and August (``loopline labels``' library), and
   the continuous-training pipeline judges the window: read the capture -> validate it
   (the schema's serving environment) -> detect_drift (drift, decay, the retraining policy
   recorded in the registry) -> when the policy says so, the training pipeline, nested, on
   January to August. The training period triggers nothing; July drifts and decays but the
   policy waits for a second window; August triggers the retrain, whose model meets the
   evaluation gate against the champion.
4. The retrained version is rolled out against version 1 with the progressive-delivery
   engine on real parts (serving containers behind nginx, Prometheus scraping them, a client
   replaying October rows; ``--rollout-policy`` picks the canary, blue-green or shadow
   policy in ``rollout/``), printing each check and the registry.
5. A timeline of the loop.

Tasks run with kfp.local.DockerRunner on the images ``make images`` built; containers
share the host network to reach the endpoint. The terminal shows one line per task (name,
state, seconds) and then the summaries; each task's full log is in
``<run folder>/logs/<task>.log`` (``--verbose`` streams them). On a failure the failing
task's last lines and the path of its log are shown.
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
from pipelines import local_features, local_mlflow, local_s3
from pipelines.training.pipeline import training_pipeline

HERE = Path(__file__).resolve().parent
SNAPSHOT = HERE / "bikeshare.csv"
BUCKET, KEY = "loopline-demo", "snapshots/bikeshare/2011.csv"
# Version 1's examples: the snapshot's hours as an entity / label table (city, event_timestamp,
# casual, registered, bikers); every feature comes from the feature store.
EXAMPLES_KEY = "examples/bikeshare/2011.parquet"
# Credentials of the throwaway loopback endpoint; on a cluster they come from a Secret.
DEMO_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "loopline-demo",
    "AWS_SECRET_ACCESS_KEY": "loopline-demo-secret",
}


def start_object_store(root: Path):
    """Starts an S3 endpoint on loopback and uploads the snapshot and the entity / label table
    of its hours; returns the running store."""
    store = local_s3.start(DEMO_CREDENTIALS)
    client = store.client()
    client.make_bucket(BUCKET)
    client.fput_object(BUCKET, KEY, str(SNAPSHOT), content_type="text/csv")
    examples = root / "bikeshare-2011-examples.parquet"
    local_features.entity_table(SNAPSHOT).to_parquet(examples)
    client.fput_object(BUCKET, EXAMPLES_KEY, str(examples))
    print(
        f"demo: object store at {store.endpoint}; uploaded {SNAPSHOT.name} to s3://{BUCKET}/{KEY} "
        f"and its hours as an entity / label table to s3://{BUCKET}/{EXAMPLES_KEY}"
    )
    return store


def materialize_weather(root: Path) -> local_features.Materialized:
    """The snapshot's weather into the embedded feature store (materialize, features image)."""
    weather = root / "weather" / SNAPSHOT.name  # DockerRunner mounts only the pipeline root
    weather.parent.mkdir(exist_ok=True)
    shutil.copy(SNAPSHOT, weather)
    print("\ndemo: the year's weather into the feature store; tasks:")
    began = time.monotonic()
    done = local_features.materialize(root, weather)
    record = done.record
    print(
        f"demo:   {record['rows']} hourly weather observations ({record['first_time']} .. "
        f"{record['last_time']}), views "
        + ", ".join(f"{k} {v}" for k, v in sorted(done.feature_view_versions.items()))
        + f"; the online store holds the latest, {record['materialized'][-1]} "
        f"({time.monotonic() - began:.1f} s); store {done.store}"
    )
    return done


def describe(meta: dict) -> str:
    """One line about an artifact, from its metadata."""
    if "model_type" in meta:
        scores = ", ".join(f"{k} {v:.4g}" for k, v in meta["eval_metrics"].items())
        return (
            f"{meta['model_type']} {meta['task']}, eval {scores}; sha256 {meta['sha256'][:16]}, "
            f"data {meta['data_sha256'][:12]}, schema {meta['schema_version']}, transform {meta['transform_version']}"
        )
    if "feature_view_versions" in meta and "repository_version" in meta:
        missing = sum(int(v) for v in meta.get("missing", {}).values())
        return (
            f"{int(meta['rows'])} examples joined from the feature store "
            f"({meta['repository_version']}), {missing} weather values missing; "
            f"sha256 {meta['sha256'][:16]}"
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
RUNS = [("January to June", "2011-01-01T00:00:00Z", "2011-07-01T00:00:00Z")]
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
        + _views(v.lineage)
        for v in registry.versions(MODEL_NAME)
    ]


def _views(lineage: dict) -> str:
    """The feature views a version's rows were joined with (lineage), or nothing."""
    views = json.loads(lineage.get("feature_view_versions") or "{}")
    return (
        ", feature views " + ", ".join(f"{k} {v}" for k, v in sorted(views.items()))
        if views
        else ""
    )


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


CAPTURE = f"s3://{BUCKET}/capture"


# The monitored windows: served traffic replayed through the serving container with each
# row's own event time, then judged by the continuous-training pipeline. The first is the
# training period itself (no drift expected: the control); July and August are new seasons.
# Labels (the real counts) arrive for July and August before their windows are judged.
WINDOWS = (
    ("training period (January-April)", "2011-01-01T00", "2011-05-01T00", False),
    ("July", "2011-07-01T00", "2011-08-01T00", True),
    ("August", "2011-08-01T00", "2011-09-01T00", True),
)
RETRAIN_DAYS = ("1", "244")  # a retrain trains on the snapshot's days [1, 244): January to August


def _hours(start: str, end: str) -> int:
    import pandas as pd

    return int((pd.Timestamp(end) - pd.Timestamp(start)) / pd.Timedelta(hours=1))


def _window_rows(data, start: str, end: str):
    import pandas as pd

    event = (
        pd.Timestamp("2011-01-01", tz="UTC")
        + pd.to_timedelta(data["day"] - 1, unit="D")
        + pd.to_timedelta(data["hr"].astype(int), unit="h")
    )
    inside = (event >= pd.Timestamp(start, tz="UTC")) & (event < pd.Timestamp(end, tz="UTC"))
    return data[inside.to_numpy()].reset_index(drop=True)  # fmt: skip


def _metric(text: str, name: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + "{") or line.startswith(name + " ")
    )


def serve_and_monitor(
    tracking_uri: str, artifacts_destination: str, store, root: Path, timeline, feature_store: Path
) -> None:
    """The champion in the serving image, as KServe would run it, with real requests; then the
    loop's second half, window by window.

    The container gets the ServingRuntime's arguments plus the version and the registry to
    verify it against, and Feast's feature server on ``feature_store`` (``feast serve`` in
    the features image) as ``--feature_server_url``; it fetches the version from the object
    store, checks its manifest against the registry's record, and captures every request to
    ``CAPTURE``. The demo sends it a request that names only the city and the time and the
    same hour's full request (one prediction), one bad request, then replays each of :data:`WINDOWS` as one-row V2 requests with
    their event times, waits until the capture holds them, writes the window's labels
    (``loopline labels``' library) when they have arrived, and runs the continuous-training
    pipeline on the window: read the capture -> validate (serving environment) ->
    detect_drift -> retrain when the policy says so (the training pipeline, nested).
    """
    import statistics

    import pandas as pd
    import requests

    from components.lib import capture_layout
    from components.lib import window as capture_window
    from components.lib.registry import Registry
    from pipelines import local_serving

    champion = Registry(tracking_uri).champion(MODEL_NAME)
    if champion is None:
        print("demo: no champion to serve")
        return
    uri = local_serving.model_uri(champion.source, artifacts_destination)
    print(f"\ndemo: serving the champion, {MODEL_NAME} version {champion.version}, from {uri}")
    features = local_features.start_feature_server(
        feature_store, progress=lambda line: print(f"demo:   {line} (the features image)")
    )
    began = time.monotonic()
    try:
        server = local_serving.start(
            MODEL_NAME,
            [f"--model_dir={uri}", f"--registry_uri={tracking_uri}",
             f"--model_version={champion.version}", f"--capture_uri={CAPTURE}",
             "--capture_flush_seconds=1", f"--feature_server_url={features.url}"],
            {"S3_ENDPOINT": store.endpoint, **DEMO_CREDENTIALS},
            progress=lambda line: print(f"demo:   {line}"),
        )  # fmt: skip
    except BaseException:
        features.stop()
        raise
    try:
        ready_line = next(
            (ln for ln in server.logs().splitlines() if "ready in" in ln), "ready"
        ).split("loopline.serving ", 1)[-1]
        print(f"demo:   {ready_line} ({time.monotonic() - began:.1f} s with the container)")
        timeline.append(
            f"version {champion.version} serves (the serving image, capture to {CAPTURE})"
        )
        data = pd.read_csv(SNAPSHOT)
        # The model's inputs as the server describes them (V2 model metadata).
        meta = requests.get(f"{server.url}/v2/models/{MODEL_NAME}", timeout=5).json()["inputs"]
        session = requests.Session()
        body = v2_request(data.iloc[0], meta, "demo-bad")
        bad = json.loads(json.dumps(body))
        bad["inputs"][[m["name"] for m in meta].index("hr")]["data"] = [31]
        answer = session.post(f"{server.url}/v2/models/{MODEL_NAME}/infer", json=bad, timeout=10)
        print(
            f"demo:   a bad request (hr = 31): HTTP {answer.status_code} {answer.json()['error']}"
        )
        sent = lookup_and_compare(session, server.url, data, meta, timeline)
        bucket, prefix = CAPTURE[len("s3://") :].split("/", 1)
        client = store.client()
        for number, (label, start, end, labelled) in enumerate(WINDOWS, 1):
            rows = _window_rows(data, start, end)
            latencies, predictions = [], []
            tag = f"w{number}"
            for i, row in rows.iterrows():
                request = v2_request(row, meta, f"{tag}-{i}")
                t0 = time.perf_counter()
                answer = session.post(
                    f"{server.url}/v2/models/{MODEL_NAME}/infer", json=request, timeout=10
                )
                latencies.append(time.perf_counter() - t0)
                answer.raise_for_status()
                predictions.append(answer.json()["outputs"][0]["data"][0])
            sent += len(rows)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                text = requests.get(f"{server.url}/metrics", timeout=5).text
                if _metric(text, "loopline_capture_rows_written_total") >= sent:
                    break
                time.sleep(0.5)
            error = (pd.Series(predictions) - rows["bikers"]).pow(2).mean() ** 0.5
            print(
                f"\ndemo: window {number} of {len(WINDOWS)}, {label} [{start}, {end}): replayed "
                f"{len(rows)} hourly rows as one-row V2 requests (median "
                f"{statistics.median(latencies) * 1000:.1f} ms), captured to {CAPTURE}; "
                f"RMSE {error:.1f} against the real counts"
            )
            if labelled:
                labels = pd.DataFrame(
                    {"request_id": [f"{tag}-{i}" for i in range(len(rows))],
                     "label": rows["bikers"].astype(float)}
                )  # fmt: skip
                key = capture_window.write_labels(
                    client, bucket, capture_layout.labels_prefix(prefix), MODEL_NAME, labels
                )
                print(f"demo:   labels arrived: {len(labels)} request ids -> s3://{bucket}/{key}")
            decided = run_monitoring(tracking_uri, store, root, start, end)
            if decided is None:
                raise RuntimeError(f"the continuous-training run of window {number} failed")
            signals = decided["signals"]
            timeline.append(
                f"window {number} ({label}): drift {signals['drift']}, decay {signals['decay']}; "
                + (
                    decided["reason"].replace("retrain:", "RETRAIN:", 1)
                    if decided["should_retrain"]
                    else decided["reason"]
                )
            )
            if decided.get("retrained"):
                timeline.append(decided["retrained"])
    finally:
        server.stop()
        features.stop()


# The online store holds each entity's latest observation (2011-12-31 23:00): a lookup is
# answerable within the weather view's TTL after it.
LOOKUP_TIME = "2011-12-31T23:30:00Z"


def lookup_and_compare(session, url: str, data, meta: list[dict], timeline) -> int:
    """A request naming only the city and the time, and the full request of the same hour;
    prints both predictions (they must be equal) and returns the requests captured (2)."""
    import pandas as pd

    when = pd.Timestamp(LOOKUP_TIME)
    day = (when.normalize() - pd.Timestamp("2011-01-01", tz="UTC")).days + 1
    (index,) = data.index[(data["day"] == day) & (data["hr"] == when.hour)]
    lookup = {
        "id": "demo-lookup",
        "inputs": [
            {"name": "city", "shape": [1], "datatype": "BYTES", "data": ["washington_dc"]},
            {"name": "event_time", "shape": [1], "datatype": "BYTES", "data": [LOOKUP_TIME]},
        ],
    }
    answers = {}
    for kind, body in (
        ("lookup", lookup),
        ("full", v2_request(data.loc[index], meta, "demo-full")),
    ):
        t0 = time.perf_counter()
        answer = session.post(f"{url}/v2/models/{MODEL_NAME}/infer", json=body, timeout=10)
        if answer.status_code != 200:
            raise RuntimeError(f"the {kind} request: HTTP {answer.status_code} {answer.text}")
        answers[kind] = (answer.json()["outputs"][0]["data"][0], time.perf_counter() - t0)
    (fetched, fetched_s), (full, full_s) = answers["lookup"], answers["full"]
    print(
        f'demo:   {{"city": "washington_dc", "event_time": "{LOOKUP_TIME}"}} and nothing else: '
        f"the model server fetched the weather (as of 23:00, within the 3 h TTL) and the "
        f"calendar from Feast's feature server: prediction {fetched:.2f} bikers "
        f"({fetched_s * 1000:.0f} ms)"
    )
    print(
        f"demo:   the same hour with all {len(meta)} features in the request (day {day}, hr "
        f"{when.hour}): prediction {full:.2f} ({full_s * 1000:.0f} ms): "
        + ("EQUAL" if fetched == full else "DIFFERENT")
    )
    if fetched != full:
        raise RuntimeError(f"the lookup's prediction {fetched} differs from the full {full}")
    timeline.append(
        f"a request naming only the city and {LOOKUP_TIME} predicted from the online store: "
        f"{fetched:.2f}, equal to the full request's"
    )
    return 2


def run_monitoring(tracking_uri: str, store, root: Path, start: str, end: str) -> dict | None:
    """One continuous-training run on the window [start, end); prints its decision and, when
    it retrained, the nested training's gate. Returns detect_drift's result (None: failed)."""
    from pipelines.continuous_training.pipeline import continuous_training_pipeline

    print("demo:   continuous-training run; tasks:")
    try:
        continuous_training_pipeline(
            source_uri=f"s3://{BUCKET}/{KEY}",
            capture_uri=CAPTURE,
            window_end=end,
            window_hours=_hours(start, end),
            training_window_start=RETRAIN_DAYS[0],
            training_window_end=RETRAIN_DAYS[1],
            s3_endpoint=store.endpoint,
            s3_secure=False,
            model_name=MODEL_NAME,
            mlflow_tracking_uri=tracking_uri,
            serving_target="none",
        )
    except RuntimeError as exc:
        run_dir = local_run.latest_run(root, CT_PIPELINE)
        task = local_run.failed_task(exc) or "?"
        print(f"demo: FAILED in task {task}; logs in {run_dir / 'logs'}")
        return None
    run_dir = local_run.latest_run(root, CT_PIPELINE)
    result = json.loads((run_dir / "detect-drift" / "result" / "result.json").read_text())
    summary = (run_dir / "detect-drift" / "summary").read_text().splitlines()
    # The decision and the signals (the per-feature table follows in the file).
    table = "| feature | kind | drifted | importance | effects | p (BH) | reason |"
    head = summary[: summary.index(table) - 1] if table in summary else summary
    shown = [ln for ln in head if ln.strip()]
    print("\n".join(f"  {line}" for line in shown))
    print(f"demo:   report: {run_dir / 'detect-drift' / 'report'} (HTML)")
    if result["should_retrain"] and (run_dir / "evaluate").exists():
        print_judgement(run_dir, tracking_uri)
        evaluation = json.loads(
            (run_dir / "evaluate" / "evaluation" / "evaluation.json").read_text()
        )
        result["retrained"] = (
            f"retrained on days [{RETRAIN_DAYS[0]}, {RETRAIN_DAYS[1]}) (the nested training pipeline): "
            f"evaluation gate {evaluation['decision'].upper()}"
        )
    return result


CT_PIPELINE = "loopline-continuous-training"


ROLLOUT_POLICIES = HERE / "rollout"  # canary.yaml (the default), blue_green.yaml, shadow.yaml
ROLLOUT_RATE = 30.0  # live requests per second: October 2011 rows, replayed through nginx


def v2_request(row, meta: list[dict], request_id: str) -> dict:
    """One Bikeshare row as a V2 request, its event time set (day of year and hour)."""
    import pandas as pd

    event = pd.Timestamp("2011-01-01", tz="UTC") + pd.Timedelta(
        days=int(row["day"]) - 1, hours=int(row["hr"])
    )
    return {
        "id": request_id,
        "parameters": {"event_time": event.isoformat()},
        "inputs": [
            {"name": m["name"], "shape": [1], "datatype": m["datatype"],
             "data": [row[m["name"]].item() if hasattr(row[m["name"]], "item") else row[m["name"]]]}
            for m in meta
        ],
    }  # fmt: skip


class ReplayClient:
    """A background client: October rows, one per request, ``rate`` per second through
    ``url`` (the route), each answer counted by the version that gave it (or the failure)."""

    def __init__(self, url: str, bodies: list[dict], rate: float = ROLLOUT_RATE):
        import threading
        from collections import Counter

        self.url, self.bodies, self.rate = url, bodies, rate
        self.answers: Counter = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ReplayClient:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        import requests

        session, began, n = requests.Session(), time.monotonic(), 0
        while not self._stop.is_set():
            wait = began + n / self.rate - time.monotonic()
            if wait > 0 and self._stop.wait(wait):
                return
            body = dict(self.bodies[n % len(self.bodies)], id=f"rollout-{n}")
            n += 1
            try:
                answer = session.post(
                    f"{self.url}/v2/models/{MODEL_NAME}/infer",
                    json=body,
                    headers={"x-request-id": body["id"]},
                    timeout=10,
                )
                self.answers[
                    f"version {answer.json()['model_version']}"
                    if answer.ok
                    else f"HTTP {answer.status_code}"
                ] += 1
            except requests.RequestException as exc:
                self.answers[type(exc).__name__] += 1


def roll_out_challenger(tracking_uri: str, root: Path, policy_path: Path) -> bool:
    """The staging version rolled out against the champion with the progressive-delivery
    engine (``components/lib/rollout.py``) on real parts (``pipelines/local_rollout.py``):
    a serving container per version behind nginx (the Knative route's weights), Prometheus
    scraping both (the gates' PromQL), a client replaying October rows through the route.
    Prints one line per check and the registry at the end; everything stops on the way out.
    Returns whether the challenger was promoted."""
    import pandas as pd
    import requests

    from components.lib.deployment import ModelRef
    from components.lib.registry import Registry
    from components.lib.rollout import Rollout, RolloutPolicy, key
    from pipelines.local_rollout import LocalDeployment, shadow_agreement

    registry = Registry(tracking_uri, actor="demo-rollout")
    champion = registry.champion(MODEL_NAME)
    staging = [v for v in registry.versions(MODEL_NAME) if v.state == "staging"]
    if champion is None or not staging:
        print("\ndemo: rollout skipped: no champion, or no version in staging to roll out")
        return False
    challenger = staging[-1]
    policy = RolloutPolicy.load(policy_path)
    work = root / "rollout"
    shutil.rmtree(work, ignore_errors=True)  # a fresh deployment: no state from an earlier demo
    refs = {}
    for version in (champion, challenger):
        # The registry's copy, verified file by file against its manifest, in a local folder
        # (LocalDeployment copies it and mounts it at /mnt/models, as KServe's storage
        # initializer would); the server checks it against the same manifest_sha256.
        path = registry.download(
            MODEL_NAME, version.version, str(work / "download" / version.version)
        )
        refs[version.version] = ModelRef(MODEL_NAME, version.version, path, version.manifest_sha256)
    print(
        f"\ndemo: progressive delivery ({policy.strategy}, {policy_path.name}): version "
        f"{challenger.version} (staging) against version {champion.version} (production); "
        f"serving containers behind nginx, Prometheus scraping them, {ROLLOUT_RATE:.0f} "
        "October rows per second through the route"
    )

    class Printed(LocalDeployment):
        """Prints each check as the engine records it."""

        def annotate(self, values):
            super().annotate(values)
            if values.get(key("verdict")):
                check = json.loads(values[key("verdict")])
                ann, gates = self.state["annotations"], check["gates"]

                def show(name, fmt):
                    value = gates.get(name)
                    return "n/a" if value is None else format(float(value), fmt)

                requests_seen = check["requests"]
                print(
                    f"demo:   {time.monotonic() - began:5.1f} s  step {ann.get(key('step'))} "
                    f"{ann.get(key('percent')):>3}%  requests "
                    f"{'n/a' if requests_seen is None else f'{requests_seen:.0f}':>4}  error rate "
                    f"{show('error_rate', '.3f')}  p99 {show('latency_p99', '.4f')} s  "
                    f"divergence {show('prediction_divergence', '.3f')}"
                    + (f"  agreement {show('shadow_agreement', '.2f')}" if "shadow_agreement" in gates else "")
                    + f"  {check['verdict'].upper()}"
                )  # fmt: skip

    began = time.monotonic()
    with Printed(work, capture=policy.strategy == "shadow", progress=lambda line: None) as local:
        local.deploy(refs[champion.version])
        local.wait_ready(policy.ready_timeout_seconds)
        meta = requests.get(f"{local.url}/v2/models/{MODEL_NAME}", timeout=5).json()["inputs"]
        data = pd.read_csv(SNAPSHOT)
        october = data[data["mnth"] == "Oct"].reset_index(drop=True)
        bodies = [v2_request(row, meta, "") for _, row in october.iterrows()]
        print(
            f"demo:   version {champion.version} serves at {local.url} (nginx), Prometheus at "
            f"{local.prometheus_url}, in {time.monotonic() - began:.1f} s"
        )

        def smoke(url: str, count: int) -> None:  # blue-green: the candidate's own route
            session = requests.Session()
            for i in range(count):
                session.post(
                    f"{url}/v2/models/{MODEL_NAME}/infer", json=bodies[i % len(bodies)], timeout=10
                )

        since = time.time()
        probes = {
            "shadow_agreement": lambda: shadow_agreement(
                local.capture_dir, champion.version, challenger.version, since, tolerance=50.0
            )
        }
        with ReplayClient(local.url, bodies) as client:
            time.sleep(2)  # the champion's requests reach Prometheus' window first
            began = time.monotonic()
            outcome = Rollout(
                local, registry, local.prometheus_url, policy, MODEL_NAME,
                refs[challenger.version], smoke=smoke, probes=probes,
            ).run()  # fmt: skip
            took = time.monotonic() - began
            time.sleep(1)
        print(
            f"demo:   {outcome.phase.upper()} in {took:.1f} s: {outcome.reason[:300]}\n"
            f"demo:   the client's answers: "
            + ", ".join(f"{k}: {n}" for k, n in sorted(client.answers.items()))
        )
    print("demo: registry after the rollout:\n" + "\n".join(registry_state(tracking_uri)))
    print(
        "demo: the other strategies, on the same versions (a fresh demo run):\n"
        f"  blue-green: python examples/bikeshare/demo.py --rollout-policy {ROLLOUT_POLICIES / 'blue_green.yaml'}\n"
        f"  shadow:     python examples/bikeshare/demo.py --rollout-policy {ROLLOUT_POLICIES / 'shadow.yaml'}\n"
        "  (each file is a RolloutPolicy: strategy, windows, gates; --no-rollout skips this step)"
    )  # fmt: skip
    return outcome.phase == "promoted"


class Timeline:
    """The loop's events with the time since the demo started, printed at the end."""

    def __init__(self, started: float):
        self.started, self.events = started, []

    def append(self, event: str) -> None:
        self.events.append((time.monotonic() - self.started, event))


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
    parser.add_argument(
        "--rollout-policy",
        type=Path,
        default=ROLLOUT_POLICIES / "canary.yaml",
        help="the rollout of the staging version: a policy file (rollout/canary.yaml, "
        "blue_green.yaml, shadow.yaml)",
    )
    parser.add_argument(
        "--no-rollout", action="store_true", help="skip the progressive rollout of version 2"
    )
    args = parser.parse_args(argv)
    logs.setup(logging.WARNING)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # the S3 endpoint's access log
    # kfp.local notes that display names and resource requests do nothing locally.
    warnings.filterwarnings("ignore", message=".*have no effect in the current local runner")

    started = time.monotonic()
    timeline = Timeline(started)
    root = local_run.prepare_pipeline_root(args.pipeline_root)
    store = start_object_store(root)
    server = None
    try:
        server = start_registry(root, store)
        local_run.init_docker(
            root, quiet=not args.verbose, network_mode="host", environment=DEMO_CREDENTIALS
        )
        print(f"demo: kfp.local DockerRunner, image {_images.PIPELINE_IMAGE}, pipeline root {root}")
        try:
            features = materialize_weather(root)
        except RuntimeError as exc:
            print(f"demo: FAILED materializing the feature store: {exc}")
            return 1
        for number, (label, start, end) in enumerate(RUNS, 1):
            print(
                f"\ndemo: run {number} of {len(RUNS)}: training on {label} 2011 from the feature "
                f"store (examples: event_timestamp in [{start}, {end})); tasks:"
            )
            try:
                training_pipeline(
                    source_uri=f"s3://{BUCKET}/{EXAMPLES_KEY}",
                    feature_store_uri=str(features.store),
                    s3_endpoint=store.endpoint,
                    s3_secure=False,
                    time_column="event_timestamp",
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
        timeline.append(
            "version 1 trained on January-June 2011 from the feature store (point-in-time join) "
            "and promoted (the first version)"
        )
        try:
            serve_and_monitor(
                server.url, server.artifacts_destination, store, root, timeline, features.store
            )
        except RuntimeError as exc:
            print(f"demo: FAILED serving or monitoring the champion: {exc}")
            return 1
        if not args.no_rollout:
            try:
                promoted = roll_out_challenger(server.url, root, args.rollout_policy)
            except Exception as exc:  # noqa: BLE001 - the demo reports it; the containers stopped
                print(f"demo: FAILED rolling out the challenger: {type(exc).__name__}: {exc}")
                return 1
            timeline.append(
                "the retrained version's rollout: "
                + ("PROMOTED to production" if promoted else "not promoted")
            )
        print_artifacts(run_dir)
        print("\ndemo: the loop, as it happened:")
        for at, event in timeline.events:
            print(f"  {at:6.1f} s  {event}")
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
