"""``automl run``: search, export the best model, print the summary."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console

from automl.cli._common import default_gpus, overrides, search_options


@click.command(name="run")
@click.argument("recipe_path", metavar="RECIPE", type=click.Path(path_type=Path))
@search_options
@click.option("--fresh", is_flag=True, help="Start over; the old run directory is moved aside, never deleted.")
@click.option("--no-baseline", is_flag=True, help="Skip the task's classical baseline.")
def command(
    recipe_path: Path,
    trials: int | None,
    timeout: str | None,
    output: str | None,
    device: str | None,
    storage: str | None,
    study_name: str | None,
    artifacts: str | None,
    workers: int,
    gpus: str | None,
    fresh: bool,
    no_baseline: bool,
) -> None:
    """Run RECIPE's search: fine-tune the backbone in Optuna trials, export the best model
    to <output>/best/ and print a report. Running the same command again resumes."""
    from automl import plugins
    from automl.recipe import load_recipe
    from automl.search.supervisor import RunOptions, run_recipe
    from automl.summary import print_summary

    plugins.warn_failed()
    over = overrides(trials, timeout, output, device)
    recipe = load_recipe(recipe_path).with_overrides(**over)
    console = Console(stderr=True, highlight=False)
    options = RunOptions(
        workers=workers,
        gpus=default_gpus(gpus, device or recipe.training.device, workers),
        fresh=fresh,
        baseline=not no_baseline,
        overrides=over,
        artifacts=artifacts,
    )
    outcome = run_recipe(recipe, storage_url=storage, study_name=study_name, options=options, console=console)
    print_summary(outcome, Console(highlight=False))
    if outcome.interrupted:
        console.print(f"[yellow]interrupted[/]: run `automl run {recipe_path}` again to continue", soft_wrap=True)
        raise SystemExit(130)
