"""What each built-in task does beyond the contract: row serialisation and thresholds
(fraud), label scaling (regression), entity spans and sub-word alignment (NER)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from plugin_helpers import fake_outputs, load

from automl.errors import DataError
from automl.recipe import DataSpec
from automl_plugins.fraud import FraudDetection, FraudOptions, TargetPrecision, TargetRecall, tune_threshold
from automl_plugins.regression import TextRegression
from automl_plugins.token_classification import TokenClassification, entity_scores, entity_spans

# ----------------------------------------------------------------------------- fraud


def fraud_task(**options) -> FraudDetection:
    return FraudDetection(FraudOptions(**options), DataSpec(train="t.csv", label_column="y"))


FRAME = pd.DataFrame({
    "amount": [1234567.5, 3.0, 0.25, 12.0],
    "country": ["US", "NG", "US", "GB"],
    "card_present": [1, 0, 1, 1],
    "memo": ["new laptop for school", "gift   card reload", None, "coffee"],
    "y": ["0", "1", "0", "0"],
})


def test_fraud_serialises_rows_consistently():
    task = fraud_task(fusion=False)
    names = task.label_names(FRAME, file="t.csv")
    split = task.read(FRAME, split="train", file="t.csv", label_names=names)
    assert split.inputs[0] == "amount: 1234567.50 | country: US | card_present: 1 | memo: new laptop for school"
    assert split.inputs[1] == "amount: 3.00 | country: NG | card_present: 0 | memo: gift card reload"
    assert "memo: missing" in split.inputs[2]
    assert "e+" not in " ".join(split.inputs)
    # the same value reads the same in another split, even where it happens to be whole
    other = FRAME.assign(amount=[5, 6, 7, 8])
    assert task.read(other, split="test", file="x.csv", label_names=names).inputs[0].startswith("amount: 5.00 |")


def test_fraud_positive_label_and_columns():
    task = fraud_task(columns=["memo", "amount"], fusion=False)
    assert task.label_names(FRAME, file="t.csv") == ["0", "1"]  # "1" is the positive class
    split = task.read(FRAME, split="train", file="t.csv", label_names=["0", "1"])
    assert split.inputs[1] == "memo: gift card reload | amount: 3.00"
    words = FRAME.assign(y=["ok", "stolen", "ok", "ok"])
    assert fraud_task().label_names(words, file="t.csv") == ["ok", "stolen"]  # minority class
    assert fraud_task(positive_label="ok").label_names(words, file="t.csv") == ["stolen", "ok"]
    with pytest.raises(DataError, match="'nope'"):
        fraud_task(columns=["nope"]).label_names(FRAME, file="t.csv")


def test_fraud_fuses_numbers_and_categories_and_writes_only_free_text():
    task = fraud_task()
    names = task.label_names(FRAME, file="t.csv")
    split = task.read(FRAME, split="train", file="t.csv", label_names=names)
    assert task.feature_columns() == ["amount", "country", "card_present"]
    assert split.inputs[:2] == ["memo: new laptop for school", "memo: gift card reload"]
    assert "fusion_width" in task.default_space() and "fusion_width" not in fraud_task(fusion=False).default_space()
    # A table without free text keeps every column in the text and has no features.
    no_text = fraud_task()
    no_text.label_names(FRAME.drop(columns=["memo"]), file="t.csv")
    assert no_text.feature_columns() == []


def test_fraud_threshold_goals():
    rng = np.random.default_rng(0)
    labels = (rng.random(2000) < 0.1).astype(int)
    scores = np.clip(labels * 0.4 + rng.random(2000) * 0.7, 0, 1)
    f1 = tune_threshold(scores, labels, "f1")
    precise = tune_threshold(scores, labels, TargetPrecision(target_precision=0.99))
    recall = tune_threshold(scores, labels, TargetRecall(target_recall=0.95))
    assert precise["met"] and recall["met"]
    assert recall["threshold"] < min(f1["threshold"], precise["threshold"])
    flagged = scores >= precise["threshold"]
    assert labels[flagged].mean() >= 0.99
    below = scores < precise["threshold"]
    next_lower = scores[below].max()
    assert labels[scores >= next_lower].mean() < 0.99  # the largest recall at that precision
    assert labels[scores >= recall["threshold"]].sum() >= 0.95 * labels.sum()
    assert tune_threshold(scores, np.zeros(2000, dtype=int), "f1")["threshold"] == 0.5


def test_fraud_threshold_option_parses_from_yaml_shape():
    assert FraudOptions.model_validate({"threshold": {"target_precision": 0.9}}).threshold == TargetPrecision(target_precision=0.9)
    assert FraudOptions.model_validate({"threshold": "f1"}).threshold == "f1"
    with pytest.raises(ValueError):
        FraudOptions.model_validate({"threshold": {"target_precision": 1.5}})
    with pytest.raises(ValueError):
        FraudOptions.model_validate({"treshold": "f1"})


def test_fraud_weighted_loss(data_root):
    task, data = load("fraud-detection", data_root)
    assert task.ratio > 10
    logits, labels = torch.zeros(4, 2), torch.tensor([0, 0, 0, 1])
    assert task.class_weights({"class_weight_power": 0.0}) == [1.0, 1.0]
    assert task.loss(logits, labels, {"class_weight_power": 0.0}) is None
    assert task.class_weights({"class_weight_power": 1.0})[1] == pytest.approx(task.ratio)
    logits = torch.tensor([[2.0, 0.0]] * 4)  # confident "not fraud": wrong only on the fraud row
    weighted = task.loss(logits, labels, {"class_weight_power": 1.0})
    plain = torch.nn.functional.cross_entropy(logits, labels)
    assert weighted > plain
    assert "class_weight_power" in task.default_space()
    assert "class_weight_power" not in fraud_task(class_weight="none").default_space()


def test_fraud_metrics_use_the_calibrated_threshold(data_root, tokenizer):
    task, data = load("fraud-detection", data_root)
    encoded = task.encode(data.validation, tokenizer, 48)
    outputs = fake_outputs(task, data.validation, encoded)
    calibration = task.calibrate(outputs, data.validation, encoded)
    assert calibration["positive_label"] == "1" and 0 < calibration["threshold"] < 1
    assert calibration["columns"][0] == "amount"
    strict = task.compute_metrics(outputs, data.validation, encoded, {"threshold": 0.999})
    tuned = task.compute_metrics(outputs, data.validation, encoded, calibration)
    assert tuned["f1"] >= strict["f1"] and tuned["pr_auc"] == strict["pr_auc"]
    rows = task.predict(outputs, data.validation, encoded, calibration)
    assert all(r["is_fraud"] == (r["score"] >= calibration["threshold"]) for r in rows)
    assert {r["prediction"] for r in rows} <= {"0", "1"}


def test_fraud_predict_matches_columns_by_name(data_root, tokenizer):
    """A loaded model reads the columns it was trained on by name: an extra column is
    ignored and another order changes nothing; a missing one is named."""
    task, data = load("fraud-detection", data_root)
    encoded = task.encode(data.validation, tokenizer, 48)
    outputs = fake_outputs(task, data.validation, encoded)
    calibration = task.calibrate(outputs, data.validation, encoded)
    fresh = FraudDetection(FraudOptions(), DataSpec(train="t.csv", label_column="is_fraud"))
    fresh.labels = task.labels
    fresh.restore(calibration)
    frame = data.validation.frame
    expected = fresh.read(frame, split="predict", file="new.csv", label_names=fresh.labels).inputs
    shuffled = frame.assign(customer_id=7)[["customer_id", *reversed(list(frame.columns))]]
    assert fresh.read(shuffled, split="predict", file="new.csv", label_names=fresh.labels).inputs == expected
    with pytest.raises(DataError, match="column 'amount' not found"):
        fresh.read(frame.drop(columns=["amount"]), split="predict", file="new.csv", label_names=fresh.labels)


# ----------------------------------------------------------------------------- regression


def test_regression_standardises_and_restores_scale(data_root, tokenizer):
    task, data = load("text-regression", data_root)
    y = np.asarray(data.train.labels)
    assert task.stats["mean"] == pytest.approx(y.mean())
    split = data.validation
    encoded = task.encode(split, tokenizer, 48)
    truth = np.asarray(split.labels)
    outputs = ((truth - task.stats["mean"]) / task.stats["std"])[:, None].astype(np.float32)
    calibration = task.calibrate(outputs, split, encoded)
    metrics = task.compute_metrics(outputs, split, encoded, calibration)
    assert metrics["rmse"] == pytest.approx(0, abs=1e-5) and metrics["r2"] == pytest.approx(1)
    rows = task.predict(outputs, split, encoded, calibration)
    assert [r["prediction"] for r in rows] == pytest.approx(truth.tolist(), abs=1e-5)
    # a fresh task (as in `automl predict`) restores the scale from the calibration alone
    fresh = TextRegression(None, DataSpec(train="t.csv", label_column="rating"))
    assert [r["prediction"] for r in fresh.predict(outputs, split, encoded, calibration)] == pytest.approx(truth.tolist(), abs=1e-5)
    # outputs beyond the training range are clipped into it
    assert fresh.predict(np.array([[100.0]]), split, encoded, calibration)[0]["prediction"] == calibration["max"]
    loss = task.loss(torch.tensor(outputs[:8]), torch.tensor(truth[:8], dtype=torch.float32).view(-1, 1), {})
    assert float(loss) == pytest.approx(0, abs=1e-6)
    assert task.num_labels() == 1


# ----------------------------------------------------------------------------- token classification


@pytest.mark.parametrize(
    ("tags", "spans"),
    [
        (["B-PER", "I-PER", "O", "B-LOC"], [("PER", 0, 2), ("LOC", 3, 4)]),
        (["I-ORG", "I-ORG", "O"], [("ORG", 0, 2)]),  # I- without B- starts an entity
        (["B-ORG", "I-LOC"], [("ORG", 0, 1), ("LOC", 1, 2)]),  # type change ends it
        (["B-ORG", "B-ORG", "I-ORG"], [("ORG", 0, 1), ("ORG", 1, 3)]),
        (["S-ORG", "B-LOC", "E-LOC"], [("ORG", 0, 1), ("LOC", 1, 3)]),  # IOBES
        (["O", "O"], []),
    ],
)
def test_entity_spans(tags, spans):
    assert entity_spans(tags) == spans


def test_entity_scores_need_exact_boundaries():
    gold = [["B-PRODUCT", "I-PRODUCT", "O", "B-ORG"], ["B-LOC", "O"]]
    pred = [["B-PRODUCT", "O", "O", "B-ORG"], ["B-LOC", "B-ORG"]]
    scores = entity_scores(gold, pred)
    assert scores["micro"]["precision"] == pytest.approx(2 / 4)
    assert scores["micro"]["recall"] == pytest.approx(2 / 3)
    assert scores["PRODUCT"]["f1"] == 0 and scores["LOC"]["f1"] == 1


def test_token_alignment_first_subtoken(tokenizer):
    task = TokenClassification(None, DataSpec(train="t.conll"))
    frame = pd.DataFrame({"tokens": [["Unbelievably", "slow", "Renbelmar", "router"]],
                          "tags": [["O", "O", "B-PRODUCT", "I-PRODUCT"]]})
    names = task.label_names(frame, file="t.conll")
    assert names[0] == "O"
    task.labels = names
    split = task.read(frame, split="train", file="t.conll", label_names=names)
    enc = task.encode(split, tokenizer, 64)
    wids, labels = enc["word_ids"][0], enc["labels"][0]
    assert len(wids) > 6  # words were split into sub-words
    firsts = [i for i, w in enumerate(wids) if w is not None and (i == 0 or wids[i - 1] != w)]
    assert [labels[i] for i in firsts] == split.labels[0]
    assert all(labels[i] == -100 for i in range(len(labels)) if i not in firsts)
    # outputs that put each word's tag on its first sub-token give back the words' tags
    logits = np.zeros((len(wids), len(names)))
    for i in firsts:
        logits[i, split.labels[0][wids[i]]] = 9
    row = task.predict([logits], split, enc, {})[0]
    assert row["predicted_tags"] == ["O", "O", "B-PRODUCT", "I-PRODUCT"]
    assert row["entities"] == [{"type": "PRODUCT", "start": 2, "end": 4, "text": "Renbelmar router"}]


def test_token_truncated_words_are_o_and_count_as_missed(tokenizer):
    task = TokenClassification(None, DataSpec(train="t.conll"))
    words = ["word"] * 30 + ["Kindle"]
    frame = pd.DataFrame({"tokens": [words], "tags": [["O"] * 30 + ["B-PRODUCT"]]})
    names = task.label_names(frame, file="t.conll")
    task.labels = names
    split = task.read(frame, split="train", file="t.conll", label_names=names)
    enc = task.encode(split, tokenizer, 16)
    assert len(enc["input_ids"][0]) == 16
    logits = np.zeros((16, len(names)))
    metrics = task.compute_metrics([logits], split, enc, {})
    assert metrics["entity_recall"] == 0 and metrics["token_accuracy"] == pytest.approx(30 / 31)


def test_token_jsonl_and_csv_columns(tokenizer):
    task = TokenClassification(None, DataSpec(train="t.csv", text_column="words", label_column="ner"))
    frame = pd.DataFrame({"words": ["my Kindle broke", "call Apple"], "ner": ["O B-PRODUCT O", "O B-ORG"]})
    names = task.label_names(frame, file="t.csv")
    split = task.read(frame, split="train", file="t.csv", label_names=names)
    assert split.inputs[0] == ["my", "Kindle", "broke"]
    assert len(task.encode(split, tokenizer, 32)["labels"]) == 2


def test_token_slow_tokenizer_path(tokenizer):
    from automl_plugins.token_classification import _encode_slow

    ids, wids = _encode_slow(["Renbelmar", "router"], tokenizer, 64)
    fast = tokenizer(["Renbelmar", "router"], is_split_into_words=True)
    assert ids == fast["input_ids"] and wids == fast.word_ids()


def test_fraud_integer_column_with_empty_cells_stays_integer():
    frame = pd.DataFrame({"hour": [3.0, None, 14.0, 9.0], "amount": [1.0, 2.0, 3.0, 4.0], "y": ["0", "1", "0", "0"]})
    task = fraud_task()
    names = task.label_names(frame, file="t.csv")
    inputs = task.read(frame, split="train", file="t.csv", label_names=names).inputs
    assert inputs[0] == "hour: 3 | amount: 1.00"
    assert inputs[1] == "hour: missing | amount: 2.00"
