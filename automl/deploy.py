"""Deployment export (``automl export RUN_DIR --format onnx``): the run's exported model
(``best/``) as an ONNX graph for ONNX Runtime, optionally with int8 weights, measured
against the PyTorch model on the run's test (or validation) split.

The ONNX directory holds ``model.onnx`` (fp32), ``model.int8.onnx`` (with ``--quantize
int8``), the tokenizer, ``config.json``, ``automl.json`` (the export's facts with
``format: onnx`` and the measured figures) and a model card. ``automl predict`` runs it
with ONNX Runtime. Needs the ``onnx`` extra (``onnx``, ``onnxscript``, ``onnxruntime``).

The graph is written by ``torch.onnx.export`` (the torch.export-based exporter of torch 2.x);
int8 is ONNX Runtime's dynamic quantisation (int8 weights per output channel, activations
quantised at run time), which needs no calibration data.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from automl.data import read_table
from automl.device import pick_device
from automl.engine import pad_batch, predict_outputs
from automl.errors import UserError
from automl.export import model_card
from automl.onnx_model import FIGURE_HEADERS, FP32_FILE, INSTALL, LATENCY_ROWS, ONNX_DIR, OnnxModel, figure_rows, figures_markdown, load_onnx, require_onnx  # noqa: F401  (imported from here too)
from automl.results.predict import ExportedModel, load_exported, read_meta
from automl.results.report import write_report

if TYPE_CHECKING:
    import numpy as np

INT8_FILE = "model.int8.onnx"
DEPLOY_FILE = "deployment.json"
FORMATS = ("onnx",)
QUANTIZE = ("int8",)
#: Sizes of the timed batches (per-row latency = batch time / rows).
LATENCY_BATCHES = (1, 32)
#: ``kind`` in automl.json -> what this export cannot write (a fine-tuned trial has no kind,
#: ``trial`` or ``transformers``).
UNSUPPORTED_KINDS = {
    "fused": "a fused model (a head on the mean-pooled encoder, with or without a table-feature tower)",
    "ensemble": "an ensemble of several models",
    "baseline": "a classical scikit-learn baseline",
}


# --------------------------------------------------------------------------- export


def refuse_unsupported(meta: dict[str, Any], file: Path) -> None:
    kind = str(meta.get("kind") or "trial")
    if kind not in ("trial", "transformers"):  # a fine-tuned trial: plain transformers weights
        what = UNSUPPORTED_KINDS.get(kind, f"a model of kind '{kind}'")
        raise UserError(f"ONNX export does not support {what} (kind '{kind}'); export a plain transformers model", file=file)
    head = meta.get("head")
    if head not in ("sequence-classification", "token-classification"):
        raise UserError(f"ONNX export supports transformers classifiers; this model's head is {head!r}", file=file)


def export_graph(model: Any, tokenizer: Any, path: Path, opset: int = 18) -> None:
    """Write *model* (a transformers classifier) to *path* with dynamic batch and length."""
    import logging
    import warnings

    import torch

    model = model.to("cpu").eval()
    sample = tokenizer(["an example row for tracing", "a second one"], return_tensors="pt", padding=True)
    args = (sample["input_ids"], sample["attention_mask"])
    batch = torch.export.Dim("batch", min=1)
    length = torch.export.Dim("sequence", min=1)
    shapes = {"input_ids": {0: batch, 1: length}, "attention_mask": {0: batch, 1: length}}
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # "torchvision is not installed" notes
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            _logits_only(model),
            args,
            input_names=["input_ids", "attention_mask"],
            output_names=["logits"],
            dynamic_shapes=shapes,
            opset_version=opset,
            dynamo=True,
            external_data=False,
            verbose=False,
        )
    program.save(str(path))


def _logits_only(model: Any) -> Any:
    """*model* as a module with exactly two inputs and one output (the logits)."""
    import torch

    class LogitsOnly(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return self.model(input_ids=input_ids, attention_mask=attention_mask).logits

    return LogitsOnly()


def quantize_int8(source: Path, target: Path) -> None:
    """ONNX Runtime dynamic quantisation: int8 weights with one scale per output channel,
    activations quantised at run time, after ONNX Runtime's pre-processing (ONNX shape
    inference, graph optimisation). One scale per tensor instead changed 6% of the labels
    of a MiniLM sentiment model (300 test rows); per channel, 1%."""
    from onnxruntime.quantization import QuantType, quant_pre_process, quantize_dynamic

    prepared = target.with_name(target.stem + ".prep.onnx")
    try:
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        quantize_dynamic(str(prepared), str(target), weight_type=QuantType.QInt8, per_channel=True)
    finally:
        prepared.unlink(missing_ok=True)


# --------------------------------------------------------------------------- measurement


@dataclass(frozen=True)
class Measured:
    """One model on one split: its metrics and its latency per row."""

    name: str
    metrics: dict[str, float]
    #: batch size -> {"median_ms": ..., "p95_ms": ...}, per row.
    latency: dict[str, dict[str, float]] = field(default_factory=dict)
    #: Largest absolute difference of its logits from the PyTorch model's.
    max_abs_diff: float | None = None
    #: Share of rows whose predicted label equals the PyTorch model's.
    agreement: float | None = None
    size_mb: float | None = None


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def time_per_row(model: Any, encoded: dict[str, Any], pad_id: int, batch_size: int, rows: int | None = None) -> dict[str, float]:
    """Median and p95 of (forward time of one batch / its rows), over consecutive batches
    of the split in file order; tokenisation is not timed (it is the same for every model)."""
    import numpy as np
    import torch

    n = len(encoded["input_ids"]) if rows is None else min(rows, len(encoded["input_ids"]))
    ids_only = {"input_ids": encoded["input_ids"]}
    times: list[float] = []
    with torch.inference_mode():
        for _ in range(3):  # warm-up
            model(**pad_batch(ids_only, np.arange(min(batch_size, n)), pad_id, False))
        for start in range(0, n, batch_size):
            index = np.arange(start, min(start + batch_size, n))
            batch = pad_batch(ids_only, index, pad_id, False)
            began = time.perf_counter()
            model(**batch)
            times.append((time.perf_counter() - began) * 1000 / len(index))
    return {"median_ms": round(statistics.median(times), 3), "p95_ms": round(_percentile(times, 0.95), 3), "batches": len(times)}


def _labels(outputs: Any, head: str) -> np.ndarray:
    import numpy as np

    if head == "token-classification":
        return np.concatenate([np.asarray(o).argmax(-1) for o in outputs]) if len(outputs) else np.zeros(0)
    return np.asarray(outputs).argmax(-1)


def _max_abs_diff(a: Any, b: Any, head: str) -> float:
    import numpy as np

    if head == "token-classification":
        return float(max((np.abs(np.asarray(x) - np.asarray(y)).max() for x, y in zip(a, b, strict=True)), default=0.0))
    return float(np.abs(np.asarray(a) - np.asarray(b)).max()) if len(a) else 0.0


def measurement_split(run_dir: Path) -> tuple[str, Path] | None:
    """The run's test split file, else its validation file (from run.json)."""
    try:
        recipe = json.loads((run_dir / "run.json").read_text()).get("recipe") or {}
    except (OSError, ValueError):
        return None
    for name in ("test", "validation"):
        path = (recipe.get("data") or {}).get(name)
        if path and Path(path).exists():
            return name, Path(path)
    return None


