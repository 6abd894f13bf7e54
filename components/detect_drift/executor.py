"""detect_drift: has the champion drifted or decayed on a window of served traffic, and
should the model be retrained?

Everything is judged against the monitoring reference train stored in the champion's
registry version (never the training data, reloaded):

* **Data and prediction drift** (:mod:`components.lib.drift`): the window's input columns
  and the captured predictions against the training split's drift profile, per feature
  (PSI, KS or chi-square, Jensen-Shannon distance, normalized Wasserstein; Benjamini-Hochberg
  across the window's p-values; effect-size thresholds), and the dataset rule (the
  importance-weighted share of drifted features).
* **Realized performance** once labels have arrived (``request_id`` + ``label``, joined on
  request id, :mod:`components.lib.window`): the metric on the labeled rows with a bootstrap
  interval against the baseline (the same metric on the reference rows: the eval split),
  and a streaming change detector over the error series in event-time order
  (:mod:`components.lib.performance`).
* **Estimated performance** from the inputs and the predictions alone (direct loss
  estimation for regression, confidence-based for classification), fitted on the reference
  rows: decay is seen before the labels arrive, and shown beside the realized metric once
  they have.

The signals go to the retraining policy (:mod:`components.lib.retrain`), which the registry
applies under the model's lock and records in its monitoring log
(:meth:`components.lib.registry.Registry.monitor_window`): hysteresis, cool-downs, caps,
idempotence per window, one trigger among concurrent runs. ``should_retrain`` is its
decision.
"""

from __future__ import annotations

import json
import logging
import math
import uuid
from collections.abc import Mapping
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from components.lib import drift, performance, registry, retrain
from components.lib.specs import load_json

log = logging.getLogger("loopline.detect_drift")

CONFIGS_DIR = Path(__file__).resolve().parent / "configs"
PERFORMANCE_KEYS = {"tolerance", "min_labeled", "detector", "estimate", "metric"}


class MonitorError(ValueError):
    """Bad monitoring input; the message names the file, field or column."""


def load_config(ref: str) -> tuple[drift.DriftConfig, dict]:
    """The monitoring config (bundled name, path or JSON): (drift config, performance settings)."""
    spec = load_json(ref or "default", CONFIGS_DIR, "monitoring config", MonitorError)
    unknown = sorted(set(spec) - {"drift", "performance"})
    if unknown:
        raise MonitorError(f"monitoring config: unknown key(s) {', '.join(unknown)}")
    config = drift.DriftConfig.from_mapping(spec.get("drift") or {})
    perf = {"tolerance": 0.1, "min_labeled": 100, "detector": "page_hinkley", "estimate": True}
    given = spec.get("performance") or {}
    unknown = sorted(set(given) - PERFORMANCE_KEYS)
    if unknown:
        raise MonitorError(
            f"monitoring config: performance has unknown key(s) {', '.join(unknown)}"
        )
    perf.update(given)
    if perf["detector"] not in ("page_hinkley", "adwin"):
        raise MonitorError(
            f"monitoring config: performance.detector {perf['detector']!r} is not page_hinkley or adwin"
        )
    return config, perf


def load_reference(champion_dir: str) -> tuple[dict, pd.DataFrame]:
    """The drift profile and reference rows in the champion's MLflow model directory."""
    root = Path(champion_dir)
    profile_path = root / registry.DRIFT_PROFILE_FILE
    rows_path = root / registry.REFERENCE_ROWS_FILE
    missing = [p.name for p in (profile_path, rows_path) if not p.is_file()]
    if missing:
        raise MonitorError(
            f"the champion's registry version has no {' or '.join(missing)}: it was trained "
            "before train wrote a monitoring reference; retrain it to monitor it"
        )
    return drift.load_profile(profile_path), pd.read_parquet(rows_path)


def model_task(profile: Mapping) -> str:
    """regression or classification: train profiles a regressor's predictions as numeric."""
    prediction = profile.get("prediction") or {}
    return "regression" if prediction.get("kind") == "numeric" else "classification"


