"""Recipes: YAML files validated into typed, frozen objects.

A recipe names the task, the backbone, the data, the objective, the search and the training
settings. Every problem is a :class:`~automl.errors.RecipeError` naming the file, the YAML
line, the field and what was expected. ``yaml.safe_load`` semantics only.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator

from automl.adapters import ADAPTER_HYPERPARAMETERS
from automl.errors import RecipeError, did_you_mean
from automl.params import FrozenModel as _Model
from automl.params import ParamSpec, Scalar, SpaceEntry, validation_message  # noqa: F401  (part of the recipe schema; imported from here too)

#: Hyperparameters the trial engine understands. Tasks may add their own
#: (``Task.extra_hyperparameters``).
ENGINE_HYPERPARAMETERS: dict[str, str] = {
    "learning_rate": "peak learning rate of AdamW",
    "batch_size": "examples per optimiser step (effective batch size)",
    "epochs": "passes over the training data",
    "max_steps": "optimiser steps; when set, overrides epochs",
    "min_steps": "at least this many optimiser steps: on small data, epochs are raised to reach it",
    "weight_decay": "AdamW weight decay",
    "warmup_ratio": "share of steps with linear warm-up",
    "scheduler": "learning-rate schedule: linear, cosine or constant",
    "adapter": "how a trial fine-tunes: full, or a peft adapter (lora, dora, qlora, ia3, loha, lokr)",
    "lora_r": "LoRA rank",
    "lora_alpha": "LoRA alpha (scaling = alpha / r)",
    "lora_dropout": "dropout on the LoRA path",
    "lora_target_modules": "module names LoRA wraps; default from the backbone plugin",
    "fusion_width": "width of the feature tower and fusion layer (tasks with table-column features)",
    "fusion_dropout": "dropout in the feature tower and fusion head",
    "fusion_lr_factor": "learning rate of the feature tower and fusion head, as a multiple of learning_rate",
    "max_grad_norm": "private training (a privacy: block): the per-example gradient clipping norm; default privacy.max_grad_norm",
}
#: Each adapter's own settings (lora_rslora, target_modules, loha_r...), named in the
#: adapter registry.
ENGINE_HYPERPARAMETERS.update(ADAPTER_HYPERPARAMETERS)


class DataSpec(_Model):
    """Where the data is. Paths are relative to the recipe file."""

    train: Path
    validation: Path | None = None
    test: Path | None = None
    validation_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.2
    test_fraction: Annotated[float, Field(ge=0, lt=1)] = 0.0
    text_column: str = "text"
    label_column: str = "label"
    #: Table columns fed to the model as features (numbers, categories) next to the text,
    #: for tasks that take them (``text-classification``, ``text-regression``).
    feature_columns: list[str] | None = None
    max_rows: Annotated[int, Field(gt=0)] | None = None
    #: Validation and test splits larger than this are a stratified sample of this many rows
    #: (seeded by ``training.seed``), the same rows for every model of the run: each
    #: evaluation of a fine-tuning trial scores them, so on big tables they bound its
    #: cost. ``0``: every row.
    max_eval_rows: Annotated[int, Field(ge=0)] = 10_000
    #: How to read the files when their suffix misleads (e.g. ``word<TAB>tag`` files named
    #: ``.tsv``: ``conll``); default: from each file's suffix.
    format: Literal["csv", "tsv", "jsonl", "parquet", "conll"] | None = None


class ObjectiveSpec(_Model):
    """The validation metric the search optimises; defaults come from the task."""

    metric: str | None = None
    direction: Literal["maximize", "minimize"] | None = None


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|hr)?\s*$")


def parse_duration(value: Any) -> float | None:
    """Seconds from ``90``, ``"90s"``, ``"15m"`` or ``"2h"``."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 600, '10m' or '2h'")
    if isinstance(value, int | float):
        if value <= 0:
            raise ValueError("expected a positive duration")
        return float(value)
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError(f"expected a duration such as 600, '10m' or '2h', got {value!r}")
    number, unit = float(match.group(1)), (match.group(2) or "s")
    seconds = number * {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600}[unit]
    if seconds <= 0:
        raise ValueError("expected a positive duration")
    return seconds


# ----------------------------------------------------------------- checkpoint policy

#: Backbones with at least this many parameters checkpoint by default (``auto``).
AUTO_MIN_PARAMETERS = 300_000_000
#: How often ``auto`` checkpoints: at the first evaluation point after this many seconds.
AUTO_SECONDS = 600.0


@dataclass(frozen=True)
class CheckpointPolicy:
    """When to checkpoint: every *evaluations* evaluation points, or at the first
    evaluation point after *seconds* since the last checkpoint."""

    evaluations: int | None = None
    seconds: float | None = None


