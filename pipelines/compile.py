"""Compiles every component and pipeline to the YAML committed beside its code.

    python -m pipelines.compile                      # write the YAMLs
    python -m pipelines.compile --check              # fail if a committed YAML is stale
    python -m pipelines.compile --registry gcr.io/p/loopline --out-dir build/yaml

The image registry is a compile option: the committed YAMLs name the default
registry (``components._images.DEFAULT_REGISTRY``); ``--registry`` writes copies
that name yours, for upload to your cluster.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
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

# A Loopline image URI anywhere in the YAML: container images and parameter defaults
# (tune_katib's trial_image) alike.
_IMAGE_URI = re.compile(
    rf"(?<![\w./-]){re.escape(_images.DEFAULT_REGISTRY)}/(?:{'|'.join(_images.FAMILIES)}):[\w.+-]+"
)


def compile_one(target, registry: str = _images.DEFAULT_REGISTRY) -> str:
    """Returns the YAML text of one component or pipeline, its images under ``registry``."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "out.yaml")
        compiler.Compiler().compile(target, package_path=path)
        text = Path(path).read_text()
    if registry != _images.DEFAULT_REGISTRY:
        text = _IMAGE_URI.sub(lambda m: _images.retarget(m.group(0), registry), text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--check", action="store_true", help="compare with the committed YAMLs; write nothing"
    )
    parser.add_argument(
        "--registry", default=_images.DEFAULT_REGISTRY, help="image registry prefix"
    )
    parser.add_argument(
        "--out-dir", type=Path, default=None, help="write under this folder instead of the repo"
    )
    args = parser.parse_args(argv)
    if args.check and args.registry != _images.DEFAULT_REGISTRY:
        parser.error("--check compares the committed YAMLs, which use the default registry")

    stale = []
    for target, rel in TARGETS:
        text = compile_one(target, args.registry)
        dest = (args.out_dir or ROOT) / rel
        if args.check:
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
        print(f"compiled {rel}")
    if stale:
        print(f"stale compiled YAML (run `make compile`): {', '.join(stale)}", file=sys.stderr)
        return 1
    if args.check:
        print(f"all {len(TARGETS)} compiled YAMLs are up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
