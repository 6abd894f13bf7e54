"""KFP definition of register; the logic is in ``executor.py``."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Markdown, Model, Output

from components._images import PIPELINE_IMAGE


@dsl.component(base_image=PIPELINE_IMAGE, install_kfp_package=False)
def register(
    model: Input[Model],
    holdout: Input[Dataset],
    evaluation: Input[Artifact],
    statistics: Input[Artifact],
    registration: Output[Markdown],
    decision: str,
    model_name: str = "bikeshare",
    mlflow_tracking_uri: str = "",
    pipeline_run_id: str = "",
) -> NamedTuple("Outputs", [("version", str), ("state", str)]):
    """Registers the challenger in MLflow and moves it where the evaluation gate's decision says.

    ``promote``: candidate -> staging (and on to production when the model has no champion
    yet: the first deploy). ``reject``: candidate -> rejected, with the gate's reasons.

    Args:
        model: The train step's model (``model.joblib``, verified before it is loaded).
        holdout: The holdout split (its hash goes into the lineage; a few rows become the
            MLflow input example; its rows, cut to the model's input columns, become the
            serving image's check rows).
        evaluation: evaluate's ``evaluation`` folder (decision, reasons, metrics, feature
            importance).
        statistics: validate_data's statistics: recorded as the version's drift baseline;
            its ``schema.json`` (the request schema) goes into the version.
        registration: Output. Markdown: the version, its path through the states, reasons.
        decision: ``promote`` or ``reject`` (the relay of evaluate's decision).
        model_name: The registered model name.
        mlflow_tracking_uri: The MLflow tracking server.
        pipeline_run_id: The KFP run id, for the lineage.

    Returns:
        version: The registered version.
        state: Its state after this step.
    """
    from collections import namedtuple
    from pathlib import Path

    from components.lib import logs
    from components.register import executor

    logs.setup()
    result = executor.run(
        mlflow_tracking_uri,
        model_name,
        model.path,
        dict(model.metadata),
        holdout.path,
        dict(holdout.metadata),
        evaluation.path,
        statistics.uri,
        decision,
        pipeline_run_id,
        statistics_dir=statistics.path,
    )
    Path(registration.path).write_text(executor.markdown(result, mlflow_tracking_uri))
    registration.metadata.update(
        {
            k: result[k]
            for k in (
                "model_name",
                "version",
                "state",
                "decision",
                "first_version",
                "request_schema",
                "check_rows",
            )
        }
    )
    print(f"registered {model_name} version {result['version']}: {' -> '.join(result['path'])}")
    outputs = namedtuple("Outputs", ["version", "state"])
    return outputs(result["version"], result["state"])
