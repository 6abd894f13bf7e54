"""Transform: a declarative feature spec turned into a scikit-learn ColumnTransformer, fitted on train only.

The fitted transformer is saved with its spec; its version is a hash of the spec, the
code version and the scikit-learn version (logic versioning): the same spec fitted by
the same code gives the same version, whatever the data. Training puts this fitted
object, unchanged, in front of the estimator, so evaluation and serving apply exactly
what training saw.

Spec (JSON)::

    {"name": "bikeshare", "task": "regression" | "classification", "target": "bikers",
     "features": {
        "temp": {"kind": "numeric", "scale": "standard" | "minmax" | "none"},
        "weathersit": {"kind": "categorical", "unknown": "ignore" | "infrequent", "min_frequency": 0.01},
        "hr": {"kind": "cyclical", "period": 24},
        "mnth": {"kind": "cyclical", "period": 12, "order": ["Jan", ...]},
        "holiday": {"kind": "passthrough"}}}
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
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.preprocessing import MinMaxScaler, OneHotEncoder, StandardScaler

from components import __version__ as CODE_VERSION
from components._specs import load_json

SPECS_DIR = Path(__file__).resolve().parent / "specs"
KINDS = ("numeric", "categorical", "cyclical", "passthrough")
TASKS = ("regression", "classification")
TRANSFORMER_FILE = "transformer.joblib"
SPEC_FILE = "spec.json"


class TransformSpecError(ValueError):
    """A feature spec that cannot be applied; the message names the feature and the field."""


class CyclicalEncoder(TransformerMixin, BaseEstimator):
    """Encodes a periodic value as (sin, cos) so that 23h sits next to 0h, December next to January.

    Args:
        period: Length of the cycle (24 for hours, 12 for months).
        order: Optional labels in cycle order (``["Jan", "Feb", ...]``); a label not in it is an error.
    """

    def __init__(self, period: float = 24, order: list | None = None):
        self.period = period
        self.order = order

    def fit(self, X, y=None):
        self.n_features_in_ = np.asarray(X).shape[1]
        return self

    def _positions(self, X) -> np.ndarray:
        values = np.asarray(X, dtype=object)
        if not self.order:
            return values.astype(float)
        index = {label: i for i, label in enumerate(self.order)}
        unknown = sorted({str(v) for v in values.ravel() if v not in index})
        if unknown:
            raise ValueError(
                f"cyclical feature has values outside its order: {', '.join(unknown[:5])}"
            )
        return np.vectorize(index.__getitem__, otypes=[float])(values)

    def transform(self, X):
        angle = 2 * np.pi * self._positions(X) / self.period
        return np.hstack([np.sin(angle), np.cos(angle)])

    def get_feature_names_out(self, input_features=None):
        names = (
            list(input_features)
            if input_features is not None
            else [f"x{i}" for i in range(self.n_features_in_)]
        )
        return np.array([f"{n}_{part}" for part in ("sin", "cos") for n in names], dtype=object)


def load_spec(name_or_path: str) -> dict:
    """Loads a spec by bundled name (``bikeshare``), JSON path or JSON text, and validates it."""
    spec = load_json(name_or_path, SPECS_DIR, "feature spec", TransformSpecError)
    validate_spec(spec)
    return spec


def validate_spec(spec: dict) -> None:
    """Checks a spec's shape before any data is touched."""
    for field_name in ("task", "target", "features"):
        if field_name not in spec:
            raise TransformSpecError(f"feature spec lacks {field_name!r}")
    if spec["task"] not in TASKS:
        raise TransformSpecError(
            f"feature spec task {spec['task']!r} is not one of {', '.join(TASKS)}"
        )
    if not spec["features"]:
        raise TransformSpecError("feature spec has no features")
    if spec["target"] in spec["features"]:
        raise TransformSpecError(f"feature spec uses the target {spec['target']!r} as a feature")
    for name, feature in spec["features"].items():
        kind = feature.get("kind")
        if kind not in KINDS:
            raise TransformSpecError(
                f"feature {name!r}: kind {kind!r} is not one of {', '.join(KINDS)}"
            )
        if kind == "numeric" and feature.get("scale", "standard") not in (
            "standard",
            "minmax",
            "none",
        ):
            raise TransformSpecError(
                f"feature {name!r}: scale {feature['scale']!r} is not standard, minmax or none"
            )
        if kind == "cyclical" and not (
            isinstance(feature.get("period"), int | float) and feature["period"] > 0
        ):
            raise TransformSpecError(f"feature {name!r}: a cyclical feature needs a period > 0")
        if kind == "categorical" and feature.get("unknown", "ignore") not in (
            "ignore",
            "infrequent",
        ):
            raise TransformSpecError(
                f"feature {name!r}: unknown {feature['unknown']!r} is not ignore or infrequent"
            )


