"""The cleanup policy (components/lib/cleanup.py) against the real S3 endpoint of the tests
(moto's server) and the real MLflow tracking server (``mlflow_server`` in tests/fixtures.py).

The store stamps every object with the real time, so the tests that expect a deletion judge
at ``LATER`` (the real time plus 40 days) with a 30-day retention; the captured hours and
label days are placed relative to that. A test at the real time checks that nothing written
within the retention is ever deleted, whatever its partition says.
"""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from components.lib import capture_layout as layout
from components.lib import cleanup
from components.lib.registry import Registry

pytestmark = pytest.mark.mlflow

NOW = datetime.now(UTC).replace(microsecond=0)
LATER = NOW + timedelta(days=40)
RETENTION = 30


def _put(client, bucket: str, key: str, data: bytes = b"x") -> None:
    client.put_object(bucket, key, io.BytesIO(data), len(data))


def _keys(client, bucket: str) -> set[str]:
    return {o.object_name for o in client.list_objects(bucket, recursive=True)}


@pytest.fixture
def bucket(s3_client) -> str:
    name = f"cleanup-{uuid.uuid4().hex[:10]}"
    s3_client.make_bucket(name)
    return name


@pytest.fixture(scope="module")
def trained(tmp_path_factory, bikeshare_csv):
    from tests.fitted import registrable_model

    return registrable_model(tmp_path_factory.mktemp("trained"), bikeshare_csv)


@pytest.fixture(scope="module")
def model(tracking_uri, trained) -> tuple[str, dict[str, object]]:
    """A model with a version in each disposition: 1 archived first, 2 archived last (the
    rollback target), 3 the champion, 4 rejected, 5 a canary."""
    name = f"cleanup-{uuid.uuid4().hex[:6]}"
    registry = Registry(tracking_uri, actor="pytest")
    model_dir, lineage, example = trained
    walks = (
        ("staging", "production"),
        ("staging", "canary", "production"),
        ("staging", "canary", "production"),
        ("rejected",),
        ("staging", "canary"),
    )
    for states in walks:
        v = registry.register(name, model_dir, lineage, "s3://stats/x", example).version
        for state in states:
            registry.transition(name, v, state, reason=f"test: to {state}")
    versions = {v.version: v for v in registry.versions(name)}
    assert [versions[k].state for k in sorted(versions)] == [
        "archived",
        "archived",
        "production",
        "rejected",
        "canary",
    ]
    return name, versions


@pytest.fixture
def copies(s3_client, bucket, model, tracking_uri) -> dict[str, str]:
    """Push's copies of every version (1 to 3 with the serving URI tag, 4 and 5 found by
    their manifest sha256 alone), an orphan, a model the registry does not know, a stray file.
    Returns label -> folder URI."""
    name, versions = model
    registry = Registry(tracking_uri, actor="pytest")
    out = {}
    for number, version in versions.items():
        uri = f"s3://{bucket}/models/{name}/{version.manifest_sha256}/"
        for file in ("MLmodel", "model.skops", "loopline_manifest.json"):
            _put(s3_client, bucket, f"models/{name}/{version.manifest_sha256}/{file}")
        if number in ("1", "2", "3"):
            registry.set_serving_uri(name, number, uri)
        out[f"v{number}"] = uri
    orphan = "f" * 64
    _put(s3_client, bucket, f"models/{name}/{orphan}/MLmodel")
    out["orphan"] = f"s3://{bucket}/models/{name}/{orphan}/"
    _put(s3_client, bucket, f"models/not-registered/{'e' * 64}/MLmodel")
    out["unknown"] = f"s3://{bucket}/models/not-registered/{'e' * 64}/"
    _put(s3_client, bucket, "models/stray.txt")
    return out


def _by_uri(plan: cleanup.Plan) -> dict[str, cleanup.Item]:
    return {i.uri: i for i in plan.items}


# --------------------------------------------------------------------------- captured traffic


