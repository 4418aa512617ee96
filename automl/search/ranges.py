"""What values each hyperparameter accepts, checked before a run trains anything.

A :class:`Range` says what a parameter can take (whole numbers, bounds, a set of names, or
a probe that asks the library that will use the value) and, optionally, a *plausible*
span outside of which a value is allowed but warned about. The engine's parameters have
ranges here; adapters (:attr:`automl.adapters.Adapter.ranges`) and tasks
(:attr:`automl.task.Task.hyperparameter_ranges`) declare their own, so the check stays
generic: a new adapter or task parameter is validated as soon as it is registered.

Every value a parameter can take is checked: each fixed value, each categorical choice
and both ends of a numeric range.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from automl.adapters import ADAPTERS
from automl.errors import RecipeError
from automl.params import POSITIVE_INT, PROBABILITY, Range  # noqa: F401  (imported from here too)

if TYPE_CHECKING:
    from automl.search.space import SearchSpace
    from automl.task import Task


def adapter_names() -> list[str]:
    return list(ADAPTERS)


def plausible_learning_rates() -> tuple[float, float]:
    """A hundred times below the lowest and above the highest default learning rate of any
    registered adapter."""
    lows = [a.learning_rate[0] for a in ADAPTERS.values()] or [1e-5]
    highs = [a.learning_rate[1] for a in ADAPTERS.values()] or [1e-3]
    return min(lows) / 100, max(highs) * 100


@functools.lru_cache(maxsize=64)
def probe_scheduler(name: str) -> str | None:
    """Build the schedule the engine would build and step it once."""
    import torch
    from transformers import get_scheduler

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    try:
        schedule = get_scheduler(name, optimizer=optimizer, num_warmup_steps=1, num_training_steps=10)
        optimizer.step()
        schedule.step()
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"the trial engine cannot use schedule {name!r} ({first[:120]}); use linear, cosine or constant"
    return None


def engine_ranges() -> dict[str, Range]:
    """Ranges of the engine's own hyperparameters (``ENGINE_HYPERPARAMETERS``)."""
    return {
        "learning_rate": Range("float", low=0, low_open=True, plausible=plausible_learning_rates()),
        "batch_size": POSITIVE_INT,
        "epochs": Range("float", low=0, low_open=True, plausible=(0.01, 1000)),
        "max_steps": POSITIVE_INT,
        "weight_decay": Range("float", low=0, plausible=(0, 1)),
        "warmup_ratio": PROBABILITY,
        "scheduler": Range("name", probe=probe_scheduler),
        "adapter": Range("name", choices=adapter_names),
        "lora_target_modules": Range("any"),
        "max_grad_norm": Range("float", low=0, low_open=True, plausible=(1e-3, 100)),
    }


def hyperparameter_ranges(task: Task | type[Task] | None = None) -> dict[str, Range]:
    """Every known range: the engine's, each registered adapter's, the task's."""
    ranges = engine_ranges()
    for adapter in ADAPTERS.values():
        ranges.update(getattr(adapter, "ranges", {}) or {})
    if task is not None:
        ranges.update(getattr(task, "hyperparameter_ranges", {}) or {})
    return ranges


def _values(space: SearchSpace, name: str) -> list[Any]:
    """Every value *name* can take: the fixed value, the choices, or a range's two ends."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if name in space.fixed:
        value = space.fixed[name]
        return list(value) if isinstance(value, list) and name != "lora_target_modules" else [value]
    values: list[Any] = []
    for dim in space.dimensions:  # a parameter may have several ranges (one per adapter)
        if dim.name == name:
            d = dim.distribution
            if isinstance(d, CategoricalDistribution):
                values += list(d.choices)
            elif isinstance(d, IntDistribution | FloatDistribution):
                values += [d.low, d.high] if d.low != d.high else [d.low]
    return values


def check_space(space: SearchSpace, ranges: dict[str, Range], *, file: str | None = None) -> list[str]:
    """Refuse (:class:`RecipeError`, the first problem) any value a parameter of *space*
    can take that its range does not accept; return warnings for implausible values."""
    from optuna.distributions import FloatDistribution

    warnings: list[str] = []
    for name in dict.fromkeys(space.names()):
        spec = ranges.get(name)
        if spec is None:
            continue
        floats = [d for d in space.dimensions if d.name == name and isinstance(d.distribution, FloatDistribution)]
        if spec.kind == "int" and floats:
            d = floats[0].distribution
            raise RecipeError(
                f"expected {spec.describe()}; the range {d.low:g} to {d.high:g} would sample fractions "
                "(give whole-number bounds or a list of choices)",
                file=file,
                field=f"search.space.{name}",
            )
        for value in _values(space, name):
            why = spec.refuse(value)
            if why is not None:
                raise RecipeError(why, file=file, field=f"search.space.{name}")
            if spec.implausible(value):
                low, high = spec.plausible or (0, 0)
                warnings.append(
                    f"search.space.{name}: {value!r} is outside the plausible range {low:g} to {high:g}; "
                    "trials will likely fail or learn nothing"
                )
    return warnings
