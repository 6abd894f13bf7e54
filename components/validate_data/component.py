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
    baseline_statistics: Input[Artifact] = None,
    training_statistics: Input[Artifact] = None,
    data_name: str = "train",
    schema: str = "bikeshare",
    beam_args: str = "",
):
    """Validates datasets with TFDV against a versioned schema; checks drift and skew.

    Args:
        data: The dataset checked against the schema, for drift and for skew (CSV or Parquet).
        statistics: Output. A folder with ``FeatureStats.pb`` (a DatasetFeatureStatisticsList,
            one dataset per input) and ``metadata.json`` (schema version, rows).
        anomalies: Output. A folder with one Anomalies text proto per dataset and ``anomalies.json``.
        report: Output. HTML: anomalies, drift and skew measures, statistics side by side.
        summary: Output. Markdown summary.
        anomalies_found: Output. True when any check failed.
        eval_data: Optional second dataset, checked against the schema only.
        baseline_statistics: Optional statistics for the drift check; default: the schema's
            reference statistics.
        training_statistics: Optional training statistics for the training-serving skew check.
        data_name: Name of ``data`` in the reports (``train``, ``serving``...).
        schema: A bundled schema name (``bikeshare``) or a ``schema.pbtxt`` path in the image.
        beam_args: Empty for TFDV's in-memory statistics, or a JSON list of Apache Beam
            pipeline arguments (``["--runner=FlinkRunner", ...]``) for data beyond one machine.
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
                input_name="baseline_statistics",
                then=["--baseline-statistics", baseline_statistics.path],
            ),
            dsl.IfPresentPlaceholder(
                input_name="training_statistics",
                then=["--training-statistics", training_statistics.path],
            ),
            "--schema",
            schema,
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
