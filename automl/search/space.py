"""The recipe's search space as Optuna distributions, with conditional parameters.

A parameter may have *variants*: one range per condition, e.g. a learning rate for each
adapter (``learning_rate: [{low: ..., when: {adapter: full}}, {low: ..., when: {adapter:
lora}}]``). Each variant is its own Optuna parameter (``learning_rate[lora]``), so the
sampler models each range on its own; trials, leaderboards and exports show the plain name
(:func:`user_params`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from automl.adapters import ADAPTERS, quantization_problem
from automl.errors import RecipeError, did_you_mean
from automl.recipe import ENGINE_HYPERPARAMETERS, ParamSpec, Scalar, SpaceEntry

if TYPE_CHECKING:
    from automl.backbone import Backbone
    from automl.task import Task

_VARIANT = re.compile(r"\[[^\]]*\]$")


def user_params(optuna_params: dict[str, Any]) -> dict[str, Any]:
    """A trial's parameters under the names recipes use (``learning_rate[lora]`` ->
    ``learning_rate``)."""
    return {_VARIANT.sub("", key): value for key, value in optuna_params.items()}


@dataclass(frozen=True)
class Dimension:
    """One searched parameter: its distribution and the condition under which it exists."""

    name: str
    distribution: BaseDistribution
    when: dict[str, tuple[Scalar, ...]]
    #: The Optuna parameter name: *name*, or ``name[variant]`` when *name* has variants.
    key: str = ""

    @property
    def param(self) -> str:
        return self.key or self.name

    def describe(self) -> str:
        d = self.distribution
        if isinstance(d, CategoricalDistribution):
            text = "one of " + ", ".join(map(str, d.choices))
        else:
            kind = "log-uniform" if d.log else ("integer" if isinstance(d, IntDistribution) else "uniform")
            text = f"{kind} [{d.low:g}, {d.high:g}]"  # type: ignore[attr-defined]
        cond = ", ".join(f"{k}={'/'.join(map(str, v))}" for k, v in self.when.items())
        return f"{self.name}: {text}" + (f"  (when {cond})" if cond else "")


@dataclass(frozen=True)
class SearchSpace:
    """Fixed values plus searched dimensions, in an order where conditions come first."""

    fixed: dict[str, Any]
    dimensions: tuple[Dimension, ...]

    def sample(self, trial: optuna.Trial) -> dict[str, Any]:
        """Suggest every active parameter; conditional ones only when their condition holds."""
        params = dict(self.fixed)
        for dim in self.dimensions:
            if _active(dim.when, params):
                params[dim.name] = _suggest(trial, dim)
        return params

    def active(self, params: dict[str, Any]) -> list[Dimension]:
        """The dimensions a trial with (at least) these values samples, in order."""
        values = {**params, **self.fixed}
        return [d for d in self.dimensions if _active(d.when, values)]

    def complete(self, partial: dict[str, Any], *, clip: bool) -> dict[str, Any]:
        """*partial* with every other active dimension at the middle of its range (the
        middle choice, or the first of two, for a categorical one). Values outside a range are clipped into it with
        *clip*, else a ``ValueError`` names them."""
        params = dict(partial)
        # In the space's order (a condition's parameter comes first), so that a value the
        # completion gives (e.g. the adapter) decides which conditional ranges apply.
        used: set[str] = set()
        for dim in self.dimensions:
            if not _active(dim.when, {**params, **self.fixed}):
                continue
            used.add(dim.name)
            if dim.name in params:
                params[dim.name] = _inside(dim, params[dim.name], clip=clip)
            else:
                params[dim.name] = _middle(dim.distribution)
        unused = [name for name in partial if name not in used and name not in self.fixed]
        if unused and not clip:
            name = unused[0]
            conditions = [d.when for d in self.dimensions if d.name == name and d.when]
            shown = " or ".join(", ".join(f"{k}={'/'.join(map(str, v))}" for k, v in w.items()) for w in conditions)
            values = ", ".join(f"{k}={params.get(k, self.fixed.get(k))!r}" for w in conditions[:1] for k in w)
            raise ValueError(f"{name} is searched only when {shown}, and this configuration has {values}")
        return params

    def optuna_params(self, params: dict[str, Any]) -> dict[str, Any]:
        """Values for ``study.enqueue_trial``: active dimensions under their Optuna names."""
        return {d.param: params[d.name] for d in self.active(params) if d.name in params}

    def grid(self) -> dict[str, list[Any]]:
        """Values for Optuna's GridSampler (categorical and stepped int dimensions only)."""
        out: dict[str, list[Any]] = {}
        for dim in self.dimensions:
            d = dim.distribution
            # Under the names trials ask for (batch_size[head] where each adapter has its own).
            if isinstance(d, CategoricalDistribution):
                out[dim.param] = list(d.choices)
            elif isinstance(d, IntDistribution) and not d.log:
                out[dim.param] = list(range(int(d.low), int(d.high) + 1, int(d.step or 1)))
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


