"""``token-classification``: tag every word (entity extraction with BIO tags).

Data: CoNLL files (one ``word<TAB>tag`` per line, a blank line between sentences; automl
reads them into ``tokens`` and ``tags`` columns), or JSONL/Parquet with a list of words
and a list of tags per row, or CSV with space-separated words and tags.

Columns: ``data.text_column`` holds the words and ``data.label_column`` the tags. When a
recipe keeps the defaults (``text`` / ``label``) and the file has no such column, the
``tokens`` / ``tags`` columns are used, which is what a CoNLL file gives.

Words are split into sub-word tokens; a word's tag is trained and predicted on its first
sub-token only. Words cut off by ``max_length`` are predicted ``O``. Metrics are
entity-level (a predicted entity counts only when its type and both boundaries match, as
in conlleval/seqeval) plus word accuracy.

Baseline: logistic regression on each word's features (the word, its shape, prefix and
suffix, and its neighbours).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from automl import hookimpl
from automl.data import is_missing
from automl.errors import DataError
from automl.search.ranges import Range
from automl.task import BaselineResult, ExplainTarget, Metric, Split, Task, TaskData

from ._classify import label_list, softmax

automl_api_version = "1"

IGNORE = -100


# --------------------------------------------------------------------------- spans


def _split_tag(tag: str) -> tuple[str, str]:
    """``("B", "ORG")`` from ``"B-ORG"``; IOBES ``S``/``E`` read as ``B``/``I``; ``("O", "")``."""
    if tag == "O" or not tag:
        return "O", ""
    prefix, _, kind = tag.partition("-")
    if not kind:
        return "B", tag  # a bare type: each word its own entity
    return {"S": "B", "E": "I", "L": "I", "U": "B"}.get(prefix, prefix), kind


def entity_spans(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """Entities as ``(type, start, end)`` with *end* exclusive.

    An entity starts at ``B-X``, or at ``I-X`` that does not continue an ``X`` entity (the
    conlleval rule), and runs over the ``I-X`` that follow."""
    spans = []
    kind, start = "", -1
    for i, tag in enumerate([*tags, "O"]):
        prefix, t = _split_tag(tag)
        continues = prefix == "I" and t == kind and start >= 0
        if not continues:
            if start >= 0:
                spans.append((kind, start, i))
            kind, start = (t, i) if prefix != "O" else ("", -1)
    return spans


def entity_scores(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> dict[str, dict[str, float]]:
    """Precision, recall, F1 and support per entity type and ``"micro"`` overall."""
    counts: dict[str, list[int]] = {}  # type -> [true positives, predicted, gold]
    for g, p in zip(gold, pred, strict=True):
        gs, ps = set(entity_spans(g)), set(entity_spans(p))
        for span in gs | ps:
            c = counts.setdefault(span[0], [0, 0, 0])
            c[0] += span in gs and span in ps
            c[1] += span in ps
            c[2] += span in gs
    totals = [sum(c[i] for c in counts.values()) for i in range(3)]

    def prf(tp: int, predicted: int, actual: int) -> dict[str, float]:
        precision = tp / predicted if predicted else 0.0
        recall = tp / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return {"precision": precision, "recall": recall, "f1": f1, "support": float(actual)}

    out = {kind: prf(*c) for kind, c in sorted(counts.items())}
    out["micro"] = prf(*totals)
    return out


def _tag_order(tag: str) -> tuple[int, str, str]:
    prefix, kind = _split_tag(tag)
    return (0 if tag == "O" else 1, kind, tag)


# --------------------------------------------------------------------------- task


class TokenClassification(Task):
    name = "token-classification"
    description = "tag every word: entity extraction (NER) with BIO tags; entity-level F1"
    head = "token-classification"
    metrics = (
        Metric("entity_f1", "maximize", "micro F1 over entities (type and boundaries must match)"),
        Metric("entity_precision", "maximize", "share of predicted entities that are right"),
        Metric("entity_recall", "maximize", "share of true entities found"),
        Metric("token_accuracy", "maximize", "share of words with the right tag"),
        # Counts the collapse detector reads (diagnose): 0 entities = every word tagged O.
        Metric("predicted_entities", "maximize", "entities the model predicted (0: collapsed, every word O)"),
        Metric("predicted_tag_kinds", "maximize", "distinct tags the model predicted (1: collapsed to one tag)"),
    )
    default_metric = "entity_f1"
    # Words past max_length are predicted O: max_length auto holds every training row whole.
    auto_length_coverage = 1.0
    extra_hyperparameters = {
        "entity_weight": "loss weight of entity tags (every tag but O) relative to O; 1 = plain cross-entropy",
        "label_smoothing": "label smoothing of the token loss (0 = none)",
    }
    hyperparameter_ranges = {
        "entity_weight": Range("float", low=0, low_open=True, plausible=(0.5, 20.0)),
        "label_smoothing": Range("float", low=0, high=1, high_open=True),
    }

    # ------------------------------------------------------------------ search defaults
    #
    # Token heads on sparse-entity data (~90% of words "O") need many more optimiser steps
    # and higher learning rates than sentence heads: on WNUT-17 (1,500 training sentences,
    # MiniLM-L6) full fine-tuning with 1-3 epochs of a few hundred steps ended with every
    # word tagged O, while learning rate 1e-4, batch 16, 5 epochs (470 steps) reached
    # entity F1 0.49 on validation; LoRA at full-fine-tuning rates (1e-5..4e-5) scored
    # ~0.01. Hence: a floor of MIN_STEPS steps, 3 to 6 epochs, the per-adapter learning-rate
    # ranges of the adapter registry and backbone (their middle is 1e-4 for full fine-tuning
    # of MiniLM-L6, 1e-3 for LoRA), and that configuration as the warm start.
    #
    # On all 3,394 WNUT-17 training sentences that configuration is precise but misses
    # entities (seed 0: test precision 0.52, recall 0.33, F1 0.405); weighting entity tags
    # 2.5x in the loss traded some precision for recall (0.46 / 0.41) and reached test F1
    # 0.432 at the same validation F1 (0.574 vs 0.571): docs/benchmarks.md section 10.
    # So entity_weight is searched (1 to 4) and the warm start uses 2.5.

    #: Optimiser steps every trial gets at least (epochs are raised on small data).
    MIN_STEPS = 450

    def default_space(self):  # type: ignore[no-untyped-def]
        from automl.recipe import ParamSpec

        space = super().default_space()
        space.update({
            "batch_size": [16, 32],
            "epochs": ParamSpec(low=3, high=6),
            "min_steps": self.MIN_STEPS,
            "entity_weight": ParamSpec(low=1.0, high=4.0, log=True),
        })
        return space

    def warm_start(self, adapter):  # type: ignore[no-untyped-def]
        # The learning rate stays the middle of the adapter's range on this backbone (1e-4
        # for full fine-tuning of MiniLM-L6, not the backbone's sentence-level hint: the
        # WNUT-17 figures of docs/benchmarks.md section 10 were measured with it); a token
        # head wants small batches, many steps.
        return {"learning_rate": None, "batch_size": 16, "epochs": 5, "entity_weight": 2.5}

    def _column(self, frame: Any, which: str) -> str:
        """The recipe's column; ``tokens``/``tags`` when the recipe keeps the default and
        the file has no such column (a CoNLL file)."""
        configured = getattr(self.data, f"{which}_column", None) if self.data else None
        default, conll = {"text": ("text", "tokens"), "label": ("label", "tags")}[which]
        name = configured or default
        if name not in frame.columns and name == default and conll in frame.columns:
            return conll
        return name

    def _require(self, frame: Any, which: str, *, file: str) -> str:
        column = self._column(frame, which)
        if column not in frame.columns:
            have = ", ".join(map(str, frame.columns[:12]))
            default, conll = {"text": ("text", "tokens"), "label": ("label", "tags")}[which]
            name = f"'{column}' (or '{conll}')" if column == default else f"'{column}'"
            raise DataError(
                f"column {name} not found; the file has: {have}", file=file, field=f"data.{which}_column"
            )
        return column

    @staticmethod
    def _lists(frame: Any, column: str, *, file: str, what: str) -> list[list[str]]:
        out = []
        for row, value in enumerate(frame[column].tolist()):
            if is_missing(value):
                items = []
            elif isinstance(value, str):
                items = value.split()
            elif isinstance(value, list | tuple | np.ndarray):
                items = [str(v) for v in value]
            else:
                raise DataError(
                    f"row {row + 1}: column '{column}' holds {type(value).__name__}, expected a list of {what}",
                    file=file,
                )
            out.append(items)
        return out

    def label_names(self, train, *, file):  # type: ignore[no-untyped-def]
        column = self._require(train, "label", file=file)
        tags = {t for row in self._lists(train, column, file=file, what="tags") for t in row}
        # BIO tags come in pairs: a type seen only as B-X (or I-X) in training still gets
        # both, so a longer entity in validation or test is not refused as unknown.
        for tag in list(tags):
            prefix, _, kind = tag.partition("-")
            if prefix in ("B", "I") and kind:
                tags |= {f"B-{kind}", f"I-{kind}"}
        return sorted(label_list(tags, file=file, column=column), key=_tag_order)

    def read(self, frame, *, split, file, label_names):  # type: ignore[no-untyped-def]
        words_column = self._require(frame, "text", file=file)
        self._words_column = words_column
        words = self._lists(frame, words_column, file=file, what="words")
        for row, w in enumerate(words):
            if not w and split != "predict":  # an empty row to predict gets no tags
                raise DataError(f"row {row + 1}: column '{words_column}' is empty; a labelled sentence "
                                "needs its words (drop the row)", file=file)
        labels = None
        if split != "predict":
            tags_column = self._require(frame, "label", file=file)
            tags = self._lists(frame, tags_column, file=file, what="tags")
            index = {name: i for i, name in enumerate(label_names or [])}
            labels = []
            for row, (w, t) in enumerate(zip(words, tags, strict=True)):
                if len(w) != len(t):
                    raise DataError(
                        f"row {row + 1}: {len(w)} words in column '{words_column}' but {len(t)} tags in column "
                        f"'{tags_column}'",
                        file=file,
                    )
                unknown = [tag for tag in t if tag not in index]
                if unknown:
                    raise DataError(
                        f"row {row + 1}: tag '{unknown[0]}' in column '{tags_column}' is not in the training data "
                        f"(known: {', '.join((label_names or [])[:10])})",
                        file=file,
                        field="data.label_column",
                    )
                labels.append([index[tag] for tag in t])
        return Split(inputs=words, labels=labels, frame=frame)

    def encode(self, split, tokenizer, max_length):  # type: ignore[no-untyped-def]
        if getattr(tokenizer, "is_fast", False):
            enc = tokenizer(split.inputs, is_split_into_words=True, truncation=True, max_length=max_length,
                            padding=False, return_attention_mask=False)
            input_ids = [list(ids) for ids in enc["input_ids"]]
            word_ids = [enc.word_ids(i) for i in range(len(split.inputs))]
        else:
            input_ids, word_ids = [], []
            for words in split.inputs:
                ids, wids = _encode_slow(words, tokenizer, max_length)
                input_ids.append(ids)
                word_ids.append(wids)
        out: dict[str, list[Any]] = {"input_ids": input_ids, "word_ids": word_ids}
        if split.labels is not None:
            out["labels"] = [_align(wids, tags) for wids, tags in zip(word_ids, split.labels, strict=True)]
        return out

    # ------------------------------------------------------------------ results

    def _names(self, n: int) -> list[str]:
        return list(self.labels) if self.labels else [str(i) for i in range(n)]

    def word_probs(self, outputs: Any, encoded: Any, n_words: Sequence[int]) -> list[np.ndarray]:
        """Per example, ``[words, num_labels]`` probabilities from each word's first
        sub-token; words with no sub-token (truncated) get all mass on ``O`` (id 0)."""
        out = []
        for logits, wids, n in zip(outputs, encoded["word_ids"], n_words, strict=True):
            probs = softmax(np.asarray(logits, dtype=np.float64))
            words = np.zeros((n, probs.shape[1]))
            words[:, 0] = 1.0
            seen: set[int] = set()
            for position, w in enumerate(wids[: len(probs)]):
                if w is not None and w not in seen and w < n:
                    seen.add(w)
                    words[w] = probs[position]
            out.append(words)
        return out

    def predicted_tags(self, outputs: Any, split: Split, encoded: Any) -> list[list[str]]:
        probs = self.word_probs(outputs, encoded, [len(w) for w in split.inputs])
        names = self._names(probs[0].shape[1] if probs else 1)
        return [[names[i] for i in p.argmax(axis=1)] for p in probs]

    def gold_tags(self, split: Split) -> list[list[str]]:
        names = self._names(1 + max((max(t) for t in split.labels or [] if len(t)), default=0))
        return [[names[i] for i in t] for t in split.labels or []]

    def compute_metrics(self, outputs, split, encoded, calibration):  # type: ignore[no-untyped-def]
        return sequence_metrics(self.gold_tags(split), self.predicted_tags(outputs, split, encoded))

    def predict(self, outputs, split, encoded, calibration):  # type: ignore[no-untyped-def]
        probs = self.word_probs(outputs, encoded, [len(w) for w in split.inputs])
        rows = []
        for words, p in zip(split.inputs, probs, strict=True):
            names = self._names(p.shape[1])
            tags = [names[i] for i in p.argmax(axis=1)]
            entities = [
                {"type": kind, "start": start, "end": end, "text": " ".join(words[start:end])}
                for kind, start, end in entity_spans(tags)
            ]
            rows.append({
                "prediction": " ".join(tags),
                "score": float(p.max(axis=1).mean()) if len(p) else 1.0,
                "words": list(words),
                "predicted_tags": tags,
                "entities": entities,
            })
        return rows

    # ------------------------------------------------------------------ explanations

    def explain_columns(self):  # type: ignore[no-untyped-def]
        """The words column (its cells are lists of words)."""
        return [(getattr(self, "_words_column", None) or self._column_name(), "text")]

    def _column_name(self) -> str:
        return str(getattr(self.data, "text_column", None) or "text") if self.data else "text"

    def token_units(self, split, encoded, index, tokenizer):  # type: ignore[no-untyped-def]
        """Each sub-token stands for the word it is part of (the encoding's word ids)."""
        column = self.explain_columns()[0][0]
        return [None if w is None else (column, int(w)) for w in encoded["word_ids"][index]]

    def explain_targets(self, outputs, split, encoded, index):  # type: ignore[no-untyped-def]
        """One target per predicted entity: the log-probabilities of its predicted tags at
        the first sub-token of each of its words."""
        words = split.inputs[index]
        probs = self.word_probs([outputs], {"word_ids": [encoded["word_ids"][index]]}, [len(words)])[0]
        names = self._names(probs.shape[1])
        tags = [names[i] for i in probs.argmax(axis=1)]
        first: dict[int, int] = {}
        for position, w in enumerate(encoded["word_ids"][index][: len(outputs)]):
            if w is not None and w not in first:
                first[w] = position
        targets = []
        for kind, start, end in entity_spans(tags):
            positions = [first[w] for w in range(start, end) if w in first]
            if positions:
                classes = [int(probs[w].argmax()) for w in range(start, end) if w in first]
                targets.append(ExplainTarget(f"{kind}: {' '.join(words[start:end])}", positions, classes))
        return targets

    def plots(self, outputs, split, encoded, calibration):  # type: ignore[no-untyped-def]
        scores = entity_scores(self.gold_tags(split), self.predicted_tags(outputs, split, encoded))
        return [("F1 per entity type", entity_f1_plot(scores))]

    def tables(self, outputs, split, encoded, calibration):  # type: ignore[no-untyped-def]
        from automl.task import ReportTable

        gold, pred = self.gold_tags(split), self.predicted_tags(outputs, split, encoded)
        scores = entity_scores(gold, pred)
        per_type = [
            [kind, s["precision"], s["recall"], s["f1"], int(s["support"])]
            for kind, s in [*[(k, v) for k, v in scores.items() if k != "micro"], ("all (micro)", scores["micro"])]
        ]
        return [
            ReportTable("Entity metrics per type", ["type", "precision", "recall", "F1", "support"], per_type,
                        caption="Entity level: a predicted entity counts when its type and both boundaries match."),
            ReportTable("Most frequent entity errors", ["error", "true type", "predicted type", "count", "examples"],
                        error_table(gold, pred, split.inputs),
                        caption="missed: no prediction over a true entity; spurious: a prediction over no true "
                        "entity; wrong type: same words, other type; wrong boundaries: overlapping, other words."),
        ]

    def diagnose(self, metrics: dict[str, float]) -> str | None:
        return collapse_note(metrics)

    def loss(self, logits, labels, params):  # type: ignore[no-untyped-def]
        """Cross-entropy with an optional weight on entity tags (every tag but ``O``) and
        label smoothing; ``None`` (the engine's plain loss) when both are off."""
        import torch

        weight = float(params.get("entity_weight", 1.0))
        smoothing = float(params.get("label_smoothing", 0.0))
        if weight == 1.0 and smoothing == 0.0:
            return None
        classes = logits.shape[-1]
        weights = torch.full((classes,), weight, dtype=torch.float32, device=logits.device)
        if self.labels and "O" in self.labels:
            weights[self.labels.index("O")] = 1.0
        return torch.nn.functional.cross_entropy(
            logits.reshape(-1, classes).float(), labels.reshape(-1), weight=weights,
            ignore_index=IGNORE, label_smoothing=smoothing,
        )

    def example_losses(self, logits, labels, params):  # type: ignore[no-untyped-def]
        """Per sentence: the mean over its scored tokens of the loss above (entity weight
        and label smoothing as set), not normalised over the batch."""
        import torch

        classes = logits.shape[-1]
        weights = torch.full((classes,), float(params.get("entity_weight", 1.0)), dtype=torch.float32, device=logits.device)
        if self.labels and "O" in self.labels:
            weights[self.labels.index("O")] = 1.0
        per_token = torch.nn.functional.cross_entropy(
            logits.reshape(-1, classes).float(), labels.reshape(-1), weight=weights, ignore_index=IGNORE,
            label_smoothing=float(params.get("label_smoothing", 0.0)), reduction="none",
        ).view(labels.shape)
        scored = (labels != IGNORE).float()
        return (per_token * scored).sum(dim=1) / scored.sum(dim=1).clamp(min=1.0)

    def baseline(self, data: TaskData, seed: int) -> BaselineResult:
        from sklearn.feature_extraction import DictVectorizer
        from sklearn.linear_model import LogisticRegression

        start = time.perf_counter()
        names = list(data.label_names or [])

        def rows(split: Split) -> list[dict[str, Any]]:
            return [f for words in split.inputs for f in word_features(words)]

        vectorizer = DictVectorizer()
        x = vectorizer.fit_transform(rows(data.train))
        y = np.concatenate([np.asarray(t) for t in data.train.labels or []])
        model = LogisticRegression(max_iter=500, C=5.0, random_state=seed)
        model.fit(x, y)

        def scores(split: Split) -> dict[str, float]:
            flat = model.predict(vectorizer.transform(rows(split)))
            pred, start = [], 0
            for words in split.inputs:
                pred.append([names[i] for i in flat[start : start + len(words)]])
                start += len(words)
            gold = [[names[i] for i in t] for t in split.labels or []]
            return sequence_metrics(gold, pred)

        return BaselineResult(
            name="per-word logistic regression",
            validation=scores(data.validation),
            test=scores(data.test) if data.test is not None else None,
            seconds=time.perf_counter() - start,
        )


def _align(word_ids: Sequence[int | None], tags: Sequence[int]) -> list[int]:
    """Each word's tag on its first sub-token, -100 elsewhere."""
    out, previous = [], None
    for w in word_ids:
        out.append(IGNORE if w is None or w == previous or w >= len(tags) else int(tags[w]))
        previous = w
    return out


def _encode_slow(words: Sequence[str], tokenizer: Any, max_length: int) -> tuple[list[int], list[int | None]]:
    """For tokenizers without ``word_ids``: tokenise word by word, wrapped in the start and
    end tokens the tokenizer has (``[CLS]``/``[SEP]`` or ``<s>``/``</s>``)."""
    first = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    last = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    head, tail = [t for t in (first,) if t is not None], [t for t in (last,) if t is not None]
    budget = max_length - len(head) - len(tail)
    ids: list[int] = []
    wids: list[int | None] = []
    for w, word in enumerate(words):
        piece = tokenizer.encode(word, add_special_tokens=False)[: max(0, budget - len(ids))]
        ids += piece
        wids += [w] * len(piece)
    return head + ids + tail, [None] * len(head) + wids + [None] * len(tail)


def sequence_metrics(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> dict[str, float]:
    """Entity-level micro scores and word accuracy, plus two counts the collapse detector
    reads (``predicted_entities``, ``predicted_tag_kinds``: distinct tags predicted)."""
    micro = entity_scores(gold, pred)["micro"]
    words = sum(len(g) for g in gold)
    right = sum(a == b for g, p in zip(gold, pred, strict=True) for a, b in zip(g, p, strict=True))
    return {
        "entity_f1": micro["f1"],
        "entity_precision": micro["precision"],
        "entity_recall": micro["recall"],
        "token_accuracy": right / words if words else 0.0,
        "predicted_entities": float(sum(len(entity_spans(p)) for p in pred)),
        "predicted_tag_kinds": float(len({t for p in pred for t in p})),
    }


def collapse_note(metrics: dict[str, float]) -> str | None:
    """Why a tagger scored (near) zero, when it is because it collapsed: it predicted no
    entity at all (every word ``O``), or one tag for every word."""
    entities = metrics.get("predicted_entities")
    kinds = metrics.get("predicted_tag_kinds")
    if entities is not None and entities == 0:
        return "collapsed: no entity predicted (every word tagged O); the model needs more steps or a higher learning rate"
    if kinds is not None and kinds <= 1:
        return "collapsed: one tag predicted for every word"
    return None


def error_table(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]], words: Sequence[Sequence[str]], top: int = 12) -> list[list[Any]]:
    """The most frequent entity errors as rows ``[error, true type, predicted type, count,
    examples]``: ``missed`` (a true entity with no prediction over it), ``spurious`` (a
    predicted entity over no true one), ``wrong type`` (same words, other type) and
    ``wrong boundaries`` (overlapping, not the same words)."""
    from collections import Counter

    counts: Counter[tuple[str, str, str]] = Counter()
    examples: dict[tuple[str, str, str], list[str]] = {}

    def add(key: tuple[str, str, str], text: str) -> None:
        counts[key] += 1
        shown = examples.setdefault(key, [])
        if len(shown) < 3 and text not in shown:
            shown.append(text)

    for g, p, w in zip(gold, pred, words, strict=True):
        gs, ps = set(entity_spans(g)), set(entity_spans(p))
        exact = gs & ps
        for kind, start, end in sorted(gs - exact):
            same = [q for q in ps - exact if q[1] == start and q[2] == end]
            overlap = [q for q in ps - exact if q[1] < end and start < q[2]]
            text = " ".join(w[start:end])
            if same:
                add(("wrong type", kind, same[0][0]), text)
            elif overlap:
                add(("wrong boundaries", kind, overlap[0][0]), text)
            else:
                add(("missed", kind, "-"), text)
        for kind, start, end in sorted(ps - exact):
            if not any(q[1] < end and start < q[2] for q in gs):
                add(("spurious", "-", kind), " ".join(w[start:end]))
    return [[e, t, p, n, "; ".join(examples[(e, t, p)])] for (e, t, p), n in counts.most_common(top)]


