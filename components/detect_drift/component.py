"""KFP definition of detect_drift; the logic is in ``executor.py``."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Markdown, Metrics, Model, Output

from components._images import PIPELINE_IMAGE


@dsl.component(base_image=PIPELINE_IMAGE, install_kfp_package=False)
def detect_drift(
    window: Input[Dataset],
    champion: Input[Model],
    report: Output[HTML],
    summary: Output[Markdown],
    result: Output[Artifact],
    metrics: Output[Metrics],
    model_name: str = "bikeshare",
    mlflow_tracking_uri: str = "",
    capture_uri: str = "",
    s3_endpoint: str = "",
    s3_secure: bool = False,
    monitoring_config: str = "default",
    retrain_policy: str = "default",
    min_rows: int = 0,
    pipeline_run_id: str = "",
) -> bool:
    """Judges drift and decay of the champion on one window of served traffic, and asks the
    registry's retraining policy whether to retrain.

    Against the monitoring reference stored in the champion's registry version (the training
    split's drift profile; the eval split's rows with target and prediction): per-feature
    drift (PSI, KS / chi-square, Jensen-Shannon distance, normalized Wasserstein,
    Benjamini-Hochberg, effect-size thresholds), the importance-weighted dataset rule and
    prediction drift; estimated performance from inputs and predictions; realized
    performance with a bootstrap interval and a streaming change detector once labels
    (``loopline labels``) join on request id. The policy (hysteresis, cool-downs, a cap,
    one trigger among concurrent runs) is applied and recorded under the model's registry
    lock.

    Args:
        window: The captured window (read_window): inputs, ``prediction``, ``request_id``,
            ``event_time``, ``model_version``; metadata ``window_id`` (the monitoring log's
            key: a window judged twice keeps its first decision), ``start``, ``end``. Rows of
            other versions (a canary) are counted and left out.
        champion: The production version's registry directory (find_champion).
        report: Output. HTML: decision, signals, each feature's statistics, a plot per
            drifted feature (reference vs current).
        summary: Output. Markdown: the short summary.
        result: Output. ``result.json``: everything above, machine-readable.
        metrics: Output. Drifted share, metric values, should_retrain (0/1).
        model_name: The registered model name.
        mlflow_tracking_uri: The MLflow tracking server (the registry and its monitoring log).
        capture_uri: Where the serving image captures traffic (``s3://bucket/prefix``); labels
            are read from ``<capture_uri>/labels``. Empty: no labels.
        s3_endpoint: The S3 / MinIO endpoint of ``capture_uri``.
        s3_secure: Reach the endpoint over TLS.
        monitoring_config: Drift thresholds and performance settings: ``default``
            (``components/detect_drift/configs/default.json``), a path, or JSON.
        retrain_policy: The retraining policy: ``default``, a path, or JSON / YAML text
            (``components.lib.retrain.RetrainPolicy``).
        min_rows: Fewer rows of the champion's version: no decision; 0: the monitoring
            config's ``drift.min_rows`` (500).
        pipeline_run_id: Recorded in the monitoring log.

    Returns:
        should_retrain: whether the policy triggered a retrain for this window.
    """
    import json
    from pathlib import Path

    from components.detect_drift import executor
    from components.detect_drift import report as render
    from components.lib import logs

    logs.setup()
    labels = executor.fetch_labels(capture_uri, model_name, s3_endpoint, s3_secure)
    out = executor.run(
        window_path=window.path,
        window_id=str(window.metadata.get("window_id", "")),
        window_start=str(window.metadata.get("start", "")),
        window_end=str(window.metadata.get("end", "")),
        champion_dir=champion.path,
        champion_meta=dict(champion.metadata),
        model_name=model_name,
        tracking_uri=mlflow_tracking_uri,
        monitoring_config=monitoring_config,
        retrain_policy=retrain_policy,
        min_rows=min_rows,
        labels=labels,
        pipeline_run_id=pipeline_run_id,
    )
    Path(report.path).write_text(render.html(out))
    Path(summary.path).write_text(render.markdown(out))
    Path(result.path).mkdir(parents=True, exist_ok=True)
    Path(result.path, "result.json").write_text(executor.to_json(out))
    for name, value in executor.metric_values(out).items():
        metrics.log_metric(name, value)
    meta = {
        k: out[k] for k in ("model_name", "model_version", "window_id", "should_retrain", "reason")
    }
    result.metadata.update(json.loads(json.dumps(meta, default=str)))
    print(
        f"{out['window_id']}: {'RETRAIN' if out['should_retrain'] else 'no retrain'}: {out['reason']}"
    )
    return bool(out["should_retrain"])


@dsl.component(base_image=PIPELINE_IMAGE, install_kfp_package=False)
def retrain_relay(should_retrain: bool) -> bool:
    """Hands detect_drift's ``should_retrain`` on as this task's single output, for ``dsl.If``.

    Under kfp.local 2.17 ``dsl.If`` resolves only a task's single ``.output``; detect_drift
    also writes its reports, so the pipeline passes ``detect_drift.outputs["Output"]`` here
    and branches on ``retrain_relay(...).output == True``.

    Args:
        should_retrain: detect_drift's return value.

    Returns:
        The same bool.
    """
    return bool(should_retrain)
