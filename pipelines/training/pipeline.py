"""The training pipeline: ingest -> validate (TFDV) -> data gate -> transform -> tune -> train
-> evaluate -> register, and for a promoted version push -> rollout on KServe (the exit
handler settles the rollout whatever happens to the run). With ``feature_store_uri`` the
examples' features come from the feature store: ingest splits the entity / label table and
feature_join (Feast's point-in-time join) builds each split, which then goes through the same
validation and data gate.

Compiled to ``pipeline.yaml`` beside this file by ``make compile``.
"""

from kfp import dsl, kubernetes

from components.data_gate.component import data_gate
from components.evaluate.component import decision_relay, evaluate
from components.feature_join.component import feature_join
from components.find_champion.component import find_champion
from components.ingest.component import ingest
from components.lib.storage import S3_SECRET_KEYS
from components.push.component import push
from components.register.component import register
from components.rollout.component import rollout, settle
from components.train.component import train
from components.transform.component import transform
from components.tune.component import tune
from components.tune.katib_component import tune_katib
from components.validate_data.component import validate_data
from pipelines import resilience

# What each task requests (CPU cores, memory) and its memory limit. Measured on the Bikeshare
# data (peak RSS of the task's process tree) and on 1M rows (Bikeshare x 116), with headroom:
# ingest 0.14 GiB (0.6 GiB at 1M rows), validate 0.6 GiB (1.1 GiB at 1M rows; TensorFlow
# alone is ~0.5 GiB), transform and train 0.25 GiB, Optuna tune 0.55 GiB over its two trial
# workers (parallel_trials 2: two cores), the Katib launcher and the gate under 0.1 GiB.
# No CPU limits: a task may use idle cores; memory limits stop a runaway task, not the node.
RESOURCES = {
    "ingest": ("500m", "1Gi", "4Gi"),
    # Feast's import and its DuckDB join: 0.31 GB peak RSS at 10k examples (bench/point_in_time.py).
    "feature-join": ("500m", "1Gi", "2Gi"),
    "validate": ("1", "2Gi", "4Gi"),
    "data-gate": ("100m", "256Mi", "512Mi"),
    "transform": ("500m", "512Mi", "2Gi"),
    "tune": ("2", "1Gi", "4Gi"),
    "tune-katib": ("100m", "256Mi", "512Mi"),
    "train": ("1", "1Gi", "4Gi"),
    "find-champion": ("100m", "512Mi", "1Gi"),
    "decision": ("100m", "256Mi", "512Mi"),
    "evaluate": ("1", "1Gi", "4Gi"),
    "register": ("500m", "1Gi", "2Gi"),
    # push downloads the version from the registry and uploads it (a model is a few MiB);
    # rollout and settle wait on the API and Prometheus (mlflow-skinny's import: ~0.3 GiB).
    "push": ("250m", "512Mi", "2Gi"),
    "rollout": ("100m", "512Mi", "1Gi"),
    "settle": ("100m", "512Mi", "1Gi"),
}


SPLITS = ("train", "eval_data", "holdout")


def _sized(task: dsl.PipelineTask, name: str) -> dsl.PipelineTask:
    cpu, memory, memory_limit = RESOURCES[name]
    resilience.apply(task, name)  # retries and a deadline for the tasks that touch the network
    return task.set_cpu_request(cpu).set_memory_request(memory).set_memory_limit(memory_limit)


def _ingest(args: dict, s3_credentials_secret: str, display_name: str) -> dsl.PipelineTask:
    """An ingest task: checks every data parameter, then reads and splits the source."""
    task = ingest(**args).set_display_name(display_name)
    # The URI names where the snapshot is, not what it holds: a new snapshot at the same URI
    # must be read again. Later tasks stay cacheable: KFP keys them on their input
    # artifacts' ids, which a fresh ingest run replaces (README, "On a cluster").
    _sized(task.set_caching_options(False), "ingest")
    # Optional: a run that reads a local or file:// snapshot needs no Secret.
    kubernetes.use_secret_as_env(
        task,
        secret_name=s3_credentials_secret,
        secret_key_to_env=S3_SECRET_KEYS,
        optional=True,
    )
    return task


