"""Building and scoring the estimator (shared by train, tune and the Katib trials)."""

from __future__ import annotations

import pytest

from components.lib import modeling

pytestmark = pytest.mark.unit


def test_unknown_parameter_and_model_type_are_named():
    with pytest.raises(
        modeling.ModelError, match="HistGradientBoostingRegressor has no parameter depth"
    ):
        modeling.make_estimator("regression", "gradient_boosting", {"depth": 3})
    with pytest.raises(modeling.ModelError, match="model_type 'xgboost'"):
        modeling.make_estimator("regression", "xgboost", {})


def test_final_fit_scores_the_full_iterations_and_seeds_the_estimator():
    estimator = modeling.make_estimator("classification", "gradient_boosting", {"max_iter": 7}, 3)
    params = estimator.get_params()
    assert params["early_stopping"] is False and params["random_state"] == 3
    assert params["max_iter"] == 7
    assert modeling.make_estimator("classification", "linear", {}).get_params()["max_iter"] == 1000


def test_every_task_has_metrics_with_a_direction():
    assert set(modeling.METRICS) == {"regression", "classification"}
    assert all(isinstance(v, bool) for m in modeling.METRICS.values() for v in m.values())


def _saved(folder, obj) -> dict:
    import joblib
    import sklearn

    from components.lib import artifacts

    folder.mkdir()
    joblib.dump(obj, folder / modeling.MODEL_FILE)
    return {
        "sha256": artifacts.sha256_file(folder / modeling.MODEL_FILE),
        "sklearn_version": sklearn.__version__,
    }


def test_load_model_verifies_before_unpickling(tmp_path, request):
    import numpy as np
    from sklearn.linear_model import Ridge

    from components.lib import artifacts
    from tests.tamper import plant_trap, refusal_pattern

    model = Ridge().fit(np.arange(6.0).reshape(3, 2), [1.0, 2.0, 3.0])
    record = _saved(tmp_path / "model", model)
    loaded = modeling.load_model(str(tmp_path / "model"), record)
    assert loaded.predict([[0.0, 1.0]]) == pytest.approx(model.predict([[0.0, 1.0]]))
    assert modeling.load_model(f"file://{tmp_path / 'model'}", record).coef_.tolist() == (
        model.coef_.tolist()
    )
    with pytest.raises(artifacts.VersionMismatchError, match="champion model was pickled"):
        modeling.load_model(
            str(tmp_path / "model"), {**record, "sklearn_version": "0.1"}, name="champion model"
        )
    marker = plant_trap(tmp_path / "model" / modeling.MODEL_FILE, tmp_path / "unpickled")
    request.getfixturevalue("no_unpickling")
    with pytest.raises(artifacts.IntegrityError, match=refusal_pattern("model", record["sha256"])):
        modeling.load_model(str(tmp_path / "model"), record)
    assert not marker.exists()


def test_load_model_refuses_an_object_that_cannot_predict(tmp_path):
    record = _saved(tmp_path / "model", {"not": "a model"})
    with pytest.raises(modeling.ModelError, match="model at .* is a dict, which cannot predict"):
        modeling.load_model(str(tmp_path / "model"), record)
