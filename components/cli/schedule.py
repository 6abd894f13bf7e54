"""``loopline schedule PACKAGE_YAML ...``: a compiled pipeline on a recurring run on Kubeflow
Pipelines, through ``kfp.Client`` (components/lib/schedule.py does the work).

Everything that can be checked without the server (the file, its YAML, every --param
against the pipeline's root inputs, the cron expression, the times) is checked before the
client is made, so a refused command sends nothing. The client and the one-line API
failures come from :mod:`components.cli.kfp_connection` (shared with upload and submit).
"""

from __future__ import annotations

import argparse

from components.cli import kfp_connection as conn
from components.cli.common import print_json
from components.lib import kfp_api
from components.lib import schedule as lib

EPILOG = f"""\
What it does, in order:
  1. reads PACKAGE_YAML and checks every --param against the pipeline's root inputs (name,
     type, the required ones), the cron expression (6 fields, seconds first) or the
     interval, and the times: nothing is sent when a check fails;
  2. uploads the package as a NEW version of pipeline --pipeline (the pipeline is created
     when it does not exist);
  3. makes sure experiment --experiment exists;
  4. creates the recurring run --job in that experiment, pointing at the new version; when
     one with that display name is already there, replaces it (the API has no update):
     create the new one disabled, disable the old one, enable the new one, delete the old
     one. Two enabled schedules never exist at once, and a failure before the new one is
     enabled puts the old one back.

KFP cron has 6 fields, seconds first: "0 0 3 * * *" is every day at 03:00:00 UTC;
descriptors such as @daily and "@every 6h" work too.

{conn.CONNECTION_HELP}
Exit codes: 0 done; 1 a failure on one line (bad file, YAML, parameter, cron; the KFP API
unreachable or refusing: 401 / 403); 2 a usage error.
"""


def add_commands(groups: argparse._SubParsersAction) -> None:
    cmd = groups.add_parser(
        "schedule",
        help="run a compiled pipeline on a schedule (a KFP recurring run): create or replace",
        description="Upload PACKAGE_YAML as a new version of a Kubeflow Pipelines pipeline and "
        "create the recurring run --job on it, or replace the one of that name.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[conn.connection_options()],
    )
    cmd.add_argument(
        "package", metavar="PACKAGE_YAML", help="the compiled pipeline (kfp.compiler output)"
    )
    cmd.add_argument(
        "--pipeline", required=True, metavar="NAME", help="the pipeline's name in KFP (required)"
    )
    cmd.add_argument(
        "--version",
        metavar="NAME",
        help="the new pipeline version's name (default: <loopline version>-<UTC time>-<first 8 "
        "hex of the package's sha256>); must not exist yet",
    )
    cmd.add_argument(
        "--experiment",
        default=kfp_api.DEFAULT_EXPERIMENT,
        metavar="NAME",
        help=f"the experiment the recurring run belongs to; created if missing (default: "
        f"{kfp_api.DEFAULT_EXPERIMENT})",
    )
    cmd.add_argument(
        "--job",
        required=True,
        metavar="NAME",
        help="the recurring run's display name (required); one of that name in the "
        "experiment is replaced",
    )
    trigger = cmd.add_mutually_exclusive_group(required=True)
    trigger.add_argument(
        "--cron",
        metavar="EXPR",
        help='a 6-field cron expression, seconds first, e.g. "0 0 * * * *" (hourly)',
    )
    trigger.add_argument(
        "--interval", type=int, metavar="SECONDS", help="a run every SECONDS seconds instead"
    )
    cmd.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a pipeline input (repeat for several); checked against the package's inputs",
    )
    cmd.add_argument(
        "--max-concurrency",
        type=int,
        default=1,
        metavar="N",
        help=f"at most N runs of this schedule at once, 1 to {lib.MAX_CONCURRENCY} (default: 1)",
    )
    cmd.add_argument(
        "--catchup",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="--catchup: run every missed trigger after a pause (backfill); --no-catchup "
        "(default): only the latest",
    )
    cmd.add_argument(
        "--start-time", metavar="ISO", help="no run before this time (ISO 8601; no zone: UTC)"
    )
    cmd.add_argument(
        "--end-time", metavar="ISO", help="no run after this time (ISO 8601; no zone: UTC)"
    )
    cmd.add_argument(
        "--disable",
        action="store_true",
        help="create (or replace with) the recurring run disabled",
    )
    cmd.add_argument("--description", default="", metavar="TEXT", help="the recurring run's")
    cmd.add_argument(
        "--dry-run",
        action="store_true",
        help="check everything and print what would be sent; send nothing",
    )
    cmd.set_defaults(func=run)


def plan_of(args: argparse.Namespace) -> lib.Plan:
    """Every local check: the package, the parameters, the trigger, the names."""
    package = kfp_api.load_package(args.package)
    params = kfp_api.parse_params(package, args.param)
    trigger = lib.Trigger(
        cron=args.cron,
        interval_seconds=args.interval,
        start_time=lib.rfc3339(args.start_time, "--start-time") if args.start_time else None,
        end_time=lib.rfc3339(args.end_time, "--end-time") if args.end_time else None,
    )
    return lib.Plan(
        package=package,
        pipeline=args.pipeline,
        version=args.version or kfp_api.default_version(package),
        experiment=args.experiment,
        job=args.job,
        trigger=trigger,
        params=params,
        max_concurrency=args.max_concurrency,
        no_catchup=not args.catchup,
        enabled=not args.disable,
        namespace=args.namespace or None,
        description=args.description,
    )


def run(args: argparse.Namespace) -> int:
    conn.resolve(args)
    plan = plan_of(args)
    if args.dry_run:
        print(
            f"dry run: nothing sent. Would upload {plan.package.path} (pipeline "
            f"{plan.package.name}, sha256 {plan.package.sha256[:12]}) as pipeline {plan.pipeline} "
            f"version {plan.version}, in experiment {plan.experiment}"
            + (f" (namespace {plan.namespace})" if plan.namespace else "")
            + f" at {conn.host_text(args)}, then create or replace recurring run {plan.job} "
            f"({plan.trigger.describe()}, {'disabled' if args.disable else 'enabled'}) with:"
        )
        print_json(plan.recurring_run_body())
        return 0
    client = conn.client(args)
    with conn.talking(args):
        result = lib.schedule(client, plan)
    print(
        f"recurring run {plan.job} (id {result.recurring_run_id}): {plan.trigger.describe()}, "
        f"{'disabled' if args.disable else 'enabled'}, pipeline {plan.pipeline} version "
        f"{plan.version}" + (f"; replaced {', '.join(result.replaced)}" if result.replaced else "")
    )
    return 0
