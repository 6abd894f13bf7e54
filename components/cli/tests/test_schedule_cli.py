"""``loopline schedule`` in-process (``main(argv)``) with the real ``kfp.Client`` 2.17 against
tests/fake_kfp.py, a fake KFP v2beta1 REST API on loopback: what is sent (the recurring
run's body), the replace order, the refusals that send nothing, and the one-line failures."""

from __future__ import annotations

import json
import os

import pytest

from components.cli import main as cli_main
from components.cli.tests import invoke
from components.cli.tests.invoke import failed_with
from components.lib import kfp_api
from components.lib import schedule as lib
from tests.fake_kfp import FakeKFP

pytestmark = pytest.mark.unit

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
PACKAGE = os.path.join(ROOT, "pipelines", "training", "pipeline.yaml")
RUNS = "/apis/v2beta1/recurringruns"
REQUIRED = ["--param", "source_uri=s3://loopline-data/bikeshare/latest.csv"]


@pytest.fixture
def kfp(monkeypatch):
    for name in (
        kfp_api.HOST_ENV,
        kfp_api.TOKEN_ENV,
        kfp_api.NAMESPACE_ENV,
        "KF_PIPELINES_ENDPOINT",
    ):
        monkeypatch.delenv(name, raising=False)
    with FakeKFP() as fake:
        yield fake


def run(capsys, *argv: str) -> tuple[int, str, str]:
    """``loopline schedule ARGV...``."""
    return invoke.run(capsys, "schedule", *argv)


def schedule(capsys, fake: FakeKFP, *extra: str, job: str = "ct-nightly"):
    return run(
        capsys,
        PACKAGE,
        "--pipeline",
        "loopline-ct",
        "--experiment",
        "continuous-training",
        "--job",
        job,
        "--host",
        fake.url,
        *REQUIRED,
        *extra,
    )


def created_body(fake: FakeKFP, index: int = -1) -> dict:
    return fake.calls("POST", RUNS)[index]["body"]


def test_create_sends_the_recurring_run_on_the_new_version(kfp, capsys):
    code, out, err = schedule(
        capsys,
        kfp,
        "--cron",
        "0 0 3 * * *",
        "--version",
        "v1",
        "--param",
        "model_name=bikeshare",
        "--param",
        "seed=7",
        "--param",
        "eval_fraction=0.2",
        "--param",
        "s3_secure=true",
    )
    assert code == 0, err
    (pipeline,) = kfp.pipelines.values()
    (version,) = kfp.versions.values()
    (experiment,) = kfp.experiments.values()
    assert pipeline["display_name"] == "loopline-ct"
    assert version["name"] == "v1" and version["pipeline_id"] == pipeline["pipeline_id"]
    assert experiment["display_name"] == "continuous-training"
    # The package itself was uploaded (multipart uploadfile), as a version of the pipeline.
    (upload,) = kfp.calls("POST", "/apis/v2beta1/pipelines/upload_version")
    assert upload["query"]["pipelineid"] == pipeline["pipeline_id"]
    with open(PACKAGE) as fh:
        assert upload["body"]["files"]["uploadfile"]["content"] == fh.read()

    body = created_body(kfp)
    assert body["display_name"] == "ct-nightly"
    assert body["experiment_id"] == experiment["experiment_id"]
    assert body["trigger"] == {"cron_schedule": {"cron": "0 0 3 * * *"}}
    assert int(body["max_concurrency"]) == 1
    assert body["no_catchup"] is True
    assert body["mode"] == "ENABLE"
    assert body["pipeline_version_reference"] == {
        "pipeline_id": pipeline["pipeline_id"],
        "pipeline_version_id": version["pipeline_version_id"],
    }
    assert body["runtime_config"]["parameters"] == {
        "source_uri": "s3://loopline-data/bikeshare/latest.csv",
        "model_name": "bikeshare",
        "seed": 7,
        "eval_fraction": 0.2,
        "s3_secure": True,
    }
    assert "pipeline_spec" not in body
    (only,) = kfp.enabled_runs("ct-nightly")
    # Nothing else changed anything: no disable, enable or delete on a first create.
    assert not kfp.calls("POST", RUNS + "/.*") and not kfp.calls("DELETE")
    lines = out.splitlines()
    assert lines[0].startswith(
        f"uploaded pipeline loopline-ct (created, id {pipeline['pipeline_id']}) version v1 "
        f"(id {version['pipeline_version_id']})"
    )
    assert lines[1] == f"experiment continuous-training (created, id {experiment['experiment_id']})"
    assert f"created recurring run ct-nightly (id {only['recurring_run_id']})" in lines[2]
    assert lines[-1].startswith(f"recurring run ct-nightly (id {only['recurring_run_id']})")


