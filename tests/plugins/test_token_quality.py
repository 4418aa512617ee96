"""Entity extraction quality tools: the collapse detector, per-type metrics and the error
table in the report, the entity-weighted / smoothed token loss, and the step budget that
gives small data enough optimiser steps."""

from __future__ import annotations

import io
import json

import pytest
import torch
import yaml
from plugin_helpers import fake_outputs, load, tiny_recipe_for
from rich.console import Console

from automl.recipe import load_recipe
from automl.results import gather
from automl.search.supervisor import RunOptions, run_recipe
from automl_plugins.token_classification import (
    TokenClassification,
    collapse_note,
    entity_scores,
    error_table,
    sequence_metrics,
)

GOLD = [["B-person", "I-person", "O", "B-location"], ["O", "B-product", "O", "O"]]


@pytest.mark.parametrize(
    ("pred", "collapsed"),
    [
        ([["O"] * 4, ["O"] * 4], "no entity predicted"),
        ([["B-person"] * 4, ["B-person"] * 4], "one tag"),
        ([["I-location"] * 4, ["I-location"] * 4], "one tag"),
        ([["B-person", "I-person", "O", "O"], ["O", "O", "O", "O"]], None),
        ([["O", "O", "O", "B-location"], ["O"] * 4], None),
    ],
)
def test_collapse_detector(pred, collapsed):
    metrics = sequence_metrics(GOLD, pred)
    note = collapse_note(metrics)
    if collapsed is None:
        assert note is None
    else:
        assert note is not None and collapsed in note
    assert TokenClassification().diagnose(metrics) == note


def test_collapse_counts_entities_and_tag_kinds():
    metrics = sequence_metrics(GOLD, [["B-person", "I-person", "O", "B-location"], ["O", "B-product", "B-product", "O"]])
    assert metrics["predicted_entities"] == 4
    assert metrics["predicted_tag_kinds"] == 5  # O, B-person, I-person, B-location, B-product


def test_error_table_kinds():
    gold = [["B-person", "I-person", "O", "B-location", "O", "B-group", "I-group"]]
    pred = [["B-person", "O", "O", "B-group", "B-product", "B-group", "O"]]
    words = [["Ada", "Lovelace", "in", "London", "iPhone", "The", "Beatles"]]
    rows = {(r[0], r[1], r[2]): r for r in error_table(gold, pred, words)}
    assert rows[("wrong boundaries", "person", "person")][3] == 1
    assert rows[("wrong type", "location", "group")][4] == "London"
    assert rows[("spurious", "-", "product")][4] == "iPhone"
    assert rows[("wrong boundaries", "group", "group")][4] == "The Beatles"
    assert not [r for r in rows.values() if r[0] == "missed"]
    missed = error_table([["B-person", "O"]], [["O", "O"]], [["Ada", "said"]])
    assert missed == [["missed", "person", "-", 1, "Ada"]]


def test_report_tables_per_type(data_root, tokenizer):
    task, data = load("token-classification", data_root)
    encoded = task.encode(data.test, tokenizer, 48)
    outputs = fake_outputs(task, data.test, encoded, seed=3)
    per_type, errors = task.tables(outputs, data.test, encoded, {})
    expected = entity_scores(task.gold_tags(data.test), task.predicted_tags(outputs, data.test, encoded))
    assert per_type.headers == ["type", "precision", "recall", "F1", "support"]
    by_type = {row[0]: row for row in per_type.rows}
    assert set(by_type) == {k for k in expected if k != "micro"} | {"all (micro)"}
    for kind, scores in expected.items():
        row = by_type["all (micro)" if kind == "micro" else kind]
        assert row[1:4] == pytest.approx([scores["precision"], scores["recall"], scores["f1"]])
        assert row[4] == int(scores["support"])
    assert errors.rows and all(r[3] >= 1 for r in errors.rows)
    assert [r[3] for r in errors.rows] == sorted((r[3] for r in errors.rows), reverse=True)


def test_entity_weight_and_label_smoothing_loss():
    task = TokenClassification()
    task.labels = ["O", "B-person", "I-person"]
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 3)
    labels = torch.tensor([[0, 1, 2, 0, -100], [0, 0, 0, 1, -100]])
    assert task.loss(logits, labels, {}) is None
    assert task.loss(logits, labels, {"entity_weight": 1.0, "label_smoothing": 0.0}) is None
    weighted = task.loss(logits, labels, {"entity_weight": 3.0})
    expected = torch.nn.functional.cross_entropy(
        logits.reshape(-1, 3), labels.reshape(-1), weight=torch.tensor([1.0, 3.0, 3.0]), ignore_index=-100
    )
    assert torch.isclose(weighted, expected)
    smoothed = task.loss(logits, labels, {"label_smoothing": 0.1})
    assert torch.isclose(smoothed, torch.nn.functional.cross_entropy(
        logits.reshape(-1, 3), labels.reshape(-1), ignore_index=-100, label_smoothing=0.1))


