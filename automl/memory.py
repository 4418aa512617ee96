"""Memory a trial needs, estimated before it runs from the model's configuration alone.

The model is built on PyTorch's ``meta`` device (shapes, no storage: an 8B model costs no
memory and well under a minute), wrapped by the adapter the same way a trial wraps it,
and its parameters counted. The estimate is the sum of

* weights: every parameter at its load dtype (fp32, bf16, or 4-bit NF4 for the linear
  layers of a QLoRA base);
* training state: for each trainable parameter (kept in fp32) its fp32 gradient and
  AdamW's two fp32 moments (12 bytes);
* activations kept for the backward pass: per layer and token about ``34 h + 5 a s``
  bytes at 16-bit (Korthikanti et al. 2022, "Reducing activation recomputation in large
  transformer models"; ``h`` hidden size, ``a`` attention heads, ``s`` sequence length),
  doubled at fp32; with gradient checkpointing only each layer's input (``2 h`` per token)
  plus one layer's full set.

It leaves out the CUDA context (~0.5 GiB), allocator fragmentation and temporary buffers:
treat it as a lower bound to compare configurations and devices, not a promise.
``benchmarks/gpu_check.sh`` prints it beside the measured peak.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from automl.adapters import ADAPTERS, linear_roles
from automl.backbone import auto_model_class, head_support
from automl.encoding import AUTO_MAX_LENGTH
from automl.fusion import CACHE_CHUNK, FusionHead, FusionShape, caches_text
from automl.search.space import space_adapters

GIB = 1024**3


def human_bytes(n: float) -> str:
    """``1.5 GiB``, ``320 MiB``, ``12 KiB``."""
    for unit, size in (("GiB", GIB), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= size:
            return f"{n / size:.1f} {unit}" if n < 10 * size else f"{n / size:.0f} {unit}"
    return f"{int(n)} B"


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes one trial of *adapter* needs, by part."""

    adapter: str
    parameters: int
    trainable: int
    weights: int
    training_state: int
    activations: int

    @property
    def total(self) -> int:
        return self.weights + self.training_state + self.activations


def meta_model(config: Any, head: str) -> Any:
    """The model for *config* and *head* on the meta device (no weights in memory)."""
    import torch

    with head_support(config, head), torch.device("meta"):
        return auto_model_class(head).from_config(config)


def _layers_hidden_heads(config: Any) -> tuple[int, int, int]:
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    layers = getattr(text, "num_hidden_layers", None) or getattr(text, "n_layer", None) or 12
    hidden = getattr(text, "hidden_size", None) or getattr(text, "n_embd", None) or getattr(text, "d_model", None) or 768
    heads = getattr(text, "num_attention_heads", None) or getattr(text, "n_head", None) or 12
    return int(layers), int(hidden), int(heads)


def estimate(
    model: Any,
    *,
    adapter: str,
    params: dict[str, Any],
    head: str,
    default_targets: list[str],
    batch_size: int,
    max_length: int,
    weight_bytes: float,
    activation_bytes: int,
    gradient_checkpointing: bool = False,
    per_example_gradients: bool = False,
) -> MemoryEstimate:
    """Estimate one trial of *adapter* with *params* on the meta-device *model*.
    With *per_example_gradients* (private training, *batch_size* the physical batch),
    Opacus keeps an fp32 gradient per example of the batch and a summed one.

    Args:
        weight_bytes: bytes per weight as loaded (4 fp32, 2 bf16); QLoRA's linear layers
            count 0.5 whatever this says.
        activation_bytes: bytes per activation value (4 in fp32, 2 under bf16/fp16 autocast).
    """
    spec = ADAPTERS[adapter]
    total = sum(p.numel() for p in model.parameters())
    wrapped = spec.build(copy.deepcopy(model), params, head, default_targets)
    trainable = sum(p.numel() for p in wrapped.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in wrapped.parameters() if not p.requires_grad)
    if spec.quantization == "4bit":
        roles = linear_roles(model)
        linear = sum(m.weight.numel() for n, m in model.named_modules() if n in roles)
        frozen_bytes = linear * 0.5 + max(0, frozen - linear) * 2
    else:
        frozen_bytes = frozen * weight_bytes
    # What trains is kept in fp32 (the engine casts it), with an fp32 gradient and AdamW's
    # two fp32 moments: 4 + 12 bytes per trainable parameter.
    weights = int(frozen_bytes + trainable * 4)
    layers, hidden, heads = _layers_hidden_heads(model.config)
    tokens = batch_size * max_length
    scale = activation_bytes / 2
    per_layer = tokens * (34 * hidden + 5 * heads * max_length) * scale
    if not spec.trains_body:
        # The frozen model only runs forward (a layer's activations at a time), CACHE_CHUNK
        # rows at once when a head on its pooled output reads them from the cache.
        pooled = head == "sequence-classification"
        rows = min(batch_size, CACHE_CHUNK) if pooled else batch_size
        activations = int(per_layer * rows / batch_size)
        if pooled:  # the new head that trains instead of the model's own (no tower counted)
            labels = int(getattr(model.config, "num_labels", 2) or 2)
            shape = FusionShape.of(None, labels, params)
            head_module = FusionHead([hidden], shape.width, labels, shape.dropout)
            trainable = sum(p.numel() for p in head_module.parameters())
            weights = int(total * weight_bytes + trainable * 4)
    elif gradient_checkpointing:
        activations = int(layers * tokens * 2 * hidden * scale + per_layer)
    else:
        activations = int(layers * per_layer)
    state = trainable * 12 + (trainable * 4 * (batch_size + 1) if per_example_gradients else 0)
    return MemoryEstimate(adapter, total, trainable, weights, state, activations)


