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

Baseline: scikit-learn's HistGradientBoostingClassifier on the raw columns (categories
encoded, each free-text column as a few TF-IDF/SVD components), stacked (when there is
free text) with TF-IDF + logistic regression on the words of each text column; one
scikit-learn model that the core saves with skops so it can be exported, scored and
ensembled.
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

from ._classify import Columns, binary_curves, confusion_plot, label_list, label_text, read_labels, softmax

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
    #: The label value that means fraud; default: "1", "true", "fraud"... if present,
    #: otherwise the minority class.
    positive_label: str | None = None
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
    #: After the baseline is chosen and scored on validation (held out), fit it again on
    #: the training and validation rows together: the saved model, its test figures and
    #: its share of an ensemble use every labelled row; its validation figures (and the
    #: threshold) stay those of the held-out fit.
    refit_baseline: bool = False


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
    from sklearn.metrics import average_precision_score, f1_score, precision_score, recall_score, roc_auc_score

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

    def __init__(self, options: BaseModel | None = None, data: Any = None) -> None:
        super().__init__(options, data)
        #: Column layout, set from the training data.
        self.schema: list[Column] | None = None
        #: ``[negative, positive]`` loss weights before the power, set by :meth:`prepare`.
        self.ratio = 1.0
        self._file = ""

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
        positive = self.opts.positive_label
        if positive is not None and positive not in names:
            raise DataError(
                f"task_options.positive_label '{positive}' is not a value of column '{column}' "
                f"(found: {', '.join(names)})",
                file=file,
                field="data.label_column",
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
        schema = self.schema
        if schema is None:
            # A loaded model infers the column kinds from the rows it is given. Rows with
            # the same columns as the last ones read keep those kinds: an explanation scores
            # edited copies of a row (words deleted), whose kinds must not drift.
            last = getattr(self, "_read_schema", None)
            same = last is not None and [c.name for c in last] == [str(c) for c in frame.columns if c != self.label_column]
            schema = last if same else self._schema(frame, file=file)
        self._read_schema = schema
        require_columns(frame, [c.name for c in schema], file=file, field="task_options.columns")
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
        return result

    def compute_metrics(self, outputs, split, encoded, calibration):  # type: ignore[no-untyped-def]
        if "threshold" not in calibration:
            calibration = self.calibrate(outputs, split, encoded)
        return binary_metrics(self.scores(outputs), np.asarray(encoded["labels"]), float(calibration["threshold"]))

    def predict(self, outputs, split, encoded, calibration):  # type: ignore[no-untyped-def]
        trained = calibration.get("columns")
        if trained is not None and split.frame is not None:
            given = [c for c in split.frame.columns if c != self.label_column]
            if self.opts.columns is None and set(given) != set(trained):
                extra = sorted(set(given) - set(trained))
                missing = sorted(set(trained) - set(given))
                what = f"extra column(s) {', '.join(extra)}" if extra else f"missing column(s) {', '.join(missing)}"
                raise DataError(
                    f"{what}: the model was trained on columns {', '.join(trained)}; drop or add columns, "
                    "or list them in task_options.columns",
                    file=self._file or None,
                )
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
        from sklearn.compose import ColumnTransformer
        from sklearn.decomposition import TruncatedSVD
        from sklearn.ensemble import HistGradientBoostingClassifier, StackingClassifier
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import StratifiedKFold
        from sklearn.pipeline import Pipeline, make_pipeline
        from sklearn.preprocessing import OrdinalEncoder
        from threadpoolctl import threadpool_limits

        if self.schema is None or data.train.frame is None:
            return None
        start = time.perf_counter()
        numbers = [c.name for c in self.schema if c.kind == "number"]
        categories = [c.name for c in self.schema if c.kind == "category"]
        train = data.train.frame
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
        for name in [c.name for c in self.schema if c.kind == "text"]:
            vocabulary = _tfidf().fit(x[name]).vocabulary_
            if len(vocabulary) > 2:
                texts.append(name)  # each text column its own TF-IDF/SVD components
                svd = TruncatedSVD(min(16, len(vocabulary) - 1), random_state=seed)
                parts.append((f"text:{name}", make_pipeline(_tfidf(), svd), name))
        trees: Any = Pipeline([
            ("columns", ColumnTransformer(parts)),
            ("model", HistGradientBoostingClassifier(
                max_iter=200, learning_rate=0.08, random_state=seed,
                categorical_features=list(range(len(numbers), len(numbers) + len(categories))) or None,
            )),
        ])
        y = np.asarray(data.train.labels)
        positives = int(np.sum(y == 1))
        model, name = trees, "gradient boosting on the raw columns"
        joined: list[str] = []
        if texts and positives >= 2:
            # The trees see only a few SVD components of the text. TF-IDF + logistic
            # regression on the words of all text columns as one document is often far
            # better on report-like rows; the trees, the words, or both stacked: whichever
            # has the best average precision on out-of-fold predictions of the training
            # rows (validation is not used).
            words = Pipeline([
                ("columns", ColumnTransformer(
                    [(f"{JOINED_PART}:{c}", "drop", c) for c in texts]
                    + [("words", _tfidf(50_000), JOINED), ("chars", _char_tfidf(), JOINED)]
                )),
                ("model", LogisticRegression(C=4.0, max_iter=2000, random_state=seed)),
            ])
            cv = StratifiedKFold(min(5, positives), shuffle=True, random_state=seed)
            stack = StackingClassifier([("trees", trees), ("words", words)], final_estimator=LogisticRegression(), cv=cv)
            joined = texts
            x[JOINED] = join_text(x, joined)
            with threadpool_limits(1):
                pick = _best_by_oof(trees, words, x, y, cv)
            model, name = {
                "trees": (trees, name),
                "words": (words, "TF-IDF + logistic regression on the words and characters of the text columns"),
                "stack": (stack, "gradient boosting on the raw columns, stacked with TF-IDF + logistic regression on the text"),
            }[pick]
        # One thread: on small data OpenMP's thread start-up and spinning cost more than
        # they save, badly so next to a torch process (3 s instead of 0.2 s).
        with threadpool_limits(1):
            model.fit(x, y)
        outputs = {"validation": self.baseline_outputs(model, data.validation)}
        if self.opts.refit_baseline and data.validation.frame is not None:
            import pandas as pd
            from sklearn.base import clone

            x = pd.concat([x, baseline_frame(data.validation.frame, self.schema, joined=joined)], ignore_index=True)
            y = np.concatenate([y, np.asarray(data.validation.labels)])
            with threadpool_limits(1):
                model = clone(model).fit(x, y)
            name += " (refit on training + validation rows)"
        if data.test is not None and data.test.frame is not None:
            outputs["test"] = self.baseline_outputs(model, data.test)
        val_scores, val_labels = self.scores(outputs["validation"]), np.asarray(data.validation.labels)
        threshold = tune_threshold(val_scores, val_labels, self.opts.threshold)["threshold"]
        test = None
        if "test" in outputs:
            test = binary_metrics(self.scores(outputs["test"]), np.asarray(data.test.labels), threshold)  # type: ignore[union-attr]
        return BaselineResult(
            name=name,
            validation=binary_metrics(val_scores, val_labels, threshold),
            test=test,
            seconds=time.perf_counter() - start,
            extra={"threshold": threshold},
            model=model,
            outputs=outputs,
        )

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


def _best_by_oof(trees: Any, words: Any, x: Any, y: np.ndarray, cv: Any) -> str:
    """``trees``, ``words`` or ``stack`` (both, combined by logistic regression): the one
    with the best average precision on out-of-fold predictions of the training rows."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import average_precision_score
    from sklearn.model_selection import cross_val_predict

    oof = np.column_stack([cross_val_predict(m, x, y, cv=cv, method="predict_proba")[:, 1] for m in (trees, words)])
    stacked = cross_val_predict(LogisticRegression(), oof, y, cv=cv, method="predict_proba")[:, 1]
    scores = {
        "trees": average_precision_score(y, oof[:, 0]),
        "words": average_precision_score(y, oof[:, 1]),
        "stack": average_precision_score(y, stacked),
    }
    return max(scores, key=lambda k: (scores[k], k == "trees"))


def _tfidf(max_features: int = 20_000) -> Any:
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, max_features=max_features)


def _char_tfidf(max_features: int = 100_000) -> Any:
    """Character 2- to 5-grams within words: abbreviations, misspellings and word forms
    ("hospitalized", "hosp", "hospitalised") share features that whole words do not
    (docs/benchmarks.md section 8 measures what they add on VAERS)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=2, sublinear_tf=True, max_features=max_features)


def baseline_frame(frame: Any, schema: list[Column], *, file: str = "<input>", joined: list[str] = ()) -> Any:
    """The baseline's input columns: numbers as floats (missing: NaN), categories and text
    as strings (missing: ``missing``); with *joined*, also :data:`JOINED`, those text
    columns as one document."""
    import pandas as pd

    out = {}
    for col in schema:
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
