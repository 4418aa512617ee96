"""From a validated recipe to the live objects a run needs: task, backbone, objective,
search space. Every problem is a one-line user error naming the recipe field."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from automl import plugins
from automl.backbone import model_dir_problems
from automl.data import load_task_data
from automl.errors import PluginError, RecipeError, UserError, did_you_mean
from automl.privacy import check_privacy, delta_problem, private_space
from automl.search.ranges import check_space, hyperparameter_ranges
from automl.search.space import SearchSpace, build_space, check_adapters, default_space, space_adapters
from automl.search.warmstart import start_configs
from automl.task import Metric, Task, read_options

if TYPE_CHECKING:
    from automl.backbone import Backbone
    from automl.recipe import Recipe
    from automl.task import TaskData


@dataclass(frozen=True)
class Resolved:
    recipe: Recipe
    task: Task
    backbone: Backbone
    objective: Metric
    space: SearchSpace
    #: Values accepted but implausible (a learning rate of 10): one line each.
    warnings: tuple[str, ...] = ()
    #: The first trials (``search.start_from``), complete configurations.
    start_from: tuple[dict[str, Any], ...] = ()


def resolve(recipe: Recipe) -> Resolved:
    file = str(recipe.path) if recipe.path else None
    task_cls = plugins.get_task(recipe.task, file=file)
    backbone_cls = plugins.get_backbone(recipe.backbone, file=file)
    task = task_cls(read_options(task_cls, recipe.task_options, file=file, field="task_options"), recipe.data)
    backbone = backbone_cls(
        read_options(backbone_cls, recipe.backbone_options, file=file, field="backbone_options"),
        base_dir=recipe.base_dir,
    )
    metric_name = recipe.objective.metric or task.default_metric
    names = [m.name for m in task.metrics]
    if metric_name not in names:
        raise RecipeError(
            f"task '{task.name}' has no metric '{metric_name}'{did_you_mean(metric_name, names)}; "
            f"it reports: {', '.join(names)}",
            file=file,
            field="objective.metric",
        )
    metric = task.metric(metric_name)
    if recipe.objective.direction and recipe.objective.direction != metric.direction:
        metric = Metric(metric.name, recipe.objective.direction, metric.description)
    defaults = default_space(task, backbone)
    if recipe.privacy is not None:
        defaults = private_space(defaults, pooled=task.head == "sequence-classification")
    space = build_space(recipe.search.space, defaults, extra_names=task.extra_hyperparameters, file=file)
    if recipe.search.sampler == "grid":
        space.grid()
    warnings = check_space(space, hyperparameter_ranges(task), file=file)
    start = tuple(start_configs(recipe, space, backbone, task))
    return Resolved(
        recipe=recipe, task=task, backbone=backbone, objective=metric, space=space,
        warnings=tuple(warnings), start_from=start,
    )


def check(recipe: Recipe, *, load_data: bool = True) -> tuple[Resolved, TaskData | None]:
    """Everything ``automl recipe check`` checks: plugins, options, objective, space,
    backbone weights and (optionally) the data, without training."""
    resolved = resolve(recipe)
    check_trainable(resolved)
    warnings = check_backbone(resolved)
    if warnings:
        resolved = replace(resolved, warnings=resolved.warnings + tuple(warnings))
    data = load_task_data(resolved.task, recipe) if load_data else None
    if data is not None:
        check_private_data(recipe, len(data.train))
    return resolved, data


def check_trainable(resolved: Resolved) -> None:
    """Refuse what the trials cannot run: an adapter this machine lacks, or, with a
    ``privacy:`` block, what private training cannot do (one line, the recipe's field)."""
    recipe = resolved.recipe
    check_adapters(resolved.space, recipe.training.device, file=str(recipe.path) if recipe.path else None)
    task_type = type(resolved.task)
    check_privacy(
        recipe, map(str, space_adapters(resolved.space)), task_name=resolved.task.name,
        loss_overridden=task_type.loss is not Task.loss and task_type.example_losses is Task.example_losses,
    )


def check_private_data(recipe: Recipe, n_train: int) -> None:
    """With privacy on, δ must be below 1/n for the *n_train* training rows."""
    if recipe.privacy is not None:
        problem = delta_problem(recipe.privacy, n_train)
        if problem:
            raise RecipeError(problem, file=str(recipe.path) if recipe.path else None, field="privacy.delta")


def check_backbone(resolved: Resolved) -> list[str]:
    """The backbone's own :meth:`~automl.backbone.Backbone.check`, then a look inside its
    model directory when it is a local one (config, weights, tokenizer, remote code):
    a :class:`~automl.errors.PluginError` naming the recipe, or warnings (one line each)."""
    recipe = resolved.recipe
    file = str(recipe.path) if recipe.path else None
    try:
        resolved.backbone.check()
    except UserError as exc:
        if exc.file is None:
            exc.file = file
        raise
    source = Path(resolved.backbone.source()).expanduser()
    if not source.is_dir():
        return []  # a hub id: transformers finds out
    error, warnings = model_dir_problems(source, trust_remote_code=recipe.training.trust_remote_code)
    if error is not None:
        raise PluginError(error, file=file, field="backbone_options")
    return warnings
