"""The evaluation config: bundled configs, JSON text over the task's defaults, every bad key named."""

from __future__ import annotations

import json
import re

import pytest

from components.evaluate import config
from components.evaluate.config import ConfigError

pytestmark = pytest.mark.unit


def test_bundled_configs_load_complete():
    regression = config.load("bikeshare")
    assert regression["task"] == "regression" and regression["primary_metric"] == "rmse"
    assert regression["slices"]["columns"] == ["workingday", "weathersit", "season"]
    classification = config.load("bikeshare_high_demand")
    assert classification["task"] == "classification"
    assert classification["thresholds"]["max_slice_gap"] == {
        "demographic_parity": None,
        "equalized_odds": 0.5,
    }
    # Every bundled file spells out every key, so that it documents itself.
    for name in ("bikeshare", "bikeshare_high_demand"):
        raw = json.loads((config.CONFIGS_DIR / f"{name}.json").read_text())
        assert set(raw) == set(config.DEFAULTS[raw["task"]])


def test_bundled_latency_limits_are_far_above_any_predict_here():
    for name in ("bikeshare", "bikeshare_high_demand"):
        limits = config.load(name)["thresholds"]["max_latency_p99_ms"]
        assert limits["single_row"] >= 5000 and limits["batch"] >= 30000


def test_json_text_is_laid_over_the_task_defaults():
    loaded = config.load(
        '{"task": "regression", "primary_metric": "mae", "slices": {"columns": ["season"]}}'
    )
    assert loaded["goal"] == "minimize"  # follows the metric
    assert loaded["slices"] == {**config.DEFAULTS["regression"]["slices"], "columns": ["season"]}
    assert loaded["comparison"] == config.DEFAULTS["regression"]["comparison"]
    clf = config.load('{"task": "classification", "primary_metric": "log_loss"}')
    assert clf["goal"] == "minimize"
    assert clf["thresholds"]["max_slice_gap"]["equalized_odds"] == 0.5


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"primary_metric": "rmse"}', "task None is not one of regression, classification"),
        ('{"task": "regression", "treshold": {}}', "unknown key 'treshold'"),
        (
            '{"task": "regression", "comparison": {"min_efect": 0.1}}',
            "unknown key 'comparison.min_efect'",
        ),
        (
            '{"task": "regression", "primary_metric": "f1"}',
            "primary_metric 'f1' is not a regression metric",
        ),
        (
            '{"task": "regression", "primary_metric": "r2", "goal": "minimize"}',
            "goal 'minimize' contradicts primary_metric 'r2'",
        ),
        (
            '{"task": "regression", "thresholds": {"metrics": {"auc": {"min": 1}}}}',
            "thresholds.metrics.auc",
        ),
        (
            '{"task": "regression", "thresholds": {"metrics": {"r2": {"above": 1}}}}',
            'must be {"min": x}',
        ),
        (
            '{"task": "regression", "thresholds": {"max_slice_gap": {"equalized_odds": 0.1}}}',
            "not a regression slice gap",
        ),
        (
            '{"task": "regression", "thresholds": {"min_robustness": 1.5}}',
            "thresholds.min_robustness = 1.5 is outside",
        ),
        ('{"task": "regression", "weights": {"quality": -1}}', "weights.quality = -1 is outside"),
        (
            '{"task": "regression", "weights": {"quality": 0, "slices": 0, "robustness": 0, "latency": 0}}',
            "must not all be 0",
        ),
        (
            '{"task": "regression", "comparison": {"bootstrap_resamples": 10}}',
            "bootstrap_resamples must be an integer >= 100",
        ),
        (
            '{"task": "regression", "comparison": {"alpha": 0.9}}',
            "comparison.alpha = 0.9 is outside",
        ),
        (
            '{"task": "classification", "comparison": {"mcnemar": "maybe"}}',
            "comparison.mcnemar 'maybe'",
        ),
        (
            '{"task": "regression", "slices": {"columns": "season"}}',
            "slices.columns must be a list",
        ),
        ('{"task": "regression", "seed": true}', "seed must be an integer"),
        (
            '{"task": "regression", "thresholds": {"min_score": "high"}}',
            "thresholds.min_score must be a number",
        ),
        ('{"task": "regression", "slices": 3}', "slices must be an object"),
        ("nope", "evaluation config 'nope' not found; bundled: bikeshare, bikeshare_high_demand"),
        ('{"task": ', "is not valid JSON"),
    ],
)
def test_bad_configs_are_named(text, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        config.load(text)
