"""The feature store (Feast): its configuration, the offline data, apply, materialize, and the
point-in-time join of training rows.

Feast is imported inside the functions only: the module imports in any image, and only the
features image (``.venv-features``) can call what touches Feast. The repository's objects are
in ``components/lib/feature_repos/<name>/`` (Bikeshare: ``bikeshare``, version
``bikeshare-features-1.0.0``).

Storage, one root per run (``storage``), laid out the same for both targets:

    <storage>/offline/weather.parquet   the weather observations (the offline store)
    <storage>/registry.db               Feast's registry (the applied objects)
    <storage>/online.db                 the SQLite online store (embedded only)

``embedded`` (default): ``storage`` is a folder (the run's pipeline root or a test's tmp dir).
``cluster``: ``storage`` is ``s3://bucket/prefix`` on MinIO / S3 and the online store is Redis
(``redis`` = ``host:port``). The target is a parameter; when not given, the environment
variable ``LOOPLINE_FEATURE_TARGET`` (read at call time), else ``embedded``. Both render from
the repository's one ``feature_store.template.yaml``.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from string import Template

from components.lib import network
from components.lib.feature_repos import bikeshare as bikeshare_repo

TARGETS = ("embedded", "cluster")
TARGET_ENV = "LOOPLINE_FEATURE_TARGET"
REPOS = {"bikeshare": bikeshare_repo}
REPO_ROOT = Path(__file__).resolve().parent / "feature_repos"
OFFLINE_FILE = "offline/weather.parquet"
# Feast's offline store per target. ``duckdb`` (Feast's ibis / DuckDB store, ``feast[duckdb]``):
# a sorted as-of join, 1M examples in seconds (bench/point_in_time.py); Feast's ``file`` (dask)
# store pairs every example with every observation of its entity before the TTL filter (800
# examples 7.8 s, a year 6.6 GB). The cluster keeps ``file``: the DuckDB store reads ``s3://``
# through DuckDB's httpfs extension, which DuckDB downloads at run time, and passes the MinIO
# endpoint only together with explicit source credentials.
OFFLINE_STORES = {"embedded": "duckdb", "cluster": "file"}
OFFLINE_TYPES = ("duckdb", "file")


class FeatureStoreError(ValueError):
    """A feature-store input or configuration that cannot be used; the message names it."""


@dataclass(frozen=True)
class StoreLocation:
    """Where one run's feature store lives (see the module's docstring)."""

    target: str
    storage: str
    offline_uri: str
    registry_uri: str
    online: dict
    s3_endpoint: str = ""
    offline: str = "file"

    def describe_online(self) -> str:
        if self.online["type"] == "sqlite":
            return f"sqlite:{self.online['path']}"
        return f"redis://{self.online['connection_string']}"


def resolve_target(target: str = "") -> str:
    target = target or os.environ.get(TARGET_ENV, "") or "embedded"
    if target not in TARGETS:
        raise FeatureStoreError(f"feature store target {target!r}: use one of {TARGETS}")
    return target


def location(
    storage: str, target: str = "", redis: str = "", s3_endpoint: str = "", offline: str = ""
) -> StoreLocation:
    """The run's store locations for ``target`` (``embedded`` or ``cluster``).

    Args:
        storage: A folder (embedded) or ``s3://bucket/prefix`` (cluster).
        target: ``embedded`` or ``cluster``; empty: ``$LOOPLINE_FEATURE_TARGET``, else embedded.
        redis: ``host:port[,options]`` of the Redis online store (cluster only).
        s3_endpoint: ``http(s)://host:port`` of the S3 API (cluster only).
        offline: Feast's offline store type, ``duckdb`` or ``file``; empty: the target's
            (:data:`OFFLINE_STORES`: embedded ``duckdb``, cluster ``file``).
    """
    target = resolve_target(target)
    offline = offline or OFFLINE_STORES[target]
    if offline not in OFFLINE_TYPES:
        raise FeatureStoreError(f"offline store {offline!r}: use one of {OFFLINE_TYPES}")
    storage = storage.rstrip("/")
    if target == "embedded":
        if storage.startswith("s3://"):
            raise FeatureStoreError(f"storage {storage!r}: the embedded target wants a folder")
        storage = os.path.abspath(storage)
        online = {"type": "sqlite", "path": os.path.join(storage, "online.db")}
    else:
        if not storage.startswith("s3://"):
            raise FeatureStoreError(
                f"storage {storage!r}: the cluster target wants s3://bucket/prefix"
            )
        if not redis:
            raise FeatureStoreError(
                "the cluster target needs redis (host:port of the online store)"
            )
        # redis-py waits forever by default: the ``redis`` socket timeouts of
        # components.lib.network unless the connection string names its own.
        online = {"type": "redis", "connection_string": network.redis_options(redis)}
    return StoreLocation(
        target=target,
        storage=storage,
        offline_uri=f"{storage}/{OFFLINE_FILE}",
        registry_uri=f"{storage}/registry.db",
        online=online,
        s3_endpoint=s3_endpoint,
        offline=offline,
    )


def render_config(where: StoreLocation, repo: str = "bikeshare") -> str:
    """``feature_store.yaml`` for ``where``, rendered from the repository's one template."""
    template = (REPO_ROOT / repo / "feature_store.template.yaml").read_text()
    # JSON is YAML: the values go in as flow scalars / mappings, quoted where they need it.
    return Template(template).substitute(
        registry=json.dumps(where.registry_uri),
        online_store=json.dumps(where.online),
        offline_store=json.dumps({"type": where.offline}),
    )


