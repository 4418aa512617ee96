"""The adapter registry: how a trial turns the pretrained model into what it trains.

One entry per method (``full`` fine-tuning, peft's LoRA, DoRA, IA3, LoHa, LoKr, QLoRA, and
``head``: the pretrained model frozen, only a head trained on its mean-pooled output):
its name as recipes write it (``adapter: lora``), the function that wraps a fresh copy of
the base model, the default learning-rate range that suits it (LoRA wants roughly ten times
the learning rate of full fine-tuning, IA3 ten times more again), the defaults of its own
settings, whether its weights can be merged into the base model at export, and whether the
base weights are quantised (QLoRA). Adding a method touches this module only.

Which modules an adapter wraps is the searchable ``target_modules`` setting:
``attention``, ``attention+mlp`` or ``all-linear``, resolved per architecture by
:func:`resolve_targets` from the model's own module tree; without it the backbone's
default (``Backbone.lora_target_modules``) applies, and ``lora_target_modules`` (a list
of names) overrides both.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from automl.params import POSITIVE_INT, ParamSpec, Range, SpaceEntry

if TYPE_CHECKING:
    import torch

#: (model, params, head, default target modules) -> trainable model.
Builder = Callable[["torch.nn.Module", dict[str, Any], str, list[str]], "torch.nn.Module"]

#: Values of the ``target_modules`` hyperparameter.
TARGET_CHOICES = ("attention", "attention+mlp", "all-linear")

#: The adapters' own hyperparameters (beyond ``lora_r``, ``lora_alpha``, ``lora_dropout``
#: and ``lora_target_modules``, which the recipe module lists), for recipe validation.
ADAPTER_HYPERPARAMETERS: dict[str, str] = {
    "target_modules": "layers a peft adapter wraps: attention, attention+mlp or all-linear, resolved per architecture",
    "lora_rslora": "rank-stabilised LoRA: scale by alpha / sqrt(r) instead of alpha / r (lora, dora, qlora)",
    "loha_r": "LoHa rank",
    "loha_alpha": "LoHa alpha",
    "loha_module_dropout": "LoHa: probability of skipping a module's update during training",
    "lokr_r": "LoKr rank",
    "lokr_alpha": "LoKr alpha",
}


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
        quantization: ``"4bit"`` when the frozen base weights are loaded 4-bit through
            bitsandbytes (QLoRA; CUDA only), else ``None``.
        private: Opacus can train it (a recipe with ``privacy:`` may use it).
        trains_body: the pretrained model's own weights change. ``False`` (``head``): the
            model is read as a frozen sentence encoder, its last hidden states mean-pooled
            (the pooling sentence-embedding models such as MiniLM are trained with), and a
            small head is trained on top (:mod:`automl.fusion`); each row's pooled vector
            is computed once per process and reused by every epoch and trial.
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
    quantization: str | None = None
    #: Opacus can train it privately (per-example gradients of every weight it trains;
    #: checked by tests/plugins/test_private_training.py), so recipes with a ``privacy:`` block may use it.
    private: bool = False
    trains_body: bool = True


def peft_task_type(head: str) -> Any:
    from peft import TaskType

    if head == "feature-extraction":  # an encoder without a task head (table-column fusion)
        return TaskType.FEATURE_EXTRACTION
    return TaskType.TOKEN_CLS if head == "token-classification" else TaskType.SEQ_CLS


# ----------------------------------------------------------------------------- targets


@dataclass(frozen=True)
class Targets:
    """Modules an adapter wraps, as peft takes them (a list of names or a full-match regex).

    Attributes:
        modules: every wrapped module.
        feedforward: the subset in the MLP blocks (IA3 scales their inputs, not outputs).
    """

    modules: list[str] | str
    feedforward: list[str] | str


def _is_linear(module: Any) -> bool:
    import torch

    # transformers' Conv1D (GPT-2 style) is a linear layer with transposed weights.
    return isinstance(module, torch.nn.Linear) or type(module).__name__ == "Conv1D"


def linear_roles(model: torch.nn.Module) -> dict[str, str]:
    """Every linear layer of the pretrained body (not the task head), with its role:
    ``attention`` (inside an attention block), ``mlp`` (elsewhere in a repeated layer) or
    ``other`` (outside the layers, e.g. BERT's pooler)."""
    prefix = getattr(model, "base_model_prefix", "") or ""
    roles: dict[str, str] = {}
    for name, module in model.named_modules():
        if not _is_linear(module):
            continue
        if prefix and hasattr(model, prefix) and not name.startswith(prefix + "."):
            continue  # the task head (score, classifier) is trained whole, not adapted
        parts = name.split(".")
        if not any(p.isdigit() for p in parts):
            roles[name] = "other"
        elif any("attn" in p.lower() or "attention" in p.lower() for p in parts[:-1]):
            roles[name] = "attention"
        else:
            roles[name] = "mlp"
    return roles


def _pattern(names: list[str]) -> str:
    """A full-match regex for *names*, with layer numbers generalised (``layers.\\d+``)."""
    shapes = sorted({r"\.".join(r"\d+" if p.isdigit() else re.escape(p) for p in n.split(".")) for n in names})
    return "(?:" + "|".join(shapes) + ")"


def resolve_targets(model: torch.nn.Module, choice: str) -> Targets:
    """The modules *choice* (one of :data:`TARGET_CHOICES`) names in this architecture."""
    if choice not in TARGET_CHOICES:
        raise ValueError(f"target_modules must be one of {', '.join(TARGET_CHOICES)}, got {choice!r}")
    roles = linear_roles(model)
    wanted = {"attention": ("attention",), "attention+mlp": ("attention", "mlp"), "all-linear": ("attention", "mlp", "other")}[choice]
    chosen = [n for n, r in roles.items() if r in wanted]
    if not chosen:
        raise ValueError(f"the model has no linear layers for target_modules '{choice}'")
    mlp = [n for n in chosen if roles[n] == "mlp"]
    return Targets(modules=_pattern(chosen), feedforward=_pattern(mlp) if mlp else [])


def targets_for(model: torch.nn.Module, params: dict[str, Any], default: list[str]) -> Targets:
    """What a trial wraps: ``lora_target_modules`` (names) if set, else the resolved
    ``target_modules`` choice, else the backbone's default names."""
    names = params.get("lora_target_modules")
    if names:
        return Targets(modules=list(names), feedforward=[])
    choice = params.get("target_modules")
    if choice:
        return resolve_targets(model, str(choice))
    return Targets(modules=list(default), feedforward=[])


# ----------------------------------------------------------------------------- builders


def _full(model: torch.nn.Module, params: dict[str, Any], head: str, targets: list[str]) -> torch.nn.Module:
    return model


def _head(model: torch.nn.Module, params: dict[str, Any], head: str, targets: list[str]) -> torch.nn.Module:
    """The pretrained body frozen; what lies outside it (a task head) keeps training."""
    getattr(model, "base_model", model).requires_grad_(False)  # a bare encoder is its own base model
    return model


def _lora_config(model: torch.nn.Module, params: dict[str, Any], head: str, targets: list[str], **extra: Any) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        task_type=peft_task_type(head),
        r=int(params.get("lora_r", 8)),
        lora_alpha=int(params.get("lora_alpha", 16)),
        lora_dropout=float(params.get("lora_dropout", 0.0)),
        use_rslora=bool(params.get("lora_rslora", False)),
        target_modules=targets_for(model, params, targets).modules,
        **extra,
    )


