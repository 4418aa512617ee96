"""Explanations (automl explain, predict --explain, load_model(...).explain, the report's
importance) for every exported kind and built-in task, on tiny real models."""

from __future__ import annotations

import io
import json
import math
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from rich.console import Console

import automl
from automl import importance, plugins
from automl.cli import cli
from automl.data import read_table
from automl.explain import cell_words, delete_units, row_units
from automl.testing import TinyBertBackbone, tiny_recipe, write_recipe, write_toy_table_data, write_toy_text_data

pytest.importorskip("captum")
pytest.importorskip("shap")
pytestmark = pytest.mark.slow

PARAMS = {"learning_rate": 5e-3, "batch_size": 16, "epochs": 6, "warmup_ratio": 0.06, "weight_decay": 0.01,
          "fusion_lr_factor": 1.0, "fusion_width": 32, "fusion_dropout": 0.0}


def _run(recipe: dict, where: Path, **options) -> Path:
    from automl.recipe import load_recipe
    from automl.search.supervisor import RunOptions, run_recipe

    plugins.reset()
    outcome = run_recipe(load_recipe(write_recipe(where / "recipe.yaml", recipe)), options=RunOptions(workers=0, **options),
                         console=Console(file=io.StringIO()))
    plugins.reset()
    return outcome.run_dir


@pytest.fixture(scope="module")
def table_run(tmp_path_factory) -> Path:
    """fraud-detection on toy table data whose label comes from amount and colour alone
    (the text is filler): a fused LoRA model exported as ``best/`` (no baseline, so that it
    is the export), and next to it (``baseline/``) the saved baseline of a second run on the
    same data (gradient boosting on the columns)."""
    base = tmp_path_factory.mktemp("explain-table")
    data = write_toy_table_data(base / "data", train=240, validation=80, test=40)
    space = {**PARAMS, "adapter": "lora", "lora_r": 8, "lora_alpha": 16, "class_weight_power": 0.5}
    recipe = tiny_recipe(data, output=str(base / "run"), name="table", task="fraud-detection",
                         task_options={"positive_label": "positive"}, search={"trials": 1, "space": space})
    run = _run(recipe, base, baseline=False)
    assert (run / "best" / "automl.json").exists()
    other = {**recipe, "output": str(base / "other"), "name": "other",
             "search": {"trials": 1, "space": {**space, "epochs": 1}}}
    (base / "other-recipe").mkdir()
    _run(other, base / "other-recipe", export=False)
    shutil.copytree(base / "other" / "baseline", run / "baseline")
    return run


def _rows(run: Path, n: int = 6) -> pd.DataFrame:
    return read_table(run.parent / "data" / "test.csv").head(n)


def _check_reasons(explanations, frame: pd.DataFrame, columns: set[str]) -> None:
    """Every reason names a column of the row and its value, or a word of the row's text."""
    assert len(explanations) == len(frame)
    for e in explanations:
        row = frame.iloc[e.row]
        assert e.targets, "every row has an explained target"
        for t in e.targets:
            reasons = t.reasons(e.units, 5)
            assert reasons
            for r in reasons:
                assert r.column in columns
                if r.word is not None:
                    span = cell_words(row[r.column])[r.position : r.position + (r.length or 1)]
                    assert " ".join(span) == r.word
                else:
                    assert r.value == ("" if pd.isna(row[r.column]) else str(row[r.column]))
                assert math.isfinite(r.contribution)


def _check_ig(model, explanations, frame) -> None:
    """Integrated gradients: the attributions sum to the change of the explained output,
    up to Captum's convergence delta, which is small next to that change."""
    for e in explanations:
        for t in e.targets:
            total = sum(t.contributions.values())
            assert total == pytest.approx(t.output - t.base + t.delta, abs=1e-3)
            assert abs(t.delta) <= 0.1 * abs(t.output - t.base) + 0.02, (t.delta, t.output, t.base)


def test_fused_lora_export_is_explained_by_columns_and_words(table_run):
    model = automl.load_model(table_run / "best")
    assert model.meta["kind"] == "fused" and model.meta["adapter"] == "lora"
    frame = _rows(table_run)
    explanations = model.explain(frame)
    _check_reasons(explanations, frame, {"text", "amount", "color"})
    _check_ig(model, explanations, frame)
    # The positive-class log-odds the explanation starts from are the model's own.
    scores = model.predict(frame)["score"].to_numpy()
    for e, score in zip(explanations, scores, strict=True):
        assert e.score == pytest.approx(float(score), abs=1e-5)
    # The label depends on amount and colour only: they lead the reasons of most rows.
    first = [e.targets[0].reasons(e.units, 1)[0].column for e in explanations]
    assert sum(c in ("amount", "color") for c in first) >= len(first) // 2 + 1