def _capture(s3_client, bucket: str) -> dict[str, str]:
    """Hours and label days before and after LATER's cutoff (LATER - 30 days = NOW + 10 d)."""
    old_hour = layout.floor_hour(NOW - timedelta(days=3))
    new_hour = layout.floor_hour(NOW + timedelta(days=12))
    out = {
        "old_hour": layout.hour_partition("predictions", "bikes", old_hour),
        "new_hour": layout.hour_partition("predictions", "bikes", new_hour),
        "old_labels": layout.labels_partition(
            "predictions/labels", "bikes", NOW - timedelta(days=3)
        ),
        "new_labels": layout.labels_partition(
            "predictions/labels", "bikes", NOW + timedelta(days=12)
        ),
    }
    for folder in out.values():
        for part in ("part-a.parquet", "part-b.parquet"):
            _put(s3_client, bucket, folder + part, b"parquet")
    _put(s3_client, bucket, "predictions/notes.txt")  # outside the layout
    _put(s3_client, bucket, "elsewhere/model=bikes/hour=2000-01-01T00/part.parquet")
    return {k: f"s3://{bucket}/{v}" for k, v in out.items()}


def test_captured_hours_and_label_days_past_retention_are_planned_and_deleted(
    s3_client, s3_server, bucket
):
    folders = _capture(s3_client, bucket)
    capture_uri = f"s3://{bucket}/predictions"
    plan = cleanup.plan(
        s3_client, s3_server, capture_uri=capture_uri, retention_days=RETENTION, now=LATER
    )
    items = _by_uri(plan)
    assert {u for u, i in items.items() if i.action == "delete"} == {
        folders["old_hour"],
        folders["old_labels"],
    }
    assert items[folders["old_hour"]].kind == "capture"
    assert items[folders["old_hour"]].objects == 2 and items[folders["old_hour"]].size == 14
    assert "past the 30-day retention" in items[folders["old_hour"]].reason
    assert items[folders["old_labels"]].kind == "labels"
    assert items[folders["new_hour"]].action == "keep"
    assert "within retention" in items[folders["new_hour"]].reason
    [other] = [i for i in plan.items if i.kind == "other"]
    assert other.action == "keep" and other.objects == 1
    before = _keys(s3_client, bucket)
    assert _keys(s3_client, bucket) == before  # a plan deletes nothing

    done = cleanup.apply(
        s3_client, s3_server, capture_uri=capture_uri, retention_days=RETENTION, now=LATER
    )
    gone = {
        k
        for k in before
        if any(f"s3://{bucket}/{k}".startswith(folders[x]) for x in ("old_hour", "old_labels"))
    }
    assert len(gone) == 4 and sorted(done.deleted) == sorted(gone)
    assert _keys(s3_client, bucket) == before - gone
    # Outside the capture prefix and outside the layout: untouched.
    assert {"predictions/notes.txt", "elsewhere/model=bikes/hour=2000-01-01T00/part.parquet"} <= (
        _keys(s3_client, bucket)
    )


def test_nothing_written_within_retention_is_deleted_whatever_its_partition(
    s3_client, s3_server, bucket
):
    """An hour of 2011 written today (a backfill): its partition is long past retention, its
    objects are not."""
    folder = layout.hour_partition("predictions", "bikes", datetime(2011, 7, 2, tzinfo=UTC))
    _put(s3_client, bucket, folder + "part.parquet")
    plan = cleanup.plan(
        s3_client, s3_server, capture_uri=f"s3://{bucket}/predictions", retention_days=RETENTION
    )
    [item] = plan.items
    assert item.action == "keep" and "an object was written 0.0 days ago" in item.reason
    assert (
        cleanup.apply(
            s3_client, s3_server, capture_uri=f"s3://{bucket}/predictions", retention_days=RETENTION
        ).deleted
        == []
    )
    assert _keys(s3_client, bucket) == {folder + "part.parquet"}


def test_bad_input_is_refused_naming_it(s3_client, s3_server, bucket):
    with pytest.raises(cleanup.CleanupError, match="retention_days -1"):
        cleanup.plan(s3_client, s3_server, capture_uri=f"s3://{bucket}/p", retention_days=-1)
    with pytest.raises(cleanup.CleanupError, match="capture_uri 'gs://x/p': s3://bucket/prefix"):
        cleanup.plan(s3_client, s3_server, capture_uri="gs://x/p")
    with pytest.raises(cleanup.CleanupError, match="bucket 'no-such-bucket-x' does not exist"):
        cleanup.plan(s3_client, s3_server, capture_uri="s3://no-such-bucket-x/p")
    with pytest.raises(cleanup.CleanupError, match="models_uri needs the registry"):
        cleanup.plan(s3_client, s3_server, models_uri=f"s3://{bucket}/models")
    with pytest.raises(cleanup.CleanupError, match="nothing to clean"):
        cleanup.plan(s3_client, s3_server)


