"""Timeouts and retries of every network client (components/lib/network.py).

Two kinds of test: each client is built with the limits (the configured object is read
back), and for each kind a hung endpoint (``tests/hung.py``: a loopback socket that accepts
and never answers) ends the call with an error naming the endpoint, within a generous bound
(a thread and an Event; no timing assertions). The limits are set small through the
environment, as a pod's env would set them.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from components.lib import network
from tests.hung import HungServer, outcome_within

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}


@pytest.fixture
def hung():
    with HungServer() as server:
        yield server


@pytest.fixture
def clean_env(monkeypatch):
    for kind in network.KINDS:
        for name in network.env_names(kind):
            monkeypatch.delenv(name, raising=False)
    for name in (*network.MLFLOW_DEFAULTS, *network.AWS_DEFAULTS):
        monkeypatch.delenv(name, raising=False)
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    return monkeypatch


@pytest.fixture
def kube_default():
    """load_kube_config sets the process-wide default configuration: put it back."""
    from kubernetes import client

    saved = client.Configuration._default
    yield
    client.Configuration.set_default(saved)


def _kubeconfig(path: Path, server: str) -> str:
    path.write_text(
        f"""apiVersion: v1
kind: Config
clusters: [{{name: c, cluster: {{server: "{server}"}}}}]
users: [{{name: u, user: {{token: t}}}}]
contexts: [{{name: x, context: {{cluster: c, user: u, namespace: ns}}}}]
current-context: x
"""
    )
    return str(path)


# --------------------------------------------------------------------------- the settings


def test_defaults_are_documented_and_the_environment_overrides_them(clean_env):
    assert network.limits("s3") == network.Limits("s3", 10.0, 60.0, 3)
    assert network.limits("kubernetes") == network.Limits("kubernetes", 10.0, 30.0, 3)
    assert network.limits("kfp") == network.Limits("kfp", 10.0, 60.0, 3)
    assert network.limits("http") == network.Limits("http", 5.0, 30.0, 0)
    assert network.limits("redis") == network.Limits("redis", 5.0, 5.0, 0)
    doc = network.__doc__
    for kind, (connect, read, retries) in network.DEFAULTS.items():
        assert re.search(rf"``{kind}``.*?{connect:g}\s+{read:g}\s+{retries}\s", doc, re.S), kind
    clean_env.setenv("LOOPLINE_S3_READ_TIMEOUT", "2.5")
    clean_env.setenv("LOOPLINE_S3_RETRIES", "0")
    assert network.limits("s3") == network.Limits("s3", 10.0, 2.5, 0)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LOOPLINE_S3_READ_TIMEOUT", "soon"),
        ("LOOPLINE_S3_CONNECT_TIMEOUT", "0"),
        ("LOOPLINE_KFP_READ_TIMEOUT", "-1"),
        ("LOOPLINE_KUBERNETES_RETRIES", "1.5"),
        ("LOOPLINE_HTTP_RETRIES", "-2"),
    ],
)
def test_a_bad_value_is_refused_naming_the_variable(clean_env, name, value):
    clean_env.setenv(name, value)
    kind = name.split("_")[1].lower()
    with pytest.raises(network.NetworkConfigError, match=f"{name}='{re.escape(value)}'"):
        network.limits(kind)


# --------------------------------------------------------------------------- built with them


def test_every_minio_client_of_the_library_is_built_with_the_s3_limits(clean_env):
    from components.lib import storage, window

    clean_env.setenv("LOOPLINE_S3_READ_TIMEOUT", "7")
    for client in (
        storage._client("s3://b/k", "127.0.0.1:9", False, "uri"),
        window.client("127.0.0.1:9", True),
    ):
        pool = client._http.connection_pool_kw
        assert (pool["timeout"].connect_timeout, pool["timeout"].read_timeout) == (10.0, 7.0)
        retries = pool["retries"]
        assert (retries.total, retries.connect, retries.read) == (3, 3, 3)
        assert set(retries.status_forcelist) == {500, 502, 503, 504}
    assert storage._client("s3://b/k", "h:1", True, "u")._http.connection_pool_kw["cert_reqs"] == (
        "CERT_REQUIRED"
    )


def test_one_place_builds_each_kind_of_client():
    """No component builds a MinIO, Kubernetes or KFP client around components.lib.network
    (the serving image's capture writer keeps its own bounded client: see network.py)."""
    allowed = {
        r"\bMinio\(": {"components/lib/storage.py", "components/serving/capture.py"},
        r"CustomObjectsApi\(": {"components/lib/inferenceservice.py"},
        r"kfp\.Client[()]": {"components/lib/kfp_api.py"},
        r"KatibClient\(": {"components/tune/katib_launcher.py"},
    }
    sources = {
        p.relative_to(ROOT).as_posix(): p.read_text()
        for p in (ROOT / "components").rglob("*.py")
        if "tests" not in p.parts
    }
    for pattern, places in allowed.items():
        found = {rel for rel, text in sources.items() if re.search(pattern, text)}
        assert found <= places, (pattern, found - places)
    assert "network.kubernetes_api_client()" in sources["components/lib/inferenceservice.py"]
    assert "network.with_request_timeout" in sources["components/tune/katib_launcher.py"]


def test_the_kubernetes_api_is_built_with_the_limits(clean_env, kube_default, tmp_path):
    from components.lib.inferenceservice import cluster_api

    clean_env.setenv("LOOPLINE_KUBERNETES_READ_TIMEOUT", "9")
    api = cluster_api(_kubeconfig(tmp_path / "kubeconfig", "http://127.0.0.1:9"))
    assert network.request_timeout(api.api_client) == network.Limits("kubernetes", 10.0, 9.0, 3)
    assert api.api_client.configuration.retries == 3
    assert api.api_client.rest_client.pool_manager.connection_pool_kw["retries"].total == 3
    # A call's own _request_timeout wins; without one, the limits go with the request.
    sent = []

    class Rest:
        def GET(self, url, **kwargs):  # noqa: N802 - the REST client's method name
            sent.append(kwargs["_request_timeout"])
            raise RuntimeError("recorded")

    api.api_client.rest_client = Rest()
    for own in (None, 3):
        with pytest.raises(RuntimeError, match="recorded"):
            api.get_namespaced_custom_object("g", "v1", "ns", "p", "n", _request_timeout=own)
    assert sent == [(10.0, 9.0), 3]


def test_the_kfp_client_is_built_with_the_limits(clean_env):
    from components.lib import kfp_api as schedule

    clean_env.setenv("LOOPLINE_KFP_RETRIES", "1")
    # With a namespace, kfp.Client asks nothing at construction.
    client = schedule.connect("http://127.0.0.1:9", namespace="team-a")
    api_client = client._healthz_api.api_client
    assert network.request_timeout(api_client) == network.Limits("kfp", 10.0, 60.0, 1)
    assert api_client.rest_client.pool_manager.connection_pool_kw["retries"].total == 1
    assert client._run_api.api_client is api_client  # every API of the client shares it


def test_the_registry_gives_mlflow_loopline_defaults_only_where_unset(clean_env):
    from mlflow.environment_variables import (
        MLFLOW_HTTP_REQUEST_MAX_RETRIES,
        MLFLOW_HTTP_REQUEST_TIMEOUT,
    )

    from components.lib.registry import Registry

    Registry("http://127.0.0.1:9")
    assert (MLFLOW_HTTP_REQUEST_TIMEOUT.get(), MLFLOW_HTTP_REQUEST_MAX_RETRIES.get()) == (60, 3)
    clean_env.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "11")
    Registry("http://127.0.0.1:9")
    assert MLFLOW_HTTP_REQUEST_TIMEOUT.get() == 11


