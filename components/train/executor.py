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
from components.lib import artifacts, features, modeling
from components.lib.specs import load_json

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
    }
    return meta, metrics
