"""The feature store for local runs, in the features image as on a cluster.

* :func:`materialize`: the ``materialize`` component on a snapshot, run by kfp.local (one
  importer and one task; with DockerRunner the task runs in the features image), embedded
  target: its ``feature_store`` output folder is the store (Parquet offline store, SQLite
  online store, registry) that the training pipeline's ``feature_store_uri`` names.
* :func:`start_feature_server`: Feast's feature server, ``feast serve`` in the features image
  (the command of manifests/features/feature-server.yaml), on that folder, on the host network:
  what the serving image's ``--feature_server_url`` reaches.

The caller initializes kfp.local first (:func:`pipelines.local.init_docker`); the snapshot
must be under the pipeline root (DockerRunner mounts only that).
"""

# No ``from __future__ import annotations`` here: kfp reads the pipeline function's annotations.
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kfp import dsl

from components import _images
from components.materialize.component import materialize as materialize_component
from pipelines import local as local_run
from pipelines.local_s3 import free_port

PIPELINE_NAME = "loopline-materialize"


@dsl.pipeline(
    name=PIPELINE_NAME,
    description="Materialize a snapshot's weather into the embedded feature store.",
)
def materialize_pipeline(snapshot_uri: str):
    snapshot = dsl.importer(artifact_uri=snapshot_uri, artifact_class=dsl.Dataset, reimport=False)
    materialize_component(data=snapshot.output).set_display_name("materialize")


@dataclass(frozen=True)
class Materialized:
    store: Path  # materialize's feature_store output: the store itself (embedded target)
    feature_view_versions: dict  # {view: "<repository version>/<spec hash>"}
    record: dict  # materialize.json: rows, time range, materialized range, stores, versions
    run_dir: Path


def materialize(pipeline_root: str | Path, snapshot: str | Path) -> Materialized:
    """Runs :func:`materialize_pipeline` on ``snapshot`` (a path under ``pipeline_root``)."""
    import json

    materialize_pipeline(snapshot_uri=str(snapshot))
    run_dir = local_run.latest_run(pipeline_root, PIPELINE_NAME)
    records = {(r.task, r.name): r for r in local_run.run_artifacts(run_dir)}
    store = records[("materialize", "feature_store")]
    record = json.loads(Path(store.uri, "materialize.json").read_text())
    return Materialized(Path(store.uri), record["feature_views"], record, run_dir)


def entity_table(snapshot: str | Path, repo: str = "bikeshare"):
    """A Bikeshare snapshot's examples as an entity / label table: ``city``, ``event_timestamp``
    (the repository's epoch + day - 1 days + hr hours, UTC, as materialize dates the weather),
    ``casual``, ``registered``, ``bikers``. Nothing else: every feature comes from the store."""
    import pandas as pd

    from components.lib import featurestore

    spec = featurestore.REPOS[repo]
    rows = pd.read_csv(snapshot)
    times = (
        pd.Timestamp(spec.EPOCH)
        + pd.to_timedelta(rows["day"] - 1, unit="D")
        + pd.to_timedelta(rows["hr"], unit="h")
    )
    table = pd.DataFrame({spec.ENTITY: spec.CITY, spec.TIMESTAMP: times})
    for label in ("casual", "registered", "bikers"):
        table[label] = rows[label].to_numpy()
    return table


@dataclass
class FeatureServer:
    container: object
    url: str

    def logs(self) -> str:
        return self.container.logs().decode(errors="replace")

    def stop(self) -> None:
        self.container.remove(force=True)


def start_feature_server(
    store: str | Path,
    *,
    image: str = _images.FEATURES_IMAGE,
    timeout: float = 90.0,
    progress: Callable[[str], None] = lambda line: None,
) -> FeatureServer:
    """``feast serve`` on ``store`` (its ``feature_store.yaml``) in the features image.

    The store folder is mounted at its own path (the paths in ``feature_store.yaml`` are
    absolute), the server listens on loopback on a free port of the host network.

    Raises:
        RuntimeError: The container exited, or ``/health`` did not answer 200 in ``timeout``
            seconds; the message ends with its last log lines.
    """
    import docker
    import requests

    store = str(Path(store).resolve())
    port = free_port()
    client = docker.from_env()
    container = client.containers.run(
        image,
        ["feast", "--chdir", store, "serve", "--host=127.0.0.1", f"--port={port}",
         "--no-access-log"],
        detach=True,
        network_mode="host",
        environment={"HOME": "/tmp", "FEAST_USAGE": "False"},
        volumes={store: {"bind": store, "mode": "rw"}},
    )  # fmt: skip
    server = FeatureServer(container, f"http://127.0.0.1:{port}")
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        container.reload()
        if container.status == "exited":
            raise RuntimeError(f"feast serve exited: {server.logs()[-2000:]}")
        try:
            if requests.get(f"{server.url}/health", timeout=2).status_code == 200:
                break
        except requests.ConnectionError:
            pass
        time.sleep(0.3)
    else:
        logs = server.logs()
        server.stop()
        raise RuntimeError(f"feast serve did not answer in {timeout:.0f} s: {logs[-2000:]}")
    # Its first /get-online-features takes about 1 s here (later ones ~10 ms): more than the
    # serving image's default --feature_server_timeout. Make it before handing the server over.
    ready = time.monotonic() - began
    try:
        first = _first_lookup(server.url, timeout)
    except Exception:
        server.stop()
        raise
    progress(
        f"feast serve ready in {ready:.1f} s at {server.url}; its first lookup took "
        f"{first * 1000:.0f} ms"
    )
    return server


def _first_lookup(url: str, timeout: float, repo: str = "bikeshare") -> float:
    """Seconds of one ``/get-online-features`` call for the repository's entity, both views."""
    import requests

    from components.lib import featurestore

    spec = featurestore.REPOS[repo]
    features = [f"{spec.WEATHER_VIEW}:{f}" for f in spec.WEATHER_FEATURES]
    features += [f"{spec.CALENDAR_VIEW}:{f}" for f in spec.CALENDAR_FEATURES]
    body = {
        "entities": {spec.ENTITY: [spec.CITY], spec.TIMESTAMP: [spec.EPOCH]},
        "features": features,
    }
    began = time.monotonic()
    answer = requests.post(f"{url}/get-online-features", json=body, timeout=timeout)
    if answer.status_code != 200:
        raise RuntimeError(
            f"feast serve: /get-online-features HTTP {answer.status_code}: {answer.text}"
        )
    return time.monotonic() - began
