"""The ``loopline`` entry point: one parser with a sub-command per group, one-line failures.

Exit codes: 0 success; 1 a failure, reported on stderr as one line
(``loopline: error: <reason>``); 2 a usage error (argparse's own message).
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from collections.abc import Sequence

from components import __version__
from components.cli import cleanup, labels, monitor, registry, rollout, schedule, submit, upload
from components.cli import compile as compile_group
from components.cli.common import CliError
from components.lib import logs

# The command groups, in --help order: each a module with add_commands(subparsers).
GROUPS = (registry, rollout, monitor, schedule, labels, compile_group, upload, submit, cleanup)

EPILOG = """\
Every command that talks to the MLflow tracking server takes --tracking-uri (default: the
MLFLOW_TRACKING_URI environment variable); the rollout commands also reach the Kubernetes
API (in-cluster config in a pod, else the kube config: --kubeconfig, --context); schedule,
upload and submit reach the KFP API (--host, default $KFP_HOST; --token, default $KFP_TOKEN;
--namespace, default $KFP_NAMESPACE; in a pod with no host, kfp.Client's in-cluster
service and service-account token). compile needs no server. Run `loopline GROUP --help`
and `loopline GROUP COMMAND --help` for the details of each.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="loopline",
        description="Loopline: the model registry, rollouts on KServe, and compiling, "
        "uploading, running and scheduling pipelines on Kubeflow Pipelines, from the command "
        "line.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"loopline {__version__}")
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="log progress to stderr and print the traceback of a failure",
    )
    groups = parser.add_subparsers(title="command groups", metavar="GROUP")
    for group in GROUPS:
        group.add_commands(groups)
    return parser


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one command; returns the exit code (the console script exits with it)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        # A group without its command (`loopline registry`): that group's help.
        (getattr(args, "group_parser", None) or parser).print_help(sys.stderr)
        return 2
    logs.setup(logging.INFO if args.verbose else logging.WARNING)
    try:
        return int(func(args) or 0)
    except KeyboardInterrupt:
        print("loopline: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - every failure is one line and a non-zero exit
        if args.verbose:
            traceback.print_exc()
        known = isinstance(exc, CliError) or type(exc).__module__.startswith("components.")
        prefix = "" if known else f"{type(exc).__name__}: "
        print(f"loopline: error: {prefix}{_one_line(exc)}", file=sys.stderr)
        return 1