def _lora(model: torch.nn.Module, params: dict[str, Any], head: str, targets: list[str]) -> torch.nn.Module:
    from peft import get_peft_model

    return get_peft_model(model, _lora_config(model, params, head, targets))


def _dora(model: torch.nn.Module, params: dict[str, Any], head: str, targets: list[str]) -> torch.nn.Module:
    from peft import get_peft_model

    return get_peft_model(model, _lora_config(model, params, head, targets, use_dora=True))


def _qlora(model: torch.nn.Module, params: dict[str, Any], head: str, targets: list[str]) -> torch.nn.Module:
    """LoRA on a base model loaded 4-bit (the engine loads it so); on an unquantised base
    (export on any machine) this is plain LoRA with the same weights."""
    from peft import get_peft_model, prepare_model_for_kbit_training

    if getattr(model, "is_loaded_in_4bit", False):
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=bool(params.get("gradient_checkpointing", False)))
    return get_peft_model(model, _lora_config(model, params, head, targets))


def _ia3(model: torch.nn.Module, params: dict[str, Any], head: str, targets: list[str]) -> torch.nn.Module:
    from peft import IA3Config, get_peft_model

    chosen = targets_for(model, params, targets)
    config = IA3Config(task_type=peft_task_type(head), target_modules=chosen.modules, feedforward_modules=chosen.feedforward)
    return get_peft_model(model, config)


