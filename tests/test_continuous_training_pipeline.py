"""The continuous-training pipeline as compiled: what a dashboard user uploads and a recurring
run starts. Its defaults work together (with each other, with the ServingRuntime's capture,
with the training pipeline it nests), the branch is on the relay's single output, and the
tasks that read the registry or the capture are never answered from the cache."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from kfp import components

from components.detect_drift import executor as detect_exec
from components.lib import retrain

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent
CT_YAML = ROOT / "pipelines" / "continuous_training" / "pipeline.yaml"
TRAINING_YAML = ROOT / "pipelines" / "training" / "pipeline.yaml"
SPEC = next(yaml.safe_load_all(CT_YAML.read_text()))
PLATFORM = list(yaml.safe_load_all(CT_YAML.read_text()))[1]["platforms"]["kubernetes"]
TASKS = SPEC["root"]["dag"]["tasks"]


def _defaults(path: Path) -> dict:
    pipeline = components.load_component_from_file(str(path))
    return {n: s.default for n, s in pipeline.component_spec.inputs.items() if s.optional}


def _wired(task: str, parameter: str) -> str:
    """The pipeline parameter a task's input is wired to."""
    return TASKS[task]["inputs"]["parameters"][parameter]["componentInputParameter"]


def test_only_source_uri_is_required_and_every_default_loads():
    pipeline = components.load_component_from_file(str(CT_YAML))
    required = [n for n, s in pipeline.component_spec.inputs.items() if not s.optional]
    assert required == ["source_uri"]
    defaults = _defaults(CT_YAML)
    detect_exec.load_config(defaults["monitoring_config"])  # bundled, valid
    assert retrain.RetrainPolicy.load(defaults["retrain_policy"]).consecutive_windows >= 1


def test_defaults_agree_with_the_training_pipeline_and_the_serving_runtime():
    ct, training = _defaults(CT_YAML), _defaults(TRAINING_YAML)
    shared = set(ct) & set(training)
    assert {
        "s3_endpoint",
        "mlflow_tracking_uri",
        "model_name",
        "schema",
        "serving_target",
    } <= shared
    assert {k: ct[k] for k in shared} == {k: training[k] for k in shared}
    runtime = (ROOT / "manifests" / "serving" / "servingruntime.yaml").read_text()
    assert f"--capture_uri={ct['capture_uri']}" in runtime
    # One min_rows: read_window reports against the one detect_drift decides with.
    assert _wired("read-window", "min_rows") == _wired("detect-drift", "min_rows") == "min_rows"


def test_the_nested_training_runs_only_on_the_relays_single_output():
    condition = TASKS["condition-1"]
    assert condition["dependentTasks"] == ["retrain-relay"]
    assert "retrain-relay-Output" in condition["triggerPolicy"]["condition"]
    relay_input = TASKS["retrain-relay"]["inputs"]["parameters"]["should_retrain"]
    assert relay_input["taskOutputParameter"] == {
        "outputParameterKey": "Output",
        "producerTask": "detect-drift",
    }
    inner = SPEC["components"]["comp-condition-1"]["dag"]["tasks"]
    assert [t["componentRef"]["name"] for t in inner.values()] == ["comp-loopline-training"]
    # detect_drift judges only a window the data gate let through.
    assert "data-gate" in TASKS["detect-drift"]["dependentTasks"]
    gate_inputs = TASKS["validate-data"]["inputs"]
    assert gate_inputs["parameters"]["data_name"]["runtimeValue"]["constant"] == "serving"


def test_tasks_that_read_the_registry_or_the_capture_are_never_cached():
    for task in ("find-champion", "read-window", "validate-data", "detect-drift"):
        assert TASKS[task].get("cachingOptions") == {}, task


def test_every_task_requests_cpu_and_memory_and_limits_memory():
    executors = SPEC["deploymentSpec"]["executors"]
    for name, executor in executors.items():
        if "importer" in executor:  # the nested training's feature store: no container
            continue
        resources = executor["container"].get("resources", {})
        assert resources.get("cpuRequest") and resources.get("memoryRequest"), name
        assert resources.get("memoryLimit"), name


def test_the_tasks_that_reach_the_object_store_get_its_credentials_from_a_secret():
    executors = PLATFORM["deploymentSpec"]["executors"]
    for task in ("read-window", "detect-drift"):
        secret = executors[f"exec-{task}"]["secretAsEnv"][0]
        keys = {k["envVar"] for k in secret["keyToEnv"]}
        assert keys == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}, task
