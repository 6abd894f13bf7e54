"""components.lib.drift: agreement with scipy, the profile's JSON, planted drift found where it
is and nowhere else, no false alarms on clean replays, effect thresholds, too few rows."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon
from scipy.special import rel_entr

from components.lib import drift

pytestmark = pytest.mark.unit

NUMERIC = ["normal", "lognormal", "counts", "zeros", "stamp", "holes"]
CATEGORICAL = ["color", "size"]


def frame(rows: int, seed: int, *, shift: float = 0.0, mix: float = 0.0) -> pd.DataFrame:
    """Realistic-ish mixed data; ``shift`` moves 'normal' by that many stds, ``mix`` moves
    'color''s category shares that far (0..1) towards the reversed mix."""
    rng = np.random.default_rng(seed)
    holes = rng.gamma(2.0, 3.0, rows)
    holes[rng.random(rows) < 0.05] = np.nan
    colors = ["red", "green", "blue", "black"]
    base = np.array([0.4, 0.3, 0.2, 0.1])
    p = (1 - mix) * base + mix * base[::-1]
    size = rng.choice(["S", "M", "L"], rows, p=[0.3, 0.5, 0.2]).astype(object)
    size[rng.random(rows) < 0.01] = None
    return pd.DataFrame(
        {
            "normal": rng.normal(5.0 + 2.0 * shift, 2.0, rows),
            "lognormal": rng.lognormal(0.0, 1.0, rows),
            "counts": rng.poisson(3.0, rows).astype(np.int64),
            "zeros": np.where(rng.random(rows) < 0.6, 0.0, rng.exponential(2.0, rows)),
            "stamp": 1.7e9 + rng.uniform(0, 86_400, rows),
            "holes": holes,
            "color": rng.choice(colors, rows, p=p),
            "size": size,
        }
    )


def profile_of(reference: pd.DataFrame, **kw) -> dict:
    return drift.build_profile(reference, numeric=NUMERIC, categorical=CATEGORICAL, **kw)


@pytest.fixture(scope="module")
def reference():
    return frame(20_000, 1)


@pytest.fixture(scope="module")
def profile(reference):
    return profile_of(reference, prediction=reference["normal"].to_numpy() * 3)


# --------------------------------------------------------------------------- agreement


def test_every_statistic_equals_scipy_on_the_data_the_profile_holds(profile):
    current = frame(5_000, 2, shift=0.3, mix=1.0)
    report = drift.compare(profile, current)
    by_name = {f.name: f for f in report.features}
    tol = 1e-9
    for entry in profile["features"]:
        name, fd = entry["name"], by_name[entry["name"]]
        t = drift.tables(profile, current, name)
        assert t.reference.sum() == 20_000 and t.current.sum() == 5_000
        p, q = t.reference / t.reference.sum(), t.current / t.current.sum()
        assert fd.reference_hist == pytest.approx(p.tolist(), abs=tol)
        k, eps = len(p), drift.EPSILON
        pe, qe = (p + eps) / (1 + k * eps), (q + eps) / (1 + k * eps)
        assert fd.psi == pytest.approx(np.sum(rel_entr(qe, pe) + rel_entr(pe, qe)), abs=tol)
        assert fd.js == pytest.approx(jensenshannon(t.reference, t.current, base=2), abs=tol)
        assert 0 <= fd.js <= 1
        if entry["kind"] == "categorical":
            table = np.vstack([t.reference, t.current])
            result = stats.chi2_contingency(table[:, table.sum(axis=0) > 0])
            assert fd.chi2 == pytest.approx(result.statistic, abs=tol)
            assert fd.chi2_pvalue == pytest.approx(result.pvalue, abs=tol)
            assert fd.ks is None and fd.wasserstein is None
            continue
        # The samples in the feature's units: what the profile holds, and the current rows.
        ref_x = drift.profile_sample(profile, name)
        assert len(ref_x) == min(10_000, entry["count"]) and np.all(np.diff(ref_x) >= 0)
        cur_x = t.cur_z * entry["sample"]["scale"] + entry["sample"]["center"]
        ks = stats.ks_2samp(ref_x, cur_x, method="asymp")
        assert fd.ks == pytest.approx(ks.statistic, abs=tol)
        assert fd.ks_pvalue == pytest.approx(ks.pvalue, abs=tol)
        w = stats.wasserstein_distance(ref_x, cur_x) / entry["std"]
        assert fd.wasserstein == pytest.approx(w, abs=tol)
        assert fd.chi2 is None
    # Benjamini-Hochberg: scipy's false_discovery_control over the same p-values.
    ps = [
        p
        for f in report.features
        for p in (f.ks_pvalue, f.chi2_pvalue, f.missing_pvalue)
        if p is not None
    ]
    np.testing.assert_allclose(
        drift.benjamini_hochberg(ps), stats.false_discovery_control(ps, method="bh"), atol=tol
    )