def test_update_replaces_the_old_recurring_run(kfp, capsys):
    assert schedule(capsys, kfp, "--cron", "0 0 3 * * *", "--version", "v1")[0] == 0
    (old,) = kfp.recurring_runs.values()
    kfp.requests.clear()

    code, out, err = schedule(
        capsys, kfp, "--cron", "0 30 2 * * *", "--version", "v2", "--param", "seed=2"
    )
    assert code == 0, err
    versions = {v["name"]: v for v in kfp.versions.values()}
    assert set(versions) == {"v1", "v2"} and len(kfp.pipelines) == 1
    # Exactly one recurring run of that name is left: enabled, on the new version.
    (new,) = kfp.recurring_runs.values()
    assert new["recurring_run_id"] != old["recurring_run_id"]
    assert new["status"] == "ENABLED"
    assert (
        new["pipeline_version_reference"]["pipeline_version_id"]
        == (versions["v2"]["pipeline_version_id"])
    )
    assert new["trigger"]["cron_schedule"]["cron"] == "0 30 2 * * *"
    assert new["runtime_config"]["parameters"]["seed"] == 2
    # The order: create disabled, disable the old, enable the new, delete the old.
    steps = [
        (r["method"], r["path"].rsplit("/", 1)[-1])
        for r in kfp.requests
        if r["path"].startswith(RUNS) and r["method"] != "GET"
    ]
    oid, nid = old["recurring_run_id"], new["recurring_run_id"]
    assert steps == [
        ("POST", "recurringruns"),
        ("POST", f"{oid}:disable"),
        ("POST", f"{nid}:enable"),
        ("DELETE", oid),
    ]
    assert created_body(kfp)["mode"] == "DISABLE"
    assert f"deleted old recurring run id {oid}" in out
    assert f"replaced {oid}" in out.splitlines()[-1]


def test_a_failed_create_leaves_the_old_schedule_running(kfp, capsys):
    assert schedule(capsys, kfp, "--cron", "0 0 3 * * *", "--version", "v1")[0] == 0
    (old,) = kfp.recurring_runs.values()
    kfp.fail[("POST", RUNS)] = 500
    failed_with(
        schedule(capsys, kfp, "--cron", "0 0 4 * * *", "--version", "v2"),
        "creating the new recurring run failed",
        old["recurring_run_id"],
        "untouched",
    )
    assert [r["recurring_run_id"] for r in kfp.enabled_runs()] == [old["recurring_run_id"]]
    assert len(kfp.recurring_runs) == 1


def test_a_failed_enable_puts_the_old_schedule_back(kfp, capsys):
    assert schedule(capsys, kfp, "--cron", "0 0 3 * * *", "--version", "v1")[0] == 0
    (old,) = kfp.recurring_runs.values()
    # Enabling anything but the old one fails: the new one's enable fails, the undo works.
    kfp.fail = {("POST", RUNS + f"/(?!{old['recurring_run_id']})[^/]+:enable"): 503}
    failed_with(
        schedule(capsys, kfp, "--cron", "0 0 4 * * *", "--version", "v2"),
        "failed, undone",
        "HTTP 503",
    )
    (left,) = kfp.recurring_runs.values()
    assert left["recurring_run_id"] == old["recurring_run_id"] and left["status"] == "ENABLED"


