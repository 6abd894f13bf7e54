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
