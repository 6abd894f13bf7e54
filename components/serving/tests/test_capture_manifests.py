"""The capture bucket's governance files (manifests/serving/*.json) against a real S3 API.

The lifecycle JSON must be a lifecycle an S3 endpoint accepts and returns unchanged; the
IAM-style policies must parse, be accepted by an IAM API (moto's validator) and cover
exactly the object names the capture writes.
"""

from __future__ import annotations

import fnmatch
import json
import time
import uuid
from pathlib import Path

import pytest

from components.serving.capture import Capture

pytestmark = pytest.mark.unit

SERVING = Path(__file__).resolve().parents[3] / "manifests" / "serving"
BUCKET, PREFIX = "loopline-capture", "predictions/"


def load(name: str) -> dict:
    return json.loads((SERVING / name).read_text())


def lifecycle_config(document: dict):
    """The S3 lifecycle JSON (`mc ilm import` / `mc ilm export` format) as minio's model;
    refuses any field this parser does not understand, so nothing is silently ignored."""
    from minio.commonconfig import Filter
    from minio.lifecycleconfig import Expiration, LifecycleConfig, Rule

    assert set(document) == {"Rules"}
    rules = []
    for rule in document["Rules"]:
        assert set(rule) <= {"ID", "Status", "Filter", "Expiration"}, rule
        assert set(rule["Filter"]) == {"Prefix"} and set(rule["Expiration"]) == {"Days"}
        rules.append(
            Rule(
                rule["Status"],
                rule_filter=Filter(prefix=rule["Filter"]["Prefix"]),
                rule_id=rule["ID"],
                expiration=Expiration(days=int(rule["Expiration"]["Days"])),
            )
        )
    return LifecycleConfig(rules)


def test_the_lifecycle_is_accepted_by_an_s3_endpoint_and_reads_back(s3_client):
    document = load("capture-lifecycle.json")
    [rule] = document["Rules"]
    assert rule["Status"] == "Enabled"
    assert rule["Filter"]["Prefix"] == PREFIX
    assert 1 <= rule["Expiration"]["Days"] <= 90
    bucket = f"lifecycle-{uuid.uuid4().hex[:12]}"
    s3_client.make_bucket(bucket)
    s3_client.set_bucket_lifecycle(bucket, lifecycle_config(document))
    [back] = s3_client.get_bucket_lifecycle(bucket).rules
    assert back.rule_id == rule["ID"]
    assert back.status == "Enabled"
    assert back.rule_filter.prefix == PREFIX
    assert back.expiration.days == rule["Expiration"]["Days"]


def test_a_malformed_lifecycle_is_refused():
    with pytest.raises(AssertionError):
        lifecycle_config({"Rules": [{"ID": "x", "Status": "Enabled", "Prefix": "p/"}]})


def statements(name: str) -> list[dict]:
    document = load(name)
    assert document["Version"] == "2012-10-17"
    for statement in document["Statement"]:
        assert statement["Effect"] == "Allow"
        assert "Principal" not in statement  # identity policies, attached to MinIO users
        assert not any("*" in action for action in statement["Action"]), statement
    return document["Statement"]


def allowed(name: str, action: str, resource: str) -> bool:
    return any(
        action in s["Action"] and any(fnmatch.fnmatchcase(resource, r) for r in s["Resource"])
        for s in statements(name)
    )


def test_the_policies_give_the_writer_put_only_and_the_reader_read_only():
    objects = f"arn:aws:s3:::{BUCKET}/{PREFIX}model=bikes/hour=2024-05-01T12/part-x.parquet"
    elsewhere = f"arn:aws:s3:::{BUCKET}/other/part-x.parquet"
    other_bucket = f"arn:aws:s3:::mlpipeline/{PREFIX}part-x.parquet"
    assert allowed("capture-writer-policy.json", "s3:PutObject", objects)
    assert not allowed("capture-writer-policy.json", "s3:PutObject", elsewhere)
    assert not allowed("capture-writer-policy.json", "s3:PutObject", other_bucket)
    assert not allowed("capture-writer-policy.json", "s3:GetObject", objects)
    assert not allowed("capture-writer-policy.json", "s3:DeleteObject", objects)
    assert allowed("capture-reader-policy.json", "s3:GetObject", objects)
    assert not allowed("capture-reader-policy.json", "s3:GetObject", elsewhere)
    assert not allowed("capture-reader-policy.json", "s3:PutObject", objects)
    [listing] = [
        s for s in statements("capture-reader-policy.json") if "s3:ListBucket" in s["Action"]
    ]
    assert listing["Resource"] == [f"arn:aws:s3:::{BUCKET}"]
    assert listing["Condition"] == {"StringLike": {"s3:prefix": [f"{PREFIX}*"]}}


@pytest.mark.parametrize("name", ["capture-writer-policy.json", "capture-reader-policy.json"])
def test_an_iam_api_accepts_the_policies(s3_store, name):
    import boto3

    iam = boto3.client(
        "iam",
        endpoint_url=f"http://{s3_store.endpoint}",
        region_name="us-east-1",
        aws_access_key_id="loopline-test",
        aws_secret_access_key="loopline-test-secret",
    )
    created = iam.create_policy(
        PolicyName=f"p-{uuid.uuid4().hex[:8]}", PolicyDocument=(SERVING / name).read_text()
    )
    assert created["Policy"]["Arn"]
    with pytest.raises(iam.exceptions.MalformedPolicyDocumentException):
        iam.create_policy(PolicyName="bad", PolicyDocument='{"Version": "2012-10-17"}')


def test_what_the_capture_writes_is_what_the_policies_and_the_lifecycle_cover(s3_store, s3_client):
    # The capture URI a server would use, s3://loopline-capture/predictions, on a test bucket
    # of that name: every object it puts is writable by the serving account, readable by
    # the monitoring account, and expires.
    if not s3_client.bucket_exists(BUCKET):
        s3_client.make_bucket(BUCKET)
    capture = Capture(
        uri=f"s3://{BUCKET}/{PREFIX.rstrip('/')}",
        endpoint=s3_store.endpoint,
        model_name=f"m{uuid.uuid4().hex[:6]}",
        model_version="1",
    )
    capture.record({"x": [1.0, 2.0]}, [1.0, 2.0], ["a", "b"], time.time(), [1.3e9, None])
    assert capture.flush(timeout=10)
    names = [
        o.object_name
        for o in s3_client.list_objects(
            BUCKET, prefix=f"{PREFIX}model={capture.model_name}/", recursive=True
        )
    ]
    assert len(names) == 2
    [rule] = load("capture-lifecycle.json")["Rules"]
    for name in names:
        assert name.startswith(rule["Filter"]["Prefix"])
        assert allowed(
            "capture-writer-policy.json", "s3:PutObject", f"arn:aws:s3:::{BUCKET}/{name}"
        )
        assert allowed(
            "capture-reader-policy.json", "s3:GetObject", f"arn:aws:s3:::{BUCKET}/{name}"
        )
