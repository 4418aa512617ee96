"""The feature pipeline (numbers normalised from training statistics, categories as
vocabularies) and the fair sharing of the token budget between text columns."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from automl.errors import DataError
from automl.features import CATEGORICAL, MISSING, NUMERIC, NUMERIC_WIDTH, UNKNOWN, FeaturePipeline, encode_segments, share_budget
from automl.testing import minilm_dir

TRAIN = pd.DataFrame(
    {
        "amount": [10.0, 20.0, None, 40.0, 50.0, 1000.0],
        "country": ["US", "US", "NG", None, "US", "NG"],
        "rare": ["a", "b", "b", "b", "b", "b"],
        "constant": [7, 7, 7, 7, 7, 7],
    }
)


def fit(**kwargs) -> FeaturePipeline:
    return FeaturePipeline.fit(TRAIN, ["amount", "country", "rare", "constant"], file="train.csv", **kwargs)


def test_numbers_are_scaled_from_training_statistics_and_missing_values_flagged():
    pipeline = fit()
    assert [c.name for c in pipeline.numeric] == ["amount"]
    out = pipeline.transform(TRAIN)[NUMERIC]
    assert out.shape == (6, NUMERIC_WIDTH) and out.dtype == np.float32
    quantile, robust, missing = out[:, 0], out[:, 1], out[:, 2]
    assert missing.tolist() == [0, 0, 1, 0, 0, 0]
    assert quantile[0] == -1 and quantile[5] == 1 and np.all(np.diff(quantile[[0, 1, 3, 4, 5]]) > 0)
    assert quantile[2] == pytest.approx(0.0) and robust[2] == 0  # missing sits at the median
    assert robust[5] == 5  # an outlier is clipped, not blown up
    # Values outside the training range map to the ends, not beyond.
    new = pipeline.transform(pd.DataFrame({"amount": [-5, 10**6], "country": ["US"] * 2, "rare": "b", "constant": 7}))
    assert new[NUMERIC][:, 0].tolist() == [-1, 1]


def test_categories_get_a_vocabulary_with_unknown_and_missing_slots():
    pipeline = fit()
    assert [c.name for c in pipeline.categorical] == ["country", "rare"]
    country, rare = pipeline.categorical
    assert country.values == ["US", "NG"] and country.cardinality == 4  # most frequent first
    assert rare.values == ["b"]  # 'a' is seen once: below min_count, so it is "unknown"
    frame = pd.DataFrame({"amount": [1, 2, 3], "country": ["US", "FR", None], "rare": ["a", "b", "zzz"], "constant": 7})
    slots = pipeline.transform(frame)[CATEGORICAL]
    assert slots[:, 0].tolist() == [2, UNKNOWN, MISSING]
    assert slots[:, 1].tolist() == [UNKNOWN, 2, UNKNOWN]


def test_constant_columns_are_left_out_but_still_required():
    pipeline = fit()
    assert pipeline.constant == ["constant"]
    assert "constant" in pipeline.columns and pipeline.numeric_width == NUMERIC_WIDTH
    with pytest.raises(DataError, match="column 'constant' not found"):
        pipeline.transform(TRAIN.drop(columns=["constant"]), file="new.csv")
    only_constant = FeaturePipeline.fit(TRAIN, ["constant"])
    assert not only_constant.active


def test_a_stray_string_in_a_numeric_column_is_one_line_naming_file_row_and_column():
    broken = TRAIN.copy()
    broken["amount"] = broken["amount"].astype(object)
    broken.loc[3, "amount"] = "twelve"
    with pytest.raises(DataError) as info:
        FeaturePipeline.fit(broken, ["amount"], file="train.csv")
    message = str(info.value)
    assert "train.csv" in message and "row 4" in message and "'amount'" in message and "'twelve'" in message
    assert "\n" not in message
    # In a file scored later, against the training statistics.
    other = TRAIN.astype({"amount": object})
    other.loc[1, "amount"] = "n/a?"
    with pytest.raises(DataError, match=r"row 2: column 'amount' holds 'n/a\?', expected a number"):
        fit().transform(other, file="new.csv")


def test_one_row_of_a_category_column_is_no_stray():
    from automl.features import stray_value

    assert stray_value(["restaurant"]) is None and stray_value([None, "travel"]) is None
    assert stray_value([1.0] * 30 + ["twelve"]) == (30, "twelve")


def test_a_listed_column_may_be_forced_categorical_and_the_state_is_json():
    pipeline = fit(categorical=["amount"])
    assert [c.name for c in pipeline.categorical] == ["amount", "country", "rare"]
    state = json.loads(json.dumps(fit().to_json()))
    again = FeaturePipeline.from_json(state)
    for key, value in fit().transform(TRAIN).items():
        assert np.array_equal(again.transform(TRAIN)[key], value)


def test_share_budget_gives_short_columns_what_they_need_and_splits_the_rest():
    assert share_budget([3, 50, 10], 30) == [3, 17, 10]
    assert share_budget([40, 40], 30) == [15, 15]
    assert share_budget([2, 3], 30) == [2, 3]
    assert sum(share_budget([100, 7, 100, 1], 50)) == 50


def test_later_text_columns_are_not_cut_by_a_long_first_one():
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(minilm_dir()))
    long = "notes: " + "the customer called again about the invoice " * 20
    rows = [[long, "reason: refund", "channel: phone"]]
    ids = encode_segments(rows, tokenizer, 32)[0]
    text = tokenizer.decode(ids)
    assert len(ids) == 32
    assert text.startswith("[CLS] notes") and text.endswith("[SEP]")
    assert "reason : refund" in text and "channel : phone" in text