@dsl.pipeline(
    name="loopline-training",
    description="Loopline training pipeline: ingest a snapshot into versioned splits, validate every split "
    "with TFDV (schema anomalies, and drift above the policy's block level, stop the batch here), fit the "
    "transform on train, tune (Optuna in the pipeline, or a Katib Experiment), train the model with lineage, "
    "evaluate it against the champion, register it, and roll a promoted version out on KServe (canary "
    "judged by Prometheus gates; serving_target none stops after register). With feature_store_uri, the "
    "examples' features come from the Feast feature store by point-in-time join (feature_join).",
)
def training_pipeline(
    source_uri: str,
    split_method: str = "time",
    time_column: str = "day",
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
    drift_policy: str = "",
    baseline_statistics: str = "",
    beam_args: str = "",
    feature_spec: str = "bikeshare",
    search_space: str = "bikeshare",
    seed: int = 0,
    tuning_backend: str = "optuna",
    katib_namespace: str = "kubeflow-user-example-com",
    katib_timeout_minutes: float = 60.0,
    model_name: str = "bikeshare",
    mlflow_tracking_uri: str = "http://mlflow:5000",
    evaluation_config: str = "bikeshare",
    serving_target: str = "kserve",
    serving_namespace: str = "",
    deployment_mode: str = "knative",
    models_bucket: str = "loopline-models",
    prometheus_url: str = "http://prometheus-operated.monitoring.svc:9090",
    rollout_policy: str = "canary",
    feature_store_uri: str = "",
):
    """Trains a Loopline model from a data snapshot.

    Every default fits the bundled Bikeshare data (schema, feature spec, search space, and
    its time column ``day``) and the MLflow service manifests/ deploy in the run's namespace:
    a run on a cluster needs only ``source_uri``. Ingest, the first task,
    checks every data parameter and names the bad one before reading the snapshot.

    Args:
        source_uri: Snapshot to train on: a path, ``file://`` or ``s3://bucket/key`` (CSV or Parquet).
        split_method: ``time`` or ``hash``.
        time_column: Column ordering rows in time (time split and window); Bikeshare's ``day``.
        key_column: Column hashed for ``split_method="hash"``; empty for a time split.
        train_fraction: Share of rows for training.
        eval_fraction: Share of rows for evaluation.
        holdout_fraction: Share of rows for the long-term holdout.
        window_start: Optional window start on ``time_column`` (inclusive).
        window_end: Optional window end on ``time_column`` (exclusive).
        file_format: ``auto``, ``csv`` or ``parquet``.
        s3_endpoint: S3 / MinIO endpoint for ``s3://`` sources.
        s3_secure: Reach the endpoint over TLS (off: Kubeflow's in-cluster MinIO is plain HTTP).
        s3_credentials_secret: Kubernetes Secret with ``accesskey`` / ``secretkey`` for the endpoint.
        schema: The versioned TFDV schema the data must meet: a bundled name, or a schema
            folder (``schema.pbtxt``, ``reference_stats.pb``, ``drift_policy.yaml``) or
            ``schema.pbtxt`` as a path or ``s3://`` URI (examples/breast_cancer/).
        drift_policy: The drift policy (warn / block levels per feature), a path or ``s3://``
            URI; empty: the one beside the schema.
        baseline_statistics: Overrides the drift baseline: statistics the train split's drift is
            measured against, as a path or ``s3://`` URI (a validate_data ``statistics``
            folder). Empty (the default): the champion's training statistics, found in the
            registry, else the schema's reference statistics.
        beam_args: Empty for in-memory TFDV statistics, or a JSON list of Apache Beam arguments.
        feature_spec: The transform's feature spec (bundled name, path in the image, or JSON).
        search_space: The tuning search space (bundled name, path in the image, or JSON); its
            ``model_type`` (``gradient_boosting`` or ``linear``) is the model that is trained.
        seed: Seed for tuning and training.
        tuning_backend: ``optuna`` (in the pipeline image: laptops, CI, any cluster) or ``katib``
            (a Katib Experiment with the same search space and algorithm; needs Katib).
        katib_namespace: The namespace the Katib Experiment is created in.
        katib_timeout_minutes: How long the pipeline waits for the Katib Experiment.
        model_name: The registered model name (MLflow).
        mlflow_tracking_uri: The MLflow tracking server; the champion is looked up there and
            the challenger registered. The default reaches the one manifests/ deploy in the
            run's own (profile) namespace.
        evaluation_config: The evaluation gate's config (bundled name, path in the image, or
            JSON): metrics, slices, thresholds, scorecard weights, minimum effect.
        serving_target: ``kserve``: a promoted version is pushed and rolled out on its KServe
            InferenceService (named ``model_name``), under an exit handler (``settle``) that
            leaves the InferenceService and the registry consistent if the run fails midway.
            ``none``: the run stops after register (kfp.local runs, which have no Kubernetes
            API, and ``make demo``). The model's first version is deployed at 100% by push
            and needs no rollout; later ones go through the rollout policy.
        serving_namespace: The InferenceService's namespace; empty: the run's own.
        deployment_mode: ``knative`` (Serverless: ``canaryTrafficPercent``) or ``standard``
            (RawDeployment: ``spec.canary[]``); an existing InferenceService keeps its own.
        models_bucket: The bucket on ``s3_endpoint`` (credentials from
            ``s3_credentials_secret``) that push copies the version to, for KServe's storage
            initializer; it must exist (manifests/serving).
        prometheus_url: The Prometheus that scrapes the model servers: the rollout's gates
            (the default: kube-prometheus-stack's ``prometheus-operated`` Service in
            namespace ``monitoring``).
        rollout_policy: The rollout policy: a bundled name (``canary``: steps 10, 25, 50,
            100%, error rate / p99 latency / prediction divergence gates), a path in the
            image, or JSON / YAML text (components/rollout/README.md).
        feature_store_uri: Empty (the default): the examples are ``source_uri``'s rows as
            they are. Else the URI of a materialize run's ``feature_store`` output: then
            ``source_uri`` is an entity / label table (``city``, ``event_timestamp``,
            ``bikers`` [, ``casual``, ``registered``]; its time column for the split and the
            window is ``event_timestamp``) or a Bikeshare snapshot (``day``, ``hr``, labels;
            its other columns are dropped), and each split's features come from the store as
            of each example's time (feature_join). The feature views' versions become part
            of the model's lineage. Needs KFP backend 2.17.0 or later (``dsl.OneOf`` of
            artifacts, kubeflow/pipelines#13436).
    """
    # The champion (the registry's production version): the drift baseline and the model the
    # challenger must beat. An explicit baseline_statistics overrides the champion's.
    champion = find_champion(
        model_name=model_name,
        mlflow_tracking_uri=mlflow_tracking_uri,
        baseline_override=baseline_statistics,
    ).set_display_name("find-champion")
    # The registry changes between runs: never answer from the cache.
    _sized(champion.set_caching_options(False), "find-champion")
    ingest_args = dict(
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
    )
    # The examples: a snapshot's rows as they are, or an entity / label table's examples with
    # their features joined from the feature store as of each example's time. Each branch has
    # its own ingest, so a flat run starts nothing more than before; dsl.OneOf hands later
    # tasks whichever splits were made. The flat branch is the OneOf's last producer: a KFP
    # backend before 2.17.0 always takes the last (kubeflow/pipelines#13436), so flat runs
    # work there too.
    with dsl.If(feature_store_uri == "", name="examples-from-the-snapshot"):
        flat = _ingest(ingest_args, s3_credentials_secret, "ingest")
    with dsl.Else(name="examples-from-the-feature-store"):
        entities = _ingest(ingest_args, s3_credentials_secret, "ingest (entity table)")
        store = dsl.importer(
            artifact_uri=feature_store_uri, artifact_class=dsl.Artifact, reimport=False
        ).set_display_name("feature store")
        joined = {}
        for split in SPLITS:
            joined[split] = feature_join(
                examples=entities.outputs[split],
                feature_store=store.output,
                s3_endpoint=s3_endpoint,
                s3_secure=s3_secure,
            ).set_display_name(f"feature-join ({split})")
            _sized(joined[split], "feature-join")
            # Optional: only the cluster target's store is read from the object store.
            kubernetes.use_secret_as_env(
                joined[split],
                secret_name=s3_credentials_secret,
                secret_key_to_env=S3_SECRET_KEYS,
                optional=True,
            )
    examples = {
        split: dsl.OneOf(joined[split].outputs["joined"], flat.outputs[split]) for split in SPLITS
    }
    # Every split a later step reads is validated: a defect only in the newest rows lands
    # in the holdout, which decides whether a model reaches production.
    validation = validate_data(
        data=examples["train"],
        eval_data=examples["eval_data"],
        holdout_data=examples["holdout"],
        data_name="train",
        schema=schema,
        drift_policy=drift_policy,
        baseline_statistics=champion.outputs["baseline_statistics"],
        beam_args=beam_args,
        s3_endpoint=s3_endpoint,
        s3_secure=s3_secure,
    ).set_display_name("validate")
    _sized(validation, "validate")
    # Optional: only an s3:// schema, policy or drift baseline needs the credentials.
    kubernetes.use_secret_as_env(
        validation,
        secret_name=s3_credentials_secret,
        secret_key_to_env=S3_SECRET_KEYS,
        optional=True,
    )
    gate = data_gate(
        anomalies_found=validation.outputs["anomalies_found"],
        anomalies=validation.outputs["anomalies"],
    ).set_display_name("data-gate")
    _sized(gate, "data-gate")
    # Nothing below runs unless the gate passed.
    fitted = (
        transform(train=examples["train"], feature_spec=feature_spec)
        .after(gate)
        .set_display_name("transform")
    )
    _sized(fitted, "transform")
    with dsl.If(tuning_backend == "katib", name="tune-on-katib"):
        on_katib = tune_katib(
            train_data=examples["train"],
            eval_data=examples["eval_data"],
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
        _sized(on_katib, "tune-katib")
    with dsl.Else(name="tune-with-optuna"):
        with_optuna = tune(
            train_data=examples["train"],
            eval_data=examples["eval_data"],
            transformer=fitted.outputs["transformer"],
            search_space=search_space,
            seed=seed,
        ).set_display_name("tune")
        _sized(with_optuna, "tune")
    best_params = dsl.OneOf(on_katib.outputs["best_params"], with_optuna.outputs["Output"])
    trained = train(
        train_data=examples["train"],
        eval_data=examples["eval_data"],
        transformer=fitted.outputs["transformer"],
        statistics=validation.outputs["statistics"],
        params=best_params,
        search_space=search_space,  # the model type comes from the search space alone
        seed=seed,
    ).set_display_name("train")
    _sized(trained, "train")
    judged = evaluate(
        model=trained.outputs["model"],
        holdout=examples["holdout"],
        eval_data=examples["eval_data"],
        champion=champion.outputs["champion"],
        config=evaluation_config,
    ).set_display_name("evaluate")
    _sized(judged, "evaluate")
    # dsl.If resolves only a task's single output under kfp.local: relay the decision.
    relay = decision_relay(decision=judged.outputs["decision"]).set_display_name("decision")
    _sized(relay, "decision")
    registered = dict(
        model=trained.outputs["model"],
        holdout=examples["holdout"],
        evaluation=judged.outputs["evaluation"],
        statistics=validation.outputs["statistics"],
        model_name=model_name,
        mlflow_tracking_uri=mlflow_tracking_uri,
        pipeline_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
    )
    serving = dict(
        model_name=model_name,
        mlflow_tracking_uri=mlflow_tracking_uri,
        namespace=serving_namespace,
        deployment_mode=deployment_mode,
    )
    # The exit handler runs when the group below ends, however it ends: a rollout that the
    # run left midway is rolled back (a paused one is left to the operator), and the
    # registry made to agree. With serving_target none it touches nothing. (An exit task
    # may take only pipeline parameters, and dsl.ExitHandler must be at the top level.)
    settled = settle(
        serving_target=serving_target, pipeline_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER, **serving
    ).set_display_name("settle")
    _sized(settled.set_caching_options(False), "settle")
    with dsl.ExitHandler(settled, name="register-and-deploy"):
        with dsl.If(relay.output == "promote", name="promoted"):
            promoted = register(decision="promote", **registered).set_display_name("register")
            _sized(promoted.set_caching_options(False), "register")
            with dsl.If(serving_target == "kserve", name="deploy"):
                pushed = push(
                    model_version=promoted.outputs["version"],
                    s3_endpoint=s3_endpoint,
                    s3_secure=s3_secure,
                    bucket=models_bucket,
                    **serving,
                ).set_display_name("push")
                _sized(pushed.set_caching_options(False), "push")
                kubernetes.use_secret_as_env(
                    pushed,
                    secret_name=s3_credentials_secret,
                    secret_key_to_env=S3_SECRET_KEYS,
                )
                rolled = (
                    rollout(
                        model_version=promoted.outputs["version"],
                        prometheus_url=prometheus_url,
                        policy=rollout_policy,
                        pipeline_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
                        **serving,
                    )
                    .after(pushed)
                    .set_display_name("rollout")
                )
                _sized(rolled.set_caching_options(False), "rollout")
        with dsl.Else(name="rejected"):
            rejected = register(decision="reject", **registered).set_display_name("register")
            _sized(rejected.set_caching_options(False), "register")
