"""KFP definition of feature_join: a container component in the features image (no kfp there)."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Markdown, Output, OutputPath

from components._images import FEATURES_IMAGE


@dsl.container_component
def feature_join(
    examples: Input[Dataset],
    feature_store: Input[Artifact],
    joined: Output[Dataset],
    summary: Output[Markdown],
    feature_view_versions: OutputPath(str),
    redis: str = "",
    s3_endpoint: str = "minio-service.kubeflow:9000",
    s3_secure: bool = False,
    repo: str = "bikeshare",
):
    """Builds training examples from the feature store by Feast's point-in-time join.

    For each example (``city``, ``event_timestamp``, labels), the weather observed at or
    before its time and within the view's TTL (else null), and the calendar features of its
    time; written in the shape of ingest's splits, so validate_data, the data gate,
    transform and train take it unchanged.

    Args:
        examples: An entity / label table (``city``, ``event_timestamp``, ``bikers``
            [, ``casual``, ``registered``]), or a Bikeshare split / snapshot (``day``, ``hr``
            and the labels) from which the table is derived (its other columns are dropped:
            every feature comes from the store).
        feature_store: materialize's ``feature_store`` output (``materialize.json``,
            ``feature_store.yaml``; with the embedded target, the store itself).
        joined: Output. The joined rows (Parquet, ingest's split columns). Metadata: rows,
            sha256, repository version, ``feature_view_versions`` (train copies it into the
            model's lineage), missing weather values per feature.
        summary: Output. Markdown: examples, time range, view versions, missing values.
        feature_view_versions: Output. JSON ``{view: "<repository version>/<spec hash>"}``.
        redis: ``host:port`` of the Redis online store (cluster target; not read by the join).
        s3_endpoint: S3 / MinIO endpoint (cluster target).
        s3_secure: Reach the endpoint over TLS.
        repo: The feature repository's name.
    """
    return dsl.ContainerSpec(
        image=FEATURES_IMAGE,
        command=["python", "-m", "components.feature_join.executor"],
        args=[
            "--examples",
            examples.path,
            "--feature-store",
            feature_store.path,
            "--redis",
            redis,
            "--s3-endpoint",
            s3_endpoint,
            "--s3-secure",
            s3_secure,
            "--repo",
            repo,
            "--joined-out",
            joined.path,
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
