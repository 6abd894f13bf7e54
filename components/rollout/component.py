"""KFP definitions of rollout and settle; the logic is in ``executor.py``."""

from kfp import dsl
from kfp.dsl import HTML, Markdown, Output

from components._images import PIPELINE_IMAGE


@dsl.component(base_image=PIPELINE_IMAGE, install_kfp_package=False)
def rollout(
    report: Output[Markdown],
    summary: Output[HTML],
    model_name: str = "bikeshare",
    model_version: str = "",
    mlflow_tracking_uri: str = "",
    prometheus_url: str = "http://prometheus-operated.monitoring.svc:9090",
    namespace: str = "",
    deployment_mode: str = "knative",
    policy: str = "canary",
    service_account: str = "loopline-serving",
    pipeline_run_id: str = "",
) -> str:
    """Rolls a pushed version out on its KServe InferenceService, judged by Prometheus gates.

    The engine (``components/lib/rollout.py``) gives the candidate the policy's steps of live
    traffic in turn (canary: 10, 25, 50, 100%), checks the gates (error rate, p99 latency,
    prediction divergence from the stable version) at each, and promotes it (registry:
    canary -> production, the champion alias moves) or rolls it back (canary ->
    rolled_back; the stable version takes 100% again). Inconclusive checks (too little
    traffic, Prometheus down) never pass; after the policy's limit the rollout rolls back or
    pauses for an operator (``loopline rollout promote|rollback``). A version that already
    is the stable one (a model's first, deployed by push) needs no rollout: ``deployed``.

    Args:
        report: Output. Markdown: the outcome, and every check of this run with each gate's
            value (a timeline table), and the rollout's annotations.
        summary: Output. HTML: the outcome and the timeline, for the run's visualization.
        model_name: The registered model name (also the InferenceService's name).
        model_version: The version to roll out (pushed: it has a serving copy).
        mlflow_tracking_uri: The MLflow tracking server (the registry).
        prometheus_url: The Prometheus that scrapes the model servers (the default: the
            Prometheus Operator's ``prometheus-operated`` Service in namespace
            ``monitoring``, as kube-prometheus-stack installs it).
        namespace: The InferenceService's namespace; empty: the pod's own.
        deployment_mode: ``knative`` (Serverless: canaryTrafficPercent) or ``standard``
            (RawDeployment: spec.canary[]); an existing InferenceService keeps its own.
        policy: The rollout policy: a bundled name (``canary``:
            ``components/rollout/policies/canary.yaml``), a path in the image, or JSON /
            YAML text (fields: ``components.lib.rollout.RolloutPolicy``).
        service_account: The predictors' service account (its Secret: the S3 credentials).
        pipeline_run_id: Recorded as the registry changes' actor.

    Returns:
        The outcome: ``promoted``, ``rolled_back``, ``paused`` or ``deployed``.
    """
    from pathlib import Path

    from components.lib import logs
    from components.rollout import executor

    logs.setup()
    result = executor.run(
        model_name,
        model_version,
        mlflow_tracking_uri,
        prometheus_url,
        namespace,
        deployment_mode,
        policy,
        service_account,
        pipeline_run_id,
    )
    Path(report.path).write_text(executor.markdown(result))
    Path(summary.path).write_text(executor.html(result))
    meta = {
        k: result[k]
        for k in ("model_name", "version", "outcome", "reason", "strategy", "registry_state")
    }
    meta["checks"] = len(result["checks"])
    report.metadata.update(meta)
    summary.metadata.update(meta)
    print(
        f"rollout {model_name} version {result['version']}: {result['outcome']}: {result['reason']}"
    )
    return result["outcome"]


@dsl.component(base_image=PIPELINE_IMAGE, install_kfp_package=False)
def settle(
    model_name: str = "bikeshare",
    mlflow_tracking_uri: str = "",
    namespace: str = "",
    deployment_mode: str = "knative",
    service_account: str = "loopline-serving",
    serving_target: str = "kserve",
    pipeline_run_id: str = "",
) -> str:
    """The exit handler of a run that rolls out: leaves the InferenceService and the registry
    consistent, whatever happened to the run.

    A rollout still ``running`` (the run failed or was stopped midway) is rolled back: the
    stable version takes 100% again and the candidate is ``rolled_back`` in the registry. A
    promotion or rollback that had begun is finished; a ``paused`` rollout is left for the
    operator; a finished one is left as it is (the registry is made to agree with it).

    Args:
        model_name: The registered model name (also the InferenceService's name).
        mlflow_tracking_uri: The MLflow tracking server (the registry).
        namespace: The InferenceService's namespace; empty: the pod's own.
        deployment_mode: ``knative`` or ``standard`` (as the rollout's).
        service_account: The predictors' service account.
        serving_target: ``kserve``, or ``none``: nothing was deployed, nothing to settle.
        pipeline_run_id: Recorded as the registry changes' actor.

    Returns:
        What it left: ``skipped`` (serving_target none), ``none`` (no InferenceService or no
        rollout on it), or the rollout's phase (``promoted``, ``rolled_back``, ``paused``).
    """
    from components.lib import logs
    from components.rollout import executor

    logs.setup()
    result = executor.settle_run(
        model_name,
        mlflow_tracking_uri,
        namespace,
        deployment_mode,
        service_account,
        serving_target,
        pipeline_run_id,
    )
    print(f"settle {model_name}: {result['outcome']}: {result['reason']}")
    return result["outcome"]