def assess(
    window: pd.DataFrame,
    profile: Mapping,
    reference: pd.DataFrame,
    *,
    target: str,
    config: drift.DriftConfig,
    perf: Mapping,
    labels: pd.DataFrame | None = None,
    seed: int = 0,
) -> dict:
    """Drift, realized and estimated performance of one window: the signals and the evidence.

    ``window`` is the captured rows of the champion's version (inputs + ``prediction``,
    ``request_id``, ``event_time``); ``labels`` (``request_id``, ``label``) joins on request id.
    """
    features = [f["name"] for f in profile["features"]]
    if len(window) == 0:  # nothing was served (or captured): nothing to judge, say so
        report = drift.DriftReport(
            features=[], prediction=None, drifted_share=0.0, dataset_drift=False,
            prediction_drift=False, enough_rows=False, config=config.to_dict(),
            reason=f"the window has no rows of this version (fewer than min_rows {config.min_rows}): no decision",
        )  # fmt: skip
        task = model_task(profile)
        return {
            "rows": 0, "drift": report.to_dict(), "task": task,
            "metric": perf.get("metric") or ("rmse" if task == "regression" else "accuracy"),
            "baseline": None, "estimated": None, "realized": None, "detector": None,
            "labeled": 0, "signals": signals({}, report),
        }  # fmt: skip
    missing = [c for c in features if c not in window.columns]
    if missing:
        raise MonitorError(
            f"the window has no column(s) {', '.join(missing)} the model was trained on"
        )
    report = drift.compare(
        profile,
        window[features],
        prediction=window["prediction"] if "prediction" in window.columns else None,
        config=config,
        seed=seed,
    )
    task = model_task(profile)
    baseline_metric = perf.get("metric") or ("rmse" if task == "regression" else "accuracy")
    baseline = performance.realized(
        task,
        reference[target].to_numpy(),
        reference["prediction"].to_numpy(),
        baseline=0.0,  # only the value is used: the baseline itself
        metric=baseline_metric,
        seed=seed,
    )["value"]
    reference_errors = performance.error_series(
        task, reference[target].to_numpy(), reference["prediction"].to_numpy()
    )
    out: dict = {
        "rows": len(window),
        "drift": report.to_dict(),
        "task": task,
        "metric": baseline_metric,
        "baseline": baseline,
        "estimated": None,
        "realized": None,
        "detector": None,
        "labeled": 0,
    }
    enough = report.enough_rows
    if perf.get("estimate", True) and enough:
        estimator = performance.PerformanceEstimator.fit(
            reference,
            task=task,
            target=target,
            features=features,
            categorical=[f["name"] for f in profile["features"] if f["kind"] == "categorical"],
            metric=baseline_metric,
            seed=seed,
        )
        estimated = estimator.estimate(window, seed=seed)
        tolerance = float(perf["tolerance"])
        worse = _worse(
            baseline_metric, estimated["ci_low"], estimated["ci_high"], baseline, tolerance
        )
        out["estimated"] = {**estimated, "degraded": worse}
    if labels is not None and len(labels) and "request_id" in window.columns:
        joined = window.merge(labels[["request_id", "label"]], on="request_id", how="inner")
        joined = joined[joined["label"].notna()]
        out["labeled"] = len(joined)
        if len(joined) >= int(perf["min_labeled"]):
            order = joined.sort_values("event_time") if "event_time" in joined.columns else joined
            y_true = order["label"].to_numpy()
            y_pred = order["prediction"].to_numpy()
            if task == "regression":
                y_true, y_pred = y_true.astype(float), y_pred.astype(float)
            errors = performance.error_series(task, y_true, y_pred)
            out["realized"] = performance.realized(
                task,
                y_true,
                y_pred,
                baseline=baseline,
                metric=baseline_metric,
                tolerance=float(perf["tolerance"]),
                seed=seed,
            )
            # In units of the reference's error spread, so that the window's own drifted
            # errors are not taken as the detector's warm-up.
            spread = float(reference_errors.std()) or 1.0
            out["detector"] = performance.stream_detector(
                errors, method=str(perf["detector"]), scale=spread
            )
    out["signals"] = signals(out, report)
    return out


