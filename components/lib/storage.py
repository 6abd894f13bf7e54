"""Reading objects from an S3 API endpoint (MinIO on a Kubeflow cluster) with the MinIO client.

Credentials come from ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` at call time (the
pipeline and the Katib trial pods mount them from a Kubernetes Secret, with the keys of
:data:`S3_SECRET_KEYS`); nothing is read at import time, and the MinIO client is imported
only when an object is fetched (the tuner image has no MinIO client).

A fetch never writes outside its destination (an object name with ``..`` segments, or
one that would land on the destination itself, is refused) and stops at ``max_bytes``
(:data:`MAX_FETCH_BYTES` by default), counted on the bytes received, not on what the
listing claims.
"""

from __future__ import annotations

import os
from urllib.parse import urlparse

REMOTE_SCHEMES = ("s3", "minio")
# The keys of the Kubernetes Secret with the object-store credentials -> the environment
# variables the client reads. Kubeflow's own ``mlpipeline-minio-artifact`` Secret has these
# keys; any Secret with them works. The pipeline's tasks and Katib's trial pods use this map.
S3_SECRET_KEYS = {"accesskey": "AWS_ACCESS_KEY_ID", "secretkey": "AWS_SECRET_ACCESS_KEY"}
# At most this many bytes per fetch (every object of a folder together), unless the caller
# passes another ``max_bytes``.
MAX_FETCH_BYTES = 4 << 30
_CHUNK = 1 << 20


class StorageError(ValueError):
    """An object that cannot be read; the message names the URI and the cause."""


def is_remote(uri: str) -> bool:
    return urlparse(uri).scheme in REMOTE_SCHEMES


def _client(uri: str, endpoint: str, secure: bool, what: str):
    from minio import Minio

    # Imported here: registered models bundle this module (registry._BUNDLED_MODULES) with
    # only what it imports at the top.
    from components.lib import network

    if not endpoint:
        raise StorageError(f"{what} {uri!r} is on s3 but the S3 endpoint (s3_endpoint) is empty")
    access_env, secret_env = S3_SECRET_KEYS["accesskey"], S3_SECRET_KEYS["secretkey"]
    access_key = os.environ.get(access_env, "")
    secret_key = os.environ.get(secret_env, "")
    if not access_key or not secret_key:
        raise StorageError(
            f"{what} {uri!r}: no S3 credentials; set {access_env} and {secret_env} "
            "(on a cluster the pipeline takes them from the Secret named by s3_credentials_secret)"
        )
    return Minio(
        endpoint.split("://", 1)[-1],
        access_key=access_key,
        secret_key=secret_key,
        secure=secure,
        http_client=network.s3_http_client(secure),
    )


