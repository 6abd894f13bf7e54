"""The evaluation gate on real Bikeshare models, called directly (executor.run).

Each decision test asserts *why*: which checks failed (and that the others passed), so a
rejection for the wrong reason fails the test. Latency never decides here: its limits are
seconds, far above any predict on these machines (see the config).
"""

from __future__ import annotations

import json
import shutil

import pytest

from components.evaluate import executor, gate
from components.evaluate.measures import EvaluationError
from components.evaluate.tests.conftest import NO_CHAMPION, RAIN, fast_config
from components.lib import artifacts, modeling
from tests.tamper import plant_trap, refusal_pattern

pytestmark = pytest.mark.unit

FEATURES = 11  # the bundled feature spec's inputs


def evaluate(splits, challenger, champion=None, config=None, out=None) -> dict:
    return executor.run(
        challenger.path,
        challenger.meta,
        splits.path("holdout"),
        splits.path("eval"),
        champion.path if champion else "",
        champion.as_champion() if champion else NO_CHAMPION,
        config or fast_config(),
        str(out) if out else None,
        holdout_meta=splits.meta["holdout"],
        eval_meta=splits.meta["eval"],
    )


def failed(ev: dict) -> list[str]:
    return [c["name"] for c in ev["checks"] if not c["passed"]]


def check(ev: dict, name: str) -> dict:
    return next(c for c in ev["checks"] if c["name"] == name)


# --------------------------------------------------------------------------- regression


def test_first_model_without_a_champion_is_judged_on_thresholds_alone(splits, models, tmp_path):
    ev = evaluate(splits, models["good"], out=tmp_path / "evaluation")
    assert ev["decision"] == gate.PROMOTE, ev["reasons"]
    assert not any(c["name"].startswith("vs champion") for c in ev["checks"])
    assert "INFO no champion: the thresholds alone decide" in ev["reasons"]
    names = {c["name"] for c in ev["checks"]}
    assert {
        "metric r2",
        "slice gap workingday",
        "slice gap weathersit",
        "slice gap season",
        "robustness",
        "latency single row",
        "latency batch",
        "score",
    } <= names
    # Every section is in evaluation.json, as the registry will read it.
    written = json.loads((tmp_path / "evaluation" / executor.EVALUATION_FILE).read_text())
    assert written == ev
    assert set(ev["metrics"]["holdout"]) >= {"rmse", "mae", "r2", "mape", "mape_excluded_rows"}
    assert ev["metrics"]["holdout"]["r2"] > 0.8 and ev["metrics"]["eval"]["r2"] > 0.8
    assert ev["holdout"] == {
        "rows": splits.meta["holdout"]["rows"],
        "sha256": splits.meta["holdout"]["sha256"],
    }
    assert set(ev["slices"]["columns"]) == {"workingday", "weathersit", "season"}
    assert set(ev["slices"]["columns"]["season"]) == {"1", "2", "3", "4"}
    assert 0 <= ev["robustness"]["score"] <= 1 and set(ev["robustness"]["missing"]) == {
        "hum",
        "windspeed",
    }
    assert ev["latency"]["single_row"]["p50_ms"] <= ev["latency"]["single_row"]["p99_ms"]
    assert 0 <= ev["scorecard"]["score"] <= 1
    assert abs(sum(r["weight"] for r in ev["scorecard"]["criteria"]) - 1) < 1e-9
    # Permutation importance of every input, the hour first (the daily commute).
    importance = ev["feature_importance"]
    assert len(importance["features"]) == FEATURES and importance["metric"] == "rmse"
    assert importance["features"][0]["feature"] == "hr"
    assert abs(sum(f["share"] for f in importance["features"]) - 1) < 1e-9
    stored = json.loads((tmp_path / "evaluation" / executor.IMPORTANCE_FILE).read_text())
    assert stored == importance
    meta = executor.artifact_metadata(ev)
    assert meta["decision"] == "promote" and meta["champion_found"] is False
    assert set(meta["feature_importance"]) == {f["feature"] for f in importance["features"]}
    assert json.loads(json.dumps(meta)) == meta  # what KFP stores


def test_first_model_that_breaks_a_threshold_is_rejected_without_a_champion(splits, models):
    ev = evaluate(splits, models["linear"])
    assert ev["decision"] == gate.REJECT
    assert "robustness" in failed(ev)
    # Ridge cannot predict with an optional value missing: named in the reason.
    reason = check(ev, "robustness")["reason"]
    assert "hum missing 0.000 (ValueError: Input X contains NaN." in reason


