"""The continuous-training pipeline, which a recurring run starts: read the window of traffic
the serving image captured -> validate it (TFDV, the schema's SERVING environment; schema
anomalies block, drift and skew only report) -> detect_drift (drift, decay, the retraining
policy) -> if it says so, the training pipeline, nested, on the latest snapshot (evaluate gate,
register, canary rollout).

Compiled to ``pipeline.yaml`` beside this file by ``make compile``; scheduled with
``loopline schedule`` (a recurring run, max concurrency 1, no catch-up).
"""

from kfp import dsl, kubernetes

from components.data_gate.component import data_gate
from components.detect_drift.component import detect_drift, retrain_relay
from components.find_champion.component import find_champion
from components.lib.storage import S3_SECRET_KEYS
from components.read_window.component import read_window
from components.validate_data.component import validate_data
from pipelines import resilience
from pipelines.training.pipeline import training_pipeline

# What each monitoring task requests (CPU, memory) and its memory limit; the nested training
# pipeline sizes its own tasks. Measured on Bikeshare windows (a month of hourly traffic) and a
# 1M-row window (detect_drift ~0.9 GiB), with headroom.
RESOURCES = {
    "find-champion": ("100m", "512Mi", "1Gi"),
    "read-window": ("250m", "512Mi", "2Gi"),
    "validate": ("1", "2Gi", "4Gi"),
    "data-gate": ("100m", "256Mi", "512Mi"),
    "detect-drift": ("1", "1Gi", "3Gi"),
    "relay": ("100m", "128Mi", "256Mi"),
}


def _sized(task: dsl.PipelineTask, name: str) -> dsl.PipelineTask:
    cpu, memory, memory_limit = RESOURCES[name]
    resilience.apply(task, name)  # retries and a deadline for the tasks that touch the network
    return task.set_cpu_request(cpu).set_memory_request(memory).set_memory_limit(memory_limit)


def _with_s3(task: dsl.PipelineTask, secret: str, optional: bool = False) -> dsl.PipelineTask:
    kubernetes.use_secret_as_env(
        task, secret_name=secret, secret_key_to_env=S3_SECRET_KEYS, optional=optional
    )
    return task


