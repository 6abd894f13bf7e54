"""InferenceService builders against KServe v0.20's CRD schema, and KServeDeployment driving
the fake API server + controller (tests/fake_kserve.py) through every rollout step in both
deployment modes."""

from __future__ import annotations

import copy

import jsonschema
import pytest

from components.lib import inferenceservice as isvc
from components.lib.deployment import DeploymentError, ModelRef
from tests.fake_kserve import FakeKServe
from tests.schemas import validate_kserve

pytestmark = pytest.mark.unit

NS = "team-a"
V1 = ModelRef("bikeshare", "1", "s3://models/models/bikeshare/" + "a" * 64 + "/", "a" * 64)
V2 = ModelRef("bikeshare", "2", "s3://models/models/bikeshare/" + "b" * 64 + "/", "b" * 64)
V3 = ModelRef("bikeshare", "3", "s3://models/models/bikeshare/" + "c" * 64 + "/", "c" * 64)
MODES = ("knative", "standard")


def steps(mode: str) -> dict[str, dict]:
    """Every object a rollout stores, step by step (the patches applied as the server would)."""
    first = isvc.build(V1, NS, mode)
    sa = isvc.SERVICE_ACCOUNT
    canary10 = isvc.merge_patch(first, isvc.start_canary_patch(mode, V1, V2, 10, sa))
    canary50 = isvc.merge_patch(canary10, isvc.set_percent_patch(mode, V2, 50, sa))
    return {
        "first deploy": first,
        "canary 10": canary10,
        "canary 50": canary50,
        "promote": isvc.merge_patch(canary50, isvc.promote_patch(mode, V2)),
        "rollback": isvc.merge_patch(canary50, isvc.rollback_patch(mode, V1)),
        "shadow": isvc.build(V2, NS, mode, name="bikeshare-shadow", role="shadow"),
    }


@pytest.mark.parametrize("mode", MODES)
def test_every_step_validates_against_the_crd(mode):
    for step, obj in steps(mode).items():
        try:
            validate_kserve(obj)
        except jsonschema.ValidationError as exc:  # pragma: no cover - the failure message
            pytest.fail(f"{mode} {step}: {exc.message} at {list(exc.absolute_path)}")


@pytest.mark.parametrize("mode", MODES)
def test_first_deploy_selects_the_runtime_with_the_versions_record(mode):
    obj = isvc.build(V1, NS, mode)
    assert obj["apiVersion"] == "serving.kserve.io/v1beta1" and obj["kind"] == "InferenceService"
    predictor = obj["spec"]["predictor"]
    assert predictor["model"] == {
        "modelFormat": {"name": "loopline"},
        "runtime": "loopline-serving",
        "storageUri": V1.storage_uri,
        "args": ["--model_version=1", "--manifest_sha256=" + "a" * 64],
    }
    assert predictor["serviceAccountName"] == "loopline-serving"
    annotations = obj["metadata"]["annotations"]
    assert (
        annotations["serving.kserve.io/deploymentMode"]
        == {"knative": "Knative", "standard": "Standard"}[mode]
    )
    assert (annotations.get("serving.kserve.io/enable-tag-routing") == "true") == (
        mode == "knative"
    )
    assert obj["metadata"]["labels"]["loopline.io/model-version"] == "1"
    assert isvc.ref_from_json(annotations[isvc.STABLE_ANNOTATION]) == V1
    assert "canaryTrafficPercent" not in predictor and "canary" not in obj["spec"]


def test_knative_steps_move_canary_traffic_percent():
    s = steps("knative")
    assert s["canary 10"]["spec"]["predictor"]["canaryTrafficPercent"] == 10
    assert s["canary 10"]["spec"]["predictor"]["model"]["storageUri"] == V2.storage_uri
    assert s["canary 50"]["spec"]["predictor"]["canaryTrafficPercent"] == 50
    assert "canaryTrafficPercent" not in s["promote"]["spec"]["predictor"]
    assert s["promote"]["spec"]["predictor"]["model"]["storageUri"] == V2.storage_uri
    assert s["rollback"]["spec"]["predictor"]["canaryTrafficPercent"] == 0
    assert s["rollback"]["spec"]["predictor"]["model"]["storageUri"] == V1.storage_uri


