"""Create a Katib Experiment with the Katib SDK, wait for it, return the best parameters.

Runs in the tuner image (kubeflow-katib 0.19, which needs protobuf < 5: no kfp there):

    python -m components.tune.katib_launcher --search-space=bikeshare --name=loopline-tune-abc \\
        --namespace=kubeflow-user-example-com --trial-image=IMAGE --train=URI --eval=URI \\
        --transformer=URI --s3-endpoint=HOST:PORT --timeout-minutes=60 \\
        --best-params-out=FILE --report-out=FILE

Fails with Katib's own condition reason and message when the Experiment fails, and
after the timeout with the last condition seen; the Experiment is left in place for
`kubectl describe experiment` either way.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time

from components.lib import logs
from components.tune import katib, search_space

log = logging.getLogger("loopline.tune.katib")


class ExperimentFailed(RuntimeError):
    """Katib reported the Experiment Failed; the message is Katib's condition."""


def _conditions(experiment) -> list:
    status = getattr(experiment, "status", None)
    return list(getattr(status, "conditions", None) or [])


def _last(conditions: list, kind: str):
    matches = [c for c in conditions if c.type == kind and str(c.status) == "True"]
    return matches[-1] if matches else None


def launch(client, body: dict, timeout_s: float, poll_s: float = 15.0) -> tuple[dict, dict]:
    """Creates the Experiment and waits; returns (best parameters, best trial's metrics).

    Args:
        client: A ``kubeflow.katib.KatibClient``.
        body: The Experiment, from :func:`components.tune.katib.experiment`.
        timeout_s: Seconds to wait for Succeeded.
        poll_s: Seconds between status reads.
    """
    katib.check_webhook_rules(body)
    name, namespace = body["metadata"]["name"], body["metadata"]["namespace"]
    client.create_experiment(body, namespace=namespace)
    log.info(
        "created Experiment %s/%s (%s, %s trials)",
        namespace,
        name,
        body["spec"]["algorithm"]["algorithmName"],
        body["spec"]["maxTrialCount"],
    )
    deadline = time.monotonic() + timeout_s
    last_seen = "no condition yet"
    while True:
        experiment = client.get_experiment(name, namespace)
        conditions = _conditions(experiment)
        if conditions:
            latest = conditions[-1]
            last_seen = f"{latest.type}: {latest.reason}: {latest.message}"
        failed = _last(conditions, "Failed")
        if failed is not None:
            raise ExperimentFailed(
                f"Katib Experiment {namespace}/{name} failed: {failed.reason}: {failed.message}"
            )
        if _last(conditions, "Succeeded") is not None:
            break
        status = getattr(experiment, "status", None)
        log.info(
            "Experiment %s/%s: %s; trials succeeded %s, running %s",
            namespace,
            name,
            last_seen,
            getattr(status, "trials_succeeded", 0) or 0,
            getattr(status, "trials_running", 0) or 0,
        )
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"Katib Experiment {namespace}/{name} did not succeed within {timeout_s:.0f} s; last: {last_seen}"
            )
        time.sleep(poll_s)
    optimal = client.get_optimal_hyperparameters(name, namespace)
    if optimal is None:
        raise ExperimentFailed(
            f"Katib Experiment {namespace}/{name} succeeded without an optimal trial"
        )
    params = {p.name: _typed(p.value) for p in optimal.parameter_assignments}
    metrics = {m.name: float(m.latest) for m in optimal.observation.metrics}
    log.info("best %s with %s", metrics, params)
    return params, metrics


def experiment_name(prefix: str, run_id: str) -> str:
    """``prefix-run_id`` cut to a DNS-1123 label (63 characters, lower case, no trailing dash)."""
    name = f"{prefix}-{run_id}" if run_id else prefix
    return name.lower()[:63].rstrip("-")


def _typed(text: str):
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    for name in (
        "search-space",
        "name",
        "namespace",
        "trial-image",
        "train",
        "eval",
        "transformer",
    ):
        parser.add_argument(f"--{name}", required=True)
    parser.add_argument("--run-id", default="", help="appended to --name: one Experiment per run")
    parser.add_argument("--s3-endpoint", default="")
    parser.add_argument("--service-account", default="loopline-pipeline-runner")
    parser.add_argument(
        "--credentials-secret", default="", help="Secret with accesskey/secretkey for the trials"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout-minutes", type=float, default=60)
    parser.add_argument("--poll-seconds", type=float, default=15)
    parser.add_argument("--best-params-out", required=True)
    parser.add_argument("--report-out", required=True)
    args = parser.parse_args(argv)
    logs.setup()

    spec = search_space.load(args.search_space)
    body = katib.experiment(
        spec,
        args.name,
        args.namespace,
        args.trial_image,
        {
            "train": args.train,
            "eval": args.eval,
            "transformer": args.transformer,
            "s3_endpoint": args.s3_endpoint,
        },
        service_account=args.service_account,
        seed=args.seed,
    )
    from kubeflow.katib import KatibClient

    params, metrics = launch(
        KatibClient(namespace=args.namespace), body, args.timeout_minutes * 60, args.poll_seconds
    )
    for path in (args.best_params_out, args.report_out):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(args.best_params_out, "w") as fh:
        fh.write(json.dumps(params, sort_keys=True))
    with open(args.report_out, "w") as fh:
        fh.write(
            f"# Tuning (Katib)\n\nExperiment `{args.namespace}/{name}`, algorithm `{spec['algorithm']}`, "
            f"{spec['max_trials']} trials, {spec.get('parallel_trials', 1)} in parallel.\n\n"
            f"**Best {json.dumps(metrics)}** with `{json.dumps(params, sort_keys=True)}`\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
