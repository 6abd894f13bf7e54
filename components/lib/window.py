"""The monitoring window: captured traffic of whole hours, and the labels that join it.

Reads and writes the layout of :mod:`components.lib.capture_layout` through a MinIO client
(``client(endpoint, secure)`` makes one from the ``AWS_ACCESS_KEY_ID`` /
``AWS_SECRET_ACCESS_KEY`` environment, as :mod:`components.lib.storage` does):

* :func:`read_window`: the captured rows of one model in ``[start, end)``, reading only
  the hour partitions of the window, in event-time order;
* :func:`write_labels` / :func:`read_labels`: labels that arrive later, by request id
  (the latest ``labeled_at`` of a request id wins);
* :func:`join_labels`: the window with its labels (left join on ``request_id``).

A row's time is its ``event_time`` (the client's), else its ``received_at`` (the
server's): the same time the capture cut its hour on. No kfp here: the pipeline image, the
``loopline`` CLI and the tests import it.
"""

from __future__ import annotations

import concurrent.futures
import io
import logging
import os
import tempfile
import uuid
from datetime import UTC, datetime

import pandas as pd

from components.lib import capture_layout as layout
from components.lib import storage, tables

log = logging.getLogger("loopline.window")

LIST_EACH_UP_TO = 48  # hours: a longer window lists the model's prefix once
READ_THREADS = 8  # captured files fetched at once
TIME = "_time"  # the row's time while reading (event_time, else received_at); not returned
_EMPTY_TYPES = {
    "request_id": "string",
    "received_at": "datetime64[ms, UTC]",
    "event_time": "datetime64[ms, UTC]",
    "model_name": "string",
    "model_version": "string",
    "prediction": "float64",
}


class WindowError(ValueError):
    """Captured data or labels that cannot be read or written; the message names the object
    or the column."""


def client(endpoint: str, secure: bool = False, what: str = "capture"):
    """A MinIO client for ``endpoint`` with the credentials of the environment.

    Raises:
        storage.StorageError: No endpoint or no credentials (the message names the variables).
    """
    return storage._client(f"s3 endpoint {endpoint!r}", endpoint, secure, what)


def split_uri(uri: str, what: str = "capture_uri") -> tuple[str, str]:
    """``s3://bucket/prefix`` -> (bucket, prefix); the prefix may be empty."""
    from urllib.parse import urlparse

    parsed = urlparse(uri)
    if parsed.scheme not in storage.REMOTE_SCHEMES or not parsed.netloc:
        raise WindowError(f"{what} {uri!r}: s3://bucket/prefix expected")
    return parsed.netloc, parsed.path.strip("/")


# --------------------------------------------------------------------------- reading objects


def _list(cli, bucket: str, prefix: str) -> list[str]:
    from minio.error import S3Error

    try:
        return sorted(
            o.object_name
            for o in cli.list_objects(bucket, prefix=prefix, recursive=True)
            if o.object_name.endswith(".parquet")
        )
    except S3Error as exc:
        if exc.code == "NoSuchBucket":
            raise WindowError(f"bucket {bucket!r} does not exist") from exc
        raise WindowError(f"cannot list s3://{bucket}/{prefix}: {exc.code}: {exc.message}") from exc


def _window_keys(
    cli, bucket: str, prefix: str, model_name: str, partitions: list[str]
) -> list[str]:
    """The Parquet files of the window's hour partitions, in partition order.

    A window of up to :data:`LIST_EACH_UP_TO` hours lists each hour's partition; a longer one
    lists the model's prefix once and keeps the files of its hours (one listing instead of
    thousands, over at most the capture's retention).
    """
    if len(partitions) <= LIST_EACH_UP_TO:
        return [key for partition in partitions for key in _list(cli, bucket, partition)]
    wanted = set(partitions)
    found = _list(cli, bucket, layout.model_prefix(prefix, model_name))
    return [key for key in found if key[: key.rindex("/") + 1] in wanted]


def _read_parquet(cli, bucket: str, key: str, workdir: str) -> pd.DataFrame:
    from minio.error import S3Error

    try:
        response = cli.get_object(bucket, key)
        try:
            data = response.read()
        finally:
            response.close()
            response.release_conn()
    except S3Error as exc:
        raise WindowError(f"cannot read s3://{bucket}/{key}: {exc.code}: {exc.message}") from exc
    path = os.path.join(workdir, f"{uuid.uuid4().hex}.parquet")
    with open(path, "wb") as fh:
        fh.write(data)
    try:
        table = tables.read_table(
            path,
            "parquet",
            what="captured file",
            name=f"s3://{bucket}/{key}",
            require_rows=False,
            error=WindowError,
        )
    finally:
        os.remove(path)
    return table.to_pandas()


def _as_utc(series: pd.Series) -> pd.Series:
    return pd.to_datetime(series, utc=True)


# --------------------------------------------------------------------------- the window