def test_standard_steps_use_named_canary_entries():
    s = steps("standard")
    [entry] = s["canary 10"]["spec"]["canary"]
    assert entry["trafficPercent"] == 10 and entry["predictor"]["name"] == "v2"
    assert entry["predictor"]["model"]["storageUri"] == V2.storage_uri
    assert s["canary 10"]["spec"]["predictor"] == s["first deploy"]["spec"]["predictor"]
    assert s["canary 50"]["spec"]["canary"][0]["trafficPercent"] == 50
    assert "canary" not in s["promote"]["spec"]
    assert s["promote"]["spec"]["predictor"]["name"] == "v2"  # retargeted, no restart
    assert s["promote"]["spec"]["predictor"]["model"]["storageUri"] == V2.storage_uri
    assert "canary" not in s["rollback"]["spec"]
    assert s["rollback"]["spec"]["predictor"] == s["first deploy"]["spec"]["predictor"]
    # canaryTrafficPercent is silently ignored in Standard mode: never written there
    assert all("canaryTrafficPercent" not in str(o) for o in s.values())


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda o: o["spec"]["predictor"].__setitem__("canaryTrafficPercent", "10"), "'10'"),
        (
            lambda o: o["spec"]["predictor"]["model"].__setitem__("storageURI", "s3://x"),
            "storageURI",
        ),
        (
            lambda o: o["spec"]["predictor"].__setitem__("serviceAcountName", "x"),
            "serviceAcountName",
        ),
        (lambda o: o["spec"]["canary"][0].pop("trafficPercent"), "trafficPercent"),
        (lambda o: o["spec"]["canary"][0].__setitem__("trafficPercent", 101), "101"),
        (lambda o: o["spec"]["canary"][0].pop("predictor"), "'predictor' is a required"),
        (lambda o: o["spec"]["canary"][0]["predictor"]["model"].pop("modelFormat"), "modelFormat"),
        (lambda o: o["spec"]["canary"][0]["predictor"].__setitem__("name", "V_2"), "V_2"),
    ],
)
def test_known_bad_objects_are_rejected_naming_the_field(mutate, field):
    obj = copy.deepcopy(steps("standard")["canary 10"])
    mutate(obj)
    with pytest.raises(jsonschema.ValidationError, match=field):
        validate_kserve(obj)


def test_canary_traffic_percent_150_is_refused_by_the_builders_not_the_crd():
    # The CRD bounds spec.canary[].trafficPercent (0..100) but not canaryTrafficPercent
    # (format int64, no maximum): the schema passes 150, so the builders must refuse it.
    obj = copy.deepcopy(steps("knative")["canary 10"])
    obj["spec"]["predictor"]["canaryTrafficPercent"] = 150
    validate_kserve(obj)
    for build_patch in (
        lambda: isvc.start_canary_patch("knative", V1, V2, 150, "sa"),
        lambda: isvc.set_percent_patch("knative", V2, 150, "sa"),
        lambda: isvc.set_percent_patch("standard", V2, -1, "sa"),
    ):
        with pytest.raises(DeploymentError, match="0 to 100"):
            build_patch()
    api = FakeKServe()
    dep = deployment(api, "knative")
    dep.deploy(V1)
    dep.start_candidate(V2, 10)
    with pytest.raises(DeploymentError, match="150"):
        dep.set_percent(150)


def test_builders_refuse_bad_input():
    with pytest.raises(DeploymentError, match="0 to 100"):
        isvc.start_canary_patch("knative", V1, V2, 150, "sa")
    with pytest.raises(DeploymentError, match="deployment mode"):
        isvc.build(V1, NS, "Serverless")
    with pytest.raises(DeploymentError, match="cannot name"):
        isvc.build(ModelRef("Bike_Share", "1", "s3://b/x/", "a" * 64), NS)
    with pytest.raises(DeploymentError, match="manifest sha256"):
        isvc.build(ModelRef("bikeshare", "1", "s3://b/x/", ""), NS)