def measure(
    pytorch: ExportedModel,
    candidates: dict[str, Any],
    split_file: Path,
    split_name: str,
    *,
    latency_rows: int = LATENCY_ROWS,
    threads: int | None = None,
) -> tuple[list[Measured], int]:
    """Metrics, latency per row, logit difference and label agreement of the PyTorch model
    and each ONNX candidate (name -> :class:`OnnxModel`) on one split."""
    import torch

    task = pytorch.task
    head = pytorch.meta.get("head", "sequence-classification")
    frame = read_table(split_file)
    split = task.read(frame, split=split_name, file=str(split_file), label_names=task.labels)  # type: ignore[arg-type]
    encoded = task.encode(split, pytorch.tokenizer, int(pytorch.meta.get("max_length") or 512))
    pad_id = pytorch.tokenizer.pad_token_id or 0
    calibration = pytorch.meta.get("calibration") or {}
    setup = pick_device("cpu")
    torch.set_num_threads(threads or os.cpu_count() or 1)
    models = {"pytorch": pytorch.model.to("cpu"), **candidates}
    results: list[Measured] = []
    reference: Any = None
    for name, model in models.items():
        with torch.inference_mode():
            outputs = predict_outputs(model, encoded, setup, pad_id, 32, head)
        metrics = {k: float(v) for k, v in task.compute_metrics(outputs, split, encoded, calibration).items()}
        latency = {str(b): time_per_row(model, encoded, pad_id, b, latency_rows if b == 1 else None) for b in LATENCY_BATCHES}
        extra: dict[str, Any] = {}
        if reference is None:
            reference = outputs
        else:
            extra["max_abs_diff"] = _max_abs_diff(outputs, reference, head)
            extra["agreement"] = float((_labels(outputs, head) == _labels(reference, head)).mean())
        size = getattr(model, "path", None)
        extra["size_mb"] = round(size.stat().st_size / 1e6, 2) if size is not None else None
        results.append(Measured(name=name, metrics=metrics, latency=latency, **extra))
    return results, len(split)


