"""Tuning: does TPE earn its keep, and do parallel trials pay? On the Bikeshare task, with Optuna.

    .venv/bin/python bench/tune_quality.py [--seeds 5]

Data as the training pipeline splits it (time-ordered: first 70% train, next 15% eval),
the bundled feature spec and the bundled search space (without early stopping).
 * Quality, per seed: best eval RMSE of TPE at 30 trials, of random search at 30 and at
   100 trials (random's first 30 trials are its 30-trial run: same seed, same sequence).
 * Speed: a 40-trial random search with one thread per trial, 1 vs 2 trials in parallel
   (worker processes sharing the study). ``--part speed`` runs only this, ``--part quality``
   only the quality part; either works on its own (a fresh clone has no results yet).
Prints a table; writes bench/results/tune_quality.json (a part not run keeps its previous
figures, when the file has them).
"""

import argparse
import copy
import json
import statistics
from pathlib import Path

import optuna
import pandas as pd

from components.transform import executor as transform_exec
from components.tune import executor, search_space

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "results" / "tune_quality.json"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--part", choices=("all", "quality", "speed"), default="all")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    data = pd.read_csv(ROOT / "examples" / "bikeshare" / "bikeshare.csv")
    cut1, cut2 = int(len(data) * 0.7), int(len(data) * 0.85)
    train, valid = data.iloc[:cut1], data.iloc[cut1:cut2]
    feature_spec = transform_exec.load_spec("bikeshare")
    transformer = transform_exec.fit(feature_spec, train)
    base = search_space.load("bikeshare")
    base.pop("early_stopping", None)

    def search(algorithm, trials, parallel, seed, threads=None):
        spec = {
            **copy.deepcopy(base),
            "algorithm": algorithm,
            "max_trials": trials,
            "parallel_trials": parallel,
        }
        return executor.run_optuna(
            spec, transformer, feature_spec, train, valid, seed, threads_per_trial=threads
        )

    quality = speed = None
    if args.part != "speed":
        rows = []
        for seed in range(args.seeds):
            tpe = search("tpe", 30, 1, seed)
            rnd = search("random", 100, 1, seed)
            rnd30 = min(t["value"] for t in rnd.trials[:30])
            rows.append(
                {
                    "seed": seed,
                    "tpe_30": tpe.best_value,
                    "random_30": rnd30,
                    "random_100": rnd.best_value,
                }
            )
            print(
                f"seed {seed}: TPE@30 {tpe.best_value:.3f}  random@30 {rnd30:.3f}  random@100 {rnd.best_value:.3f}",
                flush=True,
            )
        quality = {"per_seed": rows}
    if args.part != "quality":
        # Random search: both runs try the same kind of parameters, so the wall times compare.
        speed = {
            "wall_s": {
                parallel: search("random", 40, parallel, 0, threads=1).wall_seconds
                for parallel in (1, 2)
            }
        }

    previous = json.loads(OUT.read_text()) if OUT.exists() else {}
    results = merge(previous, quality, speed)
    print("\n" + table(results))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2))
    print(f"wrote {OUT.relative_to(ROOT)}")


def merge(previous: dict, quality: dict | None, speed: dict | None) -> dict:
    """The results file's content: this run's parts, and the other part from ``previous``.

    Either part may be missing (a fresh clone has no results file): the medians and the
    parallel ratio are computed only from what there is.
    """
    rows = (quality or previous).get("per_seed", [])
    walls = {int(k): v for k, v in (speed or previous).get("wall_s", {}).items()}
    out: dict = {}
    if rows:
        out["per_seed"] = rows
        out["medians"] = {
            k: statistics.median(r[k] for r in rows) for k in ("tpe_30", "random_30", "random_100")
        }
    if 1 in walls and 2 in walls:
        out["wall_s"] = walls
        out["parallel_ratio"] = walls[2] / walls[1]
    return out


def table(results: dict) -> str:
    """The printed tables, for the parts ``results`` holds."""
    lines = []
    if "medians" in results:
        med, seeds = results["medians"], len(results["per_seed"])
        lines += [
            f"{'median best eval RMSE over ' + str(seeds) + ' seeds':<44}{'value':>10}",
            f"{'TPE, 30 trials':<44}{med['tpe_30']:>10.3f}",
            f"{'random, 30 trials':<44}{med['random_30']:>10.3f}",
            f"{'random, 100 trials':<44}{med['random_100']:>10.3f}",
            f"{'TPE@30 vs random@100':<44}{100 * (med['tpe_30'] / med['random_100'] - 1):>+9.2f}%",
        ]
    else:
        lines.append("quality: not measured yet (run without --part, or --part quality)")
    if "wall_s" in results:
        walls = results["wall_s"]
        lines += [
            "",
            f"{'40 random-search trials, 1 thread per trial':<44}{'wall s':>10}",
            f"{'1 trial at a time':<44}{walls[1]:>10.1f}",
            f"{'2 trials in parallel':<44}{walls[2]:>10.1f}",
            f"{'ratio':<44}{results['parallel_ratio']:>10.2f}",
        ]
    else:
        lines += ["", "speed: not measured yet (run without --part, or --part speed)"]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