def empty_window() -> pd.DataFrame:
    """A window without rows: the capture's own columns, typed as the capture writes them."""
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in _EMPTY_TYPES.items()})


def read_window(
    cli,
    bucket: str,
    prefix: str,
    model_name: str,
    start: datetime,
    end: datetime,
    *,
    model_version: str | None = None,
) -> pd.DataFrame:
    """The captured rows of ``model_name`` whose time is in ``[start, end)``.

    Reads only the hour partitions of the window (``start`` and ``end`` on whole hours,
    UTC; naive datetimes are UTC), drops rows outside it (a file in a wrong partition),
    keeps only ``model_version``'s rows when given, and returns them in time order
    (``event_time``, else ``received_at``; ties in the order read). Files of one model may
    differ in their input columns: a column missing from a file is null in its rows. An
    empty window has the capture's own columns and no rows (:func:`empty_window`).

    Raises:
        WindowError: A bound not on a whole hour, no such bucket, or a file that is not
            Parquet (named).
    """
    start, end = layout.utc(start), layout.utc(end)
    try:
        partitions = layout.window_partitions(prefix, model_name, start, end)
    except ValueError as exc:
        raise WindowError(str(exc)) from exc
    keys = _window_keys(cli, bucket, prefix, model_name, partitions)
    log.info("%d files in %d hour partitions", len(keys), len(partitions))
    # The files are small (one per capture flush and hour): fetch them concurrently.
    with (
        tempfile.TemporaryDirectory(prefix="loopline-window-") as workdir,
        concurrent.futures.ThreadPoolExecutor(READ_THREADS) as pool,
    ):
        read = pool.map(lambda key: _read_parquet(cli, bucket, key, workdir), keys)
        frames = [frame for frame in read if len(frame)]
    if not frames:
        return empty_window()
    window = pd.concat(frames, ignore_index=True, sort=False)
    missing = [c for c in ("request_id", "received_at") if c not in window.columns]
    if missing:
        raise WindowError(
            f"captured files under s3://{bucket}/{layout.model_prefix(prefix, model_name)} lack "
            f"the capture column(s) {missing}: not written by the capture"
        )
    for column in ("received_at", "event_time"):
        if column in window.columns:
            window[column] = _as_utc(window[column])
    when = window["received_at"]
    if "event_time" in window.columns:
        when = window["event_time"].fillna(when)
    window[TIME] = when
    keep = (when >= pd.Timestamp(start)) & (when < pd.Timestamp(end))
    if model_version is not None:
        if "model_version" not in window.columns:
            keep &= False
        else:
            keep &= window["model_version"].astype("string") == str(model_version)
    window = window[keep].sort_values(TIME, kind="stable").drop(columns=[TIME])
    return window.reset_index(drop=True)


# --------------------------------------------------------------------------- labels


def _label_column(values: pd.Series) -> pd.Series:
    """float64 when every label is a number, else string."""
    numeric = pd.to_numeric(values, errors="coerce")
    if numeric.notna().sum() == values.notna().sum():
        return numeric.astype("float64")
    return values.astype("string")


def check_labels(frame: pd.DataFrame, what: str = "labels") -> pd.DataFrame:
    """``frame`` as a labels table (request_id string, label float64 or string, labeled_at
    UTC; rows without ``labeled_at`` get the time now).

    Raises:
        WindowError: A missing ``request_id`` or ``label`` column, null or empty request
            ids, null labels, or a ``labeled_at`` that is not a time; the message names the
            column (and ``what``).
    """
    for column in ("request_id", "label"):
        if column not in frame.columns:
            raise WindowError(
                f"{what}: no column {column!r} (columns: {', '.join(map(str, frame.columns))}); "
                "labels need request_id and label"
            )
    if not len(frame):
        raise WindowError(f"{what}: no rows")
    ids = frame["request_id"]
    null_ids = int(ids.isna().sum() + (ids.astype("string").str.strip() == "").sum())
    if null_ids:
        raise WindowError(f"{what}: column 'request_id' has {null_ids} null or empty values")
    null_labels = int(frame["label"].isna().sum())
    if null_labels:
        raise WindowError(f"{what}: column 'label' has {null_labels} null values")
    now = pd.Timestamp(datetime.now(UTC))
    if "labeled_at" in frame.columns:
        try:
            labeled_at = _as_utc(frame["labeled_at"]).fillna(now)
        except (ValueError, TypeError) as exc:
            raise WindowError(f"{what}: column 'labeled_at' is not a time: {exc}") from exc
    else:
        labeled_at = pd.Series(now, index=frame.index)
    return pd.DataFrame(
        {
            "request_id": ids.astype("string"),
            "label": _label_column(frame["label"]),
            "labeled_at": labeled_at.astype("datetime64[ms, UTC]"),
        }
    )


