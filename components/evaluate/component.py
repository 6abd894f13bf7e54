"""KFP definitions of evaluate and decision_relay; the logic is in ``executor.py``."""

from kfp import dsl
from kfp.dsl import (
    HTML,
    Artifact,
    ClassificationMetrics,
    Dataset,
    Input,
    Markdown,
    Metrics,
    Model,
    Output,
    OutputPath,
)

from components._images import PIPELINE_IMAGE


@dsl.component(base_image=PIPELINE_IMAGE, install_kfp_package=False)
def evaluate(
    model: Input[Model],
    holdout: Input[Dataset],
    eval_data: Input[Dataset],
    champion: Input[Model],
    scorecard: Output[Markdown],
    report: Output[HTML],
    metrics: Output[Metrics],
    classification_metrics: Output[ClassificationMetrics],
    evaluation: Output[Artifact],
    decision: OutputPath(str),
    config: str = "bikeshare",
):
    """Judges the trained model against the champion on the holdout: promote or reject.

    Both models are loaded through the verified loader: each ``model.joblib`` must match
    the sha256 (and scikit-learn version) in its artifact's metadata, or the task fails
    before anything is unpickled. The challenger is scored on the holdout (the decision)
    and eval_data (reported): metrics, every metric per slice and the gaps between
    slices, robustness, latency, permutation importance, a weighted scorecard; with a
    champion, both models on the same holdout rows (paired bootstrap of the primary
    metric; McNemar's test for classification). ``promote`` only when every threshold
    passes and, with a champion, the challenger is better beyond the confidence interval
    by the minimum effect.

    Args:
        model: The challenger (train's ``model``: a folder with ``model.joblib``; metadata
            ``sha256``, ``sklearn_version``, ``task``, ``target`` and lineage).
        holdout: Ingest's holdout split (Parquet), seen by neither tuning nor training.
        eval_data: Ingest's eval split (Parquet); its metrics are reported, not judged.
        champion: The production model, from the champion lookup: metadata
            ``{"found": false}`` when there is none; otherwise a folder with
            ``model.joblib`` and metadata ``sha256``, ``sklearn_version``, ``version``.
        scorecard: Output. Markdown: the decision, every check, the scorecard, metrics.
        report: Output. HTML (self-contained, inline SVG): slices, residuals or
            calibration, champion vs challenger, feature importance.
        metrics: Output. Holdout and eval metrics, score, gaps, latency, comparison.
        classification_metrics: Output. Confusion matrix and ROC curve (classification;
            empty for regression).
        evaluation: Output. A folder with ``evaluation.json`` (decision, reasons, every
            metric, slices, robustness, latency, scorecard, champion comparison, feature
            importance) and ``feature_importance.json``; metadata: the decision, score,
            reasons, comparison and feature importance, for register.
        decision: Output. ``promote`` or ``reject``; branch on it through decision_relay.
        config: The evaluation config: a bundled name (``bikeshare``,
            ``bikeshare_high_demand``), a JSON path in the image, or JSON text.
    """
    from components.evaluate import executor
    from components.lib import logs

    logs.setup()
    result = executor.run(
        model.path,
        dict(model.metadata),
        holdout.path,
        eval_data.path,
        champion.path,
        dict(champion.metadata),
        config,
        evaluation.path,
        holdout_meta=dict(holdout.metadata),
        eval_meta=dict(eval_data.metadata),
    )
    executor.write_outputs(result, scorecard.path, report.path, decision)
    for name, value in executor.kfp_metrics(result).items():
        metrics.log_metric(name, value)
    if result["task"] == "classification":
        classification_metrics.log_confusion_matrix(result["classes"], result["confusion_matrix"])
        roc = result["plots"]["roc"]["challenger"]
        if roc:
            classification_metrics.log_roc_curve(roc["fpr"], roc["tpr"], roc["threshold"])
    evaluation.metadata.update(executor.artifact_metadata(result))
    print(f"evaluate: {result['summary']}")
    for reason in result["reasons"]:
        print(f"  {reason}")


@dsl.component(base_image=PIPELINE_IMAGE, install_kfp_package=False)
def decision_relay(decision: str) -> str:
    """Hands evaluate's decision on as this task's single output, for ``dsl.If`` to branch on.

    Under kfp.local 2.17 ``dsl.If`` resolves only a task's single ``.output``; evaluate
    has many outputs, so the pipeline passes ``evaluate.outputs["decision"]`` here and
    branches on ``decision_relay(...).output == "promote"``.

    Args:
        decision: evaluate's ``decision`` output.

    Returns:
        ``promote`` or ``reject`` (any other value fails the task).
    """
    from components.evaluate import executor

    return executor.relay(decision)
