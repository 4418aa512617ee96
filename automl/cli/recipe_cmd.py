"""``automl recipe check``: validate a recipe, its plugins and its data without training."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console

from automl.recipe import load_recipe


@click.group(name="recipe")
def command() -> None:
    """Work with recipe files."""


@command.command(name="check")
@click.argument("recipe_path", metavar="RECIPE", type=click.Path(path_type=Path))
@click.option("--no-data", is_flag=True, help="Skip reading the data files.")
def check_cmd(recipe_path: Path, no_data: bool) -> None:
    """Validate RECIPE: keys and types, task and backbone plugins, objective, search space
    and data, without training."""
    from automl import plugins
    from automl.resolve import check

    plugins.warn_failed()
    from automl.device import machine_problems

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
    console.print(f"  output: {recipe.output_dir}")
