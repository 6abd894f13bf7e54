"""Champion vs challenger on the same rows: the paired bootstrap and McNemar's test.

Paired bootstrap: each resample draws ``n`` row indices with replacement (one index matrix
per chunk of resamples, ``rng.integers(0, n, (k, n))``), turns them into per-row counts
and scores *both* models on the same resample with :func:`components.lib.metrics.compute`
(a few matrix products per chunk; no Python loop per resample). Chunks hold at most
``chunk_cells`` index cells (4M: ~100 MB of working memory at any ``n``), so 1,000 resamples
of 100k rows are 25 chunks of 40.

McNemar's test counts the rows where exactly one of the two models is right: ``b`` (only
the champion) and ``c`` (only the challenger). With ``b + c < 25`` it is the exact
two-sided binomial test of ``c`` in ``b + c`` at one half; otherwise the chi-square test
with continuity correction, ``(|b - c| - 1)^2 / (b + c)``, one degree of freedom.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from components.lib import metrics

CHUNK_CELLS = 4_000_000
EXACT_BELOW = 25


def resample_counts(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """``(k, n)`` counts of each row in ``k`` resamples of ``n`` draws with replacement."""
    index = rng.integers(0, n, size=(k, n))
    index += (np.arange(k) * n)[:, None]
    return np.bincount(index.ravel(), minlength=k * n).reshape(k, n).astype(np.float64)


@dataclass
class Comparison:
    """The paired bootstrap of one metric: challenger vs champion on the same resamples."""

    metric: str
    greater_is_better: bool
    champion: float
    challenger: float
    improvement: float  # > 0: the challenger is better (sign follows the metric's goal)
    ci_low: float
    ci_high: float
    confidence: float
    resamples: int
    undefined_resamples: int
    p_not_better: float  # share of resamples where the challenger is not better
    min_effect: float  # in the metric's units
    better_beyond_interval: bool

    def as_dict(self) -> dict:
        return asdict(self)


def paired_bootstrap(
    task: str,
    metric: str,
    y,
    champion_score,
    challenger_score,
    *,
    resamples: int,
    alpha: float,
    min_effect: float,
    seed: int,
    chunk_cells: int = CHUNK_CELLS,
    keep: list | None = None,
) -> Comparison:
    """Paired bootstrap confidence interval of the improvement of ``metric``.

    The improvement is ``challenger - champion`` for a metric where larger is better, and
    ``champion - challenger`` otherwise, so that > 0 always means "the challenger is better".
    The interval is the ``alpha / 2`` and ``1 - alpha / 2`` percentiles of the resampled
    improvements; the challenger is *better beyond the interval* when its lower end is above
    ``min_effect``.

    Args:
        keep: When a list, the resampled improvements are appended to it (for the report).
    """
    y = np.asarray(y, dtype=np.float64)
    a = np.asarray(champion_score, dtype=np.float64)
    b = np.asarray(challenger_score, dtype=np.float64)
    n = len(y)
    sign = 1.0 if metrics.GREATER_IS_BETTER[task][metric] else -1.0
    rng = np.random.default_rng(seed)
    per_chunk = max(1, chunk_cells // max(n, 1))
    parts = []
    done = 0
    while done < resamples:
        k = min(per_chunk, resamples - done)
        counts = resample_counts(n, k, rng)
        on_a = metrics.compute(task, [metric], y, a, counts)[metric]
        on_b = metrics.compute(task, [metric], y, b, counts)[metric]
        parts.append(sign * (on_b - on_a))
        done += k
    improvements = np.concatenate(parts)
    defined = improvements[np.isfinite(improvements)]
    full_a = metrics.point(task, [metric], y, a)[metric]
    full_b = metrics.point(task, [metric], y, b)[metric]
    if len(defined):
        low, high = np.percentile(defined, [100 * alpha / 2, 100 * (1 - alpha / 2)])
        p_not_better = float(np.mean(defined <= 0))
    else:
        low = high = p_not_better = float("nan")
    if keep is not None:
        keep.extend(defined.tolist())
    return Comparison(
        metric=metric,
        greater_is_better=sign > 0,
        champion=full_a,
        challenger=full_b,
        improvement=float(sign * (full_b - full_a)),
        ci_low=float(low),
        ci_high=float(high),
        confidence=1 - alpha,
        resamples=resamples,
        undefined_resamples=int(len(improvements) - len(defined)),
        p_not_better=p_not_better,
        min_effect=float(min_effect),
        better_beyond_interval=bool(np.isfinite(low) and low > min_effect),
    )


@dataclass
class McNemar:
    only_champion_right: int  # b
    only_challenger_right: int  # c
    statistic: float
    p_value: float
    method: str
    alpha: float
    challenger_better: bool  # c > b and p < alpha

    def as_dict(self) -> dict:
        return asdict(self)


def mcnemar(champion_correct, challenger_correct, alpha: float) -> McNemar:
    """McNemar's test on paired correctness (exact below 25 discordant rows, see the module)."""
    from scipy import stats

    a = np.asarray(champion_correct, dtype=bool)
    c_ok = np.asarray(challenger_correct, dtype=bool)
    b = int(np.sum(a & ~c_ok))
    c = int(np.sum(~a & c_ok))
    n = b + c
    if n == 0:
        statistic, p, method = 0.0, 1.0, "no discordant rows"
    elif n < EXACT_BELOW:
        statistic = float(c)
        p = float(stats.binomtest(c, n, 0.5, alternative="two-sided").pvalue)
        method = "exact binomial"
    else:
        statistic = (abs(b - c) - 1) ** 2 / n
        p = float(stats.chi2.sf(statistic, 1))
        method = "chi-square, continuity-corrected"
    return McNemar(b, c, float(statistic), min(p, 1.0), method, alpha, bool(c > b and p < alpha))