def test_interval_trigger_with_times_catchup_and_namespace(kfp, capsys):
    code, _, err = schedule(
        capsys,
        kfp,
        "--interval",
        "3600",
        "--start-time",
        "2027-01-01T00:00:00+01:00",
        "--end-time",
        "2027-12-31",
        "--catchup",
        "--max-concurrency",
        "2",
        "--namespace",
        "kubeflow-user-example-com",
        "--disable",
    )
    assert code == 0, err
    body = created_body(kfp)
    assert body["trigger"] == {
        "periodic_schedule": {
            "start_time": "2026-12-31T23:00:00Z",
            "end_time": "2027-12-31T00:00:00Z",
            "interval_second": 3600,
        }
    }
    assert body["no_catchup"] is False and int(body["max_concurrency"]) == 2
    assert body["mode"] == "DISABLE" and not kfp.enabled_runs()
    (pipeline,) = kfp.pipelines.values()
    (experiment,) = kfp.experiments.values()
    assert pipeline["namespace"] == experiment["namespace"] == "kubeflow-user-example-com"


@pytest.mark.parametrize(
    ("extra", "needles"),
    [
        (["--param", "windw_hours=24"], ["windw_hours", "its inputs:", "model_name", "seed"]),
        (["--param", "seed=often"], ["--param seed", "NUMBER_INTEGER", "'often'"]),
        (["--param", "eval_fraction=a lot"], ["eval_fraction", "NUMBER_DOUBLE"]),
        (["--param", "s3_secure=maybe"], ["s3_secure", "BOOLEAN"]),
        (["--param", "seed"], ["expected key=value"]),
    ],
)
def test_bad_params_are_refused_before_anything_is_sent(kfp, capsys, extra, needles):
    failed_with(schedule(capsys, kfp, "--cron", "0 0 3 * * *", *extra), *needles)
    assert kfp.requests == []


def test_a_missing_required_input_is_refused(kfp, capsys):
    result = run(
        capsys, PACKAGE, "--pipeline", "p", "--job", "j", "--cron", "@daily", "--host", kfp.url
    )
    failed_with(result, "required input", "source_uri")
    assert kfp.requests == []


@pytest.mark.parametrize(
    ("cron", "needle"),
    [
        ("0 3 * * *", "6 fields, seconds first"),
        ("0 0 25 * * *", "hour 25 is outside 0-23"),
        ("0 0 3 * FOO *", "month field"),
        ("0 */0 * * * *", "bad step"),
        ("@sometimes", "unknown descriptor"),
    ],
)
def test_bad_cron_is_refused_before_anything_is_sent(kfp, capsys, cron, needle):
    failed_with(schedule(capsys, kfp, "--cron", cron), "cron", needle)
    assert kfp.requests == []


@pytest.mark.parametrize(
    "cron",
    ["0 0 * * * *", "0 30 2 * * MON-FRI", "*/15 0 0 1,15 JAN-JUN ?", "@hourly", "@every 6h"],
)
def test_good_cron(cron):
    assert lib.check_cron(cron) == cron


def test_other_local_refusals_send_nothing(kfp, capsys, tmp_path):
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("root: [unclosed\n")
    not_pipeline = tmp_path / "component.yaml"
    not_pipeline.write_text("name: x\nimplementation: {}\n")
    for package, needle in (
        (str(tmp_path / "missing.yaml"), "no such pipeline package"),
        (str(bad_yaml), "is not valid YAML"),
        (str(not_pipeline), "is not a compiled KFP pipeline"),
    ):
        result = run(capsys, package, "--pipeline", "p", "--job", "j", "--cron", "@daily",
                     "--host", kfp.url)  # fmt: skip
        failed_with(result, needle)
    failed_with(schedule(capsys, kfp, "--interval", "0"), "positive")
    failed_with(schedule(capsys, kfp, "--cron", "@daily", "--max-concurrency", "11"), "1 to 10")
    failed_with(
        schedule(capsys, kfp, "--cron", "@daily", "--start-time", "tomorrow"), "--start-time"
    )
    assert kfp.requests == []


