"""Tune, local backend: spec rules before any trial, every algorithm, pruning, the reports,
and a tampered transformer refused before it is unpickled."""

from __future__ import annotations

import copy
import json
import re
import time

import pandas as pd
import pytest

from components.lib import artifacts, features
from components.transform import executor as transform_exec
from components.tune import executor, search_space
from tests.tamper import plant_trap, refusal_pattern

pytestmark = pytest.mark.unit

SMALL = {
    "objective": {"metric": "rmse", "goal": "minimize"},
    "algorithm": "tpe",
    "max_trials": 4,
    "parallel_trials": 2,
    "model_type": "gradient_boosting",
    "parameters": [
        {"name": "learning_rate", "type": "double", "min": 0.05, "max": 0.3, "step": 0.05},
        {"name": "max_iter", "type": "int", "min": 10, "max": 30, "step": 10},
        {"name": "loss", "type": "categorical", "values": ["squared_error", "poisson"]},
    ],
}


@pytest.fixture(scope="module")
def data(bikeshare_csv):
    frame = pd.read_csv(bikeshare_csv)
    train, valid = frame.iloc[:3000], frame.iloc[3000:4000]
    spec = transform_exec.load_spec("bikeshare")
    return spec, transform_exec.fit(spec, train), train, valid


@pytest.mark.parametrize("algorithm", search_space.ALGORITHMS)
def test_every_algorithm_runs_the_spec(algorithm, data):
    spec = {**copy.deepcopy(SMALL), "algorithm": algorithm}
    feature_spec, transformer, train, valid = data
    result = executor.run_optuna(spec, transformer, feature_spec, train, valid, seed=1)
    assert len(result.trials) == 4
    assert set(result.best_params) == {"learning_rate", "max_iter", "loss"}
    completed = [t["value"] for t in result.trials if t["state"] == "COMPLETE"]
    assert result.best_value == min(completed)


def test_parallel_workers_never_overrun_the_trial_budget(data, monkeypatch):
    # Four workers, a budget of five, trials of equal length: all four finish their first trial
    # at about the same moment and race for the one trial left. (Optuna's MaxTrialsCallback
    # checks the count after a trial and another worker can create one in between: a CI run
    # once saw five trials of a budget of four; the workers now claim a slot before a trial.)
    def slow_objective(*args, **kwargs):
        def objective(trial):
            trial.suggest_float("learning_rate", 0.01, 0.5)
            time.sleep(0.5)
            return 1.0

        return objective

    monkeypatch.setattr(executor, "make_objective", slow_objective)
    spec = {**copy.deepcopy(SMALL), "algorithm": "random", "max_trials": 5, "parallel_trials": 4}
    feature_spec, transformer, train, valid = data
    result = executor.run_optuna(spec, transformer, feature_spec, train, valid, seed=0)
    assert len(result.trials) == 5, [t["number"] for t in result.trials]


def test_median_stopping_prunes_weak_trials(data):
    spec = {
        **copy.deepcopy(SMALL),
        "algorithm": "random",
        "max_trials": 16,
        "parallel_trials": 1,
        "early_stopping": {"algorithm": "medianstop", "min_trials_required": 3, "start_step": 1},
        "parameters": [
            {"name": "learning_rate", "type": "double", "min": 0.001, "max": 0.5, "log": True}
        ],
    }
    feature_spec, transformer, train, valid = data
    result = executor.run_optuna(spec, transformer, feature_spec, train, valid, seed=3)
    assert any(t["state"] == "PRUNED" for t in result.trials)
    assert "trials pruned early" in executor.markdown(spec, result)
    page = executor.html(spec, result)
    completed = sum(t["state"] == "COMPLETE" for t in result.trials)
    assert page.count("<circle") == completed and "best so far" in page and "<script" not in page


def _broken(**changes):
    spec = copy.deepcopy(SMALL)
    for key, value in changes.items():
        if key == "param":
            spec["parameters"][0].update(value)
        else:
            spec[key] = value
    return spec


