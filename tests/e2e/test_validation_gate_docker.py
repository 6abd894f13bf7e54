"""The training pipeline in containers stops every corpus batch before transform, and trains on clean data."""

from __future__ import annotations

import io
import json
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest

from pipelines import local as local_run
from tests import corpus
from tests.fixtures import small_search

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]
PIPELINE = "loopline-training"
ALL_TASKS = {
    "find-champion",
    "ingest",
    "validate-data",
    "data-gate",
    "transform",
    "tune",
    "train",
    "evaluate",
    "decision-relay",
    "register",
    "settle",  # the exit handler: serving_target none, it touches nothing
}


def _run(run_training, root: Path, source: Path, **init):
    local_run.init_docker(root, network_mode="host", **init)
    run_training(source_uri=str(source), time_column="day", search_space=small_search())


def _stopped(run_training, root: Path, source: Path, **init) -> tuple[str | None, Path]:
    """Runs a batch that must fail; returns the task kfp.local names as failed, and the run."""
    with pytest.raises(RuntimeError, match="finished with status .*FAILURE") as failure:
        _run(run_training, root, source, **init)
    return local_run.failed_task(failure.value), local_run.latest_run(root, PIPELINE)


def test_january_to_june_trains_through_to_a_model_that_reloads_identically(january_to_june_run):
    """The natural first training window: its seasonal drift is reported, and it trains.

    Run as a dashboard user would start it: only ``source_uri`` set, every other parameter
    at the compiled pipeline's default (the bundled search space: 20 trials), but for the
    registry: the default names the cluster's in-namespace MLflow service, here the test
    session's server (and the session's own model name). The run is the session's
    ``january_to_june_run`` (tests/fixtures.py), whose champion the continuous-training
    tests also start from."""
    run_dir = january_to_june_run.run_dir
    assert local_run.ran_tasks(run_dir) == ALL_TASKS
    found = json.loads((run_dir / "validate-data" / "anomalies" / "anomalies.json").read_text())
    assert found["anomalies"] == [] and found["schema_version"] == "bikeshare-1.1.0"
    assert {(r["dataset"], r["column"]) for r in found["reported"]} == {
        ("train", "temp"),
        ("train", "atemp"),
    }
    # Every split a later step reads was validated.
    meta = json.loads((run_dir / "validate-data" / "statistics" / "metadata.json").read_text())
    assert list(meta["datasets"]) == ["train", "eval", "holdout"]
    assert (run_dir / "validate-data" / "report").read_text().startswith("<!doctype html>")

    arts = {(r.task, r.name): r for r in local_run.run_artifacts(run_dir)}
    model = arts[("train", "model")]
    # Lineage: the model names the data, schema and transform versions it came from.
    assert model.metadata["data_sha256"] == arts[("ingest", "train")].metadata["sha256"]
    assert model.metadata["schema_version"] == "bikeshare-1.1.0"
    assert (
        model.metadata["transform_version"]
        == arts[("transform", "transformer")].metadata["transform_version"]
    )
    bundled = json.loads((ROOT / "components" / "tune" / "specs" / "bikeshare.json").read_text())
    assert json.loads(model.metadata["params"]).keys() == {
        p["name"] for p in bundled["parameters"]
    }  # the default (bundled) search space was tuned
    # Trained in the container, loaded here: the same predictions on raw eval rows.
    loaded = joblib.load(Path(model.uri) / "model.joblib")
    raw = pd.read_parquet(arts[("ingest", "eval_data")].uri)
    in_container = pd.read_parquet(arts[("train", "eval_predictions")].uri)["prediction"]
    np.testing.assert_array_equal(loaded.predict(raw), in_container)


# Every ingest-stage case (each fails a different check in the ingest container), and one
# validate-stage case per kind of check: a schema check, a null-rate check and the drift
# policy. The container path from validate-data to the gate is the same for every finding;
# every validate-stage case is caught on its column and stopped by the gate's own code in the
# TFDV env (components/validate_data/tests/test_tfdv_executor.py).
DOCKER_CASES = [c for c in corpus.CASES if c.stage == "ingest"] + [
    corpus.BY_NAME[name] for name in ("missing_column", "null_rate_spike", "shifted_distribution")
]


@pytest.mark.parametrize("case", DOCKER_CASES, ids=[c.name for c in DOCKER_CASES])
def test_corpus_batch_is_stopped_before_transform(
    case, built_images, local_pipeline_root, capfd, run_training
):
    source = corpus.build(case, local_pipeline_root)
    failed, run_dir = _stopped(run_training, local_pipeline_root, source)
    logs = capfd.readouterr()
    ran = local_run.ran_tasks(run_dir)
    if case.stage == "ingest":
        assert failed == "ingest" and ran <= {"find-champion", "settle"}, (failed, ran)
        assert case.expect in logs.out + logs.err
        return
    # Validation finished and named the column; the gate itself failed; nothing after it ran.
    assert failed == "data-gate", failed
    assert ran == {"find-champion", "ingest", "validate-data", "settle"}, (
        ran
    )  # settle: exit handler
    found = json.loads((run_dir / "validate-data" / "anomalies" / "anomalies.json").read_text())
    assert {"column": case.column, "kind": case.expect} in [
        {"column": a["column"], "kind": a["kind"]} for a in found["anomalies"]
    ]
    # The gate's own message (validate_data logs "ANOMALY train / col: KIND", not this).
    assert f"split 'train', column '{case.column}': {case.expect}" in logs.out + logs.err


def test_defect_in_the_newest_rows_is_stopped_at_the_gate_naming_the_holdout(
    built_images, local_pipeline_root, run_training
):
    """Bad rows only in the newest 10%: the time split puts them in the holdout, which the
    evaluation reads; the gate stops the batch and names the holdout. Run quiet, as
    `make demo` does: one line per task, the failing task's last lines and its log file."""
    case = corpus.BY_NAME["out_of_range"]
    source = corpus.build(case, local_pipeline_root, newest=True)
    terminal = io.StringIO()
    failed, run_dir = _stopped(
        run_training, local_pipeline_root, source, quiet=True, stream=terminal
    )
    assert failed == "data-gate"
    assert local_run.ran_tasks(run_dir) == {"find-champion", "ingest", "validate-data", "settle"}
    assert local_run.task_states(run_dir, failed) == {
        "find-champion": "succeeded",
        "ingest": "succeeded",
        "validate-data": "succeeded",
        "data-gate": "failed",
        "settle": "succeeded",  # the exit handler runs however the run ends
    }  # and transform, tune, train never ran
    found = json.loads((run_dir / "validate-data" / "anomalies" / "anomalies.json").read_text())
    assert {(a["dataset"], a["column"], a["kind"]) for a in found["anomalies"]} == {
        ("holdout", "temp", "FLOAT_TYPE_BIG_FLOAT")
    }
    lines = terminal.getvalue().splitlines()
    states = [line.split()[:2] for line in lines if not line.lstrip().startswith(("|", "---"))]
    assert sorted(states[:2]) == [["find-champion", "ok"], ["ingest", "ok"]], lines
    # The exit handler (settle) runs after the failure, as on a cluster.
    assert states[2:] == [["validate-data", "ok"], ["data-gate", "FAILED"], ["settle", "ok"]], lines
    gate_log = run_dir / "logs" / "data-gate.log"
    assert f"(full log: {gate_log})" in terminal.getvalue()
    message = "split 'holdout', column 'temp': FLOAT_TYPE_BIG_FLOAT"
    assert message in terminal.getvalue() and message in gate_log.read_text()
    assert "executor_input" not in terminal.getvalue()  # the JSON stays in the files
