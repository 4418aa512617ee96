"""Errors that mean "the user must fix something" as opposed to bugs.

A :class:`UserError` is shown as one line (file, field, what was expected) with exit code 2;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Iterable
from pathlib import Path


#: Exit status of ``automl`` commands (docs/cli.md lists them).
EXIT_OK = 0
#: A bug: an unexpected exception, shown with its traceback.
EXIT_BUG = 1
#: A user error (bad recipe, data, plugin, storage, device): one line, nothing trained.
EXIT_USER_ERROR = 2
#: ``automl run``/``automl worker`` ended without a best model: no trial completed.
EXIT_NO_MODEL = 3
#: Interrupted (Ctrl-C, SIGTERM): finished trials are kept; the same command continues.
EXIT_INTERRUPTED = 130


class UserError(Exception):
    """A problem the user can fix: bad recipe, bad data, unknown plugin, unreachable storage."""

    exit_code = EXIT_USER_ERROR

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        field: str | None = None,
        line: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.file = str(file) if file is not None else None
        self.field = field
        self.line = line

    def __str__(self) -> str:
        where = ""
        if self.file:
            where = self.file + (f":{self.line}" if self.line else "") + ": "
        field = f"{self.field}: " if self.field else ""
        return f"{where}{field}{self.message}"


class RecipeError(UserError):
    """The recipe is not valid."""


class DataError(UserError):
    """The data named by a recipe cannot be used."""


class PluginError(UserError):
    """A plugin is unknown, broken, or breaks the plugin contract."""


class StorageError(UserError):
    """The study storage cannot be reached or used."""


class NoModelError(UserError):
    """A run (or worker) ended without a best model: every trial failed or was pruned."""

    exit_code = EXIT_NO_MODEL


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest of *choices*, or ``""``."""
    choices = list(choices)
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if not close:  # 'LoRA' for 'lora'
        lowered = {c.lower(): c for c in reversed(choices)}
        close = [lowered[m] for m in difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.6)]
    return f" (did you mean '{close[0]}'?)" if close else ""


def one_of(choices: Iterable[str]) -> str:
    """Render choices for a message: ``'a', 'b' or 'c'``."""
    items = [f"'{c}'" for c in sorted(choices)]
    if not items:
        return "(none installed)"
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " or " + items[-1]


def require_modules(names: Iterable[str], *, install: str, field: str) -> None:
    """One line naming the missing optional libraries among *names* and the extra that
    brings them (*install*), for the command or option *field*."""
    missing = []
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise UserError(f"needs {', '.join(missing)}, not installed: {install}", field=field)