def _worse(metric: str, low: float, high: float, baseline: float, tolerance: float) -> bool:
    """The whole interval worse than the baseline by more than ``tolerance`` (relative)."""
    if any(isinstance(v, float) and math.isnan(v) for v in (low, high, baseline)):
        return False
    if metric in ("rmse", "mae"):
        return low > baseline * (1 + tolerance)
    return high < baseline * (1 - tolerance)


def signals(assessed: Mapping, report: drift.DriftReport) -> dict:
    """The policy's inputs: drift, decay, and whether the window can decide at all."""
    realized = assessed.get("realized")
    estimated = assessed.get("estimated")
    decay_reasons = []
    if realized is not None and realized.get("degraded"):
        decay_reasons.append(
            f"realized {realized['metric']} {realized['value']:.4g} "
            f"(95% CI {realized['ci_low']:.4g}..{realized['ci_high']:.4g}) vs baseline "
            f"{assessed['baseline']:.4g}"
        )
    detector = assessed.get("detector")
    if (
        realized is not None
        and not realized.get("degraded")
        and detector
        and detector.get("detected")
        and _worse(
            assessed["metric"], realized["value"], realized["value"], assessed["baseline"], 0.0
        )
    ):
        decay_reasons.append(
            f"{detector['method']} detected a rise in the error series at labeled row "
            f"{detector['first_change_index']} of {detector['n']}"
        )
    if realized is None and estimated is not None and estimated.get("degraded"):
        decay_reasons.append(
            f"estimated {estimated['metric']} {estimated['estimate']:.4g} "
            f"(CI {estimated['ci_low']:.4g}..{estimated['ci_high']:.4g}) vs baseline "
            f"{assessed['baseline']:.4g} (no labels yet)"
        )
    drift_reasons = []
    if report.dataset_drift:
        drift_reasons.append(
            f"{len(report.drifted())} drifted feature(s) ({', '.join(report.drifted())}), "
            f"importance-weighted share {report.drifted_share:.2f}"
        )
    if report.prediction_drift:
        drift_reasons.append("prediction drift")
    return {
        "decided": bool(report.enough_rows),
        "drift": bool(report.enough_rows and (report.dataset_drift or report.prediction_drift)),
        "decay": bool(report.enough_rows and decay_reasons),
        "drift_reasons": drift_reasons,
        "decay_reasons": decay_reasons,
        "undecided_reason": "" if report.enough_rows else report.reason,
    }