def test_shadow_pair_mirrors_the_stable_predictor_to_the_shadow():
    shadow = steps("knative")["shadow"]
    validate_kserve(shadow)
    assert shadow["metadata"]["name"] == "bikeshare-shadow"
    assert shadow["metadata"]["labels"]["loopline.io/role"] == "shadow"
    vs = isvc.build_mirror("bikeshare", NS)
    assert vs["apiVersion"] == "networking.istio.io/v1beta1" and vs["kind"] == "VirtualService"
    assert set(vs) == {"apiVersion", "kind", "metadata", "spec"}
    assert set(vs["spec"]) == {"hosts", "gateways", "http"}
    stable_host = f"bikeshare-predictor.{NS}.svc.cluster.local"
    assert vs["spec"]["hosts"] == [stable_host] and vs["spec"]["gateways"] == ["mesh"]
    [route] = vs["spec"]["http"]
    assert set(route) == {"route", "mirror", "mirrorPercentage"}
    assert route["route"] == [{"destination": {"host": stable_host}, "weight": 100}]
    assert route["mirror"] == {"host": f"bikeshare-shadow-predictor.{NS}.svc.cluster.local"}
    assert route["mirrorPercentage"] == {"value": 100.0}
    with pytest.raises(DeploymentError, match="mirror percentage"):
        isvc.build_mirror("bikeshare", NS, 0)


def test_merge_patch_follows_rfc_7386():
    target = {"a": 1, "b": {"c": 2, "d": [1, 2]}, "e": "x"}
    patch = {"a": None, "b": {"c": 3, "d": [9]}, "f": {"g": None, "h": 1}}
    assert isvc.merge_patch(target, patch) == {"b": {"c": 3, "d": [9]}, "e": "x", "f": {"h": 1}}
    assert target == {"a": 1, "b": {"c": 2, "d": [1, 2]}, "e": "x"}  # not modified


# --- KServeDeployment over the fake API server + controller ----------------------------------


def deployment(api: FakeKServe, mode: str, **kwargs) -> isvc.KServeDeployment:
    return isvc.KServeDeployment(
        api, "bikeshare", NS, mode, validate=validate_kserve, sleep=lambda s: None, **kwargs
    )


@pytest.mark.parametrize("mode", MODES)
def test_canary_walk_to_promotion(mode):
    api = FakeKServe(ready_after=2)
    dep = deployment(api, mode)
    assert dep.get() is None
    dep.deploy(V1)
    first = dep.get()
    assert first.stable == V1 and first.candidate is None and not first.ready
    assert dep.wait_ready(60).ready
    assert api.served(NS, "bikeshare") == {"1": 100}

    dep.start_candidate(V2, 10)
    traffic = dep.wait_ready(60)
    assert (traffic.stable, traffic.candidate, traffic.candidate_percent) == (V1, V2, 10)
    assert api.served(NS, "bikeshare") == {"1": 90, "2": 10}

    dep.set_percent(50)
    assert dep.wait_ready(60).candidate_percent == 50
    assert api.served(NS, "bikeshare") == {"1": 50, "2": 50}

    dep.promote()
    traffic = dep.wait_ready(60)
    assert (traffic.stable, traffic.candidate, traffic.candidate_percent) == (V2, None, 0)
    assert api.served(NS, "bikeshare") == {"2": 100}
    obj = api.get_namespaced_custom_object(isvc.GROUP, isvc.VERSION, NS, isvc.PLURAL, "bikeshare")
    assert obj["metadata"]["labels"]["loopline.io/model-version"] == "2"
    if mode == "knative":
        predictor = obj["status"]["components"]["predictor"]
        assert predictor["latestRolledoutRevision"] == "bikeshare-predictor-00002"
        assert predictor["previousRolledoutRevision"] == "bikeshare-predictor-00001"
        assert api.revisions(NS, "bikeshare") == [
            "bikeshare-predictor-00001",
            "bikeshare-predictor-00002",
        ]
    else:
        # promotion retargeted the stable predictor to the canary's Deployment; v1's is gone
        assert api.revisions(NS, "bikeshare") == ["bikeshare-v2-predictor"]
        assert "canaryStatuses" not in obj["status"]

    # the next candidate splits against the promoted version
    dep.start_candidate(V3, 10)
    dep.wait_ready(60)
    assert api.served(NS, "bikeshare") == {"2": 90, "3": 10}


