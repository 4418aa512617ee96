"""Predictions from an exported model (``automl predict`` and ``automl.load_model``).

The model directory is what the export wrote (``<run>/best``): the weights (a
transformers model, or for a ``fused`` export the encoder, the feature tower and the
feature statistics) and tokenizer plus ``automl.json``, which names the task, its
options, the data columns, the labels, the max length and the calibration (e.g. a tuned
decision threshold).
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from automl import plugins
from automl.baseline import BaselineModel, prediction_frame
from automl.data import read_table
from automl.device import pick_device
from automl.encoding import encode_split
from automl.engine import predict_outputs
from automl.ensemble import EnsembleModel
from automl.errors import DataError, UserError
from automl.explain import RowExplanation, explain_model
from automl.fusion import load_fused
from automl.onnx_model import load_onnx
from automl.recipe import DataSpec
from automl.task import Task, read_options

if TYPE_CHECKING:
    import pandas as pd

META_FILE = "automl.json"
#: Called with a number of rows (the total, then each batch).
Progress = Callable[[int], None] | None
OUTPUT_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet"}


@dataclass
class ExportedModel:
    """An exported model, ready to predict (what :func:`automl.load_model` returns)."""

    path: Path
    meta: dict[str, Any]
    task: Task
    model: Any
    tokenizer: Any

    @property
    def text_column(self) -> str:
        return str((self.meta.get("data") or {}).get("text_column", "text"))

    def outputs(self, frame: pd.DataFrame, *, file: str = "<input>", batch_size: int = 64) -> Any:
        """Raw model outputs per row (logits ``[n, num_labels]``; one array per row for token heads)."""
        return _run(self, frame, file=file, batch_size=batch_size)[1]

    def predict(self, frame: pd.DataFrame, *, file: str = "<input>", batch_size: int = 64) -> pd.DataFrame:
        """The rows with the task's prediction columns added."""
        return predict_frame(self, frame, file=file, batch_size=batch_size)

    def explain(self, frame: pd.DataFrame, *, file: str = "<input>") -> list[RowExplanation]:
        """Each row's prediction and its reasons (:mod:`automl.explain`; needs ``automl[explain]``)."""
        return explain_model(self, frame, file=file)


def read_meta(model_dir: str | Path) -> tuple[Path, dict[str, Any]]:
    """``(directory, automl.json)``; a run directory stands for its ``best/``."""
    path = Path(model_dir)
    if not path.exists():
        raise UserError("no such model directory", file=path)
    if not (path / META_FILE).exists() and (path / "best" / META_FILE).exists():
        path = path / "best"
    meta_file = path / META_FILE
    if not path.is_dir() or not meta_file.exists():
        raise UserError(f"is not an automl export (no {META_FILE}); give a run's best/ directory", file=path)
    try:
        meta = json.loads(meta_file.read_text())
        if not isinstance(meta, dict) or "task" not in meta:
            raise ValueError("no 'task'")
    except ValueError as exc:
        raise UserError(f"is not a valid automl export: {exc}", file=meta_file) from None
    return path, meta


@contextlib.contextmanager
def loading_progress(show: bool) -> Iterator[None]:
    """transformers' own progress bars (its "Loading weights" bar) on with *show*, off
    without, for the duration; as they were afterwards."""
    from transformers.utils import logging as hf_logging

    was_on = hf_logging.is_progress_bar_enabled()
    (hf_logging.enable_progress_bar if show else hf_logging.disable_progress_bar)()
    try:
        yield
    finally:
        (hf_logging.enable_progress_bar if was_on else hf_logging.disable_progress_bar)()


def load_model(model_dir: str | Path, *, column: str | None = None, device: str = "auto", progress: bool = False) -> Any:
    """Load any model automl exported, by the ``kind`` in its ``automl.json``: a fine-tuned
    model, a saved baseline or an ensemble. Each has ``.predict(frame) -> DataFrame`` and
    ``.outputs(frame) -> np.ndarray``. transformers' "Loading weights" progress bar shows
    only with *progress*."""
    with loading_progress(progress):
        return _load_any(model_dir, column=column, device=device)


def _load_any(model_dir: str | Path, *, column: str | None, device: str) -> Any:
    path, meta = read_meta(model_dir)
    kind = meta.get("kind")
    if kind == "ensemble":
        return EnsembleModel.load(path, meta, device=device, column=column, load_member=load_model)
    if kind == "baseline":
        meta, task = task_from_meta(path, meta, column)
        return BaselineModel.load(path, meta, task)
    return load_exported(path, column=column, device=device)


def task_from_meta(path: Path, meta: dict[str, Any], column: str | None = None) -> tuple[dict[str, Any], Task]:
    """The task an export was trained with (*column* replaces the text column)."""
    meta_file = str(path / META_FILE)
    task_cls = plugins.get_task(meta["task"], file=meta_file)
    options = read_options(task_cls, meta.get("task_options") or {}, file=meta_file, field="task_options")
    data = dict(meta.get("data") or {})
    if column:
        data["text_column"] = column
        meta = {**meta, "data": data}
    task = task_cls(options, DataSpec.model_construct(**{k: v for k, v in data.items() if k in DataSpec.model_fields}))
    task.labels = meta.get("labels")
    task.restore(dict(meta.get("calibration") or {}))
    return meta, task


