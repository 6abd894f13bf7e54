"""``loopline cleanup``: delete per-run leftovers by the policy of components/lib/cleanup.py.

A dry run unless ``--apply``: every folder considered is printed with ``delete`` or ``keep``
and why.
"""

from __future__ import annotations

import argparse
import os

from components.cli.common import CliError, print_json, print_table, tracking_options
from components.lib import cleanup as lib

S3_ENDPOINT_ENV = "LOOPLINE_S3_ENDPOINT"

EPILOG = f"""\
The policy (components/lib/cleanup.py; the README's "Cleanup policy"):

  captured traffic (--capture-uri s3://BUCKET/PREFIX, the serving image's capture):
    an hour partition <prefix>/model=M/hour=H/ whose hour ended more than --retention-days
    ago, and a labels day <prefix>/labels/model=M/date=D/ whose day ended before that.
  model copies (--models-uri s3://BUCKET/models, where push copies versions; needs the
  registry, --tracking-uri or $MLFLOW_TRACKING_URI):
    a copy <model>/<manifest sha256>/ whose versions are all archived, rejected or
    rolled_back, changed state more than --retention-days ago and are not among the
    --keep-archived most recently archived (rollback targets); or that no version of the
    model points at. Never a copy of the champion, of a canary, staging or candidate
    version, of a model the registry does not know, or one an InferenceService names
    (with -n/--namespace, the InferenceServices of that namespace are read).
  never anything with an object written within --retention-days, nor objects outside
  these layouts.

Without --apply nothing is deleted (a dry run; --dry-run says so explicitly). With --apply
the plan is made twice and each folder listed again right before its delete.

S3: --s3-endpoint (default ${S3_ENDPOINT_ENV}), TLS unless --insecure, credentials from
AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY; timeouts and retries LOOPLINE_S3_* (see
components/lib/network.py).

Exit codes: 0 done (also when something was kept); 1 a failure on one line (an unreachable
store or registry, a missing bucket, a refused delete); 2 a usage error.
"""


def add_commands(groups: argparse._SubParsersAction) -> None:
    cmd = groups.add_parser(
        "cleanup",
        parents=[tracking_options()],
        help="delete captured windows past retention and model copies of archived versions "
        "(a dry run unless --apply)",
        description="List what the cleanup policy would delete and why; delete it with --apply.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cmd.add_argument(
        "--capture-uri", metavar="S3_URI", help="s3://bucket/prefix of the served-traffic capture"
    )
    cmd.add_argument(
        "--models-uri",
        metavar="S3_URI",
        help="s3://bucket/models: the prefix push copies versions under",
    )
    cmd.add_argument(
        "--retention-days",
        type=float,
        default=lib.DEFAULT_RETENTION_DAYS,
        metavar="DAYS",
        help=f"keep everything newer than this (default {lib.DEFAULT_RETENTION_DAYS}, as the "
        "capture bucket's lifecycle rule)",
    )
    cmd.add_argument(
        "--keep-archived",
        type=int,
        default=lib.DEFAULT_KEEP_ARCHIVED,
        metavar="N",
        help="keep the copies of the N most recently archived versions of each model, the "
        f"rollback targets (default {lib.DEFAULT_KEEP_ARCHIVED})",
    )
    mode = cmd.add_mutually_exclusive_group()
    mode.add_argument(
        "--dry-run",
        dest="apply",
        action="store_false",
        help="only list what would be deleted and why (the default)",
    )
    mode.add_argument("--apply", action="store_true", help="delete what the plan lists as delete")
    cmd.add_argument(
        "--s3-endpoint",
        metavar="HOST:PORT",
        help=f"the S3 / MinIO endpoint (default ${S3_ENDPOINT_ENV})",
    )
    cmd.add_argument("--insecure", action="store_true", help="plain HTTP to the endpoint (no TLS)")
    cmd.add_argument(
        "-n",
        "--namespace",
        help="also keep every copy an InferenceService of this namespace names (reads the "
        "Kubernetes API: in-cluster config, else --kubeconfig / --context)",
    )
    cmd.add_argument("--kubeconfig", metavar="FILE", help="kube config file (with -n)")
    cmd.add_argument("--context", metavar="NAME", help="kube config context (with -n)")
    cmd.add_argument(
        "--all", action="store_true", help="list kept folders too (default: only a count)"
    )
    cmd.add_argument("--json", action="store_true", help="print the plan as JSON")
    cmd.set_defaults(func=run, apply=False)


def _serving_uris(args: argparse.Namespace) -> list[str]:
    """Every ``storageUri`` in the InferenceServices of ``--namespace``."""
    if not args.namespace:
        return []
    from components.cli import rollout
    from components.lib.inferenceservice import GROUP, PLURAL, VERSION

    api = rollout.API_FACTORY(args)
    listed = rollout._call(
        api.list_namespaced_custom_object, GROUP, VERSION, args.namespace, PLURAL
    )
    found: list[str] = []

    def walk(value) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                if key == "storageUri" and isinstance(inner, str):
                    found.append(inner)
                else:
                    walk(inner)
        elif isinstance(value, list):
            for inner in value:
                walk(inner)

    for item in listed.get("items", []):
        walk(item.get("spec", {}))
    return found


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def run(args: argparse.Namespace) -> int:
    from components.lib import storage

    if not args.capture_uri and not args.models_uri:
        raise CliError("nothing to clean: pass --capture-uri, --models-uri, or both")
    endpoint = args.s3_endpoint or os.environ.get(S3_ENDPOINT_ENV, "")
    if not endpoint:
        raise CliError(f"no S3 endpoint: pass --s3-endpoint or set {S3_ENDPOINT_ENV}")
    registry = None
    if args.models_uri:
        from components.cli.common import client_defaults, tracking_uri
        from components.lib.registry import Registry

        client_defaults()
        registry = Registry(tracking_uri(args))
        registry.ping()
    client = storage._client(f"s3 endpoint {endpoint!r}", endpoint, not args.insecure, "cleanup")
    kwargs = dict(
        capture_uri=args.capture_uri or "",
        models_uri=args.models_uri or "",
        registry=registry,
        retention_days=args.retention_days,
        keep_archived=args.keep_archived,
        serving_uris=_serving_uris(args),
    )
    result = (lib.apply if args.apply else lib.plan)(client, endpoint, **kwargs)
    if args.json:
        out = result.as_dict()
        out["applied"] = bool(args.apply)
        print_json(out)
        return 0
    doomed = result.to_delete()
    shown = result.items if args.all else doomed
    if shown:
        print_table(
            ("ACTION", "KIND", "FOLDER", "OBJECTS", "SIZE", "WHY"),
            [(i.action, i.kind, i.uri, i.objects, _size(i.size), i.reason) for i in shown],
        )
    kept = len(result.items) - len(doomed)
    total = sum(i.objects for i in doomed)
    size = _size(sum(i.size for i in doomed))
    cutoff = result.cutoff.strftime("%Y-%m-%dT%H:%MZ")
    if args.apply:
        print(
            f"deleted {len(result.deleted)} objects of {len(doomed)} folders ({size}); kept "
            f"{kept} folders; retention {args.retention_days:g} days (before {cutoff})"
        )
    else:
        print(
            f"dry run: would delete {total} objects in {len(doomed)} folders ({size}); keep "
            f"{kept} folders{'' if args.all else ' (--all lists them)'}; retention "
            f"{args.retention_days:g} days (before {cutoff}). Pass --apply to delete."
        )
    return 0
