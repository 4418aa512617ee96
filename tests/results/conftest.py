"""One tiny real run per test session, shared by the results tests (read-only)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from rich.console import Console

from automl import plugins
from automl.testing import tiny_recipe, write_recipe, write_toy_text_data

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run (4 trials, in-process) with baseline, export and report."""
    from automl.recipe import load_recipe
    from automl.search.supervisor import RunOptions, run_recipe

    base = tmp_path_factory.mktemp("results-run")
    data = write_toy_text_data(base / "data", train=160, validation=48, test=48)
    recipe = tiny_recipe(
        data,
        output=str(base / "run"),
        name="tiny",
        search={
            "trials": 4,
            "space": {
                "learning_rate": {"low": 4e-3, "high": 8e-3, "log": True},
                "epochs": {"low": 2, "high": 3},
                "batch_size": [16, 32],
                "adapter": "full",
            },
        },
    )
    path = write_recipe(base / "recipe.yaml", recipe)
    plugins.reset()
    outcome = run_recipe(
        load_recipe(path),
        options=RunOptions(workers=0),
        console=Console(file=io.StringIO(), width=100, color_system=None),
    )
    plugins.reset()
    assert outcome.best_dir is not None
    return outcome.run_dir


@pytest.fixture(scope="session")
def data_dir(tiny_run: Path) -> Path:
    return tiny_run.parent / "data"


@pytest.fixture
def render():
    """Render a rich renderable to plain text at a fixed width."""

    def _render(renderable: object, width: int = 100) -> str:
        console = Console(file=io.StringIO(), width=width, color_system=None)
        console.print(renderable)
        return console.file.getvalue()  # type: ignore[attr-defined]

    return _render