def write_labels(cli, bucket: str, prefix: str, model_name: str, frame: pd.DataFrame) -> str:
    """Writes labels as one Parquet file; returns its object key.

    The key is ``<prefix>/model=<name>/date=<YYYY-MM-DD>/part-<uuid>.parquet``, the date
    that of the file's latest ``labeled_at`` (UTC), so no label of a file is later than its
    partition's day. ``prefix`` is the labels prefix (``<capture prefix>/labels``,
    :func:`capture_layout.labels_prefix`).

    Raises:
        WindowError: See :func:`check_labels`; or the object cannot be written.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq
    from minio.error import S3Error

    labels = check_labels(frame)
    day = labels["labeled_at"].max().to_pydatetime()
    key = layout.labels_partition(prefix, model_name, day) + f"part-{uuid.uuid4().hex}.parquet"
    table = pa.Table.from_pandas(labels, preserve_index=False)
    table = table.cast(
        pa.schema(
            [
                pa.field("request_id", pa.string()),
                pa.field("label", table.schema.field("label").type),
                pa.field("labeled_at", pa.timestamp("ms", tz="UTC")),
            ]
        )
    )
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    data = buffer.getvalue()
    try:
        cli.put_object(
            bucket,
            key,
            io.BytesIO(data),
            len(data),
            content_type="application/vnd.apache.parquet",
        )
    except S3Error as exc:
        raise WindowError(f"cannot write s3://{bucket}/{key}: {exc.code}: {exc.message}") from exc
    return key


def read_labels(
    cli, bucket: str, prefix: str, model_name: str, *, since: datetime | None = None
) -> pd.DataFrame:
    """Every label of ``model_name`` under the labels ``prefix``; one row per request id.

    The latest ``labeled_at`` of a request id wins (a correction replaces the first label).
    ``since``: only labels with ``labeled_at >= since`` (partitions of earlier days are not
    read). Columns ``request_id``, ``label``, ``labeled_at``; no rows when there is none.
    """
    since_ts = pd.Timestamp(layout.utc(since)) if since is not None else None
    keys = _list(cli, bucket, layout.labels_model_prefix(prefix, model_name))
    if since_ts is not None:
        first_day = since_ts.strftime(layout.DATE_FORMAT)
        keys = [k for k in keys if (layout.partition_value(k, "date") or "") >= first_day]
    frames = []
    with tempfile.TemporaryDirectory(prefix="loopline-labels-") as workdir:
        for key in keys:
            frame = _read_parquet(cli, bucket, key, workdir)
            missing = [c for c in layout.LABEL_COLUMNS if c not in frame.columns]
            if missing:
                raise WindowError(f"labels s3://{bucket}/{key}: no column(s) {missing}")
            frames.append(frame[list(layout.LABEL_COLUMNS)])
    if not frames:
        return pd.DataFrame(
            {
                "request_id": pd.Series(dtype="string"),
                "label": pd.Series(dtype="float64"),
                "labeled_at": pd.Series(dtype="datetime64[ms, UTC]"),
            }
        )
    labels = pd.concat(frames, ignore_index=True)
    labels["labeled_at"] = _as_utc(labels["labeled_at"])
    labels["request_id"] = labels["request_id"].astype("string")
    if since_ts is not None:
        labels = labels[labels["labeled_at"] >= since_ts]
    labels["label"] = _label_column(labels["label"])
    labels = labels.sort_values("labeled_at", kind="stable")
    labels = labels.drop_duplicates("request_id", keep="last").sort_values("request_id")
    return labels.reset_index(drop=True)


def join_labels(window: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """``window`` with ``label`` and ``labeled_at`` (null where no label came), every row kept.

    ``labels`` with one row per request id (as :func:`read_labels` returns them). The
    counts are in ``result.attrs["labels"]``: ``joined`` (window rows with a label),
    ``unjoined`` (without) and ``unmatched`` (labels of no window row).

    Raises:
        WindowError: The window has a ``label`` column of its own (an input named so), or a
            side lacks ``request_id``.
    """
    for name, frame in (("window", window), ("labels", labels)):
        if "request_id" not in frame.columns:
            raise WindowError(f"join_labels: the {name} has no column 'request_id'")
    clash = [c for c in ("label", "labeled_at") if c in window.columns]
    if clash:
        raise WindowError(f"join_labels: the window already has column(s) {clash}")
    right = labels[["request_id", "label", "labeled_at"]].drop_duplicates("request_id", keep="last")
    right = right.assign(request_id=right["request_id"].astype("string"))
    left = window.assign(request_id=window["request_id"].astype("string"))
    joined = left.merge(right, on="request_id", how="left", validate="many_to_one")
    has = joined["labeled_at"].notna()
    ids = set(left["request_id"].dropna())
    joined.attrs["labels"] = {
        "joined": int(has.sum()),
        "unjoined": int((~has).sum()),
        "unmatched": int((~right["request_id"].isin(ids)).sum()),
    }
    return joined
