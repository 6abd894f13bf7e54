"""register: the challenger into the MLflow registry as a candidate, then to where the
evaluation gate's decision sends it.

* ``promote`` with a champion: candidate -> staging. Production is reached only through
  the progressive rollout (or an operator's override), never from here.
* ``promote`` with no champion (the model's first version): candidate -> staging ->
  production: the first deploy takes 100%, judged on the thresholds alone.
* ``reject``: candidate -> rejected, with every reason the gate gave.

The version carries the lineage (every split's data hash, schema, transform, code version
and revision, pipeline run, parameters, metrics, model sha256), the evaluation's feature
importance and the validation statistics URI (the data gate's drift baseline while this
version is the champion). Inside its MLflow model directory, under its manifest, travel two
files for the serving image:

* ``loopline_request_schema.json`` (:data:`registry.REQUEST_SCHEMA_FILE`): validate_data's
  request schema (``schema.json`` in the statistics folder): what requests must look like.
  Statistics written before validate_data wrote it have none: a warning, and the version
  is registered without it.
* ``loopline_check_rows.parquet`` (:data:`registry.CHECK_DATA_FILE`): the holdout's rows,
  only the model's input columns (``feature_names_in_``, no target), at most
  :data:`CHECK_ROWS_MAX` (a deterministic sample in holdout order when larger): the serving
  image checks its fast predict path against scikit-learn on them at load.

And the monitoring reference train wrote beside ``model.joblib``, for detect_drift:

* ``loopline_drift_profile.json`` (:data:`registry.DRIFT_PROFILE_FILE`): the training split's
  drift profile (:mod:`components.lib.drift`), the predictions' and the columns' importance.
* ``loopline_reference_rows.parquet`` (:data:`registry.REFERENCE_ROWS_FILE`): the eval split's
  inputs, target and prediction (the performance baseline and estimator's reference).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from components.lib import registry

log = logging.getLogger("loopline.register")

DECISIONS = ("promote", "reject")
EXAMPLE_ROWS = 5
# validate_data's request schema in its statistics folder, and its format
# (components/validate_data/schema.py; not imported: that module needs the TFDV image).
STATISTICS_REQUEST_SCHEMA = "schema.json"
# What train writes beside model.joblib -> its name in the registry version.
MONITORING_FILES = {
    "drift_profile.json": registry.DRIFT_PROFILE_FILE,
    "reference_rows.parquet": registry.REFERENCE_ROWS_FILE,
}
REQUEST_SCHEMA_FORMAT = "loopline-request-schema-1"
CHECK_ROWS_MAX = 20_000
CHECK_ROWS_SEED = 0


class RegisterError(ValueError):
    """Bad input to register; the message names it."""


def lineage_of(
    model_meta: Mapping, holdout_meta: Mapping, evaluation: Mapping, pipeline_run_id: str
) -> dict:
    """The lineage the registry stores, from the artifacts' metadata."""
    keys = (
        "sha256",
        "sklearn_version",
        "data_sha256",
        "eval_data_sha256",
        "schema_version",
        "transform_version",
        "code_version",
        "code_revision",
        "params",
        "model_type",
        "task",
        "target",
        "seed",
        "training_rows",
        "feature_view_versions",  # training rows from the feature store (feature_join) only
    )
    lineage = {k: model_meta[k] for k in keys if k in model_meta}
    lineage["holdout_sha256"] = holdout_meta.get("sha256", "")
    lineage["pipeline_run_id"] = pipeline_run_id
    lineage["metrics"] = {
        "eval": dict(model_meta.get("eval_metrics", {})),
        "holdout": dict(evaluation.get("metrics", {}).get("holdout", {})),
    }
    lineage["evaluation"] = {
        "decision": evaluation.get("decision", ""),
        "score": evaluation.get("scorecard", {}).get("score"),
        "champion_version": evaluation.get("champion", {}).get("version", ""),
    }
    lineage["feature_importance"] = evaluation.get("feature_importance", {})
    return json.loads(json.dumps(lineage, default=str))


