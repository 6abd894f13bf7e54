"""Model-quality metrics, one definition for a single score and for many bootstrap resamples.

Every metric is computed from per-row values and a weight matrix ``W`` of shape
``(k, n)``: row ``j`` of ``W`` says how many times each of the ``n`` rows counts in the
``j``-th evaluation. A plain score is ``W = ones((1, n))``; a bootstrap resample is the
count of each row among ``n`` draws with replacement. So the paired bootstrap evaluates
``k`` resamples with a few matrix products (no Python loop per resample), and a point
score and a resample use the same code, so they cannot disagree.

Regression (``score`` is the prediction):

* ``rmse``, ``mae``, ``r2`` as scikit-learn defines them (``r2`` is NaN when the target
  is constant).
* ``mape``: mean of ``|y - prediction| / |y|`` as a fraction (0.25 = 25%), over the rows
  whose target is not 0. A zero target has no relative error, so those rows are left
  out (never divided by a tiny epsilon, as scikit-learn's ``mean_absolute_percentage_error``
  does, which turns one zero into an error of ~1e15); :func:`mape_excluded_rows` counts
  them and the evaluation reports the count. NaN when every target is 0.
* ``wape``: ``sum |error| / sum |y|``, the relative error used for slice gaps (defined
  with zero targets).

Binary classification (``y`` is 0 / 1, ``score`` is the probability of class 1; the
predicted label is ``score > 0.5``, which is what ``predict`` returns for a binary
scikit-learn classifier):

* ``accuracy``; ``precision``, ``recall``, ``f1`` of the positive class (0 when the
  denominator is 0, as scikit-learn's ``zero_division=0``); ``roc_auc`` (Mann-Whitney, ties
  count one half; NaN when only one class is present); ``log_loss`` (probabilities clipped
  to ``[eps, 1 - eps]``, eps of float64, as scikit-learn);
* rates for slice gaps: ``positive_rate`` (share predicted 1), ``tpr`` and ``fpr``
  (NaN without positives / negatives).

numpy only.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

# Metric name -> True when larger is better (what the evaluation gate may rank on).
REGRESSION = {"rmse": False, "mae": False, "r2": True, "mape": False}
CLASSIFICATION = {
    "f1": True,
    "precision": True,
    "recall": True,
    "accuracy": True,
    "roc_auc": True,
    "log_loss": False,
}
GREATER_IS_BETTER = {"regression": REGRESSION, "classification": CLASSIFICATION}
# Also computable, for slices: not ranked on.
EXTRA = {"regression": ("wape",), "classification": ("positive_rate", "tpr", "fpr")}
THRESHOLD = 0.5
_EPS = np.finfo(np.float64).eps


class MetricError(ValueError):
    """A metric that does not exist for the task; the message names it and the known ones."""


def names(task: str) -> tuple[str, ...]:
    """Every metric of ``task`` (ranked ones first)."""
    if task not in GREATER_IS_BETTER:
        raise MetricError(f"task {task!r} is not one of {', '.join(GREATER_IS_BETTER)}")
    return (*GREATER_IS_BETTER[task], *EXTRA[task])


def _ratio(num: np.ndarray, den: np.ndarray, empty: float = np.nan) -> np.ndarray:
    safe = np.where(den > 0, den, 1.0)
    return np.where(den > 0, num / safe, empty)


def _auc(y: np.ndarray, score: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted Mann-Whitney AUC for every row of ``weights`` (ties count one half).

    The rows are sorted by score once. With few distinct scores (a quarter of the rows or
    fewer), the weights are first summed per score value (``reduceat``) and the negatives
    below each value are a cumulative sum over the values; otherwise the cumulative sum runs
    over the rows, and a row with tied scores takes "below" at the start of its group and
    "equal" from the whole group. Both give the same numbers; each is the faster where used.
    """
    order = np.argsort(score, kind="mergesort")
    ordered = score[order]
    positive = (y[order] > 0.5).astype(np.float64)
    new_value = np.r_[True, ordered[1:] != ordered[:-1]]
    starts = np.flatnonzero(new_value)
    w = weights.take(order, axis=1)
    pos = w * positive
    neg = w - pos
    if len(starts) * 4 <= len(ordered):
        pos = np.add.reduceat(pos, starts, axis=1)
        neg = np.add.reduceat(neg, starts, axis=1)
        below = np.cumsum(neg, axis=1) - neg
        num = np.einsum("ij,ij->i", pos, below + 0.5 * neg)
    else:
        neg_through = np.cumsum(neg, axis=1)  # negatives at or before each position
        neg_before = neg_through - neg
        if len(starts) == len(ordered):  # no ties: nothing is equal to a row but itself
            num = np.einsum("ij,ij->i", pos, neg_before)
        else:
            group = np.cumsum(new_value) - 1
            last = np.r_[starts[1:], len(ordered)] - 1
            below = neg_before.take(starts[group], axis=1)
            equal = neg_through.take(last[group], axis=1) - below
            num = np.einsum("ij,ij->i", pos, below + 0.5 * equal)
    return _ratio(num, pos.sum(axis=1) * neg.sum(axis=1))


