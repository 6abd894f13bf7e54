"""Compiles every component and pipeline to the YAML committed beside its code.

    python -m pipelines.compile                      # write the YAMLs
    python -m pipelines.compile --check              # fail if a committed YAML is stale
    python -m pipelines.compile --registry gcr.io/p/loopline --out-dir build/yaml
    python -m pipelines.compile --registry gcr.io/p/loopline --digests digests.json \
        --out-dir build/yaml                         # release YAML, images pinned by digest

The image registry is a compile option: the committed YAMLs name the default
registry (``components._images.DEFAULT_REGISTRY``); ``--registry`` writes copies
that name yours, for upload to your cluster, and ``--digests`` pins them by digest.
Such copies go under ``--out-dir``: never over the committed YAMLs. ``loopline compile``
(components/cli/compile.py) is the same (:func:`build`).
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import sys
import tempfile
from pathlib import Path

from kfp import compiler

from components import _images
from components.data_gate.component import data_gate
from components.detect_drift.component import detect_drift, retrain_relay
from components.evaluate.component import decision_relay, evaluate
from components.feature_join.component import feature_join
from components.find_champion.component import find_champion
from components.ingest.component import ingest
from components.materialize.component import materialize
from components.push.component import push
from components.read_window.component import read_window
from components.register.component import register
from components.rollout.component import rollout, settle
from components.train.component import train
from components.transform.component import transform
from components.tune.component import tune
from components.tune.katib_component import tune_katib
from components.validate_data.component import validate_data
from pipelines.continuous_training.pipeline import continuous_training_pipeline
from pipelines.training.pipeline import training_pipeline

ROOT = Path(__file__).resolve().parent.parent

# (what to compile, where its YAML is committed, relative to the repository root)
TARGETS = [
    (find_champion, "components/find_champion/component.yaml"),
    (ingest, "components/ingest/component.yaml"),
    (validate_data, "components/validate_data/component.yaml"),
    (materialize, "components/materialize/component.yaml"),
    (feature_join, "components/feature_join/component.yaml"),
    (data_gate, "components/data_gate/component.yaml"),
    (transform, "components/transform/component.yaml"),
    (tune, "components/tune/component.yaml"),
    (tune_katib, "components/tune/katib_component.yaml"),
    (train, "components/train/component.yaml"),
    (evaluate, "components/evaluate/component.yaml"),
    (decision_relay, "components/evaluate/decision_relay.yaml"),
    (register, "components/register/component.yaml"),
    (push, "components/push/component.yaml"),
    (rollout, "components/rollout/component.yaml"),
    (settle, "components/rollout/settle.yaml"),
    (read_window, "components/read_window/component.yaml"),
    (detect_drift, "components/detect_drift/component.yaml"),
    (retrain_relay, "components/detect_drift/retrain_relay.yaml"),
    (training_pipeline, "pipelines/training/pipeline.yaml"),
    (continuous_training_pipeline, "pipelines/continuous_training/pipeline.yaml"),
]


class CompileError(ValueError):
    """A refused compile (bad digests file, a write over the committed YAML): one line."""


def compile_one(target, registry: str = _images.DEFAULT_REGISTRY) -> str:
    """Returns the YAML text of one component or pipeline, its images under ``registry``."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "out.yaml")
        compiler.Compiler().compile(target, package_path=path)
        text = Path(path).read_text()
    if registry != _images.DEFAULT_REGISTRY:
        text = _images.retarget_all(text, registry)
    return text


