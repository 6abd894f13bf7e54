"""Hashing artifacts, and the one loader for pickled (joblib) artifacts: verified first.

Unpickling runs code chosen by whoever wrote the file, so a pickled artifact is loaded
only through :func:`load_pickle`, which

1. reads the file's bytes (from a path, ``file://`` or an ``s3://`` / ``minio://`` URI)
   once, into memory, so that what is hashed is what is unpickled;
2. compares their sha256 with the one its producer recorded in the artifact's metadata,
   and refuses a missing record or a mismatch (:class:`IntegrityError`, naming the
   artifact, the expected and the actual hash), before anything is unpickled;
3. applies the scikit-learn version policy: the version the producer recorded must be
   the running one. scikit-learn supports unpickling only in the version that pickled
   (``InconsistentVersionWarning`` otherwise), and a transformer or model that unpickles
   under another version may predict differently without failing. ``refuse`` (the
   default, and what every Loopline component uses) raises :class:`VersionMismatchError`;
   ``warn`` logs a warning and loads (for a person inspecting an old artifact by hand);
4. only then unpickles with joblib.

Side files that are not pickles (a feature spec beside its transformer) are read with
:func:`read_verified`, by the same rule. Only the standard library at the top: the TFDV
image (no scikit-learn, no kfp) imports this module too.

An MLflow model directory (what the registry stores: ``MLmodel``, ``model.skops``, the
environment files, the input example, the bundled code) is covered by a **manifest**: every
file's sha256, written beside them as ``loopline_manifest.json`` (canonical JSON), whose own
sha256 is the one number the registry records (``manifest_sha256``). :func:`load_mlflow_model`
checks the manifest against that number and every file against the manifest (a changed,
missing or extra file, or a symlink, is refused naming the file) before anything is parsed or
deserialized; then it loads the skops file with this module's reviewed list of trusted
types (:data:`SKOPS_TRUSTED_TYPES`), never with the list the model's own ``MLmodel`` names.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import tempfile
from urllib.parse import urlparse

from components.lib import storage

log = logging.getLogger("loopline.artifacts")

VERSION_POLICIES = ("refuse", "warn")
MANIFEST_FILE = "loopline_manifest.json"
MANIFEST_FORMAT = "loopline-manifest-1"
# The types outside skops' own trusted set that a Loopline model holds, each reviewed: our
# transform's encoder (components/lib/features.py: numbers in, numbers out, no I/O) and
# HistGradientBoosting's tree predictor (numpy arrays of nodes). Found with
# ``skops.io.get_untrusted_types`` on every task x model type the library trains
# (regression / classification x gradient_boosting / linear; the rest of scikit-learn's
# Pipeline, ColumnTransformer, OneHotEncoder, scalers, losses and numpy dtypes are trusted by
# skops 0.16 itself). A model that needs another type is refused when it is registered.
SKOPS_TRUSTED_TYPES = (
    "components.lib.features.CyclicalEncoder",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
)
_SHA256 = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 20


class ArtifactError(ValueError):
    """An artifact that must not be loaded; the message names it and the reason."""


class IntegrityError(ArtifactError):
    """The artifact's bytes do not match the sha256 its producer recorded (or none was recorded)."""


class VersionMismatchError(ArtifactError):
    """The artifact was pickled by another scikit-learn version than the one running."""


def sha256_file(path: str | os.PathLike) -> str:
    """The sha256 of a file's bytes, read in chunks (hex)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_bytes(
    uri: str, s3_endpoint: str = "", s3_secure: bool = False, what: str = "uri"
) -> bytes:
    """The bytes at a path, ``file://`` URI, or ``s3://`` / ``minio://`` object (one file)."""
    if storage.is_remote(uri):
        with tempfile.TemporaryDirectory() as tmp:
            local = storage.fetch(
                uri, os.path.join(tmp, "object"), s3_endpoint, s3_secure, what=what
            )
            with open(local, "rb") as fh:
                return fh.read()
    parsed = urlparse(uri)
    path = parsed.path if parsed.scheme == "file" else uri
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise ArtifactError(f"{what} {uri!r} cannot be read: {exc}") from exc


def child_uri(location: str, name: str) -> str:
    """``name`` inside the folder ``location`` (a path, ``file://`` or ``s3://`` / ``minio://`` URI)."""
    if storage.is_remote(location) or location.startswith("file://"):
        return f"{location.rstrip('/')}/{name}"
    return os.path.join(location, name)


