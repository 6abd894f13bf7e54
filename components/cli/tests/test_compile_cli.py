"""``loopline compile``: release YAML pinned by digest (every Loopline image, container images
and parameter defaults alike), loadable by kfp's own loader; the refusals, each before
anything is written; and ``python -m pipelines.compile`` sharing the same function."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
import yaml
from kfp import components as kfp_components

from components import _images
from components.cli import main as cli_main
from components.cli.tests.invoke import failed_with
from pipelines import compile as compile_mod

pytestmark = pytest.mark.unit

REGISTRY = "europe-docker.pkg.dev/acme/loopline"
DIGESTS = {f: "sha256:" + hashlib.sha256(f.encode()).hexdigest() for f in _images.FAMILIES}
FAMILY_NAMES = "|".join(_images.FAMILIES + _images.SERVICES)
# Any reference to a Loopline image by tag, under any registry.
TAGGED = re.compile(rf"[\w.-]+(?:/[\w.-]+)*/(?:{FAMILY_NAMES}):[\w.+-]+")


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli_main.main(["compile", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def pinned(tmp_path_factory) -> Path:
    """One release compile for the module: plain digests, one full reference."""
    tmp = tmp_path_factory.mktemp("release")
    digests = dict(DIGESTS)
    digests["tfdv"] = f"{REGISTRY}/tfdv@{DIGESTS['tfdv']}"
    (tmp / "digests.json").write_text(json.dumps(digests))
    out = tmp / "yaml"
    code = cli_main.main(["compile", "--image-registry", REGISTRY, "--digests",
                          str(tmp / "digests.json"), "--out-dir", str(out)])  # fmt: skip
    assert code == 0
    return out


def _pinned_ref(family: str) -> str:
    return f"{REGISTRY}/{family}@{DIGESTS[family]}"


def test_every_loopline_image_is_pinned_by_digest(pinned):
    written = sorted(str(p.relative_to(pinned)) for p in pinned.rglob("*.yaml"))
    assert written == sorted(rel for _, rel in compile_mod.TARGETS)
    seen_families = set()
    for rel in written:
        text = (pinned / rel).read_text()
        assert not TAGGED.search(text), (rel, TAGGED.search(text).group(0))
        assert f"{_images.DEFAULT_REGISTRY}/" not in text.replace(REGISTRY, ""), rel
        spec = next(yaml.safe_load_all(text))
        for executor in spec["deploymentSpec"]["executors"].values():
            if "container" not in executor:  # an importer (the store branch's feature_store_uri)
                continue
            image = executor["container"]["image"]
            family = image.split("/")[-1].split("@")[0]
            assert image == _pinned_ref(family), (rel, image)
            seen_families.add(family)
    assert seen_families == set(_images.FAMILIES)


def test_parameter_defaults_naming_an_image_are_pinned_too(pinned):
    # tune_katib's trial_image: the image Katib runs each trial in.
    for rel in ("components/tune/katib_component.yaml", "pipelines/training/pipeline.yaml"):
        text = (pinned / rel).read_text()
        defaults = re.findall(r"defaultValue: (\S*/pipeline\S*)", text)
        assert defaults and set(defaults) == {_pinned_ref("pipeline")}, (rel, defaults)
    katib = next(yaml.safe_load_all((pinned / "components/tune/katib_component.yaml").read_text()))
    trial = katib["root"]["inputDefinitions"]["parameters"]["trial_image"]
    assert trial["defaultValue"] == _pinned_ref("pipeline")


def test_the_pinned_yaml_loads_with_kfps_loader(pinned):
    from google.protobuf import json_format

    for target, rel in compile_mod.TARGETS:
        loaded = kfp_components.load_component_from_text((pinned / rel).read_text())
        assert loaded.name == target.name, rel
        spec = json_format.MessageToDict(loaded.pipeline_spec)
        images = {
            e["container"]["image"]
            for e in spec["deploymentSpec"]["executors"].values()
            if "container" in e  # importers run no image
        }
        assert images and all(re.fullmatch(rf"{re.escape(REGISTRY)}/[a-z]+@sha256:[0-9a-f]{{64}}", i)
                              for i in images), (rel, images)  # fmt: skip
    katib = kfp_components.load_component_from_text(
        (pinned / "components/tune/katib_component.yaml").read_text()
    )
    assert katib.component_spec.inputs["trial_image"].default == _pinned_ref("pipeline")


def test_check_compares_under_out_dir(pinned, capsys, tmp_path):
    digests = tmp_path / "digests.json"
    digests.write_text(json.dumps({**DIGESTS, "tfdv": f"{REGISTRY}/tfdv@{DIGESTS['tfdv']}"}))
    stale = pinned / "components/ingest/component.yaml"
    original = stale.read_text()
    try:
        stale.write_text(original.replace(DIGESTS["pipeline"], "sha256:" + "0" * 64))
        code, out, err = run(capsys, "--image-registry", REGISTRY, "--digests", str(digests),
                             "--out-dir", str(pinned), "--check")  # fmt: skip
    finally:
        stale.write_text(original)
    assert code == 1
    # Only the changed file is stale: every other pinned file matches a fresh compile.
    assert err.strip().splitlines()[-1] == (
        "stale compiled YAML (run `make compile`): components/ingest/component.yaml"
    )


@pytest.mark.parametrize(
    ("digests", "needles"),
    [
        ({**DIGESTS, "notebook": DIGESTS["pipeline"]}, ["unknown image family 'notebook'"]),
        ({**DIGESTS, "tuner": "sha256:abc"}, ["tuner", "'sha256:abc'", "64"]),
        ({**DIGESTS, "tuner": "latest"}, ["tuner", "'latest'"]),
        ({**DIGESTS, "tuner": DIGESTS["tuner"].upper()}, ["tuner", "lowercase hex"]),
        ({**DIGESTS, "tuner": f"{REGISTRY}/tfdv@{DIGESTS['tuner']}"}, ["tuner", "image 'tfdv'"]),
        ({**DIGESTS, "tuner": f"gcr.io/other/tuner@{DIGESTS['tuner']}"},
         ["tuner", "registry 'gcr.io/other'", REGISTRY]),
        ({**DIGESTS, "tuner": 7}, ["tuner", "expected a string"]),
        (["sha256:" + "0" * 64], ["JSON object"]),
    ],
)  # fmt: skip
def test_bad_digests_are_refused_before_anything_is_written(capsys, tmp_path, digests, needles):
    path = tmp_path / "digests.json"
    path.write_text(json.dumps(digests))
    out = tmp_path / "yaml"
    failed_with(
        run(capsys, "--image-registry", REGISTRY, "--digests", str(path), "--out-dir", str(out)),
        str(path),
        *needles,
    )
    assert not out.exists()


@pytest.mark.parametrize("missing", ["features", "pipeline"])
def test_a_family_without_a_digest_is_refused_before_anything_is_written(capsys, tmp_path, missing):
    path = tmp_path / "digests.json"
    path.write_text(json.dumps({f: d for f, d in DIGESTS.items() if f != missing}))
    out = tmp_path / "yaml"
    failed_with(
        run(capsys, "--image-registry", REGISTRY, "--digests", str(path), "--out-dir", str(out)),
        f"no digest for image family {missing}",
    )
    assert not out.exists()


def test_services_digests_are_accepted(tmp_path):
    # mlflow / serving run beside the pipelines: allowed in the file, named by no YAML.
    path = tmp_path / "digests.json"
    extra = {f: "sha256:" + "1" * 64 for f in _images.SERVICES}
    path.write_text(json.dumps({**DIGESTS, **extra}))
    assert _images.parse_digests(json.loads(path.read_text()), REGISTRY)["mlflow"] == (
        f"{REGISTRY}/mlflow@sha256:" + "1" * 64
    )


def test_a_missing_or_broken_digests_file_is_one_line(capsys, tmp_path):
    failed_with(
        run(capsys, "--digests", str(tmp_path / "none.json"), "--out-dir", str(tmp_path / "o")),
        "none.json",
        "cannot read",
    )
    (tmp_path / "bad.json").write_text("{pipeline: sha256}")
    failed_with(
        run(capsys, "--digests", str(tmp_path / "bad.json"), "--out-dir", str(tmp_path / "o")),
        "bad.json",
        "not JSON",
    )


def test_retargeted_yaml_never_overwrites_the_committed_yaml(capsys, tmp_path):
    before = {rel: (compile_mod.ROOT / rel).read_text() for _, rel in compile_mod.TARGETS}
    digests = tmp_path / "digests.json"
    digests.write_text(json.dumps(DIGESTS))
    for argv in (
        ["--image-registry", REGISTRY],
        ["--digests", str(digests)],
        ["--image-registry", REGISTRY, "--out-dir", str(compile_mod.ROOT)],
        ["--image-registry", REGISTRY, "--check"],
    ):
        failed_with(run(capsys, *argv), "--out-dir")
    after = {rel: (compile_mod.ROOT / rel).read_text() for _, rel in compile_mod.TARGETS}
    assert after == before
    # The module entry point refuses the same (a usage error there).
    with pytest.raises(SystemExit) as exit_:
        compile_mod.main(["--registry", REGISTRY])
    assert exit_.value.code == 2
    assert "--out-dir" in capsys.readouterr().err


def test_the_cli_and_the_module_share_one_function(monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(compile_mod, "build", lambda **kw: calls.append(kw) or 0)
    assert cli_main.main(["compile", "--check"]) == 0
    assert calls == [
        {"registry": _images.DEFAULT_REGISTRY, "digests": None, "out_dir": None, "check": True}
    ]
