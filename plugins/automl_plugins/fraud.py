"""``fraud-detection``: binary classification of table rows (numbers, categories and free
text such as a transaction memo), built for heavy class imbalance.

By default (``fusion: true``) the numeric and categorical columns reach the model as
features (normalised numbers, learned category embeddings; see ``automl.features`` and
``automl.fusion``) and only the free-text columns go through the backbone, as
``column: value`` pairs joined by `` | ``. With ``fusion: false`` (or when a table has no
free-text column) every column is written into the text, numbers the same way in every
split (whole numbers without decimals, other numbers with two, never in scientific
notation)::

    amount: 1234.50 | country: NG | card_present: 0 | hour: 3 | memo: gift card reload

Columns share the token budget (``max_length``) fairly: a long column cannot push the
ones after it out.

The objective defaults to PR-AUC. Training uses class-weighted cross-entropy (the weight
of the positive class is ``(negatives / positives) ** class_weight_power``, a
hyperparameter the search may tune). After each evaluation a decision threshold is tuned
on the validation outputs (best F1, or a target precision or recall); precision, recall
and F1 are reported at that threshold and ``automl predict`` applies it.

Baseline: the classical families on the raw columns (categories encoded, each free-text
column as a few TF-IDF/SVD components, or for LightGBM as its word 1-2-grams):
scikit-learn's HistGradientBoostingClassifier (the reference), LightGBM (categories split
natively, the positive class weighted) with its hyperparameters searched by a small Optuna study of its own while a share of the budget
lasts (``automl_plugins._classical``), its two best configurations, a random forest and
extremely randomised trees, TF-IDF + logistic regression on the words of the text
columns, NBSVM on the same words present or absent (``automl_plugins._naive_bayes``), and a
stack of LightGBM and the words models (LightGBM, averaged with CatBoost where it is installed,
with two words models' scores of each text column as more columns).
Every family predicts the training rows out of fold (at most
``baseline_max_rows`` of them); the best one, or a weighted blend of several picked
greedily on those predictions when it does better, is fitted on the training rows. One
model that the core saves with skops so it can be exported, scored and ensembled.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from automl import hookimpl
from automl.data import require_columns
from automl.errors import DataError
from automl.features import as_number as _as_number
from automl.features import encode_segments
from automl.features import is_missing as _is_missing
from automl.features import stray_value as _mostly_numbers
from automl.search.ranges import PROBABILITY
from automl.task import BaselineResult, Metric, Split, Task, TaskData

from . import _classical
from ._classify import (
    Columns,
    binary_curves,
    confusion_plot,
    label_list,
    label_text,
    match_label,
    read_labels,
    softmax,
)

automl_api_version = "1"

#: Label values taken as the positive class when ``positive_label`` is not set.
POSITIVE_NAMES = ("1", "1.0", "true", "yes", "fraud", "fraudulent", "positive")
#: Decimals for numbers that are not whole.
DECIMALS = 2
MISSING = "missing"


class TargetPrecision(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    #: Flag as much fraud as possible while keeping at least this precision.
    target_precision: float = Field(gt=0, lt=1)


class TargetRecall(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    #: Catch at least this share of fraud with as few false alarms as possible.
    target_recall: float = Field(gt=0, lt=1)


class FraudOptions(BaseModel):
    """``task_options`` of ``fraud-detection``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    #: Columns that make up the model input, in this order; default: every column except
    #: the label column, in file order.
    columns: list[str] | None = None
    #: The label value that means fraud, as the column holds it (``1``, ``"1"`` and ``1.0``
    #: all name the label 1; ``true`` the label True of a boolean column); default: "1",
    #: "true", "fraud"... if present, otherwise the minority class.
    positive_label: str | bool | int | float | None = None
    #: How the decision threshold is tuned on validation: best F1, or a target precision
    #: (``{target_precision: 0.9}``) or recall (``{target_recall: 0.8}``).
    threshold: Literal["f1"] | TargetPrecision | TargetRecall = "f1"
    #: ``balanced``: weight the loss by class frequency; ``none``: plain cross-entropy.
    class_weight: Literal["balanced", "none"] = "balanced"
    #: 0 = no weighting, 1 = fully balanced; the search tunes it unless the recipe fixes it.
    class_weight_power: float = Field(default=0.5, ge=0, le=1)
    #: Feed numeric and categorical columns to the model as features fused with the
    #: backbone's encoding of the text columns; ``false``: write every column into the text.
    fusion: bool = True
    #: Fit the chosen baseline on the training and validation rows together: the saved
    #: model, its test figures and its share of an ensemble use every labelled row; its
    #: validation figures (and the threshold) are held out: those of the out-of-fold
    #: choice's models of the chosen family or blend, averaged (they never saw a validation
    #: row), or, where there was no choice (one family), of a first fit on the training
    #: rows. On by default: on the public tables of docs/benchmarks.md the fifth more rows
    #: raise test PR-AUC by about 0.01-0.03.
    refit_baseline: bool = True
    #: The baseline trains on at most this many training rows (a sample stratified by
    #: label), and under ``search.timeout`` on no more than it can fit in its share of the
    #: budget, so that it stays a small part of the run on big tables.
    baseline_max_rows: int = Field(default=30_000, ge=100)


@dataclass(frozen=True)
class Column:
    """How one input column is written: ``number`` (decimals), ``category`` or ``text``."""

    name: str
    kind: Literal["number", "category", "text"]
    decimals: int = 0


#: The baseline's synthetic column: the text columns joined into one document. The saved
#: model names its parts (``drop`` entries named ``JOINED_PART:<column>``), so scoring a
#: file rebuilds it from the model alone.
JOINED = "automl:joined-text"
JOINED_PART = "joined-part"


def cell_text(value: Any) -> str:
    """A category or text cell as one line of text; an empty cell (None, NaN, ``pd.NA``,
    pandas 3's missing string) is ``"missing"``, so levels never mix strings and floats."""
    if _is_missing(value):
        return MISSING
    if isinstance(value, bool | np.bool_):
        return str(bool(value)).lower()
    return " ".join(str(value).split())


def _kind(series: Any) -> tuple[str, int]:
    """``(kind, decimals)`` of a column. A float column keeps two decimals even where its
    values happen to be whole (``100.00`` in a CSV reads the same in a one-row prediction
    file), unless it is an integer column that empty cells turned into floats."""
    values = series.tolist()
    present = [v for v in values if not _is_missing(v)]
    numbers = [_as_number(v) for v in present]
    if present and all(n is not None for n in numbers):
        integral = all(float(n).is_integer() for n in numbers)  # type: ignore[arg-type]
        if series.dtype.kind == "f":
            whole = integral and len(present) < len(values)
        else:
            whole = series.dtype.kind in "iub" or integral
        return "number", 0 if whole else DECIMALS
    words = [len(str(v).split()) for v in present]
    distinct = len({str(v) for v in present})
    if words and (np.mean(words) > 2 or distinct > max(50, 0.5 * len(present))):
        return "text", 0
    return "category", 0


def format_number(value: float, decimals: int) -> str:
    """A number as the model sees it: fixed decimals, never scientific notation."""
    if decimals == 0 and float(value).is_integer():
        return str(int(value))
    return f"{value:.{max(decimals, DECIMALS)}f}"


def serialise(frame: Any, columns: list[Column], *, file: str) -> list[list[str]]:
    """One ``column: value`` segment per column per row; numbers are checked and formatted."""
    parts: list[list[str]] = [[] for _ in range(len(frame))]
    for col in columns:
        for row, value in enumerate(frame[col.name].tolist()):
            if col.kind == "number" and not _is_missing(value):
                number = _as_number(value)
                if number is None:
                    raise DataError(
                        f"row {row + 1}: column '{col.name}' holds {str(value)[:40]!r}, expected a number "
                        "(the column is numeric in the training data)",
                        file=file,
                    )
                text = format_number(number, col.decimals)
            else:
                text = cell_text(value)
            parts[row].append(f"{col.name}: {text}")
    return parts


