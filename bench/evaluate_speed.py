"""Evaluation speed: two models on a 100k-row holdout, 1,000 paired bootstrap resamples.

    .venv/bin/python bench/evaluate_speed.py [--rows 100000] [--resamples 1000]

Fits two Bikeshare models as the pipeline does (the bundled feature spec, a hash split on
``day``, transform + train executors): gradient boosting (the challenger) and a weaker
gradient boosting of 15 iterations (the champion), for regression (``bikers``) and for the
high-demand label (``bikers > 200``). The holdout is the held-out days' rows drawn with
replacement up to ``--rows`` rows. Then times, in one process:

  * scoring both models on the holdout (``predict`` / ``predict_proba``);
  * the paired bootstrap of the primary metric (RMSE; F1 and ROC AUC for the label) as
    evaluate runs it: one index matrix per chunk of resamples, per-row counts, matrix
    products; no Python loop per resample;
  * resamples the slow way (a Python loop: index, score both with scikit-learn's metric),
    ``--loop-resamples`` of them (100) scaled to ``--resamples``, for the speed-up;
  * McNemar's test;
  * the whole evaluate step (``executor.run``: both models loaded verified, every metric,
    slices, robustness, latency, permutation importance, bootstrap, reports) on that holdout;
  * latency of the challenger's ``predict`` in this process, one thread: ``--latency-calls``
    single rows and 100 batches of 1,000 rows (p50 / p99).

Prints a table; writes bench/results/evaluate_speed.json.
"""

import argparse
import copy
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from components.evaluate import config as config_mod  # noqa: E402
from components.evaluate import executor, measures, stats  # noqa: E402
from components.ingest import executor as ingest_exec  # noqa: E402
from components.lib import metrics  # noqa: E402
from components.train import executor as train_exec  # noqa: E402
from components.transform import executor as transform_exec  # noqa: E402

BIKESHARE = ROOT / "examples" / "bikeshare" / "bikeshare.csv"
OUT = ROOT / "bench" / "results" / "evaluate_speed.json"
HIGH_DEMAND = 200


def _fit(folder: Path, splits: dict, task: str) -> dict:
    spec = copy.deepcopy(transform_exec.load_spec("bikeshare"))
    if task == "classification":
        spec.update(task="classification", target="high_demand")
    where = folder / task
    where.mkdir()
    fitted = transform_exec.fit(spec, pd.read_parquet(splits["train"]))
    transform_meta = transform_exec.save(fitted, spec, str(where / "transform"))
    out = {}
    for role, params in (("challenger", {}), ("champion", {"max_iter": 15})):
        meta, _ = train_exec.run(
            splits["train"],
            splits["eval"],
            str(where / "transform"),
            transform_meta,
            str(where / role),
            "gradient_boosting",
            params,
            {},
        )
        out[role] = (str(where / role), meta)
    return out


def _seconds(fn, repeat: int = 1) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - started)
    return best, result


def _loop_bootstrap(task, metric, y, a, b, resamples, seed) -> np.ndarray:
    """The slow way: one Python iteration per resample, scikit-learn's metric."""
    from sklearn import metrics as skm

    score = {
        "rmse": lambda yy, s: skm.root_mean_squared_error(yy, s),
        "f1": lambda yy, s: skm.f1_score(yy, s > 0.5),
        "roc_auc": lambda yy, s: skm.roc_auc_score(yy, s),
    }[metric]
    sign = 1 if metrics.GREATER_IS_BETTER[task][metric] else -1
    rng = np.random.default_rng(seed)
    out = np.empty(resamples)
    for k in range(resamples):
        i = rng.integers(0, len(y), len(y))
        out[k] = sign * (score(y[i], b[i]) - score(y[i], a[i]))
    return out


def _latency(model, x: pd.DataFrame, calls: int) -> dict:
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    rows = [x.iloc[[i]] for i in rng.integers(0, len(x), calls)]
    batches = [x.iloc[rng.integers(0, len(x), 1000)] for _ in range(100)]
    with threadpool_limits(limits=1):
        for row in rows[:5]:
            model.predict(row)
        single, batch = [], []
        for row in rows:
            t = time.perf_counter()
            model.predict(row)
            single.append(1000 * (time.perf_counter() - t))
        for frame in batches:
            t = time.perf_counter()
            model.predict(frame)
            batch.append(1000 * (time.perf_counter() - t))

    def pct(values):
        return {
            "p50_ms": round(float(np.percentile(values, 50)), 3),
            "p99_ms": round(float(np.percentile(values, 99)), 3),
            "calls": len(values),
        }

    return {"single_row": pct(single), "batch_1000": pct(batch)}


