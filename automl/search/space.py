"""The recipe's search space as Optuna distributions, with conditional parameters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from automl.errors import RecipeError, did_you_mean
from automl.recipe import ENGINE_HYPERPARAMETERS, ParamSpec, Scalar, SpaceEntry


@dataclass(frozen=True)
class Dimension:
    """One searched parameter: its distribution and the condition under which it exists."""

    name: str
    distribution: BaseDistribution
    when: dict[str, tuple[Scalar, ...]]


@dataclass(frozen=True)
class SearchSpace:
    """Fixed values plus searched dimensions, in an order where conditions come first."""

    fixed: dict[str, Any]
    dimensions: tuple[Dimension, ...]

    def sample(self, trial: optuna.Trial) -> dict[str, Any]:
        """Suggest every active parameter; conditional ones only when their condition holds."""
        params = dict(self.fixed)
        for dim in self.dimensions:
            if not _active(dim.when, params):
                continue
            params[dim.name] = _suggest(trial, dim)
        return params

    def grid(self) -> dict[str, list[Any]]:
        """Values for Optuna's GridSampler (categorical and stepped int dimensions only)."""
        out: dict[str, list[Any]] = {}
        for dim in self.dimensions:
            d = dim.distribution
            if isinstance(d, CategoricalDistribution):
                out[dim.name] = list(d.choices)
            elif isinstance(d, IntDistribution) and not d.log:
                out[dim.name] = list(range(int(d.low), int(d.high) + 1, int(d.step or 1)))
            else:
                raise RecipeError(
                    "the grid sampler needs categorical or int parameters; give "
                    f"'{dim.name}' a list of choices",
                    field=f"search.space.{dim.name}",
                )
        return out

    def names(self) -> list[str]:
        return list(self.fixed) + [d.name for d in self.dimensions]


def _active(when: dict[str, tuple[Scalar, ...]], params: dict[str, Any]) -> bool:
    return all(params.get(key) in values for key, values in when.items())


def _suggest(trial: optuna.Trial, dim: Dimension) -> Any:
    d = dim.distribution
    if isinstance(d, FloatDistribution):
        return trial.suggest_float(dim.name, d.low, d.high, log=d.log, step=d.step)
    if isinstance(d, IntDistribution):
        return trial.suggest_int(dim.name, int(d.low), int(d.high), log=d.log, step=int(d.step or 1))
    assert isinstance(d, CategoricalDistribution)
    return trial.suggest_categorical(dim.name, d.choices)


def _distribution(name: str, spec: ParamSpec) -> BaseDistribution:
    if spec.type == "categorical":
        assert spec.choices is not None
        return CategoricalDistribution(tuple(spec.choices))
    assert spec.low is not None and spec.high is not None
    if spec.type == "int":
        return IntDistribution(int(spec.low), int(spec.high), log=spec.log, step=int(spec.step or 1))
    return FloatDistribution(float(spec.low), float(spec.high), log=spec.log, step=spec.step)


def _possible(spec: ParamSpec) -> tuple[Scalar, ...] | tuple[float, float]:
    return tuple(spec.choices or ()) if spec.type == "categorical" else (spec.low, spec.high)  # type: ignore[return-value]


