"""Traffic capture: every prediction the server makes, written to the object store as Parquet.

The server calls :meth:`Capture.record` on the request path; it only appends to an
in-memory buffer under a lock (no I/O, never raises). A background thread
(:meth:`Capture.start`) turns the buffer into Parquet files, one per hour partition per
write, and puts them under::

    <prefix>/model=<model_name>/hour=<YYYY-MM-DDTHH>/part-<utc time>-<pid>-<uuid8>.parquet

The hour is cut on the client's event time when it sent one, else on the server's receive
time. A file that cannot be put stays first in line (same name, same bytes) and is retried
with a doubling backoff; rows that would overflow ``max_pending_rows`` are dropped and
counted. See README_capture.md for the format, the guarantees and the metrics.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import math
import os
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from components.lib import capture_layout
from components.lib.capture_layout import RESERVED
from components.lib.storage import REMOTE_SCHEMES, S3_SECRET_KEYS

log = logging.getLogger("loopline.serving.capture")

# RESERVED (components/lib/capture_layout.py): the columns the capture writes itself; an
# input column with one of these names is written as ``input_<name>``.
MAX_BACKOFF_SECONDS = 30.0
PREDICTION_TYPES = ("float", "string", "auto")
COLUMN_TYPES = {"float": pa.float64(), "int": pa.int64(), "string": pa.string()}
_TS = pa.timestamp("ms", tz="UTC")
_MS_PER_HOUR = 3_600_000
# Event times outside these years are taken as malformed (e.g. milliseconds sent as seconds).
_MIN_MS = int(datetime(1970, 1, 1, tzinfo=UTC).timestamp() * 1000)
_MAX_MS = int(datetime(9999, 1, 1, tzinfo=UTC).timestamp() * 1000)
_REJECT_LOG_SECONDS = 60.0


# --- metrics (prometheus_client is optional: the dev venv has none) ---------------------


def _make_metrics() -> dict[str, object]:
    import prometheus_client as prom

    labels = ("model", "version")  # as every other loopline_ series (metrics.py)
    return {
        "rows": prom.Counter(
            "loopline_capture_rows_total", "Prediction rows recorded for capture.", labels
        ),
        "written": prom.Counter(
            "loopline_capture_rows_written_total",
            "Captured rows written to the object store.",
            labels,
        ),
        "failures": prom.Counter(
            "loopline_capture_write_failures_total",
            "Failed capture writes (each is retried).",
            labels,
        ),
        "dropped": prom.Counter(
            "loopline_capture_rows_dropped_total",
            "Captured rows given up: buffer full, malformed input, or unwritten at close.",
            labels,
        ),
        "pending": prom.Gauge(
            "loopline_capture_rows_pending", "Captured rows not yet written.", labels
        ),
    }


METRICS = _make_metrics()


# --- the buffer's units -----------------------------------------------------------------


@dataclass
class _Chunk:
    """One record() call, copied: the caller may reuse its arrays."""

    columns: dict[str, list]
    predictions: list
    request_ids: list
    received_at: float
    event_times: list | None

    @property
    def rows(self) -> int:
        return len(self.request_ids)


@dataclass
class _Upload:
    """One Parquet file to put; its name is fixed once, so a retry rewrites the same object."""

    name: str
    data: bytes
    rows: int


def _as_list(values) -> list:
    if isinstance(values, str | bytes) or not hasattr(values, "__len__"):
        raise TypeError(f"expected a sequence, got {type(values).__name__}")
    tolist = getattr(values, "tolist", None)  # numpy arrays, pandas Series
    return tolist() if callable(tolist) else list(values)


def _to_ms(value) -> int | None:
    """Epoch seconds (int, float), a datetime (naive = UTC) or an ISO 8601 string -> epoch ms.
    None, NaN and anything malformed -> None."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.timestamp()
    seconds = float(value)
    if math.isnan(seconds):
        return None
    ms = round(seconds * 1000)
    if not _MIN_MS <= ms < _MAX_MS:
        raise ValueError(f"time {value!r} is out of range (epoch seconds expected)")
    return ms