def test_baseline_export_attributions_sum_exactly(table_run):
    model = automl.load_model(table_run / "baseline")
    frame = _rows(table_run, 4)
    explanations = model.explain(frame)
    _check_reasons(explanations, frame, {"text", "amount", "color"})
    for e in explanations:
        t = e.targets[0]
        assert t.method.startswith("permutation SHAP")
        assert abs(t.delta) < 1e-6  # SHAP's permutation values are exactly efficient
        # the "empty" output is the model's on the row with every unit deleted
        empty = delete_units(frame.iloc[e.row], e.units)
        outputs = model.outputs(pd.DataFrame([empty]))
        assert t.base == pytest.approx(float(outputs[0, 1] - outputs[0, 0]), abs=1e-6)


def test_ensemble_export_combines_members_by_weight(table_run, tmp_path):
    """An ensemble of the fused model and the baseline, built as the export writes one."""
    directory = tmp_path / "ensemble"
    shutil.copytree(table_run / "best", directory / "members" / "trial-0")
    shutil.copytree(table_run / "baseline", directory / "members" / "baseline")
    members = [{"name": "trial-0", "kind": "trial", "weight": 0.75, "path": "members/trial-0"},
               {"name": "baseline", "kind": "baseline", "weight": 0.25, "path": "members/baseline"}]
    (directory / "ensemble.json").write_text(json.dumps({"members": members, "probabilities": True}))
    meta = json.loads((table_run / "best" / "automl.json").read_text())
    meta.update(kind="ensemble", members=members)
    (directory / "automl.json").write_text(json.dumps(meta))
    model = automl.load_model(directory)
    frame = _rows(table_run, 4)
    explanations = model.explain(frame)
    _check_reasons(explanations, frame, {"text", "amount", "color"})
    from automl.ensemble import softmax

    probs = softmax(model.outputs(frame))[:, 1]
    for e, p in zip(explanations, probs, strict=True):
        t = e.targets[0]
        assert t.output == pytest.approx(float(p), abs=1e-4)  # the ensemble's probability of the class
        assert sum(t.contributions.values()) == pytest.approx(t.output - t.base, abs=1e-4)


def test_permutation_importance_ranks_a_generating_column_first(table_run):
    model = automl.load_model(table_run / "best")
    frame = read_table(table_run.parent / "data" / "validation.csv")
    ranked = importance.permutation_importance(model, frame, metric="pr_auc", maximize=True, repeats=3)
    assert {r["column"] for r in ranked} == {"text", "amount", "color"}
    assert ranked[0]["column"] in ("amount", "color")
    assert ranked[0]["importance"] > ranked[-1]["importance"]
    assert all(len(r["repeats"]) == 3 and r["stddev"] >= 0 for r in ranked)


def test_report_shows_the_column_importance_and_the_model_card_lists_it(table_run):
    from automl.results.report import write_report

    (table_run / "best" / importance.IMPORTANCE_FILE).unlink(missing_ok=True)
    files = write_report(table_run)
    page = files.html.read_text()
    assert "What the model looks at" in page and "Column importance" in page
    assert (table_run / "plots" / "importance.png").exists()
    found = json.loads((table_run / "best" / importance.IMPORTANCE_FILE).read_text())
    assert found["columns"][0]["column"] in ("amount", "color")
    assert "What the model looks at" in (table_run / "best" / "README.md").read_text()
    assert json.loads(files.json.read_text())["importance"]["metric"] == found["metric"]


