"""Cleanup of per-run leftovers in the object store, by one documented policy.

Two kinds of leftover, each a folder of objects (never a single object):

* **Captured traffic past retention** (``capture_layout``): a captured hour
  ``<capture prefix>/model=M/hour=YYYY-MM-DDTHH/`` whose hour ended more than
  ``retention_days`` ago, and a labels day ``<capture prefix>/labels/model=M/date=YYYY-MM-DD/``
  whose day ended more than ``retention_days`` ago. On S3 / MinIO with lifecycle support the
  bucket rule ``manifests/serving/capture-lifecycle.json`` (30 days) does the same; this is for
  stores without it, and for a shorter retention.
* **Model copies of versions that no longer serve**: push copies a version to
  ``<models prefix>/<model>/<manifest sha256>/`` (content-addressed: versions with the same
  manifest share one copy). A copy is deleted only when every version that points at it (by
  its manifest sha256 or its ``loopline.serving_uri`` tag) is ``archived`` (a former
  champion, replaced by a newer one), ``rejected`` or ``rolled_back``, it is not among the
  ``keep_archived`` most recently archived versions (the rollback targets: ``archived ->
  production`` is the registry's rollback), and it entered that state more than
  ``retention_days`` ago; or when no version of the model points at it at all (a copy left
  by a version deleted from MLflow). A copy is **always kept** when a version pointing at
  it is the champion (``production``), ``canary``, ``staging`` or ``candidate``, when an
  InferenceService's ``storageUri`` names it (``serving_uris``), when its model is not in
  the registry (a wrong tracking URI must not empty the bucket), and when the registry
  cannot say (an error is raised, nothing is deleted).

Everything: nothing is deleted when any of its objects was written within
``retention_days`` (by the store's last-modified time), whatever its partition or state says.
Objects outside these layouts are never deleted (the plan counts them).

:func:`plan` lists every folder with ``delete`` or ``keep`` and why; :func:`apply` plans
again and deletes only what both plans agree on, re-listing each folder right before its
delete (so an object written since is kept, with its folder).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta

from components.lib import capture_layout as layout
from components.lib import storage

log = logging.getLogger("loopline.cleanup")

DEFAULT_RETENTION_DAYS = 30  # the capture bucket's lifecycle rule has the same
DEFAULT_KEEP_ARCHIVED = 1
# A version in one of these may serve again only through a new push (rejected and rolled_back
# are final; archived returns to production only as a rollback).
DISPOSABLE_STATES = ("archived", "rejected", "rolled_back")
KINDS = ("capture", "labels", "model_copy")


class CleanupError(ValueError):
    """Bad input to a cleanup, or a store or registry that cannot say; nothing was deleted."""


@dataclass(frozen=True)
class Item:
    """One folder and what the policy does with it."""

    kind: str  # capture | labels | model_copy | other
    uri: str  # s3://bucket/prefix/ (a folder)
    action: str  # delete | keep
    reason: str
    objects: int = 0
    size: int = 0  # bytes
    newest: datetime | None = None  # the newest object's last-modified time (UTC)

    def as_dict(self) -> dict:
        out = asdict(self)
        out["newest"] = self.newest.isoformat() if self.newest else None
        return out


@dataclass
class Plan:
    now: datetime
    retention_days: float
    items: list[Item] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)  # object names deleted by apply

    @property
    def cutoff(self) -> datetime:
        return self.now - timedelta(days=self.retention_days)

    def to_delete(self) -> list[Item]:
        return [i for i in self.items if i.action == "delete"]

    def as_dict(self) -> dict:
        return {
            "now": self.now.isoformat(),
            "retention_days": self.retention_days,
            "items": [i.as_dict() for i in self.items],
            "deleted_objects": len(self.deleted),
        }


@dataclass
class _Folder:
    keys: list[str] = field(default_factory=list)
    size: int = 0
    newest: datetime | None = None

    def add(self, obj) -> None:
        self.keys.append(obj.object_name)
        self.size += obj.size or 0
        when = obj.last_modified
        if when is not None:
            when = layout.utc(when)
            self.newest = when if self.newest is None else max(self.newest, when)


def _days(delta: timedelta) -> str:
    return f"{delta.total_seconds() / 86400:.1f} days"


def _check(retention_days: float, keep_archived: int) -> None:
    if not retention_days >= 0:  # also refuses NaN
        raise CleanupError(f"retention_days {retention_days}: must be a number >= 0")
    if keep_archived < 0:
        raise CleanupError(f"keep_archived {keep_archived}: must be >= 0")


def _split(uri: str, what: str) -> tuple[str, str]:
    from urllib.parse import urlparse

    parsed = urlparse(uri)
    if parsed.scheme not in storage.REMOTE_SCHEMES or not parsed.netloc:
        raise CleanupError(f"{what} {uri!r}: s3://bucket/prefix expected")
    return parsed.netloc, parsed.path.strip("/")


def _list(client, bucket: str, prefix: str, endpoint: str, what: str) -> list:
    from minio.error import S3Error

    try:
        return list(
            client.list_objects(bucket, prefix=prefix + "/" if prefix else "", recursive=True)
        )
    except S3Error as exc:
        if exc.code == "NoSuchBucket":
            raise CleanupError(f"{what}: bucket {bucket!r} does not exist on {endpoint}") from exc
        raise CleanupError(
            f"{what}: cannot list s3://{bucket}/{prefix}: {exc.code}: {exc.message}"
        ) from exc
    except storage.network_errors() as exc:
        raise CleanupError(str(storage.unreachable(endpoint, exc, what))) from exc


def _young(folder: _Folder, cutoff: datetime) -> bool:
    return folder.newest is not None and folder.newest > cutoff


def _item(kind: str, uri: str, action: str, reason: str, folder: _Folder) -> Item:
    return Item(kind, uri, action, reason, len(folder.keys), folder.size, folder.newest)


# --------------------------------------------------------------------------- captured traffic


def _capture_folder(rel: str) -> tuple[str, str, datetime] | None:
    """(kind, folder relative to the prefix, when the partition ends) of a capture or labels
    object's key relative to the capture prefix; None outside the layout."""
    parts = rel.split("/")
    if len(parts) == 3 and parts[0].startswith("model=") and parts[1].startswith("hour="):
        try:
            hour = layout.parse_hour(parts[1][len("hour=") :])
        except ValueError:
            return None
        return "capture", "/".join(parts[:2]), hour + timedelta(hours=1)
    if (
        len(parts) == 4
        and parts[0] == layout.LABELS_FOLDER
        and parts[1].startswith("model=")
        and parts[2].startswith("date=")
    ):
        try:
            day = datetime.strptime(parts[2][len("date=") :], layout.DATE_FORMAT)
        except ValueError:
            return None
        return "labels", "/".join(parts[:3]), layout.utc(day) + timedelta(days=1)
    return None


