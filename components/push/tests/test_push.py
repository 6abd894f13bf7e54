"""push against the real S3 endpoint and the real MLflow registry (tests/fixtures.py), with
the cluster's API faked at its boundary (tests/fake_kserve.py: KServe v0.20's semantics)."""

from __future__ import annotations

import uuid

import pytest

from components.lib import artifacts, storage
from components.lib.inferenceservice import GROUP, PLURAL, VERSION, KServeDeployment
from components.lib.registry import SERVING_URI_TAG, Registry
from components.push import executor as push
from tests.fake_kserve import FakeKServe
from tests.fitted import registrable_model
from tests.schemas import validate_kserve

pytestmark = pytest.mark.mlflow

NS = "team-a"
BUCKET = "loopline-models"


@pytest.fixture(scope="module")
def trained(tmp_path_factory, bikeshare_csv):
    return registrable_model(tmp_path_factory.mktemp("trained"), bikeshare_csv)


@pytest.fixture(scope="module")
def registry(tracking_uri) -> Registry:
    return Registry(tracking_uri, actor="pytest")


@pytest.fixture(scope="module")
def bucket(s3_client) -> str:
    if not s3_client.bucket_exists(BUCKET):
        s3_client.make_bucket(BUCKET)
    return BUCKET


def _register(registry: Registry, trained, name: str, *states: str) -> str:
    model_dir, lineage, example = trained
    version = registry.register(
        name, model_dir, {**lineage, "pipeline_run_id": "run-1"}, f"s3://stats/{name}", example
    ).version
    for state in states:
        registry.transition(name, version, state, f"test: to {state}")
    return version


def _objects(s3_client, prefix: str) -> dict[str, tuple[str, int]]:
    return {
        o.object_name: (o.etag, o.size)
        for o in s3_client.list_objects(BUCKET, prefix=prefix, recursive=True)
    }


def _factory(api: FakeKServe):
    def make(name, namespace, mode, service_account):
        return KServeDeployment(
            api, name, namespace, mode, service_account, validate=validate_kserve
        )

    return make


