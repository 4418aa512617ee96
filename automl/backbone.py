"""The Backbone interface: where a pretrained model's weights and tokenizer come from.

A backbone plugin subclasses :class:`Backbone` and registers it with
``automl_register_backbones``. The core loads the model once per worker process and gives
each trial a fresh copy; loading always uses safetensors and never runs remote code unless
the recipe sets ``training.trust_remote_code: true``.
"""

from __future__ import annotations

import abc
import contextlib
import hashlib
import inspect
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel

from automl.errors import PluginError
from automl.task import HEADS, NoOptions

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from transformers import PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase

    from automl.adapters import Adapter


#: Weights automl loads (safetensors only, never pickle): one file or a sharded index.
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")
#: Any of these makes a tokenizer transformers can load.
TOKENIZER_FILES = (
    "tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model", "tokenizer.model",
)


def model_dir_problems(path: Path, *, trust_remote_code: bool) -> tuple[str | None, list[str]]:
    """What a run would trip over in a local Hugging Face model directory, found before it
    starts: ``(error, warnings)``. The error names the first missing piece (``config.json``,
    safetensors weights, a tokenizer) or remote code (``auto_map`` in ``config.json``) that
    the run needs while ``training.trust_remote_code`` is off; a warning notes remote code
    that the built-in classes of its ``model_type`` replace."""
    import json

    config_file = path / "config.json"
    if not config_file.is_file():
        return f"{path} has no config.json; expected a Hugging Face model directory", []
    try:
        config = json.loads(config_file.read_text())
    except (OSError, ValueError) as exc:
        return f"{config_file} is not valid JSON ({str(exc).splitlines()[0]})", []
    if not isinstance(config, dict):
        return f"{config_file} is not a JSON object", []
    if not any((path / name).is_file() for name in WEIGHT_FILES):
        if (path / "pytorch_model.bin").is_file():
            return (f"{path} holds pytorch_model.bin but no model.safetensors; automl loads safetensors only "
                    "(convert it with `model.save_pretrained(dir, safe_serialization=True)`)"), []
        return f"{path} has no weights (model.safetensors); expected a saved Hugging Face model", []
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        return f"{path} has no tokenizer (tokenizer.json, vocab.txt, ...); save the tokenizer next to the model", []
    warnings: list[str] = []
    if config.get("auto_map") and not trust_remote_code:
        from transformers import CONFIG_MAPPING

        model_type = str(config.get("model_type") or "")
        if model_type not in CONFIG_MAPPING:
            return (f"{config_file} asks for remote code (auto_map, model_type {model_type or 'unset'!r}) and "
                    "training.trust_remote_code is off; set it to true if you trust the code in the directory"), []
        warnings.append(f"{config_file} asks for remote code (auto_map); with training.trust_remote_code off, "
                        f"transformers' built-in '{model_type}' classes are used instead")
    return None, warnings


def auto_model_class(head: str) -> Any:
    """The ``transformers`` Auto class for a task head."""
    import transformers

    return {
        "sequence-classification": transformers.AutoModelForSequenceClassification,
        "token-classification": transformers.AutoModelForTokenClassification,
    }[head]


def head_config(*, head: str, num_labels: int, id2label: dict[int, str] | None, problem_type: str | None) -> dict[str, Any]:
    """Model-config keywords for a task head: label count and names, problem type."""
    if head not in HEADS:
        raise ValueError(head)
    kwargs: dict[str, Any] = {"num_labels": num_labels}
    if id2label:
        kwargs["id2label"] = dict(id2label)
        kwargs["label2id"] = {v: k for k, v in id2label.items()}
    if problem_type and head == "sequence-classification":
        kwargs["problem_type"] = problem_type
    return kwargs


