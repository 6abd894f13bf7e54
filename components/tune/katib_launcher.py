"""Create a Katib Experiment with the Katib SDK, wait for it, return the best parameters.

Runs in the tuner image (kubeflow-katib 0.19, which needs protobuf < 5: no kfp there):

    python -m components.tune.katib_launcher --search-space=bikeshare --name=loopline-tune \\
        --run-id=RUN --namespace=kubeflow-user-example-com --trial-image=IMAGE --train=URI \\
        --eval=URI --transformer=URI --s3-endpoint=HOST:PORT --credentials-secret=SECRET \\
        --timeout-minutes=60 --best-params-out=FILE --report-out=FILE [--keep-experiment=true]

Every run creates its own Experiment, named from --name and --run-id (a random id when
none is given). Fails with Katib's own condition reason and message when the Experiment
fails, and after the timeout with the last condition seen. Once it is done with the
Experiment (succeeded, failed or timed out) it deletes it, trials and all, unless
--keep-experiment=true keeps it for `kubectl describe experiment`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import uuid

from components.lib import logs, network
from components.tune import katib, katib_values, search_space

log = logging.getLogger("loopline.tune.katib")


class ExperimentFailed(RuntimeError):
    """Katib reported the Experiment Failed; the message is Katib's condition."""


def _conditions(experiment) -> list:
    status = getattr(experiment, "status", None)
    return list(getattr(status, "conditions", None) or [])


def _last(conditions: list, kind: str):
    matches = [c for c in conditions if c.type == kind and str(c.status) == "True"]
    return matches[-1] if matches else None


def launch(
    client, body: dict, timeout_s: float, poll_s: float = 15.0, keep: bool = False
) -> tuple[dict, dict]:
    """Creates the Experiment and waits; returns (best parameters, best trial's metrics).

    Args:
        client: A ``kubeflow.katib.KatibClient``.
        body: The Experiment, from :func:`components.tune.katib.experiment`.
        timeout_s: Seconds to wait for Succeeded.
        poll_s: Seconds between status reads.
        keep: Keep the Experiment when done; by default it is deleted, whatever the outcome.
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
    try:
        return _wait(client, name, namespace, timeout_s, poll_s)
    finally:
        if keep:
            log.info("kept Experiment %s/%s (keep_experiment)", namespace, name)
        else:
            _delete(client, name, namespace)


def _delete(client, name: str, namespace: str) -> None:
    try:
        client.delete_experiment(name, namespace)
    except (RuntimeError, TimeoutError) as e:  # what KatibClient raises; the run keeps its result
        log.warning(
            "could not delete Experiment %s/%s (%s): kubectl -n %s delete experiment %s",
            namespace,
            name,
            e,
            namespace,
            name,
        )
    else:
        log.info("deleted Experiment %s/%s", namespace, name)


def _wait(client, name: str, namespace: str, timeout_s: float, poll_s: float):
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
    params = {p.name: katib_values.parse(p.value) for p in optimal.parameter_assignments}
    metrics = {m.name: float(m.latest) for m in optimal.observation.metrics}
    log.info("best %s with %s", metrics, params)
    return params, metrics


def _bool(text: str) -> bool:
    value = katib_values.parse(text)
    if not isinstance(value, bool):
        raise argparse.ArgumentTypeError(f"want true or false, got {text!r}")
    return value


def transformer_record(executor_input: str) -> dict[str, str]:
    """The transformer's recorded ``sha256``, ``spec_sha256`` and ``sklearn_version``, from the
    KFP executor input (its input artifact's metadata), as trial arguments.

    Without them every trial refuses the transformer: a missing record is an error here.
    """
    keys = ("sha256", "spec_sha256", "sklearn_version")
    try:
        spec = json.loads(executor_input)
        artifact = spec["inputs"]["artifacts"]["transformer"]["artifacts"][0]
        meta = artifact.get("metadata", {})
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise SystemExit(
            "--executor-input: no transformer artifact in the KFP executor input "
            f"({type(exc).__name__}: {exc}); the trials need its recorded hashes"
        ) from exc
    missing = [k for k in keys if not meta.get(k)]
    if missing:
        raise SystemExit(
            f"--executor-input: the transformer artifact records no {', '.join(missing)}; "
            "was it written by this version's transform step?"
        )
    return {
        "transformer_sha256": str(meta["sha256"]),
        "spec_sha256": str(meta["spec_sha256"]),
        "sklearn_version": str(meta["sklearn_version"]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    for flag in (
        "search-space",
        "name",
        "namespace",
        "trial-image",
        "train",
        "eval",
        "transformer",
    ):
        parser.add_argument(f"--{flag}", required=True)
    parser.add_argument(
        "--run-id", default="", help="makes the Experiment's name unique (default: random)"
    )
    parser.add_argument("--s3-endpoint", default="")
    parser.add_argument("--service-account", default="loopline-pipeline-runner")
    parser.add_argument(
        "--credentials-secret", default="", help="Secret with accesskey/secretkey for the trials"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout-minutes", type=float, default=60)
    parser.add_argument("--poll-seconds", type=float, default=15)
    parser.add_argument(
        "--keep-experiment", type=_bool, default=False, help="true: do not delete it when done"
    )
    parser.add_argument("--best-params-out", required=True)
    parser.add_argument("--report-out", required=True)
    parser.add_argument(
        "--executor-input",
        default="",
        help="KFP executor input ({{$}}): the transformer's recorded hashes for the trials",
    )
    args = parser.parse_args(argv)
    logs.setup()

    spec = search_space.load(args.search_space)
    name = katib.experiment_name(args.name, args.run_id or uuid.uuid4().hex)
    body = katib.experiment(
        spec,
        name,
        args.namespace,
        args.trial_image,
        {
            "train": args.train,
            "eval": args.eval,
            "transformer": args.transformer,
            "s3_endpoint": args.s3_endpoint,
            **transformer_record(args.executor_input),
        },
        service_account=args.service_account,
        seed=args.seed,
        credentials_secret=args.credentials_secret,
    )
    from kubeflow.katib import KatibClient

    katib_client = KatibClient(namespace=args.namespace)
    # The SDK sends no timeout: a hung API server would hold the step until KFP's own limit.
    network.with_request_timeout(katib_client.custom_api.api_client, "kubernetes")
    params, metrics = launch(
        katib_client,
        body,
        args.timeout_minutes * 60,
        args.poll_seconds,
        keep=args.keep_experiment,
    )
    for path in (args.best_params_out, args.report_out):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(args.best_params_out, "w") as fh:
        fh.write(json.dumps(params, sort_keys=True))
    with open(args.report_out, "w") as fh:
        fh.write(
            f"# Tuning (Katib)\n\nExperiment `{args.namespace}/{name}` "
            f"({'kept' if args.keep_experiment else 'deleted'}), algorithm `{spec['algorithm']}`, "
            f"{spec['max_trials']} trials, {spec.get('parallel_trials', 1)} in parallel.\n\n"
            f"**Best {json.dumps(metrics)}** with `{json.dumps(params, sort_keys=True)}`\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
