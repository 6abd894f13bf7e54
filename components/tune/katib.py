"""Tune, cluster backend: the search-space spec as a Katib v1beta1 Experiment.

:func:`experiment` turns the same spec the Optuna backend runs into the Experiment
object Katib's API takes (camelCase, as ``kubeflow.katib.ApiClient`` serialises it).
Each trial runs the training entrypoint (``python -m components.tune.trial``) in the
pipeline image and prints ``<metric>=<value>`` lines for Katib's StdOut metrics collector.
:func:`check_webhook_rules` applies the rules of Katib's admission webhook
(pkg/webhook/v1beta1/experiment/validator, v0.19.0) that no schema states, so a bad
Experiment fails here, named, before it reaches a cluster. The tuner image creates
and watches the Experiment with the Katib SDK (``katib_launcher.py``).
"""

from __future__ import annotations

import hashlib
import re

from components.lib.storage import S3_SECRET_KEYS
from components.tune import search_space

# Katib's algorithm names are the spec's; medianstop is Katib's early-stopping algorithm.
KATIB_ALGORITHMS = {
    "random": "random",
    "tpe": "tpe",
    "multivariate-tpe": "multivariate-tpe",
    "cmaes": "cmaes",
    "grid": "grid",
    "sobol": "sobol",
    "bayesianoptimization": "bayesianoptimization",
    "hyperband": "hyperband",
}
KNOWN_ALGORITHMS = set(KATIB_ALGORITHMS.values()) | {"enas", "darts", "pbt"}
PRIMARY_CONTAINER = "training"
# Katib's webhook (v0.19.0): a letter first, at most 40 characters, so that the suggestion
# Service `<name>-<algorithm>` stays a 63-character DNS label.
MAX_NAME_LENGTH = 40
_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


class ExperimentRuleError(ValueError):
    """An Experiment that Katib's admission webhook would reject; names the rule."""


def experiment_name(prefix: str, run_id: str) -> str:
    """``<prefix>-<10 hex digits of sha256(run_id)>``: one name per run, within Katib's limit.

    The prefix is lower-cased and cut to fit; :func:`check_webhook_rules` names what else is
    wrong with it. A KFP run id (a UUID) is too long to append whole.
    """
    digest = hashlib.sha256(run_id.encode()).hexdigest()[:10]
    base = prefix.lower()[: MAX_NAME_LENGTH - len(digest) - 1].rstrip("-")
    return f"{base}-{digest}"


def _feasible_space(param: dict) -> dict:
    if param["type"] in ("categorical", "discrete"):
        return {"list": [str(v) for v in param["values"]]}
    space = {"min": str(param["min"]), "max": str(param["max"])}
    if "step" in param:
        space["step"] = str(param["step"])
    if param.get("log"):
        space["distribution"] = "logUniform"
    return space


def _credentials(secret: str) -> list[dict]:
    if not secret:
        return []
    return [
        {"name": env, "valueFrom": {"secretKeyRef": {"name": secret, "key": key, "optional": True}}}
        for key, env in S3_SECRET_KEYS.items()
    ]


def experiment(
    spec: dict,
    name: str,
    namespace: str,
    image: str,
    data_args: dict[str, str],
    service_account: str = "loopline-pipeline-runner",
    seed: int = 0,
    credentials_secret: str = "",
) -> dict:
    """The Katib Experiment (a dict, as the API takes it) for a search-space spec.

    Args:
        spec: A validated search-space spec.
        name: Experiment name (see :func:`experiment_name`).
        namespace: Kubernetes namespace.
        image: The pipeline image, which holds the trial entrypoint.
        data_args: Trial entrypoint arguments naming the data: ``train``, ``eval``,
            ``transformer`` URIs (``s3://`` / ``minio://`` or paths the trial pod sees),
            ``s3_endpoint``, and the transformer's recorded ``transformer_sha256``,
            ``spec_sha256`` and ``sklearn_version`` (its metadata's ``sha256``,
            ``spec_sha256``, ``sklearn_version``; a trial refuses a transformer without them).
        service_account: The trial pods' service account.
        seed: Random seed of the algorithm and the estimator.
        credentials_secret: A Secret with ``accesskey`` / ``secretkey`` for the object store;
            the trial pods get them as ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``.
    """
    search_space.validate(spec)
    metric = spec["objective"]["metric"]
    trial_params = [
        {
            "name": p["name"],
            "description": f"{p['type']} parameter {p['name']}",
            "reference": p["name"],
        }
        for p in spec["parameters"]
    ]
    command = [
        "python",
        "-m",
        "components.tune.trial",
        f"--train={data_args['train']}",
        f"--eval={data_args['eval']}",
        f"--transformer={data_args['transformer']}",
        # What the transform step recorded: the trial verifies the transformer before loading it.
        f"--transformer-sha256={data_args.get('transformer_sha256', '')}",
        f"--spec-sha256={data_args.get('spec_sha256', '')}",
        f"--sklearn-version={data_args.get('sklearn_version', '')}",
        f"--s3-endpoint={data_args.get('s3_endpoint', '')}",
        f"--model-type={spec.get('model_type', 'gradient_boosting')}",
        f"--metric={metric}",
        f"--seed={seed}",
    ] + [f"--param={p['name']}=${{trialParameters.{p['name']}}}" for p in spec["parameters"]]
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "spec": {
            "template": {
                "metadata": {"annotations": {"sidecar.istio.io/inject": "false"}},
                "spec": {
                    "serviceAccountName": service_account,
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": PRIMARY_CONTAINER,
                            "image": image,
                            "command": command,
                            "env": _credentials(credentials_secret),
                        }
                    ],
                },
            }
        },
    }
    body = {
        "apiVersion": "kubeflow.org/v1beta1",
        "kind": "Experiment",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/part-of": "loopline"},
        },
        "spec": {
            "objective": {"type": spec["objective"]["goal"], "objectiveMetricName": metric},
            "algorithm": {
                "algorithmName": KATIB_ALGORITHMS[spec["algorithm"]],
                "algorithmSettings": [{"name": "random_state", "value": str(seed)}]
                if spec["algorithm"]
                in ("random", "tpe", "multivariate-tpe", "cmaes", "bayesianoptimization")
                else [],
            },
            "maxTrialCount": spec["max_trials"],
            "parallelTrialCount": spec.get("parallel_trials", 1),
            "maxFailedTrialCount": spec.get("max_failed_trials", 0),
            "parameters": [
                {"name": p["name"], "parameterType": p["type"], "feasibleSpace": _feasible_space(p)}
                for p in spec["parameters"]
            ],
            "metricsCollectorSpec": {"collector": {"kind": "StdOut"}},
            "trialTemplate": {
                "primaryContainerName": PRIMARY_CONTAINER,
                "successCondition": 'status.conditions.#(type=="Complete")#|#(status=="True")#',
                "failureCondition": 'status.conditions.#(type=="Failed")#|#(status=="True")#',
                "trialParameters": trial_params,
                "trialSpec": job,
            },
        },
    }
    stopping = spec.get("early_stopping")
    if stopping:
        body["spec"]["earlyStopping"] = {
            "algorithmName": stopping["algorithm"],
            "algorithmSettings": [
                {
                    "name": "min_trials_required",
                    "value": str(stopping.get("min_trials_required", 3)),
                },
                {"name": "start_step", "value": str(stopping.get("start_step", 4))},
            ],
        }
    check_webhook_rules(body)
    return body


