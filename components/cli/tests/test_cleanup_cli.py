"""``loopline cleanup`` in-process (``main(argv)``) against the session's real S3 endpoint
(moto's server) and real MLflow tracking server; the InferenceServices of ``-n`` from the
faked Kubernetes API (tests/fake_kserve.py) put into the rollout group's client factory.

``--retention-days 0`` makes everything written before the command ran old enough, so the
tests need no clock of their own.
"""

from __future__ import annotations

import io
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from components.cli import main as cli_main
from components.cli import rollout as cli_rollout
from components.cli.tests.invoke import run
from components.lib import capture_layout as layout
from components.lib.deployment import ModelRef
from components.lib.inferenceservice import KServeDeployment
from components.lib.registry import Registry
from tests.fake_kserve import FakeKServe

NS = "team-a"


def _keys(client, bucket: str) -> set[str]:
    return {o.object_name for o in client.list_objects(bucket, recursive=True)}


def _put(client, bucket: str, key: str) -> None:
    client.put_object(bucket, key, io.BytesIO(b"x"), 1)


@pytest.mark.unit
def test_help_states_the_policy_and_the_dry_run_default(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli_main.main(["cleanup", "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for needle in (
        "--capture-uri S3_URI",
        "--models-uri S3_URI",
        "--retention-days DAYS",
        "--keep-archived N",
        "--dry-run",
        "--apply",
        "Without --apply nothing is deleted",
        "Never a copy of the champion",
        "LOOPLINE_S3_*",
    ):
        assert needle in text, needle
    with pytest.raises(SystemExit) as exit_:
        cli_main.main(["cleanup", "--dry-run", "--apply", "--capture-uri", "s3://b/p"])
    assert exit_.value.code == 2
    capsys.readouterr()
    code, out, err = run(capsys, "cleanup", "--s3-endpoint", "127.0.0.1:9")
    assert code == 1 and err.strip() == (
        "loopline: error: nothing to clean: pass --capture-uri, --models-uri, or both"
    )


@pytest.fixture
def world(s3_client, s3_server, tracking_uri, bikeshare_csv, tmp_path):
    """A bucket with a capture (an hour two days ago, the current hour) and the copies of a
    model whose version 1 was archived when version 2 became the champion."""
    from tests.fitted import registrable_model

    bucket = f"cleanup-cli-{uuid.uuid4().hex[:8]}"
    s3_client.make_bucket(bucket)
    now = datetime.now(UTC)
    old = layout.hour_partition("capture", "bikes", now - timedelta(days=2))
    current = layout.hour_partition("capture", "bikes", now)
    for folder in (old, current):
        _put(s3_client, bucket, folder + "part-0.parquet")

    name = f"cleanup-cli-{uuid.uuid4().hex[:6]}"
    registry = Registry(tracking_uri, actor="pytest")
    model_dir, lineage, example = registrable_model(tmp_path / "m", bikeshare_csv)
    uris = {}
    for states in (("staging", "production"), ("staging", "canary", "production")):
        v = registry.register(name, model_dir, lineage, "s3://stats/x", example)
        for state in states:
            registry.transition(name, v.version, state, reason=f"test: to {state}")
        uris[v.version] = f"s3://{bucket}/models/{name}/{v.manifest_sha256}/"
        _put(s3_client, bucket, f"models/{name}/{v.manifest_sha256}/loopline_manifest.json")
    common = [
        "--s3-endpoint",
        s3_server,
        "--insecure",
        "--tracking-uri",
        tracking_uri,
        "--capture-uri",
        f"s3://{bucket}/capture",
        "--models-uri",
        f"s3://{bucket}/models",
        "--retention-days",
        "0",
        "--keep-archived",
        "0",
    ]
    return {
        "bucket": bucket,
        "name": name,
        "old": f"s3://{bucket}/{old}",
        "current": f"s3://{bucket}/{current}",
        "uris": uris,
        "args": common,
    }


@pytest.mark.mlflow
def test_a_dry_run_by_default_then_apply_deletes_only_what_it_listed(capsys, s3_client, world):
    bucket, uris = world["bucket"], world["uris"]
    before = _keys(s3_client, bucket)
    capsys.readouterr()  # what registering printed

    code, out, err = run(capsys, "cleanup", *world["args"])
    assert code == 0 and "loopline:" not in err
    rows = [line.split() for line in out.splitlines()[1:-1]]
    assert {(r[0], r[1], r[2]) for r in rows} == {
        ("delete", "capture", world["old"]),
        ("delete", "model_copy", uris["1"]),
    }
    assert out.splitlines()[-1].startswith("dry run: would delete 2 objects in 2 folders")
    assert "Pass --apply to delete." in out
    assert _keys(s3_client, bucket) == before

    code, out, _ = run(capsys, "cleanup", *world["args"], "--all", "--json")
    plan = json.loads(out)
    assert code == 0 and plan["applied"] is False and plan["retention_days"] == 0
    by_uri = {i["uri"]: i for i in plan["items"]}
    assert by_uri[uris["2"]]["action"] == "keep"
    assert "version 2 is the champion" in by_uri[uris["2"]]["reason"]
    assert by_uri[world["current"]]["action"] == "keep"
    assert by_uri[world["current"]]["reason"] == "the hour has not ended yet"

    code, out, err = run(capsys, "cleanup", *world["args"], "--apply")
    assert code == 0 and "loopline:" not in err
    assert out.splitlines()[-1].startswith("deleted 2 objects of 2 folders")
    after = _keys(s3_client, bucket)
    assert before - after == {
        world["old"].split(f"s3://{bucket}/", 1)[1] + "part-0.parquet",
        uris["1"].split(f"s3://{bucket}/", 1)[1] + "loopline_manifest.json",
    }


@pytest.mark.mlflow
def test_a_copy_an_inferenceservice_names_is_kept(capsys, s3_client, world, monkeypatch):
    """Version 1 is archived in the registry, but an InferenceService of the namespace still
    names its copy (a registry that lags the serving side): -n keeps it."""
    api = FakeKServe()
    monkeypatch.setattr(cli_rollout, "API_FACTORY", lambda args: api)
    uri = world["uris"]["1"]
    sha = uri.rstrip("/").rsplit("/", 1)[1]
    KServeDeployment(api, world["name"], NS, "knative").deploy(
        ModelRef(world["name"], "1", uri, sha)
    )
    before = _keys(s3_client, world["bucket"])
    capsys.readouterr()  # what registering printed
    code, out, _ = run(capsys, "cleanup", *world["args"], "-n", NS, "--all", "--apply")
    assert code == 0
    [row] = [line for line in out.splitlines() if uri in line]
    assert row.startswith("keep") and "an InferenceService's storageUri names it" in row
    removed = before - _keys(s3_client, world["bucket"])
    assert removed == {world["old"].split(f"s3://{world['bucket']}/", 1)[1] + "part-0.parquet"}