def test_dry_run_sends_nothing(kfp, capsys):
    code, out, err = schedule(capsys, kfp, "--cron", "0 0 3 * * *", "--dry-run")
    assert code == 0, err
    assert kfp.requests == []
    assert out.startswith("dry run: nothing sent.")
    body = json.loads(out[out.index("{") :])
    assert body["trigger"] == {"cron_schedule": {"cron": "0 0 3 * * *"}}
    assert body["no_catchup"] is True and body["max_concurrency"] == 1


@pytest.mark.parametrize("status", [401, 403])
def test_a_refusing_api_is_one_line(kfp, capsys, status):
    kfp.auth_status = status
    failed_with(schedule(capsys, kfp, "--cron", "@daily"), kfp.url, f"HTTP {status}")
    assert not kfp.recurring_runs


def test_the_token_is_sent(kfp, capsys, monkeypatch):
    kfp.token = "s3cret"
    failed_with(schedule(capsys, kfp, "--cron", "@daily"), "HTTP 401", "--token")
    monkeypatch.setenv(kfp_api.TOKEN_ENV, "s3cret")
    code, _, err = schedule(capsys, kfp, "--cron", "@daily")
    assert code == 0, err
    assert kfp.requests[-1]["authorization"] == "Bearer s3cret"


def test_an_unreachable_host_is_one_line(kfp, capsys):
    kfp.refuse()
    failed_with(schedule(capsys, kfp, "--cron", "@daily"), "cannot reach the KFP API", kfp.url)


def test_a_taken_version_name_is_one_line(kfp, capsys):
    assert schedule(capsys, kfp, "--cron", "@daily", "--version", "v1")[0] == 0
    failed_with(
        schedule(capsys, kfp, "--cron", "@hourly", "--version", "v1"),
        "already has a version named 'v1'",
    )
    (left,) = kfp.recurring_runs.values()
    assert left["trigger"]["cron_schedule"]["cron"] == "@daily"


def test_an_existing_pipeline_gets_a_new_version(kfp, capsys):
    code, _, err = run(capsys, PACKAGE, "--pipeline", "p", "--job", "j", "--cron", "@daily",
                       "--host", kfp.url, *REQUIRED, "--version", "v0")  # fmt: skip
    assert code == 0, err
    kfp.requests.clear()
    code, out, err = run(capsys, PACKAGE, "--pipeline", "p", "--job", "j", "--cron", "@daily",
                         "--host", kfp.url, *REQUIRED, "--version", "v1")  # fmt: skip
    assert code == 0, err
    assert not kfp.calls("POST", "/apis/v2beta1/pipelines")
    assert len(kfp.pipelines) == 1 and len(kfp.versions) == 2
    assert "(created" not in out.splitlines()[0]


def test_help_lists_every_option(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli_main.main(["schedule", "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for option in (
        "PACKAGE_YAML",
        "--pipeline",
        "--version",
        "--experiment",
        "--job",
        "--cron",
        "--interval",
        "--param",
        "--max-concurrency",
        "--catchup",
        "--no-catchup",
        "--start-time",
        "--end-time",
        "--disable",
        "--description",
        "--host",
        "--namespace",
        "--token",
        "--dry-run",
        "KFP_HOST",
        "KFP_TOKEN",
        "6 fields",
    ):
        assert option in text, option


def test_the_continuous_training_pipeline_goes_on_a_daily_schedule_as_the_readme_shows(kfp, capsys):
    package = os.path.join(ROOT, "pipelines", "continuous_training", "pipeline.yaml")
    code, out, err = run(
        capsys, package, "--pipeline", "loopline-continuous-training", "--experiment",
        "continuous-training", "--job", "bikeshare-daily", "--cron", "0 5 0 * * *",
        "--param", "source_uri=s3://loopline-data/bikeshare/latest.csv",
        "--param", "window_hours=24", "--host", kfp.url,
    )  # fmt: skip
    assert code == 0, err
    body = created_body(kfp)
    assert body["trigger"]["cron_schedule"]["cron"] == "0 5 0 * * *"
    assert body["max_concurrency"] in ("1", 1) and body["no_catchup"] is True
    assert body["runtime_config"]["parameters"] == {
        "source_uri": "s3://loopline-data/bikeshare/latest.csv",
        "window_hours": 24,
    }
    assert "created recurring run bikeshare-daily" in out
