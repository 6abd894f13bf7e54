"""KFP definition of materialize: a container component in the features image (no kfp there)."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Markdown, Output, OutputPath

from components._images import FEATURES_IMAGE


@dsl.container_component
def materialize(
    data: Input[Dataset],
    feature_store: Output[Artifact],
    offline_store: Output[Dataset],
    summary: Output[Markdown],
    feature_view_versions: OutputPath(str),
    eval_data: Input[Dataset] = None,
    holdout_data: Input[Dataset] = None,
    storage: str = "",
    target: str = "embedded",
    redis: str = "",
    s3_endpoint: str = "minio-service.kubeflow:9000",
    s3_secure: bool = False,
    repo: str = "bikeshare",
):
    """Writes a validated snapshot's weather to the feature store and materializes it online.

    The weather observations (one per hour: ``city``, ``event_timestamp`` = 2011-01-01 +
    day - 1 days + hr hours, UTC; weathersit, temp, atemp, hum, windspeed) become the offline
    store's Parquet; the repository (``components/lib/feature_repos/<repo>``, e.g.
    ``bikeshare-features-1.0.0``) is applied; the latest value of each entity up to the
    snapshot's last hour is materialized to the online store.

    Args:
        data: A validated dataset (an ingest split, CSV or Parquet, or the raw snapshot).
        feature_store: Output. ``feature_store.yaml`` and ``materialize.json``; with the
            embedded target and no ``storage``, the store itself (Parquet offline store,
            SQLite online store, registry). Metadata: target, offline and online store,
            registry, materialized range, repository and view versions.
        offline_store: Output. The weather observations as written to the offline store
            (Parquet), with rows, time range and the store's URI in the metadata.
        summary: Output. Markdown: rows, time range, views and versions, materialized range.
        feature_view_versions: Output. JSON ``{view: "<repository version>/<spec hash>"}``
            for the model's lineage.
        eval_data: Optional further split (its hours join the store too).
        holdout_data: Optional further split.
        storage: The store's root: empty (embedded: the ``feature_store`` output folder), a
            folder, or ``s3://bucket/prefix`` (cluster).
        target: ``embedded`` (Parquet, SQLite, registry file) or ``cluster`` (S3 / MinIO,
            Redis, registry in the object store).
        redis: ``host:port`` of the Redis online store (cluster).
        s3_endpoint: S3 / MinIO endpoint (cluster).
        s3_secure: Reach the endpoint over TLS.
        repo: The feature repository's name.
    """
    return dsl.ContainerSpec(
        image=FEATURES_IMAGE,
        command=["python", "-m", "components.materialize.executor"],
        args=[
            "--dataset",
            data.path,
            dsl.IfPresentPlaceholder(input_name="eval_data", then=["--dataset", eval_data.path]),
            dsl.IfPresentPlaceholder(
                input_name="holdout_data", then=["--dataset", holdout_data.path]
            ),
            "--storage",
            storage,
            "--target",
            target,
            "--redis",
            redis,
            "--s3-endpoint",
            s3_endpoint,
            "--s3-secure",
            s3_secure,
            "--repo",
            repo,
            "--feature-store-out",
            feature_store.path,
            "--offline-store-out",
            offline_store.path,
            "--summary-out",
            summary.path,
            "--feature-view-versions-out",
            feature_view_versions,
            # The executor input, so that the CLI writes executor_output.json: artifact
            # metadata for the KFP UI, and the outputs kfp.local reads back.
            "--executor-input",
            "{{$}}",
        ],
    )
