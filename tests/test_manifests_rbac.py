"""The pipeline account's permissions, as the RBAC authorizer would decide them.

Every overlay is rendered (`kubectl kustomize`) and its Roles and bindings are evaluated with
tests/rbac.py (Kubernetes RBAC semantics, offline). The account loopline-pipeline-runner
can make every request Loopline's components make (tests/pipeline_api_calls.py, derived
from the code below) and those of KFP's own launcher in the same pods, and nothing else:
not other Secrets, not RoleBindings, not pods/exec, not another namespace.
"""

from __future__ import annotations

import ast
import copy
import inspect
import re

import pytest
import yaml

from tests import pipeline_api_calls as calls
from tests import rbac
from tests.test_manifests import OVERLAYS, ROOT, render

RUNNER = "loopline-pipeline-runner"
OTHER_NAMESPACES = ("kubeflow", "default", "kube-system", "kubeflow-user-other")


def _namespace(overlay) -> str:
    return yaml.safe_load((overlay / "kustomization.yaml").read_text())["namespace"]


def _policy(overlay) -> tuple[rbac.Policy, str, str]:
    namespace = _namespace(overlay)
    return rbac.Policy(render(overlay)), rbac.service_account(namespace, RUNNER), namespace


def _requests(namespace: str, name: str = "bikeshare") -> list[rbac.Request]:
    out = [
        rbac.Request(verb, group, resource, namespace, name)
        for group, resource, verb in sorted(calls.COMPONENTS)
    ]
    out += [
        rbac.Request(verb, group, resource, namespace, rname or "some-pod")
        for group, resource, verb, rname in sorted(calls.KFP_RUNTIME)
    ]
    return out


# The requests the account must never be allowed, in its own namespace.
FORBIDDEN = [
    # other Secrets, or Secrets without a name (list / watch return them all)
    ("get", "", "secrets", "mlflow-postgres"),
    ("get", "", "secrets", "loopline-redis"),
    ("get", "", "secrets", "loopline-models-s3"),
    ("get", "", "secrets", "loopline-minio-admin"),
    ("list", "", "secrets", ""),
    ("watch", "", "secrets", ""),
    ("create", "", "secrets", ""),
    ("update", "", "secrets", "mlpipeline-minio-artifact"),
    ("patch", "", "secrets", "mlpipeline-minio-artifact"),
    ("delete", "", "secrets", "mlpipeline-minio-artifact"),
    # granting itself more
    ("create", "rbac.authorization.k8s.io", "rolebindings", ""),
    ("create", "rbac.authorization.k8s.io", "roles", ""),
    ("patch", "rbac.authorization.k8s.io", "roles", "loopline-pipeline-runner"),
    ("escalate", "rbac.authorization.k8s.io", "roles", "loopline-pipeline-runner"),
    ("bind", "rbac.authorization.k8s.io", "clusterroles", "cluster-admin"),
    ("impersonate", "", "serviceaccounts", "default-editor"),
    ("create", "", "serviceaccounts/token", "default-editor"),
    # into other pods (kubectl exec / attach / port-forward: create, or get over websockets)
    ("create", "", "pods/exec", "mlflow-0"),
    ("get", "", "pods/exec", "mlflow-0"),
    ("create", "", "pods/attach", "mlflow-0"),
    ("create", "", "pods/portforward", "mlflow-postgres-0"),
    ("create", "", "pods", ""),
    ("delete", "", "pods", "mlflow-0"),
    ("list", "", "pods", ""),
    # other workloads and what they mount
    ("create", "apps", "deployments", ""),
    ("patch", "apps", "deployments", "mlflow"),
    ("create", "batch", "jobs", ""),
    ("get", "", "configmaps", "loopline-feature-store"),
    ("list", "", "configmaps", ""),
    # Loopline's own kinds, beyond the calls it makes
    ("list", "serving.kserve.io", "inferenceservices", ""),
    ("update", "serving.kserve.io", "inferenceservices", "bikeshare"),
    ("patch", "serving.kserve.io", "inferenceservices/status", "bikeshare"),
    ("create", "serving.kserve.io", "servingruntimes", ""),
    ("patch", "serving.kserve.io", "servingruntimes", "loopline-serving"),
    ("patch", "kubeflow.org", "experiments", "loopline-tune-1"),
    ("list", "kubeflow.org", "trials", ""),
    ("delete", "kubeflow.org", "trials", "loopline-tune-1-abc"),
    ("create", "argoproj.io", "workflows", ""),
]


