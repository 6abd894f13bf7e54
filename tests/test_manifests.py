"""manifests/ renders as `kubectl apply -k` would, and every object is valid Kubernetes.

The MLflow part (manifests/mlflow, included by the overlays) is checked for what a cluster
would otherwise reveal only at run time: the server's effective command line as the kubelet
expands it, where its credentials come from (never literals), that the Service, the
probes, the database and the NetworkPolicies point at each other, and that the Host
headers the tracking URI produces are ones mlflow 3.x's security middleware accepts.
"""

from __future__ import annotations

import base64
import fnmatch
import functools
import os
import re
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from components import __version__
from tests import schemas

ROOT = Path(__file__).resolve().parent.parent
OVERLAYS = sorted(p.parent for p in (ROOT / "manifests" / "overlays").glob("*/kustomization.yaml"))
KUBEFLOW_USER = ROOT / "manifests" / "overlays" / "kubeflow-user"
DEV = ROOT / "manifests" / "overlays" / "dev"
MLFLOW_BASE = ROOT / "manifests" / "mlflow"
KUBERNETES_VERSION = "1.32"

# The Secrets the kubeflow-user overlay reads and never ships, with the keys it reads: the
# user creates the first, the three of manifests/serving/kustomization.yaml and the last
# (manifests/features/kustomization.yaml), Kubeflow Pipelines' profile controller the second.
USER_SECRETS = {
    "mlflow-postgres": {"username", "password"},
    "mlpipeline-minio-artifact": {"accesskey", "secretkey"},
    "loopline-minio-admin": {"accesskey", "secretkey"},
    "loopline-serving-s3": {"accesskey", "secretkey"},
    "loopline-monitoring-s3": {"accesskey", "secretkey"},
    "loopline-redis": {"password"},
}
KUBEFLOW_OBJECT_STORE = "http://minio-service.kubeflow:9000"


@functools.cache
def _rendered(directory: Path) -> str:
    if not shutil.which("kubectl"):
        pytest.fail("kubectl is not on PATH: it renders manifests/ with its built-in kustomize")
    out = subprocess.run(
        ["kubectl", "kustomize", str(directory)], check=True, capture_output=True, text=True
    )
    return out.stdout


def render(directory: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(_rendered(directory)) if doc]


