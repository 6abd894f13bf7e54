"""Checks release YAML (``loopline compile --digests``' output) before it is uploaded.

    python -m tests.release_check build/yaml --registry gcr.io/p/loopline --digests digests.json

Fails (exit 1, one line per problem) unless:
  - every pipeline and component of ``pipelines/compile.py`` TARGETS is there, at the path it
    has in the repository;
  - every Loopline image the YAML names (container images and parameter defaults alike) is
    under ``--registry`` and pinned by the digest ``--digests`` gives its family, so that what
    runs is exactly what was tested and pushed;
  - no image of the default registry (``loopline/...``, the committed YAML's) is left.
Cloud Build runs it after the compile step (cloudbuild.yaml); tests/test_build_config.py
runs it on YAML written here.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from components import _images

DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def _references(text: str, registry: str) -> list[tuple[str, str | None, str]]:
    """(family, digest or None, the whole reference) of every Loopline image under
    ``registry`` in ``text``."""
    families = "|".join(_images.FAMILIES + _images.SERVICES)
    pattern = re.compile(
        rf"(?<![\w./-]){re.escape(registry.rstrip('/'))}/({families})"
        r"(?::[\w.+-]+)?(?:@(sha256:[0-9a-f]{64}))?(?![\w.+@:-])"
    )
    return [(m.group(1), m.group(2), m.group(0)) for m in pattern.finditer(text)]


def problems(
    out_dir: Path, registry: str, digests: dict[str, str], targets: list[str]
) -> list[str]:
    """Every problem of the release YAML under ``out_dir``; empty when it is right."""
    found = []
    for family, digest in digests.items():
        if not DIGEST.fullmatch(str(digest)):
            found.append(f"digests: {family} has {digest!r}, not sha256:<64 hex>")
    default = re.compile(
        rf"(?<![\w./-]){re.escape(_images.DEFAULT_REGISTRY)}/"
        rf"(?:{'|'.join(_images.FAMILIES + _images.SERVICES)}):"
    )
    for rel in targets:
        path = out_dir / rel
        if not path.is_file():
            found.append(f"{rel}: missing from {out_dir}")
            continue
        text = path.read_text()
        refs = _references(text, registry)
        if not refs:
            found.append(f"{rel}: names no image under {registry}")
        for family, digest, ref in refs:
            if digest is None:
                found.append(f"{rel}: {ref} is not pinned by digest")
            elif family not in digests:
                found.append(f"{rel}: {ref}: digests has no {family}")
            elif digest != digests[family]:
                found.append(f"{rel}: {ref} is not the pushed {family} ({digests[family]})")
        for match in default.finditer(text):
            found.append(f"{rel}: still names the default registry's {match.group(0)}")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("out_dir", type=Path, help="the compile command's --out-dir")
    parser.add_argument("--registry", required=True, help="the registry compiled for")
    parser.add_argument("--digests", type=Path, required=True, help="family -> sha256 digest")
    args = parser.parse_args(argv)
    from pipelines.compile import TARGETS

    digests = json.loads(args.digests.read_text())
    found = problems(args.out_dir, args.registry, digests, [rel for _, rel in TARGETS])
    for line in found:
        print(f"release_check: {line}", file=sys.stderr)
    if found:
        return 1
    print(f"release_check: all {len(TARGETS)} YAMLs present, every image pinned by digest")
    return 0


if __name__ == "__main__":
    sys.exit(main())
