"""Run the training pipeline on the breast cancer example locally, every task in its container.

    .venv/bin/python examples/breast_cancer/run_local.py [--root .build/byo]

The pipeline is the compiled Bikeshare one, unchanged: only its parameters point at this
folder's snapshot, schema (with its drift policy and reference statistics), feature spec,
search space and evaluation config. kfp.local's DockerRunner shows a task only the pipeline
root, so the folder is copied there first. A real MLflow tracking server (sqlite, artifacts
on a loopback S3 endpoint) is the registry, as in ``make demo``; both stop at the end.
Needs the images (``make images``) and a Docker engine (``make engine``).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
# Credentials of the throwaway loopback endpoint; on a cluster they come from a Secret.
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "loopline-byo", "AWS_SECRET_ACCESS_KEY": "loopline-byo-secret"}


def parameters(folder: Path) -> dict:
    """The training pipeline's parameters for this example, with its files in ``folder``."""
    return {
        "source_uri": str(folder / "breast_cancer.csv"),
        # No time order in this data: a hash split on the row's id, 70 / 15 / 15.
        "split_method": "hash",
        "key_column": "sample_id",
        "time_column": "",
        "schema": str(folder / "schema"),
        "feature_spec": str(folder / "feature_spec.json"),
        "search_space": str(folder / "search_space.json"),
        "evaluation_config": str(folder / "evaluation.json"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=str(REPO / ".build" / "byo"), help="pipeline root")
    parser.add_argument("--model-name", default=f"breast-cancer-{uuid.uuid4().hex[:6]}")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))
    from pipelines import local as local_run
    from pipelines import local_mlflow, local_s3
    from pipelines.training.pipeline import training_pipeline

    root = local_run.prepare_pipeline_root(args.root)
    folder = root / HERE.name
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(HERE, folder, ignore=shutil.ignore_patterns("__pycache__"))
    store = local_s3.start(CREDENTIALS)
    try:
        registry = local_mlflow.start(root / "mlflow", store.endpoint, CREDENTIALS)
        try:
            local_run.init_docker(root, quiet=True, network_mode="host")
            print(f"training pipeline on {folder} (model {args.model_name}):")
            started = time.monotonic()
            training_pipeline(
                **parameters(folder),
                model_name=args.model_name,
                mlflow_tracking_uri=registry.url,
                serving_target="none",  # kfp.local has no Kubernetes API: stop after register
            )
            seconds = time.monotonic() - started
            run_dir = local_run.latest_run(root, "loopline-training")
            arts = {(r.task, r.name): r.metadata for r in local_run.run_artifacts(run_dir)}
            model, evaluation = arts[("train", "model")], arts[("evaluate", "evaluation")]
            scores = ", ".join(f"{k} {v:.4f}" for k, v in sorted(model["eval_metrics"].items()))
            holdout = evaluation["holdout_metrics"]
            print(
                f"model: {model['model_type']} {model['task']} on {model['target']}, "
                f"params {model['params']}, schema {model['schema_version']}\n"
                f"eval split: {scores}\n"
                f"gate ({evaluation['config_name']}): {evaluation['decision']} on holdout "
                f"{evaluation['primary_metric']} {evaluation['primary_value']:.4f} "
                f"(f1 {holdout['f1']:.4f}, accuracy {holdout['accuracy']:.4f}), "
                f"score {evaluation['score']:.3f}\n"
                f"run folder: {run_dir} ({seconds:.0f} s)"
            )
        finally:
            registry.stop()
    finally:
        store.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
