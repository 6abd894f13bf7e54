"""The compiled predict path against scikit-learn on real Bikeshare models.

No timing here: the speed is measured in bench/predict_paths.py.
"""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest

from components.lib import fastpath, modeling
from components.transform import executor as transform_exec

pytestmark = pytest.mark.unit

HIGH_DEMAND = 300  # bikers > 300: the classification label


@pytest.fixture(scope="module")
def data(bikeshare_csv):
    frame = pd.read_csv(bikeshare_csv)
    frame["high_demand"] = (frame["bikers"] > HIGH_DEMAND).astype(int)
    # Holdout: 600 rows after the training rows (other months, other weather).
    return frame.iloc[:3000], frame.iloc[5000:5600].reset_index(drop=True)


def _fit(train, task="regression", model_type="gradient_boosting", params=None):
    spec = copy.deepcopy(transform_exec.load_spec("bikeshare"))
    if task == "classification":
        spec.update(task="classification", target="high_demand")
    transformer = transform_exec.fit(spec, train)
    return modeling.fit(transformer, spec, model_type, params or {"max_iter": 40}, train)


@pytest.fixture(scope="module")
def models(data):
    train, _ = data
    # A model that saw missing values in hum and temp, so that its splits route NaN both ways.
    with_nan = train.copy()
    rng = np.random.default_rng(0)
    for column in ("hum", "temp"):
        with_nan.loc[rng.random(len(train)) < 0.15, column] = np.nan
    return {
        ("regression", "gradient_boosting"): _fit(train),
        ("regression", "linear"): _fit(train, model_type="linear", params={}),
        ("classification", "gradient_boosting"): _fit(train, "classification"),
        ("classification", "linear"): _fit(train, "classification", "linear", {}),
        "nan": _fit(with_nan),
    }


def _columns(pipeline, frame):
    return fastpath.columns_of(frame, list(pipeline.feature_names_in_))


def _assert_agrees(pipeline, compiled, frame, task):
    expected = pipeline.predict(frame[list(pipeline.feature_names_in_)])
    got = compiled.predict(_columns(pipeline, frame))
    assert got.shape == expected.shape
    if task == "regression":
        bound = fastpath.REL_TOLERANCE * np.maximum(1.0, np.abs(expected))
        assert np.all(np.abs(got - expected) <= bound), np.max(np.abs(got - expected))
    else:
        assert got.dtype == expected.dtype
        assert np.array_equal(got, expected)


@pytest.mark.parametrize(
    "key",
    [
        ("regression", "gradient_boosting"),
        ("regression", "linear"),
        ("classification", "gradient_boosting"),
        ("classification", "linear"),
    ],
)
def test_compiled_predictions_agree_with_scikit_learn_on_the_holdout(models, data, key):
    task, _ = key
    pipeline, (_, holdout) = models[key], data
    compiled = fastpath.compile_pipeline(pipeline)
    _assert_agrees(pipeline, compiled, holdout, task)
    agreement = fastpath.check(pipeline, compiled, holdout, task)
    assert agreement.ok and agreement.rows == len(holdout) == 600
    assert agreement.max_abs_deviation <= fastpath.REL_TOLERANCE * 1e4
    if task == "classification":
        assert set(np.unique(compiled.predict(_columns(pipeline, holdout)))) == {0, 1}
        proba = compiled.predict_proba(_columns(pipeline, holdout))
        reference = pipeline.predict_proba(holdout[list(pipeline.feature_names_in_)])
        assert np.allclose(proba, reference, rtol=0, atol=1e-12)


def test_the_compiled_transform_is_the_column_transformers_output(models, data):
    pipeline, (_, holdout) = models[("regression", "gradient_boosting")], data
    compiled = fastpath.compile_pipeline(pipeline)
    x, has_nan = compiled.transform(_columns(pipeline, holdout))
    reference = pipeline[0].transform(holdout[list(pipeline.feature_names_in_)])
    assert not has_nan and x.shape == reference.shape == (600, compiled.n_features)
    assert np.array_equal(x, reference)


