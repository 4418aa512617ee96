"""Reading a recipe's data: tables in CSV, TSV, JSONL, Parquet, CoNLL or a saved
``datasets`` directory, split into train/validation/test and handed to the task.

Everything here raises :class:`~automl.errors.DataError` with the file and what was
expected; nothing here knows a domain.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from automl.errors import DataError, RecipeError
from automl.features import FeaturePipeline
from automl.tables import is_missing, require_columns  # noqa: F401  (plugins import them from here)
from automl.task import Split, Task, TaskData

if TYPE_CHECKING:
    import pandas as pd

    from automl.recipe import Recipe

FORMATS = ("csv", "tsv", "jsonl", "json", "parquet", "conll", "datasets")
#: What ``data.format`` may name, for a file whose suffix misleads.
SETTABLE_FORMATS = ("csv", "tsv", "jsonl", "parquet", "conll")
#: The longest line (in bytes) a text file may hold. A text file is read into memory whole
#: to be decoded and parsed, so a multi-GB line would exhaust memory before any message;
#: a line this long is a broken file (a missing newline or quote), not a row.
MAX_LINE = 64 * 1024 * 1024


def detect_format(path: Path) -> str:
    if path.is_dir():
        if (path / "dataset_info.json").exists() or (path / "state.json").exists():
            return "datasets"
        raise DataError("is a directory but not a saved `datasets` dataset", file=path)
    suffix = path.suffix.lower().lstrip(".")
    if suffix in ("csv", "txt"):
        return "csv"
    if suffix == "tsv":
        return "tsv"
    if suffix in ("jsonl", "ndjson"):
        return "jsonl"
    if suffix == "json":
        return "json"
    if suffix in ("parquet", "pq"):
        return "parquet"
    if suffix in ("conll", "conllu", "iob", "bio", "annotated"):
        return "conll"
    raise DataError(f"unknown data format '.{suffix}'; expected one of: .csv .tsv .jsonl .parquet .conll or a datasets directory", file=path)


def _decode(path: Path) -> str:
    raw = path.read_bytes()
    if b"\x00" in raw[:65536]:
        raise DataError("looks like binary data, expected a UTF-8 text table", file=path)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(f"not UTF-8 text (bad byte at line {line}); re-save the file as UTF-8", file=path) from None


def _read_conll(text: str, path: Path) -> pd.DataFrame:
    import pandas as pd

    sentences: list[tuple[list[str], list[str]]] = []
    tokens: list[str] = []
    tags: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.rstrip("\n\r")
        if not line.strip():
            if tokens:
                sentences.append((tokens, tags))
                tokens, tags = [], []
            continue
        if line.startswith("-DOCSTART-"):
            continue
        parts = line.split("\t") if "\t" in line else line.split()
        if len(parts) < 2:
            raise DataError(f"line {number}: expected 'token<TAB>tag', got {line[:60]!r}", file=path)
        tokens.append(parts[0])
        tags.append(parts[-1])
    if tokens:
        sentences.append((tokens, tags))
    return pd.DataFrame({"tokens": [s[0] for s in sentences], "tags": [s[1] for s in sentences]})


def looks_like_conll(path: Path, lines: int = 400) -> bool:
    """Whether a text file reads like CoNLL: headerless ``word<TAB>tag`` lines of two to
    four fields each, with blank lines between sentences (checked on its first *lines*)."""
    try:
        with path.open(encoding="utf-8-sig", errors="replace") as fh:
            head = [line.rstrip("\r\n") for _, line in zip(range(lines), fh, strict=False)]
    except OSError:
        return False
    filled = [line for line in head if line.strip() and not line.startswith("-DOCSTART-")]
    blanks = sum(1 for i, line in enumerate(head[1:], start=1) if not line.strip() and head[i - 1].strip())
    if len(filled) < 2 or blanks == 0:
        return False
    widths = {len(line.split("\t")) if "\t" in line else len(line.split()) for line in filled}
    return widths <= {2, 3, 4} and len(widths) == 1


def read_table(path: str | Path, *, max_rows: int | None = None, fmt: str | None = None) -> pd.DataFrame:
    """Read a data file into a DataFrame; every failure is a one-line :class:`DataError`.
    *fmt* (``data.format``) overrides what the file's suffix says."""
    import pandas as pd

    path = Path(path)
    if not path.exists():
        raise DataError("no such file", file=path)
    fmt = fmt or detect_format(path)
    try:
        if fmt == "datasets":
            import datasets

            loaded = datasets.load_from_disk(str(path))
            if isinstance(loaded, datasets.DatasetDict):
                raise DataError(
                    f"is a DatasetDict with splits {list(loaded)}; point train/validation/test at one split each",
                    file=path,
                )
            frame = loaded.to_pandas()
        elif fmt == "parquet":
            frame = pd.read_parquet(path)
        else:
            if path.stat().st_size == 0:
                raise DataError("is empty; expected a header row and data rows", file=path)
            _check_lines(path)
            text = _decode(path)
            if fmt == "conll":
                frame = _read_conll(text, path)
            elif fmt in ("jsonl", "json"):
                stripped = text.lstrip()
                if fmt == "json" and stripped.startswith("["):
                    frame = pd.DataFrame(json.loads(text))
                else:
                    rows = []
                    for number, line in enumerate(text.splitlines(), start=1):
                        if not line.strip():
                            continue
                        try:
                            row = json.loads(line)
                        except json.JSONDecodeError as exc:
                            raise DataError(f"line {number}: not valid JSON ({exc.msg})", file=path) from None
                        if not isinstance(row, dict):
                            raise DataError(f"line {number}: expected a JSON object per line", file=path)
                        rows.append(row)
                    frame = pd.DataFrame(rows)
            else:
                sep = "\t" if fmt == "tsv" else ","
                _check_header(text, sep, path)
                frame = pd.read_csv(io.StringIO(text), sep=sep, keep_default_na=False, na_values=[""])
    except DataError:
        raise
    except (ValueError, OSError, csv.Error, pd.errors.ParserError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"cannot read as {fmt}: {first}", file=path) from None
    except Exception as exc:  # pyarrow and datasets raise their own types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"cannot read as {fmt}: {first}", file=path) from None
    if len(frame.columns) == 0:
        raise DataError("has no columns; expected a header row", file=path)
    if len(frame) == 0:
        raise DataError("has a header but no data rows", file=path)
    if max_rows is not None and len(frame) > max_rows:
        frame = frame.iloc[:max_rows]
    return frame.reset_index(drop=True)


