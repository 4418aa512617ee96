"""Shared pieces of the plugin tests: which data and recipe each built-in task uses, and
tiny variants of the shipped recipes (the tiny backbone, tenth-size data, one trial)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from automl.data import read_table
from automl.recipe import DataSpec
from automl.testing import write_recipe
from automl_plugins import datagen

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


@dataclass(frozen=True)
class Sample:
    """Where a task's example data comes from: the recipe it ships with and its data kind."""

    recipe: str
    kind: str
    spec: dict[str, Any]


#: Every built-in task, the recipe that shows it and the generated data it reads.
SAMPLES = {
    "fraud-detection": Sample("fraud", "fraud", {"label_column": "is_fraud"}),
    "text-classification": Sample("sentiment", "sentiment", {}),
    "text-regression": Sample("regression", "regression", {"label_column": "rating"}),
    "token-classification": Sample("ner", "ner", {}),
}


def split_paths(root: Path, kind: str) -> dict[str, Path]:
    ext = datagen.GENERATORS[kind][1]
    return {split: root / kind / f"{split}.{ext}" for split in datagen.SPLITS}


def data_spec(task_name: str, root: Path) -> DataSpec:
    sample = SAMPLES[task_name]
    paths = split_paths(root, sample.kind)
    return DataSpec(train=paths["train"], validation=paths["validation"], test=paths["test"], **sample.spec)


def frames(task_name: str, root: Path) -> dict[str, Any]:
    return {split: read_table(path) for split, path in split_paths(root, SAMPLES[task_name].kind).items()}


def tiny_recipe_for(task_name: str, root: Path, out: Path, **search: Any) -> Path:
    """The shipped recipe of *task_name* on the tiny backbone, tenth-size data and one
    quick trial; written under *out* and returned."""
    sample = SAMPLES[task_name]
    recipe = yaml.safe_load((RECIPES / f"{sample.recipe}.yaml").read_text())
    paths = split_paths(root, sample.kind)
    recipe["backbone"] = "tiny-bert"
    recipe["backbone_options"] = {}
    recipe["data"].update({split: str(path) for split, path in paths.items()})
    recipe["search"] = {
        "trials": 1,
        "pruner": "none",
        "retries": 0,
        "space": {"learning_rate": 3e-3, "batch_size": 16, "epochs": 2, "adapter": "full"},
        **search,
    }
    recipe["training"] = {"max_length": 48, "seed": 0, "device": "cpu"}
    recipe["output"] = str(out / "run")
    recipe.pop("name", None)
    return write_recipe(out / f"{sample.recipe}-tiny.yaml", recipe)


def load(task_name: str, root: Path, options: dict[str, Any] | None = None, *, binary: bool = False):
    """``(task, TaskData)`` as a run sees them after reading and ``prepare``. With *binary*
    only the first two classes are kept (text-classification's binary case)."""
    from automl import plugins
    from automl.task import TaskData

    cls = plugins.get_tasks()[task_name]
    task = cls(cls.Options.model_validate(options or {}), data_spec(task_name, root))
    raw = frames(task_name, root)
    if binary:
        keep = sorted(raw["train"]["label"].unique())[:2]
        raw = {k: f[f["label"].isin(keep)].reset_index(drop=True) for k, f in raw.items()}
    names = task.label_names(raw["train"], file="train")
    splits = {k: task.read(f, split=k, file=k, label_names=names) for k, f in raw.items()}
    task.labels = names
    data = TaskData(train=splits["train"], validation=splits["validation"], test=splits["test"], label_names=names)
    task.prepare(data)
    return task, data


def fake_outputs(task: Any, split: Any, encoded: dict[str, Any], seed: int = 0) -> Any:
    """Model outputs of the right shape that lean towards the true labels (with noise), so
    that metrics are neither perfect nor degenerate."""
    import numpy as np

    rng = np.random.default_rng(seed)
    n_out = task.num_labels()
    labels = encoded.get("labels")
    if task.head == "token-classification":
        out = []
        for i, ids in enumerate(encoded["input_ids"]):
            logits = rng.normal(size=(len(ids), n_out))
            if labels is not None:
                for pos, y in enumerate(labels[i]):
                    if y >= 0:
                        logits[pos, int(y)] += 2.5
            out.append(logits.astype(np.float32))
        return out
    logits = rng.normal(size=(len(split), n_out))
    if labels is not None and task.problem_type == "regression":
        y = np.asarray(labels, dtype=float)
        logits[:, 0] = (y - y.mean()) / (y.std() or 1) + 0.5 * logits[:, 0]
    elif labels is not None:
        logits[np.arange(len(split)), np.asarray(labels, dtype=int)] += 2.0
    return logits.astype(np.float32)
