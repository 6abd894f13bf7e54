"""manifests/ renders as `kubectl apply -k` would, and every object is valid Kubernetes."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
OVERLAYS = sorted(p.parent for p in (ROOT / "manifests" / "overlays").glob("*/kustomization.yaml"))
KUBERNETES_VERSION = "1.32"


def render(directory: Path) -> list[dict]:
    if not shutil.which("kubectl"):
        pytest.fail("kubectl is not on PATH: it renders manifests/ with its built-in kustomize")
    out = subprocess.run(
        ["kubectl", "kustomize", str(directory)], check=True, capture_output=True, text=True
    )
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


@pytest.mark.parametrize("overlay", OVERLAYS, ids=[p.name for p in OVERLAYS])
def test_overlay_renders_valid_objects_in_one_namespace(overlay):
    docs = render(overlay)
    assert {d["kind"] for d in docs} >= {"ServiceAccount", "Role", "RoleBinding"}
    for doc in docs:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    assert len({d["metadata"]["namespace"] for d in docs}) == 1


def _accounts(binding: dict) -> set[str]:
    """The identities a RoleBinding grants, as RBAC resolves them: a ServiceAccount subject
    without a namespace is in the binding's own (Kubernetes' rbac appliesToUser)."""
    namespace = binding["metadata"]["namespace"]
    assert {s["kind"] for s in binding["subjects"]} == {"ServiceAccount"}
    return {
        f"system:serviceaccount:{s.get('namespace') or namespace}:{s['name']}"
        for s in binding["subjects"]
    }


def test_role_binding_ties_the_runner_accounts_to_its_role():
    docs = {(d["kind"], d["metadata"]["name"]): d for d in render(OVERLAYS[0])}
    binding = docs[("RoleBinding", "loopline-pipeline-runner")]
    assert ("Role", binding["roleRef"]["name"]) in docs
    namespace = binding["metadata"]["namespace"]
    # The trial pods' account (tune_katib's service_account), and the account KFP runs the
    # run's pods as in a Kubeflow profile namespace: the Katib launcher creates Experiments.
    assert _accounts(binding) == {
        f"system:serviceaccount:{namespace}:loopline-pipeline-runner",
        f"system:serviceaccount:{namespace}:default-editor",
    }
    rules = docs[("Role", "loopline-pipeline-runner")]["rules"]
    assert all("*" not in r["verbs"] and "*" not in r["resources"] for r in rules)
    experiments = next(r for r in rules if "experiments" in r["resources"])
    assert {"create", "get", "delete"} <= set(experiments["verbs"])


def test_validator_rejects_a_broken_role():
    role = next(d for d in render(OVERLAYS[0]) if d["kind"] == "Role")
    role["rules"] = [{"apiGroups": ["serving.kserve.io"], "resources": ["inferenceservices"]}]
    with pytest.raises(kubernetes_validate.ValidationError, match="'verbs' is a required property"):
        kubernetes_validate.validate(role, KUBERNETES_VERSION, strict=True)