# --- the calls, derived from the code --------------------------------------------------------

_KUBERNETES_CALL = re.compile(
    r"^(?:(?:get|list|read|create|patch|replace|delete|watch|connect)_namespaced_\w+"
    r"|\w+_(?:cluster_custom_object|for_all_namespaces))$"
)
# KatibClient's methods that reach the API server. MLflow and Optuna have methods of the same
# shape (create_experiment, get_trials), so these count only in files that use the Katib SDK.
_KATIB_CALL = re.compile(
    r"^(?:(?:create|get|list|delete|edit|wait_for|is|tune)_\w*(?:experiment|trial|suggestion)\w*"
    r"|get_optimal_hyperparameters|get_trial_metrics|get_job_logs|get_success_trial_details)$"
)


def client_calls(source: str) -> set[str]:
    """The Kubernetes client methods ``source`` calls or passes on, by attribute name: kubernetes.client's
    *_namespaced_* (and cluster-wide) ones anywhere, KatibClient's where the Katib SDK is
    imported."""
    katib = "kubeflow.katib" in source
    found = set()
    for node in ast.walk(ast.parse(source)):
        # called, or passed on as a callable (components/cli/rollout.py's _call(api.get_...))
        if not isinstance(node, ast.Attribute):
            continue
        name = node.attr
        if _KUBERNETES_CALL.match(name) or (katib and _KATIB_CALL.match(name)):
            found.add(name)
    return found


def test_every_kubernetes_client_call_in_the_components_is_declared():
    found = set()
    for path in sorted((ROOT / "components").rglob("*.py")):
        if "tests" in path.relative_to(ROOT).parts:
            continue
        for method in client_calls(path.read_text()):
            found.add((str(path.relative_to(ROOT)), method))
    declared = set(calls.CALL_SITES) | set(calls.OPERATOR_CALL_SITES)
    assert found - declared == set(), (
        "a new Kubernetes API call: add it to tests/pipeline_api_calls.py and its rule to "
        "manifests/base/rbac.yaml"
    )
    assert declared - found == set(), "declared calls no longer in the code"


def test_the_scan_finds_client_calls_and_nothing_else():
    source = """
from kubeflow.katib import KatibClient
api.read_namespaced_secret("x", ns)
core.list_pod_for_all_namespaces()
self.api.patch_namespaced_custom_object(g, v, ns, p, n, body)
client.list_trials("exp", ns)
client.wait_for_experiment_condition("exp")
registry.get("bikeshare")
retry(api.delete_namespaced_custom_object, group, version, ns, plural, name)
registry.get_version("bikeshare", "3")
"""
    assert client_calls(source) == {
        "read_namespaced_secret",
        "list_pod_for_all_namespaces",
        "patch_namespaced_custom_object",
        "list_trials",
        "wait_for_experiment_condition",
        "delete_namespaced_custom_object",
    }
    # without the Katib SDK, MLflow's and Optuna's look-alikes are not Kubernetes calls
    mlflow = "client.create_experiment('x')\nstudy.get_trials()\napi.get_namespaced_pod(n, ns)"
    assert client_calls(mlflow) == {"get_namespaced_pod"}


