"""The paired bootstrap and McNemar's test, against references computed the slow way."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from components.evaluate import stats
from components.lib import metrics

pytestmark = pytest.mark.unit


@pytest.fixture
def pair():
    rng = np.random.default_rng(11)
    y = rng.gamma(2.0, 60.0, 800)
    return y, y + rng.normal(0, 30, 800), y + rng.normal(0, 26, 800)


def test_paired_bootstrap_equals_a_loop_over_the_same_resamples(pair):
    y, champion, challenger = pair
    result = stats.paired_bootstrap(
        "regression", "rmse", y, champion, challenger,
        resamples=300, alpha=0.1, min_effect=0.0, seed=5, chunk_cells=50_000,
    )  # fmt: skip
    # The reference draws the same index rows one resample at a time.
    rng = np.random.default_rng(5)
    index = rng.integers(0, len(y), size=(300, len(y)))
    loop = np.array(
        [
            metrics.point("regression", ["rmse"], y[i], champion[i])["rmse"]
            - metrics.point("regression", ["rmse"], y[i], challenger[i])["rmse"]
            for i in index
        ]
    )
    low, high = np.percentile(loop, [5, 95])
    assert result.ci_low == pytest.approx(low) and result.ci_high == pytest.approx(high)
    assert result.p_not_better == pytest.approx(np.mean(loop <= 0))
    assert result.improvement == pytest.approx(
        metrics.point("regression", ["rmse"], y, champion)["rmse"]
        - metrics.point("regression", ["rmse"], y, challenger)["rmse"]
    )
    assert result.confidence == pytest.approx(0.9) and result.resamples == 300


def test_chunking_does_not_change_the_result(pair):
    y, champion, challenger = pair
    args = dict(resamples=400, alpha=0.05, min_effect=0.1, seed=9)
    one = stats.paired_bootstrap("regression", "mae", y, champion, challenger, **args)
    many = stats.paired_bootstrap(
        "regression", "mae", y, champion, challenger, chunk_cells=7_000, **args
    )
    assert one == many


def test_improvement_sign_follows_the_goal_and_min_effect_gates(pair):
    y, champion, challenger = pair
    for metric in ("rmse", "r2"):  # smaller is better / larger is better
        result = stats.paired_bootstrap(
            "regression", metric, y, champion, challenger,
            resamples=500, alpha=0.05, min_effect=0.0, seed=1,
        )  # fmt: skip
        assert result.improvement > 0 and result.ci_low > 0 and result.better_beyond_interval
        strict = stats.paired_bootstrap(
            "regression", metric, y, champion, challenger,
            resamples=500, alpha=0.05, min_effect=result.ci_low + 1e-9, seed=1,
        )  # fmt: skip
        assert not strict.better_beyond_interval


def test_paired_bootstrap_of_roc_auc_with_ties():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 400)
    a = np.round(np.clip(0.4 * y + rng.uniform(0, 0.6, 400), 0, 1), 1)
    b = np.round(np.clip(0.5 * y + rng.uniform(0, 0.5, 400), 0, 1), 1)
    result = stats.paired_bootstrap(
        "classification", "roc_auc", y, a, b, resamples=200, alpha=0.05, min_effect=0, seed=3
    )
    index = np.random.default_rng(3).integers(0, 400, size=(200, 400))
    from sklearn.metrics import roc_auc_score

    loop = np.array([roc_auc_score(y[i], b[i]) - roc_auc_score(y[i], a[i]) for i in index])
    assert result.ci_low == pytest.approx(np.percentile(loop, 2.5))
    assert result.undefined_resamples == 0


def test_mcnemar_exact_below_25_discordant_rows():
    champion = np.array([True] * 1 + [False] * 9 + [True] * 40)
    challenger = np.array([False] * 1 + [True] * 9 + [True] * 40)
    result = stats.mcnemar(champion, challenger, alpha=0.05)
    assert (result.only_champion_right, result.only_challenger_right) == (1, 9)
    assert result.method == "exact binomial"
    assert result.p_value == pytest.approx(sps.binomtest(9, 10, 0.5).pvalue)
    assert result.p_value == pytest.approx(22 / 1024)  # 2 * (1 + 10) / 2^10
    assert result.challenger_better


def test_mcnemar_chi_square_with_continuity_correction():
    champion = np.array([True] * 10 + [False] * 40 + [True] * 100)
    challenger = np.array([False] * 10 + [True] * 40 + [True] * 100)
    result = stats.mcnemar(champion, challenger, alpha=0.05)
    assert result.method == "chi-square, continuity-corrected"
    assert result.statistic == pytest.approx((30 - 1) ** 2 / 50)
    assert result.p_value == pytest.approx(sps.chi2.sf((30 - 1) ** 2 / 50, 1))
    assert result.challenger_better
    reverse = stats.mcnemar(challenger, champion, alpha=0.05)
    assert reverse.p_value == result.p_value and not reverse.challenger_better


def test_mcnemar_without_disagreement_is_not_better():
    same = np.array([True, False, True])
    result = stats.mcnemar(same, same, alpha=0.05)
    assert result.p_value == 1.0 and not result.challenger_better
    assert result.method == "no discordant rows"


def test_resample_counts_are_draws_with_replacement():
    counts = stats.resample_counts(50, 30, np.random.default_rng(0))
    assert counts.shape == (30, 50) and (counts.sum(axis=1) == 50).all()
    assert (counts >= 0).all() and (counts.max(axis=1) > 1).any()
