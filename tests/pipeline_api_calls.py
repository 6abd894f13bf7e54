"""Every Kubernetes API request Loopline's pipeline account makes, as data.

Plain Python (no third-party import): the main env's policy test
(tests/test_manifests_rbac.py) and the tuner env's Katib test
(components/tune/tests/test_tuner_rbac.py) both read it. Three checks keep it honest:

* CALL_SITES: a scan of components/ finds every Kubernetes client call by method name; a
  call site not listed here (or listed and gone) fails the scan test.
* KSERVE and KATIB: recorded from the code itself, KServeDeployment driven through every
  rollout step over the fake API (main env) and the Katib launcher through the real Katib
  SDK over a fake CustomObjectsApi (tuner env); the recorded set must equal these.
* The rendered Roles must allow each request (and the policy test shows what they refuse).

Requests are (apiGroup, resource, verb) as the RBAC authorizer sees them.
"""

from __future__ import annotations

# (file, client method) -> why. Every Kubernetes client call in components/, outside tests.
CALL_SITES = {
    (
        "components/lib/inferenceservice.py",
        "get_namespaced_custom_object",
    ): "KServeDeployment._read",
    (
        "components/lib/inferenceservice.py",
        "create_namespaced_custom_object",
    ): "KServeDeployment._create",
    (
        "components/lib/inferenceservice.py",
        "patch_namespaced_custom_object",
    ): "KServeDeployment._patch",
    (
        "components/lib/inferenceservice.py",
        "delete_namespaced_custom_object",
    ): "KServeDeployment._delete",
    ("components/tune/katib_launcher.py", "create_experiment"): "launch",
    ("components/tune/katib_launcher.py", "get_experiment"): "_wait",
    ("components/tune/katib_launcher.py", "get_optimal_hyperparameters"): "_wait",
    ("components/tune/katib_launcher.py", "delete_experiment"): "_delete",
}

# Call sites that do NOT run as the pipeline account: the operator's CLI (`loopline
# rollout ...`) uses the operator's own kube config. Its calls are the same
# KServeDeployment's, plus this read.
OPERATOR_CALL_SITES = {
    ("components/cli/rollout.py", "get_namespaced_custom_object"): "the operator's kube config",
    ("components/cli/cleanup.py", "list_namespaced_custom_object"): (
        "loopline cleanup -n: the InferenceServices' storage URIs, with the operator's kube config"
    ),
}

# push, rollout and settle (KServeDeployment, components/lib/inferenceservice.py)
KSERVE = {
    ("serving.kserve.io", "inferenceservices", "get"),
    ("serving.kserve.io", "inferenceservices", "create"),
    ("serving.kserve.io", "inferenceservices", "patch"),
    ("serving.kserve.io", "inferenceservices", "delete"),  # the shadow <model>-shadow
    ("networking.istio.io", "virtualservices", "get"),
    ("networking.istio.io", "virtualservices", "create"),
    ("networking.istio.io", "virtualservices", "delete"),
}

# tune_katib's launcher (components/tune/katib_launcher.py through KatibClient 0.19:
# create_experiment, get_experiment and get_optimal_hyperparameters (a get), delete_experiment)
KATIB = {
    ("kubeflow.org", "experiments", "create"),
    ("kubeflow.org", "experiments", "get"),
    ("kubeflow.org", "experiments", "delete"),
}

COMPONENTS = KSERVE | KATIB

# KFP v2's driver / launcher and Argo's executor, in the same pods, when a run runs as the
# pipeline account (kubeflow/pipelines backend/src/v2: config/env.go, objectstore/
# object_store.go, driver/k8s.go, component/launcher_v2.go; argo-workflows
# docs/workflow-rbac.md). (apiGroup, resource, verb, name or "" for any).
KFP_RUNTIME = {
    ("", "configmaps", "get", "kfp-launcher"),
    ("", "secrets", "get", "mlpipeline-minio-artifact"),
    ("", "pods", "get", ""),
    ("argoproj.io", "workflowtaskresults", "create", ""),
    ("argoproj.io", "workflowtaskresults", "patch", ""),
}

# The client verb for each CustomObjectsApi method (the HTTP verb's RBAC name).
CUSTOM_OBJECT_VERBS = {
    "get_namespaced_custom_object": "get",
    "list_namespaced_custom_object": "list",
    "create_namespaced_custom_object": "create",
    "patch_namespaced_custom_object": "patch",
    "replace_namespaced_custom_object": "update",
    "delete_namespaced_custom_object": "delete",
    "get_namespaced_custom_object_status": "get",
    "patch_namespaced_custom_object_status": "patch",
}


class RecordingApi:
    """Wraps a CustomObjectsApi-like object and records (group, plural, verb) of each call."""

    def __init__(self, api):
        self._api = api
        self.requests: set[tuple[str, str, str]] = set()
        self.namespaces: set[str] = set()

    def __getattr__(self, name):
        target = getattr(self._api, name)
        if name not in CUSTOM_OBJECT_VERBS:
            return target

        def call(group, version, namespace, plural, *args, **kwargs):
            self.requests.add((group, plural, CUSTOM_OBJECT_VERBS[name]))
            self.namespaces.add(namespace)
            return target(group, version, namespace, plural, *args, **kwargs)

        return call