def by_kind_and_name(docs: list[dict]) -> dict[tuple[str, str], dict]:
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def pod_templates(docs: list[dict]):
    for doc in docs:
        if doc["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            yield doc, doc["spec"]["template"]


def all_containers(template: dict) -> list[dict]:
    spec = template["spec"]
    return spec.get("initContainers", []) + spec["containers"]


def container(docs: list[dict], kind: str, name: str, container_name: str) -> dict:
    template = by_kind_and_name(docs)[(kind, name)]["spec"]["template"]
    return next(c for c in template["spec"]["containers"] if c["name"] == container_name)


# --- the kubelet's $(VAR) expansion -----------------------------------------------------

_REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(text: str, variables: dict[str, str]) -> str:
    """Expands `$(NAME)` as the kubelet does: a defined name is replaced, `$$` is a literal
    `$`, an undefined reference is left as written."""

    def one(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        return variables.get(match.group(1), match.group(0))

    return _REFERENCE.sub(one, text)


def resolved_env(c: dict, namespace: str) -> dict[str, str]:
    """The container's environment as the kubelet builds it: in list order, each value
    expanded from the variables before it. References to Secrets and ConfigMaps stay
    symbolic, as `<secret NAME/KEY>`."""
    env: dict[str, str] = {}
    for entry in c.get("env", []):
        if "value" in entry:
            env[entry["name"]] = expand(entry["value"], env)
            continue
        source = entry["valueFrom"]
        if "fieldRef" in source:
            assert source["fieldRef"]["fieldPath"] == "metadata.namespace", entry
            env[entry["name"]] = namespace
        elif "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            env[entry["name"]] = f"<secret {ref['name']}/{ref['key']}>"
        else:
            ref = source["configMapKeyRef"]
            env[entry["name"]] = f"<configmap {ref['name']}/{ref['key']}>"
    return env


def command_line(c: dict, namespace: str) -> list[str]:
    """command + args after the kubelet's expansion (they see the whole environment)."""
    env = resolved_env(c, namespace)
    return [expand(part, env) for part in c.get("command", []) + c.get("args", [])]


def secret_ref(c: dict, env_name: str) -> tuple[str, str]:
    entry = next(e for e in c["env"] if e["name"] == env_name)
    ref = entry["valueFrom"]["secretKeyRef"]
    return ref["name"], ref["key"]


def flag(argv: list[str], name: str) -> str:
    """The value of `--name=value` or `--name value` in an argv."""
    for i, part in enumerate(argv):
        if part.startswith(f"{name}="):
            return part.split("=", 1)[1]
        if part == name:
            return argv[i + 1]
    raise AssertionError(f"{name} is not on the command line: {argv}")


def selects(selector: dict, labels: dict) -> bool:
    assert "matchExpressions" not in selector, "only matchLabels is checked here"
    wanted = selector.get("matchLabels", selector)
    return all(labels.get(k) == v for k, v in wanted.items())


def host_allowed(allowed: list[str], host: str) -> bool:
    """mlflow 3.x's Host check (mlflow/server/security_utils.py, is_allowed_host_header)."""
    if "*" in allowed:
        return True
    return any(fnmatch.fnmatch(host, a) if "*" in a else host == a for a in allowed)


# --- credentials ------------------------------------------------------------------------

_CREDENTIAL_ENV = re.compile(
    r"PASSWORD|PASSWD|SECRET|ACCESS_KEY|TOKEN|CREDENTIAL|USER(NAME)?$", re.IGNORECASE
)
_SECRET_KEY = re.compile(r"password|secret|token", re.IGNORECASE)
_USERINFO = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@\"']+:[^/\s@\"']+@", re.IGNORECASE)
# Public default credentials that must never be written into a workload: Kubeflow's MinIO
# administrator secret key.
_KNOWN_DEFAULTS = ("minio123",)


def credential_literals(docs: list[dict]) -> list[str]:
    """Every place outside a Secret object where a credential is written as a literal:
    a credential-named env var with a `value`, a URI carrying user:password@, a Secret's
    secret value (or a known default) copied anywhere else."""
    secret_values = set(_KNOWN_DEFAULTS)
    for doc in docs:
        if doc["kind"] != "Secret":
            continue
        decoded = {k: base64.b64decode(v).decode() for k, v in doc.get("data", {}).items()}
        decoded |= doc.get("stringData", {})
        secret_values |= {v for k, v in decoded.items() if _SECRET_KEY.search(k) and v}
    findings = []
    for doc in docs:
        if doc["kind"] == "Secret":
            continue
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        text = yaml.safe_dump(doc)
        findings += [f"{where}: a secret value is written out" for v in secret_values if v in text]
        findings += [f"{where}: credentials in a URI: {m}" for m in _USERINFO.findall(text)]
    for doc, template in pod_templates(docs):
        for c in all_containers(template):
            for entry in c.get("env", []):
                if _CREDENTIAL_ENV.search(entry["name"]) and "value" in entry:
                    findings.append(
                        f"{doc['kind']}/{doc['metadata']['name']} container {c['name']}: "
                        f"env {entry['name']} is a literal, not a secretKeyRef"
                    )
    return findings


# --- every overlay ----------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS, ids=[p.name for p in OVERLAYS])
def test_overlay_renders_valid_objects_in_one_namespace(overlay):
    docs = render(overlay)
    assert {d["kind"] for d in docs} >= {
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "Deployment",
        "StatefulSet",
        "Service",
        "NetworkPolicy",
        "ServingRuntime",
        "Job",
    }
    for doc in docs:
        if doc["apiVersion"].startswith("serving.kserve.io/"):
            schemas.validate_kserve(doc)
        else:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    assert len({d["metadata"]["namespace"] for d in docs}) == 1


def test_mlflow_base_renders_valid_objects_without_a_namespace():
    # Overlays (or `kubectl apply -k manifests/mlflow -n NS`) choose the namespace; the
    # server derives its own at run time from the downward API.
    docs = render(MLFLOW_BASE)
    for doc in docs:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        assert "namespace" not in doc["metadata"], doc["metadata"]
    assert not [d for d in docs if d["kind"] == "Secret"]


@pytest.mark.parametrize("overlay", OVERLAYS, ids=[p.name for p in OVERLAYS])
def test_no_credential_is_written_as_a_literal(overlay):
    assert credential_literals(render(overlay)) == []


def test_the_kubeflow_user_overlay_ships_no_secret_and_reads_only_the_documented_ones():
    docs = render(KUBEFLOW_USER)
    assert not [d for d in docs if d["kind"] == "Secret"]
    read: dict[str, set[str]] = {}
    for _, template in pod_templates(docs):
        for c in all_containers(template):
            for entry in c.get("env", []):
                ref = entry.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    read.setdefault(ref["name"], set()).add(ref["key"])
    assert read == USER_SECRETS


def test_the_dev_overlay_generates_every_secret_it_reads():
    docs = render(DEV)
    secrets = {d["metadata"]["name"]: set(d["data"]) for d in docs if d["kind"] == "Secret"}
    for _, template in pod_templates(docs):
        for c in all_containers(template):
            for entry in c.get("env", []):
                ref = entry.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["key"] in secrets.get(ref["name"], set()), ref
    # ...including the object-store keys, from a Secret of its own (the documented way to
    # point MLflow away from the profile's mlpipeline-minio-artifact).
    mlflow = container(docs, "Deployment", "mlflow", "mlflow")
    name, _ = secret_ref(mlflow, "AWS_SECRET_ACCESS_KEY")
    assert name.startswith("mlflow-s3-")


@pytest.mark.parametrize(
    "tamper",
    [
        # the database password as a plain env value
        lambda c: c["env"].__setitem__(
            next(i for i, e in enumerate(c["env"]) if e["name"] == "PGPASSWORD"),
            {"name": "PGPASSWORD", "value": "hunter2"},
        ),
        # the password folded into the backend URI
        lambda c: c["args"].append(
            "--backend-store-uri=postgresql+psycopg2://mlflow:hunter2@mlflow-postgres:5432/mlflow"
        ),
        # Kubeflow's public default key under an innocent-looking name
        lambda c: c["env"].append({"name": "S3_CONFIG", "value": "key=minio secret=minio123"}),
    ],
    ids=["env-literal", "uri-userinfo", "known-default"],
)
def test_the_credential_check_catches_literals(tamper):
    docs = render(KUBEFLOW_USER)
    tamper(container(docs, "Deployment", "mlflow", "mlflow"))
    assert credential_literals(docs)


def test_the_credential_check_catches_a_generated_secret_copied_into_a_workload():
    docs = render(DEV)
    password = next(
        base64.b64decode(d["data"]["password"]).decode()
        for d in docs
        if d["kind"] == "Secret" and d["metadata"]["name"].startswith("mlflow-postgres-")
    )
    postgres = container(docs, "StatefulSet", "mlflow-postgres", "postgres")
    postgres["env"].append(
        {"name": "INIT_SQL", "value": f"ALTER ROLE mlflow PASSWORD '{password}'"}
    )
    assert credential_literals(docs) == [
        "StatefulSet/mlflow-postgres: a secret value is written out"
    ]


@pytest.mark.parametrize("overlay", OVERLAYS, ids=[p.name for p in OVERLAYS])
def test_every_variable_reference_resolves(overlay):
    # The kubelet leaves $(NAME) as written when NAME is not defined before it (env) or at
    # all (command, args); a kustomize patch moves the env entries it names to the front.
    for doc, template in pod_templates(render(overlay)):
        for c in all_containers(template):
            env = resolved_env(c, doc["metadata"]["namespace"])
            leftovers = [v for v in env.values() if _REFERENCE.search(v.replace("$$", ""))]
            leftovers += [
                part
                for part in command_line(c, doc["metadata"]["namespace"])
                if _REFERENCE.search(part.replace("$$", ""))
            ]
            assert not leftovers, f"{doc['metadata']['name']}/{c['name']}: {leftovers}"


@pytest.mark.parametrize("overlay", OVERLAYS, ids=[p.name for p in OVERLAYS])
def test_every_pod_runs_unprivileged_with_resources(overlay):
    for doc, template in pod_templates(render(overlay)):
        spec = template["spec"]
        pod_security = spec.get("securityContext", {})
        assert spec.get("automountServiceAccountToken") is False, doc["metadata"]["name"]
        assert pod_security.get("seccompProfile", {}).get("type") == "RuntimeDefault"
        for c in all_containers(template):
            security = pod_security | c.get("securityContext", {})
            where = f"{doc['metadata']['name']}/{c['name']}"
            assert security.get("runAsNonRoot") is True, where
            assert security.get("runAsUser", 0) > 0, where
            assert security.get("allowPrivilegeEscalation") is False, where
            assert security.get("capabilities", {}).get("drop") == ["ALL"], where
            assert security.get("readOnlyRootFilesystem") is True, where
            resources = c.get("resources", {})
            assert {"cpu", "memory"} <= set(resources.get("requests", {})), where
            assert "memory" in resources.get("limits", {}), where


# --- the MLflow server ------------------------------------------------------------------


def test_mlflow_server_command_line():
    docs = render(KUBEFLOW_USER)
    namespace = "kubeflow-user-example-com"
    mlflow = container(docs, "Deployment", "mlflow", "mlflow")
    argv = command_line(mlflow, namespace)
    assert argv[:2] == ["mlflow", "server"]
    assert flag(argv, "--host") == "0.0.0.0"
    assert flag(argv, "--port") == "5000"
    # Artifacts travel through the server to the object store; clients need no S3 keys.
    assert "--serve-artifacts" in argv and "--no-serve-artifacts" not in argv
    assert flag(argv, "--artifacts-destination") == f"s3://mlpipeline/private/{namespace}/mlflow"
    env = resolved_env(mlflow, namespace)
    assert env["MLFLOW_S3_ENDPOINT_URL"] == KUBEFLOW_OBJECT_STORE
    assert secret_ref(mlflow, "AWS_ACCESS_KEY_ID") == ("mlpipeline-minio-artifact", "accesskey")
    assert secret_ref(mlflow, "AWS_SECRET_ACCESS_KEY") == ("mlpipeline-minio-artifact", "secretkey")
    # The GenAI job runner costs ~1.9 GB and serves nothing the registry needs.
    assert env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    # A Service named `mlflow` would inject MLFLOW_PORT=tcp://..., which `mlflow server`
    # reads as its port.
    template = by_kind_and_name(docs)[("Deployment", "mlflow")]["spec"]["template"]
    assert template["spec"]["enableServiceLinks"] is False
    assert template["spec"]["securityContext"]["runAsUser"] == 1000


def test_mlflow_reaches_the_database_with_the_databases_own_credentials():
    docs = render(KUBEFLOW_USER)
    objects = by_kind_and_name(docs)
    mlflow = container(docs, "Deployment", "mlflow", "mlflow")
    postgres = container(docs, "StatefulSet", "mlflow-postgres", "postgres")
    uri = flag(command_line(mlflow, "ns"), "--backend-store-uri")
    # SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3; the image carries psycopg2.
    match = re.fullmatch(r"postgresql\+psycopg2://([^/:@]+):(\d+)/(\w+)", uri)
    assert match, f"backend URI {uri!r}: no credentials in it, the driver named"
    host, port, database = match.groups()
    service = objects[("Service", host)]
    assert int(port) in [p["port"] for p in service["spec"]["ports"]]
    assert selects(
        service["spec"]["selector"],
        objects[("StatefulSet", "mlflow-postgres")]["spec"]["template"]["metadata"]["labels"],
    )
    assert database == resolved_env(postgres, "ns")["POSTGRES_DB"]
    # libpq reads PGUSER / PGPASSWORD: the same Secret keys the database was initialised with.
    assert secret_ref(mlflow, "PGUSER") == secret_ref(postgres, "POSTGRES_USER")
    assert secret_ref(mlflow, "PGPASSWORD") == secret_ref(postgres, "POSTGRES_PASSWORD")
    assert secret_ref(mlflow, "PGPASSWORD") == ("mlflow-postgres", "password")


def test_mlflow_probes_and_service():
    docs = render(KUBEFLOW_USER)
    objects = by_kind_and_name(docs)
    mlflow = container(docs, "Deployment", "mlflow", "mlflow")
    ports = {p["name"]: p["containerPort"] for p in mlflow["ports"]}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        get = mlflow[probe]["httpGet"]
        # /health is exempt from mlflow's Host check, so the kubelet's Host (the pod IP) passes.
        assert get["path"] == "/health", probe
        assert ports.get(get["port"], get["port"]) == 5000, probe
    service = objects[("Service", "mlflow")]
    [port] = service["spec"]["ports"]
    assert port["port"] == 5000
    assert ports.get(port["targetPort"], port["targetPort"]) == 5000
    template_labels = objects[("Deployment", "mlflow")]["spec"]["template"]["metadata"]["labels"]
    postgres_labels = objects[("StatefulSet", "mlflow-postgres")]["spec"]["template"]["metadata"][
        "labels"
    ]
    assert selects(service["spec"]["selector"], template_labels)
    assert not selects(service["spec"]["selector"], postgres_labels)


def test_the_tracking_uri_passes_mlflows_host_check():
    # mlflow >= 3.5 answers 403 to a Host header outside MLFLOW_SERVER_ALLOWED_HOSTS.
    namespace = "kubeflow-user-example-com"
    docs = render(KUBEFLOW_USER)
    mlflow = container(docs, "Deployment", "mlflow", "mlflow")
    allowed = [
        h.strip() for h in resolved_env(mlflow, namespace)["MLFLOW_SERVER_ALLOWED_HOSTS"].split(",")
    ]
    service = by_kind_and_name(docs)[("Service", "mlflow")]
    name, port = service["metadata"]["name"], service["spec"]["ports"][0]["port"]
    for host in (
        f"{name}.{namespace}.svc.cluster.local:{port}",  # the documented tracking URI
        f"{name}.{namespace}:{port}",
        f"{name}:{port}",
        f"localhost:{port}",  # kubectl port-forward
    ):
        assert host_allowed(allowed, host), host
    for host in (
        "evil.example.com",
        f"{name}.{namespace}.svc.cluster.local.evil.example.com",
        f"{name}.other-namespace.svc.cluster.local:{port}",
    ):
        assert not host_allowed(allowed, host), host


def test_mlflow_image_is_the_package_version_and_overlays_can_retarget_it(tmp_path):
    mlflow = container(render(KUBEFLOW_USER), "Deployment", "mlflow", "mlflow")
    assert mlflow["image"] == f"loopline/mlflow:{__version__}"
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                # kustomize refuses an absolute path to a base
                "resources": [os.path.relpath(KUBEFLOW_USER, overlay)],
                "images": [
                    {"name": "loopline/mlflow", "newName": "registry.example.com/loopline/mlflow"},
                    {"name": "postgres", "newName": "registry.example.com/mirror/postgres"},
                    {"name": "quay.io/minio/mc", "newName": "registry.example.com/mirror/mc"},
                    {
                        "name": "loopline/serving",
                        "newName": "registry.example.com/loopline/serving",
                    },
                    {
                        "name": "loopline/features",
                        "newName": "registry.example.com/loopline/features",
                    },
                    {"name": "redis", "newName": "registry.example.com/mirror/redis"},
                ],
            }
        )
    )
    docs = render(overlay)
    images = {c["image"] for _, t in pod_templates(docs) for c in all_containers(t)}
    assert images == {
        f"registry.example.com/loopline/mlflow:{__version__}",
        "registry.example.com/mirror/postgres:17-bookworm",
        "registry.example.com/mirror/mc:RELEASE.2025-04-16T18-13-26Z",
        f"registry.example.com/loopline/features:{__version__}",
        "registry.example.com/mirror/redis:7.2-bookworm",
    }
    (runtime,) = [d for d in docs if d["kind"] == "ServingRuntime"]
    assert runtime["spec"]["containers"][0]["image"] == (
        f"registry.example.com/loopline/serving:{__version__}"
    )


