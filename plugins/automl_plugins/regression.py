"""``text-regression``: predict a number (a rating, a price, a score) from text.

The model has one output. Targets are standardised for training (the loss compares the
output with ``(y - mean) / std``, both from the training labels); the mean and standard
deviation go into the calibration (and so into ``automl.json``), which turns outputs back
into the original scale for metrics and ``automl predict``. With ``clip: true``
predictions are clipped to the range seen in training (a 1-5 rating stays within 1-5).

Baseline: TF-IDF + ridge regression.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from automl import hookimpl
from automl.data import is_missing, require_columns
from automl.errors import DataError
from automl.task import BaselineResult, Metric, Split, Task, TaskData

from ._classify import Columns, encode_split, text_values

automl_api_version = "1"


class RegressionOptions(BaseModel):
    """``task_options`` of ``text-regression``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    #: Train on standardised targets (recommended; predictions come back in the original scale).
    standardize: bool = True
    #: Clip predictions to the [min, max] of the training targets.
    clip: bool = True


def regression_metrics(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    from scipy.stats import spearmanr

    err = pred - true
    variance = float(np.var(true))
    constant = np.ptp(pred) == 0 or np.ptp(true) == 0
    return {
        "rmse": float(np.sqrt(np.mean(err**2))),
        "mae": float(np.mean(np.abs(err))),
        "r2": float(1 - np.mean(err**2) / variance) if variance > 0 else float("nan"),
        "spearman": float("nan") if constant or len(true) < 2 else float(spearmanr(pred, true).statistic),
    }


class TextRegression(Columns, Task):
    name = "text-regression"
    description = "a number (rating, score, price) from text; rmse, mae, r2, spearman"
    head = "sequence-classification"
    problem_type = "regression"
    metrics = (
        Metric("rmse", "minimize", "root mean squared error, in the label's units"),
        Metric("mae", "minimize", "mean absolute error"),
        Metric("r2", "maximize", "coefficient of determination"),
        Metric("spearman", "maximize", "Spearman rank correlation"),
    )
    default_metric = "rmse"
    Options = RegressionOptions

    def __init__(self, options: BaseModel | None = None, data: Any = None) -> None:
        super().__init__(options, data)
        #: Training-label statistics, set by :meth:`prepare`.
        self.stats: dict[str, float] = {"mean": 0.0, "std": 1.0}

    @property
    def opts(self) -> RegressionOptions:
        return self.options  # type: ignore[return-value]

    def num_labels(self) -> int:
        return 1

    def read(self, frame, *, split, file, label_names):  # type: ignore[no-untyped-def]
        require_columns(frame, [self.text_column], file=file, field="data.text_column")
        texts = text_values(frame, self.text_column, file=file)
        labels = None
        if split != "predict":
            column = self.label_column
            require_columns(frame, [column], file=file, field="data.label_column")
            labels = []
            for row, value in enumerate(frame[column].tolist()):
                if is_missing(value):
                    raise DataError(f"row {row + 1}: empty target in column '{column}'; every training "
                                    "row needs a number (drop the row or fill the cell)",
                                    file=file, field="data.label_column")
                try:
                    number = float(value)
                except (TypeError, ValueError):
                    number = float("nan")
                    if not isinstance(value, str) or value.strip():
                        raise DataError(
                            f"row {row + 1}: column '{column}' holds {str(value)[:40]!r}, expected a number",
                            file=file,
                            field="data.label_column",
                        ) from None
                if not np.isfinite(number):
                    raise DataError(f"row {row + 1}: empty or non-finite target in column '{column}'",
                                    file=file, field="data.label_column")
                labels.append(number)
            if split == "train" and len(set(labels)) < 2:
                raise DataError(f"column '{column}' has the same value in every row; nothing to learn",
                                file=file, field="data.label_column")
        return Split(inputs=texts, labels=labels, frame=frame)

    def encode(self, split, tokenizer, max_length):  # type: ignore[no-untyped-def]
        return encode_split(split, tokenizer, max_length)

    def prepare(self, data: TaskData) -> None:
        y = np.asarray(data.train.labels, dtype=np.float64)
        self.stats = {"mean": 0.0, "std": 1.0, "min": float(y.min()), "max": float(y.max())}
        if self.opts.standardize:
            self.stats.update(mean=float(y.mean()), std=float(y.std()) or 1.0)

    def loss(self, logits, labels, params):  # type: ignore[no-untyped-def]
        import torch

        target = (labels.view(-1).float() - self.stats["mean"]) / self.stats["std"]
        return torch.nn.functional.mse_loss(logits.view(-1).float(), target)

    def example_losses(self, logits, labels, params):  # type: ignore[no-untyped-def]
        target = (labels.view(-1).float() - self.stats["mean"]) / self.stats["std"]
        return (logits.view(-1).float() - target) ** 2

    def calibrate(self, outputs, split, encoded):  # type: ignore[no-untyped-def]
        return dict(self.stats)

    def values(self, outputs: Any, calibration: dict[str, Any]) -> np.ndarray:
        """Outputs in the label's scale."""
        c = calibration or self.stats
        raw = np.asarray(outputs, dtype=np.float64)
        pred = (raw[:, 0] if raw.ndim == 2 else raw) * c.get("std", 1.0) + c.get("mean", 0.0)
        if self.opts.clip and "min" in c and "max" in c:
            pred = np.clip(pred, c["min"], c["max"])
        return pred

    def compute_metrics(self, outputs, split, encoded, calibration):  # type: ignore[no-untyped-def]
        return regression_metrics(self.values(outputs, calibration), np.asarray(split.labels, dtype=np.float64))

    def predict(self, outputs, split, encoded, calibration):  # type: ignore[no-untyped-def]
        return [{"prediction": float(v)} for v in self.values(outputs, calibration)]

    def baseline(self, data: TaskData, seed: int) -> BaselineResult:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import Ridge
        from sklearn.pipeline import make_pipeline

        start = time.perf_counter()
        model = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, max_features=50_000), Ridge(alpha=1.0))
        # Fitted on the standardised label: its outputs are in the fine-tuned model's space.
        model.fit(data.train.inputs, (np.asarray(data.train.labels, dtype=np.float64) - self.stats["mean"]) / self.stats["std"])
        outputs = {"validation": self.baseline_outputs(model, data.validation)}
        if data.test is not None:
            outputs["test"] = self.baseline_outputs(model, data.test)

        def scores(split: Split, name: str) -> dict[str, float]:
            return regression_metrics(self.values(outputs[name], self.stats), np.asarray(split.labels, dtype=np.float64))

        return BaselineResult(
            name="tf-idf + ridge regression",
            validation=scores(data.validation, "validation"),
            test=scores(data.test, "test") if data.test is not None else None,
            seconds=time.perf_counter() - start,
            model=model,
            outputs=outputs,
        )

    def baseline_outputs(self, model: Any, split: Split) -> np.ndarray:
        """Predictions ``[n, 1]`` of the saved baseline in the model's output space (the
        label standardised with the training mean and standard deviation)."""
        return np.asarray(model.predict(split.inputs), dtype=np.float64)[:, None]

    def plots(self, outputs, split, encoded, calibration):  # type: ignore[no-untyped-def]
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        pred = self.values(outputs, calibration)
        true = np.asarray(split.labels, dtype=np.float64)
        fig, ax = plt.subplots(figsize=(5, 5))
        ax.scatter(true, pred, s=8, alpha=0.5, color="#1f77b4")
        low, high = float(min(true.min(), pred.min())), float(max(true.max(), pred.max()))
        ax.plot([low, high], [low, high], color="grey", ls="--", lw=1, label="perfect")
        m = regression_metrics(pred, true)
        ax.set_title(f"Predicted vs true (RMSE {m['rmse']:.3f}, R² {m['r2']:.3f})")
        ax.set_xlabel(f"true {self.label_column}")
        ax.set_ylabel(f"predicted {self.label_column}")
        ax.legend(loc="upper left")
        fig.tight_layout()
        return [("Predicted vs true", fig)]


@hookimpl
def automl_register_tasks(register):  # type: ignore[no-untyped-def]
    register(TextRegression)
