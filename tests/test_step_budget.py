"""``min_steps``: small data gets at least this many optimiser steps (epochs are raised),
larger data keeps its epochs, and ``max_steps`` still wins."""

from __future__ import annotations

import math

import pytest

from automl.engine import TrialEngine
from test_engine import build_engine


@pytest.fixture
def engine(recipe_file) -> TrialEngine:
    return build_engine(recipe_file())


BASE = {"learning_rate": 1e-3, "adapter": "full"}


@pytest.mark.parametrize(("batch_size", "epochs", "min_steps"), [(32, 1, 25), (64, 1, 12), (16, 2, 5), (32, 0.5, 0)])
def test_min_steps_raises_epochs_on_small_data(engine, batch_size, epochs, min_steps):
    per_epoch = math.ceil(len(engine.train_lengths) / batch_size)
    result = engine.run_trial({**BASE, "batch_size": batch_size, "epochs": epochs, "min_steps": min_steps})
    assert result.steps == max(math.ceil(epochs * per_epoch), min_steps)
    assert result.epochs == pytest.approx(result.steps / per_epoch)


def test_max_steps_overrides_min_steps(engine):
    result = engine.run_trial({**BASE, "batch_size": 32, "epochs": 3, "min_steps": 50, "max_steps": 7})
    assert result.steps == 7