def run(
    *,
    window_path: str,
    window_id: str,
    window_start: str,
    window_end: str,
    champion_dir: str,
    champion_meta: Mapping,
    model_name: str,
    tracking_uri: str,
    monitoring_config: str = "default",
    retrain_policy: str = "default",
    min_rows: int = 0,
    labels: pd.DataFrame | None = None,
    pipeline_run_id: str = "",
    now: datetime | None = None,
    seed: int = 0,
) -> dict:
    """Assesses the window and asks the registry's retraining policy; returns the result."""
    # The run id keys this run's record in the monitoring log: a caller without one gets a
    # unique one (a re-run is then a different run).
    pipeline_run_id = pipeline_run_id or f"detect-drift-{uuid.uuid4().hex[:12]}"
    config, perf = load_config(monitoring_config)
    if min_rows > 0:  # the pipeline's min_rows, the same read_window reports against
        config = drift.DriftConfig.from_mapping({**config.to_dict(), "min_rows": min_rows})
    policy = retrain.RetrainPolicy.load(retrain_policy)
    if not champion_meta.get("found"):
        raise MonitorError(f"model {model_name!r} has no production version: nothing to monitor")
    version = str(champion_meta.get("version", ""))
    model_dir = Path(champion_dir, str(champion_meta.get("path", ".")))
    profile, reference = load_reference(str(model_dir))
    target = target_of(str(model_dir), reference)
    frame = read_frame(window_path)
    served = frame
    others = {}
    if "model_version" in frame.columns:
        versions = frame["model_version"].astype(str)
        others = versions[versions != version].value_counts().to_dict()
        served = frame[versions == version]
    assessed = assess(
        served,
        profile,
        reference,
        target=target,
        config=config,
        perf=perf,
        labels=labels,
        seed=seed,
    )
    sig = assessed["signals"]
    reg = registry.Registry(tracking_uri)
    reg.ping()
    record = reg.monitor_window(
        model_name,
        policy=policy,
        window_id=window_id,
        start=window_start,
        end=window_end,
        drift=sig["drift"],
        decay=sig["decay"],
        decided=sig["decided"],
        rows=len(served),
        run_id=pipeline_run_id,
        model_version=version,
        now=now,
    )
    # A window the log already holds from another run (a re-run, a second schedule) keeps its
    # record, but only the run that recorded a trigger retrains: no storm from repeated runs.
    # A retried task of that same run (same run id) carries on with its retrain.
    ours = record.run_id == pipeline_run_id
    should = bool(record.retrain and ours)
    reason = record.reason
    if not ours:
        reason = (
            f"window already judged by run {record.run_id or '?'} at {record.at}: "
            f"{record.reason}"
            + (" (that run retrains; this one does not)" if record.retrain else "")
        )
    return {
        "model_name": model_name,
        "model_version": version,
        "window_id": window_id,
        "window_start": window_start,
        "window_end": window_end,
        "window_rows": len(frame),
        "other_versions": {str(k): int(v) for k, v in others.items()},
        **assessed,
        "policy": asdict(policy),
        "decision": asdict(record),
        "should_retrain": should,
        "reason": reason,
        "recorded_by_this_run": ours,
        "checked_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def target_of(model_dir: str, reference: pd.DataFrame) -> str:
    """The model's target: named in the version's request schema (register records it)."""
    path = Path(model_dir, registry.REQUEST_SCHEMA_FILE)
    target = json.loads(path.read_text()).get("target", "") if path.is_file() else ""
    if not target or target not in reference.columns:
        raise MonitorError(
            f"the champion's version names no target present in its reference rows "
            f"({registry.REQUEST_SCHEMA_FILE}: target {target!r})"
        )
    return str(target)


def read_frame(path: str) -> pd.DataFrame:
    """The window read_window wrote (Parquet or CSV), without its capture-only columns' types lost."""
    p = Path(path)
    if p.is_dir():
        files = sorted(p.glob("*.parquet")) or sorted(p.glob("*.csv"))
        if not files:
            raise MonitorError(f"window {path}: no Parquet or CSV file in the folder")
        p = files[0]
    if p.suffix == ".csv" or p.read_bytes()[:4] != b"PAR1":
        return pd.read_csv(p)
    return pd.read_parquet(p)


def fetch_labels(capture_uri: str, model_name: str, s3_endpoint: str, s3_secure: bool):
    """The labels that have arrived for ``model_name`` (``<capture_uri>/labels``), or None."""
    if not capture_uri:
        return None
    from components.lib import capture_layout, window

    bucket, prefix = window.split_uri(capture_uri)
    client = window.client(s3_endpoint, s3_secure)
    labels = window.read_labels(client, bucket, capture_layout.labels_prefix(prefix), model_name)
    log.info("labels: %d request ids have a label", len(labels))
    return labels


def metric_values(result: Mapping) -> dict[str, float]:
    """The numbers the KFP UI shows as the run's metrics."""
    out = {
        "rows": float(result["rows"]),
        "drifted_share": float(result["drift"]["drifted_share"]),
        "drifted_features": float(sum(f["drifted"] for f in result["drift"]["features"])),
        "should_retrain": float(result["should_retrain"]),
        "baseline_" + result["metric"]: _number(result["baseline"]),
        "labeled_rows": float(result["labeled"]),
    }
    if result.get("estimated"):
        out["estimated_" + result["metric"]] = float(result["estimated"]["estimate"])
    if result.get("realized"):
        out["realized_" + result["metric"]] = float(result["realized"]["value"])
    return {k: v for k, v in out.items() if math.isfinite(v)}


def _number(value) -> float:
    return float("nan") if value is None else float(value)


def to_json(result: Mapping) -> str:
    """``result`` as JSON (NaN and infinity as null)."""
    return json.dumps(_finite(result), indent=1, default=_plain, allow_nan=False)


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _plain(value):
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)