def device_memory(device: str) -> tuple[str, int | None]:
    """(what, bytes) of the memory a trial on *device* has: the GPU's, or the machine's RAM."""
    import os

    import torch

    if device in ("auto", "cuda") or device.startswith("cuda:"):
        if torch.cuda.is_available():
            index = int(device.split(":")[1]) if ":" in device else 0
            props = torch.cuda.get_device_properties(index)
            return f"{props.name}", int(props.total_memory)
    try:
        return "RAM", int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return "RAM", None


def planned_length(recipe: Any) -> int:
    """``training.max_length``, or with ``auto`` the most it may choose: an estimate made
    before the data is read must hold for any length ``auto`` picks."""
    value = recipe.training.max_length
    return AUTO_MAX_LENGTH if value == "auto" else int(value)


def recipe_estimates(resolved: Any, recipe: Any, max_length: int | None = None) -> list[MemoryEstimate]:
    """One estimate per adapter the recipe's search can pick, at its largest batch size,
    ``training.max_length`` (or *max_length*, what ``auto`` chose from the data) and the
    adapter's default settings (largest rank searched)."""
    import torch

    task = resolved.task
    labels = task.labels or ["a", "b"]
    num_labels = task.num_labels() if task.labels or task.problem_type == "regression" else 2
    config = resolved.backbone.model_config(
        head=task.head,
        num_labels=num_labels,
        id2label=dict(enumerate(labels)) if task.problem_type != "regression" else None,
        problem_type=task.problem_type,
        trust_remote_code=recipe.training.trust_remote_code,
    )
    model = meta_model(config, task.head)
    targets = resolved.backbone.lora_target_modules(model)
    space = resolved.space
    names = [str(a) for a in space_adapters(space) if a in ADAPTERS]
    # As RunContext.weights_dtype: auto is bf16 on a GPU when every adapter is a peft one.
    bf16 = recipe.training.weights_dtype == "bf16" or (
        recipe.training.weights_dtype == "auto" and torch.cuda.is_available()
        and all(ADAPTERS[a].peft or not ADAPTERS[a].trains_body for a in names)
    )

    def physical(batch_size: int, adapter: str) -> int:  # private trials run logical batches in physical ones
        if recipe.privacy is None or caches_text(task, adapter):
            return batch_size  # a head on cached pooled vectors takes the logical batch at once
        return min(batch_size, recipe.privacy.physical_batch_size)

    out = []
    for name in names:
        params = _largest(space, name)
        autocast = torch.cuda.is_available() or recipe.training.precision in ("bf16", "fp16")
        out.append(
            estimate(
                model,
                adapter=name,
                params=params,
                head=task.head,
                default_targets=targets,
                batch_size=physical(int(params.get("batch_size", 32)), name),
                max_length=max_length or planned_length(recipe),
                weight_bytes=2 if bf16 else 4,
                activation_bytes=2 if autocast else 4,
                gradient_checkpointing=recipe.training.gradient_checkpointing,
                per_example_gradients=recipe.privacy is not None,
            )
        )
    return out


def _largest(space: Any, adapter: str) -> dict[str, Any]:
    """The most memory-hungry value of each parameter a trial of *adapter* samples: the
    space's fixed values, else the largest choice (batch size, rank, all-linear) searched;
    what the space leaves out takes the builder's default, as in a trial."""
    params: dict[str, Any] = {**space.fixed, "adapter": adapter}
    for dim in space.dimensions:
        if dim.name in params or any(k == "adapter" and adapter not in v for k, v in dim.when.items()):
            continue
        choices = getattr(dim.distribution, "choices", None)
        if choices is not None:
            numbers = [c for c in choices if isinstance(c, int | float) and not isinstance(c, bool)]
            params[dim.name] = max(numbers) if numbers else ("all-linear" if "all-linear" in choices else choices[0])
        elif getattr(dim.distribution, "high", None) is not None:
            params[dim.name] = dim.distribution.high
    return params
