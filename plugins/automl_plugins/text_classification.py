"""``text-classification``: binary and multi-class text classification (sentiment, topic,
intent). Baseline: TF-IDF + logistic regression."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from automl import hookimpl
from automl.data import require_columns
from automl.task import BaselineResult, Metric, Split, Task, TaskData

from ._classify import (
    Columns,
    binary_curves,
    classification_metrics,
    confusion_plot,
    encode_split,
    label_list,
    read_labels,
    softmax,
    text_values,
)

automl_api_version = "1"


class TextClassification(Columns, Task):
    name = "text-classification"
    description = "binary or multi-class text classification (sentiment, topic, intent)"
    head = "sequence-classification"
    metrics = (
        Metric("f1_macro", "maximize", "macro-averaged F1"),
        Metric("accuracy", "maximize", "share of correct predictions"),
        Metric("f1_weighted", "maximize", "support-weighted F1"),
        Metric("log_loss", "minimize", "cross-entropy of the predicted probabilities"),
        Metric("roc_auc", "maximize", "ROC AUC (binary only)"),
        Metric("pr_auc", "maximize", "average precision (binary only)"),
    )
    default_metric = "f1_macro"

    def label_names(self, train, *, file):  # type: ignore[no-untyped-def]
        require_columns(train, [self.label_column], file=file, field="data.label_column")
        return label_list(train[self.label_column].tolist(), file=file, column=self.label_column)

    def read(self, frame, *, split, file, label_names):  # type: ignore[no-untyped-def]
        require_columns(frame, [self.text_column], file=file, field="data.text_column")
        texts = text_values(frame, self.text_column, file=file)
        labels = read_labels(frame, split, self.label_column, label_names, file=file)
        return Split(inputs=texts, labels=labels, frame=frame)

    def stratify(self, split: Split) -> Any:
        return split.labels

    def encode(self, split, tokenizer, max_length):  # type: ignore[no-untyped-def]
        return encode_split(split, tokenizer, max_length)

    def compute_metrics(self, outputs, split, encoded, calibration):  # type: ignore[no-untyped-def]
        return classification_metrics(softmax(np.asarray(outputs)), np.asarray(encoded["labels"]))

    def predict(self, outputs, split, encoded, calibration):  # type: ignore[no-untyped-def]
        probs = softmax(np.asarray(outputs))
        names = self.names(probs.shape[1])
        rows = []
        for p in probs:
            best = int(p.argmax())
            row: dict[str, Any] = {"prediction": names[best], "score": float(p[best])}
            for i, name in enumerate(names):
                row[f"score_{name}"] = float(p[i])
            rows.append(row)
        return rows

    def names(self, n: int) -> list[str]:
        return list(self.labels) if self.labels else [str(i) for i in range(n)]

    def baseline(self, data: TaskData, seed: int) -> BaselineResult:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline

        start = time.perf_counter()
        model = make_pipeline(
            TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True, max_features=50_000),
            LogisticRegression(max_iter=2000, C=4.0, class_weight="balanced", random_state=seed),
        )
        model.fit(data.train.inputs, data.train.labels)
        n = len(data.label_names or [])

        def scores(split: Split) -> dict[str, float]:
            probs = np.zeros((len(split), n))
            probs[:, model.classes_] = model.predict_proba(split.inputs)
            return classification_metrics(probs, np.asarray(split.labels))

        return BaselineResult(
            name="tf-idf + logistic regression",
            validation=scores(data.validation),
            test=scores(data.test) if data.test is not None else None,
            seconds=time.perf_counter() - start,
        )

    def plots(self, outputs, split, encoded, calibration):  # type: ignore[no-untyped-def]
        probs = softmax(np.asarray(outputs))
        labels = np.asarray(encoded["labels"])
        names = self.names(probs.shape[1])
        figs = [("Confusion matrix", confusion_plot(labels, probs.argmax(axis=1), names))]
        if probs.shape[1] == 2 and len(set(labels.tolist())) == 2:
            figs += binary_curves(labels, probs[:, 1])
        return figs


@hookimpl
def automl_register_tasks(register):  # type: ignore[no-untyped-def]
    register(TextClassification)
