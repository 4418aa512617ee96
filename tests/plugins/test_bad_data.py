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


# ---------------------------------------------------------------- round 3


def with_options(recipe: Path, **options) -> Path:
    body = yaml.safe_load(recipe.read_text())
    body["task_options"] = {**(body.get("task_options") or {}), **options}
    recipe.write_text(yaml.safe_dump(body))
    return recipe


@pytest.mark.parametrize("value", [1, "1", 1.0, "1.0"])
def test_fraud_positive_label_is_any_scalar_for_a_0_1_column(tmp_path, data_root, value):
    recipe = with_options(tiny_recipe_for("fraud-detection", data_root, tmp_path), positive_label=value)
    code, out = check(recipe)
    assert code == 0, out
    assert "labels (2): 0, 1" in out  # the positive class last


def boolean_labels(path: Path) -> None:
    import pandas as pd

    frame = pd.read_csv(path)
    frame["is_fraud"] = frame["is_fraud"].map({0: "false", 1: "true"})
    frame.to_csv(path, index=False)


@pytest.mark.parametrize("value", [True, "true", "True"])
def test_fraud_positive_label_true_for_a_boolean_column(broken, tmp_path, data_root, value):
    recipe = tiny_recipe_for("fraud-detection", data_root, tmp_path)
    root = tmp_path / "bool"
    body = yaml.safe_load(recipe.read_text())
    for split, path in split_paths(data_root, "fraud").items():
        target = root / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
        boolean_labels(target)
        body["data"][split] = str(target)
    body["task_options"]["positive_label"] = value
    recipe.write_text(yaml.safe_dump(body))
    code, out = check(recipe)
    assert code == 0, out
    assert "labels (2): False, True" in out


@pytest.mark.parametrize("value", [2, "fraud", True])
def test_fraud_positive_label_not_in_the_column_says_what_it_holds(tmp_path, data_root, value):
    recipe = with_options(tiny_recipe_for("fraud-detection", data_root, tmp_path), positive_label=value)
    code, out = check(recipe)
    assert_one_line(code, out, "task_options.positive_label", "'is_fraud'", "the column holds: 0, 1")


@pytest.mark.parametrize("task_name", ["fraud-detection", "text-classification", "text-regression"])
def test_csv_with_bom_and_crlf_is_read(broken, task_name):
    def edit(path: Path) -> None:
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))

    code, out, path = broken(task_name, "train", edit)
    assert code == 0, out
    assert out.startswith("ok "), out


@pytest.mark.parametrize("task_name", ["fraud-detection", "text-classification"])
def test_duplicate_column_names(broken, task_name):
    def edit(path: Path) -> None:
        lines = path.read_text().splitlines(keepends=True)
        first = lines[0].rstrip("\n").split(",")
        first[0] = first[-1]  # the label column's name twice
        path.write_text(",".join(first) + "\n" + "".join(lines[1:]))

    code, out, path = broken(task_name, "train", edit)
    assert_one_line(code, out, str(path), f"column '{LABEL[task_name]}' appears twice")


def test_a_huge_line_is_one_line_naming_it(broken, monkeypatch):
    """A line over the limit (a missing newline or quote) is refused before the file is
    read into memory; the limit is lowered so that the test writes kilobytes, not 64 MiB."""
    from automl import data

    monkeypatch.setattr(data, "MAX_LINE", 4096)

    def edit(path: Path) -> None:
        lines = path.read_text().splitlines(keepends=True)
        lines[3] = lines[3].rstrip("\n") + " filler" * 1000 + "\n"
        path.write_text("".join(lines))

    code, out, path = broken("text-classification", "train", edit)
    assert_one_line(code, out, str(path), "line 4 is longer than 4096 bytes", "newline or a closing quote")


def conll_as_tsv(root: Path, data_root: Path) -> dict[str, Path]:
    paths = {}
    for split, path in split_paths(data_root, "ner").items():
        target = root / f"{split}.tsv"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
        paths[split] = target
    return paths