def tune_threshold(scores: np.ndarray, labels: np.ndarray, goal: Any) -> dict[str, Any]:
    """The decision threshold (flag when ``score >= threshold``) that meets *goal*."""
    from sklearn.metrics import precision_recall_curve

    if labels.min(initial=0) == labels.max(initial=0):
        return {"threshold": 0.5, "goal": "default", "met": False}
    precision, recall, thresholds = precision_recall_curve(labels, scores)
    precision, recall = precision[:-1], recall[:-1]  # the last point has no threshold
    if isinstance(goal, TargetPrecision):
        ok = np.flatnonzero(precision >= goal.target_precision)
        i = int(ok[np.argmax(recall[ok])]) if len(ok) else int(np.argmax(precision))
        name, met = f"precision>={goal.target_precision:g}", bool(len(ok))
    elif isinstance(goal, TargetRecall):
        ok = np.flatnonzero(recall >= goal.target_recall)
        i = int(ok[np.argmax(precision[ok])]) if len(ok) else 0
        name, met = f"recall>={goal.target_recall:g}", bool(len(ok))
    else:
        f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0)
        i = int(np.argmax(f1))
        name, met = "f1", True
    return {"threshold": float(thresholds[i]), "goal": name, "met": met}


def binary_metrics(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, float]:
    from sklearn.metrics import (
        average_precision_score,
        f1_score,
        precision_score,
        recall_score,
        roc_auc_score,
    )

    flagged = (scores >= threshold).astype(int)
    p = np.clip(scores, 1e-7, 1 - 1e-7)
    both = labels.min(initial=0) != labels.max(initial=0)
    return {
        "pr_auc": float(average_precision_score(labels, scores)) if both else float("nan"),
        "roc_auc": float(roc_auc_score(labels, scores)) if both else float("nan"),
        "f1": float(f1_score(labels, flagged, zero_division=0)),
        "precision": float(precision_score(labels, flagged, zero_division=0)),
        "recall": float(recall_score(labels, flagged, zero_division=0)),
        "log_loss": float(-np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p))),
    }


