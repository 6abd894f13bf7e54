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


def _ingest_arguments(**overrides) -> dict:
    """The arguments the pipeline gives ingest: its wiring, the pipeline defaults, overrides."""
    wiring = SPEC["root"]["dag"]["tasks"]["ingest"]["inputs"]["parameters"]
    run_args = {**DEFAULTS, **overrides}
    return {
        param: run_args[ref["componentInputParameter"]]
        for param, ref in wiring.items()
        if ref["componentInputParameter"] in run_args
    }


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


# Tasks that read something mutable by name (a snapshot URI, the registry): never cached.
NEVER_CACHED = ["find-champion", "ingest", "register", "register-2"]


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
    }


def test_every_task_requests_cpu_and_memory_and_limits_memory():
    executors = SPEC["deploymentSpec"]["executors"]
    tasks = _tasks()
    container_executors = {
        SPEC["components"][t["componentRef"]["name"]]["executorLabel"] for t in tasks.values()
    }
    assert container_executors == set(executors)  # every executor belongs to a task
    for label in container_executors:
        resources = executors[label]["container"].get("resources", {})
        for key in ("resourceCpuRequest", "resourceMemoryRequest", "resourceMemoryLimit"):
            assert resources.get(key), f"{label} has no {key}"
        assert resources["memoryLimit"] >= resources["memoryRequest"], label
    # The TFDV task needs the most memory (TensorFlow alone is ~0.5 GiB).
    validate = executors["exec-validate-data"]["container"]["resources"]
    assert validate["resourceMemoryRequest"] == "2Gi"
    assert validate["memoryRequest"] == max(
        executors[label]["container"]["resources"]["memoryRequest"] for label in executors
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