def parse_policy(setting: str | int, n_parameters: int) -> CheckpointPolicy | None:
    """``training.checkpoint_every`` as a policy, or ``None`` for no checkpoints.

    ``auto``: every 10 minutes for a backbone of 300M parameters or more, else off;
    ``off``; an integer N: every N evaluations; a duration (``90s``, ``10m``, ``1h``)."""
    if isinstance(setting, bool):
        raise ValueError("expected auto, off, a number of evaluations or a duration such as '10m'")
    if isinstance(setting, int):
        if setting <= 0:
            raise ValueError("expected a positive number of evaluations")
        return CheckpointPolicy(evaluations=setting)
    text = str(setting).strip().lower()
    if text == "off":
        return None
    if text == "auto":
        return CheckpointPolicy(seconds=AUTO_SECONDS) if n_parameters >= AUTO_MIN_PARAMETERS else None
    if re.fullmatch(r"\d+", text):
        return CheckpointPolicy(evaluations=int(text)) if int(text) > 0 else None
    return CheckpointPolicy(seconds=parse_duration(text))


def check_setting(setting: str | int) -> str | int:
    """Validate ``training.checkpoint_every`` (for the recipe model); raises ValueError."""
    parse_policy(setting, 0)
    return setting


class SearchSpec(_Model):
    """How many trials, for how long, sampled and pruned how, over which space."""

    trials: Annotated[int, Field(gt=0)] = 10
    timeout: float | None = None
    sampler: Literal["tpe", "random", "grid", "cmaes", "gp"] = "tpe"
    pruner: Literal["hyperband", "median", "successive_halving", "none"] = "hyperband"
    space: dict[str, SpaceEntry] = Field(default_factory=dict)
    keep_top_k: Annotated[int, Field(ge=1, le=20)] = 2
    retries: Annotated[int, Field(ge=0, le=10)] = 2
    #: The first trials: ``defaults`` (one known-good configuration per adapter in the
    #: space), ``none``, or a list of configurations (parameters left out take the middle
    #: of their range).
    start_from: Literal["defaults", "none"] | list[dict[str, Scalar]] = "defaults"
    #: No trial is pruned before this share of its optimiser steps.
    prune_after: Annotated[float, Field(ge=0, lt=1)] = 0.25

    @field_validator("timeout", mode="before")
    @classmethod
    def _timeout(cls, value: Any) -> float | None:
        return parse_duration(value)

    @field_validator("start_from", mode="before")
    @classmethod
    def _start_from(cls, value: Any) -> Any:
        if value is None or value is False:
            return "none"
        if value is True:
            return "defaults"
        if isinstance(value, dict):
            raise ValueError("expected 'defaults', 'none' or a list of configurations (a YAML list of mappings)")
        return value


class TrainingSpec(_Model):
    """Settings that hold for every trial."""

    #: Tokens per example; ``auto``: chosen from the training rows' token lengths
    #: (:func:`automl.encoding.auto_max_length`).
    max_length: Literal["auto"] | Annotated[int, Field(ge=8, le=8192)] = "auto"
    seed: int = 42
    device: str = "auto"
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    #: ``auto``: every ~quarter of the shortest trial in the space, no more often than
    #: every two validation sets' worth of training examples and at least once per epoch.
    eval_every: Literal["auto", "epoch"] | Annotated[int, Field(gt=0)] = "auto"
    #: Stop a trial after this many evaluations without improvement (None: never).
    early_stopping_patience: Annotated[int, Field(gt=0)] | None = None
    #: An evaluation improves on the best by more than this, or does not count.
    early_stopping_min_delta: Annotated[float, Field(ge=0)] = 0.0
    eval_batch_size: Annotated[int, Field(gt=0)] = 64
    #: Validation rows a trial is evaluated on while it trains: more than this, and a
    #: sample of about this many (each class in its share, at least 2 rows of every class,
    #: the same for every trial; :func:`automl.engine.eval_sample`) is what its
    #: evaluations, the pruner and early stopping see; its best evaluation is then scored
    #: on all of them, which is its value (None: every evaluation on all of them).
    eval_max_rows: Annotated[int, Field(ge=50)] | None = 2_000
    trust_remote_code: bool = False
    weights_dtype: Literal["auto", "fp32", "bf16"] = "auto"
    gradient_checkpointing: bool = False
    checkpoint_every: str | Annotated[int, Field(gt=0)] = "auto"

    @field_validator("checkpoint_every")
    @classmethod
    def _checkpoint_every(cls, value: str | int) -> str | int:
        return check_setting(value)

    @field_validator("max_length", mode="before")
    @classmethod
    def _max_length(cls, value: Any) -> Any:
        if value == "auto":
            return value
        if isinstance(value, bool) or not isinstance(value, int) or not 8 <= value <= 8192:
            raise ValueError(f"expected 'auto' or a whole number of tokens from 8 to 8192, got {value!r}")
        return value

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", value):
            raise ValueError(f"expected auto, cpu, mps, cuda or cuda:N, got {value!r}")
        return value


