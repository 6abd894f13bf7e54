"""The training pipeline's defaults, as compiled: a run with only source_uri works on Bikeshare.

The parameters come from the committed pipeline.yaml (kfp's loader for the defaults, the
YAML for the wiring), and ingest runs as its component body does in the pipeline, so a
default that the dashboard shows is the default that is tested.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from kfp import components, dsl

from components.ingest import executor as ingest_exec
from components.ingest.component import ingest
from components.lib import features, modeling, storage
from components.train import executor as train_exec
from components.transform import executor as transform_exec

ROOT = Path(__file__).resolve().parent.parent
PIPELINE_YAML = ROOT / "pipelines" / "training" / "pipeline.yaml"
INGEST_YAML = ROOT / "components" / "ingest" / "component.yaml"

PIPELINE = components.load_component_from_file(str(PIPELINE_YAML))
DEFAULTS = {
    name: spec.default for name, spec in PIPELINE.component_spec.inputs.items() if spec.optional
}
SPEC = next(yaml.safe_load_all(PIPELINE_YAML.read_text()))


def _tasks() -> dict[str, dict]:
    """Every task that runs a container, in the root DAG and inside the condition branches."""
    tasks = dict(SPEC["root"]["dag"]["tasks"])
    for component in SPEC["components"].values():
        tasks.update(component.get("dag", {}).get("tasks", {}))
    return {
        name: task
        for name, task in tasks.items()
        if "executorLabel" in SPEC["components"][task["componentRef"]["name"]]
    }


def _ingest_wiring(task: str) -> dict[str, str]:
    """An ingest task's inputs -> the pipeline parameters they are wired to (the task sits in
    a condition branch, where KFP names a parameter ``pipelinechannel--<name>``)."""
    wiring = _tasks()[task]["inputs"]["parameters"]
    return {
        param: ref["componentInputParameter"].removeprefix("pipelinechannel--")
        for param, ref in wiring.items()
    }


def _ingest_arguments(**overrides) -> dict:
    """The arguments the pipeline gives ingest: its wiring, the pipeline defaults, overrides."""
    run_args = {**DEFAULTS, **overrides}
    return {
        param: run_args[name]
        for param, name in _ingest_wiring("ingest").items()
        if name in run_args
    }


def test_both_ingest_tasks_get_the_same_parameters():
    # "ingest" reads the snapshot (feature_store_uri empty), "ingest-2" the entity / label
    # table whose features feature_join then fetches: one set of data parameters for both.
    assert _ingest_wiring("ingest") == _ingest_wiring("ingest-2")
    assert _ingest_wiring("ingest")["source_uri"] == "source_uri"


def _run_ingest(folder: Path, **overrides) -> dict[str, dsl.Dataset]:
    """Runs the ingest component's body (what the pipeline's first task runs) in-process."""
    outputs = {
        name: dsl.Dataset(uri=str(folder / name)) for name in ("train", "eval_data", "holdout")
    }
    ingest.python_func(
        **_ingest_arguments(**overrides), **outputs, report=dsl.Markdown(uri=str(folder / "report"))
    )
    return outputs


def test_only_source_uri_is_required():
    required = {n for n, s in PIPELINE.component_spec.inputs.items() if not s.optional}
    assert required == {"source_uri"}


def test_defaults_alone_ingest_bikeshare_and_fit_the_later_steps(bikeshare_csv, tmp_path):
    assert DEFAULTS["split_method"] == "time" and DEFAULTS["time_column"] == "day"
    out = _run_ingest(tmp_path, source_uri=str(bikeshare_csv))

    frames = {name: pq.read_table(a.path).to_pandas() for name, a in out.items()}
    assert sum(len(f) for f in frames.values()) == 8645
    # A time split on day: oldest days train, newest holdout, no day in two splits.
    assert frames["train"]["day"].max() < frames["eval_data"]["day"].min()
    assert frames["eval_data"]["day"].max() < frames["holdout"]["day"].min()
    assert [len(frames[n]) for n in ("train", "eval_data", "holdout")] == [6034, 1295, 1316]
    assert out["train"].metadata["split_rule"]["column"] == "day"

    # The later steps' defaults fit the data ingest wrote: the feature spec's columns are
    # there, and train fits the model type that the default search space tunes.
    feature_spec = transform_exec.load_spec(DEFAULTS["feature_spec"])
    features.check_columns(feature_spec, frames["train"].columns)
    fitted = transform_exec.fit(feature_spec, frames["train"])
    assert fitted.transform(frames["eval_data"][list(feature_spec["features"])]).shape[0] == 1295
    assert train_exec.resolve_model_type("", DEFAULTS["search_space"]) in modeling.MODEL_TYPES
    assert DEFAULTS["schema"] == "bikeshare"


# Pipeline parameters that do not work together: each stops in ingest, naming the parameter.
# "before read": the check happens before the snapshot is read (the source does not exist).
BAD_COMBINATIONS = {
    "no time column for the time split": (
        {"time_column": ""},
        "time_column",
        r"split_method 'time' needs time_column, which is empty",
    ),
    "unknown split method": (
        {"split_method": "random"},
        "split_method",
        r"split_method 'random' is not supported",
    ),
    "hash split without a key": (
        {"split_method": "hash"},
        "key_column",
        r"split_method 'hash' needs key_column",
    ),
    "key column with the time split": (
        {"key_column": "hr"},
        "key_column",
        r"key_column 'hr' is set but split_method is 'time'",
    ),
    "fractions over 1": (
        {"train_fraction": 0.8},
        "train_fraction",
        r"train_fraction \+ eval_fraction \+ holdout_fraction must sum to 1",
    ),
    "no eval rows": (
        {"eval_fraction": 0.0, "holdout_fraction": 0.3},
        "eval_fraction",
        r"train_fraction and eval_fraction must be > 0",
    ),
    "negative holdout": (
        {"holdout_fraction": -0.15, "train_fraction": 1.0},
        "holdout_fraction",
        r"holdout_fraction must be a number in \[0, 1\]",
    ),
    "window bound not a time": (
        {"window_start": "spring"},
        "window_start",
        r"window_start 'spring' is neither a number nor a timestamp",
    ),
    "window the wrong way round": (
        {"window_start": "300", "window_end": "10"},
        "window_start",
        r"window_start '300' is not before window_end '10'",
    ),
    "window without a time column": (
        {"split_method": "hash", "key_column": "hr", "time_column": "", "window_end": "100"},
        "time_column",
        r"window_start / window_end are set but time_column is empty",
    ),
    "unknown file format": (
        {"file_format": "xlsx"},
        "file_format",
        r"file_format 'xlsx' is not supported",
    ),
}


@pytest.mark.parametrize("case", list(BAD_COMBINATIONS), ids=list(BAD_COMBINATIONS))
def test_bad_combination_stops_in_ingest_before_reading_and_names_the_parameter(case, tmp_path):
    overrides, parameter, message = BAD_COMBINATIONS[case]
    absent = str(tmp_path / "absent.csv")  # reading it would fail with "not found"
    with pytest.raises(ingest_exec.IngestError, match=message) as caught:
        _run_ingest(tmp_path, source_uri=absent, **overrides)
    assert parameter in str(caught.value)
    assert not any((tmp_path / n).exists() for n in ("train", "eval_data", "holdout"))


# Combinations that only the data can show wrong: named as soon as the snapshot is read.
DATA_COMBINATIONS = {
    "time column not in the data": ({"time_column": "ts"}, r"time_column 'ts' is not a column"),
    "key column not in the data": (
        {"split_method": "hash", "key_column": "station"},
        r"key_column 'station' is not a column",
    ),
    "timestamp window on the numeric day": (
        {"window_start": "2011-03-01"},
        r"window_start '2011-03-01' is not a number, but the time column is numeric",
    ),
    "window outside the data": (
        {"window_start": "400"},
        r"window day in \[400, \+inf\) selects no rows",
    ),
}


@pytest.mark.parametrize("case", list(DATA_COMBINATIONS), ids=list(DATA_COMBINATIONS))
def test_parameter_that_does_not_fit_bikeshare_is_named(case, bikeshare_csv, tmp_path):
    overrides, message = DATA_COMBINATIONS[case]
    with pytest.raises(ingest_exec.IngestError, match=message):
        _run_ingest(tmp_path, source_uri=str(bikeshare_csv), **overrides)


def test_hash_split_with_defaults_otherwise_works(bikeshare_csv, tmp_path):
    out = _run_ingest(
        tmp_path, source_uri=str(bikeshare_csv), split_method="hash", key_column="day"
    )
    days = [set(pq.read_table(a.path).column("day").to_pylist()) for a in out.values()]
    assert not (days[0] & days[1]) and not (days[1] & days[2]) and sum(map(len, days)) == 365


# Tasks that read something mutable by name (a snapshot URI, the registry, the cluster):
# never cached.
NEVER_CACHED = [
    "find-champion",
    "ingest",
    "ingest-2",
    "register",
    "register-2",
    "push",
    "rollout",
    "settle",
]


def test_tasks_that_read_mutable_state_are_never_cached_and_the_rest_are():
    tasks = _tasks()
    caching = {name: t["cachingOptions"].get("enableCache", False) for name, t in tasks.items()}
    assert {n for n, on in caching.items() if not on} == set(NEVER_CACHED)
    # Every other task stays cacheable: its key holds its input artifacts' ids, which a
    # fresh (uncached) ingest run replaces, so no task reuses results from older data.
    assert {n for n, on in caching.items() if on} == {
        "data-gate",
        "validate-data",
        "transform",
        "tune",
        "tune-katib",
        "train",
        "evaluate",
        "decision-relay",
        # The feature store branch: the importer of materialize's output, and the joins, keyed
        # on the entity splits that a fresh ingest run replaces.
        "importer",
        "feature-join",
        "feature-join-2",
        "feature-join-3",
    }


def test_every_task_requests_cpu_and_memory_and_limits_memory():
    executors = SPEC["deploymentSpec"]["executors"]
    tasks = _tasks()
    container_executors = {
        SPEC["components"][t["componentRef"]["name"]]["executorLabel"] for t in tasks.values()
    } - {"exec-importer"}  # the importer runs no container of ours
    assert container_executors == {k for k, e in executors.items() if "container" in e}
    assert set(executors) - container_executors == {"exec-importer"}
    for label in container_executors:
        resources = executors[label]["container"].get("resources", {})
        for key in ("resourceCpuRequest", "resourceMemoryRequest", "resourceMemoryLimit"):
            assert resources.get(key), f"{label} has no {key}"
        assert resources["memoryLimit"] >= resources["memoryRequest"], label
    # The TFDV task needs the most memory (TensorFlow alone is ~0.5 GiB).
    validate = executors["exec-validate-data"]["container"]["resources"]
    assert validate["resourceMemoryRequest"] == "2Gi"
    assert validate["memoryRequest"] == max(
        executors[label]["container"]["resources"]["memoryRequest"] for label in container_executors
    )


def test_s3_secure_defaults_agree_from_pipeline_to_the_object_store_client():
    ingest_spec = components.load_component_from_file(str(INGEST_YAML)).component_spec
    assert DEFAULTS["s3_secure"] is False
    assert ingest_spec.inputs["s3_secure"].default is DEFAULTS["s3_secure"]
    # ...and on down: the executor and the object-store client the component calls.
    defaults = {
        "executor.run": inspect.signature(ingest_exec.run).parameters["s3_secure"].default,
        "read_snapshot": inspect.signature(ingest_exec.read_snapshot)
        .parameters["s3_secure"]
        .default,
        "storage.fetch": inspect.signature(storage.fetch).parameters["secure"].default,
    }
    assert defaults == dict.fromkeys(defaults, DEFAULTS["s3_secure"])


def test_model_type_has_one_source_the_search_space():
    assert "model_type" not in DEFAULTS
    train_inputs = SPEC["root"]["dag"]["tasks"]["train"]["inputs"]["parameters"]
    assert train_inputs["search_space"] == {"componentInputParameter": "search_space"}
    assert "model_type" not in train_inputs  # the train component's default: empty
    # Both tune backends read the same pipeline parameter.
    tasks = _tasks()
    for name in ("tune", "tune-katib"):
        assert tasks[name]["inputs"]["parameters"]["search_space"] == {
            "componentInputParameter": "pipelinechannel--search_space"
        }, name


def test_pipeline_description_names_both_tuning_backends():
    description = SPEC["pipelineInfo"]["description"]
    assert "Optuna" in description and "Katib" in description


def _conditions_of(task_name: str) -> list[str]:
    """The trigger conditions of every group enclosing ``task_name``, innermost first, and
    the exit handler's name when it is inside one."""
    parents = {}  # component name -> (enclosing component name, task name that runs it)
    for holder, component in [("root", SPEC["root"]), *SPEC["components"].items()]:
        for name, task in component.get("dag", {}).get("tasks", {}).items():
            parents[task["componentRef"]["name"]] = (holder, name, task)
    holder = next(
        h
        for h, c in [("root", SPEC["root"]), *SPEC["components"].items()]
        if task_name in c.get("dag", {}).get("tasks", {})
    )
    out = []
    while holder != "root":
        holder, name, task = parents[holder]
        if "condition" in task.get("triggerPolicy", {}):
            out.append(task["triggerPolicy"]["condition"])
        if name.startswith("exit-handler"):
            out.append(name)
    return out


