"""`make demo`: the Loopline loop on the Bikeshare data, every task in its container.

The snapshot is put in an object store first, as on a cluster (MinIO there; here a
real S3 API endpoint on loopback, moto's server), and the training pipeline reads it
through the same ``s3://`` path and MinIO client. It trains on January to June 2011 (the
window ``day`` in [1, 182)), the natural first training window: the data gate reports the
season's temperature drift against the schema's whole-year reference and lets it train.
Tasks run with kfp.local.DockerRunner on the images ``make images`` built; containers
share the host network to reach the endpoint.

The terminal shows one line per task (name, state, seconds) and then the summary; each
task's full log is in ``<run folder>/logs/<task>.log`` (``--verbose`` streams them). On a
failure the failing task's last lines and the path of its log are shown. At the end the
script lists every artifact: where it is and what it holds.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import warnings
from pathlib import Path

from components import _images
from components.lib import logs
from pipelines import local as local_run
from pipelines import local_s3
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
    args = parser.parse_args(argv)
    logs.setup(logging.WARNING)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # the S3 endpoint's access log
    # kfp.local notes that display names and resource requests do nothing locally.
    warnings.filterwarnings("ignore", message=".*have no effect in the current local runner")

    started = time.monotonic()
    store = start_object_store()
    try:
        root = local_run.init_docker(
            args.pipeline_root,
            quiet=not args.verbose,
            network_mode="host",
            environment=DEMO_CREDENTIALS,
        )
        print(f"demo: kfp.local DockerRunner, image {_images.PIPELINE_IMAGE}, pipeline root {root}")
        print("demo: training on January to June 2011 (window day in [1, 182)); tasks:")
        try:
            training_pipeline(
                source_uri=f"s3://{BUCKET}/{KEY}",
                s3_endpoint=store.endpoint,
                s3_secure=False,
                split_method="time",
                time_column="day",
                window_start="1",
                window_end="182",
                train_fraction=0.7,
                eval_fraction=0.15,
                holdout_fraction=0.15,
            )
        except RuntimeError as exc:
            run_dir = local_run.latest_run(root, "loopline-training")
            task = local_run.failed_task(exc) or "?"
            print(
                f"demo: FAILED in task {task} after {time.monotonic() - started:.1f} s; "
                f"logs in {run_dir / 'logs'} (kfp.local's own: {root / 'kfp-local.log'})"
            )
            return 1
    finally:
        store.stop()
    run_dir = local_run.latest_run(root, "loopline-training")
    print_artifacts(run_dir)
    print(f"demo: finished in {time.monotonic() - started:.1f} s; task logs in {run_dir / 'logs'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
