"""The Katib trial entrypoint: local paths and object-store URIs, metrics on stdout."""

from __future__ import annotations

import io

import pandas as pd
import pytest

from components.transform import executor as transform_exec
from components.tune import trial

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def artifacts(bikeshare_csv, tmp_path_factory):
    folder = tmp_path_factory.mktemp("trial")
    data = pd.read_csv(bikeshare_csv)
    data.iloc[:3000].to_parquet(folder / "train", index=False)
    data.iloc[3000:3600].to_parquet(folder / "eval", index=False)
    spec = transform_exec.load_spec("bikeshare")
    transform_exec.save(
        transform_exec.fit(spec, data.iloc[:3000]), spec, str(folder / "transformer")
    )
    return folder


def _metrics(out: str) -> dict:
    return {k: float(v) for k, v in (line.split("=", 1) for line in out.strip().splitlines())}


def test_prints_every_metric_for_katibs_stdout_collector(artifacts, capsys):
    args = [
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
    s3_client.make_bucket("mlpipeline")
    for path in sorted(p for p in artifacts.rglob("*") if p.is_file()):
        data = path.read_bytes()
        s3_client.put_object(
            "mlpipeline", f"run/{path.relative_to(artifacts)}", io.BytesIO(data), len(data)
        )
    base = ["--model-type=linear", "--metric=r2", "--param=alpha=1.0"]
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
    with pytest.raises(SystemExit):
        trial.main(
            [
                f"--train={artifacts / 'train'}",
                f"--eval={artifacts / 'eval'}",
                f"--transformer={artifacts / 'transformer'}",
                "--model-type=linear",
                "--metric=accuracy",
            ]
        )
    assert "--metric 'accuracy' is not one of rmse, mae, r2" in capsys.readouterr().err


def test_reads_katibs_text_values_as_the_launcher_does(artifacts, capsys):
    """`true` and `True` are the same value for a trial (and for the launcher's result)."""
    data = [
        f"--train={artifacts / 'train'}",
        f"--eval={artifacts / 'eval'}",
        f"--transformer={artifacts / 'transformer'}",
        "--model-type=linear",
        "--metric=r2",
    ]
    runs = {}
    for text in ("true", "True", "false"):
        assert trial.main([*data, f"--param=fit_intercept={text}"]) == 0
        runs[text] = _metrics(capsys.readouterr().out)
    assert runs["true"] == runs["True"] != runs["false"]
