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

import joblib
import pandas as pd
import sklearn

from components import __version__ as CODE_VERSION
from components.lib import artifacts, features, modeling


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
