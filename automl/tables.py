"""Helpers on a read table that the data reader, the feature pipeline and task plugins
share: what counts as an empty cell, and the check that named columns exist.

:mod:`automl.data` re-exports both, where plugins import them from.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from automl.errors import DataError

if TYPE_CHECKING:
    import pandas as pd


def is_missing(value: Any) -> bool:
    """True for an empty cell however the reader stored it: ``None``, NaN, ``pd.NA``,
    ``NaT`` or an empty/blank string (pandas 3's string dtype keeps NaN for empty cells)."""
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, list | tuple | dict | np.ndarray):
        return False
    try:
        import pandas as pd

        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def require_columns(frame: pd.DataFrame, columns: list[str], *, file: str | Path, field: str = "data") -> None:
    """Raise a DataError naming the first missing column and the columns that exist."""
    for column in columns:
        if column not in frame.columns:
            have = ", ".join(map(str, frame.columns[:12]))
            hint = ""
            if len(frame.columns) == 1:
                only = str(frame.columns[0])
                delimiter = next((d for d in (";", "\t", "|") if d in only), None)
                if delimiter:
                    shown = "tab" if delimiter == "\t" else f"'{delimiter}'"
                    hint = f" (one column: is the file delimited by {shown}? .csv files use ',', .tsv files tabs)"
            raise DataError(f"column '{column}' not found; the file has: {have}{hint}", file=file, field=field)