def check_sha256(data: bytes, expected: str, name: str, where: str) -> None:
    """Refuses ``data`` unless its sha256 is ``expected`` (a recorded, well-formed hash)."""
    expected = (expected or "").strip().lower()
    if not _SHA256.fullmatch(expected):
        raise IntegrityError(
            f"{name} at {where}: no valid recorded sha256 to verify it against (got {expected!r}); "
            "refusing to load it unverified (re-run the step that produced it)"
        )
    actual = sha256_bytes(data)
    if actual != expected:
        raise IntegrityError(
            f"{name} at {where} does not match the sha256 its producer recorded: "
            f"expected {expected}, actual {actual}; refusing to load it"
        )


def check_sklearn_version(recorded: str, name: str, policy: str = "refuse") -> None:
    """Applies the scikit-learn version policy (see the module docstring) to one artifact."""
    if policy not in VERSION_POLICIES:
        raise ValueError(f"policy {policy!r} is not one of {', '.join(VERSION_POLICIES)}")
    import sklearn

    running = sklearn.__version__
    if recorded == running:
        return
    message = (
        f"{name} was pickled with scikit-learn {recorded or '(not recorded)'}, "
        f"this is scikit-learn {running}"
    )
    if policy == "refuse":
        raise VersionMismatchError(
            f"{message}; refusing to load it (re-run the step that produced it with this "
            "image, or load it with the version that made it)"
        )
    log.warning("%s; loading it anyway (policy 'warn'): predictions may differ", message)


def read_verified(
    uri: str, sha256: str, name: str, *, s3_endpoint: str = "", s3_secure: bool = False
) -> bytes:
    """The bytes at ``uri``, once their sha256 is the recorded ``sha256``."""
    data = read_bytes(uri, s3_endpoint, s3_secure, what=name)
    check_sha256(data, sha256, name, uri)
    return data


def load_pickle(
    uri: str,
    sha256: str,
    name: str,
    *,
    sklearn_version: str,
    policy: str = "refuse",
    s3_endpoint: str = "",
    s3_secure: bool = False,
):
    """Verifies, then unpickles, the joblib file at ``uri`` (path, ``file://`` or ``s3://``).

    Args:
        uri: Where the file is.
        sha256: The sha256 its producer recorded (the artifact metadata's ``sha256``).
        name: What the messages call it (``transformer``, ``model``).
        sklearn_version: The scikit-learn version its producer recorded.
        policy: ``refuse`` or ``warn`` for a scikit-learn version that is not the running one.
        s3_endpoint: ``host:port`` of the S3 API for ``s3://`` URIs.
        s3_secure: Reach the endpoint over TLS.

    Raises:
        IntegrityError: No recorded hash, or the bytes do not match it (nothing unpickled).
        VersionMismatchError: Under ``refuse``, another scikit-learn version (nothing unpickled).
        ArtifactError: The file cannot be read.
    """
    data = read_verified(uri, sha256, name, s3_endpoint=s3_endpoint, s3_secure=s3_secure)
    check_sklearn_version(sklearn_version, name, policy)
    import joblib

    return joblib.load(io.BytesIO(data))


# --------------------------------------------------------------------------- MLflow model directories


def manifest(directory: str | os.PathLike) -> dict[str, str]:
    """Every file under ``directory`` (relative POSIX path) -> its sha256, the manifest file
    itself left out. A symlink is refused (:class:`IntegrityError`): it could point anywhere."""
    root = os.fspath(directory)
    if not os.path.isdir(root):
        raise ArtifactError(f"model directory {root!r} does not exist")
    files: dict[str, str] = {}
    for current, dirs, names in os.walk(root, followlinks=False):
        for name in sorted(dirs + names):
            path = os.path.join(current, name)
            rel = os.path.relpath(path, root).replace(os.sep, "/")
            if os.path.islink(path):
                raise IntegrityError(f"model directory {root!r}: {rel} is a symlink; refusing it")
        for name in names:
            path = os.path.join(current, name)
            rel = os.path.relpath(path, root).replace(os.sep, "/")
            if rel != MANIFEST_FILE:
                files[rel] = sha256_file(path)
    return dict(sorted(files.items()))


def manifest_bytes(files: dict[str, str]) -> bytes:
    """The canonical bytes of a manifest (what ``manifest_sha256`` is the sha256 of)."""
    import json

    body = {"format": MANIFEST_FORMAT, "files": dict(sorted(files.items()))}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def write_manifest(directory: str | os.PathLike) -> str:
    """Writes ``loopline_manifest.json`` over every file in ``directory``; returns its sha256."""
    data = manifest_bytes(manifest(directory))
    with open(os.path.join(directory, MANIFEST_FILE), "wb") as fh:
        fh.write(data)
    return sha256_bytes(data)