def request_schema_file(statistics_dir: str | None, schema_version: str) -> bytes | None:
    """validate_data's ``schema.json`` from the statistics folder, checked; None when absent.

    Raises:
        RegisterError: It is not JSON, not a ``loopline-request-schema-1``, or states
            another schema version than the model's lineage.
    """
    path = Path(statistics_dir, STATISTICS_REQUEST_SCHEMA) if statistics_dir else None
    if path is None or not path.is_file():
        log.warning(
            "no %s in the statistics (%s): statistics written before validate_data wrote the "
            "request schema; registering without %s (the serving image has no request schema "
            "to check requests against)",
            STATISTICS_REQUEST_SCHEMA,
            statistics_dir or "no local folder",
            registry.REQUEST_SCHEMA_FILE,
        )
        return None
    data = path.read_bytes()
    try:
        body = json.loads(data)
    except ValueError as exc:
        raise RegisterError(f"request schema {path}: not JSON ({exc})") from exc
    if not isinstance(body, dict) or body.get("format") != REQUEST_SCHEMA_FORMAT:
        found = body.get("format") if isinstance(body, dict) else type(body).__name__
        raise RegisterError(
            f"request schema {path}: format {found!r}, not {REQUEST_SCHEMA_FORMAT!r}"
        )
    if not isinstance(body.get("columns"), dict) or not body["columns"]:
        raise RegisterError(f"request schema {path}: no columns")
    stated = body.get("schema_version")
    if schema_version and stated != schema_version:
        raise RegisterError(
            f"request schema {path}: schema version {stated!r}, but the model was trained on "
            f"data validated against {schema_version!r}"
        )
    return data


def model_input_columns(model_dir: str, model_meta: Mapping) -> list[str] | None:
    """The columns the model was fitted on (``feature_names_in_`` of the verified model)."""
    from components.lib import artifacts
    from components.lib.modeling import MODEL_FILE

    model = artifacts.load_pickle(
        str(Path(model_dir, MODEL_FILE)),
        str(model_meta.get("sha256", "")),
        "model",
        sklearn_version=str(model_meta.get("sklearn_version", "")),
    )
    names = getattr(model, "feature_names_in_", None)
    return None if names is None else [str(c) for c in names]


def check_rows(holdout: pd.DataFrame, columns: list[str]) -> tuple[pd.DataFrame, bool]:
    """The holdout's ``columns``, every row up to :data:`CHECK_ROWS_MAX`, else a deterministic
    sample of that many (seed :data:`CHECK_ROWS_SEED`) in holdout order; (rows, sampled)."""
    absent = [c for c in columns if c not in holdout.columns]
    if absent:
        raise RegisterError(f"holdout lacks the model's input columns {', '.join(absent)}")
    rows = holdout[columns]
    if len(rows) <= CHECK_ROWS_MAX:
        return rows.reset_index(drop=True), False
    sample = rows.sample(n=CHECK_ROWS_MAX, random_state=CHECK_ROWS_SEED).sort_index()
    return sample.reset_index(drop=True), True


