"""The shipped recipes check, their tiny variants check, and the shipped data is exactly
what the generator writes."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from plugin_helpers import RECIPES, SAMPLES, tiny_recipe_for

from automl.cli import cli
from automl.recipe import load_recipe
from automl_plugins import datagen

SHIPPED = sorted(RECIPES.glob("*.yaml"))


def test_every_task_has_a_recipe():
    assert {f"{s.recipe}.yaml" for s in SAMPLES.values()} <= {p.name for p in SHIPPED}


@pytest.mark.parametrize("recipe", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_recipe_checks(recipe: Path):
    result = CliRunner().invoke(cli, ["recipe", "check", str(recipe)])
    assert result.exit_code == 0, result.output
    assert "ok" in result.output and "data: train" in result.output


def test_fraud_recipe_is_the_quick_one():
    recipe = load_recipe(RECIPES / "fraud.yaml")
    assert recipe.backbone == "minilm-l6"
    assert recipe.search.timeout is not None and recipe.search.timeout <= 300
    assert recipe.search.trials <= 10
    assert recipe.training.max_length <= 96


@pytest.mark.parametrize("task_name", sorted(SAMPLES))
def test_tiny_recipe_checks(task_name, data_root, tmp_path):
    recipe = tiny_recipe_for(task_name, data_root, tmp_path)
    result = CliRunner().invoke(cli, ["recipe", "check", str(recipe)])
    assert result.exit_code == 0, result.output
    assert "tiny-bert" in result.output


def test_generator_reproduces_the_shipped_files(tmp_path):
    for path in datagen.generate("sentiment", tmp_path, seed=0):
        assert path.read_bytes() == (RECIPES / "data" / "sentiment" / path.name).read_bytes(), path.name


def test_generate_command(tmp_path):
    result = CliRunner().invoke(cli, ["data", "generate", str(tmp_path), "--kind", "ner", "--seed", "0"])
    assert result.exit_code == 0, result.output
    written = sorted(p.name for p in (tmp_path / "ner").iterdir())
    assert written == ["test.conll", "train.conll", "validation.conll"]
    assert (tmp_path / "ner" / "test.conll").read_bytes() == (RECIPES / "data" / "ner" / "test.conll").read_bytes()


def test_generate_command_scales_the_rows(tmp_path):
    import pandas as pd

    result = CliRunner().invoke(cli, ["data", "generate", str(tmp_path), "--kind", "fraud", "--scale", "0.5"])
    assert result.exit_code == 0, result.output
    for split, size in zip(datagen.SPLITS, datagen.SIZES["fraud"], strict=True):
        assert len(pd.read_csv(tmp_path / "fraud" / f"{split}.csv")) == round(size * 0.5)
    bad = CliRunner().invoke(cli, ["data", "generate", str(tmp_path), "--scale", "0"])
    assert bad.exit_code == 2 and "--scale" in bad.output


def test_shipped_sizes_and_fraud_rate():
    import pandas as pd

    for kind, sizes in datagen.SIZES.items():
        ext = datagen.GENERATORS[kind][1]
        for split, size in zip(datagen.SPLITS, sizes, strict=True):
            path = RECIPES / "data" / kind / f"{split}.{ext}"
            if ext == "csv":
                assert len(pd.read_csv(path)) == size
            else:
                assert path.read_text().count("\n\n") + 1 == size
    fraud = pd.read_csv(RECIPES / "data" / "fraud" / "train.csv")
    assert 0.03 <= fraud["is_fraud"].mean() <= 0.06


def test_other_seed_other_data(tmp_path):
    a = datagen.generate("fraud", tmp_path / "a", seed=1, scale=0.05)
    b = datagen.generate("fraud", tmp_path / "b", seed=2, scale=0.05)
    assert a[0].read_bytes() != b[0].read_bytes()
