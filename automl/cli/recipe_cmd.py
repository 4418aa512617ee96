"""``automl recipe check``: validate a recipe, its plugins and its data without training."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.console import Console

from automl import plugins
from automl.privacy import resolve_delta
from automl.recipe import load_recipe


@click.group(name="recipe")
def command() -> None:
    """Work with recipe files."""


@command.command(name="check")
@click.argument("recipe_path", metavar="RECIPE", type=click.Path(path_type=Path))
@click.option("--no-data", is_flag=True, help="Skip reading the data files.")
@click.option("--no-memory", is_flag=True, help="Skip the memory estimate per adapter.")
def check_cmd(recipe_path: Path, no_data: bool, no_memory: bool) -> None:
    """Validate RECIPE: keys and types, task and backbone plugins, objective, search space
    and data, without training; estimate the memory a trial of each adapter needs."""
    from automl.device import machine_problems  # torch: when the command runs, `automl --help` stays fast
    from automl.resolve import check  # when the command runs: `automl --help` stays fast

    plugins.warn_failed()
    recipe = load_recipe(recipe_path)
    resolved, data = check(recipe, load_data=not no_data)
    warn = Console(stderr=True, highlight=False, soft_wrap=True)
    for warning in resolved.warnings:
        warn.print(f"[yellow]warning[/]: {recipe_path}: {warning}")
    for field_name, problem in machine_problems(recipe.training.device, recipe.training.precision):
        warn.print(f"[yellow]warning[/]: {recipe_path}: {field_name}: {problem} (`automl run` on this machine refuses it)")
    console = Console(highlight=False)
    console.print(f"[green]ok[/] {recipe_path}: task [cyan]{recipe.task}[/], backbone [magenta]{recipe.backbone}[/]")
    obj = resolved.objective
    console.print(f"  objective: {obj.name} ({obj.direction})")
    console.print(f"  search: {recipe.search.trials} trials, sampler {recipe.search.sampler}, pruner {recipe.search.pruner}")
    if recipe.privacy is not None:
        spec = recipe.privacy
        mode = f"the budget of the whole search ({recipe.search.trials} trials share it)" if spec.accounting == "search" else "for each trial"
        delta = "auto: 1/(10n) for n training rows" if spec.delta == "auto" else f"{spec.delta:g}"
        if data is not None:
            delta += f" = {resolve_delta(spec, len(data.train)):.2g}" if spec.delta == "auto" else ""
        console.print(f"  privacy: DP-SGD (Opacus), ε = {spec.epsilon:g} {mode}; δ {delta}; max_grad_norm {spec.max_grad_norm:g} unless searched")
        console.print("  space (the private defaults, with the recipe's search.space over them):")
    else:
        console.print("  space (the task's default, with the recipe's search.space over it):")
    for dim in resolved.space.dimensions:
        console.print(f"    {dim.describe()}")
    for name, value in resolved.space.fixed.items():
        console.print(f"    {name} = {value!r}")
    if resolved.start_from:
        console.print(f"  first trials (search.start_from: {'defaults' if isinstance(recipe.search.start_from, str) else 'the recipe'}):")
        for i, config in enumerate(resolved.start_from):
            shown = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in config.items() if k not in resolved.space.fixed)
            console.print(f"    {i}: {shown}")
    if data is not None:
        sizes = f"train {len(data.train)}, validation {len(data.validation)}"
        if data.test is not None:
            sizes += f", test {len(data.test)}"
        console.print(f"  data: {sizes} rows")
        if data.label_names:
            shown = ", ".join(data.label_names[:10]) + (" ..." if len(data.label_names) > 10 else "")
            console.print(f"  labels ({len(data.label_names)}): {shown}")
    chosen = None
    if data is not None and recipe.training.max_length == "auto":
        chosen = auto_length(console, resolved, recipe, data)
    if not no_memory:
        print_memory(console, resolved, recipe, chosen)
    console.print(f"  output: {recipe.output_dir}")


def auto_length(console: Console, resolved: Any, recipe: Any, data: Any) -> int:
    """``training.max_length: auto`` as the run will choose it from this data; printed."""
    from automl.encoding import auto_max_length, describe_auto_length  # when the command runs: `automl --help` stays fast

    task = resolved.task
    task.labels = data.label_names
    task.prepare(data)
    tokenizer = resolved.backbone.load_tokenizer(trust_remote_code=recipe.training.trust_remote_code)
    choice = auto_max_length(task, data.train, tokenizer, seed=recipe.training.seed, coverage=task.auto_length_coverage)
    console.print(f"  {describe_auto_length(choice)}")
    return int(choice["max_length"])


def print_memory(console: Console, resolved: Any, recipe: Any, chosen: int | None = None) -> None:
    """A line per adapter: weights, training state, activations, total, and whether it fits."""
    import warnings

    from automl.memory import device_memory, human_bytes, planned_length, recipe_estimates  # when the command runs: `automl --help` stays fast

    what, available = device_memory(recipe.training.device)
    room = f"{what} {human_bytes(available)}" if available else what
    length: Any = recipe.training.max_length
    if length == "auto":
        length = f"{chosen} (auto)" if chosen else f"auto, at most {planned_length(recipe)}"
    at = "the physical batch, with per-example gradients" if recipe.privacy is not None else "the largest batch size"
    console.print(f"  memory per trial (estimate at {at}, max_length {length}; {room}):")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        estimates = recipe_estimates(resolved, recipe, chosen)
    for e in estimates:
        fits = "" if available is None else ("  fits" if e.total < available else "  [red]does not fit[/]")
        console.print(
            f"    {e.adapter}: {human_bytes(e.total)} = weights {human_bytes(e.weights)} + gradients and optimiser "
            f"{human_bytes(e.training_state)} + activations {human_bytes(e.activations)}; "
            f"trainable {e.trainable:,} of {e.parameters:,} parameters{fits}",
            soft_wrap=True,
        )
