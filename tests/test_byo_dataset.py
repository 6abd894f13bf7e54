"""Bring your own data: a second dataset through the training pipeline, with no code change.

scikit-learn's breast cancer data (classification; Bikeshare is regression) runs through the
compiled training pipeline in the components' images (kfp.local DockerRunner) with its own
schema, drift policy, feature spec, search space and evaluation config, all taken from
``examples/breast_cancer/``: the test copies that folder, and only it, into the pipeline
root (all a container sees) and points the pipeline's parameters at the copy, as the README's
"Bring your own data" section does. One training run is shared by the module; a second run,
on a tampered snapshot with its schema read from S3 (the cluster way), must stop at the gate.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import uuid
from pathlib import Path

import joblib
import pandas as pd
import pytest

from pipelines import local as local_run

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "breast_cancer"
PIPELINE = "loopline-training"
SCHEMA_VERSION = "breast-cancer-1.0.0"
TARGET = "malignant"
DROPPED = "worst_area"  # the column the tampered batch lacks


def _params(copy: Path, **overrides) -> dict:
    """The parameters the example's own run_local.py sets (README, "Bring your own data")."""
    from examples.breast_cancer.run_local import parameters

    return {**parameters(copy), **overrides}


@pytest.fixture(scope="module")
def example_copy(tmp_path_factory) -> tuple[Path, Path]:
    """(pipeline root, the copy of examples/breast_cancer/ inside it)."""
    root = local_run.prepare_pipeline_root(tmp_path_factory.mktemp("byo") / "pipeline_root")
    copy = root / "breast_cancer"
    shutil.copytree(EXAMPLE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return root, copy


@pytest.fixture(scope="module")
def trained(built_images, example_copy, tracking_uri):
    """One training run of the example: (run folder, artifacts by (task, name), model name)."""
    from pipelines.training.pipeline import training_pipeline

    root, copy = example_copy
    model_name = f"byo-{uuid.uuid4().hex[:8]}"
    local_run.init_docker(root, network_mode="host")
    training_pipeline(
        **_params(copy),
        model_name=model_name,
        mlflow_tracking_uri=tracking_uri,
        serving_target="none",
    )
    run_dir = local_run.latest_run(root, PIPELINE)
    arts = {(r.task, r.name): r for r in local_run.run_artifacts(run_dir)}
    return run_dir, arts, model_name


@pytest.mark.unit
def test_export_script_reproduces_the_committed_snapshot(tmp_path):
    from examples.breast_cancer import export

    out = tmp_path / "breast_cancer.csv"
    assert export.main(["--out", str(out)]) == 0
    assert out.read_bytes() == (EXAMPLE / "breast_cancer.csv").read_bytes()


@pytest.mark.docker
def test_model_is_trained_on_the_datasets_own_target_and_features(trained):
    run_dir, arts, _ = trained
    spec = json.loads((EXAMPLE / "feature_spec.json").read_text())
    transformer = arts[("transform", "transformer")].metadata
    assert transformer["spec_name"] == "breast_cancer"
    assert (transformer["task"], transformer["target"]) == ("classification", TARGET)
    assert transformer["features_in"] == list(spec["features"])
    assert json.loads((Path(arts[("transform", "transformer")].uri) / "spec.json").read_text()) == (
        spec
    )
    model = arts[("train", "model")]
    assert (model.metadata["task"], model.metadata["target"]) == ("classification", TARGET)
    assert model.metadata["model_type"] == "linear"  # the example's search space
    assert model.metadata["schema_version"] == SCHEMA_VERSION
    search = json.loads((EXAMPLE / "search_space.json").read_text())
    assert json.loads(model.metadata["params"]).keys() == {p["name"] for p in search["parameters"]}
    # Trained in the container, loaded here: a logistic regression on the 30 measurements
    # that predicts the two classes of the target on raw holdout rows.
    loaded = joblib.load(Path(model.uri) / "model.joblib")
    assert type(loaded.named_steps["model"]).__name__ == "LogisticRegression"
    assert list(loaded.feature_names_in_) == list(spec["features"])
    holdout = pd.read_parquet(arts[("ingest", "holdout")].uri)
    assert set(loaded.predict(holdout)) == {0, 1}
    # The hash split on the example's key: every row in exactly one split.
    rows = [arts[("ingest", s)].metadata["rows"] for s in ("train", "eval_data", "holdout")]
    assert sum(rows) == 569 and min(rows) > 50


@pytest.mark.docker
def test_evaluation_gate_scores_the_model_with_the_datasets_metric(trained, tracking_uri):
    run_dir, arts, model_name = trained
    evaluation = arts[("evaluate", "evaluation")].metadata
    assert evaluation["config_name"] == "breast_cancer"
    assert (evaluation["task"], evaluation["target"]) == ("classification", TARGET)
    assert evaluation["primary_metric"] == "roc_auc"
    assert {"accuracy", "f1", "roc_auc"} <= evaluation["holdout_metrics"].keys()
    assert "rmse" not in evaluation["holdout_metrics"]  # Bikeshare's (regression) metric
    assert evaluation["primary_value"] == evaluation["holdout_metrics"]["roc_auc"]
    # The example's thresholds (roc_auc >= 0.95, f1 >= 0.85) are what the gate checked.
    full = json.loads((Path(arts[("evaluate", "evaluation")].uri) / "evaluation.json").read_text())
    assert full["config"]["thresholds"]["metrics"] == {
        "roc_auc": {"min": 0.95},
        "f1": {"min": 0.85},
    }
    checked = {c["name"]: c["passed"] for c in full["checks"]}
    assert checked["metric roc_auc"] and checked["metric f1"], full["reasons"]
    assert evaluation["decision"] == "promote", evaluation["reasons"]
    # Promoted: registered under the test's model name (its first version).
    assert "register" in local_run.ran_tasks(run_dir)
    registration = Path(arts[("register", "registration")].uri).read_text()
    assert model_name in registration


@pytest.mark.docker
def test_data_gate_validated_every_split_against_the_datasets_schema(trained):
    run_dir, arts, _ = trained
    found = json.loads((run_dir / "validate-data" / "anomalies" / "anomalies.json").read_text())
    assert found["schema_version"] == SCHEMA_VERSION
    assert found["policy_version"] == "breast-cancer-drift-1.0.0"
    assert found["anomalies"] == []
    # Drift measured against the example's reference statistics (no champion yet).
    assert found["baseline"]["kind"] == "reference"
    assert {m["feature"] for m in found["measurements"] if m["check"] == "drift"} >= {
        "mean_radius",
        TARGET,
    }
    meta = json.loads((run_dir / "validate-data" / "statistics" / "metadata.json").read_text())
    assert list(meta["datasets"]) == ["train", "eval", "holdout"]
    request = json.loads((run_dir / "validate-data" / "statistics" / "schema.json").read_text())
    assert request["schema_version"] == SCHEMA_VERSION
    assert request["columns"]["mean_radius"]["min"] == 0.0  # the reviewed bound


@pytest.mark.docker
def test_no_file_outside_the_example_folder_was_needed(trained, example_copy):
    """Every dataset-specific file came from the copy of examples/breast_cancer/: nothing
    any task recorded names Bikeshare's bundled schema, spec, search space or config."""
    run_dir, arts, _ = trained
    _, copy = example_copy
    copied = sorted(p.relative_to(copy).as_posix() for p in copy.rglob("*") if p.is_file())
    shipped = sorted(
        p.relative_to(EXAMPLE).as_posix()
        for p in EXAMPLE.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    )
    assert copied == shipped
    for (task, name), record in arts.items():
        assert "bikeshare" not in json.dumps(record.metadata).lower(), (task, name)
    for path in (run_dir / "validate-data").rglob("*"):
        if path.is_file() and path.suffix in (".json", ".pbtxt", ""):
            assert "bikeshare" not in path.read_text(errors="replace").lower(), path


@pytest.mark.docker
def test_tampered_batch_is_stopped_at_the_gate_naming_the_dropped_column(
    built_images, example_copy, tracking_uri, s3_store, s3_client, capfd
):
    """A snapshot without worst_area, validated against the schema read from S3 (the way a
    cluster run gets a user's schema folder), stops at the data gate, naming the column."""
    from pipelines.training.pipeline import training_pipeline

    root, copy = example_copy
    bucket = f"byo-{uuid.uuid4().hex[:8]}"
    s3_client.make_bucket(bucket)
    for path in sorted((copy / "schema").iterdir()):
        data = path.read_bytes()
        s3_client.put_object(
            bucket, f"breast_cancer/schema/{path.name}", io.BytesIO(data), len(data)
        )
    tampered = root / "tampered.csv"
    pd.read_csv(copy / "breast_cancer.csv").drop(columns=[DROPPED]).to_csv(tampered, index=False)
    local_run.init_docker(root, network_mode="host", environment=dict(s3_store.credentials))
    with pytest.raises(RuntimeError, match="finished with status .*FAILURE") as failure:
        training_pipeline(
            **_params(copy, source_uri=str(tampered), schema=f"s3://{bucket}/breast_cancer/schema"),
            s3_endpoint=s3_store.endpoint,
            model_name=f"byo-{uuid.uuid4().hex[:8]}",
            mlflow_tracking_uri=tracking_uri,
            serving_target="none",
        )
    assert local_run.failed_task(failure.value) == "data-gate"
    run_dir = local_run.latest_run(root, PIPELINE)
    assert local_run.ran_tasks(run_dir) == {"find-champion", "ingest", "validate-data", "settle"}
    found = json.loads((run_dir / "validate-data" / "anomalies" / "anomalies.json").read_text())
    # The whole folder came from S3: the schema, its drift policy and reference statistics.
    assert found["schema_version"] == SCHEMA_VERSION
    assert found["policy_version"] == "breast-cancer-drift-1.0.0"
    assert (found["baseline"]["kind"], found["baseline"]["rows"]) == ("reference", 569)
    assert {(a["dataset"], a["column"], a["kind"]) for a in found["anomalies"]} == {
        (split, DROPPED, "SCHEMA_MISSING_COLUMN") for split in ("train", "eval", "holdout")
    }
    logs = capfd.readouterr()
    assert f"column '{DROPPED}': SCHEMA_MISSING_COLUMN" in logs.out + logs.err


_LOAD_EACH = """
import sys
from components.validate_data.executor import load_schema
for uri in sys.argv[2:]:
    try:
        load_schema(uri, None, sys.argv[1])
        print("loaded", uri)
    except Exception as exc:
        print(type(exc).__name__, exc)
"""


@pytest.mark.docker
def test_an_s3_schema_that_is_missing_or_incomplete_is_refused_naming_the_uri(
    built_images, s3_store, s3_client
):
    bucket = f"byo-{uuid.uuid4().hex[:8]}"
    s3_client.make_bucket(bucket)
    policy = (EXAMPLE / "schema" / "drift_policy.yaml").read_bytes()
    s3_client.put_object(bucket, "incomplete/drift_policy.yaml", io.BytesIO(policy), len(policy))
    schema = (EXAMPLE / "schema" / "schema.pbtxt").read_bytes()
    s3_client.put_object(bucket, "alone/schema.pbtxt", io.BytesIO(schema), len(schema))
    env = [f"--env={k}={v}" for k, v in s3_store.credentials.items()]
    out = subprocess.run(
        ["docker", "run", "--rm", "--network=host", *env, built_images["tfdv"],
         "python", "-c", _LOAD_EACH, s3_store.endpoint,
         f"s3://{bucket}/missing", f"s3://{bucket}/incomplete", f"s3://{bucket}/alone/schema.pbtxt"],
        check=True, capture_output=True, text=True,
    ).stdout.splitlines()  # fmt: skip
    assert out == [
        f"SchemaError schema 's3://{bucket}/missing' not found on {s3_store.endpoint}: NoSuchKey",
        f"SchemaError schema 's3://{bucket}/incomplete': the folder holds no schema.pbtxt "
        "(found: drift_policy.yaml)",
        f"loaded s3://{bucket}/alone/schema.pbtxt",  # a schema.pbtxt alone: its comparators
    ]
