"""Versioned TFDV schemas: load a curated one, or infer a starting point for a person to review.

    python -m components.validate_data.schema infer DATA.csv|parquet --out schema.pbtxt [--version NAME-1.0.0]
    python -m components.validate_data.schema reference DATA --out reference_stats.pb

A schema names its version on its first line: ``# schema_version: bikeshare-1.1.0``.
Bundled schemas live in ``schemas/<name>/`` beside this file: ``schema.pbtxt``,
``reference_stats.pb`` (the statistics of the data the schema was reviewed on, the
drift baseline when no champion's statistics are given) and ``drift_policy.yaml`` (the
warn / block levels of drift and skew, see ``policy.py``). A schema given by path picks
up the files of the same names beside it.
"""

from __future__ import annotations

import argparse
import math
import re
import struct
import sys
from dataclasses import dataclass
from pathlib import Path

from components.validate_data import policy as policy_mod
from components.validate_data import stats as stats_mod

SCHEMAS_DIR = Path(__file__).resolve().parent / "schemas"
_VERSION_LINE = re.compile(r"^#\s*schema_version:\s*(\S+)\s*$", re.MULTILINE)

# Inference defaults: what a reviewer starts from.
CATEGORICAL_MAX_VALUES = 50  # more distinct strings than this: free text, no domain
RANGE_MARGIN = 0.1  # numeric bounds widen by 10% of the observed range on each side
DRIFT_JS = 0.1
DRIFT_LINF = 0.1

# The request schema a model version carries (validate_data writes it as ``schema.json`` in
# its statistics folder; register puts it in the MLflow model directory; serving checks
# requests against it).
REQUEST_SCHEMA_FILE = "schema.json"
REQUEST_SCHEMA_FORMAT = "loopline-request-schema-1"
_REQUEST_TYPES = {"INT": "int", "FLOAT": "float", "BYTES": "string"}


class SchemaError(ValueError):
    """A schema that cannot be found, parsed or lacks a version."""


@dataclass(frozen=True)
class VersionedSchema:
    schema: object  # tensorflow_metadata Schema proto
    version: str
    source: str
    reference_statistics: object | None  # DatasetFeatureStatisticsList or None
    policy: policy_mod.Policy


def _parse(text: str, source: str):
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2

    match = _VERSION_LINE.search(text)
    if not match:
        raise SchemaError(
            f"schema {source}: no '# schema_version: NAME-X.Y.Z' line; every schema needs a version"
        )
    try:
        schema = text_format.Parse(text, schema_pb2.Schema())
    except text_format.ParseError as exc:
        raise SchemaError(f"schema {source}: not a valid Schema text proto: {exc}") from exc
    if not schema.feature:
        raise SchemaError(f"schema {source}: declares no features")
    return schema, match.group(1)


def load(name_or_path: str, policy_path: str | None = None) -> VersionedSchema:
    """Loads a bundled schema by name (``bikeshare``) or a ``schema.pbtxt`` path, with its policy.

    The drift policy is ``policy_path`` when given, else ``drift_policy.yaml`` beside the
    schema, else the schema's own comparators (each threshold blocks).
    """
    from tensorflow_data_validation import load_stats_binary

    path = Path(name_or_path)
    if not path.suffix and not path.exists():
        path = SCHEMAS_DIR / name_or_path / "schema.pbtxt"
        if not path.exists():
            known = sorted(p.name for p in SCHEMAS_DIR.iterdir() if (p / "schema.pbtxt").exists())
            raise SchemaError(
                f"schema {name_or_path!r}: no such bundled schema; bundled: {', '.join(known)}"
            )
    elif path.is_dir():
        path = path / "schema.pbtxt"
    if not path.exists():
        raise SchemaError(f"schema {name_or_path!r}: no file at {path}")
    schema, version = _parse(path.read_text(), str(path))
    reference = path.parent / "reference_stats.pb"
    ref_stats = load_stats_binary(str(reference)) if reference.exists() else None
    beside = path.parent / policy_mod.POLICY_FILE
    if policy_path:
        policy = policy_mod.load(policy_path, version)
    elif beside.exists():
        policy = policy_mod.load(beside, version)
    else:
        policy = policy_mod.from_schema(schema, version)
    policy_mod.check_against_schema(policy, schema)
    return VersionedSchema(schema, version, str(path), ref_stats, policy)


def _float32(value: float) -> float:
    """The shortest decimal that is the same float32 (``float_domain`` bounds are float32:
    0.99 reads back as 0.9900000095...; the request schema states 0.99)."""
    if not math.isfinite(value):
        return value
    for digits in range(6, 10):
        short = float(f"{value:.{digits}g}")
        if struct.unpack("f", struct.pack("f", short))[0] == value:
            return short
    return value


def _named_domain(schema, feature):
    """The top-level domain a feature names (``domain: "mnth"``): (kind, domain)."""
    for kind in ("string_domain", "int_domain", "float_domain"):
        for domain in getattr(schema, kind):
            if domain.name == feature.domain:
                return kind, domain
    raise SchemaError(
        f"feature {feature.name!r} names the domain {feature.domain!r}, which the schema "
        "does not define at its top level"
    )