@pytest.mark.parametrize("mode", MODES)
def test_canary_rollback_gives_the_stable_version_everything(mode):
    api = FakeKServe()
    dep = deployment(api, mode)
    dep.deploy(V1)
    dep.wait_ready(60)
    dep.start_candidate(V2, 10)
    dep.set_percent(50)
    dep.wait_ready(60)
    dep.rollback()
    traffic = dep.wait_ready(60)
    assert (traffic.stable, traffic.candidate, traffic.candidate_percent) == (V1, None, 0)
    assert api.served(NS, "bikeshare") == {"1": 100}
    obj = api.get_namespaced_custom_object(isvc.GROUP, isvc.VERSION, NS, isvc.PLURAL, "bikeshare")
    assert obj["spec"]["predictor"]["model"]["storageUri"] == V1.storage_uri
    if mode == "knative":
        traffic = obj["status"]["components"]["predictor"]["traffic"]
        assert {t["revisionName"]: t["percent"] for t in traffic} == {
            "bikeshare-predictor-00003": 0,  # the stable model again, at 0%
            "bikeshare-predictor-00001": 100,
        }
        assert obj["spec"]["predictor"]["canaryTrafficPercent"] == 0
    else:
        assert "canary" not in obj["spec"] and api.revisions(NS, "bikeshare") == [
            "bikeshare-predictor"
        ]
    # a later candidate still splits against the stable version, not the rolled-back one
    dep.start_candidate(V3, 20)
    dep.wait_ready(60)
    assert api.served(NS, "bikeshare") == {"1": 80, "3": 20}


@pytest.mark.parametrize("mode", MODES)
def test_annotations_are_stored_and_read_back_and_a_second_run_resumes(mode):
    api = FakeKServe()
    dep = deployment(api, mode)
    dep.deploy(V1)
    dep.start_candidate(V2, 10)
    dep.annotate({"loopline.io/rollout-step": "1", "loopline.io/rollout-strategy": "canary"})
    with pytest.raises(DeploymentError, match="start with"):
        dep.annotate({"other": "x"})

    # a second process (the resumed rollout) reads everything from the object
    again = deployment(api, mode)
    traffic = again.get()
    assert traffic.annotations == {
        "loopline.io/rollout-step": "1",
        "loopline.io/rollout-strategy": "canary",
    }
    assert (traffic.stable, traffic.candidate, traffic.candidate_percent) == (V1, V2, 10)
    writes = len(api.writes())
    again.deploy(V1)  # the first deploy again: nothing to do
    again.start_candidate(V2, 10)  # the same step again
    again.set_percent(10)
    again.annotate({"loopline.io/rollout-step": "1"})
    assert len(api.writes()) == writes
    again.annotate({"loopline.io/rollout-step": ""})  # "" removes the key
    assert "loopline.io/rollout-step" not in again.get().annotations
    again.promote()
    writes = len(api.writes())
    again.promote()  # repeated after it completed
    again.rollback()  # nothing left to roll back
    assert len(api.writes()) == writes
    assert again.wait_ready(60).stable == V2


@pytest.mark.parametrize("mode", MODES)
def test_conflicting_steps_are_refused(mode):
    api = FakeKServe()
    dep = deployment(api, mode)
    with pytest.raises(DeploymentError, match="not found"):
        dep.start_candidate(V2, 10)
    dep.deploy(V1)
    with pytest.raises(DeploymentError, match="already serves version 1"):
        dep.deploy(V2)
    with pytest.raises(DeploymentError, match="no candidate"):
        dep.set_percent(10)
    dep.start_candidate(V2, 10)
    with pytest.raises(DeploymentError, match="candidate version 2 is already running"):
        dep.start_candidate(V3, 10)
    other = "standard" if mode == "knative" else "knative"
    with pytest.raises(DeploymentError, match="KServe does not change the mode"):
        deployment(api, other).get()