def _lycoris(config_class: str, prefix: str) -> Builder:
    """A builder for peft's LyCORIS family (LoHa, LoKr): rank, alpha and module dropout
    from ``<prefix>_r``, ``<prefix>_alpha``, ``<prefix>_module_dropout``."""

    def build(model: torch.nn.Module, params: dict[str, Any], head: str, targets: list[str]) -> torch.nn.Module:
        import peft

        config = getattr(peft, config_class)(
            task_type=peft_task_type(head),
            r=int(params.get(f"{prefix}_r", 8)),
            alpha=int(params.get(f"{prefix}_alpha", 8)),
            module_dropout=float(params.get(f"{prefix}_module_dropout", 0.0)),
            target_modules=targets_for(model, params, targets).modules,
        )
        return peft.get_peft_model(model, config)

    return build


# ----------------------------------------------------------------------------- registry


def _space(**entries: Any) -> dict[str, SpaceEntry]:
    """Default settings in short form: a list is a choice, a ``(low, high)`` tuple a range."""
    return {
        name: ParamSpec(choices=list(v)) if isinstance(v, list) else ParamSpec(low=v[0], high=v[1])
        for name, v in entries.items()
    }


ADAPTERS: dict[str, Adapter] = {}


def register_adapter(adapter: Adapter) -> None:
    """Add (or replace) an adapter in the registry."""
    ADAPTERS[adapter.name] = adapter


_TARGETS = list(TARGET_CHOICES)
_RANKS = [4, 8, 16]
_BOOL = [False, True]
_DROPOUT = Range("float", low=0, high=1, high_open=True)
_LORA_RANGES = {
    "lora_r": POSITIVE_INT,
    "lora_alpha": POSITIVE_INT,
    "lora_dropout": _DROPOUT,
    "lora_rslora": Range("any"),
    "target_modules": Range("name", choices=TARGET_CHOICES),
}

