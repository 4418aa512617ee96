"""Table columns as model features: numbers and categories next to the text.

A :class:`FeaturePipeline` is fitted once per run on the training rows and then turns any
split (or a file given to ``automl predict``) into two arrays per row:

* ``numeric``: per numeric column, its quantile in the training data mapped to [-1, 1],
  a robust-scaled value (``(x - median) / IQR``, clipped to [-5, 5]) and a missing flag
  (missing values sit at the median); columns constant in training are left out;
* ``categorical``: per categorical column, an index into the column's vocabulary: slot 0
  is "unknown" (values not seen in training, or seen fewer than ``min_count`` times), slot 1
  "missing", then the training values, most frequent first.

The state is plain JSON (:meth:`FeaturePipeline.to_json`), so it is exported with the
model and read back by ``automl predict``. Nothing here knows a domain: a column is a
number, a category or (not here) text.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from automl.errors import DataError
from automl.tables import is_missing as empty, require_columns

if TYPE_CHECKING:
    import pandas as pd

#: Keys of an encoded split that hold the features (next to ``input_ids``).
NUMERIC = "numeric"
CATEGORICAL = "categorical"
FEATURE_KEYS = (NUMERIC, CATEGORICAL)
#: Values per numeric column in the ``numeric`` array: quantile, robust value, missing flag.
NUMERIC_WIDTH = 3
UNKNOWN, MISSING = 0, 1
#: Quantiles kept per numeric column (0%, 1%, ..., 100%).
QUANTILES = 101
#: A numeric column holding more than this share of non-numbers is a category column.
STRAY_SHARE = 0.05


def is_missing(value: Any) -> bool:
    """An empty cell (:func:`automl.tables.is_missing`) or a missing marker written as text
    (``nan``, ``NaN``, ``<NA>``)."""
    return empty(value) or str(value) in ("nan", "NaN", "<NA>")


def as_number(value: Any) -> float | None:
    """*value* as a finite float, or ``None`` (booleans are not numbers here)."""
    if isinstance(value, bool | np.bool_):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) else None


def stray_value(values: Sequence[Any]) -> tuple[int, Any] | None:
    """For a column of numbers with a few non-numbers (at most 5%, at least one): the first
    ``(row index, value)`` that is not a number; ``None`` otherwise. A column with no number
    at all has no stray (one row of a category column, as a scoring request sends it)."""
    present = [(i, v) for i, v in enumerate(values) if not is_missing(v)]
    bad = [(i, v) for i, v in present if as_number(v) is None]
    if present and bad and len(bad) < len(present) and len(bad) <= max(1, STRAY_SHARE * len(present)):
        return bad[0]
    return None


def is_numeric(values: Sequence[Any]) -> bool:
    present = [v for v in values if not is_missing(v)]
    return bool(present) and all(as_number(v) is not None for v in present)


def _stray_error(row: int, column: str, value: Any, file: str | None, why: str) -> DataError:
    return DataError(
        f"row {row + 1}: column '{column}' holds {str(value)[:40]!r}, expected a number ({why})", file=file
    )


@dataclass
class NumericColumn:
    name: str
    quantiles: list[float]
    median: float
    scale: float


@dataclass
class CategoricalColumn:
    name: str
    #: Training values, most frequent first; index ``i`` is slot ``i + 2``.
    values: list[str]

    @property
    def cardinality(self) -> int:
        return len(self.values) + 2


@dataclass
class FeaturePipeline:
    """Fitted normalisation of numeric columns and vocabularies of categorical ones."""

    numeric: list[NumericColumn] = field(default_factory=list)
    categorical: list[CategoricalColumn] = field(default_factory=list)
    #: Columns left out because they hold one value in every training row.
    constant: list[str] = field(default_factory=list)

    # ------------------------------------------------------------------ fit

    @classmethod
    def fit(
        cls,
        frame: pd.DataFrame,
        columns: Sequence[str],
        *,
        categorical: Sequence[str] = (),
        file: str | None = None,
        field_name: str = "data.feature_columns",
        min_count: int = 2,
        max_categories: int = 1000,
    ) -> FeaturePipeline:
        """Fit on the training rows. A column is numeric when every non-empty cell is a
        number, unless it is listed in *categorical*; a numeric column with a few stray
        non-numbers is a :class:`DataError` naming the row."""
        require_columns(frame, list(columns), file=file or "", field=field_name)
        pipeline = cls()
        for name in columns:
            values = frame[name].tolist()
            present = [v for v in values if not is_missing(v)]
            if len({str(v) for v in present}) <= 1:
                pipeline.constant.append(str(name))
                continue
            if name not in categorical:
                stray = stray_value(values)
                if stray is not None:
                    raise _stray_error(stray[0], str(name), stray[1], file, "the column is numeric in the other rows")
            if name not in categorical and is_numeric(values):
                numbers = np.asarray([as_number(v) for v in present], dtype=np.float64)
                quantiles = np.quantile(numbers, np.linspace(0, 1, QUANTILES))
                q1, median, q3 = np.quantile(numbers, [0.25, 0.5, 0.75])
                scale = float(q3 - q1) or float(numbers.std()) or 1.0
                pipeline.numeric.append(NumericColumn(str(name), quantiles.tolist(), float(median), scale))
            else:
                counts = Counter(str(v) for v in present)
                kept = [v for v, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if c >= min_count]
                pipeline.categorical.append(CategoricalColumn(str(name), kept[:max_categories]))
        return pipeline

    # ------------------------------------------------------------------ use

    @property
    def columns(self) -> list[str]:
        """Every column the pipeline reads (constant ones included: a file must have them)."""
        return [c.name for c in self.numeric] + [c.name for c in self.categorical] + list(self.constant)

    @property
    def numeric_width(self) -> int:
        return NUMERIC_WIDTH * len(self.numeric)

    @property
    def cardinalities(self) -> list[int]:
        return [c.cardinality for c in self.categorical]

    @property
    def active(self) -> bool:
        """True when there is at least one feature to feed the model."""
        return bool(self.numeric or self.categorical)

    def transform(self, frame: pd.DataFrame, *, file: str | None = None) -> dict[str, np.ndarray]:
        """``{"numeric": float32 [n, 3 * numeric columns], "categorical": int64 [n, categorical
        columns]}``. A missing column or a non-number in a numeric column is a
        :class:`DataError` naming it."""
        require_columns(frame, self.columns, file=file or "", field="feature columns")
        n = len(frame)
        numeric = np.zeros((n, self.numeric_width), dtype=np.float32)
        for j, col in enumerate(self.numeric):
            x = np.empty(n, dtype=np.float64)
            missing = np.zeros(n, dtype=bool)
            for row, value in enumerate(frame[col.name].tolist()):
                if is_missing(value):
                    missing[row] = True
                    x[row] = col.median
                    continue
                number = as_number(value)
                if number is None:
                    raise _stray_error(row, col.name, value, file, "the column is numeric in the training data")
                x[row] = number
            q = np.asarray(col.quantiles)
            refs = np.linspace(0, 1, len(q))
            # Interpolating up and down and averaging puts a value shared by a run of equal
            # quantiles (many equal values) in the middle of that run (as scikit-learn does).
            position = 0.5 * (np.interp(x, q, refs) - np.interp(-x, -q[::-1], -refs[::-1]))
            numeric[:, NUMERIC_WIDTH * j] = 2 * position - 1
            numeric[:, NUMERIC_WIDTH * j + 1] = np.clip((x - col.median) / col.scale, -5, 5)
            numeric[:, NUMERIC_WIDTH * j + 2] = missing
        categorical = np.zeros((n, len(self.categorical)), dtype=np.int64)
        for j, col in enumerate(self.categorical):
            index = {v: i + 2 for i, v in enumerate(col.values)}
            categorical[:, j] = [
                MISSING if is_missing(v) else index.get(str(v), UNKNOWN) for v in frame[col.name].tolist()
            ]
        return {NUMERIC: numeric, CATEGORICAL: categorical}

    # ------------------------------------------------------------------ state

    def to_json(self) -> dict[str, Any]:
        return {
            "numeric": [vars(c) for c in self.numeric],
            "categorical": [vars(c) for c in self.categorical],
            "constant": list(self.constant),
        }

    @classmethod
    def from_json(cls, state: dict[str, Any]) -> FeaturePipeline:
        return cls(
            numeric=[NumericColumn(**c) for c in state.get("numeric", [])],
            categorical=[CategoricalColumn(**c) for c in state.get("categorical", [])],
            constant=list(state.get("constant", [])),
        )


# ----------------------------------------------------------------------------- text


def special_frame(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The special tokens the tokenizer puts before and after a text (``[CLS]``/``[SEP]``)."""
    with_special = list(tokenizer("a")["input_ids"])
    bare = list(tokenizer("a", add_special_tokens=False)["input_ids"])
    for start in range(len(with_special) - len(bare) + 1):
        if with_special[start : start + len(bare)] == bare:
            return with_special[:start], with_special[start + len(bare) :]
    return [], []


