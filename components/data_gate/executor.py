"""The data gate: stop the run when validation found blocking findings, naming each split and column.

Reported findings (drift between the policy's warn and block levels) do not stop the
run; the gate lists them in its log so that they show in the dashboard beside the verdict.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

log = logging.getLogger("loopline.data_gate")


class DataRejected(RuntimeError):
    """The batch failed validation; nothing downstream may run."""


def _line(finding: dict) -> str:
    return (
        f"  split '{finding['dataset']}', column '{finding['column']}': "
        f"{finding['kind']}: {finding['reason']}"
    )


def check(anomalies_found: bool, anomalies_dir: str) -> int:
    """Returns the number of reported (non-blocking) findings, or raises :class:`DataRejected`.

    Args:
        anomalies_found: The validate_data flag (true only when a finding blocks).
        anomalies_dir: The validate_data ``anomalies`` artifact (a folder with anomalies.json).
    """
    summary_path = Path(anomalies_dir) / "anomalies.json"
    if not summary_path.exists():
        raise DataRejected(
            f"data gate: no anomalies.json in {anomalies_dir}: validation did not finish; "
            "refusing the batch"
        )
    summary = json.loads(summary_path.read_text())
    blocking = summary.get("anomalies", [])
    reported = summary.get("reported", [])
    baseline = summary.get("baseline", {}).get("description", "")
    versions = f"schema {summary.get('schema_version')}, policy {summary.get('policy_version')}"
    if anomalies_found or blocking:
        raise DataRejected(
            f"data gate: the batch is stopped before transform and training: "
            f"{len(blocking)} blocking findings ({versions}):\n"
            + "\n".join(_line(f) for f in blocking)
        )
    if reported:
        log.warning(
            "data gate: passed with %d reported drift findings (%s; baseline: %s):\n%s",
            len(reported),
            versions,
            baseline,
            "\n".join(_line(f) for f in reported),
        )
    else:
        log.info("data gate: passed, nothing reported (%s)", versions)
    return len(reported)