# --- the database -----------------------------------------------------------------------


def test_postgres_keeps_its_data_on_a_claim():
    docs = render(KUBEFLOW_USER)
    objects = by_kind_and_name(docs)
    statefulset = objects[("StatefulSet", "mlflow-postgres")]
    [claim] = statefulset["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert claim["spec"]["resources"]["requests"]["storage"]
    postgres = container(docs, "StatefulSet", "mlflow-postgres", "postgres")
    [mount] = [m for m in postgres["volumeMounts"] if m["name"] == claim["metadata"]["name"]]
    pgdata = resolved_env(postgres, "ns")["PGDATA"]
    # A subdirectory of the claim: initdb refuses a mount point that holds lost+found.
    assert Path(pgdata).parent == Path(mount["mountPath"])
    assert secret_ref(postgres, "POSTGRES_PASSWORD") == ("mlflow-postgres", "password")
    assert [p["containerPort"] for p in postgres["ports"]] == [5432]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert "pg_isready" in " ".join(postgres[probe]["exec"]["command"]), probe
    # The StatefulSet's governing Service is the headless one MLflow connects through.
    service = objects[("Service", statefulset["spec"]["serviceName"])]
    assert service["spec"]["clusterIP"] == "None"
    assert selects(
        service["spec"]["selector"], statefulset["spec"]["template"]["metadata"]["labels"]
    )


# --- who reaches what -------------------------------------------------------------------


def test_network_policies_admit_only_mlflow_to_the_database_and_the_namespace_to_mlflow():
    docs = render(KUBEFLOW_USER)
    objects = by_kind_and_name(docs)
    mlflow_labels = objects[("Deployment", "mlflow")]["spec"]["template"]["metadata"]["labels"]
    postgres_labels = objects[("StatefulSet", "mlflow-postgres")]["spec"]["template"]["metadata"][
        "labels"
    ]
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]

    [database] = [p for p in policies if selects(p["spec"]["podSelector"], postgres_labels)]
    assert database["spec"]["policyTypes"] == ["Ingress"]
    [rule] = database["spec"]["ingress"]
    [source] = rule["from"]
    assert set(source) == {"podSelector"}  # this namespace only, no namespaceSelector or ipBlock
    assert selects(source["podSelector"], mlflow_labels)
    assert not selects(source["podSelector"], postgres_labels)
    assert [p["port"] for p in rule["ports"]] == [5432]

    [server] = [p for p in policies if selects(p["spec"]["podSelector"], mlflow_labels)]
    [rule] = server["spec"]["ingress"]
    assert rule["from"] == [{"podSelector": {}}]  # every pod of the namespace, no other
    assert [p["port"] for p in rule["ports"]] == [5000]

    # KFP runs pipeline pods without an Istio sidecar; under STRICT mTLS they could not reach
    # a server inside the mesh.
    for _, template in pod_templates(docs):
        if template["metadata"]["labels"] in (mlflow_labels, postgres_labels):
            assert template["metadata"]["annotations"]["sidecar.istio.io/inject"] == "false"


