"""Ingest: read a data snapshot, cut an optional time window, split it, write Parquet.

Plain Python, no kfp import: ``component.py`` calls :func:`run`, tests call it directly.

The snapshot is a CSV or Parquet file at a local path, a ``file://`` URI or an
``s3://bucket/key`` URI (read with the MinIO client; credentials come from the
``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` environment variables, which the
pipeline fills from a Kubernetes Secret on a cluster).

Each split is written as one Parquet file whose sha256 is the split's data version:
the same snapshot, window and split rule give byte-identical files and so the same hash.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import tempfile
from dataclasses import dataclass, field
from urllib.parse import urlparse

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from components.lib import artifacts, storage, tables

log = logging.getLogger("loopline.ingest")

SPLITS = ("train", "eval", "holdout")
SPLIT_METHODS = ("time", "hash")
FORMATS = tables.FORMATS
_FRACTION_TOLERANCE = 1e-6


class IngestError(ValueError):
    """Bad input to ingest; the message names the cause and the field or file."""


@dataclass(frozen=True)
class SplitRule:
    """How rows are divided into train / eval / holdout.

    ``method="time"``: rows sorted by ``column`` (stable), the earliest ``train``
    fraction to train, the next to eval, the latest to holdout (a fixed long-term
    holdout of the newest data). Rows that share a time value never straddle two
    splits. ``method="hash"``: each row goes to the split that a sha256 of its
    ``column`` value falls in, so a key always lands in the same split whatever
    else the snapshot holds.
    """

    method: str
    column: str
    train: float
    eval: float
    holdout: float

    def validate(self) -> None:
        if self.method not in SPLIT_METHODS:
            raise IngestError(
                f"split_method {self.method!r} is not supported; use one of {', '.join(SPLIT_METHODS)}"
            )
        if not self.column:
            field_name = "time_column" if self.method == "time" else "key_column"
            raise IngestError(f"split_method {self.method!r} needs {field_name}, which is empty")
        for name in SPLITS:
            value = getattr(self, name)
            if (
                not (isinstance(value, int | float) and math.isfinite(value))
                or value < 0
                or value > 1
            ):
                raise IngestError(f"{name}_fraction must be a number in [0, 1], got {value!r}")
        if self.train <= 0 or self.eval <= 0:
            raise IngestError(
                f"train_fraction and eval_fraction must be > 0, got {self.train} and {self.eval}"
            )
        total = self.train + self.eval + self.holdout
        if abs(total - 1.0) > _FRACTION_TOLERANCE:
            raise IngestError(
                "train_fraction + eval_fraction + holdout_fraction must sum to 1, got "
                f"{self.train} + {self.eval} + {self.holdout} = {total:g}"
            )

    def as_dict(self) -> dict:
        return {
            "method": self.method,
            "column": self.column,
            "fractions": {name: getattr(self, name) for name in SPLITS},
        }


def split_rule_for(
    split_method: str,
    time_column: str,
    key_column: str,
    train_fraction: float,
    eval_fraction: float,
    holdout_fraction: float,
) -> SplitRule:
    """The split rule that ingest's parameters describe, checked; names a contradictory one.

    A time split orders by ``time_column``, a hash split hashes ``key_column``.
    ``time_column`` may be set with a hash split (it is the window's column too), but a
    ``key_column`` with a time split would be silently ignored, so it is refused.
    """
    if split_method == "time" and key_column:
        raise IngestError(
            f"key_column {key_column!r} is set but split_method is 'time', which ignores it; "
            "clear key_column or set split_method to 'hash'"
        )
    rule = SplitRule(
        method=split_method,
        column=time_column if split_method == "time" else key_column,
        train=train_fraction,
        eval=eval_fraction,
        holdout=holdout_fraction,
    )
    rule.validate()
    return rule


@dataclass(frozen=True)
class Window:
    """A half-open time window ``start <= column < end``; empty bounds are open."""

    column: str = ""
    start: str = ""
    end: str = ""

    @property
    def active(self) -> bool:
        return bool(self.start or self.end)

    def validate(self) -> None:
        """Checks what can be checked without the data: a column, bound formats, their order."""
        if not self.active:
            return
        if not self.column:
            raise IngestError("window_start / window_end are set but time_column is empty")
        bounds = {
            name: _parse_bound(value, name)
            for name, value in (("window_start", self.start), ("window_end", self.end))
            if value
        }
        if len(bounds) == 2:
            start, end = bounds["window_start"], bounds["window_end"]
            if isinstance(start, float) != isinstance(end, float):
                raise IngestError(
                    f"window_start {self.start!r} and window_end {self.end!r} must both be "
                    "numbers or both timestamps"
                )
            if start >= end:
                raise IngestError(
                    f"window_start {self.start!r} is not before window_end {self.end!r}: "
                    "the window [start, end) would be empty"
                )

    def as_dict(self) -> dict:
        return {"column": self.column, "start": self.start, "end": self.end} if self.active else {}


@dataclass
class SplitResult:
    name: str
    path: str
    rows: int
    columns: list[str]
    sha256: str
    metadata: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- reading


def _local_path(uri: str) -> str | None:
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return parsed.path
    if parsed.scheme == "":
        return uri
    return None


def _detect_format(uri: str, file_format: str) -> str:
    if file_format not in FORMATS:
        raise IngestError(
            f"file_format {file_format!r} is not supported; use one of {', '.join(FORMATS)}"
        )
    if file_format != "auto":
        return file_format
    fmt = tables.format_from_name(uri)
    if fmt is None:
        raise IngestError(
            f"source_uri {uri!r}: cannot tell the format from the name; set file_format to csv or parquet"
        )
    return fmt


def _parse(path: str, uri: str, fmt: str) -> pd.DataFrame:
    table = tables.read_table(path, fmt, what="source_uri", name=uri, error=IngestError)
    return table.to_pandas()


def read_snapshot(
    uri: str, file_format: str = "auto", s3_endpoint: str = "", s3_secure: bool = False
) -> tuple[pd.DataFrame, str]:
    """Reads a snapshot; returns the frame and the sha256 of the source bytes."""
    if not uri:
        raise IngestError("source_uri is empty")
    fmt = _detect_format(uri, file_format)
    local = _local_path(uri)
    if local is not None:
        if not os.path.exists(local):
            raise IngestError(f"source_uri {uri!r} not found (no file at {local})")
        if os.path.isdir(local):
            raise IngestError(f"source_uri {uri!r} is a directory; name one file")
        if not os.access(local, os.R_OK):
            raise IngestError(f"source_uri {uri!r} is not readable (permission denied)")
        return _parse(local, uri, fmt), artifacts.sha256_file(local)
    if not storage.is_remote(uri):
        scheme = urlparse(uri).scheme
        raise IngestError(
            f"source_uri {uri!r}: scheme {scheme!r} not supported (use a path, file:// or s3://)"
        )
    with tempfile.TemporaryDirectory() as tmp:
        dest = os.path.join(tmp, "snapshot")
        log.info("downloading %s from %s", uri, s3_endpoint)
        try:
            storage.fetch(uri, dest, s3_endpoint, s3_secure, what="source_uri")
        except storage.StorageError as exc:
            raise IngestError(str(exc)) from exc
        return _parse(dest, uri, fmt), artifacts.sha256_file(dest)


# --------------------------------------------------------------------------- window and split


def _require_column(df: pd.DataFrame, column: str, field_name: str) -> pd.Series:
    if column not in df.columns:
        raise IngestError(
            f"{field_name} {column!r} is not a column of the snapshot; columns: {', '.join(map(str, df.columns))}"
        )
    series = df[column]
    nulls = int(series.isna().sum())
    if nulls:
        raise IngestError(f"{field_name} {column!r} has {nulls} null values; every row needs one")
    return series


def _as_time(series: pd.Series, column: str) -> pd.Series:
    """Numeric columns compare as numbers, everything else as UTC timestamps."""
    if pd.api.types.is_numeric_dtype(series):
        return series
    if pd.api.types.is_datetime64_any_dtype(series):
        return series.dt.tz_localize("UTC") if series.dt.tz is None else series.dt.tz_convert("UTC")
    try:
        return pd.to_datetime(series, utc=True)
    except (ValueError, TypeError) as exc:
        raise IngestError(
            f"time column {column!r} is neither numeric nor parsable as timestamps: {exc}"
        ) from exc


def _parse_bound(value: str, name: str) -> float | pd.Timestamp:
    """A window bound as a number, else as a UTC timestamp; names the bound when it is neither."""
    try:
        number = float(value)
    except ValueError:
        pass
    else:
        if not math.isfinite(number):
            raise IngestError(f"{name} {value!r} is not a finite number")
        return number
    try:
        stamp = pd.Timestamp(value)
    except ValueError as exc:
        raise IngestError(
            f"{name} {value!r} is neither a number nor a timestamp (e.g. 2011-06-01T00:00:00Z)"
        ) from exc
    if pd.isna(stamp):
        raise IngestError(f"{name} {value!r} is neither a number nor a timestamp")
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _bound(value: str, series: pd.Series, name: str):
    bound = _parse_bound(value, name)
    numeric = pd.api.types.is_numeric_dtype(series)
    if numeric and not isinstance(bound, float):
        raise IngestError(f"{name} {value!r} is not a number, but the time column is numeric")
    if not numeric and isinstance(bound, float):
        raise IngestError(f"{name} {value!r} is a number, but the time column holds timestamps")
    return bound


def apply_window(df: pd.DataFrame, window: Window) -> pd.DataFrame:
    """Keeps the rows with ``start <= column < end``."""
    if not window.active:
        return df
    window.validate()
    times = _as_time(_require_column(df, window.column, "time_column"), window.column)
    mask = pd.Series(True, index=df.index)
    if window.start:
        mask &= times >= _bound(window.start, times, "window_start")
    if window.end:
        mask &= times < _bound(window.end, times, "window_end")
    kept = df[mask.to_numpy()]
    if kept.empty:
        raise IngestError(
            f"window {window.column} in [{window.start or '-inf'}, {window.end or '+inf'}) selects no rows; "
            f"the snapshot's {window.column} spans {times.min()} .. {times.max()}"
        )
    return kept


def _time_split(df: pd.DataFrame, rule: SplitRule) -> dict[str, pd.DataFrame]:
    times = _as_time(_require_column(df, rule.column, "time_column"), rule.column)
    order = np.argsort(times.to_numpy(), kind="stable")
    ordered = df.iloc[order]
    sorted_times = times.to_numpy()[order]
    n = len(ordered)
    cuts = []
    for cumulative in (rule.train, rule.train + rule.eval):
        cut = min(int(round(cumulative * n)), n)
        # Move the cut to the start of its tie group: one time value, one split.
        if 0 < cut < n:
            cut = int(np.searchsorted(sorted_times, sorted_times[cut], side="left"))
        cuts.append(cut)
    parts = {
        "train": ordered.iloc[: cuts[0]],
        "eval": ordered.iloc[cuts[0] : cuts[1]],
        "holdout": ordered.iloc[cuts[1] :],
    }
    if rule.holdout == 0 and len(parts["holdout"]):
        parts["eval"] = ordered.iloc[cuts[0] :]
        parts["holdout"] = ordered.iloc[0:0]
    return parts


def _hash_unit(values: pd.Series) -> np.ndarray:
    """Maps each value to [0, 1) by the first 8 bytes of sha256(str(value))."""
    out = np.empty(len(values), dtype=np.float64)
    for i, value in enumerate(values.astype(str).to_numpy()):
        digest = hashlib.sha256(value.encode("utf-8")).digest()
        out[i] = int.from_bytes(digest[:8], "big") / 2**64
    return out


def _hash_split(df: pd.DataFrame, rule: SplitRule) -> dict[str, pd.DataFrame]:
    keys = _require_column(df, rule.column, "key_column")
    unique = pd.Series(keys.unique())
    unit = pd.Series(_hash_unit(unique), index=unique.to_numpy())
    position = keys.map(unit).to_numpy()
    bounds = (rule.train, rule.train + rule.eval)
    return {
        "train": df[position < bounds[0]],
        "eval": df[(position >= bounds[0]) & (position < bounds[1])],
        "holdout": df[position >= bounds[1]],
    }


def split(df: pd.DataFrame, rule: SplitRule) -> dict[str, pd.DataFrame]:
    """Divides the rows into train / eval / holdout by ``rule``."""
    rule.validate()
    parts = _time_split(df, rule) if rule.method == "time" else _hash_split(df, rule)
    for name in ("train", "eval"):
        if parts[name].empty:
            raise IngestError(
                f"the {name} split is empty ({len(df)} rows, {rule.method} split on {rule.column!r}, "
                f"{name}_fraction={getattr(rule, name)}); use more data or other fractions"
            )
    return parts


# --------------------------------------------------------------------------- writing


def write_parquet(df: pd.DataFrame, path: str) -> str:
    """Writes ``df`` deterministically and returns the sha256 of the file."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    table = pa.Table.from_pandas(df.reset_index(drop=True), preserve_index=False)
    pq.write_table(table, path, compression="zstd", row_group_size=1 << 20)
    return artifacts.sha256_file(path)


def run(
    source_uri: str,
    outputs: dict[str, str],
    split_rule: SplitRule,
    window: Window | None = None,
    file_format: str = "auto",
    s3_endpoint: str = "",
    s3_secure: bool = False,
) -> dict[str, SplitResult]:
    """Runs ingest end to end.

    Args:
        source_uri: Local path, ``file://`` or ``s3://bucket/key`` of a CSV or Parquet file.
        outputs: Split name (``train``, ``eval``, ``holdout``) to the path to write it to.
        split_rule: How to divide the rows.
        window: Optional time window applied before splitting.
        file_format: ``auto`` (by extension), ``csv`` or ``parquet``.
        s3_endpoint: ``host:port`` of the S3 / MinIO endpoint for ``s3://`` sources.
        s3_secure: Use TLS to reach ``s3_endpoint`` (default off, as Kubeflow's in-cluster MinIO).

    Returns:
        Split name to :class:`SplitResult` (path, rows, columns, sha256, artifact metadata).

    Raises:
        IngestError: On any bad input, before anything is written; on a bad parameter (split
            rule, window, file format), before the snapshot is read.
    """
    window = window or Window()
    missing = [name for name in SPLITS if name not in outputs]
    if missing:
        raise IngestError(f"outputs lacks a path for: {', '.join(missing)}")
    # Every parameter that can be checked without the data is checked before reading it.
    if not source_uri:
        raise IngestError("source_uri is empty")
    split_rule.validate()
    window.validate()
    _detect_format(source_uri, file_format)
    log.info("reading %s", source_uri)
    df, source_sha = read_snapshot(source_uri, file_format, s3_endpoint, s3_secure)
    log.info("read %d rows x %d columns (source sha256 %s)", len(df), df.shape[1], source_sha[:12])
    windowed = apply_window(df, window)
    if window.active:
        log.info("window %s kept %d of %d rows", window.as_dict(), len(windowed), len(df))
    parts = split(windowed, split_rule)
    results = {}
    for name in SPLITS:
        part = parts[name]
        sha = write_parquet(part, outputs[name])
        meta = {
            "split": name,
            "rows": int(len(part)),
            "columns": [str(c) for c in part.columns],
            "num_columns": int(part.shape[1]),
            "sha256": sha,
            "format": "parquet",
            "source_uri": source_uri,
            "source_sha256": source_sha,
            "source_rows": int(len(df)),
            "window": window.as_dict(),
            "split_rule": split_rule.as_dict(),
        }
        results[name] = SplitResult(name, outputs[name], meta["rows"], meta["columns"], sha, meta)
        log.info("%-7s %6d rows  sha256 %s", name, meta["rows"], sha)
    return results


def markdown_report(results: dict[str, SplitResult]) -> str:
    """A Markdown summary of one ingest run, for the KFP UI."""
    any_meta = next(iter(results.values())).metadata
    rule = any_meta["split_rule"]
    lines = [
        "# Ingest",
        "",
        f"Source: `{any_meta['source_uri']}` ({any_meta['source_rows']} rows, "
        f"sha256 `{any_meta['source_sha256'][:16]}`)",
        f"Window: {any_meta['window'] or 'none'}",
        f"Split: {rule['method']} on `{rule['column']}`, fractions {rule['fractions']}",
        "",
        "| split | rows | columns | sha256 (data version) |",
        "|---|---:|---:|---|",
    ]
    for res in results.values():
        lines.append(f"| {res.name} | {res.rows} | {len(res.columns)} | `{res.sha256}` |")
    return "\n".join(lines) + "\n"
