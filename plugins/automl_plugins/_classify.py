"""Shared pieces of the built-in classification tasks: label handling, metrics, plots."""

from __future__ import annotations

from typing import Any

import numpy as np

from automl.errors import DataError


class Columns:
    """``text_column`` / ``label_column`` / ``feature_columns`` from the recipe's ``data``
    section (defaults ``text`` / ``label`` / none) for tasks that keep the recipe in
    ``self.data``. Feature columns are fused with the text (``automl.fusion``), and the
    default space then searches the fusion settings too."""

    data: Any

    def feature_columns(self) -> list[str]:
        columns = list(getattr(self.data, "feature_columns", None) or [])
        for name in (self.text_column, self.label_column):
            if name in columns:
                from automl.errors import RecipeError

                raise RecipeError(f"lists '{name}', which is the text or label column", field="data.feature_columns")
        return columns

    def default_space(self) -> dict[str, Any]:
        from automl.fusion import fusion_space

        space = super().default_space()  # type: ignore[misc]
        if self.feature_columns():
            space.update(fusion_space())
        return space

    @property
    def text_column(self) -> str:
        return self.data.text_column if self.data else "text"

    @property
    def label_column(self) -> str:
        return self.data.label_column if self.data else "label"


def softmax(logits: np.ndarray) -> np.ndarray:
    # In float64: float32 rows can miss a sum of one by more than scikit-learn's log_loss allows.
    logits = np.asarray(logits, dtype=np.float64)
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def label_list(values: Any, *, file: str, column: str) -> list[str]:
    """Sorted distinct labels of the training data; at least two."""
    labels = sorted({label_text(v) for v in values if not _empty_label(v)})
    if len(labels) < 2:
        found = f"only '{labels[0]}'" if labels else "none"
        raise DataError(f"needs at least two classes in column '{column}', found {found}", file=file, field="data.label_column")
    return labels


def match_label(value: Any, names: list[str]) -> str | None:
    """The label among *names* (as :func:`label_text` writes the column's values) that a
    recipe's scalar *value* means: ``1``, ``"1"`` and ``1.0`` are the label ``1``; ``true``
    and ``"true"`` the label ``True`` of a boolean column. ``None`` when none is."""
    if value is None:
        return None
    text = label_text(value)
    if text in names:
        return text
    if isinstance(value, bool) or str(value).strip().lower() in ("true", "false"):
        wanted = str(value).strip().lower()
        hits = [n for n in names if n.strip().lower() == wanted]
        return hits[0] if len(hits) == 1 else None
    try:
        number = float(str(value).strip())
    except ValueError:
        hits = [n for n in names if n.strip() == text.strip()]
        return hits[0] if len(hits) == 1 else None
    hits = []
    for name in names:
        try:
            if float(name) == number:
                hits.append(name)
        except ValueError:
            continue
    return hits[0] if len(hits) == 1 else None


def label_text(value: Any) -> str:
    """A label cell as text. A whole-number float is written as an integer: pandas reads an
    integer label column with one empty cell as floats, and ``1.0`` must stay the label ``1``."""
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _empty_label(value: Any) -> bool:
    from automl.data import is_missing

    return is_missing(value) or str(value) in ("nan", "<NA>")


def label_ids(values: Any, label_names: list[str], *, file: str, column: str) -> list[int]:
    index = {name: i for i, name in enumerate(label_names)}
    out = []
    for row, value in enumerate(values):
        key = label_text(value)
        if _empty_label(value):
            raise DataError(f"row {row + 1}: empty label in column '{column}'", file=file, field="data.label_column")
        if key not in index:
            raise DataError(
                f"row {row + 1}: label '{key}' in column '{column}' is not in the training data "
                f"(known: {', '.join(label_names[:10])})",
                file=file,
                field="data.label_column",
            )
        out.append(index[key])
    return out


