"""Periodic trial checkpoints, so that a long trial cut off by a crash resumes where it was.

A checkpoint is two files in ``<run>/checkpoints/<study>-trial-<N>/``:
``state.safetensors`` (the trained weights: the adapter and head for a peft adapter, every
weight for full fine-tuning; the weights of the best evaluation so far when the engine
keeps a copy; the optimiser's tensors; torch's RNG states) and ``state.json`` (the trial's
hyperparameters, the loop position: step, epoch, batches done in the epoch and the data
order's RNG state at the epoch's start; the scheduler and loss-scaler state; the best
evaluation so far: value, metrics, step). No pickle anywhere. The trial engine calls :meth:`TrialCheckpoint.save` at
evaluation points when one is due and :meth:`TrialCheckpoint.restore` when a trial starts;
the worker removes the directory when the trial ends (complete, pruned or failed for a
reason of its own), and keeps it when the trial is cut off (killed, Ctrl-C), so the re-run
of that trial, queued with ``retry_of``, resumes from it.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from automl.recipe import AUTO_MIN_PARAMETERS, AUTO_SECONDS, CheckpointPolicy, check_setting, parse_policy  # noqa: F401  (the policy is read with the recipe)
from automl.weights import load_trainable_state, trainable_state

STATE_FILE = "state.safetensors"
META_FILE = "state.json"


@dataclass
class LoopState:
    """Where the training loop is; JSON-able."""

    step: int
    epoch: int
    #: batches done in the current epoch
    position: int
    #: the data order's RNG (numpy bit generator) state at the start of the epoch
    epoch_rng: dict[str, Any]
    seen: int
    evaluations: int
    loss: float


def _flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, entries in state["state"].items():
        for name, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{index}.{name}"] = value
            else:
                scalars.setdefault(str(index), {})[name] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    for index, entries in meta["scalars"].items():
        state.setdefault(int(index), {}).update(entries)
    return {"state": state, "param_groups": meta["param_groups"]}


@dataclass
class TrialCheckpoint:
    """The checkpoint of one trial (see the module docstring).

    Attributes:
        directory: where the files live.
        params: the trial's hyperparameters; a checkpoint is resumed only with the same.
        policy: when :meth:`due` says yes.
        on_resume: called with the loop state when a trial resumes.
    """

    directory: Path
    params: dict[str, Any]
    policy: CheckpointPolicy
    on_resume: Callable[[LoopState], None] | None = None
    #: The step a trial resumed at (set by :meth:`restore`).
    resumed_step: int | None = None
    _evaluations: int = 0
    _last: float = field(default_factory=time.monotonic)

    def due(self) -> bool:
        """Called at each evaluation point: is a checkpoint due now?"""
        self._evaluations += 1
        if self.policy.evaluations is not None and self._evaluations >= self.policy.evaluations:
            return True
        return self.policy.seconds is not None and time.monotonic() - self._last >= self.policy.seconds

    def save(self, *, model: torch.nn.Module, adapter: str, optimizer: Any, scheduler: Any, scaler: Any, loop: LoopState, best: Any) -> None:
        """Write the state; *best* is the engine's best-evaluation record (``BestSoFar``):
        its value, metrics and step, and the weights it kept."""
        from safetensors.torch import save_file

        tensors = {f"model.{k}": v for k, v in trainable_state(model, adapter).items()}
        if best.state is not None:
            tensors.update({f"best.{k}": v.contiguous() for k, v in best.state.items()})
        opt_tensors, opt_meta = _flatten_optimizer(optimizer.state_dict())
        tensors.update({k: v.detach().to("cpu").contiguous().clone() for k, v in opt_tensors.items()})
        tensors["rng.torch"] = torch.get_rng_state()
        if torch.cuda.is_available():
            for i, s in enumerate(torch.cuda.get_rng_state_all()):
                tensors[f"rng.cuda.{i}"] = s
        meta = {
            "params": self.params,
            "adapter": adapter,
            "loop": loop.__dict__,
            "optimizer": opt_meta,
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "best": {k: getattr(best, k) for k in ("value", "metrics", "calibration", "step", "since")},
            "saved": time.time(),
        }
        body = json.dumps(meta, default=float)  # fails loudly before anything is written
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.directory / (STATE_FILE + ".tmp")
        save_file(tensors, str(tmp), metadata={"step": str(loop.step)})
        os.replace(tmp, self.directory / STATE_FILE)
        tmp = self.directory / (META_FILE + ".tmp")
        tmp.write_text(body)
        os.replace(tmp, self.directory / META_FILE)
        self._evaluations = 0
        self._last = time.monotonic()

    def _read(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]] | None:
        from safetensors import safe_open
        from safetensors.torch import load_file

        meta_path, state_path = self.directory / META_FILE, self.directory / STATE_FILE
        if not (meta_path.exists() and state_path.exists()):
            return None
        try:
            meta = json.loads(meta_path.read_text())
            with safe_open(str(state_path), framework="pt") as fh:
                step = (fh.metadata() or {}).get("step")
            if step != str(meta["loop"]["step"]) or meta["params"] != json.loads(json.dumps(self.params, default=float)):
                return None  # cut off between the two files, or another trial's parameters
            return meta, load_file(str(state_path))
        except (OSError, ValueError, KeyError):
            return None

    def restore(
        self, *, model: torch.nn.Module, adapter: str, optimizer: Any, scheduler: Any, scaler: Any, rng: np.random.Generator, best: Any
    ) -> LoopState | None:
        """Load the last checkpoint into the fresh *model*, *optimizer*, *scheduler*, RNGs
        and *best* record; ``None`` (and nothing changed) when there is none for these
        parameters."""
        found = self._read()
        if found is None:
            return None
        meta, tensors = found
        load_trainable_state(model, adapter, {k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        optimizer.load_state_dict(_unflatten_optimizer(tensors, meta["optimizer"]))
        scheduler.load_state_dict(meta["scheduler"])
        if scaler is not None and meta.get("scaler"):
            scaler.load_state_dict(meta["scaler"])
        torch.set_rng_state(tensors["rng.torch"])
        cuda = [tensors[f"rng.cuda.{i}"] for i in range(torch.cuda.device_count()) if f"rng.cuda.{i}" in tensors]
        if cuda and len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
        for key, value in meta["best"].items():
            setattr(best, key, value)
        kept = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")}
        best.state = kept or None
        loop = LoopState(**meta["loop"])
        rng.bit_generator.state = loop.epoch_rng
        self.resumed_step = loop.step
        self._last = time.monotonic()
        if self.on_resume is not None:
            self.on_resume(loop)
        return loop

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
