"""Helpers of the integration tests (imported by conftest.py and the test modules)."""

from __future__ import annotations

import io
import socket
from pathlib import Path

from rich.console import Console

from automl import hookimpl, plugins
from automl.testing import registered


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class FailTrialOne:
    """A throwaway callback plugin that fails trial 1, so the run has a failed trial."""

    @hookimpl
    def automl_trial_start(self, trial):  # type: ignore[no-untyped-def]
        if trial.number == 1:
            raise RuntimeError("trial 1 fails on purpose")


def run_in_process(recipe_path: Path, **overrides: object):
    from automl.recipe import load_recipe
    from automl.search.supervisor import RunOptions, run_recipe

    plugins.reset()
    recipe = load_recipe(recipe_path).with_overrides(**overrides)
    try:
        with registered(FailTrialOne(), "fail-trial-one"):
            return run_recipe(
                recipe,
                options=RunOptions(workers=0, overrides=dict(overrides)),
                console=Console(file=io.StringIO(), width=100, color_system=None),
            )
    finally:
        plugins.reset()
