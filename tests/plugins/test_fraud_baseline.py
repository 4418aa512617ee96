"""fraud-detection's classical baseline on rows with several free-text columns: it picks
the trees, TF-IDF + logistic regression over the text columns joined, or both stacked, by
out-of-fold average precision on the training rows; the saved model rebuilds the joined
text from the raw columns alone."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from automl.baseline import load_model_file, save_model
from automl.errors import DataError
from automl.task import TaskData
from automl_plugins.fraud import JOINED, FraudDetection, FraudOptions

WORDS = ["fever", "rash", "pain", "swelling", "headache", "redness", "tired", "nausea", "itch", "dizzy"]


def reports(n: int, seed: int) -> pd.DataFrame:
    """Rows whose label lives in the words of two text columns (a serious word in either),
    not in the numbers: what a text model finds and trees on a few SVD components miss."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        serious = rng.random() < 0.2
        symptom = " ".join(rng.choice(WORDS, 4))
        history = " ".join(rng.choice(WORDS, 3))
        if serious:
            if rng.random() < 0.5:
                symptom += " seizure hospitalised"
            else:
                history = (history + " prior stroke") if rng.random() < 0.5 else None
        rows.append({"symptoms": symptom, "history": history, "age": float(rng.integers(1, 90)),
                     "site": str(rng.choice(["arm", "leg"])), "serious": int(serious)})
    return pd.DataFrame(rows)


def task_and_data(train: pd.DataFrame, validation: pd.DataFrame) -> tuple[FraudDetection, TaskData]:
    task = FraudDetection(FraudOptions(positive_label="1"), SimpleNamespace(label_column="serious", text_column="text", feature_columns=None))
    names = task.label_names(train, file="train.csv")
    def split(frame: pd.DataFrame, name: str):  # noqa: ANN202
        return task.read(frame, split=name, file=f"{name}.csv", label_names=names)
    return task, TaskData(split(train, "train"), split(validation, "validation"), None, names)


def test_text_heavy_rows_get_a_text_model_that_scores_raw_rows_after_a_round_trip(tmp_path):
    task, data = task_and_data(reports(300, 0), reports(120, 1))
    assert [c.kind for c in task.schema] == ["text", "text", "number", "category"]
    result = task.baseline(data, seed=0)
    assert "TF-IDF + logistic regression" in result.name, result.name
    from sklearn.metrics import average_precision_score

    labels = np.asarray(data.validation.labels)
    assert average_precision_score(labels, np.exp(result.outputs["validation"][:, 1])) > 0.9
    save_model(result.model, tmp_path / "model.skops")  # only trusted types: no custom code
    loaded = load_model_file(tmp_path / "model.skops")
    # A new task object (as `automl predict` has): the joined text comes from the model.
    fresh, _ = task_and_data(reports(300, 0), reports(10, 2))
    frame = reports(120, 1)
    assert JOINED not in frame.columns
    again = fresh.baseline_outputs(loaded, fresh.read(frame, split="predict", file="new.csv", label_names=fresh.labels))
    np.testing.assert_allclose(again, result.outputs["validation"], rtol=1e-6, atol=1e-9)
    with pytest.raises(DataError, match="history"):
        fresh.baseline_outputs(loaded, SimpleNamespace(frame=frame.drop(columns=["history"])))


def test_rows_without_text_signal_keep_the_trees():
    rng = np.random.default_rng(3)
    def rows(n: int) -> pd.DataFrame:
        amount = rng.gamma(2.0, 50.0, n)
        return pd.DataFrame({"memo": [" ".join(rng.choice(WORDS, 3)) for _ in range(n)], "amount": amount,
                             "serious": (amount > 180).astype(int)})
    task, data = task_and_data(rows(300), rows(100))
    assert task.baseline(data, seed=0).name.startswith("gradient boosting")


def test_refit_baseline_keeps_held_out_validation_and_scores_test_with_all_rows():
    train, validation, test = reports(300, 0), reports(120, 1), reports(100, 4)

    def fitted(refit: bool):  # noqa: ANN202
        task = FraudDetection(FraudOptions(positive_label="1", refit_baseline=refit),
                              SimpleNamespace(label_column="serious", text_column="text", feature_columns=None))
        names = task.label_names(train, file="train.csv")
        splits = [task.read(f, split=n, file=n, label_names=names) for f, n in
                  ((train, "train"), (validation, "validation"), (test, "test"))]
        return task, task.baseline(TaskData(*splits, names), seed=0), splits[2]

    _, plain, _ = fitted(False)
    task, refit, test_split = fitted(True)
    assert refit.name == plain.name + " (refit on training + validation rows)"
    # Validation figures (and the threshold tuned on them) are the held-out fit's.
    np.testing.assert_allclose(refit.outputs["validation"], plain.outputs["validation"])
    assert refit.validation == plain.validation and refit.extra == plain.extra
    # The saved model is the refit one: its test outputs are what the run stored.
    assert not np.allclose(refit.outputs["test"], plain.outputs["test"])
    np.testing.assert_allclose(task.baseline_outputs(refit.model, test_split), refit.outputs["test"])
