"""``loopline monitor ...``: the monitoring log (retrain decisions per window) from the registry."""

from __future__ import annotations

import argparse

from components.cli.common import (
    client_defaults,
    print_json,
    print_table,
    tracking_options,
    tracking_uri,
)


def add_commands(groups: argparse._SubParsersAction) -> None:
    parent = tracking_options()
    group = groups.add_parser(
        "monitor",
        help="the monitoring log: each monitored window and its retrain decision",
        description="Continuous training's monitoring log, kept in the model registry (one "
        "registered-model tag loopline.monitor.<seq> per window, append-only).",
    )
    group.set_defaults(group_parser=group)
    commands = group.add_subparsers(title="commands", metavar="COMMAND")

    cmd = commands.add_parser(
        "history",
        parents=[parent],
        help="every monitored window of a model and its retrain decision",
        description="Every monitored window of MODEL, in record order: sequence number, when "
        "it was recorded (UTC), window id, rows, signals, decision (RETRAIN with its trigger, "
        "or the policy field that blocked it) and the reason.",
    )
    cmd.add_argument("model", metavar="MODEL")
    cmd.add_argument("--json", action="store_true", help="print JSON instead of a table")
    cmd.set_defaults(func=history)


def _registry(args: argparse.Namespace):
    client_defaults()
    from components.lib.registry import Registry

    registry = Registry(tracking_uri(args))
    registry.ping()
    return registry


def _signals(record) -> str:
    if not record.decided:
        return "(undecided)"
    return ",".join(s for s in ("drift", "decay") if getattr(record, s)) or "-"


def _decision(record) -> str:
    if record.retrain:
        return f"RETRAIN ({record.trigger})"
    if record.blocked_by:
        return f"blocked ({record.blocked_by})"
    return "-"


def history(args: argparse.Namespace) -> int:
    records = _registry(args).monitoring_log(args.model)
    if args.json:
        print_json([r.to_dict() for r in records])
        return 0
    if not records:
        print(f"no monitored windows of {args.model}")
        return 0
    print_table(
        ("SEQ", "RECORDED (UTC)", "WINDOW", "ROWS", "SIGNALS", "DECISION", "REASON"),
        [
            (
                r.seq,
                r.at_time.strftime("%Y-%m-%d %H:%M:%S"),
                r.window_id,
                r.rows,
                _signals(r),
                _decision(r),
                r.reason,
            )
            for r in records
        ],
    )
    return 0
