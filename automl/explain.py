"""Explanations: why a model predicted what it did for a row, in the row's own columns and words.

A *unit* of a row is what a reason names: a column as a whole (a number or a category,
with its value) or one word of a text column (the task says which columns are which:
:meth:`automl.task.Task.explain_columns`). Each row gets one signed contribution per unit
toward a *target*: the positive class of a binary classifier (its log-odds), the
predicted class of a multi-class one (its log-probability), the value of a regression,
or, for a token head, each predicted entity (the task's :meth:`~automl.task.Task.explain_targets`).

How each kind of export is explained (docs/explain.md):

* a fine-tuned transformer (full, LoRA merged, or fused with table columns): Captum's
  ``LayerIntegratedGradients`` over the word embeddings, from a baseline in which every
  token that stands for a unit is the padding token (special tokens and the glue between
  columns stay, so the units' attributions add up to the whole change of the output); for
  a fused model also over the
  feature tower's inputs (the normalised numbers, from the encoding of a missing value,
  and each category embedding, from the "missing" slot). Token attributions are summed
  into the units they belong to (:meth:`~automl.task.Task.token_units`). Captum's
  convergence delta (the sum of the attributions minus the change of the output) is
  reported per target;
* the classical baseline: SHAP's permutation explainer over the row's units, where a
  missing unit is deleted (a word left out of its cell, a column left empty); its
  attributions sum exactly to the output of the row minus that of the row with every
  unit deleted. It treats any scikit-learn model (trees, TF-IDF + logistic regression,
  a blend of several) the same way, in terms of the raw columns and words;
* an ensemble: each member is explained as above; a classifier's member attributions are
  rescaled to its change in probability of the target class (the rescale rule: each
  unit keeps its share), and the ensemble's attribution of a unit is the weighted sum
  over members with the ensemble's weights, which sums to the ensemble's probability
  minus the weighted members' baseline probabilities, as the ensemble averages
  probabilities; a regression ensemble adds its members' attributions by weight.
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from automl.encoding import encode_split
from automl.errors import UserError
from automl.features import is_missing

if TYPE_CHECKING:
    import pandas as pd

    from automl.task import ExplainTarget, Task

#: The one line a user without the optional extra sees.
MISSING_EXTRA = "automl explain needs the optional extra: pip install 'automl[explain]' (captum and shap)"
#: Units (columns, words or spans of words) a row is explained by, at most.
MAX_UNITS = 24
#: Integration steps of the integrated gradients, and rows attributed in one batch.
STEPS = 24
ROWS_PER_BATCH = 8
EXPLAIN_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".html": "html"}


def require_extra() -> None:
    """Fail with one line when captum or shap is missing."""
    try:
        import captum  # noqa: F401
        import shap  # noqa: F401
    except ImportError:
        raise UserError(MISSING_EXTRA) from None


# --------------------------------------------------------------------------- units


@dataclass(frozen=True)
class Unit:
    """A column (``word is None``), or a span of words ``[word, end)`` of a text column (one
    word unless the row has more words than :data:`MAX_UNITS` allows)."""

    column: str
    word: int | None
    text: str
    end: int | None = None

    @property
    def key(self) -> tuple[str, int | None]:
        return (self.column, self.word)

    def words(self) -> range:
        return range(0) if self.word is None else range(self.word, self.end if self.end is not None else self.word + 1)


@dataclass
class Reason:
    """One reason: a column with its value, or a word (or span of words, from *position*)
    of a text column, and its signed contribution toward the target."""

    column: str
    contribution: float
    value: str | None = None
    word: str | None = None
    position: int | None = None
    length: int | None = None

    def label(self) -> str:
        if self.word is not None:
            return f"{self.column}: '{self.word}'"
        return f"{self.column}={self.value}"


@dataclass
class TargetExplanation:
    """The attributions of one target of a row."""

    target: str
    output: float
    base: float
    delta: float | None
    contributions: dict[tuple[str, int | None], float]
    method: str

    def reasons(self, units: Sequence[Unit], top: int | None = None) -> list[Reason]:
        by_key = {u.key: u for u in units}
        ranked = sorted(self.contributions.items(), key=lambda kv: -abs(kv[1]))
        out = []
        for key, value in ranked:
            unit = by_key.get(key)
            if unit is None or value == 0.0:
                continue
            if unit.word is None:
                out.append(Reason(unit.column, float(value), value=unit.text))
            else:
                n = len(unit.words())
                out.append(Reason(unit.column, float(value), word=unit.text, position=unit.word, length=n if n > 1 else None))
        return out[:top] if top is not None else out


@dataclass
class RowExplanation:
    """A row's prediction and the explanation of each of its targets."""

    row: int
    prediction: Any
    score: float | None
    units: list[Unit]
    targets: list[TargetExplanation] = field(default_factory=list)

    def to_json(self, top: int = 5) -> dict[str, Any]:
        return {
            "row": self.row,
            "prediction": _plain(self.prediction),
            "score": self.score,
            "targets": [
                {
                    "target": t.target,
                    "method": t.method,
                    "output": t.output,
                    "baseline_output": t.base,
                    "convergence_delta": t.delta,
                    "reasons": [{k: v for k, v in asdict(r).items() if v is not None} for r in t.reasons(self.units, top)],
                }
                for t in self.targets
            ],
        }


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return value


