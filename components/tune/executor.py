"""Tune, local backend: the search-space spec run with Optuna, trials in parallel on the cores.

Katib's algorithm names map to Optuna samplers and pruners (README has the table):
random -> RandomSampler, tpe -> TPESampler, multivariate-tpe -> TPESampler(multivariate),
cmaes -> CmaEsSampler, grid -> GridSampler, sobol -> QMCSampler(sobol),
bayesianoptimization -> a scikit-optimize GP sampler (as Katib's own service),
hyperband -> RandomSampler with HyperbandPruner; early stopping medianstop -> MedianPruner.
"""

from __future__ import annotations

import html as html_lib
import logging
import multiprocessing
import os
import re
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import optuna
import pandas as pd
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from threadpoolctl import threadpool_limits

from components.lib import features, modeling
from components.tune import search_space
from components.tune.bayesian import BayesianOptimizationSampler

log = logging.getLogger("loopline.tune")
GBM_STAGES = 4  # gradient boosting reports its eval score this many times per trial (for pruning)


@dataclass
class TuneResult:
    best_params: dict
    best_value: float
    trials: list[dict] = field(default_factory=list)
    wall_seconds: float = 0.0


def _sampler(spec: dict, seed: int):
    algorithm = spec["algorithm"]
    if algorithm in ("random", "hyperband"):
        return optuna.samplers.RandomSampler(seed=seed)
    if algorithm == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if algorithm == "multivariate-tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True)
    if algorithm == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed)
    if algorithm == "sobol":
        return optuna.samplers.QMCSampler(qmc_type="sobol", seed=seed)
    if algorithm == "grid":
        return optuna.samplers.GridSampler(_grid(spec), seed=seed)
    if algorithm == "bayesianoptimization":
        return BayesianOptimizationSampler(seed=seed)
    raise search_space.SearchSpaceError(f"algorithm {algorithm!r} has no Optuna equivalent")


def _grid(spec: dict) -> dict[str, list]:
    grid = {}
    for p in spec["parameters"]:
        if p["type"] in ("categorical", "discrete"):
            grid[p["name"]] = list(p["values"])
        else:
            step = p.get("step", 1)
            values = np.arange(p["min"], p["max"] + step / 2, step)
            grid[p["name"]] = (
                [int(v) for v in values] if p["type"] == "int" else [float(v) for v in values]
            )
    return grid


def _pruner(spec: dict):
    if spec["algorithm"] == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=GBM_STAGES)
    stopping = spec.get("early_stopping")
    if stopping:
        return optuna.pruners.MedianPruner(
            n_startup_trials=stopping.get("min_trials_required", 3),
            n_warmup_steps=stopping.get("start_step", 1) - 1,
        )
    return optuna.pruners.NopPruner()


def suggest(trial: optuna.Trial, spec: dict) -> dict:
    params = {}
    for p in spec["parameters"]:
        if p["type"] == "int":
            params[p["name"]] = trial.suggest_int(
                p["name"],
                int(p["min"]),
                int(p["max"]),
                step=int(p.get("step", 1)),
                log=bool(p.get("log")),
            )
        elif p["type"] == "double":
            params[p["name"]] = trial.suggest_float(
                p["name"], p["min"], p["max"], step=p.get("step"), log=bool(p.get("log"))
            )
        else:
            params[p["name"]] = trial.suggest_categorical(p["name"], list(p["values"]))
    return params