def test_kserve_deployment_makes_exactly_the_declared_requests_and_validates_every_object():
    """Every step push, rollout and settle take (canary, blue-green, shadow; promote,
    rollback; both deployment modes), through KServeDeployment over the fake API server,
    recorded at the client boundary. Every InferenceService it stores passes the KServe
    v0.20.0 schema (validate hook: create bodies and objects with a patch applied)."""
    from components.lib import inferenceservice as isvc
    from components.lib.deployment import ModelRef
    from tests.fake_kserve import FakeKServe
    from tests.schemas import validate_kserve

    def ref(version: str) -> ModelRef:
        digest = version * 64
        return ModelRef("bikeshare", version, f"s3://models/models/bikeshare/{digest}/", digest)

    namespace = "team-a"
    validated = []

    def validate(obj):
        validate_kserve(obj)
        validated.append(obj)

    for mode in ("knative", "standard"):
        api = calls.RecordingApi(FakeKServe(ready_after=1))
        dep = isvc.KServeDeployment(
            api, "bikeshare", namespace, mode, validate=validate, sleep=lambda s: None
        )
        assert dep.get() is None
        dep.deploy(ref("1"))
        dep.wait_ready(60)
        # canary: 10%, 50%, promote
        dep.start_candidate(ref("2"), 10)
        dep.wait_ready(60)
        dep.set_percent(50)
        dep.annotate({isvc.ANNOTATION_PREFIX + "phase": "running"})
        dep.candidate_url()
        dep.stable_url()
        dep.promote()
        dep.wait_ready(60)
        # blue-green: 0% (smoke), 100% (bake), promote
        dep.start_candidate(ref("3"), 0)
        dep.wait_ready(60)
        dep.set_percent(100)
        dep.promote()
        # a canary rolled back
        dep.start_candidate(ref("4"), 10)
        dep.rollback()
        # shadow: started, rolled back; started again, promoted
        dep.start_candidate(ref("5"), 0, mirror=True)
        dep.wait_ready(60)
        dep.candidate_url()
        dep.rollback()
        dep.start_candidate(ref("6"), 0, mirror=True)
        dep.wait_ready(60)
        dep.promote()
        dep.wait_ready(60)
        assert dep.get().stable == ref("6")
        assert api.requests == calls.KSERVE, mode
        assert api.namespaces == {namespace}
    kinds = {(o["kind"], o["metadata"]["name"]) for o in validated}
    assert kinds == {("InferenceService", "bikeshare"), ("InferenceService", "bikeshare-shadow")}
    assert len(validated) >= 2 * 12


# --- what the rendered Roles allow ------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS, ids=[p.name for p in OVERLAYS])
def test_the_pipeline_account_can_make_every_call(overlay):
    policy, runner, namespace = _policy(overlay)
    denied = [str(r) for r in _requests(namespace) if not policy.allowed(runner, r)]
    assert denied == []


@pytest.mark.parametrize("overlay", OVERLAYS, ids=[p.name for p in OVERLAYS])
def test_the_pipeline_account_cannot_do_anything_else(overlay):
    policy, runner, namespace = _policy(overlay)
    allowed = []
    for verb, group, resource, name in FORBIDDEN:
        decision = policy.decide(runner, rbac.Request(verb, group, resource, namespace, name))
        if decision.allowed:
            allowed.append(f"{verb} {group}/{resource} {name}: {decision.because}")
    assert allowed == []


@pytest.mark.parametrize("overlay", OVERLAYS, ids=[p.name for p in OVERLAYS])
def test_the_pipeline_account_cannot_touch_other_namespaces_or_the_cluster(overlay):
    policy, runner, namespace = _policy(overlay)
    for other in OTHER_NAMESPACES:
        assert other != namespace
        leaked = [str(r) for r in _requests(other) if policy.allowed(runner, r)]
        assert leaked == [], other
    # the same account name in another namespace is another account
    twin = rbac.service_account("kubeflow-user-other", RUNNER)
    assert not any(policy.allowed(twin, r) for r in _requests(namespace))
    for cluster_wide in (
        rbac.Request("list", "", "namespaces", ""),
        rbac.Request("get", "", "nodes", "", "node-1"),
        rbac.Request("create", "rbac.authorization.k8s.io", "clusterrolebindings", ""),
        rbac.Request("list", "serving.kserve.io", "clusterservingruntimes", ""),
    ):
        assert not policy.allowed(runner, cluster_wide), cluster_wide


@pytest.mark.parametrize("overlay", OVERLAYS, ids=[p.name for p in OVERLAYS])
def test_the_roles_grant_exactly_the_declared_calls(overlay):
    """No rule grants more than a declared call needs: no wildcard, no verb, resource or
    group beyond them, resourceNames exactly where the call names its object."""
    policy, runner, namespace = _policy(overlay)
    granted = set()
    for where, role, rule in policy.grants(runner):
        assert where == namespace, (role["metadata"]["name"], where)
        for key in ("apiGroups", "resources", "verbs", "resourceNames"):
            assert "*" not in rule.get(key, []), (role["metadata"]["name"], rule)
        names = rule.get("resourceNames") or [""]
        for g in rule["apiGroups"]:
            for r in rule["resources"]:
                for v in rule["verbs"]:
                    for n in names:
                        granted.add((g, r, v, n))
    wanted = {(g, r, v, "") for g, r, v in calls.COMPONENTS} | calls.KFP_RUNTIME
    assert granted == wanted