class FraudDetection(Columns, Task):
    name = "fraud-detection"
    description = "imbalanced binary classification of table rows (numbers, categories, free text)"
    head = "sequence-classification"
    metrics = (
        Metric("pr_auc", "maximize", "average precision of the fraud score"),
        Metric("roc_auc", "maximize", "ROC AUC of the fraud score"),
        Metric("f1", "maximize", "F1 of the fraud class at the tuned threshold"),
        Metric("precision", "maximize", "precision of the fraud class at the tuned threshold"),
        Metric("recall", "maximize", "recall of the fraud class at the tuned threshold"),
        Metric("log_loss", "minimize", "cross-entropy of the fraud probability"),
    )
    default_metric = "pr_auc"
    Options = FraudOptions
    extra_hyperparameters = {
        "class_weight_power": "positive-class loss weight = (negatives/positives) ** power; 0 = unweighted"
    }
    hyperparameter_ranges = {"class_weight_power": PROBABILITY}
    #: The baseline's ``bayes-words`` family (a saved baseline holds it).
    model_types = frozenset({"automl_plugins._naive_bayes.NaiveBayesLogistic"})

    def __init__(self, options: BaseModel | None = None, data: Any = None) -> None:
        super().__init__(options, data)
        #: Column layout, set from the training data.
        self.schema: list[Column] | None = None
        #: ``[negative, positive]`` loss weights before the power, set by :meth:`prepare`.
        self.ratio = 1.0
        self._file = ""
        #: The input columns of the training data, from an export's calibration (:meth:`restore`).
        self._trained: list[str] = []

    @property
    def opts(self) -> FraudOptions:
        return self.options  # type: ignore[return-value]

    # ------------------------------------------------------------------ data

    def label_names(self, train, *, file):  # type: ignore[no-untyped-def]
        column = self.label_column
        require_columns(train, [column], file=file, field="data.label_column")
        names = label_list(train[column].tolist(), file=file, column=column)
        if len(names) > 2:
            raise DataError(
                f"column '{column}' has {len(names)} classes ({', '.join(names[:6])}); fraud-detection "
                "needs exactly two (use text-classification for more)",
                file=file,
                field="data.label_column",
            )
        given = self.opts.positive_label
        positive = match_label(given, names)
        if given is not None and positive is None:
            raise DataError(
                f"task_options.positive_label {given!r} is not a value of column '{column}'; "
                f"the column holds: {', '.join(names)}",
                file=file,
                field="task_options.positive_label",
            )
        if positive is None:
            named = [n for n in names if n.strip().lower() in POSITIVE_NAMES]
            if named:
                positive = named[0]
            else:
                counts = train[column].map(label_text).value_counts()
                positive = min(names, key=lambda n: (int(counts.get(n, 0)), n))
        self.schema = self._schema(train, file=file)
        return [n for n in names if n != positive] + [positive]

    def _schema(self, frame: Any, *, file: str) -> list[Column]:
        names = self.opts.columns or [c for c in frame.columns if c != self.label_column]
        require_columns(frame, list(names), file=file, field="task_options.columns")
        if self.label_column in names:
            raise DataError(
                f"task_options.columns includes the label column '{self.label_column}'",
                file=file,
                field="task_options.columns",
            )
        if not names:
            raise DataError("no input columns besides the label column", file=file, field="task_options.columns")
        schema = []
        for name in names:
            values = frame[name].tolist()
            bad = _mostly_numbers(values)
            if bad is not None:
                raise DataError(
                    f"row {bad[0] + 1}: column '{name}' holds {str(bad[1])[:40]!r} among numbers; "
                    "expected a number (or leave the cell empty)",
                    file=file,
                )
            kind, decimals = _kind(frame[name])
            schema.append(Column(str(name), kind, decimals))  # type: ignore[arg-type]
        return schema

    def text_schema(self, schema: list[Column]) -> list[Column]:
        """The columns written into the text: with fusion the free-text ones (every column
        when there is none), without it all of them."""
        if not self.opts.fusion:
            return schema
        if self.features is not None:  # fitted (or exported): everything it does not take
            text = [c for c in schema if c.name not in self.features.columns]
        else:
            text = [c for c in schema if c.kind == "text"]
        return text or schema

    def feature_columns(self) -> list[str]:
        if not self.opts.fusion or self.schema is None:
            return []
        if not any(c.kind == "text" for c in self.schema):
            return []  # no free text: the whole row goes into the text, as without fusion
        return [c.name for c in self.schema if c.kind != "text"]

    def read(self, frame, *, split, file, label_names):  # type: ignore[no-untyped-def]
        self._file = file
        field = "data" if split == "predict" else "task_options.columns"
        schema = self.schema
        if schema is None:
            # A model exported before its column kinds were saved infers them from the rows
            # it is given (its trained columns, when it names them). Rows with the same
            # columns as the last ones read keep those kinds: an explanation scores edited
            # copies of a row (words deleted), whose kinds must not drift.
            names = list(self._trained) if self._trained else [str(c) for c in frame.columns if c != self.label_column]
            require_columns(frame, names, file=file, field=field)
            last = getattr(self, "_read_schema", None)
            schema = last if last is not None and [c.name for c in last] == names else self._schema(frame[names], file=file)
        self._read_schema = schema
        # Matched by name: a missing column is named; extra columns and their order do not matter.
        require_columns(frame, [c.name for c in schema], file=file, field=field)
        segments = serialise(frame, self.text_schema(schema), file=file)
        labels = read_labels(frame, split, self.label_column, label_names, file=file)
        return Split(inputs=[" | ".join(s) for s in segments], labels=labels, frame=frame)

    def stratify(self, split: Split) -> Any:
        return split.labels

    # ------------------------------------------------------------------ explanations

    def explain_columns(self):  # type: ignore[no-untyped-def]
        """Every input column: free text by its words, numbers and categories as values."""
        schema = self.schema if self.schema is not None else getattr(self, "_read_schema", None)
        if schema is None:
            return super().explain_columns()
        return [(c.name, "text" if c.kind == "text" else "value") for c in schema]

    def text_segments(self, split, index):  # type: ignore[no-untyped-def]
        """The ``column: value`` segments of the text (the value part of each)."""
        schema = self.schema if self.schema is not None else getattr(self, "_read_schema", None)
        if schema is None:
            schema = self._schema(split.frame, file=self._file)
        text, out, position = split.inputs[index], [], 0
        for col in self.text_schema(schema):
            head = f"{col.name}: "
            start = text.find(head, position)
            if start < 0:
                break
            lo = start + len(head)
            hi = text.find(" | ", lo)
            hi = len(text) if hi < 0 else hi
            out.append((col.name, lo, hi))
            position = hi
        return out

    def encode(self, split, tokenizer, max_length):  # type: ignore[no-untyped-def]
        schema = self.schema if self.schema is not None else self._schema(split.frame, file=self._file)
        segments = serialise(split.frame, self.text_schema(schema), file=self._file)
        out: dict[str, list[Any]] = {"input_ids": encode_segments(segments, tokenizer, max_length)}
        if split.labels is not None:
            out["labels"] = list(split.labels)
        return out

    # ------------------------------------------------------------------ training

    def default_space(self):  # type: ignore[no-untyped-def]
        from automl.fusion import fusion_space
        from automl.recipe import ParamSpec

        space = super().default_space()
        if self.opts.fusion:
            space.update(fusion_space())
        if self.opts.class_weight == "balanced":
            space["class_weight_power"] = ParamSpec(low=0.0, high=1.0)
        return space

    def prepare(self, data: TaskData) -> None:
        labels = np.asarray(data.train.labels)
        positives = int((labels == 1).sum())
        self.ratio = (len(labels) - positives) / max(positives, 1)

    def class_weights(self, params: dict[str, Any]) -> list[float]:
        if self.opts.class_weight == "none":
            return [1.0, 1.0]
        power = float(params.get("class_weight_power", self.opts.class_weight_power))
        return [1.0, float(self.ratio**power)]

    def loss(self, logits, labels, params):  # type: ignore[no-untyped-def]
        import torch

        weights = self.class_weights(params)
        if weights == [1.0, 1.0]:
            return None
        weight = torch.tensor(weights, dtype=torch.float32, device=logits.device)
        return torch.nn.functional.cross_entropy(logits.float(), labels.view(-1), weight=weight)

    def example_losses(self, logits, labels, params):  # type: ignore[no-untyped-def]
        # Each row's cross-entropy times its class's weight, not normalised over the batch.
        import torch

        weight = torch.tensor(self.class_weights(params), dtype=torch.float32, device=logits.device)
        target = labels.view(-1)
        return torch.nn.functional.cross_entropy(logits.float(), target, reduction="none") * weight[target]

    # ------------------------------------------------------------------ results

    @staticmethod
    def scores(outputs: Any) -> np.ndarray:
        return softmax(np.asarray(outputs, dtype=np.float64))[:, 1]

    def calibrate(self, outputs, split, encoded):  # type: ignore[no-untyped-def]
        result = tune_threshold(self.scores(outputs), np.asarray(encoded["labels"]), self.opts.threshold)
        if self.labels:
            result["positive_label"] = self.labels[-1]
        if self.schema is not None:
            result["columns"] = [c.name for c in self.schema]
            result["column_kinds"] = [f"{c.kind}:{c.decimals}" if c.kind == "number" else c.kind for c in self.schema]
        return result

    def restore(self, calibration: dict[str, Any]) -> None:
        columns = [str(c) for c in calibration.get("columns") or []]
        kinds = calibration.get("column_kinds") or []
        if columns and len(kinds) == len(columns):
            schema = []
            for name, kind in zip(columns, kinds, strict=True):
                base, _, decimals = str(kind).partition(":")
                schema.append(Column(name, base, int(decimals or 0)))  # type: ignore[arg-type]
            self.schema = schema
        self._trained = columns

    def compute_metrics(self, outputs, split, encoded, calibration):  # type: ignore[no-untyped-def]
        if "threshold" not in calibration:
            calibration = self.calibrate(outputs, split, encoded)
        return binary_metrics(self.scores(outputs), np.asarray(encoded["labels"]), float(calibration["threshold"]))

    def predict(self, outputs, split, encoded, calibration):  # type: ignore[no-untyped-def]
        threshold = float(calibration.get("threshold", 0.5))
        names = list(self.labels) if self.labels else ["0", "1"]
        rows = []
        for score in self.scores(outputs):
            flagged = bool(score >= threshold)
            rows.append({"prediction": names[1] if flagged else names[0], "score": float(score), "is_fraud": flagged})
        return rows

    def plots(self, outputs, split, encoded, calibration):  # type: ignore[no-untyped-def]
        scores = self.scores(outputs)
        labels = np.asarray(encoded["labels"])
        threshold = float(calibration.get("threshold", 0.5))
        names = list(self.labels) if self.labels else ["0", "1"]
        figs = [(f"Confusion matrix at threshold {threshold:.3f}",
                 confusion_plot(labels, (scores >= threshold).astype(int), names))]
        if labels.min(initial=0) != labels.max(initial=0):
            figs = binary_curves(labels, scores, threshold) + figs
        return figs

    # ------------------------------------------------------------------ baseline

    def baseline(self, data: TaskData, seed: int) -> BaselineResult | None:
        try:
            return self._baseline(data, seed)
        finally:
            _end_processes()

    def _baseline(self, data: TaskData, seed: int) -> BaselineResult | None:
        from sklearn.compose import ColumnTransformer
        from sklearn.decomposition import TruncatedSVD
        from sklearn.ensemble import (
            ExtraTreesClassifier,
            HistGradientBoostingClassifier,
            RandomForestClassifier,
            VotingClassifier,
        )
        from sklearn.metrics import average_precision_score
        from sklearn.model_selection import StratifiedKFold
        from sklearn.pipeline import Pipeline, make_pipeline
        from sklearn.preprocessing import OrdinalEncoder
        from threadpoolctl import threadpool_limits

        if self.schema is None or data.train.frame is None:
            return None
        start = time.perf_counter()
        to_deadline = None if self.baseline_deadline is None else round(self.baseline_deadline - time.time(), 1)
        # LightGBM's search may take BASELINE_SEARCH_SHARE of the core's budget (itself a
        # share of search.timeout); its first configuration always runs.
        budget = self.baseline_budget
        deadline = start + BASELINE_SEARCH_SHARE * budget if budget is not None else None
        numbers = [c.name for c in self.schema if c.kind == "number"]
        categories = [c.name for c in self.schema if c.kind == "category"]
        max_rows = self.baseline_rows()
        train, y = _row_sample(data.train.frame, np.asarray(data.train.labels), max_rows, seed)
        parts: list[tuple[str, Any, Any]] = []
        if numbers:
            parts.append(("number", "passthrough", numbers))
        if categories:
            encoder = OrdinalEncoder(
                handle_unknown="use_encoded_value", unknown_value=np.nan, encoded_missing_value=np.nan, max_categories=250
            )
            parts.append(("category", encoder, categories))
        texts = []
        x = baseline_frame(train, self.schema)
        # Each text column's own features: for LightGBM, which splits sparse columns, its
        # word 1-2-grams (present or not); for the other families a few TF-IDF/SVD
        # components (docs/benchmarks.md section 13 measures the difference).
        ngram_parts = list(parts)
        for name in [c.name for c in self.schema if c.kind == "text"]:
            if tfidf_terms(x[name]) > 2:
                texts.append(name)
                components = svd_components(x[name])
                if components:
                    svd = TruncatedSVD(components, random_state=seed)
                    parts.append((step_name("text", name), make_pipeline(_tfidf(), svd), name))
                if has_ngrams(x[name]):
                    ngram_parts.append((step_name("text", name), _ngrams(), name))
        # A category column of lists ("DTAP;HEP;IPV"): its codes stay (one per list, the
        # rarer lists pooled), and LightGBM also reads which items each list holds.
        ngram_parts += [(step_name("category", name, ITEMS), _items(), name) for name in categories if listed_items(x[name])]
        category_indices = list(range(len(numbers), len(numbers) + len(categories)))

        def ngram_columns() -> Any:  # sparse whenever a part is (a table without text: dense)
            return ColumnTransformer(ngram_parts, sparse_threshold=1.0)

        phases = {"prepare": time.perf_counter() - start}
        cores: dict[str, int] = {}  # the cores each step ran on (Task.baseline_cores)
        trees: Any = Pipeline([
            ("columns", ColumnTransformer(parts)),
            ("model", HistGradientBoostingClassifier(
                max_iter=200, learning_rate=0.08, random_state=seed, categorical_features=category_indices or None,
            )),
        ])
        positives, rows = int(np.sum(y == 1)), len(y)
        candidates: dict[str, Any] = {"trees": trees}
        searched: list[dict[str, Any]] = []
        catboost_trees, took_catboost = None, 0.0  # CatBoost's probe: its trees, and what its fit took
        if positives >= MIN_POSITIVES_TO_TUNE and len(y) - positives >= MIN_POSITIVES_TO_TUNE:
            with threadpool_limits(1):
                searched, first = _search_lightgbm(ngram_columns(), category_indices, x, y, seed, deadline)
            for i, trial in enumerate(searched[:LIGHTGBM_KEEP]):
                trees_ = max(10, round(trial["trees"] * 1.1))  # 10% more rows to fit on than in the search
                candidates["lightgbm" if i == 0 else f"lightgbm-{i + 1}"] = Pipeline([
                    ("columns", ngram_columns()),
                    ("model", _classical.lightgbm(_classical.config_of(trial), y, category_indices, seed, trees_)),
                ])
            # Other kinds of trees for the blend (AutoGluon's tables use both): bagged deep
            # trees averaged, where boosting fits residuals; randomised splits.
            for key, forest in (("random-forest", RandomForestClassifier), ("extra-trees", ExtraTreesClassifier)):
                candidates[key] = Pipeline([
                    ("columns", ColumnTransformer(parts)),
                    ("model", forest(n_estimators=200, min_samples_leaf=3, max_features="sqrt", n_jobs=1, random_state=seed)),
                ])
            if _classical.catboost_available():
                # CatBoost (automl[tables]): its trees by early stopping on the search's first
                # fold; a family of the choice only if its fits (one per fold of the choice,
                # the fit and the refit) take at most half of what is left of the budget.
                with threadpool_limits(1):
                    trees_, took_catboost = _classical.catboost_trees(_fold(ColumnTransformer(parts), x, y, *first), seed)
                catboost_trees = round(trees_ * 1.1)
                left = float("inf") if budget is None else start + budget - time.perf_counter()
                if took_catboost * (_choice_folds(len(y), positives) + 2) <= 0.5 * left:
                    candidates["catboost"] = Pipeline([
                        ("columns", ColumnTransformer(parts)),
                        ("model", _classical.catboost(y, seed, catboost_trees)),
                    ])
        phases["lightgbm"] = time.perf_counter() - start - sum(phases.values())
        joined: list[str] = []
        if texts and positives >= 2:
            # TF-IDF + logistic regression on the words of all text columns as one document:
            # on report-like rows often better than any tree on its own.
            joined_parts = [(step_name(JOINED_PART, c), "drop", c) for c in texts]
            candidates["words"] = Pipeline([
                ("columns", ColumnTransformer(
                    joined_parts + [("words", _word_features(), JOINED), ("chars", _char_features(), JOINED)]
                )),
                ("model", _words_model(seed)),
            ])
            joined = texts
            x[JOINED] = join_text(x, joined)
            if has_presence_features(x[JOINED]):
                # The same document's words and characters, present or absent, weighed by
                # naive Bayes before a logistic regression (NBSVM): a second words model
                # whose errors differ from the first's (docs/benchmarks.md section 13).
                candidates["bayes-words"] = _bayes_words(texts, seed)
        # With the refit on, the validation rows join the training rows in the one fit of
        # the chosen model; the choice's fold models score them (see below).
        refit = self.opts.refit_baseline and data.validation.frame is not None
        x_val = baseline_frame(data.validation.frame, self.schema, joined=joined) if refit else None
        scores: dict[str, float] = {}
        seconds: dict[str, float] = {}
        weights: dict[str, float] = {}
        stack_note = None
        pick = "trees"
        folds = None
        if len(candidates) > 1:
            # Every family's out-of-fold predictions of the training rows (validation is not
            # used); the best one, or a weighted blend of several chosen greedily on those
            # predictions when it does better; ties keep the reference (HistGBM) trees.
            cv = StratifiedKFold(_choice_folds(len(y), positives), shuffle=True, random_state=seed)
            with threadpool_limits(1):
                jobs = cores["choice"] = self.baseline_cores()
                folds = _OutOfFold(x, y, cv, jobs, x_val)
                # The families the stacked one's cost is estimated from go first. On several
                # cores the stacked family's folds (the longest fits) then go before the
                # other families', which fill the cores around them; on one, after them, so
                # that its deadline check knows what they took.
                first = [k for k in ("words", "lightgbm") if k in candidates]
                rest = {k: m for k, m in candidates.items() if k not in first}
                folds.submit({k: candidates[k] for k in first})
                if jobs == 1:
                    folds.submit(rest)
                if "words" in candidates and searched:
                    # Stacked: LightGBM's best configuration on the raw columns with a words
                    # model's score of each text column as more columns (out of fold while it
                    # trains). Its folds nest in the choice's: per fold the words features
                    # once and STACK_FOLDS + 1 fits of each logistic regression, estimated as
                    # twice the words family's time plus LightGBM's (and CatBoost's probe, for
                    # its final CatBoost), spread over the cores (on
                    # all of VAERS the choice took 85 s with it, 56 s without, on one core).
                    # It runs only while twice that (its share of the final fits and of the
                    # scoring too) still ends by the run's deadline.
                    _, took = folds.results(first)
                    cost = (2 * took["words"] + took["lightgbm"] + took_catboost) / jobs
                    to_go = None if self.baseline_deadline is None else self.baseline_deadline - time.time()
                    if to_go is None or 2 * cost < to_go:
                        widths = {c: hashed_width(x[c]) for c in texts}
                        candidates["stack"] = _stacked(ngram_parts, widths, searched[0], y, category_indices, seed, catboost_trees)
                        folds.submit({"stack": candidates["stack"]})
                    else:
                        stack_note = f"left out: about {2 * cost:.0f} s needed, {to_go:.0f} s left before the deadline"
                if jobs > 1:
                    folds.submit(rest)
                oof, seconds = folds.results(list(candidates))
            scores = {k: float(average_precision_score(y, p)) for k, p in oof.items()}
            pick = max(scores, key=lambda k: (scores[k], k == "trees"))
            weights, blended = _classical.greedy_blend(oof, y)
            if len(weights) > 1 and blended > scores[pick]:
                scores["blend"] = blended
                pick = "blend"
                candidates["blend"] = VotingClassifier(
                    [(k, candidates[k]) for k in weights], voting="soft", weights=[weights[k] for k in weights]
                )
            phases["choice"] = time.perf_counter() - start - sum(phases.values())
        model = candidates[pick]
        if pick == "blend":
            name = "blend of " + ", ".join(f"{_family_name(k)} ×{w:.2f}" for k, w in sorted(weights.items(), key=lambda kw: -kw[1]))
        else:
            name = _family_name(pick)
        if scores:
            name += "; out-of-fold PR-AUC " + ", ".join(f"{k} {v:.3f}" for k, v in sorted(scores.items(), key=lambda kv: -kv[1]))
        refit_note, refit_rows = None, None

        def with_validation_rows() -> tuple[Any, np.ndarray]:
            """The training rows and the validation rows, the latter in the share the
            training rows were sampled in: a table capped at max_rows training rows is
            refit on max_rows * (1 + validation / training rows), all of them where nothing
            was cut. (A cap of max_rows made the refit of all VAERS rows a resample of 7,200
            of the 9,000 rows, no more rows than the fit, and no better on test: 0.8435
            against 0.8472, seed 1.)"""
            import pandas as pd

            more_x = pd.concat([x, x_val], ignore_index=True)
            more_y = np.concatenate([y, np.asarray(data.validation.labels)])
            share = len(data.validation.labels) / max(1, len(data.train.labels))
            return _row_sample(more_x, more_y, round(max_rows * (1 + share)), seed)

        # One thread: on small data OpenMP's thread start-up and spinning cost more than
        # they save, badly so next to a torch process (3 s instead of 0.2 s). A blend's
        # members in parallel where cores are idle.
        if folds is not None and x_val is not None:
            # The choice's fold models scored the validation rows: their average (weighted
            # like the blend's members) gives the validation figures and the threshold, from
            # models that never saw a validation row. The model itself is fitted once, on
            # the training and validation rows: no fit on the training rows alone to refit
            # after (on all of VAERS that fit took 39 s, and left the refit no time before
            # the deadline on seed 1).
            val = folds.on_validation(weights if pick == "blend" else {pick: 1.0})
            outputs = {"validation": np.log(np.clip(np.column_stack([1 - val, val]), 1e-12, 1.0))}
            more_x, more_y = with_validation_rows()
            with threadpool_limits(1):
                cores["fit"] = self.baseline_cores()
                model = _fit(model, more_x, more_y, cores["fit"])
            name += " (fitted on training + validation rows)"
            refit_rows = len(more_y)
            phases["fit"] = time.perf_counter() - start - sum(phases.values())
        else:
            with threadpool_limits(1):
                cores["fit"] = self.baseline_cores()
                _fit(model, x, y, cores["fit"])
            phases["fit"] = time.perf_counter() - start - sum(phases.values())
            scoring = time.perf_counter()
            outputs = {"validation": self.baseline_outputs(model, data.validation)}
            scoring = time.perf_counter() - scoring
            if refit:
                from sklearn.base import clone

                more_x, more_y = with_validation_rows()
                # The refit takes about what the fit took, per row (a quarter more kept: on all
                # of VAERS it took 55 s where the fit's pace said 48), then the test rows are
                # scored at the validation rows' pace; it is left out when that would end past
                # the run's deadline (the model fitted on the training rows stays).
                cores["refit"] = self.baseline_cores()
                cost = 1.25 * phases["fit"] * len(more_y) / max(1, len(y)) * (cores["fit"] / cores["refit"] if pick == "blend" else 1)
                if data.test is not None:
                    cost += scoring * len(data.test) / max(1, len(data.validation))
                to_go = None if self.baseline_deadline is None else self.baseline_deadline - time.time()
                if to_go is None or cost < to_go:
                    with threadpool_limits(1):
                        model = _fit(clone(model), more_x, more_y, cores["refit"])
                    name += " (refit on training + validation rows)"
                    refit_rows = len(more_y)
                else:
                    refit_note = f"not refit on training + validation rows: about {cost:.0f} s needed, {to_go:.0f} s left before the deadline"
                    name += f" ({refit_note})"
        if data.test is not None and data.test.frame is not None:
            outputs["test"] = self.baseline_outputs(model, data.test)
        val_scores, val_labels = self.scores(outputs["validation"]), np.asarray(data.validation.labels)
        threshold = tune_threshold(val_scores, val_labels, self.opts.threshold)["threshold"]
        test = None
        if "test" in outputs:
            test = binary_metrics(self.scores(outputs["test"]), np.asarray(data.test.labels), threshold)  # type: ignore[union-attr]
        phases["score"] = time.perf_counter() - start - sum(phases.values())
        extra: dict[str, Any] = {"threshold": threshold, "family": pick, "rows": rows, "budget_seconds": budget,
                                 "seconds_to_deadline": to_deadline,
                                 "phase_seconds": {k: round(v, 2) for k, v in phases.items()}}
        if scores:
            extra["candidates"] = scores
            extra["oof_seconds"] = {k: round(v, 2) for k, v in seconds.items()}
        if cores:
            extra["cores"] = cores
        if stack_note:
            extra["stack"] = stack_note
        if refit_note:
            extra["refit"] = refit_note
        if refit_rows:
            extra["refit_rows"] = refit_rows
        if pick == "blend":
            extra["weights"] = weights
        if searched:
            extra["lightgbm_trials"] = searched
        return BaselineResult(
            name=name,
            validation=binary_metrics(val_scores, val_labels, threshold),
            test=test,
            seconds=time.perf_counter() - start,
            extra=extra,
            model=model,
            outputs=outputs,
            fitted_on_validation=refit_rows is not None,
        )

    def baseline_rows(self) -> int:
        """How many training rows the baseline fits on: ``baseline_max_rows``, and under a
        time budget no more than :data:`BASELINE_ROWS_PER_SECOND` per second of it."""
        if self.baseline_budget is None:
            return self.opts.baseline_max_rows
        by_time = max(MIN_BASELINE_ROWS, int(BASELINE_ROWS_PER_SECOND * self.baseline_budget))
        return min(self.opts.baseline_max_rows, by_time)

    def baseline_outputs(self, model: Any, split: Split) -> np.ndarray:
        """Log-probabilities ``[n, 2]`` of the saved baseline (softmax gives its probabilities)."""
        from threadpoolctl import threadpool_limits

        schema: dict[str, Column] = {}
        joined: list[str] = []
        for pipeline in [e for _, e in model.estimators] if hasattr(model, "estimators") else [model]:
            for name, _, columns in pipeline.named_steps["columns"].transformers:
                kind = name.split(":")[0]
                for c in [columns] if isinstance(columns, str) else columns:
                    if c == JOINED:
                        continue  # built here from the JOINED_PART columns
                    if kind == JOINED_PART:
                        joined.append(c)
                    schema[c] = Column(c, "text" if kind == JOINED_PART else kind)  # type: ignore[arg-type]
        frame = split.frame
        assert frame is not None
        require_columns(frame, list(schema), file=self._file or "<input>", field="task_options.columns")
        x = baseline_frame(frame, list(schema.values()), file=self._file or "<input>", joined=list(dict.fromkeys(joined)))
        with threadpool_limits(1):
            proba = model.predict_proba(x)
        return np.log(np.clip(proba, 1e-12, 1.0))


