"""Drift: components.lib.drift against Evidently's DataDriftPreset on 1M x 25 synthetic rows.

    .venv/bin/python bench/drift.py [--rows 1000000] [--quick] [--runs 5] [--skip-evidently]
        [--out bench/results/drift.json]

Generates (seeded) a reference and a current table of ``--rows`` rows each (``--quick``:
100,000) with 25 features: 20 numeric of varied shapes (normal, lognormal, exponential,
uniform, Student-t, bimodal, Poisson counts, zero-inflated, a timestamp-like column, ...;
some with missing values) and 5 categorical (3 to 200 categories, one with missing values),
and writes them as Parquet under .build/bench/drift/. Drift is planted in the current table
(``PLANTED``): a mean shift of 0.5 std, a scale change, a jump of the missing share and a
changed category mix; and a tiny shift (0.02 std) that must NOT be flagged (``TINY``).

Then:

* the reference profile is built from the reference Parquet (timed on its own: a
  training-time cost) and saved as JSON (its size is reported);
* in a fresh child process (so its peak RSS is the comparison's): reading the current
  Parquet (timed on its own), then ``load_profile`` + ``compare`` ``--runs`` times; the
  median is the figure (``wall_s``);
* agreement: for every feature, each statistic against scipy's functions on the data the
  profile holds (the same counts, the same samples): max abs difference (must be <= 1e-9);
  and the sketch's error: KS and normalized Wasserstein on the samples against scipy on
  ALL rows of both tables (``ks_2samp`` / ``wasserstein_distance`` on the raw columns);
* Evidently 0.7's DataDriftPreset on the same Parquet files in the same run, in its own
  venv (``LOOPLINE_EVIDENTLY_VENV``, default ``.venv-evidently`` in the checkout; made from
  bench/requirements-evidently.txt when missing), through bench/drift_evidently.py.

The bar (issue 13): compare <= 2 s on 1M rows x 25 features on these 2 cores, and >= 30x
faster than Evidently in the same run. Writes drift.json, drift.md (table) and drift.svg
(wall times; hand-written, matplotlib is not in the main env) beside ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from components.lib import drift  # noqa: E402

OUT = ROOT / "bench" / "results" / "drift.json"
BUILD = ROOT / ".build" / "bench" / "drift"
EVIDENTLY_LOCK = ROOT / "bench" / "requirements-evidently.txt"
EVIDENTLY_VENV = Path(os.environ.get("LOOPLINE_EVIDENTLY_VENV", str(ROOT / ".venv-evidently")))
NUMERIC = [f"num_{i:02d}" for i in range(20)]
CATEGORICAL = [f"cat_{i}" for i in range(5)]
PLANTED = {
    "num_00": "mean shift +0.5 std (normal)",
    "num_07": "scale x1.5 (lognormal)",
    "num_13": "missing share 1% -> 15%",
    "cat_1": "category mix changed (10 categories)",
}
TINY = {"num_03": "mean shift +0.02 std (exponential): must not be flagged"}
BAR_S, BAR_RATIO, TOLERANCE = 2.0, 30.0, 1e-9


# --------------------------------------------------------------------------- data


def generate(rows: int, seed: int, current: bool) -> pd.DataFrame:
    """The benchmark's table; ``current`` plants PLANTED and TINY."""
    rng = np.random.default_rng(seed)
    cols: dict[str, np.ndarray] = {}
    shapes = [
        lambda: rng.normal(10, 2, rows),
        lambda: rng.lognormal(0, 1, rows),
        lambda: rng.exponential(3, rows),
        lambda: rng.uniform(-5, 5, rows),
        lambda: rng.standard_t(4, rows),
        lambda: np.where(rng.random(rows) < 0.4, rng.normal(-2, 0.5, rows), rng.normal(3, 1, rows)),
        lambda: rng.poisson(4, rows).astype(np.float64),
        lambda: np.where(rng.random(rows) < 0.6, 0.0, rng.gamma(2, 5, rows)),
        lambda: 1.7e9 + rng.uniform(0, 86_400 * 30, rows),
        lambda: rng.beta(2, 5, rows),
    ]
    for i, name in enumerate(NUMERIC):
        values = shapes[i % len(shapes)]()
        if i >= 10:
            values = values * (1 + i) + i
        cols[name] = values
    for name in ("num_02", "num_13"):
        cols[name][rng.random(rows) < 0.01] = np.nan
    cards = [3, 5, 10, 50, 200]
    cats: dict[str, np.ndarray] = {}
    for i, name in enumerate(CATEGORICAL):
        k = cards[i]
        weights = 1.0 / np.arange(1, k + 1)
        if current and name == "cat_1":
            weights = weights[::-1]
        codes = rng.choice(k, rows, p=weights / weights.sum())
        labels = np.array([f"{name}_v{j}" for j in range(k)], dtype=object)
        cats[name] = labels[codes]
    cats["cat_4"][rng.random(rows) < 0.02] = None
    if current:
        std = np.nanstd(cols["num_00"])
        cols["num_00"] = cols["num_00"] + 0.5 * std
        mean = np.nanmean(cols["num_07"])
        cols["num_07"] = mean + (cols["num_07"] - mean) * 1.5
        cols["num_13"][rng.random(rows) < 0.15] = np.nan
        cols["num_03"] = cols["num_03"] + 0.02 * np.nanstd(cols["num_03"])
    frame = pd.DataFrame(cols)
    for name, values in cats.items():
        frame[name] = pd.Series(values, dtype=object)
    return frame


