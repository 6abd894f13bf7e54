"""bench/drift.py runs end to end (--quick --skip-evidently, its files elsewhere): the JSON has
its fields and every statistic agrees with scipy to 1e-9. Its timings are not judged here."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.unit


def test_the_quick_benchmark_writes_its_results(tmp_path):
    spec = importlib.util.spec_from_file_location("bench_drift", ROOT / "bench" / "drift.py")
    bench = importlib.util.module_from_spec(spec)
    sys.modules["bench_drift"] = bench
    try:
        spec.loader.exec_module(bench)
        out = tmp_path / "drift.json"
        results = bench.main(
            [
                "--quick",
                "--skip-evidently",
                "--runs",
                "1",
                "--out",
                str(out),
                "--workdir",
                str(tmp_path),
            ]
        )
    finally:
        sys.modules.pop("bench_drift", None)
    assert json.loads(out.read_text()) == json.loads(json.dumps(results))
    assert results["rows"] == 100_000 and results["evidently"] is None
    ours = results["loopline"]
    for key in ("wall_s", "read_s", "build_profile_s", "profile_bytes", "peak_rss_mb", "flagged"):
        assert key in ours
    assert sorted(ours["flagged"]) == sorted(bench.PLANTED)  # the tiny shift is not flagged
    agreement = results["agreement"]
    assert agreement["ok"] and agreement["max_abs_diff"] <= 1e-9
    assert set(agreement["max_abs_diff_vs_scipy"]) >= {"psi", "js", "ks", "wasserstein", "chi2"}
    sketch = agreement["sketch_error"]
    assert 0 <= sketch["ks_max"] < 0.1 and 0 <= sketch["wasserstein_max"] < 0.1
    assert "| loopline" in out.with_suffix(".md").read_text()
    assert out.with_suffix(".svg").read_text().startswith("<svg")
