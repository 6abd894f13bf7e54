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
version is the champion).
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
) -> dict:
    """Registers and moves the version; returns what happened (version, states, reasons)."""
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
    example = pd.read_parquet(holdout_path).head(EXAMPLE_ROWS)
    example = example.drop(columns=[c for c in (target,) if c in example.columns])

    reg = registry.Registry(tracking_uri)
    reg.ping()
    try:
        had_champion = reg.champion(model_name) is not None
    except registry.NotFound:  # the model's first version creates it
        had_champion = False
    version = reg.register(model_name, model_dir, lineage, statistics_uri, example)
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
    if result["reasons"]:
        lines += ["", "Reasons:", ""] + [f"- {r}" for r in result["reasons"]]
    return "\n".join(lines) + "\n"
