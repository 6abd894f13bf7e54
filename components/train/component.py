"""KFP definition of train; the logic is in ``executor.py``."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from components._images import PIPELINE_IMAGE


@dsl.component(base_image=PIPELINE_IMAGE, install_kfp_package=False)
def train(
    train_data: Input[Dataset],
    eval_data: Input[Dataset],
    transformer: Input[Artifact],
    statistics: Input[Artifact],
    model: Output[Model],
    metrics: Output[Metrics],
    eval_predictions: Output[Dataset],
    params: str = "{}",
    search_space: str = "",
    model_type: str = "",
    seed: int = 0,
):
    """Trains transform + estimator as one scikit-learn Pipeline and records its lineage.

    Args:
        train_data: The training split.
        eval_data: The evaluation split (metrics only).
        transformer: The fitted transform (from the transform step, fitted on train only);
            refused, before it is unpickled, unless it matches the sha256 and scikit-learn
            version in its metadata.
        statistics: validate_data's statistics (for the schema version in the lineage).
        model: Output. A folder with ``model.joblib`` (what KServe's sklearn server loads);
            metadata: sha256, params, training rows, data hash, schema version, transform
            version, code version and revision, eval metrics.
        metrics: Output. The eval metrics, shown by the KFP UI.
        eval_predictions: Output. Parquet: the model's predictions on the eval split's rows, in order.
        params: Estimator parameters as JSON (e.g. the tune step's best parameters).
        search_space: The search space the parameters were tuned in (bundled name, path in
            the image, or JSON); its ``model_type`` is the model type. Empty: none.
        model_type: ``gradient_boosting`` or ``linear``; empty: the search space's, else
            ``gradient_boosting``. Given with ``search_space``, the two must agree.
        seed: Random seed.
    """
    import json
    import os

    from components.train import executor

    model_type = executor.resolve_model_type(model_type, search_space)
    lineage = {
        "data_sha256": train_data.metadata.get("sha256", ""),
        "eval_data_sha256": eval_data.metadata.get("sha256", ""),
        "schema_version": statistics.metadata.get("schema_version", ""),
        "transform_version": transformer.metadata.get("transform_version", ""),
        "code_revision": os.environ.get("LOOPLINE_REVISION", "unknown"),
    }
    # Rows built from the feature store (feature_join) carry the feature views' versions.
    if train_data.metadata.get("feature_view_versions"):
        lineage["feature_view_versions"] = train_data.metadata["feature_view_versions"]
    meta, scores = executor.run(
        train_data.path,
        eval_data.path,
        transformer.path,
        dict(transformer.metadata),
        model.path,
        model_type,
        json.loads(params),
        lineage,
        seed,
        predictions_path=eval_predictions.path,
    )
    model.metadata.update(meta)
    for name, value in scores.items():
        metrics.log_metric(name, value)
    print(
        f"model {meta['sha256'][:12]} ({model_type}): "
        + ", ".join(f"{k}={v:.4f}" for k, v in scores.items())
    )