def _check_condition(
    name: str,
    when: dict[str, tuple[Scalar, ...]],
    fixed: dict[str, Any],
    searched: dict[str, ParamSpec],
    file: str | None,
) -> None:
    """Refuse a recipe's condition that can never hold: a value the named parameter never
    takes (not among its choices, outside its range, or not its fixed value)."""
    for key, values in when.items():
        field = f"search.space.{name}.when.{key}"
        if key in fixed:
            possible: tuple[Any, ...] = tuple(fixed[key]) if isinstance(fixed[key], list) else (fixed[key],)
            if not any(v in possible for v in values):
                raise RecipeError(
                    f"the condition {key} = {_shown(values)} can never hold: {key} is fixed to {fixed[key]!r}, "
                    f"so '{name}' would never be sampled",
                    file=file,
                    field=field,
                )
            continue
        spec = searched[key]
        if spec.type == "categorical":
            choices = tuple(spec.choices or ())
            if not any(v in choices for v in values):
                hint = did_you_mean(str(values[0]), [str(c) for c in choices])
                raise RecipeError(
                    f"the condition {key} = {_shown(values)} can never hold: {key} takes "
                    f"{', '.join(map(repr, choices))}{hint}",
                    file=file,
                    field=field,
                )
        else:
            low, high = _possible(spec)
            if not any(isinstance(v, int | float) and not isinstance(v, bool) and low <= v <= high for v in values):
                raise RecipeError(
                    f"the condition {key} = {_shown(values)} can never hold: {key} ranges over {low:g} to {high:g}",
                    file=file,
                    field=field,
                )


def _shown(values: tuple[Scalar, ...]) -> str:
    return repr(values[0]) if len(values) == 1 else "[" + ", ".join(map(repr, values)) + "]"


def build_space(
    recipe_space: dict[str, SpaceEntry],
    default_space: dict[str, SpaceEntry],
    *,
    extra_names: dict[str, str] | None = None,
    file: str | None = None,
) -> SearchSpace:
    """Merge the recipe's space over the task's default and check every name and condition."""
    known = dict(ENGINE_HYPERPARAMETERS)
    known.update(extra_names or {})
    merged: dict[str, SpaceEntry] = dict(default_space)
    for name in recipe_space:
        if name not in known:
            raise RecipeError(
                f"unknown hyperparameter{did_you_mean(name, known)}; known: {', '.join(sorted(known))}",
                file=file,
                field=f"search.space.{name}",
            )
    merged.update(recipe_space)

    fixed: dict[str, Any] = {}
    searched: dict[str, ParamSpec] = {}
    for name, entry in merged.items():
        if isinstance(entry, ParamSpec):
            searched[name] = entry
        elif isinstance(entry, list):
            if not entry:
                raise RecipeError(
                    "an empty list of choices; give one value or a list of values to search",
                    file=file,
                    field=f"search.space.{name}",
                )
            if len(entry) == 1:
                fixed[name] = entry[0]
            elif name == "lora_target_modules":
                fixed[name] = list(entry)
            else:
                searched[name] = ParamSpec(choices=entry)
        else:
            fixed[name] = entry

    # Order: a parameter comes after those its condition names.
    ordered: list[Dimension] = []
    placed: set[str] = set(fixed)
    pending = dict(searched)
    while pending:
        progressed = False
        for name, spec in list(pending.items()):
            when = {k: tuple(v) if isinstance(v, list) else (v,) for k, v in (spec.when or {}).items()}
            for key in when:
                if key not in merged:
                    raise RecipeError(
                        f"condition names '{key}', which is not in the search space{did_you_mean(key, merged)}",
                        file=file,
                        field=f"search.space.{name}.when",
                    )
            if all(k in placed for k in when):
                if name in recipe_space:
                    _check_condition(name, when, fixed, searched, file)
                try:
                    distribution = _distribution(name, spec)
                except ValueError as exc:  # e.g. a step that does not fit the range
                    raise RecipeError(str(exc).splitlines()[0], file=file, field=f"search.space.{name}") from None
                ordered.append(Dimension(name, distribution, when))
                placed.add(name)
                del pending[name]
                progressed = True
        if not progressed:
            raise RecipeError(
                "conditions form a cycle: " + ", ".join(sorted(pending)), file=file, field="search.space"
            )
    # A dimension whose condition names a fixed value it can never match is never sampled
    # (e.g. LoRA settings when the recipe fixes adapter: full).
    ordered = [d for d in ordered if all(fixed[k] in v for k, v in d.when.items() if k in fixed)]
    return SearchSpace(fixed=fixed, dimensions=tuple(ordered))
