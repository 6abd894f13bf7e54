"""Evaluate: the challenger on the holdout, against the champion on the same rows, decided.

Loads both models through the verified loader (:func:`load_model`: sha256 and scikit-learn
version checked before anything is unpickled), scores the challenger on the holdout and
on eval_data, measures slices, robustness, latency and permutation importance, compares
with the champion (paired bootstrap; McNemar for classification), builds the weighted
scorecard and decides ``promote`` or ``reject``, every reason kept. Plain Python, no kfp:
the component body (``component.py``) hands artifact paths and metadata in and logs the
KFP metrics. See the component's README for every definition.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from components.evaluate import config as config_mod
from components.evaluate import gate, measures, report, stats
from components.evaluate.measures import EvaluationError
from components.lib import metrics, modeling

log = logging.getLogger("loopline.evaluate")

EVALUATION_FILE = "evaluation.json"
IMPORTANCE_FILE = "feature_importance.json"
MAX_PLOT_POINTS = 1500
ROC_POINTS = 200


def load_model(path: str, metadata: Mapping, name: str = "model"):
    """The one place evaluate loads a model (challenger and champion alike).

    A folder with ``model.joblib`` (what train writes), verified against ``metadata``'s
    ``sha256`` and ``sklearn_version`` before it is unpickled
    (:func:`components.lib.modeling.load_model`); or, with ``format: mlflow`` in the metadata
    (the champion, as find_champion downloads it from the registry), an MLflow model
    directory checked file by file against ``manifest_sha256`` before it is deserialized
    (:func:`components.lib.artifacts.load_mlflow_model`).

    Raises:
        components.lib.artifacts.IntegrityError: The file does not match the recorded
            sha256, or none was recorded; nothing was unpickled.
        components.lib.artifacts.VersionMismatchError: Another scikit-learn version.
    """
    if metadata.get("format") == "mlflow":
        # The champion as the registry keeps it (find_champion downloads it): every file is
        # checked against the recorded manifest before anything is deserialized.
        from components.lib import artifacts

        directory = os.path.join(path, str(metadata.get("path", "")))
        return artifacts.load_mlflow_model(directory, str(metadata.get("manifest_sha256", "")))
    return modeling.load_model(path, metadata, name=name)


def champion_found(metadata: Mapping) -> bool:
    """Whether the champion artifact holds a model: ``found`` false means there is none.

    A record without ``found`` counts as a champion, so a lookup that lost its record is
    refused by the verified loader (no sha256) rather than judged as "no champion".
    """
    found = metadata.get("found", True)
    if not isinstance(found, bool):
        raise EvaluationError(f"champion metadata 'found' must be true or false, not {found!r}")
    return found


def relay(decision: str) -> str:
    """The decision, checked: what ``decision_relay`` returns for ``dsl.If`` to branch on."""
    value = str(decision).strip()
    if value not in gate.DECISIONS:
        raise EvaluationError(
            f"decision {decision!r} is not one of {', '.join(gate.DECISIONS)}: "
            "pass the evaluate task's 'decision' output"
        )
    return value


def _inputs(model, frame: pd.DataFrame, name: str, split: str) -> pd.DataFrame:
    columns = [str(c) for c in getattr(model, "feature_names_in_", [])]
    if not columns:
        raise EvaluationError(f"{name} does not record its input columns (feature_names_in_)")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise EvaluationError(
            f"{name} needs columns the {split} lacks: {', '.join(missing)} "
            f"(columns: {', '.join(map(str, frame.columns))})"
        )
    return frame[columns]


def _target(task: str, frame: pd.DataFrame, target: str, classes, split: str) -> np.ndarray:
    if target not in frame.columns:
        raise EvaluationError(f"target {target!r} is not a column of the {split}")
    values = frame[target]
    if values.isna().any():
        raise EvaluationError(
            f"target {target!r} has {int(values.isna().sum())} missing values in the {split}"
        )
    if task == "regression":
        return values.to_numpy(dtype=np.float64)
    unknown = sorted({str(v) for v in values.unique()} - {str(c) for c in classes})
    if unknown:
        raise EvaluationError(
            f"target {target!r} in the {split} has values the model does not know: "
            f"{', '.join(unknown[:5])} (classes {', '.join(map(str, classes))})"
        )
    return (values.astype(str) == str(classes[1])).to_numpy(dtype=np.float64)


def _classes(task: str, model, name: str) -> list:
    if task != "classification":
        return []
    classes = list(getattr(model, "classes_", []))
    if len(classes) != 2:
        raise EvaluationError(
            f"{name} has classes {classes}: evaluate supports binary classification "
            "(one positive class), not multi-class"
        )
    return classes


def _json_safe(value):
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _min_effect(config: dict, champion_value: float) -> float:
    cfg = config["comparison"]
    if cfg["min_effect_relative"]:
        return cfg["min_effect"] * abs(champion_value)
    return cfg["min_effect"]


def _plots(task: str, y, challenger_score, champion_score, improvements, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    rows = np.arange(len(y))
    if len(rows) > MAX_PLOT_POINTS:
        rows = np.sort(rng.choice(len(y), MAX_PLOT_POINTS, replace=False))
    out: dict = {}
    if task == "regression":
        out["residuals"] = {
            "y": y[rows].tolist(),
            "prediction": challenger_score[rows].tolist(),
            "champion_prediction": None
            if champion_score is None
            else champion_score[rows].tolist(),
        }
    else:
        from sklearn.metrics import roc_curve

        def calibration(score):
            bins = np.clip((score * 10).astype(int), 0, 9)
            table = []
            for b in range(10):
                inside = bins == b
                if inside.any():
                    table.append(
                        {
                            "bin": b,
                            "mean_predicted": float(score[inside].mean()),
                            "observed": float(y[inside].mean()),
                            "rows": int(inside.sum()),
                        }
                    )
            return table

        def roc(score):
            if len(np.unique(y)) < 2:
                return None
            fpr, tpr, thresholds = roc_curve(y, score)
            keep = np.unique(np.linspace(0, len(fpr) - 1, min(len(fpr), ROC_POINTS)).astype(int))
            thresholds = np.clip(thresholds, 0.0, 1.0)  # the first is +inf: "nothing positive"
            return {
                "fpr": fpr[keep].tolist(),
                "tpr": tpr[keep].tolist(),
                "threshold": thresholds[keep].tolist(),
            }

        out["calibration"] = {
            "challenger": calibration(challenger_score),
            "champion": None if champion_score is None else calibration(champion_score),
        }
        out["roc"] = {
            "challenger": roc(challenger_score),
            "champion": None if champion_score is None else roc(champion_score),
        }
    if improvements:
        counts, edges = np.histogram(improvements, bins=30)
        out["bootstrap"] = {"counts": counts.tolist(), "edges": edges.tolist()}
    return out


def run(
    model_dir: str,
    model_meta: Mapping,
    holdout_path: str,
    eval_path: str,
    champion_dir: str,
    champion_meta: Mapping,
    config_ref: str = "bikeshare",
    evaluation_dir: str | None = None,
    holdout_meta: Mapping | None = None,
    eval_meta: Mapping | None = None,
) -> dict:
    """Evaluates the challenger at ``model_dir`` (see the module docstring).

    Args:
        model_dir: The challenger's folder (``model.joblib``).
        model_meta: Its artifact metadata (``sha256``, ``sklearn_version``, ``task``, ``target``).
        holdout_path: Parquet: ingest's holdout split (the decision is made on it).
        eval_path: Parquet: the eval split (its metrics are reported beside the holdout's).
        champion_dir: The champion's folder, when ``champion_meta['found']`` is not false.
        champion_meta: The champion artifact's metadata (``found``, ``sha256``,
            ``sklearn_version``, ``version``; ``task`` and ``target``, when recorded, must be the
            model's).
        config_ref: The evaluation config: bundled name, path or JSON text.
        evaluation_dir: When given, ``evaluation.json`` and ``feature_importance.json`` are
            written there.
        holdout_meta: The holdout artifact's metadata (its ``sha256`` goes in the record).
        eval_meta: The eval artifact's metadata.

    Returns:
        The evaluation (what ``evaluation.json`` holds): decision, reasons, checks,
        metrics, slices, robustness, latency, scorecard, champion, feature importance.

    Raises:
        components.lib.artifacts.IntegrityError: A model file does not match its recorded
            sha256 (nothing unpickled, nothing written).
        EvaluationError: Inputs that cannot be evaluated, naming the field or column.
        components.evaluate.config.ConfigError: A bad config, naming the key.
    """
    config = config_mod.load(config_ref)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=config["threads"]):
        return _run(
            config,
            config_ref,
            model_dir,
            model_meta,
            holdout_path,
            eval_path,
            champion_dir,
            champion_meta,
            evaluation_dir,
            holdout_meta,
            eval_meta,
        )


def _run(
    config: dict,
    config_ref: str,
    model_dir: str,
    model_meta: Mapping,
    holdout_path: str,
    eval_path: str,
    champion_dir: str,
    champion_meta: Mapping,
    evaluation_dir: str | None,
    holdout_meta: Mapping | None,
    eval_meta: Mapping | None,
) -> dict:
    started = time.perf_counter()
    timings: dict[str, float] = {}

    def lap(name: str, since: float) -> float:
        now = time.perf_counter()
        timings[name] = round(now - since, 4)
        return now

    task, metric = config["task"], config["primary_metric"]
    model_task = model_meta.get("task")
    if model_task != task:
        raise EvaluationError(
            f"evaluation config {config['name'] or config_ref[:40]!r} is for {task}, the model "
            f"is {model_task or '(no task recorded)'}: pass a {model_task} config "
            f"(bundled: {', '.join(sorted(p.stem for p in config_mod.CONFIGS_DIR.glob('*.json')))})"
        )
    target = str(model_meta.get("target", ""))
    if not target:
        raise EvaluationError("the model's metadata records no target column")
    has_champion = champion_found(champion_meta)
    if has_champion:
        # What the champion's record states must match (a lookup may record neither).
        for key in ("task", "target"):
            if key in champion_meta and champion_meta[key] != model_meta.get(key):
                raise EvaluationError(
                    f"the champion's {key} {champion_meta[key]!r} is not the model's "
                    f"{model_meta.get(key)!r}: they cannot be compared on the same rows"
                )
    # Both models are verified and loaded before anything is measured or written.
    t = time.perf_counter()
    challenger = load_model(model_dir, model_meta, "model")
    champion = load_model(champion_dir, champion_meta, "champion model") if has_champion else None
    t = lap("load_models", t)
    classes = _classes(task, challenger, "the model")
    if champion is not None and [str(c) for c in _classes(task, champion, "the champion")] != [
        str(c) for c in classes
    ]:
        raise EvaluationError(
            f"the champion's classes {list(champion.classes_)} are not the model's {classes}"
        )
    holdout = pd.read_parquet(holdout_path)
    eval_frame = pd.read_parquet(eval_path)
    if len(holdout) < 2:
        raise EvaluationError(f"the holdout has {len(holdout)} rows; evaluate needs at least 2")
    x = _inputs(challenger, holdout, "the model", "holdout")
    y = _target(task, holdout, target, classes, "holdout")
    log.info(
        "evaluating %s model %s on %d holdout rows (%s), champion %s",
        task,
        str(model_meta.get("sha256", ""))[:12],
        len(holdout),
        config["name"] or "config",
        champion_meta.get("version", "?") if has_champion else "none",
    )
    challenger_score = measures.scores(task, challenger, x)
    every = metrics.names(task)
    holdout_metrics = metrics.point(task, every, y, challenger_score)
    x_eval = _inputs(challenger, eval_frame, "the model", "eval_data")
    y_eval = _target(task, eval_frame, target, classes, "eval_data")
    eval_metrics = metrics.point(task, every, y_eval, measures.scores(task, challenger, x_eval))
    if task == "regression":
        holdout_metrics["mape_excluded_rows"] = metrics.mape_excluded_rows(y)
        eval_metrics["mape_excluded_rows"] = metrics.mape_excluded_rows(y_eval)
    t = lap("score", t)
    slice_report = measures.slices(task, holdout, y, challenger_score, config)
    t = lap("slices", t)
    log.info(
        "slices: %s",
        ", ".join(f"{g['column']} {g['measure']} {g['value']:.3f}" for g in slice_report["gaps"]),
    )
    robust = measures.robustness(task, challenger, x, y, config)
    t = lap("robustness", t)
    log.info("robustness %.3f", robust["score"])
    speed = measures.latency(challenger, x, config)
    t = lap("latency", t)
    log.info(
        "latency p50 / p99: one row %.2f / %.2f ms, %d rows %.1f / %.1f ms",
        speed["single_row"]["p50_ms"],
        speed["single_row"]["p99_ms"],
        speed["batch"]["rows"],
        speed["batch"]["p50_ms"],
        speed["batch"]["p99_ms"],
    )
    importance = measures.importance(task, challenger, x, y, metric, config)
    t = lap("importance", t)
    log.info(
        "permutation importance: %s",
        ", ".join(f"{f['feature']} {f['importance']:.3g}" for f in importance["features"][:5]),
    )

    card = gate.scorecard(config, holdout_metrics[metric], y, slice_report["gaps"], robust, speed)
    checks = gate.threshold_checks(
        config, holdout_metrics, slice_report["gaps"], robust, speed, card["score"]
    )

    champion_record: dict = {"found": has_champion}
    comparison = mcnemar = None
    champion_score = None
    improvements: list[float] = []
    if champion is not None:
        xc = _inputs(champion, holdout, "the champion", "holdout")
        champion_score = measures.scores(task, champion, xc)
        champion_metrics = metrics.point(task, every, y, champion_score)
        t = lap("champion_score", t)
        cmp_cfg = config["comparison"]
        comparison = stats.paired_bootstrap(
            task,
            metric,
            y,
            champion_score,
            challenger_score,
            resamples=cmp_cfg["bootstrap_resamples"],
            alpha=cmp_cfg["alpha"],
            min_effect=_min_effect(config, champion_metrics[metric]),
            seed=config["seed"],
            keep=improvements,
        ).as_dict()
        if task == "classification":
            mcnemar = stats.mcnemar(
                (champion_score > metrics.THRESHOLD) == (y > 0.5),
                (challenger_score > metrics.THRESHOLD) == (y > 0.5),
                cmp_cfg["alpha"],
            ).as_dict()
        t = lap("comparison", t)
        champion_record.update(
            version=str(champion_meta.get("version", "")),
            sha256=str(champion_meta.get("sha256") or champion_meta.get("manifest_sha256", "")),
            model_type=str(champion_meta.get("model_type", "")),
            metrics=champion_metrics,
            slices=measures.slices(task, holdout, y, champion_score, config),
            latency=measures.latency(champion, xc, config),
            comparison=comparison,
            mcnemar=mcnemar,
        )
        t = lap("champion_slices_latency", t)
        log.info(
            "vs champion %s: %s improvement %.4g, CI [%.4g, %.4g]",
            champion_record["version"] or "?",
            metric,
            comparison["improvement"],
            comparison["ci_low"],
            comparison["ci_high"],
        )
    checks += gate.champion_checks(config, comparison, mcnemar)
    decision = gate.decide(checks)
    reasons = [c.reason() for c in checks]
    if not has_champion:
        reasons.append("INFO no champion: the thresholds alone decide")
    failed = [c.name for c in checks if not c.passed]
    summary = (
        f"promote: every check passed ({len(checks)})"
        if decision == gate.PROMOTE
        else f"reject: {len(failed)} of {len(checks)} checks failed ({', '.join(failed)})"
    )
    evaluation = {
        "decision": decision,
        "summary": summary,
        "reasons": reasons,
        "checks": [c.as_dict() for c in checks],
        "task": task,
        "target": target,
        "primary_metric": metric,
        "goal": config["goal"],
        "config": config,
        "model": {
            k: model_meta.get(k)
            for k in (
                "sha256",
                "model_type",
                "sklearn_version",
                "data_sha256",
                "transform_version",
                "code_version",
                "code_revision",
            )
            if k in model_meta
        },
        "classes": [str(c) for c in classes],
        "holdout": {"rows": len(holdout), "sha256": (holdout_meta or {}).get("sha256", "")},
        "eval_data": {"rows": len(eval_frame), "sha256": (eval_meta or {}).get("sha256", "")},
        "metrics": {"holdout": holdout_metrics, "eval": eval_metrics},
        "confusion_matrix": metrics.confusion(y, challenger_score)
        if task == "classification"
        else None,
        "slices": slice_report,
        "robustness": robust,
        "latency": speed,
        "scorecard": card,
        "champion": champion_record,
        "feature_importance": importance,
        "plots": _plots(task, y, challenger_score, champion_score, improvements, config["seed"]),
    }
    timings["total"] = round(time.perf_counter() - started, 4)
    evaluation["timings_s"] = timings
    evaluation = _json_safe(evaluation)
    log.info("decision: %s", summary)
    if evaluation_dir:
        os.makedirs(evaluation_dir, exist_ok=True)
        Path(evaluation_dir, EVALUATION_FILE).write_text(json.dumps(evaluation, indent=1))
        Path(evaluation_dir, IMPORTANCE_FILE).write_text(
            json.dumps(evaluation["feature_importance"], indent=1)
        )
    return evaluation


def write_outputs(
    evaluation: dict, scorecard_path: str, report_path: str, decision_path: str
) -> None:
    """The Markdown scorecard, the HTML report and the decision (text) at the given paths."""
    for path, text in (
        (scorecard_path, report.markdown(evaluation)),
        (report_path, report.html(evaluation)),
        (decision_path, evaluation["decision"]),
    ):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        Path(path).write_text(text)


def kfp_metrics(evaluation: dict) -> dict[str, float]:
    """Flat numbers for the KFP ``Metrics`` artifact."""
    out = {}
    for name, value in evaluation["metrics"]["holdout"].items():
        out[f"holdout_{name}"] = value
    for name in metrics.GREATER_IS_BETTER[evaluation["task"]]:
        out[f"eval_{name}"] = evaluation["metrics"]["eval"].get(name)
    out["score"] = evaluation["scorecard"]["score"]
    for row in evaluation["scorecard"]["criteria"]:
        out[f"score_{row['criterion']}"] = row["score"]
    out["robustness"] = evaluation["robustness"]["score"]
    for key in ("single_row", "batch"):
        out[f"latency_{key}_p50_ms"] = evaluation["latency"][key]["p50_ms"]
        out[f"latency_{key}_p99_ms"] = evaluation["latency"][key]["p99_ms"]
    for gap in evaluation["slices"]["gaps"]:
        out[f"slice_gap_{gap['column']}_{gap['measure']}"] = gap["value"]
    comparison = evaluation["champion"].get("comparison")
    if comparison:
        out["champion_" + comparison["metric"]] = comparison["champion"]
        for key in ("improvement", "ci_low", "ci_high"):
            out[f"improvement_{key}" if key != "improvement" else key] = comparison[key]
    mcnemar = evaluation["champion"].get("mcnemar")
    if mcnemar:
        out["mcnemar_p_value"] = mcnemar["p_value"]
    out["promote"] = 1.0 if evaluation["decision"] == gate.PROMOTE else 0.0
    return {k: float(v) for k, v in out.items() if v is not None}


def artifact_metadata(evaluation: dict) -> dict:
    """The ``evaluation`` artifact's metadata: what register stores with the version."""
    importance = evaluation["feature_importance"]
    champion = evaluation["champion"]
    return {
        "decision": evaluation["decision"],
        "summary": evaluation["summary"],
        "reasons": evaluation["reasons"],
        "task": evaluation["task"],
        "target": evaluation["target"],
        "primary_metric": evaluation["primary_metric"],
        "primary_value": evaluation["metrics"]["holdout"].get(evaluation["primary_metric"]),
        "score": evaluation["scorecard"]["score"],
        "holdout_metrics": evaluation["metrics"]["holdout"],
        "model_sha256": evaluation["model"].get("sha256", ""),
        "holdout_sha256": evaluation["holdout"]["sha256"],
        "holdout_rows": evaluation["holdout"]["rows"],
        "champion_found": champion["found"],
        "champion_version": champion.get("version", ""),
        "comparison": champion.get("comparison"),
        "feature_importance": {f["feature"]: f["importance"] for f in importance["features"]},
        "feature_importance_share": {f["feature"]: f["share"] for f in importance["features"]},
        "feature_importance_metric": importance["metric"],
        "config_name": evaluation["config"]["name"],
    }
