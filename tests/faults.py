"""A task plugin that misbehaves on request, registered in-process by the fault tests.

The ``fault`` hyperparameter picks the misbehaviour: ``nan`` (the loss becomes NaN),
``raise`` (the plugin raises mid-trial), ``oom`` (a CUDA out-of-memory error for
micro-batches over ``oom_above`` rows) or ``none``. The ``faulty-baseline`` task's
baseline raises.
"""

from __future__ import annotations

from typing import Any

import torch

from automl import hookimpl
from automl.plugins import get_tasks


def _base() -> type:
    return get_tasks()["text-classification"]


def make_task() -> type:
    base = _base()

    class FaultyText(base):  # type: ignore[misc, valid-type]
        name = "faulty-text"
        description = "text classification that fails on purpose (tests)"
        extra_hyperparameters = {"fault": "which fault to inject", "oom_above": "OOM above this many rows"}

        def loss(self, logits: torch.Tensor, labels: torch.Tensor, params: dict[str, Any]) -> torch.Tensor | None:
            fault = params.get("fault", "none")
            if fault == "nan":
                return logits.sum() * float("nan")
            if fault == "raise":
                raise RuntimeError("the faulty plugin broke on purpose")
            if fault == "oom" and logits.shape[0] > int(params.get("oom_above", 4)):
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
            return None

    return FaultyText


def make_baseline_task() -> type:
    base = _base()

    class FaultyBaseline(base):  # type: ignore[misc, valid-type]
        name = "faulty-baseline"
        description = "text classification whose baseline raises (tests)"

        def baseline(self, data: Any, seed: int) -> Any:
            raise ValueError("the baseline broke on purpose")

    return FaultyBaseline


class Plugin:
    @hookimpl
    def automl_register_tasks(self, register):  # type: ignore[no-untyped-def]
        register(make_task())
        register(make_baseline_task())
