"""Value objects passed to lifecycle hooks (``automl_trial_start`` and friends)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class TrialState(enum.Enum):
    """How a trial ended, as automl reports it."""

    COMPLETE = "complete"
    PRUNED = "pruned"
    FAILED = "failed"
    RUNNING = "running"
    WAITING = "waiting"


@dataclass(frozen=True)
class RunInfo:
    """The run a trial belongs to."""

    study_name: str
    run_dir: Path
    task: str
    backbone: str
    objective: str
    direction: str
    #: The recipe as run (``run.json``'s ``recipe``): JSON-able, CLI overrides applied.
    recipe: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TrialInfo:
    """A trial about to run: its number in the study and its hyperparameters."""

    number: int
    params: dict[str, Any]


@dataclass(frozen=True)
class TrialOutcome:
    """How a trial ended."""

    state: TrialState
    value: float | None
    metrics: dict[str, float] = field(default_factory=dict)
    reason: str | None = None
    duration_s: float = 0.0


@dataclass(frozen=True)
class StudySummary:
    """The study at the end of a run (by budget, timeout or Ctrl-C)."""

    n_complete: int
    n_pruned: int
    n_failed: int
    best_trial: int | None
    best_value: float | None
    best_dir: Path | None
    interrupted: bool = False
