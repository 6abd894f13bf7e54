"""The training pipeline: ingest -> validate (TFDV) -> data gate -> transform -> tune -> train.

Compiled to ``pipeline.yaml`` beside this file by ``make compile``.
"""

from kfp import dsl, kubernetes

from components.data_gate.component import data_gate
from components.ingest.component import ingest
from components.lib.storage import S3_SECRET_KEYS
from components.train.component import train
from components.transform.component import transform
from components.tune.component import tune
from components.tune.katib_component import tune_katib
from components.validate_data.component import validate_data


@dsl.pipeline(
    name="loopline-training",
    description="Loopline training pipeline: ingest a snapshot into versioned splits, validate them with "
    "TFDV (a bad batch stops here), fit the transform on train, tune with Optuna, train the model with lineage.",
)
def training_pipeline(
    source_uri: str,
    split_method: str = "time",
    time_column: str = "",
    key_column: str = "",
    train_fraction: float = 0.7,
    eval_fraction: float = 0.15,
    holdout_fraction: float = 0.15,
    window_start: str = "",
    window_end: str = "",
    file_format: str = "auto",
    s3_endpoint: str = "minio-service.kubeflow:9000",
    s3_secure: bool = False,
    s3_credentials_secret: str = "mlpipeline-minio-artifact",
    schema: str = "bikeshare",
    beam_args: str = "",
    feature_spec: str = "bikeshare",
    search_space: str = "bikeshare",
    model_type: str = "gradient_boosting",
    seed: int = 0,
    tuning_backend: str = "optuna",
    katib_namespace: str = "kubeflow-user-example-com",
    katib_timeout_minutes: float = 60.0,
):
    """Trains a Loopline model from a data snapshot.

    Args:
        source_uri: Snapshot to train on: a path, ``file://`` or ``s3://bucket/key`` (CSV or Parquet).
        split_method: ``time`` or ``hash``.
        time_column: Column ordering rows in time (time split and window).
        key_column: Column hashed for ``split_method="hash"``.
        train_fraction: Share of rows for training.
        eval_fraction: Share of rows for evaluation.
        holdout_fraction: Share of rows for the long-term holdout.
        window_start: Optional window start on ``time_column`` (inclusive).
        window_end: Optional window end on ``time_column`` (exclusive).
        file_format: ``auto``, ``csv`` or ``parquet``.
        s3_endpoint: S3 / MinIO endpoint for ``s3://`` sources.
        s3_secure: Reach the endpoint over TLS.
        s3_credentials_secret: Kubernetes Secret with ``accesskey`` / ``secretkey`` for the endpoint.
        schema: The versioned TFDV schema the data must meet (bundled name or path in the tfdv image).
        beam_args: Empty for in-memory TFDV statistics, or a JSON list of Apache Beam arguments.
        feature_spec: The transform's feature spec (bundled name, path in the image, or JSON).
        search_space: The tuning search space (bundled name, path in the image, or JSON).
        model_type: ``gradient_boosting`` or ``linear``; must match the search space's model_type.
        seed: Seed for tuning and training.
        tuning_backend: ``optuna`` (in the pipeline image: laptops, CI, any cluster) or ``katib``
            (a Katib Experiment with the same search space and algorithm; needs Katib).
        katib_namespace: The namespace the Katib Experiment is created in.
        katib_timeout_minutes: How long the pipeline waits for the Katib Experiment.
    """
    ingest_task = ingest(
        source_uri=source_uri,
        split_method=split_method,
        time_column=time_column,
        key_column=key_column,
        train_fraction=train_fraction,
        eval_fraction=eval_fraction,
        holdout_fraction=holdout_fraction,
        window_start=window_start,
        window_end=window_end,
        file_format=file_format,
        s3_endpoint=s3_endpoint,
        s3_secure=s3_secure,
    ).set_display_name("ingest")
    # Optional: a run that reads a local or file:// snapshot needs no Secret.
    kubernetes.use_secret_as_env(
        ingest_task,
        secret_name=s3_credentials_secret,
        secret_key_to_env=S3_SECRET_KEYS,
        optional=True,
    )
    validation = validate_data(
        data=ingest_task.outputs["train"],
        eval_data=ingest_task.outputs["eval_data"],
        data_name="train",
        schema=schema,
        beam_args=beam_args,
    ).set_display_name("validate")
    gate = data_gate(
        anomalies_found=validation.outputs["anomalies_found"],
        anomalies=validation.outputs["anomalies"],
    ).set_display_name("data-gate")
    # Nothing below runs unless the gate passed.
    fitted = (
        transform(train=ingest_task.outputs["train"], feature_spec=feature_spec)
        .after(gate)
        .set_display_name("transform")
    )
    with dsl.If(tuning_backend == "katib", name="tune-on-katib"):
        on_katib = tune_katib(
            train_data=ingest_task.outputs["train"],
            eval_data=ingest_task.outputs["eval_data"],
            transformer=fitted.outputs["transformer"],
            search_space=search_space,
            experiment_name="loopline-tune",
            run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
            namespace=katib_namespace,
            s3_endpoint=s3_endpoint,
            s3_credentials_secret=s3_credentials_secret,
            timeout_minutes=katib_timeout_minutes,
            seed=seed,
        ).set_display_name("tune (Katib)")
    with dsl.Else(name="tune-with-optuna"):
        with_optuna = tune(
            train_data=ingest_task.outputs["train"],
            eval_data=ingest_task.outputs["eval_data"],
            transformer=fitted.outputs["transformer"],
            search_space=search_space,
            seed=seed,
        ).set_display_name("tune")
    best_params = dsl.OneOf(on_katib.outputs["best_params"], with_optuna.outputs["Output"])
    train(
        train_data=ingest_task.outputs["train"],
        eval_data=ingest_task.outputs["eval_data"],
        transformer=fitted.outputs["transformer"],
        statistics=validation.outputs["statistics"],
        params=best_params,
        model_type=model_type,
        seed=seed,
    ).set_display_name("train")
