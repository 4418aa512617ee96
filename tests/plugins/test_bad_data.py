"""Bad data is one line naming the file (and the column where there is one), exit code 2,
for every built-in task: ``automl recipe check`` reads the data the way a run does."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from plugin_helpers import SAMPLES, split_paths, tiny_recipe_for

from automl.cli import cli

LABEL = {"fraud-detection": "is_fraud", "text-classification": "label", "text-regression": "rating",
         "token-classification": "tags"}


def check(recipe: Path) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["recipe", "check", str(recipe)])
    lines = [line for line in result.output.splitlines() if not line.startswith("warning: plugin")]
    return result.exit_code, "\n".join(lines)


@pytest.fixture
def broken(tmp_path, data_root):
    """Factory: copy a task's generated data, let *edit(split, path)* break one file, and
    return ``(exit code, output, broken file)`` of ``automl recipe check``."""

    def make(task_name: str, split: str, edit) -> tuple[int, str, Path]:
        root = tmp_path / "data"
        kind = SAMPLES[task_name].kind
        for name, path in split_paths(data_root, kind).items():
            target = split_paths(root, kind)[name]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
        target = split_paths(root, kind)[split]
        # *edit* may write another file (e.g. JSONL) and return it instead.
        written = edit(target)
        target = written if isinstance(written, Path) else target
        recipe = tiny_recipe_for(task_name, root, tmp_path)
        body = yaml.safe_load(recipe.read_text())
        body["data"][split] = str(target)
        recipe.write_text(yaml.safe_dump(body))
        code, out = check(recipe)
        return code, out, target

    return make


def assert_one_line(code: int, out: str, *words: str) -> None:
    assert code == 2, out
    assert len(out.strip().splitlines()) == 1, out
    assert out.startswith("error: "), out
    for word in words:
        assert word in out, (word, out)


def replace_in_csv(column: str, value: str, row: int = 0):
    def edit(path: Path) -> None:
        import pandas as pd

        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        frame.loc[row, column] = value
        frame.to_csv(path, index=False)

    return edit


def drop_column(column: str):
    def edit(path: Path) -> None:
        import pandas as pd

        pd.read_csv(path, keep_default_na=False).drop(columns=[column]).to_csv(path, index=False)

    return edit


def conll_edit(old: str, new: str):
    def edit(path: Path) -> None:
        text = path.read_text()
        assert old in text
        path.write_text(text.replace(old, new))

    return edit


@pytest.mark.parametrize("task_name", ["fraud-detection", "text-classification", "text-regression"])
def test_missing_label_column(broken, task_name):
    code, out, path = broken(task_name, "validation", drop_column(LABEL[task_name]))
    assert_one_line(code, out, str(path), f"'{LABEL[task_name]}'", "not found")


def jsonl(*lines: str):
    """An edit that replaces the split with a JSONL file of *lines*."""

    def edit(path: Path) -> Path:
        target = path.with_suffix(".jsonl")
        target.write_text("".join(line + "\n" for line in lines))
        return target

    return edit


def test_missing_tags_column(broken):
    # A CoNLL file always has tags; a JSONL file may lack its tag column.
    code, out, path = broken("token-classification", "train", jsonl('{"tokens": ["my", "Kindle", "broke"]}'))
    assert_one_line(code, out, str(path), "'tags'")


@pytest.mark.parametrize(
    ("task_name", "edit", "value"),
    [
        ("fraud-detection", replace_in_csv("is_fraud", "7"), "'7'"),
        ("text-classification", replace_in_csv("label", "mixed"), "'mixed'"),
        ("token-classification", conll_edit("\tO\n", "\tB-MISC\n"), "'B-MISC'"),
    ],
)
def test_label_not_in_training_data(broken, task_name, edit, value):
    code, out, path = broken(task_name, "test", edit)
    assert_one_line(code, out, str(path), value, f"'{LABEL[task_name]}'", "not in the training data")


@pytest.mark.parametrize("task_name", sorted(SAMPLES))
def test_empty_file(broken, task_name):
    code, out, path = broken(task_name, "validation", lambda p: p.write_bytes(b""))
    assert_one_line(code, out, str(path), "empty")


@pytest.mark.parametrize("task_name", sorted(SAMPLES))
def test_not_utf8(broken, task_name):
    def latin1(path: Path) -> None:
        data = path.read_bytes()
        second_line = data.index(b"\n") + 1
        path.write_bytes(data[:second_line] + "\u00e9".encode("latin-1") + data[second_line:])

    code, out, path = broken(task_name, "train", latin1)
    assert_one_line(code, out, str(path), "UTF-8")


@pytest.mark.parametrize("split", ["train", "validation"])
def test_fraud_numeric_column_with_text(broken, split):
    code, out, path = broken("fraud-detection", split, replace_in_csv("amount", "twelve dollars", row=3))
    assert_one_line(code, out, str(path), "'amount'", "row 4", "'twelve dollars'", "number")


def test_regression_target_with_text(broken):
    code, out, path = broken("text-regression", "validation", replace_in_csv("rating", "great", row=1))
    assert_one_line(code, out, str(path), "'rating'", "row 2", "number")


def one_class(column: str, value: str):
    def edit(path: Path) -> None:
        import pandas as pd

        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        frame[column] = value
        frame.to_csv(path, index=False)

    return edit


@pytest.mark.parametrize(
    ("task_name", "edit"),
    [
        ("fraud-detection", one_class("is_fraud", "0")),
        ("text-classification", one_class("label", "positive")),
        ("text-regression", one_class("rating", "3.0")),
        ("token-classification", lambda p: p.write_text(
            "\n\n".join("\n".join(f"{w}\tO" for w in s.split()) for s in ("my phone broke", "call me")) + "\n")),
    ],
)
def test_one_class_only(broken, task_name, edit):
    code, out, path = broken(task_name, "train", edit)
    assert_one_line(code, out, str(path), f"'{LABEL[task_name]}'")


def test_fraud_more_than_two_classes(broken):
    code, out, path = broken("fraud-detection", "train", replace_in_csv("is_fraud", "maybe"))
    assert_one_line(code, out, str(path), "'is_fraud'", "exactly two")


def test_fraud_unknown_positive_label(tmp_path, data_root):
    recipe = tiny_recipe_for("fraud-detection", data_root, tmp_path)
    body = yaml.safe_load(recipe.read_text())
    body["task_options"]["positive_label"] = "fraud"
    recipe.write_text(yaml.safe_dump(body))
    code, out = check(recipe)
    assert_one_line(code, out, "train.csv", "positive_label", "'is_fraud'")


def test_token_count_mismatch(broken):
    edit = jsonl('{"tokens": ["my", "Kindle"], "tags": ["O"]}', '{"tokens": ["hi"], "tags": ["B-PRODUCT"]}')
    code, out, path = broken("token-classification", "train", edit)
    assert_one_line(code, out, str(path), "'tokens'", "'tags'", "2 words")