def _check_lines(path: Path) -> None:
    """Refuse a line longer than :data:`MAX_LINE` bytes, naming it, before the file is
    decoded (reading a multi-GB line into memory is what would fail otherwise)."""
    if path.stat().st_size <= MAX_LINE:
        return
    number, length = 1, 0
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            pieces = block.split(b"\n")
            for i, piece in enumerate(pieces):
                length += len(piece)
                if length > MAX_LINE:
                    limit = f"{MAX_LINE // 2**20} MiB" if MAX_LINE >= 2**20 else f"{MAX_LINE} bytes"
                    raise DataError(
                        f"line {number} is longer than {limit}; is a newline or a closing quote missing?",
                        file=path,
                    )
                if i < len(pieces) - 1:
                    number, length = number + 1, 0


def _check_header(text: str, sep: str, path: Path) -> None:
    """Refuse a header that names a column twice (pandas would rename it ``a.1``)."""
    first = next(csv.reader(io.StringIO(text[: text.find("\n") + 1 or len(text)]), delimiter=sep), [])
    seen: set[str] = set()
    for name in first:
        name = name.strip()
        if name and name in seen:
            raise DataError(f"column '{name}' appears twice in the header; give each column its own name", file=path)
        seen.add(name)


def file_fingerprint(path: Path) -> str:
    h = hashlib.sha256()
    if path.is_dir():
        for child in sorted(p for p in path.rglob("*") if p.is_file()):
            h.update(str(child.relative_to(path)).encode())
            h.update(child.read_bytes())
    else:
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def data_fingerprint(recipe: Recipe) -> str:
    """Hash of the data files' bytes and the settings that decide the splits."""
    h = hashlib.sha256()
    for which in ("train", "validation", "test"):
        path = recipe.data_path(which)
        h.update(f"{which}:".encode())
        if path is not None and path.exists():
            h.update(file_fingerprint(path).encode())
    d = recipe.data
    h.update(
        json.dumps(
            [d.validation_fraction, d.test_fraction, d.text_column, d.label_column, d.max_rows, d.feature_columns,
             *([d.max_eval_rows] if d.max_eval_rows != 10_000 else []),
             recipe.training.seed, recipe.task, recipe.task_options, *([d.format] if d.format else [])],
            sort_keys=True,
            default=str,
        ).encode()
    )
    return h.hexdigest()[:16]


