"""The data gate: stop the run when validation found anomalies, naming each column and reason."""

from __future__ import annotations

import json
from pathlib import Path


class DataRejected(RuntimeError):
    """The batch failed validation; nothing downstream may run."""


def check(anomalies_found: bool, anomalies_dir: str) -> int:
    """Returns the number of anomalies (0) or raises :class:`DataRejected` listing them.

    Args:
        anomalies_found: The validate_data flag.
        anomalies_dir: The validate_data ``anomalies`` artifact (a folder with anomalies.json).
    """
    summary_path = Path(anomalies_dir) / "anomalies.json"
    if not summary_path.exists():
        raise DataRejected(
            f"no anomalies.json in {anomalies_dir}: validation did not finish; refusing the batch"
        )
    summary = json.loads(summary_path.read_text())
    found = summary.get("anomalies", [])
    if anomalies_found or found:
        lines = [f"  {a['dataset']} / {a['column']}: {a['kind']}: {a['reason']}" for a in found]
        raise DataRejected(
            f"data validation found {len(found)} anomalies (schema {summary.get('schema_version')}); "
            "the batch is stopped before transform and training:\n" + "\n".join(lines)
        )
    return 0
