"""Train logic, called directly: both tasks, both model types, save/load identity, lineage,
and a tampered transformer refused before it is unpickled."""

from __future__ import annotations

import copy
import json

import joblib
import numpy as np
import pandas as pd
import pytest

from components.lib import artifacts, features, modeling
from components.train import executor
from components.transform import executor as transform_exec
from tests.tamper import plant_trap, refusal_pattern

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def splits(bikeshare_csv, tmp_path_factory):
    data = pd.read_csv(bikeshare_csv)
    data["busy"] = (data["bikers"] > data["bikers"].median()).astype(int)
    folder = tmp_path_factory.mktemp("splits")
    cut1, cut2 = int(len(data) * 0.7), int(len(data) * 0.85)
    paths = {"train": folder / "train.parquet", "eval": folder / "eval.parquet"}
    data.iloc[:cut1].to_parquet(paths["train"], index=False)
    data.iloc[cut1:cut2].to_parquet(paths["eval"], index=False)
    return {k: str(v) for k, v in paths.items()}


def _transform(spec: dict, splits: dict, folder) -> tuple[str, dict]:
    """The transform step's output: the folder and the metadata it records."""
    fitted = transform_exec.fit(spec, pd.read_parquet(splits["train"]))
    return str(folder), transform_exec.save(fitted, spec, str(folder))


def _spec(task: str) -> dict:
    spec = copy.deepcopy(transform_exec.load_spec("bikeshare"))
    if task == "classification":
        spec.update(task="classification", target="busy")
    return spec


@pytest.mark.parametrize("task", ["regression", "classification"])
@pytest.mark.parametrize("model_type", ["gradient_boosting", "linear"])
def test_trains_evaluates_and_reloads_identically(task, model_type, splits, tmp_path):
    spec = _spec(task)
    transform_dir, transform_meta = _transform(spec, splits, tmp_path / "transform")
    lineage = {
        "data_sha256": "d" * 64,
        "schema_version": "bikeshare-1.0.0",
        "transform_version": "t",
    }
    meta, metrics = executor.run(
        splits["train"],
        splits["eval"],
        transform_dir,
        transform_meta,
        str(tmp_path / "model"),
        model_type,
        {},
        lineage,
        predictions_path=str(tmp_path / "pred.parquet"),
    )
    loaded = joblib.load(tmp_path / "model" / modeling.MODEL_FILE)
    raw = pd.read_parquet(
        splits["eval"]
    )  # raw rows, every column: the transform is inside the model
    np.testing.assert_array_equal(
        loaded.predict(raw), pd.read_parquet(tmp_path / "pred.parquet")["prediction"]
    )
    assert meta["sha256"] == artifacts.sha256_file(tmp_path / "model" / modeling.MODEL_FILE)
    assert meta["training_rows"] == len(pd.read_parquet(splits["train"]))
    assert {k: meta[k] for k in lineage} == lineage
    assert json.loads(meta["params"]) == {} and meta["task"] == task
    if task == "regression":
        assert metrics["r2"] > (0.6 if model_type == "gradient_boosting" else 0.3)
    else:
        assert metrics["accuracy"] > 0.7 and 0.5 < metrics["roc_auc"] <= 1


def test_gradient_boosting_beats_the_linear_baseline(splits, tmp_path):
    spec = _spec("regression")
    transform_dir, transform_meta = _transform(spec, splits, tmp_path / "transform")
    scores = {
        m: executor.run(
            splits["train"],
            splits["eval"],
            transform_dir,
            transform_meta,
            str(tmp_path / m),
            m,
            {},
            {},
        )[1]["rmse"]
        for m in ("gradient_boosting", "linear")
    }
    assert scores["gradient_boosting"] < scores["linear"]


def test_tampered_transformer_is_refused_before_unpickling(splits, tmp_path, no_unpickling):
    transform_dir, transform_meta = _transform(_spec("regression"), splits, tmp_path / "t")
    marker = plant_trap(tmp_path / "t" / features.TRANSFORMER_FILE, tmp_path / "unpickled")
    with pytest.raises(
        artifacts.IntegrityError, match=refusal_pattern("transformer", transform_meta["sha256"])
    ):
        executor.run(
            splits["train"],
            splits["eval"],
            transform_dir,
            transform_meta,
            str(tmp_path / "model"),
            "linear",
            {},
            {},
        )
    assert not marker.exists() and not (tmp_path / "model").exists()


def test_transformer_without_a_record_is_refused(splits, tmp_path, no_unpickling):
    transform_dir, _ = _transform(_spec("regression"), splits, tmp_path / "t")
    with pytest.raises(artifacts.IntegrityError, match="no valid recorded sha256"):
        executor.run(
            splits["train"],
            splits["eval"],
            transform_dir,
            {},
            str(tmp_path / "m"),
            "linear",
            {},
            {},
        )


def test_model_type_comes_from_the_search_space_and_a_disagreement_is_named(tmp_path):
    linear_space = json.dumps({"model_type": "linear", "parameters": []})
    # The bundled search space (what the training pipeline passes by default) tunes gradient
    # boosting, read from tune's spec file, not a constant of train.
    bundled = json.loads((executor.SEARCH_SPACES_DIR / "bikeshare.json").read_text())
    assert executor.resolve_model_type("", "bikeshare") == bundled["model_type"]
    # JSON text and a path work as in tune; the search space decides.
    assert executor.resolve_model_type("", linear_space) == "linear"
    path = tmp_path / "space.json"
    path.write_text(linear_space)
    assert executor.resolve_model_type("", str(path)) == "linear"
    assert executor.resolve_model_type("linear", linear_space) == "linear"
    # A search space without model_type means gradient boosting, as in tune.
    assert executor.resolve_model_type("", '{"parameters": []}') == "gradient_boosting"
    # Without a search space: the explicit type, else gradient boosting.
    assert executor.resolve_model_type("linear", "") == "linear"
    assert executor.resolve_model_type("", "") == "gradient_boosting"

    with pytest.raises(
        modeling.ModelError,
        match="model_type 'linear' disagrees with the search space's model_type 'gradient_boosting'",
    ):
        executor.resolve_model_type("linear", "bikeshare")
    with pytest.raises(modeling.ModelError, match="model_type 'xgboost' is not one of"):
        executor.resolve_model_type("", '{"model_type": "xgboost"}')
    with pytest.raises(modeling.ModelError, match="search space 'nope' not found"):
        executor.resolve_model_type("", "nope")