def write_data(rows: int, folder: Path) -> tuple[Path, Path, float]:
    folder.mkdir(parents=True, exist_ok=True)
    ref, cur = folder / "reference.parquet", folder / "current.parquet"
    start = time.perf_counter()
    if not (ref.exists() and cur.exists()):
        generate(rows, 1, current=False).to_parquet(ref, index=False)
        generate(rows, 2, current=True).to_parquet(cur, index=False)
    return ref, cur, time.perf_counter() - start


# --------------------------------------------------------------------------- ours


def child_compare(profile_path: str, current_path: str, runs: int, report_path: str) -> dict:
    """Runs in a fresh process: read the Parquet, then load_profile + compare ``runs`` times."""
    start = time.perf_counter()
    current = pd.read_parquet(current_path)
    read_s = time.perf_counter() - start
    rss_after_read = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    times, load_times = [], []
    report = None
    for _ in range(runs):
        start = time.perf_counter()
        profile = drift.load_profile(profile_path)
        loaded = time.perf_counter()
        report = drift.compare(profile, current)
        times.append(time.perf_counter() - start)
        load_times.append(loaded - start)
    Path(report_path).write_text(json.dumps(report.to_dict()))
    return {
        "read_s": read_s,
        "wall_s": statistics.median(times),
        "runs_s": times,
        "load_profile_s": statistics.median(load_times),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_after_read_mb": rss_after_read,
        "flagged": report.drifted(),
        "dataset_drift": report.dataset_drift,
    }


def run_ours(ref_path: Path, cur_path: Path, folder: Path, runs: int) -> dict:
    start = time.perf_counter()
    reference = pd.read_parquet(ref_path)
    read_ref_s = time.perf_counter() - start
    start = time.perf_counter()
    profile = drift.build_profile(reference, numeric=NUMERIC, categorical=CATEGORICAL)
    build_s = time.perf_counter() - start
    profile_path = folder / "profile.json"
    drift.save_profile(profile, profile_path)
    del reference
    report_path = folder / "report.json"
    code = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); sys.path.insert(0, sys.argv[2]);"
        "import drift as bench;"
        "print(json.dumps(bench.child_compare(*sys.argv[3:5], int(sys.argv[5]), sys.argv[6])))"
    )
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            str(ROOT),
            str(ROOT / "bench"),
            str(profile_path),
            str(cur_path),
            str(runs),
            str(report_path),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result.update(
        tool="loopline",
        read_reference_s=read_ref_s,
        build_profile_s=build_s,
        profile_bytes=profile_path.stat().st_size,
    )
    return result