def test_the_missing_share_test_is_scipys_chi2_on_the_2x2_table(profile):
    current = frame(4_000, 3)
    current.loc[current.index[:800], "holes"] = np.nan
    fd = {f.name: f for f in drift.compare(profile, current).features}["holes"]
    entry = drift._entry(profile, "holes")
    table = [[entry["missing"], entry["count"]], [int(current["holes"].isna().sum()), 0]]
    table[1][1] = 4_000 - table[1][0]
    assert fd.missing_pvalue == pytest.approx(stats.chi2_contingency(table).pvalue, abs=1e-12)
    assert fd.drifted and "missing-share" in fd.reason
    assert fd.missing_current == pytest.approx((800 + table[1][0] - 800) / 4_000)


def test_bins_are_right_closed_reference_quantiles_and_discrete_data_keeps_its_atoms(reference):
    prof = profile_of(reference, bins=10)
    counts = drift._entry(prof, "counts")
    assert set(counts["edges"]) <= set(reference["counts"].unique().astype(float))
    assert counts["edges"] == sorted(set(counts["edges"])) and len(counts["edges"]) < 9
    zeros = drift._entry(prof, "zeros")
    assert zeros["edges"][0] == 0.0  # 60 % zeros: one bin (-inf, 0] holds every zero
    assert zeros["counts"][0] == int((reference["zeros"] == 0).sum())
    normal = drift._entry(prof, "normal")
    assert len(normal["edges"]) == 9 and sum(normal["counts"]) == 20_000
    assert max(normal["counts"]) - min(normal["counts"]) <= 1


# --------------------------------------------------------------------------- profile file


def test_the_profile_round_trips_through_json_and_is_compact(profile, tmp_path):
    path = tmp_path / "profile.json"
    drift.save_profile(profile, path)
    loaded = drift.load_profile(path)
    assert loaded == json.loads(json.dumps(profile))
    assert loaded["format"] == drift.PROFILE_FORMAT
    assert sum(loaded["importance"].values()) == pytest.approx(1.0)
    assert path.stat().st_size < 200_000  # 6 numeric + prediction, 10,000-value samples
    current = frame(3_000, 4)
    assert drift.compare(loaded, current).to_dict() == drift.compare(profile, current).to_dict()


@pytest.mark.parametrize(
    "mutate, field",
    [
        (lambda p: p.update(format="something-else"), "'format'"),
        (lambda p: p.pop("features"), "'features'"),
        (lambda p: p["features"][0].pop("edges"), "'features'[0].'edges'"),
        (lambda p: p["features"][1]["sample"].update(data="not base64!"), "'features'[1].'sample'"),
        (lambda p: p["features"][6].update(counts=[1, 2]), "'features'[6].'c"),
        (lambda p: p.pop("importance"), "'importance'"),
        (lambda p: p["features"][2].update(kind="ordinal"), "'features'[2].'kind'"),
    ],
)
def test_load_refuses_a_bad_profile_naming_the_field(profile, tmp_path, mutate, field):
    broken = json.loads(json.dumps(profile))
    mutate(broken)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(broken))
    with pytest.raises(drift.DriftError, match=field.replace("[", r"\[").replace("]", r"\]")):
        drift.load_profile(path)


