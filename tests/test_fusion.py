"""Table-column fusion for real on the tiny backbone: a fused model learns what only the
table columns tell, its weights survive a save/load, and the export scores raw rows
(``automl predict``, ``automl.load_model``) exactly as the run scored them."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from rich.console import Console

import automl
from automl.cli import cli
from automl.device import pick_device
from automl.engine import TrialEngine, load_trial_weights, save_trial_weights
from automl.fusion import FusionModel
from automl.recipe import load_recipe
from automl.run import RunContext
from automl.search.supervisor import RunOptions, run_recipe
from automl.testing import tiny_recipe, write_recipe, write_toy_table_data

PARAMS = {"learning_rate": 4e-3, "batch_size": 16, "epochs": 6, "warmup_ratio": 0.06, "weight_decay": 0.01,
          "fusion_lr_factor": 1.0, "fusion_width": 32, "fusion_dropout": 0.0}


@pytest.fixture
def table_dir(tmp_path):
    return write_toy_table_data(tmp_path / "data")


def table_recipe(table_dir, tmp_path, *, features=("amount", "color"), **overrides):
    recipe = tiny_recipe(table_dir, output=str(tmp_path / "run"), **overrides)
    if features:
        recipe["data"]["feature_columns"] = list(features)
    return write_recipe(tmp_path / "recipe.yaml", recipe)


def build(recipe_path) -> tuple[TrialEngine, RunContext]:
    ctx = RunContext.create(load_recipe(recipe_path))
    ctx.run_dir.mkdir(parents=True, exist_ok=True)
    data, tokenizer, encoded = ctx.load_data()
    base = ctx.load_base_model()
    engine = TrialEngine(
        task=ctx.resolved.task, base_model=base, encoded=encoded,
        splits={"train": data.train, "validation": data.validation}, setup=pick_device("cpu"),
        pad_id=tokenizer.pad_token_id, objective="f1_macro", direction="maximize",
        lora_targets=ctx.resolved.backbone.lora_target_modules(base), seed=0,
    )
    return engine, ctx


def test_encoded_splits_carry_the_features_and_the_cache_keeps_them(table_dir, tmp_path):
    engine, ctx = build(table_recipe(table_dir, tmp_path))
    train = engine.encoded["train"]
    assert np.asarray(train["numeric"]).shape == (300, 3) and np.asarray(train["categorical"]).shape == (300, 1)
    cached = ctx.load_data()[2]["train"]  # the second load reads the cache
    assert np.array_equal(np.asarray(cached["numeric"]), np.asarray(train["numeric"]))
    assert np.array_equal(np.asarray(cached["categorical"]), np.asarray(train["categorical"]))


def test_the_fused_model_learns_what_only_the_table_columns_tell(table_dir, tmp_path):
    engine, _ = build(table_recipe(table_dir, tmp_path))
    fused = engine.run_trial(PARAMS)
    assert isinstance(fused.model, FusionModel)
    assert fused.metrics["f1_macro"] >= 0.85, fused.metrics

    text_only, _ = build(table_recipe(table_dir, tmp_path / "text", features=()))
    plain = text_only.run_trial(PARAMS)
    assert not isinstance(plain.model, FusionModel)
    assert plain.metrics["f1_macro"] < 0.75, plain.metrics  # the text is filler


def test_the_feature_tower_learns_at_its_own_rate(table_dir, tmp_path):
    engine, _ = build(table_recipe(table_dir, tmp_path))
    model = engine._fresh_model({**PARAMS, "fusion_lr_factor": 10.0})
    optimizer, _ = engine._optimizer(model, {**PARAMS, "fusion_lr_factor": 10.0}, total_steps=10)
    rates = {id(p): g["initial_lr"] for g in optimizer.param_groups for p in g["params"]}
    encoder = [rates[id(p)] for n, p in model.named_parameters() if n.startswith("encoder.")]
    tower = [rates[id(p)] for n, p in model.named_parameters() if not n.startswith("encoder.")]
    assert set(encoder) == {PARAMS["learning_rate"]}
    assert sorted(set(tower)) == pytest.approx([10 * PARAMS["learning_rate"]])


@pytest.mark.parametrize("adapter", ["full", "lora"])
def test_trial_weights_round_trip(table_dir, tmp_path, adapter):
    engine, ctx = build(table_recipe(table_dir, tmp_path))
    params = {**PARAMS, "epochs": 1, "adapter": adapter}
    result = engine.run_trial(params)
    path = tmp_path / "w.safetensors"
    save_trial_weights(result.model, adapter, path)
    again = load_trial_weights(engine.base_model, params, "sequence-classification", engine.lora_targets, path, task=ctx.resolved.task)
    assert np.array_equal(engine.outputs(result.model, "validation"), engine.outputs(again, "validation"))


def test_export_then_predict_scores_raw_rows_exactly_as_the_run_did(table_dir, tmp_path):
    recipe = table_recipe(table_dir, tmp_path, search={
        "trials": 1, "space": {**PARAMS, "adapter": "lora", "lora_r": 8, "lora_alpha": 16, "learning_rate": 5e-3}})
    outcome = run_recipe(load_recipe(recipe), options=RunOptions(workers=0), console=Console(file=io.StringIO()))
    best = outcome.best_dir
    assert best is not None
    meta = json.loads((best / "automl.json").read_text())
    assert meta["kind"] == "fused" and meta["data"]["feature_columns"] == ["amount", "color"]
    assert {"fusion.safetensors", "features.json", "backbone", "adapter"} <= {p.name for p in best.iterdir()}
    assert not (best / "config.json").exists()  # not a plain transformers directory
    assert "automl.load_model" in (best / "README.md").read_text()

    test = pd.read_csv(table_dir / "test.csv")
    model = automl.load_model(str(best))
    outputs = model.outputs(test)
    assert outputs.shape == (len(test), 2)
    split = model.task.read(test, split="test", file="test.csv", label_names=model.task.labels)
    metrics = model.task.compute_metrics(outputs, split, {"labels": split.labels}, meta["calibration"])
    assert metrics == meta["metrics"]["test"]  # identical to what the run computed

    out = tmp_path / "scored.parquet"
    result = CliRunner().invoke(cli, ["predict", str(best), str(table_dir / "test.csv"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    scored = pd.read_parquet(out)
    assert scored["prediction"].tolist() == model.predict(test)["prediction"].tolist()
    probs = np.exp(outputs) / np.exp(outputs).sum(axis=1, keepdims=True)
    assert np.allclose(scored["score_positive"], probs[:, 1])

    missing = tmp_path / "no-color.csv"
    test.drop(columns=["color"]).to_csv(missing, index=False)
    result = CliRunner().invoke(cli, ["predict", str(best), str(missing)])
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1 and "'color'" in result.output, result.output


def test_feature_columns_may_not_name_the_text_or_label_column(table_dir, tmp_path):
    result = CliRunner().invoke(cli, ["recipe", "check", str(table_recipe(table_dir, tmp_path, features=("amount", "label")))])
    assert result.exit_code == 2 and "data.feature_columns" in result.output and "'label'" in result.output
