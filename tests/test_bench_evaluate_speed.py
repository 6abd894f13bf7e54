"""bench/evaluate_speed.py runs end to end (small sizes, its JSON elsewhere): the benchmark
keeps working as evaluate changes. Its figures are not judged here (timing)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.unit


def test_the_benchmark_runs_and_writes_its_table(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location(
        "evaluate_speed", ROOT / "bench" / "evaluate_speed.py"
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "evaluate_speed.json"
    args = ["--rows", "3000", "--resamples", "200", "--loop-resamples", "5"]
    results = bench.main([*args, "--latency-calls", "20", "--out", str(out)])
    assert json.loads(out.read_text()) == results
    for task in ("regression", "classification"):
        assert results[task]["rows"] == 3000 and results[task]["decision"] in ("promote", "reject")
        for figures in results[task]["bootstrap"].values():
            assert figures["resamples"] == 200 and figures["ci"][0] <= figures["ci"][1]
    assert set(results["classification"]["bootstrap"]) == {"f1", "roc_auc"}
    assert "whole evaluate step (s)" in capsys.readouterr().out