def plan_capture(
    client, capture_uri: str, endpoint: str, retention_days: float, now: datetime
) -> list[Item]:
    """The capture's hour partitions and label days under ``capture_uri``, each delete or keep."""
    bucket, prefix = _split(capture_uri, "capture_uri")
    cutoff = layout.utc(now) - timedelta(days=retention_days)
    folders: dict[tuple[str, str], _Folder] = defaultdict(_Folder)
    ends: dict[tuple[str, str], datetime] = {}
    other = _Folder()
    start = len(prefix) + 1 if prefix else 0
    for obj in _list(client, bucket, prefix, endpoint, f"capture_uri {capture_uri!r}"):
        found = _capture_folder(obj.object_name[start:])
        if found is None:
            other.add(obj)
            continue
        kind, rel, end = found
        folders[(kind, rel)].add(obj)
        ends[(kind, rel)] = end
    base = f"s3://{bucket}/{prefix + '/' if prefix else ''}"
    items = []
    for (kind, rel), folder in sorted(folders.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        end = ends[(kind, rel)]
        span = "hour" if kind == "capture" else "day"
        uri = f"{base}{rel}/"
        if end > layout.utc(now):
            reason = f"the {span} has not ended yet"
            items.append(_item(kind, uri, "keep", reason, folder))
        elif end > cutoff:
            reason = f"the {span} ended {_days(layout.utc(now) - end)} ago: within retention"
            items.append(_item(kind, uri, "keep", reason, folder))
        elif _young(folder, cutoff):
            reason = (
                f"an object was written {_days(layout.utc(now) - folder.newest)} ago: "
                "within retention"
            )
            items.append(_item(kind, uri, "keep", reason, folder))
        else:
            reason = (
                f"the {span} ended {_days(layout.utc(now) - end)} ago, past the "
                f"{retention_days:g}-day retention"
            )
            items.append(_item(kind, uri, "delete", reason, folder))
    if other.keys:
        items.append(
            _item(
                "other",
                base,
                "keep",
                f"{len(other.keys)} objects outside the capture layout: never deleted",
                other,
            )
        )
    return items


# --------------------------------------------------------------------------- model copies


def plan_model_copies(
    client,
    registry,
    models_uri: str,
    endpoint: str,
    retention_days: float,
    now: datetime,
    keep_archived: int = DEFAULT_KEEP_ARCHIVED,
    serving_uris: Iterable[str] = (),
) -> list[Item]:
    """Push's copies under ``models_uri`` (``s3://bucket/models``), each delete or keep.

    Raises:
        CleanupError: The store cannot be listed, or the registry cannot say which versions
            point at a copy (nothing is planned for deletion then).
    """
    from components.lib.registry import NotFound, RegistryError

    bucket, prefix = _split(models_uri, "models_uri")
    now = layout.utc(now)
    cutoff = now - timedelta(days=retention_days)
    serving = {u.rstrip("/") + "/" for u in serving_uris if u}
    base = f"s3://{bucket}/{prefix + '/' if prefix else ''}"
    copies: dict[str, dict[str, _Folder]] = defaultdict(lambda: defaultdict(_Folder))
    other = _Folder()
    start = len(prefix) + 1 if prefix else 0
    for obj in _list(client, bucket, prefix, endpoint, f"models_uri {models_uri!r}"):
        parts = obj.object_name[start:].split("/")
        if len(parts) < 3 or not parts[0] or not parts[1]:
            other.add(obj)
            continue
        copies[parts[0]][parts[1]].add(obj)

    items = []
    for model in sorted(copies):
        folders = copies[model]
        try:
            versions = registry.versions(model)
            transitions = registry.history(model)
        except NotFound:
            for sha, folder in sorted(folders.items()):
                reason = (
                    f"model {model!r} is not in the registry at {registry.tracking_uri}: kept "
                    "(is the tracking URI right?)"
                )
                items.append(_item("model_copy", f"{base}{model}/{sha}/", "keep", reason, folder))
            continue
        except RegistryError as exc:
            raise CleanupError(f"model {model!r}: the registry cannot say: {exc}") from exc
        since: dict[str, datetime] = {}  # version -> when it entered its current state
        for move in transitions:
            since[move.version] = layout.utc(move.time)
        archived_order = sorted(
            (v for v in versions if v.state == "archived"),
            key=lambda v: since.get(v.version, v.created),
            reverse=True,
        )
        rollback_targets = {v.version for v in archived_order[:keep_archived]}
        for sha, folder in sorted(folders.items()):
            uri = f"{base}{model}/{sha}/"
            refs = [
                v
                for v in versions
                if v.manifest_sha256 == sha
                or (v.serving_uri and v.serving_uri.rstrip("/") + "/" == uri)
            ]
            names = ", ".join(f"{v.version} ({v.state})" for v in refs)
            live = [v for v in refs if v.state not in DISPOSABLE_STATES]
            kept = [v for v in refs if v.version in rollback_targets]
            if uri in serving:
                action, reason = "keep", "an InferenceService's storageUri names it"
            elif live:
                v = live[0]
                what = "the champion" if v.state == "production" else f"in use ({v.state})"
                action, reason = "keep", f"version {v.version} is {what}; versions: {names}"
            elif kept:
                action, reason = (
                    "keep",
                    f"version {kept[0].version} is one of the {keep_archived} most recently "
                    "archived (a rollback target)",
                )
            elif _young(folder, cutoff):
                action = "keep"
                reason = f"an object was written {_days(now - folder.newest)} ago: within retention"
            elif refs:
                latest = max(since.get(v.version, v.created) for v in refs)
                if latest > cutoff:
                    action = "keep"
                    reason = f"versions {names}: the last left service {_days(now - latest)} ago, within retention"
                else:
                    action = "delete"
                    reason = (
                        f"versions {names}: none serves or may serve again; the last changed "
                        f"state {_days(now - latest)} ago, past the {retention_days:g}-day retention"
                    )
            else:
                action = "delete"
                reason = (
                    f"no version of {model!r} in the registry has manifest sha256 {sha} "
                    f"(written {_days(now - folder.newest) if folder.newest else '?'} ago)"
                )
            items.append(_item("model_copy", uri, action, reason, folder))
    if other.keys:
        reason = f"{len(other.keys)} objects outside <model>/<sha256>/: never deleted"
        items.append(_item("other", base, "keep", reason, other))
    return items


# --------------------------------------------------------------------------- plan and apply


def plan(
    client,
    endpoint: str,
    *,
    capture_uri: str = "",
    models_uri: str = "",
    registry=None,
    retention_days: float = DEFAULT_RETENTION_DAYS,
    keep_archived: int = DEFAULT_KEEP_ARCHIVED,
    serving_uris: Iterable[str] = (),
    now: datetime | None = None,
) -> Plan:
    """What the policy would delete and keep, and why; deletes nothing.

    Args:
        client: A MinIO client for ``endpoint`` (``storage`` makes one with the S3 limits).
        capture_uri: ``s3://bucket/prefix`` of the capture (its labels are under it).
        models_uri: ``s3://bucket/models``: where push copies versions.
        registry: A :class:`components.lib.registry.Registry` (needed with ``models_uri``).
        serving_uris: ``storageUri`` values the InferenceServices use now: always kept.
        now: The time to judge ages by (default: now, UTC).
    """
    _check(retention_days, keep_archived)
    if not capture_uri and not models_uri:
        raise CleanupError("nothing to clean: give a capture URI, a models URI, or both")
    if models_uri and registry is None:
        raise CleanupError("models_uri needs the registry (a tracking URI)")
    result = Plan(layout.utc(now or datetime.now(UTC)), retention_days)
    if capture_uri:
        result.items += plan_capture(client, capture_uri, endpoint, retention_days, result.now)
    if models_uri:
        result.items += plan_model_copies(
            client,
            registry,
            models_uri,
            endpoint,
            retention_days,
            result.now,
            keep_archived,
            serving_uris,
        )
    return result


def apply(client, endpoint: str, **kwargs) -> Plan:
    """Plans (as :func:`plan`, same arguments), plans again, and deletes the folders both
    plans delete; returns the first plan with ``deleted`` filled in.

    Each folder is listed again right before its delete; when an object in it is newer than
    the cutoff by then, the folder is kept (logged).

    Raises:
        CleanupError: As :func:`plan`, or a delete the store refused (the message names the
            objects; what was deleted before stays deleted).
    """
    first = plan(client, endpoint, **kwargs)
    kwargs["now"] = first.now
    second = plan(client, endpoint, **kwargs)
    agreed = {i.uri for i in second.to_delete()}
    for item in first.to_delete():
        if item.uri not in agreed:
            log.warning("%s: the second look keeps it; not deleted", item.uri)
            continue
        first.deleted += _delete_folder(client, endpoint, item.uri, first.cutoff)
    return first


def _delete_folder(client, endpoint: str, uri: str, cutoff: datetime) -> list[str]:
    from minio.deleteobjects import DeleteObject
    from minio.error import S3Error

    bucket, prefix = _split(uri, "folder")
    folder = _Folder()
    for obj in _list(client, bucket, prefix, endpoint, uri):
        folder.add(obj)
    if _young(folder, cutoff):
        log.warning("%s: an object was written since the plan; not deleted", uri)
        return []
    try:
        errors = list(client.remove_objects(bucket, [DeleteObject(k) for k in folder.keys]))
    except S3Error as exc:
        raise CleanupError(f"cannot delete {uri}: {exc.code}: {exc.message}") from exc
    except storage.network_errors() as exc:
        raise CleanupError(str(storage.unreachable(endpoint, exc, f"deleting {uri}"))) from exc
    if errors:
        detail = "; ".join(f"{e.name}: {e.code} {e.message}" for e in errors[:5])
        raise CleanupError(f"cannot delete {len(errors)} objects of {uri}: {detail}")
    log.info("deleted %s (%d objects)", uri, len(folder.keys))
    return folder.keys
