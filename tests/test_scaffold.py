"""``automl plugins new``: names, refusals, what each kind writes, and the whole way a
plugin author goes: scaffold, pip-install, the package's own tests, ``automl plugins``
and ``automl run`` on its sample recipe."""

from __future__ import annotations

import importlib
import json
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from test_plugins import PluginEnv

from automl import plugins
from automl.cli import cli
from automl.errors import UserError
from automl.events import RunInfo, StudySummary, TrialInfo, TrialOutcome, TrialState
from automl.recipe import load_recipe
from automl.scaffold import KINDS, new_plugin, plugin_names
from automl.testing import check_task, registered


@pytest.fixture
def imported(monkeypatch):
    """Factory: import the plugin module of a scaffolded package from its ``src``."""
    loaded = []

    def load(package: Path, module: str):
        monkeypatch.syspath_prepend(str(package / "src"))
        loaded.append(module)
        return importlib.import_module(module)

    yield load
    for module in loaded:
        sys.modules.pop(module, None)


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("name", "module", "plugin", "cls"),
    [
        ("complaint-routing", "complaint_routing", "complaint-routing", "ComplaintRouting"),
        ("automl-complaints", "automl_complaints", "complaints", "Complaints"),
        ("My_Plugin2", "my_plugin2", "my-plugin2", "MyPlugin2"),
        ("automl.geo", "automl_geo", "geo", "Geo"),
    ],
)
def test_names_derived_from_the_one_given(name, module, plugin, cls):
    names = plugin_names(name)
    assert (names.distribution, names.module, names.plugin, names.cls) == (name, module, plugin, cls)


def test_class_names_do_not_repeat_the_kind():
    assert plugin_names("my-backbone").class_name("backbone") == "MyBackbone"
    assert plugin_names("my-backbone").class_name("task") == "MyBackboneTask"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("bad name", "'bad name' is not a valid plugin name: use letters, digits, '-' and '_', starting with a letter"),
        ("2fast", "'2fast' is not a valid plugin name"),
        ("-dash", "'-dash' is not a valid plugin name"),
        ("trailing-", "'trailing-' is not a valid plugin name"),
        ("naïve", "'naïve' is not a valid plugin name"),
        ("class", "'class' is not a valid plugin name"),
        ("json", "'json' would shadow the module 'json'; choose another name"),
        ("automl", "'automl' would shadow the module 'automl'"),
    ],
)
def test_bad_names_are_one_clear_error(name, message, tmp_path):
    with pytest.raises(UserError, match="^NAME: " + message.replace("(", r"\(")):
        new_plugin(name, directory=tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("name", "kind", "message"),
    [
        ("text-classification", "task", "an installed package already provides the automl plugin 'text-classification'"),
        ("tiny-bert", "backbone", "a backbone named 'tiny-bert' is already installed"),
        ("pluggy", "callback", "a module named 'pluggy' is already installed"),
    ],
)
def test_names_already_taken_are_refused(name, kind, message, tmp_path):
    with pytest.raises(UserError, match=message):
        new_plugin(name, kind=kind, directory=tmp_path / "out")


def test_an_existing_directory_is_never_overwritten(tmp_path):
    target = tmp_path / "taken"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    with pytest.raises(UserError, match="taken: already exists; choose another --dir or remove it first"):
        new_plugin("fresh-name", directory=target)
    assert [p.name for p in target.iterdir()] == ["keep.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert new_plugin("fresh-name", directory=empty) == empty


def test_the_command_exits_2_with_one_line():
    result = CliRunner().invoke(cli, ["plugins", "new", "bad name"])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "error: NAME: 'bad name' is not a valid plugin name: use letters, digits, '-' and '_', "
        "starting with a letter (e.g. automl-complaints)"
    ]
    assert CliRunner().invoke(cli, ["plugins", "new", "x-y", "--kind", "model"]).exit_code == 2


def test_the_command_says_what_it_wrote_and_what_to_do_next(tmp_path):
    result = CliRunner().invoke(cli, ["plugins", "new", "complaint-routing", "--dir", str(tmp_path / "pkg")])
    assert result.exit_code == 0, result.output
    assert "Created the task plugin complaint-routing in" in result.stdout
    for line in ("src/complaint_routing/__init__.py", "sample/recipe.yaml", "pip install -e '.[test]'", "pytest"):
        assert line in result.stdout


