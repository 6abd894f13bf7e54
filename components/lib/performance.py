"""Performance decay: the realized metric once labels arrive, streaming change detectors on
the error series, and estimated performance before labels arrive.

Three questions, three tools:

* :func:`realized` -- with labels joined on ``request_id``: the metric, a 95% percentile
  bootstrap interval, and whether the *whole* interval is worse than the baseline (the
  champion's metric on its evaluation split) by more than a relative ``tolerance``.
* :func:`stream_detector` -- with labels, in arrival order: Page-Hinkley or ADWIN (river) on
  the per-request error (absolute error for regression, 0/1 loss for classification,
  :func:`error_series`): *when* did the error rise.
* :class:`PerformanceEstimator` -- before labels: NannyML's published methods, re-implemented
  on scikit-learn. Regression: direct loss estimation (DLE), a model of each row's loss from
  its inputs and the prediction, fitted on the reference rows. Classification:
  confidence-based performance estimation (CBPE), the expected metric from calibrated
  predicted probabilities.

Why not the ``nannyml`` package itself: nannyml 0.13.1 (checked with ``pip download nannyml
--no-deps``, its METADATA) requires ``plotly<6``, ``lightgbm<4.6``, ``FLAML[automl]``,
``kaleido<0.3``, ``matplotlib``, ``seaborn<0.14``, ``category-encoders``, ``gcsfs``, ``s3fs``,
``APScheduler``, ``pyfiglet``, ``sqlmodel`` (extra) and ``segment-analytics-python``, which sends
usage telemetry unless ``NML_DISABLE_USAGE_LOGGING`` is set. None of these is in the pipeline
image's lock, several pin below what the rest of the image needs, and a network call home does
not belong in a pipeline step. The two estimators are a few dozen lines each on numpy and
scikit-learn, so they are implemented here after NannyML's documentation and source: DLE on
RMSE predicts the squared error and reports ``sqrt(mean(max(0, predicted)))``; CBPE calibrates
the probabilities on reference (isotonic, one-vs-rest) and reports the expected accuracy
``mean(p_calibrated[predicted class])`` (or the expected macro F1 from the expected confusion
matrix).

No kfp or mlflow imports: components call this module.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.isotonic import IsotonicRegression
from sklearn.preprocessing import OrdinalEncoder

LEVEL = 0.95  # the confidence level of every interval here
# Metric name -> True when larger is better.
METRICS = {
    "regression": {"rmse": False, "mae": False},
    "classification": {"accuracy": True, "f1_macro": True},
}
DEFAULT_METRIC = {"regression": "rmse", "classification": "accuracy"}
PROBA_PREFIX = "proba_"
MIN_REFERENCE_ROWS = 100

# Streaming detectors. Both run on the error series divided by its warm-up scale (the standard
# deviation of the first ``warmup`` errors, or ``scale`` when given), so one set of defaults
# serves absolute errors in any unit and 0/1 losses. Page-Hinkley watches increases only
# (``mode="up"``): ``delta`` is the tolerated rise of the mean and ``threshold`` the cumulative
# excess (both in warm-up standard deviations) that raises an alarm. Measured here on 30 seeds
# of 5,000 stationary points each (half-normal absolute errors, and 0/1 losses at 10%):
# delta=0.25 / threshold=50 raised no alarm, while delta=0.1 / threshold=20 alarmed on 28-30
# of 30; a doubling of the noise was found after a median of 42 points, a 10% -> 25% error
# rate after a median of 145. ADWIN keeps river's delta=0.002 (no alarm on the same 60 series;
# median delays 47 and 95 points) and only rises of the windowed mean are reported.
DETECTOR_DEFAULTS = {
    "page_hinkley": {"min_instances": 30, "delta": 0.25, "threshold": 50.0, "alpha": 1 - 1e-4},
    "adwin": {
        "delta": 0.002,
        "clock": 32,
        "max_buckets": 5,
        "min_window_length": 5,
        "grace_period": 10,
    },
}
DETECTOR_SCALING = {"warmup": 200, "scale": None}

# The loss model of DLE (HistGradientBoosting, fixed seed; regularized because a squared error
# is a noisy target).
LOSS_MODEL_PARAMS = {
    "max_iter": 150,
    "learning_rate": 0.05,
    "max_leaf_nodes": 15,
    "min_samples_leaf": 40,
    "l2_regularization": 1.0,
    "early_stopping": False,
}
HOLDOUT_FRACTION = 0.25


class PerformanceError(ValueError):
    """Bad performance input; the message names the field or column."""


# ------------------------------------------------------------------ helpers


def _check_task(task: str) -> None:
    if task not in METRICS:
        raise PerformanceError(f"task {task!r} is not one of {', '.join(METRICS)}")


def _metric_name(task: str, metric: str | None) -> str:
    _check_task(task)
    metric = metric or DEFAULT_METRIC[task]
    if metric not in METRICS[task]:
        raise PerformanceError(
            f"metric {metric!r} is not one of {', '.join(METRICS[task])} for {task}"
        )
    return metric


def _as_1d(values, name: str, *, numeric: bool) -> np.ndarray:
    array = np.asarray(values.to_numpy() if isinstance(values, pd.Series) else values)
    if array.ndim != 1:
        raise PerformanceError(f"{name} must be one-dimensional, got shape {array.shape}")
    if len(array) == 0:
        raise PerformanceError(f"{name} is empty")
    missing = pd.isna(array)
    if missing.any():
        raise PerformanceError(f"{name} has {int(missing.sum())} missing values (NaN)")
    if numeric:
        try:
            array = array.astype(float)
        except (TypeError, ValueError) as err:
            raise PerformanceError(f"{name} is not numeric: {err}") from None
        if not np.isfinite(array).all():
            raise PerformanceError(f"{name} has infinite values")
    return array


def _pair(task: str, y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    numeric = task == "regression"
    t = _as_1d(y_true, "y_true", numeric=numeric)
    p = _as_1d(y_pred, "y_pred", numeric=numeric)
    if len(t) != len(p):
        raise PerformanceError(f"y_true has {len(t)} values but y_pred has {len(p)}")
    return t, p


def error_series(task: str, y_true, y_pred) -> np.ndarray:
    """The per-row error the detectors watch: |y - y_hat| (regression) or 0/1 loss."""
    _check_task(task)
    t, p = _pair(task, y_true, y_pred)
    if task == "regression":
        return np.abs(t - p)
    return (t != p).astype(float)


def _macro_f1_codes(t: np.ndarray, p: np.ndarray, k: int) -> float:
    """Macro F1 over the classes present in ``t`` or ``p`` (integer codes 0..k-1)."""
    tp = np.bincount(t[t == p], minlength=k).astype(float)
    true = np.bincount(t, minlength=k)
    pred = np.bincount(p, minlength=k)
    present = (true + pred) > 0
    return float(np.mean(2 * tp[present] / (true + pred)[present]))


def _metric_value(metric: str, t: np.ndarray, p: np.ndarray) -> float:
    if metric == "rmse":
        return float(np.sqrt(np.mean((t - p) ** 2)))
    if metric == "mae":
        return float(np.mean(np.abs(t - p)))
    if metric == "accuracy":
        return float(np.mean(t == p))
    codes = np.unique(np.concatenate([t, p]), return_inverse=True)[1]
    return _macro_f1_codes(codes[: len(t)], codes[len(t) :], int(codes.max()) + 1)


def _batched_means(losses: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Means of ``n_boot`` resamples (with replacement) of ``losses``, in memory-bounded batches."""
    n = len(losses)
    batch = max(1, min(n_boot, 2_000_000 // max(n, 1)))
    out = np.empty(n_boot)
    for start in range(0, n_boot, batch):
        stop = min(n_boot, start + batch)
        idx = rng.integers(0, n, size=(stop - start, n))
        out[start:stop] = losses[idx].mean(axis=1)
    return out


def _interval(samples: np.ndarray) -> tuple[float, float]:
    tail = (1 - LEVEL) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return float(low), float(high)


# ------------------------------------------------------------------ realized


def realized(
    task: str,
    y_true,
    y_pred,
    *,
    baseline: float,
    metric: str | None = None,
    tolerance: float = 0.1,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict:
    """The realized metric on labelled rows, its bootstrap interval and the decay verdict.

    The interval is the 95% percentile bootstrap over rows (``n_boot`` resamples, ``seed``).
    Degraded iff the *whole* interval is worse than ``baseline`` by more than ``tolerance``
    (relative): for an error metric (rmse, mae) ``ci_low > baseline * (1 + tolerance)``; for a
    score (accuracy, f1_macro) ``ci_high < baseline * (1 - tolerance)``. A small or noisy
    window therefore never degrades on noise alone: it says "not degraded" with a wide interval.

    Returns:
        ``{"metric", "value", "ci_low", "ci_high", "baseline", "n", "degraded", "reason",
        "tolerance", "level"}``.
    """
    metric = _metric_name(task, metric)
    t, p = _pair(task, y_true, y_pred)
    if not isinstance(baseline, int | float) or not math.isfinite(baseline) or baseline < 0:
        raise PerformanceError(f"baseline must be a finite number >= 0, got {baseline!r}")
    if not isinstance(tolerance, int | float) or not 0 <= tolerance < 1:
        raise PerformanceError(f"tolerance must be in [0, 1), got {tolerance!r}")
    if not isinstance(n_boot, int) or n_boot < 100:
        raise PerformanceError(f"n_boot must be an integer >= 100, got {n_boot!r}")
    rng = np.random.default_rng(seed)
    n = len(t)
    value = _metric_value(metric, t, p)
    if metric == "rmse":
        boot = np.sqrt(_batched_means((t - p) ** 2, n_boot, rng))
    elif metric == "mae":
        boot = _batched_means(np.abs(t - p), n_boot, rng)
    elif metric == "accuracy":
        boot = _batched_means((t == p).astype(float), n_boot, rng)
    else:
        codes = np.unique(np.concatenate([t, p]), return_inverse=True)[1]
        tc, pc, k = codes[:n], codes[n:], int(codes.max()) + 1
        boot = np.empty(n_boot)
        for b in range(n_boot):
            rows = rng.integers(0, n, n)
            boot[b] = _macro_f1_codes(tc[rows], pc[rows], k)
    low, high = _interval(boot)
    larger_better = METRICS[task][metric]
    if larger_better:
        bound = baseline * (1 - tolerance)
        degraded = high < bound
        relation = "<" if degraded else ">="
        reason = (
            f"{metric} {value:.4g}, {LEVEL:.0%} CI [{low:.4g}, {high:.4g}] on {n} rows: upper end "
            f"{relation} baseline {baseline:.4g} x (1 - {tolerance:g}) = {bound:.4g}"
        )
    else:
        bound = baseline * (1 + tolerance)
        degraded = low > bound
        relation = ">" if degraded else "<="
        reason = (
            f"{metric} {value:.4g}, {LEVEL:.0%} CI [{low:.4g}, {high:.4g}] on {n} rows: lower end "
            f"{relation} baseline {baseline:.4g} x (1 + {tolerance:g}) = {bound:.4g}"
        )
    return {
        "metric": metric,
        "value": value,
        "ci_low": low,
        "ci_high": high,
        "baseline": float(baseline),
        "n": n,
        "degraded": bool(degraded),
        "reason": ("degraded: " if degraded else "not degraded: ") + reason,
        "tolerance": float(tolerance),
        "level": LEVEL,
    }


# ------------------------------------------------------------------ streaming


def stream_detector(errors, *, method: str = "page_hinkley", **params) -> dict:
    """Runs a river change detector over the error series in arrival order.

    Args:
        errors: Per-request errors in arrival order (:func:`error_series`).
        method: ``page_hinkley`` (river.drift.PageHinkley, increases only) or ``adwin``
            (river.drift.ADWIN; only changes where the windowed mean rose are reported).
        params: The detector's parameters (defaults in ``DETECTOR_DEFAULTS``) and
            ``warmup`` (200) / ``scale`` (None): the series is divided by ``scale``, by
            default the standard deviation of its first ``warmup`` values (1 when that is 0),
            so the defaults are in units of the warm-up spread.

    Returns:
        ``{"method", "params", "n", "detected", "first_change_index", "changes"}``; indices
        are positions in ``errors`` at which the detector fired (it restarts after each).
    """
    from river import drift  # imported here: only this function needs river

    if method not in DETECTOR_DEFAULTS:
        raise PerformanceError(f"method {method!r} is not one of {', '.join(DETECTOR_DEFAULTS)}")
    allowed = {**DETECTOR_DEFAULTS[method], **DETECTOR_SCALING}
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise PerformanceError(f"{method} has no parameter {', '.join(unknown)}")
    resolved = {**allowed, **params}
    series = _as_1d(errors, "errors", numeric=True)
    warmup = resolved.pop("warmup")
    scale = resolved.pop("scale")
    if not isinstance(warmup, int) or warmup < 2:
        raise PerformanceError(f"warmup must be an integer >= 2, got {warmup!r}")
    if scale is None:
        spread = float(np.std(series[:warmup]))
        scale = spread if spread > 0 else 1.0
    elif not isinstance(scale, int | float) or not scale > 0:
        raise PerformanceError(f"scale must be a number > 0, got {scale!r}")
    scaled = series / float(scale)
    if method == "page_hinkley":
        detector = drift.PageHinkley(mode="up", **resolved)
    else:
        detector = drift.ADWIN(**resolved)
    changes: list[int] = []
    for i, value in enumerate(scaled):
        before = detector.estimation if method == "adwin" else None
        detector.update(float(value))
        if detector.drift_detected and (method != "adwin" or detector.estimation > before):
            changes.append(i)
    return {
        "method": method,
        "params": {**resolved, "warmup": warmup, "scale": float(scale)},
        "n": len(series),
        "detected": bool(changes),
        "first_change_index": changes[0] if changes else None,
        "changes": changes,
    }


# ------------------------------------------------------------------ estimation


def _require_columns(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise PerformanceError(f"{what} must be a pandas DataFrame, got {type(frame).__name__}")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise PerformanceError(f"{what} has no column {', '.join(map(repr, missing))}")


class PerformanceEstimator:
    """Estimated performance before labels arrive.

    Regression: direct loss estimation (NannyML's DLE). A HistGradientBoostingRegressor
    (``LOSS_MODEL_PARAMS``, fixed seed; categorical columns ordinal-encoded and declared
    categorical) learns each reference row's loss -- the squared error for ``rmse``, the
    absolute error for ``mae`` -- from the model inputs and the prediction. The estimate on new
    rows aggregates the predicted losses, clipped at 0: ``sqrt(mean)`` for rmse, ``mean`` for mae.

    Classification: confidence-based performance estimation (NannyML's CBPE). The reference
    rows' ``proba_<class>`` columns are calibrated one-vs-rest with isotonic regression on the
    true labels and renormalized; expected accuracy is the mean calibrated probability of the
    predicted class, expected macro F1 comes from the expected confusion matrix.

    Both assume no concept change (the relation between inputs and target is the reference's)
    and that current inputs stay within the reference's support; they see covariate shift
    only. :func:`realized` and :func:`stream_detector` catch concept change once labels arrive.

    Calibration on reference: ``HOLDOUT_FRACTION`` of the reference rows (random, ``seed``) is
    held out; the estimator fitted on the rest estimates the held-out part, whose realized
    metric is known: ``reference_error`` = (estimate - realized) / realized there. The final
    estimator is then refitted on all reference rows.

    The interval of :meth:`estimate` is the 95% range of the *realized* metric the estimator
    expects at this many rows: each bootstrap resample of the current rows draws a loss per row
    (DLE: predicted loss + a held-out reference residual, centred, the mean clipped at 0; CBPE: a label drawn
    from the calibrated probabilities). DLE's residuals are pooled across rows, so where the
    loss itself is far more variable than on reference the interval is too narrow.
    """

    def __init__(self) -> None:  # use fit()
        self.task = ""
        self.metric = ""
        self.method = ""
        self.target = ""
        self.prediction = ""
        self.features: list[str] = []
        self.categorical: list[str] = []
        self.classes: list = []
        self.seed = 0
        self.reference: dict = {}
        self._encoder: OrdinalEncoder | None = None
        self._loss_model: HistGradientBoostingRegressor | None = None
        self._residuals = np.zeros(1)
        self._calibrators: list[IsotonicRegression] = []

    # --------------------------------------------------------------- fit

    @classmethod
    def fit(
        cls,
        reference: pd.DataFrame,
        *,
        task: str,
        target: str,
        prediction: str = "prediction",
        features: Sequence[str],
        categorical: Sequence[str] = (),
        metric: str | None = None,
        seed: int = 0,
    ) -> PerformanceEstimator:
        """Fits DLE (regression) or CBPE (classification) on reference rows.

        ``reference`` holds the model-input columns ``features``, the true ``target`` and the
        model's ``prediction`` (classification: also ``proba_<class>`` for every class).
        """
        metric = _metric_name(task, metric)
        features = list(features)
        categorical = list(categorical)
        if not features:
            raise PerformanceError("features is empty")
        stray = [c for c in categorical if c not in features]
        if stray:
            raise PerformanceError(
                f"categorical column {', '.join(map(repr, stray))} is not in features"
            )
        _require_columns(reference, [*features, target, prediction], "reference")
        if len(reference) < MIN_REFERENCE_ROWS:
            raise PerformanceError(
                f"reference has {len(reference)} rows; at least {MIN_REFERENCE_ROWS} are needed"
            )
        _pair(task, reference[target], reference[prediction])  # NaN / type checks, named
        self = cls()
        self.task, self.metric, self.target, self.prediction = task, metric, target, prediction
        self.features, self.categorical, self.seed = features, categorical, seed
        self.method = "dle" if task == "regression" else "cbpe"

        rng = np.random.default_rng(seed)
        order = rng.permutation(len(reference))
        n_hold = int(round(len(reference) * HOLDOUT_FRACTION))
        hold, rest = reference.iloc[order[:n_hold]], reference.iloc[order[n_hold:]]
        if self.method == "dle":
            self._fit_dle(rest)
            losses = self._observed_losses(hold)
            predicted = self._predicted_losses(hold)
            residuals = losses - predicted
            residuals = residuals - residuals.mean()  # the interval is centred on the estimate
        else:
            self.classes = self._find_classes(reference)
            self._fit_cbpe(rest)
            residuals = np.zeros(1)
        estimated = self._point(hold)
        actual = _metric_value(metric, *_pair(task, hold[target], hold[prediction]))
        # Refit on every reference row; keep the held-out residuals for the intervals.
        if self.method == "dle":
            self._fit_dle(reference)
        else:
            self._fit_cbpe(reference)
        self._residuals = residuals
        self.reference = {
            "n": len(reference),
            "value": _metric_value(metric, *_pair(task, reference[target], reference[prediction])),
            "holdout_n": n_hold,
            "holdout_estimate": float(estimated),
            "holdout_realized": float(actual),
            "error": float((estimated - actual) / actual) if actual else float("nan"),
        }
        return self

    # DLE ------------------------------------------------------------------

    def _loss_inputs(self, frame: pd.DataFrame) -> np.ndarray:
        _require_columns(frame, [*self.features, self.prediction], "current")
        numeric = [c for c in self.features if c not in self.categorical]
        parts = []
        for column in numeric:
            try:
                parts.append(pd.to_numeric(frame[column]).to_numpy(dtype=float))
            except (TypeError, ValueError):
                raise PerformanceError(
                    f"column {column!r} is not numeric; list it in categorical"
                ) from None
        parts.append(_as_1d(frame[self.prediction], f"column {self.prediction!r}", numeric=True))
        x = np.column_stack(parts)
        if self.categorical:
            codes = self._encoder.transform(frame[self.categorical].astype(object))
            x = np.column_stack([x, codes])
        return x

    def _observed_losses(self, frame: pd.DataFrame) -> np.ndarray:
        t, p = _pair(self.task, frame[self.target], frame[self.prediction])
        return (t - p) ** 2 if self.metric == "rmse" else np.abs(t - p)

    def _fit_dle(self, frame: pd.DataFrame) -> None:
        n_numeric = len(self.features) - len(self.categorical) + 1  # + the prediction
        if self.categorical:
            self._encoder = OrdinalEncoder(
                handle_unknown="use_encoded_value",
                unknown_value=np.nan,
                encoded_missing_value=np.nan,
            ).fit(frame[self.categorical].astype(object))
        mask = [False] * n_numeric + [
            len(c) <= 255 for c in (self._encoder.categories_ if self.categorical else [])
        ]
        self._loss_model = HistGradientBoostingRegressor(
            **LOSS_MODEL_PARAMS, categorical_features=mask, random_state=self.seed
        ).fit(self._loss_inputs(frame), self._observed_losses(frame))

    def _predicted_losses(self, frame: pd.DataFrame) -> np.ndarray:
        return np.maximum(0.0, self._loss_model.predict(self._loss_inputs(frame)))

    def _aggregate(self, losses):
        means = np.mean(losses, axis=-1)
        return np.sqrt(means) if self.metric == "rmse" else means

    # CBPE -----------------------------------------------------------------

    def _find_classes(self, frame: pd.DataFrame) -> list:
        seen = pd.unique(pd.concat([frame[self.target], frame[self.prediction]], ignore_index=True))
        classes = sorted(seen.tolist(), key=str)
        _require_columns(frame, [f"{PROBA_PREFIX}{c}" for c in classes], "reference")
        if len(classes) < 2:
            raise PerformanceError(f"target {self.target!r} has one class only: {classes}")
        return classes

    def _probabilities(self, frame: pd.DataFrame) -> np.ndarray:
        columns = [f"{PROBA_PREFIX}{c}" for c in self.classes]
        _require_columns(frame, columns, "current")
        parts = [_as_1d(frame[c], f"column {c!r}", numeric=True) for c in columns]
        return np.column_stack(parts)

    def _fit_cbpe(self, frame: pd.DataFrame) -> None:
        proba = self._probabilities(frame)
        y = frame[self.target].to_numpy()
        self._calibrators = [
            IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(
                proba[:, k], (y == c).astype(float)
            )
            for k, c in enumerate(self.classes)
        ]

    def _calibrated(self, frame: pd.DataFrame) -> np.ndarray:
        raw = self._probabilities(frame)
        if len(self.classes) == 2:
            positive = self._calibrators[1].predict(raw[:, 1])
            return np.column_stack([1 - positive, positive])
        cal = np.column_stack([m.predict(raw[:, k]) for k, m in enumerate(self._calibrators)])
        total = cal.sum(axis=1, keepdims=True)
        return np.where(total > 0, cal / np.where(total > 0, total, 1), raw)

    def _predicted_index(self, frame: pd.DataFrame) -> np.ndarray:
        predicted = _as_1d(frame[self.prediction], f"column {self.prediction!r}", numeric=False)
        lookup = {c: k for k, c in enumerate(self.classes)}
        unknown = sorted({str(p) for p in predicted if p not in lookup})
        if unknown:
            raise PerformanceError(
                f"column {self.prediction!r} has classes not in reference: {', '.join(unknown)}"
            )
        return np.array([lookup[p] for p in predicted])

    def _expected_f1(self, proba: np.ndarray, pred: np.ndarray) -> float:
        scores = []
        for k in range(len(self.classes)):
            hit = pred == k
            tp = proba[hit, k].sum()
            fp = (1 - proba[hit, k]).sum()
            fn = proba[~hit, k].sum()
            scores.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn > 0 else 0.0)
        return float(np.mean(scores))

    # estimate -------------------------------------------------------------

    def _point(self, frame: pd.DataFrame) -> float:
        if self.method == "dle":
            return float(self._aggregate(self._predicted_losses(frame)))
        proba, pred = self._calibrated(frame), self._predicted_index(frame)
        if self.metric == "accuracy":
            return float(proba[np.arange(len(pred)), pred].mean())
        return self._expected_f1(proba, pred)

    def estimate(self, current: pd.DataFrame, *, n_boot: int = 200, seed: int = 0) -> dict:
        """Estimated metric on unlabelled ``current`` rows (inputs + prediction [+ probas]).

        Returns:
            ``{"metric", "estimate", "ci_low", "ci_high", "n", "method", "reference_value",
            "reference_error", "level"}``: ``reference_value`` is the realized metric on the
            reference rows, ``reference_error`` the relative error of the estimate on the
            held-out reference part (see the class docstring).
        """
        if not isinstance(current, pd.DataFrame) or len(current) == 0:
            raise PerformanceError("current must be a non-empty pandas DataFrame")
        if not isinstance(n_boot, int) or n_boot < 50:
            raise PerformanceError(f"n_boot must be an integer >= 50, got {n_boot!r}")
        rng = np.random.default_rng(seed)
        n = len(current)
        samples = np.empty(n_boot)
        if self.method == "dle":
            predicted = self._predicted_losses(current)
            point = float(self._aggregate(predicted))
            for b in range(n_boot):
                drawn = predicted[rng.integers(0, n, n)]
                noise = self._residuals[rng.integers(0, len(self._residuals), n)]
                samples[b] = max(0.0, float(np.mean(drawn + noise)))
            samples = np.sqrt(samples) if self.metric == "rmse" else samples
        else:
            proba, pred = self._calibrated(current), self._predicted_index(current)
            if self.metric == "accuracy":
                p_hit = proba[np.arange(n), pred]
                point = float(p_hit.mean())
                for b in range(n_boot):
                    samples[b] = (rng.random(n) < p_hit[rng.integers(0, n, n)]).mean()
            else:
                point = self._expected_f1(proba, pred)
                cumulative = np.cumsum(proba, axis=1)
                for b in range(n_boot):
                    rows = rng.integers(0, n, n)
                    drawn = (rng.random((n, 1)) > cumulative[rows]).sum(axis=1)
                    drawn = np.minimum(drawn, len(self.classes) - 1)
                    samples[b] = _macro_f1_codes(drawn, pred[rows], len(self.classes))
        low, high = _interval(samples)
        return {
            "metric": self.metric,
            "estimate": point,
            "ci_low": low,
            "ci_high": high,
            "n": n,
            "method": self.method,
            "reference_value": self.reference["value"],
            "reference_error": self.reference["error"],
            "level": LEVEL,
        }