@dsl.pipeline(
    name="loopline-continuous-training",
    description="Loopline continuous training: read a window of captured traffic, validate it against "
    "the schema's serving environment, judge drift and decay of the champion (reference profile from "
    "the registry, labels joined on request id), apply the retraining policy (hysteresis, cool-down, "
    "cap; recorded in the registry), and when it says so run the training pipeline (evaluate gate, "
    "register, canary rollout).",
)
def continuous_training_pipeline(
    source_uri: str,
    capture_uri: str = "s3://loopline-capture/predictions",
    window_hours: int = 24,
    window_end: str = "",
    min_rows: int = 500,
    monitoring_config: str = "default",
    retrain_policy: str = "default",
    training_window_start: str = "",
    training_window_end: str = "",
    split_method: str = "time",
    time_column: str = "day",
    file_format: str = "auto",
    s3_endpoint: str = "minio-service.kubeflow:9000",
    s3_secure: bool = False,
    s3_credentials_secret: str = "mlpipeline-minio-artifact",
    schema: str = "bikeshare",
    feature_spec: str = "bikeshare",
    search_space: str = "bikeshare",
    seed: int = 0,
    tuning_backend: str = "optuna",
    katib_namespace: str = "kubeflow-user-example-com",
    model_name: str = "bikeshare",
    mlflow_tracking_uri: str = "http://mlflow:5000",
    evaluation_config: str = "bikeshare",
    serving_target: str = "kserve",
    serving_namespace: str = "",
    deployment_mode: str = "knative",
    models_bucket: str = "loopline-models",
    prometheus_url: str = "http://prometheus-operated.monitoring.svc:9090",
    rollout_policy: str = "canary",
):
    """Monitors the champion on captured traffic and retrains it when the policy says so.

    Every default fits the bundled Bikeshare model, the capture bucket manifests/serving sets
    up and the MLflow service manifests/ deploy: a recurring run needs only ``source_uri``
    (the snapshot a retrain trains on).

    Args:
        source_uri: The latest snapshot a retrain trains on (``s3://`` or a path; CSV or
            Parquet), validated by the training pipeline like any batch.
        capture_uri: Where the serving image captures traffic (``s3://bucket/prefix``, its
            ``--capture_uri``); labels are read from ``<capture_uri>/labels``.
        window_hours: The window's length in hours, ending at ``window_end``.
        window_end: The window's end (ISO UTC, exclusive, floored to the hour); empty: the
            current hour (a recurring run judges the last ``window_hours``).
        min_rows: Fewer rows of the champion in the window: no decision (the report says
            so), no retrain.
        monitoring_config: detect_drift's thresholds and performance settings (``default``,
            a path in the image, or JSON).
        retrain_policy: The retraining policy (``default``, a path in the image, or JSON /
            YAML): consecutive windows, minimum interval, cool-down after a rejected retrain,
            cap per period, schedule.
        training_window_start: A retrain's ``window_start`` on ``time_column``; empty: all.
        training_window_end: A retrain's ``window_end`` on ``time_column``; empty: all.
        split_method: A retrain's split: ``time`` or ``hash``.
        time_column: The snapshot's time column (Bikeshare's ``day``).
        file_format: ``auto``, ``csv`` or ``parquet``.
        s3_endpoint: The S3 / MinIO endpoint (capture, labels, snapshot, model copies).
        s3_secure: Reach the endpoint over TLS.
        s3_credentials_secret: Kubernetes Secret with ``accesskey`` / ``secretkey``.
        schema: The versioned TFDV schema (its SERVING environment for the window).
        feature_spec: A retrain's feature spec.
        search_space: A retrain's tuning search space.
        seed: Seed for tuning and training.
        tuning_backend: ``optuna`` or ``katib``.
        katib_namespace: The namespace of a Katib Experiment.
        model_name: The registered (and served) model name.
        mlflow_tracking_uri: The MLflow tracking server: the champion, its monitoring
            reference and log, and where a retrain registers.
        evaluation_config: The evaluation gate's config.
        serving_target: ``kserve`` (a promoted retrain goes through the rollout policy) or
            ``none`` (stop after register: kfp.local runs and ``make demo``).
        serving_namespace: The InferenceService's namespace; empty: the run's own.
        deployment_mode: ``knative`` or ``standard``.
        models_bucket: The bucket push copies a version to.
        prometheus_url: The Prometheus the rollout's gates query.
        rollout_policy: The rollout policy (``canary``, a path, or JSON / YAML).
    """
    champion = find_champion(model_name=model_name, mlflow_tracking_uri=mlflow_tracking_uri)
    _sized(champion.set_caching_options(False).set_display_name("find-champion"), "find-champion")
    window = read_window(
        model_name=model_name,
        capture_uri=capture_uri,
        window_end=window_end,
        window_hours=window_hours,
        min_rows=min_rows,
        s3_endpoint=s3_endpoint,
        s3_secure=s3_secure,
    )
    _sized(window.set_caching_options(False).set_display_name("read-window"), "read-window")
    _with_s3(window, s3_credentials_secret)
    # The window is a batch like any other: schema anomalies (a missing input, a bad type)
    # block; drift and skew against the champion's training statistics are only reported
    # here: judging them is detect_drift's job.
    validation = validate_data(
        data=window.outputs["window"],
        data_name="serving",
        schema=schema,
        baseline_statistics=champion.outputs["baseline_statistics"],
        s3_endpoint=s3_endpoint,
        s3_secure=s3_secure,
    ).set_display_name("validate-window")
    _sized(validation.set_caching_options(False), "validate")
    _with_s3(validation, s3_credentials_secret, optional=True)
    gate = data_gate(
        anomalies_found=validation.outputs["anomalies_found"],
        anomalies=validation.outputs["anomalies"],
    ).set_display_name("data-gate")
    _sized(gate, "data-gate")
    judged = detect_drift(
        window=window.outputs["window"],
        champion=champion.outputs["champion"],
        model_name=model_name,
        mlflow_tracking_uri=mlflow_tracking_uri,
        capture_uri=capture_uri,
        s3_endpoint=s3_endpoint,
        s3_secure=s3_secure,
        monitoring_config=monitoring_config,
        retrain_policy=retrain_policy,
        min_rows=min_rows,
        pipeline_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
    ).after(gate)
    # The policy's decision is recorded in the registry: never answer from the cache.
    _sized(judged.set_caching_options(False).set_display_name("detect-drift"), "detect-drift")
    _with_s3(judged, s3_credentials_secret, optional=True)
    # dsl.If resolves only a task's single output under kfp.local: relay the decision.
    relay = retrain_relay(should_retrain=judged.outputs["Output"]).set_display_name(
        "should-retrain"
    )
    _sized(relay, "relay")
    with dsl.If(relay.output == True, name="retrain"):  # noqa: E712 (a pipeline channel)
        training_pipeline(
            source_uri=source_uri,
            split_method=split_method,
            time_column=time_column,
            window_start=training_window_start,
            window_end=training_window_end,
            file_format=file_format,
            s3_endpoint=s3_endpoint,
            s3_secure=s3_secure,
            s3_credentials_secret=s3_credentials_secret,
            schema=schema,
            feature_spec=feature_spec,
            search_space=search_space,
            seed=seed,
            tuning_backend=tuning_backend,
            katib_namespace=katib_namespace,
            model_name=model_name,
            mlflow_tracking_uri=mlflow_tracking_uri,
            evaluation_config=evaluation_config,
            serving_target=serving_target,
            serving_namespace=serving_namespace,
            deployment_mode=deployment_mode,
            models_bucket=models_bucket,
            prometheus_url=prometheus_url,
            rollout_policy=rollout_policy,
        ).set_display_name("training")