def explain_columns(task: Task, frame: pd.DataFrame) -> list[tuple[str, str]]:
    """The task's explained columns that the frame has."""
    return [(c, kind) for c, kind in task.explain_columns() if c in frame.columns]


def cell_words(value: Any) -> list[str]:
    """The words of a text cell: a list's items, or the text split at white space."""
    if isinstance(value, list | tuple | np.ndarray):
        return [str(v) for v in value]
    if is_missing(value):
        return []
    return str(value).split()


def row_units(columns: Sequence[tuple[str, str]], row: pd.Series, max_units: int = MAX_UNITS) -> list[Unit]:
    """The units of one row (see the module docstring). When the row's words and columns
    are more than *max_units*, the words of each text column are grouped into spans of
    consecutive words (the text columns share the units left after the value columns, by
    their number of words), so that the cost of explaining a row stays bounded."""
    words = {c: cell_words(row[c]) for c, kind in columns if kind == "text"}
    values = [c for c, kind in columns if kind != "text"]
    total = sum(len(w) for w in words.values())
    budget = max(max_units - len(values), len(words))
    units = []
    for column, kind in columns:
        if kind != "text":
            value = row[column]
            units.append(Unit(column, None, "" if is_missing(value) else str(_plain(value))))
            continue
        cell = words[column]
        size = 1 if total <= budget else max(1, math.ceil(len(cell) / max(1, budget * len(cell) // max(total, 1))))
        units += [Unit(column, i, " ".join(cell[i : i + size]), min(i + size, len(cell)) if size > 1 else None)
                  for i in range(0, len(cell), size)]
    return units


def word_keys(units: Sequence[Unit]) -> dict[tuple[str, int | None], tuple[str, int | None]]:
    """``(column, word index) -> unit key`` for every word the units cover (and each
    column unit to itself)."""
    out: dict[tuple[str, int | None], tuple[str, int | None]] = {}
    for u in units:
        if u.word is None:
            out[u.key] = u.key
        for w in u.words():
            out[(u.column, w)] = u.key
    return out


def delete_units(row: pd.Series, units: Sequence[Unit], copy: Any = None) -> Any:
    """*row* without *units*: a column left empty, a word left out of its cell (a copy of
    the row; ``copy=dict`` makes it a dict, which is faster to build frames from)."""
    row = copy(row) if copy is not None else row.copy()
    words: dict[str, set[int]] = {}
    for u in units:
        if u.word is None:
            row[u.column] = None
        else:
            words.setdefault(u.column, set()).update(u.words())
    for column, gone in words.items():
        value = row[column]
        kept = [w for i, w in enumerate(cell_words(value)) if i not in gone]
        row[column] = kept if isinstance(value, list | tuple | np.ndarray) else " ".join(kept)
    return row


# --------------------------------------------------------------------------- targets


def sequence_target(task: Task, logits: np.ndarray) -> tuple[str, int | None]:
    """``(name, class)`` a sequence head's row is explained toward: the positive class of a
    binary classifier (class ``None``: the log-odds), the predicted class otherwise;
    ``("value", None)`` for a regression."""
    labels = list(task.labels or [])
    if task.problem_type == "regression" or logits.shape[-1] == 1:
        return "value", None
    if logits.shape[-1] == 2:
        return (labels[1] if len(labels) == 2 else "1"), None
    c = int(np.argmax(logits))
    return (labels[c] if c < len(labels) else str(c)), c


def target_value(outputs: Any, cls: int | None, regression: bool) -> Any:
    """The explained quantity of a batch of sequence outputs (numpy or torch)."""
    if regression:
        return outputs[:, 0]
    if cls is None:
        return outputs[:, 1] - outputs[:, 0]
    if isinstance(outputs, np.ndarray):
        z = outputs - outputs.max(axis=1, keepdims=True)
        return z[:, cls] - np.log(np.exp(z).sum(axis=1))
    import torch

    return torch.log_softmax(outputs, dim=-1)[:, cls]


# --------------------------------------------------------------------------- transformers


def _encode(model: Any, frame: pd.DataFrame, file: str) -> tuple[Any, dict[str, list[Any]]]:
    task = model.task
    split = task.read(frame, split="predict", file=file, label_names=task.labels)
    max_length = int(model.meta.get("max_length") or 512)
    return split, encode_split(task, split, model.tokenizer, max_length, file=file)


def explain_transformer(
    model: Any, frame: pd.DataFrame, *, file: str = "<input>", steps: int = STEPS, rows_per_batch: int = ROWS_PER_BATCH
) -> list[RowExplanation]:
    """Layer integrated gradients (Captum) for a fine-tuned or fused export. Rows of a
    sequence head are attributed in batches (padded, masked); a token head's rows one
    target (entity) at a time."""
    import warnings

    import torch
    from captum.attr import LayerIntegratedGradients

    if model.meta.get("format") == "onnx":
        raise UserError("an ONNX export cannot be explained (no gradients); explain the PyTorch export it came from")
    task, net, tokenizer = model.task, model.model, model.tokenizer
    net.eval()
    frame = frame.reset_index(drop=True)
    split, encoded = _encode(model, frame, file)
    pad = tokenizer.pad_token_id or 0
    outputs = model.outputs(frame, file=file)
    predictions = task.predict(outputs, split, encoded, model.meta.get("calibration") or {})
    keys = [k for k in ("numeric", "categorical") if k in encoded]
    base_encoded = None
    if keys and task.features is not None:  # the feature tower's baseline: every feature column missing
        empty = frame.copy()
        for column in task.features.columns:
            empty[column] = None
        base_encoded = encode_split(task, task.read(empty, split="predict", file=file, label_names=task.labels),
                                    tokenizer, int(model.meta.get("max_length") or 512), file=file)
    from automl.fusion import FusionModel  # torch: the CLI imports this module without it

    encoder = net.encoder if isinstance(net, FusionModel) else net  # fused: with or without table columns
    layers: list[Any] = [encoder.get_input_embeddings()]
    feature_units: list[list[str]] = []
    if "numeric" in keys:
        layers.append(net.numeric_input)
        feature_units.append([c.name for c in task.features.numeric])  # type: ignore[union-attr]
    if "categorical" in keys:
        layers += list(net.categorical.embeddings)
        feature_units += [[c.name] for c in task.features.categorical]  # type: ignore[union-attr]
    specials = set(tokenizer.all_special_ids)
    device = next(net.parameters()).device
    regression = task.problem_type == "regression"
    columns = explain_columns(task, frame)

    results = [RowExplanation(i, predictions[i].get("prediction"), _score(predictions[i]), row_units(columns, frame.iloc[i]))
               for i in range(len(frame))]
    units_of = [task.token_units(split, encoded, i, tokenizer) for i in range(len(frame))]

    def tensors(index: list[int]) -> tuple[list[Any], list[Any], Any]:
        width = max(len(encoded["input_ids"][i]) for i in index)
        ids = [list(encoded["input_ids"][i]) + [pad] * (width - len(encoded["input_ids"][i])) for i in index]
        mask = [[1] * len(encoded["input_ids"][i]) + [0] * (width - len(encoded["input_ids"][i])) for i in index]
        inputs: list[Any] = [torch.tensor(ids, device=device)]
        # The baseline masks the tokens that stand for a unit (padding token); special tokens and
        # the glue between columns ("memo: ", " | ") stay, so they get no attribution and the
        # units' attributions add up to the whole change of the output.
        masked = [[pad if units_of[i][p] is not None and t not in specials else t for p, t in enumerate(row[: len(units_of[i])])]
                  + row[len(units_of[i]) :] for i, row in zip(index, ids, strict=True)]
        baselines: list[Any] = [torch.tensor(masked, device=device)]
        for key in keys:
            inputs.append(torch.as_tensor(np.asarray([encoded[key][i] for i in index]), device=device))
            base = [base_encoded[key][i] if base_encoded is not None else np.zeros_like(encoded[key][i]) for i in index]
            baselines.append(torch.as_tensor(np.asarray(base), device=device))
        return inputs, baselines, torch.tensor(mask, device=device)

    def logits_of(ids: Any, rest: tuple[Any, ...]) -> Any:
        *features, attention = rest
        kwargs = {"input_ids": ids, "attention_mask": attention, **dict(zip(keys, features, strict=True))}
        return net(**kwargs).logits.float()

    def attribute(forward: Any, index: list[int], target: Any) -> tuple[list[Any], np.ndarray, np.ndarray, np.ndarray]:
        inputs, baselines, mask = tensors(index)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "multiple layers provided": the layers are independent inputs
            lig = LayerIntegratedGradients(forward, layers if len(layers) > 1 else layers[0])
            attributions, delta = lig.attribute(
                tuple(inputs), baselines=tuple(baselines), additional_forward_args=(mask,), target=target,
                n_steps=steps, return_convergence_delta=True, internal_batch_size=steps * len(index),
            )
        with torch.no_grad():
            out = forward(*inputs, mask).detach().cpu().numpy()
            base = forward(*baselines, mask).detach().cpu().numpy()
        parts = attributions if isinstance(attributions, list) else [attributions]
        pick = np.arange(len(index))
        column = np.zeros(len(index), dtype=int) if target is None else np.asarray(target)
        if out.ndim == 1:
            return parts, out, base, delta.detach().cpu().numpy().reshape(-1)
        return parts, out[pick, column], base[pick, column], delta.detach().cpu().numpy().reshape(-1)

    def contributions_of(parts: list[Any], j: int, i: int) -> dict[tuple[str, int | None], float]:
        found: dict[tuple[str, int | None], float] = {}
        per_token = parts[0][j].sum(dim=-1).detach().cpu().numpy()
        keys_of = word_keys(results[i].units)
        for unit, value in zip(units_of[i], per_token, strict=False):
            key = keys_of.get(unit) if unit is not None else None
            if key is not None:
                found[key] = found.get(key, 0.0) + float(value)
        for part, names in zip(parts[1:], feature_units, strict=True):
            values = part[j].detach().cpu().numpy().reshape(len(names), -1).sum(axis=1)
            for name, value in zip(names, values, strict=True):
                found[(name, None)] = found.get((name, None), 0.0) + float(value)
        return found

    method = "layer integrated gradients (captum)"
    if task.head == "token-classification":
        for i in range(len(frame)):
            for t in task.explain_targets(np.asarray(outputs[i]), split, encoded, i) or []:

                def entity(ids: Any, *rest: Any, _t: ExplainTarget = t) -> Any:
                    logp = torch.log_softmax(logits_of(ids, rest), dim=-1)
                    return sum(logp[:, p, c] for p, c in zip(_t.positions, _t.classes, strict=True))

                parts, out, base, delta = attribute(entity, [i], None)
                results[i].targets.append(TargetExplanation(t.name, float(out[0]), float(base[0]), float(delta[0]),
                                                            contributions_of(parts, 0, i), method))
        return results

    def sequence(ids: Any, *rest: Any) -> Any:
        logits = logits_of(ids, rest)
        if regression:
            return logits[:, :1]
        if logits.shape[-1] == 2:
            return (logits[:, 1] - logits[:, 0]).unsqueeze(-1)
        return torch.log_softmax(logits, dim=-1)

    order = sorted(range(len(frame)), key=lambda i: len(encoded["input_ids"][i]))  # similar lengths pad little
    for start in range(0, len(order), rows_per_batch):
        index = order[start : start + rows_per_batch]
        specs = [sequence_target(task, np.asarray(outputs[i]).reshape(1, -1)) for i in index]
        multi = not regression and np.asarray(outputs[index[0]]).reshape(-1).shape[0] > 2
        target = [int(cls) for _, cls in specs] if multi else 0
        parts, out, base, delta = attribute(sequence, index, target)
        for j, i in enumerate(index):
            results[i].targets.append(TargetExplanation(specs[j][0], float(out[j]), float(base[j]), float(delta[j]),
                                                        contributions_of(parts, j, i), method))
    return results


def _score(prediction: dict[str, Any]) -> float | None:
    score = prediction.get("score")
    return float(score) if isinstance(score, int | float | np.floating) else None


# --------------------------------------------------------------------------- any model


def explain_blackbox(model: Any, frame: pd.DataFrame, *, file: str = "<input>") -> list[RowExplanation]:
    """SHAP's permutation explainer over the units of each row, for a model that scores
    raw rows (``model.outputs(frame)``): a saved baseline."""
    import pandas as pd
    import shap

    task = model.task
    frame = frame.reset_index(drop=True)
    outputs = np.asarray(model.outputs(frame, file=file))
    split = task.read(frame, split="predict", file=file, label_names=task.labels)
    predictions = task.predict(outputs, split, {}, model.meta.get("calibration") or {})
    regression = task.problem_type == "regression"
    columns = explain_columns(task, frame)
    results = []
    for i in range(len(frame)):
        row = frame.iloc[i]
        units = row_units(columns, row)
        name, cls = sequence_target(task, outputs[i : i + 1])
        explanation = RowExplanation(i, predictions[i].get("prediction"), _score(predictions[i]), units)

        def value(masks: np.ndarray, _row: Any = row, _units: list[Unit] = units, _cls: int | None = cls) -> np.ndarray:
            rows = [delete_units(_row, [u for u, keep in zip(_units, m, strict=True) if not keep], copy=dict) for m in masks]
            scored = np.asarray(model.outputs(pd.DataFrame(rows, columns=list(_row.index)), file=file))
            return np.asarray(target_value(scored, _cls, regression), dtype=np.float64)

        contributions: dict[tuple[str, int | None], float] = {}
        if units:
            masker = shap.maskers.Independent(np.zeros((1, len(units))), max_samples=1)
            explainer = shap.explainers.Permutation(value, masker, seed=0)
            evals = 2 * len(units) + 1
            shap_values = explainer(np.ones((1, len(units))), max_evals=evals, batch_size=evals, silent=True)
            for unit, v in zip(units, np.asarray(shap_values.values[0]).reshape(-1), strict=True):
                contributions[unit.key] = float(v)
            empty = float(np.asarray(shap_values.base_values).reshape(-1)[0])  # every unit deleted
            full = empty + sum(contributions.values())  # Shapley values are efficient
        else:
            full = empty = float(value(np.ones((1, 0)))[0])
        delta = 0.0
        explanation.targets.append(TargetExplanation(name, full, empty, float(delta), contributions, "permutation SHAP (shap)"))
        results.append(explanation)
    return results


def explain_ensemble(model: Any, frame: pd.DataFrame, *, file: str = "<input>") -> list[RowExplanation]:
    """The members' explanations combined by the ensemble's weights (module docstring)."""
    frame = frame.reset_index(drop=True)
    task = model.task
    outputs = np.asarray(model.outputs(frame, file=file))
    split = task.read(frame, split="predict", file=file, label_names=task.labels)
    predictions = task.predict(outputs, split, {}, model.meta.get("calibration") or {})
    per_member = [explain_model(m, frame, file=file) for m in model.members]
    regression = not model.probabilities
    results = []
    for i in range(len(frame)):
        name, cls = sequence_target(task, outputs[i : i + 1])
        units = per_member[0][i].units
        combined: dict[tuple[str, int | None], float] = {}
        out = base = 0.0
        for weight, explained in zip(model.weights, per_member, strict=True):
            t = explained[i].targets[0]
            if regression:
                scale, m_out, m_base = 1.0, t.output, t.base
            else:
                m_out, m_base = _probability(t.output, cls), _probability(t.base, cls)
                total = sum(t.contributions.values())
                scale = (m_out - m_base) / total if abs(total) > 1e-12 else 0.0
            for key, v in t.contributions.items():
                combined[key] = combined.get(key, 0.0) + weight * scale * v
            out += weight * m_out
            base += weight * m_base
        explanation = RowExplanation(i, predictions[i].get("prediction"), _score(predictions[i]), units)
        delta = sum(combined.values()) - (out - base)
        explanation.targets.append(TargetExplanation(name, out, base, float(delta), combined,
                                                     "members' attributions combined by the ensemble's weights"))
        results.append(explanation)
    return results


def _probability(value: float, cls: int | None) -> float:
    """The target probability from a target value: the log-odds (binary) or a log-probability."""
    if cls is None:
        return 1.0 / (1.0 + math.exp(-value))
    return math.exp(value)


def explain_model(model: Any, frame: pd.DataFrame, *, file: str = "<input>") -> list[RowExplanation]:
    """Explain each row of *frame* with any model :func:`automl.load_model` returns."""
    require_extra()
    kind = (getattr(model, "meta", None) or {}).get("kind")
    if hasattr(model, "members"):
        return explain_ensemble(model, frame, file=file)
    if kind == "baseline":
        return explain_blackbox(model, frame, file=file)
    return explain_transformer(model, frame, file=file)


# --------------------------------------------------------------------------- output


def explanation_format(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in EXPLAIN_FORMATS:
        raise UserError(f"unknown output format '{suffix or path}'; expected .jsonl, .csv or .html", field="--output")
    return EXPLAIN_FORMATS[suffix]


def reasons_text(explanation: RowExplanation, top: int) -> str:
    """The top reasons of a row on one line (``automl predict --explain K``)."""
    parts = []
    for t in explanation.targets:
        reasons = "; ".join(f"{r.label()} {r.contribution:+.3g}" for r in t.reasons(explanation.units, top))
        parts.append(f"{t.target}: {reasons}" if len(explanation.targets) > 1 or t.target == "value" else reasons)
    return " || ".join(parts)


def write_explanations(explanations: Sequence[RowExplanation], path: str | Path | None, *, top: int = 5, stream: Any = None) -> None:
    """JSON lines (or CSV, one line per reason) to *path* by its suffix, or JSON lines to *stream*."""
    import sys

    fmt = "jsonl" if path is None else explanation_format(path)
    if fmt == "html":
        Path(path).write_text(html_report(explanations, top=top))  # type: ignore[arg-type]
        return
    if fmt == "jsonl":
        text = "".join(json.dumps(e.to_json(top), ensure_ascii=False) + "\n" for e in explanations)
        if path is None:
            (stream or sys.stdout).write(text)
        else:
            Path(path).write_text(text)
        return
    import pandas as pd

    rows = []
    for e in explanations:
        for t in e.targets:
            for rank, r in enumerate(t.reasons(e.units, top), start=1):
                rows.append({
                    "row": e.row, "prediction": _plain(e.prediction), "score": e.score, "target": t.target, "rank": rank,
                    "column": r.column, "value": r.value, "word": r.word, "position": r.position,
                    "contribution": r.contribution, "convergence_delta": t.delta,
                })
    pd.DataFrame(rows).to_csv(path, index=False)


def html_report(explanations: Sequence[RowExplanation], *, top: int = 5, title: str = "automl explain") -> str:
    """A page with each row's prediction, its text columns with the words highlighted (red
    toward the target, blue away from it) and its column reasons."""
    body = []
    for e in explanations:
        for t in e.targets:
            scale = max((abs(v) for v in t.contributions.values()), default=0.0) or 1.0
            by_column: dict[str, list[Unit]] = {}
            for u in e.units:
                by_column.setdefault(u.column, []).append(u)
            texts, values = [], []
            for column, units in by_column.items():
                if units[0].word is None:
                    v = t.contributions.get(units[0].key, 0.0)
                    values.append(f"<span class='v' style='background:{_colour(v / scale)}'>{html.escape(column)} = "
                                  f"{html.escape(units[0].text)} <small>{v:+.3g}</small></span>")
                    continue
                words = []
                for u in units:
                    v = t.contributions.get(u.key, 0.0)
                    words.append(f"<span title='{v:+.4g}' style='background:{_colour(v / scale)}'>{html.escape(u.text)}</span>")
                texts.append(f"<p><b>{html.escape(column)}</b>: {' '.join(words)}</p>")
            reasons = "".join(f"<li>{html.escape(r.label())} <b>{r.contribution:+.3g}</b></li>" for r in t.reasons(e.units, top))
            delta = "" if t.delta is None else f", convergence delta {t.delta:+.2g}"
            body.append(
                f"<div class='row'><h3>row {e.row}: {html.escape(str(_plain(e.prediction)))}"
                + (f" (score {e.score:.3f})" if e.score is not None else "")
                + f"</h3><p class='t'>toward <b>{html.escape(t.target)}</b>: output {t.output:.3f} vs baseline {t.base:.3f}"
                f"{delta}; {html.escape(t.method)}</p>{''.join(texts)}<p>{' '.join(values)}</p><ol>{reasons}</ol></div>"
            )
    style = ("body{font-family:sans-serif;max-width:1100px;margin:1em auto}.row{border-bottom:1px solid #ddd;padding:.5em 0}"
             "span{padding:1px 2px;border-radius:3px}.v{display:inline-block;margin:2px}.t{color:#555}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{style}</style>"
            f"</head><body><h1>{html.escape(title)}</h1><p>Red pushes toward the target, blue away from it.</p>"
            + "".join(body) + "</body></html>")


def _colour(x: float) -> str:
    x = max(-1.0, min(1.0, x))
    return f"rgba(220,40,40,{x:.2f})" if x >= 0 else f"rgba(40,90,220,{-x:.2f})"


_WORD = re.compile(r"\w", re.UNICODE)


def is_word(text: str) -> bool:
    """A unit text worth listing among a class's words (not punctuation alone)."""
    return bool(_WORD.search(text))