def compute(
    task: str,
    wanted: Iterable[str],
    y: np.ndarray,
    score: np.ndarray,
    weights: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Metrics ``wanted`` of ``score`` against ``y``, one value per row of ``weights``.

    Args:
        task: ``regression`` or ``classification`` (binary: ``y`` in {0, 1}).
        wanted: Metric names (see the module docstring).
        y: Targets, shape ``(n,)``.
        score: Predictions (regression) or probabilities of class 1, shape ``(n,)``.
        weights: ``(k, n)`` counts or weights; ``None`` means one plain evaluation.

    Returns:
        Name -> array of shape ``(k,)``.
    """
    wanted = list(wanted)
    known = names(task)
    unknown = [m for m in wanted if m not in known]
    if unknown:
        raise MetricError(f"{task} has no metric {', '.join(unknown)}; known: {', '.join(known)}")
    y = np.asarray(y, dtype=np.float64)
    score = np.asarray(score, dtype=np.float64)
    w = np.ones((1, len(y))) if weights is None else np.asarray(weights, dtype=np.float64)
    total = w.sum(axis=1)
    out: dict[str, np.ndarray] = {}
    if task == "regression":
        err = score - y
        for name in wanted:
            if name == "rmse":
                out[name] = np.sqrt(_ratio(w @ (err * err), total))
            elif name == "mae":
                out[name] = _ratio(w @ np.abs(err), total)
            elif name == "r2":
                sy, syy = w @ y, w @ (y * y)
                sst = syy - _ratio(sy * sy, total)
                # A constant target (sst ~ 0 up to rounding) has no R2.
                constant = sst <= 1e-12 * np.maximum(syy, 1.0)
                out[name] = np.where(constant, np.nan, 1.0 - _ratio(w @ (err * err), sst))
            elif name == "mape":
                nonzero = y != 0
                ape = np.where(nonzero, np.abs(err) / np.where(nonzero, np.abs(y), 1.0), 0.0)
                out[name] = _ratio(w @ ape, w @ nonzero.astype(np.float64))
            elif name == "wape":
                out[name] = _ratio(w @ np.abs(err), w @ np.abs(y))
        return out
    positive = (y > 0.5).astype(np.float64)
    label = (score > THRESHOLD).astype(np.float64)
    tp = w @ (positive * label)
    fp = w @ ((1 - positive) * label)
    fn = w @ (positive * (1 - label))
    pos = w @ positive
    for name in wanted:
        if name == "accuracy":
            out[name] = _ratio(w @ (positive == label).astype(np.float64), total)
        elif name == "precision":
            out[name] = _ratio(tp, tp + fp, 0.0)
        elif name == "recall":
            out[name] = _ratio(tp, tp + fn, 0.0)
        elif name == "f1":
            out[name] = _ratio(2 * tp, 2 * tp + fp + fn, 0.0)
        elif name == "roc_auc":
            out[name] = _auc(positive, score, w)
        elif name == "log_loss":
            p = np.clip(score, _EPS, 1 - _EPS)
            loss = -(positive * np.log(p) + (1 - positive) * np.log1p(-p))
            out[name] = _ratio(w @ loss, total)
        elif name == "positive_rate":
            out[name] = _ratio(w @ label, total)
        elif name == "tpr":
            out[name] = _ratio(tp, pos)
        elif name == "fpr":
            out[name] = _ratio(fp, total - pos)
    return out


def point(task: str, wanted: Iterable[str], y, score) -> dict[str, float]:
    """The metrics of one plain evaluation, as floats (NaN where undefined)."""
    return {k: float(v[0]) for k, v in compute(task, wanted, y, score).items()}


def mape_excluded_rows(y) -> int:
    """Rows that MAPE leaves out: those whose target is 0."""
    return int(np.count_nonzero(np.asarray(y, dtype=np.float64) == 0))


def confusion(y, score) -> list[list[int]]:
    """``[[tn, fp], [fn, tp]]`` (rows: actual 0, 1; columns: predicted 0, 1)."""
    positive = np.asarray(y, dtype=np.float64) > 0.5
    label = np.asarray(score, dtype=np.float64) > THRESHOLD
    return [
        [int(np.sum(~positive & ~label)), int(np.sum(~positive & label))],
        [int(np.sum(positive & ~label)), int(np.sum(positive & label))],
    ]
