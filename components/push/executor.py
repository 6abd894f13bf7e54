"""push: a registered version to where KServe's storage initializer can fetch it, and the
model's first deploy.

1. The version's MLflow model directory is downloaded from the registry and verified file
   by file against the manifest sha256 the registry recorded (``Registry.download``).
2. It is copied to the object store at a content-addressed prefix,
   ``s3://<bucket>/models/<name>/<manifest sha256>/``, the manifest
   (``loopline_manifest.json``) last: a manifest there whose sha256 is the recorded one
   marks a complete copy, and then nothing is uploaded (a second push of the same version,
   or of a re-registered identical model, writes nothing).
3. The URI is recorded on the version (tag ``loopline.serving_uri``,
   ``Registry.set_serving_uri``; no state change).
4. When the model has no InferenceService yet and the version is the production one (the
   model's first version, promoted by register), the InferenceService is created with it at
   100% (``KServeDeployment.deploy``). Otherwise nothing serving changes: the progressive
   rollout starts the candidate.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable

from components.lib import artifacts, inferenceservice, registry, storage
from components.lib.deployment import Deployment, DeploymentError, ModelRef
from components.lib.inferenceservice import (
    MODES,
    SERVICE_ACCOUNT,
    check_name,
)

log = logging.getLogger("loopline.push")

MODELS_PREFIX = "models"
REFUSED_STATES = ("rejected", "rolled_back")

DeploymentFactory = Callable[[str, str, str, str], Deployment]


class PushError(ValueError):
    """Bad input to push, or a version that must not serve; the message names it."""


def storage_uri(bucket: str, model_name: str, manifest_sha256: str) -> str:
    """The content-addressed prefix of a version's copy (a folder: it ends with '/')."""
    if not bucket or "/" in bucket:
        raise PushError(f"bucket {bucket!r}: a bucket name, without '/'")
    return f"s3://{bucket}/{MODELS_PREFIX}/{model_name}/{manifest_sha256}/"


def copy_version(
    reg: registry.Registry,
    version: registry.Version,
    uri: str,
    s3_endpoint: str,
    s3_secure: bool,
) -> list[str]:
    """Uploads the version's verified directory to ``uri`` unless a complete copy is there;
    returns the object names written ([] when it was there)."""
    manifest_uri = uri + artifacts.MANIFEST_FILE
    there = storage.read_object(manifest_uri, s3_endpoint, s3_secure, what="serving copy")
    if there is not None and artifacts.sha256_bytes(there) == version.manifest_sha256:
        log.info("%s is already there (its manifest matches): nothing to upload", uri)
        return []
    if there is not None:
        log.warning("%s holds a manifest that does not match: uploading again", manifest_uri)
    with tempfile.TemporaryDirectory(prefix="loopline-push-") as tmp:
        path = reg.download(version.name, version.version, tmp, verify=True)
        written = storage.upload_folder(
            path, uri, s3_endpoint, s3_secure, last=artifacts.MANIFEST_FILE, what="serving copy"
        )
    log.info("uploaded %d files to %s", len(written), uri)
    return written


def run(
    model_name: str,
    model_version: str,
    tracking_uri: str,
    s3_endpoint: str,
    bucket: str,
    namespace: str = "",
    deployment_mode: str = "knative",
    service_account: str = SERVICE_ACCOUNT,
    s3_secure: bool = False,
    deployment_factory: DeploymentFactory | None = None,
    ready_timeout: float = 0.0,
) -> dict:
    """Returns what was done: ``storage_uri``, ``inference_service``, ``uploaded`` (object
    names), ``action`` (``deployed``, ``already_serving`` or ``none``), ``serving`` (the
    stable version the InferenceService has now, or "") and ``detail``."""
    check_name(model_name)
    if deployment_mode not in MODES:
        raise PushError(f"deployment_mode {deployment_mode!r}: one of {', '.join(MODES)}")
    if not tracking_uri:
        raise PushError("no mlflow_tracking_uri: push reads the version from the registry")
    if not s3_endpoint:
        raise PushError("no s3_endpoint: the copy for serving goes to the object store")
    reg = registry.Registry(tracking_uri)
    reg.ping()
    version = reg.get(model_name, model_version)
    if version.state in REFUSED_STATES:
        raise PushError(
            f"model {model_name} version {version.version} is {version.state}: it must not serve"
        )
    if not version.manifest_sha256:
        raise PushError(f"model {model_name} version {version.version} has no manifest sha256")
    uri = storage_uri(bucket, model_name, version.manifest_sha256)
    written = copy_version(reg, version, uri, s3_endpoint, s3_secure)
    reg.set_serving_uri(model_name, version.version, uri)

    try:
        namespace = inferenceservice.pod_namespace(namespace)
    except DeploymentError as exc:
        raise PushError(str(exc)) from exc
    factory = deployment_factory or inferenceservice.cluster_deployment
    dep = factory(model_name, namespace, deployment_mode, service_account)
    ref = ModelRef(model_name, version.version, uri, version.manifest_sha256)
    traffic = dep.get()
    if traffic is None and version.state == registry.PRODUCTION:
        dep.deploy(ref)
        action, serving = "deployed", version.version
        detail = f"first deploy: version {version.version} takes 100%"
        if ready_timeout > 0:
            dep.wait_ready(ready_timeout)
            detail += " (ready)"
    elif traffic is None:
        action, serving = "none", ""
        detail = (
            f"no InferenceService yet, and version {version.version} is {version.state}, not "
            "production: only the champion is deployed first"
        )
    else:
        serving = traffic.stable.version if traffic.stable else ""
        if traffic.stable == ref:
            action, detail = "already_serving", f"version {version.version} already serves"
        else:
            action = "none"
            detail = (
                f"version {serving} serves; version {version.version} ({version.state}) is "
                "ready for the rollout to start as a candidate"
            )
    log.info("%s/%s: %s", namespace, model_name, detail)
    return {
        "model_name": model_name,
        "version": version.version,
        "state": version.state,
        "manifest_sha256": version.manifest_sha256,
        "storage_uri": uri,
        "uploaded": written,
        "inference_service": model_name,
        "namespace": namespace,
        "deployment_mode": deployment_mode,
        "action": action,
        "serving": serving,
        "detail": detail,
    }


def markdown(result: dict) -> str:
    uploaded = result["uploaded"]
    copy_line = (
        f"uploaded {len(uploaded)} files" if uploaded else "already there (manifest matches)"
    )
    return "\n".join(
        [
            f"# push: {result['model_name']} version {result['version']}",
            "",
            "| | |",
            "|---|---|",
            f"| state | {result['state']} |",
            f"| manifest sha256 | `{result['manifest_sha256']}` |",
            f"| storage URI | `{result['storage_uri']}` ({copy_line}) |",
            f"| InferenceService | `{result['namespace']}/{result['inference_service']}` "
            f"({result['deployment_mode']} mode) |",
            f"| serving now | {result['serving'] or 'nothing'} |",
            f"| action | {result['action']}: {result['detail']} |",
            "",
        ]
    )
