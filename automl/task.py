"""The Task interface: what a domain plugin implements.

A task turns table rows into model inputs and labels, says which model head it needs,
which metrics it reports (and which way is better), its default search space, how raw
model outputs become predictions, and optionally a classical baseline and its own plots.
The core calls these methods; it knows nothing about any domain.

When the core calls what:

* once per run: ``label_names`` (on the training frame), ``read`` (each split),
  ``feature_columns`` (after reading), ``encode`` (each split; cached on disk),
  ``baseline``;
* at export and in ``automl predict`` of a saved baseline or an ensemble: ``baseline_outputs``;
* each trial: ``loss`` (each step, when overridden; ``example_losses`` in private
  training), ``compute_metrics`` and
  ``calibrate`` (each evaluation);
* at the end of each completed trial: ``diagnose`` (on its final validation metrics);
* at export and in ``automl predict``: ``read(split="predict")``, ``encode``, ``predict``,
  ``plots``, ``tables``;
* in ``automl explain`` (and ``predict --explain``, the report's importance):
  ``explain_columns``, ``text_segments``, ``token_units``, ``explain_targets``.
"""

from __future__ import annotations

import abc
import inspect
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from automl.errors import RecipeError, did_you_mean
from automl.params import ParamSpec, SpaceEntry, validation_message

if TYPE_CHECKING:
    import pandas as pd
    import torch
    from matplotlib.figure import Figure

    from automl.adapters import Adapter
    from automl.features import FeaturePipeline
    from automl.recipe import DataSpec
    from automl.params import Range

Head = Literal["sequence-classification", "token-classification"]
HEADS: tuple[str, ...] = ("sequence-classification", "token-classification")

#: What a token of the model input stands for in an explanation: ``(column, word index)``
#: for a word of a text column, ``(column, None)`` for a whole column value, ``None`` for
#: a special token or the glue between columns.
TokenUnit = tuple[str, int | None] | None

#: What a model produced for a split: an ``[n, num_labels]`` array for sequence heads, one
#: ``[tokens_i, num_labels]`` array per example for token heads.
Outputs = np.ndarray | list[np.ndarray]

#: Encoded split: ``input_ids`` (one list of ids per example) and, when labels are known,
#: ``labels`` (an int or float per example, or one list of ids per example with -100 for
#: positions that are not scored). Tasks may add keys (e.g. ``word_ids``) for ``predict``.
#: When the task has table-column features the core adds ``numeric`` and ``categorical``
#: (one array per example, see :mod:`automl.features`).
Encoded = dict[str, list[Any]]


class NoOptions(BaseModel):
    """A task or backbone that takes no ``*_options``."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class Metric:
    """A metric a task reports."""

    name: str
    direction: Literal["maximize", "minimize"]
    description: str = ""


@dataclass
class Split:
    """One split of a task's data.

    Attributes:
        inputs: one model input per example (a string, or a list of words for token tasks).
        labels: one label per example (class id, float target or list of tag ids), or
            ``None`` for unlabelled data (``automl predict``).
        frame: the rows the split came from (baselines and ``predict`` output use it).
    """

    inputs: list[Any]
    labels: list[Any] | None
    frame: pd.DataFrame | None = None

    def __len__(self) -> int:
        return len(self.inputs)

    def take(self, index: Any) -> Split:
        """The examples at *index* (positions), in that order."""
        return Split(
            inputs=[self.inputs[i] for i in index],
            labels=[self.labels[i] for i in index] if self.labels is not None else None,
            frame=self.frame.iloc[index].reset_index(drop=True) if self.frame is not None else None,
        )


def subset(split: Split, encoded: Encoded, index: Any) -> tuple[Split, Encoded]:
    """The examples at *index* (positions) of *split* and of its encoding, in that order."""
    return split.take(index), {k: [v[i] for i in index] for k, v in encoded.items()}


@dataclass
class TaskData:
    """A task's data for a run: train, validation and optional test split."""

    train: Split
    validation: Split
    test: Split | None
    label_names: list[str] | None = None
    #: Splits that ``data.max_eval_rows`` sampled: ``{name: rows in the file}``.
    sampled: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ReportTable:
    """A small table a task adds to the report: a title, column headers and rows of cells
    (numbers are formatted by the report)."""

    title: str
    headers: list[str]
    rows: list[list[Any]]
    caption: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"title": self.title, "headers": list(self.headers), "rows": [list(r) for r in self.rows], "caption": self.caption}


