"""materialize's CLI with real Feast (.venv-features): ingest-like splits in, store out."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from components.lib import featurestore as fs
from components.lib.feature_repos import bikeshare as repo
from components.materialize import executor

pytestmark = pytest.mark.features


def test_cli_writes_the_store_and_the_outputs_kfp_reads(bikeshare_csv, tmp_path):
    flat = pd.read_csv(bikeshare_csv)
    train, holdout = tmp_path / "train.parquet", tmp_path / "holdout.csv"
    flat.iloc[:6000].to_parquet(train, index=False)
    flat.iloc[6000:].to_csv(holdout, index=False)
    out = tmp_path / "out"
    executor_input = {
        "outputs": {
            "artifacts": {
                name: {"artifacts": [{"name": name, "uri": f"file://{out / name}"}]}
                for name in ("feature_store", "offline_store", "summary")
            },
            "outputFile": str(out / "executor_output.json"),
        }
    }
    args = ["--dataset", str(train), "--dataset", str(holdout), "--target", "embedded"]
    for name in ("feature-store", "offline-store", "summary", "feature-view-versions"):
        args += [f"--{name}-out", str(out / name.replace("-", "_"))]
    assert executor.main([*args, "--executor-input", json.dumps(executor_input)]) == 0

    record = json.loads((out / "feature_store" / "materialize.json").read_text())
    assert record["rows"] == len(flat) == 8645
    assert record["materialized"] == ["2011-01-01T00:00:00+00:00", "2011-12-31T23:00:00+00:00"]
    assert record["repository_version"] == repo.VERSION
    versions = json.loads((out / "feature_view_versions").read_text())
    assert set(versions) == {"weather", "calendar"}
    summary = (out / "summary").read_text()
    assert repo.VERSION in summary and "8,645" in summary and versions["weather"] in summary
    kfp = json.loads((out / "executor_output.json").read_text())
    assert kfp["parameterValues"]["feature_view_versions"] == json.dumps(versions, sort_keys=True)
    meta = kfp["artifacts"]["feature_store"]["artifacts"][0]["metadata"]
    assert meta["online_store"].startswith("sqlite:") and meta["feature_views"] == versions
    offline = pd.read_parquet(out / "offline_store" / "weather.parquet")
    assert len(offline) == 8645 and offline["city"].eq(repo.CITY).all()

    # The store in the feature_store folder answers online with the snapshot's last hour.
    where = fs.location(str(out / "feature_store"))
    store = fs.open_store(where, str(out / "feature_store"))
    online = fs.online_features(store, [offline["event_timestamp"].iloc[-1]])
    assert online["temp"].iloc[0] == offline["temp"].iloc[-1]


def test_a_snapshot_without_a_weather_column_is_refused_naming_it(bikeshare_csv, tmp_path):
    pd.read_csv(bikeshare_csv).drop(columns=["hum"]).to_csv(tmp_path / "s.csv", index=False)
    with pytest.raises(fs.FeatureStoreError, match="'hum'"):
        executor.materialize([str(tmp_path / "s.csv")], str(tmp_path / "fs"), str(tmp_path / "off"))
