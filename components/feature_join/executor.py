"""feature_join: training examples from the feature store by Feast's point-in-time join.

Runs in the features image (Feast 0.67 with its DuckDB offline store, pandas < 3; no kfp
there). The component is a container component that calls this module's CLI:

    python -m components.feature_join.executor \\
        --examples PATH --feature-store DIR [--repo bikeshare] [--redis HOST:PORT] \\
        [--s3-endpoint HOST:PORT] [--s3-secure false] \\
        --joined-out FILE --summary-out FILE --feature-view-versions-out FILE \\
        [--executor-input JSON]

Input ``examples``, one of two forms (CSV or Parquet, read with the strict reader):

* an **entity / label table**: ``city``, ``event_timestamp`` and the labels (``bikers``;
  ``casual`` and ``registered`` when present, as the schema expects them in TRAINING);
* a **Bikeshare split or snapshot** (no ``event_timestamp``, but ``day`` and ``hr``): its
  entity / label table is derived from it (``city`` = the repository's city, the time from
  ``day`` and ``hr`` as materialize derives it, the labels kept) and every other column
  dropped, so every feature comes from the store.

``feature_store``: materialize's ``feature_store`` output (``materialize.json`` and
``feature_store.yaml``; with the embedded target and no ``storage``, the store itself).

Output ``joined``: one Parquet row per example, in its order, in the shape of ingest's splits
(:data:`SPLIT_COLUMNS`: the Bikeshare columns the schema, the feature spec and the transform
read; ``day`` = days since the repository's epoch + 1, the day of year for 2011), so
validate_data, the data gate, transform and train run on it unchanged. A weather value with no
observation within the view's TTL is null: the schema's presence limits judge that share.
Metadata: rows, sha256 (the data version, as ingest records it), the repository version and
``feature_view_versions`` (for the model's lineage).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from components.lib import artifacts, executor_output, logs, tables
from components.lib import featurestore as fs

log = logging.getLogger("loopline.feature_join")

# The columns of an ingest split of the Bikeshare snapshot, in its order, with their types.
SPLIT_COLUMNS = {
    "season": "int64",
    "mnth": "string",
    "day": "int64",
    "hr": "int64",
    "holiday": "int64",
    "weekday": "int64",
    "workingday": "int64",
    "weathersit": "string",
    "temp": "double",
    "atemp": "double",
    "hum": "double",
    "windspeed": "double",
    "casual": "int64",
    "registered": "int64",
    "bikers": "int64",
}
LABELS = ("casual", "registered", "bikers")
REQUIRED_LABEL = "bikers"


@dataclass
class Result:
    repository: str
    repository_version: str
    examples_form: str
    rows: int
    sha256: str
    first_time: str
    last_time: str
    feature_views: dict[str, str]
    missing: dict[str, int] = field(default_factory=dict)
    store: dict = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def entity_table(frame, repo: str = "bikeshare"):
    """(the entity / label table, its form): the table as given, or derived from a split."""
    import pandas as pd

    spec = fs.REPOS[repo]
    if spec.TIMESTAMP in frame.columns:
        form = "entity table"
        if spec.ENTITY not in frame.columns:
            raise fs.FeatureStoreError(
                f"the entity table has no column {spec.ENTITY!r} (needs {spec.ENTITY}, "
                f"{spec.TIMESTAMP}, {REQUIRED_LABEL})"
            )
        out = frame[[spec.ENTITY, spec.TIMESTAMP, *[c for c in LABELS if c in frame.columns]]]
        out = out.assign(**{spec.TIMESTAMP: pd.to_datetime(out[spec.TIMESTAMP], utc=True)})
    elif "day" in frame.columns and "hr" in frame.columns:
        form = "derived from a split"
        for column in ("day", "hr"):
            if frame[column].isna().any():
                raise fs.FeatureStoreError(f"column {column!r} has missing values: no time")
        times = (
            pd.Timestamp(spec.EPOCH)
            + pd.to_timedelta(frame["day"].astype("int64") - 1, unit="D")
            + pd.to_timedelta(frame["hr"].astype("int64"), unit="h")
        )
        out = pd.DataFrame({spec.ENTITY: spec.CITY, spec.TIMESTAMP: times.to_numpy()})
        out[spec.TIMESTAMP] = pd.to_datetime(out[spec.TIMESTAMP], utc=True)
        for label in LABELS:
            if label in frame.columns:
                out[label] = frame[label].to_numpy()
    else:
        raise fs.FeatureStoreError(
            f"examples: neither an entity table ({spec.ENTITY}, {spec.TIMESTAMP}, labels) nor a "
            "split with day and hr"
        )
    if REQUIRED_LABEL not in out.columns:
        raise fs.FeatureStoreError(f"examples have no label column {REQUIRED_LABEL!r}")
    if out[spec.TIMESTAMP].isna().any():
        raise fs.FeatureStoreError(f"column {spec.TIMESTAMP!r} has missing values")
    return out.reset_index(drop=True), form


def split_shaped(joined, repo: str = "bikeshare"):
    """The joined rows as a pyarrow table in ingest's split shape (:data:`SPLIT_COLUMNS`)."""
    import pandas as pd
    import pyarrow as pa

    spec = fs.REPOS[repo]
    since = pd.to_datetime(joined[spec.TIMESTAMP], utc=True) - pd.Timestamp(spec.EPOCH)
    frame = joined.assign(day=since.dt.days.astype("int64") + 1)
    columns = [c for c in SPLIT_COLUMNS if c in frame.columns]
    arrays = []
    for name in columns:
        values = frame[name]
        kind = SPLIT_COLUMNS[name]
        if kind == "string":
            values = values.astype(object).where(values.notna(), None)
        arrays.append(pa.array(values, type=pa.string() if kind == "string" else None))
    table = pa.Table.from_arrays(arrays, names=columns)
    target = pa.schema(
        [
            (
                n,
                pa.string()
                if SPLIT_COLUMNS[n] == "string"
                else pa.type_for_alias(SPLIT_COLUMNS[n]),
            )
            for n in columns
        ]
    )
    return table.cast(target)


