"""Recipe names to Optuna samplers and pruners."""

from __future__ import annotations

import optuna

from automl.recipe import Recipe
from automl.search.space import SearchSpace


def make_sampler(recipe: Recipe, space: SearchSpace, worker_index: int = 0) -> optuna.samplers.BaseSampler:
    seed = recipe.training.seed + 1000 * worker_index
    name = recipe.search.sampler
    trials = recipe.search.trials
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "grid":
        return optuna.samplers.GridSampler(space.grid(), seed=seed)
    startup = max(3, min(10, trials // 3))
    if name == "cmaes":
        # CMA-ES handles the continuous dimensions; categoricals fall back to random.
        return optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=startup, warn_independent_sampling=False)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup, warn_independent_sampling=False)
    # TPE, multivariate and grouped so conditional spaces (LoRA-only parameters) work;
    # constant liar keeps parallel workers from sampling the same point.
    return optuna.samplers.TPESampler(
        seed=seed,
        n_startup_trials=startup,
        multivariate=True,
        group=True,
        constant_liar=True,
    )


def make_pruner(recipe: Recipe) -> optuna.pruners.BasePruner:
    name = recipe.search.pruner
    if name == "none":
        return optuna.pruners.NopPruner()
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    if name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    return optuna.pruners.HyperbandPruner(min_resource=1, reduction_factor=3)
