"""Every hook automl calls, in one module.

Plugins implement these with ``@automl.hookimpl`` (defined here, imported from ``automl``). Hooks are always called with keyword
arguments, so a spec can gain arguments later without breaking a plugin that takes fewer.
Each one is documented in ``docs/hooks.md``; a test fails if one is missing there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import click

    from automl.backbone import Backbone
    from automl.events import RunInfo, StudySummary, TrialInfo, TrialOutcome
    from automl.task import Task

#: Version of the plugin API (hooks, Task and Backbone interfaces). A plugin module declares
#: the API it targets with ``automl_api_version = "1"``; a plugin that targets a different
#: major version is refused with a clear message instead of failing mid-run.
API_VERSION = "1"

hookimpl = pluggy.HookimplMarker("automl")
hookspec = pluggy.HookspecMarker("automl")


@hookspec
def automl_register_tasks(register: Callable[[type[Task]], None]) -> None:
    """Register task classes (subclasses of :class:`automl.task.Task`).

    Called once when the plugin manager is first used.

    Args:
        register: call it once per task class, ``register(MyTask)``. The class's ``name``
            is what a recipe's ``task:`` key names. Registering a name twice is an error
            that names both plugins.
    """


@hookspec
def automl_register_backbones(register: Callable[[type[Backbone]], None]) -> None:
    """Register backbone classes (subclasses of :class:`automl.backbone.Backbone`).

    Called once when the plugin manager is first used.

    Args:
        register: call it once per backbone class, ``register(MyBackbone)``. The class's
            ``name`` is what a recipe's ``backbone:`` key names.
    """


@hookspec
def automl_register_commands(cli: click.Group) -> None:
    """Add commands to the ``automl`` command line.

    Called once when the CLI starts.

    Args:
        cli: the top-level click group; use ``@cli.command()`` to add a command.
    """


@hookspec
def automl_study_start(run: RunInfo) -> None:
    """A run is about to search: its study is open and ``run.json`` written, and nothing
    has trained in this run yet (a resumed run may hold trials from before). Called once,
    in the process that runs ``automl run`` (or ``automl worker``), also on a resume.

    Args:
        run: the run; ``run.recipe`` is the recipe as run (JSON-able, CLI overrides applied).

    A :class:`~automl.errors.UserError` raised here stops the run with its one-line message
    (exit code 2) before anything trains; any other exception is printed as a warning and
    the run goes on.
    """


@hookspec
def automl_trial_start(run: RunInfo, trial: TrialInfo) -> None:
    """A trial is about to train. Called in the worker process that runs the trial.

    Args:
        run: the run (study name, run directory, task, backbone, objective).
        trial: the trial number and its sampled hyperparameters.

    An exception raised here fails that trial (with the plugin named in the reason); the
    search goes on.
    """


@hookspec
def automl_trial_end(run: RunInfo, trial: TrialInfo, outcome: TrialOutcome) -> None:
    """A trial has ended: complete, pruned or failed. Called in the worker process.

    Args:
        run: the run the trial belongs to.
        trial: the trial number and its hyperparameters.
        outcome: state, objective value (``None`` unless complete), all validation
            metrics, the failure or pruning reason, and the wall time in seconds.

    An exception raised here is reported and ignored: the trial's result is already stored.
    """


@hookspec
def automl_study_end(run: RunInfo, summary: StudySummary) -> None:
    """A run has ended (trial budget, timeout or Ctrl-C) and the best model is exported.

    Called once, in the process that ran ``automl run``.

    Args:
        run: the run.
        summary: trial counts by state, the best trial and value (``None`` when no trial
            completed), where the best model was written, and whether the run was
            interrupted.
    """
