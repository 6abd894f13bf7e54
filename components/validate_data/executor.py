"""validate_data: TFDV statistics, schema anomalies for every split, drift and skew by policy.

Runs in the tfdv image (no kfp there: TFDV 1.16 needs protobuf < 5). The component is a
container component that calls this module's CLI:

    python -m components.validate_data.executor \\
        --dataset train=PATH [--dataset eval=PATH] [--dataset holdout=PATH] \\
        --schema bikeshare|DIR|schema.pbtxt|s3://... [--policy drift_policy.yaml|s3://...] \\
        [--baseline-statistics PATH|s3://...] [--training-statistics PATH] [--beam-args JSON] \\
        [--s3-endpoint HOST:PORT] \\
        --statistics-out DIR --anomalies-out DIR --report-out FILE --summary-out FILE \\
        --anomalies-found-out FILE

Every dataset is checked against the schema: any schema anomaly (type, domain, range,
presence, unknown or missing column) blocks, naming the dataset (split) and column. The
first dataset is also measured for drift against the baseline (the statistics given by
``--baseline-statistics``, a path or ``s3://`` URI: the champion's training statistics;
else the schema's reference statistics) and, given training statistics, for skew. Drift
and skew are judged by the policy beside the schema (``policy.py``): reported above
``warn``, blocking above ``block``, in both cases only beyond sampling noise.
``anomalies_found`` is true only when something blocks.

Served traffic (the first dataset named ``serving``, e.g. ``read_window``'s captured
window) is validated in the schema's ``SERVING`` environment: columns the schema marks
``not_in_environment: "SERVING"`` (the label and its parts) may be absent; the capture's
own columns (``components/lib/capture_layout.py``: request id, times, model, prediction,
a joined label) are dropped before statistics and listed as not validated; schema
anomalies block as always, but drift and skew are only reported, whatever the policy's
block level. Skew is measured against ``--training-statistics``, else against the
champion's statistics given as ``--baseline-statistics``. Other datasets are validated
in the ``TRAINING`` environment when the schema declares one.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

from components.lib import capture_layout, executor_output, logs
from components.validate_data import policy as policy_mod
from components.validate_data import report as report_mod
from components.validate_data import schema as schema_mod
from components.validate_data.findings import (
    BLOCK,
    WARN,
    Baseline,
    Finding,
    Measurement,
    Result,
)
from components.validate_data.stats import (
    STATS_FILE,
    ValidationInputError,
    compute_statistics,
    load_statistics,
    read_table,
)

__all__ = [
    "STATS_FILE",
    "Finding",
    "Result",
    "ValidationInputError",
    "compute_statistics",
    "load_statistics",
    "main",
    "read_table",
    "validate",
]

log = logging.getLogger("loopline.validate_data")

SERVING = "serving"  # the data_name of served traffic
SERVING_ENVIRONMENT, TRAINING_ENVIRONMENT = "SERVING", "TRAINING"

MEASURE_NAMES = {
    "jensen_shannon_divergence": "Jensen-Shannon divergence",
    "infinity_norm": "L-infinity distance",
}


# --------------------------------------------------------------------------- baseline


def _one_dataset(stats, prefer: str, source: str):
    """The dataset named ``prefer`` (else the first) as a one-dataset statistics list."""
    if not stats.datasets:
        raise ValidationInputError(f"statistics {source} hold no dataset")
    chosen = next((d for d in stats.datasets if d.name == prefer), stats.datasets[0])
    out = type(stats)()
    out.datasets.add().CopyFrom(chosen)
    return out


def _fetch_statistics(uri: str, s3_endpoint: str, s3_secure: bool, workdir: str) -> str:
    """A local path for statistics at ``uri`` (downloads ``s3://`` URIs into ``workdir``)."""
    from components.lib import storage

    if not storage.is_remote(uri):
        return uri[len("file://") :] if uri.startswith("file://") else uri
    try:
        return storage.fetch(
            uri,
            os.path.join(workdir, "baseline"),
            s3_endpoint,
            s3_secure,
            what="baseline_statistics",
        )
    except storage.StorageError as exc:
        raise ValidationInputError(f"baseline_statistics: {exc}") from exc


def load_schema(
    schema: str, policy: str | None, s3_endpoint: str = "", s3_secure: bool = False
) -> schema_mod.VersionedSchema:
    """The versioned schema (and drift policy) ``schema`` names: a bundled name, a path, or
    an ``s3://`` URI of a schema folder (``schema.pbtxt`` with the ``reference_stats.pb``
    and ``drift_policy.yaml`` beside it, each optional) or of a ``schema.pbtxt`` alone.
    ``policy``, when given, is a path or an ``s3://`` URI of a drift policy YAML."""
    from components.lib import storage

    with tempfile.TemporaryDirectory() as tmp:
        local_schema, local_policy = schema, policy
        if storage.is_remote(schema):
            single = schema.rstrip("/").endswith(".pbtxt")
            folder = os.path.join(tmp, "schema")
            local_schema = os.path.join(folder, "schema.pbtxt") if single else folder
            try:
                storage.fetch(schema, local_schema, s3_endpoint, s3_secure, what="schema")
            except storage.StorageError as exc:
                raise schema_mod.SchemaError(str(exc)) from exc
            if not os.path.exists(os.path.join(folder, "schema.pbtxt")):
                raise schema_mod.SchemaError(
                    f"schema {schema!r}: the folder holds no schema.pbtxt "
                    f"(found: {', '.join(sorted(os.listdir(folder))) or 'nothing'})"
                )
        if policy and storage.is_remote(policy):
            local_policy = os.path.join(tmp, policy_mod.POLICY_FILE)
            try:
                storage.fetch(policy, local_policy, s3_endpoint, s3_secure, what="drift_policy")
            except storage.StorageError as exc:
                raise policy_mod.PolicyError(str(exc)) from exc
        versioned = schema_mod.load(local_schema, local_policy)
        # Messages and reports name where the files came from, not the temporary copy.
        policy_source = versioned.policy.source
        if local_policy != policy:
            policy_source = policy
        elif policy_source.startswith(tmp):  # the policy beside a fetched schema
            policy_source = f"{schema.rstrip('/')}/{policy_mod.POLICY_FILE}"
        if local_schema != schema or policy_source != versioned.policy.source:
            versioned = dataclasses.replace(
                versioned,
                source=schema if local_schema != schema else versioned.source,
                policy=dataclasses.replace(versioned.policy, source=policy_source),
            )
    return versioned


def load_baseline(
    uri: str | None, versioned, s3_endpoint: str = "", s3_secure: bool = False
) -> Baseline:
    """The drift baseline: the statistics at ``uri`` (dataset ``train`` of them), else the schema's."""
    if not uri:
        ref = versioned.reference_statistics
        if ref is None:
            return Baseline(None, "reference", versioned.version)
        one = _one_dataset(ref, "", versioned.source)
        return Baseline(
            one,
            "reference",
            versioned.version,
            one.datasets[0].name,
            int(one.datasets[0].num_examples),
        )
    with tempfile.TemporaryDirectory() as tmp:
        path = _fetch_statistics(uri, s3_endpoint, s3_secure, tmp)
        if not os.path.exists(path):
            raise ValidationInputError(f"baseline_statistics {uri!r}: not found")
        one = _one_dataset(load_statistics(path), "train", uri)
    dataset = one.datasets[0]
    return Baseline(one, "champion", uri, dataset.name, int(dataset.num_examples))


# --------------------------------------------------------------------------- validation


def _schema_findings(dataset: str, anomalies) -> list[Finding]:
    """Schema anomalies of one dataset; comparator (drift / skew) reasons are judged apart."""
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    out = []
    for column, info in sorted(anomalies.anomaly_info.items()):
        for reason in info.reason:
            kind = anomalies_pb2.AnomalyInfo.Type.Name(reason.type)
            if kind.startswith("COMPARATOR_"):
                continue
            out.append(
                Finding(
                    dataset,
                    column,
                    kind,
                    f"{reason.short_description}: {reason.description}",
                    anomalies_pb2.AnomalyInfo.Severity.Name(info.severity),
                )
            )
    for reason in anomalies.dataset_anomaly_info.reason:
        kind = anomalies_pb2.AnomalyInfo.Type.Name(reason.type)
        out.append(
            Finding(dataset, "(dataset)", kind, f"{reason.short_description}: {reason.description}")
        )
    return out


def _features(stats) -> dict:
    dataset = stats.datasets[0]
    return {(f.path.step[0] if f.path.step else f.name): f for f in dataset.features}


def _measurements(
    dataset: str,
    check: str,
    infos,
    current,
    against,
    policy: policy_mod.Policy,
) -> list[Measurement]:
    """Judges every drift or skew value TFDV measured by the policy and the noise bound."""
    cur, base = _features(current), _features(against)
    out = []
    for info in infos:
        feature = "/".join(info.path.step)
        values = info.drift_measurements if check == "drift" else info.skew_measurements
        for m in values:
            measure = policy_mod.BY_MEASUREMENT_TYPE.get(m.Type.Name(m.type))
            levels = policy.levels(feature, check)
            if measure is None or levels is None:
                continue
            noise, rows, base_rows = None, 0, 0
            if feature in cur and feature in base:
                a = policy_mod.distribution(cur[feature], measure)
                b = policy_mod.distribution(base[feature], measure)
                if a is not None and b is not None:
                    rows, base_rows = a.rows, b.rows
                    noise = policy_mod.noise_bound(
                        b,
                        policy.effective_rows(feature, rows),
                        policy.effective_rows(feature, base_rows),
                        measure,
                        policy.false_alarm_rate,
                        policy.replicates,
                        seed=sum(map(ord, feature)),
                    )
            out.append(
                Measurement(
                    dataset,
                    feature,
                    check,
                    measure,
                    float(m.value),
                    levels.warn,
                    levels.block,
                    noise,
                    rows,
                    base_rows,
                    policy_mod.verdict(float(m.value), levels, noise),
                )
            )
    return out


def _finding(m: Measurement, against: str) -> Finding:
    level = BLOCK if m.verdict == "block" else WARN
    if m.verdict == "block_reported":
        limit = f"block {m.block:g} (serving data: reported only)"
    else:
        limit = f"block {m.block:g}" if level == BLOCK else f"warn {m.warn:g}"
    block = "never" if m.block is None else f"{m.block:g}"
    noise = "n/a" if m.noise is None else f"{m.noise:.3f}"
    reason = (
        f"{m.check}: {MEASURE_NAMES[m.measure]} {m.value:.3f} > {limit} (levels warn {m.warn:g}, "
        f"block {block}; sampling-noise bound {noise} at {m.rows:,} vs {m.baseline_rows:,} rows) "
        f"against {against}"
    )
    kind = policy_mod.MEASURES[m.measure][2]
    return Finding(
        m.dataset, m.feature, kind, reason, "ERROR" if level == BLOCK else "WARNING", level
    )


def _environment(schema, wanted: str) -> str | None:
    """``wanted`` when the schema declares it as a default environment, else None (TFDV
    then expects every feature)."""
    return wanted if wanted in set(schema.default_environment) else None


def _report_only(measurements: list[Measurement]) -> list[Measurement]:
    """Serving data: what would block is reported (verdict ``block_reported``)."""
    for m in measurements:
        if m.verdict == "block":
            m.verdict = "block_reported"
    return measurements


def drop_capture_columns(table):
    """``table`` without the capture's own columns, and the names dropped (in table order)."""
    dropped = [c for c in table.column_names if c in capture_layout.NOT_INPUTS]
    return (table.drop(dropped) if dropped else table), dropped


def not_in_environment(schema, environment: str) -> set[str]:
    """The schema's features marked ``not_in_environment: <environment>``."""
    return {f.name for f in schema.feature if environment in f.not_in_environment}


def validate(
    datasets: dict[str, str],
    schema: str,
    baseline_statistics: str | None = None,
    training_statistics: str | None = None,
    beam_args: list[str] | None = None,
    policy: str | None = None,
    s3_endpoint: str = "",
    s3_secure: bool = False,
) -> Result:
    """Statistics and schema checks for every dataset; drift and skew of the first, by policy."""
    import tensorflow_data_validation as tfdv
    from tensorflow_metadata.proto.v0 import statistics_pb2

    if not datasets:
        raise ValidationInputError("no dataset to validate")
    versioned = load_schema(schema, policy, s3_endpoint, s3_secure)
    timings: dict[str, float] = {}
    baseline = load_baseline(baseline_statistics, versioned, s3_endpoint, s3_secure)
    training = (
        _one_dataset(load_statistics(training_statistics), "train", training_statistics)
        if training_statistics
        else None
    )
    serving = next(iter(datasets)) == SERVING
    skew_source = f"training statistics {training_statistics}"
    if serving and training is None and baseline.kind == "champion":
        # Served traffic against the statistics the champion was trained on.
        training, skew_source = baseline.statistics, f"the champion's {baseline.describe()}"
    first_environment = _environment(
        versioned.schema, SERVING_ENVIRONMENT if serving else TRAINING_ENVIRONMENT
    )
    capture_columns: list[str] = []
    excluded_columns: list[str] = []

    all_stats = statistics_pb2.DatasetFeatureStatisticsList()
    anomalies, findings, measurements = {}, [], []
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

        first = index == 0
        if first and serving:
            table, capture_columns = drop_capture_columns(table)
            if capture_columns:
                log.info("%s: capture columns, not validated: %s", name, capture_columns)
            if first_environment:
                # A client may send the label columns along (the serving image accepts
                # columns the schema knows and captures them): not served inputs, so
                # dropped and listed, as the capture's own are.
                excluded = not_in_environment(versioned.schema, first_environment)
                present = [c for c in table.column_names if c in excluded]
                if present:
                    table = table.drop(present)
                    excluded_columns = present
                    log.info(
                        "%s: columns not in the %s environment, not validated: %s",
                        name,
                        first_environment,
                        present,
                    )

        started = time.perf_counter()
        stats = compute_statistics(table, name, beam_args)
        timings[f"statistics_{name}"] = time.perf_counter() - started
        log.info("%s: statistics in %.2f s", name, timings[f"statistics_{name}"])
        all_stats.datasets.add().CopyFrom(stats.datasets[0])

        started = time.perf_counter()
        drift_baseline = baseline.statistics if first else None
        environment = (
            first_environment if first else _environment(versioned.schema, TRAINING_ENVIRONMENT)
        )
        result = tfdv.validate_statistics(
            stats,
            versioned.schema,
            environment=environment,
            previous_statistics=drift_baseline,
        )
        findings += _schema_findings(name, result)
        found: list[Measurement] = []
        if first and drift_baseline is not None:
            found += _measurements(
                name, "drift", result.drift_skew_info, stats, drift_baseline, versioned.policy
            )
        if first and training is not None:
            skew = tfdv.validate_statistics(
                training,
                versioned.schema,
                environment=_environment(versioned.schema, TRAINING_ENVIRONMENT),
                serving_statistics=stats,
            )
            found += _measurements(
                name, "skew", skew.drift_skew_info, stats, training, versioned.policy
            )
            result.drift_skew_info.extend(skew.drift_skew_info)
        measurements += _report_only(found) if first and serving else found
        anomalies[name] = result
        timings[f"validate_{name}"] = time.perf_counter() - started

    against = {"drift": baseline.describe(), "skew": skew_source}
    findings += [
        _finding(m, against[m.check])
        for m in measurements
        if m.verdict in ("warn", "block", "block_reported")
    ]
    out = Result(
        versioned.version,
        all_stats,
        anomalies,
        findings,
        timings,
        baseline,
        measurements,
        versioned.policy.version,
        schema_mod.request_schema(versioned.schema, versioned.version),
        first_environment or "",
        capture_columns,
        excluded_columns,
    )
    log.info(
        "schema %s, policy %s: %d blocking, %d reported",
        versioned.version,
        versioned.policy.version,
        len(out.blocking),
        len(out.reported),
    )
    return out


# --------------------------------------------------------------------------- outputs


def write_outputs(
    result: Result,
    statistics_out: str,
    anomalies_out: str,
    report_out: str,
    summary_out: str,
    anomalies_found_out: str,
) -> None:
    """Writes statistics (with the request schema), anomalies (text proto per dataset + JSON),
    HTML, Markdown and the flag."""
    from google.protobuf import text_format

    started = time.perf_counter()
    os.makedirs(statistics_out, exist_ok=True)
    Path(statistics_out, STATS_FILE).write_bytes(result.statistics.SerializeToString())
    meta = {
        "schema_version": result.schema_version,
        "datasets": {d.name: int(d.num_examples) for d in result.statistics.datasets},
    }
    Path(statistics_out, "metadata.json").write_text(json.dumps(meta, indent=2))
    if result.request_schema is not None:
        # What register puts into the model version for the serving image's request checks.
        Path(statistics_out, schema_mod.REQUEST_SCHEMA_FILE).write_text(
            json.dumps(result.request_schema, indent=2, allow_nan=False)
        )

    os.makedirs(anomalies_out, exist_ok=True)
    for name, anomalies in result.anomalies.items():
        Path(anomalies_out, f"{name}.pbtxt").write_text(text_format.MessageToString(anomalies))
    summary = {
        "schema_version": result.schema_version,
        "policy_version": result.policy_version,
        "baseline": _baseline_dict(result.baseline),
        "anomalies_found": result.anomalies_found,
        # Only what blocks; the data gate reads this list.
        "anomalies": [f.as_dict() for f in result.blocking],
        # Drift and skew above warn but below block: shown, the batch goes on.
        "reported": [f.as_dict() for f in result.reported],
        "measurements": [m.as_dict() for m in result.measurements],
        # The environment the first dataset was validated in; serving data's capture
        # columns (dropped before statistics, not validated).
        "environment": result.environment,
        "capture_columns": result.capture_columns,
        "excluded_columns": result.excluded_columns,
    }
    Path(anomalies_out, "anomalies.json").write_text(json.dumps(summary, indent=2))

    for path in (report_out, summary_out, anomalies_found_out):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    Path(report_out).write_text(report_mod.html(result))
    Path(summary_out).write_text(report_mod.markdown(result))
    # KFP reads a bool OutputPath parameter as JSON.
    Path(anomalies_found_out).write_text("true" if result.anomalies_found else "false")
    result.timings["write_outputs"] = time.perf_counter() - started


def _baseline_dict(baseline: Baseline | None) -> dict:
    if baseline is None:
        return {}
    return {
        "kind": baseline.kind,
        "source": baseline.source,
        "dataset": baseline.dataset,
        "rows": baseline.rows,
        "description": baseline.describe(),
    }


def write_executor_output(executor_input: str, result: Result) -> str:
    """Writes KFP's executor_output.json: output artifacts with metadata, and the flag.

    The KFP launcher (cluster) and kfp.local both read this file; without it kfp.local
    sees no output artifacts of a container component. Returns the file's path.
    """
    rows = {d.name: int(d.num_examples) for d in result.statistics.datasets}
    metadata = {
        "statistics": {"schema_version": result.schema_version, "rows": rows},
        "anomalies": {
            "schema_version": result.schema_version,
            "policy_version": result.policy_version,
            "anomalies_found": result.anomalies_found,
            "count": len(result.blocking),
            "columns": sorted({f.column for f in result.blocking}),
            "splits": sorted({f.dataset for f in result.blocking}),
            "reported": len(result.reported),
            "reported_columns": sorted({f.column for f in result.reported}),
            "baseline": result.baseline.describe() if result.baseline else "",
            "environment": result.environment,
            "capture_columns": result.capture_columns,
            "excluded_columns": result.excluded_columns,
        },
        "report": {"schema_version": result.schema_version},
        "summary": {"schema_version": result.schema_version},
    }
    return executor_output.write(
        executor_input, metadata, {"anomalies_found": result.anomalies_found}
    )


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
    parser.add_argument(
        "--schema",
        required=True,
        help="bundled schema name, schema folder or schema.pbtxt path, or s3:// URI of either",
    )
    parser.add_argument(
        "--policy",
        default="",
        help="drift policy YAML (path or s3:// URI); default: the one beside the schema",
    )
    parser.add_argument(
        "--baseline-statistics",
        default="",
        help="drift baseline statistics: a path or s3:// URI; empty: the schema's reference",
    )
    parser.add_argument("--training-statistics", default="")
    parser.add_argument("--s3-endpoint", default="", help="S3 / MinIO endpoint for s3:// URIs")
    parser.add_argument("--s3-secure", default="false", choices=["true", "false", "True", "False"])
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
        args.baseline_statistics or None,
        args.training_statistics or None,
        beam_args,
        policy=args.policy or None,
        s3_endpoint=args.s3_endpoint,
        s3_secure=args.s3_secure.lower() == "true",
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
            "%s %s / %s: %s (%s)",
            "ANOMALY" if finding.level == BLOCK else "REPORTED",
            finding.dataset,
            finding.column,
            finding.kind,
            finding.reason,
        )
    log.info(
        "anomalies_found=%s (schema %s, policy %s; drift baseline: %s)",
        result.anomalies_found,
        result.schema_version,
        result.policy_version,
        result.baseline.describe() if result.baseline else "none",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
