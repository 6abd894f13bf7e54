"""Transform logic, called directly."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import sklearn

from components.lib import artifacts, features
from components.transform import executor

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def frames(bikeshare_csv):
    data = pd.read_csv(bikeshare_csv)
    cut = int(len(data) * 0.7)
    return data.iloc[:cut].reset_index(drop=True), data.iloc[cut:].reset_index(drop=True)


@pytest.fixture(scope="module")
def spec():
    return executor.load_spec("bikeshare")


def test_fitted_on_train_only(frames, spec):
    train, valid = frames
    fitted = executor.fit(spec, train)
    scaler = fitted.named_transformers_["temp"]
    assert scaler.mean_[0] == pytest.approx(train["temp"].mean())
    assert scaler.mean_[0] != pytest.approx(pd.concat([train, valid])["temp"].mean())
    out = fitted.transform(valid[list(spec["features"])])
    assert out.shape == (len(valid), len(fitted.get_feature_names_out()))
    assert np.isfinite(out).all()


def test_unseen_category_is_handled_not_fatal(frames, spec):
    train, valid = frames
    fitted = executor.fit(spec, train)
    row = valid.iloc[[0]].copy()
    row["weathersit"] = "volcanic ash"
    row["weekday"] = 9
    out = fitted.transform(row[list(spec["features"])])
    names = list(fitted.get_feature_names_out())
    weekday = [i for i, n in enumerate(names) if n.startswith("weekday__")]
    assert out[0, weekday].sum() == 0  # unknown=ignore: all zeros
    infrequent = names.index("weathersit__weathersit_infrequent_sklearn")
    assert out[0, infrequent] == 1  # unknown=infrequent: the rare bucket


def test_version_is_logic_not_data(tmp_path, frames, spec):
    train, valid = frames
    version = executor.spec_version(spec)
    assert version == executor.spec_version(copy.deepcopy(spec))
    changed = copy.deepcopy(spec)
    changed["features"]["temp"]["scale"] = "minmax"
    assert executor.spec_version(changed) != version
    # The same spec fitted on other data keeps its version; the fitted file itself differs.
    on_train = executor.save(executor.fit(spec, train), spec, str(tmp_path / "train"))
    on_valid = executor.save(executor.fit(spec, valid), spec, str(tmp_path / "valid"))
    assert on_train["transform_version"] == on_valid["transform_version"] == version
    assert on_train["sha256"] != on_valid["sha256"]


def test_save_load_round_trip(tmp_path, frames, spec):
    train, valid = frames
    fitted = executor.fit(spec, train)
    meta = executor.save(fitted, spec, str(tmp_path))
    loaded, loaded_spec = features.load_fitted(str(tmp_path), meta)
    x = valid[list(spec["features"])]
    np.testing.assert_array_equal(loaded.transform(x), fitted.transform(x))
    assert loaded_spec == spec and meta["transform_version"] == executor.spec_version(spec)
    assert meta["features_out"][:2] == ["temp__temp", "atemp__atemp"]
    # What the verified loader checks: both files' hashes and the scikit-learn version.
    assert meta["sha256"] == artifacts.sha256_file(tmp_path / features.TRANSFORMER_FILE)
    assert meta["spec_sha256"] == artifacts.sha256_file(tmp_path / features.SPEC_FILE)
    assert meta["sklearn_version"] == sklearn.__version__


BAD_SPECS = {
    "missing column": (
        {"features": {"pressure": {"kind": "numeric"}}},
        r"columns the data lacks: pressure",
    ),
    "unknown kind": (
        {"features": {"temp": {"kind": "embedding"}}},
        r"feature 'temp': kind 'embedding'",
    ),
    "bad scale": (
        {"features": {"temp": {"kind": "numeric", "scale": "log"}}},
        r"feature 'temp': scale 'log'",
    ),
    "cyclical without period": (
        {"features": {"hr": {"kind": "cyclical"}}},
        r"feature 'hr': a cyclical feature needs a period",
    ),
    "target as feature": (
        {"features": {"bikers": {"kind": "numeric"}}},
        r"uses the target 'bikers' as a feature",
    ),
    "unknown task": ({"task": "ranking"}, r"task 'ranking' is not one of"),
}


@pytest.mark.parametrize("case", list(BAD_SPECS), ids=list(BAD_SPECS))
def test_bad_spec_is_named_before_fitting(case, frames, spec):
    patch, message = BAD_SPECS[case]
    bad = {**copy.deepcopy(spec), **patch}
    with pytest.raises(features.TransformSpecError, match=message):
        features.validate_spec(bad)
        executor.fit(bad, frames[0])


def test_spec_reference_that_does_not_resolve_is_named():
    with pytest.raises(
        features.TransformSpecError, match="feature spec 'taxi' not found; bundled: bikeshare"
    ):
        executor.load_spec("taxi")
    with pytest.raises(features.TransformSpecError, match="is not valid JSON"):
        executor.load_spec('{"task": regression}')
