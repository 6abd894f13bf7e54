"""``loopline labels ...``: labels for captured traffic (components/lib/window.py) from the
command line.

Labels live below the capture they label (components/lib/capture_layout.py)::

    <capture prefix>/labels/model=<MODEL>/date=<YYYY-MM-DD>/part-<uuid>.parquet

with the columns ``request_id`` (string), ``label`` (float64, or string for class labels)
and ``labeled_at`` (UTC). The monitoring window joins them on ``request_id``; the latest
``labeled_at`` of a request id wins.
"""

from __future__ import annotations

import argparse
import os

from components.cli.common import CliError, print_json, print_table

S3_ENDPOINT_ENV = "LOOPLINE_S3_ENDPOINT"

EPILOG = f"""\
--capture-uri is the s3://bucket/prefix the serving image captures to; the labels go
under <prefix>/labels/model=MODEL/date=YYYY-MM-DD/. The S3 endpoint is --s3-endpoint
(default: ${S3_ENDPOINT_ENV}), over TLS unless --insecure; credentials come from
AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.

Exit codes: 0 done; 1 a failure on one line (a file without request_id or label, null ids,
no credentials, an unreachable endpoint); 2 a usage error.
"""


def _store_options() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--capture-uri",
        required=True,
        metavar="S3_URI",
        help="s3://bucket/prefix of the capture; labels go under <prefix>/labels",
    )
    parent.add_argument(
        "--s3-endpoint",
        metavar="HOST:PORT",
        help=f"the S3 / MinIO endpoint (default: ${S3_ENDPOINT_ENV})",
    )
    parent.add_argument(
        "--insecure", action="store_true", help="plain HTTP to the endpoint (no TLS)"
    )
    return parent


def add_commands(groups: argparse._SubParsersAction) -> None:
    parent = _store_options()
    group = groups.add_parser(
        "labels",
        help="labels of captured traffic: put a file of them, show what is there",
        description="Labels that arrive after the predictions, joined to the capture by "
        "request id.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    group.set_defaults(group_parser=group)
    commands = group.add_subparsers(title="commands", metavar="COMMAND")

    cmd = commands.add_parser(
        "put",
        parents=[parent],
        help="write a CSV or Parquet file of labels (request_id, label[, labeled_at])",
        description="Writes FILE's labels for MODEL as one Parquet object; labeled_at, when "
        "the file has none, is now. Prints the object written and the counts.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cmd.add_argument("model", metavar="MODEL")
    cmd.add_argument("file", metavar="FILE", help="CSV (with a header) or Parquet")
    cmd.set_defaults(func=put)

    cmd = commands.add_parser(
        "show",
        parents=[parent],
        help="count the labels of a model",
        description="The labels of MODEL: request ids labelled (the latest label of each), "
        "files, label type, first and last labeled_at, labels per day.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cmd.add_argument("model", metavar="MODEL")
    cmd.add_argument("--since", metavar="TIME", help="only labels at or after this ISO time")
    cmd.add_argument("--json", action="store_true", help="print JSON")
    cmd.set_defaults(func=show)


def _store(args: argparse.Namespace):
    """(client, bucket, labels prefix) of the arguments."""
    from components.lib import capture_layout, window

    endpoint = args.s3_endpoint or os.environ.get(S3_ENDPOINT_ENV, "")
    if not endpoint:
        raise CliError(f"no S3 endpoint: pass --s3-endpoint or set {S3_ENDPOINT_ENV}")
    try:
        capture_layout.check_model_name(args.model)
        bucket, prefix = window.split_uri(args.capture_uri, "--capture-uri")
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    client = window.client(endpoint, not args.insecure, what="--capture-uri")
    return client, bucket, capture_layout.labels_prefix(prefix)


def _read_file(path: str):
    import pyarrow as pa

    from components.lib import tables

    table = tables.read_table(path, what="labels file", error=CliError)
    index = table.schema.get_field_index("request_id")
    if index >= 0 and not pa.types.is_string(table.schema.field(index).type):
        # CSV ids that look like numbers are read as numbers: keep them as their text.
        table = table.set_column(index, "request_id", table.column(index).cast(pa.string()))
    return table.to_pandas()


def put(args: argparse.Namespace) -> int:
    from components.lib import window

    frame = _read_file(args.file)
    client, bucket, prefix = _store(args)
    try:
        labels = window.check_labels(frame, what=f"labels file {args.file!r}")
    except window.WindowError as exc:
        raise CliError(str(exc)) from exc
    key = window.write_labels(client, bucket, prefix, args.model, labels)
    kind = "float" if str(labels["label"].dtype) == "float64" else "string"
    distinct = labels["request_id"].nunique()
    print(f"wrote s3://{bucket}/{key}")
    print(
        f"{len(labels)} labels ({kind}) for {distinct} request ids of model {args.model}"
        + (
            f"; {len(labels) - distinct} repeated ids (the latest labeled_at wins)"
            if len(labels) > distinct
            else ""
        )
    )
    return 0


def show(args: argparse.Namespace) -> int:
    from components.lib import capture_layout, window

    client, bucket, prefix = _store(args)
    since = None
    if args.since:
        from datetime import datetime

        try:
            since = capture_layout.utc(datetime.fromisoformat(args.since.replace("Z", "+00:00")))
        except ValueError as exc:
            raise CliError(f"--since {args.since!r} is not an ISO 8601 time") from exc
    labels = window.read_labels(client, bucket, prefix, args.model, since=since)
    where = f"s3://{bucket}/{capture_layout.labels_model_prefix(prefix, args.model)}"
    per_day = (
        labels["labeled_at"].dt.strftime(capture_layout.DATE_FORMAT).value_counts().sort_index()
        if len(labels)
        else {}
    )
    summary = {
        "model": args.model,
        "where": where,
        "request_ids": len(labels),
        "label_type": ("float" if str(labels["label"].dtype) == "float64" else "string")
        if len(labels)
        else "",
        "first_labeled_at": labels["labeled_at"].min().isoformat() if len(labels) else "",
        "last_labeled_at": labels["labeled_at"].max().isoformat() if len(labels) else "",
        "per_day": {str(k): int(v) for k, v in dict(per_day).items()},
    }
    if args.json:
        print_json(summary)
        return 0
    print(f"labels of {args.model} in {where}: {summary['request_ids']} request ids")
    if len(labels):
        print(
            f"label type {summary['label_type']}; labeled_at {summary['first_labeled_at']} "
            f"to {summary['last_labeled_at']}"
        )
        print_table(["day (UTC)", "request ids"], list(summary["per_day"].items()))
    return 0