def test_token_files_named_tsv_need_data_format_conll(tmp_path, data_root):
    """``word<TAB>tag`` files named ``.tsv`` (biomedical NER corpora): read as a table they
    lack the tag column; the check says what to set, and with it they read as CoNLL."""
    recipe = tiny_recipe_for("token-classification", data_root, tmp_path)
    body = yaml.safe_load(recipe.read_text())
    paths = conll_as_tsv(tmp_path / "tsv", data_root)
    body["data"].update({split: str(path) for split, path in paths.items()})
    recipe.write_text(yaml.safe_dump(body))
    code, out = check(recipe)
    assert_one_line(code, out, str(paths["train"]), "looks like CoNLL", "set data.format: conll")
    body["data"]["format"] = "conll"
    recipe.write_text(yaml.safe_dump(body))
    code, out = check(recipe)
    assert code == 0, out
    assert "labels (" in out and "B-PRODUCT" in out


def test_data_format_reads_a_csv_named_txt_as_tsv(broken):
    """A tab-separated table whose suffix says otherwise reads with ``data.format: tsv``."""

    def edit(path: Path) -> Path:
        import pandas as pd

        target = path.with_suffix(".data")
        pd.read_csv(path).to_csv(target, sep="\t", index=False)
        return target

    code, out, path = broken("text-classification", "train", edit)
    assert_one_line(code, out, str(path), "unknown data format '.data'")
    recipe = next(path.parents[2].glob("*-tiny.yaml"))
    body = yaml.safe_load(recipe.read_text())
    body["data"]["format"] = "tsv"
    for split in ("validation", "test"):
        import pandas as pd

        other = Path(body["data"][split])
        pd.read_csv(other).to_csv(other.with_suffix(".data"), sep="\t", index=False)
        body["data"][split] = str(other.with_suffix(".data"))
    recipe.write_text(yaml.safe_dump(body))
    code, out = check(recipe)
    assert code == 0, out


def hf_dir(tmp_path: Path, *, weights: bool = True, tokenizer: bool = True, auto_map: str | None = None) -> Path:
    """A copy of the tiny test model's directory with parts left out or remote code asked for."""
    import json
    import shutil

    from automl.testing import minilm_dir

    model = tmp_path / "model"
    model.mkdir()
    config = json.loads((minilm_dir() / "config.json").read_text())
    if auto_map is not None:
        config["auto_map"] = {"AutoModel": "modeling_custom.CustomModel"}
        config["model_type"] = auto_map
    (model / "config.json").write_text(json.dumps(config))
    if weights:
        shutil.copy(minilm_dir() / "model.safetensors", model / "model.safetensors")
    if tokenizer:
        for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
            if (minilm_dir() / name).exists():
                shutil.copy(minilm_dir() / name, model / name)
    return model


def hf_recipe(tmp_path: Path, data_root: Path, model: Path, **training) -> Path:
    recipe = tiny_recipe_for("text-classification", data_root, tmp_path)
    body = yaml.safe_load(recipe.read_text())
    body["backbone"] = "hf"
    body["backbone_options"] = {"path": str(model)}
    body["training"].update(training)
    recipe.write_text(yaml.safe_dump(body))
    return recipe


@pytest.mark.parametrize(
    ("parts", "words"),
    [
        ({"weights": False}, ["has no weights (model.safetensors)"]),
        ({"tokenizer": False}, ["has no tokenizer"]),
        ({"auto_map": "custom-net"}, ["asks for remote code (auto_map", "training.trust_remote_code is off"]),
    ],
)
def test_recipe_check_looks_inside_an_hf_model_directory(tmp_path, data_root, parts, words):
    model = hf_dir(tmp_path, **parts)
    code, out = check(hf_recipe(tmp_path, data_root, model))
    assert_one_line(code, out, str(model), "backbone_options", *words)


def test_remote_code_a_built_in_class_replaces_is_a_warning(tmp_path, data_root):
    model = hf_dir(tmp_path, auto_map="bert")
    code, out = check(hf_recipe(tmp_path, data_root, model))
    assert code == 0, out
    assert "warning" in out and "asks for remote code (auto_map)" in out and "'bert' classes are used" in out


def test_remote_code_allowed_passes_the_file_check(tmp_path, data_root):
    """With trust_remote_code on, the directory's files pass (the memory estimate, which
    would load the code, is left out: this directory has none)."""
    model = hf_dir(tmp_path, auto_map="custom-net")
    recipe = hf_recipe(tmp_path, data_root, model, trust_remote_code=True)
    result = CliRunner().invoke(cli, ["recipe", "check", str(recipe), "--no-memory"])
    assert result.exit_code == 0, result.output
