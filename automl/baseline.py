"""The task's classical baseline as a saved model: ``<run>/baseline/``.

A task whose :meth:`~automl.task.Task.baseline` hands back a fitted model (and its outputs
on validation and test) gets it saved here, without pickle:

* ``model.skops``: the model in skops' secure format. Loading trusts only types from
  scikit-learn, numpy and scipy (and ``functools.partial`` over those), LightGBM's
  scikit-learn classifier and booster (:data:`TRUSTED_TYPES`: a booster is rebuilt from
  LightGBM's own text model format, which is parsed, not run), CatBoost's classifier and
  the classes the task names in ``Task.model_types``; anything else is refused, so a model
  file cannot run arbitrary code;
* ``outputs.npz``: its validation and test outputs (what ensembles average);
* ``automl.json``: ``kind: "baseline"``, the task and its options, labels, calibration and
  metrics, like an exported fine-tuned model's.

The directory is a model of its own: ``automl predict runs/x/baseline rows.csv`` and
``automl.load_model("runs/x/baseline")`` score raw rows with it, and the export copies it
to ``best/`` when it is the best model of the run.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from automl.errors import UserError
from automl.explain import RowExplanation, explain_model
from automl.export import install_dir, metrics_table, report_tables, task_fields, write_plots

if TYPE_CHECKING:
    import pandas as pd

    from automl.task import BaselineResult, Outputs, Task

BASELINE_DIR = "baseline"
MODEL_FILE = "model.skops"
OUTPUTS_FILE = "outputs.npz"
META_FILE = "automl.json"
#: Top-level modules whose types a saved baseline may contain.
TRUSTED_MODULES = ("sklearn", "numpy", "scipy")
#: Single types a saved baseline may contain besides those modules' (LightGBM's booster
#: restores itself from its text model string, CatBoost's classifier from its own binary
#: model format).
TRUSTED_TYPES = frozenset({
    "functools.partial",
    "collections.OrderedDict",
    "lightgbm.sklearn.LGBMClassifier",
    "lightgbm.basic.Booster",
    "catboost.core.CatBoostClassifier",
})


def trusted_type(name: str, task_types: frozenset[str] = frozenset()) -> bool:
    """Whether a saved baseline may hold the type *name*: one of :data:`TRUSTED_MODULES`'
    or :data:`TRUSTED_TYPES`, or one of the task's own classes (``Task.model_types``)."""
    return name.split(".", 1)[0] in TRUSTED_MODULES or name in TRUSTED_TYPES or name in task_types


def save_model(model: Any, path: Path, task_types: frozenset[str] = frozenset()) -> None:
    """Save a scikit-learn (or LightGBM) model with skops (no pickle), deflated: skops
    describes every object in JSON (each term of a vocabulary an object of its own), which
    deflate shrinks about ninefold (all of VAERS: 180 MB stored, 19 MB deflated at level 1,
    in 0.6 s more, and loaded faster)."""
    import zipfile

    import skops.io as sio

    sio.dump(model, path, compression=zipfile.ZIP_DEFLATED, compresslevel=1)
    untrusted = [t for t in sio.get_untrusted_types(file=path) if not trusted_type(t, task_types)]
    if untrusted:
        path.unlink()
        raise TypeError(f"the baseline model holds types that cannot be loaded safely: {', '.join(untrusted)}")


def load_model_file(path: Path, task_types: frozenset[str] = frozenset()) -> Any:
    """Load a model saved by :func:`save_model`, trusting only :func:`trusted_type` types
    (*task_types*: the task's ``model_types``)."""
    import skops.io as sio

    try:
        types = sio.get_untrusted_types(file=path)
    except Exception as exc:
        raise UserError(f"cannot read the saved baseline model: {type(exc).__name__}: {exc}", file=path) from None
    refused = [t for t in types if not trusted_type(t, task_types)]
    if refused:
        raise UserError(f"refusing to load a model that holds untrusted types: {', '.join(refused)}", file=path)
    return sio.load(path, trusted=types)


def save_outputs(path: Path, outputs: dict[str, Outputs]) -> None:
    np.savez(path, **{k: np.asarray(v, dtype=np.float32) for k, v in outputs.items()})


