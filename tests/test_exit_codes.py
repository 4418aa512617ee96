"""Exit status of ``automl run``/``automl worker``, errors from worker processes, and a
failing baseline (isolated like a trial)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import pytest
from faults import Plugin
from rich.console import Console

from automl import plugins
from automl.errors import EXIT_NO_MODEL, EXIT_USER_ERROR, UserError
from automl.recipe import load_recipe
from automl.search.supervisor import RunOptions, run_recipe
from automl.testing import registered


def automl(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("AUTOML_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "automl", *args], capture_output=True, text=True, env=env, timeout=timeout)


def test_failing_baseline_is_a_warning_and_the_run_goes_on(recipe_file):
    path = recipe_file(task="faulty-baseline", search={"trials": 1, "pruner": "none", "space": {
        "learning_rate": 4e-3, "epochs": 2, "batch_size": 16, "adapter": "full"}})
    out = io.StringIO()
    console = Console(file=out, width=200, color_system=None)
    with registered(Plugin(), "test-faults"):
        outcome = run_recipe(load_recipe(path), options=RunOptions(workers=0, baseline=True), console=console)
    text = out.getvalue()
    assert "warning: no baseline: plugin 'test-faults' raised ValueError in faulty-baseline.baseline: " \
           "the baseline broke on purpose" in text
    assert outcome.baseline is None and not (outcome.run_dir / "baseline.json").exists()
    assert outcome.summary.n_complete == 1 and outcome.best_dir is not None
    assert outcome.failure() is None


def test_no_completed_trial_is_reported(recipe_file):
    """Every trial fails for a reason of its own: the outcome says why, in one line."""
    path = recipe_file(task="faulty-text", search={"trials": 2, "pruner": "none", "space": {
        "fault": "raise", "learning_rate": 4e-3, "epochs": 1, "batch_size": 16, "adapter": "full"}})
    with registered(Plugin(), "test-faults"):
        outcome = run_recipe(load_recipe(path), options=RunOptions(workers=0, baseline=False))
    line = outcome.failure()
    assert line is not None and "\n" not in line
    assert line.startswith("no trial completed (2 failed, 0 pruned); trial 1 failed: plugin 'test-faults' raised")
    assert outcome.best_dir is None


@pytest.mark.slow
def test_run_exit_status_when_every_trial_fails(recipe_file, tmp_path):
    """A learning rate no model survives: each trial's loss overflows. The plausibility check
    warns before the run; the run exits 3 with one line saying why."""
    path = recipe_file(search={"trials": 2, "pruner": "none", "space": {
        "learning_rate": 1.0e30, "epochs": 1, "batch_size": 16, "adapter": "full"}})
    result = automl("run", str(path), "--no-baseline")
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == EXIT_NO_MODEL, result.stderr
    assert len(errors) == 1 and "no trial completed (2 failed, 0 pruned)" in errors[0], result.stderr
    assert "Traceback" not in result.stderr
    assert "learning_rate" in result.stderr and "warning" in result.stderr


@pytest.mark.slow
def test_worker_process_error_is_the_same_one_line(recipe_file, monkeypatch):
    """A worker that cannot start (here its plugins differ from the supervisor's: the
    backbone plugin is blocked in its environment) reaches the user as the one line the
    main process would print, without a traceback; --debug (AUTOML_DEBUG) shows it."""
    path = recipe_file(search={"trials": 1, "pruner": "none", "space": {
        "learning_rate": 4e-3, "epochs": 1, "batch_size": 16, "adapter": "full"}})
    recipe = load_recipe(path)
    plugins.get_backbones()  # the supervisor has loaded its plugins
    monkeypatch.setenv("AUTOML_BLOCK_PLUGINS", "backbones")
    monkeypatch.delenv("AUTOML_DEBUG", raising=False)
    with pytest.raises(UserError) as info:
        run_recipe(recipe, options=RunOptions(workers=1, baseline=False))
    assert info.value.exit_code == EXIT_USER_ERROR
    message = str(info.value)
    assert "unknown backbone 'tiny-bert'" in message and "\n" not in message
    plugins.reset()  # the main process, with the same environment, says the same line
    with pytest.raises(UserError) as main:
        plugins.get_backbone("tiny-bert", file=str(recipe.path))
    assert message == str(main.value)
    error_file = recipe.output_dir / "progress" / "worker-0.error"
    assert json.loads(error_file.read_text())["message"] == message


def test_ctrl_c_before_the_search_is_exit_130_with_one_line(recipe_file, monkeypatch):
    """Ctrl-C while the run is being set up (reading, tokenising) ends with the documented
    status for an interrupted run, not click's "Aborted!" and 1, and starts no worker."""
    import multiprocessing

    from click.testing import CliRunner

    from automl.cli import cli
    from automl.errors import EXIT_INTERRUPTED
    from automl.run import RunContext

    def interrupted(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt

    monkeypatch.setattr(RunContext, "load_data", interrupted)
    path = recipe_file()
    result = CliRunner().invoke(cli, ["run", str(path)])
    assert result.exit_code == EXIT_INTERRUPTED, result.output
    assert "interrupted before the search started" in result.output and "Aborted" not in result.output
    assert multiprocessing.active_children() == []


def test_study_name_clash_between_two_recipes_names_both(toy_dir, tmp_path):
    """Two different recipes under one study name in one storage: the second run is one
    line naming both recipe files, exit 2, before any of its trials mixes with the first's."""
    from click.testing import CliRunner

    from automl.cli import cli
    from automl.testing import tiny_recipe, write_recipe

    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    space = {"learning_rate": 4e-3, "epochs": 1, "batch_size": 16, "adapter": "full"}
    first = write_recipe(tmp_path / "first.yaml", tiny_recipe(
        toy_dir, name="shared", output=str(tmp_path / "a"), search={"trials": 1, "pruner": "none", "space": space}))
    second = write_recipe(tmp_path / "second.yaml", tiny_recipe(
        toy_dir, name="shared", output=str(tmp_path / "b"),
        search={"trials": 1, "pruner": "none", "space": {**space, "learning_rate": 5e-3}}))
    quiet = Console(file=io.StringIO(), width=120, color_system=None)
    outcome = run_recipe(load_recipe(first), storage_url=storage, options=RunOptions(workers=0, baseline=False), console=quiet)
    assert outcome.summary.n_complete == 1
    with pytest.raises(UserError) as info:
        run_recipe(load_recipe(second), storage_url=storage, options=RunOptions(workers=0, baseline=False), console=quiet)
    message = str(info.value)
    assert "\n" not in message and str(first) in message and str(second) in message, message
    assert "study 'shared'" in message and "another study name" in message
    result = CliRunner().invoke(cli, ["run", str(second), "--storage", storage, "--no-baseline"])
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert result.exit_code == EXIT_USER_ERROR and len(errors) == 1 and str(first) in errors[0], result.output
    import optuna

    study = optuna.load_study(study_name="shared", storage=storage)
    assert len(study.trials) == 1  # nothing of the second recipe's