def verify_mlflow_model(
    directory: str | os.PathLike, expected_manifest_sha256: str
) -> dict[str, str]:
    """Checks an MLflow model directory against its recorded manifest sha256; reads, parses
    and deserializes nothing else. Returns the manifest (relative path -> sha256).

    Raises:
        IntegrityError: no valid recorded sha256; the manifest is missing or is not the
            recorded one; a file differs from the manifest, is missing, is not listed in it,
            or is a symlink. The message names the file.
    """
    import json

    root = os.fspath(directory)
    where = os.path.join(root, MANIFEST_FILE)
    try:
        with open(where, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise IntegrityError(
            f"MLflow model at {root}: no readable manifest {MANIFEST_FILE} ({exc}); refusing to load it"
        ) from exc
    check_sha256(data, expected_manifest_sha256, f"MLflow model manifest {MANIFEST_FILE}", root)
    listed = json.loads(data)
    if listed.get("format") != MANIFEST_FORMAT or not isinstance(listed.get("files"), dict):
        raise IntegrityError(f"MLflow model at {root}: {MANIFEST_FILE} is not a {MANIFEST_FORMAT}")
    expected: dict[str, str] = listed["files"]
    actual = manifest(root)
    for rel, digest in expected.items():
        if rel not in actual:
            raise IntegrityError(
                f"MLflow model at {root}: file {rel} is listed in the manifest but missing; "
                "refusing to load it"
            )
        if actual[rel] != digest:
            raise IntegrityError(
                f"MLflow model at {root}: file {rel} does not match the manifest: expected "
                f"{digest}, actual {actual[rel]}; refusing to load it"
            )
    extra = sorted(set(actual) - set(expected))
    if extra:
        raise IntegrityError(
            f"MLflow model at {root}: file {extra[0]} is not in the manifest"
            + (f" (and {len(extra) - 1} more)" if len(extra) > 1 else "")
            + "; refusing to load it"
        )
    return expected


def read_listed(root: str, rel: str, files: dict[str, str]) -> bytes:
    """The bytes of a manifest-listed file, read once and checked against the manifest."""
    if rel not in files:
        raise IntegrityError(f"MLflow model at {root}: {rel} is not in the manifest")
    path = os.path.join(root, *rel.split("/"))
    with open(path, "rb") as fh:
        data = fh.read()
    if sha256_bytes(data) != files[rel]:
        raise IntegrityError(
            f"MLflow model at {root}: file {rel} changed after it was verified; refusing to load it"
        )
    return data


def load_mlflow_model(
    directory: str | os.PathLike, expected_manifest_sha256: str, *, policy: str = "refuse"
):
    """Verifies, then loads, the scikit-learn model of an MLflow model directory.

    1. :func:`verify_mlflow_model`: the manifest is the recorded one and every file matches
       it (nothing parsed or deserialized before);
    2. ``MLmodel`` (its bytes as verified) must name the sklearn flavor in the ``skops``
       format (a pickle or cloudpickle model is refused) and trust no type beyond
       :data:`SKOPS_TRUSTED_TYPES`;
    3. the scikit-learn version policy (as for :func:`load_pickle`);
    4. ``skops.io.loads`` of the model file's verified bytes, trusting exactly
       :data:`SKOPS_TRUSTED_TYPES`.

    Args:
        directory: A local MLflow model directory (``Registry.download`` makes one).
        expected_manifest_sha256: The ``manifest_sha256`` the registry recorded.
        policy: ``refuse`` or ``warn`` for another scikit-learn version.

    Raises:
        IntegrityError: See :func:`verify_mlflow_model`; or the model is not a skops-format
            sklearn model, or trusts other types (nothing deserialized).
        VersionMismatchError: Under ``refuse``, another scikit-learn version.
    """
    import yaml

    root = os.fspath(directory)
    files = verify_mlflow_model(root, expected_manifest_sha256)
    conf = yaml.safe_load(read_listed(root, "MLmodel", files)) or {}
    flavor = (conf.get("flavors") or {}).get("sklearn") or {}
    if flavor.get("serialization_format") != "skops":
        raise IntegrityError(
            f"MLflow model at {root}: serialization format "
            f"{flavor.get('serialization_format')!r} is not 'skops'; refusing to unpickle it"
        )
    extra = sorted(set(flavor.get("skops_trusted_types") or ()) - set(SKOPS_TRUSTED_TYPES))
    if extra:
        raise IntegrityError(
            f"MLflow model at {root}: MLmodel trusts types that were not reviewed: "
            f"{', '.join(extra)}; refusing to load it"
        )
    check_sklearn_version(str(flavor.get("sklearn_version", "")), "model", policy)
    rel = str(flavor.get("pickled_model", ""))
    if not rel or rel.startswith("/") or ".." in rel.split("/"):
        raise IntegrityError(f"MLflow model at {root}: model file {rel!r} is not inside it")
    data = read_listed(root, rel, files)
    import skops.io

    return skops.io.loads(data, trusted=list(SKOPS_TRUSTED_TYPES))
