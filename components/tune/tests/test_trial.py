"""The Katib trial entrypoint: local paths and object-store URIs, metrics on stdout, and the
transformer verified (against the hashes the launcher hands on) before it is unpickled."""

from __future__ import annotations

import io
import shutil

import pytest

from components.lib import features
from components.lib.artifacts import IntegrityError
from components.tune import katib, search_space, trial
from tests.fitted import write_inputs
from tests.tamper import plant_trap, refusal_pattern

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def artifacts(bikeshare_csv, tmp_path_factory):
    folder = tmp_path_factory.mktemp("trial")
    return folder, write_inputs(folder, bikeshare_csv)


def _recorded(meta: dict) -> list[str]:
    """The arguments the launcher passes: what the transform step recorded."""
    return [
        f"--transformer-sha256={meta['sha256']}",
        f"--spec-sha256={meta['spec_sha256']}",
        f"--sklearn-version={meta['sklearn_version']}",
    ]


def _metrics(out: str) -> dict:
    return {k: float(v) for k, v in (line.split("=", 1) for line in out.strip().splitlines())}


def test_prints_every_metric_for_katibs_stdout_collector(artifacts, capsys):
    artifacts, meta = artifacts
    args = [
        *_recorded(meta),
        f"--train={artifacts / 'train'}",
        f"--eval={artifacts / 'eval'}",
        f"--transformer={artifacts / 'transformer'}",
        "--model-type=gradient_boosting",
        "--metric=rmse",
        "--param=learning_rate=0.1",
        "--param=max_iter=50",
        "--param=loss=poisson",
    ]
    assert trial.main(args) == 0
    metrics = _metrics(capsys.readouterr().out)
    assert set(metrics) == {"rmse", "mae", "r2"} and metrics["rmse"] > 0


def test_reads_artifacts_from_the_object_store(artifacts, s3_server, s3_client, capsys):
    artifacts, meta = artifacts
    s3_client.make_bucket("mlpipeline")
    for path in sorted(p for p in artifacts.rglob("*") if p.is_file()):
        data = path.read_bytes()
        s3_client.put_object(
            "mlpipeline", f"run/{path.relative_to(artifacts)}", io.BytesIO(data), len(data)
        )
    base = ["--model-type=linear", "--metric=r2", "--param=alpha=1.0", *_recorded(meta)]
    trial.main(
        [
            f"--train={artifacts / 'train'}",
            f"--eval={artifacts / 'eval'}",
            f"--transformer={artifacts / 'transformer'}",
            *base,
        ]
    )
    local = _metrics(capsys.readouterr().out)
    trial.main(
        [
            "--train=minio://mlpipeline/run/train",
            "--eval=minio://mlpipeline/run/eval",
            "--transformer=minio://mlpipeline/run/transformer",
            f"--s3-endpoint={s3_server}",
            *base,
        ]
    )
    assert _metrics(capsys.readouterr().out) == local


def test_bad_metric_is_named(artifacts, capsys):
    artifacts, meta = artifacts
    with pytest.raises(SystemExit):
        trial.main(
            [
                *_recorded(meta),
                f"--train={artifacts / 'train'}",
                f"--eval={artifacts / 'eval'}",
                f"--transformer={artifacts / 'transformer'}",
                "--model-type=linear",
                "--metric=accuracy",
            ]
        )
    assert "--metric 'accuracy' is not one of rmse, mae, r2" in capsys.readouterr().err


@pytest.fixture
def tampered(artifacts, tmp_path):
    """A copy of the artifacts whose transformer.joblib is a trap; the original metadata."""
    folder, meta = artifacts
    copy = tmp_path / "tampered"
    shutil.copytree(folder, copy)
    marker = plant_trap(copy / "transformer" / features.TRANSFORMER_FILE, tmp_path / "unpickled")
    return copy, meta, marker


