"""The value types of one hyperparameter, shared by the recipe, the registries and the search:
how a recipe writes its search range (:class:`ParamSpec`, :data:`SpaceEntry`) and which
values it accepts (:class:`Range`, checked by :mod:`automl.search.ranges`).

This module imports nothing of automl but :mod:`automl.errors`, so the adapter registry,
the recipe schema and the tasks can all build on it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from automl.errors import did_you_mean, one_of

Scalar = str | int | float | bool


class FrozenModel(BaseModel):
    """Base of the recipe's models: unknown keys are refused, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ParamSpec(FrozenModel):
    """One dimension of the search space.

    ``type`` may be left out: ``choices`` means categorical, integer bounds mean int,
    anything else float.
    """

    type: Literal["float", "int", "categorical"] | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list[Scalar] | None = None
    when: dict[str, Scalar | list[Scalar]] | None = Field(
        default=None, description="sample only when these other parameters have these values"
    )

    @model_validator(mode="before")
    @classmethod
    def _infer_type(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("type") is None:
            data = dict(data)
            if "choices" in data:
                data["type"] = "categorical"
            elif isinstance(data.get("low"), int) and isinstance(data.get("high"), int) and not data.get("log"):
                data["type"] = "int"
            else:
                data["type"] = "float"
        return data

    @model_validator(mode="after")
    def _check(self) -> ParamSpec:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical parameter needs a non-empty 'choices' list")
            if self.low is not None or self.high is not None:
                raise ValueError("a categorical parameter takes 'choices', not 'low'/'high'")
        else:
            if self.low is None or self.high is None:
                raise ValueError(f"a {self.type} parameter needs 'low' and 'high'")
            if self.low > self.high:
                raise ValueError(f"low ({self.low:g}) is greater than high ({self.high:g})")
            if self.log and self.low <= 0:
                raise ValueError("a log-scale parameter needs low > 0")
            if self.log and self.step is not None:
                raise ValueError("'step' cannot be combined with 'log: true'")
            if self.step is not None and self.step <= 0:
                raise ValueError(f"'step' must be greater than 0, got {self.step:g}")
            if self.choices is not None:
                raise ValueError(f"a {self.type} parameter takes 'low'/'high', not 'choices'")
            if self.type == "int" and (self.low != int(self.low) or self.high != int(self.high)):
                raise ValueError("an int parameter needs whole-number 'low' and 'high'")
        return self


#: A range, a fixed value, a list of choices, or one range per condition (each with
#: ``when:``, e.g. a learning-rate range per adapter).
SpaceEntry = ParamSpec | Scalar | list[Scalar] | list[ParamSpec]


@dataclass(frozen=True)
class Range:
    """The values one hyperparameter accepts.

    Attributes:
        kind: ``int`` (whole numbers), ``float`` (any number), ``name`` (a string from
            *choices* or accepted by *probe*) or ``any`` (not checked).
        low, high: bounds; ``None`` means unbounded.
        low_open, high_open: the bound itself is excluded (``> 0`` rather than ``>= 0``).
        choices: the accepted names, or a function returning them (read when checked, so
            registries filled later count).
        probe: returns why a value is refused, or ``None`` when the library accepts it.
        plausible: ``(low, high)``; values outside are accepted with a warning.
    """

    kind: Literal["int", "float", "name", "any"] = "float"
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: Iterable[str] | Callable[[], Iterable[str]] | None = None
    probe: Callable[[Any], str | None] | None = None
    plausible: tuple[float, float] | None = None

    def describe(self) -> str:
        """``a whole number >= 1``, ``a number in [0, 1]``, ``one of 'a' or 'b'``."""
        if self.kind == "name":
            names = self.names()
            return f"one of {one_of(names)}" if names is not None else "a name"
        noun = "a whole number" if self.kind == "int" else "a number"
        if self.low is not None and self.high is not None:
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            return f"{noun} in {left}{self.low:g}, {self.high:g}{right}"
        if self.low is not None:
            return f"{noun} {'>' if self.low_open else '>='} {self.low:g}"
        if self.high is not None:
            return f"{noun} {'<' if self.high_open else '<='} {self.high:g}"
        return noun

    def names(self) -> list[str] | None:
        if self.choices is None:
            return None
        return list(self.choices() if callable(self.choices) else self.choices)

    def refuse(self, value: Any) -> str | None:
        """Why *value* is not accepted, or ``None``."""
        if self.kind == "any":
            return None
        if self.kind == "name":
            names = self.names()
            if not isinstance(value, str):
                return f"expected {self.describe()}, got {value!r}"
            if names is not None and value not in names:
                return f"expected {self.describe()}, got {value!r}{did_you_mean(value, names)}"
            return self.probe(value) if self.probe is not None else None
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
            return f"expected {self.describe()}, got {value!r}"
        if self.kind == "int" and not float(value).is_integer():
            return f"expected {self.describe()}, got {value!r}"
        too_low = self.low is not None and (value <= self.low if self.low_open else value < self.low)
        too_high = self.high is not None and (value >= self.high if self.high_open else value > self.high)
        if too_low or too_high or math.isinf(value):
            return f"expected {self.describe()}, got {value!r}"
        return self.probe(value) if self.probe is not None else None

    def implausible(self, value: Any) -> bool:
        if self.plausible is None or isinstance(value, bool) or not isinstance(value, int | float):
            return False
        return not self.plausible[0] <= value <= self.plausible[1]


POSITIVE_INT = Range("int", low=1)
PROBABILITY = Range("float", low=0, high=1)


def validation_message(err: dict[str, Any]) -> str:
    """One pydantic validation error as the message of a one-line user error."""
    kind = err["type"]
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        return "unknown key"
    msg = err["msg"]
    msg = re.sub(r"^(Value error|Assertion failed), ", "", msg)
    if "input" in err and kind not in ("model_type", "dict_type") and not isinstance(err["input"], dict):
        got = f"got {err['input']!r}"
        if not msg.endswith(got):  # a validator may have named the value already
            msg += f", {got}"
    return msg