def _location(feature_store_dir: str, redis: str, s3_endpoint: str, s3_secure: bool):
    """The store materialize wrote, from its ``feature_store`` output folder."""
    record_path = Path(feature_store_dir, "materialize.json")
    if not record_path.exists():
        raise fs.FeatureStoreError(
            f"{feature_store_dir}: no materialize.json (give materialize's feature_store output)"
        )
    record = json.loads(record_path.read_text())
    target = record["target"]
    if target == "embedded":
        # The store inside the artifact folder (materialize without storage), else where
        # materialize recorded it.
        here = Path(feature_store_dir, "registry.db").exists()
        storage = feature_store_dir if here else os.path.dirname(record["registry_uri"])
        return record, fs.location(storage, "embedded")
    endpoint_url = f"{'https' if s3_secure else 'http'}://{s3_endpoint}" if s3_endpoint else ""
    storage = record["registry_uri"].rsplit("/", 1)[0]
    return record, fs.location(storage, "cluster", redis, endpoint_url)


def feature_join(
    examples: str,
    feature_store_dir: str,
    joined_out: str,
    repo_dir: str,
    redis: str = "",
    s3_endpoint: str = "",
    s3_secure: bool = False,
    repo: str = "bikeshare",
) -> Result:
    """Joins the examples' features as of their time; writes ``joined_out`` (Parquet)."""
    import pyarrow.parquet as pq

    if repo not in fs.REPOS:
        raise fs.FeatureStoreError(
            f"unknown feature repository {repo!r}; known: {sorted(fs.REPOS)}"
        )
    spec = fs.REPOS[repo]
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    frame = tables.read_table(examples, what="examples", error=fs.FeatureStoreError).to_pandas()
    entity, form = entity_table(frame, repo)
    seconds["read"] = time.perf_counter() - t0

    record, where = _location(feature_store_dir, redis, s3_endpoint, s3_secure)
    if record.get("repository_version") != spec.VERSION:
        raise fs.FeatureStoreError(
            f"the store holds repository {record.get('repository_version')!r}; this image's "
            f"repository is {spec.VERSION!r}: materialize again with this image"
        )
    t0 = time.perf_counter()
    store = fs.open_store(where, repo_dir, repo)
    versions = fs.view_versions(store, repo)
    if set(versions) != set(record.get("feature_views", {})):
        raise fs.FeatureStoreError(
            f"the registry's views {sorted(versions)} are not those materialize applied "
            f"{sorted(record.get('feature_views', {}))}"
        )
    joined = fs.historical_features(store, entity, repo=repo)
    seconds["join"] = time.perf_counter() - t0

    table = split_shaped(joined, repo)
    os.makedirs(os.path.dirname(joined_out) or ".", exist_ok=True)
    pq.write_table(table, joined_out)
    missing = {n: int(joined[n].isna().sum()) for n in spec.WEATHER_FEATURES}
    times = entity[spec.TIMESTAMP]
    log.info("%d examples (%s) joined; weather missing (TTL): %s", len(entity), form, missing)
    return Result(
        repository=repo,
        repository_version=spec.VERSION,
        examples_form=form,
        rows=len(entity),
        sha256=artifacts.sha256_file(joined_out),
        first_time=times.min().isoformat() if len(times) else "",
        last_time=times.max().isoformat() if len(times) else "",
        feature_views=versions,
        missing=missing,
        store={
            "target": where.target,
            "offline_store": f"{where.offline}:{record.get('offline_uri', '')}",
            "registry": where.registry_uri,
        },
        seconds={k: round(v, 3) for k, v in seconds.items()},
    )