# --------------------------------------------------------------------------- model copies


def test_model_copies_of_versions_that_no_longer_serve_are_deleted_never_the_champions(
    s3_client, s3_server, bucket, model, copies, tracking_uri
):
    registry = Registry(tracking_uri, actor="pytest")
    models_uri = f"s3://{bucket}/models"
    kwargs = dict(models_uri=models_uri, registry=registry, retention_days=RETENTION, now=LATER)
    plan = cleanup.plan(s3_client, s3_server, **kwargs)
    items = _by_uri(plan)
    actions = {label: items[uri].action for label, uri in copies.items()}
    assert actions == {
        "v1": "delete",  # archived first, past retention
        "v2": "keep",  # the most recently archived: a rollback target
        "v3": "keep",  # the champion
        "v4": "delete",  # rejected (found by its manifest sha256: it has no serving URI tag)
        "v5": "keep",  # a canary
        "orphan": "delete",  # no version of the model has this manifest
        "unknown": "keep",  # a model the registry does not know
    }
    assert "version 3 is the champion" in items[copies["v3"]].reason
    assert "version 5 is in use (canary)" in items[copies["v5"]].reason
    assert "version 2 is one of the 1 most recently archived" in items[copies["v2"]].reason
    assert "versions 1 (archived)" in items[copies["v1"]].reason
    assert "past the 30-day retention" in items[copies["v1"]].reason
    assert "not in the registry" in items[copies["unknown"]].reason
    assert items[copies["v1"]].objects == 3
    [other] = [i for i in plan.items if i.kind == "other"]
    assert other.objects == 1 and other.action == "keep"

    # Keeping no rollback target: version 2's copy goes too; the champion's never.
    no_targets = _by_uri(cleanup.plan(s3_client, s3_server, keep_archived=0, **kwargs))
    assert no_targets[copies["v2"]].action == "delete"
    assert no_targets[copies["v3"]].action == "keep"
    # An InferenceService that still names version 1's copy keeps it.
    served = _by_uri(cleanup.plan(s3_client, s3_server, serving_uris=[copies["v1"]], **kwargs))
    assert served[copies["v1"]].action == "keep"
    assert "InferenceService" in served[copies["v1"]].reason
    # At the real time everything is within retention.
    today = cleanup.plan(s3_client, s3_server, **{**kwargs, "now": None})
    assert today.to_delete() == []

    before = _keys(s3_client, bucket)
    done = cleanup.apply(s3_client, s3_server, **kwargs)
    after = _keys(s3_client, bucket)
    removed = before - after
    assert removed == set(done.deleted)
    assert {f"s3://{bucket}/{k}".rsplit("/", 1)[0] + "/" for k in removed} == {
        copies["v1"],
        copies["v4"],
        copies["orphan"],
    }
    for label in ("v2", "v3", "v5", "unknown"):
        assert any(f"s3://{bucket}/{k}".startswith(copies[label]) for k in after), label
    assert "models/stray.txt" in after
    # Applying again finds nothing more to delete.
    assert cleanup.apply(s3_client, s3_server, **kwargs).deleted == []


def test_an_unreachable_registry_deletes_nothing(s3_client, s3_server, bucket, copies, monkeypatch):
    from tests.hung import HungServer, outcome_within

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    before = _keys(s3_client, bucket)
    with HungServer() as hung:
        error = outcome_within(
            lambda: cleanup.apply(
                s3_client,
                s3_server,
                models_uri=f"s3://{bucket}/models",
                registry=Registry(hung.url),
                retention_days=RETENTION,
                now=LATER,
            )
        )
    assert error is not None and f"port={hung.port}" in str(error)
    assert _keys(s3_client, bucket) == before