@pytest.mark.parametrize("mode", ["knative", "standard"])
def test_push_uploads_once_records_the_uri_and_makes_the_first_deploy(
    mode, registry, trained, tracking_uri, s3_server, s3_client, bucket, tmp_path
):
    name = f"push-{uuid.uuid4().hex[:8]}"
    version = _register(registry, trained, name, "staging", "production")
    api = FakeKServe()
    result = push.run(
        name, version, tracking_uri, s3_server, bucket, NS, mode,
        deployment_factory=_factory(api),
    )  # fmt: skip
    sha = registry.get(name, version).manifest_sha256
    uri = f"s3://{BUCKET}/models/{name}/{sha}/"
    assert result["storage_uri"] == uri and result["inference_service"] == name
    assert result["action"] == "deployed" and result["serving"] == version
    prefix = f"models/{name}/{sha}/"
    first = _objects(s3_client, prefix)
    assert result["uploaded"][-1] == prefix + artifacts.MANIFEST_FILE  # the manifest last
    assert sorted(result["uploaded"]) == sorted(first)
    assert {"MLmodel", "model.skops", artifacts.MANIFEST_FILE} <= {k[len(prefix) :] for k in first}

    # the copy is exactly the registered version: it verifies against the registry's record
    copy_dir = tmp_path / "copy"
    storage.fetch(uri, str(copy_dir), s3_server)
    artifacts.verify_mlflow_model(str(copy_dir), sha)

    # the URI is a version tag, read back through the registry
    assert registry.get(name, version).serving_uri == uri
    raw = registry.client.get_model_version(name, version).tags
    assert raw[SERVING_URI_TAG] == uri
    assert registry.get(name, version).state == "production"  # no state change

    # the first deploy's InferenceService
    obj = api.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, name)
    validate_kserve({k: v for k, v in obj.items() if k != "status"})
    predictor = obj["spec"]["predictor"]
    assert predictor["model"]["storageUri"] == uri
    assert predictor["model"]["args"] == [f"--model_version={version}", f"--manifest_sha256={sha}"]
    assert predictor["model"]["runtime"] == "loopline-serving"
    assert predictor["serviceAccountName"] == "loopline-serving"
    expected_mode = {"knative": "Knative", "standard": "Standard"}[mode]
    assert obj["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == expected_mode

    # a second push uploads nothing, leaves every object as it was, changes nothing serving
    writes = len(api.writes())
    again = push.run(
        name, version, tracking_uri, s3_server, bucket, NS, mode,
        deployment_factory=_factory(api),
    )  # fmt: skip
    assert again["uploaded"] == [] and again["action"] == "already_serving"
    assert _objects(s3_client, prefix) == first
    assert len(api.writes()) == writes
    assert "already there" in push.markdown(again)


def test_a_later_version_is_copied_but_starts_nothing(
    registry, trained, tracking_uri, s3_server, s3_client, bucket
):
    name = f"push-{uuid.uuid4().hex[:8]}"
    first = _register(registry, trained, name, "staging", "production")
    api = FakeKServe()
    push.run(name, first, tracking_uri, s3_server, bucket, NS, deployment_factory=_factory(api))
    second = _register(registry, trained, name, "staging")
    writes = len(api.writes())
    result = push.run(
        name, second, tracking_uri, s3_server, bucket, NS, deployment_factory=_factory(api)
    )
    assert result["action"] == "none" and result["serving"] == first
    assert len(api.writes()) == writes  # the rollout starts the candidate, not push
    assert registry.get(name, second).serving_uri == result["storage_uri"]
    # The same model registered twice has the same manifest: the copy is shared, not re-sent.
    if registry.get(name, second).manifest_sha256 == registry.get(name, first).manifest_sha256:
        assert result["uploaded"] == []
    report = push.markdown(result)
    assert f"version {second}" in report and "rollout" in report


def test_a_rejected_version_is_refused_and_nothing_is_written(
    registry, trained, tracking_uri, s3_server, s3_client, bucket
):
    name = f"push-{uuid.uuid4().hex[:8]}"
    version = _register(registry, trained, name, "rejected")
    api = FakeKServe()
    with pytest.raises(push.PushError, match="rejected: it must not serve"):
        push.run(
            name, version, tracking_uri, s3_server, bucket, NS, deployment_factory=_factory(api)
        )
    assert not _objects(s3_client, f"models/{name}/") and not api.writes()


def test_a_partial_copy_without_its_manifest_is_uploaded_again(
    registry, trained, tracking_uri, s3_server, s3_client, bucket, tmp_path
):
    """An upload interrupted before the manifest (written last) is not taken as complete."""
    import io

    name = f"push-{uuid.uuid4().hex[:8]}"
    version = _register(registry, trained, name, "staging", "production")
    sha = registry.get(name, version).manifest_sha256
    prefix = f"models/{name}/{sha}/"
    s3_client.put_object(BUCKET, prefix + "MLmodel", io.BytesIO(b"partial"), 7)
    result = push.run(
        name,
        version,
        tracking_uri,
        s3_server,
        bucket,
        NS,
        deployment_factory=_factory(FakeKServe()),
    )
    assert prefix + artifacts.MANIFEST_FILE in result["uploaded"]
    storage.fetch(result["storage_uri"], str(tmp_path / "c"), s3_server)
    artifacts.verify_mlflow_model(str(tmp_path / "c"), sha)


def test_bad_arguments_are_named():
    with pytest.raises(push.PushError, match="deployment_mode"):
        push.run("bikeshare", "1", "http://x", "h:9000", BUCKET, NS, "Serverless")
    with pytest.raises(push.PushError, match="mlflow_tracking_uri"):
        push.run("bikeshare", "1", "", "h:9000", BUCKET, NS)
    with pytest.raises(push.PushError, match="bucket"):
        push.storage_uri("a/b", "bikeshare", "a" * 64)