def test_build_refuses_bad_arguments_naming_them(reference):
    with pytest.raises(drift.DriftError, match="nope"):
        drift.build_profile(reference, numeric=["normal", "nope"], categorical=[])
    with pytest.raises(drift.DriftError, match="unknown feature.*ghost"):
        profile_of(reference, importance={"ghost": 1.0})
    with pytest.raises(drift.DriftError, match="prediction_kind"):
        profile_of(reference, prediction=[1, 2], prediction_kind="ordinal")


def test_config_from_mapping_refuses_unknown_keys_naming_them():
    config = drift.DriftConfig.from_mapping({"fdr": 0.01, "min_rows": 100})
    assert config.fdr == 0.01 and config.min_rows == 100 and config.psi_threshold == 0.1
    with pytest.raises(drift.DriftError, match="fdrr, window"):
        drift.DriftConfig.from_mapping({"fdrr": 0.01, "window": 3})
    with pytest.raises(drift.DriftError, match="'fdr'"):
        drift.DriftConfig(fdr=1.5)
    with pytest.raises(drift.DriftError, match="'min_rows'"):
        drift.DriftConfig(min_rows=0)


# --------------------------------------------------------------------------- decisions


def test_a_shifted_numeric_feature_is_found_in_that_feature_only(profile):
    report = drift.compare(profile, frame(5_000, 5, shift=0.5))
    assert report.drifted() == ["normal"], report.reason
    normal = report.features[0]
    assert normal.ks > 0.1 and normal.wasserstein > 0.4 and normal.p_adjusted < 1e-20
    assert "drifted: KS p_adjusted" in normal.reason
    assert not report.dataset_drift and report.enough_rows
    assert report.drifted_share == pytest.approx(1 / 8)


def test_a_changed_category_mix_is_found_in_that_feature_only(profile):
    report = drift.compare(profile, frame(5_000, 6, mix=1.0))
    assert report.drifted() == ["color"], report.reason
    color = {f.name: f for f in report.features}["color"]
    assert color.js > 0.1 and color.psi > 0.1 and color.chi2_pvalue < 1e-50
    assert color.labels == ["red", "green", "blue", "black", "missing"]


def test_dataset_drift_is_the_importance_weighted_share(reference):
    weights = {"normal": 6.0, "color": 2.0}  # the other features get 0
    prof = profile_of(reference, importance=weights)
    assert prof["importance"]["normal"] == 0.75 and prof["importance"]["stamp"] == 0.0
    report = drift.compare(prof, frame(5_000, 7, shift=0.5))
    assert report.drifted() == ["normal"] and report.drifted_share == pytest.approx(0.75)
    assert report.dataset_drift and "0.75 >= 0.5 (normal)" in report.reason
    config = drift.DriftConfig(dataset_share=0.8)
    assert not drift.compare(prof, frame(5_000, 7, shift=0.5), config=config).dataset_drift


@pytest.mark.parametrize("replay", range(20))
def test_no_alarm_on_same_distribution_replays(replay):
    """Reference 5k-50k rows, current 1k-10k rows, fresh data from the same distribution:
    at the default fdr (0.0005 per window, so 20 clean windows alarm-free with >= 99 %
    probability) nothing is flagged. Same for the columns in another order."""
    rng = np.random.default_rng(1_000 + replay)
    ref_rows = int(rng.integers(5_000, 50_001))
    cur_rows = int(rng.integers(1_000, 10_001))
    ref = frame(ref_rows, 2_000 + replay)
    prof = profile_of(ref, prediction=ref["normal"].to_numpy() * 3)
    current = frame(cur_rows, 3_000 + replay)
    report = drift.compare(prof, current, prediction=current["normal"].to_numpy() * 3)
    assert report.drifted() == [] and not report.dataset_drift and not report.prediction_drift
    assert report.enough_rows, report.reason
    shuffled = current[list(reversed(current.columns))]
    again = drift.compare(prof, shuffled, prediction=current["normal"].to_numpy() * 3)
    assert again.drifted() == [] and not again.dataset_drift
    assert again.to_dict() == report.to_dict()  # column order does not matter


