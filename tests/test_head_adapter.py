"""The ``head`` adapter: the pretrained model frozen and mean-pooled, a small head trained
on top. Its trials leave every pretrained weight as it was, run the encoder once per
distinct row in a process whatever their epochs, and export a model that ``automl
predict`` scores exactly as the run did; token heads train their own head on the frozen
body."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from rich.console import Console
from test_engine import build_engine

import automl
import automl.fusion
from automl.cli import cli
from automl.engine import trainable_state
from automl.fusion import FusionModel
from automl.recipe import load_recipe
from automl.search.supervisor import RunOptions, run_recipe
from automl.testing import tiny_recipe, write_recipe

PARAMS = {"adapter": "head", "learning_rate": 1e-2, "batch_size": 16, "epochs": 4, "warmup_ratio": 0.0, "weight_decay": 0.0}


@pytest.fixture
def engine(recipe_file):
    return build_engine(recipe_file())


def test_a_head_trial_trains_only_a_head_on_the_frozen_mean_pooled_encoder(engine):
    result = engine.run_trial(PARAMS)
    model = result.model
    assert isinstance(model, FusionModel) and model.numeric is None and model.categorical is None
    base = engine.base_model.base_model.state_dict()
    for name, weight in model.encoder.state_dict().items():
        assert torch.equal(weight.cpu(), base[name]), name  # no pretrained weight moved
    assert not any(p.requires_grad for p in model.encoder.parameters())
    state = trainable_state(model, "head")
    assert state and all(not k.startswith("encoder.") for k in state)  # the best-evaluation copy: the head alone
    assert result.value > 0.6  # it learns: chance is 0.5


def test_the_encoder_reads_each_row_once_whatever_the_epochs_and_trials(engine, monkeypatch):
    encoded_rows = []
    original = automl.fusion._mean_pool

    def counting(encoder, input_ids, attention_mask):
        encoded_rows.append(int(input_ids.shape[0]))
        return original(encoder, input_ids, attention_mask)

    monkeypatch.setattr(automl.fusion, "_mean_pool", counting)
    distinct = {bytes(str(list(x)), "ascii") for split in ("train", "validation") for x in engine.encoded[split]["input_ids"]}
    engine.run_trial(PARAMS)
    assert sum(encoded_rows) == len(distinct) == len(engine.text_cache)
    encoded_rows.clear()
    engine.run_trial({**PARAMS, "learning_rate": 3e-3, "epochs": 2})
    assert encoded_rows == []  # the second trial read every row from the cache


def test_the_cache_gives_what_the_encoder_gives(engine):
    result = engine.run_trial({**PARAMS, "epochs": 1})
    cached = engine.outputs(result.model, "validation")
    result.model.text_cache = None  # the same model, pooling every batch afresh
    assert torch.allclose(torch.as_tensor(cached), torch.as_tensor(engine.outputs(result.model, "validation")), atol=1e-5)


def test_a_head_export_scores_text_as_the_run_did(toy_dir, tmp_path):
    recipe = write_recipe(tmp_path / "recipe.yaml", tiny_recipe(toy_dir, output=str(tmp_path / "run"), search={
        "trials": 1, "space": {k: v for k, v in PARAMS.items()}}))
    outcome = run_recipe(load_recipe(recipe), options=RunOptions(workers=0), console=Console(file=io.StringIO()))
    best = outcome.best_dir
    assert best is not None
    meta = json.loads((best / "automl.json").read_text())
    assert meta["kind"] == "fused" and meta["adapter"] == "head" and meta["trial"] == 0
    assert {"fusion.safetensors", "features.json", "backbone"} <= {p.name for p in best.iterdir()}
    assert "mean-pooled" in (best / "README.md").read_text()

    test = pd.read_csv(toy_dir / "test.csv")
    model = automl.load_model(str(best))
    split = model.task.read(test, split="test", file="test.csv", label_names=model.task.labels)
    metrics = model.task.compute_metrics(model.outputs(test), split, {"labels": split.labels}, meta["calibration"])
    assert metrics == pytest.approx(meta["metrics"]["test"], abs=1e-9)  # what the run computed

    out = tmp_path / "scored.csv"
    result = CliRunner().invoke(cli, ["predict", str(best), str(toy_dir / "test.csv"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert pd.read_csv(out)["prediction"].astype(str).tolist() == model.predict(test)["prediction"].astype(str).tolist()

    # Explained by words through the encoder under the head (integrated gradients).
    explained = tmp_path / "why.jsonl"
    result = CliRunner().invoke(cli, ["explain", str(best), str(toy_dir / "test.csv"), "--rows", "2", "-o", str(explained)])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in explained.read_text().splitlines()]
    assert len(rows) == 2 and all(t["method"].startswith("layer integrated gradients") for r in rows for t in r["targets"]), rows


def test_a_grid_over_adapters_with_their_own_ranges():
    """Each adapter's own batch sizes and epochs (the private defaults) are grid axes
    under the names the trials ask for."""
    from automl.params import ParamSpec
    from automl.search.space import build_space

    space = build_space({"adapter": ["head", "lora"], "learning_rate": 1e-2}, {
        "batch_size": [ParamSpec(choices=[512, 1024], when={"adapter": "head"}), ParamSpec(choices=[128], when={"adapter": "lora"})],
        "epochs": [ParamSpec(low=20, high=21, when={"adapter": "head"}), ParamSpec(low=3, high=3, when={"adapter": "lora"})],
    })
    grid = space.grid()
    assert grid["batch_size[head]"] == [512, 1024] and grid["batch_size[lora]"] == [128]
    assert grid["epochs[head]"] == [20, 21] and grid["adapter"] == ["head", "lora"]
