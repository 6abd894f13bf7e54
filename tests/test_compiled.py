"""Every committed YAML loads with kfp's own loader and matches a fresh compile."""

from __future__ import annotations

import subprocess

import pytest
import yaml
from kfp import components

from components import _images
from pipelines import compile as compile_mod

TARGETS = {rel: target for target, rel in compile_mod.TARGETS}


@pytest.mark.parametrize("rel", sorted(TARGETS))
def test_committed_yaml_matches_fresh_compile(rel):
    committed = (compile_mod.ROOT / rel).read_text()
    assert committed == compile_mod.compile_one(TARGETS[rel]), f"{rel} is stale: run `make compile`"


@pytest.mark.parametrize("rel", sorted(TARGETS))
def test_committed_yaml_loads_with_kfp_loader(rel):
    loaded = components.load_component_from_file(str(compile_mod.ROOT / rel))
    assert loaded.name == TARGETS[rel].name


def _images_in(text: str) -> set[str]:
    spec = next(yaml.safe_load_all(text))
    # Importers (the training pipeline's feature store) run no image of ours.
    executors = spec["deploymentSpec"]["executors"].values()
    return {e["container"]["image"] for e in executors if "container" in e}


def _make_variables(*names: str) -> list[str]:
    """The values the Makefile gives its variables (as `make images` sees them)."""
    rule = "print-vars: ; @printf '%s\\n' " + " ".join(f"'$({n})'" for n in names)
    out = subprocess.run(
        ["make", "-s", "--no-print-directory", "--eval", rule, "print-vars"],
        cwd=compile_mod.ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return out.splitlines()


def test_yaml_names_versioned_images_and_registry_is_a_compile_option():
    text = compile_mod.compile_one(TARGETS["pipelines/training/pipeline.yaml"])
    assert _images_in(text) == {
        _images.PIPELINE_IMAGE,
        _images.TFDV_IMAGE,
        _images.TUNER_IMAGE,
        _images.FEATURES_IMAGE,  # feature_join, when the examples come from the feature store
    }
    # The committed YAML names exactly the images `make images` tags (the Makefile reads the
    # version from components/_version.py with sed, not through Python).
    registry, version, families = _make_variables("REGISTRY", "VERSION", "IMAGES")
    assert version and registry
    assert sorted(families.split()) == sorted(_images.FAMILIES + _images.SERVICES)
    # The training pipeline runs in every task family (the features image: feature_join, with
    # feature_store_uri); every family is named by some committed YAML.
    in_training = list(_images.FAMILIES)
    committed = (compile_mod.ROOT / "pipelines/training/pipeline.yaml").read_text()
    assert _images_in(committed) == {
        f"{registry}/{f}:{version}" for f in families.split() if f in in_training
    }
    named = set().union(*[_images_in((compile_mod.ROOT / rel).read_text()) for rel in TARGETS])
    assert named == {f"{registry}/{f}:{version}" for f in _images.FAMILIES}

    moved = compile_mod.compile_one(
        TARGETS["pipelines/training/pipeline.yaml"], registry="gcr.io/acme/ml"
    )
    assert _images_in(moved) == {_images.image(f, registry="gcr.io/acme/ml") for f in in_training}
    moved = compile_mod.compile_one(
        TARGETS["components/materialize/component.yaml"], registry="gcr.io/acme/ml"
    )
    assert _images_in(moved) == {_images.image("features", registry="gcr.io/acme/ml")}
    # Image names in parameter defaults move too (tune_katib's trial_image).
    assert f"{_images.DEFAULT_REGISTRY}/" not in moved


def test_check_mode_reports_a_stale_yaml(tmp_path, capsys):
    rel = "components/ingest/component.yaml"
    (tmp_path / rel).parent.mkdir(parents=True)
    (tmp_path / rel).write_text((compile_mod.ROOT / rel).read_text().replace("rows", "ROWS"))
    original = compile_mod.ROOT
    try:
        compile_mod.ROOT = tmp_path
        for _, other in compile_mod.TARGETS:
            if other != rel:
                (tmp_path / other).parent.mkdir(parents=True, exist_ok=True)
                (tmp_path / other).write_text((original / other).read_text())
        assert compile_mod.main(["--check"]) == 1
    finally:
        compile_mod.ROOT = original
    assert "stale compiled YAML" in capsys.readouterr().err


def test_secret_for_s3_credentials_is_referenced_not_embedded():
    spec = list(
        yaml.safe_load_all((compile_mod.ROOT / "pipelines/training/pipeline.yaml").read_text())
    )
    platform = spec[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    secret = platform["exec-ingest"]["secretAsEnv"][0]
    assert secret["optional"] is True
    assert {m["envVar"] for m in secret["keyToEnv"]} == {
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    }
