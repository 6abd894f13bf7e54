"""The verified loader for MLflow model directories (components/lib/artifacts.py): a manifest
of every file, checked before anything is parsed or deserialized; skops with the reviewed
trusted types only; pickled MLflow models refused. No server: models saved locally."""

from __future__ import annotations

import json
import os
import warnings

import numpy as np
import pandas as pd
import pytest
import sklearn
import yaml
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import Ridge
from sklearn.pipeline import Pipeline

from components.lib import artifacts
from components.lib.features import CyclicalEncoder
from tests.tamper import plant_trap

pytestmark = pytest.mark.unit


def _model() -> tuple[Pipeline, pd.DataFrame]:
    rng = np.random.default_rng(0)
    x = pd.DataFrame({"hr": rng.integers(0, 24, 200), "temp": rng.random(200)})
    model = Pipeline(
        [
            (
                "transform",
                ColumnTransformer(
                    [("hr", CyclicalEncoder(period=24), ["hr"]), ("temp", "passthrough", ["temp"])]
                ),
            ),
            ("model", Ridge()),
        ]
    ).fit(x, x["temp"] * 3 + x["hr"])
    return model, x.head(3)


def _save(path, serialization_format: str = "skops") -> str:
    import mlflow.sklearn

    model, example = _model()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mlflow.sklearn.save_model(
            model,
            str(path),
            serialization_format=serialization_format,
            skops_trusted_types=list(artifacts.SKOPS_TRUSTED_TYPES),
            input_example=example,
            pip_requirements=["scikit-learn"],
        )
    return artifacts.write_manifest(path)


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "model"
    return path, _save(path)


@pytest.fixture
def no_skops(monkeypatch):
    """skops refuses to deserialize: a refusal must come before it is called."""
    import skops.io

    def refuse(*args, **kwargs):
        raise AssertionError("skops deserialized a file that was not verified")

    monkeypatch.setattr(skops.io, "loads", refuse)
    monkeypatch.setattr(skops.io, "load", refuse)


def test_a_verified_model_loads_and_predicts(saved):
    path, sha = saved
    files = artifacts.verify_mlflow_model(path, sha)
    assert {"MLmodel", "model.skops", "input_example.json"} <= set(files)
    assert artifacts.MANIFEST_FILE not in files
    model, example = _model()
    loaded = artifacts.load_mlflow_model(path, sha.upper())
    np.testing.assert_allclose(loaded.predict(example), model.predict(example))


def test_the_manifest_sha256_is_over_canonical_bytes(saved):
    path, sha = saved
    data = (path / artifacts.MANIFEST_FILE).read_bytes()
    assert artifacts.sha256_bytes(data) == sha
    body = json.loads(data)
    assert body["format"] == artifacts.MANIFEST_FORMAT
    assert data == json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    assert artifacts.write_manifest(path) == sha  # the same files, the same number


def _append(path, rel):
    with open(path / rel, "ab") as fh:
        fh.write(b"\n# tampered\n")


@pytest.mark.parametrize(
    "tamper, named",
    [
        (lambda p: _append(p, "model.skops"), r"file model\.skops does not match the manifest"),
        (lambda p: _append(p, "MLmodel"), r"file MLmodel does not match the manifest"),
        (
            lambda p: (p / "code.py").write_text("import os"),
            r"file code\.py is not in the manifest",
        ),
        (
            lambda p: os.remove(p / "input_example.json"),
            r"file input_example\.json is listed in the manifest but missing",
        ),
        (
            lambda p: (os.remove(p / "conda.yaml"), os.symlink("/etc/passwd", p / "conda.yaml")),
            r"conda\.yaml is a symlink",
        ),
        (  # the files and a manifest rewritten to match them: not the recorded manifest
            lambda p: (_append(p, "model.skops"), artifacts.write_manifest(p)),
            r"manifest loopline_manifest\.json at .* does not match the sha256",
        ),
        (lambda p: os.remove(p / artifacts.MANIFEST_FILE), r"no readable manifest"),
    ],
    ids=[
        "model-file",
        "mlmodel",
        "extra-file",
        "missing-file",
        "symlink",
        "manifest",
        "no-manifest",
    ],
)
def test_a_tampered_directory_is_refused_naming_the_file_before_deserializing(
    saved, tamper, named, no_skops
):
    path, sha = saved
    tamper(path)
    with pytest.raises(artifacts.IntegrityError, match=named):
        artifacts.load_mlflow_model(path, sha)


@pytest.mark.parametrize("recorded", ["", "abc", None])
def test_no_valid_recorded_sha256_is_refused(saved, recorded, no_skops):
    path, _ = saved
    with pytest.raises(artifacts.IntegrityError, match="no valid recorded sha256"):
        artifacts.load_mlflow_model(path, recorded)


def test_a_pickled_mlflow_model_is_refused_without_unpickling(tmp_path, no_unpickling):
    path = tmp_path / "model"
    _save(path, serialization_format="pickle")
    conf = yaml.safe_load((path / "MLmodel").read_text())
    marker = plant_trap(path / conf["flavors"]["sklearn"]["pickled_model"], tmp_path / "ran")
    sha = artifacts.write_manifest(path)  # a consistent manifest: the format is what is refused
    with pytest.raises(artifacts.IntegrityError, match="is not 'skops'; refusing to unpickle"):
        artifacts.load_mlflow_model(path, sha)
    assert not marker.exists()


def _edit_mlmodel(path, edit) -> str:
    conf = yaml.safe_load((path / "MLmodel").read_text())
    edit(conf["flavors"]["sklearn"])
    (path / "MLmodel").write_text(yaml.safe_dump(conf))
    return artifacts.write_manifest(path)


def test_types_beyond_the_reviewed_list_are_refused(saved, no_skops):
    path, _ = saved
    sha = _edit_mlmodel(path, lambda f: f["skops_trusted_types"].append("builtins.eval"))
    with pytest.raises(artifacts.IntegrityError, match="not reviewed: builtins.eval"):
        artifacts.load_mlflow_model(path, sha)


def test_another_sklearn_version_is_refused(saved, no_skops):
    path, _ = saved
    sha = _edit_mlmodel(path, lambda f: f.update(sklearn_version="0.24.2"))
    with pytest.raises(artifacts.VersionMismatchError, match="scikit-learn 0.24.2"):
        artifacts.load_mlflow_model(path, sha)
    assert sklearn.__version__ != "0.24.2"


def test_a_model_file_outside_the_directory_is_refused(saved, no_skops):
    path, _ = saved
    sha = _edit_mlmodel(path, lambda f: f.update(pickled_model="../model.skops"))
    with pytest.raises(artifacts.IntegrityError, match="is not inside it"):
        artifacts.load_mlflow_model(path, sha)