for _adapter in (
    Adapter("full", _full, (1e-5, 1e-4), peft=False, private=True, description="every weight is trained"),
    # A head on frozen features learns at the rates of a small network trained from scratch.
    Adapter(
        "head", _head, (3e-4, 3e-3), peft=False, private=True, trains_body=False,
        description="the pretrained model frozen and mean-pooled; only a small head on top is trained (fastest; strongest under privacy)",
    ),
    Adapter(
        "lora", _lora, (1e-4, 1e-3),
        _space(lora_r=_RANKS, lora_alpha=[8, 16, 32], lora_dropout=(0.0, 0.2), lora_rslora=_BOOL, target_modules=_TARGETS),
        ranges=_LORA_RANGES,
        private=True,
        description="low-rank updates of the chosen linear layers (peft LoRA; lora_rslora scales by alpha/sqrt(r))",
    ),
    # DoRA's trained magnitude makes it more sensitive to the learning rate than LoRA.
    Adapter(
        "dora", _dora, (5e-5, 5e-4),
        _space(lora_r=_RANKS, lora_alpha=[8, 16, 32], lora_dropout=(0.0, 0.1), lora_rslora=_BOOL, target_modules=_TARGETS),
        ranges=_LORA_RANGES,
        description="LoRA with weight decomposition: direction low-rank, magnitude trained (peft DoRA)",
    ),
    # QLoRA (Dettmers et al. 2023) adapts every linear layer at r 16-64.
    Adapter(
        "qlora", _qlora, (1e-4, 1e-3),
        _space(lora_r=[16, 32, 64], lora_alpha=[16, 32, 64], lora_dropout=(0.0, 0.1), lora_rslora=_BOOL,
               target_modules=["attention+mlp", "all-linear"]),
        ranges=_LORA_RANGES,
        quantization="4bit",
        description="LoRA on 4-bit NF4 base weights through bitsandbytes (CUDA only)",
    ),
    Adapter(
        "ia3", _ia3, (1e-3, 1e-2), _space(target_modules=_TARGETS), ranges={"target_modules": _LORA_RANGES["target_modules"]},
        description="learned scaling vectors on the chosen layers; fewest trainable weights (peft IA3)",
    ),
    Adapter(
        "loha", _lycoris("LoHaConfig", "loha"), (1e-4, 2e-3),
        _space(loha_r=_RANKS, loha_alpha=[4, 8, 16], loha_module_dropout=(0.0, 0.1), target_modules=_TARGETS),
        ranges={"loha_r": POSITIVE_INT, "loha_alpha": POSITIVE_INT, "loha_module_dropout": _DROPOUT, "target_modules": _LORA_RANGES["target_modules"]},
        description="low-rank Hadamard product updates (peft LoHa)",
    ),
    Adapter(
        "lokr", _lycoris("LoKrConfig", "lokr"), (1e-4, 2e-3), _space(lokr_r=_RANKS, lokr_alpha=[4, 8, 16], target_modules=_TARGETS),
        ranges={"lokr_r": POSITIVE_INT, "lokr_alpha": POSITIVE_INT, "target_modules": _LORA_RANGES["target_modules"]},
        description="low-rank Kronecker product updates (peft LoKr)",
    ),
):
    register_adapter(_adapter)


def get_adapter(name: str) -> Adapter:
    """The registered adapter *name*; ``KeyError`` with the known names otherwise."""
    try:
        return ADAPTERS[name]
    except KeyError:
        raise KeyError(f"unknown adapter '{name}'; known: {', '.join(ADAPTERS)}") from None


def adapter_params(name: str) -> set[str]:
    """Hyperparameters that belong to adapters other than *name* (and so mean nothing for
    a trial of *name*): e.g. ``lora_r`` for a ``full`` trial."""
    own = set(ADAPTERS[name].space) if name in ADAPTERS else set()
    others = {p for a in ADAPTERS.values() for p in a.space} | {"lora_target_modules"}
    if ADAPTERS.get(name) is not None and ADAPTERS[name].peft:
        own.add("lora_target_modules")
    return others - own


# ----------------------------------------------------------------------------- checks


def quantization_problem(adapter: Adapter, device: str) -> str | None:
    """Why *adapter* cannot run with ``training.device`` *device* here, or ``None``."""
    if adapter.quantization is None:
        return None
    import importlib.util

    import torch

    wants_cuda = device in ("auto",) or device.startswith("cuda")
    if not wants_cuda or not torch.cuda.is_available():
        where = "this machine has no CUDA GPU" if wants_cuda else f"training.device is {device}"
        return (
            f"adapter '{adapter.name}' loads the base weights 4-bit through bitsandbytes, which needs a "
            f"CUDA GPU; {where}. Use adapter 'lora' (or 'dora') instead"
        )
    if importlib.util.find_spec("bitsandbytes") is None:
        return f"adapter '{adapter.name}' needs bitsandbytes for 4-bit base weights: pip install bitsandbytes"
    return None
