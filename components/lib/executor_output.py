"""The KFP executor output a container component writes itself (stdlib only: every image).

Container components in images without kfp (validate_data in the TFDV image, materialize and
feature_join in the features image) get the executor input (``{{$}}``) and must write
``executor_output.json`` at its ``outputs.outputFile``: each output artifact as KFP listed
it, with this run's metadata merged into it, and the output parameters' values.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path


def write(executor_input: str, metadata: Mapping[str, Mapping], parameters: Mapping) -> str:
    """Writes the executor output; returns its path.

    Args:
        executor_input: The executor input JSON KFP gave the container.
        metadata: Output artifact name -> metadata to merge into that artifact's own.
        parameters: Output parameter name -> value.
    """
    outputs = json.loads(executor_input).get("outputs", {})
    artifacts = {
        name: {
            "artifacts": [
                {
                    "name": a.get("name", name),
                    "uri": a["uri"],
                    "metadata": {**a.get("metadata", {}), **metadata.get(name, {})},
                }
                for a in entry.get("artifacts", [])
            ]
        }
        for name, entry in outputs.get("artifacts", {}).items()
    }
    path = outputs["outputFile"]
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Path(path).write_text(json.dumps({"artifacts": artifacts, "parameterValues": dict(parameters)}))
    return path
