"""cloudbuild.yaml's steps, run here: each script rendered with Cloud Build's substitution
rules and run by bash, with only what cannot run here (the network, a registry) replaced at
the command line boundary (a `curl` that serves the upstream files from the schemas folder,
a `docker` that answers `image inspect` as a registry-pushed image would)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from components import _images
from tests import release_check, schemas
from tests.cloudbuild import STEPS, bash_script, run_step, shim, substitutions

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent
IMAGE_DIRS = sorted(p.parent.name for p in (ROOT / "images").glob("*/Dockerfile"))

# The upstream file behind each file of the schemas folder (../shared/schemas/README.md).
UPSTREAM = {
    "kserve-v0.20.0/serving.kserve.io_inferenceservices.yaml": "https://raw.githubusercontent.com/kserve/kserve/v0.20.0/config/crd/full/serving.kserve.io_inferenceservices.yaml",
    "kserve-v0.20.0/serving.kserve.io_servingruntimes.yaml": "https://raw.githubusercontent.com/kserve/kserve/v0.20.0/config/crd/full/serving.kserve.io_servingruntimes.yaml",
    "kserve-v0.20.0/serving.kserve.io_clusterservingruntimes.yaml": "https://raw.githubusercontent.com/kserve/kserve/v0.20.0/config/crd/full/serving.kserve.io_clusterservingruntimes.yaml",
    "katib-v0.19.0/swagger.json": "https://raw.githubusercontent.com/kubeflow/katib/v0.19.0/api/openapi-spec/swagger.json",
    "katib-v0.19.0/experiment-crd.yaml": "https://raw.githubusercontent.com/kubeflow/katib/v0.19.0/manifests/v1beta1/components/crd/experiment.yaml",
}  # fmt: skip


def test_every_step_script_is_valid_bash():
    values = substitutions()
    for step_id, step in STEPS.items():
        if step.get("entrypoint") != "bash":
            continue
        checked = subprocess.run(
            ["bash", "-n", "-c", bash_script(step_id, values)], capture_output=True, text=True
        )
        assert checked.returncode == 0, f"{step_id}: {checked.stderr}"


# --- fetch-schemas ------------------------------------------------------------------------------


def _pinned() -> list[tuple[str, str, str]]:
    script = bash_script("fetch-schemas", substitutions())
    block = script.split("<<'PINNED'\n", 1)[1].split("\nPINNED", 1)[0]
    return [tuple(line.split()) for line in block.splitlines()]


def test_fetch_schemas_pins_every_file_the_schema_tests_read_at_its_upstream_url():
    pinned = {file: (sha, url) for sha, file, url in _pinned()}
    assert set(pinned) == set(schemas.FILES) == set(UPSTREAM)
    folder = schemas.schemas_dir()
    for file, (sha, url) in pinned.items():
        assert url == UPSTREAM[file], file
        assert sha == hashlib.sha256((folder / file).read_bytes()).hexdigest(), file


@pytest.fixture
def fake_upstream(tmp_path):
    """A `curl` that serves each upstream URL from a copy of the schemas folder (no network
    here), honouring -o; anything else is a 404 (curl -f exits 22)."""
    served = tmp_path / "upstream"
    shutil.copytree(schemas.schemas_dir(), served, ignore=shutil.ignore_patterns("README.md"))
    table = tmp_path / "urls.txt"
    table.write_text("".join(f"{url} {served / file}\n" for file, url in UPSTREAM.items()))
    bin_dir = tmp_path / "bin"
    shim(
        bin_dir,
        "curl",
        f"""out=""; url=""
while [ $# -gt 0 ]; do
  case "$1" in -o) out="$2"; shift 2;; --retry|--connect-timeout|--max-time) shift 2;; -*) shift;; *) url="$1"; shift;; esac
