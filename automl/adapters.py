"""The adapter registry: how a trial turns the pretrained model into what it trains.

One entry per method (``full`` fine-tuning, peft's LoRA, ...): its name as recipes write it
(``adapter: lora``), the function that wraps a fresh copy of the base model, the default
learning-rate range that suits it (LoRA wants roughly ten times the learning rate of full
fine-tuning), the defaults of its own settings, and whether its weights can be merged into
the base model at export. Adding a method touches this module only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from automl.search.ranges import POSITIVE_INT, Range

if TYPE_CHECKING:
    import torch

    from automl.recipe import SpaceEntry

#: (model, params, head, default target modules) -> trainable model.
Builder = Callable[["torch.nn.Module", dict[str, Any], str, list[str]], "torch.nn.Module"]


@dataclass(frozen=True)
class Adapter:
    """One way to fine-tune.

    Attributes:
        name: the value of the ``adapter`` hyperparameter.
        build: wraps a fresh copy of the base model for training.
        learning_rate: default log-uniform learning-rate range ``(low, high)`` for a
            ~20-100M parameter encoder; backbones may scale it for their size.
        space: defaults of the adapter's own hyperparameters (``lora_r``...), without
            ``when:``; the default space adds the condition on ``adapter``.
        ranges: the values those hyperparameters accept (``lora_r`` a whole number >= 1).
        mergeable: the exported model can fold the adapter into the base weights.
        peft: trains through peft (state saved with peft's state-dict helpers).
        description: one line for docs and ``automl recipe check``.
    """

    name: str
    build: Builder
    learning_rate: tuple[float, float]
    space: dict[str, SpaceEntry] = field(default_factory=dict)
    mergeable: bool = True
    peft: bool = True
    description: str = ""
    #: Accepted values of the adapter's own hyperparameters, checked before a run
    #: (:mod:`automl.search.ranges`).
    ranges: dict[str, Range] = field(default_factory=dict)


def peft_task_type(head: str) -> Any:
    from peft import TaskType

    if head == "feature-extraction":  # an encoder without a task head (table-column fusion)
        return TaskType.FEATURE_EXTRACTION
    return TaskType.TOKEN_CLS if head == "token-classification" else TaskType.SEQ_CLS


def _full(model: torch.nn.Module, params: dict[str, Any], head: str, targets: list[str]) -> torch.nn.Module:
    return model


def _lora(model: torch.nn.Module, params: dict[str, Any], head: str, targets: list[str]) -> torch.nn.Module:
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        task_type=peft_task_type(head),
        r=int(params.get("lora_r", 8)),
        lora_alpha=int(params.get("lora_alpha", 16)),
        lora_dropout=float(params.get("lora_dropout", 0.0)),
        target_modules=list(params.get("lora_target_modules") or targets),
    )
    return get_peft_model(model, config)


def _lora_space() -> dict[str, SpaceEntry]:
    from automl.recipe import ParamSpec

    return {
        "lora_r": ParamSpec(choices=[4, 8, 16]),
        "lora_alpha": ParamSpec(choices=[8, 16, 32]),
        "lora_dropout": ParamSpec(low=0.0, high=0.2),
    }


ADAPTERS: dict[str, Adapter] = {}


def register_adapter(adapter: Adapter) -> None:
    """Add (or replace) an adapter in the registry."""
    ADAPTERS[adapter.name] = adapter


register_adapter(
    Adapter("full", _full, learning_rate=(1e-5, 1e-4), peft=False, description="every weight is trained")
)
register_adapter(
    Adapter(
        "lora",
        _lora,
        learning_rate=(1e-4, 1e-3),
        space=_lora_space(),
        ranges={"lora_r": POSITIVE_INT, "lora_alpha": POSITIVE_INT, "lora_dropout": Range("float", low=0, high=1, high_open=True)},
        description="low-rank updates of the attention projections (peft LoRA)",
    )
)


def get_adapter(name: str) -> Adapter:
    """The registered adapter *name*; ``KeyError`` with the known names otherwise."""
    try:
        return ADAPTERS[name]
    except KeyError:
        raise KeyError(f"unknown adapter '{name}'; known: {', '.join(ADAPTERS)}") from None