def test_importance_of_an_export_fitted_on_the_validation_rows_shuffles_held_out_rows(table_run, tmp_path):
    # The baseline beside the run was refit on training + validation rows (fraud-detection's
    # default): shuffled there, it measured what it remembered (all of VAERS: PR-AUC 1.0
    # whatever column was shuffled, every column's importance 0). The test rows are used.
    best = tmp_path / "best"
    shutil.copytree(table_run / "baseline", best)
    assert json.loads((best / "automl.json").read_text())["fitted_on_validation"] is True
    assert importance.fitted_on_validation(best) and not importance.fitted_on_validation(table_run / "best")
    recipe = json.loads((table_run / "run.json").read_text())["recipe"]
    found = importance.compute(best, recipe, word_rows=0)
    assert found["split"] == "test" and found["rows"] == 40
    assert found["columns"][0]["column"] in ("amount", "color") and found["columns"][0]["importance"] > 0
    assert "on 40 test rows" in "\n".join(importance.markdown(found))
    # Without test rows there is nothing held out to shuffle: no column importance, and why.
    no_test = {**recipe, "data": {**{k: v for k, v in recipe["data"].items() if k != "test"}, "test_fraction": 0}}
    found = importance.compute(best, no_test, word_rows=0)
    assert found["columns"] == [] and "fitted on the validation rows too" in found["columns_note"]
    assert "No column importance" in "\n".join(importance.markdown(found))
    # An export never fitted on them keeps the validation rows.
    assert importance.compute(table_run / "best", recipe, word_rows=0)["split"] == "validation"


def test_a_class_s_words_leave_out_spans_of_words_and_the_report_says_why(table_run):
    # Rows longer than an explanation's units are explained by spans of words; listed as a
    # class's "words", each was a phrase found once (VAERS: "later while deployed feb-aug 04").
    from automl.results.report import _importance_html

    model = automl.load_model(table_run / "baseline")
    frame = _rows(table_run, 4)
    words, spans = importance.class_words(model, frame)
    assert spans == 0 and all(" " not in w for items in words.values() for w, _ in items)
    long = frame.assign(text=[" ".join([text] * 40) for text in frame["text"]])
    words, spans = importance.class_words(model, long)
    assert words == {} and spans > 0
    found = {"columns": [{"column": "amount", "importance": 0.1, "stddev": 0.01}], "rows": 40, "split": "test",
             "metric": "pr_auc", "repeats": 3, "words": {}, "words_note": importance.SPANS_NOTE}
    assert importance.SPANS_NOTE in importance.markdown(found)
    assert "explained by spans of words" in _importance_html(found, None)


def test_cli_explain_writes_jsonl_csv_and_html(table_run, tmp_path):
    data = table_run.parent / "data" / "test.csv"
    runner = CliRunner()
    out = tmp_path / "why.jsonl"
    result = runner.invoke(cli, ["explain", str(table_run / "best"), str(data), "--rows", "3", "-o", str(out),
                                 "--html", str(tmp_path / "why.html")])
    assert result.exit_code == 0, result.output
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["row"] for x in lines] == [0, 1, 2]
    assert all(x["targets"][0]["reasons"] and "convergence_delta" in x["targets"][0] for x in lines)
    page = (tmp_path / "why.html").read_text()
    assert "rgba(" in page and "row 2" in page
    result = runner.invoke(cli, ["explain", str(table_run / "best"), str(data), "--rows", "2", "-o", str(tmp_path / "w.csv")])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "w.csv")
    assert set(table["row"]) == {0, 1} and set(table["column"]) <= {"text", "amount", "color"}


def test_predict_explain_adds_the_top_reasons(table_run, tmp_path):
    data = table_run.parent / "data" / "test.csv"
    out = tmp_path / "scored.csv"
    result = CliRunner().invoke(cli, ["predict", str(table_run / "best"), str(data), "--explain", "2", "-o", str(out)])
    assert result.exit_code == 0, result.output
    scored = pd.read_csv(out)
    assert len(scored) == 40 and scored["reasons"].map(lambda s: s.count(";") == 1).all()
    assert scored["reasons"].str.contains("amount=|color=|text: '").all()