# --- the steps' RBAC --------------------------------------------------------------------


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
    docs = by_kind_and_name(render(KUBEFLOW_USER))
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
    role = next(d for d in render(KUBEFLOW_USER) if d["kind"] == "Role")
    role["rules"] = [{"apiGroups": ["serving.kserve.io"], "resources": ["inferenceservices"]}]
    with pytest.raises(kubernetes_validate.ValidationError, match="'verbs' is a required property"):
        kubernetes_validate.validate(role, KUBERNETES_VERSION, strict=True)


# --- serving: the traffic-capture bucket's governance (manifests/serving) -----------------

SERVING = ROOT / "manifests" / "serving"
SERVING_SECRETS = {
    "loopline-minio-admin": {"accesskey", "secretkey"},
    "loopline-serving-s3": {"accesskey", "secretkey"},
    "loopline-monitoring-s3": {"accesskey", "secretkey"},
}


def test_serving_renders_valid_unprivileged_objects_without_credentials():
    docs = render(SERVING)
    for doc in docs:
        if doc["apiVersion"].startswith("serving.kserve.io/"):
            schemas.validate_kserve(doc)
        else:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        assert "namespace" not in doc["metadata"], doc["metadata"]
    assert not [d for d in docs if d["kind"] == "Secret"]
    assert credential_literals(docs) == []
    read: dict[str, set[str]] = {}
    for _doc, template in pod_templates(docs):
        spec = template["spec"]
        assert spec.get("automountServiceAccountToken") is False
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        for c in all_containers(template):
            security = spec["securityContext"] | c.get("securityContext", {})
            assert security["runAsNonRoot"] is True and security["runAsUser"] > 0
            assert security["allowPrivilegeEscalation"] is False
            assert security["readOnlyRootFilesystem"] is True
            assert security["capabilities"]["drop"] == ["ALL"]
            assert {"cpu", "memory"} <= set(c["resources"]["requests"])
            for entry in c.get("env", []):
                ref = entry.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    read.setdefault(ref["name"], set()).add(ref["key"])
    assert read == SERVING_SECRETS


