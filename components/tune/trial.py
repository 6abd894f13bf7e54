"""One Katib trial: fit the estimator with the trial's parameters and print the objective.

    python -m components.tune.trial --train=URI --eval=URI --transformer=URI \\
        --model-type=gradient_boosting --metric=rmse --param=learning_rate=0.1 [--param=...]

Runs in the pipeline image. URIs are paths, or ``s3://`` / ``minio://`` objects read
through ``--s3-endpoint`` with the credentials in the environment. Prints every eval
metric as ``name=value`` on its own line: Katib's StdOut metrics collector reads them.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import pandas as pd

from components import _storage as storage
from components.train import executor as train_exec
from components.transform import executor as transform_exec
from components.tune import katib_values


def _local(uri: str, tmp: str, name: str, endpoint: str) -> str:
    return storage.fetch(uri, os.path.join(tmp, name), endpoint) if storage.is_remote(uri) else uri


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    for name in ("train", "eval", "transformer", "model-type", "metric"):
        parser.add_argument(f"--{name}", required=True)
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
    with tempfile.TemporaryDirectory() as tmp:
        transformer, spec = transform_exec.load(
            _local(args.transformer, tmp, "transformer", args.s3_endpoint)
        )
        train = pd.read_parquet(_local(args.train, tmp, "train", args.s3_endpoint))
        valid = pd.read_parquet(_local(args.eval, tmp, "eval", args.s3_endpoint))
    model = train_exec.fit(transformer, spec, args.model_type, params, train, args.seed)
    scores = train_exec.evaluate(spec["task"], model, *train_exec.split_xy(spec, valid))
    if args.metric not in scores:
        parser.error(f"--metric {args.metric!r} is not one of {', '.join(scores)}")
    for name, value in scores.items():
        print(f"{name}={value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
