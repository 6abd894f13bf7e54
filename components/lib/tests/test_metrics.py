"""The shared metrics: the same numbers as scikit-learn, one code path for a score and for
many resamples, and MAPE's rule for zero targets."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from components.lib import metrics

pytestmark = pytest.mark.unit


@pytest.fixture
def regression():
    rng = np.random.default_rng(3)
    y = rng.gamma(2.0, 60.0, 500)
    return y, y + rng.normal(0, 25, 500)


@pytest.fixture
def classification():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 600)
    p = np.clip(0.3 * y + rng.uniform(0, 0.7, 600), 0, 1)
    p[:50] = np.round(p[:50], 1)  # ties
    p[50] = 0.0  # a certain mistake or hit: log loss must clip, not overflow
    return y, p


def test_regression_metrics_are_scikit_learns(regression):
    y, pred = regression
    got = metrics.point("regression", ["rmse", "mae", "r2", "mape", "wape"], y, pred)
    assert got["rmse"] == pytest.approx(skm.root_mean_squared_error(y, pred))
    assert got["mae"] == pytest.approx(skm.mean_absolute_error(y, pred))
    assert got["r2"] == pytest.approx(skm.r2_score(y, pred))
    assert got["mape"] == pytest.approx(skm.mean_absolute_percentage_error(y, pred))
    assert got["wape"] == pytest.approx(np.abs(pred - y).sum() / np.abs(y).sum())


def test_mape_leaves_zero_targets_out_and_counts_them():
    y = np.array([0.0, 0.0, 10.0, 20.0])
    pred = np.array([5.0, 1.0, 12.0, 15.0])
    # scikit-learn divides by epsilon: two zero targets make its MAPE ~1e15.
    assert skm.mean_absolute_percentage_error(y, pred) > 1e14
    assert metrics.point("regression", ["mape"], y, pred)["mape"] == pytest.approx((0.2 + 0.25) / 2)
    assert metrics.mape_excluded_rows(y) == 2
    assert np.isnan(metrics.point("regression", ["mape"], np.zeros(3), np.ones(3))["mape"])
    assert np.isnan(metrics.point("regression", ["r2"], np.ones(3), np.ones(3))["r2"])


def test_classification_metrics_are_scikit_learns(classification):
    y, p = classification
    label = (p > 0.5).astype(int)
    got = metrics.point("classification", metrics.names("classification"), y, p)
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, label))
    assert got["precision"] == pytest.approx(skm.precision_score(y, label))
    assert got["recall"] == pytest.approx(skm.recall_score(y, label))
    assert got["f1"] == pytest.approx(skm.f1_score(y, label))
    assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p))
    assert got["log_loss"] == pytest.approx(skm.log_loss(y, p))
    assert got["tpr"] == pytest.approx(skm.recall_score(y, label))
    tn, fp, fn, tp = skm.confusion_matrix(y, label).ravel()
    assert got["fpr"] == pytest.approx(fp / (fp + tn))
    assert metrics.confusion(y, p) == [[tn, fp], [fn, tp]]


def test_degenerate_classification_cases():
    y = np.ones(5)
    got = metrics.point("classification", ["roc_auc", "fpr", "precision", "f1"], y, np.zeros(5))
    assert np.isnan(got["roc_auc"]) and np.isnan(got["fpr"])
    assert got["precision"] == 0 and got["f1"] == 0  # zero_division=0, as scikit-learn


@pytest.mark.parametrize("task", ["regression", "classification"])
def test_resample_weights_give_the_metrics_of_the_resampled_rows(task, regression, classification):
    y, score = regression if task == "regression" else classification
    rng = np.random.default_rng(7)
    index = rng.integers(0, len(y), size=(25, len(y)))
    counts = np.stack([np.bincount(row, minlength=len(y)) for row in index]).astype(float)
    wanted = metrics.names(task)
    batched = metrics.compute(task, wanted, y, score, counts)
    for k, row in enumerate(index):
        one = metrics.point(task, wanted, y[row], score[row])
        for name in wanted:
            assert batched[name][k] == pytest.approx(one[name], rel=1e-9, abs=1e-12), name


def test_an_unknown_metric_is_named():
    with pytest.raises(metrics.MetricError, match="regression has no metric auc; known: rmse"):
        metrics.point("regression", ["auc"], [1.0], [1.0])
    with pytest.raises(metrics.MetricError, match="task 'ranking'"):
        metrics.names("ranking")


@pytest.mark.parametrize("distinct", [None, 0.5, 0.05])
def test_weighted_roc_auc_with_and_without_ties(distinct):
    """Unique scores, some ties (half the rows), many ties (a few values): each path of the
    AUC equals scikit-learn's on the resampled rows."""
    rng = np.random.default_rng(8)
    n = 2000
    y = rng.integers(0, 2, n)
    score = np.clip(0.3 * y + rng.uniform(0, 0.7, n), 0, 1)
    if distinct:
        tied = rng.random(n) < 0.5 if distinct == 0.5 else np.ones(n, bool)
        score[tied] = np.round(score[tied], 1)
    index = rng.integers(0, n, size=(5, n))
    counts = np.stack([np.bincount(row, minlength=n) for row in index]).astype(float)
    batched = metrics.compute("classification", ["roc_auc"], y, score, counts)["roc_auc"]
    for k, row in enumerate(index):
        assert batched[k] == pytest.approx(skm.roc_auc_score(y[row], score[row]), rel=1e-12)
