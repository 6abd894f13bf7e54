"""``loopline upload PACKAGE --pipeline-name NAME``: a compiled package as a Kubeflow
Pipelines pipeline version (the pipeline is created when absent), through ``kfp.Client``
(components/lib/kfp_api.py does the work; the connection is components/cli/kfp_connection.py).
"""

from __future__ import annotations

import argparse
import sys

from components.cli import kfp_connection as conn
from components.lib import kfp_api

EPILOG = f"""\
What it does, in order:
  1. reads PACKAGE (a compiled pipeline or component YAML: kfp.compiler output, e.g. from
     `loopline compile`); a missing file or one that is not a compiled pipeline is refused
     before anything is sent;
  2. looks up the pipeline --pipeline-name (in --namespace); creates it, empty, when absent;
  3. uploads PACKAGE as its version --version-name (default: <loopline version>-<UTC
     time>-<first 8 hex of the package's sha256>). A version name that is taken is refused.
Progress goes to stderr; stdout gets one line with the pipeline id and the version id:
"pipeline NAME (id ...) version V (id ...)".

Example (CI, after `loopline compile --image-registry REG --digests digests.json
--out-dir build/yaml`):
  loopline upload build/yaml/pipelines/training/pipeline.yaml \\
      --pipeline-name loopline-training --version-name "$SHORT_SHA"

{conn.CONNECTION_HELP}
Exit codes: 0 done; 1 a failure on one line (no such file, not a compiled pipeline, a taken
version name, the KFP API unreachable or refusing: 401 / 403); 2 a usage error.
"""


def add_commands(groups: argparse._SubParsersAction) -> None:
    cmd = groups.add_parser(
        "upload",
        help="upload a compiled pipeline to Kubeflow Pipelines as a new pipeline version",
        description="Upload PACKAGE as a new version of the Kubeflow Pipelines pipeline "
        "--pipeline-name (created when absent); print the pipeline and version ids.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[conn.connection_options()],
    )
    cmd.add_argument("package", metavar="PACKAGE", help="the compiled pipeline YAML")
    cmd.add_argument(
        "--pipeline-name",
        required=True,
        metavar="NAME",
        help="the pipeline's name in KFP (required); created when absent",
    )
    cmd.add_argument(
        "--version-name",
        metavar="V",
        help="the new version's name (default: <loopline version>-<UTC time>-<sha256 "
        "prefix>); must not exist yet",
    )
    cmd.add_argument(
        "--description",
        default="",
        metavar="TEXT",
        help="the version's description (default: the package's name and sha256); a pipeline "
        "created now gets the package's own description",
    )
    cmd.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    conn.resolve(args)
    package = kfp_api.load_package(args.package)
    if not args.pipeline_name.strip():
        raise kfp_api.KfpError("--pipeline-name is empty")
    version = args.version_name or kfp_api.default_version(package)
    client = conn.client(args)
    with conn.talking(args):
        pipeline_id, created = kfp_api.ensure_pipeline(
            client, args.pipeline_name, args.namespace, package.description
        )
        print(
            f"pipeline {args.pipeline_name}: {'created' if created else 'found'} (id "
            f"{pipeline_id})" + (f" in namespace {args.namespace}" if args.namespace else ""),
            file=sys.stderr,
        )
        uploaded = kfp_api.upload_version(
            client, package, args.pipeline_name, pipeline_id, version, args.description
        )
    print(
        f"pipeline {args.pipeline_name} (id {pipeline_id}) version {version} "
        f"(id {uploaded.pipeline_version_id})"
    )
    return 0
