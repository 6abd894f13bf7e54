"""The evaluation config: what the gate ranks on, its thresholds, the scorecard's weights.

A config is a bundled name (``configs/<name>.json``: ``bikeshare``, ``bikeshare_high_demand``),
a JSON file path, or JSON text (a pipeline parameter). It is laid over the defaults of its
``task`` (below), so JSON text may set only what differs; every key is checked, and an
unknown key (a typo in a gate is a silent hole) or a bad value is an error naming its path.
The README of this component documents every field.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

from components.lib import metrics
from components.lib.specs import load_json

CONFIGS_DIR = Path(__file__).resolve().parent / "configs"
TASKS = ("regression", "classification")
CRITERIA = ("quality", "slices", "robustness", "latency")
GAPS = {
    "regression": ("relative_error",),
    "classification": ("demographic_parity", "equalized_odds"),
}
MCNEMAR = ("require", "report")

_COMMON = {
    "name": "",
    "description": "",
    "slices": {"columns": [], "min_rows": 30, "min_class_rows": 10, "max_values": 50},
    "thresholds": {
        "metrics": {},
        "max_slice_gap": {},
        "min_robustness": 0.5,
        # Far above what a model's predict costs here (~10 ms a row, ~15 ms for 1,000 rows,
        # with p99 spikes past 1 s on two cores loaded by other jobs), so that load cannot
        # cross them: a guard against a pathological model. Tighten for a serving budget.
        "max_latency_p99_ms": {"single_row": 10000.0, "batch": 60000.0},
        "min_score": 0.5,
    },
    "weights": {"quality": 0.55, "slices": 0.15, "robustness": 0.2, "latency": 0.1},
    "latency_budget_ms": {"single_row": 50.0, "batch": 1000.0},
    "comparison": {
        "min_effect": 0.01,
        "min_effect_relative": True,
        "bootstrap_resamples": 1000,
        "alpha": 0.05,
        "mcnemar": "require",
    },
    "robustness": {
        "noise": 0.05,
        "tolerance": 0.1,
        "numeric_columns": None,
        "optional_columns": [],
        "max_rows": 2000,
    },
    "latency": {"single_row_repeats": 100, "batch_rows": 1000, "batch_repeats": 10},
    "importance": {"repeats": 5, "max_rows": 5000},
    "seed": 0,
    # BLAS / OpenMP threads for every predict. One is the fastest here and steady on busy
    # cores (measured on two loaded cores: 1.7 s per evaluation vs 3 to 10 s with two).
    "threads": 1,
}
DEFAULTS = {
    "regression": {
        **copy.deepcopy(_COMMON),
        "task": "regression",
        "primary_metric": "rmse",
        "goal": "minimize",
    },
    "classification": {
        **copy.deepcopy(_COMMON),
        "task": "classification",
        "primary_metric": "f1",
        "goal": "maximize",
    },
}
DEFAULTS["regression"]["thresholds"]["max_slice_gap"] = {"relative_error": 0.5}
DEFAULTS["classification"]["thresholds"]["max_slice_gap"] = {
    "demographic_parity": None,
    "equalized_odds": 0.5,
}
# Keys whose values are free-form mappings (checked by their own rules, not key by key).
_FREE = {("thresholds", "metrics"), ("thresholds", "max_slice_gap")}


class ConfigError(ValueError):
    """A config that cannot be used; the message names the key and the reason."""


def _merge(base: dict, override: dict, path: tuple[str, ...] = ()) -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        where = ".".join((*path, key))
        if key not in base:
            raise ConfigError(
                f"evaluation config: unknown key {where!r}; known here: {', '.join(sorted(base))}"
            )
        if isinstance(base[key], dict) and (*path, key) not in _FREE:
            if not isinstance(value, dict):
                raise ConfigError(f"evaluation config: {where} must be an object")
            out[key] = _merge(base[key], value, (*path, key))
        else:
            out[key] = copy.deepcopy(value)
    return out


def _number(value, where: str, low: float | None = None, high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"evaluation config: {where} must be a number (got {value!r})")
    if (low is not None and value < low) or (high is not None and value > high):
        span = f"[{'-inf' if low is None else low}, {'inf' if high is None else high}]"
        raise ConfigError(f"evaluation config: {where} = {value!r} is outside {span}")
    return float(value)


def _integer(value, where: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"evaluation config: {where} must be an integer >= {low} (got {value!r})")
    return value


def _columns(value, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(c, str) and c for c in value):
        raise ConfigError(f"evaluation config: {where} must be a list of column names")
    return value


def validate(config: dict) -> dict:
    """Checks every value of a merged config; returns it."""
    task = config["task"]
    ranked = metrics.GREATER_IS_BETTER[task]
    primary = config["primary_metric"]
    if primary not in ranked:
        raise ConfigError(
            f"evaluation config: primary_metric {primary!r} is not a {task} metric; "
            f"known: {', '.join(ranked)}"
        )
    goal = "maximize" if ranked[primary] else "minimize"
    if config["goal"] != goal:
        raise ConfigError(
            f"evaluation config: goal {config['goal']!r} contradicts primary_metric {primary!r}, "
            f"which is better when {'larger' if ranked[primary] else 'smaller'} (goal {goal!r})"
        )
    slices = config["slices"]
    _columns(slices["columns"], "slices.columns")
    for key in ("min_rows", "min_class_rows", "max_values"):
        _integer(slices[key], f"slices.{key}", 1)

    thresholds = config["thresholds"]
    if not isinstance(thresholds["metrics"], dict):
        raise ConfigError("evaluation config: thresholds.metrics must be an object")
    for name, bound in thresholds["metrics"].items():
        where = f"thresholds.metrics.{name}"
        if name not in metrics.names(task):
            raise ConfigError(
                f"evaluation config: {where}: {name!r} is not a {task} metric; "
                f"known: {', '.join(metrics.names(task))}"
            )
        if not isinstance(bound, dict) or not bound or set(bound) - {"min", "max"}:
            raise ConfigError(
                f'evaluation config: {where} must be {{"min": x}}, {{"max": x}} or both'
            )
        for side, value in bound.items():
            _number(value, f"{where}.{side}")
    gaps = thresholds["max_slice_gap"]
    if not isinstance(gaps, dict):
        raise ConfigError("evaluation config: thresholds.max_slice_gap must be an object")
    for name, limit in gaps.items():
        if name not in GAPS[task]:
            raise ConfigError(
                f"evaluation config: thresholds.max_slice_gap.{name}: not a {task} slice gap; "
                f"known: {', '.join(GAPS[task])}"
            )
        if limit is not None:
            _number(limit, f"thresholds.max_slice_gap.{name}", 0.0)
    for name in GAPS[task]:
        gaps.setdefault(name, None)
    _number(thresholds["min_robustness"], "thresholds.min_robustness", 0.0, 1.0)
    _number(thresholds["min_score"], "thresholds.min_score", 0.0, 1.0)
    for key in ("single_row", "batch"):
        _number(thresholds["max_latency_p99_ms"][key], f"thresholds.max_latency_p99_ms.{key}", 0.0)
        _number(config["latency_budget_ms"][key], f"latency_budget_ms.{key}", 1e-6)

    weights = config["weights"]
    for key in CRITERIA:
        _number(weights[key], f"weights.{key}", 0.0)
    if sum(weights.values()) <= 0:
        raise ConfigError("evaluation config: weights must not all be 0")

    comparison = config["comparison"]
    _number(comparison["min_effect"], "comparison.min_effect", 0.0)
    if not isinstance(comparison["min_effect_relative"], bool):
        raise ConfigError("evaluation config: comparison.min_effect_relative must be true or false")
    _integer(comparison["bootstrap_resamples"], "comparison.bootstrap_resamples", 100)
    _number(comparison["alpha"], "comparison.alpha", 1e-6, 0.5)
    if comparison["mcnemar"] not in MCNEMAR:
        raise ConfigError(
            f"evaluation config: comparison.mcnemar {comparison['mcnemar']!r} is not one of "
            f"{', '.join(MCNEMAR)}"
        )

    robustness = config["robustness"]
    _number(robustness["noise"], "robustness.noise", 0.0)
    _number(robustness["tolerance"], "robustness.tolerance", 1e-9)
    if robustness["numeric_columns"] is not None:
        _columns(robustness["numeric_columns"], "robustness.numeric_columns")
    _columns(robustness["optional_columns"], "robustness.optional_columns")
    _integer(robustness["max_rows"], "robustness.max_rows", 10)
    for key in ("single_row_repeats", "batch_rows", "batch_repeats"):
        _integer(config["latency"][key], f"latency.{key}", 1)
    _integer(config["importance"]["repeats"], "importance.repeats", 1)
    _integer(config["importance"]["max_rows"], "importance.max_rows", 10)
    _integer(config["seed"], "seed", 0)
    _integer(config["threads"], "threads", 1)
    return config


def load(ref: str) -> dict:
    """The config ``ref`` names (bundled name, path or JSON text), over its task's defaults."""
    raw = load_json(ref or "bikeshare", CONFIGS_DIR, "evaluation config", ConfigError)
    if not isinstance(raw, dict):
        raise ConfigError("evaluation config must be a JSON object")
    task = raw.get("task")
    if task not in TASKS:
        raise ConfigError(
            f"evaluation config: task {task!r} is not one of {', '.join(TASKS)} (the key is required)"
        )
    base = DEFAULTS[task]
    if "primary_metric" in raw and "goal" not in raw:
        # The goal follows the metric unless it is given (and then it must agree).
        raw = {
            **raw,
            "goal": "maximize"
            if metrics.GREATER_IS_BETTER[task].get(raw["primary_metric"], True)
            else "minimize",
        }
    return validate(_merge(base, raw))


def dumps(config: dict) -> str:
    return json.dumps(config, sort_keys=True)