def open_store(where: StoreLocation, repo_dir: str, repo: str = "bikeshare"):
    """A ``feast.FeatureStore`` for ``where``; its ``feature_store.yaml`` is written to ``repo_dir``."""
    from feast import FeatureStore

    os.makedirs(repo_dir, exist_ok=True)
    if where.target == "embedded":
        os.makedirs(where.storage, exist_ok=True)
    if where.s3_endpoint:
        # Feast's S3 registry (boto3) and file offline store (s3fs) read the endpoint from here.
        os.environ.setdefault("AWS_ENDPOINT_URL", where.s3_endpoint)
        os.environ.setdefault("FEAST_S3_ENDPOINT_URL", where.s3_endpoint)
        network.aws_env()  # botocore's retries (its timeouts are 60 s by default)
    Path(repo_dir, "feature_store.yaml").write_text(render_config(where, repo))
    return FeatureStore(repo_path=repo_dir)


def weather_observations(table, repo: str = "bikeshare"):
    """The weather observations of a Bikeshare table (CSV / Parquet as ingest writes it).

    One row per hour: ``city``, ``event_timestamp`` (``EPOCH`` + ``day`` - 1 days + ``hr``
    hours, UTC) and the weather features. A pyarrow table or a pandas frame.

    Raises:
        FeatureStoreError: a column missing, a null time, or one hour observed twice.
    """
    import pandas as pd

    spec = REPOS[repo]
    frame = table if isinstance(table, pd.DataFrame) else table.to_pandas()
    needed = ("day", "hr", *spec.WEATHER_FEATURES)
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise FeatureStoreError(f"the snapshot has no column {missing[0]!r} (needs {list(needed)})")
    for column in ("day", "hr"):
        if frame[column].isna().any():
            raise FeatureStoreError(f"column {column!r} has missing values: no time for those rows")
    times = (
        pd.Timestamp(spec.EPOCH)
        + pd.to_timedelta(frame["day"].astype("int64") - 1, unit="D")
        + pd.to_timedelta(frame["hr"].astype("int64"), unit="h")
    )
    out = pd.DataFrame({spec.ENTITY: spec.CITY, spec.TIMESTAMP: times.values})
    out[spec.TIMESTAMP] = pd.to_datetime(out[spec.TIMESTAMP], utc=True)
    for name in spec.WEATHER_FEATURES:
        out[name] = frame[name].to_numpy()
    out["weathersit"] = out["weathersit"].astype(object)
    for name in spec.WEATHER_FEATURES[1:]:
        out[name] = out[name].astype("float64")
    repeated = out[spec.TIMESTAMP].duplicated()
    if repeated.any():
        raise FeatureStoreError(
            f"hour {out[spec.TIMESTAMP][repeated].iloc[0]} is observed twice: one observation "
            "per city and hour"
        )
    return out.sort_values(spec.TIMESTAMP, kind="stable").reset_index(drop=True)