def classification_metrics(probs: np.ndarray, labels: np.ndarray, *, predictions: np.ndarray | None = None) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, average_precision_score, f1_score, log_loss, roc_auc_score

    preds = probs.argmax(axis=1) if predictions is None else predictions
    n_classes = probs.shape[1]
    out = {
        "accuracy": float(accuracy_score(labels, preds)),
        "f1_macro": float(f1_score(labels, preds, average="macro", labels=list(range(n_classes)), zero_division=0)),
        "f1_weighted": float(f1_score(labels, preds, average="weighted", zero_division=0)),
        "log_loss": float(log_loss(labels, np.clip(probs, 1e-7, 1), labels=list(range(n_classes)))),
    }
    if n_classes == 2 and len(set(labels.tolist())) == 2:
        out["roc_auc"] = float(roc_auc_score(labels, probs[:, 1]))
        out["pr_auc"] = float(average_precision_score(labels, probs[:, 1]))
    return out


def confusion_plot(labels: np.ndarray, preds: np.ndarray, names: list[str]) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import confusion_matrix

    shown = names if len(names) <= 30 else None
    cm = confusion_matrix(labels, preds, labels=list(range(len(names))))
    size = 3.5 + 0.25 * min(len(names), 30)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(cm, cmap="Blues")
    fig.colorbar(im, ax=ax, fraction=0.046)
    if shown:
        ax.set_xticks(range(len(names)), labels=names, rotation=45, ha="right")
        ax.set_yticks(range(len(names)), labels=names)
        if len(names) <= 12:
            for i in range(len(names)):
                for j in range(len(names)):
                    ax.text(j, i, str(cm[i, j]), ha="center", va="center",
                            color="white" if cm[i, j] > cm.max() / 2 else "black", fontsize=9)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("Confusion matrix")
    fig.tight_layout()
    return fig


def binary_curves(labels: np.ndarray, scores: np.ndarray, threshold: float | None = None) -> list[tuple[str, Any]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

    out = []
    precision, recall, thresholds = precision_recall_curve(labels, scores)
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(recall, precision, color="#1f77b4", lw=2, label=f"AP = {average_precision_score(labels, scores):.3f}")
    ax.axhline(labels.mean(), color="grey", ls="--", lw=1, label=f"chance = {labels.mean():.3f}")
    if threshold is not None and len(thresholds):
        i = int(np.argmin(np.abs(thresholds - threshold)))
        ax.plot(recall[i], precision[i], "o", color="#d62728", label=f"threshold {threshold:.3f}")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_title("Precision-recall curve")
    ax.legend(loc="lower left")
    fig.tight_layout()
    out.append(("Precision-recall curve", fig))

    fpr, tpr, _ = roc_curve(labels, scores)
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(fpr, tpr, color="#2ca02c", lw=2, label=f"AUC = {roc_auc_score(labels, scores):.3f}")
    ax.plot([0, 1], [0, 1], color="grey", ls="--", lw=1)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("ROC curve")
    ax.legend(loc="lower right")
    fig.tight_layout()
    out.append(("ROC curve", fig))
    return out


def read_labels(frame: Any, split: str, column: str, label_names: list[str] | None, *, file: str) -> list[int] | None:
    """Class ids of *column*, or ``None`` for ``split="predict"``."""
    from automl.data import require_columns

    if split == "predict":
        return None
    require_columns(frame, [column], file=file, field="data.label_column")
    return label_ids(frame[column].tolist(), label_names or [], file=file, column=column)


def encode_split(split: Any, tokenizer: Any, max_length: int) -> dict[str, list[Any]]:
    """``input_ids`` of a split of texts, and its ``labels`` when known."""
    out: dict[str, list[Any]] = {"input_ids": encode_texts(split.inputs, tokenizer, max_length)}
    if split.labels is not None:
        out["labels"] = list(split.labels)
    return out


def encode_texts(texts: list[str], tokenizer: Any, max_length: int) -> list[list[int]]:
    encoded = tokenizer(texts, truncation=True, max_length=max_length, padding=False, return_attention_mask=False)
    return [list(ids) for ids in encoded["input_ids"]]


def text_values(frame: Any, column: str, *, file: str) -> list[str]:
    """The text of each row; an empty cell is the empty string."""
    from automl.data import is_missing

    values = frame[column].tolist()
    out = []
    for row, value in enumerate(values):
        if is_missing(value):
            out.append("")
        elif isinstance(value, bytes):
            raise DataError(f"row {row + 1}: column '{column}' holds bytes, expected text", file=file)
        else:
            out.append(str(value))
    if all(not v.strip() for v in out):
        raise DataError(f"column '{column}' is empty in every row", file=file, field="data.text_column")
    return out
