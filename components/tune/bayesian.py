"""Katib's ``bayesianoptimization`` for the Optuna backend.

Katib's suggestion service for this algorithm asks a scikit-optimize ``Optimizer`` with a
Gaussian-process base estimator (defaults: ``n_initial_points=10``, ``acq_func="gp_hedge"``).
This Optuna sampler does the same: it tells the optimizer every completed trial and asks
it for the next point. Optuna's own ``GPSampler`` would need PyTorch, which the pipeline
image does not carry.
"""

from __future__ import annotations

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.search_space import IntersectionSearchSpace
from optuna.trial import TrialState


class BayesianOptimizationSampler(BaseSampler):
    """Gaussian-process Bayesian optimisation through ``skopt.Optimizer``, as Katib runs it."""

    def __init__(self, seed: int = 0, n_initial_points: int = 10, acq_func: str = "gp_hedge"):
        self._seed = seed
        self._n_initial_points = n_initial_points
        self._acq_func = acq_func
        self._space = IntersectionSearchSpace()
        self._fallback = RandomSampler(seed=seed)

    def reseed_rng(self) -> None:
        self._fallback.reseed_rng()
        self._seed = int(np.random.SeedSequence().generate_state(1)[0])

    def infer_relative_search_space(self, study, trial):
        return {
            name: dist
            for name, dist in self._space.calculate(study).items()
            if not (isinstance(dist, CategoricalDistribution) and len(dist.choices) < 2)
            and not dist.single()
        }

    def sample_relative(self, study, trial, search_space):
        if not search_space:
            return {}
        from skopt import Optimizer
        from skopt.space import Categorical, Integer, Real

        names = sorted(search_space)
        dims = []
        for name in names:
            dist = search_space[name]
            prior = "log-uniform" if getattr(dist, "log", False) else "uniform"
            if isinstance(dist, FloatDistribution):
                dims.append(Real(dist.low, dist.high, prior=prior))
            elif isinstance(dist, IntDistribution):
                dims.append(Integer(dist.low, dist.high, prior=prior))
            else:
                dims.append(Categorical(list(dist.choices)))
        done = [
            t
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if set(names) <= set(t.params)
        ]
        optimizer = Optimizer(
            dims,
            base_estimator="GP",
            n_initial_points=self._n_initial_points,
            acq_func=self._acq_func,
            random_state=self._seed + len(done),
        )
        sign = 1.0 if study.direction == optuna.study.StudyDirection.MINIMIZE else -1.0
        if done:
            optimizer.tell(
                [[t.params[n] for n in names] for t in done], [sign * t.value for t in done]
            )
        point = optimizer.ask()
        return {
            name: _snap(search_space[name], value) for name, value in zip(names, point, strict=True)
        }

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self._fallback.sample_independent(study, trial, param_name, param_distribution)


def _snap(dist, value):
    """Back to a plain Python value on the distribution's grid (skopt knows no steps)."""
    if isinstance(dist, CategoricalDistribution):
        return next(c for c in dist.choices if c == value or str(c) == str(value))
    value = float(value)
    step = getattr(dist, "step", None)
    if step:
        value = dist.low + round((value - dist.low) / step) * step
        value = min(max(value, dist.low), dist.high)
    return int(round(value)) if isinstance(dist, IntDistribution) else value