def ensure_pad_token(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """Give a tokenizer without a padding token (most decoder LLMs) one: its end-of-text
    token, else its unknown token. No new token is added, so the embeddings keep their
    size. The engine pads on the right and the model pools the last non-padding token;
    ``pipeline`` may pad on the left: both pick the same position."""
    if tokenizer.pad_token is None:
        for candidate in (tokenizer.eos_token, tokenizer.unk_token, tokenizer.bos_token):
            if candidate is not None:
                tokenizer.pad_token = candidate
                break
    return tokenizer


def with_pad_token(config: PretrainedConfig, tokenizer: Callable[[], PreTrainedTokenizerBase]) -> PretrainedConfig:
    """*config* with the tokenizer's ``pad_token_id`` when it names none."""
    if getattr(config, "pad_token_id", None) is None:
        config.pad_token_id = tokenizer().pad_token_id
    return config


@contextlib.contextmanager
def head_support(config: PretrainedConfig, head: str) -> Iterator[None]:
    """Turn transformers' "Unrecognized configuration class" (no such head for this
    architecture) into a one-line plugin error."""
    try:
        yield
    except ValueError as exc:
        if "Unrecognized configuration class" not in str(exc):
            raise
        kind = getattr(config, "model_type", type(config).__name__)
        raise PluginError(
            f"architecture '{kind}' has no {head} head in transformers; choose a backbone whose "
            f"model type has one, or a task with another head",
            field="backbone",
        ) from None


class Backbone(abc.ABC):
    """Base class of every backbone."""

    #: The name recipes use (``backbone: my-backbone``).
    name: ClassVar[str]
    #: One line for ``automl plugins``.
    description: ClassVar[str] = ""
    #: Validates the recipe's ``backbone_options``.
    Options: ClassVar[type[BaseModel]] = NoOptions
    #: Multiplies every adapter's default learning-rate range: a prior for this backbone's
    #: size (the registry's ranges suit a ~20-100M parameter encoder; a 7B decoder wants
    #: a fraction of them). :meth:`learning_rate_prior` may give whole ranges instead.
    learning_rate_scale: ClassVar[float] = 1.0

    def __init__(self, options: BaseModel | None = None, *, base_dir: Path | None = None) -> None:
        self.options = options if options is not None else self.Options()
        self.base_dir = base_dir or Path.cwd()

    @classmethod
    def contract_problems(cls) -> list[str]:
        problems = []
        if not isinstance(getattr(cls, "name", None), str) or not cls.name:
            problems.append("'name' must be a non-empty string")
        if inspect.isabstract(cls):
            problems.append("missing required method(s): " + ", ".join(sorted(cls.__abstractmethods__)))
        if not (isinstance(getattr(cls, "Options", None), type) and issubclass(cls.Options, BaseModel)):
            problems.append("'Options' must be a pydantic BaseModel subclass")
        return problems

    @abc.abstractmethod
    def source(self) -> str:
        """A local model directory (or a hub id where the machine is online)."""

    def check(self) -> None:
        """Raise :class:`automl.errors.UserError` if the weights cannot be found.

        Called by ``automl recipe check`` and before a run starts."""
        src = self.source()
        if (src.startswith((".", "/", "~")) or Path(src).exists()) and not Path(src).expanduser().is_dir():
            raise PluginError(f"model directory {src} does not exist", field="backbone_options")

    def learning_rate_prior(self, adapter: Adapter) -> tuple[float, float]:
        """The default learning-rate range ``(low, high)`` for *adapter* on this backbone:
        the registry's range times :attr:`learning_rate_scale`. Called when the default
        search space is built; the task may still override it per adapter. An adapter
        that leaves the pretrained weights as they are (``head``) keeps the registry's range:
        the size of the frozen model says nothing of its head's."""
        low, high = adapter.learning_rate
        if not adapter.trains_body:
            return low, high
        return low * self.learning_rate_scale, high * self.learning_rate_scale

    def warm_start(self, adapter: Adapter) -> dict[str, Any]:
        """A known-good configuration for *adapter* on this backbone, queued as one of the
        first trials (``search.start_from: defaults``). Parameters left out take the middle
        of their range in the run's space (for the learning rate: the geometric middle of
        :meth:`learning_rate_prior` in the default space); values outside the space are
        clipped into it; values for parameters the space fixes are ignored. ``{}`` by
        default."""
        return {}

    def fingerprint(self) -> str:
        """Identifies the weights and tokenizer (part of the tokenisation cache key)."""
        return hashlib.sha256(f"{self.name}:{self.source()}".encode()).hexdigest()[:16]

    def load_tokenizer(self, *, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
        """The tokenizer, with a padding token (see :func:`ensure_pad_token`)."""
        from transformers import AutoTokenizer

        return ensure_pad_token(AutoTokenizer.from_pretrained(self.source(), trust_remote_code=trust_remote_code))

    def model_config(
        self,
        *,
        head: str,
        num_labels: int,
        id2label: dict[int, str] | None,
        problem_type: str | None,
        trust_remote_code: bool = False,
    ) -> PretrainedConfig:
        """The model's configuration with the task head's settings and a ``pad_token_id``
        (decoder LLMs often have none; sequence classification pools the last non-padding
        token, so it must know which id pads). Used to load the model and, on the meta
        device, to estimate memory without loading weights."""
        from transformers import AutoConfig

        kwargs = head_config(head=head, num_labels=num_labels, id2label=id2label, problem_type=problem_type)
        config = AutoConfig.from_pretrained(self.source(), trust_remote_code=trust_remote_code, **kwargs)
        return with_pad_token(config, lambda: self.load_tokenizer(trust_remote_code=trust_remote_code))

    def load_model(
        self,
        *,
        head: str,
        num_labels: int,
        id2label: dict[int, str] | None,
        problem_type: str | None,
        trust_remote_code: bool = False,
        **load_options: Any,
    ) -> PreTrainedModel:
        """The pretrained model with a freshly initialised head for *head*.

        The caller seeds torch first, so the head's initialisation is reproducible.
        *load_options* go to ``from_pretrained`` (``dtype``, ``quantization_config``,
        ``device_map``): the core passes them for bf16 weights and QLoRA."""
        config = self.model_config(
            head=head, num_labels=num_labels, id2label=id2label, problem_type=problem_type, trust_remote_code=trust_remote_code
        )
        with head_support(config, head):
            return auto_model_class(head).from_pretrained(
                self.source(), config=config, use_safetensors=True, trust_remote_code=trust_remote_code, **load_options
            )

    def lora_target_modules(self, model: PreTrainedModel) -> list[str]:
        """Default modules LoRA wraps for this model; the recipe's ``lora_target_modules``
        overrides. The default comes from peft's per-architecture table."""
        from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as table

        model_type = getattr(model.config, "model_type", "")
        if model_type in table:
            return list(table[model_type])
        names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
        for pair in (("query", "value"), ("q_proj", "v_proj"), ("q_lin", "v_lin"), ("query_proj", "value_proj")):
            if set(pair) <= names:
                return list(pair)
        raise ValueError(f"no default LoRA target modules for model type '{model_type}'; set lora_target_modules")
