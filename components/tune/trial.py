"""One Katib trial: fit the estimator with the trial's parameters and print the objective.

    python -m components.tune.trial --train=URI --eval=URI --transformer=URI \\
        --transformer-sha256=HEX --spec-sha256=HEX --sklearn-version=X.Y.Z \\
        --model-type=gradient_boosting --metric=rmse --param=learning_rate=0.1 [--param=...]

Runs in the pipeline image. URIs are paths, or ``s3://`` / ``minio://`` objects read
through ``--s3-endpoint`` with the credentials in the environment. The transformer is
verified before it is unpickled: ``--transformer-sha256``, ``--spec-sha256`` and
``--sklearn-version`` are what the transform step recorded in the artifact's metadata
(``sha256``, ``spec_sha256``, ``sklearn_version``), handed on by the Katib launcher; a
mismatch, or an empty value, is refused. Prints every eval metric as ``name=value`` on
its own line: Katib's StdOut metrics collector reads them.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import pandas as pd

from components.lib import features, modeling, storage
from components.tune import katib_values


def _local(uri: str, tmp: str, name: str, endpoint: str) -> str:
    if not storage.is_remote(uri):
        return uri
    return storage.fetch(uri, os.path.join(tmp, name), endpoint, what=f"--{name}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    for name in ("train", "eval", "transformer", "model-type", "metric"):
        parser.add_argument(f"--{name}", required=True)
    for name, recorded in (
        ("transformer-sha256", "sha256"),
        ("spec-sha256", "spec_sha256"),
        ("sklearn-version", "sklearn_version"),
    ):
        parser.add_argument(
            f"--{name}", required=True, help=f"the transformer metadata's {recorded}"
        )
    parser.add_argument("--s3-endpoint", default="")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--param", action="append", default=[], help="NAME=VALUE, repeated")
    args = parser.parse_args(argv)
    params = {}
    for item in args.param:
        name, sep, value = item.partition("=")
        if not sep or not name:
            parser.error(f"--param wants NAME=VALUE, got {item!r}")
        params[name] = katib_values.parse(value)
    transformer, spec = features.load_fitted(
        args.transformer,
        {
            "sha256": args.transformer_sha256,
            "spec_sha256": args.spec_sha256,
            "sklearn_version": args.sklearn_version,
        },
        s3_endpoint=args.s3_endpoint,
    )
    with tempfile.TemporaryDirectory() as tmp:
        train = pd.read_parquet(_local(args.train, tmp, "train", args.s3_endpoint))
        valid = pd.read_parquet(_local(args.eval, tmp, "eval", args.s3_endpoint))
    model = modeling.fit(transformer, spec, args.model_type, params, train, args.seed)
    scores = modeling.evaluate(spec["task"], model, *modeling.split_xy(spec, valid))
    if args.metric not in scores:
        parser.error(f"--metric {args.metric!r} is not one of {', '.join(scores)}")
    for name, value in scores.items():
        print(f"{name}={value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
