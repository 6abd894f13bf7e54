"""cloudbuild.yaml and the Makefile build the images the compiled YAMLs name."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

from components import __version__, _images

ROOT = Path(__file__).resolve().parent.parent
CLOUDBUILD = yaml.safe_load((ROOT / "cloudbuild.yaml").read_text())
IMAGE_DIRS = sorted(p.parent.name for p in (ROOT / "images").glob("*/Dockerfile"))


def test_every_image_family_has_a_dockerfile_and_a_lock():
    assert IMAGE_DIRS == sorted(_images.FAMILIES + _images.SERVICES)
    for family in IMAGE_DIRS:
        lock = (ROOT / "images" / family / "requirements.txt").read_text().splitlines()
        pins = [line for line in lock if line and not line.startswith("#")]
        assert pins and all(re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[^=\s]+", p) for p in pins), family


def test_cloudbuild_builds_and_pushes_every_family_at_the_package_version():
    assert CLOUDBUILD["substitutions"]["_VERSION"] == __version__
    pushed = set(CLOUDBUILD["images"])
    assert pushed == {f"${{_REGISTRY}}/{family}:${{_VERSION}}" for family in IMAGE_DIRS}
    built = {
        s["args"][s["args"].index("-t") + 1]
        for s in CLOUDBUILD["steps"]
        if "build" in s.get("args", [])[:1]
    }
    assert built == pushed


def test_cloudbuild_shell_variables_are_escaped_from_substitution():
    # Cloud Build substitutes $NAME and ${NAME}; shell variables must be written $$name.
    for step in CLOUDBUILD["steps"]:
        for arg in step.get("args", []):
            for name in re.findall(r"(?<!\$)\$\{?([A-Za-z_][A-Za-z0-9_]*)", arg):
                assert name.isupper(), (
                    f"step {step['id']}: ${name} would be taken as a substitution"
                )


def test_make_help_lists_every_target_with_a_line():
    out = subprocess.run(
        ["make", "-s", "help"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout
    listed = set(re.findall(r"^\s+(?:\x1b\[1m)?([a-z-]+)", out, re.MULTILINE))
    required = {
        "setup",
        "engine",
        "base-image",
        "images",
        "compile",
        "check-compiled",
        "lint",
        "test",
        "demo",
        "clean",
    }
    assert required <= listed
