"""The feature transform: spec rules, the ColumnTransformer a spec builds, its encoders, its loader.

The transform component fits and saves it; train, tune and the Katib trials load the
fitted transformer through :func:`load_fitted`, which verifies it first. The encoder
classes live here, at their final module path: a pickled transformer names its classes
by module path (``components.lib.features.CyclicalEncoder``), so moving them would break
every saved transformer.

Spec (JSON)::

    {"name": "bikeshare", "task": "regression" | "classification", "target": "bikers",
     "features": {
        "temp": {"kind": "numeric", "scale": "standard" | "minmax" | "none"},
        "weathersit": {"kind": "categorical", "unknown": "ignore" | "infrequent", "min_frequency": 0.01},
        "hr": {"kind": "cyclical", "period": 24},
        "mnth": {"kind": "cyclical", "period": 12, "order": ["Jan", ...]},
        "holiday": {"kind": "passthrough"}}}

A saved transformer is a folder: ``transformer.joblib`` (the fitted ColumnTransformer) and
``spec.json`` (its spec); the transform records the sha256 of each (``sha256``,
``spec_sha256``) and the scikit-learn version (``sklearn_version``) in the artifact metadata.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.preprocessing import MinMaxScaler, OneHotEncoder, StandardScaler

from components.lib import artifacts

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


def load_fitted(
    location: str,
    record: Mapping,
    *,
    s3_endpoint: str = "",
    s3_secure: bool = False,
    policy: str = "refuse",
) -> tuple[ColumnTransformer, dict]:
    """Loads a saved transformer folder and its spec, each verified before it is read.

    Args:
        location: The folder: a path, ``file://`` or ``s3://`` / ``minio://`` URI.
        record: What the transform step recorded (its artifact metadata): ``sha256`` of
            ``transformer.joblib``, ``spec_sha256`` of ``spec.json``, ``sklearn_version``.
        s3_endpoint: ``host:port`` of the S3 API, for ``s3://`` locations.
        s3_secure: Reach the endpoint over TLS.
        policy: The scikit-learn version policy (:mod:`components.lib.artifacts`).

    Raises:
        artifacts.IntegrityError: A file does not match its recorded hash, or none was
            recorded; nothing was unpickled.
        artifacts.VersionMismatchError: Another scikit-learn version pickled it.
    """
    spec_bytes = artifacts.read_verified(
        artifacts.child_uri(location, SPEC_FILE),
        str(record.get("spec_sha256", "")),
        "transformer spec",
        s3_endpoint=s3_endpoint,
        s3_secure=s3_secure,
    )
    transformer = artifacts.load_pickle(
        artifacts.child_uri(location, TRANSFORMER_FILE),
        str(record.get("sha256", "")),
        "transformer",
        sklearn_version=str(record.get("sklearn_version", "")),
        policy=policy,
        s3_endpoint=s3_endpoint,
        s3_secure=s3_secure,
    )
    return transformer, json.loads(spec_bytes)
