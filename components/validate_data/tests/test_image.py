"""The validate_data CLI in the tfdv image (the image has no kfp), as the container gets it."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests import corpus

pytestmark = pytest.mark.docker

OUTPUTS = ("statistics", "anomalies", "report", "summary", "anomalies-found")


def _cli(image: str, folder: Path, out: Path, *args: str, env: dict | None = None):
    """``docker run`` of the CLI with ``folder`` mounted at the same path (as kfp.local does)."""
    env_args = [a for k, v in (env or {}).items() for a in ("-e", f"{k}={v}")]
    return subprocess.run(
        ["docker", "run", "--rm", "--network=host", "-v", f"{folder}:{folder}", *env_args, image]
        + ["python", "-m", "components.validate_data.executor", "--schema=bikeshare", *args]
        + [f"--{n}-out={out}/{n}" for n in OUTPUTS],
        capture_output=True,
        text=True,
    )


def test_cli_in_the_tfdv_image_names_the_anomaly(built_images, tmp_path):
    tmp_path.chmod(0o1777)
    batch = corpus.build(corpus.BY_NAME["unseen_category"], tmp_path)
    out = tmp_path / "out"
    proc = _cli(built_images["tfdv"], tmp_path, out, f"--dataset=train={batch}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (out / "anomalies-found").read_text() == "true"
    found = json.loads((out / "anomalies" / "anomalies.json").read_text())["anomalies"]
    assert [(a["dataset"], a["column"], a["kind"]) for a in found] == [
        ("train", "weathersit", "ENUM_TYPE_UNEXPECTED_STRING_VALUES")
    ]
    assert "ANOMALY train / weathersit" in proc.stderr

    no_kfp = subprocess.run(
        ["docker", "run", "--rm", built_images["tfdv"], "python", "-c", "import kfp"],
        capture_output=True,
    )
    assert no_kfp.returncode != 0


def test_champions_statistics_on_s3_are_the_drift_baseline(
    built_images, tmp_path, s3_server, s3_client
):
    """The baseline as a cluster gives it: an s3:// URI of a statistics folder, read in the container."""
    tmp_path.chmod(0o1777)
    shifted = corpus.build(corpus.BY_NAME["shifted_distribution"], tmp_path)
    first = _cli(
        built_images["tfdv"], tmp_path, tmp_path / "champion", f"--dataset=train={shifted}"
    )
    assert first.returncode == 0, first.stderr[-2000:]
    s3_client.make_bucket("baselines")
    stats_dir = tmp_path / "champion" / "statistics"
    for path in stats_dir.iterdir():
        s3_client.fput_object("baselines", f"run-1/statistics/{path.name}", str(path))

    clean = corpus.build_control(corpus.CONTROLS_BY_NAME["january_to_june"], tmp_path)
    creds = {k: os.environ[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    out = tmp_path / "out"
    second = _cli(
        built_images["tfdv"],
        tmp_path,
        out,
        f"--dataset=train={clean}",
        f"--dataset=holdout={clean}",
        "--baseline-statistics=s3://baselines/run-1/statistics",
        f"--s3-endpoint={s3_server}",
        "--s3-secure=false",
        env=creds,
    )
    assert second.returncode == 0, second.stderr[-2000:]
    summary = json.loads((out / "anomalies" / "anomalies.json").read_text())
    assert summary["baseline"]["kind"] == "champion"
    assert summary["baseline"]["source"] == "s3://baselines/run-1/statistics"
    # Clean humidity against a champion trained on shifted humidity: a large drift, blocking.
    assert ("train", "hum", "block") in {
        (a["dataset"], a["column"], a["level"]) for a in summary["anomalies"]
    }
    assert (
        "against given statistics s3://baselines/run-1/statistics"
        in summary["anomalies"][0]["reason"]
    )
    assert "s3://baselines/run-1/statistics" in (out / "summary").read_text()

    missing = _cli(
        built_images["tfdv"],
        tmp_path,
        tmp_path / "out-missing",
        f"--dataset=train={clean}",
        "--baseline-statistics=s3://baselines/no-such-run/statistics",
        f"--s3-endpoint={s3_server}",
        env=creds,
    )
    assert missing.returncode != 0
    assert "baseline_statistics" in missing.stderr and "no-such-run" in missing.stderr
