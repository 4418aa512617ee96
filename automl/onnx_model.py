"""ONNX exports as the rest of automl reads them: the ONNX Runtime model that ``automl
predict`` runs (:func:`load_onnx`), and the figures ``automl export`` measured
(``deployment.json``) as the rows of a table in the report and the model card.

Writing an export is :mod:`automl.deploy`'s job; this module only reads one.
"""

from __future__ import annotations

import os
import types
from pathlib import Path
from typing import Any

from automl.errors import UserError, require_modules

INSTALL = 'pip install "automl[onnx]"'
ONNX_DIR = "onnx"
FP32_FILE = "model.onnx"
#: Rows timed one at a time, at most (the test split of a small run is all of it).
LATENCY_ROWS = 300


def require_onnx() -> None:
    """One line naming the extra when ONNX export or ONNX Runtime is missing."""
    require_modules(("onnx", "onnxscript", "onnxruntime"), install=INSTALL, field="--format onnx")


# --------------------------------------------------------------------------- ONNX Runtime model


class OnnxModel:
    """An ONNX Runtime session with the call interface of a transformers model, so the
    engine's batching (:func:`automl.engine.predict_outputs`) runs it unchanged."""

    device = "cpu"

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        options.log_severity_level = 3
        self.path = Path(path)
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]

    def eval(self) -> OnnxModel:
        return self

    def __call__(self, **batch: Any) -> Any:
        import torch

        feed = {name: batch[name].cpu().numpy() for name in self.input_names}
        (logits,) = self.session.run(["logits"], feed)
        return types.SimpleNamespace(logits=torch.from_numpy(logits))


def load_onnx(path: Path, meta: dict[str, Any]) -> tuple[OnnxModel, Any]:
    """The ONNX model an ONNX export directory names as its default, and its tokenizer."""
    from transformers import AutoTokenizer

    require_onnx()
    name = (meta.get("onnx") or {}).get("model", FP32_FILE)
    if not (path / name).exists():
        raise UserError(f"no {name} in this ONNX export; run `automl export RUN_DIR --format onnx` again", file=path)
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    return OnnxModel(path / name), tokenizer


# --------------------------------------------------------------------------- figures


def figure_rows(deployment: dict[str, Any]) -> list[list[str]]:
    """Table rows (model, objective, latency b1 median/p95, b32 median/p95, agreement, size)."""
    objective = deployment.get("objective") or ""
    rows = []
    for m in deployment.get("measured") or []:
        lat = m.get("latency") or {}
        b1, b32 = lat.get("1", {}), lat.get("32", {})
        value = (m.get("metrics") or {}).get(objective)
        rows.append(
            [
                m["name"],
                f"{value:.4f}" if isinstance(value, float) else "-",
                f"{b1.get('median_ms', float('nan')):.2f}",
                f"{b1.get('p95_ms', float('nan')):.2f}",
                f"{b32.get('median_ms', float('nan')):.2f}",
                f"{b32.get('p95_ms', float('nan')):.2f}",
                "-" if m.get("agreement") is None else f"{100 * m['agreement']:.1f}%",
                "-" if m.get("max_abs_diff") is None else f"{m['max_abs_diff']:.2g}",
                "-" if m.get("size_mb") is None else f"{m['size_mb']:.1f}",
            ]
        )
    return rows


FIGURE_HEADERS = ["model", "{objective}", "b1 median", "b1 p95", "b32 median", "b32 p95", "agree", "max diff", "MB"]


def figures_markdown(deployment: dict[str, Any]) -> list[str]:
    if not deployment.get("measured"):
        return ["Not measured: the run's test and validation files were not found."]
    headers = [h.format(objective=deployment.get("objective") or "metric") for h in FIGURE_HEADERS]
    lines = [
        f"Measured by `automl export` on the run's {deployment['split']} split ({deployment['rows']} rows, "
        f"`{deployment['split_file']}`), CPU, {deployment['threads']} threads. Latency in ms per row (batch "
        "time / rows, tokenisation excluded) at batch 1 (the first "
        f"{min(LATENCY_ROWS, deployment['rows'] or 0)} rows) and batch 32 (all rows); agree: share of rows "
        "with the PyTorch model's label; max diff: largest |logit difference| from PyTorch; MB: file size.",
        "",
        "| " + " | ".join(headers) + " |",
        "|" + "---|" * len(headers),
    ]
    lines += ["| " + " | ".join(row) + " |" for row in figure_rows(deployment)]
    return lines