#: What each family the baseline can pick is called on the leaderboard.
FAMILY_NAMES = {
    "trees": "gradient boosting on the raw columns",
    "lightgbm": "gradient boosting (LightGBM) on the raw columns",
    "random-forest": "random forest on the raw columns",
    "extra-trees": "extremely randomised trees on the raw columns",
    "catboost": "gradient boosting (CatBoost) on the raw columns",
    "words": "TF-IDF + logistic regression on the words and characters of the text columns",
    "bayes-words": "naive Bayes-weighted logistic regression (NBSVM) on the words and characters of the text columns",
    "stack": "LightGBM (and CatBoost) on the raw columns and each text column's words models' scores, stacked",
}
#: Share of the baseline's time budget (``Task.baseline_budget``) that LightGBM's search
#: may take; the out-of-fold choice and the final fit follow.
BASELINE_SEARCH_SHARE = 0.4
#: At most this many LightGBM configurations are tried, and the best this many become
#: families of their own for the choice and the blend.
LIGHTGBM_MAX_TRIALS = 60
LIGHTGBM_KEEP = 2
#: Fewer positives than this (in training or in the early-stopping fold) and LightGBM is
#: not tried: its early stopping and choice of configuration would be noise.
MIN_POSITIVES_TO_TUNE = 10
#: Training rows the baseline takes per second of its budget (choosing among the families
#: and fitting cost about 5 ms a row on a shared core, a text column included; scoring the
#: validation and test rows comes on top), and never fewer than this many.
BASELINE_ROWS_PER_SECOND = 150
MIN_BASELINE_ROWS = 2_000
#: Above this many training rows the out-of-fold choice uses 3 folds instead of 5.
LARGE_TABLE_ROWS = 5_000