def carve(split: Split, fraction: float, seed: int, stratify: Any = None, *, file: str = "") -> tuple[Split, Split]:
    """Split off *fraction* of *split* (stratified when keys are given and every class has
    at least two examples)."""
    from sklearn.model_selection import train_test_split

    n = len(split)
    if n < 4:
        raise DataError(f"only {n} rows; too few to split off a validation set", file=file)
    index = np.arange(n)
    keys = _strata(stratify, n * fraction)
    keep, held = train_test_split(index, test_size=fraction, random_state=seed, stratify=keys)
    return split.take(np.sort(keep)), split.take(np.sort(held))


def sample_rows(split: Split, rows: int, seed: int, stratify: Any = None) -> Split:
    """*rows* rows of *split* (stratified by *stratify* where every class has at least two
    rows), in their file order; the split itself when it has no more."""
    from sklearn.model_selection import train_test_split

    n = len(split)
    if rows <= 0 or n <= rows:
        return split
    kept, _ = train_test_split(np.arange(n), train_size=rows, random_state=seed, stratify=_strata(stratify, rows))
    return split.take(np.sort(kept))


def _strata(stratify: Any, smaller: float) -> np.ndarray | None:
    """The stratification keys, when every class has two rows and the smaller part of the
    split (*smaller* rows) can hold one of each; else None (a plain random split)."""
    if stratify is None:
        return None
    keys = np.asarray(stratify, dtype=str)
    values, counts = np.unique(keys, return_counts=True)
    return keys if counts.min() >= 2 and len(values) <= smaller else None


def _sniff_conll(path: Path) -> None:
    """A token task's table file (``.tsv``, ``.csv``, ``.txt``) that reads like CoNLL is
    refused with the setting that reads it."""
    if path.is_file() and detect_format(path) in ("csv", "tsv") and looks_like_conll(path):
        raise DataError(
            "looks like CoNLL (headerless word<TAB>tag lines, a blank line between sentences); "
            "set data.format: conll",
            file=path,
            field="data.format",
        )


def load_task_data(task: Task, recipe: Recipe) -> TaskData:
    """Read, validate and split the recipe's data for *task*."""
    d = recipe.data
    train_path = recipe.data_path("train")
    assert train_path is not None
    fmt = d.format
    if fmt is None and task.head == "token-classification":
        _sniff_conll(train_path)
    train_frame = read_table(train_path, max_rows=d.max_rows, fmt=fmt)
    label_names = task.label_names(train_frame, file=str(train_path))
    train = task.read(train_frame, split="train", file=str(train_path), label_names=label_names)
    columns = task.feature_columns()
    task.features = None
    if columns:
        if task.head != "sequence-classification":
            raise RecipeError(f"task '{task.name}' has a {task.head} head; table-column features need one "
                              "output per row (sequence-classification)", field="data.feature_columns")

        # Fitted on the whole file first so that an error names the file's row; refitted
        # below on the training rows alone if validation or test rows are split off.
        task.features = FeaturePipeline.fit(train_frame, columns, file=str(train_path))

    def load(which: str) -> Split | None:
        path = recipe.data_path(which)
        if path is None:
            return None
        if fmt is None and task.head == "token-classification":
            _sniff_conll(path)
        frame = read_table(path, max_rows=d.max_rows, fmt=fmt)
        if task.features is not None:
            task.features.transform(frame, file=str(path))  # a bad cell fails now, naming the file
        return task.read(frame, split=which, file=str(path), label_names=label_names)  # type: ignore[arg-type]

    test = load("test")
    if test is None and d.test_fraction > 0:
        train, test = carve(train, d.test_fraction, recipe.training.seed, task.stratify(train), file=str(train_path))
    validation = load("validation")
    if validation is None:
        train, validation = carve(
            train, d.validation_fraction, recipe.training.seed + 1, task.stratify(train), file=str(train_path)
        )
    sampled = {name: len(split) for name, split in (("validation", validation), ("test", test))
               if split is not None and d.max_eval_rows and len(split) > d.max_eval_rows}
    validation = sample_rows(validation, d.max_eval_rows, recipe.training.seed + 2, task.stratify(validation))
    if test is not None:
        test = sample_rows(test, d.max_eval_rows, recipe.training.seed + 3, task.stratify(test))
    if task.features is not None:
        if train.frame is not None and len(train.frame) != len(train_frame):
            task.features = FeaturePipeline.fit(train.frame, columns, file=str(train_path))
        if not task.features.active:
            task.features = None
    return TaskData(train=train, validation=validation, test=test, label_names=label_names, sampled=sampled)
