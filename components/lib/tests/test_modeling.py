"""Building and scoring the estimator (shared by train, tune and the Katib trials)."""

from __future__ import annotations

import pytest

from components.lib import modeling

pytestmark = pytest.mark.unit


def test_unknown_parameter_and_model_type_are_named():
    with pytest.raises(
        modeling.ModelError, match="HistGradientBoostingRegressor has no parameter depth"
    ):
        modeling.make_estimator("regression", "gradient_boosting", {"depth": 3})
    with pytest.raises(modeling.ModelError, match="model_type 'xgboost'"):
        modeling.make_estimator("regression", "xgboost", {})


def test_final_fit_scores_the_full_iterations_and_seeds_the_estimator():
    estimator = modeling.make_estimator("classification", "gradient_boosting", {"max_iter": 7}, 3)
    params = estimator.get_params()
    assert params["early_stopping"] is False and params["random_state"] == 3
    assert params["max_iter"] == 7
    assert modeling.make_estimator("classification", "linear", {}).get_params()["max_iter"] == 1000


def test_every_task_has_metrics_with_a_direction():
    assert set(modeling.METRICS) == {"regression", "classification"}
    assert all(isinstance(v, bool) for m in modeling.METRICS.values() for v in m.values())