BAD = {
    "empty range": (
        _broken(param={"min": 0.3, "max": 0.3}),
        r"parameter 'learning_rate': empty range, min 0.3 >= max 0.3",
    ),
    "unknown algorithm": (_broken(algorithm="genetic"), r"algorithm 'genetic' is not supported"),
    "budget below parallelism": (
        _broken(max_trials=2, parallel_trials=3),
        r"max_trials \(2\) is below parallel_trials \(3\)",
    ),
    "no parameters": (_broken(parameters=[]), r"parameters is empty"),
    "bad goal": (_broken(objective={"metric": "rmse", "goal": "lower"}), r"objective.goal 'lower'"),
    "log scale at zero": (_broken(param={"min": 0.0, "log": True}), r"a log scale needs min > 0"),
    "empty values": (
        _broken(parameters=[{"name": "loss", "type": "categorical", "values": []}]),
        r"'loss': empty list of values",
    ),
    "grid without step": (
        _broken(
            algorithm="grid",
            parameters=[{"name": "learning_rate", "type": "double", "min": 0.1, "max": 0.2}],
        ),
        r"grid algorithm needs a step",
    ),
    "unknown early stopping": (
        _broken(early_stopping={"algorithm": "patience"}),
        r"early_stopping.algorithm 'patience'",
    ),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_search_space_is_rejected_before_any_trial(case, data, monkeypatch):
    spec, message = BAD[case]
    feature_spec, transformer, train, valid = data
    monkeypatch.setattr(executor, "make_objective", lambda *a, **k: pytest.fail("a trial ran"))
    with pytest.raises(search_space.SearchSpaceError, match=message):
        executor.run_optuna(spec, transformer, feature_spec, train, valid)


def test_wrong_metric_for_the_task_is_named(data):
    feature_spec, transformer, train, valid = data
    spec = _broken(objective={"metric": "accuracy", "goal": "maximize"})
    with pytest.raises(
        search_space.SearchSpaceError, match="'accuracy' is not a regression metric"
    ):
        executor.run_optuna(spec, transformer, feature_spec, train, valid)


def test_feature_spec_naming_a_missing_column_fails_before_any_trial(data):
    feature_spec, transformer, train, valid = data
    with pytest.raises(features.TransformSpecError, match="lacks: bikers"):
        executor.run_optuna(
            copy.deepcopy(SMALL), transformer, feature_spec, train.drop(columns=["bikers"]), valid
        )


def test_bundled_search_space_is_valid():
    spec = search_space.load("bikeshare")
    assert spec["algorithm"] == "tpe" and spec["max_trials"] >= spec["parallel_trials"]
    assert search_space.load(json.dumps(SMALL))["max_trials"] == 4


def test_same_seed_same_result_with_one_trial_at_a_time(data):
    feature_spec, transformer, train, valid = data
    spec = {**copy.deepcopy(SMALL), "parallel_trials": 1}
    first = executor.run_optuna(spec, transformer, feature_spec, train, valid, seed=5)
    second = executor.run_optuna(spec, transformer, feature_spec, train, valid, seed=5)
    assert first.best_params == second.best_params and first.best_value == second.best_value


def test_run_loads_the_transformer_verified_and_refuses_a_tampered_one(data, tmp_path, monkeypatch):
    feature_spec, transformer, train, valid = data
    train.to_parquet(tmp_path / "train.parquet")
    valid.to_parquet(tmp_path / "eval.parquet")
    meta = transform_exec.save(transformer, feature_spec, str(tmp_path / "transformer"))
    spec = json.dumps({**copy.deepcopy(SMALL), "max_trials": 2, "parallel_trials": 1})
    paths = (str(tmp_path / "train.parquet"), str(tmp_path / "eval.parquet"))
    result = executor.run(*paths, str(tmp_path / "transformer"), meta, spec, seed=1)
    assert len(result.trials) == 2

    marker = plant_trap(
        tmp_path / "transformer" / features.TRANSFORMER_FILE, tmp_path / "unpickled"
    )
    monkeypatch.setattr(executor, "run_optuna", lambda *a, **k: pytest.fail("a trial ran"))
    import joblib

    monkeypatch.setattr(joblib, "load", lambda *a, **k: pytest.fail("joblib.load was called"))
    with pytest.raises(
        artifacts.IntegrityError, match=refusal_pattern("transformer", meta["sha256"])
    ):
        executor.run(*paths, str(tmp_path / "transformer"), meta, spec)
    assert not marker.exists()


HOSTILE = "<script>alert(1)</script>"


def _hostile_result():
    spec = {
        **copy.deepcopy(SMALL),
        "objective": {"metric": f"rmse{HOSTILE}", "goal": "minimize"},
        "algorithm": f"tpe{HOSTILE}",
    }
    params = {"loss": f"poisson{HOSTILE}`|`", "max_iter": 10}
    trials = [
        {"number": 0, "state": "COMPLETE", "value": 2.0, "params": params},
        {"number": 1, "state": "COMPLETE", "value": 1.0, "params": params},
    ]
    return spec, executor.TuneResult(params, 1.0, trials, 0.5)


def test_html_report_escapes_search_space_values():
    spec, result = _hostile_result()
    page = executor.html(spec, result)
    assert "<script" not in page
    assert page.count("&lt;script&gt;alert(1)&lt;/script&gt;") == 4  # metric x2, algorithm, params
    assert "poisson&lt;script&gt;" in page


def test_markdown_report_keeps_values_inside_code_spans():
    spec, result = _hostile_result()
    text = executor.markdown(spec, result)
    # Every hostile value sits in a code span fenced by more backticks than it holds,
    # with its table pipes escaped, so no renderer reads it as HTML or as table cells.
    for line in text.splitlines():
        if HOSTILE in line:
            outside = re.sub(r"(`+)(?:(?!\1).)+?\1", "", line)
            assert HOSTILE not in outside, line
    row = next(line for line in text.splitlines() if line.startswith("| 1 |"))
    assert row.count(" | ") == 3 and "\\|" in row
