"""The data gate: its logic directly, and the component through kfp.local.SubprocessRunner."""

import json

import pytest

from components.data_gate import executor
from components.data_gate.component import data_gate
from pipelines import local as local_run

FOUND = {
    "schema_version": "bikeshare-1.0.0",
    "policy_version": "bikeshare-drift-1.0.0",
    "anomalies_found": True,
    "anomalies": [
        {
            "dataset": "train",
            "column": "weathersit",
            "kind": "ENUM_TYPE_UNEXPECTED_STRING_VALUES",
            "reason": "hail",
        },
        {"dataset": "eval", "column": "temp", "kind": "FLOAT_TYPE_BIG_FLOAT", "reason": "1.7>1"},
    ],
}


def _anomalies_dir(tmp_path, summary):
    folder = tmp_path / "anomalies"
    folder.mkdir()
    (folder / "anomalies.json").write_text(json.dumps(summary))
    return str(folder)


@pytest.mark.unit
def test_gate_passes_clean_data(tmp_path):
    clean = {"schema_version": "bikeshare-1.0.0", "anomalies_found": False, "anomalies": []}
    assert executor.check(False, _anomalies_dir(tmp_path, clean)) == 0


@pytest.mark.unit
def test_gate_rejects_and_names_every_column(tmp_path):
    with pytest.raises(executor.DataRejected) as err:
        executor.check(True, _anomalies_dir(tmp_path, FOUND))
    message = str(err.value)
    assert "2 blocking findings (schema bikeshare-1.0.0, policy bikeshare-drift-1.0.0)" in message
    assert "split 'train', column 'weathersit': ENUM_TYPE_UNEXPECTED_STRING_VALUES" in message
    assert "split 'eval', column 'temp': FLOAT_TYPE_BIG_FLOAT" in message


@pytest.mark.unit
def test_gate_passes_reported_drift_and_logs_it(tmp_path, caplog):
    reported = {
        "schema_version": "bikeshare-1.0.0",
        "policy_version": "bikeshare-drift-1.0.0",
        "baseline": {"description": "the schema's reference statistics"},
        "anomalies_found": False,
        "anomalies": [],
        "reported": [
            {
                "dataset": "train",
                "column": "temp",
                "kind": "COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH",
                "reason": "drift: Jensen-Shannon divergence 0.158 > warn 0.1",
            }
        ],
    }
    with caplog.at_level("WARNING", logger="loopline.data_gate"):
        assert executor.check(False, _anomalies_dir(tmp_path, reported)) == 1
    assert "passed with 1 reported drift findings" in caplog.text
    assert "split 'train', column 'temp': COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH" in caplog.text


@pytest.mark.unit
def test_gate_blocks_on_the_flag_even_when_the_list_is_empty(tmp_path):
    flagged = {"schema_version": "bikeshare-1.0.0", "anomalies_found": True, "anomalies": []}
    with pytest.raises(executor.DataRejected, match="0 blocking findings"):
        executor.check(True, _anomalies_dir(tmp_path, flagged))


@pytest.mark.unit
def test_gate_refuses_when_validation_left_no_summary(tmp_path):
    with pytest.raises(executor.DataRejected, match="validation did not finish"):
        executor.check(False, str(tmp_path))


@pytest.mark.local
def test_gate_component_fails_the_task_on_anomalies(tmp_path, capfd):
    from kfp import dsl

    local_run.init_subprocess(tmp_path / "root")
    folder = _anomalies_dir(tmp_path, FOUND)

    @dsl.pipeline(name="gate-only")
    def gate_only(found: bool):
        imported = dsl.importer(artifact_uri=folder, artifact_class=dsl.Artifact, reimport=True)
        data_gate(anomalies_found=found, anomalies=imported.output)

    with pytest.raises(RuntimeError, match="Inner task failed.*data-gate"):
        gate_only(found=True)
    logs = capfd.readouterr()
    assert "split 'train', column 'weathersit': ENUM_TYPE_UNEXPECTED_STRING_VALUES" in (
        logs.out + logs.err
    )
