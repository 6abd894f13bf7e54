"""validate_data's logic in the TFDV env (`make test` runs this file with .venv-tfdv)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from components.validate_data import executor, schema
from tests import corpus

pytestmark = pytest.mark.tfdv

VALIDATE_CASES = [c for c in corpus.CASES if c.stage == "validate"]


def _outputs(tmp_path: Path) -> dict[str, str]:
    return {
        "statistics_out": str(tmp_path / "statistics"),
        "anomalies_out": str(tmp_path / "anomalies"),
        "report_out": str(tmp_path / "report.html"),
        "summary_out": str(tmp_path / "summary.md"),
        "anomalies_found_out": str(tmp_path / "anomalies_found"),
    }


@pytest.fixture(scope="module")
def clean_splits(tmp_path_factory):
    """Bikeshare split by time like ingest does: first 70% train, next 15% eval (CSV files)."""
    lines = corpus.BIKESHARE.read_text().splitlines(keepends=True)
    header, rows = lines[0], lines[1:]
    cut1, cut2 = int(len(rows) * 0.7), int(len(rows) * 0.85)
    out = tmp_path_factory.mktemp("clean")
    (out / "train.csv").write_text(header + "".join(rows[:cut1]))
    (out / "eval.csv").write_text(header + "".join(rows[cut1:cut2]))
    return {"train": str(out / "train.csv"), "eval": str(out / "eval.csv")}


def test_clean_splits_pass_and_every_output_is_written(clean_splits, tmp_path):
    import tensorflow_data_validation as tfdv

    result = executor.validate(clean_splits, "bikeshare")
    assert result.findings == [] and not result.anomalies_found
    out = _outputs(tmp_path)
    executor.write_outputs(result, **out)

    stats = tfdv.load_stats_binary(str(tmp_path / "statistics" / executor.STATS_FILE))
    assert [d.name for d in stats.datasets] == ["train", "eval"]
    assert stats.datasets[0].num_examples == 6051
    meta = json.loads((tmp_path / "statistics" / "metadata.json").read_text())
    assert meta == {"schema_version": "bikeshare-1.0.0", "datasets": {"train": 6051, "eval": 1297}}
    summary = json.loads((tmp_path / "anomalies" / "anomalies.json").read_text())
    assert summary == {
        "schema_version": "bikeshare-1.0.0",
        "anomalies_found": False,
        "anomalies": [],
    }
    assert (tmp_path / "anomalies" / "train.pbtxt").exists() and (
        tmp_path / "anomalies" / "eval.pbtxt"
    ).exists()
    assert Path(out["anomalies_found_out"]).read_text() == "false"
    page = Path(out["report_out"]).read_text()
    assert "no anomalies" in page and "<script" not in page and "http" not in page
    assert all(f">{name}<" in page for name in ("temp", "weathersit", "bikers"))
    assert "JENSEN_SHANNON_DIVERGENCE" in page  # drift measures against the reference statistics
    assert "**No anomalies.**" in Path(out["summary_out"]).read_text()


@pytest.mark.parametrize("case", VALIDATE_CASES, ids=[c.name for c in VALIDATE_CASES])
def test_corpus_batch_is_caught_on_the_right_column(case, tmp_path):
    batch = corpus.build(case, tmp_path)
    result = executor.validate({"train": str(batch)}, "bikeshare")
    caught = {(f.column, f.kind) for f in result.findings}
    assert (case.column, case.expect) in caught, caught
    executor.write_outputs(result, **_outputs(tmp_path))
    assert Path(tmp_path / "anomalies_found").read_text() == "true"
    summary = json.loads((tmp_path / "anomalies" / "anomalies.json").read_text())
    assert any(
        a["column"] == case.column and a["kind"] == case.expect for a in summary["anomalies"]
    )
    assert f"<b>{case.column}</b>" in (tmp_path / "report.html").read_text()


def test_training_serving_skew_is_reported_against_training_statistics(clean_splits, tmp_path):
    training = executor.validate({"train": clean_splits["train"]}, "bikeshare")
    executor.write_outputs(training, **_outputs(tmp_path / "training"))
    stats_dir = str(tmp_path / "training" / "statistics")

    same = executor.validate(
        {"serving": clean_splits["train"]}, "bikeshare", training_statistics=stats_dir
    )
    assert not [f for f in same.findings if "serving" in f.reason]

    shifted = corpus.build(corpus.BY_NAME["shifted_distribution"], tmp_path)
    skewed = executor.validate(
        {"serving": str(shifted)}, "bikeshare", training_statistics=stats_dir
    )
    skew = [f for f in skewed.findings if "training and serving" in f.reason]
    assert [(f.column, f.kind) for f in skew] == [
        ("hum", "COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH")
    ]


def test_baseline_statistics_replace_the_reference_for_drift(clean_splits, tmp_path):
    shifted = corpus.build(corpus.BY_NAME["shifted_distribution"], tmp_path)
    baseline = executor.validate({"train": str(shifted)}, "bikeshare")
    executor.write_outputs(baseline, **_outputs(tmp_path / "baseline"))
    # The clean data drifts away from a baseline whose humidity was shifted.
    result = executor.validate(
        {"train": clean_splits["train"]},
        "bikeshare",
        baseline_statistics=str(tmp_path / "baseline" / "statistics"),
    )
    assert ("hum", "COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH") in {
        (f.column, f.kind) for f in result.findings
    }


def test_beam_path_matches_the_in_memory_statistics(clean_splits):
    table = executor.read_table(clean_splits["eval"])
    in_memory = executor.compute_statistics(table, "eval")
    on_beam = executor.compute_statistics(table, "eval", beam_args=["--runner=DirectRunner"])
    assert on_beam.datasets[0].num_examples == in_memory.datasets[0].num_examples == 1297

    def means(stats):
        return {
            f.path.step[0]: round(f.num_stats.mean, 9)
            for f in stats.datasets[0].features
            if f.HasField("num_stats")
        }

    assert means(on_beam) == means(in_memory)


def test_schema_needs_a_version_and_a_known_name(tmp_path):
    unversioned = tmp_path / "schema.pbtxt"
    unversioned.write_text('feature { name: "x" type: INT }\n')
    with pytest.raises(schema.SchemaError, match="no '# schema_version: NAME-X.Y.Z' line"):
        schema.load(str(unversioned))
    with pytest.raises(schema.SchemaError, match="no such bundled schema; bundled: bikeshare"):
        schema.load("taxi")
    bundled = schema.load("bikeshare")
    assert bundled.version == "bikeshare-1.0.0"
    assert bundled.reference_statistics.datasets[0].num_examples == 8645


def test_inferred_schema_has_reviewable_bounds_and_catches_out_of_range(tmp_path):
    table = executor.read_table(str(corpus.BIKESHARE))
    text = schema.infer(executor.compute_statistics(table, "all"), "bikeshare-draft-0.1.0")
    assert text.startswith("# schema_version: bikeshare-draft-0.1.0\n")
    path = tmp_path / "schema.pbtxt"
    path.write_text(text)
    inferred = schema.load(str(path))
    temp = next(f for f in inferred.schema.feature if f.name == "temp")
    assert (
        temp.float_domain.max > 1.0 and temp.float_domain.disallow_inf
    )  # widened, not what one batch showed
    assert temp.drift_comparator.jensen_shannon_divergence.threshold == schema.DRIFT_JS
    assert not temp.HasField("shape")

    assert executor.validate({"all": str(corpus.BIKESHARE)}, str(path)).findings == []
    bad = corpus.build(corpus.BY_NAME["out_of_range"], tmp_path)
    assert ("temp", "FLOAT_TYPE_BIG_FLOAT") in {
        (f.column, f.kind) for f in executor.validate({"b": str(bad)}, str(path)).findings
    }


def test_executor_output_carries_metadata_and_the_flag(tmp_path):
    batch = corpus.build(corpus.BY_NAME["unseen_category"], tmp_path)
    result = executor.validate({"train": str(batch)}, "bikeshare")
    executor_input = {
        "outputs": {
            "outputFile": str(tmp_path / "task" / "executor_output.json"),
            "artifacts": {
                name: {"artifacts": [{"name": name, "uri": str(tmp_path / "task" / name)}]}
                for name in ("statistics", "anomalies", "report", "summary")
            },
        }
    }
    path = executor.write_executor_output(json.dumps(executor_input), result)
    out = json.loads(Path(path).read_text())
    assert out["parameterValues"] == {"anomalies_found": True}
    anomalies = out["artifacts"]["anomalies"]["artifacts"][0]
    assert anomalies["uri"] == str(tmp_path / "task" / "anomalies")
    assert (
        anomalies["metadata"]["columns"] == ["weathersit"] and anomalies["metadata"]["count"] == 1
    )
    assert (
        out["artifacts"]["statistics"]["artifacts"][0]["metadata"]["schema_version"]
        == "bikeshare-1.0.0"
    )


def test_unreadable_dataset_is_named(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(executor.ValidationInputError, match="is empty"):
        executor.validate({"train": str(empty)}, "bikeshare")
