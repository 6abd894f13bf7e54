"""Train: the fitted transform plus an estimator, as one scikit-learn Pipeline, with lineage.

The transform arrives fitted (on the training split only) and is not refitted: it is
loaded verified (its sha256, its spec's sha256 and its scikit-learn version must be what
the transform step recorded) and the saved Pipeline applies exactly it, so predictions
from raw rows match training. Building, fitting and scoring the estimator are shared
with tune (``components/lib/modeling.py``, which lists the model types).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import joblib
import pandas as pd
import sklearn

from components import __version__ as CODE_VERSION
from components.lib import artifacts, drift, features, modeling
from components.lib.specs import load_json

# The monitoring reference train writes beside model.joblib (register puts both into the
# registry version, under its manifest, as loopline_drift_profile.json and
# loopline_reference_rows.parquet): detect_drift reads them instead of the training data.
DRIFT_PROFILE_FILE = "drift_profile.json"
REFERENCE_ROWS_FILE = "reference_rows.parquet"
IMPORTANCE_ROWS = 2000  # eval rows permutation importance is measured on (a seeded sample)
IMPORTANCE_REPEATS = 5
DEFAULT_MODEL_TYPE = "gradient_boosting"  # also a search space's default (tune)
# The bundled search spaces, read as data (no import of tune): the training pipeline hands
# train the search space that tune ran, so that the model type has one source.
SEARCH_SPACES_DIR = Path(__file__).resolve().parent.parent / "tune" / "specs"


def resolve_model_type(model_type: str = "", search_space: str = "") -> str:
    """The model type to fit: the search space's ``model_type`` when a search space is given.

    Args:
        model_type: An explicit model type, or empty.
        search_space: A bundled search-space name, a JSON path or JSON text, or empty.

    Raises:
        ModelError: When both are given and disagree (the tuned parameters belong to the
            search space's model type), or the model type is unknown.
    """
    chosen = model_type
    if search_space:
        spec = load_json(search_space, SEARCH_SPACES_DIR, "search space", modeling.ModelError)
        tuned = spec.get("model_type", DEFAULT_MODEL_TYPE)
        if model_type and model_type != tuned:
            raise modeling.ModelError(
                f"model_type {model_type!r} disagrees with the search space's model_type "
                f"{tuned!r}: its parameters were tuned for {tuned!r}; leave model_type empty"
            )
        chosen = tuned
    chosen = chosen or DEFAULT_MODEL_TYPE
    if chosen not in modeling.MODEL_TYPES:
        raise modeling.ModelError(
            f"model_type {chosen!r} is not one of {', '.join(modeling.MODEL_TYPES)}"
        )
    return chosen


def run(
    train_path: str,
    eval_path: str,
    transform_dir: str,
    transform_metadata: Mapping,
    model_dir: str,
    model_type: str,
    params: dict,
    lineage: dict,
    seed: int = 0,
    predictions_path: str | None = None,
) -> tuple[dict, dict]:
    """Trains, evaluates on the eval split, saves ``model_dir/model.joblib``.

    ``transform_metadata`` is what the transform step recorded (its artifact metadata):
    the transformer is refused, before it is unpickled, unless it matches.
    With ``predictions_path``, also writes the eval split's predictions (Parquet) as made
    by the in-memory model, before it is saved: a loaded model must reproduce them.

    Returns:
        (model metadata with lineage, eval metrics).
    """
    transformer, spec = features.load_fitted(transform_dir, transform_metadata)
    train = pd.read_parquet(train_path)
    model = modeling.fit(transformer, spec, model_type, params, train, seed)
    x_eval, y_eval = modeling.split_xy(spec, pd.read_parquet(eval_path))
    metrics = modeling.evaluate(spec["task"], model, x_eval, y_eval)
    if predictions_path:
        pd.DataFrame({"prediction": model.predict(x_eval)}).to_parquet(
            predictions_path, index=False
        )
    os.makedirs(model_dir, exist_ok=True)
    monitoring = monitoring_reference(
        model, spec, train, pd.read_parquet(eval_path), model_dir, seed
    )
    path = os.path.join(model_dir, modeling.MODEL_FILE)
    joblib.dump(model, path)
    meta = {
        "framework": "sklearn",
        "sklearn_version": sklearn.__version__,
        "model_type": model_type,
        "task": spec["task"],
        "target": spec["target"],
        "sha256": artifacts.sha256_file(path),
        "params": json.dumps(params, sort_keys=True),
        "seed": seed,
        "training_rows": len(train),
        "code_version": CODE_VERSION,
        **lineage,
        "eval_metrics": metrics,
        "monitoring": monitoring,
    }
    return meta, metrics


def drift_kinds(spec: Mapping, frame: pd.DataFrame) -> tuple[list[str], list[str]]:
    """(numeric, categorical) model input columns, as drift compares them.

    Categorical: the spec's ``categorical`` features, ``cyclical`` ones with an ``order``
    (named months), and any column that is not numeric in the data; every other feature
    (numeric, cyclical hours, 0/1 passthrough flags) is numeric.
    """
    numeric, categorical = [], []
    for name, feature in spec["features"].items():
        kind = feature.get("kind")
        is_number = pd.api.types.is_numeric_dtype(frame[name]) and not pd.api.types.is_bool_dtype(
            frame[name]
        )
        if kind == "categorical" or (kind == "cyclical" and "order" in feature) or not is_number:
            categorical.append(name)
        else:
            numeric.append(name)
    return numeric, categorical


def permutation_importance(
    model, spec: Mapping, frame: pd.DataFrame, seed: int
) -> dict[str, float]:
    """Each input column's share of the model's permutation importance on ``frame`` (sum 1).

    scikit-learn's ``permutation_importance`` on the raw columns (the whole Pipeline is the
    estimator, so a column counts once however many features the transform makes of it),
    negative means clipped at 0; all zero: equal weights.
    """
    from sklearn.inspection import permutation_importance as measure

    x, y = modeling.split_xy(spec, frame)
    if len(x) > IMPORTANCE_ROWS:
        x = x.sample(IMPORTANCE_ROWS, random_state=seed)
        y = y.loc[x.index]
    scoring = "neg_root_mean_squared_error" if spec["task"] == "regression" else "accuracy"
    found = measure(model, x, y, scoring=scoring, n_repeats=IMPORTANCE_REPEATS, random_state=seed)
    raw = {c: max(float(v), 0.0) for c, v in zip(x.columns, found.importances_mean, strict=True)}
    total = sum(raw.values())
    if total <= 0:
        return {c: 1.0 / len(raw) for c in raw}
    return {c: v / total for c, v in raw.items()}


def monitoring_reference(
    model, spec: Mapping, train: pd.DataFrame, eval_frame: pd.DataFrame, model_dir: str, seed: int
) -> dict:
    """Writes the drift profile and the reference rows beside the model; returns a summary.

    * ``drift_profile.json``: :func:`components.lib.drift.build_profile` of the training
      split's input columns and the model's predictions on them, weighted by permutation
      importance on the eval split.
    * ``reference_rows.parquet``: the eval split's input columns, the target and the model's
      prediction (and ``proba_<class>`` for a classifier): the realized-performance baseline
      and what the performance estimator is fitted on.
    """
    columns = list(spec["features"])
    numeric, categorical = drift_kinds(spec, train)
    importance = permutation_importance(model, spec, eval_frame, seed)
    prediction_kind = "numeric" if spec["task"] == "regression" else "categorical"
    profile = drift.build_profile(
        train[columns],
        numeric=numeric,
        categorical=categorical,
        prediction=model.predict(train[columns]),
        prediction_kind=prediction_kind,
        importance=importance,
        seed=seed,
    )
    drift.save_profile(profile, os.path.join(model_dir, DRIFT_PROFILE_FILE))
    rows = eval_frame[columns].copy()
    rows[spec["target"]] = eval_frame[spec["target"]].to_numpy()
    rows["prediction"] = model.predict(eval_frame[columns])
    if spec["task"] == "classification" and hasattr(model, "predict_proba"):
        for label, column in zip(
            model.classes_, model.predict_proba(eval_frame[columns]).T, strict=True
        ):
            rows[f"proba_{label}"] = column
    rows.to_parquet(os.path.join(model_dir, REFERENCE_ROWS_FILE), index=False)
    return {
        "drift_profile": DRIFT_PROFILE_FILE,
        "reference_rows": REFERENCE_ROWS_FILE,
        "numeric": numeric,
        "categorical": categorical,
        "importance": {k: round(v, 6) for k, v in importance.items()},
    }
