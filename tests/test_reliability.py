"""Bad input and hostile conditions: every one is a one-line error (exit 2) or a
documented handling, never a traceback, never a half-written run that breaks the next."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from automl.cli import cli
from automl.data import read_table
from automl.errors import DataError, RecipeError, UserError
from automl.recipe import load_recipe, parse_recipe
from automl.testing import tiny_recipe, write_recipe

ROOT = Path(__file__).resolve().parents[1]


def invoke(*args: str) -> tuple[int, list[str], str]:
    result = CliRunner().invoke(cli, list(args))
    lines = [l for l in result.output.splitlines() if l.strip() and not l.startswith("warning: plugin")]
    return result.exit_code, lines, result.output


def one_line_error(args: list[str], *expected: str) -> str:
    code, lines, out = invoke(*args)
    assert code == 2, out
    assert "Traceback" not in out
    errors = [l for l in lines if l.startswith("error: ")]
    assert len(errors) == 1 and len(lines) == 1, out
    for piece in expected:
        assert piece in errors[0], (piece, errors[0])
    return errors[0]


# ----------------------------------------------------------------------------- bad data

GOOD_ROW = "the product was great and i love it"


def _write(path: Path, content: bytes | str) -> Path:
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


BAD_DATA = [
    ("empty file", b"", ["is empty"]),
    ("header only", "text,label\n", ["header but no data rows"]),
    ("wrong delimiter", "text;label\n" + f"{GOOD_ROW};positive\n" * 5, ["column 'label' not found", "delimited by ';'"]),
    ("one class only", "text,label\n" + f"{GOOD_ROW},positive\n" * 10, ["at least two classes", "only 'positive'"]),
    ("binary junk", b"\x00\x01\x02\xff" * 100, ["binary data"]),
    ("not UTF-8", "text,label\n".encode() + "caf\u00e9 great,positive\n".encode("latin-1") * 5, ["not UTF-8", "line 2"]),
    ("missing label column", "text,sentiment\n" + f"{GOOD_ROW},positive\n" * 5, ["column 'label' not found"]),
]


@pytest.mark.parametrize("name,content,expected", BAD_DATA, ids=[b[0] for b in BAD_DATA])
def test_bad_training_data(tmp_path, toy_dir, name, content, expected):
    recipe = tiny_recipe(toy_dir)
    recipe["data"]["train"] = str(_write(tmp_path / "train.csv", content))
    path = write_recipe(tmp_path / "r.yaml", recipe)
    line = one_line_error(["recipe", "check", str(path)], *expected)
    assert "train.csv" in line


def test_label_missing_from_training_data(tmp_path, toy_dir):
    recipe = tiny_recipe(toy_dir)
    val = (toy_dir / "validation.csv").read_text() + f"{GOOD_ROW},neutral\n"
    recipe["data"]["validation"] = str(_write(tmp_path / "validation.csv", val))
    path = write_recipe(tmp_path / "r.yaml", recipe)
    one_line_error(["recipe", "check", str(path)], "validation.csv", "label 'neutral'", "not in the training data")


def test_extremely_long_texts_are_truncated(tmp_path, toy_dir):
    """Documented handling: texts are cut to training.max_length tokens."""
    recipe = tiny_recipe(toy_dir)
    rows = (toy_dir / "train.csv").read_text().splitlines()
    rows[1] = '"' + "great " * 50_000 + '",positive'
    recipe["data"]["train"] = str(_write(tmp_path / "train.csv", "\n".join(rows) + "\n"))
    path = write_recipe(tmp_path / "r.yaml", recipe)
    code, _, out = invoke("recipe", "check", str(path))
    assert code == 0, out


def test_mixed_type_labels_are_read_as_text(tmp_path, toy_dir):
    recipe = tiny_recipe(toy_dir)
    rows = (toy_dir / "train.csv").read_text().replace(",negative", ",0")
    recipe["data"]["train"] = str(_write(tmp_path / "train.csv", rows))
    recipe["data"]["validation"] = recipe["data"]["test"] = None
    path = write_recipe(tmp_path / "r.yaml", recipe)
    code, lines, out = invoke("recipe", "check", str(path))
    assert code == 0, out
    assert any("labels (2): 0, positive" in l for l in lines)


def test_missing_data_file_is_clear_and_outside_paths_are_fine(tmp_path, toy_dir):
    recipe = tiny_recipe(toy_dir)
    recipe["data"]["train"] = "../data/train.csv"  # outside the recipe's folder, on purpose: fine
    sub = tmp_path / "recipes"
    path = write_recipe(sub / "r.yaml", recipe)
    code, _, out = invoke("recipe", "check", str(path))
    assert code == 0, out
    recipe["data"]["train"] = "../data/absent.csv"
    path = write_recipe(sub / "r.yaml", recipe)
    one_line_error(["recipe", "check", str(path)], "absent.csv", "no such file")


# ----------------------------------------------------------------------------- run dirs


def _mount_small_fs(where: Path) -> bool:
    where.mkdir()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(where)], check=True, capture_output=True)
        return True
    except (OSError, subprocess.CalledProcessError):
        return False


def test_full_disk_is_refused_before_training(tmp_path, recipe_file):
    small = tmp_path / "small"
    if not _mount_small_fs(small):
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        one_line_error(["run", str(recipe_file()), "--output", str(small / "run")], "MiB free", "need at least 200 MiB")
        assert not list((small / "run").glob("*.journal"))
    finally:
        subprocess.run(["umount", str(small)], check=False)


def test_failed_check_leaves_no_run_directory(tmp_path, toy_dir):
    recipe = tiny_recipe(toy_dir, output=str(tmp_path / "run"))
    recipe["data"]["train"] = str(_write(tmp_path / "train.csv", "text,label\n"))
    path = write_recipe(tmp_path / "r.yaml", recipe)
    one_line_error(["run", str(path)], "header but no data rows")
    assert not (tmp_path / "run").exists()  # not even an empty directory


# ----------------------------------------------------------------------------- properties

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=20))
values = st.recursive(scalars, lambda c: st.one_of(st.lists(c, max_size=4), st.dictionaries(st.text(max_size=10), c, max_size=4)), max_leaves=12)
keys = st.sampled_from(["task", "backbone", "data", "search", "training", "objective", "output", "name", "task_options", "bogus"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(keys, values, max_size=8))
def test_any_mapping_parses_or_gives_a_recipe_error(data):
    try:
        parse_recipe(data, file="r.yaml")
    except RecipeError as exc:
        assert "\n" not in str(exc)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.text(max_size=300))
def test_any_text_loads_or_gives_a_recipe_error(tmp_path, text):
    path = tmp_path / "r.yaml"
    path.write_text(text)
    try:
        load_recipe(path)
    except RecipeError as exc:
        assert "\n" not in str(exc)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=400), st.sampled_from([".csv", ".jsonl", ".tsv", ".conll", ".parquet"]))
def test_any_bytes_read_as_a_table_or_give_a_data_error(tmp_path, content, suffix):
    path = tmp_path / f"data{suffix}"
    path.write_bytes(content)
    try:
        frame = read_table(path)
        assert len(frame) > 0
    except DataError as exc:
        assert "\n" not in str(exc)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.text(max_size=40), st.sampled_from(["a", "b", "", "c"])), min_size=0, max_size=30))
def test_task_reads_any_rows_or_gives_a_data_error(tmp_path, rows):
    import csv

    from automl.data import load_task_data
    from automl.resolve import resolve

    data = tmp_path / "train.csv"
    with data.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    recipe = load_recipe(write_recipe(tmp_path / "r.yaml", {"task": "text-classification", "backbone": "tiny-bert", "data": {"train": str(data)}}))
    try:
        out = load_task_data(resolve(recipe).task, recipe)
        assert len(out.train) + len(out.validation) == len(rows)
    except UserError as exc:
        assert "\n" not in str(exc)


# ----------------------------------------------------------------------------- security


def _sources() -> list[Path]:
    return [p for d in ("automl", "plugins") for p in (ROOT / d).rglob("*.py")]


def test_no_pickle_on_any_load_path():
    """Weights are safetensors, metadata JSON, the tokenisation cache npz without pickle."""
    offenders = []
    for path in _sources():
        text = path.read_text()
        for pattern in (r"\bimport pickle\b", r"\btorch\.load\(", r"allow_pickle\s*=\s*True", r"\bjoblib\.load\(", r"yaml\.load\(", r"yaml\.unsafe_load"):
            if re.search(pattern, text):
                offenders.append(f"{path.relative_to(ROOT)}: {pattern}")
    assert not offenders


def test_trust_remote_code_is_off_unless_asked(recipe_file):
    recipe = load_recipe(recipe_file())
    assert recipe.training.trust_remote_code is False
    hits = [p for p in _sources() if "trust_remote_code=True" in p.read_text()]
    assert not hits


def test_recipe_cannot_import_code(tmp_path, toy_dir):
    """A recipe names plugins; it cannot point at a module path."""
    recipe = tiny_recipe(toy_dir)
    recipe["task"] = "os:system"
    path = write_recipe(tmp_path / "r.yaml", recipe)
    one_line_error(["recipe", "check", str(path)], "unknown task 'os:system'")


def test_storage_password_never_printed(recipe_file, tmp_path):
    from automl.search.storage import mask_url

    assert mask_url("postgresql://bob:s3cret@db:5432/x") == "postgresql://bob:***@db:5432/x"
    code, _, out = invoke("run", str(recipe_file()), "--storage", "postgresql://bob:s3cret@127.0.0.1:1/x")
    assert code == 2 and "s3cret" not in out
