"""Components reusable by URL: a new pipeline built only from the committed component.yaml
files, as a user of kubeflow/pipelines-components would build one (kfp's loader, no Loopline
import), compiled, and run in the components' own images with kfp.local.DockerRunner."""

import json
import shutil
from pathlib import Path

import joblib
import pytest
import yaml
from kfp import compiler, components, dsl

from pipelines import local as local_run

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]


def _load(rel: str):
    # What `components.load_component_from_url(RAW_GITHUB_URL + rel)` returns for a user: the
    # same loader on the same text (no network here).
    return components.load_component_from_file(str(ROOT / rel))


ingest = _load("components/ingest/component.yaml")
validate_data = _load("components/validate_data/component.yaml")
data_gate = _load("components/data_gate/component.yaml")
transform = _load("components/transform/component.yaml")
train = _load("components/train/component.yaml")

# A user's own choice of hyperparameters: no tuning step in this pipeline.
# (Not the estimator defaults: the trained model must show these came through.)
PARAMS = {"learning_rate": 0.2, "max_iter": 40, "max_leaf_nodes": 15, "loss": "squared_error"}


@dsl.pipeline(name="user-train-without-tuning")
def user_pipeline(source_uri: str):
    split = ingest(source_uri=source_uri, time_column="day")
    checked = validate_data(
        data=split.outputs["train"],
        eval_data=split.outputs["eval_data"],
        holdout_data=split.outputs["holdout"],
    )
    gate = data_gate(
        anomalies_found=checked.outputs["anomalies_found"],
        anomalies=checked.outputs["anomalies"],
    )
    fitted = transform(train=split.outputs["train"]).after(gate)
    train(
        train_data=split.outputs["train"],
        eval_data=split.outputs["eval_data"],
        transformer=fitted.outputs["transformer"],
        statistics=checked.outputs["statistics"],
        params=json.dumps(PARAMS),
    )


def test_a_pipeline_composed_from_the_committed_yaml_compiles_and_runs_in_containers(
    built_images, local_pipeline_root, bikeshare_csv, tmp_path
):
    package = tmp_path / "user_pipeline.yaml"
    compiler.Compiler().compile(user_pipeline, package_path=str(package))
    spec = yaml.safe_load(package.read_text())
    images = {
        executor["container"]["image"] for executor in spec["deploymentSpec"]["executors"].values()
    }
    assert images == {built_images["pipeline"], built_images["tfdv"]}

    snapshot = local_pipeline_root / "bikeshare.csv"
    shutil.copy(bikeshare_csv, snapshot)
    local_run.init_docker(local_pipeline_root)
    user_pipeline(source_uri=str(snapshot))

    run_dir = local_run.latest_run(local_pipeline_root, "user-train-without-tuning")
    records = {(r.task, r.name): r for r in local_run.run_artifacts(run_dir)}
    assert {task for task, _ in records} >= {"ingest", "validate-data", "transform", "train"}
    model_dir = Path(records[("train", "model")].uri)
    model = joblib.load(next(model_dir.rglob("model.joblib")))
    estimator = model.named_steps["model"].get_params()
    assert {name: estimator[name] for name in PARAMS} == PARAMS
    assert records[("train", "metrics")].metadata  # the eval metrics the KFP UI shows
