"""Performance decay: realized metric + bootstrap, streaming detectors, DLE / CBPE estimation.

Every test plants a known cause (a concept change with unchanged inputs, a covariate shift
into a noisier region, nothing at all) and checks that the right tool sees it, and only after
it happened.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OrdinalEncoder

from components.lib import performance as perf

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One OpenMP thread for HistGradientBoosting: on two shared cores, oversubscribed threads
    made this file several times slower."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="openmp"):
        yield


CHANGE = 2000  # rows before the planted change
MAX_DELAY = 300  # rows after the change by which a detector must have fired


# ----------------------------------------------------------------- planted concept change


def _inputs(n: int, rng) -> pd.DataFrame:
    return pd.DataFrame({"x1": rng.uniform(0, 1, n), "x2": rng.uniform(0, 1, n)})


def _before(x: pd.DataFrame) -> np.ndarray:
    return np.sin(2 * np.pi * x.x1) + x.x2


def _after(x: pd.DataFrame) -> np.ndarray:
    # The same inputs, another function: the relation to x1 partly reverses.
    return np.sin(2 * np.pi * x.x1) + x.x2 - 1.5 * x.x1 + 0.75


@pytest.fixture(scope="module")
def concept():
    """A model of y = f(x) and 2 x CHANGE served rows whose f changes at row CHANGE."""
    rng = np.random.default_rng(0)
    train = _inputs(3000, rng)
    model = HistGradientBoostingRegressor(max_iter=100, random_state=0).fit(
        train, _before(train) + rng.normal(0, 0.3, len(train))
    )
    reference = _inputs(2000, rng)
    reference["y"] = _before(reference) + rng.normal(0, 0.3, len(reference))
    reference["prediction"] = model.predict(reference[["x1", "x2"]])
    served = _inputs(2 * CHANGE, rng)
    truth = np.where(np.arange(2 * CHANGE) < CHANGE, _before(served), _after(served))
    served["y"] = truth + rng.normal(0, 0.3, len(served))
    served["prediction"] = model.predict(served[["x1", "x2"]])
    baseline = perf.realized("regression", reference.y, reference.prediction, baseline=1.0)["value"]
    return {"reference": reference, "served": served, "baseline": baseline}


def test_concept_change_with_unchanged_inputs_is_found_after_the_change(concept):
    served, baseline = concept["served"], concept["baseline"]
    first, second = served.iloc[:CHANGE], served.iloc[CHANGE:]
    # The cause is the concept, not the inputs: both halves draw x from one distribution.
    for column in ("x1", "x2"):
        assert stats.ks_2samp(first[column], second[column]).pvalue > 0.01

    before = perf.realized("regression", first.y, first.prediction, baseline=baseline)
    after = perf.realized("regression", second.y, second.prediction, baseline=baseline)
    assert not before["degraded"], before["reason"]
    assert after["degraded"], after["reason"]
    assert after["ci_low"] > baseline * 1.1 and before["ci_low"] <= baseline * 1.1
    assert after["reason"].startswith("degraded: rmse")

    errors = perf.error_series("regression", served.y, served.prediction)
    for method in ("page_hinkley", "adwin"):
        whole = perf.stream_detector(errors, method=method)
        assert whole["detected"], method
        assert CHANGE < whole["first_change_index"] <= CHANGE + MAX_DELAY, (method, whole)
        early = perf.stream_detector(errors[:CHANGE], method=method)
        assert not early["detected"], (method, early["changes"])
        assert whole["n"] == 2 * CHANGE and whole["method"] == method


def test_the_estimator_does_not_see_a_concept_change_which_is_why_labels_are_needed(concept):
    """DLE sees inputs only: with unchanged inputs it keeps the reference RMSE (documented)."""
    est = perf.PerformanceEstimator.fit(
        concept["reference"], task="regression", target="y", features=["x1", "x2"]
    )
    second = concept["served"].iloc[CHANGE:].drop(columns="y")
    estimate = est.estimate(second)
    assert estimate["estimate"] == pytest.approx(concept["baseline"], rel=0.1)


def test_classification_concept_change_fires_on_the_zero_one_loss():
    rng = np.random.default_rng(1)
    train = _inputs(3000, rng)
    model = LogisticRegression().fit(train, (train.x1 > 0.5).astype(int))
    served = _inputs(2 * CHANGE, rng)
    rule_after = (served.x1 > 0.5) ^ (served.x2 > 0.7)  # the label rule changes, x does not
    y = np.where(np.arange(2 * CHANGE) < CHANGE, served.x1 > 0.5, rule_after).astype(int)
    noise = rng.random(len(y)) < 0.05
    y = np.where(noise, 1 - y, y)
    predicted = model.predict(served)
    errors = perf.error_series("classification", y, predicted)
    for method in ("page_hinkley", "adwin"):
        whole = perf.stream_detector(errors, method=method)
        assert CHANGE < whole["first_change_index"] <= CHANGE + MAX_DELAY, (method, whole)
        assert not perf.stream_detector(errors[:CHANGE], method=method)["detected"], method
    baseline = float(np.mean(y[:1000] == predicted[:1000]))
    assert not perf.realized(
        "classification", y[1000:CHANGE], predicted[1000:CHANGE], baseline=baseline
    )["degraded"]
    after = perf.realized("classification", y[CHANGE:], predicted[CHANGE:], baseline=baseline)
    assert after["degraded"] and after["ci_high"] < baseline * 0.9, after["reason"]


# ----------------------------------------------------------------- stationary controls


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_stationary_data_is_not_degraded_and_the_detectors_stay_silent(seed):
    rng = np.random.default_rng(100 + seed)
    n = 5000
    y = rng.normal(0, 3, n)
    predicted = y + rng.normal(0, 1, n)  # rmse 1 throughout
    baseline = 1.0
    verdict = perf.realized("regression", y, predicted, baseline=baseline, seed=seed)
    assert not verdict["degraded"], verdict["reason"]
    labels = rng.integers(0, 2, n)
    guesses = np.where(rng.random(n) < 0.15, 1 - labels, labels)  # accuracy 0.85 throughout
    assert not perf.realized("classification", labels, guesses, baseline=0.85)["degraded"]
    for errors in (
        perf.error_series("regression", y, predicted),
        perf.error_series("classification", labels, guesses),
    ):
        for method in ("page_hinkley", "adwin"):
            result = perf.stream_detector(errors, method=method)
            assert not result["detected"], (method, result["changes"])
            assert result["first_change_index"] is None and result["changes"] == []


def test_detector_parameters_are_resolved_and_reported():
    errors = np.abs(np.random.default_rng(0).normal(size=500))
    ph = perf.stream_detector(errors, threshold=80.0)
    assert ph["params"]["threshold"] == 80.0 and ph["params"]["delta"] == 0.25
    assert ph["params"]["scale"] == pytest.approx(float(np.std(errors[:200])))
    adwin = perf.stream_detector(errors, method="adwin", scale=2.0)
    assert adwin["params"]["delta"] == 0.002 and adwin["params"]["scale"] == 2.0
    # A perfect classifier's warm-up has no spread: the scale falls back to 1, no division by 0.
    assert perf.stream_detector(np.zeros(300))["params"]["scale"] == 1.0


# ----------------------------------------------------------------- bootstrap interval


def test_the_bootstrap_interval_covers_the_true_value():
    covered = {"rmse": 0, "mae": 0, "accuracy": 0}
    runs = 40
    for seed in range(runs):
        rng = np.random.default_rng(seed)
        y = rng.normal(0, 5, 1000)
        predicted = y + rng.normal(0, 2, 1000)  # true rmse 2, true mae 2 * sqrt(2 / pi)
        rmse = perf.realized("regression", y, predicted, baseline=2, n_boot=400, seed=seed)
        mae = perf.realized(
            "regression", y, predicted, baseline=2, metric="mae", n_boot=400, seed=seed
        )
        labels = rng.integers(0, 3, 1000)
        guesses = np.where(rng.random(1000) < 0.8, labels, (labels + 1) % 3)  # accuracy 0.8
        acc = perf.realized("classification", labels, guesses, baseline=0.8, n_boot=400, seed=seed)
        covered["rmse"] += rmse["ci_low"] <= 2 <= rmse["ci_high"]
        covered["mae"] += mae["ci_low"] <= 2 * np.sqrt(2 / np.pi) <= mae["ci_high"]
        covered["accuracy"] += acc["ci_low"] <= 0.8 <= acc["ci_high"]
    # A 95% interval: at least 34 of 40 (binomial 95% lower bound is 35).
    assert all(count >= 34 for count in covered.values()), covered
    one = perf.realized("classification", labels, guesses, baseline=0.8, metric="f1_macro")
    assert one["ci_low"] <= 0.8 <= one["ci_high"] and one["level"] == 0.95


def test_degraded_needs_the_whole_interval_beyond_the_tolerance():
    rng = np.random.default_rng(3)
    noise = rng.normal(size=30)
    y = rng.normal(0, 5, 30)
    predicted = y + 1.3 * noise / np.sqrt(np.mean(noise**2))  # rmse exactly 1.3, on 30 rows
    small = perf.realized("regression", y, predicted, baseline=1.0, tolerance=0.1)
    assert small["value"] == pytest.approx(1.3)  # 30% worse than the baseline ...
    assert small["ci_low"] < 1.1 and not small["degraded"]  # ... but not beyond the noise
    assert "lower end <= baseline 1 x (1 + 0.1)" in small["reason"]


# ----------------------------------------------------------------- DLE and CBPE


def _hetero(n: int, rng, a: float = 1.0, b: float = 1.0) -> pd.DataFrame:
    """y = 2x + noise whose spread grows with x; x ~ Beta(a, b) (a > b: the noisy end)."""
    x = rng.beta(a, b, n)
    frame = pd.DataFrame({"x": x, "z": rng.normal(size=n)})
    frame["y"] = 2 * x + (0.1 + x) * rng.normal(size=n)
    return frame


def test_dle_follows_the_realized_rmse_under_covariate_shift():
    rng = np.random.default_rng(0)
    train = _hetero(2000, rng)
    model = LinearRegression().fit(train[["x", "z"]], train.y)
    reference = _hetero(3000, rng)
    reference["prediction"] = model.predict(reference[["x", "z"]])
    est = perf.PerformanceEstimator.fit(
        reference, task="regression", target="y", features=["x", "z"]
    )
    assert abs(est.reference["error"]) < 0.1  # calibrated on the held-out reference part

    results = {}
    for name, (a, b) in {"same": (1, 1), "noisy": (5, 1), "quiet": (1, 5)}.items():
        current = _hetero(2000, rng, a, b)
        current["prediction"] = model.predict(current[["x", "z"]])
        estimate = est.estimate(current.drop(columns="y"))
        truth = perf.realized("regression", current.y, current.prediction, baseline=1.0)["value"]
        results[name] = (estimate, truth)
        assert estimate["method"] == "dle" and estimate["metric"] == "rmse"
        # Stated tolerance: the estimate is within 10% of the realized RMSE.
        assert estimate["estimate"] == pytest.approx(truth, rel=0.1), (name, estimate, truth)
        assert estimate["ci_low"] <= estimate["estimate"] <= estimate["ci_high"]
    same, noisy, quiet = results["same"], results["noisy"], results["quiet"]
    assert same[0]["estimate"] == pytest.approx(est.reference["value"], rel=0.1)
    assert same[0]["ci_low"] <= same[1] <= same[0]["ci_high"]
    # The estimate rises (and falls) with the realized RMSE.
    assert noisy[0]["estimate"] > 1.25 * same[0]["estimate"] and noisy[1] > 1.25 * same[1]
    assert quiet[0]["estimate"] < 0.7 * same[0]["estimate"] and quiet[1] < 0.7 * same[1]


def _logistic(n: int, rng, spread: float) -> pd.DataFrame:
    x = rng.normal(0, spread, (n, 2))
    p = 1 / (1 + np.exp(-(2 * x[:, 0] - x[:, 1])))
    frame = pd.DataFrame({"a": x[:, 0], "b": x[:, 1]})
    frame["y"] = np.where(rng.random(n) < p, "yes", "no")
    return frame


def _scored(model, frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    frame["prediction"] = model.predict(frame[["a", "b"]])
    for k, cls in enumerate(model.classes_):
        frame[f"proba_{cls}"] = model.predict_proba(frame[["a", "b"]])[:, k]
    return frame


@pytest.mark.parametrize("metric", ["accuracy", "f1_macro"])
def test_cbpe_on_a_calibrated_classifier_matches_the_realized_metric(metric):
    rng = np.random.default_rng(0)
    train = _logistic(3000, rng, 1.0)
    model = LogisticRegression().fit(train[["a", "b"]], train.y)
    reference = _scored(model, _logistic(3000, rng, 1.0))
    est = perf.PerformanceEstimator.fit(
        reference, task="classification", target="y", features=["a", "b"], metric=metric
    )
    assert abs(est.reference["error"]) < 0.05
    for spread in (1.0, 0.5, 0.3):  # inputs moving toward the decision boundary
        current = _scored(model, _logistic(2000, rng, spread))
        estimate = est.estimate(current.drop(columns="y"))
        truth = perf.realized(
            "classification", current.y, current.prediction, baseline=0.8, metric=metric
        )["value"]
        assert estimate["method"] == "cbpe"
        assert estimate["estimate"] == pytest.approx(truth, abs=0.03), (spread, estimate, truth)
    assert estimate["estimate"] < est.reference["value"] - 0.1  # it saw the accuracy drop


def test_cbpe_multiclass_with_an_overconfident_model():
    """HistGradientBoosting overfits its probabilities; isotonic calibration on reference fixes it."""
    rng = np.random.default_rng(5)

    def draw(n):
        x = rng.normal(size=(n, 3))
        logits = np.column_stack([x[:, 0], x[:, 1], 0.5 * x[:, 2]])
        p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        y = (rng.random((n, 1)) > p.cumsum(axis=1)).sum(axis=1)
        return pd.DataFrame(x, columns=["a", "b", "c"]).assign(y=y)

    train = draw(1500)
    model = HistGradientBoostingClassifier(max_iter=40, max_leaf_nodes=31, random_state=0)
    model.fit(train[["a", "b", "c"]], train.y)

    def scored(frame):
        proba = model.predict_proba(frame[["a", "b", "c"]])
        frame = frame.assign(prediction=model.predict(frame[["a", "b", "c"]]))
        return frame.assign(**{f"proba_{c}": proba[:, k] for k, c in enumerate(model.classes_)})

    reference, current = scored(draw(3000)), scored(draw(2000))
    est = perf.PerformanceEstimator.fit(
        reference, task="classification", target="y", features=["a", "b", "c"]
    )
    truth = float(np.mean(current.y == current.prediction))
    raw = float(current[[f"proba_{c}" for c in model.classes_]].max(axis=1).mean())
    assert raw > truth + 0.05  # uncalibrated confidence would overstate the accuracy
    assert est.estimate(current)["estimate"] == pytest.approx(truth, abs=0.03)


# ----------------------------------------------------------------- bad inputs


def test_bad_inputs_are_named():
    err = perf.PerformanceError
    with pytest.raises(err, match="y_true has 3 values but y_pred has 2"):
        perf.realized("regression", [1, 2, 3], [1, 2], baseline=1)
    with pytest.raises(err, match="y_true has 1 missing values"):
        perf.realized("regression", [1, np.nan, 3], [1, 2, 3], baseline=1)
    with pytest.raises(err, match="y_true has 1 missing values"):
        perf.realized("classification", pd.Series(["a", None]), ["a", "b"], baseline=1)
    with pytest.raises(err, match="metric 'auc' is not one of accuracy, f1_macro"):
        perf.realized("classification", [1], [1], baseline=1, metric="auc")
    with pytest.raises(err, match="task 'ranking'"):
        perf.realized("ranking", [1], [1], baseline=1)
    with pytest.raises(err, match="baseline must be"):
        perf.realized("regression", [1.0], [1.0], baseline=float("nan"))
    with pytest.raises(err, match="errors has 1 missing values"):
        perf.stream_detector([0.1, np.nan])
    with pytest.raises(err, match="method 'cusum'"):
        perf.stream_detector([0.1], method="cusum")
    with pytest.raises(err, match="adwin has no parameter threshold"):
        perf.stream_detector([0.1], method="adwin", threshold=3)

    rng = np.random.default_rng(0)
    reference = pd.DataFrame({"x": rng.normal(size=200), "kind": rng.choice(["a", "b"], 200)})
    reference["y"] = reference.x + rng.normal(size=200)
    reference["prediction"] = reference.x
    with pytest.raises(err, match="reference has no column 'w'"):
        perf.PerformanceEstimator.fit(reference, task="regression", target="y", features=["x", "w"])
    with pytest.raises(err, match="column 'kind' is not numeric; list it in categorical"):
        perf.PerformanceEstimator.fit(
            reference, task="regression", target="y", features=["x", "kind"]
        )
    with pytest.raises(err, match="reference has 50 rows"):
        perf.PerformanceEstimator.fit(
            reference.iloc[:50], task="regression", target="y", features=["x"]
        )
    with pytest.raises(err, match="no column 'proba_"):
        perf.PerformanceEstimator.fit(
            reference.assign(y=reference.kind, prediction=reference.kind),
            task="classification",
            target="y",
            features=["x"],
        )
    est = perf.PerformanceEstimator.fit(
        reference, task="regression", target="y", features=["x", "kind"], categorical=["kind"]
    )
    with pytest.raises(err, match="current has no column 'prediction'"):
        est.estimate(reference.drop(columns="prediction"))
    # An unseen category is not an error: HistGradientBoosting treats it as missing.
    assert est.estimate(reference.assign(kind="c"))["n"] == 200


# ----------------------------------------------------------------- Bikeshare


NUMERIC = ["hr", "holiday", "weekday", "workingday", "temp", "atemp", "hum", "windspeed"]
FIRST_HALF = ["Jan", "Feb", "March", "April", "May", "June"]


def test_bikeshare_from_july_degrades_and_the_estimate_shows_it_is_not_the_inputs(bikeshare_csv):
    """A model of Jan-Jun, 30% of those rows held out as reference; July-September served.

    Measured (this test prints it with -s): realized RMSE rises from 33 (reference) to 42 / 53 /
    52 in July / August / September and is flagged every month; DLE's estimate stays at 33-35:
    the inputs of July-September are not harder for the model, the relation changed (demand
    grew), which only labels show. In arrival order, Page-Hinkley and ADWIN with their defaults
    stay silent on the May-June reference rows and on July (+27% RMSE, about 0.25 warm-up
    standard deviations of the absolute error: Page-Hinkley's tolerated drift) and fire in late
    August (Aug 23), where the error rises further.
    """
    frame = pd.read_csv(bikeshare_csv)
    first = frame[frame.mnth.isin(FIRST_HALF)]
    held_out = np.random.default_rng(0).random(len(first)) < 0.3
    train, reference = first[~held_out], first[held_out].copy()
    columns = [*NUMERIC, "weathersit"]
    encode = ColumnTransformer(
        [("weather", OrdinalEncoder(), ["weathersit"])], remainder="passthrough"
    )
    model = Pipeline(
        [
            ("encode", encode),
            (
                "model",
                HistGradientBoostingRegressor(
                    max_iter=200, categorical_features=[0], random_state=0
                ),
            ),
        ]
    ).fit(train[columns], train.bikers)
    reference["prediction"] = model.predict(reference[columns])
    est = perf.PerformanceEstimator.fit(
        reference, task="regression", target="bikers", features=columns, categorical=["weathersit"]
    )
    assert abs(est.reference["error"]) < 0.1
    baseline = est.reference["value"]
    print(
        f"\nreference RMSE {baseline:.1f} on {est.reference['n']} rows; "
        f"held-out check {est.reference['error']:+.1%}"
    )
    for month in ("July", "Aug", "Sept"):
        window = frame[frame.mnth == month].copy()
        window["prediction"] = model.predict(window[columns])
        estimate = est.estimate(window.drop(columns="bikers"))
        truth = perf.realized("regression", window.bikers, window.prediction, baseline=baseline)
        print(
            f"{month}: estimated {estimate['estimate']:.1f} [{estimate['ci_low']:.1f}, "
            f"{estimate['ci_high']:.1f}], realized {truth['value']:.1f} "
            f"[{truth['ci_low']:.1f}, {truth['ci_high']:.1f}], degraded {truth['degraded']}"
        )
        assert truth["degraded"], (month, truth["reason"])
        assert estimate["estimate"] == pytest.approx(baseline, rel=0.25), month
        assert estimate["ci_high"] < truth["ci_low"], month  # the gap is concept change

    # In arrival order: the held-out May-June reference rows, then July-September.
    stream = pd.concat(
        [
            reference[reference.mnth.isin(["May", "June"])],
            frame[frame.mnth.isin(["July", "Aug", "Sept"])],
        ]
    )
    july = int(stream.mnth.isin(["May", "June"]).sum())
    errors = perf.error_series("regression", stream.bikers, model.predict(stream[columns]))
    scale = float(np.std(np.abs(reference.bikers - reference.prediction)))
    for method in ("page_hinkley", "adwin"):
        found = perf.stream_detector(errors, method=method, scale=scale)
        print(f"{method}: July starts at row {july}, first change at {found['first_change_index']}")
        assert found["detected"] and july < found["first_change_index"], (method, found["changes"])
