"""``automl worker``: join a study in shared storage from another machine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from automl.cli._common import launch, search_options
from automl.errors import UserError


@click.command(name="worker")
@click.argument("recipe_path", metavar="RECIPE", type=click.Path(path_type=Path))
@search_options
def command(recipe_path: Path, **options: Any) -> None:
    """Run trials of RECIPE's study in shared --storage (e.g. PostgreSQL) until the study
    has its trials. Start one per machine, each with the same --artifacts directory; each
    runs --workers trial processes."""
    if not options.get("storage"):
        raise UserError("a worker needs shared storage: --storage URL (or AUTOML_STORAGE)", field="--storage")
    launch(recipe_path, command="worker", baseline=False, **options)
