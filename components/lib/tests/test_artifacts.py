"""The verified loader: hash before unpickling, the scikit-learn version policy, paths and s3:// URIs."""

from __future__ import annotations

import io
import logging

import joblib
import pytest
import sklearn

from components.lib import artifacts
from tests.tamper import plant_trap, refusal_pattern

pytestmark = pytest.mark.unit


@pytest.fixture
def pickled(tmp_path):
    path = tmp_path / "thing.joblib"
    joblib.dump({"answer": 42}, path)
    return path, artifacts.sha256_file(path)


def test_sha256_file_is_the_sha256_of_the_bytes(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"x" * 3_000_000)  # more than one read chunk
    assert artifacts.sha256_file(path) == artifacts.sha256_bytes(b"x" * 3_000_000)


def test_loads_a_matching_artifact(pickled):
    path, sha = pickled
    loaded = artifacts.load_pickle(str(path), sha, "thing", sklearn_version=sklearn.__version__)
    assert loaded == {"answer": 42}
    assert artifacts.load_pickle(
        f"file://{path}", sha.upper(), "thing", sklearn_version=sklearn.__version__
    ) == {"answer": 42}


def test_the_trap_is_live_when_the_hash_is_trusted(tmp_path):
    """Control for the tests below: unpickling the trap does leave the marker."""
    trap = tmp_path / "trap.joblib"
    marker = plant_trap(trap, tmp_path / "unpickled")
    artifacts.load_pickle(
        str(trap), artifacts.sha256_file(trap), "trap", sklearn_version=sklearn.__version__
    )
    assert marker.exists()


def test_tampered_artifact_is_refused_before_unpickling(pickled, tmp_path, no_unpickling):
    path, sha = pickled
    marker = plant_trap(path, tmp_path / "unpickled")
    with pytest.raises(artifacts.IntegrityError, match=refusal_pattern("transformer", sha)):
        artifacts.load_pickle(str(path), sha, "transformer", sklearn_version=sklearn.__version__)
    assert not marker.exists()


@pytest.mark.parametrize("recorded", ["", "  ", "abc123", "g" * 64, None])
def test_missing_or_malformed_record_is_refused(recorded, pickled, no_unpickling):
    path, _ = pickled
    with pytest.raises(artifacts.IntegrityError, match="no valid recorded sha256.*unverified"):
        artifacts.load_pickle(str(path), recorded, "model", sklearn_version=sklearn.__version__)


def test_other_sklearn_version_is_refused_by_default(pickled, no_unpickling):
    path, sha = pickled
    with pytest.raises(
        artifacts.VersionMismatchError,
        match=rf"model was pickled with scikit-learn 0\.0\.1, this is scikit-learn {sklearn.__version__}; refusing",
    ):
        artifacts.load_pickle(str(path), sha, "model", sklearn_version="0.0.1")
    with pytest.raises(artifacts.VersionMismatchError, match=r"\(not recorded\)"):
        artifacts.load_pickle(str(path), sha, "model", sklearn_version="")


def test_warn_policy_loads_another_version_with_a_warning(pickled, caplog):
    path, sha = pickled
    with caplog.at_level(logging.WARNING, logger="loopline.artifacts"):
        loaded = artifacts.load_pickle(
            str(path), sha, "model", sklearn_version="0.0.1", policy="warn"
        )
    assert loaded == {"answer": 42}
    assert "scikit-learn 0.0.1" in caplog.text and "policy 'warn'" in caplog.text
    with pytest.raises(ValueError, match="policy 'ignore' is not one of refuse, warn"):
        artifacts.load_pickle(str(path), sha, "model", sklearn_version="0.0.1", policy="ignore")


def test_hash_is_checked_before_the_version(pickled, tmp_path, no_unpickling):
    path, sha = pickled
    plant_trap(path, tmp_path / "unpickled")
    with pytest.raises(artifacts.IntegrityError):
        artifacts.load_pickle(str(path), sha, "model", sklearn_version="0.0.1")


def test_missing_file_is_named(tmp_path):
    with pytest.raises(artifacts.ArtifactError, match=r"model '.*nope.joblib' cannot be read"):
        artifacts.load_pickle(
            str(tmp_path / "nope.joblib"), "0" * 64, "model", sklearn_version=sklearn.__version__
        )


def test_verifies_an_object_in_the_object_store(pickled, tmp_path, s3_server, s3_client):
    path, sha = pickled
    s3_client.make_bucket("artifacts-verify")
    data = path.read_bytes()
    s3_client.put_object("artifacts-verify", "run/thing.joblib", io.BytesIO(data), len(data))
    uri = "s3://artifacts-verify/run/thing.joblib"
    loaded = artifacts.load_pickle(
        uri, sha, "thing", sklearn_version=sklearn.__version__, s3_endpoint=s3_server
    )
    assert loaded == {"answer": 42}
    marker = plant_trap(tmp_path / "trap", tmp_path / "unpickled")
    trapped = (tmp_path / "trap").read_bytes()
    s3_client.put_object("artifacts-verify", "run/thing.joblib", io.BytesIO(trapped), len(trapped))
    with pytest.raises(artifacts.IntegrityError, match=refusal_pattern("thing", sha)):
        artifacts.load_pickle(
            uri, sha, "thing", sklearn_version=sklearn.__version__, s3_endpoint=s3_server
        )
    assert not marker.exists()


def test_read_verified_refuses_a_changed_side_file(tmp_path):
    spec = tmp_path / "spec.json"
    spec.write_text('{"task": "regression"}')
    sha = artifacts.sha256_file(spec)
    assert artifacts.read_verified(str(spec), sha, "spec") == b'{"task": "regression"}'
    spec.write_text('{"task": "classification"}')
    with pytest.raises(artifacts.IntegrityError, match=refusal_pattern("spec", sha)):
        artifacts.read_verified(str(spec), sha, "spec")
