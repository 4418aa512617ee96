"""Warm start: the first trials of a search are known-good configurations.

With ``search.start_from: defaults`` (the default) the first trials are one configuration
per adapter in the space, from the backbone's :meth:`~automl.backbone.Backbone.warm_start`
(and the task's :meth:`~automl.task.Task.warm_start` over it; a ``None`` there sends a
parameter back to the middle of its range), with every other parameter at the middle of
its range, so that the first result is already
a sound model and the sampler starts from it. A recipe may list its own configurations
instead, or turn this off (``start_from: none``). They are queued once per study, before the
first trial, and never again on resume.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from automl.adapters import ADAPTERS
from automl.errors import RecipeError, did_you_mean
from automl.privacy import PRIVATE_WARM_START
from automl.search.space import SearchSpace, space_adapters  # noqa: F401  (imported from here too)

if TYPE_CHECKING:
    import optuna

    from automl.backbone import Backbone
    from automl.recipe import Recipe
    from automl.task import Task

#: Study user attribute: how many start configurations were queued (set once).
QUEUED = "start_from_queued"


def start_configs(recipe: Recipe, space: SearchSpace, backbone: Backbone, task: Task | None = None) -> list[dict[str, Any]]:
    """The configurations ``search.start_from`` asks for, each complete for *space*; a
    configuration that names an unknown parameter or a value outside the space is a
    :class:`~automl.errors.RecipeError`."""
    start = recipe.search.start_from
    file = str(recipe.path) if recipe.path else None
    configs: list[dict[str, Any]] = []
    if start == "none" or recipe.search.sampler == "grid":  # a grid covers its points itself
        return configs
    if start == "defaults":
        searched = {d.name for d in space.dimensions}
        for name in space_adapters(space):
            adapter = ADAPTERS.get(str(name))
            hint = backbone.warm_start(adapter) if adapter is not None else {}
            if adapter is not None and task is not None:
                hint = {**hint, **task.warm_start(adapter)}  # the task knows its head's needs
            if recipe.privacy is not None:  # hints for non-private training do not carry over
                hint = dict(PRIVATE_WARM_START.get(str(name), {}))
            # A hint for a parameter the space fixes or lacks says nothing; None sends a
            # parameter back to the middle of its range (a task undoing a backbone's hint).
            hint = {k: v for k, v in hint.items() if k in searched and v is not None}
            configs.append(space.complete({**hint, "adapter": name}, clip=True))
    else:
        names = space.names()
        for i, given in enumerate(start):
            field = f"search.start_from[{i}]"
            for name, value in given.items():
                if name not in names:
                    raise RecipeError(
                        f"'{name}' is not in the search space{did_you_mean(name, names)}", file=file, field=f"{field}.{name}"
                    )
                if name in space.fixed and space.fixed[name] != value:
                    raise RecipeError(
                        f"{name}={value!r}, but the space fixes it to {space.fixed[name]!r}", file=file, field=f"{field}.{name}"
                    )
            try:
                configs.append(space.complete(dict(given), clip=False))
            except ValueError as exc:
                raise RecipeError(str(exc), file=file, field=field) from None
    unique: list[dict[str, Any]] = []
    for cfg in configs:
        if cfg not in unique:
            unique.append(cfg)
    return unique


def queue_start(study: optuna.Study, space: SearchSpace, configs: list[dict[str, Any]], trials: int) -> int:
    """Queue *configs* (at most *trials*) as the study's first trials, once: a study that
    has trials or queued them before gets nothing. Returns how many were queued."""
    if study.user_attrs.get(QUEUED) is not None or study.get_trials(deepcopy=False):
        return 0
    queued = configs[:trials]
    for i, cfg in enumerate(queued):
        study.enqueue_trial(space.optuna_params(cfg), user_attrs={"start_from": i})
    study.set_user_attr(QUEUED, len(queued))
    return len(queued)
