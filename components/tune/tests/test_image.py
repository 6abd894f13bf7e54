"""The tuner image: the Katib SDK reads back the Experiments the library writes; no kfp."""

from __future__ import annotations

import subprocess

import pytest

pytestmark = pytest.mark.docker

SNIPPET = """
from kubeflow.katib import ApiClient, models
from kubeflow.katib.utils.utils import FakeResponse
from components.tune import katib, search_space
body = katib.experiment(search_space.load("bikeshare"), "loopline-tune-1", "team-a", "img:1",
                        {"train": "minio://b/t", "eval": "minio://b/e", "transformer": "minio://b/x"})
body["metadata"]["annotations"] = {"a": "b"}
exp = ApiClient().deserialize(FakeResponse(body), models.V1beta1Experiment)
print(exp.metadata.labels["app.kubernetes.io/part-of"], exp.spec.max_trial_count, exp.spec.algorithm.algorithm_name)
"""


def test_katib_sdk_in_the_tuner_image_reads_a_generated_experiment(built_images):
    out = subprocess.run(
        ["docker", "run", "--rm", built_images["tuner"], "python", "-c", SNIPPET],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr[-1500:]
    assert out.stdout.split() == ["loopline", "20", "tpe"]
    no_kfp = subprocess.run(
        ["docker", "run", "--rm", built_images["tuner"], "python", "-c", "import kfp"],
        capture_output=True,
    )
    assert no_kfp.returncode != 0
