"""``automl worker``: join a study in shared storage from another machine."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console

from automl.cli._common import default_gpus, overrides, search_options
from automl.errors import UserError


@click.command(name="worker")
@click.argument("recipe_path", metavar="RECIPE", type=click.Path(path_type=Path))
@search_options
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
) -> None:
    """Run trials of RECIPE's study in shared --storage (e.g. PostgreSQL) until the study
    has its trials. Start one per machine; each runs --workers trial processes."""
    from automl import plugins
    from automl.recipe import load_recipe
    from automl.search.supervisor import RunOptions, run_recipe
    from automl.summary import print_summary

    if not storage:
        raise UserError("a worker needs shared storage: --storage URL (or AUTOML_STORAGE)", field="--storage")
    plugins.warn_failed()
    over = overrides(trials, timeout, output, device)
    recipe = load_recipe(recipe_path).with_overrides(**over)
    console = Console(stderr=True, highlight=False)
    options = RunOptions(
        workers=workers,
        gpus=default_gpus(gpus, device or recipe.training.device, workers),
        baseline=False,
        overrides=over,
        artifacts=artifacts,
    )
    outcome = run_recipe(recipe, storage_url=storage, study_name=study_name, options=options, console=console)
    print_summary(outcome, Console(highlight=False))
    if outcome.interrupted:
        raise SystemExit(130)
