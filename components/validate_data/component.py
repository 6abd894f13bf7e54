"""KFP definition of validate_data: a container component in the tfdv image (no kfp there)."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Markdown, Output, OutputPath

from components._images import TFDV_IMAGE


@dsl.container_component
def validate_data(
    data: Input[Dataset],
    statistics: Output[Artifact],
    anomalies: Output[Artifact],
    report: Output[HTML],
    summary: Output[Markdown],
    anomalies_found: OutputPath(bool),
    eval_data: Input[Dataset] = None,
    holdout_data: Input[Dataset] = None,
    training_statistics: Input[Artifact] = None,
    baseline_statistics: str = "",
    data_name: str = "train",
    schema: str = "bikeshare",
    drift_policy: str = "",
    beam_args: str = "",
    s3_endpoint: str = "minio-service.kubeflow:9000",
    s3_secure: bool = False,
):
    """Validates every split with TFDV against a versioned schema; judges drift and skew by policy.

    Schema anomalies (type, domain, range, presence, unknown or missing column) in any split
    block. Drift of ``data`` against the baseline, and skew against training statistics, are
    reported above the policy's ``warn`` level and block above its ``block`` level, in both
    cases only beyond what sampling noise gives at the two sample sizes.

    Args:
        data: The dataset checked against the schema, for drift and for skew (CSV or Parquet).
        statistics: Output. A folder with ``FeatureStats.pb`` (a DatasetFeatureStatisticsList,
            one dataset per input), ``metadata.json`` (schema version, rows) and
            ``schema.json`` (the request schema of the schema validated against: every
            column's type, bounds, values and nullability; register puts it into the model
            version for the serving image).
        anomalies: Output. A folder with one Anomalies text proto per dataset and
            ``anomalies.json`` (blocking findings, reported findings, every drift / skew
            measurement with its levels and noise bound, the baseline used).
        report: Output. HTML: verdict, blocking and reported findings, drift and skew by
            policy, statistics side by side with the baseline.
        summary: Output. Markdown summary.
        anomalies_found: Output. True when a finding blocks (reported drift does not).
        eval_data: Optional dataset checked against the schema (the eval split).
        holdout_data: Optional dataset checked against the schema (the holdout split).
        training_statistics: Optional training statistics for the training-serving skew check.
        baseline_statistics: Statistics to measure drift against, as a path or ``s3://`` URI
            (a validate_data ``statistics`` folder: its ``train`` dataset is used): the
            champion's training statistics. Empty: the schema's reference statistics.
        data_name: Name of ``data`` in the reports (``train``...). ``serving``: captured
            traffic (read_window's ``window``), validated in the schema's ``SERVING``
            environment: the label columns may be absent, the capture's own columns are
            dropped and listed as not validated, schema anomalies block, drift and skew
            (against ``training_statistics``, else the champion's ``baseline_statistics``)
            are reported only, whatever the policy's block level.
        schema: A bundled schema name (``bikeshare``); a schema folder (``schema.pbtxt``, and
            optionally ``reference_stats.pb`` and ``drift_policy.yaml`` beside it) or a
            ``schema.pbtxt``, as a path in the container or an ``s3://`` URI on
            ``s3_endpoint`` (your own schema, with no image rebuilt).
        drift_policy: A drift policy YAML, as a path or ``s3://`` URI; empty: the one beside
            the schema.
        beam_args: Empty for TFDV's in-memory statistics, or a JSON list of Apache Beam
            pipeline arguments (``["--runner=FlinkRunner", ...]``) for data beyond one machine.
        s3_endpoint: S3 / MinIO endpoint for an ``s3://`` schema, policy or baseline.
        s3_secure: Reach the endpoint over TLS.
    """
    return dsl.ContainerSpec(
        image=TFDV_IMAGE,
        command=["python", "-m", "components.validate_data.executor"],
        args=[
            "--dataset",
            dsl.ConcatPlaceholder([data_name, "=", data.path]),
            dsl.IfPresentPlaceholder(
                input_name="eval_data",
                then=["--dataset", dsl.ConcatPlaceholder(["eval=", eval_data.path])],
            ),
            dsl.IfPresentPlaceholder(
                input_name="holdout_data",
                then=["--dataset", dsl.ConcatPlaceholder(["holdout=", holdout_data.path])],
            ),
            dsl.IfPresentPlaceholder(
                input_name="training_statistics",
                then=["--training-statistics", training_statistics.path],
            ),
            "--schema",
            schema,
            "--policy",
            drift_policy,
            "--baseline-statistics",
            baseline_statistics,
            "--s3-endpoint",
            s3_endpoint,
            "--s3-secure",
            s3_secure,
            "--beam-args",
            beam_args,
            "--statistics-out",
            statistics.path,
            "--anomalies-out",
            anomalies.path,
            "--report-out",
            report.path,
            "--summary-out",
            summary.path,
            "--anomalies-found-out",
            anomalies_found,
            # The executor input, so that the CLI writes executor_output.json: artifact
            # metadata for the KFP UI, and the outputs kfp.local reads back.
            "--executor-input",
            "{{$}}",
        ],
    )
