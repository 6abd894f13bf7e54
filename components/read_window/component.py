"""KFP definition of read_window; the logic is in ``executor.py``."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Dataset, Markdown, Output

from components._images import PIPELINE_IMAGE


@dsl.component(base_image=PIPELINE_IMAGE, install_kfp_package=False)
def read_window(
    window: Output[Dataset],
    summary: Output[Markdown],
    model_name: str = "bikeshare",
    capture_uri: str = "s3://loopline-capture/predictions",
    window_end: str = "",
    window_hours: int = 24,
    model_version: str = "",
    s3_endpoint: str = "minio-service.kubeflow:9000",
    s3_secure: bool = False,
    min_rows: int = 200,
) -> NamedTuple("Outputs", [("rows", int), ("window_id", str), ("enough_rows", bool)]):
    """Reads the traffic the serving image captured for one model over a window of whole hours.

    Only the hour partitions of ``[window_end - window_hours, window_end)`` are read
    (``<prefix>/model=<model_name>/hour=<YYYY-MM-DDTHH>/``); rows whose time (event time,
    else receive time) falls outside the window are dropped. Fewer than ``min_rows`` rows
    (none at all included) do not fail the task: the summary says so and ``enough_rows``
    is false, so the pipeline judges nothing on too little data.

    Args:
        window: Output. The window's rows as Parquet, in time order: the capture's own
            columns (``request_id``, ``received_at``, ``event_time``, ``model_name``,
            ``model_version``, ``prediction``) and the model's input columns; validate_data
            reads it with ``data_name="serving"``. An empty window keeps the capture's
            columns and has no rows. Metadata: ``rows``, ``window_id``, ``start``, ``end``,
            ``versions``, ``enough_rows``.
        summary: Output. Markdown: window bounds, rows against ``min_rows``, rows per model
            version and per hour.
        model_name: The model whose traffic is read (the capture's ``model=`` partition).
        capture_uri: ``s3://bucket/prefix`` the serving image captures to.
        window_end: The window's end, an ISO 8601 UTC time on a whole hour
            (``2026-07-02T00:00Z``); empty: the current hour, floored.
        window_hours: The window's length in hours.
        model_version: Only this version's rows; empty: every version.
        s3_endpoint: ``host:port`` of the object store (credentials from
            ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``).
        s3_secure: Reach the object store over TLS.
        min_rows: The fewest rows a window needs to be judged.

    Returns:
        rows: Rows in the window.
        window_id: ``<model>/<start>/<end>`` (``YYYY-MM-DDTHH:MMZ`` bounds).
        enough_rows: ``rows >= min_rows``.
    """
    from collections import namedtuple
    from pathlib import Path

    from components.lib import logs
    from components.read_window import executor

    logs.setup()
    result = executor.run(
        model_name,
        capture_uri,
        window_end,
        window_hours,
        model_version,
        s3_endpoint,
        s3_secure,
        min_rows,
        window.path,
    )
    Path(summary.path).write_text(executor.markdown(result))
    keys = ("rows", "window_id", "start", "end", "versions", "enough_rows", "format")
    window.metadata.update({k: result[k] for k in keys})
    summary.metadata.update({k: result[k] for k in ("rows", "window_id", "enough_rows")})
    print(f"read_window {result['window_id']}: {result['rows']} rows")
    outputs = namedtuple("Outputs", ["rows", "window_id", "enough_rows"])
    return outputs(result["rows"], result["window_id"], result["enough_rows"])
