"""A run: the recipe, its resolved plugins, its directory and its study storage.

Layout of a run directory::

    run.json        the recipe as run, fingerprints, versions, seed, hardware, storage
    study.journal   the Optuna study (default embedded storage)
    cache/          tokenised splits (keyed by data + tokenizer + max length)
    artifacts/      weights of the top-k trials (Optuna artifact store)
    baseline.json   the task's classical baseline, trained once
    best/           the exported best model (transformers-loadable)
    plots/          report and task plots
    report.html     the HTML report (``automl report``)
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from automl.adapters import ADAPTERS
from automl.data import data_fingerprint, file_fingerprint, load_task_data
from automl.encoding import auto_max_length, cache_key, encode_splits
from automl.errors import UserError
from automl.events import RunInfo
from automl.recipe import Recipe
from automl.resolve import Resolved, resolve
from automl.search.space import space_adapters
from automl.search.storage import mask_url

RUN_FILE = "run.json"
KEY_PACKAGES = ("automl", "torch", "transformers", "optuna", "peft", "datasets", "scikit-learn", "numpy")


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in KEY_PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def hardware() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "cuda": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    try:
        info["memory_gb"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9, 1)
    except (ValueError, OSError, AttributeError):
        pass
    return info


@dataclass
class RunContext:
    recipe: Recipe
    resolved: Resolved
    run_dir: Path
    storage_url: str | None
    study_name: str
    #: Where trial weights go (Optuna's file-system artifact store). Machines that share a
    #: study in RDB storage share this directory too, so any of them can export the best.
    artifacts: Path | None = None
    #: ``training.max_length: auto``, once :meth:`load_data` has chosen it
    #: (:func:`automl.encoding.auto_max_length`'s figures).
    auto_length: dict[str, Any] | None = None

    @property
    def max_length(self) -> int:
        """The tokens per example of this run: ``training.max_length``, or the length
        ``auto`` chose from the training rows (:meth:`load_data` chooses it first)."""
        value = self.recipe.training.max_length
        if value != "auto":
            return int(value)
        if self.auto_length is None:
            raise RuntimeError("training.max_length is 'auto' and the data has not been loaded yet")
        return int(self.auto_length["max_length"])

    @classmethod
    def create(
        cls,
        recipe: Recipe,
        *,
        storage_url: str | None = None,
        study_name: str | None = None,
        artifacts: str | Path | None = None,
    ) -> RunContext:
        resolved = resolve(recipe)
        return cls(
            recipe=recipe,
            resolved=resolved,
            run_dir=Path(recipe.output_dir).resolve(),
            storage_url=storage_url,
            study_name=study_name or recipe.study_name,
            artifacts=Path(artifacts).resolve() if artifacts else None,
        )

    @property
    def artifact_dir(self) -> Path:
        path = self.artifacts or self.run_dir / "artifacts"
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def info(self) -> RunInfo:
        return RunInfo(
            study_name=self.study_name,
            run_dir=self.run_dir,
            task=self.recipe.task,
            backbone=self.recipe.backbone,
            objective=self.resolved.objective.name,
            direction=self.resolved.objective.direction,
            recipe=self.recipe.resolved(),
        )

    @property
    def file(self) -> str | None:
        return str(self.recipe.path) if self.recipe.path else None

    # ------------------------------------------------------------------ directory

    def prepare_dir(self, *, fresh: bool = False) -> Path | None:
        """Create (or check) the run directory; with *fresh*, move an old one aside.

        Returns where an old directory was moved, if it was. Refuses to resume a run whose
        recipe changed in a way that changes the search."""
        moved = None
        run_file = self.run_dir / RUN_FILE
        if fresh and self.run_dir.exists() and any(self.run_dir.iterdir()):
            if self.storage_url is not None:
                raise UserError(
                    "--fresh with --storage would reuse the study in that storage; "
                    "give the run a new study name with --study",
                    field="--fresh",
                )
            stamp = time.strftime("%Y%m%d-%H%M%S")
            moved = self.run_dir.with_name(f"{self.run_dir.name}.old-{stamp}")
            self.run_dir.rename(moved)
        elif run_file.exists():
            previous = json.loads(run_file.read_text())
            if previous.get("fingerprint") != self.recipe.fingerprint():
                before = ((previous.get("recipe") or {}).get("training") or {}).get("max_length")
                hint = ""
                if before == 128 and self.recipe.training.max_length == "auto":
                    # Runs started before training.max_length defaulted to auto.
                    hint = "; training.max_length now defaults to auto, and the run used 128: set it to 128 to resume"
                raise UserError(
                    f"the run in {self.run_dir} was started from a different recipe (task, data, "
                    "space or settings changed); resume it with the same recipe, or start over "
                    f"with --fresh (the old run is kept) or another --output{hint}",
                    file=self.file,
                )
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            probe = self.run_dir / ".write-test"
            probe.write_bytes(b"x" * 1024)
            probe.unlink()
        except OSError as exc:
            raise UserError(f"output directory {self.run_dir} is not writable: {exc.strerror or exc}", field="output") from None
        free = shutil.disk_usage(self.run_dir).free
        if free < 200 * 1024 * 1024:
            raise UserError(
                f"only {free // (1024 * 1024)} MiB free under {self.run_dir}; need at least 200 MiB for "
                "trial weights and the exported model",
                field="output",
            )
        return moved

    def write_run_file(self) -> None:
        run_file = self.run_dir / RUN_FILE
        started = None
        if run_file.exists():
            started = json.loads(run_file.read_text()).get("started")
        body = {
            "study_name": self.study_name,
            "recipe_path": self.file,
            "fingerprint": self.recipe.fingerprint(),
            "data_files": {
                which: file_fingerprint(path)[:16]
                for which in ("train", "validation", "test")
                if (path := self.recipe.data_path(which)) is not None and path.exists()
            },
            "recipe": self.recipe.resolved(),
            "storage": mask_url(self.storage_url) or f"journal:{self.run_dir / 'study.journal'}",
            "seed": self.recipe.training.seed,
            **({"max_length": self.auto_length} if self.auto_length else {}),
            "versions": package_versions(),
            "hardware": hardware(),
            "started": started or time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        tmp = run_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(body, indent=2, default=str))
        os.replace(tmp, run_file)

    # ------------------------------------------------------------------ data

    def load_data(self, *, encode: bool = True) -> tuple[Any, Any, dict[str, Any]]:
        """(TaskData, tokenizer, encoded splits), tokenised once and cached on disk."""
        task = self.resolved.task
        data = load_task_data(task, self.recipe)
        task.labels = data.label_names
        task.prepare(data)
        tokenizer = self.resolved.backbone.load_tokenizer(trust_remote_code=self.recipe.training.trust_remote_code)
        encoded: dict[str, Any] = {}
        if self.recipe.training.max_length == "auto" and self.auto_length is None:
            self.auto_length = auto_max_length(task, data.train, tokenizer, seed=self.recipe.training.seed, coverage=task.auto_length_coverage)
        if encode:
            splits = {"train": data.train, "validation": data.validation}
            if data.test is not None:
                splits["test"] = data.test
            key = cache_key(
                data_fingerprint(self.recipe),
                self.resolved.backbone.fingerprint(),
                self.max_length,
                # The rows each split holds (data.max_eval_rows may sample validation and test).
                f"{task.name}|" + ",".join(f"{k}:{len(v)}" for k, v in splits.items()),
            )
            encoded, _ = encode_splits(task, splits, tokenizer, self.max_length, self.cache_dir, key)
        return data, tokenizer, encoded

    @property
    def cache_dir(self) -> Path:
        """Where the tokenised splits are cached: ``<run>/cache``; with privacy on, a
        folder of the system's temporary directory instead (the cache holds the training
        rows as token ids, and nothing in a private run's directory may hold training
        rows), removed when the run ends (:meth:`drop_private_cache`)."""
        if self.recipe.privacy is None:
            return self.run_dir / "cache"
        digest = hashlib.sha256(str(self.run_dir.resolve()).encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / f"automl-private-cache-{digest}"

    def drop_private_cache(self) -> None:
        if self.recipe.privacy is not None:
            shutil.rmtree(self.cache_dir, ignore_errors=True)

    def load_base_model(self, *, quantization: str | None = None) -> Any:
        """The backbone with a freshly initialised head, seeded for reproducibility.

        Weights are bf16 where :meth:`weights_dtype` says so; with *quantization*
        (``"4bit"``, QLoRA) they are loaded 4-bit NF4 through bitsandbytes straight onto
        the current CUDA device."""
        import torch

        task = self.resolved.task
        torch.manual_seed(self.recipe.training.seed)
        labels = task.labels
        options: dict[str, Any] = {}
        dtype = self.weights_dtype()
        if dtype is not None:
            options["dtype"] = dtype
        if quantization == "4bit":
            from transformers import BitsAndBytesConfig

            compute = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            options["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=compute
            )
            options["dtype"] = compute
            options["device_map"] = {"": torch.cuda.current_device()}
        elif quantization is not None:
            raise ValueError(f"unknown quantization {quantization!r}")
        return self.resolved.backbone.load_model(
            head=task.head,
            num_labels=task.num_labels(),
            id2label=dict(enumerate(labels)) if labels else None,
            problem_type=task.problem_type,
            trust_remote_code=self.recipe.training.trust_remote_code,
            **options,
        )

    def weights_dtype(self) -> Any:
        """The dtype the base weights are loaded in, or ``None`` for the checkpoint's own
        (fp32 for most). ``training.weights_dtype: auto`` is bf16 on a CUDA GPU with bf16
        when every adapter the search can pick leaves the base frozen (peft adapters, a head:
        the frozen base needs no fp32 master copy; what trains is kept in fp32), else fp32."""
        import torch

        setting = self.recipe.training.weights_dtype
        if setting == "bf16":
            return torch.bfloat16
        if setting == "fp32":
            return None
        device = self.recipe.training.device
        on_gpu = device in ("auto", "cuda") or device.startswith("cuda:")
        if not (on_gpu and torch.cuda.is_available() and torch.cuda.is_bf16_supported()):
            return None
        adapters = [str(a) for a in space_adapters(self.resolved.space)]
        frozen_base = all(a in ADAPTERS and (ADAPTERS[a].peft or not ADAPTERS[a].trains_body) for a in adapters)
        return torch.bfloat16 if frozen_base else None