def test_missing_numeric_values_follow_the_trees_and_are_refused_by_linear(models, data):
    _, holdout = data
    holey = holdout.copy()
    rng = np.random.default_rng(1)
    for column in ("hum", "temp", "windspeed"):
        holey.loc[rng.random(len(holey)) < 0.3, column] = np.nan
    pipeline = models["nan"]
    compiled = fastpath.compile_pipeline(pipeline)
    # The trees route NaN both ways somewhere, so the check exercises both branches.
    nodes = np.concatenate([p.nodes for it in pipeline[-1]._predictors for p in it])
    split = nodes["is_leaf"] == 0
    assert set(nodes["missing_go_to_left"][split]) == {0, 1}
    _assert_agrees(pipeline, compiled, holey, "regression")
    assert fastpath.check(pipeline, compiled, holey, "regression").ok
    # A model that never saw NaN agrees too.
    plain = models[("regression", "gradient_boosting")]
    _assert_agrees(plain, fastpath.compile_pipeline(plain), holey, "regression")
    # Ridge: scikit-learn refuses NaN input, and so does the compiled path.
    linear = models[("regression", "linear")]
    with pytest.raises(ValueError, match="NaN"):
        linear.predict(holey[list(linear.feature_names_in_)])
    with pytest.raises(ValueError, match="NaN"):
        fastpath.compile_pipeline(linear).predict(_columns(linear, holey))


def test_unknown_and_infrequent_categories_agree(models, data):
    _, holdout = data
    pipeline = models[("regression", "gradient_boosting")]
    encoder = pipeline[0].named_transformers_["weathersit"]
    assert encoder.infrequent_categories_[0].tolist() == ["heavy rain/snow"]
    rows = holdout.iloc[:6].copy()
    rows["weathersit"] = rows["weathersit"].astype(object)
    rows.loc[0, "weathersit"] = "heavy rain/snow"  # infrequent: the infrequent column
    rows.loc[1, "weathersit"] = "hail"  # unknown, infrequent_if_exist: the infrequent column
    rows.loc[2, "weekday"] = 9  # unknown, ignore: no column
    rows.loc[3, "season"] = 0  # unknown, ignore
    compiled = fastpath.compile_pipeline(pipeline)
    x, _ = compiled.transform(_columns(pipeline, rows))
    reference = pipeline[0].transform(rows[list(pipeline.feature_names_in_)])
    assert np.array_equal(x, reference)
    infrequent = list(pipeline[0].get_feature_names_out()).index(
        "weathersit__weathersit_infrequent_sklearn"
    )
    assert x[0, infrequent] == x[1, infrequent] == 1.0
    assert x[2, pipeline[0].output_indices_["weekday"]].sum() == 0.0
    for key in models:
        if key != "nan":
            _assert_agrees(models[key], fastpath.compile_pipeline(models[key]), rows, key[0])
    # A month outside the cyclical order is an error on both paths.
    rows.loc[4, "mnth"] = "Smarch"
    with pytest.raises(ValueError, match="outside its order: Smarch"):
        pipeline.predict(rows[list(pipeline.feature_names_in_)])
    with pytest.raises(ValueError, match="outside its order: Smarch"):
        compiled.predict(_columns(pipeline, rows))


def test_column_order_of_the_input_does_not_matter_and_extra_columns_are_ignored(models, data):
    _, holdout = data
    pipeline = models[("regression", "gradient_boosting")]
    compiled = fastpath.compile_pipeline(pipeline)
    columns = _columns(pipeline, holdout)
    shuffled = {name: columns[name] for name in reversed(list(columns))}
    shuffled["bikers"] = holdout["bikers"].to_numpy()
    assert np.array_equal(compiled.predict(shuffled), compiled.predict(columns))
    _assert_agrees(pipeline, compiled, holdout.iloc[:, ::-1], "regression")
    with pytest.raises(ValueError, match="lacks column 'temp'"):
        compiled.predict({k: v for k, v in columns.items() if k != "temp"})


@pytest.mark.parametrize(
    "key",
    [("regression", "gradient_boosting"), ("classification", "gradient_boosting")],
)
def test_single_rows_agree(models, data, key):
    _, holdout = data
    pipeline = models[key]
    compiled = fastpath.compile_pipeline(pipeline)
    names = list(pipeline.feature_names_in_)
    for i in range(0, 600, 29):
        row = holdout.iloc[[i]]
        # the serving shape: one value per column, strings as Python str
        columns = {
            n: np.array([row[n].iloc[0]], dtype=object if row[n].dtype.kind not in "biuf" else None)
            for n in names
        }
        got = compiled.predict(columns)
        assert got.shape == (1,)
        assert got[0] == pipeline.predict(row[names])[0]