def test_the_secret_the_account_may_read_is_the_pipelines_object_store_secret():
    """KFP's launcher reads the object-store Secret by name (the artifacts); Loopline's
    steps get the keys of s3_credentials_secret from the pod spec. Both default to KFP's
    mlpipeline-minio-artifact."""
    from pipelines.continuous_training.pipeline import continuous_training_pipeline
    from pipelines.training.pipeline import training_pipeline

    [secret] = [name for g, r, v, name in calls.KFP_RUNTIME if r == "secrets"]
    for pipeline in (training_pipeline, continuous_training_pipeline):
        parameters = inspect.signature(pipeline.pipeline_func).parameters
        assert parameters["s3_credentials_secret"].default == secret
    policy, runner, namespace = _policy(ROOT / "manifests" / "overlays" / "prod")
    assert policy.allowed(runner, rbac.Request("get", "", "secrets", namespace, secret))


def test_the_katib_trials_and_model_servers_accounts_hold_nothing_else():
    # loopline-serving (the predictors) has no binding at all; its pods mount no token.
    policy, _, namespace = _policy(ROOT / "manifests" / "overlays" / "prod")
    serving = rbac.service_account(namespace, "loopline-serving")
    assert policy.grants(serving) == []


# --- the evaluator can fail, and names the rule ------------------------------------------------


def _tampered(overlay, role_name: str, rule: dict) -> list[dict]:
    docs = copy.deepcopy(render(overlay))
    role = next(d for d in docs if d["kind"] == "Role" and d["metadata"]["name"] == role_name)
    role["rules"].append(rule)
    return docs


@pytest.mark.parametrize(
    ("rule", "request_", "named"),
    [
        # secrets get without resourceNames: every Secret of the namespace
        (
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]},
            ("get", "", "secrets", "mlflow-postgres"),
            "Role/loopline-kfp-runtime rule 4",
        ),
        # a subresource wildcard reaches pods/exec
        (
            {"apiGroups": [""], "resources": ["*/exec"], "verbs": ["create"]},
            ("create", "", "pods/exec", "mlflow-0"),
            "Role/loopline-kfp-runtime rule 4",
        ),
        # a verb wildcard on RoleBindings
        (
            {
                "apiGroups": ["rbac.authorization.k8s.io"],
                "resources": ["rolebindings"],
                "verbs": ["*"],
            },
            ("create", "rbac.authorization.k8s.io", "rolebindings", ""),
            "Role/loopline-kfp-runtime rule 4",
        ),
    ],
    ids=["secrets-without-names", "exec-wildcard", "rolebindings"],
)
def test_a_tampered_role_is_reported_with_the_rule_named(rule, request_, named):
    overlay = ROOT / "manifests" / "overlays" / "prod"
    namespace = _namespace(overlay)
    runner = rbac.service_account(namespace, RUNNER)
    verb, group, resource, name = request_
    request = rbac.Request(verb, group, resource, namespace, name)
    assert not rbac.Policy(render(overlay)).allowed(runner, request)
    decision = rbac.Policy(_tampered(overlay, "loopline-kfp-runtime", rule)).decide(runner, request)
    assert decision.allowed
    assert decision.because == [f"{named} via RoleBinding/loopline-kfp-runtime"]


def test_a_cluster_role_binding_reaches_every_namespace():
    overlay = ROOT / "manifests" / "overlays" / "prod"
    namespace = _namespace(overlay)
    docs = copy.deepcopy(render(overlay))
    docs += [
        {
            "kind": "ClusterRole",
            "metadata": {"name": "isvc-everywhere"},
            "rules": [
                {
                    "apiGroups": ["serving.kserve.io"],
                    "resources": ["inferenceservices"],
                    "verbs": ["get"],
                }
            ],
        },
        {
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "isvc-everywhere"},
            "roleRef": {"kind": "ClusterRole", "name": "isvc-everywhere"},
            "subjects": [{"kind": "ServiceAccount", "name": RUNNER, "namespace": namespace}],
        },
    ]
    runner = rbac.service_account(namespace, RUNNER)
    request = rbac.Request("get", "serving.kserve.io", "inferenceservices", "kube-system", "x")
    decision = rbac.Policy(docs).decide(runner, request)
    assert decision.because == [
        "ClusterRole/isvc-everywhere rule 0 via ClusterRoleBinding/isvc-everywhere"
    ]


