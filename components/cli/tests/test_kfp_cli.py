"""``loopline upload`` and ``loopline submit`` in-process (``main(argv)``) with the real
``kfp.Client`` 2.17 against tests/fake_kfp.py (the KFP v2beta1 REST API on loopback): what
is sent, the runs followed to their end, the refusals that send nothing, the connection
(token, the pod's service-account token, in-cluster, multi-user namespaces) and the one-line
failures."""

from __future__ import annotations

import json
import os

import pytest

from components.cli import main as cli_main
from components.cli.tests.invoke import run
from components.lib import kfp_api
from tests.fake_kfp import FakeKFP

pytestmark = pytest.mark.unit

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
TRAINING = os.path.join(ROOT, "pipelines", "training", "pipeline.yaml")
SOURCE = "source_uri=s3://loopline-data/bikeshare/latest.csv"
RUNS = "/apis/v2beta1/runs"


@pytest.fixture
def kfp(monkeypatch):
    for name in (kfp_api.HOST_ENV, kfp_api.TOKEN_ENV, kfp_api.NAMESPACE_ENV,
                 "KF_PIPELINES_ENDPOINT", "KF_PIPELINES_SA_TOKEN_PATH"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    with FakeKFP() as fake:
        yield fake


@pytest.fixture(scope="module")
def typed_package(tmp_path_factory) -> str:
    """A compiled pipeline with one root input of each KFP parameter type."""
    from kfp import compiler

    from components.cli.tests.typed_pipeline import typed

    path = tmp_path_factory.mktemp("typed") / "typed.yaml"
    compiler.Compiler().compile(typed, package_path=str(path))
    return str(path)


def failed_with(result: tuple[int, str, str], *needles: str) -> str:
    """Exit 1 and the failure as the last stderr line, holding every needle."""
    code, out, err = result
    assert code == 1, result
    line = err.strip().splitlines()[-1]
    assert line.startswith("loopline: error: "), err
    assert len([x for x in err.splitlines() if x.startswith("loopline: error")]) == 1
    for needle in needles:
        assert needle in line, (needle, line)
    return line


def submit(capsys, fake, package, *extra):
    return run(capsys, "submit", package, "--experiment", "ci", "--host", fake.url, *extra)


# --------------------------------------------------------------------------- upload


def test_upload_creates_the_pipeline_and_prints_both_ids(kfp, capsys):
    code, out, err = run(capsys, "upload", TRAINING, "--pipeline-name", "loopline-training",
                         "--version-name", "v1", "--description", "first", "--host", kfp.url)  # fmt: skip
    assert code == 0, err
    (pipeline,) = kfp.pipelines.values()
    (version,) = kfp.versions.values()
    assert pipeline["display_name"] == "loopline-training"
    assert version["name"] == "v1" and version["description"] == "first"
    (upload,) = kfp.calls("POST", "/apis/v2beta1/pipelines/upload_version")
    with open(TRAINING) as fh:
        assert upload["body"]["files"]["uploadfile"]["content"] == fh.read()
    assert upload["query"]["pipelineid"] == pipeline["pipeline_id"]
    assert out.strip() == (
        f"pipeline loopline-training (id {pipeline['pipeline_id']}) version v1 "
        f"(id {version['pipeline_version_id']})"
    )
    assert f"pipeline loopline-training: created (id {pipeline['pipeline_id']})" in err


def test_upload_to_an_existing_pipeline_adds_a_version(kfp, capsys):
    assert run(capsys, "upload", TRAINING, "--pipeline-name", "p", "--version-name", "v1",
               "--host", kfp.url)[0] == 0  # fmt: skip
    kfp.requests.clear()
    code, out, err = run(capsys, "upload", TRAINING, "--pipeline-name", "p", "--host", kfp.url)
    assert code == 0, err
    assert not kfp.calls("POST", "/apis/v2beta1/pipelines")  # no second pipeline
    assert len(kfp.pipelines) == 1 and len(kfp.versions) == 2
    new = next(v for v in kfp.versions.values() if v["name"] != "v1")
    # The default version name: <loopline version>-<UTC time>-<sha256 prefix>.
    assert new["name"].endswith("-" + kfp_api.load_package(TRAINING).sha256[:8])
    assert f"version {new['name']} (id {new['pipeline_version_id']})" in out
    assert "found" in err


def test_upload_a_taken_version_name_is_one_line(kfp, capsys):
    args = ("upload", TRAINING, "--pipeline-name", "p", "--version-name", "v1", "--host", kfp.url)
    assert run(capsys, *args)[0] == 0
    failed_with(run(capsys, *args), "already has a version named 'v1'")
    assert len(kfp.versions) == 1


def test_upload_refuses_a_bad_package_before_sending(kfp, capsys, tmp_path):
    component = tmp_path / "c.yaml"
    component.write_text("name: x\nimplementation: {}\n")
    for package, needle in ((str(tmp_path / "missing.yaml"), "no such pipeline package"),
                            (str(component), "is not a compiled KFP pipeline")):  # fmt: skip
        failed_with(
            run(capsys, "upload", package, "--pipeline-name", "p", "--host", kfp.url), needle
        )
    assert kfp.requests == []


# --------------------------------------------------------------------------- submit: what is sent


def test_submit_sends_the_package_with_typed_parameters(kfp, capsys, typed_package):
    code, out, err = submit(
        capsys, kfp, typed_package,
        "--param", "name=bikes", "--param", "count=7", "--param", "rate=0.25",
        "--param", "flag=true", "--param", 'options={"depth": 3}', "--param", "items=[3, 4]",
        "--run-name", "r1",
    )  # fmt: skip
    assert code == 0, err
    (create,) = kfp.calls("POST", RUNS)
    body = create["body"]
    assert body["display_name"] == "r1"
    (experiment,) = kfp.experiments.values()
    assert body["experiment_id"] == experiment["experiment_id"]
    assert experiment["display_name"] == "ci"
    assert body["runtime_config"]["parameters"] == {
        "name": "bikes",
        "count": 7,
        "rate": 0.25,
        "flag": True,
        "options": {"depth": 3},
        "items": [3, 4],
    }
    # The package's spec went with the run (no pipeline version).
    assert body["pipeline_spec"]["pipelineInfo"]["name"] == "typed"
    assert "pipeline_version_reference" not in body
    (run_,) = kfp.runs.values()
    assert (
        out.strip() == f"run r1 (id {run_['run_id']}) of package {typed_package} (pipeline typed)"
    )
    assert not kfp.calls("GET", RUNS + "/.*")  # no --wait: not followed


def test_params_file_and_param_merge_param_wins(kfp, capsys, typed_package, tmp_path):
    params = tmp_path / "params.json"
    params.write_text(json.dumps({"name": "from-file", "count": 3, "rate": 1, "items": []}))
    code, _, err = submit(capsys, kfp, typed_package, "--params-file", str(params),
                          "--param", "count=9")  # fmt: skip
    assert code == 0, err
    sent = kfp.calls("POST", RUNS)[0]["body"]["runtime_config"]["parameters"]
    assert sent == {"name": "from-file", "count": 9, "rate": 1.0, "items": []}


@pytest.mark.parametrize(
    ("extra", "needles"),
    [
        # An unknown name: named, with the known inputs listed.
        (["--param", "cuont=3"], ["--param cuont", "has no input 'cuont'", "its inputs:",
                                  "count, flag, items, name, options, rate"]),
        # A wrong type: the input, its type and the value.
        (["--param", "count=three"], ["--param count", "NUMBER_INTEGER", "'three'"]),
        (["--param", "rate=fast"], ["--param rate", "NUMBER_DOUBLE", "'fast'"]),
        (["--param", "flag=yes"], ["--param flag", "BOOLEAN", "'yes'"]),
        (["--param", "options=[1]"], ["--param options", "STRUCT", "'[1]'"]),
        (["--param", "items={oops"], ["--param items", "LIST", "'{oops'", "not JSON"]),
        (["--param", "count"], ["expected key=value"]),
        (["--param", "count=1", "--param", "count=2"], ["--param count", "given twice"]),
    ],
)  # fmt: skip
def test_bad_parameters_are_refused_before_anything_is_sent(
    kfp, capsys, typed_package, extra, needles
):
    base = [] if any(e.startswith("name=") for e in extra) else ["--param", "name=x"]
    if not any(e.startswith("count") for e in extra):
        base += ["--param", "count=1"]
    failed_with(submit(capsys, kfp, typed_package, *base, *extra), *needles)
    assert kfp.requests == []


def test_a_missing_required_parameter_is_refused_before_anything_is_sent(
    kfp, capsys, typed_package
):
    failed_with(submit(capsys, kfp, typed_package, "--param", "name=x"), "required input", "count")
    failed_with(submit(capsys, kfp, TRAINING), "required input", "source_uri")
    assert kfp.requests == []


@pytest.mark.parametrize(
    ("content", "needles"),
    [
        ('{"count": "7"}', ["params.json: parameter count", "NUMBER_INTEGER", "'7'"]),
        ('{"count": 1.5}', ["parameter count", "NUMBER_INTEGER", "1.5"]),
        ('{"flag": 1}', ["parameter flag", "BOOLEAN"]),
        ('{"rate": true}', ["parameter rate", "NUMBER_DOUBLE"]),
        ('{"nmae": "x"}', ["parameter nmae", "has no input 'nmae'", "its inputs:"]),
        ('["name", "x"]', ["--params-file", "expected a JSON object"]),
        ("{not json", ["--params-file", "not JSON"]),
    ],
)
def test_a_bad_params_file_is_refused_before_anything_is_sent(
    kfp, capsys, typed_package, tmp_path, content, needles
):
    params = tmp_path / "params.json"
    params.write_text(content)
    failed_with(
        submit(capsys, kfp, typed_package, "--params-file", str(params), "--param", "name=x"),
        *needles,
    )
    assert kfp.requests == []


def test_other_local_refusals_send_nothing(kfp, capsys, typed_package):
    ok = ("--param", "name=x", "--param", "count=1")
    failed_with(run(capsys, "submit", "--experiment", "ci", "--host", kfp.url), "PACKAGE")
    failed_with(submit(capsys, kfp, typed_package, "--pipeline-name", "p", *ok), "not both")
    failed_with(submit(capsys, kfp, typed_package, "--version-name", "v", *ok), "--pipeline-name")
    failed_with(submit(capsys, kfp, typed_package, "--timeout", "5", *ok), "--timeout needs --wait")
    failed_with(submit(capsys, kfp, typed_package, "--params-file", "/nonexistent.json", *ok),
                "--params-file /nonexistent.json", "cannot read")  # fmt: skip
    assert kfp.requests == []


# --------------------------------------------------------------------------- submit --wait


def test_wait_follows_the_run_to_success(kfp, capsys):
    code, out, err = submit(capsys, kfp, TRAINING, "--param", SOURCE, "--param", "seed=3",
                            "--wait", "--poll", "0.01")  # fmt: skip
    assert code == 0, err
    (run_,) = kfp.runs.values()
    rid = run_["run_id"]
    progress = [line for line in err.splitlines() if line.startswith(f"run {rid}: ")]
    assert progress == [f"run {rid}: PENDING", f"run {rid}: RUNNING", f"run {rid}: SUCCEEDED"]
    assert out.splitlines()[-1].startswith(f"run {rid} (") and out.endswith("SUCCEEDED\n")
    assert kfp.calls("POST", RUNS)[0]["body"]["runtime_config"]["parameters"]["seed"] == 3


def test_wait_on_a_failed_run_names_the_run_state_and_task(kfp, capsys):
    kfp.run_states = ["PENDING", "RUNNING", "FAILED"]
    kfp.run_failure = {"task": "evaluate", "message": "gate rmse: 41.2 > 40.0"}
    result = submit(capsys, kfp, TRAINING, "--param", SOURCE, "--wait", "--poll", "0.01")
    line = failed_with(result, "FAILED", "failed task evaluate", "gate rmse: 41.2 > 40.0")
    (run_,) = kfp.runs.values()
    assert f"run {run_['run_id']} (" in line
    assert f"run {run_['run_id']}: RUNNING" in result[2]  # the progress came first


def test_wait_on_a_canceled_run_fails(kfp, capsys):
    kfp.run_states = ["RUNNING", "CANCELING", "CANCELED"]
    line = failed_with(
        submit(capsys, kfp, TRAINING, "--param", SOURCE, "--wait", "--poll", "0.01"), "CANCELED"
    )
    assert next(iter(kfp.runs)) in line


def test_wait_timeout_names_the_run_and_its_state(kfp, capsys):
    kfp.run_states = ["RUNNING"]  # never ends
    line = failed_with(
        submit(capsys, kfp, TRAINING, "--param", SOURCE, "--wait", "--timeout", "0"),
        "still RUNNING",
        "--timeout",
    )
    assert next(iter(kfp.runs)) in line


# --------------------------------------------------------------------------- submit an uploaded version


def _upload(capsys, kfp, version: str, package: str = TRAINING) -> None:
    code, _, err = run(capsys, "upload", package, "--pipeline-name", "lt",
                       "--version-name", version, "--host", kfp.url)  # fmt: skip
    assert code == 0, err


def test_submit_an_uploaded_version(kfp, capsys):
    _upload(capsys, kfp, "v1")
    _upload(capsys, kfp, "v2")
    versions = {v["name"]: v for v in kfp.versions.values()}
    code, out, err = run(capsys, "submit", "--pipeline-name", "lt", "--experiment", "ci",
                         "--param", SOURCE, "--host", kfp.url)  # fmt: skip
    assert code == 0, err
    body = kfp.calls("POST", RUNS)[-1]["body"]
    assert (
        body["pipeline_version_reference"]["pipeline_version_id"]
        == (
            versions["v2"]["pipeline_version_id"]  # the latest
        )
    )
    assert "pipeline_spec" not in body
    code, out, err = run(capsys, "submit", "--pipeline-name", "lt", "--version-name", "v1",
                         "--experiment", "ci", "--param", SOURCE, "--host", kfp.url)  # fmt: skip
    assert code == 0, err
    assert kfp.calls("POST", RUNS)[-1]["body"]["pipeline_version_reference"] == {
        "pipeline_id": versions["v1"]["pipeline_id"],
        "pipeline_version_id": versions["v1"]["pipeline_version_id"],
    }
    assert "of pipeline lt version v1" in out


def test_unknown_pipeline_or_version_is_one_line_and_runs_nothing(kfp, capsys):
    failed_with(
        run(capsys, "submit", "--pipeline-name", "nope", "--experiment", "ci", "--host", kfp.url),
        "no pipeline named 'nope'",
    )
    _upload(capsys, kfp, "v1")
    failed_with(
        run(capsys, "submit", "--pipeline-name", "lt", "--version-name", "v9", "--experiment",
            "ci", "--param", SOURCE, "--host", kfp.url),
        "no version 'v9'", "its versions: v1",
    )  # fmt: skip
    assert not kfp.calls("POST", RUNS) and not kfp.experiments


def test_parameters_of_an_uploaded_version_are_checked_before_the_run(kfp, capsys):
    _upload(capsys, kfp, "v1")
    kfp.requests.clear()
    failed_with(
        run(capsys, "submit", "--pipeline-name", "lt", "--experiment", "ci", "--param", SOURCE,
            "--param", "seed=soon", "--host", kfp.url),
        "--param seed", "NUMBER_INTEGER", "'soon'",
    )  # fmt: skip
    # Only reads (the lookup and the version's spec): nothing created.
    assert {r["method"] for r in kfp.requests} == {"GET"}
    assert not kfp.experiments and not kfp.runs


# --------------------------------------------------------------------------- connection and failures


@pytest.mark.parametrize("command", ["upload", "submit"])
def test_an_unreachable_host_is_one_line(kfp, capsys, command):
    kfp.refuse()
    extra = (
        ["--pipeline-name", "p"]
        if command == "upload"
        else ["--experiment", "ci", "--param", SOURCE]
    )
    failed_with(run(capsys, command, TRAINING, *extra, "--host", kfp.url),
                "cannot reach the KFP API", kfp.url)  # fmt: skip


def test_a_wrong_token_is_401_and_the_right_one_from_the_environment_works(
    kfp, capsys, monkeypatch
):
    kfp.access = {"good": {"team-a"}}
    failed_with(
        run(capsys, "upload", TRAINING, "--pipeline-name", "p", "--host", kfp.url,
            "--token", "bad"),
        kfp.url, "HTTP 401", "--token",
    )  # fmt: skip
    assert not kfp.pipelines
    monkeypatch.setenv(kfp_api.HOST_ENV, kfp.url)
    monkeypatch.setenv(kfp_api.TOKEN_ENV, "good")
    monkeypatch.setenv(kfp_api.NAMESPACE_ENV, "team-a")
    code, _, err = run(capsys, "upload", TRAINING, "--pipeline-name", "p")
    assert code == 0, err
    assert all(r["authorization"] == "Bearer good" for r in kfp.requests[-2:])
    (pipeline,) = kfp.pipelines.values()
    assert pipeline["namespace"] == "team-a"


def test_another_namespace_is_403_naming_it(kfp, capsys):
    kfp.multi_user = True
    kfp.access = {"alice": {"team-a"}}
    line = failed_with(
        submit(capsys, kfp, TRAINING, "--param", SOURCE, "--token", "alice", "-n", "team-b"),
        "HTTP 403", "namespace team-b",
    )  # fmt: skip
    assert kfp.url in line
    assert not kfp.experiments and not kfp.runs


def test_multi_user_runs_live_in_the_namespace(kfp, capsys):
    kfp.multi_user = True
    kfp.access = {"alice": {"team-a"}}
    code, _, err = submit(capsys, kfp, TRAINING, "--param", SOURCE, "--token", "alice",
                          "--namespace", "team-a", "--wait", "--poll", "0.01")  # fmt: skip
    assert code == 0, err
    (experiment,) = kfp.experiments.values()
    assert experiment["namespace"] == "team-a"
    (run_,) = kfp.runs.values()
    assert run_["_namespace"] == "team-a" and run_["state"] == "SUCCEEDED"
    listed = kfp.calls("GET", "/apis/v2beta1/experiments")
    assert listed and all(r["query"].get("namespace") == "team-a" for r in listed)


def test_multi_user_without_a_namespace_is_one_line(kfp, capsys):
    kfp.multi_user = True
    failed_with(submit(capsys, kfp, TRAINING, "--param", SOURCE), "HTTP 400", "namespace")
    assert not kfp.runs


def test_the_pods_kfp_service_account_token_is_sent(kfp, capsys, monkeypatch, tmp_path):
    token = tmp_path / "token"
    token.write_text("sa-token\n")
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(token))
    kfp.access = {"sa-token": set()}
    code, _, err = run(capsys, "upload", TRAINING, "--pipeline-name", "p", "--host", kfp.url)
    assert code == 0, err
    assert kfp.requests and all(r["authorization"] == "Bearer sa-token" for r in kfp.requests)


