"""read_window: the captured traffic of one model over a window of whole hours, as a dataset.

Reads the hour partitions the serving image captured (``components/lib/capture_layout.py``)
for ``[window_end - window_hours, window_end)``, keeps the rows whose time (event time,
else receive time) is in the window (and of one model version when asked), and writes them
as Parquet in time order: what validate_data reads with ``data_name="serving"`` and the
monitoring step scores. A window with fewer than ``min_rows`` rows is not an error: it
says so (``enough_rows`` false) and the pipeline decides nothing on it.
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime, timedelta

import pandas as pd

from components.lib import capture_layout as layout
from components.lib import window as window_mod

log = logging.getLogger("loopline.read_window")

FORMAT = "parquet"


class ReadWindowError(ValueError):
    """An argument or captured data the window cannot be read from; the message names it."""


def bounds(window_end: str, window_hours: int, now: datetime | None = None) -> tuple:
    """(start, end) of the window: ``window_end`` (ISO, a whole UTC hour; empty: the current
    hour, floored) and ``window_hours`` before it."""
    if isinstance(window_hours, bool) or not isinstance(window_hours, int) or window_hours < 1:
        raise ReadWindowError(f"window_hours must be a whole number >= 1, got {window_hours!r}")
    if window_hours > layout.MAX_WINDOW_HOURS:
        raise ReadWindowError(
            f"window_hours {window_hours} is more than {layout.MAX_WINDOW_HOURS} (a year)"
        )
    try:
        end = (
            layout.parse_hour(window_end)
            if window_end.strip()
            else layout.floor_hour(now or datetime.now(UTC))
        )
    except ValueError as exc:
        raise ReadWindowError(f"window_end: {exc}") from exc
    return end - timedelta(hours=window_hours), end


def write_dataset(frame: pd.DataFrame, path: str) -> None:
    """``frame`` as Parquet at ``path`` (string columns as Arrow ``string``: TFDV reads no
    ``large_string``); a frame without rows keeps its columns and types."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)
    fields = [
        pa.field(f.name, pa.string()) if pa.types.is_large_string(f.type) else f
        for f in table.schema
    ]
    table = table.cast(pa.schema(fields))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    with open(path, "wb") as fh:
        fh.write(buffer.getvalue())


def summarize(frame: pd.DataFrame, start: datetime, end: datetime) -> dict:
    """Rows per hour (every hour of the window) and rows per model version."""
    hours = {layout.hour_label(h): 0 for h in layout.window_hours(start, end)}
    if len(frame):
        when = frame["received_at"]
        if "event_time" in frame.columns:
            when = frame["event_time"].fillna(when)
        for label, count in when.dt.strftime(layout.HOUR_FORMAT).value_counts().items():
            hours[label] = int(count)
    versions = {}
    if len(frame) and "model_version" in frame.columns:
        counts = frame["model_version"].astype("string").fillna("(none)").value_counts()
        versions = {str(k): int(v) for k, v in sorted(counts.items())}
    return {"rows_per_hour": hours, "versions": versions}


def run(
    model_name: str,
    capture_uri: str,
    window_end: str,
    window_hours: int,
    model_version: str,
    s3_endpoint: str,
    s3_secure: bool,
    min_rows: int,
    window_path: str,
    now: datetime | None = None,
) -> dict:
    """Reads the window and writes it to ``window_path``; returns what the outputs carry.

    Raises:
        ReadWindowError: A bad argument, or captured data that cannot be read (named).
        components.lib.storage.StorageError: No endpoint or no credentials.
    """
    try:
        layout.check_model_name(model_name)
    except ValueError as exc:
        raise ReadWindowError(str(exc)) from exc
    if min_rows < 0:
        raise ReadWindowError(f"min_rows must be >= 0, got {min_rows}")
    start, end = bounds(window_end, window_hours, now)
    try:
        bucket, prefix = window_mod.split_uri(capture_uri)
    except window_mod.WindowError as exc:
        raise ReadWindowError(str(exc)) from exc
    window_id = layout.window_id(model_name, start, end)
    log.info(
        "window %s: s3://%s/%s, %d hour partitions%s",
        window_id,
        bucket,
        layout.model_prefix(prefix, model_name),
        window_hours,
        f", model version {model_version}" if model_version else "",
    )
    client = window_mod.client(s3_endpoint, s3_secure, what="capture_uri")
    try:
        frame = window_mod.read_window(
            client,
            bucket,
            prefix,
            model_name,
            start,
            end,
            model_version=model_version or None,
        )
    except window_mod.WindowError as exc:
        raise ReadWindowError(f"capture_uri {capture_uri!r}: {exc}") from exc
    write_dataset(frame, window_path)
    seen = summarize(frame, start, end)
    rows = len(frame)
    enough = rows >= min_rows
    log.info(
        "window %s: %d rows (%s min_rows %d), versions %s",
        window_id,
        rows,
        ">=" if enough else "<",
        min_rows,
        seen["versions"] or "none",
    )
    return {
        "model_name": model_name,
        "capture_uri": capture_uri,
        "window_id": window_id,
        "start": start.isoformat(),
        "end": end.isoformat(),
        "window_hours": int((end - start) / timedelta(hours=1)),
        "model_version": model_version,
        "rows": rows,
        "min_rows": min_rows,
        "enough_rows": enough,
        "columns": [str(c) for c in frame.columns],
        "format": FORMAT,
        **seen,
    }


def markdown(result: dict) -> str:
    """The window's summary for the KFP UI."""
    rows, minimum = result["rows"], result["min_rows"]
    if result["enough_rows"]:
        verdict = f"**{rows:,} rows: enough to judge (min_rows {minimum:,}).**"
    elif rows == 0:
        verdict = (
            f"**No rows in this window (min_rows {minimum:,}): nothing was captured for it. "
            "Too few rows to decide anything; the window says so instead of deciding.**"
        )
    else:
        verdict = (
            f"**Too few rows to decide: {rows:,} < min_rows {minimum:,}. "
            "The window says so instead of deciding.**"
        )
    version = result["model_version"] or "all versions"
    lines = [
        f"# Captured window `{result['window_id']}`",
        "",
        f"- model: `{result['model_name']}` ({version}); capture: `{result['capture_uri']}`",
        f"- window: [{result['start']}, {result['end']}), {result['window_hours']} hours",
        "",
        verdict,
        "",
    ]
    versions = result["versions"]
    if versions:
        lines += ["| model version | rows |", "|---|---:|"]
        lines += [f"| `{v}` | {n:,} |" for v, n in versions.items()]
        lines.append("")
    hours = result["rows_per_hour"]
    empty = sum(1 for n in hours.values() if n == 0)
    lines.append(f"{len(hours) - empty} of {len(hours)} hours have rows.")
    lines += ["", "| hour (UTC) | rows |", "|---|---:|"]
    lines += [f"| {hour} | {n:,} |" for hour, n in hours.items()]
    return "\n".join(lines) + "\n"