# --------------------------------------------------------------------------- what each kind writes


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_writes_an_installable_package(kind, tmp_path):
    package = new_plugin("automl-acme", kind=kind, directory=tmp_path / "acme")
    files = sorted(str(p.relative_to(package)) for p in package.rglob("*") if p.is_file())
    assert files == [
        ".gitignore",
        "README.md",
        "pyproject.toml",
        "sample/recipe.yaml",
        "sample/train.csv",
        "src/automl_acme/__init__.py",
        "tests/test_automl_acme.py",
    ]
    project = tomllib.loads((package / "pyproject.toml").read_text())
    assert project["project"]["name"] == "automl-acme"
    assert project["project"]["entry-points"]["automl"] == {"acme": "automl_acme"}
    for path in package.rglob("*.py"):
        compile(path.read_text(), str(path), "exec")  # no template placeholder left behind
        assert "$" not in path.read_text(), path
    recipe = load_recipe(package / "sample" / "recipe.yaml")
    assert recipe.search.trials == 1
    assert recipe.data_path("train") == package / "sample" / "train.csv"
    assert (recipe.task, recipe.backbone) == {
        "task": ("acme", "tiny-bert"),
        "backbone": ("text-classification", "acme"),
        "callback": ("text-classification", "tiny-bert"),
    }[kind]


def test_the_task_kind_meets_the_contract(tmp_path, imported):
    package = new_plugin("complaint-routing", directory=tmp_path / "pkg")
    module = imported(package, "complaint_routing")
    with registered(module, "complaint-routing"):
        task_cls = plugins.get_tasks()["complaint-routing"]
        assert task_cls is module.ComplaintRoutingTask
        assert plugins.failed_plugins() == []
    check_task(task_cls, package / "sample" / "train.csv")


def test_the_backbone_kind_meets_the_contract(tmp_path, imported):
    package = new_plugin("acme-encoder", kind="backbone", directory=tmp_path / "pkg")
    module = imported(package, "acme_encoder")
    with registered(module, "acme-encoder"):
        backbone = plugins.get_backbones()["acme-encoder"]()
        assert plugins.failed_plugins() == []
    assert backbone.contract_problems() == []
    assert (Path(backbone.source()) / "config.json").is_file()  # the weights automl ships
    backbone.check()


def test_the_callback_kind_writes_json_lines(tmp_path, imported):
    package = new_plugin("acme-events", kind="callback", directory=tmp_path / "pkg")
    module = imported(package, "acme_events")
    run = RunInfo("demo", tmp_path / "run", "text-classification", "tiny-bert", "f1_macro", "maximize")
    with registered(module, "acme-events"):
        hook = plugins.get_plugin_manager().hook
        hook.automl_trial_start(run=run, trial=TrialInfo(0, {"learning_rate": 0.01}))
        hook.automl_trial_end(run=run, trial=TrialInfo(0, {}), outcome=TrialOutcome(TrialState.PRUNED, None))
        hook.automl_study_end(run=run, summary=StudySummary(0, 1, 0, None, None, None))
    lines = (tmp_path / "run" / "acme_events.jsonl").read_text().splitlines()
    assert [json.loads(line)["event"] for line in lines] == ["trial_start", "trial_end", "study_end"]


# --------------------------------------------------------------------------- the author's way


def test_scaffold_install_test_list_and_run(tmp_path):
    """``automl plugins new`` for each kind, ``pip install -e`` (into a throwaway
    environment over this one, so nothing is left installed here), the packages' own
    tests, ``automl plugins``, and the task's sample recipe run for one trial with the
    callback plugin writing its events."""
    env = PluginEnv(tmp_path / "env")
    packages = {
        kind: new_plugin(name, kind=kind, directory=tmp_path / name)
        for kind, name in (("task", "complaint-routing"), ("backbone", "acme-encoder"), ("callback", "acme-events"))
    }
    for package in packages.values():
        env.install(package)

    tests = env.run(str(env.python), "-m", "pytest", "-q", "-p", "no:cacheprovider", *(str(p / "tests") for p in packages.values()), cwd=tmp_path)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "8 passed" in tests.stdout

    listed = env.run("automl", "plugins", "--json")
    assert listed.returncode == 0, listed.stderr
    found = {p["name"]: p for p in json.loads(listed.stdout)["plugins"]}
    assert found["complaint-routing"]["tasks"] == ["complaint-routing"]
    assert found["acme-encoder"]["backbones"] == ["acme-encoder"]
    assert found["acme-events"]["hooks"] == ["automl_study_end", "automl_trial_end", "automl_trial_start"]

    recipe = packages["task"] / "sample" / "recipe.yaml"
    assert yaml.safe_load(recipe.read_text())["search"]["trials"] == 1
    run_dir = tmp_path / "run"
    done = env.run(
        "automl", "run", str(recipe), "--trials", "1", "--output", str(run_dir), "--device", "cpu", "--no-baseline",
        cwd=packages["task"], timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (run_dir / "best").is_dir()
    events = [json.loads(line) for line in (run_dir / "acme_events.jsonl").read_text().splitlines()]
    assert [e["event"] for e in events] == ["trial_start", "trial_end", "study_end"]
    assert events[1]["state"] == "complete" and events[2]["complete"] == 1
