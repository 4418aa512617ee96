"""Recipe names to Optuna samplers and pruners, and the evaluation plan the pruner's
resources come from."""

from __future__ import annotations

import math
from dataclasses import dataclass

import optuna
from optuna.distributions import CategoricalDistribution

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


@dataclass(frozen=True)
class EvalPlan:
    """Where trials are evaluated (``training.eval_every: auto``) and what that gives the
    pruner: evaluation k of every trial comes after about k x *examples* training examples,
    so the k-th reports of two trials are comparable whatever their batch sizes.

    Attributes:
        examples: training examples between evaluations.
        min_resource: evaluations of the shortest trial in the space before pruning may
            act (``search.prune_after`` of its steps).
        max_resource: evaluations of the longest trial in the space.
    """

    examples: int
    min_resource: int
    max_resource: int


#: Evaluations the shortest trial in the space gets, where evaluation is cheap enough.
EVALS_PER_SHORTEST_TRIAL = 4
#: Evaluate at most every this many validation sets' worth of training examples (an
#: evaluation example costs about half a training example: this keeps evaluation near a
#: quarter of the compute at most).
MIN_TRAIN_PER_VALIDATION = 2


def _bounds(space: SearchSpace, name: str) -> tuple[float, float] | None:
    if name in space.fixed:
        return float(space.fixed[name]), float(space.fixed[name])
    lows, highs = [], []
    for dim in space.dimensions:
        if dim.name != name:
            continue
        d = dim.distribution
        if isinstance(d, CategoricalDistribution):
            values = [float(v) for v in d.choices]  # type: ignore[arg-type]
            lows.append(min(values))
            highs.append(max(values))
        else:
            lows.append(float(d.low))  # type: ignore[attr-defined]
            highs.append(float(d.high))  # type: ignore[attr-defined]
    return (min(lows), max(highs)) if lows else None


def plan_evaluations(recipe: Recipe, space: SearchSpace, n_train: int, n_validation: int) -> EvalPlan | None:
    """The evaluation plan for ``eval_every: auto``; None for ``epoch`` or a step count
    (the pruner then learns the resources from the first finished trial)."""
    if recipe.training.eval_every != "auto" or n_train <= 0:
        return None
    batch = _bounds(space, "batch_size") or (32.0, 32.0)
    steps = _bounds(space, "max_steps")
    epochs = _bounds(space, "epochs") or (1.0, 1.0)
    if steps is not None:
        shortest, longest = steps[0] * batch[0], steps[1] * batch[1]
    else:
        shortest, longest = epochs[0] * n_train, epochs[1] * n_train
    every = max(math.ceil(shortest / EVALS_PER_SHORTEST_TRIAL), MIN_TRAIN_PER_VALIDATION * n_validation)
    every = max(1, min(n_train, every))

    def evaluations(examples: float, batch_size: float) -> int:
        steps_per_epoch = math.ceil(n_train / batch_size)
        interval = max(1, min(steps_per_epoch, math.ceil(every / batch_size)))  # as TrialEngine.eval_interval
        return max(1, math.ceil(math.ceil(examples / batch_size) / interval))

    fewest = min(evaluations(shortest, b) for b in batch)
    most = max(evaluations(longest, b) for b in batch)
    low = max(1, math.ceil(recipe.search.prune_after * fewest))
    return EvalPlan(examples=every, min_resource=low, max_resource=max(most, low))


def make_pruner(recipe: Recipe, plan: EvalPlan | None = None) -> optuna.pruners.BasePruner:
    """The recipe's pruner; with a *plan*, its resources are evaluation counts from it."""
    name = recipe.search.pruner
    low = plan.min_resource if plan else 1
    if name == "none":
        return optuna.pruners.NopPruner()
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=low - 1)
    if name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=low, reduction_factor=3)
    if plan is None:
        return optuna.pruners.HyperbandPruner(min_resource=1, reduction_factor=3)
    return optuna.pruners.HyperbandPruner(min_resource=low, max_resource=max(plan.max_resource, low + 1), reduction_factor=3)
