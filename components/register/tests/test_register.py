"""register and find_champion against a real MLflow tracking server (one per session).

The round trip the training pipeline makes: register a challenger by the gate's decision,
then find it as the champion (downloaded, verified) for the next run's evaluation and
drift baseline.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import joblib
import pandas as pd
import pytest

from components.find_champion import executor as find_champion
from components.lib import artifacts, modeling
from components.lib import registry as reg
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


def _statistics(folder: Path, schema_version: str = "bikeshare-1.1.0", **change) -> str:
    """A statistics folder as validate_data writes it, with its request schema."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metadata.json").write_text(json.dumps({"schema_version": schema_version}))
    body = {
        "format": "loopline-request-schema-1",
        "schema_version": schema_version,
        "columns": {
            "hr": {"type": "int", "min": 0, "max": 23, "nullable": False},
            "temp": {
                "type": "float",
                "min": 0.0,
                "max": 1.0,
                "nullable": True,
                "allow_nan": False,
                "allow_inf": False,
            },
        },
        **change,
    }
    (folder / "schema.json").write_text(json.dumps(body, indent=2))
    return str(folder)


def _register(uri, name, trained, tmp_path, decision, run="run-1", statistics_dir=None):
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
        statistics_dir=statistics_dir,
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


# --------------------------------------------------------------------------- for the serving image


def test_the_version_carries_the_request_schema_and_the_holdout_check_rows(
    tracking_uri, trained, tmp_path
):
    name = "reg-serving-files"
    statistics = _statistics(tmp_path / "statistics")
    result = _register(tracking_uri, name, trained, tmp_path, "promote", statistics_dir=statistics)
    assert result["request_schema"] is True
    assert result["check_rows"] == 600 and result["check_rows_sampled"] is False
    assert "loopline_request_schema.json" in register.markdown(result, tracking_uri)

    registry = Registry(tracking_uri)
    version = registry.get(name, result["version"])
    path = registry.download(name, version.version, str(tmp_path / "dl"))  # verified
    listed = artifacts.verify_mlflow_model(path, version.manifest_sha256)
    assert {reg.REQUEST_SCHEMA_FILE, reg.CHECK_DATA_FILE} <= set(listed)
    # The request schema exactly as validate_data wrote it.
    schema_bytes = Path(statistics, "schema.json").read_bytes()
    registered = json.loads(Path(path, reg.REQUEST_SCHEMA_FILE).read_bytes())
    assert registered == {**json.loads(schema_bytes), "target": "bikers"}
    # Every holdout row, the model's input columns only (no target), values unchanged.
    model_dir, _, holdout_path = trained
    pipeline = joblib.load(Path(model_dir, modeling.MODEL_FILE))
    columns = list(pipeline.feature_names_in_)
    rows = pd.read_parquet(Path(path, reg.CHECK_DATA_FILE))
    assert list(rows.columns) == columns and "bikers" not in rows.columns
    pd.testing.assert_frame_equal(rows, pd.read_parquet(holdout_path)[columns])
    # The registered model predicts on them as scikit-learn did before registering.
    loaded = artifacts.load_mlflow_model(path, version.manifest_sha256)
    pd.testing.assert_series_equal(
        pd.Series(loaded.predict(rows)), pd.Series(pipeline.predict(rows))
    )


def test_statistics_without_a_request_schema_register_with_a_warning(
    tracking_uri, trained, tmp_path, caplog
):
    name = "reg-no-schema"
    older = tmp_path / "statistics"
    older.mkdir()
    (older / "metadata.json").write_text("{}")
    with caplog.at_level(logging.WARNING, logger="loopline.register"):
        result = _register(tracking_uri, name, trained, tmp_path, "reject", statistics_dir=older)
    assert result["request_schema"] is False and result["check_rows"] == 600
    assert any("no schema.json in the statistics" in r.getMessage() for r in caplog.records)
    assert "no request schema" in register.markdown(result, tracking_uri)
    registry = Registry(tracking_uri)
    path = registry.download(name, result["version"], str(tmp_path / "dl"))
    assert not Path(path, reg.REQUEST_SCHEMA_FILE).exists()
    assert Path(path, reg.CHECK_DATA_FILE).exists()


@pytest.mark.parametrize(
    "change, message",
    [
        ({"format": "something-else"}, "format 'something-else', not 'loopline-request-schema-1'"),
        ({"schema_version": "bikeshare-2.0.0"}, "schema version 'bikeshare-2.0.0', but the model"),
        ({"columns": {}}, "no columns"),
    ],
    ids=["format", "schema-version", "no-columns"],
)
def test_a_request_schema_that_does_not_fit_is_refused_and_nothing_registered(
    tracking_uri, trained, tmp_path, change, message
):
    statistics = _statistics(tmp_path / "statistics", **change)
    with pytest.raises(register.RegisterError, match=message):
        _register(
            tracking_uri, "reg-bad-schema", trained, tmp_path, "reject", statistics_dir=statistics
        )
    assert not [v for v in Registry(tracking_uri).versions() if v.name == "reg-bad-schema"]


def test_check_rows_are_bounded_by_a_deterministic_sample_in_holdout_order(monkeypatch):
    holdout = pd.DataFrame({"a": range(50), "b": [x * 0.5 for x in range(50)], "y": 1})
    rows, sampled = register.check_rows(holdout, ["b", "a"])
    assert not sampled and list(rows.columns) == ["b", "a"] and len(rows) == 50
    monkeypatch.setattr(register, "CHECK_ROWS_MAX", 20)
    rows, sampled = register.check_rows(holdout, ["a", "b"])
    again, _ = register.check_rows(holdout, ["a", "b"])
    assert sampled and len(rows) == 20
    pd.testing.assert_frame_equal(rows, again)
    assert rows["a"].is_monotonic_increasing and rows["a"].is_unique
    assert rows["a"].tolist() != list(range(20))  # a sample, not the first rows
    with pytest.raises(register.RegisterError, match="holdout lacks the model's input columns c"):
        register.check_rows(holdout, ["a", "c"])
