"""Tokenised splits, computed once per run and cached on disk (no pickle).

The cache key is the data fingerprint + the tokenizer (backbone fingerprint) + max length,
so a second worker, a resumed run or the next trial never tokenises again.
``input_ids``, ``labels`` and the table-column features (``numeric``, ``categorical``)
live in an ``.npz`` (ragged lists as flat array + offsets), any other keys a task adds
(``word_ids``, ...) in a JSON sidecar.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from automl.features import FEATURE_KEYS
from automl.task import Encoded, Split, Task

#: Keys stored as arrays; the rest goes to the JSON sidecar.
ARRAY_KEYS = ("input_ids", "labels", *FEATURE_KEYS)
#: ``training.max_length: auto`` (:func:`auto_max_length`): the share of training rows whose
#: whole encoding fits, the most tokens it may choose, the fewest, the rows it measures.
AUTO_COVERAGE = 0.95
AUTO_MAX_LENGTH = 512
AUTO_MIN_LENGTH = 16
AUTO_SAMPLE = 5000


def cache_key(data_fingerprint: str, tokenizer_fingerprint: str, max_length: int, task: str) -> str:
    raw = f"{data_fingerprint}|{tokenizer_fingerprint}|{max_length}|{task}"
    return hashlib.sha256(raw.encode()).hexdigest()[:20]


def _is_ragged(values: list[Any]) -> bool:
    return bool(values) and isinstance(values[0], list | tuple | np.ndarray)


def save_encoded(path: Path, encoded: Encoded) -> None:
    arrays: dict[str, np.ndarray] = {}
    extras: dict[str, Any] = {}
    for key, values in encoded.items():
        if key in ARRAY_KEYS:
            if _is_ragged(values) and key not in FEATURE_KEYS:
                lengths = np.fromiter((len(v) for v in values), dtype=np.int64, count=len(values))
                flat = np.concatenate([np.asarray(v) for v in values]) if len(values) else np.zeros(0)
                arrays[f"{key}.flat"] = flat
                arrays[f"{key}.offsets"] = np.concatenate([[0], np.cumsum(lengths)])
            else:
                arrays[key] = np.asarray(values)
        else:
            extras[key] = values
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    if extras:
        path.with_suffix(".json").write_text(json.dumps(extras))
    os.replace(tmp, path)


def load_encoded(path: Path) -> Encoded:
    out: Encoded = {}
    with np.load(path, allow_pickle=False) as npz:
        names = set(npz.files)
        for key in ARRAY_KEYS:
            if f"{key}.flat" in names:
                flat, offsets = npz[f"{key}.flat"], npz[f"{key}.offsets"]
                out[key] = [flat[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]
            elif key in names:
                out[key] = list(npz[key])
    sidecar = path.with_suffix(".json")
    if sidecar.exists():
        out.update(json.loads(sidecar.read_text()))
    return out


def encode_split(task: Task, split: Split, tokenizer: Any, max_length: int, *, file: str | None = None) -> Encoded:
    """The task's encoding of *split* plus, when the task has a fitted feature pipeline,
    its ``numeric`` and ``categorical`` features (one array per example)."""
    encoded = task.encode(split, tokenizer, max_length)
    n = len(split)
    for k, v in encoded.items():
        if len(v) != n:
            raise ValueError(f"task '{task.name}' encode() returned {len(v)} '{k}' for {n} examples")
    if task.features is not None:
        if split.frame is None:
            raise ValueError(f"task '{task.name}' names feature columns but its split has no frame")
        for key, array in task.features.transform(split.frame, file=file).items():
            encoded[key] = list(array)
    return encoded


def encode_splits(
    task: Task,
    splits: dict[str, Split],
    tokenizer: Any,
    max_length: int,
    cache_dir: Path | None = None,
    key: str | None = None,
) -> tuple[dict[str, Encoded], bool]:
    """Encode every split, reading from / writing to the cache. Returns (encoded, hit)."""
    out: dict[str, Encoded] = {}
    hit = True
    for name, split in splits.items():
        path = cache_dir / f"{key}-{name}.npz" if cache_dir is not None and key else None
        if path is not None and path.exists():
            out[name] = load_encoded(path)
            continue
        hit = False
        encoded = encode_split(task, split, tokenizer, max_length, file=f"{name} split")
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            save_encoded(path, encoded)
            encoded = load_encoded(path)
        out[name] = encoded
    return out, hit


def auto_max_length(task: Task, split: Split, tokenizer: Any, *, seed: int = 0, coverage: float = AUTO_COVERAGE) -> dict[str, Any]:
    """``training.max_length: auto``: the length that holds the whole encoding of
    *coverage* (the task's :attr:`~automl.task.Task.auto_length_coverage`,
    :data:`AUTO_COVERAGE` by default) of the training rows (a seeded sample of at most
    :data:`AUTO_SAMPLE`), rounded up to a multiple of 8, between :data:`AUTO_MIN_LENGTH` and
    :data:`AUTO_MAX_LENGTH` (or the tokenizer's own limit, if lower). The rows are encoded
    by the task itself at the upper limit, so a table's columns count as the task joins
    them. Deterministic in the rows, the tokenizer and *seed* (every worker and a resumed
    run choose the same), and a second or two of tokenising. Returns ``{"max_length",
    "coverage", "rows", "quantile_tokens", "longest"}``."""
    limit = AUTO_MAX_LENGTH
    own = getattr(tokenizer, "model_max_length", None)
    if isinstance(own, int) and AUTO_MIN_LENGTH <= own < limit:
        limit = own
    n = len(split)
    sample = split.take(np.sort(np.random.default_rng(seed).choice(n, AUTO_SAMPLE, replace=False))) if n > AUTO_SAMPLE else split
    lengths = np.array([len(ids) for ids in task.encode(sample, tokenizer, limit)["input_ids"]] or [AUTO_MIN_LENGTH])
    quantile = float(np.quantile(lengths, coverage))
    chosen = int(min(limit, max(AUTO_MIN_LENGTH, 8 * int(np.ceil(quantile / 8)))))
    return {
        "max_length": chosen,
        "coverage": float(np.mean(lengths <= chosen)),
        "rows": len(sample),
        "quantile_tokens": quantile,
        "longest": int(lengths.max()),
    }


def describe_auto_length(choice: dict[str, Any]) -> str:
    """One line on what :func:`auto_max_length` chose (``automl run``, ``automl recipe check``)."""
    return (
        f"max_length auto: {choice['max_length']} tokens, which hold {choice['coverage']:.0%} of {choice['rows']:,} "
        f"training rows whole (the longest takes {choice['longest']:,})"
    )