def share_budget(lengths: Sequence[int], budget: int) -> list[int]:
    """Tokens each of several texts may keep so that together they fit *budget*: every text
    gets an equal share, and what a short text leaves unused goes to the longer ones."""
    keep = [0] * len(lengths)
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    left = max(budget, 0)
    for rank, i in enumerate(order):
        share = left // (len(order) - rank)
        keep[i] = min(lengths[i], share)
        left -= keep[i]
    return keep


def encode_segments(rows: Sequence[Sequence[str]], tokenizer: Any, max_length: int, separator: str = " | ") -> list[list[int]]:
    """Token ids of rows made of several text segments (one per text column), joined by
    *separator*, where the segments share the token budget fairly instead of the first
    ones filling it (see :func:`share_budget`)."""
    if not rows:
        return []
    prefix, suffix = special_frame(tokenizer)
    sep = list(tokenizer(separator, add_special_tokens=False)["input_ids"])
    width = max(len(r) for r in rows)
    columns = [[r[j] if j < len(r) else "" for r in rows] for j in range(width)]
    tokens = [tokenizer(list(col), add_special_tokens=False)["input_ids"] for col in columns]
    out = []
    for i, row in enumerate(rows):
        parts = [list(tokens[j][i]) for j in range(len(row))]
        budget = max_length - len(prefix) - len(suffix) - len(sep) * max(len(parts) - 1, 0)
        keep = share_budget([len(p) for p in parts], budget)
        ids = list(prefix)
        for j, (part, k) in enumerate(zip(parts, keep, strict=True)):
            if j:
                ids += sep
            ids += part[:k]
        out.append(ids + suffix)
    return out