@dataclass(frozen=True)
class ExplainTarget:
    """What an explanation of one row attributes: the sum of the log-probabilities of
    ``classes[i]`` at token ``positions[i]`` of a token-classification model's output
    (e.g. the tags of one predicted entity). *name* says what it is (``"PER: John
    Smith"``)."""

    name: str
    positions: list[int]
    classes: list[int]


@dataclass(frozen=True)
class BaselineResult:
    """A classical model trained once per run, shown as a leaderboard row.

    Attributes:
        model: the fitted model, when the task can score new rows with it through
            :meth:`Task.baseline_outputs`. The core saves it with skops' secure format
            (never pickle), so it must be built from scikit-learn (numpy/scipy), LightGBM and CatBoost
            parts and the classes the task names in :attr:`Task.model_types`;
            it can then be exported, scored by ``automl predict`` and join ensembles.
        outputs: ``{"validation": ..., "test": ...}``: the model's outputs on those splits
            in the same space as the fine-tuned model's (what :meth:`Task.compute_metrics`
            takes; e.g. log-probabilities for a classifier), so that they can be averaged.
        fitted_on_validation: the saved model was fitted on the validation rows too (its
            validation outputs then come from models that were not); measures of the
            export on held-out rows (its column importance) use the test rows instead.
    """

    name: str
    validation: dict[str, float]
    test: dict[str, float] | None = None
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    model: Any = None
    outputs: dict[str, Outputs] = field(default_factory=dict)
    fitted_on_validation: bool = False


