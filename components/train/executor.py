"""Train: the fitted transform plus an estimator, as one scikit-learn Pipeline, with lineage.

Model types: ``gradient_boosting`` (HistGradientBoosting) and ``linear`` (Ridge for
regression, LogisticRegression for classification), for the task the feature spec
names. The transform arrives fitted (on the training split only) and is not refitted:
the saved Pipeline applies exactly it, so predictions from raw rows match training.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import sklearn
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    mean_absolute_error,
    r2_score,
    roc_auc_score,
    root_mean_squared_error,
)
from sklearn.pipeline import Pipeline

from components import __version__ as CODE_VERSION
from components._specs import load_json
from components.transform import executor as transform_exec

MODEL_FILE = "model.joblib"  # the name KServe's sklearn server loads
MODEL_TYPES = ("gradient_boosting", "linear")
DEFAULT_MODEL_TYPE = "gradient_boosting"  # also a search space's default (tune)
# The bundled search spaces, read as data (no import of tune): the training pipeline hands
# train the search space that tune ran, so that the model type has one source.
SEARCH_SPACES_DIR = Path(__file__).resolve().parent.parent / "tune" / "specs"
# Metric name -> True when larger is better.
METRICS = {
    "regression": {"rmse": False, "mae": False, "r2": True},
    "classification": {"accuracy": True, "f1": True, "roc_auc": True},
}


class TrainError(ValueError):
    """Bad training input; the message names the parameter or column."""


def resolve_model_type(model_type: str = "", search_space: str = "") -> str:
    """The model type to fit: the search space's ``model_type`` when a search space is given.

    Args:
        model_type: An explicit model type, or empty.
        search_space: A bundled search-space name, a JSON path or JSON text, or empty.

    Raises:
        TrainError: When both are given and disagree (the tuned parameters belong to the
            search space's model type), or the model type is unknown.
    """
    chosen = model_type
    if search_space:
        spec = load_json(search_space, SEARCH_SPACES_DIR, "search space", TrainError)
        tuned = spec.get("model_type", DEFAULT_MODEL_TYPE)
        if model_type and model_type != tuned:
            raise TrainError(
                f"model_type {model_type!r} disagrees with the search space's model_type "
                f"{tuned!r}: its parameters were tuned for {tuned!r}; leave model_type empty"
            )
        chosen = tuned
    chosen = chosen or DEFAULT_MODEL_TYPE
    if chosen not in MODEL_TYPES:
        raise TrainError(f"model_type {chosen!r} is not one of {', '.join(MODEL_TYPES)}")
    return chosen


def make_estimator(task: str, model_type: str, params: dict, seed: int = 0):
    """An unfitted estimator for ``task`` and ``model_type`` with ``params``."""
    if model_type not in MODEL_TYPES:
        raise TrainError(f"model_type {model_type!r} is not one of {', '.join(MODEL_TYPES)}")
    cls = {
        ("regression", "gradient_boosting"): HistGradientBoostingRegressor,
        ("classification", "gradient_boosting"): HistGradientBoostingClassifier,
        ("regression", "linear"): Ridge,
        ("classification", "linear"): LogisticRegression,
    }[(task, model_type)]
    allowed = cls().get_params()
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise TrainError(f"{cls.__name__} has no parameter {', '.join(unknown)}")
    extra = {"random_state": seed} if "random_state" in allowed else {}
    if "early_stopping" in allowed:
        # Tuning scores the full max_iter (in stages); the final fit must do the same.
        extra["early_stopping"] = False
    if cls is LogisticRegression:
        extra["max_iter"] = params.get("max_iter", 1000)
    return cls(**{**extra, **params})


def split_xy(spec: dict, frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    transform_exec.check_columns(spec, frame.columns)
    target = frame[spec["target"]]
    if target.isna().any():
        raise TrainError(f"target {spec['target']!r} has {int(target.isna().sum())} missing values")
    return frame[list(spec["features"])], target


def evaluate(task: str, model, x: pd.DataFrame, y: pd.Series) -> dict[str, float]:
    """The task's metrics of ``model`` on (x, y)."""
    predicted = model.predict(x)
    if task == "regression":
        return {
            "rmse": float(root_mean_squared_error(y, predicted)),
            "mae": float(mean_absolute_error(y, predicted)),
            "r2": float(r2_score(y, predicted)),
        }
    out = {
        "accuracy": float(accuracy_score(y, predicted)),
        "f1": float(f1_score(y, predicted, average="macro")),
    }
    if len(np.unique(y)) == 2 and hasattr(model, "predict_proba"):
        out["roc_auc"] = float(roc_auc_score(y, model.predict_proba(x)[:, 1]))
    return out


def fit(
    transformer, spec: dict, model_type: str, params: dict, train: pd.DataFrame, seed: int = 0
) -> Pipeline:
    """Fits the estimator on the transformed training split; returns transform + estimator."""
    x, y = split_xy(spec, train)
    estimator = make_estimator(spec["task"], model_type, params, seed)
    estimator.fit(transformer.transform(x), y)
    return Pipeline([("transform", transformer), ("model", estimator)])


def sha256_file(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def run(
    train_path: str,
    eval_path: str,
    transform_dir: str,
    model_dir: str,
    model_type: str,
    params: dict,
    lineage: dict,
    seed: int = 0,
    predictions_path: str | None = None,
) -> tuple[dict, dict]:
    """Trains, evaluates on the eval split, saves ``model_dir/model.joblib``.

    With ``predictions_path``, also writes the eval split's predictions (Parquet) as made
    by the in-memory model, before it is saved: a loaded model must reproduce them.

    Returns:
        (model metadata with lineage, eval metrics).
    """
    transformer, spec = transform_exec.load(transform_dir)
    train = pd.read_parquet(train_path)
    model = fit(transformer, spec, model_type, params, train, seed)
    x_eval, y_eval = split_xy(spec, pd.read_parquet(eval_path))
    metrics = evaluate(spec["task"], model, x_eval, y_eval)
    if predictions_path:
        pd.DataFrame({"prediction": model.predict(x_eval)}).to_parquet(
            predictions_path, index=False
        )
    os.makedirs(model_dir, exist_ok=True)
    path = os.path.join(model_dir, MODEL_FILE)
    joblib.dump(model, path)
    meta = {
        "framework": "sklearn",
        "sklearn_version": sklearn.__version__,
        "model_type": model_type,
        "task": spec["task"],
        "target": spec["target"],
        "sha256": sha256_file(path),
        "params": json.dumps(params, sort_keys=True),
        "seed": seed,
        "training_rows": len(train),
        "code_version": CODE_VERSION,
        **lineage,
        "eval_metrics": metrics,
    }
    return meta, metrics
