"""``loopline compile``: every component and pipeline to YAML, as ``python -m
pipelines.compile`` does (the same function, :func:`pipelines.compile.build`), with the
images under another registry or pinned by digest for a release.

The targets import every component, so they live in ``pipelines/compile.py``, outside
``components/``; this module imports it only when the command runs (``loopline --help``
stays fast, and the pipeline image, which ships ``components/`` only, says so plainly).
"""

from __future__ import annotations

import argparse

from components import _images
from components.cli.common import CliError

EPILOG = f"""\
Where the YAML goes: without --image-registry and --digests, beside the code (the committed
component.yaml / pipeline.yaml files, what `make compile` writes); with either, under
--out-dir DIR (required then: the committed YAML always names the default images
{_images.DEFAULT_REGISTRY}/<family>:<version>, and is never overwritten with others). The
paths under DIR are the repository's (DIR/pipelines/training/pipeline.yaml, ...).

--image-registry REG: every Loopline image becomes REG/<family>:<version>, e.g.
  {_images.image("pipeline", "gcr.io/acme/loopline")}.

--digests FILE (release YAML): FILE is JSON mapping an image family to its digest, either
  "sha256:<64 hex>" (the image is then REG/<family>@sha256:..., REG from --image-registry)
  or a full reference "REG/<family>@sha256:<64 hex>". Families: {", ".join(_images.FAMILIES)}
  (what the YAML runs); {", ".join(_images.SERVICES)} are accepted too. Example:
    {{"pipeline": "sha256:9f86d0...(64 hex)", "tfdv": "gcr.io/acme/loopline/tfdv@sha256:..."}}
  Every Loopline image URI in the YAML, container images and parameter defaults alike
  (tune_katib's trial_image), becomes REG/<family>@sha256:<hex>. Refused, naming the
  cause, before anything is written: an unknown family, a malformed digest, a reference
  to another family or registry, a family the YAML uses with no digest in FILE.

--check: compile and compare with the files there (the committed ones, or under
  --out-dir); write nothing; exit 1 and print a diff for each stale file.

Exit codes: 0 done (or up to date); 1 a refusal or stale YAML; 2 a usage error.
"""


def add_commands(groups: argparse._SubParsersAction) -> None:
    cmd = groups.add_parser(
        "compile",
        help="compile every component and pipeline to YAML (another registry, or pinned by "
        "digest for a release)",
        description="Compile every Loopline component and pipeline (kfp.compiler) to YAML.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cmd.add_argument(
        "--image-registry",
        metavar="REG",
        default=_images.DEFAULT_REGISTRY,
        help=f"name the images under REG instead of {_images.DEFAULT_REGISTRY}/, e.g. "
        "gcr.io/acme/loopline (needs --out-dir)",
    )
    cmd.add_argument(
        "--digests",
        metavar="FILE",
        help="pin every image by digest: FILE is JSON {family: sha256:<hex> or "
        "REG/family@sha256:<hex>} (format below; needs --out-dir)",
    )
    cmd.add_argument(
        "--out-dir",
        metavar="DIR",
        help="write (or --check) under DIR instead of beside the code",
    )
    cmd.add_argument(
        "--check",
        action="store_true",
        help="compare with the YAML already there; write nothing; exit 1 if any is stale",
    )
    cmd.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        from pipelines import compile as compiling
    except ImportError as exc:
        raise CliError(
            f"loopline compile needs the Loopline source tree (the pipelines package): {exc}"
        ) from None
    try:
        return compiling.build(
            registry=args.image_registry,
            digests=args.digests,
            out_dir=args.out_dir,
            check=args.check,
        )
    except compiling.CompileError as exc:
        raise CliError(str(exc)) from None