def test_http_and_redis_defaults(clean_env):
    from components.lib import gates

    assert gates.Prometheus("http://p:9090").timeout == (5.0, 30.0)
    assert gates.Prometheus("http://p:9090", timeout=2).timeout == 2
    assert network.redis_options("r:6379") == "r:6379,socket_connect_timeout=5,socket_timeout=5"
    assert network.redis_options("r:6379,socket_timeout=1,password=x") == (
        "r:6379,socket_timeout=1,password=x,socket_connect_timeout=5"
    )
    assert network.aws_env() == {"AWS_MAX_ATTEMPTS": "3", "AWS_RETRY_MODE": "standard"}


# --------------------------------------------------------------------------- a hung endpoint


def test_a_hung_s3_endpoint_fails_naming_it_after_the_retries(clean_env, hung):
    from components.lib import storage

    clean_env.setenv("LOOPLINE_S3_READ_TIMEOUT", "0.5")
    clean_env.setenv("LOOPLINE_S3_RETRIES", "1")
    error = outcome_within(lambda: storage.read_object("s3://bucket/key", hung.endpoint))
    assert isinstance(error, storage.StorageError), error
    message = str(error)
    assert f"no answer from the S3 endpoint {hung.endpoint}" in message
    assert "read 0.5 s, 1 retries" in message and "s3://bucket/key" in message
    assert hung.accepted == 2  # the first try and one retry


