"""The shared feature transform: encoders, the verified loader of a saved transformer, pickle paths."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from components.lib import artifacts, features
from components.transform import executor as transform_exec
from tests.tamper import plant_trap, refusal_pattern

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def saved(bikeshare_csv, tmp_path_factory):
    """A transformer folder as the transform step writes it, and the metadata it records."""
    folder = tmp_path_factory.mktemp("transformer")
    spec = transform_exec.load_spec("bikeshare")
    frame = pd.read_csv(bikeshare_csv).iloc[:2000]
    meta = transform_exec.save(transform_exec.fit(spec, frame), spec, str(folder))
    return folder, meta, frame


def test_cyclical_encoding_puts_the_ends_of_the_cycle_together():
    enc = features.CyclicalEncoder(period=24).fit(np.array([[0], [23]]))
    a, b, c = enc.transform(np.array([[0], [23], [12]]))
    assert np.linalg.norm(a - b) < 0.3 < np.linalg.norm(a - c)
    months = features.CyclicalEncoder(period=12, order=["Jan", "Feb", "Dec"]).fit(
        np.array([["Jan"]])
    )
    with pytest.raises(ValueError, match="outside its order: Smarch"):
        months.transform(np.array([["Smarch"]]))


def test_pickled_transformer_names_its_classes_at_the_shared_path(saved):
    """A saved transformer must unpickle without the transform component: classes by lib path."""
    folder, _, _ = saved
    data = (folder / features.TRANSFORMER_FILE).read_bytes()
    assert b"components.lib.features" in data and b"CyclicalEncoder" in data
    named = {m.decode() for m in re.findall(rb"components(?:\.[A-Za-z_]+)+", data)}
    assert named == {"components.lib.features"}
    assert features.CyclicalEncoder.__module__ == "components.lib.features"


def test_load_fitted_verifies_both_files(saved):
    folder, meta, frame = saved
    transformer, spec = features.load_fitted(str(folder), meta)
    assert spec == json.loads((folder / features.SPEC_FILE).read_text())
    out = transformer.transform(frame[list(spec["features"])])
    assert out.shape == (len(frame), len(meta["features_out"]))
    assert meta["spec_sha256"] == artifacts.sha256_file(folder / features.SPEC_FILE)


def test_tampered_spec_is_refused(saved, tmp_path, no_unpickling):
    folder, meta, _ = saved
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in (features.TRANSFORMER_FILE, features.SPEC_FILE):
        (copy / name).write_bytes((folder / name).read_bytes())
    spec = json.loads((copy / features.SPEC_FILE).read_text())
    spec["target"] = "registered"
    (copy / features.SPEC_FILE).write_text(json.dumps(spec))
    with pytest.raises(
        artifacts.IntegrityError, match=refusal_pattern("transformer spec", meta["spec_sha256"])
    ):
        features.load_fitted(str(copy), meta)


@pytest.mark.parametrize("missing", ["sha256", "spec_sha256"])
def test_a_record_without_a_hash_is_refused(missing, saved, no_unpickling):
    folder, meta, _ = saved
    record = {k: v for k, v in meta.items() if k != missing}
    with pytest.raises(artifacts.IntegrityError, match="no valid recorded sha256"):
        features.load_fitted(str(folder), record)


def test_tampered_transformer_is_refused_before_unpickling(saved, tmp_path, no_unpickling):
    folder, meta, _ = saved
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / features.SPEC_FILE).write_bytes((folder / features.SPEC_FILE).read_bytes())
    marker = plant_trap(copy / features.TRANSFORMER_FILE, tmp_path / "unpickled")
    with pytest.raises(
        artifacts.IntegrityError, match=refusal_pattern("transformer", meta["sha256"])
    ):
        features.load_fitted(str(copy), meta)
    assert not marker.exists()


def test_transformer_of_another_sklearn_version_is_refused(saved, no_unpickling):
    folder, meta, _ = saved
    with pytest.raises(artifacts.VersionMismatchError, match="scikit-learn 1.0.0"):
        features.load_fitted(str(folder), {**meta, "sklearn_version": "1.0.0"})