def run(
    tracking_uri: str,
    model_name: str,
    model_dir: str,
    model_meta: Mapping,
    holdout_path: str,
    holdout_meta: Mapping,
    evaluation_dir: str,
    statistics_uri: str,
    decision: str,
    pipeline_run_id: str,
    statistics_dir: str | None = None,
) -> dict:
    """Registers and moves the version; returns what happened (version, states, reasons).

    ``statistics_dir`` is the local statistics folder (``statistics_uri`` is recorded; the
    folder is read for validate_data's request schema).
    """
    if decision not in DECISIONS:
        raise RegisterError(f"decision {decision!r} is not one of {', '.join(DECISIONS)}")
    if not tracking_uri:
        raise RegisterError("mlflow_tracking_uri is empty: there is no registry to register in")
    evaluation_file = Path(evaluation_dir) / "evaluation.json"
    if not evaluation_file.exists():
        raise RegisterError(f"no evaluation.json in {evaluation_dir}: evaluate did not finish")
    evaluation = json.loads(evaluation_file.read_text())
    if evaluation.get("decision") != decision:
        raise RegisterError(
            f"decision {decision!r} differs from the evaluation's {evaluation.get('decision')!r}"
        )
    reasons = [str(r) for r in evaluation.get("reasons", [])]
    lineage = lineage_of(model_meta, holdout_meta, evaluation, pipeline_run_id)
    target = str(model_meta.get("target", ""))
    holdout = pd.read_parquet(holdout_path)
    example = holdout.head(EXAMPLE_ROWS)
    example = example.drop(columns=[c for c in (target,) if c in example.columns])

    extra_files: dict[str, bytes] = {}
    schema_bytes = request_schema_file(statistics_dir, str(lineage.get("schema_version", "")))
    if schema_bytes is not None and target:
        # The serving image reads the target's range from it (its prediction histogram's
        # buckets, the same for every version of the model).
        schema_bytes = json.dumps({**json.loads(schema_bytes), "target": target}, indent=1).encode()
    if schema_bytes is not None:
        extra_files[registry.REQUEST_SCHEMA_FILE] = schema_bytes
    columns = model_input_columns(model_dir, model_meta)
    if columns is None:
        columns = [c for c in holdout.columns if c != target]
        log.warning("the model has no feature_names_in_: check rows hold every holdout column")
    if schema_bytes is not None:
        unstated = [c for c in columns if c not in json.loads(schema_bytes)["columns"]]
        if unstated:
            log.warning("the request schema states nothing of input columns %s", unstated)
    rows, sampled = check_rows(holdout, columns)
    if sampled:
        log.info(
            "check rows: a deterministic sample of %d of the holdout's %d rows (seed %d, "
            "in holdout order)",
            len(rows),
            len(holdout),
            CHECK_ROWS_SEED,
        )
    extra_files[registry.CHECK_DATA_FILE] = rows.to_parquet(index=False)
    # The monitoring reference train wrote beside model.joblib (older models have none:
    # detect_drift then says it cannot monitor that version).
    for written, kept in MONITORING_FILES.items():
        path = Path(model_dir, written)
        if path.is_file():
            extra_files[kept] = path.read_bytes()
        else:
            log.warning("the model has no %s: detect_drift cannot monitor this version", written)

    reg = registry.Registry(tracking_uri)
    reg.ping()
    try:
        had_champion = reg.champion(model_name) is not None
    except registry.NotFound:  # the model's first version creates it
        had_champion = False
    version = reg.register(
        model_name, model_dir, lineage, statistics_uri, example, extra_files=extra_files
    )
    moves = []
    summary = "; ".join(reasons) or "no reasons given"
    if decision == "reject":
        moved = reg.transition(
            model_name, version.version, "rejected", f"evaluation gate: reject: {summary}"
        )
        moves.append(moved.state)
    else:
        moved = reg.transition(
            model_name, version.version, "staging", f"evaluation gate: promote: {summary}"
        )
        moves.append(moved.state)
        if not had_champion:
            moved = reg.transition(
                model_name,
                version.version,
                "production",
                "first version of the model: no champion, promoted on the thresholds alone",
            )
            moves.append(moved.state)
    log.info("%s version %s: candidate -> %s", model_name, version.version, " -> ".join(moves))
    return {
        "model_name": model_name,
        "version": version.version,
        "state": moves[-1],
        "path": ["candidate", *moves],
        "decision": decision,
        "reasons": reasons,
        "first_version": not had_champion,
        "model_uri": version.model_uri,
        "manifest_sha256": version.manifest_sha256,
        "statistics_uri": statistics_uri,
        "request_schema": schema_bytes is not None,
        "check_rows": len(rows),
        "check_rows_sampled": sampled,
        "monitoring_reference": all(k in extra_files for k in MONITORING_FILES.values()),
    }


def markdown(result: Mapping, tracking_uri: str) -> str:
    lines = [
        "# Registry",
        "",
        f"`{result['model_name']}` version **{result['version']}**: "
        + " -> ".join(result["path"])
        + f" (decision **{result['decision']}**"
        + (", the model's first version" if result["first_version"] else "")
        + ")",
        "",
        f"MLflow: {tracking_uri} &middot; `{result['model_uri']}` &middot; manifest "
        f"`{result['manifest_sha256'][:16]}` &middot; drift baseline `{result['statistics_uri']}`",
    ]
    if "check_rows" in result:
        lines += [
            "",
            "For the serving image, in the version's MLflow directory (under its manifest): "
            + (
                f"`{registry.REQUEST_SCHEMA_FILE}` (validate_data's request schema)"
                if result.get("request_schema")
                else "**no request schema** (the statistics predate it)"
            )
            + f", `{registry.CHECK_DATA_FILE}` ({result['check_rows']:,} holdout rows"
            + (", a deterministic sample" if result.get("check_rows_sampled") else "")
            + ").",
        ]
    if result["reasons"]:
        lines += ["", "Reasons:", ""] + [f"- {r}" for r in result["reasons"]]
    return "\n".join(lines) + "\n"