def test_a_promoted_version_is_pushed_and_rolled_out_under_the_settle_exit_handler():
    assert DEFAULTS["serving_target"] == "kserve"  # on a cluster, the loop closes
    for task in ("push", "rollout"):
        where = _conditions_of(task)
        assert where[0] == "inputs.parameter_values['pipelinechannel--serving_target'] == 'kserve'"
        assert "decision-relay-Output'] == 'promote'" in where[1]
        assert where[2].startswith("exit-handler")
    exit_group = _conditions_of("push")[2]
    settle_task = SPEC["root"]["dag"]["tasks"]["settle"]
    assert settle_task["triggerPolicy"]["strategy"] == "ALL_UPSTREAM_TASKS_COMPLETED"
    assert settle_task["dependentTasks"] == [exit_group]
    assert _conditions_of("register") == _conditions_of("push")[1:]  # register is in it too
    # settle reads the same serving parameters, and serving_target (none: a no-op).
    params = settle_task["inputs"]["parameters"]
    for name, source in {
        "model_name": "model_name",
        "mlflow_tracking_uri": "mlflow_tracking_uri",
        "namespace": "serving_namespace",
        "deployment_mode": "deployment_mode",
        "serving_target": "serving_target",
    }.items():
        assert params[name] == {"componentInputParameter": source}, name
    # The rollout waits for push (the serving copy) and rolls out register's version.
    rollout_task = _tasks()["rollout"]
    assert rollout_task["dependentTasks"] == ["push"]
    assert rollout_task["inputs"]["parameters"]["model_version"]["componentInputParameter"] == (
        "pipelinechannel--register-version"
    )


