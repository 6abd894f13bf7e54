"""validate_data's logic in the TFDV env (`make test` runs this file with .venv-tfdv)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from components.data_gate import executor as gate
from components.ingest import executor as ingest
from components.validate_data import executor, policy, schema
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
    assert meta == {"schema_version": "bikeshare-1.1.0", "datasets": {"train": 6051, "eval": 1297}}
    # The request schema register puts into the model version, beside the statistics.
    request = json.loads((tmp_path / "statistics" / "schema.json").read_text())
    versioned = schema.load("bikeshare")
    assert request == schema.request_schema(versioned.schema, versioned.version)
    assert request["schema_version"] == "bikeshare-1.1.0" and "bikers" in request["columns"]
    summary = json.loads((tmp_path / "anomalies" / "anomalies.json").read_text())
    assert summary["schema_version"] == "bikeshare-1.1.0"
    assert summary["policy_version"] == "bikeshare-drift-1.1.0"
    assert summary["anomalies_found"] is False
    assert summary["anomalies"] == [] and summary["reported"] == []
    assert summary["baseline"]["kind"] == "reference" and summary["baseline"]["rows"] == 8645
    measured = {(m["feature"], m["check"], m["verdict"]) for m in summary["measurements"]}
    assert ("hum", "drift", "ok") in measured and len(measured) == 6
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    for split in ("train", "eval"):
        parsed = text_format.Parse(
            (tmp_path / "anomalies" / f"{split}.pbtxt").read_text(), anomalies_pb2.Anomalies()
        )
        assert not parsed.anomaly_info  # a clean split: no anomaly recorded
        assert {f.name for f in parsed.baseline.feature} >= {"temp", "hum", "weathersit"}
    train_anomalies = text_format.Parse(
        (tmp_path / "anomalies" / "train.pbtxt").read_text(), anomalies_pb2.Anomalies()
    )
    # The train split's drift was measured (its values live in the text proto too).
    assert {"/".join(i.path.step) for i in train_anomalies.drift_skew_info} >= {"hum", "temp"}
    assert Path(out["anomalies_found_out"]).read_text() == "false"
    page = Path(out["report_out"]).read_text()
    assert "passes the gate" in page and "<script" not in page and "http" not in page
    assert all(f">{name}<" in page for name in ("temp", "weathersit", "bikers"))
    assert "jensen_shannon_divergence" in page  # drift measures against the reference statistics
    assert "Drift baseline: <b>the schema&#x27;s reference statistics" in page
    assert "**Passes the gate: no blocking findings.**" in Path(out["summary_out"]).read_text()


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
    # The data gate reads these outputs in the next task and stops the batch naming the
    # split, the column and the kind (the container pipeline runs this for a few cases:
    # tests/e2e/test_validation_gate_docker.py).
    with pytest.raises(gate.DataRejected) as stopped:
        gate.check(True, str(tmp_path / "anomalies"))
    assert f"split 'train', column '{case.column}': {case.expect}" in str(stopped.value)


def test_training_serving_skew_is_reported_against_training_statistics(clean_splits, tmp_path):
    training = executor.validate({"train": clean_splits["train"]}, "bikeshare")
    executor.write_outputs(training, **_outputs(tmp_path / "training"))
    stats_dir = str(tmp_path / "training" / "statistics")

    same = executor.validate(
        {"serving": clean_splits["train"]}, "bikeshare", training_statistics=stats_dir
    )
    assert not [f for f in same.findings if f.reason.startswith("skew:")]
    assert {m.verdict for m in same.measurements if m.check == "skew"} == {"ok"}

    shifted = corpus.build(corpus.BY_NAME["shifted_distribution"], tmp_path)
    # A batch (any name but "serving") is stopped by skew above the block level ...
    skewed = executor.validate({"batch": str(shifted)}, "bikeshare", training_statistics=stats_dir)
    skew = [f for f in skewed.findings if f.reason.startswith("skew:")]
    assert [(f.dataset, f.column, f.kind, f.level) for f in skew] == [
        ("batch", "hum", "COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH", "block")
    ]
    assert f"against training statistics {stats_dir}" in skew[0].reason
    # ... served traffic only reports it (the columns not in SERVING it carries here, the
    # snapshot's time column and the labels, are dropped and listed).
    served = executor.validate(
        {"serving": str(shifted)}, "bikeshare", training_statistics=stats_dir
    )
    skew = [f for f in served.findings if f.reason.startswith("skew:")]
    assert [(f.dataset, f.column, f.level) for f in skew] == [("serving", "hum", "warn")]
    assert "serving data: reported only" in skew[0].reason and not served.anomalies_found
    assert served.excluded_columns == ["day", "casual", "registered", "bikers"]


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
    assert ("hum", "COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH", "block") in {
        (f.column, f.kind, f.level) for f in result.findings
    }
    # The baseline is named, and the train dataset of a multi-split statistics folder is used.
    assert result.baseline.kind == "champion" and result.baseline.dataset == "train"
    assert str(tmp_path / "baseline" / "statistics") in result.findings[0].reason


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
    assert bundled.version == "bikeshare-1.1.0"
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
    assert anomalies["metadata"]["splits"] == ["train"]
    assert anomalies["metadata"]["policy_version"] == "bikeshare-drift-1.1.0"
    assert (
        out["artifacts"]["statistics"]["artifacts"][0]["metadata"]["schema_version"]
        == "bikeshare-1.1.0"
    )


def test_unreadable_dataset_is_named(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(executor.ValidationInputError, match="is empty"):
        executor.validate({"train": str(empty)}, "bikeshare")


# --------------------------------------------------------------------------- the gate's controls


def _ingested(source: Path, out: Path) -> dict[str, str]:
    """The real ingest step: time split on ``day``, 70 / 15 / 15, Parquet splits."""
    paths = {name: str(out / name) for name in ("train", "eval", "holdout")}
    ingest.run(str(source), paths, ingest.SplitRule("time", "day", 0.7, 0.15, 0.15))
    return paths


@pytest.mark.parametrize("control", corpus.CONTROLS, ids=[c.name for c in corpus.CONTROLS])
def test_clean_control_passes_the_gate_with_its_seasonal_drift_reported(control, tmp_path):
    batch = corpus.build_control(control, tmp_path / "batch")
    result = executor.validate(_ingested(batch, tmp_path / "splits"), "bikeshare")
    assert result.blocking == [] and not result.anomalies_found
    assert [d.name for d in result.statistics.datasets] == ["train", "eval", "holdout"]
    reported = {f.column for f in result.reported}
    assert reported == control.reported, result.reported
    assert {f.dataset for f in result.reported} == {"train"}
    assert all(f.kind.startswith("COMPARATOR_") for f in result.reported)
    executor.write_outputs(result, **_outputs(tmp_path))
    assert Path(tmp_path / "anomalies_found").read_text() == "false"
    summary = Path(tmp_path / "summary.md").read_text()
    assert "**Passes the gate: no blocking findings.**" in summary
    assert f"**{len(reported)} drift findings reported (they do not block):**" in summary
    assert "| train | `temp` | drift jensen_shannon_divergence |" in summary
    assert "Reported drift (does not block)" in Path(tmp_path / "report.html").read_text()


@pytest.mark.parametrize("case", corpus.NEWEST_CASES, ids=[c.name for c in corpus.NEWEST_CASES])
def test_defect_in_the_newest_rows_only_is_caught_in_the_holdout(case, tmp_path):
    batch = corpus.build(case, tmp_path / "batch", newest=True)
    result = executor.validate(_ingested(batch, tmp_path / "splits"), "bikeshare")
    blocking = {(f.dataset, f.column, f.kind) for f in result.blocking}
    assert ("holdout", case.column, case.expect) in blocking, blocking
    executor.write_outputs(result, **_outputs(tmp_path))
    assert (
        f"| holdout | `{case.column}` | {case.expect} |"
        in Path(tmp_path / "summary.md").read_text()
    )


def test_large_hum_shift_blocks_and_a_moderate_one_is_reported_and_passes(tmp_path):
    large = corpus.build(corpus.BY_NAME["shifted_distribution"], tmp_path / "large")
    blocked = executor.validate(_ingested(large, tmp_path / "large-splits"), "bikeshare")
    hum = next(m for m in blocked.measurements if m.feature == "hum")
    assert hum.verdict == "block" and hum.value > hum.block == 0.18
    assert [(f.dataset, f.column, f.level) for f in blocked.blocking] == [("train", "hum", "block")]
    assert "> block 0.18" in blocked.blocking[0].reason

    column, delta = corpus.REPORTED_SHIFT
    moderate = corpus.build_shift(column, delta, tmp_path / "moderate")
    passed = executor.validate(_ingested(moderate, tmp_path / "moderate-splits"), "bikeshare")
    hum = next(m for m in passed.measurements if m.feature == "hum")
    assert hum.warn < hum.value < hum.block and hum.verdict == "warn"
    assert not passed.anomalies_found
    assert [(f.dataset, f.column, f.level) for f in passed.reported] == [("train", "hum", "warn")]


def test_noise_bound_keeps_a_small_clean_batch_quiet_and_a_negligible_large_shift_ok(tmp_path):
    import pandas as pd

    full = pd.read_csv(corpus.BIKESHARE)
    small = full.sample(n=40, random_state=3)
    small.to_csv(tmp_path / "small.csv", index=False)
    quiet = executor.validate({"train": str(tmp_path / "small.csv")}, "bikeshare")
    # At 40 rows the measures exceed warn by chance, but not the noise bound.
    noisy = [m for m in quiet.measurements if m.value > m.warn]
    assert noisy and all(m.verdict == "noise" and m.value <= m.noise for m in noisy)
    assert quiet.findings == []

    # A million-row-scale batch is not flagged for a negligible shift: levels are effect sizes.
    big = pd.concat([full] * 20)
    big["hum"] = (big["hum"] + 0.01).clip(upper=1.0)
    big.to_parquet(tmp_path / "big.parquet", index=False)
    ok = executor.validate({"train": str(tmp_path / "big.parquet")}, "bikeshare")
    hum = next(m for m in ok.measurements if m.feature == "hum")
    assert hum.verdict == "ok" and hum.noise < hum.warn and ok.findings == []


def test_noise_bound_shrinks_with_rows_and_is_on_tfdv_scale():
    import numpy as np
    import tensorflow_data_validation as tfdv

    bundled = schema.load("bikeshare")
    ref = bundled.reference_statistics
    features = {f.path.step[0]: f for f in ref.datasets[0].features}
    hum = policy.distribution(features["hum"], "jensen_shannon_divergence")
    bounds = [
        policy.noise_bound(hum, n, 8645, "jensen_shannon_divergence", 0.01, 500)
        for n in (50, 500, 5000)
    ]
    assert bounds[0] > bounds[1] > bounds[2] > 0

    # The bootstrap's measure is TFDV's: same buckets, other counts, the same value.
    other = type(ref)()
    other.CopyFrom(ref)
    rng = np.random.default_rng(7)
    expected = {}
    for feature in other.datasets[0].features:
        name = feature.path.step[0]
        if name not in ("hum", "weathersit"):
            continue
        measure = "infinity_norm" if name == "weathersit" else "jensen_shannon_divergence"
        base = policy.distribution(feature, measure).counts
        new = rng.multinomial(300, base / base.sum()).astype(float)
        buckets = (
            feature.string_stats.rank_histogram.buckets
            if name == "weathersit"
            else next(h for h in feature.num_stats.histograms if h.type == h.STANDARD).buckets
        )
        for bucket, count in zip(buckets, new, strict=True):
            bucket.sample_count = count
        if name == "weathersit":
            for top, count in zip(feature.string_stats.top_values, new, strict=True):
                top.frequency = count
        expected[name] = float(policy.measure_value(measure, new, base))
    anomalies = tfdv.validate_statistics(other, bundled.schema, previous_statistics=ref)
    measured = {
        i.path.step[0]: m.value for i in anomalies.drift_skew_info for m in i.drift_measurements
    }
    for name, value in expected.items():
        assert measured[name] == pytest.approx(value, abs=1e-9), name


def test_js_on_different_bucket_edges_is_tfdvs(tmp_path):
    """The bootstrap re-buckets two histograms as TFDV does: same value on a real pair."""
    import pandas as pd
    import tensorflow_data_validation as tfdv

    first_half = pd.read_csv(corpus.BIKESHARE).query("day <= 120")
    first_half.to_csv(tmp_path / "h1.csv", index=False)
    stats = executor.compute_statistics(executor.read_table(str(tmp_path / "h1.csv")), "h1")
    bundled = schema.load("bikeshare")
    ref = bundled.reference_statistics
    anomalies = tfdv.validate_statistics(stats, bundled.schema, previous_statistics=ref)
    measured = {
        i.path.step[0]: m.value for i in anomalies.drift_skew_info for m in i.drift_measurements
    }
    cur = {f.path.step[0]: f for f in stats.datasets[0].features}
    base = {f.path.step[0]: f for f in ref.datasets[0].features}
    for name in ("temp", "hum", "windspeed", "bikers"):
        a = policy.distribution(cur[name], "jensen_shannon_divergence")
        b = policy.distribution(base[name], "jensen_shannon_divergence")
        if name != "hum":  # hum spans [0, 1] in both: the same edges
            assert not np.array_equal(a.edges, b.edges)  # really re-bucketed
        mine = policy.aligned_js(a.edges, a.counts, b.edges, b.counts)
        assert mine == pytest.approx(measured[name], abs=1e-9), name


def test_policy_must_agree_with_the_schema_and_name_the_field(tmp_path):
    bundled = schema.SCHEMAS_DIR / "bikeshare"
    text = (bundled / "drift_policy.yaml").read_text()

    def load_with(policy_text: str):
        (tmp_path / "drift_policy.yaml").write_text(policy_text)
        return schema.load(str(bundled / "schema.pbtxt"), str(tmp_path / "drift_policy.yaml"))

    assert load_with(text).policy.levels("hum", "drift") == policy.Levels(0.1, 0.18)
    with pytest.raises(policy.PolicyError, match=r"features\.hum\.drift\.warn is 0\.2 but"):
        load_with(text.replace("drift: {warn: 0.1, block: 0.18}", "drift: {warn: 0.2, block: 0.3}"))
    with pytest.raises(policy.PolicyError, match=r"features\.hum\.drift: block 0\.05 is below"):
        load_with(
            text.replace("drift: {warn: 0.1, block: 0.18}", "drift: {warn: 0.1, block: 0.05}")
        )
    with pytest.raises(policy.PolicyError, match="schema_version 'bikeshare-0.9.0'"):
        load_with(
            text.replace("schema_version: bikeshare-1.1.0", "schema_version: bikeshare-0.9.0")
        )
    with pytest.raises(policy.PolicyError, match="no drift_comparator for 'windspeed_gone'"):
        load_with(text.replace("  windspeed:", "  windspeed_gone:"))
    without_windspeed = text.split("  windspeed:")[0] + "  bikers:" + text.split("  bikers:")[1]
    with pytest.raises(policy.PolicyError, match="compares 'windspeed' \\(drift\\)"):
        load_with(without_windspeed)


def test_a_schema_without_a_policy_blocks_at_its_comparators(tmp_path):
    (tmp_path / "schema.pbtxt").write_text(
        (schema.SCHEMAS_DIR / "bikeshare" / "schema.pbtxt").read_text()
    )
    plain = schema.load(str(tmp_path / "schema.pbtxt"))
    assert plain.policy.levels("temp", "drift") == policy.Levels(0.1, 0.1)
    assert plain.policy.levels("bikers", "skew") is None
