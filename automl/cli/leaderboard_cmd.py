"""``automl leaderboard``: the trials of a run, best first."""

from __future__ import annotations

from pathlib import Path

import click

from automl.results import gather, leaderboard
from automl.results._formats import FORMATS
from automl.results.leaderboard import FILTER_STATES


@click.command(name="leaderboard")
@click.argument("run_dir", metavar="RUN_DIR", required=False, type=click.Path(path_type=Path))
@click.option("--storage", envvar="AUTOML_STORAGE", help="Optuna storage URL (instead of, or with, RUN_DIR).")
@click.option("--study", "study_name", help="Study name (default: the run's).")
@click.option("--state", type=click.Choice(FILTER_STATES), help="Only trials in this state.")
@click.option("--top", type=click.IntRange(min=1), help="Only the first N trials.")
@click.option("--sort", "sort", metavar="COLUMN", help="Order by this column (metrics best first, others ascending).")
@click.option("--reverse", is_flag=True, help="Reverse the order.")
@click.option("--no-baseline", is_flag=True, help="Leave out the task's classical baseline row.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True, help="Output format.")
def command(
    run_dir: Path | None,
    storage: str | None,
    study_name: str | None,
    state: str | None,
    top: int | None,
    sort: str | None,
    reverse: bool,
    no_baseline: bool,
    fmt: str,
) -> None:
    """The trials of RUN_DIR (or of --storage/--study), best first, with the baseline as
    a row. Works while the run is still going."""
    from rich.console import Console

    results = gather(run_dir, storage=storage, study_name=study_name, with_importances=False)
    board = leaderboard(results, state=state, top=top, sort=sort, reverse=reverse, baseline=not no_baseline)
    if fmt == "table":
        Console(highlight=False).print(board)
    else:
        click.echo(board.render(fmt), nl=False)