# --------------------------------------------------------------------------- the command


@dataclass(frozen=True)
class OnnxExport:
    """What ``automl export --format onnx`` wrote and measured."""

    directory: Path
    #: The study's trial the exported model comes from.
    trial: int | None
    files: list[str]
    split: str | None
    split_file: str | None
    rows: int | None
    measured: list[Measured]
    objective: str
    threads: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        body = asdict(self)
        body["directory"] = str(self.directory)
        return body


def export_onnx(
    run_dir: str | Path,
    *,
    output: str | Path | None = None,
    quantize: str | None = None,
    opset: int = 18,
    measure_split: bool = True,
    latency_rows: int = LATENCY_ROWS,
    threads: int | None = None,
) -> OnnxExport:
    """Export a run's ``best/`` to ONNX (and int8), measure it, write figures to the ONNX
    model card, ``automl.json``, ``<run>/deployment.json`` and the run's report."""
    began = time.perf_counter()
    require_onnx()
    run_path = Path(run_dir)
    best, meta = read_meta(run_path)
    if best.name == "best" and run_path.resolve() == best.resolve():
        run_path = best.parent
    if meta.get("format") == "onnx":
        raise UserError("is already an ONNX export; give the run directory (or its best/)", file=best)
    refuse_unsupported(meta, best / "automl.json")
    if quantize is not None and quantize not in QUANTIZE:
        raise UserError(f"unknown quantisation {quantize!r}; expected 'int8'", field="--quantize")
    target = Path(output) if output is not None else run_path / ONNX_DIR
    if target.resolve() == best.resolve():
        raise UserError("must not be the PyTorch export itself", field="--output")
    pytorch = load_exported(best, device="cpu")
    staging = target.with_name(f".{target.name}-staging")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    try:
        export_graph(pytorch.model, pytorch.tokenizer, staging / FP32_FILE, opset)
        files = [FP32_FILE]
        if quantize == "int8":
            quantize_int8(staging / FP32_FILE, staging / INT8_FILE)
            files.append(INT8_FILE)
        pytorch.tokenizer.save_pretrained(str(staging))
        shutil.copy2(best / "config.json", staging / "config.json")

        found = measurement_split(run_path) if measure_split else None
        measured: list[Measured] = []
        rows = None
        if found is not None:
            candidates = {"onnx-fp32": OnnxModel(staging / FP32_FILE, threads)}
            if quantize == "int8":
                candidates["onnx-int8"] = OnnxModel(staging / INT8_FILE, threads)
            measured, rows = measure(pytorch, candidates, found[1], found[0], latency_rows=latency_rows, threads=threads)
        result = OnnxExport(
            directory=target.resolve(),
            trial=meta.get("trial"),
            files=files,
            split=found[0] if found else None,
            split_file=str(found[1]) if found else None,
            rows=rows,
            measured=measured,
            objective=str((meta.get("objective") or {}).get("metric", "")),
            threads=threads or os.cpu_count() or 1,
            seconds=round(time.perf_counter() - began, 1),
        )
        onnx_meta = {
            **meta,
            "format": "onnx",
            "onnx": {"model": files[-1], "files": files, "opset": opset, "exporter": "torch.onnx (dynamo)", "from": str(best.resolve())},
            "deployment": result.to_dict(),
        }
        (staging / "automl.json").write_text(json.dumps(onnx_meta, indent=2, default=str))
        (staging / "README.md").write_text(onnx_model_card(onnx_meta, result))
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    if result.measured and (run_path / "run.json").exists():
        (run_path / DEPLOY_FILE).write_text(json.dumps(result.to_dict(), indent=2, default=str))
        try:
            write_report(run_path)
        except Exception:  # the export stands without a refreshed report
            pass
    return result


def onnx_model_card(meta: dict[str, Any], result: OnnxExport) -> str:
    card = model_card(meta).replace("PATH/TO/best", "PATH/TO/onnx")
    files = ", ".join(f"`{f}`" for f in result.files)
    lines = [
        "",
        "## ONNX Runtime",
        "",
        f"Files: {files} (default: `{meta['onnx']['model']}`), exported from `{meta['onnx']['from']}` "
        f"with {meta['onnx']['exporter']}, opset {meta['onnx']['opset']}. Run it with "
        "`automl predict PATH/TO/onnx data.csv`, or with `onnxruntime.InferenceSession` "
        "(inputs `input_ids`, `attention_mask`; output `logits`).",
        "",
        *figures_markdown(result.to_dict()),
        "",
    ]
    return card + "\n".join(lines)
