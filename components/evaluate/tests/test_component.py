"""evaluate and decision_relay through kfp.local.SubprocessRunner: the artifacts, the branch
on the relay's single output (each test asserts which branch really ran), the
ClassificationMetrics artifact, and a tampered model failing the task before unpickling."""

import json
import shutil
from pathlib import Path

import pytest
from kfp import dsl

from components._images import PIPELINE_IMAGE
from components.evaluate.component import decision_relay, evaluate
from components.evaluate.tests.conftest import NO_CHAMPION, fast_config
from components.lib import modeling
from pipelines import local as local_run
from tests.tamper import plant_trap

pytestmark = pytest.mark.local


@dsl.component(base_image=PIPELINE_IMAGE, install_kfp_package=False)
def on_promote(decision: str) -> str:
    """Stands for register's promote path."""
    return f"promoted: {decision}"


@dsl.component(base_image=PIPELINE_IMAGE, install_kfp_package=False)
def on_reject(decision: str) -> str:
    """Stands for register's reject path."""
    return f"rejected: {decision}"


def _imported(path, cls, metadata=None):
    return dsl.importer(
        artifact_uri=str(path), artifact_class=cls, reimport=True, metadata=metadata or {}
    ).output


def _gated_pipeline(splits, challenger, champion_path, champion_meta, config):
    @dsl.pipeline(name="gated")
    def gated():
        judged = evaluate(
            model=_imported(challenger.path, dsl.Model, challenger.meta),
            holdout=_imported(splits.path("holdout"), dsl.Dataset, splits.meta["holdout"]),
            eval_data=_imported(splits.path("eval"), dsl.Dataset, splits.meta["eval"]),
            champion=_imported(champion_path, dsl.Model, champion_meta),
            config=config,
        )
        relay = decision_relay(decision=judged.outputs["decision"])
        with dsl.If(relay.output == "promote"):
            on_promote(decision=relay.output)
        with dsl.Else():
            on_reject(decision=relay.output)

    return gated


def _run(tmp_path, pipeline) -> tuple[dict, set[str], Path]:
    local_run.init_subprocess(tmp_path / "root")
    pipeline()
    run = local_run.latest_run(tmp_path / "root", "gated")
    records = {(r.task, r.name): r for r in local_run.run_artifacts(run)}
    return records, local_run.ran_tasks(run), run


def test_first_model_is_promoted_and_the_promote_branch_runs(splits, models, tmp_path):
    empty = tmp_path / "no-champion"
    empty.mkdir()
    records, ran, run = _run(
        tmp_path, _gated_pipeline(splits, models["good"], empty, NO_CHAMPION, "bikeshare")
    )
    assert {"evaluate", "decision-relay", "on-promote"} <= ran
    assert "on-reject" not in ran
    assert (
        json.loads((run / "on-promote" / "executor_output.json").read_text())["parameterValues"][
            "Output"
        ]
        == "promoted: promote"
    )
    evaluation = records[("evaluate", "evaluation")]
    assert evaluation.metadata["decision"] == "promote"
    assert evaluation.metadata["champion_found"] is False
    assert len(evaluation.metadata["feature_importance"]) == 11
    body = json.loads(
        (Path(evaluation.uri.removeprefix("file://")) / "evaluation.json").read_text()
    )
    assert body["decision"] == "promote" and body["config"]["name"] == "bikeshare"
    metrics = records[("evaluate", "metrics")].metadata
    assert metrics["promote"] == 1.0 and 0 < metrics["holdout_r2"] <= 1
    assert (
        "latency_single_row_p99_ms" in metrics and "slice_gap_weathersit_relative_error" in metrics
    )
    scorecard = Path(records[("evaluate", "scorecard")].uri.removeprefix("file://")).read_text()
    assert scorecard.startswith("# Evaluation: **PROMOTE**")
    page = Path(records[("evaluate", "report")].uri.removeprefix("file://")).read_text()
    assert page.startswith("<!doctype html>") and "<script" not in page
    assert records[("evaluate", "classification_metrics")].metadata == {}


def test_worse_challenger_is_rejected_and_the_reject_branch_runs(splits, models, tmp_path):
    records, ran, run = _run(
        tmp_path,
        _gated_pipeline(
            splits, models["weak"], models["good"].path, models["good"].as_champion(), fast_config()
        ),
    )
    assert {"evaluate", "decision-relay", "on-reject"} <= ran
    assert "on-promote" not in ran
    meta = records[("evaluate", "evaluation")].metadata
    assert meta["decision"] == "reject" and meta["champion_version"] == "3"
    assert any("paired bootstrap CI" in r and r.startswith("FAIL") for r in meta["reasons"])
    assert meta["comparison"]["ci_high"] < 0


def test_classification_logs_confusion_matrix_and_roc_curve(splits, models, tmp_path):
    records, ran, _ = _run(
        tmp_path,
        _gated_pipeline(
            splits,
            models["good_clf"],
            models["linear_clf"].path,
            models["linear_clf"].as_champion("1"),
            fast_config("bikeshare_high_demand"),
        ),
    )
    assert "on-promote" in ran and "on-reject" not in ran
    classification = records[("evaluate", "classification_metrics")].metadata
    matrix = classification["confusionMatrix"]
    assert [c["displayName"] for c in matrix["annotationSpecs"]] == ["0", "1"]
    assert sum(sum(row["row"]) for row in matrix["rows"]) == splits.meta["holdout"]["rows"]
    curve = classification["confidenceMetrics"]
    assert len(curve) > 10
    assert {"falsePositiveRate", "recall", "confidenceThreshold"} <= set(curve[0])
    metrics = records[("evaluate", "metrics")].metadata
    assert 0 <= metrics["mcnemar_p_value"] < 0.05 and metrics["holdout_f1"] > 0.8


def test_a_tampered_model_fails_the_task_before_unpickling(splits, models, tmp_path, capfd):
    copy = tmp_path / "model"
    shutil.copytree(models["good"].path, copy)
    marker = plant_trap(copy / modeling.MODEL_FILE, tmp_path / "unpickled")
    empty = tmp_path / "no-champion"
    empty.mkdir()
    tampered = type(models["good"])(str(copy), models["good"].meta)
    with pytest.raises(RuntimeError, match="Inner task failed.*evaluate"):
        _run(tmp_path, _gated_pipeline(splits, tampered, empty, NO_CHAMPION, fast_config()))
    logs = capfd.readouterr()
    assert (
        f"does not match the sha256 its producer recorded: expected {models['good'].meta['sha256']}"
        in logs.out + logs.err
    )
    assert not marker.exists()
    run = local_run.latest_run(tmp_path / "root", "gated")
    assert not {"decision-relay", "on-promote", "on-reject"} & local_run.ran_tasks(run)