def run_task(task, folder, splits, holdout_path, holdout, resamples, loop_resamples) -> dict:
    from threadpoolctl import threadpool_limits

    fitted = _fit(folder, splits, task)
    (c_path, c_meta), (p_path, p_meta) = fitted["challenger"], fitted["champion"]
    challenger = executor.load_model(c_path, c_meta)
    champion = executor.load_model(p_path, p_meta, "champion model")
    target = c_meta["target"]
    x = holdout[list(challenger.feature_names_in_)]
    y = holdout[target].to_numpy(dtype=np.float64)
    result: dict = {"task": task, "rows": len(holdout)}
    for threads in (1, 2):
        with threadpool_limits(limits=threads):
            seconds, (a, b) = _seconds(
                lambda: (measures.scores(task, champion, x), measures.scores(task, challenger, x))
            )
        result[f"score_both_s_{threads}_thread{'s' if threads > 1 else ''}"] = round(seconds, 3)
    ranked = ["rmse"] if task == "regression" else ["f1", "roc_auc"]
    result["bootstrap"] = {}
    for metric in ranked:
        with threadpool_limits(limits=1):
            vec_s, comparison = _seconds(
                lambda metric=metric: stats.paired_bootstrap(
                    task, metric, y, a, b, resamples=resamples, alpha=0.05, min_effect=0.0, seed=0
                ),
                repeat=2,
            )
        loop_s, _ = _seconds(
            lambda metric=metric: _loop_bootstrap(task, metric, y, a, b, loop_resamples, 0)
        )
        loop_full = loop_s * resamples / loop_resamples
        result["bootstrap"][metric] = {
            "resamples": resamples,
            "vectorized_s": round(vec_s, 3),
            "python_loop_s": round(loop_full, 2),
            "python_loop_measured_resamples": loop_resamples,
            "speedup": round(loop_full / vec_s, 1),
            "improvement": comparison.improvement,
            "ci": [comparison.ci_low, comparison.ci_high],
        }
    if task == "classification":
        mc_s, _ = _seconds(
            lambda: stats.mcnemar((a > 0.5) == (y > 0.5), (b > 0.5) == (y > 0.5), 0.05)
        )
        result["mcnemar_s"] = round(mc_s, 4)
    # The whole step, as the component runs it (the bundled config, its default of one thread).
    name = "bikeshare" if task == "regression" else "bikeshare_high_demand"
    cfg = json.loads((config_mod.CONFIGS_DIR / f"{name}.json").read_text())
    cfg["comparison"]["bootstrap_resamples"] = resamples
    step_s, ev = _seconds(
        lambda: executor.run(
            c_path,
            c_meta,
            str(holdout_path),
            splits["eval"],
            p_path,
            {**p_meta, "found": True, "version": "1"},
            json.dumps(cfg),
            str(folder / f"evaluation_{task}"),
        )
    )
    result["evaluate_step_s"] = round(step_s, 2)
    result["evaluate_step_parts_s"] = ev["timings_s"]
    result["decision"] = ev["decision"]
    result["latency"] = _latency(challenger, x, LATENCY_CALLS)
    return result


LATENCY_CALLS = 1000


def table(results: dict) -> str:
    lines = [
        f"evaluate speed: {results['rows']:,}-row holdout, {results['resamples']:,} paired "
        f"bootstrap resamples ({results['machine']})",
        f"{'':<44}{'regression':>14}{'classification':>16}",
    ]
    reg, clf = results["regression"], results["classification"]

    def row(label, a, b):
        lines.append(f"{label:<44}{a:>14}{b:>16}")

    row(
        "score both models, 1 thread (s)",
        reg["score_both_s_1_thread"],
        clf["score_both_s_1_thread"],
    )
    row(
        "score both models, 2 threads (s)",
        reg["score_both_s_2_threads"],
        clf["score_both_s_2_threads"],
    )
    for metric_r, metric_c in (("rmse", "f1"), (None, "roc_auc")):
        r = reg["bootstrap"].get(metric_r) if metric_r else None
        c = clf["bootstrap"][metric_c]
        label = f"{metric_r or '-'} / {metric_c}"
        row(
            f"paired bootstrap, vectorized ({label}) (s)",
            r["vectorized_s"] if r else "",
            c["vectorized_s"],
        )
        row(
            f"  same with a Python loop ({label}) (s)",
            r["python_loop_s"] if r else "",
            c["python_loop_s"],
        )
        row(f"  speed-up ({label})", f"{r['speedup']}x" if r else "", f"{c['speedup']}x")
    row("McNemar's test (s)", "", clf["mcnemar_s"])
    row("whole evaluate step (s)", reg["evaluate_step_s"], clf["evaluate_step_s"])
    for key, label in (("single_row", "one row"), ("batch_1000", "1,000 rows")):
        row(
            f"predict latency, {label}, p50 / p99 (ms)",
            f"{reg['latency'][key]['p50_ms']:.2f} / {reg['latency'][key]['p99_ms']:.2f}",
            f"{clf['latency'][key]['p50_ms']:.2f} / {clf['latency'][key]['p99_ms']:.2f}",
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    global LATENCY_CALLS
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument(
        "--loop-resamples",
        type=int,
        default=100,
        help="resamples the Python-loop reference runs (its time is scaled to --resamples)",
    )
    parser.add_argument("--latency-calls", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=OUT, help="where the JSON goes")
    args = parser.parse_args(argv)
    LATENCY_CALLS = args.latency_calls
    data = pd.read_csv(BIKESHARE)
    data["high_demand"] = (data["bikers"] > HIGH_DEMAND).astype(int)
    parts = ingest_exec.split(
        data, ingest_exec.split_rule_for("hash", "day", "day", 0.7, 0.15, 0.15)
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        splits = {}
        for name, part in parts.items():
            splits[name] = str(folder / f"{name}.parquet")
            part.to_parquet(splits[name], index=False)
        held = pd.concat([parts["holdout"], parts["eval"]], ignore_index=True)
        holdout = held.iloc[np.random.default_rng(0).integers(0, len(held), args.rows)]
        holdout = holdout.reset_index(drop=True)
        holdout_path = folder / "holdout_big.parquet"
        holdout.to_parquet(holdout_path, index=False)
        results = {
            "rows": args.rows,
            "resamples": args.resamples,
            "machine": f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}",
            "load_average_at_start": [round(v, 2) for v in os.getloadavg()],
        }
        for task in ("regression", "classification"):
            print(f"{task} ...", flush=True)
            results[task] = run_task(
                task, folder, splits, holdout_path, holdout, args.resamples, args.loop_resamples
            )
    results["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    print(table(results))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")
    return results


if __name__ == "__main__":
    main()
