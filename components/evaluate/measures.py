"""What evaluate measures on one model: slices, robustness, latency, permutation importance.

Each function takes a loaded model (a scikit-learn Pipeline that takes the raw feature
columns) and the holdout, and returns plain data (JSON-ready dicts). The definitions are
documented in the component's README; the short form:

* slices: every metric per value of each slice column (slices with at least ``min_rows``
  rows take part in the gaps); regression gap: the largest difference of relative error
  between two slices of a column, a slice's relative error being its MAE divided by the
  mean absolute target of the whole holdout (one scale for every slice: a low-demand slice
  is not flagged only because its own denominator is small; its WAPE is reported too);
  classification:
  demographic parity difference (largest difference of the predicted-positive rate) and
  equalized-odds difference (the larger of the largest TPR difference and the largest FPR
  difference; a slice takes part in the TPR gap with at least ``min_class_rows`` positives,
  in the FPR gap with as many negatives).
* robustness: the share of rows whose prediction stays within a tolerance (regression:
  ``tolerance`` x the target's standard deviation; classification: ``tolerance`` in
  probability) when every numeric column moves by Gaussian noise of ``noise`` x its
  standard deviation (clipped to the column's observed range), and when each optional
  column is missing (NaN; a model that cannot predict then scores 0 for that column).
  The score is the smaller of the two parts (the worst optional column counts).
* latency: wall time of ``predict`` in this process with one thread, one row at a time and
  1,000 rows at a time; p50 and p99 in milliseconds, after three warm-up calls.
* importance: permutation importance on the holdout: how much the primary metric worsens
  when one feature column is shuffled (mean and standard deviation over ``repeats``
  shuffles); ``share`` is the importance clipped at 0 and normalised to sum 1 (what drift
  monitoring weighs features by).
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from components.lib import metrics

MISSING_LABEL = "(missing)"


class EvaluationError(ValueError):
    """Inputs the evaluation cannot use; the message names the column, field or artifact."""


def scores(task: str, model, x: pd.DataFrame) -> np.ndarray:
    """Predictions (regression) or the probability of the positive class (the second of two)."""
    if task == "regression":
        return np.asarray(model.predict(x), dtype=np.float64)
    return np.asarray(model.predict_proba(x), dtype=np.float64)[:, 1]


def _finite(value: float) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


def _groups(frame: pd.DataFrame, column: str, max_values: int) -> dict[str, np.ndarray]:
    if column not in frame.columns:
        raise EvaluationError(
            f"slice column {column!r} is not in the holdout (columns: {', '.join(map(str, frame.columns))})"
        )
    values = frame[column]
    uniques = values.dropna().unique()
    if len(uniques) > max_values:
        raise EvaluationError(
            f"slice column {column!r} has {len(uniques)} distinct values, more than "
            f"slices.max_values = {max_values}: slice by a coarser column"
        )
    out = {}
    for value in sorted(uniques, key=str):
        out[str(value)] = np.flatnonzero((values == value).to_numpy())
    missing = np.flatnonzero(values.isna().to_numpy())
    if len(missing):
        out[MISSING_LABEL] = missing
    return out


def _gap(column: str, measure: str, per_slice: dict[str, float], limit) -> dict:
    defined = {k: v for k, v in per_slice.items() if v is not None and np.isfinite(v)}
    if len(defined) < 2:
        return {
            "column": column,
            "measure": measure,
            "value": 0.0,
            "limit": limit,
            "high": None,
            "low": None,
            "compared": sorted(defined),
            "passed": True,
            "note": "fewer than two slices large enough to compare",
        }
    high = max(defined, key=defined.get)
    low = min(defined, key=defined.get)
    value = float(defined[high] - defined[low])
    return {
        "column": column,
        "measure": measure,
        "value": value,
        "limit": limit,
        "high": {"slice": high, "value": defined[high]},
        "low": {"slice": low, "value": defined[low]},
        "compared": sorted(defined),
        "passed": limit is None or value <= limit,
        "note": "",
    }


def slices(task: str, frame: pd.DataFrame, y: np.ndarray, score: np.ndarray, config: dict) -> dict:
    """Every metric per slice value and the gaps between slices (see the module docstring)."""
    cfg = config["slices"]
    limits = config["thresholds"]["max_slice_gap"]
    scale = float(np.mean(np.abs(y))) if task == "regression" else 0.0
    columns = {}
    gaps = []
    for column in cfg["columns"]:
        entries = {}
        for label, rows in _groups(frame, column, cfg["max_values"]).items():
            values = metrics.point(task, metrics.names(task), y[rows], score[rows])
            if task == "regression":
                values["relative_error"] = values["mae"] / scale if scale > 0 else float("nan")
            positives = int(np.sum(y[rows] > 0.5)) if task == "classification" else None
            entries[label] = {
                "rows": len(rows),
                "included": len(rows) >= cfg["min_rows"],
                "positives": positives,
                "metrics": {k: _finite(v) for k, v in values.items()},
            }
        columns[column] = entries
        included = {k: v for k, v in entries.items() if v["included"]}
        if task == "regression":
            gaps.append(
                _gap(
                    column,
                    "relative_error",
                    {k: v["metrics"]["relative_error"] for k, v in included.items()},
                    limits.get("relative_error"),
                )
            )
            continue
        gaps.append(
            _gap(
                column,
                "demographic_parity",
                {k: v["metrics"]["positive_rate"] for k, v in included.items()},
                limits.get("demographic_parity"),
            )
        )
        min_class = cfg["min_class_rows"]
        tpr = _gap(
            column,
            "tpr",
            {k: v["metrics"]["tpr"] for k, v in included.items() if v["positives"] >= min_class},
            None,
        )
        fpr = _gap(
            column,
            "fpr",
            {
                k: v["metrics"]["fpr"]
                for k, v in included.items()
                if v["rows"] - v["positives"] >= min_class
            },
            None,
        )
        worse = tpr if tpr["value"] >= fpr["value"] else fpr
        limit = limits.get("equalized_odds")
        gaps.append(
            {
                **worse,
                "measure": "equalized_odds",
                "rate": worse["measure"],
                "limit": limit,
                "passed": limit is None or worse["value"] <= limit,
                "components": {"tpr": tpr["value"], "fpr": fpr["value"]},
                "note": f"the {worse['measure'].upper()} gap is the larger"
                + (f"; {worse['note']}" if worse["note"] else ""),
            }
        )
    return {"columns": columns, "gaps": gaps}


def _sample(n: int, limit: int, rng: np.random.Generator) -> np.ndarray:
    return np.arange(n) if n <= limit else np.sort(rng.choice(n, size=limit, replace=False))


def _missing(column: pd.Series) -> pd.Series:
    if pd.api.types.is_numeric_dtype(column):
        return pd.Series(np.nan, index=column.index, dtype=np.float64)
    return pd.Series([None] * len(column), index=column.index, dtype=object)


def robustness(task: str, model, x: pd.DataFrame, y: np.ndarray, config: dict) -> dict:
    """Prediction movement under small numeric noise and under a missing optional value."""
    cfg = config["robustness"]
    rng = np.random.default_rng(config["seed"])
    rows = _sample(len(x), cfg["max_rows"], rng)
    xs = x.iloc[rows].reset_index(drop=True)
    base = scores(task, model, xs)
    if task == "regression":
        tolerance = cfg["tolerance"] * float(np.std(y))
        unit = f"{cfg['tolerance']:g} x the target's standard deviation ({tolerance:.4g})"
    else:
        tolerance = cfg["tolerance"]
        unit = f"{tolerance:g} in probability"
    numeric = cfg["numeric_columns"]
    if numeric is None:
        numeric = [c for c in x.columns if pd.api.types.is_float_dtype(x[c])]
    absent = [c for c in [*numeric, *cfg["optional_columns"]] if c not in x.columns]
    if absent:
        raise EvaluationError(
            f"robustness columns {', '.join(absent)} are not model inputs "
            f"(inputs: {', '.join(map(str, x.columns))})"
        )
    perturbed = xs.copy()
    for column in numeric:
        values = x[column].to_numpy(dtype=np.float64)
        spread = float(np.nanstd(values))
        noisy = xs[column].to_numpy(dtype=np.float64) + cfg["noise"] * spread * rng.standard_normal(
            len(xs)
        )
        perturbed[column] = np.clip(noisy, np.nanmin(values), np.nanmax(values))
    moved_scores = scores(task, model, perturbed)
    moved = np.abs(moved_scores - base)
    noise_part = {
        "columns": list(numeric),
        "score": float(np.mean(moved <= tolerance)) if numeric else 1.0,
        "mean_movement": float(np.mean(moved)),
        "p99_movement": float(np.percentile(moved, 99)),
    }
    if task == "classification":
        noise_part["label_flips"] = float(np.mean((moved_scores > 0.5) != (base > 0.5)))
    missing = {}
    for column in cfg["optional_columns"]:
        blank = xs.copy()
        blank[column] = _missing(xs[column])
        try:
            moved_missing = np.abs(scores(task, model, blank) - base)
        except Exception as exc:  # noqa: BLE001 - any failure to predict is what is measured
            first_line = (str(exc).strip().splitlines() or [""])[0]
            missing[column] = {"score": 0.0, "error": f"{type(exc).__name__}: {first_line}"[:200]}
            continue
        missing[column] = {
            "score": float(np.mean(moved_missing <= tolerance)),
            "mean_movement": float(np.mean(moved_missing)),
            "error": "",
        }
    missing_score = min((m["score"] for m in missing.values()), default=1.0)
    return {
        "score": min(noise_part["score"], missing_score),
        "rows": len(xs),
        "tolerance": tolerance,
        "tolerance_text": unit,
        "noise": cfg["noise"],
        "perturbation": noise_part,
        "missing": missing,
        "missing_score": missing_score,
    }


def _percentiles(ms: list[float]) -> dict:
    values = np.asarray(ms)
    return {
        "p50_ms": float(np.percentile(values, 50)),
        "p99_ms": float(np.percentile(values, 99)),
        "mean_ms": float(values.mean()),
        "calls": len(values),
    }


def latency(model, x: pd.DataFrame, config: dict) -> dict:
    """p50 / p99 of ``predict`` on one row and on ``batch_rows`` rows, in this process.

    Measured with one thread (BLAS and OpenMP limited by threadpoolctl): a serving worker's
    share of a core, and steadier than OpenMP's spinning threads on busy cores.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        return _latency(model, x, config)