class PrivacySpec(_Model):
    """Differentially private training (DP-SGD through Opacus) for every trial, and the
    accounting of the search as a whole (docs/privacy.md).

    Attributes:
        epsilon: the privacy budget ε: of the whole search (``accounting: search``, the
            default) or of each trial (``accounting: trial``).
        delta: δ, or ``auto``: 1 / (10 n) for n training rows (always below 1/n).
        max_grad_norm: per-example gradient clipping norm, unless the space searches
            ``max_grad_norm``.
        accounting: ``search``: ε is the budget of the whole search, split over
            ``search.trials`` by the accountant; ``trial``: ε holds for each trial, and the
            search's ε (their composition) is reported.
        physical_batch_size: examples per forward/backward pass; a logical batch
            (``batch_size``, Poisson-sampled) is made of as many as it takes.
    """

    epsilon: Annotated[float, Field(gt=0, le=100)]
    delta: Literal["auto"] | Annotated[float, Field(gt=0, lt=1)] = "auto"
    max_grad_norm: Annotated[float, Field(gt=0)] = 1.0
    accounting: Literal["search", "trial"] = "search"
    physical_batch_size: Annotated[int, Field(gt=0)] = 32


class Recipe(_Model):
    """A whole recipe."""

    task: str
    task_options: dict[str, Any] = Field(default_factory=dict)
    backbone: str
    backbone_options: dict[str, Any] = Field(default_factory=dict)
    data: DataSpec
    objective: ObjectiveSpec = Field(default_factory=ObjectiveSpec)
    search: SearchSpec = Field(default_factory=SearchSpec)
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    #: Differentially private training; off (None) by default.
    privacy: PrivacySpec | None = None
    output: Path | None = None
    name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    #: MLflow tracking URI the run is logged to (the ``mlflow`` callback plugin); not part
    #: of the fingerprint, so it can be added or changed on a resume.
    mlflow: str | None = Field(default=None, min_length=1)

    # Set by load_recipe, not by the YAML.
    path: Path | None = Field(default=None, exclude=True)

    @property
    def base_dir(self) -> Path:
        return self.path.parent if self.path is not None else Path.cwd()

    @property
    def study_name(self) -> str:
        if self.name:
            return self.name
        return self.path.stem if self.path is not None else "automl"

    @property
    def output_dir(self) -> Path:
        return self.output if self.output is not None else Path("runs") / self.study_name

    def data_path(self, which: str) -> Path | None:
        value = getattr(self.data, which)
        if value is None:
            return None
        return value if value.is_absolute() else (self.base_dir / value)

    def resolved(self) -> dict[str, Any]:
        """The recipe as run: JSON-able, data paths absolute."""
        out = self.model_dump(mode="json", exclude={"path"})
        for which in ("train", "validation", "test"):
            path = self.data_path(which)
            out["data"][which] = str(path.resolve()) if path else None
        out["output"] = str(self.output_dir)
        return out

    def fingerprint(self) -> str:
        """Hash of everything that defines the search (not the budget or output)."""
        body = self.resolved()
        for key in ("output", "mlflow"):
            body.pop(key, None)
        body["search"] = {k: v for k, v in body["search"].items() if k not in ("trials", "timeout")}
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]

    def with_overrides(self, **overrides: Any) -> Recipe:
        """A copy with CLI overrides applied (None values are ignored)."""
        search = dict(self.search)
        training = dict(self.training)
        top: dict[str, Any] = {}
        for key, value in overrides.items():
            if value is None:
                continue
            if key in ("trials", "timeout"):
                search[key] = value
            elif key in ("device", "seed"):
                training[key] = value
            elif key == "output":
                top["output"] = Path(value)
            elif key == "mlflow":
                top["mlflow"] = value
            else:
                raise KeyError(key)
        try:
            return self.model_copy(
                update={
                    "search": SearchSpec.model_validate(search),
                    "training": TrainingSpec.model_validate(training),
                    **top,
                }
            )
        except ValidationError as exc:
            err = exc.errors()[0]
            raise RecipeError(validation_message(err), field="--" + str(err["loc"][-1])) from None


