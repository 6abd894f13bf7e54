"""kfp.local runs a task with a retry policy once (pipelines/local.py): a deterministic local
failure is reported at once instead of after the policy's back-off."""

import pytest
from kfp import dsl

from pipelines import local as local_run

pytestmark = pytest.mark.local


@dsl.component
def fails_and_counts(counter: str):
    with open(counter, "a") as f:
        f.write("x")
    raise ValueError("always fails")


@dsl.pipeline(name="retrying")
def retrying(counter: str):
    fails_and_counts(counter=counter).set_retry(num_retries=3, backoff_duration="30s")


def test_a_failing_task_with_a_retry_policy_runs_once_locally(tmp_path):
    local_run.init_subprocess(tmp_path / "root")
    counter = tmp_path / "attempts"
    with pytest.raises(RuntimeError, match="FAILURE"):
        retrying(counter=str(counter))
    assert counter.read_text() == "x"
