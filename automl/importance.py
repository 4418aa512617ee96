"""Global importance of an exported model: which input columns and which words matter.

* **Columns**: permutation importance (Breiman 2001, as AutoGluon's
  ``feature_importance``): on up to :data:`ROWS` held-out rows (the validation rows, or the
  test rows where the export was fitted on the validation rows too), each input column's
  values are shuffled across the rows, :data:`REPEATS` times, and the objective's drop
  (signed so that positive means the model needed the column) is recorded; the result is
  the mean and standard deviation over the repeats. It takes only ``model.outputs``, so
  every exported kind is measured the same way.
* **Words**: each of up to :data:`WORD_ROWS` validation rows is explained
  (:mod:`automl.explain`); a word counts toward a class each time its contribution pushes
  the row's explained output toward that class (for a binary classifier a negative
  contribution pushes toward the other class). The most frequent words per class are kept.
  Needs ``automl[explain]``; without it only the columns are measured.

It is computed lazily, when a report is written (at the end of ``automl run`` or by
``automl report``), and kept in ``best/importance.json`` so that the next report reads it;
the model card (``best/README.md``) gets the same figures.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from automl.data import carve, read_table
from automl.encoding import encode_split
from automl.explain import MAX_UNITS, explain_columns, explain_model, is_word
from automl.results.predict import META_FILE, load_model

if TYPE_CHECKING:
    import pandas as pd

IMPORTANCE_FILE = "importance.json"
#: Validation rows the columns are shuffled over, and repeats per column.
ROWS = 200
REPEATS = 3
#: Fewer rows than this and a run out of time computes no importance (``automl report``
#: computes it later, without a time limit).
MIN_ROWS = 40
#: Validation rows explained for the words of each class.
WORD_ROWS = 16
#: Words kept per class.
TOP_WORDS = 10
#: What the report says where the explained rows' text came as spans of words only.
SPANS_NOTE = (f"No words listed: the explained rows hold more words than an explanation's {MAX_UNITS} units, "
              "so their text was explained by spans of words (automl explain shows them row by row).")


def objective_value(model: Any, frame: pd.DataFrame, metric: str, *, file: str = "<validation>") -> float:
    """The model's *metric* on labelled rows, with the export's calibration."""
    task = model.task
    outputs = model.outputs(frame, file=file)
    split = task.read(frame, split="validation", file=file, label_names=task.labels)
    if getattr(model, "tokenizer", None) is not None:
        encoded = encode_split(task, split, model.tokenizer, int(model.meta.get("max_length") or 512), file=file)
    else:
        encoded = {"labels": list(split.labels or [])}
    metrics = task.compute_metrics(outputs, split, encoded, model.meta.get("calibration") or {})
    return float(metrics[metric])


def permutation_importance(
    model: Any, frame: pd.DataFrame, *, metric: str, maximize: bool, repeats: int = REPEATS, seed: int = 0
) -> list[dict[str, Any]]:
    """Each explained input column's importance: the objective's mean drop when the column
    is shuffled, its standard deviation and the single repeats, largest first."""
    frame = frame.reset_index(drop=True)
    base = objective_value(model, frame, metric)
    rng = np.random.default_rng(seed)
    out = []
    for column, _ in explain_columns(model.task, frame):
        drops = []
        for _ in range(repeats):
            shuffled = frame.copy()
            values = frame[column].tolist()
            shuffled[column] = [values[i] for i in rng.permutation(len(values))]
            value = objective_value(model, shuffled, metric)
            drops.append(base - value if maximize else value - base)
        finite = [d for d in drops if math.isfinite(d)]
        mean = float(np.mean(finite)) if finite else float("nan")
        std = float(np.std(finite, ddof=1)) if len(finite) > 1 else 0.0
        out.append({"column": column, "importance": mean, "stddev": std, "repeats": drops})
    out.sort(key=lambda r: -r["importance"] if math.isfinite(r["importance"]) else math.inf)
    return out


def class_words(model: Any, frame: pd.DataFrame, *, top: int = TOP_WORDS) -> tuple[dict[str, list[list[Any]]], int]:
    """The words that most often push rows toward each class, ``{class: [[word, count], ...]}``
    (English stop words such as "the" and "and" left out), and how many spans of words were
    left out: a row of more words than an explanation's units is explained by spans of
    consecutive words, each as a rule found once ("later while deployed feb-aug 04 (no"
    listed as a VAERS class's word), which say nothing of a class."""
    from string import punctuation

    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS as STOP_WORDS

    labels = list(model.task.labels or [])
    counts: dict[str, Counter[str]] = {}
    spans = 0
    for explanation in explain_model(model, frame.reset_index(drop=True)):
        for t in explanation.targets:
            other = [c for c in labels if c != t.target]
            for unit in explanation.units:
                value = t.contributions.get(unit.key, 0.0)
                if unit.end is not None:
                    spans += 1
                    continue
                word = unit.text.lower().strip(punctuation)  # "fever," and "fever" are one word
                if unit.word is None or not is_word(word) or word in STOP_WORDS or value == 0.0:
                    continue
                if value > 0:
                    toward = t.target
                elif len(labels) == 2 and other:
                    toward = other[0]
                else:
                    continue
                counts.setdefault(toward, Counter())[word] += 1
    return {k: [[w, n] for w, n in c.most_common(top)] for k, c in sorted(counts.items())}, spans


def held_out_frame(recipe: dict[str, Any], model: Any, split: str = "validation") -> pd.DataFrame | None:
    """The run's *split* rows (``validation`` or ``test``), read as the run read them (a file,
    or the share split off the training file with the run's seed); ``None`` when the data is
    gone or the run has no such rows."""
    data = recipe.get("data") or {}
    try:
        if data.get(split):
            return read_table(data[split], max_rows=data.get("max_rows"))
        train = read_table(data["train"], max_rows=data.get("max_rows"))
    except Exception:
        return None
    task = model.task
    rows = task.read(train, split="train", file=str(data["train"]), label_names=task.labels)
    seed = int((recipe.get("training") or {}).get("seed", 42))
    test_fraction = float(data.get("test_fraction") or 0)
    if not data.get("test") and test_fraction > 0:
        rows, test = carve(rows, test_fraction, seed, task.stratify(rows))
        if split == "test":
            return test.frame
    if split == "test":
        return None
    _, validation = carve(rows, float(data.get("validation_fraction") or 0.2), seed + 1, task.stratify(rows))
    return validation.frame


def fitted_on_validation(best_dir: Path) -> bool:
    """Whether the export, or a member of an exported ensemble, was fitted on the run's
    validation rows too (a baseline refit on every labelled row): its importance on those
    rows would measure what it remembers of them."""
    for path in [best_dir / META_FILE, *sorted(best_dir.glob(f"members/*/{META_FILE}"))]:
        try:
            if json.loads(path.read_text()).get("fitted_on_validation"):
                return True
        except (OSError, ValueError):
            continue
    return False


def compute(best_dir: Path, recipe: dict[str, Any], *, rows: int = ROWS, repeats: int = REPEATS,
            word_rows: int = WORD_ROWS, seed: int = 0, seconds: float | None = None) -> dict[str, Any] | None:
    """The importance of the export in *best_dir* on the run's held-out rows: validation, or
    test where the export was fitted on the validation rows too (:func:`fitted_on_validation`;
    without test rows then no column importance, ``columns_note`` says why). With
    *seconds* (what is left of a run's timeout) it shuffles fewer rows (at least
    :data:`MIN_ROWS`), once per column, and explains no words, as far as needed to fit at the
    pace of one scoring of the rows; ``None`` when even that does not fit."""
    start = time.perf_counter()
    model = load_model(best_dir, device="cpu")
    # Held-out rows only: on the validation rows it was fitted on, the exported baseline of
    # all 9,000 VAERS rows scored PR-AUC 1.0 whatever column was shuffled.
    split = "test" if fitted_on_validation(best_dir) else "validation"
    frame, shuffle = held_out_frame(recipe, model, split), True
    if split == "test" and (frame is None or len(frame) == 0):  # nothing to shuffle; words on validation
        frame, split, shuffle = held_out_frame(recipe, model), "validation", False
    if frame is None or len(frame) == 0:
        return None
    if len(frame) > rows:
        frame = frame.sample(n=rows, random_state=seed)
    if seconds is not None:
        tick = time.perf_counter()
        model.outputs(frame)
        per_row = (time.perf_counter() - tick) / len(frame)
        left = seconds - (time.perf_counter() - start)
        columns = max(1, len(frame.columns))
        if per_row * len(frame) * (1 + columns * repeats) > left:
            repeats = 1
            fit = int(left / (per_row * (1 + columns))) if per_row > 0 else len(frame)
            if fit < MIN_ROWS:
                return None
            frame = frame.head(min(len(frame), fit))
            word_rows = 0
    objective = model.meta.get("objective") or {}
    metric = str(objective.get("metric") or model.task.default_metric)
    maximize = (objective.get("direction") or model.task.metric(metric).direction) == "maximize"
    result: dict[str, Any] = {
        "metric": metric, "rows": len(frame), "repeats": repeats, "split": split,
        "columns": permutation_importance(model, frame, metric=metric, maximize=maximize, repeats=repeats, seed=seed)
        if model.task.head == "sequence-classification" and shuffle else [],
    }
    if not shuffle:
        result["columns_note"] = ("No column importance: the model was fitted on the validation rows too, "
                                  "and the run has no test rows to shuffle.")
    try:
        if word_rows <= 0:
            raise ValueError("no time left in the run's timeout to explain rows")
        result["words"], spans = class_words(model, frame.head(word_rows))
        result["word_rows"] = min(word_rows, len(frame))
        if spans and not result["words"]:
            result["words_note"] = SPANS_NOTE
    except Exception as exc:  # the optional extra is missing, or the model cannot be explained
        result["words"], result["words_note"] = {}, str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    result["seconds"] = round(time.perf_counter() - start, 1)
    return result


def load_or_compute(best_dir: Path, recipe: dict[str, Any], *, seconds: float | None = None) -> dict[str, Any] | None:
    """``best/importance.json``, computed (and the model card extended) when missing; within
    *seconds* when given (:func:`compute`)."""
    path = best_dir / IMPORTANCE_FILE
    if path.exists():
        try:
            return json.loads(path.read_text())
        except ValueError:
            pass
    result = compute(best_dir, recipe, seconds=seconds)
    if result is None:
        return None
    path.write_text(json.dumps(result, indent=1, default=str))
    card = best_dir / "README.md"
    if card.exists():
        text = card.read_text()
        if "## What the model looks at" not in text:
            card.write_text(text.rstrip("\n") + "\n\n" + "\n".join(markdown(result)) + "\n")
    return result


def markdown(result: dict[str, Any]) -> list[str]:
    """The importance as Markdown (model card and report)."""
    lines = ["## What the model looks at", ""]
    if result.get("columns"):
        lines += [
            f"Permutation importance on {result['rows']} {result.get('split', 'validation')} rows ({result['repeats']} shuffles per column): "
            f"the drop of {result['metric']} when the column's values are shuffled across rows.", "",
            "| column | importance | ± std |", "|---|---:|---:|",
        ]
        lines += [f"| {r['column']} | {r['importance']:.4f} | {r['stddev']:.4f} |" for r in result["columns"]]
        lines.append("")
    elif result.get("columns_note"):
        lines += [result["columns_note"], ""]
    for label, words in (result.get("words") or {}).items():
        lines.append(f"Words that most often push toward **{label}**: " + ", ".join(f"{w} ({n})" for w, n in words))
        lines.append("")
    if result.get("words_note") == SPANS_NOTE:
        lines += [SPANS_NOTE, ""]
    return lines


def plot(result: dict[str, Any]) -> Any:
    """A bar chart of the column importance with its spread (one standard deviation)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(reversed(result["columns"]))
    fig, ax = plt.subplots(figsize=(6.5, 0.45 * len(rows) + 1.4))
    values = [r["importance"] for r in rows]
    ax.barh([r["column"] for r in rows], values, xerr=[r["stddev"] for r in rows],
            color=["#d62728" if v > 0 else "#7f7f7f" for v in values], capsize=3)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_xlabel(f"drop of {result['metric']} when shuffled (mean ± std over {result['repeats']})")
    ax.set_title(f"Column importance ({result['rows']} {result.get('split', 'validation')} rows)")
    fig.tight_layout()
    return fig
