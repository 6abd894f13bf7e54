"""Transform: a declarative feature spec turned into a scikit-learn ColumnTransformer, fitted on train only.

The fitted transformer is saved with its spec; its version is a hash of the spec, the
code version and the scikit-learn version (logic versioning): the same spec fitted by
the same code gives the same version, whatever the data. Training puts this fitted
object, unchanged, in front of the estimator, so evaluation and serving apply exactly
what training saw.

The spec's rules, the ColumnTransformer it builds, its encoders and the verified loader
are shared (``components/lib/features.py``, which documents the spec); this module
resolves bundled specs, fits, saves and records the sha256 of both saved files.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import joblib
import pandas as pd
import sklearn
from sklearn.compose import ColumnTransformer

from components import __version__ as CODE_VERSION
from components.lib import artifacts, features
from components.lib.features import SPEC_FILE, TRANSFORMER_FILE, TransformSpecError
from components.lib.specs import load_json

SPECS_DIR = Path(__file__).resolve().parent / "specs"


def load_spec(name_or_path: str) -> dict:
    """Loads a spec by bundled name (``bikeshare``), JSON path or JSON text, and validates it."""
    spec = load_json(name_or_path, SPECS_DIR, "feature spec", TransformSpecError)
    features.validate_spec(spec)
    return spec


def spec_version(spec: dict) -> str:
    """Logic version: sha256 of the canonical spec, the code version and the scikit-learn version."""
    canonical = json.dumps(spec, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(
        f"{canonical}|loopline={CODE_VERSION}|sklearn={sklearn.__version__}".encode()
    )
    return digest.hexdigest()[:16]


def fit(spec: dict, train: pd.DataFrame) -> ColumnTransformer:
    """Fits the spec's transformer on the training split only."""
    features.check_columns(spec, train.columns)
    return features.build(spec).fit(train[list(spec["features"])])


def save(transformer: ColumnTransformer, spec: dict, directory: str) -> dict:
    """Saves the fitted transformer and its spec; returns the artifact metadata.

    The metadata records the sha256 of ``transformer.joblib`` (``sha256``) and of
    ``spec.json`` (``spec_sha256``) and the scikit-learn version: what
    :func:`components.lib.features.load_fitted` verifies before loading them.
    """
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, TRANSFORMER_FILE)
    joblib.dump(transformer, path)
    spec_path = Path(directory, SPEC_FILE)
    spec_path.write_text(json.dumps(spec, indent=2, sort_keys=True))
    return {
        "transform_version": spec_version(spec),
        "spec_name": spec.get("name", ""),
        "task": spec["task"],
        "target": spec["target"],
        "features_in": list(spec["features"]),
        "features_out": [str(n) for n in transformer.get_feature_names_out()],
        "sklearn_version": sklearn.__version__,
        "code_version": CODE_VERSION,
        "sha256": artifacts.sha256_file(path),
        "spec_sha256": artifacts.sha256_file(spec_path),
    }


def run(
    train_path: str, spec_ref: str, output_dir: str, train_metadata: dict | None = None
) -> dict:
    """Fits the spec on the training split at ``train_path`` and saves it to ``output_dir``."""
    spec = load_spec(spec_ref)
    train = pd.read_parquet(train_path)
    transformer = fit(spec, train)
    meta = save(transformer, spec, output_dir)
    meta["fitted_rows"] = len(train)
    meta["data_sha256"] = (train_metadata or {}).get("sha256", "")
    return meta
