"""validate_data: TFDV statistics, anomalies against a versioned schema, drift and skew.

Runs in the tfdv image (no kfp there: TFDV 1.16 needs protobuf < 5). The component is a
container component that calls this module's CLI:

    python -m components.validate_data.executor \\
        --dataset train=PATH [--dataset eval=PATH] --schema bikeshare \\
        [--baseline-statistics PATH] [--training-statistics PATH] [--beam-args JSON] \\
        --statistics-out DIR --anomalies-out DIR --report-out FILE --summary-out FILE \\
        --anomalies-found-out FILE

The first dataset is the one checked for drift (against the baseline statistics, by
default the schema's reference statistics) and for training-serving skew (against
training statistics, when given). Every dataset is checked against the schema.

Statistics use TFDV's in-memory path on an Arrow table read with pyarrow (CSV or
Parquet), which is ~40x faster than its Beam CSV path on one machine; ``--beam-args``
hands Beam pipeline arguments through for data beyond one machine.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from components.lib import logs
from components.validate_data import report as report_mod
from components.validate_data import schema as schema_mod

log = logging.getLogger("loopline.validate_data")

STATS_FILE = "FeatureStats.pb"  # the file name TFX's StatisticsGen uses
# Anomaly reasons of a skew check are told apart from drift by their description.
_SKEW_MARK = "training and serving"


class ValidationInputError(ValueError):
    """An input that cannot be validated at all (unreadable data, bad arguments)."""


@dataclass
class Finding:
    """One anomaly: which dataset, which column, what kind, and TFDV's description."""

    dataset: str
    column: str
    kind: str
    reason: str
    severity: str = "ERROR"

    def as_dict(self) -> dict:
        return self.__dict__.copy()


@dataclass
class Result:
    schema_version: str
    statistics: object  # DatasetFeatureStatisticsList with one dataset per input
    anomalies: dict  # dataset name -> Anomalies proto
    findings: list[Finding] = field(default_factory=list)
    timings: dict = field(default_factory=dict)
    baseline: object | None = (
        None  # the drift baseline statistics, shown beside the data in the report
    )

    @property
    def anomalies_found(self) -> bool:
        return bool(self.findings)


# --------------------------------------------------------------------------- reading


