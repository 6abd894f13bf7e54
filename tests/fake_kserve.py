"""An in-memory ``kubernetes.client.CustomObjectsApi`` with KServe's InferenceService controller.

No Kubernetes API server can run on these machines (../shared/ENVIRONMENT.md, "Kubernetes,
KServe, Katib..."), so the cluster is faked at the client's boundary. What it reproduces,
and from where:

The API server (Kubernetes API conventions, as the python client sees them):

* ``get`` / ``delete`` of a missing object: ``kubernetes.client.ApiException`` with status
  404 (reason ``Not Found``, a ``Status`` body); ``create`` of an existing name: 409
  (``AlreadyExists``); ``replace`` with a stale ``metadata.resourceVersion``: 409
  (``Conflict``).
* ``patch`` is a JSON merge patch (RFC 7386): kubernetes 30.1's
  ``CustomObjectsApi.patch_namespaced_custom_object`` always sends
  ``Content-Type: application/merge-patch+json`` (custom resources have no strategic merge).
  ``None`` deletes a key, lists are replaced whole.
* ``metadata.generation`` moves only when ``spec`` changes, ``resourceVersion`` on every
  write; ``status`` is a subresource, so writes to the main resource leave it alone.
* Objects of other groups (the Istio VirtualService of a shadow) are stored as they are.

KServe v0.20's controller and webhook, for serving.kserve.io InferenceServices (the facts
in ENVIRONMENT.md, from the KServe v0.20 controller source and kserve PR 5672):

* ``serving.kserve.io/deploymentMode`` (``Knative``/``Serverless``, ``Standard``/
  ``RawDeployment``) cannot change on update (webhook: 400).
* Knative mode: every change of ``spec.predictor`` other than ``canaryTrafficPercent`` makes
  a new revision ``<name>-predictor-0000N``. The first revision gets 100% whatever the
  percent says; with ``canaryTrafficPercent: p`` the newest revision gets p (tag ``latest``)
  and ``status.components.predictor.latestRolledoutRevision`` (tag ``prev``) the rest;
  without it (or at 100) the newest takes 100% once ready, and becomes the last rolled-out
  revision (the previous one moves to ``previousRolledoutRevision``). Until the newest
  revision is ready a plain rollout keeps 100% on the rolled-out one. With
  ``serving.kserve.io/enable-tag-routing: "true"`` the tagged entries carry
  ``url: http://<tag>-<name>-predictor.<ns>.example.com``. ``spec.canary`` is refused in
  this mode (webhook: Standard mode only).
* Standard mode: the stable predictor's Deployment is ``<name>-predictor`` (or
  ``<name>-<predictor.name>-predictor``) and each ``spec.canary[]`` entry's is
  ``<name>-<entry name>-predictor``; names unique, percentages summing to at most 100
  (webhook: 400). A Deployment whose model spec did not change keeps running: promotion
  (the stable predictor renamed to a canary with the same model) restarts nothing.
  ``status.canaryStatuses`` lists each entry (name, ready, trafficPercent) and the
  ``CanaryReady`` condition sums them up.
* Conditions: ``Ready`` (and ``PredictorReady``) is ``Unknown`` until the newest revision
  (Knative) or every Deployment (Standard) has been read ``ready_after`` times by ``get``
  (the controller's delay), then ``True``; ``observedGeneration`` follows ``generation``.
* :meth:`FakeKServe.fail` makes every revision / Deployment whose model matches fail:
  ``Ready`` (or ``CanaryReady`` for a Standard canary) ``False`` with the given reason and
  message, as KServe reports a revision whose container never becomes ready (the Loopline
  server stays not ready on a model that does not verify).

Not reproduced: scale-to-zero, autoscaling, pods, networking, the Istio VirtualService's
effect (only stored), finalizers, watches.
"""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import Callable

from kubernetes.client.exceptions import ApiException

