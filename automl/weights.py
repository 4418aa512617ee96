"""A trial's weights: what a trial changed (the adapter and head for a peft adapter, every
weight for full fine-tuning, the encoder's adapter and the feature tower for a fused
model), taken from a model, loaded back into a fresh one, saved and loaded as safetensors.

The trial engine keeps its best evaluation's weights this way, checkpoints
(:mod:`automl.checkpoint`) save them, and the export rebuilds the best trial from them.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from automl.adapters import ADAPTERS
from automl.fusion import FusionModel, build_fused, fuses

if TYPE_CHECKING:
    from automl.task import Task


def trainable_state(model: torch.nn.Module, adapter: str) -> dict[str, torch.Tensor]:
    """What a trial changed: the adapter (and head) for LoRA, every weight for full, the
    head alone for ``head``."""
    if isinstance(model, FusionModel):
        state = model.trainable_state(adapter)
    elif not ADAPTERS[adapter].trains_body:  # the task head alone (the body is frozen)
        body = (getattr(model, "base_model_prefix", "") or "") + "."
        state = {k: v for k, v in model.state_dict().items() if body == "." or not k.startswith(body)}
    elif not ADAPTERS[adapter].peft:
        state = model.state_dict()
    else:
        from peft import get_peft_model_state_dict

        state = get_peft_model_state_dict(model)
    # Safetensors refuses shared storage; give each tensor its own contiguous copy on CPU.
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}


def load_trainable_state(model: torch.nn.Module, adapter: str, state: dict[str, torch.Tensor]) -> None:
    """Load what :func:`trainable_state` returned back into a model built for *adapter*."""
    if isinstance(model, FusionModel):
        model.load_trainable_state(state, adapter)
    elif not ADAPTERS[adapter].peft:
        _, unexpected = model.load_state_dict(state, strict=False)
        if unexpected:
            raise ValueError(f"unexpected weights: {unexpected[:3]}")
    else:
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model, state)


def save_trial_weights(model: torch.nn.Module, adapter: str, path: Path) -> None:
    from safetensors.torch import save_file

    save_file(trainable_state(model, adapter), str(path), metadata={"adapter": adapter})


def load_trial_weights(
    base_model: torch.nn.Module, params: dict[str, Any], head: str, lora_targets: list[str], path: Path, task: Task | None = None
) -> torch.nn.Module:
    """Rebuild a trial's model from the base model and its saved weights (safetensors);
    a fusion model when *task* has table-column features or the adapter is a head on the
    frozen encoder."""
    from safetensors.torch import load_file

    adapter = params.get("adapter", "full")
    if task is not None and fuses(task, adapter):
        model = build_fused(copy.deepcopy(base_model), params, task.features, task.num_labels(), lora_targets)
    else:
        model = ADAPTERS[adapter].build(copy.deepcopy(base_model), params, head, lora_targets)
    try:
        load_trainable_state(model, adapter, load_file(str(path)))
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    model.eval()
    return model