# --------------------------------------------------------------------------- agreement


def agreement(profile_path: Path, ref_path: Path, cur_path: Path) -> dict:
    """Max abs difference of each statistic to scipy on the profile's data, and the sketch
    error (KS, normalized Wasserstein on samples) against scipy on all rows."""
    from scipy import stats
    from scipy.spatial.distance import jensenshannon
    from scipy.special import rel_entr

    profile = drift.load_profile(profile_path)
    current = pd.read_parquet(cur_path)
    reference = pd.read_parquet(ref_path)
    report = drift.compare(profile, current)
    by_name = {f.name: f for f in report.features}
    diff = {"psi": 0.0, "js": 0.0, "ks": 0.0, "ks_pvalue": 0.0, "wasserstein": 0.0, "chi2": 0.0}
    diff["chi2_pvalue"] = 0.0
    sketch = {}
    eps = drift.EPSILON
    for entry in profile["features"]:
        name, fd = entry["name"], by_name[entry["name"]]
        t = drift.tables(profile, current, name)
        p, q = t.reference / t.reference.sum(), t.current / t.current.sum()
        k = len(p)
        pe, qe = (p + eps) / (1 + k * eps), (q + eps) / (1 + k * eps)
        psi_ref = float(np.sum(rel_entr(qe, pe) + rel_entr(pe, qe)))
        diff["psi"] = max(diff["psi"], abs(fd.psi - psi_ref))
        js_ref = float(jensenshannon(t.reference, t.current, base=2))
        diff["js"] = max(diff["js"], abs(fd.js - js_ref))
        if entry["kind"] == "categorical":
            table = np.vstack([t.reference, t.current])
            table = table[:, table.sum(axis=0) > 0]
            chi = stats.chi2_contingency(table)
            diff["chi2"] = max(diff["chi2"], abs(fd.chi2 - chi.statistic))
            diff["chi2_pvalue"] = max(diff["chi2_pvalue"], abs(fd.chi2_pvalue - chi.pvalue))
            continue
        ref_x = drift.profile_sample(profile, name)
        s = entry["sample"]
        cur_x = t.cur_z * s["scale"] + s["center"]
        ks = stats.ks_2samp(ref_x, cur_x, method="asymp")
        diff["ks"] = max(diff["ks"], abs(fd.ks - ks.statistic))
        diff["ks_pvalue"] = max(diff["ks_pvalue"], abs(fd.ks_pvalue - ks.pvalue))
        w = stats.wasserstein_distance(ref_x, cur_x) / (entry["std"] or 1.0)
        diff["wasserstein"] = max(diff["wasserstein"], abs(fd.wasserstein - w))
        raw_ref = reference[name].to_numpy()
        raw_cur = current[name].to_numpy()
        raw_ref, raw_cur = raw_ref[np.isfinite(raw_ref)], raw_cur[np.isfinite(raw_cur)]
        ks_raw = float(stats.ks_2samp(raw_ref, raw_cur, method="asymp").statistic)
        w_raw = float(stats.wasserstein_distance(raw_ref, raw_cur) / raw_ref.std())
        sketch[name] = {
            "ks_sample": fd.ks,
            "ks_all_rows": ks_raw,
            "ks_error": abs(fd.ks - ks_raw),
            "wasserstein_sample": fd.wasserstein,
            "wasserstein_all_rows": w_raw,
            "wasserstein_error": abs(fd.wasserstein - w_raw),
        }
    return {
        "max_abs_diff_vs_scipy": diff,
        "max_abs_diff": max(diff.values()),
        "tolerance": TOLERANCE,
        "ok": max(diff.values()) <= TOLERANCE,
        "sketch_error": {
            "ks_max": max(v["ks_error"] for v in sketch.values()),
            "ks_mean": float(np.mean([v["ks_error"] for v in sketch.values()])),
            "wasserstein_max": max(v["wasserstein_error"] for v in sketch.values()),
            "wasserstein_mean": float(np.mean([v["wasserstein_error"] for v in sketch.values()])),
            "per_feature": sketch,
        },
    }