def test_in_a_pod_without_host_kfp_client_finds_the_in_cluster_service(
    kfp, capsys, monkeypatch, tmp_path
):
    """No --host in a pod: kfp.Client's own in-cluster path (load_incluster_config, the
    ml-pipeline service of the KFP namespace ``kubeflow``, the projected SA token). The
    profile namespace (--namespace) must not replace the service's namespace."""
    import kfp as kfp_sdk
    import kubernetes

    token = tmp_path / "token"
    token.write_text("sa-token")
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(token))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setattr(kubernetes.config, "load_incluster_config", lambda: None)
    asked = []

    class InCluster(str):  # kfp formats the in-cluster address with the KFP namespace
        def format(self, *args, **kwargs):
            asked.append(args)
            return kfp.url

    monkeypatch.setattr(kfp_sdk.Client, "_IN_CLUSTER_DNS_NAME", InCluster(""))
    kfp.multi_user = True
    kfp.access = {"sa-token": {"team-a"}}
    code, _, err = run(capsys, "submit", TRAINING, "--experiment", "ci", "--param", SOURCE,
                       "-n", "team-a")  # fmt: skip
    assert code == 0, err
    assert asked and all(a == ("kubeflow",) for a in asked)
    assert all(r["authorization"] == "Bearer sa-token" for r in kfp.requests)
    assert [e["namespace"] for e in kfp.experiments.values()] == ["team-a"]


def test_no_host_outside_a_pod_is_one_line(kfp, capsys, monkeypatch, tmp_path):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    failed_with(run(capsys, "upload", TRAINING, "--pipeline-name", "p"), "--host", "KFP_HOST")
    assert kfp.requests == []


# --------------------------------------------------------------------------- help


def _subparser(name: str):
    parser = cli_main.build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return sub.choices[name]


@pytest.mark.parametrize("command", ["upload", "submit", "compile", "schedule"])
def test_help_documents_every_option(capsys, command):
    with pytest.raises(SystemExit) as exit_:
        cli_main.main([command, "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    parser = _subparser(command)
    for action in parser._actions:
        for option in action.option_strings:
            assert option in text, option
        if action.option_strings and action.help != "show this help message and exit":
            assert action.help and len(action.help) > 10, action.option_strings
        if not action.option_strings and action.dest != "help":
            assert action.metavar in text and action.help, action.dest
    if command != "compile":
        for env in ("KFP_HOST", "KFP_TOKEN", "KFP_NAMESPACE", "KF_PIPELINES_SA_TOKEN_PATH"):
            assert env in text, env
    assert "Exit codes" in text
