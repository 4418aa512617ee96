"""Fixtures for the built-in task plugins: small generated data and the tiny backbone's
tokenizer."""

from __future__ import annotations

from pathlib import Path

import pytest

from automl.testing import minilm_dir
from automl_plugins import datagen


@pytest.fixture(scope="session")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(minilm_dir()))


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> Path:
    """Every kind of generated data at a tenth of the shipped size."""
    root = tmp_path_factory.mktemp("data")
    for kind in datagen.KINDS:
        datagen.generate(kind, root, seed=1, scale=0.1)
    return root