def test_choose_takes_the_compiled_path_when_it_agrees(models, data):
    _, holdout = data
    pipeline = models[("regression", "gradient_boosting")]
    predictor, report = fastpath.choose(pipeline, holdout, "regression")
    assert isinstance(predictor, fastpath.CompiledPipeline)
    assert report["path"] == "numpy" and report["rows_checked"] == 600
    assert report["max_abs_deviation"] <= report["tolerance"] == fastpath.REL_TOLERANCE
    assert "agrees" in report["reason"]


def test_choose_falls_back_for_an_unsupported_step(models, data):
    from sklearn.base import clone
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestRegressor
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import RobustScaler

    train, holdout = data
    names = ["temp", "hum", "hr"]
    robust = Pipeline(
        [
            ("transform", ColumnTransformer([("num", RobustScaler(), names)])),
            ("model", HistGradientBoostingRegressor(max_iter=5)),
        ]
    ).fit(train[names], train["bikers"])
    with pytest.raises(fastpath.Unsupported, match=r"'num' \(RobustScaler\)"):
        fastpath.compile_pipeline(robust)
    predictor, report = fastpath.choose(robust, holdout, "regression")
    assert isinstance(predictor, fastpath.SklearnPath)
    assert report["path"] == "sklearn" and "RobustScaler" in report["reason"]
    assert report["rows_checked"] == 0
    columns = fastpath.columns_of(holdout, names)
    assert np.array_equal(predictor.predict(columns), robust.predict(holdout[names]))

    forest = Pipeline(
        [
            ("transform", clone(models[("regression", "linear")][0])),
            ("model", RandomForestRegressor(n_estimators=2)),
        ]
    ).fit(train, train["bikers"])
    _, report = fastpath.choose(forest, holdout, "regression")
    assert report["path"] == "sklearn" and "RandomForestRegressor" in report["reason"]

    categorical = HistGradientBoostingRegressor(max_iter=5, categorical_features=[0])
    categorical.fit(np.c_[train["weekday"], train["temp"]], train["bikers"])
    pipeline = Pipeline(
        [
            ("transform", ColumnTransformer([("p", "passthrough", ["weekday", "temp"])])),
            ("model", categorical),
        ]
    ).fit(train[["weekday", "temp"]], train["bikers"])
    with pytest.raises(fastpath.Unsupported, match="categorical"):
        fastpath.compile_pipeline(pipeline)


def test_choose_falls_back_when_the_compiled_path_disagrees(models, data, monkeypatch):
    _, holdout = data
    pipeline = models[("regression", "gradient_boosting")]
    honest = fastpath.CompiledPipeline.predict
    monkeypatch.setattr(
        fastpath.CompiledPipeline, "predict", lambda self, columns: honest(self, columns) + 1.0
    )
    predictor, report = fastpath.choose(pipeline, holdout, "regression")
    assert isinstance(predictor, fastpath.SklearnPath)
    assert report["path"] == "sklearn" and "disagrees" in report["reason"]
    assert report["rows_checked"] == 600
    assert report["max_abs_deviation"] == pytest.approx(1.0)
    assert "600 rows beyond" in report["reason"]

    # classification: one flipped class is enough
    clf = models[("classification", "gradient_boosting")]

    def flip_first(self, columns):  # batches only: the single-row path stays honest
        out = honest(self, columns).copy()
        if len(out) > 1:
            out[0] = 1 - out[0]
        return out

    monkeypatch.setattr(fastpath.CompiledPipeline, "predict", flip_first)
    agreement = fastpath.check(clf, fastpath.compile_pipeline(clf), holdout, "classification")
    assert not agreement.ok and "1 with a different class" in agreement.detail
    _, report = fastpath.choose(clf, holdout, "classification")
    assert report["path"] == "sklearn"

    # serving predicts one row at a time: a fault only there is caught too
    def off_when_single(self, columns):
        out = honest(self, columns)
        return out + 1e-6 if len(out) == 1 else out

    monkeypatch.setattr(fastpath.CompiledPipeline, "predict", off_when_single)
    _, report = fastpath.choose(pipeline, holdout, "regression")
    assert report["path"] == "sklearn" and "600 rows beyond" in report["reason"]


def test_choose_falls_back_when_the_compiled_path_raises(models, data, monkeypatch):
    _, holdout = data

    def broken(self, columns):
        raise RuntimeError("boom")

    monkeypatch.setattr(fastpath.CompiledPipeline, "predict", broken)
    _, report = fastpath.choose(models[("regression", "linear")], holdout, "regression")
    assert report["path"] == "sklearn" and "RuntimeError: boom" in report["reason"]
