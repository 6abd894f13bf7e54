"""KServe InferenceServices for the Loopline runtime, and the rollout's :class:`Deployment` over them.

The objects are the ones KServe v0.20 takes (checked against its CRDs in
``../shared/schemas/kserve-v0.20.0`` by the tests): ``spec.predictor.model`` selects the
ServingRuntime ``loopline-serving`` (manifests/serving/servingruntime.yaml) by the model
format ``loopline``, KServe's storage initializer downloads ``storageUri`` to /mnt/models
with the credentials of the service account's Secret
(manifests/serving/models-s3-secret.template.yaml), and the server verifies every file
against ``--manifest_sha256`` before anything is deserialized.

Two deployment modes (``serving.kserve.io/deploymentMode``; v0.16 renamed the values:
``Knative`` was ``Serverless``, ``Standard`` was ``RawDeployment``; the old names are read,
never written, and KServe refuses to change the mode of an existing object):

* ``knative``: one Knative revision per predictor spec. A canary is the new model in
  ``spec.predictor`` with ``canaryTrafficPercent: p``: the newest revision gets p% and the
  last fully rolled-out one (``status.components.predictor.latestRolledoutRevision``, tag
  ``prev``) the rest. Promote removes the field; rollback sets it to 0 (and puts the stable
  model back into the spec, so that nothing rolls the failed model out later).
  ``serving.kserve.io/enable-tag-routing: "true"`` gives the two revisions their own URLs
  (``status.components.predictor.traffic[].url`` of the entries tagged ``latest`` and
  ``prev``): blue-green's smoke load goes to the ``latest`` one.
* ``standard``: plain Deployments. ``canaryTrafficPercent`` is silently ignored there;
  KServe v0.20's ``spec.canary[]`` (kserve PR 5672) gives each canary a ``trafficPercent``
  and a named predictor with its own Deployment and Service ``{isvc}-{name}-predictor``.
  Promote retargets the stable predictor to the canary's name (no pod restarts) and drops
  the entry; rollback drops the entry. Readiness adds the ``CanaryReady`` condition.

Shadow: KServe has no mirroring (kserve issues 2978, 2240), so the candidate runs as a
second InferenceService ``<name>-shadow`` and an Istio VirtualService
(:func:`build_mirror`) copies the stable predictor's in-mesh traffic to it; the copies'
answers are discarded by the sidecar.

Which versions serve is recorded on the InferenceService itself (annotations
``loopline.io/stable`` and ``loopline.io/candidate``: JSON of the :class:`ModelRef`), so
the Knative mode, where the stable model lives only in an older revision, reads back the
same as the Standard one; the rollout's own state is in ``loopline.io/rollout-*``.

Only the standard library and ``deployment`` at the top; the ``kubernetes`` client is
imported inside the functions that need it.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import re
import time
from collections.abc import Callable, Mapping

from components.lib.deployment import (
    ANNOTATION_PREFIX,
    DeploymentError,
    ModelRef,
    Traffic,
)

log = logging.getLogger("loopline.inferenceservice")

GROUP = "serving.kserve.io"
VERSION = "v1beta1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "InferenceService"
PLURAL = "inferenceservices"

ISTIO_GROUP = "networking.istio.io"
ISTIO_VERSION = "v1beta1"
VIRTUAL_SERVICES = "virtualservices"

RUNTIME = "loopline-serving"  # manifests/serving/servingruntime.yaml
MODEL_FORMAT = "loopline"
SERVICE_ACCOUNT = "loopline-serving"  # manifests/serving/models-s3-secret.template.yaml
CONTAINER = "kserve-container"  # the runtime's container (a canary entry must name it)

DEPLOYMENT_MODE = "serving.kserve.io/deploymentMode"
TAG_ROUTING = "serving.kserve.io/enable-tag-routing"
# What we write, and every value KServe v0.20 reads (constants.go: Legacy* are normalized).
MODES = {"knative": "Knative", "standard": "Standard"}
MODE_VALUES = {"Knative": "knative", "Serverless": "knative", "Standard": "standard",
               "RawDeployment": "standard"}  # fmt: skip

STABLE_ANNOTATION = "loopline.io/stable"
CANDIDATE_ANNOTATION = "loopline.io/candidate"
MIRROR_ANNOTATION = "loopline.io/candidate-mirror"
MODEL_LABEL = "loopline.io/model-name"
VERSION_LABEL = "loopline.io/model-version"
ROLE_LABEL = "loopline.io/role"
PART_OF = {"app.kubernetes.io/part-of": "loopline", "app.kubernetes.io/component": "serving"}

SHADOW_SUFFIX = "-shadow"
_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_MAX_NAME = 45  # room for "-shadow" and "-predictor-00001" within a 63-character host label


def check_name(name: str) -> str:
    if not _DNS_LABEL.match(name) or len(name) > _MAX_NAME:
        raise DeploymentError(
            f"{name!r} cannot name an InferenceService: lower-case letters, digits and '-', "
            f"starting with a letter, at most {_MAX_NAME} characters"
        )
    return name


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise DeploymentError(f"deployment mode {mode!r}: one of {', '.join(MODES)}")
    return mode


def check_percent(percent: int) -> int:
    if isinstance(percent, bool) or not isinstance(percent, int) or not 0 <= percent <= 100:
        raise DeploymentError(f"traffic percent {percent!r}: an integer from 0 to 100")
    return percent


def canary_name(ref: ModelRef) -> str:
    """The name of a Standard-mode canary entry (its Deployment is ``{isvc}-{name}-predictor``)."""
    name = f"v{ref.version}".lower().replace(".", "-").replace("_", "-")
    if not _DNS_LABEL.match(name):
        raise DeploymentError(f"version {ref.version!r} gives no valid canary name ({name!r})")
    return name


# ----------------------------------------------------------------------------- builders


def model_spec(ref: ModelRef) -> dict:
    """``spec.predictor.model`` for the Loopline runtime."""
    if not ref.storage_uri or not ref.manifest_sha256:
        raise DeploymentError(
            f"model {ref.name} version {ref.version}: a storage URI and a manifest sha256 "
            "are both required"
        )
    return {
        "modelFormat": {"name": MODEL_FORMAT},
        "runtime": RUNTIME,
        "storageUri": ref.storage_uri,
        "args": [f"--model_version={ref.version}", f"--manifest_sha256={ref.manifest_sha256}"],
    }


def predictor_labels(ref: ModelRef) -> dict:
    """Labels on the predictor's pods: which model version each pod serves. No role: a
    change of the pod labels is a new revision (Knative) or a rolling restart, and a
    promotion must change neither."""
    return {MODEL_LABEL: ref.name, VERSION_LABEL: str(ref.version)}


def ref_json(ref: ModelRef) -> str:
    return json.dumps(
        {
            "name": ref.name,
            "version": str(ref.version),
            "storage_uri": ref.storage_uri,
            "manifest_sha256": ref.manifest_sha256,
        },
        sort_keys=True,
        separators=(",", ":"),
    )


def ref_from_json(text: str | None) -> ModelRef | None:
    if not text:
        return None
    try:
        body = json.loads(text)
        return ModelRef(
            str(body["name"]),
            str(body["version"]),
            str(body["storage_uri"]),
            str(body["manifest_sha256"]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise DeploymentError(f"annotation {text!r} is not a model reference ({exc})") from exc


def build(
    ref: ModelRef,
    namespace: str,
    mode: str = "knative",
    service_account: str = SERVICE_ACCOUNT,
    *,
    name: str | None = None,
    tag_routing: bool = True,
    role: str = "stable",
    min_replicas: int | None = None,
) -> dict:
    """The InferenceService that serves ``ref`` alone (the model's first deploy, or a shadow).

    Args:
        ref: The version; ``ref.name`` names the object unless ``name`` is given.
        namespace: Where it lives.
        mode: ``knative`` or ``standard`` (the ``serving.kserve.io/deploymentMode``
            annotation: ``Knative`` or ``Standard``).
        service_account: The predictor's account: its Secret carries the S3 credentials
            the storage initializer downloads ``storageUri`` with.
        tag_routing: Knative only: ``latest-`` / ``prev-`` URLs per revision.
        role: ``stable`` or ``shadow`` (a label on the object and its pods).
        min_replicas: ``spec.predictor.minReplicas`` (KServe's default when None).
    """
    mode = check_mode(mode)
    name = check_name(name or ref.name)
    annotations = {DEPLOYMENT_MODE: MODES[mode], STABLE_ANNOTATION: ref_json(ref)}
    if mode == "knative" and tag_routing:
        annotations[TAG_ROUTING] = "true"
    predictor: dict = {
        "serviceAccountName": service_account,
        "labels": predictor_labels(ref),
        "model": model_spec(ref),
    }
    if min_replicas is not None:
        predictor["minReplicas"] = min_replicas
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {
                **PART_OF,
                MODEL_LABEL: ref.name,
                VERSION_LABEL: str(ref.version),
                ROLE_LABEL: role,
            },
            "annotations": annotations,
        },
        "spec": {"predictor": predictor},
    }


def _versions_patch(stable: ModelRef | None, candidate: ModelRef | None, mirror=False) -> dict:
    """The metadata part of a patch: which versions serve (None values delete, merge patch)."""
    meta: dict = {
        "annotations": {
            CANDIDATE_ANNOTATION: ref_json(candidate) if candidate else None,
            MIRROR_ANNOTATION: "true" if candidate and mirror else None,
        }
    }
    if stable is not None:
        meta["annotations"][STABLE_ANNOTATION] = ref_json(stable)
        meta["labels"] = {VERSION_LABEL: str(stable.version)}
    return {"metadata": meta}


def start_canary_patch(
    mode: str, stable: ModelRef, candidate: ModelRef, percent: int, service_account: str
) -> dict:
    """JSON merge patch: ``candidate`` beside ``stable`` with ``percent`` of the traffic.

    Knative: the candidate becomes ``spec.predictor`` (a new revision) with
    ``canaryTrafficPercent``; the last rolled-out revision keeps the rest. Standard: one
    ``spec.canary[]`` entry; ``spec.predictor`` is untouched."""
    check_mode(mode)
    check_percent(percent)
    patch = _versions_patch(None, candidate)
    if mode == "knative":
        patch["spec"] = {
            "predictor": {
                "canaryTrafficPercent": percent,
                "labels": predictor_labels(candidate),
                "model": model_spec(candidate),
            }
        }
    else:
        patch["spec"] = {"canary": [canary_entry(candidate, percent, service_account)]}
    return patch


def canary_entry(candidate: ModelRef, percent: int, service_account: str) -> dict:
    """One Standard-mode ``spec.canary[]`` entry (kserve PR 5672's CanarySpec)."""
    return {
        "trafficPercent": check_percent(percent),
        "predictor": {
            "name": canary_name(candidate),
            "serviceAccountName": service_account,
            "labels": predictor_labels(candidate),
            "model": {"name": CONTAINER, **model_spec(candidate)},
        },
    }


def set_percent_patch(mode: str, candidate: ModelRef, percent: int, service_account: str) -> dict:
    """JSON merge patch: the candidate's share. Lists are replaced whole in a merge patch,
    so the Standard mode sends the whole ``spec.canary``."""
    check_percent(percent)
    if check_mode(mode) == "knative":
        return {"spec": {"predictor": {"canaryTrafficPercent": percent}}}
    return {"spec": {"canary": [canary_entry(candidate, percent, service_account)]}}


def promote_patch(mode: str, candidate: ModelRef) -> dict:
    """JSON merge patch: the candidate is the stable version at 100%.

    Knative: ``canaryTrafficPercent`` removed (the newest revision takes 100% and becomes
    the last rolled-out one). Standard: the stable predictor retargeted to the canary's
    name and model (its Deployment keeps running: no restart), the entry removed."""
    patch = _versions_patch(candidate, None)
    if check_mode(mode) == "knative":
        patch["spec"] = {"predictor": {"canaryTrafficPercent": None}}
    else:
        patch["spec"] = {
            "canary": None,
            "predictor": {
                "name": canary_name(candidate),
                "labels": predictor_labels(candidate),
                "model": model_spec(candidate),
            },
        }
    return patch


def rollback_patch(mode: str, stable: ModelRef) -> dict:
    """JSON merge patch: the candidate is removed, the stable version takes 100%.

    Knative: ``canaryTrafficPercent: 0`` sends everything to the last rolled-out revision;
    the stable model goes back into ``spec.predictor`` too (a new revision at 0%, the
    same model), so removing the field later, by hand or by a promote, cannot roll the
    failed model out. Standard: the canary entry removed (KServe deletes its Deployment)."""
    patch = _versions_patch(stable, None)
    if check_mode(mode) == "knative":
        patch["spec"] = {
            "predictor": {
                "canaryTrafficPercent": 0,
                "labels": predictor_labels(stable),
                "model": model_spec(stable),
            }
        }
    else:
        patch["spec"] = {"canary": None}
    return patch


def shadow_name(name: str) -> str:
    return f"{name}{SHADOW_SUFFIX}"


def predictor_host(name: str, namespace: str) -> str:
    """The in-cluster host of an InferenceService's predictor Service."""
    return f"{name}-predictor.{namespace}.svc.cluster.local"


def build_mirror(name: str, namespace: str, percent: float = 100.0) -> dict:
    """The Istio VirtualService that mirrors the stable predictor's traffic to the shadow.

    It applies to requests sent through the mesh (``gateways: [mesh]``) to the stable
    predictor's Service: every one is routed to the stable predictor as before, and
    ``percent`` of them are also copied to ``<name>-shadow``'s predictor; the sidecar drops
    the copies' answers. Not schema-checked here (no Istio schema); ``networking.istio.io
    /v1beta1`` fields: ``hosts``, ``gateways``, ``http[].route[].destination.host``,
    ``http[].mirror.host``, ``http[].mirrorPercentage.value``."""
    if not 0 < percent <= 100:
        raise DeploymentError(f"mirror percentage {percent!r}: above 0, at most 100")
    host = predictor_host(name, namespace)
    return {
        "apiVersion": f"{ISTIO_GROUP}/{ISTIO_VERSION}",
        "kind": "VirtualService",
        "metadata": {
            "name": shadow_name(name),
            "namespace": namespace,
            "labels": {**PART_OF, MODEL_LABEL: name, ROLE_LABEL: "shadow"},
        },
        "spec": {
            "hosts": [host],
            "gateways": ["mesh"],
            "http": [
                {
                    "route": [{"destination": {"host": host}, "weight": 100}],
                    "mirror": {"host": predictor_host(shadow_name(name), namespace)},
                    "mirrorPercentage": {"value": float(percent)},
                }
            ],
        },
    }


# ----------------------------------------------------------------------------- reading


def merge_patch(target, patch):
    """RFC 7386 JSON merge patch (what the kubernetes client sends for custom objects:
    ``application/merge-patch+json``): objects merge key by key, ``None`` deletes a key,
    anything else (lists included) replaces. Returns a new value."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def mode_of(obj: Mapping) -> str:
    """The object's deployment mode (``knative`` or ``standard``)."""
    value = (obj.get("metadata", {}).get("annotations") or {}).get(DEPLOYMENT_MODE, "")
    if value not in MODE_VALUES:
        raise DeploymentError(
            f"InferenceService {obj.get('metadata', {}).get('name')}: annotation "
            f"{DEPLOYMENT_MODE}={value!r} (Knative or Standard expected; KServe's cluster "
            "default is not assumed)"
        )
    return MODE_VALUES[value]


def condition(obj: Mapping, kind: str) -> dict | None:
    for entry in (obj.get("status") or {}).get("conditions") or []:
        if entry.get("type") == kind:
            return entry
    return None


def _describe(name: str, kind: str, cond: dict | None) -> str:
    if cond is None:
        return f"{name}: no {kind} condition yet"
    reason = cond.get("reason") or "no reason given"
    message = cond.get("message") or ""
    return f"{name}: {kind} is {cond.get('status')} ({reason}{': ' + message if message else ''})"


def readiness(obj: Mapping | None, *, canary: bool) -> tuple[bool, str]:
    """(ready, detail): ``Ready`` True for the current generation, and ``CanaryReady`` True
    when a Standard-mode canary entry is there."""
    if obj is None:
        return False, "not found"
    name = obj["metadata"]["name"]
    status = obj.get("status") or {}
    generation = obj["metadata"].get("generation")
    if generation is not None and status.get("observedGeneration", 0) < generation:
        return False, (
            f"{name}: the controller has not seen generation {generation} yet "
            f"(observed {status.get('observedGeneration', 0)})"
        )
    kinds = ["Ready"] + (["CanaryReady"] if canary else [])
    for kind in kinds:
        cond = condition(obj, kind)
        if cond is None or cond.get("status") != "True":
            return False, _describe(name, kind, cond)
    return True, ""


def tagged_url(obj: Mapping | None, tag: str) -> str | None:
    """The URL of the predictor's traffic entry tagged ``tag`` (Knative tag routing)."""
    if obj is None:
        return None
    predictor = ((obj.get("status") or {}).get("components") or {}).get("predictor") or {}
    for entry in predictor.get("traffic") or []:
        if entry.get("tag") == tag and entry.get("url"):
            return entry["url"]
    return None


# ----------------------------------------------------------------------------- the API


NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


def cluster_api(kubeconfig: str | None = None, context: str | None = None):
    """A ``kubernetes.client.CustomObjectsApi``: the pod's service account in a cluster (when
    neither ``kubeconfig`` nor ``context`` is given), else the kube config (``kubeconfig``,
    default ``$KUBECONFIG`` or ``~/.kube/config``, and its ``context``). Raises
    :class:`DeploymentError` naming both when neither is there.

    Every request has the ``kubernetes`` timeouts and retries of :mod:`components.lib.network`
    (``LOOPLINE_KUBERNETES_*``; defaults connect 10 s, read 30 s, 3 retries)."""
    from kubernetes import client, config

    from components.lib import network

    if kubeconfig is None and context is None:
        try:
            config.load_incluster_config()
            return client.CustomObjectsApi(network.kubernetes_api_client())
        except config.ConfigException as exc:
            in_cluster = str(exc)
    else:
        in_cluster = "not tried (a kube config was named)"
    try:
        config.load_kube_config(config_file=kubeconfig, context=context)
    except (config.ConfigException, OSError) as exc:
        raise DeploymentError(
            f"no Kubernetes API configuration: in-cluster: {in_cluster}; kube config "
            f"{kubeconfig or '(default)'}: {exc}"
        ) from exc
    return client.CustomObjectsApi(network.kubernetes_api_client())


def cluster_deployment(
    name: str, namespace: str, mode: str, service_account: str, api=None, **kw
) -> KServeDeployment:
    """A :class:`KServeDeployment` over ``api``, else the cluster's (:func:`cluster_api`)."""
    return KServeDeployment(api or cluster_api(), name, namespace, mode, service_account, **kw)


def pod_namespace(namespace: str = "") -> str:
    """``namespace``, or the pod's own (its service account's mounted namespace file)."""
    if namespace:
        return namespace
    try:
        with open(NAMESPACE_FILE) as fh:
            return fh.read().strip()
    except OSError as exc:
        raise DeploymentError(
            f"no namespace given and none mounted at {NAMESPACE_FILE} (not in a pod?)"
        ) from exc


# ----------------------------------------------------------------------------- the Deployment


class KServeDeployment:
    """The rollout's :class:`~components.lib.deployment.Deployment` over one InferenceService.

    Args:
        api: A ``kubernetes.client.CustomObjectsApi`` (or anything with its
            get/create/patch/delete_namespaced_custom_object); patches are JSON merge
            patches, which is what that client sends for custom objects.
        name: The InferenceService (the registry model's name).
        namespace: Its namespace.
        mode: ``knative`` or ``standard`` for a new object; an existing one keeps its own
            (KServe refuses a change), and a different ``mode`` here is an error.
        service_account: The predictors' account (its Secret: the storage initializer's S3
            credentials).
        validate: Called with every InferenceService as it will be stored (a create's body,
            or the object with a patch applied) before it is sent; tests pass
            ``tests.schemas.validate_kserve``.
        tag_routing: Knative: ``latest-`` / ``prev-`` URLs (candidate_url needs them).
        poll: Seconds between reads in :meth:`wait_ready`.
    """

    def __init__(
        self,
        api,
        name: str,
        namespace: str,
        mode: str = "knative",
        service_account: str = SERVICE_ACCOUNT,
        *,
        validate: Callable[[dict], None] | None = None,
        tag_routing: bool = True,
        poll: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.api = api
        self.name = check_name(name)
        self.namespace = namespace
        self.mode = check_mode(mode)
        self.service_account = service_account
        self.validate = validate or (lambda obj: None)
        self.tag_routing = tag_routing
        self.poll = poll
        self.sleep = sleep
        self.clock = clock

    # -- the API boundary

    def _where(self, name: str | None = None) -> str:
        return f"InferenceService {self.namespace}/{name or self.name}"

    def _read(self, name: str | None = None, *, group=GROUP, version=VERSION, plural=PLURAL):
        from kubernetes.client.exceptions import ApiException

        try:
            return self.api.get_namespaced_custom_object(
                group, version, self.namespace, plural, name or self.name
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise self._error(exc, "read", name) from exc

    def _error(self, exc, what: str, name: str | None = None) -> DeploymentError:
        body = getattr(exc, "body", None) or ""
        with contextlib.suppress(ValueError, AttributeError):
            body = json.loads(body).get("message", body)
        return DeploymentError(
            f"{self._where(name)}: {what} refused: HTTP {exc.status} {exc.reason or ''} {body}".strip()
        )

    def _create(self, body: dict, *, group=GROUP, version=VERSION, plural=PLURAL) -> dict:
        from kubernetes.client.exceptions import ApiException

        if group == GROUP:
            self.validate(body)
        try:
            return self.api.create_namespaced_custom_object(
                group, version, self.namespace, plural, body
            )
        except ApiException as exc:
            raise self._error(exc, "create", body["metadata"]["name"]) from exc

    def _patch(self, current: dict, patch: dict, name: str | None = None) -> dict:
        from kubernetes.client.exceptions import ApiException

        stored = merge_patch(current, patch)
        self.validate({k: v for k, v in stored.items() if k != "status"})
        try:
            return self.api.patch_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, name or self.name, patch
            )
        except ApiException as exc:
            raise self._error(exc, "patch", name) from exc

    def _delete(self, name: str, *, group=GROUP, version=VERSION, plural=PLURAL) -> None:
        from kubernetes.client.exceptions import ApiException

        try:
            self.api.delete_namespaced_custom_object(group, version, self.namespace, plural, name)
        except ApiException as exc:
            if exc.status != 404:
                raise self._error(exc, "delete", name) from exc

    # -- reading the state

    def _object(self) -> dict:
        obj = self._read()
        if obj is None:
            raise DeploymentError(f"{self._where()}: not found (nothing deployed yet)")
        mode = mode_of(obj)
        if mode != self.mode:
            raise DeploymentError(
                f"{self._where()}: runs in {MODES[mode]} mode, not {MODES[self.mode]} "
                "(KServe does not change the mode of an existing InferenceService)"
            )
        return obj

    @staticmethod
    def _refs(obj: dict) -> tuple[ModelRef | None, ModelRef | None, bool]:
        annotations = obj["metadata"].get("annotations") or {}
        return (
            ref_from_json(annotations.get(STABLE_ANNOTATION)),
            ref_from_json(annotations.get(CANDIDATE_ANNOTATION)),
            annotations.get(MIRROR_ANNOTATION) == "true",
        )

    def _percent(self, obj: dict) -> int:
        spec = obj.get("spec") or {}
        if self.mode == "knative":
            value = spec.get("predictor", {}).get("canaryTrafficPercent")
            return 100 if value is None else int(value)
        entries = spec.get("canary") or []
        return int(entries[0]["trafficPercent"]) if entries else 0

    def get(self) -> Traffic | None:
        obj = self._read()
        if obj is None:
            return None
        if mode_of(obj) != self.mode:
            self._object()  # raises, naming both modes
        stable, candidate, mirror = self._refs(obj)
        annotations = {
            k: v
            for k, v in (obj["metadata"].get("annotations") or {}).items()
            if k.startswith(ANNOTATION_PREFIX)
        }
        canary = self.mode == "standard" and bool((obj.get("spec") or {}).get("canary"))
        ready, detail = readiness(obj, canary=canary)
        percent = 0
        if candidate is not None and not mirror:
            percent = self._percent(obj)
        if candidate is not None and mirror and ready:
            shadow = self._read(shadow_name(self.name))
            ready, detail = readiness(shadow, canary=False)
            if shadow is None:
                detail = f"{self._where(shadow_name(self.name))}: not found"
        return Traffic(
            stable=stable,
            candidate=candidate,
            candidate_percent=percent,
            mirror=mirror and candidate is not None,
            ready=ready,
            annotations=annotations,
            detail=detail,
        )

    # -- the steps

    def deploy(self, stable: ModelRef) -> None:
        obj = self._read()
        if obj is None:
            body = build(
                stable,
                self.namespace,
                self.mode,
                self.service_account,
                name=self.name,
                tag_routing=self.tag_routing,
            )
            self._create(body)
            log.info(
                "%s: created, %s version %s at 100%%", self._where(), stable.name, stable.version
            )
            return
        current, candidate, _ = self._refs(self._object())
        if current == stable:  # a repeated first deploy (a candidate may run beside it)
            log.info("%s: already serves version %s", self._where(), stable.version)
            return
        raise DeploymentError(
            f"{self._where()}: already serves version {current.version if current else '?'}"
            f"{f' with candidate {candidate.version}' if candidate else ''}; a first deploy "
            f"of version {stable.version} would replace it: roll it out as a candidate"
        )

    def start_candidate(self, candidate: ModelRef, percent: int, mirror: bool = False) -> None:
        check_percent(percent)
        obj = self._object()
        stable, current, current_mirror = self._refs(obj)
        if stable is None:
            raise DeploymentError(f"{self._where()}: no stable version recorded")
        if candidate == stable:
            raise DeploymentError(
                f"{self._where()}: version {candidate.version} is already the stable version"
            )
        if current is not None and (current != candidate or current_mirror != mirror):
            raise DeploymentError(
                f"{self._where()}: candidate version {current.version} is already running "
                f"({'shadow' if current_mirror else 'live'}); promote or roll it back first"
            )
        if mirror:
            if percent:
                raise DeploymentError(
                    f"{self._where()}: a shadow candidate gets mirrored traffic only (percent 0)"
                )
            self._start_shadow(obj, stable, candidate)
            return
        if current == candidate:
            self.set_percent(percent)  # a resumed rollout repeats its step
            return
        self._patch(
            obj, start_canary_patch(self.mode, stable, candidate, percent, self.service_account)
        )
        log.info("%s: candidate version %s at %d%%", self._where(), candidate.version, percent)

    def _start_shadow(self, obj: dict, stable: ModelRef, candidate: ModelRef) -> None:
        shadow = shadow_name(self.name)
        if self._read(shadow) is None:
            body = build(
                candidate,
                self.namespace,
                self.mode,
                self.service_account,
                name=shadow,
                tag_routing=False,
                role="shadow",
            )
            self._create(body)
        if (
            self._read(shadow, group=ISTIO_GROUP, version=ISTIO_VERSION, plural=VIRTUAL_SERVICES)
            is None
        ):
            self._create(
                build_mirror(self.name, self.namespace),
                group=ISTIO_GROUP,
                version=ISTIO_VERSION,
                plural=VIRTUAL_SERVICES,
            )
        if self._refs(obj)[1] is None:
            self._patch(obj, _versions_patch(None, candidate, mirror=True))
        log.info(
            "%s: shadow version %s gets a copy of every request", self._where(), candidate.version
        )

    def _stop_shadow(self) -> None:
        shadow = shadow_name(self.name)
        self._delete(shadow, group=ISTIO_GROUP, version=ISTIO_VERSION, plural=VIRTUAL_SERVICES)
        self._delete(shadow)

    def set_percent(self, percent: int) -> None:
        check_percent(percent)
        obj = self._object()
        _, candidate, mirror = self._refs(obj)
        if candidate is None:
            raise DeploymentError(f"{self._where()}: no candidate to give {percent}% to")
        if mirror:
            if percent:
                raise DeploymentError(
                    f"{self._where()}: version {candidate.version} is a shadow (mirrored "
                    "traffic only); promote it or roll it back"
                )
            return
        if self._percent(obj) == percent:
            return
        self._patch(obj, set_percent_patch(self.mode, candidate, percent, self.service_account))
        log.info("%s: candidate version %s at %d%%", self._where(), candidate.version, percent)

    def promote(self) -> None:
        obj = self._object()
        _, candidate, mirror = self._refs(obj)
        if candidate is None:
            log.info("%s: no candidate to promote (already promoted?)", self._where())
            return
        if mirror:
            # The shadow's model goes into the stable object as a plain rollout (100%).
            patch = _versions_patch(candidate, None)
            predictor = {
                "labels": predictor_labels(candidate),
                "model": model_spec(candidate),
            }
            if self.mode == "knative":
                predictor["canaryTrafficPercent"] = None
            patch["spec"] = {"predictor": predictor}
            self._patch(obj, patch)
            self._stop_shadow()
        else:
            self._patch(obj, promote_patch(self.mode, candidate))
        log.info("%s: version %s promoted to 100%%", self._where(), candidate.version)

    def rollback(self) -> None:
        obj = self._object()
        stable, candidate, mirror = self._refs(obj)
        if candidate is None:
            log.info("%s: no candidate to roll back", self._where())
            return
        if mirror:
            self._stop_shadow()
            self._patch(obj, _versions_patch(stable, None))
        else:
            self._patch(obj, rollback_patch(self.mode, stable))
        log.info("%s: candidate version %s rolled back", self._where(), candidate.version)

    def annotate(self, values: Mapping[str, str]) -> None:
        bad = [k for k in values if not k.startswith(ANNOTATION_PREFIX)]
        if bad:
            raise DeploymentError(
                f"{self._where()}: rollout annotations start with {ANNOTATION_PREFIX!r}: {bad}"
            )
        obj = self._object()
        current = obj["metadata"].get("annotations") or {}
        changes = {
            k: (v if v != "" else None)
            for k, v in values.items()
            if current.get(k) != (v if v != "" else None)
        }
        if changes:
            self._patch(obj, {"metadata": {"annotations": changes}})

    def wait_ready(self, timeout: float) -> Traffic:
        began = self.clock()
        while True:
            traffic = self.get()
            if traffic is not None and traffic.ready:
                return traffic
            if self.clock() - began >= timeout:
                detail = traffic.detail if traffic is not None else f"{self._where()}: not found"
                raise DeploymentError(f"not ready after {timeout:.0f} s: {detail}")
            self.sleep(self.poll)

    # -- URLs

    def candidate_url(self) -> str | None:
        obj = self._read()
        if obj is None:
            return None
        _, candidate, mirror = self._refs(obj)
        if candidate is None:
            return None
        if mirror:
            shadow = self._read(shadow_name(self.name))
            return (shadow or {}).get("status", {}).get("url")
        if self.mode == "knative":
            return tagged_url(obj, "latest")
        # Standard: each canary has its own Service {isvc}-{name}-predictor (kserve PR 5672).
        return f"http://{self.name}-{canary_name(candidate)}-predictor.{self.namespace}.svc.cluster.local"

    def stable_url(self) -> str | None:
        obj = self._read()
        if obj is None:
            return None
        if self.mode == "knative" and self._refs(obj)[1] is not None:
            return tagged_url(obj, "prev")
        predictor = ((obj.get("status") or {}).get("components") or {}).get("predictor") or {}
        return predictor.get("url") or (obj.get("status") or {}).get("url")