# --------------------------------------------------------------------------- loading


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that refuses alias bombs: aliases are rarely needed in recipes."""


def _compose(text: str, file: str) -> yaml.Node | None:
    try:
        node = yaml.compose(text, Loader=_LineLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise RecipeError(
            f"not valid YAML: {problem}", file=file, line=(mark.line + 1) if mark else None
        ) from None
    return node


def _count_aliases(node: yaml.Node | None) -> int:
    """Count nodes reachable with aliases expanded, stopping early on alias bombs."""
    if node is None:
        return 0
    total = 1
    if isinstance(node, yaml.SequenceNode):
        for child in node.value:
            total += _count_aliases(child)
            if total > 100_000:
                return total
    elif isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            total += _count_aliases(key) + _count_aliases(value)
            if total > 100_000:
                return total
    return total


def _find_line(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """Line (1-based) of the YAML node at pydantic error location *loc*."""
    line = (node.start_mark.line + 1) if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == part or key.value == str(part):
                    node, line = value, key.start_mark.line + 1
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def _known_fields(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Field names allowed at *loc* (for did-you-mean on unknown keys)."""
    current: Any = model
    for part in loc[:-1]:
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return []
        annotation = fields[part].annotation
        current = annotation if isinstance(annotation, type) else None
        for arg in getattr(annotation, "__args__", ()):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                current = arg
        if current is None:
            return []
    fields = getattr(current, "model_fields", None)
    return [name for name, f in (fields or {}).items() if not f.exclude]


def _clean_loc(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """Drop pydantic's union-branch markers such as 'ParamSpec' or 'list[...]'."""
    keep = []
    for part in loc:
        if isinstance(part, str) and (part[:1].isupper() or "[" in part or part in ("str", "int", "float", "bool")):
            continue
        keep.append(part)
    return tuple(keep)


def _best_error(errors: list[dict[str, Any]]) -> dict[str, Any]:
    """Of a union's many complaints, the one the user most likely meant."""
    def score(err: dict[str, Any]) -> tuple[int, int]:
        # Prefer errors from the structured branch (ParamSpec), then the deepest.
        structured = any(isinstance(p, str) and p == "ParamSpec" for p in err["loc"])
        return (1 if structured else 0, len(err["loc"]))

    return max(errors, key=score)


def parse_recipe(data: Any, *, file: str = "<recipe>", node: yaml.Node | None = None, path: Path | None = None) -> Recipe:
    if data is None:
        raise RecipeError("the recipe is empty; expected a mapping with task, backbone and data", file=file)
    if not isinstance(data, dict):
        raise RecipeError(
            f"expected a mapping of recipe keys (task, backbone, data, ...), got {type(data).__name__}",
            file=file,
            line=1,
        )
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        err = _best_error(errors) if len({_clean_loc(e["loc"])[:2] for e in errors}) == 1 else errors[0]
        loc = _clean_loc(err["loc"])
        field = ".".join(str(p) for p in loc)
        message = validation_message(err)
        if err["type"] == "extra_forbidden":
            message += did_you_mean(str(loc[-1]), _known_fields(Recipe, loc))
        raise RecipeError(message, file=file, field=field or None, line=_find_line(node, loc)) from None
    return recipe.model_copy(update={"path": path})


MAX_RECIPE_BYTES = 1_000_000


def load_recipe(path: str | Path) -> Recipe:
    """Read, parse and validate a recipe file (structure only; plugins and data are
    checked by :func:`automl.run.check_recipe`)."""
    path = Path(path)
    file = str(path)
    if not path.exists():
        raise RecipeError("no such file", file=file)
    if path.is_dir():
        raise RecipeError("is a directory, expected a YAML recipe file", file=file)
    raw = path.read_bytes()
    if len(raw) > MAX_RECIPE_BYTES:
        raise RecipeError(f"recipe is {len(raw)} bytes; recipes over {MAX_RECIPE_BYTES} bytes are refused", file=file)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise RecipeError("not a UTF-8 text file; expected a YAML recipe", file=file) from None
    node = _compose(text, file)
    if _count_aliases(node) > 100_000:
        raise RecipeError("YAML aliases expand to over 100,000 nodes; refusing (alias bomb?)", file=file)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:  # e.g. a !!python/object tag: safe loading refuses it
        mark = getattr(exc, "problem_mark", None)
        problem = (getattr(exc, "problem", None) or str(exc).splitlines()[0]).replace("\n", " ")
        raise RecipeError(
            f"not valid YAML: {problem} (recipes are plain YAML; tags that build objects are refused)",
            file=file,
            line=(mark.line + 1) if mark else None,
        ) from None
    return parse_recipe(data, file=file, node=node, path=path.resolve())