def _middle(d: BaseDistribution) -> Any:
    if isinstance(d, CategoricalDistribution):
        return d.choices[(len(d.choices) - 1) // 2]
    assert isinstance(d, FloatDistribution | IntDistribution)
    mid = math.sqrt(d.low * d.high) if d.log else (d.low + d.high) / 2
    if isinstance(d, IntDistribution):
        step = int(d.step or 1)
        return int(d.low + step * math.ceil((mid - d.low) / step - 1e-9))
    if d.step:
        return float(d.low + d.step * round((mid - d.low) / d.step))
    return float(f"{mid:.3g}")


def _inside(dim: Dimension, value: Any, *, clip: bool) -> Any:
    d = dim.distribution
    if isinstance(d, CategoricalDistribution):
        if value in d.choices:
            return value
        if clip:
            return d.choices[0]
        raise ValueError(f"{dim.name}={value!r} is not one of {list(d.choices)}")
    assert isinstance(d, FloatDistribution | IntDistribution)
    if isinstance(value, str):  # YAML reads 1e-3 (no dot) as a string
        try:
            value = float(value)
        except ValueError:
            raise ValueError(f"{dim.name}={value!r} is not a number") from None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{dim.name}={value!r} is not a number")
    if not clip and isinstance(d, IntDistribution) and not float(value).is_integer():
        raise ValueError(f"{dim.name}={value!r} is not a whole number")
    if d.low <= value <= d.high:
        return int(value) if isinstance(d, IntDistribution) else float(value)
    if not clip:
        raise ValueError(f"{dim.name}={value!r} is outside [{d.low:g}, {d.high:g}]")
    value = min(max(value, d.low), d.high)
    return int(value) if isinstance(d, IntDistribution) else float(value)


def _suggest(trial: optuna.Trial, dim: Dimension) -> Any:
    d = dim.distribution
    if isinstance(d, FloatDistribution):
        return trial.suggest_float(dim.param, d.low, d.high, log=d.log, step=d.step)
    if isinstance(d, IntDistribution):
        return trial.suggest_int(dim.param, int(d.low), int(d.high), log=d.log, step=int(d.step or 1))
    assert isinstance(d, CategoricalDistribution)
    return trial.suggest_categorical(dim.param, d.choices)


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


def _when(spec: ParamSpec) -> dict[str, tuple[Scalar, ...]]:
    return {k: tuple(v) if isinstance(v, list) else (v,) for k, v in (spec.when or {}).items()}


def _overlap(a: ParamSpec, b: ParamSpec) -> bool:
    """Whether the conditions of two ranges can hold at once."""
    wa, wb = _when(a), _when(b)
    return not any(set(wa[k]).isdisjoint(wb[k]) for k in set(wa) & set(wb))


def _merge_variants(recipe: list[ParamSpec], default: SpaceEntry | None) -> list[ParamSpec]:
    """The recipe's ranges replace the default's whose conditions they overlap; the
    others stay (a recipe may give LoRA its own range and keep the default for full)."""
    if not isinstance(default, list) or not all(isinstance(v, ParamSpec) for v in default):
        return recipe
    kept = [v for v in default if isinstance(v, ParamSpec) and not any(_overlap(v, r) for r in recipe)]
    return kept + recipe


def _check_variants(name: str, variants: list[ParamSpec], file: str | None) -> None:
    for i, v in enumerate(variants):
        if not v.when:
            raise RecipeError(
                "each of several ranges needs a 'when:' condition (e.g. when: {adapter: lora})",
                file=file,
                field=f"search.space.{name}[{i}].when",
            )
    for i, a in enumerate(variants):
        for j in range(i):
            if _overlap(a, variants[j]):
                raise RecipeError(
                    f"ranges {j} and {i} can hold at once; their 'when:' conditions must differ in a value",
                    file=file,
                    field=f"search.space.{name}[{i}].when",
                )


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
    for name, entry in recipe_space.items():
        if isinstance(entry, list) and entry and all(isinstance(v, ParamSpec) for v in entry):
            _check_variants(name, entry, file)  # type: ignore[arg-type]
            merged[name] = _merge_variants(entry, merged.get(name))  # type: ignore[arg-type]
        else:
            merged[name] = entry

    fixed: dict[str, Any] = {}
    searched: list[tuple[str, ParamSpec]] = []
    for name, entry in merged.items():
        if isinstance(entry, ParamSpec):
            searched.append((name, entry))
        elif isinstance(entry, list) and entry and all(isinstance(v, ParamSpec) for v in entry):
            variants = [v for v in entry if isinstance(v, ParamSpec)]
            _check_variants(name, variants, file)
            searched.extend((name, v) for v in variants)
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
                searched.append((name, ParamSpec(choices=entry)))
        else:
            fixed[name] = entry

    # The recipe's own conditions must be able to hold; the default's may name adapters
    # the recipe leaves out (those ranges are dropped below).
    from_recipe = {id(v) for e in recipe_space.values() for v in (e if isinstance(e, list) else [e]) if isinstance(v, ParamSpec)}

    # Order: a parameter comes after those its condition names.
    ordered: list[Dimension] = []
    placed: set[str] = set(fixed)
    pending = list(searched)
    while pending:
        progressed = False
        for item in list(pending):
            name, spec = item
            when = _when(spec)
            for key in when:
                if key not in merged:
                    raise RecipeError(
                        f"condition names '{key}', which is not in the search space{did_you_mean(key, merged)}",
                        file=file,
                        field=f"search.space.{name}.when",
                    )
            if all(k in placed for k in when):
                if id(spec) in from_recipe:
                    _check_condition(name, when, fixed, dict(searched), file)
                try:
                    distribution = _distribution(name, spec)
                except ValueError as exc:  # e.g. a step that does not fit the range
                    raise RecipeError(str(exc).splitlines()[0], file=file, field=f"search.space.{name}") from None
                ordered.append(Dimension(name, distribution, when))
                pending.remove(item)
                progressed = True
        placed.update(d.name for d in ordered)
        if not progressed:
            raise RecipeError(
                "conditions form a cycle: " + ", ".join(sorted({n for n, _ in pending})), file=file, field="search.space"
            )
    # A dimension whose condition names a value it can never match is never sampled (e.g.
    # LoRA settings when the recipe fixes adapter: full, or the range of an adapter the
    # recipe's adapter choices leave out).
    choices = {d.name: set(d.distribution.choices) for d in ordered if isinstance(d.distribution, CategoricalDistribution)}
    possible = {**{k: {v} for k, v in fixed.items() if not isinstance(v, list)}, **choices}
    ordered = [d for d in ordered if all(not possible[k].isdisjoint(v) for k, v in d.when.items() if k in possible)]
    counts: dict[str, int] = {}
    for d in ordered:
        counts[d.name] = counts.get(d.name, 0) + 1
    ordered = [
        d if counts[d.name] == 1 else Dimension(d.name, d.distribution, d.when, key=f"{d.name}[{_label(d.when)}]")
        for d in ordered
    ]
    return SearchSpace(fixed=fixed, dimensions=tuple(ordered))


def _label(when: dict[str, tuple[Scalar, ...]]) -> str:
    return ",".join("/".join(map(str, values)) for values in when.values())


def adapter_defaults(task: Task, backbone: Backbone) -> dict[str, list[ParamSpec]]:
    """For each hyperparameter whose good range depends on the adapter, one range per
    registered adapter (``when: {adapter: NAME}``): the task's :meth:`~automl.task.Task.adapter_space`
    for the adapter, with the backbone's learning-rate prior for its size."""
    out: dict[str, list[ParamSpec]] = {}
    for adapter in ADAPTERS.values():
        for name, entry in task.adapter_space(adapter, backbone.learning_rate_prior(adapter)).items():
            if isinstance(entry, ParamSpec):
                spec = entry
            else:
                spec = ParamSpec(choices=list(entry) if isinstance(entry, list) else [entry])
            out.setdefault(name, []).append(spec.model_copy(update={"when": {"adapter": adapter.name}}))
    return out


def default_space(task: Task, backbone: Backbone) -> dict[str, SpaceEntry]:
    """The space a recipe's ``search.space`` is merged over: the task's
    :meth:`~automl.task.Task.default_space`, plus per-adapter ranges for what it leaves out."""
    space: dict[str, SpaceEntry] = dict(task.default_space())
    space.setdefault("adapter", "full")
    for name, variants in adapter_defaults(task, backbone).items():
        space.setdefault(name, variants)  # type: ignore[arg-type]
    return space


def space_adapters(space: SearchSpace) -> list[Any]:
    """The adapters a trial in *space* can use, in the space's order."""
    if "adapter" in space.fixed:
        return [space.fixed["adapter"]]
    for dim in space.dimensions:
        if dim.name == "adapter" and not dim.when and isinstance(dim.distribution, CategoricalDistribution):
            return list(dim.distribution.choices)
    return ["full"]


def check_adapters(space: Any, device: str, *, file: str | None = None) -> None:
    """Refuse, before anything trains, a space naming an unknown adapter or one this
    machine cannot run (QLoRA without CUDA): one line naming ``search.space.adapter``."""
    for name in map(str, space_adapters(space)):
        if name not in ADAPTERS:
            raise RecipeError(
                f"unknown adapter '{name}'{did_you_mean(name, ADAPTERS)}; known: {', '.join(ADAPTERS)}",
                file=file,
                field="search.space.adapter",
            )
        problem = quantization_problem(ADAPTERS[name], device)
        if problem:
            raise RecipeError(problem, file=file, field="search.space.adapter")
