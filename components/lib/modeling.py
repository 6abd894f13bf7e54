"""Building, fitting, scoring and loading the estimator behind the fitted transform.

Model types: ``gradient_boosting`` (HistGradientBoosting) and ``linear`` (Ridge for
regression, LogisticRegression for classification), for the task the feature spec
names. Train fits the final model with these; tune and the Katib trials fit and score
candidates with the same functions, so a tuned parameter means the same in both.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
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

from components.lib import artifacts, features

MODEL_FILE = "model.joblib"  # the name KServe's sklearn server loads
MODEL_TYPES = ("gradient_boosting", "linear")
# Metric name -> True when larger is better.
METRICS = {
    "regression": {"rmse": False, "mae": False, "r2": True},
    "classification": {"accuracy": True, "f1": True, "roc_auc": True},
}


class ModelError(ValueError):
    """Bad model input; the message names the parameter or column."""


def make_estimator(task: str, model_type: str, params: dict, seed: int = 0):
    """An unfitted estimator for ``task`` and ``model_type`` with ``params``."""
    if model_type not in MODEL_TYPES:
        raise ModelError(f"model_type {model_type!r} is not one of {', '.join(MODEL_TYPES)}")
    cls = {
        ("regression", "gradient_boosting"): HistGradientBoostingRegressor,
        ("classification", "gradient_boosting"): HistGradientBoostingClassifier,
        ("regression", "linear"): Ridge,
        ("classification", "linear"): LogisticRegression,
    }[(task, model_type)]
    allowed = cls().get_params()
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ModelError(f"{cls.__name__} has no parameter {', '.join(unknown)}")
    extra = {"random_state": seed} if "random_state" in allowed else {}
    if "early_stopping" in allowed:
        # Tuning scores the full max_iter (in stages); the final fit must do the same.
        extra["early_stopping"] = False
    if cls is LogisticRegression:
        extra["max_iter"] = params.get("max_iter", 1000)
    return cls(**{**extra, **params})


def split_xy(spec: dict, frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """The spec's feature columns and its target; a missing target value is an error."""
    features.check_columns(spec, frame.columns)
    target = frame[spec["target"]]
    if target.isna().any():
        raise ModelError(f"target {spec['target']!r} has {int(target.isna().sum())} missing values")
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


def load_model(
    location: str,
    record: Mapping,
    *,
    name: str = "model",
    s3_endpoint: str = "",
    s3_secure: bool = False,
    policy: str = "refuse",
) -> Pipeline:
    """Loads a saved model folder (``model.joblib``, as train writes it), verified first.

    Args:
        location: The folder: a path, ``file://`` or ``s3://`` / ``minio://`` URI.
        record: What train recorded (the model artifact's metadata): ``sha256`` of
            ``model.joblib`` and ``sklearn_version``.
        name: What the messages call it (``model``, ``champion model``).
        s3_endpoint: ``host:port`` of the S3 API, for ``s3://`` locations.
        s3_secure: Reach the endpoint over TLS.
        policy: The scikit-learn version policy (:mod:`components.lib.artifacts`).

    Raises:
        artifacts.IntegrityError: ``model.joblib`` does not match the recorded sha256, or
            none was recorded; nothing was unpickled.
        artifacts.VersionMismatchError: Another scikit-learn version pickled it.
        ModelError: What was unpickled cannot predict.
    """
    model = artifacts.load_pickle(
        artifacts.child_uri(location, MODEL_FILE),
        str(record.get("sha256", "")),
        name,
        sklearn_version=str(record.get("sklearn_version", "")),
        policy=policy,
        s3_endpoint=s3_endpoint,
        s3_secure=s3_secure,
    )
    if not hasattr(model, "predict"):
        raise ModelError(f"{name} at {location} is a {type(model).__name__}, which cannot predict")
    return model
