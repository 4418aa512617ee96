"""Device and precision choice: CUDA, then Apple MPS, then CPU."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from automl.errors import UserError


@dataclass(frozen=True)
class DeviceSetup:
    device: torch.device
    #: ``torch.bfloat16``/``torch.float16`` for autocast, or ``None`` for fp32.
    autocast_dtype: torch.dtype | None
    #: fp16 needs loss scaling.
    grad_scaling: bool

    @property
    def inference_dtype(self) -> torch.dtype | None:
        """The autocast dtype for evaluation and prediction (``None``: fp32). On a CPU they
        run in fp32, so that every recorded metric is the fp32 model's, as users serve it
        (``pipeline``, ONNX); a CPU evaluation is a small part of a trial."""
        return None if self.device.type == "cpu" else self.autocast_dtype

    @property
    def label(self) -> str:
        precision = {torch.bfloat16: "bf16", torch.float16: "fp16", None: "fp32"}[self.autocast_dtype]
        return f"{self.device} {precision}"


def mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


#: CPU flags (Linux ``/proc/cpuinfo``) of bf16 matrix instructions: AVX512-BF16, AMX.
BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def cpu_has_native_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether this CPU has bf16 matrix instructions (AVX512-BF16 or AMX), from the
    kernel's CPU flags; ``False`` where they cannot be read (not Linux)."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return not BF16_CPU_FLAGS.isdisjoint(line.split(":", 1)[-1].split())
    except OSError:
        pass
    return False


def machine_problems(device: str, precision: str) -> list[tuple[str, str]]:
    """``(field, problem)`` for a ``training.device`` or ``training.precision`` this machine
    cannot give (``automl run`` refuses them; ``automl recipe check`` warns, as the recipe
    may be meant for another machine)."""
    problems: list[tuple[str, str]] = []
    kind = "cpu" if device == "auto" else device.split(":")[0]
    if device == "auto":
        if torch.cuda.is_available():
            kind = "cuda"
        elif mps_available():
            kind = "mps"
    if kind == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(device.split(":")[1]) if ":" in device else 0
        if count == 0:
            problems.append(("training.device", f"'{device}' was requested but this machine has no CUDA GPU "
                             f"(torch {torch.__version__}); use auto or cpu"))
        elif index >= count:
            problems.append(("training.device", f"'{device}' was requested but this machine has {count} CUDA "
                             f"GPU(s), cuda:0 to cuda:{count - 1}"))
    elif kind == "mps" and not mps_available():
        problems.append(("training.device", f"'{device}' was requested but Apple MPS is not available here; use auto or cpu"))
    if not problems:
        if precision == "fp16" and kind != "cuda":
            problems.append(("training.precision", f"fp16 needs a CUDA GPU; training here is on {kind} "
                             "(use auto, fp32 or bf16)"))
        elif precision == "bf16" and kind == "cuda" and not torch.cuda.is_bf16_supported():
            problems.append(("training.precision", "bf16 was requested but this GPU does not support it "
                             "(use auto or fp16)"))
        elif precision == "bf16" and kind == "mps":
            problems.append(("training.precision", "bf16 is not used on MPS: training there is fp32 (use auto or fp32)"))
    return problems


def pick_device(
    requested: str = "auto", precision: str = "auto", threads: int | None = None, *, training: bool = False
) -> DeviceSetup:
    """Resolve ``training.device``/``training.precision`` for this process.

    On CUDA: bf16 autocast where the GPU supports it, fp16 with loss scaling otherwise, and
    TF32 matmuls. On CPU: bf16 autocast where the CPU multiplies bf16 natively (AVX512-BF16
    or AMX: recent Xeon and EPYC) for *training*, fp32 elsewhere (emulated bf16 is slower
    than fp32) and for inference (evaluations included: see ``inference_dtype``); all
    cores, or *threads* when several workers share the machine. Autocast keeps the weights
    and the optimiser in fp32 and runs the matrix products in bf16: on a 2-core EPYC with
    AVX512-BF16 the trials of a MiniLM search ran about 1.4x faster with the same values to 3 decimals
    (docs/benchmarks.md, section 7a).
    """
    if requested == "auto":
        if torch.cuda.is_available():
            requested = "cuda"
        elif mps_available():
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
        if precision == "bf16" or (precision == "auto" and training and cpu_has_native_bf16()):
            autocast = torch.bfloat16
    return DeviceSetup(device=device, autocast_dtype=autocast, grad_scaling=scaling)
