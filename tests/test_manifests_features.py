"""manifests/features: the feature store on a cluster (Redis online store, Feast feature server).

Rendered as `kubectl apply -k` would and validated against Kubernetes' schemas (strict), and
checked for what a cluster would otherwise reveal only at run time: that the feature server's
feature_store.yaml is the repository's template as components/lib/featurestore.py renders the
`cluster` target, that every `${VAR}` Feast expands in it is in the server's environment,
that the connection string, Services, probes and NetworkPolicies point at each other, and
that no credential is written anywhere but in a Secret reference. The store itself (Feast
against a real Redis and S3 endpoint) is exercised in
components/materialize/tests/test_features_cluster.py.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import kubernetes_validate
import pytest
import yaml

from components import _images
from components.lib import featurestore
from tests.test_manifests import (
    DEV,
    KUBEFLOW_OBJECT_STORE,
    KUBEFLOW_USER,
    KUBERNETES_VERSION,
    OVERLAYS,
    ROOT,
    all_containers,
    by_kind_and_name,
    command_line,
    container,
    credential_literals,
    pod_templates,
    render,
    resolved_env,
)

FEATURES = ROOT / "manifests" / "features"
NAMESPACE = "kubeflow-user-example-com"
FEATURES_SECRETS = {
    "loopline-redis": {"password"},
    "mlpipeline-minio-artifact": {"accesskey", "secretkey"},
}
# Pods as the cluster labels them: a KFP v2 task (driver / executor), a KServe predictor, and
# two that must get nothing: a notebook and the MLflow server.
KFP_TASK = {"pipelines.kubeflow.org/v2_component": "true", "workflows.argoproj.io/workflow": "x"}
PREDICTOR = {"serving.kserve.io/inferenceservice": "bikeshare", "component": "predictor"}
NOTEBOOK = {"notebook-name": "my-notebook", "statefulset": "my-notebook"}
MLFLOW = {"app.kubernetes.io/name": "mlflow", "app.kubernetes.io/component": "tracking-server"}


def matches(selector: dict, labels: dict) -> bool:
    """A LabelSelector as Kubernetes evaluates it (matchLabels and matchExpressions)."""
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions", []):
        key, operator = expression["key"], expression["operator"]
        values = expression.get("values", [])
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[operator]
        if not ok:
            return False
    return True


def admitted(policy: dict, labels: dict, port: int) -> bool:
    """Whether a pod of the policy's namespace with ``labels`` may connect on ``port``."""
    for rule in policy["spec"]["ingress"]:
        if port not in [p["port"] for p in rule["ports"]]:
            continue
        for source in rule["from"]:
            assert set(source) == {"podSelector"}, source  # this namespace only
            if matches(source["podSelector"], labels):
                return True
    return False


def _objects(docs):
    objects = by_kind_and_name(docs)
    redis = objects[("StatefulSet", "loopline-redis")]
    server = objects[("Deployment", "loopline-feature-server")]
    return objects, redis, server


def _labels(workload: dict) -> dict:
    return workload["spec"]["template"]["metadata"]["labels"]


# --- rendering, schemas, security -----------------------------------------------------------


def test_the_base_renders_valid_namespace_agnostic_objects_without_secrets():
    docs = render(FEATURES)
    for doc in docs:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        assert "namespace" not in doc["metadata"], doc["metadata"]
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "loopline"
    [configmap] = [d for d in docs if d["kind"] == "ConfigMap"]
    assert configmap["metadata"]["name"].startswith("loopline-feature-store-")  # + content hash
    kinds = sorted((d["kind"], d["metadata"]["name"]) for d in docs if d["kind"] != "ConfigMap")
    assert kinds == [
        ("Deployment", "loopline-feature-server"),
        ("NetworkPolicy", "loopline-feature-server"),
        ("NetworkPolicy", "loopline-redis"),
        ("Service", "loopline-feature-server"),
        ("Service", "loopline-redis"),
        ("StatefulSet", "loopline-redis"),
    ]
    assert not [d for d in docs if d["kind"] == "Secret"]