def check_webhook_rules(exp: dict) -> None:
    """Katib's admission-webhook rules (v0.19.0) that its OpenAPI schema does not state."""
    name = exp.get("metadata", {}).get("name", "")
    if not _NAME.match(name) or len(name) > MAX_NAME_LENGTH:
        raise ExperimentRuleError(
            f"metadata.name {name!r} must be at most {MAX_NAME_LENGTH} characters of a-z, 0-9 "
            "and '-', starting with a letter and ending with a letter or digit"
        )
    spec = exp.get("spec", {})
    max_trials = spec.get("maxTrialCount")
    parallel = spec.get("parallelTrialCount")
    failed = spec.get("maxFailedTrialCount")
    if max_trials is not None and max_trials <= 0:
        raise ExperimentRuleError(f"spec.maxTrialCount must be > 0, got {max_trials}")
    if parallel is not None and parallel <= 0:
        raise ExperimentRuleError(f"spec.parallelTrialCount must be > 0, got {parallel}")
    if failed is not None and failed < 0:
        raise ExperimentRuleError(f"spec.maxFailedTrialCount must be >= 0, got {failed}")
    if max_trials is not None and parallel is not None and parallel > max_trials:
        raise ExperimentRuleError(
            f"spec.parallelTrialCount ({parallel}) must be <= spec.maxTrialCount ({max_trials})"
        )
    if max_trials is not None and failed is not None and failed > max_trials:
        raise ExperimentRuleError(
            f"spec.maxFailedTrialCount ({failed}) must be <= spec.maxTrialCount ({max_trials})"
        )
    if bool(spec.get("parameters")) == bool(spec.get("nasConfig")):
        raise ExperimentRuleError(
            "spec: exactly one of spec.parameters and spec.nasConfig must be set"
        )
    objective = spec.get("objective") or {}
    if objective.get("type") not in ("minimize", "maximize"):
        raise ExperimentRuleError(
            f"spec.objective.type {objective.get('type')!r} must be minimize or maximize"
        )
    metric = objective.get("objectiveMetricName")
    if not metric:
        raise ExperimentRuleError("spec.objective.objectiveMetricName must be set")
    if metric in (objective.get("additionalMetricNames") or []):
        raise ExperimentRuleError(
            f"spec.objective.additionalMetricNames must not contain the objective {metric!r}"
        )
    algorithm = (spec.get("algorithm") or {}).get("algorithmName")
    if algorithm not in KNOWN_ALGORITHMS:
        raise ExperimentRuleError(
            f"spec.algorithm.algorithmName {algorithm!r} is not an algorithm Katib knows"
        )
    for param in spec.get("parameters") or []:
        space = param.get("feasibleSpace")
        where = f"spec.parameters[{param.get('name')!r}]"
        if not space:
            raise ExperimentRuleError(f"{where}.feasibleSpace must be set")
        if param.get("parameterType") in ("categorical", "discrete") and not space.get("list"):
            raise ExperimentRuleError(
                f"{where}.feasibleSpace.list must be set for a {param['parameterType']} parameter"
            )
        if param.get("parameterType") in ("int", "double") and not (
            space.get("min") or space.get("max")
        ):
            raise ExperimentRuleError(
                f"{where}.feasibleSpace needs min or max for an {param['parameterType']} parameter"
            )
    template = spec.get("trialTemplate") or {}
    for field_name in (
        "primaryContainerName",
        "successCondition",
        "failureCondition",
        "trialParameters",
    ):
        if not template.get(field_name):
            raise ExperimentRuleError(f"spec.trialTemplate.{field_name} must be set")
    for tp in template["trialParameters"]:
        if not tp.get("name") or not tp.get("reference"):
            raise ExperimentRuleError(
                f"spec.trialTemplate.trialParameters entry {tp} needs name and reference"
            )
    if ("trialSpec" in template) == ("configMap" in template):
        raise ExperimentRuleError("spec.trialTemplate needs exactly one of trialSpec and configMap")
