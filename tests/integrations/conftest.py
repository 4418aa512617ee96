"""One tiny real run, logged to a real MLflow file store, shared by the integration tests
(MLflow, Optuna Dashboard, ONNX export). Tests that change a run work on a copy."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from integration_helpers import run_in_process

from automl.testing import tiny_recipe, write_recipe, write_toy_text_data

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tracked_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """(recipe, run directory, MLflow file-store URI): 3 trials of 2 epochs (at least
    2 evaluations each), trial 1 failed on purpose by a callback plugin, logged to ``file://<tmp>/mlruns``."""
    pytest.importorskip("mlflow", reason="the mlflow extra is not installed (pip install 'automl[test]')")
    base = tmp_path_factory.mktemp("integrations")
    data = write_toy_text_data(base / "data", train=160, validation=48, test=48)
    uri = (base / "mlruns").resolve().as_uri()
    recipe = tiny_recipe(
        data,
        output=str(base / "run"),
        name="tiny-tracked",
        mlflow=uri,
        search={
            "trials": 3,
            "space": {"learning_rate": {"low": 4e-3, "high": 8e-3, "log": True}, "epochs": 2, "batch_size": [16], "adapter": "full"},
        },
    )
    path = write_recipe(base / "recipe.yaml", recipe)
    outcome = run_in_process(path)
    assert outcome.best_dir is not None
    return path, outcome.run_dir, uri


@pytest.fixture
def run_copy(tracked_run, tmp_path: Path) -> Path:
    """A copy of the tracked run that a test may change (its own journal, no MLflow)."""
    _, run_dir, _ = tracked_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    return copy