def _hour_label(hour_index: int) -> str:
    return capture_layout.hour_label(datetime.fromtimestamp(hour_index * 3600, tz=UTC))


def _input_array(values: list, type_: pa.DataType | None) -> pa.Array:
    if type_ is not None:
        return pa.array(values, type=type_, from_pandas=True)
    try:
        return pa.array(values, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        # mixed types (e.g. numbers and text): keep every value, as text
        return pa.array([None if v is None else str(v) for v in values], type=pa.string())


class Capture:
    """Batches predictions and writes them as hour-partitioned Parquet, off the request path.

    Args:
        uri: ``s3://bucket/prefix`` (or ``minio://``) or a local folder.
        model_name, model_version: Written in every row; ``model_name`` also names the partition.
        endpoint, secure: ``host:port`` of the S3 API and whether to use TLS. Credentials come
            from the environment variables of ``components.lib.storage.S3_SECRET_KEYS``.
        batch_rows: Write once this many rows are pending ...
        flush_seconds: ... or this long after the last write, whichever comes first.
        max_pending_rows: Rows recorded but not written, at most; beyond it rows are dropped.
        drop_columns: Input columns never captured (removed in ``record``).
        hash_columns: Input columns written as ``sha256(hash_salt + str(value))`` (hex).
        hash_salt: The salt of ``hash_columns``.
        retry_seconds: The first backoff after a failed write; it doubles, up to 30 s.
        prediction_type: ``"float"`` (regressors, scores), ``"string"`` (class labels) or
            ``"auto"`` (float when every prediction of a write is a number, else string).
        column_types: Optional ``{column: "float" | "int" | "string"}``: fixes an input
            column's type in every file (else each write infers it from its values).
        io_timeout: Seconds to connect to and read from the S3 endpoint per request.
    """

    def __init__(
        self,
        *,
        uri: str,
        model_name: str,
        model_version: str,
        endpoint: str = "",
        secure: bool = False,
        batch_rows: int = 1000,
        flush_seconds: float = 5.0,
        max_pending_rows: int = 200_000,
        drop_columns: Sequence[str] = (),
        hash_columns: Sequence[str] = (),
        hash_salt: str = "",
        retry_seconds: float = 1.0,
        prediction_type: str = "float",
        column_types: Mapping[str, str] | None = None,
        io_timeout: float = 10.0,
    ) -> None:
        capture_layout.check_model_name(model_name)
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"prediction_type {prediction_type!r}: one of {PREDICTION_TYPES}")
        overlap = set(drop_columns) & set(hash_columns)
        if overlap:
            raise ValueError(f"columns both dropped and hashed: {sorted(overlap)}")
        unknown = {k: v for k, v in (column_types or {}).items() if v not in COLUMN_TYPES}
        if unknown:
            raise ValueError(f"column_types {unknown}: each one of {sorted(COLUMN_TYPES)}")
        if batch_rows < 1 or max_pending_rows < 1 or flush_seconds <= 0 or retry_seconds <= 0:
            raise ValueError("batch_rows, max_pending_rows, flush_seconds, retry_seconds: > 0")
        parsed = urlparse(uri)
        self._remote = parsed.scheme in REMOTE_SCHEMES
        if self._remote:
            if not parsed.netloc:
                raise ValueError(f"capture uri {uri!r}: s3://bucket/prefix expected")
            if not endpoint:
                raise ValueError(f"capture uri {uri!r} is on s3 but endpoint is empty")
            self._bucket, self._prefix = parsed.netloc, parsed.path.strip("/")
        elif parsed.scheme in ("", "file"):
            self._bucket, self._prefix = "", os.path.abspath(parsed.path if parsed.scheme else uri)
        else:
            raise ValueError(f"capture uri {uri!r}: s3://, minio:// or a local folder expected")
        self.uri = uri
        self.model_name, self.model_version = model_name, model_version
        self._endpoint, self._secure, self._io_timeout = endpoint, secure, io_timeout
        self.batch_rows, self.flush_seconds = batch_rows, flush_seconds
        self.max_pending_rows, self.retry_seconds = max_pending_rows, retry_seconds
        self._drop = frozenset(drop_columns)
        self._hash = frozenset(hash_columns)
        self._salt = hash_salt
        self._prediction_type = prediction_type
        self._types = {k: COLUMN_TYPES[v] for k, v in (column_types or {}).items()}
        self._metrics = {k: m.labels(model_name, model_version) for k, m in METRICS.items()}

        self._cond = threading.Condition(threading.Lock())  # guards everything below
        self._chunks: list[_Chunk] = []
        self._buffer_rows = 0
        self._outbox_rows = 0
        self._flush_requested = False
        self._stopping = False
        self._last_write = time.monotonic()
        self._retry_at = 0.0
        self._stats = dict.fromkeys(
            (
                "rows_recorded",
                "rows_written",
                "rows_dropped",
                "write_failures",
                "files_written",
                "records_rejected",
                "event_times_invalid",
            ),
            0,
        )
        self._last_reject_log = -math.inf
        # Touched by the writer only (one at a time, under _io_lock).
        self._io_lock = threading.Lock()
        self._outbox: list[_Upload] = []
        self._failures_in_streak = 0
        self._backoff = retry_seconds
        self._client = None
        self._thread: threading.Thread | None = None

    # --- the request path ---------------------------------------------------------------

    def record(
        self,
        columns: Mapping[str, Sequence],
        predictions: Sequence,
        request_ids: Sequence[str],
        received_at: float,
        event_times: Sequence[float | None] | None = None,
    ) -> None:
        """Queues one request's rows (row i: ``columns[*][i]``, ``predictions[i]``, ...).

        Never raises and never waits on I/O. Malformed input (lengths that disagree, a
        column that is not a sequence) is dropped, counted and logged.
        """
        try:
            chunk = self._chunk(columns, predictions, request_ids, received_at, event_times)
        except Exception as exc:  # noqa: BLE001 - record() never fails a request
            with contextlib.suppress(Exception):
                self._reject(columns, predictions, request_ids, exc)
            return
        rows = chunk.rows
        if not rows:
            return
        with self._cond:
            self._stats["rows_recorded"] += rows
            self._metrics["rows"].inc(rows)
            if self._buffer_rows + self._outbox_rows + rows > self.max_pending_rows:
                self._stats["rows_dropped"] += rows
                self._metrics["dropped"].inc(rows)
                return
            was_empty = not self._buffer_rows
            self._chunks.append(chunk)
            self._buffer_rows += rows
            self._metrics["pending"].set(self._buffer_rows + self._outbox_rows)
            # the writer sleeps without a deadline while the buffer is empty
            if was_empty or self._buffer_rows >= self.batch_rows:
                self._cond.notify_all()

    def _chunk(self, columns, predictions, request_ids, received_at, event_times) -> _Chunk:
        ids = _as_list(request_ids)
        n = len(ids)
        preds = _as_list(predictions)
        if len(preds) != n:
            raise ValueError(f"{len(preds)} predictions for {n} request ids")
        kept = {}
        for name, values in columns.items():
            name = str(name)
            if name in self._drop:
                continue
            values = _as_list(values)
            if len(values) != n:
                raise ValueError(f"column {name!r} has {len(values)} values for {n} request ids")
            kept[f"input_{name}" if name in RESERVED else name] = values
        events = None
        if event_times is not None:
            events = _as_list(event_times)
            if len(events) != n:
                raise ValueError(f"{len(events)} event times for {n} request ids")
        received = float(received_at)
        if not math.isfinite(received):
            raise ValueError(f"received_at {received_at!r} is not a time")
        return _Chunk(kept, preds, ids, received, events)

    def _reject(self, columns, predictions, request_ids, exc: Exception) -> None:
        rows = 0
        try:
            sequences = [request_ids, predictions, *dict(columns).values()]
        except Exception:  # noqa: BLE001 - columns is not a mapping
            sequences = [request_ids, predictions]
        for seq in sequences:
            if isinstance(seq, str | bytes):
                continue
            try:
                rows = max(rows, len(seq))
            except Exception:  # noqa: BLE001, S112
                continue
        with self._cond:
            self._stats["records_rejected"] += 1
            self._stats["rows_recorded"] += rows
            self._stats["rows_dropped"] += rows
            self._metrics["rows"].inc(rows)
            self._metrics["dropped"].inc(rows)
            now = time.monotonic()
            quiet = now - self._last_reject_log < _REJECT_LOG_SECONDS
            if not quiet:
                self._last_reject_log = now
            rejected = self._stats["records_rejected"]
        if not quiet:
            log.warning(
                "capture of model %s: malformed record dropped (%d rows): %s: %s "
                "(%d rejected records so far; logged at most once a minute)",
                self.model_name,
                rows,
                type(exc).__name__,
                exc,
                rejected,
            )

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Starts the writer thread (in the serving process: threads do not survive a fork)."""
        if self._thread is not None and self._thread.is_alive():
            return
        with self._cond:
            self._stopping = False
        self._thread = threading.Thread(
            target=self._run, name=f"capture-{self.model_name}", daemon=True
        )
        self._thread.start()

    def flush(self, timeout: float = 30.0) -> bool:
        """Writes everything pending now; True when nothing is pending (within ``timeout``)."""
        deadline = time.monotonic() + timeout
        if self._thread is not None and self._thread.is_alive():
            with self._cond:
                self._flush_requested = True
                self._cond.notify_all()
                while self._buffer_rows + self._outbox_rows:
                    left = deadline - time.monotonic()
                    if left <= 0 or not self._thread.is_alive():
                        break
                    self._cond.wait(left)
                return not (self._buffer_rows + self._outbox_rows)
        while True:  # no writer thread: write from here
            self._cycle()
            with self._cond:
                pending = self._buffer_rows + self._outbox_rows
            left = deadline - time.monotonic()
            if not pending or left <= 0:
                return not pending
            time.sleep(min(max(self._retry_at - time.monotonic(), 0.0), left))

    def close(self, timeout: float = 30.0) -> None:
        """Flushes (up to ``timeout``), stops the writer; what is still unwritten is counted
        as dropped and logged."""
        done = self.flush(timeout)
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=max(self._io_timeout, 1.0))
        if not done:
            with self._io_lock, self._cond:
                lost = self._buffer_rows + self._outbox_rows
                self._chunks, self._outbox = [], []
                self._buffer_rows = self._outbox_rows = 0
                self._stats["rows_dropped"] += lost
                self._metrics["dropped"].inc(lost)
                self._metrics["pending"].set(0)
            log.error(
                "capture of model %s closed with %d rows unwritten to %s (dropped)",
                self.model_name,
                lost,
                self.uri,
            )

    @property
    def stats(self) -> dict[str, int]:
        with self._cond:
            return {**self._stats, "rows_pending": self._buffer_rows + self._outbox_rows}

    # --- the writer ---------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    now = time.monotonic()
                    if self._stopping:
                        return
                    if self._outbox_rows:  # retrying: the backoff decides
                        due = self._retry_at
                    elif self._buffer_rows >= self.batch_rows:
                        due = now
                    elif self._buffer_rows:
                        due = self._last_write + self.flush_seconds
                    else:
                        due = math.inf
                    if self._flush_requested or now >= due:
                        self._flush_requested = False
                        break
                    self._cond.wait(None if due == math.inf else due - now)
            try:
                self._cycle()
            except Exception:  # a bug here must not end the capture
                log.exception("capture of model %s: writer error", self.model_name)
                with self._cond:
                    self._retry_at = time.monotonic() + self._backoff
            with self._cond:
                self._cond.notify_all()  # wake flush() waiters

    def _cycle(self) -> None:
        """Puts the files in line (a retry), then what the buffer holds; stops at a failure."""
        with self._io_lock:
            for _ in range(2):
                if not self._outbox:
                    with self._cond:
                        chunks, self._chunks = self._chunks, []
                        self._outbox_rows += self._buffer_rows
                        self._buffer_rows = 0
                        self._last_write = time.monotonic()
                    if not chunks:
                        return
                    try:
                        self._outbox = self._encode(chunks)
                    except Exception:  # a bug: the rows are lost, but counted
                        lost = sum(c.rows for c in chunks)
                        with self._cond:
                            self._outbox_rows -= lost
                            self._stats["rows_dropped"] += lost
                            self._metrics["dropped"].inc(lost)
                        raise
                while self._outbox:
                    upload = self._outbox[0]
                    try:
                        self._put(upload)
                    except Exception as exc:  # noqa: BLE001 - any failure: retry later
                        self._failed(upload, exc)
                        return
                    self._outbox.pop(0)
                    with self._cond:
                        self._outbox_rows -= upload.rows
                        self._stats["rows_written"] += upload.rows
                        self._stats["files_written"] += 1
                        self._metrics["written"].inc(upload.rows)
                        self._metrics["pending"].set(self._buffer_rows + self._outbox_rows)
                if self._failures_in_streak:
                    log.info(
                        "capture of model %s: writing to %s again after %d failed attempts",
                        self.model_name,
                        self.uri,
                        self._failures_in_streak,
                    )
                    self._failures_in_streak = 0
                self._backoff = self.retry_seconds

    def _failed(self, upload: _Upload, exc: Exception) -> None:
        if not self._failures_in_streak:
            log.warning(
                "capture of model %s: cannot write %s (%d rows) to %s: %s: %s; "
                "retrying with backoff (rows stay pending)",
                self.model_name,
                upload.name,
                upload.rows,
                self._endpoint or self.uri,
                type(exc).__name__,
                exc,
            )
        self._failures_in_streak += 1
        with self._cond:
            self._stats["write_failures"] += 1
            self._metrics["failures"].inc()
            self._retry_at = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, MAX_BACKOFF_SECONDS)

    # --- encoding -----------------------------------------------------------------------

    def _encode(self, chunks: list[_Chunk]) -> list[_Upload]:
        """The chunks as one Parquet file per hour; a chunk that cannot be encoded is
        dropped and counted (it must not block the ones behind it)."""
        tables, bad = [], 0
        for chunk in chunks:
            try:
                tables.append(self._table(chunk))
            except Exception as exc:  # noqa: BLE001
                bad += chunk.rows
                log.warning(
                    "capture of model %s: %d rows cannot be encoded, dropped: %s: %s",
                    self.model_name,
                    chunk.rows,
                    type(exc).__name__,
                    exc,
                )
        if bad:
            with self._cond:
                self._outbox_rows -= bad
                self._stats["rows_dropped"] += bad
                self._metrics["dropped"].inc(bad)
        if not tables:
            return []
        table = pa.concat_tables(tables, promote_options="permissive")
        if self._prediction_type == "auto":
            table = self._unify_prediction(table)
        for name, type_ in self._types.items():
            index = table.schema.get_field_index(name)
            if index >= 0 and table.schema.field(index).type != type_:
                table = table.set_column(index, name, table.column(name).cast(type_))
        hours = table.column("_hour")
        table = table.drop_columns(["_hour"])
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        uploads = []
        for hour in pc.unique(hours).to_pylist():
            part = table.filter(pc.equal(hours, hour))
            buffer = io.BytesIO()
            pq.write_table(part, buffer)
            name = "/".join(
                p
                for p in (
                    self._prefix,
                    f"model={self.model_name}",
                    f"hour={_hour_label(hour)}",
                    f"part-{stamp}-{os.getpid()}-{uuid.uuid4().hex[:8]}.parquet",
                )
                if p
            )
            uploads.append(_Upload(name, buffer.getvalue(), part.num_rows))
        return uploads

    def _table(self, chunk: _Chunk) -> pa.Table:
        n = chunk.rows
        received_ms = _to_ms(chunk.received_at)
        events: list[int | None] = [None] * n
        if chunk.event_times is not None:
            invalid = 0
            for i, value in enumerate(chunk.event_times):
                try:
                    events[i] = _to_ms(value)
                except (TypeError, ValueError, OverflowError):
                    invalid += 1
            if invalid:
                with self._cond:
                    self._stats["event_times_invalid"] += invalid
                log.warning(
                    "capture of model %s: %d event times are not times; written as null",
                    self.model_name,
                    invalid,
                )
        hours = [(received_ms if e is None else e) // _MS_PER_HOUR for e in events]
        data = {
            "request_id": pa.array([str(r) for r in chunk.request_ids], type=pa.string()),
            "received_at": pa.array([received_ms] * n, type=_TS),
            "event_time": pa.array(events, type=_TS),
            "model_name": pa.array([self.model_name] * n, type=pa.string()),
            "model_version": pa.array([self.model_version] * n, type=pa.string()),
            "prediction": self._prediction_array(chunk.predictions),
        }
        for name, values in chunk.columns.items():
            if name in self._hash:
                data[name] = pa.array([self._hashed(v) for v in values], type=pa.string())
            else:
                data[name] = _input_array(values, self._types.get(name))
        data["_hour"] = pa.array(hours, type=pa.int64())
        return pa.table(data)

    def _prediction_array(self, values: list) -> pa.Array:
        if self._prediction_type == "string":
            return pa.array([None if v is None else str(v) for v in values], type=pa.string())
        if self._prediction_type == "float":
            return pa.array(values, type=pa.float64(), from_pandas=True)
        try:
            return pa.array(values, type=pa.float64(), from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            return pa.array([None if v is None else str(v) for v in values], type=pa.string())

    @staticmethod
    def _unify_prediction(table: pa.Table) -> pa.Table:
        # "auto": one write's chunks may have inferred float and string; text wins.
        column = table.column("prediction")
        if column.type not in (pa.float64(), pa.string()):
            column = column.cast(pa.string())
        return table.set_column(table.schema.get_field_index("prediction"), "prediction", column)

    def _hashed(self, value) -> str | None:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return None
        return hashlib.sha256(f"{self._salt}{value}".encode()).hexdigest()

    # --- I/O ----------------------------------------------------------------------------

    def _put(self, upload: _Upload) -> None:
        if not self._remote:
            path = os.path.join(*upload.name.split("/")) if os.sep != "/" else upload.name
            os.makedirs(os.path.dirname(path), exist_ok=True)
            tmp = f"{os.path.dirname(path)}/.{os.path.basename(path)}.tmp"
            with open(tmp, "wb") as fh:
                fh.write(upload.data)
            os.replace(tmp, path)  # a reader never sees half a file
            return
        if self._client is None:
            self._client = self._make_client()
        self._client.put_object(
            self._bucket,
            upload.name,
            io.BytesIO(upload.data),
            len(upload.data),
            content_type="application/vnd.apache.parquet",
        )

    def _make_client(self):
        import urllib3
        from minio import Minio

        access_env, secret_env = S3_SECRET_KEYS["accesskey"], S3_SECRET_KEYS["secretkey"]
        access_key, secret_key = os.environ.get(access_env, ""), os.environ.get(secret_env, "")
        if not access_key or not secret_key:
            raise RuntimeError(f"no S3 credentials: set {access_env} and {secret_env}")
        # No retries inside the client (this module retries, with its own backoff) and
        # short timeouts, so that an unreachable endpoint costs one quick failure per try.
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=self._io_timeout, read=self._io_timeout),
            retries=urllib3.Retry(total=0, connect=0, read=0, redirect=0, status=0),
            maxsize=2,
        )
        return Minio(
            self._endpoint.split("://", 1)[-1],
            access_key=access_key,
            secret_key=secret_key,
            secure=self._secure,
            http_client=http,
        )
