"""Empty cells in every kind of column, for every built-in task (a contract test).

Tables are generated from each task's sample data with a share of the cells of each
column blanked (a seeded draw per case), written as CSV (or JSONL where cells hold lists)
and read back the way a run reads them, so the columns have pandas 3's real dtypes
(``str`` columns holding NaN, floats holding NaN). Empty input cells must be read,
encoded, predicted on and used by the baseline; empty labels are one clear
:class:`~automl.errors.DataError` naming the label column.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from plugin_helpers import SAMPLES, data_spec, fake_outputs, frames

from automl import plugins
from automl.data import read_table
from automl.errors import DataError
from automl.task import TaskData

LABEL = {"fraud-detection": "is_fraud", "text-classification": "label", "text-regression": "rating",
         "token-classification": "tags"}
#: Tasks whose labelled rows need every input column (a sentence's words carry its tags):
#: an empty input cell there is a DataError naming the column, not a crash.
INPUTS_CARRY_LABELS = {"token-classification"}
SEEDS = [0, 1, 2]


def test_every_builtin_task_is_covered():
    assert set(LABEL) == set(SAMPLES)


def blank(frame, columns, share: float, seed: int):
    """A copy of *frame* with about *share* of the cells of *columns* empty (at least one
    per column, never all of them)."""
    rng = np.random.default_rng(seed)
    out = frame.copy().astype(object)
    n = len(out)
    for column in columns:
        k = min(n - 1, max(1, int(round(share * n))))
        rows = rng.choice(n, size=k, replace=False)
        out.loc[rows, column] = None
    return out


def roundtrip(frame, path: Path):
    """Write *frame* as CSV (JSONL where a cell holds a list) and read it back as a run does."""
    lists = any(isinstance(v, list | tuple | np.ndarray) for v in frame.iloc[0].tolist())
    if lists:
        path = path.with_suffix(".jsonl")
        rows = [{k: (list(v) if isinstance(v, list | tuple | np.ndarray) else v) for k, v in r.items()}
                for r in frame.to_dict(orient="records")]
        path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    else:
        path = path.with_suffix(".csv")
        frame.to_csv(path, index=False)
    return read_table(path)


def make_task(name, data_root):
    cls = plugins.get_tasks()[name]
    return cls(cls.Options(), data_spec(name, data_root))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_empty_input_cells(name, seed, data_root, tmp_path, tokenizer):
    label = LABEL[name]
    raw = frames(name, data_root)
    inputs = [c for c in raw["train"].columns if c != label]
    share = [0.05, 0.2, 0.5][seed]
    tables = {k: roundtrip(blank(f, inputs, share, seed + i), tmp_path / k) for i, (k, f) in enumerate(raw.items())}
    task = make_task(name, data_root)
    names = task.label_names(tables["train"], file="train.csv")
    if name in INPUTS_CARRY_LABELS:
        with pytest.raises(DataError) as info:
            task.read(tables["train"], split="train", file="train.csv", label_names=names)
        assert any(f"'{c}'" in str(info.value) for c in inputs) and "\n" not in str(info.value)
        return
    splits = {k: task.read(f, split=k, file=f"{k}.csv", label_names=names) for k, f in tables.items()}
    task.labels = names
    data = TaskData(train=splits["train"], validation=splits["validation"], test=splits["test"], label_names=names)
    task.prepare(data)
    for split in splits.values():
        encoded = task.encode(split, tokenizer, 48)
        assert len(encoded["input_ids"]) == len(split)
        assert all(len(ids) > 0 for ids in encoded["input_ids"])
    result = task.baseline(data, seed=0)
    if result is not None:
        assert math.isfinite(result.validation[task.default_metric])
        assert result.test is not None and math.isfinite(result.test[task.default_metric])


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_predict_with_empty_cells(name, seed, data_root, tmp_path, tokenizer):
    """``automl predict`` reads unlabelled rows: empty cells in any input column are fine."""
    label = LABEL[name]
    raw = frames(name, data_root)
    task = make_task(name, data_root)
    task.labels = task.label_names(raw["train"], file="train")
    train = task.read(raw["train"], split="train", file="train", label_names=task.labels)
    task.prepare(TaskData(train=train, validation=train, test=None, label_names=task.labels))
    rows = raw["test"].drop(columns=[label])
    table = roundtrip(blank(rows, list(rows.columns), [0.1, 0.3, 0.6][seed], seed), tmp_path / "new")
    split = task.read(table, split="predict", file="new.csv", label_names=task.labels)
    assert split.labels is None and len(split) == len(table)
    encoded = task.encode(split, tokenizer, 48)
    outputs = fake_outputs(task, split, encoded)
    predictions = task.predict(outputs, split, encoded, {})
    assert len(predictions) == len(table)
    assert all("prediction" in p for p in predictions)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("which", ["train", "validation"])
@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_empty_label_cells_are_one_clear_error(name, which, seed, data_root, tmp_path):
    label = LABEL[name]
    raw = frames(name, data_root)
    tables = dict(raw)
    tables[which] = roundtrip(blank(raw[which], [label], [0.01, 0.1, 0.4][seed], seed), tmp_path / which)
    task = make_task(name, data_root)
    with pytest.raises(DataError) as info:
        names = task.label_names(tables["train"], file="train.csv")
        for k in ("train", "validation"):
            task.read(tables[k], split=k, file=f"{k}.csv", label_names=names)
    message = str(info.value)
    assert f"'{label}'" in message and "\n" not in message
    assert "row " in message or "empty" in message


def test_an_empty_cell_in_an_integer_label_column_names_its_row(tmp_path):
    """pandas reads 0/1 labels with one empty cell as floats; the labels stay '0' and '1'
    (so positive_label '1' still matches) and the empty cell is the error."""
    from types import SimpleNamespace

    import pandas as pd

    from automl_plugins.fraud import FraudDetection, FraudOptions

    path = tmp_path / "train.csv"
    pd.DataFrame({"amount": [1.0, 2.0, 3.0, 4.0], "is_fraud": [0, 1, None, 0]}).to_csv(path, index=False)
    frame = pd.read_csv(path)
    assert frame["is_fraud"].dtype == float
    task = FraudDetection(FraudOptions(positive_label="1"), SimpleNamespace(label_column="is_fraud", text_column="text", feature_columns=None))
    names = task.label_names(frame, file="train.csv")
    assert names == ["0", "1"]
    with pytest.raises(DataError, match=r"row 3: empty label in column 'is_fraud'"):
        task.read(frame, split="train", file="train.csv", label_names=names)
