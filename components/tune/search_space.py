"""One search-space spec for both tuning backends (Optuna locally, Katib on a cluster).

Spec (JSON), in Katib's vocabulary::

    {"objective": {"metric": "rmse", "goal": "minimize"},
     "algorithm": "tpe",  # random tpe multivariate-tpe cmaes grid sobol bayesianoptimization hyperband
     "max_trials": 30, "parallel_trials": 2, "max_failed_trials": 3,
     "early_stopping": {"algorithm": "medianstop", "min_trials_required": 3, "start_step": 1},
     "model_type": "gradient_boosting",
     "parameters": [
        {"name": "learning_rate", "type": "double", "min": 0.01, "max": 0.3, "log": true},
        {"name": "max_leaf_nodes", "type": "int", "min": 8, "max": 64},
        {"name": "loss", "type": "categorical", "values": ["squared_error", "poisson"]}]}

Every rule is checked before any trial runs; the message names the field.
"""

from __future__ import annotations

import math
from pathlib import Path

from components.lib.specs import load_json
from components.tune import katib_values

SPECS_DIR = Path(__file__).resolve().parent / "specs"
ALGORITHMS = (
    "random",
    "tpe",
    "multivariate-tpe",
    "cmaes",
    "grid",
    "sobol",
    "bayesianoptimization",
    "hyperband",
)
EARLY_STOPPING = ("medianstop",)
TYPES = ("int", "double", "categorical", "discrete")
GOALS = ("minimize", "maximize")


class SearchSpaceError(ValueError):
    """A search-space spec that cannot run; the message names the field."""


def load(name_or_path: str) -> dict:
    """Loads a spec by bundled name, JSON path or JSON text, and validates it."""
    spec = load_json(name_or_path, SPECS_DIR, "search space", SearchSpaceError)
    validate(spec)
    return spec


def _number(value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise SearchSpaceError(f"{where} must be a finite number, got {value!r}")
    return value


def validate(spec: dict) -> None:
    """Raises SearchSpaceError on the first broken rule."""
    objective = spec.get("objective") or {}
    if not objective.get("metric"):
        raise SearchSpaceError("objective.metric is required")
    if objective.get("goal") not in GOALS:
        raise SearchSpaceError(
            f"objective.goal {objective.get('goal')!r} is not one of {', '.join(GOALS)}"
        )
    algorithm = spec.get("algorithm")
    if algorithm not in ALGORITHMS:
        raise SearchSpaceError(
            f"algorithm {algorithm!r} is not supported; use one of {', '.join(ALGORITHMS)}"
        )
    max_trials, parallel = spec.get("max_trials"), spec.get("parallel_trials", 1)
    for name, value in (("max_trials", max_trials), ("parallel_trials", parallel)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise SearchSpaceError(f"{name} must be a positive integer, got {value!r}")
    if max_trials < parallel:
        raise SearchSpaceError(f"max_trials ({max_trials}) is below parallel_trials ({parallel})")
    failed = spec.get("max_failed_trials", 0)
    if not isinstance(failed, int) or failed < 0:
        raise SearchSpaceError(f"max_failed_trials must be an integer >= 0, got {failed!r}")
    stopping = spec.get("early_stopping")
    if stopping and stopping.get("algorithm") not in EARLY_STOPPING:
        raise SearchSpaceError(
            f"early_stopping.algorithm {stopping.get('algorithm')!r} is not one of {', '.join(EARLY_STOPPING)}"
        )
    params = spec.get("parameters") or []
    if not params:
        raise SearchSpaceError("parameters is empty: nothing to tune")
    names = [p.get("name") for p in params]
    if len(set(names)) != len(names) or not all(names):
        raise SearchSpaceError(f"parameter names must be present and unique, got {names}")
    for p in params:
        where = f"parameter {p['name']!r}"
        if p.get("type") not in TYPES:
            raise SearchSpaceError(
                f"{where}: type {p.get('type')!r} is not one of {', '.join(TYPES)}"
            )
        if p["type"] in ("int", "double"):
            lo, hi = _number(p.get("min"), f"{where}: min"), _number(p.get("max"), f"{where}: max")
            if lo >= hi:
                raise SearchSpaceError(f"{where}: empty range, min {lo} >= max {hi}")
            if p["type"] == "int" and not (float(lo).is_integer() and float(hi).is_integer()):
                raise SearchSpaceError(f"{where}: an int range needs integer bounds")
            if p.get("log") and lo <= 0:
                raise SearchSpaceError(f"{where}: a log scale needs min > 0, got {lo}")
            if "step" in p and _number(p["step"], f"{where}: step") <= 0:
                raise SearchSpaceError(f"{where}: step must be > 0")
        else:
            values = p.get("values") or []
            if not values:
                raise SearchSpaceError(f"{where}: empty list of values")
            for v in values:
                if p["type"] == "discrete":
                    _number(v, f"{where}: value")
                back = katib_values.parse(str(v))
                if back != v or type(back) is not type(v):
                    raise SearchSpaceError(
                        f"{where}: value {v!r} would come back from Katib's text as {back!r}"
                    )
        if algorithm == "grid" and p["type"] == "double" and "step" not in p:
            raise SearchSpaceError(
                f"{where}: the grid algorithm needs a step for a double parameter"
            )
