"""``loopline registry ...``: the model registry (components/lib/registry.py) from the command line."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from components.cli.common import (
    CliError,
    client_defaults,
    print_json,
    print_table,
    tracking_options,
    tracking_uri,
)

STATE_DIAGRAM = """\
states and the moves allowed without --force:
  candidate  -> staging | rejected
  staging    -> canary | production (only a model's first production version)
  canary     -> production | rolled_back
  production -> archived
  archived   -> production (only with --rollback)
  rejected, rolled_back: final
Entering production archives the current production version and moves the 'champion'
alias; every change is recorded with its time, actor and reason (`loopline registry history`).
"""


def add_commands(groups: argparse._SubParsersAction) -> None:
    parent = tracking_options()
    group = groups.add_parser(
        "registry",
        help="the model registry: versions, lineage, history, state changes",
        description="The model registry (MLflow's, with Loopline's state machine).",
        epilog=STATE_DIAGRAM,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    group.set_defaults(group_parser=group)
    commands = group.add_subparsers(title="commands", metavar="COMMAND")

    cmd = commands.add_parser(
        "list",
        parents=[parent],
        help="list the versions of one model, or of every model",
        description="Every version of MODEL (or of every model the registry manages): state, "
        "champion, creation time, manifest sha256 and pipeline run.",
    )
    cmd.add_argument(
        "model", nargs="?", metavar="MODEL", help="a model name (default: every model)"
    )
    cmd.add_argument("--json", action="store_true", help="print JSON instead of a table")
    cmd.set_defaults(func=list_versions)

    cmd = commands.add_parser(
        "show",
        parents=[parent],
        help="one version: state, URIs, manifest and its full lineage",
        description="One version: its state, model URI, artifact source, manifest sha256, "
        "validation statistics URI and lineage (data hashes of every split, schema, "
        "transform and code versions, pipeline run, parameters, metrics).",
    )
    cmd.add_argument("model", metavar="MODEL")
    cmd.add_argument("version", metavar="VERSION")
    cmd.add_argument("--json", action="store_true", help="print JSON")
    cmd.set_defaults(func=show)

    cmd = commands.add_parser(
        "history",
        parents=[parent],
        help="every recorded state change of a model (or of one version)",
        description="Every recorded change, oldest first: sequence number, time (UTC), "
        "version, from -> to, actor, reason, and whether it was forced or a rollback.",
    )
    cmd.add_argument("model", metavar="MODEL")
    cmd.add_argument("version", nargs="?", metavar="VERSION", help="only this version")
    cmd.add_argument("--json", action="store_true", help="print JSON")
    cmd.set_defaults(func=history)

    cmd = commands.add_parser(
        "champion",
        parents=[parent],
        help="the production version now, or at a past time",
        description="The version in production (the 'champion' alias) now, or at --at TIME "
        "according to the recorded history. Prints 'none' when there was none.",
    )
    cmd.add_argument("model", metavar="MODEL")
    cmd.add_argument(
        "--at",
        metavar="TIME",
        help="an ISO 8601 time, e.g. 2026-11-26T10:00:00Z (no zone: UTC)",
    )
    cmd.set_defaults(func=champion)

    cmd = commands.add_parser(
        "transition",
        parents=[parent],
        help="move a version to another state (recorded with actor and reason)",
        description="Moves VERSION of MODEL to STATE, under the model's lock, and records it. "
        "An illegal move fails naming both states and changes nothing.",
        epilog=STATE_DIAGRAM,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cmd.add_argument("model", metavar="MODEL")
    cmd.add_argument("version", metavar="VERSION")
    cmd.add_argument(
        "state",
        metavar="STATE",
        help="candidate, staging, canary, production, archived, rejected or rolled_back",
    )
    cmd.add_argument("--reason", required=True, metavar="TEXT", help="why (required; recorded)")
    cmd.add_argument(
        "--force",
        action="store_true",
        help="an operator's override of the state machine (recorded as forced)",
    )
    cmd.add_argument(
        "--rollback",
        action="store_true",
        help="archived -> production as a rollback (the only way back to production)",
    )
    cmd.add_argument("--actor", metavar="NAME", help="who (default: $LOOPLINE_ACTOR or user@host)")
    cmd.set_defaults(func=transition)


def _registry(args: argparse.Namespace, actor: str | None = None):
    client_defaults()
    from components.lib.registry import Registry

    registry = Registry(tracking_uri(args), actor=actor)
    registry.ping()
    return registry


def _when(value) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _summary(version) -> dict:
    return {
        "model": version.name,
        "version": version.version,
        "state": version.state,
        "aliases": list(version.aliases),
        "created": version.created.isoformat(),
        "model_uri": version.model_uri,
        "source": version.source,
        "run_id": version.run_id,
        "manifest_sha256": version.manifest_sha256,
        "statistics_uri": version.statistics_uri,
        "pipeline_run_id": version.lineage.get("pipeline_run_id", ""),
    }


def list_versions(args: argparse.Namespace) -> int:
    versions = _registry(args).versions(args.model)
    if args.json:
        print_json([_summary(v) for v in versions])
        return 0
    if not versions:
        print(f"no versions of {args.model}" if args.model else "no models")
        return 0
    print_table(
        ("MODEL", "VERSION", "STATE", "ALIASES", "CREATED (UTC)", "MANIFEST", "PIPELINE RUN"),
        [
            (
                v.name,
                v.version,
                v.state,
                ",".join(v.aliases) or "-",
                _when(v.created),
                v.manifest_sha256[:12] or "-",
                str(v.lineage.get("pipeline_run_id", "-")),
            )
            for v in versions
        ],
    )
    return 0


def show(args: argparse.Namespace) -> int:
    version = _registry(args).get(args.model, args.version)
    if args.json:
        print_json({**_summary(version), "lineage": version.lineage})
        return 0
    state = version.state + (f" ({', '.join(version.aliases)})" if version.aliases else "")
    rows = [
        ("model", version.name),
        ("version", version.version),
        ("state", state),
        ("created", version.created.isoformat()),
        ("model uri", version.model_uri),
        ("source", version.source),
        ("run id", version.run_id),
        ("manifest", f"sha256 {version.manifest_sha256}"),
        ("statistics", version.statistics_uri),
    ]
    for key, value in rows:
        print(f"{key + ':':<12} {value}")
    print("lineage:")
    width = max((len(k) for k in version.lineage), default=0) + 1
    for key in sorted(version.lineage):
        value = version.lineage[key]
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in sorted(value.items()))
        print(f"  {key + ':':<{width}} {value}")
    return 0


def history(args: argparse.Namespace) -> int:
    moves = _registry(args).history(args.model, args.version)
    if args.json:
        print_json(
            [
                {
                    "seq": t.seq,
                    "time": t.time.isoformat(),
                    "version": t.version,
                    "from": t.from_state,
                    "to": t.to_state,
                    "actor": t.actor,
                    "reason": t.reason,
                    "force": t.force,
                    "rollback": t.rollback,
                }
                for t in moves
            ]
        )
        return 0
    print_table(
        ("SEQ", "TIME (UTC)", "VERSION", "CHANGE", "ACTOR", "REASON"),
        [
            (
                t.seq,
                t.time.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3],
                t.version,
                f"{t.from_state or '(registered)'} -> {t.to_state}"
                + (" [forced]" if t.force else "")
                + (" [rollback]" if t.rollback else ""),
                t.actor,
                t.reason,
            )
            for t in moves
        ],
    )
    return 0


def _parse_time(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise CliError(
            f"--at {text!r} is not an ISO 8601 time (e.g. 2026-11-26T10:00:00Z)"
        ) from exc


def champion(args: argparse.Namespace) -> int:
    registry = _registry(args)
    if args.at:
        print(registry.production_at(args.model, _parse_time(args.at)) or "none")
        return 0
    found = registry.champion(args.model)
    print(found.version if found else "none")
    return 0


def transition(args: argparse.Namespace) -> int:
    registry = _registry(args, actor=args.actor)
    before = registry.get(args.model, args.version).state
    after = registry.transition(
        args.model,
        args.version,
        args.state,
        args.reason,
        force=args.force,
        rollback=args.rollback,
    )
    notes = [n for n, on in (("forced", args.force), ("rollback", args.rollback)) if on]
    if "champion" in after.aliases:
        notes.append("now the champion")
    print(
        f"{after.name} version {after.version}: {before} -> {after.state}"
        + (f" ({', '.join(notes)})" if notes else "")
        + f"; recorded for {registry.actor}"
    )
    return 0
