"""find_champion: the registry's production version of a model, for the evaluation gate and the
data gate's drift baseline.

With a champion: its MLflow model directory is downloaded into the output folder and
checked file by file against the manifest the registry recorded (nothing is deserialized
here: evaluate loads it through the same verified loader), and its training statistics URI
is handed on as validate_data's ``baseline_statistics``. With none (the model's first
version, or no tracking URI): an empty folder with ``found: false``, and an empty baseline
(the schema's reference statistics).
"""

from __future__ import annotations

import logging
import os

from components.lib import registry

log = logging.getLogger("loopline.find_champion")


def run(tracking_uri: str, model_name: str, out_dir: str) -> tuple[dict, str]:
    """Returns (the champion artifact's metadata, the drift baseline's URI or "")."""
    os.makedirs(out_dir, exist_ok=True)
    if not tracking_uri:
        log.info("no mlflow_tracking_uri: no registry, no champion")
        return {"found": False, "reason": "no mlflow_tracking_uri"}, ""
    reg = registry.Registry(tracking_uri)
    reg.ping()
    try:
        champion = reg.champion(model_name)
    except registry.NotFound:  # never registered: its first run
        champion = None
    if champion is None:
        log.info("model %s has no production version yet", model_name)
        return {"found": False, "reason": f"{model_name} has no production version"}, ""
    path = reg.download(model_name, champion.version, out_dir)
    meta = {
        "found": True,
        "format": "mlflow",
        "model_name": model_name,
        "version": champion.version,
        "model_uri": champion.model_uri,
        "manifest_sha256": champion.manifest_sha256,
        "path": os.path.relpath(path, out_dir),
        "sklearn_version": str(champion.lineage.get("sklearn_version", "")),
        "statistics_uri": champion.statistics_uri,
        "data_sha256": str(champion.lineage.get("data_sha256", "")),
    }
    log.info(
        "champion %s version %s (manifest %s); drift baseline %s",
        model_name,
        champion.version,
        champion.manifest_sha256[:12],
        champion.statistics_uri,
    )
    return meta, champion.statistics_uri