def test_the_capture_setup_job_applies_the_shipped_json_files():
    import json

    docs = render(SERVING)
    job = by_kind_and_name(docs)[("Job", "loopline-capture-bucket-setup")]
    spec = job["spec"]["template"]["spec"]
    [mc] = spec["containers"]
    volume = next(v for v in spec["volumes"] if v["name"] == "config")
    mount = next(m for m in mc["volumeMounts"] if m["name"] == "config")
    configmap = by_kind_and_name(docs)[("ConfigMap", volume["configMap"]["name"])]
    files = ("capture-lifecycle.json", "capture-writer-policy.json", "capture-reader-policy.json")
    for name in files:
        assert configmap["data"][name] == (SERVING / name).read_text()
    script = command_line(mc, "ns")[-1]
    root = mount["mountPath"]
    assert f'mc ilm import "store/$CAPTURE_BUCKET" < {root}/capture-lifecycle.json' in script
    assert f"loopline-capture-writer {root}/capture-writer-policy.json" in script
    assert f"loopline-capture-reader {root}/capture-reader-policy.json" in script
    assert 'attach loopline-capture-writer "$SERVING_ACCESS_KEY"' in script
    assert 'attach loopline-capture-reader "$MONITORING_ACCESS_KEY"' in script
    assert script.startswith("set -eu")
    # one bucket and prefix everywhere
    bucket = resolved_env(mc, "ns")["CAPTURE_BUCKET"]
    [rule] = json.loads((SERVING / "capture-lifecycle.json").read_text())["Rules"]
    prefix = rule["Filter"]["Prefix"]
    for name in files[1:]:
        policy = json.loads((SERVING / name).read_text())
        resources = {r for s in policy["Statement"] for r in s["Resource"]}
        assert resources == {f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/{prefix}*"}
    # mc needs a writable config folder on a read-only root filesystem
    tmp = next(m for m in mc["volumeMounts"] if m["name"] == "tmp")["mountPath"]
    assert resolved_env(mc, "ns")["MC_CONFIG_DIR"].startswith(tmp + "/")


def test_the_capture_secret_template_is_valid_and_not_applied_by_kustomize():
    from components.lib.storage import S3_SECRET_KEYS

    template = SERVING / "capture-s3-secret.template.yaml"
    docs = [d for d in yaml.safe_load_all(template.read_text()) if d]
    for doc in docs:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        assert set(doc["stringData"]) == set(S3_SECRET_KEYS)
        assert all(v.startswith("REPLACE-") for v in doc["stringData"].values())
    assert {d["metadata"]["name"] for d in docs} == set(SERVING_SECRETS) - {"loopline-minio-admin"}
    kustomization = yaml.safe_load((SERVING / "kustomization.yaml").read_text())
    assert template.name not in kustomization.get("resources", [])


# --- serving --------------------------------------------------------------------------------


def test_the_serving_runtime_runs_the_serving_image_with_the_servers_arguments():
    from components import _images
    from components.serving.__main__ import build_parser

    docs = render(KUBEFLOW_USER)
    runtime = by_kind_and_name(docs)[("ServingRuntime", "loopline-serving")]
    schemas.validate_kserve(runtime)
    (server,) = runtime["spec"]["containers"]
    assert server["name"] == "kserve-container"
    assert server["image"] == _images.SERVING_IMAGE
    assert {"v1", "v2"} <= set(runtime["spec"]["protocolVersions"])
    assert runtime["spec"]["supportedModelFormats"][0]["name"] == "loopline"
    # The arguments parse with the server's own parser (KServe's parser + ours), as the
    # container's entry point `python -m components.serving` will parse them, with the
    # arguments push adds per InferenceService.
    import argparse

    kserve_like = argparse.ArgumentParser(add_help=False)
    kserve_like.add_argument("--model_name")
    kserve_like.add_argument("--http_port", type=int)
    kserve_like.add_argument("--enable_grpc")
    args = [a.replace("{{.Name}}", "bikeshare") for a in server["args"]]
    parsed = build_parser(kserve_like).parse_args(
        [*args, "--model_version=3", "--manifest_sha256=" + "a" * 64]
    )
    assert parsed.model_dir == "/mnt/models" and parsed.model_name == "bikeshare"
    assert parsed.capture_uri.startswith("s3://loopline-capture/")
    assert server["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    env = {e["name"]: e for e in server["env"]}
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]["name"] == "loopline-serving-s3"


def test_the_kserve_schema_check_catches_a_misspelt_field():
    import jsonschema

    runtime = by_kind_and_name(render(KUBEFLOW_USER))[("ServingRuntime", "loopline-serving")]
    runtime["spec"]["protocolVersion"] = ["v2"]  # misspelt: protocolVersions
    with pytest.raises(jsonschema.ValidationError, match="protocolVersion"):
        schemas.validate_kserve(runtime)


# --- serving: the InferenceServices push creates (components/lib/inferenceservice.py) ------


def test_the_serving_account_carries_the_storage_initializers_secret():
    from components.lib import inferenceservice

    docs = render(SERVING)
    account = by_kind_and_name(docs)[("ServiceAccount", inferenceservice.SERVICE_ACCOUNT)]
    kubernetes_validate.validate(account, KUBERNETES_VERSION, strict=True)
    assert account["secrets"] == [{"name": "loopline-models-s3"}]
    assert account["automountServiceAccountToken"] is False
    # and it is in the namespace the kubeflow-user overlay deploys to
    assert ("ServiceAccount", "loopline-serving") in by_kind_and_name(render(KUBEFLOW_USER))


def test_the_models_secret_template_is_kserves_s3_format_and_not_applied_by_kustomize():
    template = SERVING / "models-s3-secret.template.yaml"
    [secret] = [d for d in yaml.safe_load_all(template.read_text()) if d]
    kubernetes_validate.validate(secret, KUBERNETES_VERSION, strict=True)
    assert secret["metadata"]["name"] == "loopline-models-s3"
    # KServe's default key names (inferenceservice-config credentials.s3.*)
    assert set(secret["stringData"]) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    assert all(v.startswith("REPLACE-") for v in secret["stringData"].values())
    annotations = secret["metadata"]["annotations"]
    assert set(annotations) == {
        "serving.kserve.io/s3-endpoint",
        "serving.kserve.io/s3-usehttps",
        "serving.kserve.io/s3-region",
    }
    assert f"http://{annotations['serving.kserve.io/s3-endpoint']}" == KUBEFLOW_OBJECT_STORE
    kustomization = yaml.safe_load((SERVING / "kustomization.yaml").read_text())
    assert template.name not in kustomization.get("resources", [])
    assert not [d for d in render(SERVING) if d["kind"] == "Secret"]


def test_inferenceservices_select_the_shipped_runtime_account_and_model_format():
    from components.lib import inferenceservice
    from components.lib.deployment import ModelRef

    docs = by_kind_and_name(render(KUBEFLOW_USER))
    runtime = docs[("ServingRuntime", inferenceservice.RUNTIME)]
    assert ("ServiceAccount", inferenceservice.SERVICE_ACCOUNT) in docs
    formats = {f["name"] for f in runtime["spec"]["supportedModelFormats"]}
    assert inferenceservice.MODEL_FORMAT in formats
    (server,) = runtime["spec"]["containers"]
    assert server["name"] == inferenceservice.CONTAINER
    ref = ModelRef(
        "bikeshare", "3", "s3://loopline-models/models/bikeshare/" + "a" * 64 + "/", "a" * 64
    )
    for mode in ("knative", "standard"):
        obj = inferenceservice.build(ref, "kubeflow-user-example-com", mode)
        schemas.validate_kserve(obj)
        assert obj["spec"]["predictor"]["serviceAccountName"] == "loopline-serving"
        assert obj["spec"]["predictor"]["model"]["runtime"] == runtime["metadata"]["name"]


def test_the_runner_role_may_drive_a_rollout_and_its_shadow():
    role = by_kind_and_name(render(KUBEFLOW_USER))[("Role", "loopline-pipeline-runner")]
    rules = {
        (g, r): set(rule["verbs"])
        for rule in role["rules"]
        for g in rule["apiGroups"]
        for r in rule["resources"]
    }
    assert {"get", "create", "patch", "delete"} <= rules[("serving.kserve.io", "inferenceservices")]
    assert {"get", "create", "delete"} <= rules[("networking.istio.io", "virtualservices")]


def test_the_setup_job_creates_the_bucket_push_writes_to_by_default():
    import inspect

    from pipelines.training.pipeline import training_pipeline

    job = by_kind_and_name(render(SERVING))[("Job", "loopline-capture-bucket-setup")]
    (mc,) = job["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in mc["env"]}
    default = inspect.signature(training_pipeline.pipeline_func).parameters["models_bucket"].default
    assert env["MODELS_BUCKET"] == default
    assert 'mc mb --ignore-existing "store/$MODELS_BUCKET"' in mc["args"][0]
