"""register and find_champion against a real MLflow tracking server (one per session).

The round trip the training pipeline makes: register a challenger by the gate's decision,
then find it as the champion (downloaded, verified) for the next run's evaluation and
drift baseline.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from components.find_champion import executor as find_champion
from components.lib import artifacts
from components.lib.registry import Registry
from components.register import executor as register
from tests.fitted import registrable_model

pytestmark = pytest.mark.mlflow


@pytest.fixture(scope="module")
def trained(tmp_path_factory, bikeshare_csv):
    folder = tmp_path_factory.mktemp("registered")
    model_dir, lineage, example = registrable_model(folder, bikeshare_csv)
    holdout = folder / "holdout"
    pd.read_csv(bikeshare_csv).iloc[4000:4600].to_parquet(holdout, index=False)
    return model_dir, lineage, holdout


def _evaluation(folder: Path, decision: str) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "evaluation.json").write_text(
        json.dumps(
            {
                "decision": decision,
                "reasons": [f"test: {decision}", "rmse 70.5 <= limit 200"],
                "metrics": {"holdout": {"rmse": 70.5}},
                "scorecard": {"score": 0.8},
                "feature_importance": {"temp": 12.5, "hr": 40.1},
            }
        )
    )
    return str(folder)


def _register(uri, name, trained, tmp_path, decision, run="run-1"):
    model_dir, lineage, holdout = trained
    return register.run(
        uri,
        name,
        model_dir,
        lineage,
        str(holdout),
        {"sha256": "c" * 64},
        _evaluation(tmp_path / f"evaluation-{decision}-{run}", decision),
        f"/runs/{run}/validate-data/statistics",
        decision,
        run,
    )


def test_no_registry_or_no_production_version_means_no_champion(tracking_uri, tmp_path):
    meta, baseline = find_champion.run("", "bikeshare", str(tmp_path / "a"))
    assert meta == {"found": False, "reason": "no mlflow_tracking_uri"} and baseline == ""
    meta, baseline = find_champion.run(tracking_uri, "never-registered", str(tmp_path / "b"))
    assert meta["found"] is False and baseline == ""


def test_first_promoted_version_goes_to_production_and_is_found_as_the_champion(
    tracking_uri, trained, tmp_path
):
    name = "reg-first"
    result = _register(tracking_uri, name, trained, tmp_path, "promote")
    assert result["path"] == ["candidate", "staging", "production"] and result["first_version"]
    registry = Registry(tracking_uri)
    version = registry.get(name, result["version"])
    assert version.state == "production"
    # The lineage the pipeline wrote, read back: hashes, run, metrics, feature importance.
    assert version.lineage["pipeline_run_id"] == "run-1"
    assert version.lineage["holdout_sha256"] == "c" * 64
    assert version.lineage["sha256"] == trained[1]["sha256"]
    assert version.lineage["feature_importance"] == {"temp": 12.5, "hr": 40.1}
    assert version.lineage["evaluation"]["decision"] == "promote"
    assert version.statistics_uri == "/runs/run-1/validate-data/statistics"
    history = [(t.from_state, t.to_state) for t in registry.history(name, result["version"])]
    assert history == [(None, "candidate"), ("candidate", "staging"), ("staging", "production")]

    meta, baseline = find_champion.run(tracking_uri, name, str(tmp_path / "champion"))
    assert meta["found"] is True and meta["version"] == result["version"]
    assert baseline == "/runs/run-1/validate-data/statistics"
    # The download is the verified MLflow directory, and it loads and predicts.
    directory = tmp_path / "champion" / meta["path"]
    model = artifacts.load_mlflow_model(directory, meta["manifest_sha256"])
    rows = pd.read_parquet(trained[2]).head(3).drop(columns=["bikers"])
    assert len(model.predict(rows)) == 3


def test_a_later_promoted_version_stops_at_staging_and_a_rejected_one_is_final(
    tracking_uri, trained, tmp_path
):
    name = "reg-later"
    first = _register(tracking_uri, name, trained, tmp_path, "promote", "run-1")
    second = _register(tracking_uri, name, trained, tmp_path, "promote", "run-2")
    third = _register(tracking_uri, name, trained, tmp_path, "reject", "run-3")
    assert second["path"] == ["candidate", "staging"] and not second["first_version"]
    assert third["path"] == ["candidate", "rejected"]
    registry = Registry(tracking_uri)
    assert registry.champion(name).version == first["version"]  # production unchanged
    rejected = registry.history(name, third["version"])[-1]
    assert rejected.to_state == "rejected" and "test: reject" in rejected.reason


def test_a_decision_that_disagrees_with_the_evaluation_is_refused(tracking_uri, trained, tmp_path):
    model_dir, lineage, holdout = trained
    with pytest.raises(register.RegisterError, match="differs from the evaluation's 'reject'"):
        register.run(
            tracking_uri,
            "reg-mismatch",
            model_dir,
            lineage,
            str(holdout),
            {},
            _evaluation(tmp_path / "e", "reject"),
            "/stats",
            "promote",
            "run-9",
        )
    assert not [v for v in Registry(tracking_uri).versions() if v.name == "reg-mismatch"]