@pytest.mark.parametrize("overlay", OVERLAYS, ids=[p.name for p in OVERLAYS])
def test_every_overlay_deploys_the_feature_store_in_its_namespace(overlay):
    docs = render(overlay)
    objects = by_kind_and_name(docs)
    namespace = yaml.safe_load((overlay / "kustomization.yaml").read_text())["namespace"]
    for key in (
        ("StatefulSet", "loopline-redis"),
        ("Service", "loopline-redis"),
        ("Deployment", "loopline-feature-server"),
        ("Service", "loopline-feature-server"),
        ("NetworkPolicy", "loopline-redis"),
        ("NetworkPolicy", "loopline-feature-server"),
    ):
        assert key in objects, key
        kubernetes_validate.validate(objects[key], KUBERNETES_VERSION, strict=True)
        assert objects[key]["metadata"]["namespace"] == namespace
    # The generated ConfigMap's hashed name reaches the Deployment's volume.
    [configmap] = [
        d
        for d in docs
        if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("loopline-feature-store-")
    ]
    volumes = objects[("Deployment", "loopline-feature-server")]["spec"]["template"]["spec"][
        "volumes"
    ]
    assert {"name": configmap["metadata"]["name"]} == next(
        v["configMap"] for v in volumes if "configMap" in v
    )


def test_the_pods_run_unprivileged_with_probes_and_resources():
    docs = render(FEATURES)
    for doc, template in pod_templates(docs):
        spec = template["spec"]
        assert spec["automountServiceAccountToken"] is False
        assert spec["enableServiceLinks"] is False
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert template["metadata"]["annotations"]["sidecar.istio.io/inject"] == "false"
        for c in all_containers(template):
            where = f"{doc['metadata']['name']}/{c['name']}"
            security = spec["securityContext"] | c.get("securityContext", {})
            assert security["runAsNonRoot"] is True and security["runAsUser"] > 0, where
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["readOnlyRootFilesystem"] is True, where
            assert security["capabilities"]["drop"] == ["ALL"], where
            assert {"cpu", "memory"} <= set(c["resources"]["requests"]), where
            assert "memory" in c["resources"]["limits"], where
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                assert probe in c, f"{where}: no {probe}"


def test_no_credential_is_a_literal_and_only_the_documented_secrets_are_read():
    docs = render(FEATURES)
    assert credential_literals(docs) == []
    read: dict[str, set[str]] = {}
    for _, template in pod_templates(docs):
        for c in all_containers(template):
            for entry in c.get("env", []):
                ref = entry.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    read.setdefault(ref["name"], set()).add(ref["key"])
    assert read == FEATURES_SECRETS
    # Nor in the rendered configuration: Feast fills the password in from the env.
    text = (FEATURES / "feature_store.yaml").read_text()
    assert re.search(r"password=\$\{REDIS_PASSWORD\}", text)
    assert "minio123" not in text and "accesskey" not in text.lower()


def test_the_credential_check_catches_a_password_written_into_the_redis_command():
    docs = render(DEV)
    redis = container(docs, "StatefulSet", "loopline-redis", "redis")
    redis["args"] = ["exec redis-server --requirepass devOnlyRedisPassword"]
    assert credential_literals(docs) == [
        "StatefulSet/loopline-redis: a secret value is written out"
    ]


def test_the_redis_secret_template_is_valid_and_not_applied_by_kustomize():
    template = FEATURES / "redis-secret.template.yaml"
    [secret] = [d for d in yaml.safe_load_all(template.read_text()) if d]
    kubernetes_validate.validate(secret, KUBERNETES_VERSION, strict=True)
    assert secret["metadata"]["name"] == "loopline-redis"
    assert set(secret["stringData"]) == FEATURES_SECRETS["loopline-redis"]
    assert all(v.startswith("REPLACE-") for v in secret["stringData"].values())
    kustomization = yaml.safe_load((FEATURES / "kustomization.yaml").read_text())
    assert template.name not in kustomization["resources"]
    # The dev overlay generates it, letters and digits only (see the template).
    dev = [
        d
        for d in render(DEV)
        if d["kind"] == "Secret" and d["metadata"]["name"].startswith("loopline-redis-")
    ]
    [generated] = dev
    assert set(generated["data"]) == {"password"}
    import base64

    assert re.fullmatch(r"[A-Za-z0-9]+", base64.b64decode(generated["data"]["password"]).decode())