class Task(abc.ABC):
    """Base class of every task. Subclass it in a plugin and register the class with
    ``automl_register_tasks``."""

    #: The name recipes use (``task: my-task``).
    name: ClassVar[str]
    #: One line for ``automl plugins``.
    description: ClassVar[str] = ""
    #: Which model head the task trains.
    head: ClassVar[Head] = "sequence-classification"
    #: ``"single_label_classification"``, ``"regression"``; stored in the model config.
    problem_type: ClassVar[str] = "single_label_classification"
    #: Metrics reported on validation and test; the first direction wins for the objective.
    metrics: ClassVar[tuple[Metric, ...]] = ()
    #: The objective when the recipe names none.
    default_metric: ClassVar[str]
    #: Validates the recipe's ``task_options``.
    Options: ClassVar[type[BaseModel]] = NoOptions
    #: Hyperparameters beyond the engine's own that this task reads in ``loss``.
    extra_hyperparameters: ClassVar[dict[str, str]] = {}
    #: The values those hyperparameters accept (``automl.search.ranges.Range``), checked
    #: before a run trains anything; a parameter left out is not checked.
    hyperparameter_ranges: ClassVar[dict[str, Range]] = {}
    #: Seconds :meth:`baseline` should fit within, set by the core before it calls it (a
    #: share of ``search.timeout``, :data:`automl.search.budget.BASELINE_BUDGET_SHARE`); ``None``: the
    #: run has no time limit.
    baseline_budget: float | None = None
    #: ``training.max_length: auto`` holds the whole encoding of this share of the training
    #: rows (:func:`automl.encoding.auto_max_length`). 1.0 for a task that labels every
    #: token, where a cut row loses its labels.
    auto_length_coverage: ClassVar[float] = 0.95
    #: ``time.time()`` by which the run's trials are done (``search.timeout`` less the end
    #: of the run, :func:`automl.search.budget.search_deadline`), set with
    #: :attr:`baseline_budget`: a baseline that runs past its budget (optional extra work)
    #: can check that it still ends by then; ``None``: no time limit.
    baseline_deadline: float | None = None
    #: Classes of the task's own (``module.Class``) that its :meth:`baseline` model may hold
    #: besides scikit-learn's, NumPy's, SciPy's, LightGBM's and CatBoost's: a saved baseline
    #: that holds them loads (skops restores their attributes; nothing else in a model file
    #: is trusted). Name only classes whose state is arrays, numbers and those libraries'
    #: models.
    model_types: ClassVar[frozenset[str]] = frozenset()

    def baseline_cores(self) -> int:
        """How many CPU cores :meth:`baseline` may use at this moment: those no worker process
        of the run is using. Workers end while a baseline trains (their trials done, or none
        fits before the deadline), so a baseline asks again before each step it can spread
        over processes. The core sets this with :attr:`baseline_budget`; alone: one."""
        return 1

    def __init__(self, options: BaseModel | None = None, data: DataSpec | None = None) -> None:
        self.options = options if options is not None else self.Options()
        self.data = data
        #: Class names in id order, set by the core once known (from the training data in a
        #: run, from the model's ``id2label`` in ``automl predict``); ``None`` for regression.
        self.labels: list[str] | None = None
        #: The fitted feature pipeline of the columns :meth:`feature_columns` names, set by
        #: the core (from the training split in a run, from the export in ``automl
        #: predict``); ``None`` when the model takes text only.
        self.features: FeaturePipeline | None = None

    # ------------------------------------------------------------------ contract

    @classmethod
    def contract_problems(cls) -> list[str]:
        """What is wrong with this class as a task (checked when a plugin registers it)."""
        problems = []
        if not isinstance(getattr(cls, "name", None), str) or not cls.name:
            problems.append("'name' must be a non-empty string")
        if getattr(cls, "head", None) not in HEADS:
            problems.append(f"'head' must be one of {', '.join(HEADS)}")
        if inspect.isabstract(cls):
            missing = ", ".join(sorted(cls.__abstractmethods__))
            problems.append(f"missing required method(s): {missing}")
        names = [m.name for m in getattr(cls, "metrics", ())]
        if not names:
            problems.append("'metrics' must list at least one Metric")
        if getattr(cls, "default_metric", None) not in names:
            problems.append("'default_metric' must be one of its metrics")
        if not (isinstance(getattr(cls, "Options", None), type) and issubclass(cls.Options, BaseModel)):
            problems.append("'Options' must be a pydantic BaseModel subclass")
        return problems

    def metric(self, name: str) -> Metric:
        for m in self.metrics:
            if m.name == name:
                return m
        raise KeyError(name)

    # ------------------------------------------------------------------ data

    def label_names(self, train: pd.DataFrame, *, file: str) -> list[str] | None:
        """Class names found in the training data, in id order (``None`` for regression)."""
        return None

    @abc.abstractmethod
    def read(
        self,
        frame: pd.DataFrame,
        *,
        split: Literal["train", "validation", "test", "predict"],
        file: str,
        label_names: list[str] | None,
    ) -> Split:
        """Validate rows and turn them into a :class:`Split`.

        Raise :class:`automl.errors.DataError` (naming *file* and the column) for bad data.
        For ``split="predict"`` labels are not required and ``Split.labels`` is ``None``.
        """

    def num_labels(self) -> int:
        """Outputs of the model head: the number of classes (tags), or 1 for regression."""
        if not self.labels:
            raise ValueError(f"task '{self.name}' has no labels; override num_labels()")
        return len(self.labels)

    def stratify(self, split: Split) -> Sequence[Any] | None:
        """Keys to stratify the validation split on when the recipe gives no validation file."""
        return None

    @abc.abstractmethod
    def encode(self, split: Split, tokenizer: Any, max_length: int) -> Encoded:
        """Tokenise a split: ``input_ids`` per example and ``labels`` when known.

        Several text columns should share *max_length* fairly
        (:func:`automl.features.encode_segments`) rather than be cut where the first
        ones end."""

    def feature_columns(self) -> list[str]:
        """Table columns the model takes as features next to the text: numbers (normalised
        from training statistics, missing values flagged) and categories (learned
        embeddings, unseen values in an "unknown" slot), fused with the backbone's output
        (:mod:`automl.fusion`). Called once per run after :meth:`read` of the training
        split. Empty (the default): the model takes text only.

        The core fits :class:`automl.features.FeaturePipeline` on these columns of
        ``Split.frame``, adds the features to every encoded split and exports the pipeline
        with the model; the task only names the columns (and should keep them out of its
        text input)."""
        return []

    # ------------------------------------------------------------------ training

    def default_space(self) -> dict[str, SpaceEntry]:
        """The search space used for parameters the recipe's ``search.space`` leaves out.

        Hyperparameters whose good range depends on the adapter (the learning rate, the
        adapter's own settings) are added per adapter from :meth:`adapter_space` for those
        this space leaves out."""
        return {
            "batch_size": [16, 32],
            "epochs": ParamSpec(low=1, high=3),
            "weight_decay": 0.01,
            "warmup_ratio": 0.06,
            "scheduler": "linear",
            "adapter": ["full", "lora"],
        }

    def adapter_space(self, adapter: Adapter, learning_rate: tuple[float, float]) -> dict[str, SpaceEntry]:
        """The hyperparameters whose range depends on *adapter*, for that adapter: the
        learning rate (log-uniform over *learning_rate*: the adapter registry's range with
        the backbone's prior for its size) and the adapter's own settings. The core adds
        ``when: {adapter: NAME}`` to each. Override to give an adapter other ranges for this
        task (call ``super()`` and change what differs)."""
        low, high = learning_rate
        return {"learning_rate": ParamSpec(low=low, high=high, log=True), **adapter.space}

    def warm_start(self, adapter: Adapter) -> dict[str, Any]:
        """Settings of the warm-start trial for *adapter* that this task knows better than
        the backbone (e.g. more epochs for a token head); merged over
        :meth:`~automl.backbone.Backbone.warm_start`. ``None`` for a parameter undoes the
        backbone's hint: the middle of its range. ``{}`` by default."""
        return {}

    def prepare(self, data: TaskData) -> None:
        """Called once per process with the run's data (e.g. to compute class weights)."""

    def loss(self, logits: torch.Tensor, labels: torch.Tensor, params: dict[str, Any]) -> torch.Tensor | None:
        """The training loss, or ``None`` for the model head's own loss."""
        return None

    def example_losses(self, logits: torch.Tensor, labels: torch.Tensor, params: dict[str, Any]) -> torch.Tensor | None:
        """Private training (a recipe's ``privacy:`` block): one loss per example, shape
        ``[batch]``, whose mean the engine minimises. Each must depend on its own example
        only (no normalisation over the batch, as a weighted mean would do), so that
        clipping each example's gradient bounds its influence. ``None``: the engine's plain
        per-example loss (cross-entropy; its mean over the scored tokens of a sequence for
        token heads; squared error for regression). A task that overrides :meth:`loss`
        trains privately only if it overrides this too."""
        return None

    @abc.abstractmethod
    def compute_metrics(
        self, outputs: Outputs, split: Split, encoded: Encoded, calibration: dict[str, Any]
    ) -> dict[str, float]:
        """Every metric in :attr:`metrics` for a labelled split."""

    def calibrate(self, outputs: Outputs, split: Split, encoded: Encoded) -> dict[str, Any]:
        """Tune post-processing on validation outputs (e.g. a decision threshold).

        The result is JSON-able; it is stored with the trial, passed to
        :meth:`compute_metrics` and :meth:`predict`, and exported in ``automl.json``.
        """
        return {}

    def restore(self, calibration: dict[str, Any]) -> None:
        """Take back what :meth:`calibrate` saved when an export is loaded for prediction
        (``automl predict``, :func:`automl.load_model`), before the first :meth:`read` with
        ``split="predict"``: e.g. the input columns the model was trained on, so that a
        file's columns are matched by name. Does nothing by default."""

    # ------------------------------------------------------------------ results

    @abc.abstractmethod
    def predict(
        self, outputs: Outputs, split: Split, encoded: Encoded, calibration: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """One dict of output columns per example (``prediction`` plus scores)."""

    def baseline(self, data: TaskData, seed: int) -> BaselineResult | None:
        """Train a fast classical model once per run, or ``None`` if the task has none.

        Return ``BaselineResult(model=..., outputs=...)`` and implement
        :meth:`baseline_outputs` to make the baseline a saved model (see
        :class:`BaselineResult`); without them it is a leaderboard row only."""
        return None

    def baseline_outputs(self, model: Any, split: Split) -> Outputs:
        """Outputs of a saved baseline *model* (from :meth:`baseline`) on a split read by
        :meth:`read` (``split.frame`` holds the rows), in the same space as
        ``BaselineResult.outputs``. Called by ``automl predict`` and ensembles."""
        raise NotImplementedError(f"task '{self.name}' cannot score rows with its baseline")

    def plots(
        self, outputs: Outputs, split: Split, encoded: Encoded, calibration: dict[str, Any]
    ) -> list[tuple[str, Figure]]:
        """``(title, matplotlib figure)`` pairs for the report, from test (or validation)
        outputs of the best model."""
        return []

    def tables(
        self, outputs: Outputs, split: Split, encoded: Encoded, calibration: dict[str, Any]
    ) -> list[ReportTable]:
        """Tables for the report (e.g. metrics per class, the most frequent errors), from
        test (or validation) outputs of the best model. Stored in the exported
        ``automl.json`` and shown in the HTML and Markdown reports."""
        return []

    # ------------------------------------------------------------------ explanations

    def explain_columns(self) -> list[tuple[str, Literal["text", "value"]]]:
        """The input columns an explanation names, each ``"text"`` (its words are the
        reasons; a cell holding a list is taken as its words) or ``"value"`` (the column
        as a whole). Default: the recipe's text column and the feature columns."""
        text = str(getattr(self.data, "text_column", None) or "text") if self.data is not None else "text"
        return [(text, "text")] + [(c, "value") for c in self.feature_columns()]

    def text_segments(self, split: Split, index: int) -> list[tuple[str, int, int]]:
        """Where each column's cell sits in the model's text input of example *index*:
        ``(column, start, end)`` character ranges of ``split.inputs[index]`` (the text
        between them, e.g. ``"amount: "`` or ``" | "``, belongs to no column). Default: the
        whole input is the first text column of :meth:`explain_columns`."""
        text = split.inputs[index]
        column = next((c for c, kind in self.explain_columns() if kind == "text"), "text")
        return [(column, 0, len(text) if isinstance(text, str) else 0)]

    def token_units(self, split: Split, encoded: Encoded, index: int, tokenizer: Any) -> list[TokenUnit]:
        """For each token of ``encoded["input_ids"][index]``, what it stands for
        (:data:`TokenUnit`). Default: the tokens are aligned with the input text
        (the tokenizer's character offsets) and placed by :meth:`text_segments`; a token
        in a ``"value"`` column stands for the column, one in a ``"text"`` column for the
        word it is part of."""
        ids = list(encoded["input_ids"][index])
        text = split.inputs[index]
        if not isinstance(text, str) or not getattr(tokenizer, "is_fast", False):
            return [None] * len(ids)
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        kinds = dict(self.explain_columns())
        segments = self.text_segments(split, index)
        out: list[TokenUnit] = []
        j = 0  # the encoded ids are a subsequence of the text's tokens (columns may be cut short)
        for token in ids:
            k = j
            while k < len(enc["input_ids"]) and enc["input_ids"][k] != token:
                k += 1
            if k == len(enc["input_ids"]):
                out.append(None)  # a special token or a separator the task added
                continue
            j = k + 1
            start = enc["offset_mapping"][k][0]
            out.append(_unit_at(text, start, segments, kinds))
        return out

    def explain_targets(self, outputs: Any, split: Split, encoded: Encoded, index: int) -> list[ExplainTarget] | None:
        """What to explain in example *index* given its *outputs*, for token heads (e.g.
        one target per predicted entity). ``None`` (the default): the core explains a
        sequence head's output: the positive class of a binary classifier, the predicted
        class of a multi-class one, the value of a regression."""
        return None

    def diagnose(self, metrics: dict[str, float]) -> str | None:
        """A one-line note on a suspicious result, from a trial's final validation
        *metrics*, or ``None``. The leaderboard shows it next to the trial; e.g. a model
        that collapsed to predicting one class scores 0 for a reason the user should see."""
        return None


def _unit_at(text: str, start: int, segments: list[tuple[str, int, int]], kinds: dict[str, str]) -> TokenUnit:
    """The unit of the character at *start* of *text* (see :meth:`Task.token_units`)."""
    for column, lo, hi in segments:
        if lo <= start < hi:
            if kinds.get(column) != "text":
                return (column, None)
            for number, match in enumerate(re.finditer(r"\S+", text[lo:hi])):
                if match.start() <= start - lo < match.end():
                    return (column, number)
            return None
    return None


def read_options(cls: type[Task] | type, raw: dict[str, Any], *, file: str | None, field: str) -> BaseModel:
    """Validate ``task_options``/``backbone_options`` with the plugin's ``Options`` model."""
    try:
        return cls.Options.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        message = validation_message(err)
        if err["type"] == "extra_forbidden":
            message += did_you_mean(str(err["loc"][-1]), cls.Options.model_fields)
        raise RecipeError(message, file=file, field=f"{field}.{loc}" if loc else field) from None
