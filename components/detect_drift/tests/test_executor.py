"""detect_drift's judgement on real Bikeshare windows, against the monitoring reference train
writes: the training period is quiet, a new season drifts, decay is found through labels, a
concept change with unchanged inputs is found by the performance path alone."""

from __future__ import annotations

import json
import re
from pathlib import Path

import joblib
import pandas as pd
import pytest

from components.detect_drift import executor, report
from components.lib import drift
from tests.fitted import registrable_model

pytestmark = pytest.mark.unit

TARGET = "bikers"


@pytest.fixture(scope="module")
def trained(tmp_path_factory, bikeshare_csv):
    """A model as train writes it (January to early May), its profile, reference rows, the data."""
    folder = tmp_path_factory.mktemp("detect")
    model_dir, lineage, _ = registrable_model(folder, bikeshare_csv)
    profile = drift.load_profile(Path(model_dir, "drift_profile.json"))
    reference = pd.read_parquet(Path(model_dir, "reference_rows.parquet"))
    model = joblib.load(Path(model_dir, "model.joblib"))
    return model, profile, reference, pd.read_csv(bikeshare_csv), lineage


def window(model, profile, rows: pd.DataFrame, tag: str = "r") -> pd.DataFrame:
    """Captured traffic as the serving image writes it: inputs, prediction, request id, time."""
    columns = list(profile["importance"])
    out = rows.reset_index(drop=True).copy()
    out["prediction"] = model.predict(out[columns])
    out["request_id"] = [f"{tag}-{i}" for i in range(len(out))]
    out["event_time"] = pd.date_range("2011-07-01", periods=len(out), freq="h", tz="UTC")
    return out


def labels_of(frame: pd.DataFrame, values=None) -> pd.DataFrame:
    values = frame[TARGET] if values is None else values
    return pd.DataFrame({"request_id": frame["request_id"], "label": values.astype(float)})


def assess(trained, frame, labels=None, **perf):
    _, profile, reference, _, _ = trained
    config, settings = executor.load_config("default")
    return executor.assess(
        frame,
        profile,
        reference,
        target=TARGET,
        config=config,
        perf={**settings, **perf},
        labels=labels,
    )


def test_train_writes_the_monitoring_reference(trained):
    _, profile, reference, _, lineage = trained
    assert {f["name"] for f in profile["features"]} == set(profile["importance"])
    assert {"temp", "hr", "mnth", "weathersit"} <= set(profile["importance"])
    assert abs(sum(profile["importance"].values()) - 1) < 1e-9
    assert profile["prediction"]["kind"] == "numeric"
    kinds = {f["name"]: f["kind"] for f in profile["features"]}
    assert kinds["temp"] == "numeric" and kinds["mnth"] == "categorical"
    assert {TARGET, "prediction", "temp"} <= set(reference.columns) and len(reference) == 600
    assert lineage["monitoring"]["drift_profile"] == "drift_profile.json"


def test_a_window_from_the_training_period_is_quiet_in_any_column_order(trained):
    model, profile, _, data, _ = trained
    rows = data.iloc[:3000].sample(800, random_state=3)
    for frame in (window(model, profile, rows), window(model, profile, rows).iloc[:, ::-1]):
        out = assess(trained, frame, labels_of(frame))
        assert out["signals"] == {
            "decided": True, "drift": False, "decay": False, "drift_reasons": [],
            "decay_reasons": [], "undecided_reason": "",
        }  # fmt: skip
        assert [f["name"] for f in out["drift"]["features"] if f["drifted"]] == []


def test_a_new_season_drifts_and_the_labels_show_decay(trained):
    model, profile, _, data, _ = trained
    august = window(model, profile, data[data["mnth"] == "Aug"])
    out = assess(trained, august, labels_of(august))
    drifted = {f["name"] for f in out["drift"]["features"] if f["drifted"]}
    assert {"temp", "atemp", "season", "mnth"} <= drifted
    assert out["drift"]["prediction_drift"] and out["signals"]["drift"]
    assert out["realized"]["degraded"] and out["realized"]["value"] > out["baseline"]
    assert out["signals"]["decay"]
    assert re.search(r"realized rmse .* vs baseline", out["signals"]["decay_reasons"][0])


