"""``automl compare``: runs side by side."""

from __future__ import annotations

from pathlib import Path

import click

from automl.results import gather
from automl.results._formats import FORMATS


@click.command(name="compare")
@click.argument("run_dirs", metavar="RUN_DIR...", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True, help="Output format.")
def command(run_dirs: tuple[Path, ...], fmt: str) -> None:
    """Compare runs side by side: best value (and its change against the first run),
    trials, pruning, time to best, best hyperparameters, test metrics and baseline."""
    from rich.console import Console

    from automl.results.compare import compare  # when the command runs: `automl --help` stays fast

    comparison = compare([gather(d, with_importances=False) for d in run_dirs])
    if fmt == "table":
        Console(highlight=False).print(comparison)
    else:
        click.echo(comparison.render(fmt), nl=False)