def check_columns(spec: dict, columns) -> None:
    """Every feature and the target must be columns of the data."""
    columns = [str(c) for c in columns]
    missing = [c for c in [*spec["features"], spec["target"]] if c not in columns]
    if missing:
        raise TransformSpecError(
            f"feature spec names columns the data lacks: {', '.join(missing)} (columns: {', '.join(columns)})"
        )


def spec_version(spec: dict) -> str:
    """Logic version: sha256 of the canonical spec, the code version and the scikit-learn version."""
    canonical = json.dumps(spec, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(
        f"{canonical}|loopline={CODE_VERSION}|sklearn={sklearn.__version__}".encode()
    )
    return digest.hexdigest()[:16]


def build(spec: dict) -> ColumnTransformer:
    """The (unfitted) ColumnTransformer of a spec."""
    parts = []
    for name, feature in spec["features"].items():
        kind = feature["kind"]
        if kind == "numeric":
            scale = feature.get("scale", "standard")
            step = {"standard": StandardScaler(), "minmax": MinMaxScaler(), "none": "passthrough"}[
                scale
            ]
        elif kind == "categorical":
            if feature.get("unknown", "ignore") == "infrequent":
                step = OneHotEncoder(
                    handle_unknown="infrequent_if_exist",
                    min_frequency=feature.get("min_frequency", 0.01),
                    sparse_output=False,
                )
            else:
                step = OneHotEncoder(handle_unknown="ignore", sparse_output=False)
        elif kind == "cyclical":
            step = CyclicalEncoder(period=feature["period"], order=feature.get("order"))
        else:
            step = "passthrough"
        parts.append((name, step, [name]))
    return ColumnTransformer(parts, remainder="drop", sparse_threshold=0.0)


def fit(spec: dict, train: pd.DataFrame) -> ColumnTransformer:
    """Fits the spec's transformer on the training split only."""
    check_columns(spec, train.columns)
    return build(spec).fit(train[list(spec["features"])])


def save(transformer: ColumnTransformer, spec: dict, directory: str) -> dict:
    """Saves the fitted transformer and its spec; returns the artifact metadata."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, TRANSFORMER_FILE)
    joblib.dump(transformer, path)
    Path(directory, SPEC_FILE).write_text(json.dumps(spec, indent=2, sort_keys=True))
    return {
        "transform_version": spec_version(spec),
        "spec_name": spec.get("name", ""),
        "task": spec["task"],
        "target": spec["target"],
        "features_in": list(spec["features"]),
        "features_out": [str(n) for n in transformer.get_feature_names_out()],
        "sklearn_version": sklearn.__version__,
        "code_version": CODE_VERSION,
        "sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest(),
    }


def load(directory: str) -> tuple[ColumnTransformer, dict]:
    """Loads a saved transformer and its spec."""
    transformer = joblib.load(os.path.join(directory, TRANSFORMER_FILE))
    spec = json.loads(Path(directory, SPEC_FILE).read_text())
    return transformer, spec


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