# --- the evaluator follows the documented semantics ---------------------------------------------


def _one(rules, subjects=None, binding_namespace="ns", role_kind="Role"):
    role = {
        "kind": role_kind,
        "metadata": {"name": "r", "namespace": binding_namespace},
        "rules": rules,
    }
    if role_kind == "ClusterRole":
        del role["metadata"]["namespace"]
    binding = {
        "kind": "RoleBinding",
        "metadata": {"name": "b", "namespace": binding_namespace},
        "roleRef": {"kind": role_kind, "name": "r"},
        "subjects": subjects or [{"kind": "ServiceAccount", "name": "sa"}],
    }
    return rbac.Policy([role, binding])


SA = rbac.service_account("ns", "sa")


def test_rules_match_subresources_only_by_name_or_star_slash():
    pods = _one([{"apiGroups": [""], "resources": ["pods"], "verbs": ["*"]}])
    assert pods.allowed(SA, rbac.Request("create", "", "pods", "ns"))
    assert not pods.allowed(SA, rbac.Request("create", "", "pods/exec", "ns", "p"))
    star = _one([{"apiGroups": [""], "resources": ["*"], "verbs": ["create"]}])
    assert star.allowed(SA, rbac.Request("create", "", "pods/exec", "ns", "p"))
    exec_any = _one([{"apiGroups": [""], "resources": ["*/exec"], "verbs": ["create"]}])
    assert exec_any.allowed(SA, rbac.Request("create", "", "pods/exec", "ns", "p"))
    assert not exec_any.allowed(SA, rbac.Request("create", "", "pods", "ns", "p"))


def test_resource_names_never_match_requests_without_a_name():
    named = _one(
        [
            {
                "apiGroups": [""],
                "resources": ["secrets"],
                "resourceNames": ["a"],
                "verbs": ["get", "list"],
            }
        ]
    )
    assert named.allowed(SA, rbac.Request("get", "", "secrets", "ns", "a"))
    assert not named.allowed(SA, rbac.Request("get", "", "secrets", "ns", "b"))
    assert not named.allowed(SA, rbac.Request("list", "", "secrets", "ns"))


def test_api_groups_and_verbs_must_match():
    rule = [{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get"]}]
    policy = _one(rule)
    assert policy.allowed(SA, rbac.Request("get", "apps", "deployments", "ns", "d"))
    assert not policy.allowed(SA, rbac.Request("get", "extensions", "deployments", "ns", "d"))
    assert not policy.allowed(SA, rbac.Request("delete", "apps", "deployments", "ns", "d"))


def test_a_role_binding_grants_only_in_its_namespace_even_for_a_cluster_role():
    policy = _one(
        [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}], role_kind="ClusterRole"
    )
    assert policy.allowed(SA, rbac.Request("get", "", "pods", "ns", "p"))
    assert not policy.allowed(SA, rbac.Request("get", "", "pods", "other", "p"))
    assert not policy.allowed(SA, rbac.Request("get", "", "nodes", "", "n"))


def test_subjects_resolve_service_accounts_and_their_groups():
    rule = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]
    request = rbac.Request("get", "", "pods", "ns", "p")
    elsewhere = _one(rule, [{"kind": "ServiceAccount", "name": "sa", "namespace": "other"}])
    assert not elsewhere.allowed(SA, request)
    assert elsewhere.allowed(rbac.service_account("other", "sa"), request)
    group = _one(rule, [{"kind": "Group", "name": "system:serviceaccounts:ns"}])
    assert group.allowed(SA, request)
    assert not group.allowed(
        rbac.service_account("other", "x"), rbac.Request("get", "", "pods", "ns", "p")
    )


def test_a_binding_to_a_missing_role_grants_nothing():
    policy = rbac.Policy(
        [
            {
                "kind": "RoleBinding",
                "metadata": {"name": "b", "namespace": "ns"},
                "roleRef": {"kind": "Role", "name": "absent"},
                "subjects": [{"kind": "ServiceAccount", "name": "sa"}],
            }
        ]
    )
    assert not policy.allowed(SA, rbac.Request("get", "", "pods", "ns", "p"))
