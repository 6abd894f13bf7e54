"""bench/tune_quality.py: each part runs on its own, as on a fresh clone (no results file)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location(
        "tune_quality", ROOT / "bench" / "tune_quality.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ROWS = [
    {"seed": 0, "tpe_30": 61.0, "random_30": 63.0, "random_100": 62.0},
    {"seed": 1, "tpe_30": 62.0, "random_30": 64.0, "random_100": 61.0},
    {"seed": 2, "tpe_30": 60.0, "random_30": 65.0, "random_100": 60.0},
]


def test_speed_part_alone_on_a_fresh_clone(bench):
    results = bench.merge({}, None, {"wall_s": {1: 20.0, 2: 11.0}})
    assert results == {"wall_s": {1: 20.0, 2: 11.0}, "parallel_ratio": 0.55}
    text = bench.table(results)
    assert "quality: not measured yet" in text
    assert "ratio" in text and "0.55" in text


def test_quality_part_alone_on_a_fresh_clone(bench):
    results = bench.merge({}, {"per_seed": ROWS}, None)
    assert results["medians"] == {"tpe_30": 61.0, "random_30": 64.0, "random_100": 61.0}
    assert "wall_s" not in results
    text = bench.table(results)
    assert "median best eval RMSE over 3 seeds" in text
    assert "speed: not measured yet" in text


def test_a_part_rerun_keeps_the_other_part_from_the_results_file(bench):
    # As written to disk: JSON turns the parallel counts into strings.
    previous = json.loads(json.dumps(bench.merge({}, {"per_seed": ROWS}, {"wall_s": {1: 4, 2: 3}})))
    rerun = bench.merge(previous, None, {"wall_s": {1: 10.0, 2: 6.0}})
    assert rerun["per_seed"] == ROWS and rerun["parallel_ratio"] == 0.6
    kept = bench.merge(previous, {"per_seed": ROWS[:1]}, None)
    assert kept["medians"]["tpe_30"] == 61.0 and kept["wall_s"] == {1: 4, 2: 3}
