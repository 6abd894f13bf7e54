"""manifests/overlays/prod (and prod/monitoring): what makes it production's.

Every overlay's shared checks (valid objects, one namespace, no credential literal,
unprivileged pods, the pipeline account's policy) run on prod too (tests/test_manifests.py,
tests/test_manifests_rbac.py); these are prod's own: no generated Secret, images pinned by
digest, replicas with a PodDisruptionBudget, sizes, and the monitoring overlay.
"""

from __future__ import annotations

import re
import subprocess

import kubernetes_validate
import yaml

from tests.test_manifests import (
    KUBEFLOW_USER,
    KUBERNETES_VERSION,
    ROOT,
    all_containers,
    by_kind_and_name,
    pod_templates,
    render,
)
from tests.test_monitoring import RULES, promtool

PROD = ROOT / "manifests" / "overlays" / "prod"
PROD_MONITORING = PROD / "monitoring"
PLACEHOLDER = re.compile(r"^sha256:0{63}[1-9a-f]$")


def _images(docs: list[dict]) -> set[str]:
    out = {c["image"] for _, t in pod_templates(docs) for c in all_containers(t)}
    for doc in docs:
        if doc["kind"] == "ServingRuntime":
            out |= {c["image"] for c in doc["spec"]["containers"]}
    return out


def test_prod_ships_no_secret_and_no_default_editor_binding():
    docs = render(PROD)
    assert [d["metadata"]["name"] for d in docs if d["kind"] == "Secret"] == []
    subjects = [
        s["name"] for d in docs if d["kind"] == "RoleBinding" for s in d.get("subjects", [])
    ]
    assert set(subjects) == {"loopline-pipeline-runner"}


def test_every_image_is_pinned_by_a_documented_placeholder_digest():
    docs = render(PROD)
    images = _images(docs)
    for image in images:
        assert re.fullmatch(r"[a-z0-9./-]+@sha256:[0-9a-f]{64}", image), image
    # every image of the bases is retargeted: none is left as the bases write it
    assert not _images(docs) & _images(render(KUBEFLOW_USER))
    kustomization = yaml.safe_load((PROD / "kustomization.yaml").read_text())
    digests = [entry["digest"] for entry in kustomization["images"]]
    assert all(PLACEHOLDER.match(d) for d in digests), digests
    assert len(set(digests)) == len(digests) == len(images)
    names = {entry["name"] for entry in kustomization["images"]}
    base_names = {
        re.split(r"[:@]", i.rsplit("/", 1)[-1])[0] for i in _images(render(KUBEFLOW_USER))
    }
    assert {n.rsplit("/", 1)[-1] for n in names} == base_names


def test_deployments_with_replicas_have_a_disruption_budget_that_selects_them():
    docs = render(PROD)
    objects = by_kind_and_name(docs)
    budgets = [d for d in docs if d["kind"] == "PodDisruptionBudget"]
    replicated = [d for d in docs if d["kind"] == "Deployment" and d["spec"].get("replicas", 1) > 1]
    assert [d["metadata"]["name"] for d in replicated] == ["loopline-feature-server"]
    for deployment in replicated:
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        [budget] = [
            b
            for b in budgets
            if all(labels.get(k) == v for k, v in b["spec"]["selector"]["matchLabels"].items())
        ]
        assert 0 < budget["spec"]["minAvailable"] < deployment["spec"]["replicas"]
        spread = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
        assert spread[0]["topologyKey"] == "kubernetes.io/hostname"
    # MLflow migrates its schema at start: one replica, replaced not rolled
    mlflow = objects[("Deployment", "mlflow")]
    assert mlflow["spec"]["replicas"] == 1 and mlflow["spec"]["strategy"]["type"] == "Recreate"
    # every budget selects some workload's pods (a selector typo would protect nothing)
    for budget in budgets:
        selector = budget["spec"]["selector"]["matchLabels"]
        assert any(
            all(t["metadata"]["labels"].get(k) == v for k, v in selector.items())
            for _, t in pod_templates(docs)
        ), budget["metadata"]["name"]


def _memory(quantity: str) -> float:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return float(quantity[: -len(suffix)]) * factor
    return float(quantity)


def _cpu(quantity: str) -> float:
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def test_prod_sizes_are_no_smaller_than_the_bases():
    base = {
        (d["metadata"]["name"], c["name"]): c["resources"]
        for d, t in pod_templates(render(KUBEFLOW_USER))
        for c in all_containers(t)
    }
    grown = []
    for doc, template in pod_templates(render(PROD)):
        for c in all_containers(template):
            mine, theirs = c["resources"], base[(doc["metadata"]["name"], c["name"])]
            assert _cpu(mine["requests"]["cpu"]) >= _cpu(theirs["requests"]["cpu"])
            for kind in ("requests", "limits"):
                assert _memory(mine[kind]["memory"]) >= _memory(theirs[kind]["memory"])
            if mine != theirs:
                grown.append(doc["metadata"]["name"])
    assert set(grown) == {"mlflow", "mlflow-postgres", "loopline-feature-server"}
    postgres = by_kind_and_name(render(PROD))[("StatefulSet", "mlflow-postgres")]
    [claim] = postgres["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "50Gi"


def test_the_prod_monitoring_overlay_renders_the_rules_for_kube_prometheus_stack(tmp_path):
    docs = render(PROD_MONITORING)
    objects = by_kind_and_name(docs)
    assert set(objects) == {
        ("PrometheusRule", "loopline"),
        ("PodMonitor", "loopline-model-servers"),
        ("ConfigMap", "loopline-grafana-dashboards"),
    }
    for doc in docs:
        assert doc["metadata"]["namespace"] == "monitoring"
        assert doc["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    kubernetes_validate.validate(
        objects[("ConfigMap", "loopline-grafana-dashboards")], KUBERNETES_VERSION, strict=True
    )
    # No Prometheus Operator schema here: the rule's groups are the rule file's, and promtool
    # accepts them as a rule file.
    rule = objects[("PrometheusRule", "loopline")]
    assert rule["spec"]["groups"] == yaml.safe_load(RULES.read_text())["groups"]
    extracted = tmp_path / "rules.yaml"
    extracted.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    result = promtool("check", "rules", str(extracted))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_kustomization_under_manifests_builds():
    # What a user may `kubectl apply -k`: every folder with a kustomization.yaml.
    folders = sorted(p.parent for p in (ROOT / "manifests").rglob("kustomization.yaml"))
    assert PROD in folders and PROD_MONITORING in folders
    for folder in folders:
        result = subprocess.run(
            ["kubectl", "kustomize", str(folder)], capture_output=True, text=True
        )
        assert result.returncode == 0, f"{folder}: {result.stderr}"