def _family_name(key: str) -> str:
    """``lightgbm-2`` is LightGBM's second-best configuration."""
    base, _, rank = key.partition("-") if key.startswith("lightgbm-") else (key, "", "")
    return FAMILY_NAMES[base] + (f" (configuration {rank})" if rank else "")


def _row_sample(frame: Any, y: np.ndarray, max_rows: int, seed: int) -> tuple[Any, np.ndarray]:
    """At most *max_rows* rows of *frame* (and their labels), stratified by label: the
    baseline's fit time stays bounded on big tables."""
    if len(y) <= max_rows:
        return frame, y
    from sklearn.model_selection import train_test_split

    keep, _ = train_test_split(np.arange(len(y)), train_size=max_rows, stratify=y, random_state=seed)
    keep = np.sort(keep)
    return frame.iloc[keep].reset_index(drop=True), y[keep]


def _choice_folds(rows: int, positives: int) -> int:
    """Folds of the out-of-fold choice among the families."""
    return min(5 if rows <= LARGE_TABLE_ROWS else 3, positives)


def _search_lightgbm(
    columns: Any, categories: list[int], x: Any, y: np.ndarray, seed: int, deadline: float | None
) -> tuple[list[dict[str, Any]], tuple[np.ndarray, np.ndarray]]:
    """LightGBM's configurations searched (:func:`automl_plugins._classical.search_lightgbm`),
    best first: on 3 folds of the training rows (on a few thousand rows one held-out fifth
    is too few positives to rank dozens of configurations), or on big tables on 80% of them
    with early stopping on the other 20%; and the first fold's ``(fit, stop)`` row indices,
    for the other families' early stopping."""
    from sklearn.base import clone
    from sklearn.model_selection import StratifiedKFold, train_test_split

    if len(y) <= LARGE_TABLE_ROWS:
        splits = list(StratifiedKFold(3, shuffle=True, random_state=seed).split(np.zeros(len(y)), y))
    else:
        splits = [train_test_split(np.arange(len(y)), test_size=0.2, stratify=y, random_state=seed)]
    folds = [_fold(clone(columns), x, y, fit, stop) for fit, stop in splits]
    searched = _classical.search_lightgbm(folds, categories, seed, deadline=deadline, max_trials=lightgbm_trials(len(y)))
    return searched, splits[0]