def test_a_huge_sample_with_a_tiny_shift_is_not_flagged_and_a_large_shift_is():
    ref = frame(200_000, 8)
    prof = profile_of(ref)
    tiny = drift.compare(prof, frame(200_000, 9, shift=0.03, mix=0.03))
    # The category mix moved by ~1 point: chi-square on 200k exact counts per side sees it ...
    color = {f.name: f for f in tiny.features}["color"]
    assert color.p_adjusted < 1e-10
    assert color.psi < 0.01 and color.js < 0.1  # ... but it is small: not flagged
    assert not color.drifted and "every effect within its threshold" in color.reason
    # The numeric shift of 0.03 std: small effects (KS itself runs on 10,000-row samples).
    normal = tiny.features[0]
    assert normal.psi < 0.1 and normal.wasserstein < 0.1 and normal.ks < 0.1
    assert tiny.drifted() == []
    large = drift.compare(prof, frame(200_000, 9, shift=0.4, mix=0.5))
    assert large.drifted() == ["normal", "color"]


def test_too_few_rows_decide_nothing_and_say_so(profile):
    current = frame(120, 10, shift=3.0)
    report = drift.compare(profile, current)
    assert not report.enough_rows and not report.dataset_drift and report.drifted() == []
    assert "no decision: 120 current rows, fewer than min_rows 500" in report.reason
    normal = report.features[0]
    assert normal.ks > 0.5 and normal.reason.startswith("no decision (too few rows)")
    flagged = drift.compare(profile, current, config=drift.DriftConfig(min_rows=100))
    assert flagged.enough_rows and "normal" in flagged.drifted()
    empty = drift.compare(profile, current.iloc[:0])
    assert not empty.enough_rows and empty.features[0].psi is None
    json.dumps(empty.to_dict())


def test_a_missing_column_is_named_and_extra_columns_are_ignored(profile):
    current = frame(1_000, 11).drop(columns=["stamp", "size"])
    with pytest.raises(drift.DriftError, match="stamp, size"):
        drift.compare(profile, current)
    extra = frame(1_000, 11).assign(unrelated=1.0)
    assert "unrelated" not in [f.name for f in drift.compare(profile, extra).features]


def test_nulls_are_counted_never_crash(profile):
    current = frame(2_000, 12)
    current["normal"] = current["normal"].astype("Float64")
    current.loc[current.index[:50], "normal"] = pd.NA
    current.loc[current.index[50:60], "lognormal"] = np.inf
    current.loc[current.index[:2_000], "color"] = None
    report = drift.compare(profile, current)
    by = {f.name: f for f in report.features}
    assert by["normal"].missing_current == pytest.approx(0.025)
    assert by["lognormal"].missing_current == pytest.approx(0.005)
    assert by["color"].current_hist[-1] == 1.0 and by["color"].drifted
    assert json.loads(json.dumps(report.to_dict()))["features"][0]["name"] == "normal"


def test_prediction_drift_is_judged_the_same_way(reference):
    prof = profile_of(
        reference,
        prediction=np.where(reference["normal"] > 5, "high", "low"),
        prediction_kind="categorical",
    )
    current = frame(5_000, 13)
    same = drift.compare(prof, current, prediction=np.where(current["normal"] > 5, "high", "low"))
    assert not same.prediction_drift and same.prediction.chi2_pvalue is not None
    moved = drift.compare(prof, current, prediction=np.where(current["normal"] > 3, "high", "low"))
    assert moved.prediction_drift and moved.prediction.drifted and moved.drifted() == []
    assert "prediction drifted" in moved.reason
    bare = profile_of(reference)
    with pytest.raises(drift.DriftError, match="prediction"):
        drift.compare(bare, current, prediction=[1.0] * 5_000)
