"""KFP definition of find_champion; the logic is in ``executor.py``."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Model, Output

from components._images import PIPELINE_IMAGE


@dsl.component(base_image=PIPELINE_IMAGE, install_kfp_package=False)
def find_champion(
    champion: Output[Model],
    model_name: str = "bikeshare",
    mlflow_tracking_uri: str = "",
    baseline_override: str = "",
) -> NamedTuple("Outputs", [("baseline_statistics", str), ("version", str)]):
    """Looks up the registry's production version of ``model_name`` (the champion).

    Args:
        champion: Output. The champion's MLflow model directory, verified against the
            registry's manifest (metadata: ``found``, ``version``, ``manifest_sha256``,
            ``statistics_uri``); an empty folder with ``found: false`` when there is none.
        model_name: The registered model name.
        mlflow_tracking_uri: The MLflow tracking server; empty: no registry (no champion).
        baseline_override: A drift baseline to use instead of the champion's (a path or
            ``s3://`` URI of a validate_data ``statistics`` folder); empty: the champion's.

    Returns:
        baseline_statistics: ``baseline_override`` if given, else the champion's training
            statistics URI (validate_data's drift baseline), else "" (the schema's reference).
        version: The champion's version, or "".
    """
    from collections import namedtuple

    from components.find_champion import executor
    from components.lib import logs

    logs.setup()
    meta, baseline = executor.run(mlflow_tracking_uri, model_name, champion.path)
    champion.metadata.update(meta)
    outputs = namedtuple("Outputs", ["baseline_statistics", "version"])
    return outputs(baseline_override or baseline, str(meta.get("version", "")))
