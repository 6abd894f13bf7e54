"""Where served traffic and its labels live in the object store: one layout for every reader.

The serving image writes the capture (``components/serving/capture.py``); the monitoring
window (``window.py``, the ``read_window`` component), validate_data (``data_name="serving"``)
and the ``loopline labels`` CLI read it or write beside it. Stdlib only: the serving, TFDV
and pipeline images all import it.

Captured predictions, one Hive-style partition per model and hour (UTC)::

    <capture prefix>/model=<model name>/hour=<YYYY-MM-DDTHH>/part-<utc time>-<pid>-<uuid8>.parquet

Labels that arrive later, one partition per model and day (UTC) of arrival::

    <capture prefix>/labels/model=<model name>/date=<YYYY-MM-DD>/part-<uuid>.parquet

with the columns ``request_id`` (string), ``label`` (float64 or string) and ``labeled_at``
(timestamp, UTC). They join the capture on ``request_id``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

# Columns the capture writes itself; an input column with one of these names is captured
# as ``input_<name>``. Every other column of a capture file is a model input.
RESERVED = ("request_id", "received_at", "event_time", "model_name", "model_version", "prediction")
# The columns of a labels file.
LABEL_COLUMNS = ("request_id", "label", "labeled_at")
# The entity a request named when the serving image fetched its inputs from the feature
# store (``--feature_server_url``): captured beside the row, not a model input. The feature
# repositories' entity keys (components/lib/feature_repos; a test keeps the two equal).
ENTITY_COLUMNS = ("city",)
# Columns a joined window may carry that are not model inputs (validate_data drops them
# before statistics in the serving environment).
NOT_INPUTS = RESERVED + ("label", "labeled_at") + ENTITY_COLUMNS
# The labels live below the capture prefix, in this folder.
LABELS_FOLDER = "labels"

HOUR_FORMAT = "%Y-%m-%dT%H"
DATE_FORMAT = "%Y-%m-%d"
MAX_WINDOW_HOURS = 24 * 366


def check_model_name(model_name: str) -> str:
    """A model name that can name a partition (non-empty, no ``/``, ``\\`` or ``=``)."""
    if not model_name or any(c in model_name for c in "/=\\") or model_name in (".", ".."):
        raise ValueError(f"model_name {model_name!r}: must be non-empty, without / \\ or =")
    return model_name


def utc(value: datetime) -> datetime:
    """``value`` in UTC (a naive datetime is taken as UTC)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def floor_hour(value: datetime) -> datetime:
    return utc(value).replace(minute=0, second=0, microsecond=0)


def parse_hour(text: str) -> datetime:
    """An ISO 8601 time (``2011-07-02T00``, ``2011-07-02T00:00:00Z``, with an offset or
    without: UTC) on a whole hour, in UTC.

    Raises:
        ValueError: Not a time, or not on a whole hour; the message quotes it.
    """
    raw = text.strip()
    try:
        if len(raw) == 13 and raw[10] == "T":  # YYYY-MM-DDTHH, the partition's own form
            value = datetime.strptime(raw, HOUR_FORMAT)
        else:
            value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"{text!r} is not an ISO 8601 time (e.g. 2011-07-02T00:00Z)") from exc
    value = utc(value)
    if value != floor_hour(value):
        raise ValueError(f"{text!r} is not on a whole hour (minutes and seconds must be 0)")
    return value


def hour_label(value: datetime) -> str:
    """``YYYY-MM-DDTHH`` of the hour ``value`` falls in (UTC)."""
    return utc(value).strftime(HOUR_FORMAT)


def model_prefix(prefix: str, model_name: str) -> str:
    """``<prefix>/model=<name>/`` (the capture's folder of one model)."""
    return _join(prefix, f"model={check_model_name(model_name)}") + "/"


def hour_partition(prefix: str, model_name: str, hour: datetime) -> str:
    """``<prefix>/model=<name>/hour=<YYYY-MM-DDTHH>/``: the folder of one captured hour."""
    return _join(model_prefix(prefix, model_name), f"hour={hour_label(hour)}") + "/"


def window_hours(start: datetime, end: datetime) -> list[datetime]:
    """The whole hours of the window ``[start, end)``, in order (both on whole hours).

    Raises:
        ValueError: A bound not on a whole hour, ``end`` not after ``start``, or a window
            longer than :data:`MAX_WINDOW_HOURS`.
    """
    start, end = utc(start), utc(end)
    for name, value in (("start", start), ("end", end)):
        if value != floor_hour(value):
            raise ValueError(f"window {name} {value.isoformat()} is not on a whole hour")
    if end <= start:
        raise ValueError(f"window end {end.isoformat()} is not after its start {start.isoformat()}")
    count = int((end - start) / timedelta(hours=1))
    if count > MAX_WINDOW_HOURS:
        raise ValueError(f"window of {count} hours is longer than {MAX_WINDOW_HOURS}")
    return [start + timedelta(hours=i) for i in range(count)]


def window_partitions(prefix: str, model_name: str, start: datetime, end: datetime) -> list[str]:
    """The partition keys (folders) of the window ``[start, end)``: one per whole hour."""
    return [hour_partition(prefix, model_name, h) for h in window_hours(start, end)]


def window_id(model_name: str, start: datetime, end: datetime) -> str:
    """``<model>/<start>/<end>`` with the bounds as ``YYYY-MM-DDTHH:MMZ``."""
    fmt = "%Y-%m-%dT%H:%MZ"
    return f"{model_name}/{utc(start).strftime(fmt)}/{utc(end).strftime(fmt)}"


def labels_prefix(capture_prefix: str) -> str:
    """The labels' prefix of a capture prefix: ``<capture prefix>/labels``."""
    return _join(capture_prefix, LABELS_FOLDER)


def labels_model_prefix(labels_prefix_: str, model_name: str) -> str:
    """``<labels prefix>/model=<name>/``."""
    return _join(labels_prefix_, f"model={check_model_name(model_name)}") + "/"


def labels_partition(labels_prefix_: str, model_name: str, day: datetime) -> str:
    """``<labels prefix>/model=<name>/date=<YYYY-MM-DD>/``."""
    return (
        _join(labels_model_prefix(labels_prefix_, model_name), f"date={utc(day):{DATE_FORMAT}}")
        + "/"
    )


def partition_value(key: str, name: str) -> str | None:
    """The value of ``name=`` in an object key (``hour`` -> ``2011-07-02T00``), or None."""
    for part in key.split("/"):
        if part.startswith(f"{name}="):
            return part[len(name) + 1 :]
    return None


def _join(*parts: str) -> str:
    return "/".join(p.strip("/") for p in parts if p and p.strip("/"))
