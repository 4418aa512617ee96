"""Device and precision choice: CUDA, then Apple MPS, then CPU."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class DeviceSetup:
    device: torch.device
    #: ``torch.bfloat16``/``torch.float16`` for autocast, or ``None`` for fp32.
    autocast_dtype: torch.dtype | None
    #: fp16 needs loss scaling.
    grad_scaling: bool

    @property
    def label(self) -> str:
        precision = {torch.bfloat16: "bf16", torch.float16: "fp16", None: "fp32"}[self.autocast_dtype]
        return f"{self.device} {precision}"


def pick_device(requested: str = "auto", precision: str = "auto", threads: int | None = None) -> DeviceSetup:
    """Resolve ``training.device``/``training.precision`` for this process.

    On CUDA: bf16 autocast where the GPU supports it, fp16 with loss scaling otherwise, and
    TF32 matmuls. On CPU: fp32 (CPU autocast is slower than fp32 on most CPUs) and all
    cores, or *threads* when several workers share the machine.
    """
    from automl.errors import UserError

    if requested == "auto":
        if torch.cuda.is_available():
            requested = "cuda"
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            requested = "mps"
        else:
            requested = "cpu"
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("CUDA was requested but no CUDA GPU is available", field="training.device")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UserError("MPS was requested but is not available", field="training.device")

    autocast: torch.dtype | None = None
    scaling = False
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        if precision in ("auto", "bf16") and torch.cuda.is_bf16_supported():
            autocast = torch.bfloat16
        elif precision in ("auto", "fp16", "bf16"):
            autocast, scaling = torch.float16, True
    elif device.type == "cpu":
        torch.set_num_threads(threads or os.cpu_count() or 1)
        if precision == "bf16":
            autocast = torch.bfloat16
    return DeviceSetup(device=device, autocast_dtype=autocast, grad_scaling=scaling)