done
src=$(awk -v u="$url" '$1 == u {{print $2}}' {table})
[ -n "$src" ] || {{ echo "curl: (22) The requested URL returned error: 404: $url" >&2; exit 22; }}
cp "$src" "$out"
""",
    )
    return served, bin_dir


def test_fetch_schemas_puts_the_pinned_files_where_the_tests_read_them(
    fake_upstream, tmp_path, monkeypatch
):
    served, bin_dir = fake_upstream
    target = tmp_path / "workspace" / ".build" / "schemas"
    result = run_step("fetch-schemas", substitutions(_SCHEMAS_DIR=str(target)), tmp_path, bin_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(": OK") == len(schemas.FILES)
    for file in schemas.FILES:
        assert (target / file).read_bytes() == (schemas.schemas_dir() / file).read_bytes()
    # The tests step passes the folder through LOOPLINE_SCHEMAS_DIR; the schema tests read it.
    assert f"{schemas.SCHEMAS_ENV}=${{_SCHEMAS_DIR}}" in STEPS["tests"]["env"]
    monkeypatch.setenv(schemas.SCHEMAS_ENV, str(target))
    assert schemas.schemas_dir() == target


def test_fetch_schemas_fails_on_a_changed_upstream_file_naming_it(fake_upstream, tmp_path):
    served, bin_dir = fake_upstream
    changed = served / "katib-v0.19.0" / "swagger.json"
    changed.chmod(0o644)
    changed.write_bytes(changed.read_bytes().replace(b'"maxTrialCount"', b'"maxTrialCounts"', 1))
    target = tmp_path / "schemas"
    result = run_step("fetch-schemas", substitutions(_SCHEMAS_DIR=str(target)), tmp_path, bin_dir)
    assert result.returncode != 0
    assert "katib-v0.19.0/swagger.json: FAILED" in result.stdout


def test_fetch_schemas_fails_when_a_file_cannot_be_downloaded(fake_upstream, tmp_path):
    served, bin_dir = fake_upstream
    (tmp_path / "urls.txt").write_text("")  # every URL a 404
    result = run_step("fetch-schemas", substitutions(_SCHEMAS_DIR=str(tmp_path / "s")), tmp_path, bin_dir)  # fmt: skip
    assert result.returncode == 22
    assert "404: https://raw.githubusercontent.com/kserve/kserve/v0.20.0/" in result.stderr


# --- the schemas folder variable ----------------------------------------------------------------


def test_the_schemas_folder_defaults_to_shared_schemas_beside_the_checkout(monkeypatch):
    monkeypatch.delenv(schemas.SCHEMAS_ENV, raising=False)
    assert schemas.configured_dir() == ROOT.parent / "shared" / "schemas"
    monkeypatch.setenv(schemas.SCHEMAS_ENV, "")  # empty: the default too
    assert schemas.configured_dir() == ROOT.parent / "shared" / "schemas"


def test_a_missing_schemas_folder_fails_naming_the_variable(monkeypatch, tmp_path):
    monkeypatch.setenv(schemas.SCHEMAS_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(
        pytest.fail.Exception, match=f"{tmp_path / 'nowhere'}.*LOOPLINE_SCHEMAS_DIR"
    ):
        schemas.schemas_dir()
    monkeypatch.setenv(schemas.SCHEMAS_ENV, str(tmp_path))  # a folder without the files
    with pytest.raises(
        pytest.fail.Exception, match="swagger.json is missing.*LOOPLINE_SCHEMAS_DIR"
    ):
        schemas.schema_file("katib-v0.19.0/swagger.json")


# --- digests and the release YAML ---------------------------------------------------------------


def _digest(family: str) -> str:
    return "sha256:" + hashlib.sha256(family.encode()).hexdigest()


@pytest.fixture
def fake_pushed_docker(tmp_path):
    """A `docker` whose `image inspect` answers as for images pushed to the registry: one
    RepoDigest of the registry, one of a mirror (which the step must not take)."""
    bin_dir = tmp_path / "bin"
    cases = "".join(
        f"  *{family}:*) printf '%s\\n' mirror.example/{family}@sha256:{'0' * 64} "
        f'"$REG/{family}@{_digest(family)}" "";;\n'
        for family in IMAGE_DIRS
    )
    shim(bin_dir, "docker", f'[ "$1 $2" = "image inspect" ] || exit 2\ncase "$5" in\n{cases}  *) exit 1;;\nesac\n')  # fmt: skip
    return bin_dir


def test_the_digests_step_writes_the_pushed_digest_of_every_family(fake_pushed_docker, tmp_path):
    values = substitutions(_REGISTRY="us-docker.pkg.dev/p/loopline")
    os.environ["REG"] = values["_REGISTRY"]
    try:
        result = run_step("digests", values, tmp_path, fake_pushed_docker)
    finally:
        del os.environ["REG"]
    assert result.returncode == 0, result.stderr
    digests = json.loads((tmp_path / "digests.json").read_text())
    assert digests == {family: _digest(family) for family in IMAGE_DIRS}


def test_the_digests_step_fails_when_an_image_has_no_registry_digest(fake_pushed_docker, tmp_path):
    os.environ["REG"] = "elsewhere.example/loopline"  # pushed somewhere else: no digest here
    try:
        result = run_step("digests", substitutions(_REGISTRY="r.example/l"), tmp_path, fake_pushed_docker)  # fmt: skip
    finally:
        del os.environ["REG"]
    assert result.returncode == 1
    assert "no registry digest for r.example/l/pipeline:0.1.0" in result.stdout


@pytest.fixture(scope="module")
def release_yaml(tmp_path_factory):
    """Release YAML as `loopline compile --digests` writes it: every TARGET compiled for a
    registry (pipelines/compile.py), each image reference then pinned by its digest."""
    from pipelines import compile as compile_

    out = tmp_path_factory.mktemp("yaml")
    registry = "us-docker.pkg.dev/p/loopline"
    assert compile_.main(["--registry", registry, "--out-dir", str(out)]) == 0
    digests = {family: _digest(family) for family in IMAGE_DIRS}
    tagged = re.compile(rf"{re.escape(registry)}/({'|'.join(IMAGE_DIRS)}):[\w.+-]+")
    for path in out.rglob("*.yaml"):
        text = path.read_text()
        path.write_text(
            tagged.sub(lambda m: f"{registry}/{m.group(1)}@{digests[m.group(1)]}", text)
        )
    return out, registry, digests


def _targets() -> list[str]:
    from pipelines.compile import TARGETS

    return [rel for _, rel in TARGETS]


def test_release_check_passes_yaml_pinned_by_the_pushed_digests(release_yaml):
    out, registry, digests = release_yaml
    assert release_check.problems(out, registry, digests, _targets()) == []


def test_release_check_names_a_missing_file_an_unpinned_image_and_a_wrong_digest(
    release_yaml, tmp_path
):
    out, registry, digests = release_yaml
    copy = tmp_path / "yaml"
    shutil.copytree(out, copy)
    (copy / "components/tune/katib_component.yaml").unlink()
    ingest = copy / "components/ingest/component.yaml"
    pinned = f"{registry}/pipeline@{digests['pipeline']}"
    ingest.write_text(ingest.read_text().replace(pinned, f"{registry}/pipeline:0.1.0"))
    train = copy / "components/train/component.yaml"
    train.write_text(train.read_text().replace(digests["pipeline"], "sha256:" + "1" * 64))
    relay = copy / "components/evaluate/decision_relay.yaml"
    relay.write_text(relay.read_text().replace(pinned, _images.image("pipeline")))
    found = release_check.problems(copy, registry, digests, _targets())
    assert "components/tune/katib_component.yaml: missing from " + str(copy) in found
    assert (
        f"components/ingest/component.yaml: {registry}/pipeline:0.1.0 is not pinned by digest"
        in found
    )
    assert any(
        p.startswith(f"components/train/component.yaml: {registry}/pipeline@sha256:111")
        for p in found
    )
    relay_rel = "components/evaluate/decision_relay.yaml"
    assert f"{relay_rel}: still names the default registry's loopline/pipeline:" in found
    assert f"{relay_rel}: names no image under {registry}" in found
    assert len(found) == 5, found