def _latency(model, x: pd.DataFrame, config: dict) -> dict:
    cfg = config["latency"]
    rng = np.random.default_rng(config["seed"])
    singles = [x.iloc[[i]] for i in rng.integers(0, len(x), cfg["single_row_repeats"])]
    batch = x.iloc[rng.integers(0, len(x), cfg["batch_rows"])]
    for _ in range(3):
        model.predict(singles[0])
    single_ms = []
    for row in singles:
        start = time.perf_counter()
        model.predict(row)
        single_ms.append(1000 * (time.perf_counter() - start))
    model.predict(batch)
    batch_ms = []
    for _ in range(cfg["batch_repeats"]):
        start = time.perf_counter()
        model.predict(batch)
        batch_ms.append(1000 * (time.perf_counter() - start))
    return {
        "single_row": _percentiles(single_ms),
        "batch": {**_percentiles(batch_ms), "rows": cfg["batch_rows"]},
    }


def importance(task: str, model, x: pd.DataFrame, y: np.ndarray, metric: str, config: dict) -> dict:
    """Permutation importance of every input column on the holdout (see the module docstring)."""
    cfg = config["importance"]
    rng = np.random.default_rng(config["seed"])
    rows = _sample(len(x), cfg["max_rows"], rng)
    xs = x.iloc[rows].reset_index(drop=True)
    ys = y[rows]
    sign = 1.0 if metrics.GREATER_IS_BETTER[task][metric] else -1.0
    base = metrics.point(task, [metric], ys, scores(task, model, xs))[metric]
    features = []
    for column in xs.columns:
        drops = []
        original = xs[column]
        for _ in range(cfg["repeats"]):
            shuffled = xs.copy()
            shuffled[column] = original.to_numpy()[rng.permutation(len(xs))]
            value = metrics.point(task, [metric], ys, scores(task, model, shuffled))[metric]
            drops.append(sign * (base - value))
        features.append(
            {
                "feature": str(column),
                "importance": float(np.mean(drops)),
                "std": float(np.std(drops)),
            }
        )
    positive = sum(max(f["importance"], 0.0) for f in features)
    for f in features:
        f["share"] = max(f["importance"], 0.0) / positive if positive > 0 else 0.0
    features.sort(key=lambda f: f["importance"], reverse=True)
    return {
        "metric": metric,
        "baseline": base,
        "rows": len(xs),
        "repeats": cfg["repeats"],
        "features": features,
    }