def _token_run(data_root, tmp_path, name, eval_every=None, **space):
    recipe = tiny_recipe_for("token-classification", data_root, tmp_path / name, space={
        "learning_rate": 3e-3, "batch_size": 16, "epochs": 2, "adapter": "full", **space})
    body = yaml.safe_load(recipe.read_text())
    body["data"]["max_rows"] = 160
    if eval_every is not None:
        body["training"]["eval_every"] = eval_every
    recipe.write_text(yaml.safe_dump(body))
    return run_recipe(load_recipe(recipe), options=RunOptions(workers=0), console=Console(file=io.StringIO()))


def test_collapsed_trial_is_named_in_the_leaderboard_and_report_has_tables(data_root, tmp_path):
    # An entity weight near zero teaches the tagger that only O matters: it collapses.
    collapsed = _token_run(data_root, tmp_path, "collapsed", eval_every=20, entity_weight=1e-4, min_steps=40)
    results = gather(collapsed.run_dir)
    (trial,) = results.trials
    assert trial.metrics["entity_f1"] == 0.0
    assert trial.reason is not None and "collapsed" in trial.reason

    # Weighting entity tags up, with the steps small data needs: the tagger finds entities.
    healthy = _token_run(data_root, tmp_path, "weighted", entity_weight=4.0, min_steps=120)
    (trial,) = gather(healthy.run_dir).trials
    assert trial.metrics["predicted_entities"] > 0 and trial.reason is None

    meta = json.loads((healthy.best_dir / "automl.json").read_text())
    titles = [t["title"] for t in meta["tables"]]
    assert titles == ["Entity metrics per type (test)", "Most frequent entity errors (test)"]
    from automl.results.report import write_report

    files = write_report(healthy.run_dir)
    html = files.html.read_text()
    assert "Entity metrics per type (test)" in html and "Most frequent entity errors" in html
    assert "### Entity metrics per type (test)" in files.markdown.read_text()


def test_bio_types_seen_once_get_both_tags():
    import pandas as pd

    train = pd.DataFrame({"tokens": [["Ada", "Lovelace", "said"], ["iPhone"]],
                          "tags": [["B-person", "I-person", "O"], ["B-product"]]})
    names = TokenClassification().label_names(train, file="train")
    assert names[0] == "O"
    assert set(names) == {"O", "B-person", "I-person", "B-product", "I-product"}


def test_token_defaults_reach_the_space_and_the_warm_start(data_root, tmp_path):
    from automl.resolve import resolve

    recipe = tiny_recipe_for("token-classification", data_root, tmp_path, space={})
    body = yaml.safe_load(recipe.read_text())
    body["search"] = {"trials": 4}
    body["backbone"] = "minilm-l6"
    recipe.write_text(yaml.safe_dump(body))
    resolved = resolve(load_recipe(recipe))
    assert resolved.space.fixed["min_steps"] == TokenClassification.MIN_STEPS
    lr = {d.when["adapter"][0]: d.distribution for d in resolved.space.dimensions if d.name == "learning_rate"}
    assert lr["full"].high <= lr["lora"].low  # LoRA never draws a full-fine-tuning rate
    first = resolved.start_from
    assert [c["adapter"] for c in first] == ["full", "lora"]
    assert all(c["epochs"] == 5 and c["batch_size"] == 16 and c["entity_weight"] == 2.5 for c in first)
    assert lr["full"].low < first[0]["learning_rate"] < lr["full"].high
    (weight,) = [d.distribution for d in resolved.space.dimensions if d.name == "entity_weight"]
    assert (weight.low, weight.high, weight.log) == (1.0, 4.0, True)


def test_a_bad_entity_weight_is_one_line_before_training(data_root, tmp_path):
    from click.testing import CliRunner

    from automl.cli import cli

    recipe = tiny_recipe_for("token-classification", data_root, tmp_path, space={"entity_weight": 0})
    result = CliRunner().invoke(cli, ["run", str(recipe)])
    assert result.exit_code == 2, result.output
    line = result.output.strip().splitlines()[-1]
    assert "entity_weight" in line and "> 0" in line and "Traceback" not in result.output
