"""Each built-in task end to end on the tiny backbone: a real one-trial search on a few
hundred generated rows, the exported model, and predictions from the export."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner
from plugin_helpers import SAMPLES, split_paths, tiny_recipe_for
from rich.console import Console

from automl.cli import cli
from automl.data import read_table
from automl.recipe import load_recipe
from automl.results.predict import load_model, predict_frame
from automl.search.supervisor import RunOptions, run_recipe


@pytest.mark.parametrize("task_name", sorted(SAMPLES))
def test_search_export_predict(task_name, data_root, tmp_path):
    recipe = tiny_recipe_for(task_name, data_root, tmp_path, space={
        "learning_rate": 3e-3, "batch_size": 32, "epochs": 1, "adapter": "full"})
    body = yaml.safe_load(recipe.read_text())
    body["data"]["max_rows"] = 160
    body["training"]["max_length"] = 32
    recipe.write_text(yaml.safe_dump(body))
    outcome = run_recipe(load_recipe(recipe), options=RunOptions(workers=0), console=Console(file=io.StringIO()))
    assert not outcome.interrupted
    assert outcome.summary.best_value is not None
    assert outcome.best_dir is not None
    meta = json.loads((outcome.best_dir / "automl.json").read_text())
    # best/ holds the best model of the run: the fine-tuned one, or the saved baseline
    # (fraud-detection's gradient boosting) when it is better on validation or the best
    # trial's lead is within one standard error (automl.ensemble.choose_single).
    kind = meta.get("kind", "transformers")
    # a text-only export is a transformers directory; a fused one keeps its encoder in backbone/
    expected = {"baseline": "model.skops", "fused": "backbone/config.json"}.get(kind, "config.json")
    assert (outcome.best_dir / expected).exists()
    if kind == "baseline":
        sign = 1 if meta["objective"]["direction"] == "maximize" else -1
        ahead = sign * meta["metrics"]["validation"][meta["objective"]["metric"]] > sign * outcome.summary.best_value
        ensemble = outcome.run_dir / "ensemble.json"
        choice = json.loads(ensemble.read_text()).get("choice", {}) if ensemble.exists() else {}
        within_noise = choice.get("chosen") == "baseline" and (
            choice.get("standard_error") is None or choice["lead"] <= choice["se_rule"] * choice["standard_error"])
        assert ahead or within_noise, (meta["metrics"]["validation"], outcome.summary.best_value, choice)
    assert meta["task"] == task_name
    assert set(meta["metrics"]["test"]) >= {SAMPLES_METRIC[task_name]}
    assert (outcome.run_dir / "baseline.json").exists()

    test_file = split_paths(data_root, SAMPLES[task_name].kind)["test"]
    frame = read_table(test_file)
    predicted = predict_frame(load_model(outcome.best_dir), frame, file=str(test_file))
    assert len(predicted) == len(frame)
    assert predicted["prediction"].notna().all()
    if task_name == "text-regression":
        low, high = meta["calibration"]["min"], meta["calibration"]["max"]
        assert predicted["prediction"].between(low, high).all()
    if task_name == "fraud-detection":
        assert 0 < meta["calibration"]["threshold"] < 1
        assert set(predicted["is_fraud"]) <= {True, False}
        # the same through the command line, as a user runs it
        out = tmp_path / "predictions.csv"
        result = CliRunner().invoke(cli, ["predict", str(outcome.best_dir), str(test_file), "-o", str(out), "--device", "cpu"])
        assert result.exit_code == 0, result.output
        assert list(pd.read_csv(out)["prediction"]) == list(predicted["prediction"].astype(int))


SAMPLES_METRIC = {
    "fraud-detection": "pr_auc",
    "text-classification": "f1_macro",
    "text-regression": "rmse",
    "token-classification": "entity_f1",
}