def test_a_worse_challenger_is_rejected_by_the_paired_bootstrap(splits, models):
    ev = evaluate(splits, models["weak"], champion=models["good"])
    assert ev["decision"] == gate.REJECT
    # It passes every threshold: the statistical comparison alone rejects it.
    assert failed(ev) == ["vs champion (paired bootstrap)"], ev["reasons"]
    comparison = ev["champion"]["comparison"]
    assert comparison["improvement"] < 0 and comparison["ci_high"] < 0
    assert comparison["resamples"] == 1000 and comparison["confidence"] == 0.95
    reason = check(ev, "vs champion (paired bootstrap)")["reason"]
    assert "95% paired bootstrap CI [" in reason and "over 1000 resamples" in reason
    assert "not better beyond the interval" in reason
    assert ev["champion"]["version"] == "3"
    assert ev["champion"]["sha256"] == models["good"].meta["sha256"]


def test_a_clearly_better_challenger_is_promoted(splits, models):
    ev = evaluate(splits, models["good"], champion=models["weak"])
    assert ev["decision"] == gate.PROMOTE, ev["reasons"]
    c = ev["champion"]["comparison"]
    assert c["ci_low"] > c["min_effect"] > 0
    assert c["min_effect"] == pytest.approx(0.01 * c["champion"])
    assert "better beyond the interval" in check(ev, "vs champion (paired bootstrap)")["reason"]
    assert ev["champion"]["metrics"]["rmse"] == pytest.approx(c["champion"])


def test_better_on_quality_but_breaking_a_slice_gap_is_rejected(splits, models):
    ev = evaluate(splits, models["unfair"], champion=models["linear"])
    assert ev["decision"] == gate.REJECT
    # Better than the champion beyond the interval, and rejected for one slice only.
    assert check(ev, "vs champion (paired bootstrap)")["passed"]
    assert failed(ev) == ["slice gap weathersit"], ev["reasons"]
    gap = next(g for g in ev["slices"]["gaps"] if g["column"] == "weathersit")
    assert gap["high"]["slice"] == RAIN and gap["value"] > gap["limit"]
    assert f"weathersit={RAIN}" in check(ev, "slice gap weathersit")["reason"]
    # The same model passes when that gap is not enforced: the gap alone decided.
    relaxed = fast_config(thresholds={"max_slice_gap": {"relative_error": None}})
    assert evaluate(splits, models["unfair"], models["linear"], relaxed)["decision"] == gate.PROMOTE


def test_the_same_model_against_itself_is_not_promoted(splits, models):
    ev = evaluate(splits, models["good"], champion=models["good"])
    c = ev["champion"]["comparison"]
    assert c["improvement"] == 0 and c["ci_low"] == 0 == c["ci_high"]
    assert failed(ev) == ["vs champion (paired bootstrap)"]


def test_a_tight_threshold_rejects_whatever_the_score(splits, models):
    config = fast_config(thresholds={"metrics": {"r2": {"min": 0.99}}, "min_score": 0.0})
    ev = evaluate(splits, models["good"], champion=models["weak"], config=config)
    assert ev["decision"] == gate.REJECT
    assert failed(ev) == ["metric r2"] and ev["scorecard"]["score"] > 0.5


# --------------------------------------------------------------------------- integrity


@pytest.mark.parametrize("role", ["challenger", "champion"])
def test_a_tampered_model_file_is_refused_before_unpickling(
    role, splits, models, tmp_path, request
):
    if role == "challenger":
        request.getfixturevalue("no_unpickling")  # the challenger is loaded first: nothing is
    # (for the champion, the verified challenger was unpickled; the trap's marker tells)
    copies = {}
    for name in ("good", "weak"):
        copies[name] = tmp_path / name
        shutil.copytree(models[name].path, copies[name])
    victim = copies["good" if role == "challenger" else "weak"]
    marker = plant_trap(victim / modeling.MODEL_FILE, tmp_path / "unpickled")
    name = "model" if role == "challenger" else "champion model"
    expected = models["good" if role == "challenger" else "weak"].meta["sha256"]
    with pytest.raises(artifacts.IntegrityError, match=refusal_pattern(name, expected)):
        executor.run(
            str(copies["good"]),
            models["good"].meta,
            splits.path("holdout"),
            splits.path("eval"),
            str(copies["weak"]),
            models["weak"].as_champion(),
            fast_config(),
            str(tmp_path / "evaluation"),
        )
    assert not marker.exists()
    assert not (tmp_path / "evaluation").exists()  # nothing written


