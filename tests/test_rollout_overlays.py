"""manifests/rollout/{promote,rollback,step}: each renders with `kubectl kustomize` into one
partial InferenceService (a server-side apply's intent) that validates against the KServe
v0.20.0 CRD schema and carries exactly the fields its action sets; a copy with the user's
name, namespace, version and actor renders with them."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml

from components.lib.deployment import ANNOTATION_PREFIX
from tests import schemas
from tests.test_manifests import ROOT, render

ROLLOUT = ROOT / "manifests" / "rollout"
ACTIONS = {"promote": 100, "rollback": 0, "step": 50}
ACTION = ANNOTATION_PREFIX + "action"
ACTION_VERSION = ANNOTATION_PREFIX + "action-version"
ACTOR = ANNOTATION_PREFIX + "actor"


def paths(obj, prefix=()):
    """Every leaf of a nested dict as a path tuple."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield from paths(value, (*prefix, key))
    else:
        yield prefix


@pytest.mark.parametrize("action", ACTIONS)
def test_the_overlay_renders_one_valid_partial_inferenceservice(action):
    (isvc,) = render(ROLLOUT / action)
    schemas.validate_kserve(isvc)
    assert isvc == {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {
            "name": "REPLACE-WITH-MODEL-NAME",
            "namespace": "kubeflow-user-example-com",
            "annotations": {
                ACTION: action,
                ACTION_VERSION: "REPLACE-WITH-CANDIDATE-VERSION",
                ACTOR: "REPLACE-WITH-YOUR-NAME",
            },
        },
        "spec": {"predictor": {"canaryTrafficPercent": ACTIONS[action]}},
    }


def test_the_placeholder_name_is_not_a_valid_object_name():
    # An unedited copy cannot change a real InferenceService: the API server refuses the
    # name (DNS-1123: lower case).
    (isvc,) = render(ROLLOUT / "promote")
    assert isvc["metadata"]["name"] != isvc["metadata"]["name"].lower()


def test_every_action_sets_the_same_fields():
    # One field manager (loopline-operator) applying promote after step (or rollback after
    # promote) must not drop a field it owned: server-side apply removes a field its manager
    # applied before and omits now.
    shapes = {action: sorted(paths(render(ROLLOUT / action)[0])) for action in ACTIONS}
    assert len({tuple(s) for s in shapes.values()}) == 1, shapes


def test_every_annotation_has_the_rollout_prefix():
    for action in ACTIONS:
        (isvc,) = render(ROLLOUT / action)
        assert all(k.startswith(ANNOTATION_PREFIX) for k in isvc["metadata"]["annotations"])


@pytest.mark.parametrize("action", ACTIONS)
def test_a_copy_with_the_users_values_renders_with_them(tmp_path, action):
    copy = tmp_path / f"bikeshare-{action}"
    shutil.copytree(ROLLOUT / action, copy)
    kustomization = copy / "kustomization.yaml"
    text = kustomization.read_text()
    for placeholder, value in {
        "namespace: kubeflow-user-example-com": "namespace: team-a",
        "REPLACE-WITH-MODEL-NAME": "bikeshare",
        "REPLACE-WITH-CANDIDATE-VERSION": '"4"',
        "REPLACE-WITH-YOUR-NAME": "jane@example.com",
    }.items():
        assert text.count(placeholder) == 1, placeholder
        text = text.replace(placeholder, value)
    kustomization.write_text(text)
    if action == "step":
        isvc_file = copy / "inferenceservice.yaml"
        isvc_file.write_text(
            isvc_file.read_text().replace("canaryTrafficPercent: 50", "canaryTrafficPercent: 25")
        )
    (isvc,) = render(copy)
    schemas.validate_kserve(isvc)
    assert isvc["metadata"] == {
        "name": "bikeshare",
        "namespace": "team-a",
        "annotations": {ACTION: action, ACTION_VERSION: "4", ACTOR: "jane@example.com"},
    }
    percent = 25 if action == "step" else ACTIONS[action]
    assert isvc["spec"] == {"predictor": {"canaryTrafficPercent": percent}}


def test_the_kserve_schema_check_catches_a_misspelt_field():
    # (The CRD sets no range on canaryTrafficPercent; KServe's webhook checks 0..100.)
    import jsonschema

    (isvc,) = render(ROLLOUT / "promote")
    isvc["spec"]["predictor"]["canaryTrafficPercentage"] = isvc["spec"]["predictor"].pop(
        "canaryTrafficPercent"
    )
    with pytest.raises(jsonschema.ValidationError, match="canaryTrafficPercentage"):
        schemas.validate_kserve(isvc)


def test_the_readme_documents_every_overlay_and_server_side_apply():
    readme = (ROLLOUT / "README.md").read_text()
    for action in ACTIONS:
        assert f"manifests/rollout/{action}" in readme
    assert "--server-side --field-manager=loopline-operator --force-conflicts" in readme
    for key in (ACTION, ACTION_VERSION, ACTOR):
        assert key in readme
    for action in ACTIONS:
        assert "--server-side" in (ROLLOUT / action / "kustomization.yaml").read_text()


def test_the_overlays_are_relative_and_self_contained():
    # A copied folder renders on its own (no ../ resources).
    for action in ACTIONS:
        kustomization = yaml.safe_load((ROLLOUT / action / "kustomization.yaml").read_text())
        for resource in kustomization["resources"]:
            assert not os.path.isabs(resource) and ".." not in Path(resource).parts