def word_features(words: Sequence[str]) -> list[dict[str, Any]]:
    def shape(word: str) -> str:
        return "".join("X" if c.isupper() else "x" if c.islower() else "d" if c.isdigit() else c for c in word)[:6]

    out = []
    for i, word in enumerate(words):
        prev = words[i - 1] if i > 0 else "<s>"
        nxt = words[i + 1] if i + 1 < len(words) else "</s>"
        out.append({
            "w=" + word.lower(): 1, "shape=" + shape(word): 1, "pre=" + word[:3].lower(): 1,
            "suf=" + word[-3:].lower(): 1, "prev=" + prev.lower(): 1, "next=" + nxt.lower(): 1,
            "prevshape=" + shape(prev): 1, "first": int(i == 0),
        })
    return out


def entity_f1_plot(scores: dict[str, dict[str, float]]) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = [k for k in scores if k != "micro"] + ["micro"]
    f1 = [scores[k]["f1"] for k in kinds]
    fig, ax = plt.subplots(figsize=(1.2 + 0.8 * len(kinds), 3.8))
    bars = ax.bar(kinds, f1, color=["#1f77b4"] * (len(kinds) - 1) + ["#7f7f7f"])
    for bar, k in zip(bars, kinds, strict=True):
        ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height() + 0.01,
                f"{scores[k]['f1']:.2f}\n(n={int(scores[k]['support'])})", ha="center", va="bottom", fontsize=8)
    ax.set_ylim(0, 1.15)
    ax.set_ylabel("F1")
    ax.set_title("Entity F1 per type")
    fig.tight_layout()
    return fig


@hookimpl
def automl_register_tasks(register):  # type: ignore[no-untyped-def]
    register(TokenClassification)