def test_a_champion_record_without_found_or_sha256_is_refused_not_taken_as_no_champion(
    splits, models
):
    record = {k: v for k, v in models["weak"].as_champion().items() if k not in ("found", "sha256")}
    with pytest.raises(
        artifacts.IntegrityError, match="champion model at .* no valid recorded sha256"
    ):
        executor.run(
            models["good"].path,
            models["good"].meta,
            splits.path("holdout"),
            splits.path("eval"),
            models["weak"].path,
            record,
            fast_config(),
        )


def test_a_champion_of_another_target_or_task_and_a_config_of_another_task_are_named(
    splits, models
):
    other = {**models["weak"].as_champion(), "target": "casual"}
    with pytest.raises(
        EvaluationError, match="champion's target 'casual' is not the model's 'bikers'"
    ):
        executor.run(
            models["good"].path,
            models["good"].meta,
            splits.path("holdout"),
            splits.path("eval"),
            models["weak"].path,
            other,
            fast_config(),
        )
    with pytest.raises(
        EvaluationError,
        match="config 'bikeshare_high_demand' is for classification, the model is regression.*bundled: bikeshare, bikeshare_high_demand",
    ):
        evaluate(splits, models["good"], config="bikeshare_high_demand")


# --------------------------------------------------------------------------- classification


def test_classification_first_model_is_promoted_with_its_confusion_matrix_and_roc(splits, models):
    ev = evaluate(splits, models["good_clf"], config=fast_config("bikeshare_high_demand"))
    assert ev["decision"] == gate.PROMOTE, ev["reasons"]
    holdout = ev["metrics"]["holdout"]
    assert set(holdout) >= {"f1", "precision", "recall", "roc_auc", "log_loss", "accuracy"}
    assert holdout["f1"] > 0.8 and holdout["roc_auc"] > 0.95
    matrix = ev["confusion_matrix"]
    assert sum(map(sum, matrix)) == splits.meta["holdout"]["rows"]
    assert matrix[1][1] + matrix[1][0] == int(splits.frames["holdout"]["high_demand"].sum())
    assert ev["classes"] == ["0", "1"]
    roc = ev["plots"]["roc"]["challenger"]
    assert roc["fpr"][0] == 0 and roc["tpr"][-1] == 1 and max(roc["threshold"]) <= 1
    measures = {(g["column"], g["measure"]) for g in ev["slices"]["gaps"]}
    assert ("weathersit", "demographic_parity") in measures
    assert ("weathersit", "equalized_odds") in measures
    assert ev["feature_importance"]["metric"] == "f1"


def test_classification_worse_challenger_is_rejected_with_mcnemar_in_the_reasons(splits, models):
    ev = evaluate(
        splits,
        models["linear_clf"],
        champion=models["good_clf"],
        config=fast_config("bikeshare_high_demand"),
    )
    assert ev["decision"] == gate.REJECT
    assert {"vs champion (paired bootstrap)", "vs champion (McNemar)"} <= set(failed(ev))
    m = ev["champion"]["mcnemar"]
    assert m["only_champion_right"] > m["only_challenger_right"] and m["p_value"] < 0.05
    assert m["method"] == "chi-square, continuity-corrected"
    reason = check(ev, "vs champion (McNemar)")["reason"]
    assert f"only the champion right on {m['only_champion_right']} rows" in reason
    assert "the challenger is not better" in reason


def test_classification_better_challenger_passes_mcnemar_and_is_promoted(splits, models):
    ev = evaluate(
        splits,
        models["good_clf"],
        champion=models["linear_clf"],
        config=fast_config("bikeshare_high_demand"),
    )
    assert ev["decision"] == gate.PROMOTE, ev["reasons"]
    assert check(ev, "vs champion (McNemar)")["passed"]
    assert "right significantly more often" in check(ev, "vs champion (McNemar)")["reason"]


def test_mcnemar_reported_only_does_not_decide(splits, models):
    config = fast_config("bikeshare_high_demand", comparison={"mcnemar": "report"})
    ev = evaluate(splits, models["linear_clf"], champion=models["good_clf"], config=config)
    mcnemar = check(ev, "vs champion (McNemar), reported only")
    assert mcnemar["passed"] and "not better" in mcnemar["text"]


def test_the_relay_passes_a_decision_and_refuses_anything_else():
    assert executor.relay("promote") == "promote" and executor.relay("reject\n") == "reject"
    with pytest.raises(EvaluationError, match="decision 'maybe' is not one of promote, reject"):
        executor.relay("maybe")