@pytest.mark.parametrize("mode", MODES)
def test_a_failing_revision_makes_wait_ready_raise_naming_the_reason(mode):
    api = FakeKServe()
    api.fail(
        lambda model: model["model"]["storageUri"] == V2.storage_uri,
        "RevisionFailed",
        "model bikeshare NOT loaded: IntegrityError: file model.skops does not match the manifest",
    )
    clock = iter(range(0, 1000, 5))
    dep = deployment(api, mode, clock=lambda: next(clock))
    dep.deploy(V1)
    dep.wait_ready(60)
    dep.start_candidate(V2, 10)
    with pytest.raises(DeploymentError) as caught:
        dep.wait_ready(30)
    message = str(caught.value)
    assert "not ready after 30 s" in message
    assert "RevisionFailed" in message and "does not match the manifest" in message
    assert ("CanaryReady" if mode == "standard" else "Ready is False") in message
    dep.rollback()
    assert dep.wait_ready(30).stable == V1


def test_wait_ready_names_a_pending_condition_on_timeout():
    api = FakeKServe(ready_after=100)
    clock = iter(range(0, 1000, 5))
    dep = deployment(api, "knative", clock=lambda: next(clock))
    dep.deploy(V1)
    with pytest.raises(DeploymentError, match="Ready is Unknown .RevisionMissing"):
        dep.wait_ready(20)


def test_knative_urls_come_from_tag_routing():
    api = FakeKServe()
    dep = deployment(api, "knative")
    dep.deploy(V1)
    dep.wait_ready(60)
    assert dep.candidate_url() is None
    assert dep.stable_url() == f"http://bikeshare-predictor.{NS}.example.com"
    dep.start_candidate(V2, 0)  # blue-green: the candidate at 0%, reachable by its tag
    traffic = dep.wait_ready(60)
    assert traffic.candidate == V2 and traffic.candidate_percent == 0
    assert api.served(NS, "bikeshare") == {"1": 100}
    assert dep.candidate_url() == f"http://latest-bikeshare-predictor.{NS}.example.com"
    assert dep.stable_url() == f"http://prev-bikeshare-predictor.{NS}.example.com"
    # without tag routing there is no URL for the candidate alone
    plain = FakeKServe()
    dep = isvc.KServeDeployment(plain, "bikeshare", NS, "knative", tag_routing=False)
    dep.deploy(V1)
    dep.start_candidate(V2, 0)
    dep.get()
    assert dep.candidate_url() is None


def test_standard_candidate_url_is_the_canarys_own_service():
    api = FakeKServe()
    dep = deployment(api, "standard")
    dep.deploy(V1)
    dep.start_candidate(V2, 0)
    assert dep.candidate_url() == f"http://bikeshare-v2-predictor.{NS}.svc.cluster.local"


@pytest.mark.parametrize("mode", MODES)
def test_shadow_runs_a_second_service_behind_a_mirror(mode):
    api = FakeKServe()
    dep = deployment(api, mode)
    dep.deploy(V1)
    dep.wait_ready(60)
    with pytest.raises(DeploymentError, match="mirrored traffic only"):
        dep.start_candidate(V2, 10, mirror=True)
    dep.start_candidate(V2, 0, mirror=True)
    dep.start_candidate(V2, 0, mirror=True)  # idempotent
    traffic = dep.wait_ready(60)
    assert traffic.mirror and traffic.candidate == V2 and traffic.candidate_percent == 0
    assert api.served(NS, "bikeshare") == {"1": 100}
    assert api.served(NS, "bikeshare-shadow") == {"2": 100}
    vs = api.get_namespaced_custom_object(
        isvc.ISTIO_GROUP, isvc.ISTIO_VERSION, NS, isvc.VIRTUAL_SERVICES, "bikeshare-shadow"
    )
    assert vs["spec"]["http"][0]["mirror"]["host"].startswith("bikeshare-shadow-predictor.")
    assert (
        dep.candidate_url()
        == api.get_namespaced_custom_object(
            isvc.GROUP, isvc.VERSION, NS, isvc.PLURAL, "bikeshare-shadow"
        )["status"]["url"]
    )
    with pytest.raises(DeploymentError, match="shadow"):
        dep.set_percent(10)
    dep.promote()
    traffic = dep.wait_ready(60)
    assert (traffic.stable, traffic.candidate, traffic.mirror) == (V2, None, False)
    assert api.served(NS, "bikeshare") == {"2": 100}
    assert [k[3] for k in api.objects] == ["bikeshare"]  # the shadow and the mirror are gone


