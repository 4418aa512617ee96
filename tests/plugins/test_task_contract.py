"""The same contract tests over every registered task: the class contract, read/encode,
metrics, predictions, baseline and plots on small generated data."""

from __future__ import annotations

import math

import numpy as np
import pytest
from matplotlib.figure import Figure
from plugin_helpers import SAMPLES, fake_outputs, load

from automl import plugins

TASKS = sorted(plugins.get_tasks())
#: Metrics a task may leave out in some cases (binary-only metrics for multi-class data).
BINARY_ONLY = {"text-classification": {"roc_auc", "pr_auc"}}
CASES = [(name, False) for name in TASKS] + [("text-classification", True)]
IDS = [f"{name}{'-binary' if binary else ''}" for name, binary in CASES]


def test_every_builtin_task_has_sample_data():
    builtin = {name for name in TASKS if plugins.get_tasks()[name].__module__.startswith("automl_plugins.")}
    assert builtin == set(SAMPLES)


@pytest.mark.parametrize("name", TASKS)
def test_class_contract(name):
    cls = plugins.get_tasks()[name]
    assert cls.contract_problems() == []
    assert cls.description
    # the task's default space and its own hyperparameters are a valid search space
    from automl.search.space import build_space, default_space
    from automl.testing import TinyBertBackbone

    task = cls()
    space = build_space({}, default_space(task, TinyBertBackbone()), extra_names=cls.extra_hyperparameters)
    assert "learning_rate" in space.names()


@pytest.fixture(params=CASES, ids=IDS)
def loaded(request, data_root, tokenizer):
    name, binary = request.param
    task, data = load(name, data_root, binary=binary)
    split = data.validation
    encoded = task.encode(split, tokenizer, 48)
    return name, binary, task, data, split, encoded, tokenizer


def test_read_and_encode_lengths(loaded):
    name, binary, task, data, split, encoded, tokenizer = loaded
    n = len(split)
    assert n > 0 and len(split.labels) == n
    for key, values in encoded.items():
        assert len(values) == n, key
    assert all(0 < len(ids) <= 48 for ids in encoded["input_ids"])
    if task.head == "token-classification":
        for ids, labels, words, wids in zip(encoded["input_ids"], encoded["labels"], split.inputs, encoded["word_ids"], strict=True):
            assert len(labels) == len(ids) == len(wids)
            scored = [y for y in labels if y != -100]
            # one label per word that fits into max_length
            assert len(scored) == len({w for w in wids if w is not None}) <= len(words)
    if binary:
        assert len(task.labels) == 2


def test_metrics_cover_every_declared_metric(loaded):
    name, binary, task, data, split, encoded, tokenizer = loaded
    outputs = fake_outputs(task, split, encoded)
    calibration = task.calibrate(outputs, split, encoded)
    metrics = task.compute_metrics(outputs, split, encoded, calibration)
    declared = {m.name for m in task.metrics}
    optional = set() if binary else BINARY_ONLY.get(name, set())
    assert declared - optional <= set(metrics)
    assert set(metrics) <= declared
    assert all(isinstance(v, float) for v in metrics.values())
    assert math.isfinite(metrics[task.default_metric])
    # outputs that lean towards the truth beat random outputs on the default metric
    noise = fake_outputs(task, split, {k: v for k, v in encoded.items() if k != "labels"}, seed=1)
    random_metrics = task.compute_metrics(noise, split, encoded, task.calibrate(noise, split, encoded))
    better = metrics[task.default_metric] > random_metrics[task.default_metric]
    assert better if task.metric(task.default_metric).direction == "maximize" else not better
    # an empty calibration (validation metrics before calibrate) works too
    assert set(task.compute_metrics(outputs, split, encoded, {})) == set(metrics)


def test_calibration_is_json(loaded):
    import json

    name, binary, task, data, split, encoded, tokenizer = loaded
    calibration = task.calibrate(fake_outputs(task, split, encoded), split, encoded)
    assert json.loads(json.dumps(calibration)) == calibration


def test_predict_one_row_per_example(loaded):
    name, binary, task, data, split, encoded, tokenizer = loaded
    outputs = fake_outputs(task, split, encoded)
    calibration = task.calibrate(outputs, split, encoded)
    unlabelled = task.read(split.frame, split="predict", file="predict.csv", label_names=task.labels)
    assert unlabelled.labels is None
    enc = task.encode(unlabelled, tokenizer, 48)
    assert "labels" not in enc
    rows = task.predict(outputs, unlabelled, enc, calibration)
    assert len(rows) == len(split)
    assert all(isinstance(r, dict) and "prediction" in r for r in rows)
    if task.labels and task.head == "sequence-classification":
        assert {r["prediction"] for r in rows} <= set(task.labels)


def test_baseline_metrics_are_finite(loaded):
    name, binary, task, data, split, encoded, tokenizer = loaded
    result = task.baseline(data, seed=0)
    if result is None:
        return
    assert result.name
    assert result.validation and result.test
    assert math.isfinite(result.validation[task.default_metric])
    assert set(result.validation) <= {m.name for m in task.metrics}


def test_plots_are_figures(loaded):
    import matplotlib.pyplot as plt

    name, binary, task, data, split, encoded, tokenizer = loaded
    outputs = fake_outputs(task, split, encoded)
    figs = task.plots(outputs, split, encoded, task.calibrate(outputs, split, encoded))
    assert figs
    for title, fig in figs:
        assert isinstance(title, str) and title
        assert isinstance(fig, Figure)
        plt.close(fig)


def test_num_labels_matches_head(loaded):
    name, binary, task, data, split, encoded, tokenizer = loaded
    outputs = fake_outputs(task, split, encoded)
    width = outputs[0].shape[-1] if isinstance(outputs, list) else np.asarray(outputs).shape[1]
    assert width == task.num_labels()


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_automl_testing_check_task(name, data_root):
    """The check a third-party plugin's own tests run passes for every built-in task."""
    from plugin_helpers import data_spec, split_paths

    from automl.testing import check_task

    train = split_paths(data_root, SAMPLES[name].kind)["validation"]
    check_task(plugins.get_tasks()[name], train, data=data_spec(name, data_root))
