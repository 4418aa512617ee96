"""The exported model as an MLflow pyfunc model (``automl export RUN_DIR --format mlflow``;
the MLflow integration logs the same as the parent run's ``model``).

The MLflow model directory holds ``MLmodel`` (the ``python_function`` flavour with this
module as its loader), the signature and an input example (rows of the run's test or
validation split, label removed), and the export itself under ``data/``. MLflow loads it
with :func:`_load_pyfunc`, i.e. :func:`automl.load_model`, in an environment where automl
is installed (``mlflow models serve -m DIR --env-manager local``). ``predict(frame)``
returns the columns ``automl predict`` adds: the label, the scores and, for a thresholded
task, the tuned threshold's decision.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from automl import __version__
from automl.data import read_table
from automl.errors import UserError

if TYPE_CHECKING:
    import pandas as pd

INSTALL = 'pip install "automl[mlflow]"'
LOADER_MODULE = "automl.mlflow_model"
MLFLOW_DIR = "mlflow"
#: Rows of the run's split kept as the input example.
EXAMPLE_ROWS = 5


def require_mlflow() -> Any:
    try:
        import mlflow
    except ImportError:
        raise UserError(f"needs MLflow, which is not installed: {INSTALL}", field="--format mlflow") from None
    return mlflow


class PyfuncModel:
    """What :func:`_load_pyfunc` returns: MLflow calls ``predict(model_input, params)``."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.label_column = (model.meta.get("data") or {}).get("label_column")

    def predict(self, model_input: Any, params: dict[str, Any] | None = None) -> pd.DataFrame:
        import pandas as pd

        from automl.results.predict import predict_frame  # torch: the mlflow plugin imports this module when the CLI starts

        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        if self.label_column in frame.columns:
            frame = frame.drop(columns=[self.label_column])
        predicted = predict_frame(self.model, frame.reset_index(drop=True), file="<mlflow input>")
        return predicted[[c for c in predicted.columns if c not in frame.columns]]


def _load_pyfunc(data_path: str) -> PyfuncModel:
    """MLflow's entry point for ``loader_module`` models."""
    from automl.results.predict import load_model  # torch: the mlflow plugin imports this module when the CLI starts

    return PyfuncModel(load_model(data_path, device="cpu"))


def input_example(run_dir: Path, meta: dict[str, Any], rows: int = EXAMPLE_ROWS) -> pd.DataFrame | None:
    """The first rows of the run's test (or validation) file, without the label column."""
    from automl.deploy import measurement_split  # torch: the mlflow plugin imports this module when the CLI starts

    found = measurement_split(run_dir)
    if found is None:
        return None
    frame = read_table(found[1]).head(rows)
    label = (meta.get("data") or {}).get("label_column")
    return frame.drop(columns=[label]) if label in frame.columns else frame


def save_pyfunc(model_dir: str | Path, output: str | Path, *, run_dir: str | Path | None = None) -> Path:
    """Write the export in *model_dir* (a run directory stands for its ``best/``) as an
    MLflow pyfunc model to *output* (replaced if it exists): signature and input example
    from the run's split when the run's data is there."""
    from automl.results.predict import load_model, read_meta  # torch: the mlflow plugin imports this module when the CLI starts

    mlflow = require_mlflow()
    from mlflow.models import infer_signature

    best, meta = read_meta(model_dir)
    run_path = Path(run_dir) if run_dir is not None else (best.parent if best.name == "best" else best)
    target = Path(output)
    if target.resolve() == best.resolve() or best.resolve() in target.resolve().parents:
        raise UserError("must be outside the exported model directory", field="--output")
    example = input_example(run_path, meta)
    signature = None
    if example is not None:
        signature = infer_signature(example, PyfuncModel(load_model(best, device="cpu")).predict(example))
    if target.exists():
        shutil.rmtree(target)
    mlflow.pyfunc.save_model(
        str(target),
        loader_module=LOADER_MODULE,
        data_path=str(best),
        signature=signature,
        input_example=example,
        pip_requirements=[f"automl=={__version__}"],
        metadata={"automl_task": meta.get("task"), "automl_kind": meta.get("kind") or "transformers", "automl_trial": meta.get("trial")},
    )
    return target