def test_shadow_rollback_removes_the_pair():
    api = FakeKServe()
    dep = deployment(api, "knative")
    dep.deploy(V1)
    dep.start_candidate(V2, 0, mirror=True)
    dep.rollback()
    assert [k[3] for k in api.objects] == ["bikeshare"]
    assert dep.wait_ready(60).stable == V1 and api.served(NS, "bikeshare") == {"1": 100}


def test_every_object_sent_goes_through_the_validate_hook():
    seen = []
    api = FakeKServe()
    dep = isvc.KServeDeployment(api, "bikeshare", NS, "standard", validate=seen.append)
    dep.deploy(V1)
    dep.start_candidate(V2, 10)
    dep.set_percent(50)
    dep.promote()
    assert len(seen) == 4 and all(o["kind"] == "InferenceService" for o in seen)
    assert seen[2]["spec"]["canary"][0]["trafficPercent"] == 50

    def refuse(obj):
        raise jsonschema.ValidationError("refused by the schema")

    bad = isvc.KServeDeployment(FakeKServe(), "bikeshare", NS, "knative", validate=refuse)
    with pytest.raises(jsonschema.ValidationError):
        bad.deploy(V1)


def test_fake_api_server_answers_like_the_api_server():
    from kubernetes.client.exceptions import ApiException

    api = FakeKServe()
    args = (isvc.GROUP, isvc.VERSION, NS, isvc.PLURAL)
    with pytest.raises(ApiException) as missing:
        api.get_namespaced_custom_object(*args, "nothing")
    assert missing.value.status == 404
    body = isvc.build(V1, NS)
    api.create_namespaced_custom_object(*args, body)
    with pytest.raises(ApiException) as exists:
        api.create_namespaced_custom_object(*args, body)
    assert exists.value.status == 409
    stale = api.get_namespaced_custom_object(*args, "bikeshare")
    api.patch_namespaced_custom_object(*args, "bikeshare", {"metadata": {"labels": {"x": "y"}}})
    with pytest.raises(ApiException) as conflict:
        api.replace_namespaced_custom_object(*args, "bikeshare", stale)
    assert conflict.value.status == 409
    now = api.get_namespaced_custom_object(*args, "bikeshare")
    assert now["metadata"]["generation"] == 1  # metadata only: no new generation
    # the webhook: no mode change, no spec.canary in Knative mode
    with pytest.raises(ApiException, match="deploymentMode cannot be changed"):
        api.patch_namespaced_custom_object(
            *args, "bikeshare", {"metadata": {"annotations": {isvc.DEPLOYMENT_MODE: "Standard"}}}
        )
    with pytest.raises(ApiException, match="only in Standard"):
        api.patch_namespaced_custom_object(
            *args, "bikeshare", {"spec": {"canary": [isvc.canary_entry(V2, 10, "sa")]}}
        )
    # and KServeDeployment turns a refusal into a DeploymentError naming it
    dep = deployment(FakeKServe(), "standard")
    dep.deploy(V1)
    over = isvc.canary_entry(V3, 95, "loopline-serving")
    obj = dep.api.get_namespaced_custom_object(*args, "bikeshare")
    with pytest.raises(DeploymentError, match="HTTP 400.*sum to more than 100"):
        dep._patch(obj, {"spec": {"canary": [isvc.canary_entry(V2, 10, "loopline-serving"), over]}})
    api.delete_namespaced_custom_object(*args, "bikeshare")
    with pytest.raises(ApiException) as gone:
        api.delete_namespaced_custom_object(*args, "bikeshare")
    assert gone.value.status == 404