def read_table(path: str) -> pa.Table:
    """Reads a Parquet file (by its magic bytes) or a CSV file into an Arrow table."""
    if not os.path.exists(path):
        raise ValidationInputError(f"dataset {path!r} not found")
    if os.path.getsize(path) == 0:
        raise ValidationInputError(f"dataset {path!r} is empty (0 bytes)")
    with open(path, "rb") as fh:
        magic = fh.read(4)
    try:
        table = pq.read_table(path) if magic == b"PAR1" else pacsv.read_csv(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise ValidationInputError(f"dataset {path!r} cannot be read: {exc}") from exc
    # TFDV's Arrow code knows string and binary, not their 64-bit offset variants.
    fields = [
        pa.field(f.name, pa.string()) if pa.types.is_large_string(f.type) else f
        for f in table.schema
    ]
    return table.cast(pa.schema(fields))


# --------------------------------------------------------------------------- statistics


def compute_statistics(table: pa.Table, name: str, beam_args: list[str] | None = None):
    """TFDV statistics of ``table``, as a DatasetFeatureStatisticsList with one dataset ``name``.

    In-memory by default; with ``beam_args`` the same generators run on Apache Beam
    (``--runner=DirectRunner|FlinkRunner|SparkRunner|DataflowRunner`` and its options).
    """
    import tensorflow_data_validation as tfdv

    options = tfdv.StatsOptions()
    if beam_args:
        stats = _beam_statistics(table, options, beam_args)
    else:
        frame = table.to_pandas(types_mapper=_nullable_ints)
        stats = tfdv.generate_statistics_from_dataframe(frame, stats_options=options)
    stats.datasets[0].name = name
    return stats


def _nullable_ints(arrow_type):
    """Keeps integer columns integer when they hold nulls (pandas would make them float)."""
    import pandas as pd

    if pa.types.is_integer(arrow_type):
        return pd.Int64Dtype()
    return None


def _beam_statistics(table: pa.Table, options, beam_args: list[str]):
    import apache_beam as beam
    import tensorflow_data_validation as tfdv
    from apache_beam.options.pipeline_options import PipelineOptions
    from tfx_bsl.arrow import table_util

    with tempfile.TemporaryDirectory() as tmp:
        parquet = os.path.join(tmp, "data.parquet")
        pq.write_table(table, parquet)
        out = os.path.join(tmp, "stats.tfrecord")
        log.info("statistics on Apache Beam with %s", " ".join(beam_args))
        with beam.Pipeline(options=PipelineOptions(beam_args)) as pipeline:
            _ = (
                pipeline
                | "Read" >> beam.io.ReadFromParquetBatched(parquet)
                | "ToBatches" >> beam.FlatMap(lambda t: t.to_batches())
                | "Canonicalize" >> beam.Map(table_util.CanonicalizeRecordBatch)
                | "Stats" >> tfdv.GenerateStatistics(options)
                | "Write" >> tfdv.WriteStatisticsToBinaryFile(out)
            )
        return tfdv.load_stats_binary(out)


def load_statistics(path: str):
    """Loads statistics written by this component (a folder with FeatureStats.pb, or the file)."""
    import tensorflow_data_validation as tfdv

    candidate = Path(path) / STATS_FILE if Path(path).is_dir() else Path(path)
    if not candidate.exists():
        raise ValidationInputError(f"statistics {path!r}: no {STATS_FILE} there")
    return tfdv.load_stats_binary(str(candidate))


# --------------------------------------------------------------------------- validation


def _findings(dataset: str, anomalies, only_skew: bool = False) -> list[Finding]:
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    out = []
    for column, info in sorted(anomalies.anomaly_info.items()):
        for reason in info.reason:
            is_skew = _SKEW_MARK in reason.description
            if only_skew != is_skew:
                continue
            kind = anomalies_pb2.AnomalyInfo.Type.Name(reason.type)
            severity = anomalies_pb2.AnomalyInfo.Severity.Name(info.severity)
            out.append(
                Finding(
                    dataset,
                    column,
                    kind,
                    f"{reason.short_description}: {reason.description}",
                    severity,
                )
            )
    for reason in anomalies.dataset_anomaly_info.reason:
        kind = anomalies_pb2.AnomalyInfo.Type.Name(reason.type)
        out.append(
            Finding(dataset, "(dataset)", kind, f"{reason.short_description}: {reason.description}")
        )
    return out


def validate(
    datasets: dict[str, str],
    schema: str,
    baseline_statistics: str | None = None,
    training_statistics: str | None = None,
    beam_args: list[str] | None = None,
) -> Result:
    """Computes statistics of every dataset and validates them; the first one also for drift and skew."""
    import tensorflow_data_validation as tfdv
    from tensorflow_metadata.proto.v0 import statistics_pb2

    if not datasets:
        raise ValidationInputError("no dataset to validate")
    versioned = schema_mod.load(schema)
    timings: dict[str, float] = {}
    baseline = (
        load_statistics(baseline_statistics)
        if baseline_statistics
        else versioned.reference_statistics
    )
    training = load_statistics(training_statistics) if training_statistics else None

    all_stats = statistics_pb2.DatasetFeatureStatisticsList()
    anomalies, findings = {}, []
    for index, (name, path) in enumerate(datasets.items()):
        started = time.perf_counter()
        table = read_table(path)
        timings[f"read_{name}"] = time.perf_counter() - started
        log.info(
            "%s: %d rows x %d columns read in %.2f s",
            name,
            table.num_rows,
            table.num_columns,
            timings[f"read_{name}"],
        )

        started = time.perf_counter()
        stats = compute_statistics(table, name, beam_args)
        timings[f"statistics_{name}"] = time.perf_counter() - started
        log.info("%s: statistics in %.2f s", name, timings[f"statistics_{name}"])
        all_stats.datasets.add().CopyFrom(stats.datasets[0])

        started = time.perf_counter()
        drift_baseline = baseline if index == 0 else None
        result = tfdv.validate_statistics(
            stats, versioned.schema, previous_statistics=drift_baseline
        )
        findings += _findings(name, result)
        if index == 0 and training is not None:
            skew = tfdv.validate_statistics(training, versioned.schema, serving_statistics=stats)
            findings += _findings(name, skew, only_skew=True)
            result.drift_skew_info.extend(skew.drift_skew_info)
        anomalies[name] = result
        timings[f"validate_{name}"] = time.perf_counter() - started
    log.info("schema %s: %d anomalies", versioned.version, len(findings))
    return Result(versioned.version, all_stats, anomalies, findings, timings, baseline)


# --------------------------------------------------------------------------- outputs


def write_outputs(
    result: Result,
    statistics_out: str,
    anomalies_out: str,
    report_out: str,
    summary_out: str,
    anomalies_found_out: str,
) -> None:
    """Writes statistics, anomalies (text proto per dataset + JSON), HTML, Markdown and the flag."""
    from google.protobuf import text_format

    started = time.perf_counter()
    os.makedirs(statistics_out, exist_ok=True)
    Path(statistics_out, STATS_FILE).write_bytes(result.statistics.SerializeToString())
    meta = {
        "schema_version": result.schema_version,
        "datasets": {d.name: int(d.num_examples) for d in result.statistics.datasets},
    }
    Path(statistics_out, "metadata.json").write_text(json.dumps(meta, indent=2))

    os.makedirs(anomalies_out, exist_ok=True)
    for name, anomalies in result.anomalies.items():
        Path(anomalies_out, f"{name}.pbtxt").write_text(text_format.MessageToString(anomalies))
    summary = {
        "schema_version": result.schema_version,
        "anomalies_found": result.anomalies_found,
        "anomalies": [f.as_dict() for f in result.findings],
    }
    Path(anomalies_out, "anomalies.json").write_text(json.dumps(summary, indent=2))

    for path in (report_out, summary_out, anomalies_found_out):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    Path(report_out).write_text(report_mod.html(result))
    Path(summary_out).write_text(report_mod.markdown(result))
    # KFP reads a bool OutputPath parameter as JSON.
    Path(anomalies_found_out).write_text("true" if result.anomalies_found else "false")
    result.timings["write_outputs"] = time.perf_counter() - started


def write_executor_output(executor_input: str, result: Result) -> str:
    """Writes KFP's executor_output.json: output artifacts with metadata, and the flag.

    The KFP launcher (cluster) and kfp.local both read this file; without it kfp.local
    sees no output artifacts of a container component. Returns the file's path.
    """
    spec = json.loads(executor_input)
    outputs = spec.get("outputs", {})
    rows = {d.name: int(d.num_examples) for d in result.statistics.datasets}
    metadata = {
        "statistics": {"schema_version": result.schema_version, "rows": rows},
        "anomalies": {
            "schema_version": result.schema_version,
            "anomalies_found": result.anomalies_found,
            "count": len(result.findings),
            "columns": sorted({f.column for f in result.findings}),
        },
        "report": {"schema_version": result.schema_version},
        "summary": {"schema_version": result.schema_version},
    }
    artifacts = {}
    for name, entry in outputs.get("artifacts", {}).items():
        listed = entry.get("artifacts", [])
        artifacts[name] = {
            "artifacts": [
                {
                    "name": a.get("name", name),
                    "uri": a["uri"],
                    "metadata": {**a.get("metadata", {}), **metadata.get(name, {})},
                }
                for a in listed
            ]
        }
    out = {"artifacts": artifacts, "parameterValues": {"anomalies_found": result.anomalies_found}}
    path = outputs["outputFile"]
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Path(path).write_text(json.dumps(out))
    return path


def _dataset_arg(value: str) -> tuple[str, str]:
    name, sep, path = value.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"--dataset wants NAME=PATH, got {value!r}")
    return name, path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", action="append", type=_dataset_arg, required=True)
    parser.add_argument("--schema", required=True, help="bundled schema name or schema.pbtxt path")
    parser.add_argument("--baseline-statistics", default=None)
    parser.add_argument("--training-statistics", default=None)
    parser.add_argument(
        "--beam-args", default="", help='JSON list, e.g. ["--runner=FlinkRunner", ...]'
    )
    parser.add_argument("--executor-input", default=None, help="KFP executor input JSON ({{$}})")
    for name in ("statistics", "anomalies", "report", "summary", "anomalies-found"):
        parser.add_argument(f"--{name}-out", required=True)
    args = parser.parse_args(argv)
    logs.setup()

    try:
        beam_args = json.loads(args.beam_args) if args.beam_args else None
    except json.JSONDecodeError as exc:
        raise ValidationInputError(f"--beam-args is not a JSON list: {exc}") from exc
    if beam_args is not None and not (
        isinstance(beam_args, list) and all(isinstance(a, str) for a in beam_args)
    ):
        raise ValidationInputError(
            f"--beam-args must be a JSON list of strings, got {args.beam_args!r}"
        )
    names = [name for name, _ in args.dataset]
    if len(set(names)) != len(names):
        raise ValidationInputError(f"--dataset names repeat: {names}")

    result = validate(
        dict(args.dataset),
        args.schema,
        args.baseline_statistics,
        args.training_statistics,
        beam_args,
    )
    write_outputs(
        result,
        args.statistics_out,
        args.anomalies_out,
        args.report_out,
        args.summary_out,
        args.anomalies_found_out,
    )
    if args.executor_input:
        write_executor_output(args.executor_input, result)
    for finding in result.findings:
        log.warning(
            "ANOMALY %s / %s: %s (%s)",
            finding.dataset,
            finding.column,
            finding.kind,
            finding.reason,
        )
    log.info("anomalies_found=%s (schema %s)", result.anomalies_found, result.schema_version)
    return 0


if __name__ == "__main__":
    sys.exit(main())
