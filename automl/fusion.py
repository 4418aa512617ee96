"""A text backbone fused with a feature tower for table columns.

Three parts that know nothing of each other, as in AutoGluon MultiModal:

* the backbone's encoder (the pretrained model without its task head; LoRA or full
  fine-tuning as for any trial), whose last hidden states are mean-pooled over the tokens;
* the feature tower: :class:`NumericMLP` over the normalised numbers and
  :class:`CategoricalEmbeddings` over the category slots (see :mod:`automl.features`);
* :class:`FusionHead`, which only concatenates the parts' vectors and projects them to
  the outputs. It knows the parts' output sizes, nothing else.

A text-only task takes the same model without a tower when a trial's adapter leaves the
pretrained weights frozen (``head``): the mean-pooled encoder is then a sentence encoder
with a head on top, and each row's pooled vector is computed once and reused
(:attr:`FusionModel.text_cache`), so that a trial costs one pass over the rows, whatever
its epochs.

:class:`FusionModel` holds the three and is trained end to end by the engine. Its
settings are hyperparameters (``fusion_width``, ``fusion_dropout``, ``fusion_lr_factor``:
the learning rate of the parts that are not pretrained, as a multiple of the
backbone's). An export writes the merged encoder to ``best/backbone/`` (a transformers
directory), the tower and head to ``best/fusion.safetensors`` and the feature statistics
and vocabularies to ``best/features.json``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from automl.adapters import ADAPTERS
from automl.features import FeaturePipeline
from automl.params import ParamSpec, SpaceEntry

#: ``head`` value the adapters get for the encoder (peft's feature-extraction task type).
ENCODER_HEAD = "feature-extraction"
ENCODER_PREFIX = "encoder."
FEATURES_FILE = "features.json"
WEIGHTS_FILE = "fusion.safetensors"
BACKBONE_DIR = "backbone"
#: Rows the frozen encoder reads at once when it fills the pooled-vector cache.
CACHE_CHUNK = 64
#: Defaults of the fusion hyperparameters when a trial does not set them.
DEFAULTS: dict[str, float] = {"fusion_width": 128, "fusion_dropout": 0.1, "fusion_lr_factor": 20.0}


def fuses(task: Any, adapter: str) -> bool:
    """Whether a trial of *adapter* for *task* (an :class:`automl.task.Task`, which sits
    above this module) trains a :class:`FusionModel`: the task has
    table-column features, or the adapter freezes the pretrained model and the task wants
    one output per row (the frozen encoder is then mean-pooled under a head)."""
    if task.features is not None:
        return True
    spec = ADAPTERS.get(adapter)
    return spec is not None and not spec.trains_body and task.head == "sequence-classification"


def caches_text(task: Any, adapter: str) -> bool:
    """Whether a trial of *adapter* for *task* reads the frozen encoder's pooled vectors
    from :attr:`FusionModel.text_cache` (each row encoded once per process)."""
    return fuses(task, adapter) and not ADAPTERS[adapter].trains_body


def fusion_space() -> dict[str, SpaceEntry]:
    """Default search ranges of the fusion settings, for tasks that use fusion."""
    return {
        "fusion_width": ParamSpec(choices=[64, 128, 256]),
        "fusion_dropout": ParamSpec(low=0.0, high=0.3),
        "fusion_lr_factor": ParamSpec(low=5.0, high=100.0, log=True),
    }


@dataclass(frozen=True)
class FusionShape:
    """What it takes to rebuild a fusion model's tower and head (exported as JSON)."""

    numeric_width: int
    cardinalities: tuple[int, ...]
    num_labels: int
    width: int
    dropout: float

    @classmethod
    def of(cls, pipeline: FeaturePipeline | None, num_labels: int, params: dict[str, Any]) -> FusionShape:
        return cls(
            numeric_width=pipeline.numeric_width if pipeline is not None else 0,
            cardinalities=tuple(pipeline.cardinalities) if pipeline is not None else (),
            num_labels=num_labels,
            # Text alone (a head on the frozen encoder): a linear head unless the trial
            # asks for a hidden layer: fewer weights take less noise in private training
            # (docs/benchmarks.md, section 14, measures both heads).
            width=int(params.get("fusion_width", DEFAULTS["fusion_width"] if pipeline is not None else 0)),
            dropout=float(params.get("fusion_dropout", DEFAULTS["fusion_dropout"])),
        )