def _bucket_key(uri: str, what: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    bucket, key = parsed.netloc, parsed.path.lstrip("/")
    if not bucket or not key:
        raise StorageError(f"{what} {uri!r}: an s3 URI needs a bucket and a key (s3://bucket/key)")
    return bucket, key


def unreachable(endpoint: str, exc: Exception, what: str) -> StorageError:
    """A connection failure or timeout (urllib3's, after the client's retries) as a
    :class:`StorageError` naming the endpoint and the limits in force."""
    from components.lib import network

    reason = getattr(exc, "reason", None) or exc
    return StorageError(
        f"{what}: no answer from the S3 endpoint {endpoint.split('://', 1)[-1]} "
        f"({network.limits('s3').describe()}; LOOPLINE_S3_*): "
        f"{type(reason).__name__}: {' '.join(str(reason).split())[:300]}"
    )


def network_errors() -> tuple[type[BaseException], ...]:
    import urllib3

    return (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError)


def safe_join(dest: str, relative: str, uri: str = "", what: str = "uri") -> str:
    """``dest/relative`` for an object name below a prefix; refuses a name that leaves ``dest``.

    Object names are untrusted: ``a/../../etc/passwd`` or ``/etc/passwd`` must not become
    paths outside the destination folder, and a name that resolves to the folder itself
    (``.``, empty) names no file.
    """
    parts = relative.split("/")
    if relative.startswith("/") or ".." in parts:
        raise StorageError(
            f"{what} {uri!r}: object name {relative!r} would be written outside {dest!r}; refused"
        )
    parts = [p for p in parts if p not in ("", ".")]
    root = os.path.abspath(dest)
    target = os.path.abspath(os.path.join(root, *parts)) if parts else root
    if target == root or os.path.commonpath([root, target]) != root:
        raise StorageError(
            f"{what} {uri!r}: object name {relative!r} does not name a file inside {dest!r}; refused"
        )
    return target


def _download(client, bucket: str, name: str, path: str, budget: int, uri: str, what: str) -> int:
    """Streams one object to ``path``; stops once more than ``budget`` bytes arrive."""
    response = client.get_object(bucket, name)
    try:
        declared = response.headers.get("content-length")
        if declared is not None and int(declared) > budget:
            raise StorageError(_too_big(uri, what, int(declared), budget))
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        written = 0
        try:
            with open(path, "wb") as fh:
                for chunk in response.stream(_CHUNK):
                    written += len(chunk)
                    if written > budget:
                        raise StorageError(_too_big(uri, what, written, budget))
                    fh.write(chunk)
        except StorageError:
            os.remove(path)
            raise
        return written
    finally:
        response.close()
        response.release_conn()


def _too_big(uri: str, what: str, size: int, budget: int) -> str:
    return (
        f"{what} {uri!r} is larger than the fetch limit: {size} bytes (so far) > {budget} "
        "bytes left of max_bytes; refused"
    )


def fetch(
    uri: str,
    dest: str,
    endpoint: str,
    secure: bool = False,
    max_bytes: int = MAX_FETCH_BYTES,
    what: str = "uri",
) -> str:
    """Downloads the object, or every object under the prefix, at ``uri`` to ``dest``; returns ``dest``.

    Args:
        uri: ``s3://bucket/key`` or ``minio://bucket/key``: one object, or a folder artifact
            (every object under ``key/``, written below ``dest`` by its name after the prefix).
        dest: The file (one object) or folder (a prefix) to write.
        endpoint: ``host:port`` of the S3 API.
        secure: Reach the endpoint over TLS.
        max_bytes: The most bytes this fetch may write, all objects together.
        what: How messages name the URI (the parameter it came from, e.g. ``source_uri``).

    Raises:
        StorageError: Not found, no credentials, an object name that would leave ``dest``,
            more than ``max_bytes``, or any other S3 error; the message names ``uri``.
    """
    from minio.error import S3Error

    bucket, key = _bucket_key(uri, what)
    client = _client(uri, endpoint, secure, what)
    host = endpoint.split("://", 1)[-1]
    prefix = key.rstrip("/") + "/"
    try:
        listed = [
            o
            for o in client.list_objects(bucket, prefix=prefix, recursive=True)
            if not o.object_name.endswith("/")  # folder markers hold no data
        ]
        if listed:  # a folder artifact
            targets = [
                (o, safe_join(dest, o.object_name[len(prefix) :], uri, what)) for o in listed
            ]
            declared = sum(o.size or 0 for o in listed)
            if declared > max_bytes:
                raise StorageError(_too_big(uri, what, declared, max_bytes))
            budget = max_bytes
            for obj, path in targets:
                budget -= _download(client, bucket, obj.object_name, path, budget, uri, what)
        else:
            _download(client, bucket, key, dest, max_bytes, uri, what)
    except S3Error as exc:
        if exc.code in ("NoSuchKey", "NoSuchBucket"):
            raise StorageError(f"{what} {uri!r} not found on {host}: {exc.code}") from exc
        raise StorageError(
            f"{what} {uri!r}: cannot read from {host}: {exc.code}: {exc.message}"
        ) from exc
    except network_errors() as exc:
        raise unreachable(endpoint, exc, f"{what} {uri!r}") from exc
    return dest


def upload_folder(
    folder: str,
    uri: str,
    endpoint: str,
    secure: bool = False,
    *,
    last: str | None = None,
    what: str = "uri",
) -> list[str]:
    """Uploads every file under ``folder`` to the prefix ``uri``; returns the object names.

    ``last`` (a file name relative to ``folder``) is uploaded after every other file, so
    that its presence marks a complete copy (push puts the model's manifest last).

    Raises:
        StorageError: No credentials, a symlink in ``folder``, or any S3 error; the message
            names ``uri``.
    """
    from minio.error import S3Error

    bucket, key = _bucket_key(uri, what)
    client = _client(uri, endpoint, secure, what)
    prefix = key.rstrip("/") + "/"
    files = []
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        for name in sorted(names):
            path = os.path.join(root, name)
            if os.path.islink(path):
                raise StorageError(f"{what} {uri!r}: {path} is a symlink; refusing to upload it")
            files.append(os.path.relpath(path, folder).replace(os.sep, "/"))
    if last is not None:
        if last not in files:
            raise StorageError(f"{what} {uri!r}: {last} is not in {folder}")
        files = [f for f in files if f != last] + [last]
    try:
        for rel in files:
            client.fput_object(bucket, prefix + rel, os.path.join(folder, rel))
    except S3Error as exc:
        raise StorageError(
            f"{what} {uri!r}: cannot write to {endpoint}: {exc.code}: {exc.message}"
        ) from exc
    except network_errors() as exc:
        raise unreachable(endpoint, exc, f"{what} {uri!r}") from exc
    return [prefix + rel for rel in files]


def read_object(uri: str, endpoint: str, secure: bool = False, what: str = "uri") -> bytes | None:
    """The bytes of one object, or None when it (or its bucket) does not exist.

    Raises:
        StorageError: No credentials, or any other S3 error.
    """
    from minio.error import S3Error

    bucket, key = _bucket_key(uri, what)
    client = _client(uri, endpoint, secure, what)
    try:
        response = client.get_object(bucket, key)
    except S3Error as exc:
        if exc.code in ("NoSuchKey", "NoSuchBucket"):
            return None
        raise StorageError(f"{what} {uri!r}: cannot read from {endpoint}: {exc.code}") from exc
    except network_errors() as exc:
        raise unreachable(endpoint, exc, f"{what} {uri!r}") from exc
    try:
        return response.read()
    except network_errors() as exc:
        raise unreachable(endpoint, exc, f"{what} {uri!r}") from exc
    finally:
        response.close()
        response.release_conn()
