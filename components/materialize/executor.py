"""materialize: a validated Bikeshare snapshot's weather into the feature store, offline and online.

Runs in the features image (Feast 0.67, pandas < 3; no kfp there). The component is a container
component that calls this module's CLI:

    python -m components.materialize.executor \\
        --dataset PATH [--dataset PATH ...] [--storage DIR|s3://bucket/prefix] \\
        [--target embedded|cluster] [--redis HOST:PORT] [--s3-endpoint HOST:PORT] \\
        [--s3-secure false] [--repo bikeshare] \\
        --feature-store-out DIR --offline-store-out DIR --summary-out FILE \\
        --feature-view-versions-out FILE [--executor-input JSON]

Steps: read every dataset (CSV or Parquet, as ingest writes its splits, or the raw snapshot)
with the strict reader; derive the weather observations (one per hour: ``city``,
``event_timestamp`` = 2011-01-01 + day - 1 days + hr hours, UTC; the weather features); write
them as the offline store's Parquet; ``apply`` the repository (Feast's ``FeatureStore.apply``);
materialize the latest value of each entity up to the snapshot's last hour into the online
store. Every output records the repository version and each view's version.

Storage: with ``--storage`` empty (the embedded default), the store lives in the
``feature_store`` output folder (the run's storage: Parquet offline store, SQLite online
store, registry file); ``--target cluster`` wants ``--storage s3://bucket/prefix`` and
``--redis``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from components.lib import executor_output, logs, tables
from components.lib import featurestore as fs

log = logging.getLogger("loopline.materialize")


@dataclass
class Result:
    repository: str
    repository_version: str
    target: str
    offline_uri: str
    online_store: str
    registry_uri: str
    rows: int
    first_time: str
    last_time: str
    materialized: list[str]
    feature_views: dict[str, str]
    features: dict[str, list[str]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def materialize(
    datasets: list[str],
    feature_store_dir: str,
    offline_store_dir: str,
    storage: str = "",
    target: str = "",
    redis: str = "",
    s3_endpoint: str = "",
    s3_secure: bool = False,
    repo: str = "bikeshare",
) -> Result:
    """Writes the datasets' weather to the offline store, applies the repository, materializes.

    Args:
        datasets: CSV or Parquet files (ingest's splits, or the raw snapshot); concatenated.
        feature_store_dir: Output folder: ``feature_store.yaml`` and, by default, the store.
        offline_store_dir: Output folder: a copy of the offline store's Parquet (the data
            version of what was materialized).
        storage: The store's root (a folder or ``s3://bucket/prefix``); empty:
            ``feature_store_dir`` (embedded only).
        target: ``embedded`` or ``cluster``; empty: ``$LOOPLINE_FEATURE_TARGET``, else embedded.
        redis: ``host:port`` of the Redis online store (cluster).
        s3_endpoint: ``host:port`` of the S3 API (cluster).
        s3_secure: Reach the S3 API over TLS.
        repo: The feature repository (``bikeshare``).
    """
    import pandas as pd

    if repo not in fs.REPOS:
        raise fs.FeatureStoreError(
            f"unknown feature repository {repo!r}; known: {sorted(fs.REPOS)}"
        )
    if not datasets:
        raise fs.FeatureStoreError("no dataset to materialize")
    spec = fs.REPOS[repo]
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    frames = [
        tables.read_table(path, what="dataset", error=fs.FeatureStoreError).to_pandas()
        for path in datasets
    ]
    observations = fs.weather_observations(pd.concat(frames, ignore_index=True), repo)
    seconds["read"] = time.perf_counter() - t0
    log.info("%d weather observations from %d dataset(s)", len(observations), len(datasets))

    endpoint_url = f"{'https' if s3_secure else 'http'}://{s3_endpoint}" if s3_endpoint else ""
    where = fs.location(storage or feature_store_dir, target, redis, endpoint_url)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        offline_uri = fs.write_offline(observations, where, tmp, s3_secure)
        os.makedirs(offline_store_dir, exist_ok=True)
        observations.to_parquet(os.path.join(offline_store_dir, "weather.parquet"), index=False)
        seconds["write_offline"] = time.perf_counter() - t0
        log.info("offline store: %s", offline_uri)

        t0 = time.perf_counter()
        repo_dir = feature_store_dir if where.target == "embedded" else os.path.join(tmp, "repo")
        store = fs.open_store(where, repo_dir, repo)
        fs.apply(store, where, repo)
        seconds["apply"] = time.perf_counter() - t0
        versions = fs.view_versions(store, repo)
        log.info("applied %s: %s", spec.VERSION, versions)

        t0 = time.perf_counter()
        start, end = fs.time_range(observations, repo)
        fs.materialize(store, start, end + fs.ONE_SECOND, [spec.WEATHER_VIEW])
        seconds["materialize"] = time.perf_counter() - t0
        log.info("materialized %s .. %s into %s", start, end, where.describe_online())
        if where.target != "embedded":
            os.makedirs(feature_store_dir, exist_ok=True)
            shutil.copy(os.path.join(repo_dir, "feature_store.yaml"), feature_store_dir)

    return Result(
        repository=repo,
        repository_version=spec.VERSION,
        target=where.target,
        offline_uri=offline_uri,
        online_store=where.describe_online(),
        registry_uri=where.registry_uri,
        rows=len(observations),
        first_time=start.isoformat(),
        last_time=end.isoformat(),
        materialized=[start.isoformat(), end.isoformat()],
        feature_views=versions,
        features={
            spec.WEATHER_VIEW: list(spec.WEATHER_FEATURES),
            spec.CALENDAR_VIEW: list(spec.CALENDAR_FEATURES),
        },
        seconds={k: round(v, 3) for k, v in seconds.items()},
    )


def summary_markdown(result: Result) -> str:
    spec = fs.REPOS[result.repository]
    lines = [
        "# Feature store: materialized",
        "",
        f"Repository `{result.repository_version}` ({result.target} target)",
        "",
        f"- offline store: `{result.offline_uri}`: {result.rows:,} weather observations, "
        f"{result.first_time} .. {result.last_time}",
        f"- online store: `{result.online_store}`: the latest values materialized from "
        f"{result.materialized[0]} to {result.materialized[1]}",
        f"- registry: `{result.registry_uri}`",
        f"- entity `{spec.ENTITY}` = `{spec.CITY}`",
        "",
        "| feature view | kind | features | TTL | version |",
        "|---|---|---|---|---|",
    ]
    for name, version in sorted(result.feature_views.items()):
        kind = "batch (timestamped)" if name == spec.WEATHER_VIEW else "on demand (request time)"
        ttl = str(spec.WEATHER_TTL) if name == spec.WEATHER_VIEW else ""
        features = ", ".join(result.features.get(name, []))
        lines.append(f"| `{name}` | {kind} | {features} | {ttl} | `{version}` |")
    return "\n".join(lines) + "\n"


def write_outputs(result: Result, feature_store_dir: str, summary: str, versions_out: str) -> None:
    os.makedirs(feature_store_dir, exist_ok=True)
    Path(feature_store_dir, "materialize.json").write_text(json.dumps(asdict(result), indent=2))
    for path, text in (
        (summary, summary_markdown(result)),
        (versions_out, json.dumps(result.feature_views, sort_keys=True)),
    ):
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        Path(path).write_text(text)


def write_executor_output(executor_input: str, result: Result) -> str:
    """Writes KFP's executor_output.json: output artifacts with metadata, and the versions.

    kfp.local reads a container component's outputs only from this file; on a cluster it gives
    the artifacts their metadata. Returns the file's path.
    """
    common = {
        "repository_version": result.repository_version,
        "feature_views": result.feature_views,
    }
    metadata = {
        "feature_store": {
            **common,
            "target": result.target,
            "offline_store": result.offline_uri,
            "online_store": result.online_store,
            "registry": result.registry_uri,
            "materialized": result.materialized,
        },
        "offline_store": {
            **common,
            "offline_store": result.offline_uri,
            "rows": result.rows,
            "time_range": [result.first_time, result.last_time],
        },
        "summary": common,
    }
    return executor_output.write(
        executor_input,
        metadata,
        {"feature_view_versions": json.dumps(result.feature_views, sort_keys=True)},
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", action="append", required=True)
    parser.add_argument("--storage", default="")
    parser.add_argument("--target", default="", choices=["", *fs.TARGETS])
    parser.add_argument("--redis", default="")
    parser.add_argument("--s3-endpoint", default="")
    parser.add_argument("--s3-secure", default="false", choices=["true", "false", "True", "False"])
    parser.add_argument("--repo", default="bikeshare")
    parser.add_argument("--executor-input", default=None, help="KFP executor input JSON ({{$}})")
    for name in ("feature-store", "offline-store", "summary", "feature-view-versions"):
        parser.add_argument(f"--{name}-out", required=True)
    args = parser.parse_args(argv)
    logs.setup()
    os.environ.setdefault("FEAST_USAGE", "False")
    result = materialize(
        [d for d in args.dataset if d],
        args.feature_store_out,
        args.offline_store_out,
        storage=args.storage,
        target=args.target,
        redis=args.redis,
        s3_endpoint=args.s3_endpoint,
        s3_secure=args.s3_secure.lower() == "true",
        repo=args.repo,
    )
    write_outputs(result, args.feature_store_out, args.summary_out, args.feature_view_versions_out)
    if args.executor_input:
        write_executor_output(args.executor_input, result)
    log.info(
        "materialized %d rows (%s .. %s), repository %s, views %s",
        result.rows,
        result.first_time,
        result.last_time,
        result.repository_version,
        result.feature_views,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