class NumericMLP(nn.Module):
    """Normalised numbers -> a ``width`` vector."""

    def __init__(self, in_features: int, width: int, dropout: float) -> None:
        super().__init__()
        self.out_features = width
        self.net = nn.Sequential(
            nn.Linear(in_features, width), nn.GELU(), nn.Dropout(dropout),
            nn.Linear(width, width), nn.GELU(), nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class CategoricalEmbeddings(nn.Module):
    """One learned embedding per categorical column (slot 0 unknown, 1 missing) ->
    a ``width`` vector."""

    def __init__(self, cardinalities: tuple[int, ...], width: int, dropout: float) -> None:
        super().__init__()
        self.out_features = width
        dims = [min(32, max(4, (c + 1) // 2)) for c in cardinalities]
        self.embeddings = nn.ModuleList(nn.Embedding(c, d) for c, d in zip(cardinalities, dims, strict=True))
        self.net = nn.Sequential(nn.Linear(sum(dims), width), nn.GELU(), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([emb(x[:, j]) for j, emb in enumerate(self.embeddings)], dim=-1))


class FusionHead(nn.Module):
    """Concatenates the parts' vectors and projects them to the outputs: through a hidden
    layer of *width*, or (width 0) linearly."""

    def __init__(self, in_sizes: list[int], width: int, num_labels: int, dropout: float) -> None:
        super().__init__()
        if width:
            self.net = nn.Sequential(
                nn.LayerNorm(sum(in_sizes)), nn.Dropout(dropout), nn.Linear(sum(in_sizes), width), nn.GELU(),
                nn.Dropout(dropout), nn.Linear(width, num_labels),
            )
        else:
            self.net = nn.Sequential(nn.LayerNorm(sum(in_sizes)), nn.Dropout(dropout), nn.Linear(sum(in_sizes), num_labels))

    def forward(self, parts: list[torch.Tensor]) -> torch.Tensor:
        return self.net(torch.cat(parts, dim=-1))


@dataclass
class FusionOutput:
    """What the engine reads from a forward pass (like transformers' model outputs)."""

    logits: torch.Tensor


class FusionModel(nn.Module):
    """Encoder + feature tower + fusion head; ``forward`` takes the encoded batch."""

    def __init__(self, encoder: nn.Module, shape: FusionShape, hidden_size: int) -> None:
        super().__init__()
        self.shape = shape
        self.encoder = encoder
        self.numeric = NumericMLP(shape.numeric_width, shape.width, shape.dropout) if shape.numeric_width else None
        #: The numbers as the tower takes them (an identity: explanations hook its output).
        self.numeric_input = nn.Identity()
        self.categorical = (
            CategoricalEmbeddings(shape.cardinalities, shape.width, shape.dropout) if shape.cardinalities else None
        )
        sizes = [hidden_size] + [m.out_features for m in (self.numeric, self.categorical) if m is not None]
        self.fusion = FusionHead(sizes, shape.width, shape.num_labels, shape.dropout)
        #: Pooled text vectors by row (the row's unpadded token ids), shared by the trials
        #: of a process, for an encoder whose weights are all frozen; ``None`` otherwise.
        self.text_cache: dict[bytes, torch.Tensor] | None = None

    def pooled_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The encoder's last hidden states, mean-pooled over each row's tokens; read from
        :attr:`text_cache` (and computed in evaluation mode, without gradients) when the
        encoder is frozen."""
        if self.text_cache is None:
            return _mean_pool(self.encoder, input_ids, attention_mask)
        keys = [row[mask.bool()].cpu().numpy().tobytes() for row, mask in zip(input_ids, attention_mask, strict=True)]
        missing = list({k: i for i, k in enumerate(keys) if k not in self.text_cache}.values())
        if missing:
            # In chunks of similar lengths: a logical batch of a thousand rows does not go
            # through the encoder at once.
            missing.sort(key=lambda i: -len(keys[i]))
            training = self.encoder.training
            self.encoder.eval()
            with torch.no_grad():
                for start in range(0, len(missing), CACHE_CHUNK):
                    rows = missing[start:start + CACHE_CHUNK]
                    width = int(attention_mask[rows].sum(dim=1).max())
                    pooled = _mean_pool(self.encoder, input_ids[rows, :width], attention_mask[rows, :width])
                    for i, vector in zip(rows, pooled, strict=True):
                        self.text_cache[keys[i]] = vector.float().cpu()
            self.encoder.train(training)
        return torch.stack([self.text_cache[k] for k in keys]).to(input_ids.device)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        numeric: torch.Tensor | None = None,
        categorical: torch.Tensor | None = None,
    ) -> FusionOutput:
        parts = [self.pooled_text(input_ids, attention_mask)]
        if self.numeric is not None:
            parts.append(self.numeric(self.numeric_input(numeric.to(parts[0].dtype))))  # type: ignore[union-attr]
        if self.categorical is not None:
            parts.append(self.categorical(categorical))
        return FusionOutput(logits=self.fusion([p.to(parts[-1].dtype) for p in parts]))

    # -- weights

    def head_state(self) -> dict[str, torch.Tensor]:
        """The tower and head weights (everything but the encoder)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith(ENCODER_PREFIX)}

    def trainable_state(self, adapter: str) -> dict[str, torch.Tensor]:
        if not ADAPTERS[adapter].trains_body:
            return self.head_state()
        if not ADAPTERS[adapter].peft:
            return self.state_dict()
        from peft import get_peft_model_state_dict

        encoder = {ENCODER_PREFIX + k: v for k, v in get_peft_model_state_dict(self.encoder).items()}
        return {**encoder, **self.head_state()}

    def load_trainable_state(self, state: dict[str, torch.Tensor], adapter: str) -> None:
        if not ADAPTERS[adapter].trains_body:
            missing, unexpected = self.load_state_dict(state, strict=False)
            missing = [k for k in missing if not k.startswith(ENCODER_PREFIX)]
            if missing or unexpected:
                raise ValueError(f"the head's weights do not match the model: {(missing + unexpected)[:3]}")
            return
        if not ADAPTERS[adapter].peft:
            self.load_state_dict(state)
            return
        from peft import set_peft_model_state_dict

        n = len(ENCODER_PREFIX)
        set_peft_model_state_dict(self.encoder, {k[n:]: v for k, v in state.items() if k.startswith(ENCODER_PREFIX)})
        self.load_state_dict({k: v for k, v in state.items() if not k.startswith(ENCODER_PREFIX)}, strict=False)


def _mean_pool(encoder: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    hidden = encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


def build_fused(
    base_model: nn.Module,
    params: dict[str, Any],
    pipeline: FeaturePipeline | None,
    num_labels: int,
    lora_targets: list[str],
    text_cache: dict[bytes, torch.Tensor] | None = None,
) -> FusionModel:
    """A trial's fusion model from a fresh copy of the pretrained model (its task head is
    dropped): the adapter wraps the encoder, the tower (none without a *pipeline*) and
    head are new. An adapter that freezes the encoder reads pooled vectors from
    *text_cache* (a new one if not given), which may be shared by trials on the same
    pretrained weights and data."""
    encoder = getattr(base_model, "base_model", base_model)
    adapter = params.get("adapter", "full")
    encoder = ADAPTERS[adapter].build(encoder, params, ENCODER_HEAD, lora_targets)
    hidden = int(base_model.config.hidden_size)  # type: ignore[union-attr]
    model = FusionModel(encoder, FusionShape.of(pipeline, num_labels, params), hidden)
    if not ADAPTERS[adapter].trains_body:
        model.text_cache = {} if text_cache is None else text_cache
    return model


def lr_factor(model: nn.Module, name: str, params: dict[str, Any]) -> float:
    """Learning-rate multiplier of parameter *name*: ``fusion_lr_factor`` for the parts of a
    fusion model that are not pretrained, 1 otherwise."""
    trains_body = ADAPTERS[str(params.get("adapter", "full"))].trains_body
    if isinstance(model, FusionModel) and not name.startswith(ENCODER_PREFIX) and trains_body:
        return float(params.get("fusion_lr_factor", DEFAULTS["fusion_lr_factor"]))
    return 1.0


# ----------------------------------------------------------------------------- export


def save_fused(model: FusionModel, adapter: str, directory: Path, pipeline: FeaturePipeline | None) -> FusionModel:
    """Write a trained fusion model to *directory* (LoRA merged into the encoder, the
    adapter alone kept in ``adapter/``). Returns the model as saved (merged)."""
    from safetensors.torch import save_file

    if ADAPTERS[adapter].peft:
        model.encoder.save_pretrained(str(directory / "adapter"), safe_serialization=True)
        model.encoder = model.encoder.merge_and_unload()
    model.encoder.save_pretrained(str(directory / BACKBONE_DIR), safe_serialization=True)
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.head_state().items()}
    save_file(state, str(directory / WEIGHTS_FILE))
    body = {"shape": asdict(model.shape), "pipeline": pipeline.to_json() if pipeline is not None else None}
    (directory / FEATURES_FILE).write_text(json.dumps(body, indent=1))
    return model


def load_fused(directory: Path, *, trust_remote_code: bool = False) -> tuple[FusionModel, FeaturePipeline | None]:
    """The fusion model and feature pipeline (``None``: text only) an export wrote to *directory*."""
    from safetensors.torch import load_file
    from transformers import AutoModel

    body = json.loads((directory / FEATURES_FILE).read_text())
    raw = dict(body["shape"])
    shape = FusionShape(**{**raw, "cardinalities": tuple(raw["cardinalities"])})
    encoder = AutoModel.from_pretrained(
        str(directory / BACKBONE_DIR), use_safetensors=True, trust_remote_code=trust_remote_code
    )
    model = FusionModel(encoder, shape, int(encoder.config.hidden_size))
    missing, unexpected = model.load_state_dict(load_file(str(directory / WEIGHTS_FILE)), strict=False)
    missing = [k for k in missing if not k.startswith(ENCODER_PREFIX)]
    if missing or unexpected:
        raise ValueError(f"{directory / WEIGHTS_FILE} does not match features.json: {(missing + unexpected)[:3]}")
    model.eval()
    return model, FeaturePipeline.from_json(body["pipeline"]) if body["pipeline"] is not None else None