from components.lib.inferenceservice import (
    DEPLOYMENT_MODE,
    GROUP,
    MODE_VALUES,
    PLURAL,
    TAG_ROUTING,
    merge_patch,
)

DOMAIN = "example.com"


def api_error(status: int, reason: str, message: str, kind: str) -> ApiException:
    exc = ApiException(status=status, reason=reason)
    exc.body = json.dumps(
        {
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "message": message,
            "reason": kind,
            "code": status,
        }
    )
    return exc


class _Unit:
    """A Knative revision or a Standard-mode Deployment."""

    def __init__(self, name: str, model: dict, countdown: int, failure):
        self.name = name
        self.model = model
        self.countdown = countdown
        self.failure = failure  # (reason, message) or None

    @property
    def ready(self) -> bool:
        return self.failure is None and self.countdown <= 0

    def version(self) -> str:
        for arg in self.model.get("model", {}).get("args", []):
            if arg.startswith("--model_version="):
                return arg.split("=", 1)[1]
        return ""


class FakeKServe:
    """``CustomObjectsApi``-like: get / create / patch / replace / delete / list
    ``_namespaced_custom_object``. ``ready_after``: ``get`` calls before a new revision or
    Deployment is ready."""

    def __init__(self, ready_after: int = 1):
        self.ready_after = ready_after
        self.objects: dict[tuple, dict] = {}
        self.calls: list[tuple[str, str]] = []  # (verb, name), for idempotence checks
        self._state: dict[tuple, dict] = {}
        self._versions = itertools.count(1)
        self._failures: list[tuple[Callable[[dict], bool], str, str]] = []

    # -- test controls

    def fail(self, matches: Callable[[dict], bool], reason: str, message: str) -> None:
        """Every revision / Deployment created from now on whose ``model`` spec ``matches``
        never becomes ready: its condition is False with ``reason`` and ``message``."""
        self._failures.append((matches, reason, message))

    def writes(self) -> list[tuple[str, str]]:
        return [c for c in self.calls if c[0] != "get"]

    def served(self, namespace: str, name: str) -> dict[str, int]:
        """Model version -> percent of live traffic, as the controller routes it now."""
        key = (GROUP, namespace, PLURAL, name)
        state = self._state[key]
        out: dict[str, int] = {}
        if state["mode"] == "knative":
            units = {u.name: u for u in state["revisions"]}
            for entry in self.objects[key]["status"]["components"]["predictor"]["traffic"]:
                version = units[entry["revisionName"]].version()
                out[version] = out.get(version, 0) + entry["percent"]
        else:
            spec = self.objects[key]["spec"]
            canaries = spec.get("canary") or []
            stable = state["deployments"][_stable_deployment(name, spec)].version()
            out[stable] = 100 - sum(c["trafficPercent"] for c in canaries)
            for entry in canaries:
                unit = state["deployments"][f"{name}-{entry['predictor']['name']}-predictor"]
                out[unit.version()] = out.get(unit.version(), 0) + entry["trafficPercent"]
        return {k: v for k, v in out.items() if v}

    def revisions(self, namespace: str, name: str) -> list[str]:
        state = self._state[(GROUP, namespace, PLURAL, name)]
        if state["mode"] == "knative":
            return [u.name for u in state["revisions"]]
        return sorted(state["deployments"])

    # -- the API

    def _key(self, group, namespace, plural, name):
        return (group, namespace, plural, name)

    def _missing(self, plural, name):
        return api_error(404, "Not Found", f'{plural} "{name}" not found', "NotFound")

    def get_namespaced_custom_object(self, group, version, namespace, plural, name, **_):
        self.calls.append(("get", name))
        key = self._key(group, namespace, plural, name)
        if key not in self.objects:
            raise self._missing(plural, name)
        if key in self._state:
            for unit in self._units(key):
                unit.countdown -= 1
            self._reconcile(key)
        return copy.deepcopy(self.objects[key])

    def list_namespaced_custom_object(self, group, version, namespace, plural, **_):
        items = [
            copy.deepcopy(o)
            for (g, ns, p, _n), o in sorted(self.objects.items())
            if (g, ns, p) == (group, namespace, plural)
        ]
        return {"apiVersion": f"{group}/{version}", "kind": "List", "items": items}

    def create_namespaced_custom_object(self, group, version, namespace, plural, body, **_):
        name = body.get("metadata", {}).get("name")
        self.calls.append(("create", name))
        if not name:
            raise api_error(422, "Unprocessable Entity", "metadata.name: Required value", "Invalid")
        key = self._key(group, namespace, plural, name)
        if key in self.objects:
            raise api_error(
                409, "Conflict", f'{plural}.{group} "{name}" already exists', "AlreadyExists"
            )
        obj = copy.deepcopy(body)
        obj["metadata"].update(
            {
                "namespace": namespace,
                "uid": f"uid-{name}",
                "generation": 1,
                "resourceVersion": str(next(self._versions)),
                "creationTimestamp": "2026-01-01T00:00:00Z",
            }
        )
        obj.pop("status", None)
        if group == GROUP and plural == PLURAL:
            self._admit(None, obj)
            self.objects[key] = obj
            self._state[key] = {"mode": MODE_VALUES[obj["metadata"]["annotations"][DEPLOYMENT_MODE]],
                                "revisions": [], "deployments": {}}  # fmt: skip
            self._reconcile(key, spec_changed=True)
        else:
            self.objects[key] = obj
        return copy.deepcopy(self.objects[key])

    def patch_namespaced_custom_object(self, group, version, namespace, plural, name, body, **_):
        self.calls.append(("patch", name))
        if not isinstance(body, dict):
            raise api_error(400, "Bad Request", "a merge patch body is a JSON object", "BadRequest")
        key = self._key(group, namespace, plural, name)
        if key not in self.objects:
            raise self._missing(plural, name)
        old = self.objects[key]
        new = merge_patch(old, {k: v for k, v in body.items() if k != "status"})
        return self._write(key, old, new)

    def replace_namespaced_custom_object(self, group, version, namespace, plural, name, body, **_):
        self.calls.append(("replace", name))
        key = self._key(group, namespace, plural, name)
        if key not in self.objects:
            raise self._missing(plural, name)
        old = self.objects[key]
        sent = body.get("metadata", {}).get("resourceVersion")
        if sent and sent != old["metadata"]["resourceVersion"]:
            raise api_error(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {plural}.{group} "{name}": the object has '
                "been modified; please apply your changes to the latest version and try again",
                "Conflict",
            )
        new = copy.deepcopy(body)
        new["status"] = copy.deepcopy(old.get("status", {}))
        for field in ("uid", "creationTimestamp", "generation", "namespace"):
            new["metadata"][field] = old["metadata"][field]
        return self._write(key, old, new)

    def delete_namespaced_custom_object(self, group, version, namespace, plural, name, **_):
        self.calls.append(("delete", name))
        key = self._key(group, namespace, plural, name)
        if key not in self.objects:
            raise self._missing(plural, name)
        del self.objects[key]
        self._state.pop(key, None)
        return {"kind": "Status", "status": "Success", "details": {"name": name}}

    def _write(self, key, old, new):
        new["status"] = copy.deepcopy(old.get("status", {}))
        if not new["status"]:
            new.pop("status")
        spec_changed = new.get("spec") != old.get("spec")
        if key in self._state:
            self._admit(old, new)
        new["metadata"]["generation"] = old["metadata"]["generation"] + (1 if spec_changed else 0)
        new["metadata"]["resourceVersion"] = str(next(self._versions))
        self.objects[key] = new
        if key in self._state:
            self._reconcile(key, spec_changed=spec_changed)
        return copy.deepcopy(new)

    # -- KServe's webhook

    def _deny(self, name: str, why: str) -> ApiException:
        return api_error(
            400,
            "Bad Request",
            f'admission webhook "inferenceservice.kserve-webhook-server.validator" denied '
            f"the request: {name}: {why}",
            "BadRequest",
        )

    def _admit(self, old: dict | None, new: dict) -> None:
        name = new["metadata"]["name"]
        mode = (new["metadata"].get("annotations") or {}).get(DEPLOYMENT_MODE)
        if mode not in MODE_VALUES:
            raise self._deny(name, f"unknown deploymentMode {mode!r}")
        if old is not None:
            before = old["metadata"]["annotations"][DEPLOYMENT_MODE]
            if before != mode:
                raise self._deny(
                    name,
                    f"update rejected: deploymentMode cannot be changed from '{before}' to '{mode}'",
                )
        canaries = (new.get("spec") or {}).get("canary") or []
        if canaries and MODE_VALUES[mode] != "standard":
            raise self._deny(name, "spec.canary is supported only in Standard deployment mode")
        names = [c["predictor"]["name"] for c in canaries]
        if len(set(names)) != len(names):
            raise self._deny(name, f"canary names must be unique: {names}")
        if sum(c["trafficPercent"] for c in canaries) > 100:
            raise self._deny(name, "the canaries' trafficPercent sum to more than 100")

    # -- KServe's controller

    def _units(self, key) -> list[_Unit]:
        state = self._state[key]
        return (
            state["revisions"]
            if state["mode"] == "knative"
            else list(state["deployments"].values())
        )

    def _new_unit(self, name: str, model: dict) -> _Unit:
        failure = next(
            ((reason, message) for match, reason, message in self._failures if match(model)),
            None,
        )
        return _Unit(name, copy.deepcopy(model), self.ready_after, failure)

    def _reconcile(self, key, spec_changed: bool = False) -> None:
        obj = self.objects[key]
        state = self._state[key]
        if state["mode"] == "knative":
            self._reconcile_knative(obj, state, spec_changed)
        else:
            self._reconcile_standard(obj, state)
        obj["status"]["observedGeneration"] = obj["metadata"]["generation"]

    def _reconcile_knative(self, obj: dict, state: dict, spec_changed: bool) -> None:
        name, namespace = obj["metadata"]["name"], obj["metadata"]["namespace"]
        predictor = {
            k: v for k, v in obj["spec"]["predictor"].items() if k != "canaryTrafficPercent"
        }
        revisions: list[_Unit] = state["revisions"]
        if not revisions or revisions[-1].model != predictor:
            revision = f"{name}-predictor-{len(revisions) + 1:05d}"
            revisions.append(self._new_unit(revision, predictor))
        latest = revisions[-1]
        percent = obj["spec"]["predictor"].get("canaryTrafficPercent")
        rolled = state.get("rolledout")
        rolls_out = rolled is None or percent is None or percent == 100
        if latest.ready and rolls_out and rolled != latest.name:
            state["previous"] = rolled
            state["rolledout"] = rolled = latest.name
        tags = (obj["metadata"].get("annotations") or {}).get(TAG_ROUTING) == "true"

        def entry(revision: str, pct: int, is_latest: bool, tag: str | None) -> dict:
            out = {"revisionName": revision, "percent": pct, "latestRevision": is_latest}
            if tag and (tags or tag == "prev"):
                out["tag"] = tag
            if tag and tags:
                out["url"] = f"http://{tag}-{name}-predictor.{namespace}.{DOMAIN}"
            return out

        if rolled is None or rolled == latest.name:
            traffic = [entry(latest.name, 100, True, "latest")]
        elif percent is None or percent == 100:  # a plain rollout, the newest not ready yet
            traffic = [entry(rolled, 100, True, "latest")]
        else:
            traffic = [entry(latest.name, percent, True, "latest")]
            traffic.append(entry(rolled, 100 - percent, False, "prev"))
        if latest.failure:
            ready = {"status": "False", "reason": latest.failure[0],
                     "message": f'Revision "{latest.name}" failed with message: {latest.failure[1]}.'}  # fmt: skip
        elif latest.ready:
            ready = {"status": "True"}
        else:
            ready = {"status": "Unknown", "reason": "RevisionMissing",
                     "message": f'Configuration "{name}-predictor" is waiting for a Revision to become ready.'}  # fmt: skip
        component = {
            "latestCreatedRevision": latest.name,
            "traffic": traffic,
            "url": f"http://{name}-predictor.{namespace}.{DOMAIN}",
        }
        ready_ones = [r.name for r in revisions if r.ready]
        if ready_ones:
            component["latestReadyRevision"] = ready_ones[-1]
        if rolled:
            component["latestRolledoutRevision"] = rolled
        if state.get("previous"):
            component["previousRolledoutRevision"] = state["previous"]
        obj["status"] = {
            "url": f"http://{name}.{namespace}.{DOMAIN}",
            "address": {"url": f"http://{name}.{namespace}.svc.cluster.local"},
            "deploymentMode": "Knative",
            "components": {"predictor": component},
            "conditions": [
                {"type": "PredictorReady", **ready},
                {"type": "Ready", **ready},
            ],
        }

    def _reconcile_standard(self, obj: dict, state: dict) -> None:
        name, namespace = obj["metadata"]["name"], obj["metadata"]["namespace"]
        spec = obj["spec"]
        wanted = {_stable_deployment(name, spec): _model_part(spec["predictor"])}
        for entry in spec.get("canary") or []:
            wanted[f"{name}-{entry['predictor']['name']}-predictor"] = _model_part(
                entry["predictor"]
            )
        deployments: dict[str, _Unit] = state["deployments"]
        for deployment, model in wanted.items():
            unit = deployments.get(deployment)
            if unit is None or unit.model != model:
                deployments[deployment] = self._new_unit(deployment, model)
        for orphan in set(deployments) - set(wanted):
            del deployments[orphan]

        def cond(kind: str, unit_names: list[str]) -> dict:
            for unit in (deployments[n] for n in unit_names):
                if unit.failure:
                    return {"type": kind, "status": "False", "reason": unit.failure[0],
                            "message": f"Deployment {unit.name}: {unit.failure[1]}"}  # fmt: skip
            for unit in (deployments[n] for n in unit_names):
                if not unit.ready:
                    return {"type": kind, "status": "Unknown", "reason": "MinimumReplicasUnavailable",
                            "message": f"Deployment {unit.name} does not have minimum availability."}  # fmt: skip
            return {"type": kind, "status": "True"}

        stable = _stable_deployment(name, spec)
        canaries = [f"{name}-{e['predictor']['name']}-predictor" for e in spec.get("canary") or []]
        ready = cond("Ready", [stable])
        status = {
            "url": f"http://{name}-{namespace}.{DOMAIN}",
            "address": {"url": f"http://{name}-predictor.{namespace}.svc.cluster.local"},
            "deploymentMode": "Standard",
            "components": {
                "predictor": {"url": f"http://{name}-predictor.{namespace}.svc.cluster.local"}
            },
            "conditions": [{**ready, "type": "PredictorReady"}, ready],
        }
        if spec.get("canary"):
            status["conditions"].append(cond("CanaryReady", canaries))
            status["canaryStatuses"] = [
                {
                    "name": e["predictor"]["name"],
                    "ready": deployments[d].ready,
                    "trafficPercent": e["trafficPercent"],
                }
                for e, d in zip(spec["canary"], canaries, strict=True)
            ]
        obj["status"] = status


def _stable_deployment(name: str, spec: dict) -> str:
    own = spec["predictor"].get("name")
    return f"{name}-{own}-predictor" if own else f"{name}-predictor"


def _model_part(predictor: dict) -> dict:
    """What makes a Standard-mode Deployment roll: its pod spec (the model, the account);
    not its name (promotion renames without a restart) and not its labels."""
    model = {k: v for k, v in predictor.get("model", {}).items() if k != "name"}
    return {"model": model, "serviceAccountName": predictor.get("serviceAccountName")}