def load_exported(model_dir: str | Path, *, column: str | None = None, device: str = "auto") -> ExportedModel:
    """Load the model, tokenizer and task of an export. *column* replaces the text column."""
    path, meta = read_meta(model_dir)
    meta, task = task_from_meta(path, meta, column)
    if meta.get("format") == "onnx":  # `automl export --format onnx`: run with ONNX Runtime
        model, tokenizer = load_onnx(path, meta)
        return ExportedModel(path=path, meta=meta, task=task, model=model, tokenizer=tokenizer)
    model, tokenizer, task.features = _load_model(path, meta)
    model.to(pick_device(device).device)
    return ExportedModel(path=path, meta=meta, task=task, model=model, tokenizer=tokenizer)


def _load_model(path: Path, meta: dict[str, Any]) -> tuple[Any, Any, Any]:
    """(model, tokenizer, feature pipeline or ``None``) of an export."""
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification, AutoTokenizer

    cls = AutoModelForTokenClassification if meta.get("head") == "token-classification" else AutoModelForSequenceClassification
    remote = bool(meta.get("trust_remote_code", False))
    try:
        features = None
        if meta.get("kind") == "fused":
            model, features = load_fused(path, trust_remote_code=remote)
        else:
            model = cls.from_pretrained(str(path), use_safetensors=True, trust_remote_code=remote)
        tokenizer = AutoTokenizer.from_pretrained(str(path), trust_remote_code=remote)
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"cannot load the exported model: {first}", file=path) from None
    return model, tokenizer, features


def read_input(
    source: str | Path, text_column: str, stdin: IO[str] | None = None, *, fmt: str | None = None
) -> tuple[pd.DataFrame, str]:
    """The rows to predict and the name to report for them. ``-`` reads lines of text;
    *fmt* overrides the format the file's suffix says (``--format``)."""
    import pandas as pd

    if str(source) == "-":
        lines = [line.rstrip("\r\n") for line in (stdin or sys.stdin)]
        lines = [line for line in lines if line.strip()]
        if not lines:
            raise DataError("no lines of text on standard input", file="<stdin>")
        return pd.DataFrame({text_column: lines}), "<stdin>"
    frame = read_table(source, fmt=fmt)
    if len(frame) == 0:
        raise DataError("has no rows to predict", file=source)
    return frame, str(source)


def predict_frame(
    exported: ExportedModel,
    frame: pd.DataFrame,
    *,
    file: str = "<input>",
    batch_size: int = 64,
    on_total: Callable[[int], None] | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> pd.DataFrame:
    """The input rows with the task's prediction columns added (``prediction``, scores).
    A saved baseline or an ensemble (from :func:`load_model`) predicts as a whole."""
    if not isinstance(exported, ExportedModel):
        if on_total is not None:
            on_total(len(frame))
        predicted = exported.predict(frame, file=file)
        if on_batch is not None:
            on_batch(len(frame))
        return predicted
    split, outputs, encoded = _run(exported, frame, file=file, batch_size=batch_size, on_total=on_total, on_batch=on_batch)
    return prediction_frame(exported.task, frame, outputs, split, exported.meta.get("calibration") or {}, encoded)


def _run(
    exported: ExportedModel,
    frame: pd.DataFrame,
    *,
    file: str,
    batch_size: int,
    on_total: Callable[[int], None] | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> tuple[Any, Any, Any]:
    """(split, outputs, encoded) of a fine-tuned model on raw rows."""
    task = exported.task
    split = task.read(frame, split="predict", file=file, label_names=task.labels)
    max_length = int(exported.meta.get("max_length") or 512)
    encoded = encode_split(task, split, exported.tokenizer, max_length, file=file)
    if on_total is not None:
        on_total(len(split))
    device = getattr(exported.model, "device", None)  # a transformers model or an ONNX one (cpu)
    setup = pick_device(str(device if device is not None else next(exported.model.parameters()).device))
    outputs = predict_outputs(
        exported.model, encoded, setup, exported.tokenizer.pad_token_id or 0, batch_size, task.head, on_batch=on_batch
    )
    return split, outputs, encoded


def output_format(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        raise UserError(f"unknown output format '{suffix or path}'; expected .csv, .jsonl or .parquet", field="--output")
    return OUTPUT_FORMATS[suffix]


def write_predictions(frame: pd.DataFrame, path: str | Path | None, stream: IO[str] | None = None) -> None:
    """Write to *path* (format by extension), or CSV to *stream* (stdout)."""
    if path is None:
        frame.to_csv(stream or sys.stdout, index=False)
        return
    fmt = output_format(path)
    try:
        if fmt == "csv":
            frame.to_csv(path, index=False)
        elif fmt == "jsonl":
            frame.to_json(path, orient="records", lines=True, force_ascii=False)
        else:
            frame.to_parquet(path, index=False)
    except OSError as exc:
        raise UserError(f"cannot write predictions: {exc.strerror or exc}", file=path) from None