def make_objective(
    spec: dict, transformer, feature_spec: dict, train: pd.DataFrame, valid: pd.DataFrame, seed: int
):
    """A trial function: fit on the transformed train split, score on the eval split."""
    x_train, y_train = modeling.split_xy(feature_spec, train)
    x_valid, y_valid = modeling.split_xy(feature_spec, valid)
    xt_train, xt_valid = transformer.transform(x_train), transformer.transform(x_valid)
    metric = spec["objective"]["metric"]
    task = feature_spec["task"]
    if metric not in modeling.METRICS[task]:
        raise search_space.SearchSpaceError(
            f"objective.metric {metric!r} is not a {task} metric ({', '.join(modeling.METRICS[task])})"
        )
    model_type = spec.get("model_type", "gradient_boosting")

    def objective(trial: optuna.Trial) -> float:
        params = suggest(trial, spec)
        estimator = modeling.make_estimator(task, model_type, params, seed)
        if model_type != "gradient_boosting":
            estimator.fit(xt_train, y_train)
            return modeling.evaluate(task, estimator, xt_valid, y_valid)[metric]
        total = estimator.get_params()["max_iter"]
        estimator.set_params(warm_start=True)
        for step in range(1, GBM_STAGES + 1):
            estimator.set_params(max_iter=max(1, round(total * step / GBM_STAGES)))
            estimator.fit(xt_train, y_train)
            score = modeling.evaluate(task, estimator, xt_valid, y_valid)[metric]
            trial.report(score, step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return score

    return objective


def _claim(slots, max_trials: int) -> bool:
    """Takes one trial of the budget, atomically across the worker processes; False when none is left."""
    with slots.get_lock():
        if slots.value >= max_trials:
            return False
        slots.value += 1
        return True


def _worker(study, objective, spec: dict, threads: int, index: int, seed: int, slots) -> None:
    """Runs trials while the budget has any left; every worker claims a trial before it starts one.

    (Optuna's MaxTrialsCallback counts finished trials only, so workers that start at the same
    moment can overrun the budget; the shared counter cannot.)
    """
    if index:
        # Each worker samples with its own seed: a forked copy of the sampler would repeat the
        # first worker's points. (With parallel trials the order in which trials finish still
        # varies; parallel_trials=1 gives the same result for the same seed.)
        study.sampler = _sampler(spec, seed + index)

    def progress(study_, trial):
        log.info(
            "trial %d/%d %s value=%s",
            trial.number + 1,
            spec["max_trials"],
            trial.state.name,
            trial.value,
        )

    with threadpool_limits(limits=threads):
        while _claim(slots, spec["max_trials"]):
            study.optimize(
                objective, n_trials=1, catch=(ValueError, ArithmeticError), callbacks=[progress]
            )


def run_optuna(
    spec: dict,
    transformer,
    feature_spec: dict,
    train: pd.DataFrame,
    valid: pd.DataFrame,
    seed: int = 0,
    threads_per_trial: int | None = None,
) -> TuneResult:
    """Runs the search; ``parallel_trials`` trials at a time, each limited to ``threads_per_trial`` threads."""
    search_space.validate(spec)
    objective = make_objective(spec, transformer, feature_spec, train, valid, seed)
    parallel = spec.get("parallel_trials", 1)
    threads = threads_per_trial or max(1, (os.cpu_count() or 1) // parallel)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        # Trials share one study through a journal file, so that they can run in processes:
        # threads serialise on the GIL (measured: 2 threads took 2.9x the wall time of 1).
        storage = JournalStorage(JournalFileBackend(os.path.join(tmp, "study.log")))
        study = optuna.create_study(
            storage=storage,
            direction=spec["objective"]["goal"],
            sampler=_sampler(spec, seed),
            pruner=_pruner(spec),
        )
        context = multiprocessing.get_context("fork")  # workers inherit the data and the objective
        slots = context.Value("i", 0)  # trials claimed so far, shared by the workers
        if parallel == 1:
            _worker(study, objective, spec, threads, 0, seed, slots)
        else:
            workers = [
                context.Process(
                    target=_worker, args=(study, objective, spec, threads, i, seed, slots)
                )
                for i in range(parallel)
            ]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
            broken = [w.exitcode for w in workers if w.exitcode != 0]
            if broken:
                raise RuntimeError(
                    f"{len(broken)} tuning worker processes died (exit codes {broken})"
                )
        study = optuna.load_study(study_name=study.study_name, storage=storage)
        done = study.get_trials(deepcopy=True)
        best = study.best_trial if any(t.state.name == "COMPLETE" for t in done) else None
    failed = [t for t in done if t.state.name == "FAIL"]
    if len(failed) > spec.get("max_failed_trials", 0) or best is None:
        raise RuntimeError(
            f"{len(failed)} of {len(done)} trials failed (max_failed_trials={spec.get('max_failed_trials', 0)})"
            + (
                f"; first failure: {failed[0].system_attrs.get('fail_reason', '')}"
                if failed
                else ""
            )
        )
    trials = [
        {"number": t.number, "state": t.state.name, "value": t.value, "params": t.params}
        for t in done
    ]
    return TuneResult(best.params, float(best.value), trials, time.perf_counter() - started)


def run(
    train_path: str,
    eval_path: str,
    transform_dir: str,
    transform_metadata: Mapping,
    spec_ref: str,
    seed: int = 0,
) -> TuneResult:
    """Loads the data and the fitted transform, and runs the spec's search with Optuna.

    ``transform_metadata`` is what the transform step recorded (its artifact metadata):
    the transformer is refused, before it is unpickled, unless it matches.
    """
    spec = search_space.load(spec_ref)
    transformer, feature_spec = features.load_fitted(transform_dir, transform_metadata)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return run_optuna(
        spec,
        transformer,
        feature_spec,
        pd.read_parquet(train_path),
        pd.read_parquet(eval_path),
        seed,
    )


def _md_code(value, in_table: bool = False) -> str:
    """``value`` as a Markdown code span that no character of it can end (nor, in a table, its cell)."""
    text = str(value).replace("|", "\\|") if in_table else str(value)
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def markdown(spec: dict, result: TuneResult) -> str:
    """The trials as a Markdown report, best first (every spec value in a code span)."""
    goal = spec["objective"]["goal"]
    metric = _md_code(spec["objective"]["metric"])
    done = [t for t in result.trials if t["value"] is not None]
    done.sort(key=lambda t: t["value"], reverse=goal == "maximize")
    lines = [
        "# Tuning (Optuna)",
        "",
        f"Algorithm {_md_code(spec['algorithm'])}, {len(result.trials)} trials, {spec.get('parallel_trials', 1)} in parallel, "
        f"{result.wall_seconds:.1f} s. Objective: {_md_code(goal)} {metric} on the eval split.",
        "",
        f"**Best {metric} = {result.best_value:.5g}** with {_md_code(result.best_params)}",
        "",
        "| trial | state | value | parameters |",
        "|---:|---|---:|---|",
    ]
    lines += [
        f"| {t['number']} | {t['state']} | {t['value']:.5g} | {_md_code(t['params'], in_table=True)} |"
        for t in done[:20]
    ]
    pruned = sum(t["state"] == "PRUNED" for t in result.trials)
    if pruned:
        lines += ["", f"{pruned} trials pruned early."]
    return "\n".join(lines) + "\n"


def html(spec: dict, result: TuneResult) -> str:
    """An HTML page with the search as a plot: each trial's objective and the best so far (inline SVG).

    Every value that comes from the spec or the trials is HTML-escaped: a search space is
    user input (a pipeline parameter), and categorical values are free text.
    """
    esc = html_lib.escape
    goal, metric = spec["objective"]["goal"], esc(str(spec["objective"]["metric"]))
    points = [
        (t["number"], t["value"])
        for t in sorted(result.trials, key=lambda t: t["number"])
        if t["state"] == "COMPLETE"
    ]
    width, height, pad = 640, 280, 56
    if not points:
        return "<!doctype html><p>No trial completed.</p>"
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x_max, y_lo, y_hi = max(max(xs), 1), min(ys), max(ys)
    y_span = (y_hi - y_lo) or 1.0

    def xy(n, v):
        return pad + (width - 2 * pad) * n / x_max, height - pad - (height - 2 * pad) * (
            v - y_lo
        ) / y_span

    dots = "".join(
        f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="#4a78c2"><title>trial {n}: {v:.5g}</title></circle>'
        for n, v in points
        for x, y in [xy(n, v)]
    )
    best, path = None, []
    for n, v in points:
        best = v if best is None or (v < best if goal == "minimize" else v > best) else best
        x, y = xy(n, best)
        path.append(f"{'M' if not path else 'L'}{x:.1f},{y:.1f}")
    pruned = sum(t["state"] == "PRUNED" for t in result.trials)
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Tuning</title>"
        "<style>body{font-family:system-ui,sans-serif;margin:1.2em} .muted{color:#777}</style></head><body>"
        f"<h1 style='font-size:1.3em'>Tuning: {esc(str(goal))} {metric}</h1>"
        f"<div>Algorithm <b>{esc(str(spec['algorithm']))}</b>, {len(result.trials)} trials ({pruned} pruned), "
        f"{esc(str(spec.get('parallel_trials', 1)))} in parallel, {result.wall_seconds:.1f} s. "
        f"Best <b>{metric} = {result.best_value:.5g}</b> with <code>{esc(str(result.best_params))}</code></div>"
        f"<svg width='{width}' height='{height}' role='img'>"
        f"<line x1='{pad}' y1='{height - pad}' x2='{width - pad}' y2='{height - pad}' stroke='#999'/>"
        f"<line x1='{pad}' y1='{pad}' x2='{pad}' y2='{height - pad}' stroke='#999'/>"
        f"<text x='{pad - 4}' y='{pad + 4}' font-size='11' text-anchor='end'>{y_hi:.5g}</text>"
        f"<text x='{pad - 4}' y='{height - pad + 4}' font-size='11' text-anchor='end'>{y_lo:.5g}</text>"
        f"<text x='{pad}' y='{height - pad + 16}' font-size='11'>trial 0</text>"
        f"<text x='{width - pad}' y='{height - pad + 16}' font-size='11' text-anchor='end'>trial {x_max}</text>"
        f"{dots}<path d='{' '.join(path)}' fill='none' stroke='#e08a2c' stroke-width='2'/></svg>"
        "<div class='muted'>dots: each completed trial's objective on the eval split; line: best so far</div>"
        "</body></html>"
    )
