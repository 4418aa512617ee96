from __future__ import annotations

import os
from pathlib import Path

import pytest

from automl import plugins
from automl.testing import tiny_recipe, write_recipe, write_toy_text_data

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True)
def _fresh_plugins():
    plugins.reset()
    yield
    plugins.reset()


@pytest.fixture
def toy_dir(tmp_path: Path) -> Path:
    return write_toy_text_data(tmp_path / "data")


@pytest.fixture
def recipe_file(toy_dir: Path, tmp_path: Path):
    """Factory: write a tiny recipe (with overrides) and return its path."""

    def make(name: str = "recipe.yaml", **overrides):
        recipe = tiny_recipe(toy_dir, output=str(tmp_path / "run"))
        recipe.update(overrides)
        return write_recipe(tmp_path / name, recipe)

    return make
