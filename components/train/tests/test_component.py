"""transform -> tune -> train through kfp.local.SubprocessRunner: the components hand the
transformer's recorded metadata to the verified loader, and a tampered transformer fails the task."""

import json
import shutil

import pytest
from kfp import dsl

from components.ingest.component import ingest
from components.lib import features
from components.train.component import train
from components.transform.component import transform
from components.tune.component import tune
from pipelines import local as local_run
from tests.fitted import write_inputs
from tests.tamper import plant_trap

pytestmark = pytest.mark.local

SMALL_SEARCH = json.dumps(
    {
        "objective": {"metric": "rmse", "goal": "minimize"},
        "algorithm": "random",
        "max_trials": 2,
        "parameters": [{"name": "max_iter", "type": "int", "min": 10, "max": 20}],
    }
)


def test_transform_tune_train_pass_the_recorded_hashes(tmp_path, bikeshare_csv):
    local_run.init_subprocess(tmp_path / "root")

    @dsl.pipeline(name="fit-chain")
    def fit_chain(source_uri: str):
        splits = ingest(source_uri=source_uri, time_column="day")
        fitted = transform(train=splits.outputs["train"])
        best = tune(
            train_data=splits.outputs["train"],
            eval_data=splits.outputs["eval_data"],
            transformer=fitted.outputs["transformer"],
            search_space=SMALL_SEARCH,
        )
        stats = dsl.importer(artifact_uri=str(tmp_path), artifact_class=dsl.Artifact, reimport=True)
        train(
            train_data=splits.outputs["train"],
            eval_data=splits.outputs["eval_data"],
            transformer=fitted.outputs["transformer"],
            statistics=stats.output,
            params=best.outputs["Output"],
        )

    fit_chain(source_uri=str(bikeshare_csv))
    run = local_run.latest_run(tmp_path / "root", "fit-chain")
    records = {(r.task, r.name): r.metadata for r in local_run.run_artifacts(run)}
    transformer = records[("transform", "transformer")]
    assert transformer["spec_sha256"] and transformer["sha256"]
    model = records[("train", "model")]
    assert model["transform_version"] == transformer["transform_version"]
    assert json.loads(model["params"]).keys() == {"max_iter"}


@pytest.fixture(scope="module")
def tampered(bikeshare_csv, tmp_path_factory):
    """Splits, and a transformer folder whose joblib is a trap, with the original metadata."""
    folder = tmp_path_factory.mktemp("tampered")
    meta = write_inputs(folder, bikeshare_csv)
    marker = plant_trap(folder / "transformer" / features.TRANSFORMER_FILE, folder / "unpickled")
    return folder, meta, marker


@pytest.mark.parametrize("step", ["train", "tune"])
def test_a_tampered_transformer_fails_the_task_before_unpickling(step, tampered, tmp_path, capfd):
    folder, meta, marker = tampered
    local_run.init_subprocess(tmp_path / "root")
    copy = tmp_path / "transformer"
    shutil.copytree(folder / "transformer", copy)

    @dsl.pipeline(name="tampered")
    def tampered_run():
        def imported(path, cls, metadata=None):
            return dsl.importer(
                artifact_uri=str(path), artifact_class=cls, reimport=True, metadata=metadata or {}
            ).output

        data = imported(folder / "train", dsl.Dataset)
        valid = imported(folder / "eval", dsl.Dataset)
        fitted = imported(copy, dsl.Artifact, meta)
        if step == "train":
            train(
                train_data=data,
                eval_data=valid,
                transformer=fitted,
                statistics=imported(folder, dsl.Artifact),
            )
        else:
            tune(train_data=data, eval_data=valid, transformer=fitted, search_space=SMALL_SEARCH)

    with pytest.raises(RuntimeError, match=f"Inner task failed.*{step}"):
        tampered_run()
    logs = capfd.readouterr()
    assert (
        f"does not match the sha256 its producer recorded: expected {meta['sha256']}"
        in logs.out + logs.err
    )
    assert not marker.exists()