def load_outputs(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def save_baseline(ctx: Any, result: BaselineResult, data: Any, encoded: dict[str, Any]) -> dict[str, Any] | None:
    """Save a baseline that came with a model to ``<run>/baseline/``; returns its
    ``automl.json`` (``None`` when the task gave no model or outputs)."""
    task = ctx.resolved.task
    if result.model is None or "validation" not in result.outputs:
        return None
    directory = ctx.run_dir / BASELINE_DIR
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    save_model(result.model, directory / MODEL_FILE, task.model_types)
    save_outputs(directory / OUTPUTS_FILE, result.outputs)
    calibration = task.calibrate(result.outputs["validation"], data.validation, encoded["validation"])
    metrics = {"validation": _metrics(task, result.outputs["validation"], data.validation, encoded["validation"], calibration)}
    if "test" in result.outputs and data.test is not None and "test" in encoded:
        metrics["test"] = _metrics(task, result.outputs["test"], data.test, encoded["test"], calibration)
    meta = {
        **task_fields(ctx),
        "kind": "baseline",
        "name": result.name,
        "metrics": metrics,
        "calibration": calibration,
        "seconds": result.seconds,
        "exported": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if result.fitted_on_validation:
        meta["fitted_on_validation"] = True
    (directory / META_FILE).write_text(json.dumps(meta, indent=2, default=str))
    (directory / "README.md").write_text(model_card(meta))
    return meta


def _metrics(task: Task, outputs: Outputs, split: Any, encoded: Any, calibration: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in task.compute_metrics(outputs, split, encoded, calibration).items()}


def model_card(meta: dict[str, Any]) -> str:
    lines = [
        f"# {meta['study']}: {meta['task']} baseline ({meta['name']})",
        "",
        "The classical baseline automl trained in this run, saved with skops (no pickle).",
        "",
        "## Use",
        "",
        "```python",
        "import automl",
        'model = automl.load_model("PATH/TO/model")',
        "scored = model.predict(frame)  # a pandas DataFrame of raw rows",
        "```",
        "",
        "or `automl predict PATH/TO/model data.csv` (applies the task's calibration). It does not load",
        "with `transformers`: it is a scikit-learn (or LightGBM) model.",
        "",
        *metrics_table(meta["metrics"]),
        "",
    ]
    return "\n".join(lines)


@dataclass
class BaselineModel:
    """A saved baseline, ready to score raw rows (what :func:`automl.load_model` returns for
    ``kind: "baseline"``)."""

    path: Path
    meta: dict[str, Any]
    task: Task
    model: Any

    @classmethod
    def load(cls, path: Path, meta: dict[str, Any], task: Task) -> BaselineModel:
        file = path / MODEL_FILE
        if not file.exists():
            raise UserError(f"is not a saved baseline (no {MODEL_FILE})", file=path)
        return cls(path=path, meta=meta, task=task, model=load_model_file(file, task.model_types))

    def outputs(self, frame: pd.DataFrame, *, file: str = "<input>") -> np.ndarray:
        """Raw outputs per row, in the space the ensemble averages (e.g. log-probabilities)."""
        split = self.task.read(frame, split="predict", file=file, label_names=self.task.labels)
        return np.asarray(self.task.baseline_outputs(self.model, split))

    def predict(self, frame: pd.DataFrame, *, file: str = "<input>") -> pd.DataFrame:
        """The rows with the task's prediction columns added (``prediction``, scores)."""
        split = self.task.read(frame, split="predict", file=file, label_names=self.task.labels)
        outputs = np.asarray(self.task.baseline_outputs(self.model, split))
        return prediction_frame(self.task, frame, outputs, split, self.meta.get("calibration") or {})

    def explain(self, frame: pd.DataFrame, *, file: str = "<input>") -> list[RowExplanation]:
        """Each row's prediction and its reasons (:mod:`automl.explain`; needs ``automl[explain]``)."""
        return explain_model(self, frame, file=file)


def prediction_frame(
    task: Task, frame: pd.DataFrame, outputs: Any, split: Any, calibration: dict[str, Any], encoded: Any = None
) -> pd.DataFrame:
    """*frame* with the task's prediction columns for *outputs* added."""
    import pandas as pd

    rows = task.predict(outputs, split, encoded or {}, calibration)
    predicted = pd.DataFrame(rows, index=frame.index)
    base = frame.drop(columns=[c for c in predicted.columns if c in frame.columns])
    return pd.concat([base, predicted], axis=1)


__all__ = ["BASELINE_DIR", "BaselineModel", "save_baseline"]


def export_baseline(ctx: Any, data: Any, encoded: dict[str, Any]) -> Path:
    """Export the saved baseline as ``best/`` (it is the best model of the run), with the
    task's plots of its test (or validation) outputs."""
    run_dir: Path = ctx.run_dir
    task = ctx.resolved.task
    staging = run_dir / ".best-baseline"
    if staging.exists():
        shutil.rmtree(staging)
    shutil.copytree(run_dir / BASELINE_DIR, staging)
    meta = json.loads((staging / META_FILE).read_text())
    outputs = load_outputs(staging / OUTPUTS_FILE)
    split_name = "test" if "test" in outputs and data.test is not None and "test" in encoded else "validation"
    args = (outputs[split_name], getattr(data, split_name), encoded[split_name], meta.get("calibration") or {})
    meta["plots"] = write_plots(run_dir, [(f"{title} ({split_name})", fig) for title, fig in task.plots(*args)])
    meta["tables"] = report_tables(task, *args, split_name)
    (staging / META_FILE).write_text(json.dumps(meta, indent=2, default=str))
    return install_dir(staging, run_dir / "best")
