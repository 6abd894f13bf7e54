"""The validate_data CLI in the tfdv image (the image has no kfp)."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests import corpus

pytestmark = pytest.mark.docker


def test_cli_in_the_tfdv_image_names_the_anomaly(built_images, tmp_path):
    tmp_path.chmod(0o1777)
    batch = corpus.build(corpus.BY_NAME["unseen_category"], tmp_path)
    out = tmp_path / "out"
    args = [
        f"--{n}-out={out}/{n}"
        for n in ("statistics", "anomalies", "report", "summary", "anomalies-found")
    ]
    proc = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "-v",
            f"{tmp_path}:{tmp_path}",
            built_images["tfdv"],
            "python",
            "-m",
            "components.validate_data.executor",
            f"--dataset=train={batch}",
            "--schema=bikeshare",
            *args,
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (out / "anomalies-found").read_text() == "true"
    found = json.loads((out / "anomalies" / "anomalies.json").read_text())["anomalies"]
    assert [(a["column"], a["kind"]) for a in found] == [
        ("weathersit", "ENUM_TYPE_UNEXPECTED_STRING_VALUES")
    ]
    assert "ANOMALY train / weathersit" in proc.stderr

    no_kfp = subprocess.run(
        ["docker", "run", "--rm", built_images["tfdv"], "python", "-c", "import kfp"],
        capture_output=True,
    )
    assert no_kfp.returncode != 0
