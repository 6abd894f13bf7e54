"""What every command group shares: the failure type, the tracking URI option, output helpers."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
# MLflow's client retries a request up to 7 times with exponential backoff (minutes against
# a server that is down); a person or CI at a prompt wants the answer sooner.
CLIENT_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}


class CliError(Exception):
    """A failure the CLI reports as one line (bad input, missing configuration)."""


def tracking_options() -> argparse.ArgumentParser:
    """A parent parser with ``--tracking-uri`` (for every command that reaches MLflow)."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--tracking-uri",
        metavar="URI",
        help=f"the MLflow tracking server, e.g. http://127.0.0.1:5000 (default: ${TRACKING_URI_ENV})",
    )
    return parent


def tracking_uri(args: argparse.Namespace) -> str:
    uri = getattr(args, "tracking_uri", None) or os.environ.get(TRACKING_URI_ENV, "")
    if not uri:
        raise CliError(f"no tracking URI: pass --tracking-uri or set {TRACKING_URI_ENV}")
    return uri


def client_defaults() -> None:
    for key, value in CLIENT_DEFAULTS.items():
        os.environ.setdefault(key, value)


def print_json(value) -> None:
    json.dump(value, sys.stdout, indent=2, sort_keys=True, default=str)
    sys.stdout.write("\n")


def print_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Left-aligned columns, two spaces apart, the last column not padded."""
    table = [list(header), *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])] + [row[-1]]
        print("  ".join(cells).rstrip())