def read_digests(path: str | os.PathLike, registry: str = _images.DEFAULT_REGISTRY) -> dict:
    """A digests file (JSON ``{"<family>": "sha256:<64 hex>" | "REG/<family>@sha256:<64 hex>"}``)
    -> ``{family: pinned reference}``; every problem is a CompileError naming it."""
    try:
        mapping = json.loads(Path(path).read_text())
    except OSError as exc:
        raise CompileError(f"--digests {path}: cannot read it: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise CompileError(f"--digests {path}: not JSON: {exc}") from None
    try:
        return _images.parse_digests(mapping, registry)
    except ValueError as exc:
        raise CompileError(f"--digests {path}: {exc}") from None


def compile_all(
    registry: str = _images.DEFAULT_REGISTRY, pinned: dict[str, str] | None = None
) -> dict[str, str]:
    """``{relative path: YAML text}`` for every target, in memory: images under ``registry``,
    or pinned by digest (``pinned``, from :func:`read_digests`). Nothing is written, so a
    family without a digest fails before any file changes."""
    texts = {}
    for target, rel in TARGETS:
        if pinned is None:
            texts[rel] = compile_one(target, registry)
            continue
        try:
            texts[rel] = _images.pin(compile_one(target), pinned, rel)
        except ValueError as exc:
            raise CompileError(str(exc)) from None
    if pinned is not None:
        left = sorted(rel for rel, text in texts.items() if _images.IMAGE_URI.search(text))
        if left:  # pin() replaces every match; this guards the guarantee itself
            raise CompileError(f"images left unpinned in {', '.join(left)}")
    return texts


def build(
    registry: str = _images.DEFAULT_REGISTRY,
    digests: str | os.PathLike | None = None,
    out_dir: str | os.PathLike | None = None,
    check: bool = False,
    say=print,
) -> int:
    """What ``python -m pipelines.compile`` and ``loopline compile`` do: compile every
    target; write each under ``out_dir`` (default: beside its code, the committed YAML), or
    with ``check`` compare with what is there. Returns 0, or 1 when ``check`` found stale
    files (a unified diff of each goes to stderr). Refused (CompileError), before anything
    is compiled or written: a retargeted or pinned compile into the committed locations, and
    a bad digests file."""
    registry = (registry or _images.DEFAULT_REGISTRY).rstrip("/")
    moved = registry != _images.DEFAULT_REGISTRY or digests is not None
    dest_root = Path(out_dir).resolve() if out_dir is not None else ROOT
    if moved and dest_root == ROOT.resolve():
        what = "--check compares the committed YAMLs, which" if check else "the committed YAMLs"
        raise CompileError(
            f"{what} name the default images ({_images.DEFAULT_REGISTRY}/<family>:<version>); "
            "YAML for another registry or pinned by digest goes elsewhere: pass --out-dir DIR"
        )
    pinned = read_digests(digests, registry) if digests is not None else None
    texts = compile_all(registry, pinned)

    stale = []
    for rel, text in texts.items():
        dest = dest_root / rel
        if check:
            committed = dest.read_text() if dest.exists() else ""
            if committed != text:
                stale.append(rel)
                diff = difflib.unified_diff(
                    committed.splitlines(),
                    text.splitlines(),
                    f"committed/{rel}",
                    f"compiled/{rel}",
                    lineterm="",
                )
                print("\n".join(list(diff)[:40]), file=sys.stderr)
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(text)
        say(f"compiled {rel}" + (f" -> {dest}" if out_dir is not None else ""))
    if stale:
        print(f"stale compiled YAML (run `make compile`): {', '.join(stale)}", file=sys.stderr)
        return 1
    if check:
        say(f"all {len(texts)} compiled YAMLs are up to date")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--check", action="store_true", help="compare with the YAMLs there; write nothing"
    )
    parser.add_argument(
        "--registry",
        "--image-registry",
        dest="registry",
        default=_images.DEFAULT_REGISTRY,
        help="image registry prefix",
    )
    parser.add_argument(
        "--digests",
        metavar="FILE",
        help='pin every image by digest: JSON {"<family>": "sha256:<64 hex>", ...} '
        "(see `loopline compile --help`)",
    )
    parser.add_argument(
        "--out-dir", type=Path, default=None, help="write under this folder instead of the repo"
    )
    args = parser.parse_args(argv)
    try:
        return build(args.registry, args.digests, args.out_dir, args.check)
    except CompileError as exc:
        parser.error(str(exc))


if __name__ == "__main__":
    sys.exit(main())