def test_a_hung_kubernetes_api_fails_the_cli_naming_it(
    clean_env, kube_default, hung, tmp_path, capsys
):
    from components.cli.main import main

    clean_env.setenv("LOOPLINE_KUBERNETES_READ_TIMEOUT", "0.5")
    clean_env.setenv("LOOPLINE_KUBERNETES_RETRIES", "0")
    config = _kubeconfig(tmp_path / "kubeconfig", hung.url)
    box = {}
    error = outcome_within(
        lambda: box.update(rc=main(["rollout", "status", "m", "-n", "ns", "--kubeconfig", config]))
    )
    assert error is None and box["rc"] == 1
    err = capsys.readouterr().err
    assert "cannot reach the Kubernetes API" in err and f"port={hung.port}" in err
    assert "timed out" in err and "read timeout=0.5" in err


def test_a_hung_kfp_api_fails_naming_it(clean_env, hung):
    from components.lib import kfp_api as schedule

    clean_env.setenv("LOOPLINE_KFP_READ_TIMEOUT", "0.5")
    clean_env.setenv("LOOPLINE_KFP_RETRIES", "0")
    error = outcome_within(lambda: schedule.connect(hung.url))  # asks /healthz
    assert error is not None
    assert f"port={hung.port}" in str(error) and "read timeout=0.5" in str(error)


def test_a_hung_mlflow_server_fails_naming_it(clean_env, hung):
    from components.lib.registry import Registry, Unavailable

    clean_env.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "1")
    clean_env.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    clean_env.setenv("LOOPLINE_HTTP_READ_TIMEOUT", "0.5")
    registry = Registry(hung.url)
    error = outcome_within(registry.ping)
    assert isinstance(error, Unavailable), error
    assert f"cannot reach the MLflow tracking server at {hung.url}" in str(error)
    assert "no answer to /health within the timeout (5.0, 0.5) s" in str(error)
    error = outcome_within(lambda: registry.get("m", 1))
    assert error is not None and f"port={hung.port}" in str(error), error
    assert "timed out" in str(error)


def test_a_hung_prometheus_fails_the_query_naming_it(clean_env, hung):
    from components.lib import gates

    clean_env.setenv("LOOPLINE_HTTP_READ_TIMEOUT", "0.5")
    error = outcome_within(lambda: gates.Prometheus(hung.url).query("up"))
    assert isinstance(error, gates.QueryError), error
    assert f"Prometheus at {hung.url} did not answer" in str(error)
    assert "read timeout=0.5" in str(error)


def test_the_code_a_registered_model_bundles_imports_only_bundled_modules_at_the_top():
    """A registered model carries components.lib's features and what it imports
    (registry._BUNDLED_MODULES); mlflow.pyfunc loads it with nothing else on the path. The
    network limits are imported inside storage's functions, so the bundle stays closed."""
    import ast

    from components.lib import registry

    bundled = {
        p.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
        for p in registry._BUNDLED_MODULES
    }
    for path in registry._BUNDLED_MODULES:
        for node in ast.parse((ROOT / path).read_text()).body:  # the top level only
            if not (
                isinstance(node, ast.ImportFrom) and (node.module or "").startswith("components")
            ):
                continue
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                is_module = (ROOT / (full.replace(".", "/") + ".py")).exists()
                needed = full if is_module else node.module
                assert needed in bundled, f"{path} imports {needed}, which a registered model lacks"