def test_without_the_extra_explain_says_what_to_install(table_run, monkeypatch):
    monkeypatch.setitem(sys.modules, "captum", None)  # import captum fails as if not installed
    result = CliRunner().invoke(cli, ["explain", str(table_run / "best"), "x.csv"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "error: automl explain needs the optional extra: pip install 'automl[explain]' (captum and shap)"]


def test_long_rows_are_explained_by_spans_of_words():
    row = pd.Series({"text": " ".join(f"w{i}" for i in range(100)), "amount": 1})
    units = row_units([("text", "text"), ("amount", "value")], row, max_units=11)
    assert len(units) <= 11 and units[-1].column == "amount"
    spans = [u for u in units if u.column == "text"]
    assert [w for u in spans for w in u.text.split()] == row["text"].split()
    assert delete_units(row, spans[:1])["text"].split()[0] == spans[1].text.split()[0]


def test_deleting_units_removes_words_and_empties_columns():
    row = pd.Series({"text": "a b  c", "amount": 3.5, "tokens": ["x", "y"]})
    units = row_units([("text", "text"), ("amount", "value"), ("tokens", "text")], row)
    assert [(u.column, u.word, u.text) for u in units] == [
        ("text", 0, "a"), ("text", 1, "b"), ("text", 2, "c"), ("amount", None, "3.5"), ("tokens", 0, "x"), ("tokens", 1, "y")]
    left = delete_units(row, [units[1], units[3], units[4]])
    assert left["text"] == "a c" and left["amount"] is None and left["tokens"] == ["y"]


# --------------------------------------------------------------------------- other tasks


def _hand_export(directory: Path, task: str, head: str, labels: list[str] | None, problem: str | None) -> Path:
    """A real (randomly initialised) tiny model saved the way the export saves a
    text-only fine-tuned model."""
    backbone = TinyBertBackbone()
    num = len(labels) if labels else 1
    config = backbone.model_config(head=head, num_labels=num, id2label=dict(enumerate(labels)) if labels else None,
                                   problem_type=problem)
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

    import torch

    torch.manual_seed(0)
    cls = AutoModelForTokenClassification if head == "token-classification" else AutoModelForSequenceClassification
    cls.from_config(config).save_pretrained(str(directory), safe_serialization=True)
    backbone.load_tokenizer().save_pretrained(str(directory))
    meta = {"task": task, "task_options": {}, "data": {"text_column": "text", "label_column": "label"},
            "head": head, "labels": labels, "kind": "transformers", "max_length": 32, "calibration": {}}
    (directory / "automl.json").write_text(json.dumps(meta))
    return directory


def test_token_classification_names_the_words_behind_each_entity(tmp_path):
    directory = _hand_export(tmp_path / "ner", "token-classification", "token-classification",
                             ["O", "B-ORG", "I-ORG", "B-PER", "I-PER"], None)
    model = automl.load_model(directory)
    frame = pd.DataFrame({"tokens": [["Ada", "Lovelace", "joined", "Acme", "Corp", "today"], ["hello", "there"]]})
    explanations = model.explain(frame)
    predicted = model.predict(frame)
    assert sum(len(e.targets) for e in explanations) == sum(len(x) for x in predicted["entities"])
    assert any(e.targets for e in explanations)
    for e in explanations:
        words = frame["tokens"][e.row]
        for t in e.targets:
            assert ":" in t.target
            for r in t.reasons(e.units, 3):
                assert r.column == "tokens" and words[r.position] == r.word
        _check_ig(model, [e], frame)


def test_regression_says_what_raised_and_lowered_the_value(tmp_path):
    directory = _hand_export(tmp_path / "reg", "text-regression", "sequence-classification", None, "regression")
    model = automl.load_model(directory)
    frame = pd.DataFrame({"text": ["the room was clean and quiet", "noisy dirty and far too expensive"]})
    explanations = model.explain(frame)
    _check_reasons(explanations, frame, {"text"})
    _check_ig(model, explanations, frame)
    values = model.outputs(frame)[:, 0]
    for e, v in zip(explanations, values, strict=True):
        assert e.targets[0].target == "value" and e.targets[0].output == pytest.approx(float(v), abs=1e-4)
        signs = {np.sign(c) for c in e.targets[0].contributions.values() if c}
        assert signs  # signed contributions: what raised (+) and lowered (-) the value


def test_text_only_fine_tuned_export(tmp_path):
    data = write_toy_text_data(tmp_path / "data", train=120, validation=40, test=20)
    recipe = tiny_recipe(data, output=str(tmp_path / "run"), name="text", search={
        "trials": 1, "space": {"learning_rate": 5e-3, "epochs": 3, "batch_size": 16, "adapter": "full"}})
    from automl.recipe import load_recipe
    from automl.search.supervisor import RunOptions, run_recipe

    plugins.reset()
    outcome = run_recipe(load_recipe(write_recipe(tmp_path / "r.yaml", recipe)),
                         options=RunOptions(workers=0, baseline=False), console=Console(file=io.StringIO()))
    plugins.reset()
    model = automl.load_model(outcome.run_dir / "best")
    assert model.meta["kind"] == "transformers"
    frame = read_table(data / "test.csv").head(5)
    explanations = model.explain(frame)
    _check_reasons(explanations, frame, {"text"})
    _check_ig(model, explanations, frame)