# --------------------------------------------------------------------------- evidently


def evidently_python() -> str:
    python = EVIDENTLY_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(EVIDENTLY_VENV)], check=True)
        subprocess.run(
            [str(EVIDENTLY_VENV / "bin" / "pip"), "install", "-q", "-r", str(EVIDENTLY_LOCK)],
            check=True,
        )
    return str(python)


def run_evidently(ref_path: Path, cur_path: Path) -> dict:
    out = subprocess.run(
        [
            evidently_python(),
            str(ROOT / "bench" / "drift_evidently.py"),
            str(ref_path),
            str(cur_path),
            "--numeric",
            ",".join(NUMERIC),
            "--categorical",
            ",".join(CATEGORICAL),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- output


def table(results: dict) -> str:
    ours, ev = results["loopline"], results.get("evidently")
    lines = [
        f"# Drift: {results['rows']:,} current rows x 25 features against a {results['rows']:,}-row reference",
        "",
        f"Command: `{results['command']}`; {results['machine']}.",
        "",
        "| tool | wall s | speed-up | peak RSS MB | features flagged | notes |",
        "|---|---|---|---|---|---|",
    ]
    lines.append(
        f"| loopline `load_profile` + `compare` | {ours['wall_s']:.3f} | "
        f"{results['speedup']:.0f}x | {ours['peak_rss_mb']:.0f} | {', '.join(ours['flagged']) or '-'} | "
        f"median of {len(ours['runs_s'])} runs; reading the current Parquet {ours['read_s']:.2f} s "
        f"(not included); RSS includes the data ({ours['rss_after_read_mb']:.0f} MB after reading) |"
        if ev
        else f"| loopline `load_profile` + `compare` | {ours['wall_s']:.3f} | - | {ours['peak_rss_mb']:.0f} | "
        f"{', '.join(ours['flagged']) or '-'} | median of {len(ours['runs_s'])} runs; reading the "
        f"current Parquet {ours['read_s']:.2f} s (not included) |"
    )
    if ev:
        lines.append(
            f"| Evidently {ev['version']} DataDriftPreset | {ev['wall_s']:.2f} | 1x | "
            f"{ev['peak_rss_mb']:.0f} | {', '.join(ev['flagged']) or '-'} | one run; "
            f"`Dataset.from_pandas` + `Report.run`; reading both Parquet files {ev['read_s']:.2f} s (not included) |"
        )
    lines += [
        "",
        f"Building the profile (training time): {ours['build_profile_s']:.2f} s; "
        f"profile JSON {ours['profile_bytes'] / 1024:.0f} KB.",
        f"Planted: {', '.join(f'{k} ({v})' for k, v in PLANTED.items())}; "
        f"not to be flagged: {', '.join(f'{k} ({v})' for k, v in TINY.items())}.",
        "",
        results["bar_text"],
        "",
        "Agreement with scipy on the data the profile holds (max abs difference over features):",
        "",
        "| statistic | max abs diff |",
        "|---|---|",
    ]
    agree = results["agreement"]
    for stat, value in agree["max_abs_diff_vs_scipy"].items():
        lines.append(f"| {stat} | {value:.2e} |")
    sk = agree["sketch_error"]
    lines += [
        "",
        "Sketch error (samples of 10,000 vs scipy on all rows of both tables, over the 20 "
        f"numeric features): KS statistic max {sk['ks_max']:.4f} (mean {sk['ks_mean']:.4f}), "
        f"normalized Wasserstein max {sk['wasserstein_max']:.4f} (mean {sk['wasserstein_mean']:.4f}).",
        "",
    ]
    return "\n".join(lines)


def svg(results: dict) -> str:
    bars = [("loopline", results["loopline"]["wall_s"], "#2b8a3e")]
    if results.get("evidently"):
        bars.append(
            (
                f"Evidently {results['evidently']['version']}",
                results["evidently"]["wall_s"],
                "#868e96",
            )
        )
    width, left, bar_h, gap = 640, 170, 34, 16
    height = 60 + len(bars) * (bar_h + gap) + 30
    top = max(v for _, v, _ in bars)
    scale = (width - left - 90) / top
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="13">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="10" y="24" font-size="15" font-weight="bold">Drift check, {results["rows"]:,} '
        "rows x 25 features (wall s, lower is better)</text>",
    ]
    y = 50
    for label, value, color in bars:
        w = max(2.0, value * scale)
        parts.append(f'<text x="10" y="{y + bar_h / 2 + 5}">{label}</text>')
        parts.append(f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{color}"/>')
        parts.append(f'<text x="{left + w + 6:.1f}" y="{y + bar_h / 2 + 5}">{value:.2f} s</text>')
        y += bar_h + gap
    parts.append(f'<text x="10" y="{y + 10}" fill="#495057">{results["bar_text"]}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def bar(results: dict) -> tuple[bool | None, str]:
    ours, ev = results["loopline"], results.get("evidently")
    fast = ours["wall_s"] <= BAR_S
    if not ev:
        return None, (
            f"bar not fully checked (Evidently skipped): compare {ours['wall_s']:.3f} s "
            f"{'<=' if fast else '>'} {BAR_S} s"
        )
    met = fast and results["speedup"] >= BAR_RATIO
    return met, (
        f"bar {'MET' if met else 'NOT met'}: compare {ours['wall_s']:.3f} s "
        f"({'<=' if fast else '>'} {BAR_S} s), {results['speedup']:.0f}x Evidently "
        f"({'>=' if results['speedup'] >= BAR_RATIO else '<'} {BAR_RATIO:.0f}x)"
    )


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="100,000 rows")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--skip-evidently", action="store_true")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--workdir", type=Path, default=BUILD)
    args = parser.parse_args(argv)
    rows = 100_000 if args.quick else args.rows

    folder = args.workdir / f"rows-{rows}"
    ref_path, cur_path, gen_s = write_data(rows, folder)
    print(f"drift: data in {folder} ({gen_s:.1f} s)", flush=True)
    ours = run_ours(ref_path, cur_path, folder, args.runs)
    print(
        f"drift: loopline compare {ours['wall_s']:.3f} s (median of {args.runs}), "
        f"reading the current Parquet {ours['read_s']:.2f} s, profile built in "
        f"{ours['build_profile_s']:.2f} s; flagged {ours['flagged']}",
        flush=True,
    )
    agree = agreement(folder / "profile.json", ref_path, cur_path)
    print(
        f"drift: agreement with scipy max abs diff {agree['max_abs_diff']:.2e}; sketch error KS "
        f"{agree['sketch_error']['ks_max']:.4f}, Wasserstein {agree['sketch_error']['wasserstein_max']:.4f}",
        flush=True,
    )
    results = {
        "rows": rows,
        "features": {"numeric": NUMERIC, "categorical": CATEGORICAL},
        "planted": PLANTED,
        "tiny": TINY,
        "command": "bench/drift.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": f"{os.cpu_count()} cores, Python {platform.python_version()}, "
        f"load average before {os.getloadavg()[0]:.2f}",
        "loopline": ours,
        "agreement": agree,
        "evidently": None,
        "speedup": None,
    }
    if not args.skip_evidently:
        print("drift: Evidently DataDriftPreset (minutes at 1M rows)...", flush=True)
        ev = run_evidently(ref_path, cur_path)
        results["evidently"] = ev
        results["speedup"] = ev["wall_s"] / ours["wall_s"]
        print(f"drift: Evidently {ev['wall_s']:.1f} s; flagged {ev['flagged']}", flush=True)
    results["bar_met"], results["bar_text"] = bar(results)
    print(f"drift: {results['bar_text']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(table(results))
    args.out.with_suffix(".svg").write_text(svg(results))
    return results


if __name__ == "__main__":
    main()
