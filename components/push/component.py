"""KFP definition of push; the logic is in ``executor.py``."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Markdown, Output

from components._images import PIPELINE_IMAGE


@dsl.component(base_image=PIPELINE_IMAGE, install_kfp_package=False)
def push(
    report: Output[Markdown],
    model_name: str = "bikeshare",
    model_version: str = "",
    mlflow_tracking_uri: str = "",
    s3_endpoint: str = "minio-service.kubeflow:9000",
    bucket: str = "loopline-models",
    namespace: str = "",
    deployment_mode: str = "knative",
    service_account: str = "loopline-serving",
    s3_secure: bool = False,
) -> NamedTuple("Outputs", [("storage_uri", str), ("inference_service", str)]):
    """Copies a registered version for KServe and, for a model's first version, deploys it.

    The version's MLflow directory (verified against the registry's manifest) goes to
    ``s3://<bucket>/models/<model_name>/<manifest sha256>/`` (skipped when a complete copy
    is there), the URI is recorded on the version (tag ``loopline.serving_uri``), and when
    the model has no InferenceService yet and the version is in production, the
    InferenceService is created with it at 100%. Otherwise nothing serving changes (the
    rollout starts the candidate).

    Args:
        report: Output. Markdown: the copy, the InferenceService and what was done.
        model_name: The registered model name (also the InferenceService's name).
        model_version: The version to push.
        mlflow_tracking_uri: The MLflow tracking server.
        s3_endpoint: ``host:port`` of the object store (credentials from
            ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``).
        bucket: The bucket the serving copies go to (it must exist).
        namespace: The InferenceService's namespace; empty: the pod's own.
        deployment_mode: ``knative`` (Serverless: canaryTrafficPercent) or ``standard``
            (RawDeployment: spec.canary[]).
        service_account: The predictor's service account; its Secret carries the S3
            credentials KServe's storage initializer reads the copy with.
        s3_secure: Reach the object store over TLS.

    Returns:
        storage_uri: The content-addressed copy (``s3://.../<manifest sha256>/``).
        inference_service: The InferenceService's name.
    """
    from collections import namedtuple
    from pathlib import Path

    from components.lib import logs
    from components.push import executor

    logs.setup()
    result = executor.run(
        model_name,
        model_version,
        mlflow_tracking_uri,
        s3_endpoint,
        bucket,
        namespace,
        deployment_mode,
        service_account,
        s3_secure,
    )
    Path(report.path).write_text(executor.markdown(result))
    report.metadata.update(
        {
            k: result[k]
            for k in ("model_name", "version", "storage_uri", "inference_service", "action")
        }
    )
    print(f"push {model_name} version {result['version']}: {result['detail']}")
    outputs = namedtuple("Outputs", ["storage_uri", "inference_service"])
    return outputs(result["storage_uri"], result["inference_service"])