def request_schema(schema, schema_version: str) -> dict:
    """The request schema of a TFDV schema: what a model server checks each request against.

    Every feature of the schema (in its order, the target and unused columns included) as
    ``{"type": "int" | "float" | "string", "min", "max", "values", "nullable",
    "allow_nan", "allow_inf"}``: ``min`` / ``max`` only where the int or float domain
    states them, ``values`` only for a string domain (inline or named by ``domain:``),
    ``nullable`` unless ``presence.min_fraction`` is 1, ``allow_nan`` / ``allow_inf`` (float
    columns only) unless the float domain disallows them.

    Raises:
        SchemaError: A feature of another type (STRUCT, unknown) or a named domain that
            the schema does not define.
    """
    from tensorflow_metadata.proto.v0 import schema_pb2

    columns: dict[str, dict] = {}
    for feature in schema.feature:
        type_name = schema_pb2.FeatureType.Name(feature.type)
        if type_name not in _REQUEST_TYPES:
            raise SchemaError(
                f"feature {feature.name!r}: type {type_name} has no request-schema type "
                f"(only {', '.join(_REQUEST_TYPES)})"
            )
        kind = feature.WhichOneof("domain_info")
        domain = getattr(feature, kind) if kind else None
        if kind == "domain":
            kind, domain = _named_domain(schema, feature)
        column: dict = {"type": _REQUEST_TYPES[type_name]}
        if type_name == "INT" and kind == "int_domain":
            for bound in ("min", "max"):
                if domain.HasField(bound):
                    column[bound] = int(getattr(domain, bound))
        elif type_name == "FLOAT" and kind == "float_domain":
            for bound in ("min", "max"):
                value = _float32(getattr(domain, bound)) if domain.HasField(bound) else None
                if value is not None and math.isfinite(value):
                    column[bound] = value
        elif type_name == "BYTES" and kind == "string_domain":
            column["values"] = list(domain.value)
        presence = feature.presence if feature.HasField("presence") else None
        column["nullable"] = presence is None or presence.min_fraction < 1
        if type_name == "FLOAT":
            disallow_nan = kind == "float_domain" and domain.disallow_nan
            disallow_inf = kind == "float_domain" and domain.disallow_inf
            column["allow_nan"] = not disallow_nan
            column["allow_inf"] = not disallow_inf
        columns[feature.name] = column
    return {"format": REQUEST_SCHEMA_FORMAT, "schema_version": schema_version, "columns": columns}


def infer(statistics, version: str) -> str:
    """Infers a starting schema with reviewable bounds; returns its text (with the version line).

    Unlike ``tfdv.infer_schema`` alone, which accepts whatever one batch shows, this
    widens numeric ranges by ``RANGE_MARGIN`` of the observed range, allows no missing
    values only where none were seen (else the observed missing rate, rounded up to the
    next percent), keeps a categorical domain only for low-cardinality strings, drops
    shape constraints, and adds drift and skew comparators with the default thresholds.
    """
    import tensorflow_data_validation as tfdv
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2

    schema = tfdv.infer_schema(statistics, max_string_domain_size=CATEGORICAL_MAX_VALUES)
    dataset = statistics.datasets[0]
    by_name = {f.path.step[0] if f.path.step else f.name: f for f in dataset.features}
    for feature in schema.feature:
        feature.ClearField("shape")
        feature.value_count.min = 1
        feature.value_count.max = 1
        stats = by_name[feature.name]
        common = (
            stats.num_stats.common_stats
            if stats.HasField("num_stats")
            else stats.string_stats.common_stats
        )
        present = common.num_non_missing / max(dataset.num_examples, 1)
        feature.presence.min_count = 1
        feature.presence.min_fraction = (
            1.0 if present >= 1.0 else max(0.0, math.floor(present * 100 - 1) / 100)
        )
        if feature.type in (schema_pb2.INT, schema_pb2.FLOAT) and stats.HasField("num_stats"):
            lo, hi = stats.num_stats.min, stats.num_stats.max
            margin = (hi - lo) * RANGE_MARGIN
            if feature.type == schema_pb2.INT:
                feature.int_domain.min = math.floor(lo - margin)
                feature.int_domain.max = math.ceil(hi + margin)
            else:
                feature.float_domain.min = lo - margin
                feature.float_domain.max = hi + margin
                feature.float_domain.disallow_nan = True
                feature.float_domain.disallow_inf = True
            feature.drift_comparator.jensen_shannon_divergence.threshold = DRIFT_JS
            feature.skew_comparator.jensen_shannon_divergence.threshold = DRIFT_JS
        elif feature.type == schema_pb2.BYTES and feature.domain:
            feature.drift_comparator.infinity_norm.threshold = DRIFT_LINF
            feature.skew_comparator.infinity_norm.threshold = DRIFT_LINF
    header = (
        f"# schema_version: {version}\n"
        "# Inferred by `python -m components.validate_data.schema infer`: a starting point.\n"
        "# Review every bound, domain, presence and threshold before using it as a gate.\n"
    )
    return header + text_format.MessageToString(schema)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_infer = sub.add_parser("infer", help="infer a starting schema from data")
    p_infer.add_argument("data")
    p_infer.add_argument("--out", required=True)
    p_infer.add_argument("--version", default="draft-0.1.0")
    p_ref = sub.add_parser("reference", help="write the reference statistics of a schema bundle")
    p_ref.add_argument("data")
    p_ref.add_argument("--out", required=True)
    args = parser.parse_args(argv)

    table = stats_mod.read_table(args.data)
    stats = stats_mod.compute_statistics(table, "reference")
    if args.command == "infer":
        Path(args.out).write_text(infer(stats, args.version))
    else:
        Path(args.out).write_bytes(stats.SerializeToString())
    print(f"wrote {args.out} from {table.num_rows} rows of {args.data}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