# --- the configuration: one template, rendered for the cluster target ------------------------


def test_the_configmap_is_the_templates_cluster_rendering():
    sys.path.insert(0, str(FEATURES))
    try:
        import render_feature_store
    finally:
        sys.path.remove(str(FEATURES))
    where = featurestore.location(
        render_feature_store.STORAGE,
        "cluster",
        render_feature_store.REDIS,
        render_feature_store.S3_ENDPOINT,
    )
    expected = featurestore.render_config(where, "bikeshare")
    assert (FEATURES / "feature_store.yaml").read_text() == expected
    for overlay in OVERLAYS:
        [configmap] = [
            d
            for d in render(overlay)
            if d["kind"] == "ConfigMap"
            and d["metadata"]["name"].startswith("loopline-feature-store-")
        ]
        assert configmap["data"] == {"feature_store.yaml": expected}
    # and the script's own check agrees (what a contributor runs after changing the template)
    check = subprocess.run(
        [sys.executable, str(FEATURES / "render_feature_store.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_the_configuration_resolves_in_the_feature_servers_environment():
    docs = render(KUBEFLOW_USER)
    objects, redis, server = _objects(docs)
    feast = container(docs, "Deployment", "loopline-feature-server", "feast")
    env = resolved_env(feast, NAMESPACE)
    text = (FEATURES / "feature_store.yaml").read_text()
    # Feast runs os.path.expandvars over the file: every ${VAR} must be in the server's env.
    names = set(re.findall(r"\$\{(\w+)\}", text))
    assert names == {"POD_NAMESPACE", "REDIS_PASSWORD"}
    assert names <= set(env)
    assert env["REDIS_PASSWORD"] == "<secret loopline-redis/password>"
    config = yaml.safe_load(text.replace("${POD_NAMESPACE}", NAMESPACE))
    # The registry on the namespace's prefix of Kubeflow's bucket, as MLflow's artifacts are.
    assert config["registry"]["path"] == (
        f"s3://mlpipeline/private/{NAMESPACE}/feast/bikeshare/registry.db"
    )
    assert env["FEAST_S3_ENDPOINT_URL"] == env["AWS_ENDPOINT_URL"] == KUBEFLOW_OBJECT_STORE
    assert env["AWS_ACCESS_KEY_ID"] == "<secret mlpipeline-minio-artifact/accesskey>"
    # The Redis connection string names the Redis Service and its port.
    online = config["online_store"]
    assert online["type"] == "redis"
    host_port, *options = online["connection_string"].split(",")
    host, port = host_port.split(":")
    service = objects[("Service", host)]
    assert int(port) in [p["port"] for p in service["spec"]["ports"]]
    assert matches({"matchLabels": service["spec"]["selector"]}, _labels(redis))
    # The password from the Secret, and redis-py's timeouts (components/lib/network.py).
    assert options == [
        "password=${REDIS_PASSWORD}",
        "socket_connect_timeout=5",
        "socket_timeout=5",
    ]
    # The server reads the ConfigMap where its --chdir points.
    argv = command_line(feast, NAMESPACE)
    assert argv[:4] == ["feast", "--chdir", "/etc/feast", "serve"]
    mounts = {m["name"]: m["mountPath"] for m in feast["volumeMounts"]}
    assert mounts["config"] == "/etc/feast"
    assert feast["image"] == _images.FEATURES_IMAGE


def test_services_and_probes_point_at_the_servers_ports():
    docs = render(KUBEFLOW_USER)
    objects, redis, server = _objects(docs)
    feast = container(docs, "Deployment", "loopline-feature-server", "feast")
    argv = command_line(feast, NAMESPACE)
    assert "--host=0.0.0.0" in argv and "--port=6566" in argv
    ports = {p["name"]: p["containerPort"] for p in feast["ports"]}
    assert ports == {"http": 6566}
    for probe in ("startupProbe", "readinessProbe"):
        # Feast's /health answers 200 only when the registry can be read.
        assert feast[probe]["httpGet"] == {"path": "/health", "port": "http"}, probe
    service = objects[("Service", "loopline-feature-server")]
    assert [p["port"] for p in service["spec"]["ports"]] == [6566]
    assert matches({"matchLabels": service["spec"]["selector"]}, _labels(server))
    assert not matches({"matchLabels": service["spec"]["selector"]}, _labels(redis))

    db = container(docs, "StatefulSet", "loopline-redis", "redis")
    assert redis["spec"]["serviceName"] == "loopline-redis"
    assert objects[("Service", "loopline-redis")]["spec"]["clusterIP"] == "None"
    assert [p["containerPort"] for p in db["ports"]] == [6379]
    script = db["args"][0]
    # The password reaches redis-server through a private file, never its command line.
    assert "requirepass" in script and "--requirepass" not in script
    assert "--include /run/redis/auth.conf" in script and "umask 077" in script
    assert "--dir /data" in script
    for probe in ("startupProbe", "readinessProbe"):
        command = " ".join(db[probe]["exec"]["command"])
        assert 'REDISCLI_AUTH="$REDIS_PASSWORD"' in command and "ping" in command, probe
    [claim] = redis["spec"]["volumeClaimTemplates"]
    assert {m["name"]: m["mountPath"] for m in db["volumeMounts"]}[claim["metadata"]["name"]] == (
        "/data"
    )


# --- who reaches what ------------------------------------------------------------------------


def test_network_policies_admit_only_pipeline_pods_the_feature_server_and_model_servers():
    docs = render(KUBEFLOW_USER)
    objects, redis, server = _objects(docs)
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    [redis_policy] = [p for p in policies if matches(p["spec"]["podSelector"], _labels(redis))]
    [server_policy] = [p for p in policies if matches(p["spec"]["podSelector"], _labels(server))]
    for policy in (redis_policy, server_policy):
        assert policy["spec"]["policyTypes"] == ["Ingress"]

    assert admitted(redis_policy, KFP_TASK, 6379)
    assert admitted(redis_policy, _labels(server), 6379)
    assert admitted(redis_policy, PREDICTOR, 6379)
    for other in (NOTEBOOK, MLFLOW, _labels(redis)):
        assert not admitted(redis_policy, other, 6379), other
    assert not admitted(redis_policy, KFP_TASK, 6566)

    assert admitted(server_policy, KFP_TASK, 6566)
    assert admitted(server_policy, PREDICTOR, 6566)
    for other in (NOTEBOOK, MLFLOW, _labels(redis)):
        assert not admitted(server_policy, other, 6566), other

    # No other policy selects these pods (policies add up: one more could widen access).
    for policy in policies:
        if policy not in (redis_policy, server_policy):
            assert not matches(policy["spec"]["podSelector"], _labels(redis))
            assert not matches(policy["spec"]["podSelector"], _labels(server))


def test_the_selector_check_reads_match_expressions():
    exists = {"matchExpressions": [{"key": "a", "operator": "Exists"}]}
    assert matches(exists, {"a": "x"}) and not matches(exists, {"b": "x"})
    assert matches({}, {"anything": "x"})
    assert not matches({"matchLabels": {"a": "1"}}, {"a": "2"})


def test_the_render_script_reports_a_stale_file(tmp_path, monkeypatch):
    sys.path.insert(0, str(FEATURES))
    try:
        import render_feature_store
    finally:
        sys.path.remove(str(FEATURES))
    stale = tmp_path / "feature_store.yaml"
    stale.write_text("project: bikeshare\n")
    monkeypatch.setattr(render_feature_store, "OUTPUT", stale)
    assert render_feature_store.main(["--check"]) == 1
    assert render_feature_store.main([]) == 0
    assert stale.read_text() == (FEATURES / "feature_store.yaml").read_text()
    assert os.path.getsize(stale) > 0


# --- the Redis container's script, run for real ---------------------------------------------


def test_the_redis_script_and_probe_work_with_a_real_redis_server(tmp_path):
    """The container's shell script and exec probe, run with Debian's redis-server and
    redis-cli (`make system`), the pod's paths moved into a temporary folder and the port to
    a free one on loopback. Fails, never skips, without them."""
    import shutil
    import stat
    import time

    from pipelines.local_s3 import free_port

    for tool in ("redis-server", "redis-cli"):
        if not shutil.which(tool):
            pytest.fail(f"{tool} is not on PATH (Debian: apt-get install redis-server)")
    db = container(render(FEATURES), "StatefulSet", "loopline-redis", "redis")
    port = free_port()
    run, data = tmp_path / "run", tmp_path / "data"
    run.mkdir()
    data.mkdir()

    def local(text: str) -> str:
        return (
            text.replace("/run/redis", str(run))
            .replace("--dir /data", f"--dir {data}")
            .replace("--port 6379 --bind 0.0.0.0", f"--port {port} --bind 127.0.0.1")
            .replace("redis-cli -h 127.0.0.1", f"redis-cli -h 127.0.0.1 -p {port}")
        )

    script = local(db["args"][0])
    assert str(port) in script and str(data) in script
    env = {"PATH": os.environ["PATH"], "REDIS_PASSWORD": "probe0test0password"}
    server = subprocess.Popen(
        [*db["command"], script], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    probe = [local(part) for part in db["readinessProbe"]["exec"]["command"]]
    try:
        deadline = time.monotonic() + 30
        while subprocess.run(probe, env=env).returncode != 0:
            assert server.poll() is None, f"redis-server exited with {server.returncode}"
            assert time.monotonic() < deadline, "the readiness probe never passed"
            time.sleep(0.2)
        # The password file: the owner's only, and a wrong password fails the probe.
        assert stat.S_IMODE((run / "auth.conf").stat().st_mode) == 0o600
        wrong = {**env, "REDIS_PASSWORD": "wrong"}
        assert subprocess.run(probe, env=wrong, capture_output=True).returncode != 0
        # The settings reached the server (append-only file in the data folder, no RDB).
        cli = ["redis-cli", "-h", "127.0.0.1", "-p", str(port), "config", "get"]
        auth = {**env, "REDISCLI_AUTH": env["REDIS_PASSWORD"]}
        for key, value in (("appendonly", "yes"), ("save", ""), ("maxmemory-policy", "noeviction")):
            out = subprocess.run([*cli, key], env=auth, capture_output=True, text=True).stdout
            assert out.splitlines() == [key, value], out
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_the_serving_runtimes_feature_server_url_names_the_service_and_its_port():
    # The ServingRuntime's optional --feature_server_url (a comment to uncomment, or an
    # InferenceService's args) must reach the feature server that the overlay deploys beside it.
    runtime = (ROOT / "manifests" / "serving" / "servingruntime.yaml").read_text()
    [url] = re.findall(r"#\s*- --feature_server_url=(\S+)", runtime)
    host, port = re.fullmatch(r"http://([a-z0-9-]+):(\d+)", url).groups()
    docs = render(KUBEFLOW_USER)
    objects, _, server = _objects(docs)
    service = objects[("Service", host)]
    assert int(port) in [p["port"] for p in service["spec"]["ports"]]
    assert matches({"matchLabels": service["spec"]["selector"]}, _labels(server))
    # ...and the feature server's NetworkPolicy admits a KServe predictor on that port.
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    [policy] = [p for p in policies if matches(p["spec"]["podSelector"], _labels(server))]
    assert admitted(policy, PREDICTOR, int(port))
