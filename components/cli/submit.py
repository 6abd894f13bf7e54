"""``loopline submit PACKAGE --experiment NAME``: a Kubeflow Pipelines run of a compiled
package (or of an uploaded pipeline version), its parameters checked against the pipeline's
root inputs before anything is sent; ``--wait`` follows it to a final state.

components/lib/kfp_api.py does the work; the connection is components/cli/kfp_connection.py.
"""

from __future__ import annotations

import argparse
import sys

from components.cli import kfp_connection as conn
from components.cli.common import CliError
from components.lib import kfp_api

EPILOG = f"""\
What it runs: PACKAGE, a compiled pipeline YAML (its spec is sent with the run), or, with
--pipeline-name (no PACKAGE), a pipeline uploaded before (`loopline upload`): its version
--version-name, default the latest.

Parameters: --param NAME=VALUE (repeat) and --params-file FILE (a JSON object {{"NAME":
VALUE}}); --param wins over the file. Each is checked against the pipeline's root inputs
BEFORE anything is sent (with --pipeline-name, against the uploaded version's spec, fetched
first): an unknown name is refused with the known ones listed; a value that is not of the
input's type is refused naming the input, its type and the value; a required input
(no default) missing is refused naming it. Types: NUMBER_INTEGER (7), NUMBER_DOUBLE (0.2),
BOOLEAN (true / false), STRING (as given), LIST / STRUCT (JSON: '[1, 2]', '{{"a": 1}}').
In --params-file the JSON types must match (the string "7" is not an integer).

The experiment --experiment (in --namespace) is created when absent.

--wait: follow the run, printing each state change ("run ID: RUNNING"), until it ends.
Exits 0 when it SUCCEEDED (or was SKIPPED), 1 with one line naming the run id, its state and,
when the API says, the failed task and its error when it FAILED or was CANCELED, or when
--timeout S passes first (the run keeps going on the cluster).

Example (CI):
  loopline submit build/yaml/pipelines/training/pipeline.yaml --experiment ci \\
      --param source_uri=s3://loopline-data/bikeshare/latest.csv --param seed=7 \\
      --run-name "training-$SHORT_SHA" --wait --timeout 7200

{conn.CONNECTION_HELP}
Exit codes: 0 the run was created (with --wait: it succeeded); 1 a failure on one line (a
bad file, parameter name or type, an unknown pipeline or version, the KFP API unreachable
or refusing: 401 / 403, a failed, canceled or timed-out run); 2 a usage error.
"""


def add_commands(groups: argparse._SubParsersAction) -> None:
    cmd = groups.add_parser(
        "submit",
        help="run a compiled pipeline (or an uploaded version) on Kubeflow Pipelines; "
        "--wait follows it",
        description="Create a Kubeflow Pipelines run of PACKAGE (or of an uploaded pipeline "
        "version) in --experiment, with parameters checked against the pipeline's inputs "
        "before anything is sent.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[conn.connection_options()],
    )
    cmd.add_argument(
        "package",
        nargs="?",
        metavar="PACKAGE",
        help="the compiled pipeline YAML (omit with --pipeline-name)",
    )
    cmd.add_argument(
        "--pipeline-name",
        metavar="NAME",
        help="run an uploaded pipeline instead of PACKAGE",
    )
    cmd.add_argument(
        "--version-name",
        metavar="V",
        help="with --pipeline-name: the version to run (default: the latest)",
    )
    cmd.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a pipeline input (repeat for several); typed and checked against the inputs",
    )
    cmd.add_argument(
        "--params-file",
        metavar="FILE",
        help='pipeline inputs from a JSON object {"NAME": VALUE, ...}; --param wins',
    )
    cmd.add_argument(
        "--experiment",
        required=True,
        metavar="NAME",
        help="the experiment the run belongs to (required); created when absent",
    )
    cmd.add_argument(
        "--run-name",
        metavar="NAME",
        help="the run's display name (default: <pipeline name> <UTC time>)",
    )
    cmd.add_argument(
        "--wait",
        action="store_true",
        help="follow the run until it ends; exit 0 only if it succeeded",
    )
    cmd.add_argument(
        "--timeout",
        type=float,
        metavar="S",
        help="with --wait: give up after S seconds (exit 1; the run goes on)",
    )
    cmd.add_argument(
        "--poll",
        type=float,
        default=5.0,
        metavar="S",
        help="with --wait: seconds between two looks at the run (default: 5)",
    )
    cmd.set_defaults(func=run)


def _default_run_name(pipeline: str) -> str:
    from datetime import UTC, datetime

    return f"{pipeline} {datetime.now(UTC).strftime('%Y-%m-%d %H:%M:%S')}"


def run(args: argparse.Namespace) -> int:
    conn.resolve(args)
    # Local checks first: nothing is sent when one fails.
    if (args.package is None) == (args.pipeline_name is None):
        raise CliError("give PACKAGE (a compiled pipeline YAML) or --pipeline-name, not both")
    if args.version_name and not args.pipeline_name:
        raise CliError("--version-name needs --pipeline-name (a PACKAGE is run as it is)")
    if args.timeout is not None and not args.wait:
        raise CliError("--timeout needs --wait")
    if args.timeout is not None and args.timeout < 0:
        raise CliError(f"--timeout {args.timeout:g}: must be 0 or more seconds")
    if args.poll <= 0:
        raise CliError(f"--poll {args.poll:g}: must be more than 0 seconds")
    if not args.experiment.strip():
        raise CliError("--experiment is empty")
    from_file = kfp_api.read_params_file(args.params_file) if args.params_file else None

    pipeline_id = version_id = None
    if args.package is not None:
        package = kfp_api.load_package(args.package)
        params = kfp_api.parse_params(package, args.param, from_file, args.params_file or "")
        client = conn.client(args)
        what = f"package {args.package} (pipeline {package.name})"
    else:
        client = conn.client(args)
        with conn.talking(args):
            pipeline_id, version_id, version = kfp_api.find_version(
                client, args.pipeline_name, args.version_name, args.namespace
            )
            spec = kfp_api.version_spec(client, pipeline_id, version_id)
        package = kfp_api.package_of_spec(spec, f"{args.pipeline_name} version {version}")
        # Checked against the uploaded version: still nothing created when this fails.
        params = kfp_api.parse_params(package, args.param, from_file, args.params_file or "")
        what = f"pipeline {args.pipeline_name} version {version} (id {version_id})"

    name = args.run_name or _default_run_name(package.name)
    with conn.talking(args):
        experiment_id, created = kfp_api.ensure_experiment(client, args.experiment, args.namespace)
        print(
            f"experiment {args.experiment} ({'created, ' if created else ''}id {experiment_id})"
            + (f" in namespace {args.namespace}" if args.namespace else ""),
            file=sys.stderr,
        )
        created_run = kfp_api.create_run(
            client,
            experiment_id,
            name,
            params,
            package_path=args.package,
            pipeline_id=pipeline_id,
            version_id=version_id,
        )
        run_id = created_run.run_id
        print(f"run {name} (id {run_id}) of {what}")
        if not args.wait:
            return 0
        final = kfp_api.follow(
            client,
            run_id,
            timeout=args.timeout,
            poll=args.poll,
            say=lambda line: print(line, file=sys.stderr),
        )
    state = str(final.state)
    if state in kfp_api.FAILED_STATES:
        why = kfp_api.failure_of(final)
        raise CliError(f"run {run_id} ({name}) {state}" + (f": {why}" if why else ""))
    print(f"run {run_id} ({name}) {state}")
    return 0
