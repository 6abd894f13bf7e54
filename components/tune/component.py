"""KFP definition of tune (local backend: Optuna); the logic is in ``executor.py``."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Markdown, Output

from components._images import PIPELINE_IMAGE


@dsl.component(base_image=PIPELINE_IMAGE, install_kfp_package=False)
def tune(
    train_data: Input[Dataset],
    eval_data: Input[Dataset],
    transformer: Input[Artifact],
    report: Output[Markdown],
    plot: Output[HTML],
    search_space: str = "bikeshare",
    seed: int = 0,
) -> str:
    """Searches the estimator's parameters with Optuna (Katib's algorithms, mapped) and returns the best.

    Args:
        train_data: The training split.
        eval_data: The evaluation split the objective is measured on.
        transformer: The fitted transform (fitted on train only); refused, before it is
            unpickled, unless it matches the sha256 and scikit-learn version in its metadata.
        report: Output. Markdown: the best trials and their parameters.
        plot: Output. HTML: every trial's objective and the best so far, as a plot.
        search_space: A bundled search-space name, a JSON path in the image, or JSON text.
        seed: Seed of the sampler and the estimators.

    Returns:
        The best parameters as JSON, for the train step.
    """
    import json

    from components.lib import logs
    from components.tune import executor
    from components.tune import search_space as space

    logs.setup()
    result = executor.run(
        train_data.path,
        eval_data.path,
        transformer.path,
        dict(transformer.metadata),
        search_space,
        seed,
    )
    spec = space.load(search_space)
    with open(report.path, "w") as fh:
        fh.write(executor.markdown(spec, result))
    with open(plot.path, "w") as fh:
        fh.write(executor.html(spec, result))
    report.metadata.update({"best_value": result.best_value, "trials": len(result.trials)})
    return json.dumps(result.best_params, sort_keys=True)
