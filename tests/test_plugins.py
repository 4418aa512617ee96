"""The plugin system: loading through entry points, throwaway plugins, broken plugins,
contract errors, API versions, allow/block lists, misspelled hooks, and a plugin package
installed the way a user installs one.

Packages are installed into a :class:`PluginEnv`, a throwaway environment layered over
this one, so that nothing these tests install is seen by other test runs."""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import site
import subprocess
import sys
import textwrap
import types
import venv
from pathlib import Path

import pytest
from click.testing import CliRunner

from automl import hookimpl, plugins
from automl.backbone import Backbone
from automl.errors import PluginError
from automl.task import Task
from automl.testing import TinyBertBackbone, check_task, registered

# --------------------------------------------------------------------------- helpers


class PluginEnv:
    """A throwaway Python environment over the current one (~0.1 s to make): it sees every
    package installed here, and what is pip-installed into it is seen only by its own
    ``python`` (and by the worker processes ``automl run`` starts from it). Its ``bin``
    holds an ``automl`` command; :meth:`run` puts it first on ``PATH``."""

    def __init__(self, root: Path) -> None:
        venv.EnvBuilder(with_pip=False, symlinks=True).create(root)
        self.root = root
        self.python = root / "bin" / "python"
        site_dir = next((root / "lib").glob("python*/site-packages"))
        parents = "; ".join(f"site.addsitedir({p!r})" for p in site.getsitepackages())
        (site_dir / "_parent_env.pth").write_text(f"import site; {parents}\n")
        script = root / "bin" / "automl"
        script.write_text(f"#!{self.python}\nfrom automl.cli import main\n\nif __name__ == '__main__':\n    main()\n")
        script.chmod(0o755)
        self.env = {**os.environ, "PATH": f"{root / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}", "VIRTUAL_ENV": str(root)}
        for name in ("AUTOML_PLUGINS", "AUTOML_BLOCK_PLUGINS", "PYTHONPATH"):
            self.env.pop(name, None)

    def install(self, package: Path, *, editable: bool = True) -> None:
        """``pip install --no-deps --no-build-isolation [-e] package``, as a user would."""
        args = [sys.executable, "-m", "pip", "--python", str(self.python), "install", "--no-deps"]
        args += ["--no-build-isolation", "--no-input", "--disable-pip-version-check", "-q"]
        args += ["-e", str(package)] if editable else [str(package)]
        done = subprocess.run(args, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr

    def run(self, *args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(args), capture_output=True, text=True, env=self.env, cwd=cwd, timeout=timeout)


#: A whole third-party plugin: a task and a backbone. The tests below import it from a
#: temporary directory, or install it as a package.
PLUGIN_SOURCE = '''
"""A throwaway automl plugin for tests."""
import numpy as np

from automl import hookimpl
from automl.task import Metric, Split, Task
from automl.testing import TinyBertBackbone

automl_api_version = "1"


class EchoTask(Task):
    name = "echo"
    description = "a test task: is the text 'yes'?"
    metrics = (Metric("accuracy", "maximize"),)
    default_metric = "accuracy"

    def label_names(self, train, *, file):
        return ["no", "yes"]

    def read(self, frame, *, split, file, label_names):
        texts = frame["text"].astype(str).tolist()
        labels = None if split == "predict" else [int(t == "yes") for t in texts]
        return Split(inputs=texts, labels=labels, frame=frame)

    def encode(self, split, tokenizer, max_length):
        out = {"input_ids": [[101, 7, 102] for _ in split.inputs]}
        if split.labels is not None:
            out["labels"] = list(split.labels)
        return out

    def compute_metrics(self, outputs, split, encoded, calibration):
        return {"accuracy": float((np.asarray(outputs).argmax(1) == np.asarray(encoded["labels"])).mean())}

    def predict(self, outputs, split, encoded, calibration):
        return [{"prediction": ["no", "yes"][int(row.argmax())]} for row in np.asarray(outputs)]


class EchoBackbone(TinyBertBackbone):
    name = "echo-bert"
    description = "a test backbone"


@hookimpl
def automl_register_tasks(register):
    register(EchoTask)


@hookimpl
def automl_register_backbones(register):
    register(EchoBackbone)
'''


def write_module(directory: Path, name: str, source: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.py"
    path.write_text(textwrap.dedent(source))
    return path


def write_package(directory: Path, distribution: str, module: str, entry_point: str, source: str) -> Path:
    """A pip-installable package with one module and one ``automl`` entry point."""
    (directory / "src").mkdir(parents=True)
    (directory / "pyproject.toml").write_text(
        textwrap.dedent(
            f"""
            [build-system]
            requires = ["setuptools>=68"]
            build-backend = "setuptools.build_meta"

            [project]
            name = "{distribution}"
            version = "1.2.3"

            [project.entry-points.automl]
            {entry_point} = "{module}"

            [tool.setuptools.packages.find]
            where = ["src"]
            """
        )
    )
    (directory / "src" / module).mkdir()
    (directory / "src" / module / "__init__.py").write_text(textwrap.dedent(source))
    return directory


@pytest.fixture
def entry_points(tmp_path, monkeypatch):
    """Factory: ``add(name, source)`` makes an ``automl`` entry point *name* whose module
    has *source*, next to the installed ones (as if a package declaring it were installed)."""
    real = importlib.metadata.entry_points
    extra: list[importlib.metadata.EntryPoint] = []
    modules: list[str] = []
    monkeypatch.syspath_prepend(str(tmp_path / "eps"))

    def fake(**params):
        found = real(**params)
        if params.get("group") == plugins.ENTRY_POINT_GROUP:
            return [*found, *extra]
        return found

    monkeypatch.setattr(importlib.metadata, "entry_points", fake)

    def add(name: str, source: str) -> None:
        module = "fake_plugin_" + name.replace("-", "_")
        write_module(tmp_path / "eps", module, source)
        extra.append(importlib.metadata.EntryPoint(name=name, value=module, group=plugins.ENTRY_POINT_GROUP))
        modules.append(module)
        plugins.reset()

    yield add
    for module in modules:
        sys.modules.pop(module, None)


@pytest.fixture
def echo(tmp_path, monkeypatch):
    """The :data:`PLUGIN_SOURCE` module, imported from a temporary directory."""
    write_module(tmp_path / "echo", "echo_plugin", PLUGIN_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path / "echo"))
    import echo_plugin

    yield echo_plugin
    sys.modules.pop("echo_plugin", None)


def registering(*classes: object, hook: str = "automl_register_tasks") -> object:
    """A plugin whose *hook* registers *classes*, one by one."""

    def register_all(register):  # type: ignore[no-untyped-def]
        for cls in classes:
            register(cls)

    return types.SimpleNamespace(**{hook: hookimpl(register_all)})


def failure(name: str) -> str:
    failed = dict(plugins.failed_plugins())
    assert name in failed, f"'{name}' was not reported; failed: {failed}"
    return failed[name]


class Incomplete(Task):
    """A task that forgot most of its methods."""

    name = "incomplete"
    metrics = ()
    default_metric = "accuracy"

    def read(self, frame, *, split, file, label_names):  # type: ignore[no-untyped-def]
        raise NotImplementedError


# --------------------------------------------------------------------------- loading


def test_builtin_plugins_load_through_entry_points():
    assert plugins.failed_plugins() == []
    assert "text-classification" in plugins.get_tasks()
    assert "tiny-bert" in plugins.get_backbones()
    infos = {i.name: i for i in plugins.plugin_infos(include_builtin=True)}
    assert infos["text-classification"].builtin and infos["text-classification"].distribution == "automl"
    assert infos["backbones"].module == "automl_plugins.backbones"
    assert plugins.owner_of("task", "text-classification") == "text-classification"
    assert plugins.plugin_infos() == [i for i in infos.values() if not i.builtin]


def test_a_throwaway_plugin_adds_a_task_and_a_backbone(echo):
    assert "echo" not in plugins.get_tasks()
    with registered(echo, "echo-plugin"):
        assert plugins.get_tasks()["echo"] is echo.EchoTask
        assert plugins.get_backbones()["echo-bert"] is echo.EchoBackbone
        assert plugins.owner_of("task", "echo") == "echo-plugin"
        assert "text-classification" in plugins.get_tasks()
        assert plugins.get_task("echo") is echo.EchoTask
    assert "echo" not in plugins.get_tasks()
    assert "echo-bert" not in plugins.get_backbones()


def test_a_plugin_may_subclass_a_builtin_task_it_asks_the_registry_for():
    """A hook that asks for the registry while the registry is being built (to subclass a
    built-in task) gets what was registered before it, instead of starting the build again
    (which recursed until a RecursionError landed on whichever plugin was running)."""
    from automl import hookimpl

    seen: dict[str, list[str]] = {}

    class Subclassing:
        @hookimpl
        def automl_register_tasks(self, register):  # type: ignore[no-untyped-def]
            seen["tasks"] = sorted(plugins.get_tasks())
            seen["backbones"] = sorted(plugins.get_backbones())

            class Derived(plugins.get_tasks()["text-classification"]):  # type: ignore[misc]
                name = "derived-text"
                description = "a built-in task, subclassed (tests)"

            register(Derived)

    with registered(Subclassing(), "subclassing"):
        tasks = plugins.get_tasks()
        assert issubclass(tasks["derived-text"], tasks["text-classification"])
        assert plugins.failed_plugins() == []
        assert "tiny-bert" in plugins.get_backbones()
    assert "text-classification" in seen["tasks"] and "derived-text" not in seen["tasks"]
    assert seen["backbones"] == []  # backbones register after tasks


def test_unknown_names_suggest_the_installed_ones():
    with pytest.raises(PluginError, match=r"unknown task 'text-clasification' \(did you mean 'text-classification'\?\)"):
        plugins.get_task("text-clasification", file="r.yaml")
    with pytest.raises(PluginError, match="installed backbones: .*'tiny-bert'"):
        plugins.get_backbone("nope")


def test_a_plugin_that_raises_at_import_is_reported_and_skipped(entry_points, capsys):
    entry_points("broken", "raise RuntimeError('boom: missing config')\n")
    assert "text-classification" in plugins.get_tasks()  # the rest works
    assert failure("broken") == "failed to import fake_plugin_broken: RuntimeError: boom: missing config"
    assert "broken" not in {i.name for i in plugins.plugin_infos(include_builtin=True)}
    plugins.warn_failed()
    assert capsys.readouterr().err == (
        "warning: plugin 'broken' skipped: failed to import fake_plugin_broken: RuntimeError: boom: missing config\n"
    )


def test_automl_plugins_lists_failures_and_keeps_working(entry_points):
    from automl.cli import cli

    entry_points("broken", "import no_such_module_here\n")
    result = CliRunner().invoke(cli, ["plugins", "--all"])
    assert result.exit_code == 0, result.output
    assert "text-classification" in result.stdout
    assert "warning: plugin 'broken' skipped: failed to import fake_plugin_broken: ModuleNotFoundError" in result.stderr
    data = json.loads(CliRunner().invoke(cli, ["plugins", "--json"]).stdout)
    assert data["plugins"] == [] and data["failed"][0]["name"] == "broken"


def test_automl_plugins_without_third_party_plugins():
    from automl.cli import cli

    result = CliRunner().invoke(cli, ["plugins"])
    assert result.exit_code == 0
    assert "No third-party plugins installed. Use --all to include the built-in ones." in result.stdout


# --------------------------------------------------------------------------- contract errors


def test_registering_something_that_is_not_a_task_names_the_plugin(echo):
    with registered(registering(echo.EchoTask, 42), "wrong-type"):
        assert failure("wrong-type") == "automl_register_tasks registered 42 (of type int), expected a subclass of automl.task.Task"
        assert "echo" not in plugins.get_tasks()  # what it registered before the error is dropped too
        assert "text-classification" in plugins.get_tasks()


def test_a_backbone_registered_as_a_task_is_refused():
    with registered(registering(TinyBertBackbone), "mixed-up"):
        assert failure("mixed-up") == (
            "automl_register_tasks registered TinyBertBackbone, expected a subclass of automl.task.Task"
        )


def test_a_task_missing_required_methods_is_refused_with_what_is_missing():
    with registered(registering(Incomplete), "half-done"):
        reason = failure("half-done")
        assert reason.startswith("task class Incomplete breaks the contract: ")
        assert "missing required method(s): compute_metrics, encode, predict" in reason
        assert "'metrics' must list at least one Metric" in reason
        assert "incomplete" not in plugins.get_tasks()


def test_a_backbone_missing_source_is_refused():
    class NoSource(Backbone):
        name = "no-source"

    with registered(registering(NoSource, hook="automl_register_backbones"), "no-source-plugin"):
        assert failure("no-source-plugin") == (
            "backbone class NoSource breaks the contract: missing required method(s): source"
        )


def test_a_plugin_that_breaks_the_contract_is_skipped_as_a_whole(echo):
    calls = []

    class Plugin:
        @hookimpl
        def automl_register_tasks(self, register):
            register(Incomplete)

        @hookimpl
        def automl_register_backbones(self, register):
            register(echo.EchoBackbone)

        @hookimpl
        def automl_trial_end(self, run, trial, outcome):
            calls.append(trial)

    with registered(Plugin(), "half-broken"):
        assert "echo-bert" not in plugins.get_backbones()
        plugins.get_plugin_manager().hook.automl_trial_end(run=None, trial=1, outcome=None)
        assert calls == []
        assert "half-broken" in dict(plugins.failed_plugins())


def test_an_exception_in_a_register_hook_is_reported():
    class Plugin:
        @hookimpl
        def automl_register_backbones(self, register):
            raise ValueError("weights\nnot found")

    with registered(Plugin(), "raises"):
        assert plugins.get_backbones()["tiny-bert"]
        assert failure("raises") == "automl_register_backbones raised ValueError: weights; not found"


def test_the_same_name_twice_names_both_plugins(echo):
    class Clash(echo.EchoTask):
        name = "text-classification"

    with registered(registering(Clash), "clash"):
        assert failure("clash") == "task 'text-classification' is registered by both 'text-classification' and 'clash'"
        assert plugins.get_tasks()["text-classification"] is not Clash  # the built-in keeps its name
        assert plugins.owner_of("task", "text-classification") == "text-classification"


def test_one_plugin_registering_a_name_twice(echo):
    with registered(registering(echo.EchoTask, echo.EchoTask), "twice"):
        assert failure("twice") == "automl_register_tasks registered task 'echo' twice"


def test_failures_of_a_test_plugin_go_with_it():
    with registered(registering(Incomplete), "temporary"):
        assert "temporary" in dict(plugins.failed_plugins())
    assert plugins.failed_plugins() == []


# --------------------------------------------------------------------------- API version and hooks


def test_a_plugin_for_another_api_version_is_refused(entry_points):
    entry_points("future", 'automl_api_version = "2"\n')
    assert failure("future") == (
        "targets automl plugin API 2, this automl provides API 1; upgrade the plugin or install a matching automl"
    )
    assert not plugins.get_plugin_manager().has_plugin("future")
    assert "text-classification" in plugins.get_tasks()


def test_minor_api_versions_are_compatible(entry_points):
    entry_points("minor", 'automl_api_version = "1.3"\n')
    assert "minor" not in dict(plugins.failed_plugins())
    assert plugins.get_plugin_manager().has_plugin("minor")


def test_register_plugin_refuses_another_api_version():
    class Future:
        automl_api_version = "2"

    with pytest.raises(PluginError, match=r"^plugin 'future': targets automl plugin API 2, this automl provides API 1"):
        with registered(Future(), "future"):
            pass
    assert not plugins.get_plugin_manager().has_plugin("future")


def test_a_misspelled_hook_is_caught_and_names_the_plugin(entry_points):
    entry_points(
        "typo",
        """
        from automl import hookimpl

        @hookimpl
        def automl_trial_ned(run, trial, outcome):
            pass
        """,
    )
    assert failure("typo") == (
        "implements unknown hook 'automl_trial_ned' (did you mean 'automl_trial_end'?); "
        "automl's hooks are listed in docs/hooks.md"
    )
    assert not plugins.get_plugin_manager().has_plugin("typo")
    plugins.get_plugin_manager().check_pending()  # nothing unknown is left registered


def test_register_plugin_catches_a_misspelled_hook():
    class Typo:
        @hookimpl
        def automl_study_ends(self, run, summary):
            pass

    with pytest.raises(PluginError, match=r"plugin 'typo': implements unknown hook 'automl_study_ends' \(did you mean 'automl_study_end'\?\)"):
        plugins.register_plugin(Typo(), "typo")
    assert not plugins.get_plugin_manager().has_plugin("typo")


def test_a_hook_function_without_the_marker_is_reported(entry_points):
    entry_points(
        "unmarked",
        """
        def automl_register_tasks(register):
            pass
        """,
    )
    assert failure("unmarked") == (
        "function automl_register_tasks is not marked with @automl.hookimpl, so automl would never call it"
    )


def test_a_hook_with_an_argument_the_spec_lacks_is_one_line(entry_points):
    entry_points(
        "bad-args",
        """
        from automl import hookimpl

        @hookimpl
        def automl_trial_end(run, trial, result):
            pass
        """,
    )
    reason = failure("bad-args")
    assert "\n" not in reason
    assert "automl_trial_end" in reason and "result" in reason


def test_hooks_may_take_fewer_arguments_than_the_spec(entry_points):
    entry_points(
        "few-args",
        """
        from automl import hookimpl

        @hookimpl
        def automl_trial_end(outcome):
            pass
        """,
    )
    assert "few-args" not in dict(plugins.failed_plugins())
    (info,) = [i for i in plugins.plugin_infos() if i.name == "few-args"]
    assert info.hooks == ("automl_trial_end",) and info.distribution is None


# --------------------------------------------------------------------------- allow and block lists


def test_the_allow_list_loads_only_the_plugins_it_names(monkeypatch, entry_points):
    entry_points("broken", "raise RuntimeError('boom')\n")
    monkeypatch.setenv("AUTOML_PLUGINS", "backbones, text-classification")
    plugins.reset()
    assert sorted(plugins.get_tasks()) == ["text-classification"]
    assert "tiny-bert" in plugins.get_backbones()
    assert plugins.failed_plugins() == []  # the broken plugin is never imported


def test_the_block_list_skips_the_plugins_it_names(monkeypatch, entry_points):
    entry_points("broken", "raise RuntimeError('boom')\n")
    monkeypatch.setenv("AUTOML_BLOCK_PLUGINS", "broken,fraud-detection")
    plugins.reset()
    assert "fraud-detection" not in plugins.get_tasks()
    assert "text-classification" in plugins.get_tasks()
    assert plugins.failed_plugins() == []


def test_the_block_list_wins_over_the_allow_list(monkeypatch):
    monkeypatch.setenv("AUTOML_PLUGINS", "backbones,text-classification")
    monkeypatch.setenv("AUTOML_BLOCK_PLUGINS", "text-classification")
    plugins.reset()
    assert plugins.get_tasks() == {}
    with pytest.raises(PluginError, match=r"unknown task 'text-classification'; installed tasks: \(none installed\)"):
        plugins.get_task("text-classification")


# --------------------------------------------------------------------------- test helpers


def test_check_task_accepts_a_working_task(echo, tmp_path):
    (tmp_path / "train.csv").write_text("text\nyes\nno\nyes\n")
    check_task(echo.EchoTask, tmp_path / "train.csv")


def test_check_task_says_which_method_broke_which_rule(echo, tmp_path):
    class ShortPredict(echo.EchoTask):
        def predict(self, outputs, split, encoded, calibration):  # type: ignore[no-untyped-def]
            return []

    (tmp_path / "train.csv").write_text("text\nyes\nno\n")
    with pytest.raises(AssertionError, match=r"predict\(\) returned 0 rows for 2 examples"):
        check_task(ShortPredict, tmp_path / "train.csv")
    with pytest.raises(AssertionError, match="Incomplete breaks the task contract: .*missing required method"):
        check_task(Incomplete, tmp_path / "train.csv")


# --------------------------------------------------------------------------- installed packages


def test_an_installed_package_shows_up_without_changing_automl(tmp_path):
    """The whole way a user goes: write a package, pip-install it, and automl (a new
    process, so entry points are read afresh) lists its plugin, task and backbone."""
    package = write_package(tmp_path / "pkg", "automl-echo", "automl_echo", "echo", PLUGIN_SOURCE)
    env = PluginEnv(tmp_path / "env")
    before = env.run("automl", "plugins", "--json")
    assert before.returncode == 0, before.stderr
    assert "echo" not in {p["name"] for p in json.loads(before.stdout)["plugins"]}

    env.install(package)
    listed = env.run("automl", "plugins", "--json")
    assert listed.returncode == 0, listed.stderr
    (echo,) = [p for p in json.loads(listed.stdout)["plugins"] if p["name"] == "echo"]
    assert echo == {
        "name": "echo",
        "module": "automl_echo",
        "distribution": "automl-echo",
        "version": "1.2.3",
        "builtin": False,
        "tasks": ["echo"],
        "backbones": ["echo-bert"],
        "hooks": ["automl_register_backbones", "automl_register_tasks"],
    }
    table = env.run("automl", "plugins")
    assert "automl-echo 1.2.3" in table.stdout and "a test task" in table.stdout
    # the current environment is untouched
    assert "echo" not in {ep.name for ep in importlib.metadata.entry_points(group="automl")}


EXAMPLES = Path(__file__).resolve().parents[1] / "plugins" / "examples"


@pytest.mark.parametrize("example", ["automl-jsonl-logger"])
def test_an_example_plugin_passes_its_own_tests_when_installed(example, tmp_path):
    """Each example in plugins/examples/ is installed as a user installs it (from a copy,
    so the build leaves nothing in the repository) and runs its own tests."""
    package = tmp_path / example
    shutil.copytree(EXAMPLES / example, package, ignore=shutil.ignore_patterns("*.egg-info", "__pycache__", "build"))
    env = PluginEnv(tmp_path / "env")
    env.install(package)
    listed = json.loads(env.run("automl", "plugins", "--json").stdout)
    assert [p["distribution"] for p in listed["plugins"]] == [example] and listed["failed"] == []
    tests = env.run(str(env.python), "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=package)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert " passed" in tests.stdout and "skipped" not in tests.stdout
