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


def test_max_length_auto_covers_most_rows_of_the_data(data_root, tmp_path):
    """``training.max_length: auto`` holds the whole encoding of 95% of the training rows,
    rounded up to a multiple of 8, and nothing longer; a run uses and records it."""
    import json

    import numpy as np
    import yaml
    from plugin_helpers import load

    from automl.encoding import AUTO_COVERAGE, AUTO_MIN_LENGTH, auto_max_length
    from automl.run import RunContext
    from automl.testing import TinyBertBackbone

    task, data = load("fraud-detection", data_root)
    tokenizer = TinyBertBackbone().load_tokenizer()
    choice = auto_max_length(task, data.train, tokenizer)
    lengths = np.array([len(ids) for ids in task.encode(data.train, tokenizer, 512)["input_ids"]])
    chosen = choice["max_length"]
    assert chosen % 8 == 0 and choice["rows"] == len(lengths) and choice["longest"] == lengths.max()
    assert np.mean(lengths <= chosen) >= AUTO_COVERAGE
    assert chosen == AUTO_MIN_LENGTH or np.mean(lengths <= chosen - 8) < AUTO_COVERAGE
    assert auto_max_length(task, data.train, tokenizer) == choice  # the same every time: every worker agrees
    # A task that tags every token keeps every training row whole.
    ner, ner_data = load("token-classification", data_root)
    whole = auto_max_length(ner, ner_data.train, tokenizer, coverage=ner.auto_length_coverage)
    longest = max(len(ids) for ids in ner.encode(ner_data.train, tokenizer, 512)["input_ids"])
    assert whole["coverage"] == 1.0 and whole["max_length"] >= longest and whole["longest"] == longest

    recipe_path = tiny_recipe_for("fraud-detection", data_root, tmp_path)
    recipe = yaml.safe_load(recipe_path.read_text())
    recipe["training"]["max_length"] = "auto"
    recipe_path.write_text(yaml.safe_dump(recipe))
    # `automl recipe check` says what the run will choose, and estimates memory at it.
    result = CliRunner().invoke(cli, ["recipe", "check", str(recipe_path)])
    assert result.exit_code == 0, result.output
    assert f"max_length auto: {chosen} tokens" in result.output and f"max_length {chosen} (auto)" in " ".join(result.output.split())
    ctx = RunContext.create(load_recipe(recipe_path))
    _, _, encoded = ctx.load_data()
    assert ctx.max_length == chosen
    assert max(len(ids) for ids in encoded["train"]["input_ids"]) <= chosen
    ctx.write_run_file()
    assert json.loads((ctx.run_dir / "run.json").read_text())["max_length"]["max_length"] == chosen