def write_offline(observations, where: StoreLocation, tmp_dir: str, s3_secure: bool = False) -> str:
    """Writes the observations as the offline store's Parquet; returns its URI."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(observations, preserve_index=False)
    if where.target == "embedded":
        path = where.offline_uri
        os.makedirs(os.path.dirname(path), exist_ok=True)
        pq.write_table(table, path)
        return path
    from components.lib import storage

    folder = os.path.join(tmp_dir, "offline")
    os.makedirs(folder, exist_ok=True)
    pq.write_table(table, os.path.join(folder, os.path.basename(OFFLINE_FILE)))
    endpoint = where.s3_endpoint.split("://", 1)[-1]
    storage.upload_folder(folder, where.offline_uri.rsplit("/", 1)[0], endpoint, s3_secure)
    return where.offline_uri


def apply(store, where: StoreLocation, repo: str = "bikeshare") -> list:
    """``feast apply`` of the repository's objects (their source reading ``where``'s offline
    store); returns the objects."""
    from components.lib.feature_repos.bikeshare import definitions

    if repo != "bikeshare":
        raise FeatureStoreError(f"unknown feature repository {repo!r}; known: {sorted(REPOS)}")
    objects = definitions.build(where.offline_uri, where.s3_endpoint or None)
    store.apply(objects)
    return objects


def materialize(store, start: datetime, end: datetime, views: list[str] | None = None) -> None:
    """Loads the latest value in ``[start, end]`` of each entity into the online store."""
    store.materialize(start_date=start, end_date=end, feature_views=views)


def feature_refs(repo: str = "bikeshare") -> list[str]:
    """Every feature of the repository as ``view:feature``: weather, then calendar."""
    spec = REPOS[repo]
    return [f"{spec.WEATHER_VIEW}:{f}" for f in spec.WEATHER_FEATURES] + [
        f"{spec.CALENDAR_VIEW}:{f}" for f in spec.CALENDAR_FEATURES
    ]


def historical_features(
    store, entity_df, features: list[str] | None = None, repo: str = "bikeshare"
):
    """Training rows by Feast's point-in-time join: for each row of ``entity_df`` (``city``,
    ``event_timestamp`` and any label columns, e.g. ``bikers``), the weather observed at or
    before its time and within the view's TTL (else null), and the calendar features of its time.

    Returns one row per row of ``entity_df``, in its order, its columns those of ``entity_df``
    followed by the features (names without the view prefix). Feast 0.67's file offline store
    (the cluster's) drops an example for which no observation lies within the TTL (its DuckDB
    store, the embedded default, keeps it with nulls); the views are therefore fetched one at
    a time and joined back to every example (an on-demand view's registered transformation
    runs on every example's time), so such an example keeps its row with the weather null
    (what the data gate's presence limit judges) whichever store answers.
    """
    import pandas as pd

    spec = REPOS[repo]
    missing = [c for c in (spec.ENTITY, spec.TIMESTAMP) if c not in entity_df.columns]
    if missing:
        raise FeatureStoreError(f"the entity table has no column {missing[0]!r}")
    refs = features or feature_refs(repo)
    order = "__loopline_row"
    frame = entity_df.copy()
    frame[spec.TIMESTAMP] = pd.to_datetime(frame[spec.TIMESTAMP], utc=True)
    frame[order] = range(len(frame))
    out = frame
    by_view: dict[str, list[str]] = {}
    for ref in refs:
        by_view.setdefault(ref.split(":", 1)[0], []).append(ref)
    on_demand = {v.name: v for v in store.list_on_demand_feature_views()}
    for view, view_refs in by_view.items():
        names = [r.split(":", 1)[1] for r in view_refs]
        if view in on_demand:
            # The registered view's own transformation (what Feast runs after a join) on every
            # example: Feast 0.67 refuses a retrieval of on-demand features alone.
            derived = on_demand[view].feature_transformation.transform(frame[[spec.TIMESTAMP]])
            joined = derived[names].assign(**{order: frame[order].to_numpy()})
        else:
            joined = store.get_historical_features(entity_df=frame, features=view_refs).to_df()
        out = out.merge(joined[[order, *names]], on=order, how="left", validate="one_to_one")
    out = out.sort_values(order, kind="stable").reset_index(drop=True)
    return out[[*entity_df.columns, *[r.split(":", 1)[1] for r in refs]]]


def online_features(store, times, city: str | None = None, features=None, repo: str = "bikeshare"):
    """The online store's features for ``city`` at each request time (a pandas frame)."""
    import pandas as pd

    spec = REPOS[repo]
    rows = [
        {spec.ENTITY: city or spec.CITY, spec.TIMESTAMP: pd.Timestamp(t).to_pydatetime()}
        for t in times
    ]
    return store.get_online_features(
        features=features or feature_refs(repo), entity_rows=rows
    ).to_df()


def view_versions(store, repo: str = "bikeshare") -> dict[str, str]:
    """Each applied view's version for lineage: ``<repository version>/<spec sha256[:12]>``.

    The hash is of the view's spec as the registry holds it (schema, TTL, source, entities,
    the on-demand function's code), so a change to any of them changes the version even when
    the repository version was not bumped.
    """
    spec = REPOS[repo]
    out = {}
    views = list(store.list_feature_views()) + list(store.list_on_demand_feature_views())
    for view in sorted(views, key=lambda v: v.name):
        proto = _without_meta(view.to_proto().spec)
        digest = hashlib.sha256(proto.SerializeToString(deterministic=True)).hexdigest()[:12]
        out[view.name] = f"{spec.VERSION}/{digest}"
    return out


def _without_meta(message):
    """A copy of ``message`` with every nested ``meta`` (created / updated timestamps) cleared.

    Feast 0.67 stamps a ``RequestSource``'s ``meta`` with the time ``to_proto`` is called, so
    the on-demand view's spec differed on every read of the same registry (the calendar
    version changed between materialize and the join); times are not part of a view's version.
    """
    copy = type(message)()
    copy.CopyFrom(message)
    _clear_meta(copy)
    return copy


def _clear_meta(message) -> None:
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        repeated = field.is_repeated  # protobuf >= 7 (the features lock): no field.label
        if field.name == "meta" and not repeated:
            message.ClearField(field.name)
            continue
        if not repeated:
            _clear_meta(value)
        elif field.message_type.GetOptions().map_entry:
            if field.message_type.fields_by_name["value"].message_type is not None:
                for item in value.values():
                    _clear_meta(item)
        else:
            for item in value:
                _clear_meta(item)


def time_range(observations, repo: str = "bikeshare") -> tuple[datetime, datetime]:
    """The first and last observation time (UTC)."""
    ts = observations[REPOS[repo].TIMESTAMP]
    return ts.min().to_pydatetime(), ts.max().to_pydatetime()


ONE_SECOND = timedelta(seconds=1)


def asof_join(observations, entity_df, repo: str = "bikeshare"):
    """The point-in-time join by hand, without Feast (pandas only): what
    :func:`historical_features` returns, for the same observations and examples.

    Per example, the latest observation of its entity at or before its time and no older
    than the weather view's TTL (``merge_asof``: ``by`` the entity, ``direction="backward"``,
    ``tolerance`` = TTL, both ends inclusive, as Feast's), else null; the calendar features
    from :mod:`.feature_repos.bikeshare.calendar`. bench/point_in_time.py and the features
    tests check it equals Feast's join row for row; the tests of images without Feast (the
    TFDV image's data-gate test, the main environment's quality test) build their rows with it.
    """
    import pandas as pd

    from components.lib.feature_repos.bikeshare.calendar import calendar_features

    spec = REPOS[repo]
    order = "__loopline_row"
    frame = entity_df.copy()
    frame[spec.TIMESTAMP] = pd.to_datetime(frame[spec.TIMESTAMP], utc=True)
    frame[order] = range(len(frame))
    right = observations[[spec.ENTITY, spec.TIMESTAMP, *spec.WEATHER_FEATURES]].copy()
    right[spec.TIMESTAMP] = pd.to_datetime(right[spec.TIMESTAMP], utc=True)
    joined = pd.merge_asof(
        frame.sort_values(spec.TIMESTAMP, kind="stable"),
        right.sort_values(spec.TIMESTAMP, kind="stable"),
        on=spec.TIMESTAMP,
        by=spec.ENTITY,
        direction="backward",
        tolerance=pd.Timedelta(spec.WEATHER_TTL),
    )
    joined = joined.sort_values(order, kind="stable").reset_index(drop=True)
    derived = calendar_features(joined[spec.TIMESTAMP]).reset_index(drop=True)
    out = pd.concat([joined, derived[list(spec.CALENDAR_FEATURES)]], axis=1)
    names = [*spec.WEATHER_FEATURES, *spec.CALENDAR_FEATURES]
    return out[[*entity_df.columns, *names]]
