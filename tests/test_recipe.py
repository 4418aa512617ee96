"""Recipe validation: good recipes load; each kind of bad recipe is one line, exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from automl.cli import cli
from automl.errors import RecipeError
from automl.recipe import load_recipe, parse_duration
from automl.testing import tiny_recipe, write_recipe


def check(path: Path) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["recipe", "check", str(path)])
    # Warnings about other installed plugins are not part of the recipe's error.
    out = "\n".join(l for l in result.output.splitlines() if not l.startswith("warning: plugin"))
    return result.exit_code, out


def test_good_recipe_checks(recipe_file):
    code, out = check(recipe_file())
    assert code == 0, out
    assert "ok" in out and "train 300, validation 100, test 100 rows" in out


def test_recipe_values(recipe_file):
    recipe = load_recipe(recipe_file())
    assert recipe.task == "text-classification"
    assert recipe.search.trials == 3
    assert recipe.search.space["learning_rate"].log is True
    assert recipe.search.space["epochs"].type == "int"
    assert recipe.data_path("train").name == "train.csv"


def _bad(tmp_path: Path, toy_dir: Path, mutate) -> Path:
    recipe = tiny_recipe(toy_dir)
    mutate(recipe)
    return write_recipe(tmp_path / "bad.yaml", recipe)


BAD = [
    ("misspelled top-level key", lambda r: r.update(serach=r.pop("search")), ["serach", "unknown key", "did you mean 'search'"]),
    ("misspelled nested key", lambda r: r["training"].update(max_lenght=64), ["training.max_lenght", "did you mean 'max_length'"]),
    ("missing data file", lambda r: r["data"].update(train="nope.csv"), ["nope.csv", "no such file"]),
    ("unknown task", lambda r: r.update(task="text-clasification"), ["task", "unknown task 'text-clasification'", "did you mean 'text-classification'"]),
    ("unknown backbone", lambda r: r.update(backbone="bert-huge"), ["backbone", "unknown backbone 'bert-huge'"]),
    ("inverted range", lambda r: r["search"]["space"].update(learning_rate={"low": 1e-2, "high": 1e-4}), ["search.space.learning_rate", "low (0.01) is greater than high (0.0001)"]),
    ("unknown hyperparameter", lambda r: r["search"]["space"].update(learnig_rate=[0.1]), ["search.space.learnig_rate", "did you mean 'learning_rate'"]),
    ("wrong type", lambda r: r["search"].update(trials="many"), ["search.trials", "integer"]),
    ("negative trials", lambda r: r["search"].update(trials=0), ["search.trials", "greater than 0"]),
    ("bad timeout", lambda r: r["search"].update(timeout="soon"), ["search.timeout", "duration"]),
    ("bad condition", lambda r: r["search"]["space"].update(lora_r={"choices": [4], "when": {"adaptor": "lora"}}), ["search.space.lora_r.when", "'adaptor'"]),
    ("unknown metric", lambda r: r.update(objective={"metric": "f2"}), ["objective.metric", "no metric 'f2'"]),
    ("bad device", lambda r: r["training"].update(device="tpu"), ["training.device", "expected auto, cpu"]),
    ("log with low 0", lambda r: r["search"]["space"].update(learning_rate={"low": 0, "high": 1, "log": True}), ["log-scale", "low > 0"]),
    ("missing data section", lambda r: r.pop("data"), ["data", "required field is missing"]),
    ("unknown task option", lambda r: r.update(task_options={"foo": 1}), ["task_options.foo", "unknown key"]),
]


@pytest.mark.parametrize("name,mutate,expected", BAD, ids=[b[0] for b in BAD])
def test_bad_recipe_is_one_line(tmp_path, toy_dir, name, mutate, expected):
    path = _bad(tmp_path, toy_dir, mutate)
    code, out = check(path)
    assert code == 2, out
    lines = out.strip().splitlines()
    assert len(lines) == 1, out
    assert lines[0].startswith("error: ")
    assert "Traceback" not in out
    for piece in expected:
        assert piece in lines[0], (piece, lines[0])


def test_yaml_line_number_is_named(tmp_path, toy_dir):
    path = write_recipe(tmp_path / "r.yaml", tiny_recipe(toy_dir))
    text = path.read_text().replace("max_length: 32", "max_length: thirty-two")
    path.write_text(text)
    line = next(i for i, l in enumerate(text.splitlines(), 1) if "thirty-two" in l)
    code, out = check(path)
    assert code == 2
    assert f"r.yaml:{line}: training.max_length" in out


@pytest.mark.parametrize(
    "content,expected",
    [
        (b"", "the recipe is empty"),
        (b"task: [unclosed\n", "not valid YAML"),
        (b"- just\n- a list\n", "expected a mapping"),
        (b"\xff\xfe\x00junk", "not a UTF-8 text file"),
        (b"a: &a [1,1,1,1,1,1,1,1,1]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
         b"d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n",
         "alias"),
        (b"task: !!python/object/apply:os.system ['echo hi']\n", "not valid YAML"),
    ],
    ids=["empty", "not-yaml", "list", "binary", "alias-bomb", "python-tag"],
)
def test_malformed_files(tmp_path, content, expected):
    path = tmp_path / "r.yaml"
    path.write_bytes(content)
    code, out = check(path)
    assert code == 2, out
    assert expected in out
    assert len(out.strip().splitlines()) == 1


def test_missing_recipe_file(tmp_path):
    code, out = check(tmp_path / "absent.yaml")
    assert code == 2 and "no such file" in out


def test_debug_shows_traceback(tmp_path, toy_dir):
    path = _bad(tmp_path, toy_dir, lambda r: r.update(task="nope"))
    result = CliRunner().invoke(cli, ["--debug", "recipe", "check", str(path)])
    assert result.exit_code != 0
    assert isinstance(result.exception, Exception)


def test_durations():
    assert parse_duration("90s") == 90
    assert parse_duration("5m") == 300
    assert parse_duration("2h") == 7200
    assert parse_duration(12) == 12
    with pytest.raises(ValueError):
        parse_duration("soon")


def test_overrides_validate(recipe_file):
    recipe = load_recipe(recipe_file())
    assert recipe.with_overrides(trials=7).search.trials == 7
    with pytest.raises(RecipeError) as err:
        recipe.with_overrides(device="tpu")
    assert "--device" in str(err.value)


def test_fingerprint_ignores_budget(recipe_file):
    recipe = load_recipe(recipe_file())
    assert recipe.fingerprint() == recipe.with_overrides(trials=50, timeout=60).fingerprint()
    other = yaml.safe_load(recipe.path.read_text())
    other["training"]["max_length"] = 64
    assert load_recipe(write_recipe(recipe.path.with_name("o.yaml"), other)).fingerprint() != recipe.fingerprint()


def test_big_validation_and_test_splits_are_a_stratified_sample_of_max_eval_rows(recipe_file):
    from collections import Counter

    from automl.data import load_task_data
    from automl.resolve import resolve
    from automl.run import RunContext

    full = load_recipe(recipe_file())
    whole = load_task_data(resolve(full).task, full)
    assert whole.sampled == {} and len(whole.validation) > 40
    capped = load_recipe(recipe_file("capped.yaml", data={**full.model_dump(mode="json")["data"], "max_eval_rows": 40}))
    ctx = RunContext.create(capped)
    data, _, encoded = ctx.load_data()
    assert len(data.validation) == 40 and data.sampled["validation"] == len(whole.validation)
    assert len(encoded["validation"]["input_ids"]) == 40  # the tokenised split is the sample too
    # The sample keeps the label shares and the file order, and is the same every time.
    share = lambda split: {k: v / len(split.labels) for k, v in Counter(split.labels).items()}  # noqa: E731
    assert all(abs(share(data.validation)[k] - p) < 0.05 for k, p in share(whole.validation).items())
    rows = whole.validation.inputs
    assert [rows.index(t) for t in data.validation.inputs] == sorted(rows.index(t) for t in data.validation.inputs)
    assert load_task_data(resolve(capped).task, capped).validation.inputs == data.validation.inputs
