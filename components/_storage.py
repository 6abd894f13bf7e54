"""Reading objects from an S3 API endpoint (MinIO on a Kubeflow cluster) with the MinIO client.

Credentials come from ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` at call time (the
pipeline mounts them from a Kubernetes Secret); nothing is read at import time.
"""

from __future__ import annotations

import os
from urllib.parse import urlparse

REMOTE_SCHEMES = ("s3", "minio")


class StorageError(ValueError):
    """An object that cannot be read; the message names the URI and the cause."""


def is_remote(uri: str) -> bool:
    return urlparse(uri).scheme in REMOTE_SCHEMES


def _client(uri: str, endpoint: str, secure: bool):
    from minio import Minio

    if not endpoint:
        raise StorageError(f"source_uri {uri!r} is on s3 but s3_endpoint is empty")
    access_key = os.environ.get("AWS_ACCESS_KEY_ID", "")
    secret_key = os.environ.get("AWS_SECRET_ACCESS_KEY", "")
    if not access_key or not secret_key:
        raise StorageError(
            f"source_uri {uri!r}: no S3 credentials; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
            "(on a cluster the pipeline takes them from the Secret named by s3_credentials_secret)"
        )
    return Minio(
        endpoint.split("://", 1)[-1], access_key=access_key, secret_key=secret_key, secure=secure
    )


def _bucket_key(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    bucket, key = parsed.netloc, parsed.path.lstrip("/")
    if not bucket or not key:
        raise StorageError(
            f"source_uri {uri!r}: an s3 URI needs a bucket and a key (s3://bucket/key)"
        )
    return bucket, key


def fetch(uri: str, dest: str, endpoint: str, secure: bool = False) -> str:
    """Downloads the object, or every object under the prefix, at ``uri`` to ``dest``; returns ``dest``."""
    from minio.error import S3Error

    bucket, key = _bucket_key(uri)
    client = _client(uri, endpoint, secure)
    host = endpoint.split("://", 1)[-1]
    try:
        objects = [
            o.object_name
            for o in client.list_objects(bucket, prefix=key.rstrip("/") + "/", recursive=True)
        ]
        if objects:  # a folder artifact
            for name in objects:
                client.fget_object(
                    bucket, name, os.path.join(dest, os.path.relpath(name, key.rstrip("/")))
                )
        else:
            client.fget_object(bucket, key, dest)
    except S3Error as exc:
        if exc.code in ("NoSuchKey", "NoSuchBucket"):
            raise StorageError(f"source_uri {uri!r} not found on {host}: {exc.code}") from exc
        raise StorageError(
            f"source_uri {uri!r}: cannot read from {host}: {exc.code}: {exc.message}"
        ) from exc
    return dest
