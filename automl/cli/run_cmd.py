"""``automl run``: search, export the best model, print the summary and write the report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from automl.cli._common import launch, search_options


@click.command(name="run")
@click.argument("recipe_path", metavar="RECIPE", type=click.Path(path_type=Path))
@search_options
@click.option("--fresh", is_flag=True, help="Start over; the old run directory is moved aside, never deleted.")
@click.option("--no-baseline", is_flag=True, help="Skip the task's classical baseline.")
@click.option("--mlflow", metavar="URI", help="Log the run to this MLflow tracking URI, e.g. file:///abs/mlruns or http://host:5000 (needs automl[mlflow]; overrides the recipe's mlflow).")
def command(recipe_path: Path, no_baseline: bool, **options: Any) -> None:
    """Run RECIPE's search: fine-tune the backbone in Optuna trials, export the best model
    to <output>/best/ and print a report. Running the same command again resumes."""
    launch(recipe_path, command="run", baseline=not no_baseline, **options)