def _fold(columns: Any, x: Any, y: np.ndarray, fit: np.ndarray, stop: np.ndarray) -> tuple[Any, np.ndarray, Any, np.ndarray]:
    """``(x_fit, y_fit, x_stop, y_stop)``: the rows *fit* and *stop* of *x*, through *columns*
    fitted on the *fit* rows."""
    columns.fit(x.iloc[fit])
    return columns.transform(x.iloc[fit]), y[fit], columns.transform(x.iloc[stop]), y[stop]


def lightgbm_trials(rows: int) -> int:
    """How many LightGBM configurations a table of *rows* training rows is searched with:
    :data:`LIGHTGBM_MAX_TRIALS`, fewer below 1,200 rows (one per 20 rows, at least 8): the
    held-out predictions of a few hundred rows cannot rank dozens of configurations, and
    the best of many would be the luckiest."""
    return min(LIGHTGBM_MAX_TRIALS, max(8, rows // 20))


class _OutOfFold:
    """Each candidate's out-of-fold probability of the positive class on the training rows,
    and the seconds its fits and predictions took (summed over the folds: what one core
    spends). With *x_val*, each fold's model also scores the validation rows: the average
    over the folds is the candidate's validation score (:meth:`on_validation`), from models
    that never saw a validation row. With *jobs* > 1 the (candidate, fold) fits run in that many processes of one
    thread each (joblib's reusable loky executor), as they are submitted: the stacked
    family's folds, submitted once the words and LightGBM families' times are known, run
    beside the other families' instead of after them. With one job each fit runs when
    submitted, here."""

    def __init__(self, x: Any, y: np.ndarray, cv: Any, jobs: int, x_val: Any = None) -> None:
        self.x, self.y, self.jobs, self.x_val = x, y, jobs, x_val
        self.folds = list(cv.split(np.zeros(len(y)), y))
        self.done: dict[str, list[Any]] = {}
        self.validation: dict[str, np.ndarray] = {}
        self.executor: Any = None
        if jobs > 1:
            from joblib.executor import get_memmapping_executor

            # joblib's own reusable executor, which its Parallel (a blend's fit) reuses.
            self.executor = get_memmapping_executor(jobs)

    def submit(self, candidates: dict[str, Any]) -> None:
        for key, model in candidates.items():
            if self.executor is not None:
                self.done[key] = [self.executor.submit(_fold_proba, model, self.x, self.y, fit, held, self.x_val)
                                  for fit, held in self.folds]
            else:
                self.done[key] = [_fold_proba(model, self.x, self.y, fit, held, self.x_val) for fit, held in self.folds]

    def results(self, keys: list[str]) -> tuple[dict[str, np.ndarray], dict[str, float]]:
        """The out-of-fold probabilities and seconds of *keys*, waiting for them."""
        oof, seconds = {}, {}
        for key in keys:
            oof[key], seconds[key] = np.zeros(len(self.y)), 0.0
            on_validation = []
            for (_, held), task in zip(self.folds, self.done[key], strict=True):
                proba, validation, took = task.result() if self.executor is not None else task
                oof[key][held] = proba
                seconds[key] += took
                on_validation.append(validation)
            if self.x_val is not None:
                self.validation[key] = np.mean(on_validation, axis=0)
        return oof, seconds

    def on_validation(self, weights: dict[str, float]) -> np.ndarray:
        """The validation rows' probability of the positive class from the folds' models of
        the candidates in *weights*, averaged over the folds and weighted (a blend averages
        its members' probabilities with those weights, as its soft vote does)."""
        total = sum(weights.values())
        return sum(w * self.validation[k] for k, w in weights.items()) / total


def _end_processes() -> None:
    """End the processes the baseline's steps ran in (joblib's reusable loky executor, which
    would otherwise wait idle for minutes in a process that goes on: a library caller's, a
    test session's). Where none was started this starts none."""
    from joblib.externals.loky import get_reusable_executor

    get_reusable_executor().shutdown(wait=True)


def _fold_proba(
    model: Any, x: Any, y: np.ndarray, fit: np.ndarray, held: np.ndarray, x_val: Any = None
) -> tuple[np.ndarray, np.ndarray | None, float]:
    """A clone of *model* fitted on the rows *fit* (one thread): its probability of the
    positive class on the rows *held* and on the validation rows *x_val* (None: not
    asked), and the seconds that took."""
    from sklearn.base import clone
    from threadpoolctl import threadpool_limits

    started = time.perf_counter()
    with threadpool_limits(1):
        fitted = clone(model).fit(x.iloc[fit], y[fit])
        proba = fitted.predict_proba(x.iloc[held])[:, 1]
        on_validation = None if x_val is None else fitted.predict_proba(x_val)[:, 1]
    return proba, on_validation, time.perf_counter() - started


def _fit(model: Any, x: Any, y: np.ndarray, jobs: int) -> Any:
    """*model* fitted; a blend's members (or the stacked family's words models) in *jobs*
    processes, then set back to one, so predicting starts no processes."""
    from sklearn.ensemble import StackingClassifier, VotingClassifier

    inner = model.named_steps.get("model") if hasattr(model, "named_steps") else model
    spread = isinstance(inner, VotingClassifier | StackingClassifier) and jobs > 1
    if spread:
        inner.set_params(n_jobs=jobs)
    try:
        return _single_references(model.fit(x, y))
    finally:
        if spread:
            inner.set_params(n_jobs=None)


def _tfidf(max_features: int = 2_000) -> Any:
    """Word 1-2-grams, the most frequent *max_features* (the trees other than LightGBM see
    16 SVD components of them, which a few thousand terms give as well as more: a smaller
    model to save)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, max_features=max_features)


#: Word 1-2-grams of each text column that LightGBM sees: the most frequent this many.
NGRAMS_PER_COLUMN = 4_000


def _ngrams() -> Any:
    """Word 1-2-grams in at least 3 rows, the :data:`NGRAMS_PER_COLUMN` most frequent, as
    present/absent (sparse): what AutoGluon's trees see of a text column too. LightGBM
    splits on single words ("hospitalized", "died"), which 16 SVD components blur."""
    from sklearn.feature_extraction.text import CountVectorizer

    return CountVectorizer(ngram_range=(1, 2), min_df=3, max_features=NGRAMS_PER_COLUMN, binary=True, dtype=np.float32)


#: The step of a category column's items (:func:`listed_items`): ``category:<column>:items``.
ITEMS = "items"
#: What separates the items of a listed category value, and what an item is: words, with
#: single spaces inside ("New York").
ITEM_SEPARATORS = ";|,"
ITEM_PATTERN = rf"[^{ITEM_SEPARATORS}\s]+(?: [^{ITEM_SEPARATORS}\s]+)*"


def _items() -> Any:
    """A listed category column's items (:func:`listed_items`) in at least 3 rows, present or
    absent (sparse): the codes of 779 lists of vaccines tell LightGBM little about any one
    vaccine, pooled beyond the 250 most frequent lists; the items tell it which the row holds."""
    from sklearn.feature_extraction.text import CountVectorizer

    return CountVectorizer(token_pattern=ITEM_PATTERN, min_df=3, binary=True, dtype=np.float32)


def listed_items(values: Any) -> list[str]:
    """The items of a category column of lists that are in at least 3 of every other row (the
    search's folds fit on part of the rows), sorted; none (not a column of lists) unless at
    least 5% of its present values hold one of :data:`ITEM_SEPARATORS`."""
    present = [v for v in values if v != MISSING]
    listed = sum(any(sep in v for sep in ITEM_SEPARATORS) for v in present)
    if listed < max(1, 0.05 * len(present)):
        return []
    try:
        return sorted(_items().fit(values.iloc[::2]).vocabulary_)
    except ValueError:  # no item in 3 rows
        return []


def _single_references(model: Any) -> Any:
    """*model*, fitted, made quick to save: a blend without the second reference to each
    member (a VotingClassifier keeps them in ``estimators_``, what it predicts with, and in
    the ``named_estimators_`` mapping, and skops writes an object once per reference, so the
    saved blend was twice its size: 162 MB on all of VAERS, 52 s to write), and each
    n-gram vocabulary's indices as Python integers (:func:`_plain_vocabularies`)."""
    _drop_named_estimators(model)
    _plain_vocabularies(model)
    return model


def _drop_named_estimators(model: Any) -> None:
    """Drop ``named_estimators_`` from every blend within *model*: the blend itself, the
    steps of a pipeline, a stack's members and its final model (itself a blend of
    LightGBM and CatBoost where CatBoost is installed)."""
    if hasattr(model, "named_estimators_"):
        del model.named_estimators_
    inner = list(getattr(model, "estimators_", None) or [])
    inner += [step for _, step in getattr(model, "steps", [])]
    if getattr(model, "final_estimator_", None) is not None:
        inner.append(model.final_estimator_)
    for item in inner:
        _drop_named_estimators(item)


def _plain_vocabularies(model: Any, seen: set[int] | None = None) -> None:
    """Turn the NumPy integers of every fitted vectoriser's ``vocabulary_`` within *model*
    into Python integers (scikit-learn indexes with either). skops writes each NumPy
    scalar as an array file of its own and lists the archive for every one it adds: on all
    of VAERS a blend held 34,000 of them, and saving it took 37 s, 28 of them listing."""
    from sklearn.base import BaseEstimator

    seen = set() if seen is None else seen
    if id(model) in seen:
        return
    seen.add(id(model))
    if isinstance(model, list | tuple):
        for item in model:
            _plain_vocabularies(item, seen)
    elif isinstance(model, dict):
        for item in model.values():
            _plain_vocabularies(item, seen)
    elif isinstance(model, BaseEstimator):
        vocabulary = getattr(model, "vocabulary_", None)
        if isinstance(vocabulary, dict):
            model.vocabulary_ = {term: int(index) for term, index in vocabulary.items()}
        for value in vars(model).values():
            if isinstance(value, list | tuple | dict | BaseEstimator):
                _plain_vocabularies(value, seen)


def _words_model(seed: int) -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=4.0, max_iter=2000, random_state=seed)


def _bayes_model() -> Any:
    """Complement naive Bayes (Rennie et al. 2003), the stacked family's second words model of
    each text column: word counts weighed on their own, where logistic regression weighs
    them together, so its score tells the trees something the first one does not, for a
    fit of a fraction of a second (docs/benchmarks.md section 13 measures it)."""
    from sklearn.naive_bayes import ComplementNB

    return ComplementNB(alpha=0.5)


def _bayes_words(texts: list[str], seed: int) -> Any:
    """The ``bayes-words`` family: the *texts* columns joined into one document
    (:data:`JOINED`, which :func:`baseline_frame` builds), its words and characters present
    or absent, NBSVM with logistic regression
    (:class:`~automl_plugins._naive_bayes.NaiveBayesLogistic`, C = 1 as in Wang and
    Manning's logistic variant)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    from ._naive_bayes import NaiveBayesLogistic

    parts = [(step_name(JOINED_PART, c), "drop", c) for c in texts]
    return Pipeline([
        ("columns", ColumnTransformer(parts + [("words", _present_words(), JOINED), ("chars", _present_chars(), JOINED)])),
        ("model", NaiveBayesLogistic(C=1.0, random_state=seed)),
    ])


#: The rows a word 1-2-gram, and a character 2-5-gram, must be in for the ``bayes-words``
#: family to read it.
PRESENT_WORDS_MIN_ROWS = 3
PRESENT_CHARS_MIN_ROWS = 5


def _present_words() -> Any:
    """Word 1-2-grams in at least :data:`PRESENT_WORDS_MIN_ROWS` rows, present or absent, for
    the ``bayes-words`` family. A vocabulary rather than hashing: naive Bayes ratios of
    hashed features mix the words that share a bucket (on all of VAERS the hashed family
    added half what this one adds to the blend, docs/benchmarks.md section 13)."""
    from sklearn.feature_extraction.text import CountVectorizer

    return CountVectorizer(ngram_range=(1, 2), min_df=PRESENT_WORDS_MIN_ROWS, binary=True, dtype=np.float32)


def _present_chars() -> Any:
    """Character 2- to 5-grams within words in at least :data:`PRESENT_CHARS_MIN_ROWS` rows,
    present or absent, for the ``bayes-words`` family."""
    from sklearn.feature_extraction.text import CountVectorizer

    return CountVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=PRESENT_CHARS_MIN_ROWS, binary=True, dtype=np.float32)


def has_presence_features(values: Any) -> bool:
    """Whether the ``bayes-words`` family can read the joined document *values*: some word
    is in :data:`PRESENT_CHARS_MIN_ROWS` of every other row (the choice's folds fit on part
    of the rows; a vectoriser left with no term fails its fit). Such a word is a term of both
    vectorisers, its first characters one of the character n-grams; checked on words alone,
    since counting the character n-grams took 2.6 s on all of VAERS."""
    from sklearn.feature_extraction.text import CountVectorizer

    return vocabulary_size(CountVectorizer(min_df=PRESENT_CHARS_MIN_ROWS), values.iloc[::2]) > 0


#: Folds of the stacked family's own out-of-fold scores of the words models.
STACK_FOLDS = 3


def _stacked(parts: list[tuple[str, Any, Any]], texts: dict[str, int], config: dict[str, Any], y: np.ndarray,
             categories: list[int], seed: int, catboost_trees: int | None = None) -> Any:
    """The ``stack`` family: scikit-learn's StackingClassifier over one sparse matrix, the
    columns of *parts* (numbers, categories, each text column's n-grams) followed by each
    text column's hashed word and character features, *texts* mapping each column to the
    width of each of its two hashed parts (fixed, so each model selects its own by
    position; :func:`hashed_width`). Two words models per text column, logistic regression
    on both parts and complement naive Bayes on the words (:func:`_bayes_model`), score the
    training rows out of fold (:data:`STACK_FOLDS`); LightGBM at *config* trains on those
    scores and the columns of *parts*. Stacking as Shi et al. (2021) measured it on
    business tables with text: the trees read what a words model makes of each text column
    next to the other columns, instead of a fixed weight in a blend. One score per column
    rather than one of all columns joined: on all of VAERS the trees then tell the symptoms
    from the history and the lab data (test PR-AUC 0.850 against 0.831 for the joined score,
    docs/benchmarks.md section 13).

    With *catboost_trees*, the final model is LightGBM and CatBoost (that many trees) averaged,
    CatBoost on the words models' scores, the numbers and the categories (not the n-grams):
    the scores are computed once for both, and CatBoost's symmetric trees differ from
    LightGBM's where a blend gains (on all of VAERS, fitted on train.csv and scored on
    test.csv: 0.846 with CatBoost against 0.849 without, alone; blended with LightGBM
    on the raw columns, 0.863 against 0.857; CatBoost's fit took 1-3 s)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import StackingClassifier, VotingClassifier
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import Pipeline

    hashed = 2 * sum(texts.values())
    words, start = [], -hashed
    for name, width in texts.items():
        stop = start + 2 * width
        select = _columns(slice(start, stop if stop < 0 else None))
        words.append((step_name("words", name), Pipeline([("select", select), ("model", _words_model(seed))])))
        select_words = _columns(slice(start, start + width))  # the word half (never the matrix's end)
        words.append((step_name("bayes", name), Pipeline([("select", select_words), ("model", _bayes_model())])))
        start = stop
    trees = max(10, round(config["trees"] * 1.1))
    # The final model sees the words models' scores first, then the columns of *parts*.
    lightgbm = _classical.lightgbm(_classical.config_of(config), y, [i + len(words) for i in categories], seed, trees)
    final: Any = Pipeline([("select", _columns(slice(0, -hashed))), ("model", lightgbm)])
    if catboost_trees:
        table = sum(len(columns) for name, _, columns in parts if name in ("number", "category"))
        catboost = Pipeline([("select", _columns(slice(0, len(words) + table))),
                             ("model", _classical.catboost(y, seed, catboost_trees))])
        final = VotingClassifier([("lightgbm", final), ("catboost", catboost)], voting="soft")
    features = [(step_name("text", name, kind), make(width), name) for name, width in texts.items()
                for kind, make in (("words", _word_features), ("chars", _char_features))]
    return Pipeline([
        ("columns", ColumnTransformer(parts + features, sparse_threshold=1.0)),
        ("model", StackingClassifier(
            words, final_estimator=final, stack_method="predict_proba", passthrough=True,
            cv=StratifiedKFold(STACK_FOLDS, shuffle=True, random_state=seed),
        )),
    ])


def step_name(kind: str, column: str, *more: str) -> str:
    """The name of a column's step in a scikit-learn ColumnTransformer or ensemble,
    ``kind:column[:more]`` (:meth:`FraudDetection.baseline_outputs` reads the kind back):
    a double underscore in a column's name becomes ``_.``, since scikit-learn keeps ``__``
    for its nested parameters and refuses step names that hold it (``customer__note``,
    dbt's naming, failed the baseline)."""
    return ":".join([kind, column.replace("__", "_."), *more])


def tfidf_terms(values: Any) -> int:
    """How many terms a text column's TF-IDF (:func:`_tfidf`) keeps: 0 where none reaches its
    ``min_df`` (a column of identifiers, each value once) or no word is long enough to be
    a term (single letters)."""
    return vocabulary_size(_tfidf(), values)


def vocabulary_size(vectoriser: Any, values: Any) -> int:
    """How many terms *vectoriser* keeps of *values*: 0 where it keeps none (no term reaches
    its ``min_df``, or nothing but stop words and empty cells), which scikit-learn reports
    with an error."""
    try:
        return len(vectoriser.fit(values).vocabulary_)
    except ValueError:
        return 0


def svd_components(values: Any) -> int:
    """How many SVD components of a text column's TF-IDF the trees other than LightGBM see:
    16, fewer for a column of few distinct words. The choice's folds and CatBoost's probe
    fit on part of the training rows, where fewer words reach the TF-IDF's ``min_df``, and
    TruncatedSVD needs fewer components than words: so at most half the words of every
    other row (on 240 VAERS rows PRIOR_VAX has 18 words, 6 in every other row, and 16
    components failed a fold, which cost the run its baseline); 0 (no components: the
    column's n-grams only) below 4 words there."""
    words = tfidf_terms(values.iloc[::2])
    return min(16, words // 2) if words >= 4 else 0


def has_ngrams(values: Any) -> bool:
    """Whether LightGBM gets a text column's n-grams (:func:`_ngrams`): only when some reach
    its ``min_df`` in every other row (the search's folds fit on part of the training rows,
    and a column whose words each appear once or twice left the n-grams no term there: an
    error that cost the run its baseline)."""
    return vocabulary_size(_ngrams(), values.iloc[::2]) > 0


def hashed_width(values: Any) -> int:
    """How many hashed features each of a text column's two parts (words, characters) gets in
    the stacked family: a power of two, 16 per distinct word of the column, from 2**12 to
    :data:`HASHED_FEATURES`. A short column (a manufacturer's name) gets a small model:
    logistic regression's cost per iteration grows with the width (on VAERS its six
    columns at full width took 6.3 s a fit, against 1.2 s for all of them joined)."""
    from sklearn.feature_extraction.text import CountVectorizer

    vocabulary = vocabulary_size(CountVectorizer(), values)
    return min(HASHED_FEATURES, max(2**12, 1 << max(0, 16 * vocabulary - 1).bit_length()))


def _columns(positions: slice) -> Any:
    """The columns at *positions* of a (sparse) matrix, with scikit-learn's ``_safe_indexing``
    (documented in its API reference, though underscored). Not a ColumnTransformer: that
    one keeps the index of every column it passes or drops, half a million here, which made
    a saved model of 1.4 GB."""
    from sklearn.preprocessing import FunctionTransformer
    from sklearn.utils import _safe_indexing

    return FunctionTransformer(_safe_indexing, kw_args={"indices": positions, "axis": 1})


#: Hashed features of the words model (per analyser): no vocabulary to store, so the saved
#: model is arrays only (a vocabulary of 150,000 terms took skops a minute to save).
HASHED_FEATURES = 2**18


def _hashed_tfidf(width: int, **analyser: Any) -> Any:
    from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer
    from sklearn.pipeline import make_pipeline

    return make_pipeline(
        HashingVectorizer(n_features=width, alternate_sign=False, norm=None, **analyser),
        TfidfTransformer(sublinear_tf=True),
    )


def _word_features(width: int = HASHED_FEATURES) -> Any:
    """Word 1-2-grams, TF-IDF weighted, hashed."""
    return _hashed_tfidf(width, ngram_range=(1, 2))


def _char_features(width: int = HASHED_FEATURES) -> Any:
    """Character 2- to 5-grams within words: abbreviations, misspellings and word forms
    ("hospitalized", "hosp", "hospitalised") share features that whole words do not
    (docs/benchmarks.md section 8 measures what they add on VAERS). TF-IDF weighted, hashed."""
    return _hashed_tfidf(width, analyzer="char_wb", ngram_range=(2, 5))


def baseline_frame(frame: Any, schema: list[Column], *, file: str = "<input>", joined: list[str] = ()) -> Any:
    """The baseline's input columns: numbers as floats (missing: NaN), categories and text
    as strings (missing: ``missing``); with *joined*, also :data:`JOINED`, those text
    columns as one document."""
    import pandas as pd

    out = {}
    for col in schema:
        if col.kind == "number" and frame[col.name].dtype.kind in "iuf":
            fast = frame[col.name].to_numpy(dtype=float)  # a numeric column: no text to check
            if not np.isinf(fast).any():
                out[col.name] = fast
                continue
        values = frame[col.name].tolist()
        if col.kind == "number":
            numbers = []
            for row, value in enumerate(values):
                number = None if _is_missing(value) else _as_number(value)
                if number is None and not _is_missing(value):
                    raise DataError(
                        f"row {row + 1}: column '{col.name}' holds {str(value)[:40]!r}, expected a number "
                        "(the column is numeric in the training data)",
                        file=file,
                    )
                numbers.append(np.nan if number is None else number)
            out[col.name] = np.asarray(numbers, dtype=float)
        else:  # categories and text: one line each, an empty cell is "missing"
            out[col.name] = [cell_text(v) for v in values]
    if joined:
        out[JOINED] = join_text(out, joined)
    return pd.DataFrame(out, index=frame.index)


def join_text(columns: Any, joined: list[str]) -> list[str]:
    """The :data:`JOINED` document of each row: the *joined* text columns of
    :func:`baseline_frame`'s output, in order."""
    return [" | ".join(parts) for parts in zip(*(columns[c] for c in joined), strict=True)]


@hookimpl
def automl_register_tasks(register):  # type: ignore[no-untyped-def]
    register(FraudDetection)