def test_the_deployment_defaults_work_together_on_a_cluster():
    from components.lib.inferenceservice import MODES
    from components.rollout import executor as rollout_exec

    assert DEFAULTS["deployment_mode"] in MODES
    assert DEFAULTS["serving_target"] in rollout_exec.SERVING_TARGETS
    assert DEFAULTS["serving_namespace"] == ""  # the run's own namespace
    policy = rollout_exec.load_policy(DEFAULTS["rollout_policy"])
    assert policy.strategy == "canary" and policy.steps == (10, 25, 50, 100)
    assert DEFAULTS["prometheus_url"].startswith("http://")
    assert DEFAULTS["models_bucket"] == "loopline-models"  # manifests/serving's Secret names it
    # push copies to the pipeline's object store with the pipeline's S3 credentials.
    executors = SPEC["deploymentSpec"]["executors"]
    push_task = _tasks()["push"]
    assert push_task["inputs"]["parameters"]["s3_endpoint"] == {
        "componentInputParameter": "pipelinechannel--s3_endpoint"
    }
    label = SPEC["components"][push_task["componentRef"]["name"]]["executorLabel"]
    assert label in executors
    platform = yaml.safe_load_all(PIPELINE_YAML.read_text())
    next(platform)
    secrets = next(platform)["platforms"]["kubernetes"]["deploymentSpec"]["executors"][label]
    assert secrets["secretAsEnv"][0]["secretNameParameter"] == {
        "componentInputParameter": "pipelinechannel--s3_credentials_secret"
    }
    assert not secrets["secretAsEnv"][0].get("optional")  # push cannot copy without them
    assert {m["envVar"] for m in secrets["secretAsEnv"][0]["keyToEnv"]} == {
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    }
