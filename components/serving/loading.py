"""Loading a registry version for serving: fetched, verified, then deserialized.

A version is an MLflow model directory as the registry stores it (``MLmodel``, the skops
model, ``loopline_manifest.json``, the request schema and the check rows). The server gets

* ``--model_dir``: a local folder (KServe's storage initializer puts ``storageUri`` at
  ``/mnt/models``), or an ``s3://bucket/prefix`` it fetches with the MinIO client;
* the record to check it against: ``--manifest_sha256`` (what ``push`` writes into the
  InferenceService from the registry), or ``--registry_uri`` with the model name and
  ``--model_version``, and the server reads the record from the MLflow registry itself.

:func:`load` checks the manifest against the record and every file against the manifest
before anything is parsed or deserialized (``components.lib.artifacts.load_mlflow_model``);
a mismatch raises ``artifacts.IntegrityError`` and the server stays not ready.
"""

from __future__ import annotations

import io
import logging
import os
from dataclasses import dataclass, field

import numpy as np
import yaml

from components.lib import artifacts, storage

from . import validation

log = logging.getLogger("loopline.serving")

# What register writes into the version (components/lib/registry.py names the same files).
REQUEST_SCHEMA_FILE = "loopline_request_schema.json"
CHECK_DATA_FILE = "loopline_check_rows.parquet"
PREDICTION_BINS = 25


@dataclass
class LoadedModel:
    pipeline: object
    directory: str
    manifest_sha256: str
    inputs: tuple[str, ...]
    task: str  # regression | classification
    schema: validation.RequestSchema
    check_rows: object | None = None  # a pandas DataFrame of raw input rows, or None
    target: str = ""
    prediction_buckets: tuple[float, ...] = ()
    notes: list[str] = field(default_factory=list)


def record_from_registry(registry_uri: str, model_name: str, version: str) -> tuple[str, str]:
    """(manifest sha256, artifact source URI) of a version, as the registry recorded them."""
    from components.lib.registry import Registry

    found = Registry(registry_uri).get(model_name, version)
    if not found.manifest_sha256:
        raise artifacts.IntegrityError(
            f"model {model_name!r} version {version} has no manifest sha256 in the registry"
        )
    return found.manifest_sha256, found.source


def fetch(model_dir: str, dest: str, s3_endpoint: str = "", s3_secure: bool = False) -> str:
    """A local copy of ``model_dir`` (a path, ``file://`` or ``s3://`` prefix)."""
    if model_dir.startswith("file://"):
        return model_dir[len("file://") :]
    if storage.is_remote(model_dir):
        log.info("fetching %s from %s", model_dir, s3_endpoint)
        return storage.fetch(model_dir, dest, s3_endpoint, s3_secure, what="model_dir")
    return model_dir


def load(
    directory: str,
    manifest_sha256: str,
    *,
    max_rows: int = validation.DEFAULT_MAX_ROWS,
    prediction_buckets: tuple[float, ...] = (),
) -> LoadedModel:
    """Verifies and loads the version in ``directory``; nothing is deserialized before the check.

    Raises:
        artifacts.IntegrityError: The manifest is not the recorded one, a file differs, the
            model trusts unreviewed types (nothing deserialized).
        artifacts.VersionMismatchError: Another scikit-learn version saved it.
        validation.SchemaError: The request schema cannot describe the model's inputs.
    """
    pipeline = artifacts.load_mlflow_model(directory, manifest_sha256)
    if not hasattr(pipeline, "predict"):
        raise artifacts.IntegrityError(f"model at {directory} cannot predict")
    files = artifacts.verify_mlflow_model(directory, manifest_sha256)
    conf = yaml.safe_load(artifacts.read_listed(directory, "MLmodel", files)) or {}
    signature = _signature_types(conf)
    inputs = tuple(str(c) for c in getattr(pipeline, "feature_names_in_", signature))
    notes: list[str] = []
    schema_doc = None
    if REQUEST_SCHEMA_FILE in files:
        schema_doc = validation.load_schema_file(
            artifacts.read_listed(directory, REQUEST_SCHEMA_FILE, files)
        )
    else:
        notes.append(
            f"no {REQUEST_SCHEMA_FILE} in this version: types from the MLflow signature, no ranges"
        )
    from sklearn.base import is_classifier

    task = "classification" if is_classifier(pipeline) else "regression"
    schema = validation.RequestSchema.build(
        inputs,
        schema_doc,
        signature,
        allow_missing=_takes_missing(pipeline),
        max_rows=max_rows,
    )
    check_rows = None
    if CHECK_DATA_FILE in files:
        import pandas as pd

        check_rows = pd.read_parquet(
            io.BytesIO(artifacts.read_listed(directory, CHECK_DATA_FILE, files))
        )
    else:
        notes.append(f"no {CHECK_DATA_FILE} in this version: the fast path cannot be checked")
    target = str((schema_doc or {}).get("target", ""))
    buckets = tuple(prediction_buckets) or _buckets(schema, target, task)
    for note in notes:
        log.warning("%s", note)
    return LoadedModel(
        pipeline=pipeline,
        directory=os.fspath(directory),
        manifest_sha256=manifest_sha256,
        inputs=inputs,
        task=task,
        schema=schema,
        check_rows=check_rows,
        target=target,
        prediction_buckets=buckets,
        notes=notes,
    )


def _signature_types(conf: dict) -> dict[str, str]:
    import json

    raw = (conf.get("signature") or {}).get("inputs")
    if not raw:
        return {}
    return {c["name"]: c.get("type", "") for c in json.loads(raw) if "name" in c}


def _takes_missing(pipeline) -> bool:
    """Whether the estimator takes missing values (HistGradientBoosting does; linear models do not)."""
    estimator = pipeline.steps[-1][1] if hasattr(pipeline, "steps") else pipeline
    return type(estimator).__name__.startswith("HistGradientBoosting")


def _buckets(schema: validation.RequestSchema, target: str, task: str) -> tuple[float, ...]:
    """The prediction histogram's bucket edges: equal bins over the target's schema range, the
    same for every version of a model (so a canary's histogram compares with the champion's)."""
    if task != "regression":
        return ()
    col = schema.columns.get(target)
    if col is not None and col.min is not None and col.max is not None and col.max > col.min:
        return tuple(float(v) for v in np.linspace(col.min, col.max, PREDICTION_BINS + 1))
    return tuple(float(v) for v in (0.0, 1.0, 10.0, 100.0, 1000.0, 10000.0))
