"""KFP definition of tune_katib: the tune step on a cluster, a container component in the tuner image."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Markdown, Output, OutputPath

from components._images import PIPELINE_IMAGE, TUNER_IMAGE


@dsl.container_component
def tune_katib(
    train_data: Input[Dataset],
    eval_data: Input[Dataset],
    transformer: Input[Artifact],
    best_params: OutputPath(str),
    report: Output[Markdown],
    search_space: str = "bikeshare",
    experiment_name: str = "loopline-tune",
    run_id: str = "",
    namespace: str = "kubeflow-user-example-com",
    trial_image: str = PIPELINE_IMAGE,
    s3_endpoint: str = "minio-service.kubeflow:9000",
    service_account: str = "loopline-pipeline-runner",
    s3_credentials_secret: str = "mlpipeline-minio-artifact",
    timeout_minutes: float = 60.0,
    seed: int = 0,
    keep_experiment: bool = False,
):
    """Runs the search-space spec as a Katib Experiment and returns the best parameters.

    Each trial runs ``python -m components.tune.trial`` in ``trial_image`` and reads the
    data from the artifacts' object-store URIs. Every run creates its own Experiment
    (``experiment_name`` + a hash of ``run_id``). The step waits up to ``timeout_minutes``,
    fails with Katib's own condition message when the Experiment fails, and deletes the
    Experiment once it is done with it, unless ``keep_experiment``.

    Args:
        train_data: The training split.
        eval_data: The evaluation split the objective is measured on.
        transformer: The fitted transform.
        best_params: Output. The best parameters as JSON, for the train step.
        report: Output. Markdown: the Experiment and its best trial.
        search_space: A bundled search-space name, a JSON path in the image, or JSON text.
        experiment_name: The prefix of the Experiment's name (lower case, a letter first).
        run_id: Makes the name unique: ``<experiment_name>-<10 hex digits of its sha256>``,
            at most 40 characters, Katib's limit (the pipeline passes the run's job id;
            empty: a random id).
        namespace: The namespace to create the Experiment in (the run's profile namespace).
        trial_image: The image whose training entrypoint the trials run.
        s3_endpoint: The object store the trials read the artifacts from.
        service_account: Service account of the trial pods (manifests/ creates it).
        s3_credentials_secret: Secret with ``accesskey`` / ``secretkey`` that the trial pods read
            the artifacts with (as ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``).
        timeout_minutes: How long to wait for the Experiment to succeed.
        seed: Seed of the algorithm and the estimator.
        keep_experiment: Keep the Experiment (and its trials) when done, for debugging.
    """
    return dsl.ContainerSpec(
        image=TUNER_IMAGE,
        command=["python", "-m", "components.tune.katib_launcher"],
        args=[
            "--search-space",
            search_space,
            "--name",
            experiment_name,
            "--run-id",
            run_id,
            "--namespace",
            namespace,
            "--trial-image",
            trial_image,
            "--train",
            train_data.uri,
            "--eval",
            eval_data.uri,
            "--transformer",
            transformer.uri,
            "--s3-endpoint",
            s3_endpoint,
            "--service-account",
            service_account,
            "--credentials-secret",
            s3_credentials_secret,
            "--timeout-minutes",
            timeout_minutes,
            "--seed",
            seed,
            "--keep-experiment",
            keep_experiment,
            "--best-params-out",
            best_params,
            "--report-out",
            report.path,
            # The executor input: the launcher reads the transformer's recorded sha256, spec
            # sha256 and scikit-learn version from it and hands them to every trial, which
            # refuses a transformer that does not match before unpickling it.
            "--executor-input",
            "{{$}}",
        ],
    )