def summary_markdown(result: Result) -> str:
    lines = [
        "# Training examples from the feature store",
        "",
        f"Repository `{result.repository_version}`; {result.rows:,} examples "
        f"({result.examples_form}), {result.first_time} .. {result.last_time}; "
        f"point-in-time join on `{result.store.get('offline_store', '')}`.",
        "",
        "| feature view | version |",
        "|---|---|",
        *[f"| `{k}` | `{v}` |" for k, v in sorted(result.feature_views.items())],
        "",
        "Weather values missing (no observation within the TTL): "
        + ", ".join(f"{k} {v:,}" for k, v in result.missing.items())
        + ". The data gate judges their share against the schema's presence limits.",
    ]
    return "\n".join(lines) + "\n"


def dataset_metadata(result: Result) -> dict:
    """The ``joined`` Dataset's metadata (train copies ``feature_view_versions`` to lineage)."""
    return {
        "rows": result.rows,
        "sha256": result.sha256,
        "format": "parquet",
        "columns": list(SPLIT_COLUMNS),
        "repository_version": result.repository_version,
        "feature_view_versions": json.dumps(result.feature_views, sort_keys=True),
        "examples_form": result.examples_form,
        "time_range": [result.first_time, result.last_time],
        "missing": result.missing,
    }


def write_executor_output(executor_input: str, result: Result) -> str:
    """Writes KFP's executor_output.json (artifact metadata, the versions parameter)."""
    metadata = {
        "joined": dataset_metadata(result),
        "summary": {"repository_version": result.repository_version},
    }
    return executor_output.write(
        executor_input,
        metadata,
        {"feature_view_versions": json.dumps(result.feature_views, sort_keys=True)},
    )


def main(argv: list[str] | None = None) -> int:
    import tempfile

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--examples", required=True)
    parser.add_argument("--feature-store", required=True)
    parser.add_argument("--redis", default="")
    parser.add_argument("--s3-endpoint", default="")
    parser.add_argument("--s3-secure", default="false", choices=["true", "false", "True", "False"])
    parser.add_argument("--repo", default="bikeshare")
    parser.add_argument("--executor-input", default=None, help="KFP executor input JSON ({{$}})")
    for name in ("joined", "summary", "feature-view-versions"):
        parser.add_argument(f"--{name}-out", required=True)
    args = parser.parse_args(argv)
    logs.setup()
    os.environ.setdefault("FEAST_USAGE", "False")
    with tempfile.TemporaryDirectory() as repo_dir:
        result = feature_join(
            args.examples,
            args.feature_store,
            args.joined_out,
            repo_dir,
            redis=args.redis,
            s3_endpoint=args.s3_endpoint,
            s3_secure=args.s3_secure.lower() == "true",
            repo=args.repo,
        )
    for path, text in (
        (args.summary_out, summary_markdown(result)),
        (args.feature_view_versions_out, json.dumps(result.feature_views, sort_keys=True)),
    ):
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        Path(path).write_text(text)
    if args.executor_input:
        write_executor_output(args.executor_input, result)
    log.info("wrote %s: %s", args.joined_out, json.dumps(asdict(result)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
