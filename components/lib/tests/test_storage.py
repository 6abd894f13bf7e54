"""Object-store fetch: folders and single objects, names that would leave the destination, the size cap."""

from __future__ import annotations

import io

import pytest

from components.lib import storage

pytestmark = pytest.mark.unit


def _boto3(endpoint: str):
    """A client that, unlike MinIO's, writes object names with ``..`` segments (as any S3 writer may)."""
    import os

    import boto3

    return boto3.client(
        "s3",
        endpoint_url=f"http://{endpoint}",
        aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
        region_name="us-east-1",
    )


def _put(client, bucket: str, name: str, data: bytes) -> None:
    client.put_object(bucket, name, io.BytesIO(data), len(data))


def test_fetches_a_folder_and_skips_folder_markers(s3_server, s3_client, tmp_path):
    s3_client.make_bucket("fetch-folder")
    _put(s3_client, "fetch-folder", "run/model/model.joblib", b"m" * 10)
    _put(s3_client, "fetch-folder", "run/model/sub/info.json", b"{}")
    _put(s3_client, "fetch-folder", "run/model/empty/", b"")
    _put(s3_client, "fetch-folder", "run/model-other/x", b"not mine")
    dest = tmp_path / "dest"
    storage.fetch("s3://fetch-folder/run/model", str(dest), s3_server)
    files = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert files == ["model.joblib", "sub/info.json"]
    one = tmp_path / "one"
    storage.fetch("minio://fetch-folder/run/model/model.joblib", str(one), s3_server)
    assert one.read_bytes() == b"m" * 10


@pytest.mark.parametrize(
    "name",
    ["run/t/../../escaped.txt", "run/t/a/../../../escaped.txt", "run/t/.."],
    ids=["dotdot", "nested-dotdot", "bare-dotdot"],
)
def test_object_names_that_leave_the_destination_are_refused(name, s3_server, tmp_path):
    writer = _boto3(s3_server)
    bucket = f"fetch-escape-{len(name)}"
    writer.create_bucket(Bucket=bucket)
    writer.put_object(Bucket=bucket, Key="run/t/ok.txt", Body=b"fine")
    writer.put_object(Bucket=bucket, Key=name, Body=b"escaped")
    dest = tmp_path / "a" / "b" / "dest"
    with pytest.raises(storage.StorageError, match=r"object name .* outside .*; refused"):
        storage.fetch(f"s3://{bucket}/run/t", str(dest), s3_server)
    assert not list(tmp_path.rglob("escaped.txt"))
    assert not dest.exists()  # refused before anything was downloaded


@pytest.mark.parametrize(
    "relative, refused",
    [
        ("model.joblib", False),
        ("sub/dir/file", False),
        ("a//b", False),
        ("./a", False),
        ("../x", True),
        ("a/../../x", True),
        ("a/..", True),
        ("/etc/passwd", True),
        ("", True),
        (".", True),
        ("//", True),
    ],
)
def test_safe_join(relative, refused, tmp_path):
    if refused:
        with pytest.raises(storage.StorageError, match="refused"):
            storage.safe_join(str(tmp_path), relative, "s3://b/k")
    else:
        joined = storage.safe_join(str(tmp_path), relative, "s3://b/k")
        assert joined.startswith(str(tmp_path) + "/")


def test_an_object_over_the_cap_is_refused(s3_server, s3_client, tmp_path):
    s3_client.make_bucket("fetch-cap")
    _put(s3_client, "fetch-cap", "big.csv", b"x" * 1000)
    dest = tmp_path / "big.csv"
    with pytest.raises(storage.StorageError, match=r"larger than the fetch limit: 1000 bytes"):
        storage.fetch("s3://fetch-cap/big.csv", str(dest), s3_server, max_bytes=999)
    assert not dest.exists()
    storage.fetch("s3://fetch-cap/big.csv", str(dest), s3_server, max_bytes=1000)
    assert dest.stat().st_size == 1000


def test_a_folder_over_the_cap_is_refused_before_downloading(s3_server, s3_client, tmp_path):
    s3_client.make_bucket("fetch-cap-folder")
    for i in range(3):
        _put(s3_client, "fetch-cap-folder", f"run/part-{i}", b"y" * 400)
    dest = tmp_path / "dest"
    with pytest.raises(storage.StorageError, match=r"1200 bytes"):
        storage.fetch("s3://fetch-cap-folder/run", str(dest), s3_server, max_bytes=1000)
    assert not dest.exists()


class _LyingResponse:
    """An object response without Content-Length that sends more than the listing said."""

    headers: dict = {}

    def __init__(self, chunks: int):
        self.chunks = chunks
        self.closed = False

    def stream(self, size):
        for _ in range(self.chunks):
            yield b"z" * 100

    def close(self):
        self.closed = True

    def release_conn(self):
        pass


def test_the_cap_counts_bytes_received_not_bytes_declared(tmp_path):
    response = _LyingResponse(chunks=5)

    class Client:
        def get_object(self, bucket, name):
            return response

    path = tmp_path / "out"
    with pytest.raises(storage.StorageError, match="larger than the fetch limit"):
        storage._download(Client(), "b", "k", str(path), 250, "s3://b/k", "uri")
    assert not path.exists() and response.closed  # no partial file left behind
    assert storage._download(Client(), "b", "k", str(path), 500, "s3://b/k", "uri") == 500


def test_missing_object_and_missing_credentials_are_named(s3_server, tmp_path, monkeypatch):
    with pytest.raises(storage.StorageError, match=r"--train 's3://nobucket/x' not found"):
        storage.fetch("s3://nobucket/x", str(tmp_path / "x"), s3_server, what="--train")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(storage.StorageError, match="no S3 credentials; set AWS_ACCESS_KEY_ID"):
        storage.fetch("s3://nobucket/x", str(tmp_path / "x"), s3_server)