def test_a_concept_change_with_unchanged_inputs_is_found_by_the_performance_path(trained):
    model, profile, _, data, _ = trained
    frame = window(model, profile, data.iloc[:3000].sample(800, random_state=5))
    # The same inputs; from request 300 on, demand 60% higher for them (what Bikeshare saw
    # from July).
    changed = frame[TARGET].astype(float).copy()
    changed.iloc[300:] = changed.iloc[300:] * 1.6 + 20
    out = assess(trained, frame, labels_of(frame, changed))
    assert not out["signals"]["drift"]  # the inputs did not move
    assert out["signals"]["decay"] and out["realized"]["degraded"]
    # The streaming detector places the change after it happened.
    assert out["detector"]["detected"] and out["detector"]["first_change_index"] >= 300
    # Without labels nothing can see it: the estimate from the inputs stays at the baseline.
    quiet = assess(trained, frame)
    assert not quiet["signals"]["decay"] and not quiet["estimated"]["degraded"]


def test_too_few_rows_decide_nothing_and_say_so(trained):
    model, profile, _, data, _ = trained
    out = assess(trained, window(model, profile, data[data["mnth"] == "Aug"].head(120)))
    assert out["signals"]["decided"] is False and out["signals"]["drift"] is False
    assert "120" in out["signals"]["undecided_reason"]


def test_an_empty_window_decides_nothing_and_the_reports_say_so(trained):
    # What read_window writes when nothing was captured: the capture's columns, no rows.
    empty = pd.DataFrame({"request_id": [], "prediction": [], "event_time": []})
    out = assess(trained, empty)
    assert out["signals"]["decided"] is False and not out["signals"]["drift"]
    assert "no rows" in out["signals"]["undecided_reason"]
    result = {
        "model_name": "bikeshare", "model_version": "1", "window_id": "w", "other_versions": {},
        **out, "should_retrain": False, "reason": "no decision", "checked_at": "now",
    }  # fmt: skip
    assert "no rows" in report.markdown(result) and "no rows" in report.html(result)
    json.loads(executor.to_json(result))
    # The KFP Metrics it logs: the numbers it has, nothing for the baseline it has not.
    assert executor.metric_values(result) == {
        "rows": 0.0, "drifted_share": 0.0, "drifted_features": 0.0, "should_retrain": 0.0,
        "labeled_rows": 0.0,
    }  # fmt: skip


def test_a_window_without_a_model_input_is_refused_naming_it(trained):
    model, profile, _, data, _ = trained
    frame = window(model, profile, data.iloc[:600]).drop(columns=["hum"])
    with pytest.raises(executor.MonitorError, match="hum"):
        assess(trained, frame)


def test_the_reports_name_every_feature_and_plot_each_drifted_one(trained):
    model, profile, _, data, _ = trained
    august = window(model, profile, data[data["mnth"] == "Aug"])
    out = assess(trained, august, labels_of(august))
    result = {
        "model_name": "bikeshare", "model_version": "1", "window_id": "bikeshare/a/b",
        "other_versions": {"2": 10}, **out, "should_retrain": True,
        "reason": "retrain: drift in 2 consecutive windows (policy: 2)", "checked_at": "now",
    }  # fmt: skip
    page = report.html(result)
    drifted = [f["name"] for f in out["drift"]["features"] if f["drifted"]] + ["prediction"]
    assert page.count("<svg") == len(drifted)
    assert "<script" not in page and "RETRAIN" in page
    summary = report.markdown(result)
    for name in profile["importance"]:
        assert f"`{name}`" in summary
    assert "realized" in summary and "estimated" in summary
    json.loads(executor.to_json(result))  # NaN-free JSON


def test_the_monitoring_config_refuses_unknown_keys_naming_them():
    with pytest.raises(executor.MonitorError, match="colour"):
        executor.load_config('{"drift": {}, "colour": 1}')
    with pytest.raises(drift.DriftError, match="psi_treshold"):
        executor.load_config('{"drift": {"psi_treshold": 0.2}}')
