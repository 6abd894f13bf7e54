"""feature_join's CLI with real Feast (.venv-features): materialize's store in, training rows
in ingest's split shape out; Feast's join equals the hand-written as-of join."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from components.feature_join import executor
from components.lib import featurestore as fs
from components.lib import tables
from components.lib.feature_repos import bikeshare as repo
from components.materialize import executor as materialize

pytestmark = pytest.mark.features


def _materialize(snapshot, out):
    args = ["--dataset", str(snapshot), "--target", "embedded"]
    for name in ("feature-store", "offline-store", "summary", "feature-view-versions"):
        args += [f"--{name}-out", str(out / name.replace("-", "_"))]
    assert materialize.main(args) == 0
    return out / "feature_store"


def _join(examples, store_dir, out):
    executor_input = {
        "outputs": {
            "artifacts": {
                name: {"artifacts": [{"name": name, "uri": f"file://{out / name}"}]}
                for name in ("joined", "summary")
            },
            "outputFile": str(out / "executor_output.json"),
        }
    }
    args = ["--examples", str(examples), "--feature-store", str(store_dir)]
    for name in ("joined", "summary", "feature-view-versions"):
        args += [f"--{name}-out", str(out / name.replace("-", "_"))]
    assert executor.main([*args, "--executor-input", json.dumps(executor_input)]) == 0
    return pd.read_parquet(out / "joined"), json.loads((out / "executor_output.json").read_text())


@pytest.fixture(scope="module")
def year(bikeshare_csv, tmp_path_factory):
    """The whole snapshot materialized (embedded: DuckDB offline store), and the flat rows."""
    tmp = tmp_path_factory.mktemp("year")
    return _materialize(bikeshare_csv, tmp), tables.read_table(str(bikeshare_csv)).to_pandas()


def test_a_split_joined_from_the_store_equals_the_flat_split(year, tmp_path):
    store_dir, flat = year
    split = tmp_path / "train.parquet"
    flat.iloc[:6000].to_parquet(split, index=False)
    joined, kfp = _join(split, store_dir, tmp_path / "out")

    # The split's shape: the same columns, order and Arrow types as ingest writes.
    expected = tables.read_table(str(split)).schema
    assert tables.read_table(str(tmp_path / "out" / "joined")).schema.equals(expected)
    # Every value from the store equals the flat row's (every hour of the year is observed).
    pd.testing.assert_frame_equal(joined, flat.iloc[:6000].reset_index(drop=True))

    versions = json.loads((store_dir.parent / "feature_view_versions").read_text())
    assert json.loads((tmp_path / "out" / "feature_view_versions").read_text()) == versions
    meta = kfp["artifacts"]["joined"]["artifacts"][0]["metadata"]
    assert json.loads(meta["feature_view_versions"]) == versions
    assert meta["rows"] == 6000 and meta["repository_version"] == repo.VERSION
    assert meta["sha256"] and meta["examples_form"] == "derived from a split"
    assert kfp["parameterValues"]["feature_view_versions"] == json.dumps(versions, sort_keys=True)
    summary = (tmp_path / "out" / "summary").read_text()
    assert "6,000 examples" in summary and versions["weather"] in summary


def test_an_entity_table_gets_the_older_value_and_nulls_past_the_ttl(bikeshare_csv, tmp_path):
    flat = tables.read_table(str(bikeshare_csv)).to_pandas()
    observations = fs.weather_observations(flat)
    # Remove every observation of March 2-3 (48 hours): examples there see the last one of
    # March 1 (23:00) up to 3 h later (02:00 included), then nothing.
    gone = observations["event_timestamp"].between(
        pd.Timestamp("2011-03-02T00:00Z"), pd.Timestamp("2011-03-03T23:00Z")
    )
    snapshot = flat[~gone.to_numpy()]
    snapshot.to_parquet(tmp_path / "snapshot.parquet", index=False)
    store_dir = _materialize(tmp_path / "snapshot.parquet", tmp_path / "m")

    times = pd.to_datetime(
        ["2011-03-01T23:30Z", "2011-03-02T01:59Z", "2011-03-02T02:00Z", "2011-03-02T02:01Z"],
        utc=True,
    )
    entity = pd.DataFrame({"city": repo.CITY, "event_timestamp": times, "bikers": [1, 2, 3, 4]})
    entity.to_parquet(tmp_path / "entity.parquet", index=False)
    joined, _ = _join(tmp_path / "entity.parquet", store_dir, tmp_path / "out")
    last = observations[observations["event_timestamp"] == pd.Timestamp("2011-03-01T23:00Z")]
    assert joined["temp"].tolist()[:3] == [last["temp"].iloc[0]] * 3  # within 3 h: the older one
    assert joined.loc[3, list(repo.WEATHER_FEATURES)].isna().all()  # 3 h 1 min: none
    assert joined["hr"].tolist() == [23, 1, 2, 2] and joined["day"].tolist() == [60, 61, 61, 61]
    assert joined["bikers"].tolist() == [1, 2, 3, 4]
    assert "casual" not in joined.columns  # only the labels the table carries


def test_feasts_join_equals_the_hand_written_asof_join_with_gaps(bikeshare_csv, tmp_path):
    """The pandas peer (featurestore.asof_join) that the TFDV and main-env tests build their
    rows with gives Feast's rows: values and nulls, on examples at random minutes."""
    flat = tables.read_table(str(bikeshare_csv)).to_pandas()
    observations = fs.weather_observations(flat)
    rng = np.random.default_rng(0)
    kept = observations[rng.random(len(observations)) >= 0.2].reset_index(drop=True)
    where = fs.location(str(tmp_path / "storage"), "embedded")
    assert where.offline == "duckdb"
    fs.write_offline(kept, where, str(tmp_path))
    store = fs.open_store(where, str(tmp_path / "repo"))
    fs.apply(store, where)
    entity = pd.DataFrame(
        {
            "city": repo.CITY,
            "event_timestamp": observations["event_timestamp"]
            + pd.to_timedelta(rng.integers(0, 240, len(observations)), unit="m"),
            "bikers": 1,
        }
    ).sample(frac=1.0, random_state=0)
    by_feast = fs.historical_features(store, entity)
    by_hand = fs.asof_join(kept, entity)
    assert by_feast[list(repo.WEATHER_FEATURES)].isna().any(axis=1).sum() > 20
    by_feast, by_hand = (
        f.reset_index(drop=True)
        .astype({"weathersit": object})
        .pipe(lambda f: f.where(f.notna(), None))
        for f in (by_feast, by_hand)
    )
    pd.testing.assert_frame_equal(by_feast, by_hand, check_dtype=False)