def test_tampered_transformer_is_refused_before_unpickling(tampered, no_unpickling):
    folder, meta, marker = tampered
    with pytest.raises(IntegrityError, match=refusal_pattern("transformer", meta["sha256"])):
        trial.main(
            [
                f"--train={folder / 'train'}",
                f"--eval={folder / 'eval'}",
                f"--transformer={folder / 'transformer'}",
                *_recorded(meta),
                "--model-type=linear",
                "--metric=r2",
            ]
        )
    assert not marker.exists()


def test_tampered_transformer_in_the_object_store_is_refused(
    tampered, s3_server, s3_client, no_unpickling
):
    folder, meta, marker = tampered
    s3_client.make_bucket("trial-tampered")
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        s3_client.put_object(
            "trial-tampered", f"run/{path.relative_to(folder)}", io.BytesIO(data), len(data)
        )
    with pytest.raises(IntegrityError, match=refusal_pattern("transformer", meta["sha256"])):
        trial.main(
            [
                "--train=s3://trial-tampered/run/train",
                "--eval=s3://trial-tampered/run/eval",
                "--transformer=s3://trial-tampered/run/transformer",
                f"--s3-endpoint={s3_server}",
                *_recorded(meta),
                "--model-type=linear",
                "--metric=r2",
            ]
        )
    assert not marker.exists()


def test_no_recorded_hash_no_trial(artifacts, no_unpickling):
    """A launcher that hands on no hashes gets refused trials, not unverified ones."""
    folder, meta = artifacts
    with pytest.raises(IntegrityError, match="no valid recorded sha256"):
        trial.main(
            [
                f"--train={folder / 'train'}",
                f"--eval={folder / 'eval'}",
                f"--transformer={folder / 'transformer'}",
                "--transformer-sha256=",
                f"--spec-sha256={meta['spec_sha256']}",
                f"--sklearn-version={meta['sklearn_version']}",
                "--model-type=linear",
                "--metric=r2",
            ]
        )


def _katib_trial_args(folder, meta: dict) -> list[str]:
    """The trial command of the Experiment katib.experiment builds, with Katib's substitution done."""
    body = katib.experiment(
        search_space.load("bikeshare"),
        "loopline-tune-1",
        "team-a",
        "img:1",
        {
            "train": str(folder / "train"),
            "eval": str(folder / "eval"),
            "transformer": str(folder / "transformer"),
            "transformer_sha256": meta["sha256"],
            "spec_sha256": meta["spec_sha256"],
            "sklearn_version": meta["sklearn_version"],
        },
    )
    template = body["spec"]["trialTemplate"]
    command = template["trialSpec"]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[:3] == ["python", "-m", "components.tune.trial"]
    values = {
        "learning_rate": "0.1",
        "max_iter": "20",
        "max_leaf_nodes": "15",
        "min_samples_leaf": "20",
        "l2_regularization": "0.5",
    }
    assert {p["name"] for p in template["trialParameters"]} == set(values)
    args = command[3:]
    for name, value in values.items():
        args = [a.replace(f"${{trialParameters.{name}}}", value) for a in args]
    return args


def test_the_experiments_trial_command_verifies_the_transformer(artifacts, tampered, capsys):
    folder, meta = artifacts
    assert trial.main(_katib_trial_args(folder, meta)) == 0
    assert "rmse=" in capsys.readouterr().out
    bad_folder, _, marker = tampered
    with pytest.raises(IntegrityError):
        trial.main(_katib_trial_args(bad_folder, meta))
    assert not marker.exists()


def test_reads_katibs_text_values_as_the_launcher_does(artifacts, capsys):
    """`true` and `True` are the same value for a trial (and for the launcher's result)."""
    folder, meta = artifacts
    data = [
        f"--train={folder / 'train'}",
        f"--eval={folder / 'eval'}",
        f"--transformer={folder / 'transformer'}",
        *_recorded(meta),
        "--model-type=linear",
        "--metric=r2",
    ]
    runs = {}
    for text in ("true", "True", "false"):
        assert trial.main([*data, f"--param=fit_intercept={text}"]) == 0
        runs[text] = _metrics(capsys.readouterr().out)
    assert runs["true"] == runs["True"] != runs["false"]