def test_examples_without_time_or_label_are_refused_naming_it(year, tmp_path):
    store_dir, flat = year
    flat[["season", "temp"]].to_parquet(tmp_path / "x.parquet", index=False)
    with pytest.raises(fs.FeatureStoreError, match="day and hr"):
        executor.feature_join(
            str(tmp_path / "x.parquet"), str(store_dir), str(tmp_path / "j"), str(tmp_path / "r")
        )
    flat[["day", "hr", "temp"]].to_parquet(tmp_path / "y.parquet", index=False)
    with pytest.raises(fs.FeatureStoreError, match="'bikers'"):
        executor.feature_join(
            str(tmp_path / "y.parquet"), str(store_dir), str(tmp_path / "j"), str(tmp_path / "r")
        )


def test_a_store_that_is_not_materializes_output_is_refused_naming_it(year, tmp_path):
    # The training pipeline's feature_store_uri pointing at anything else: named, no join.
    _, flat = year
    flat.iloc[:10].to_parquet(tmp_path / "x.parquet", index=False)
    (tmp_path / "not-a-store").mkdir()
    with pytest.raises(fs.FeatureStoreError, match=r"not-a-store: no materialize.json \(give"):
        executor.feature_join(
            str(tmp_path / "x.parquet"),
            str(tmp_path / "not-a-store"),
            str(tmp_path / "j"),
            str(tmp_path / "r"),
        )
    assert not (tmp_path / "j").exists()
