"""fraud-detection's classical baseline: LightGBM's searched configurations, HistGBM, random
forests and TF-IDF + logistic regression over the text columns joined, the best of them
or a blend chosen by out-of-fold average precision on the training rows; the saved model
rebuilds the joined text from the raw columns alone."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from automl_plugins.fraud import JOINED, FraudDetection, FraudOptions

from automl.baseline import load_model_file, save_model
from automl.errors import DataError
from automl.task import TaskData

WORDS = ["fever", "rash", "pain", "swelling", "headache", "redness", "tired", "nausea", "itch", "dizzy"]


def reports(n: int, seed: int) -> pd.DataFrame:
    """Rows whose label lives in the words of two text columns (a serious word in either),
    not in the numbers: what a text model finds and trees on a few SVD components miss."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        serious = rng.random() < 0.2
        symptom = " ".join(rng.choice(WORDS, 4))
        history = " ".join(rng.choice(WORDS, 3))
        if serious:
            if rng.random() < 0.5:
                symptom += " seizure hospitalised"
            else:
                history = (history + " prior stroke") if rng.random() < 0.5 else None
        rows.append({"symptoms": symptom, "history": history, "age": float(rng.integers(1, 90)),
                     "site": str(rng.choice(["arm", "leg"])), "serious": int(serious)})
    return pd.DataFrame(rows)


def task_and_data(train: pd.DataFrame, validation: pd.DataFrame) -> tuple[FraudDetection, TaskData]:
    # Not refit on the validation rows: the saved model is the one whose validation outputs
    # the tests compare with.
    task = FraudDetection(FraudOptions(positive_label="1", refit_baseline=False), SimpleNamespace(label_column="serious", text_column="text", feature_columns=None))
    names = task.label_names(train, file="train.csv")
    def split(frame: pd.DataFrame, name: str):
        return task.read(frame, split=name, file=f"{name}.csv", label_names=names)
    return task, TaskData(split(train, "train"), split(validation, "validation"), None, names)


def test_text_heavy_rows_get_a_text_model_that_scores_raw_rows_after_a_round_trip(tmp_path):
    task, data = task_and_data(reports(300, 0), reports(120, 1))
    assert [c.kind for c in task.schema] == ["text", "text", "number", "category"]
    result = task.baseline(data, seed=0)
    assert result.extra["candidates"]["words"] > 0.95, result.name  # TF-IDF + LR on the words is a family
    from sklearn.metrics import average_precision_score

    labels = np.asarray(data.validation.labels)
    assert average_precision_score(labels, np.exp(result.outputs["validation"][:, 1])) > 0.9
    save_model(result.model, tmp_path / "model.skops")  # only trusted types: no custom code
    loaded = load_model_file(tmp_path / "model.skops")
    # A new task object (as `automl predict` has): the joined text comes from the model.
    fresh, _ = task_and_data(reports(300, 0), reports(10, 2))
    frame = reports(120, 1)
    assert JOINED not in frame.columns
    again = fresh.baseline_outputs(loaded, fresh.read(frame, split="predict", file="new.csv", label_names=fresh.labels))
    np.testing.assert_allclose(again, result.outputs["validation"], rtol=1e-6, atol=1e-9)
    with pytest.raises(DataError, match="history"):
        fresh.baseline_outputs(loaded, SimpleNamespace(frame=frame.drop(columns=["history"])))


def test_naive_bayes_logistic_weighs_each_present_feature_by_its_log_count_ratio():
    from automl_plugins._naive_bayes import NaiveBayesLogistic
    from scipy import sparse
    from sklearn.linear_model import LogisticRegression

    # Feature 0 in both positives, feature 1 in every negative, feature 2 everywhere;
    # counts above 1 count as present.
    x = sparse.csr_matrix(np.array([[3, 0, 1], [1, 0, 2], [0, 1, 1], [0, 2, 1], [0, 1, 1], [0, 1, 1]], dtype=float))
    y = np.array([1, 1, 0, 0, 0, 0])
    model = NaiveBayesLogistic(C=10.0).fit(x, y)
    p, q = 1 + np.array([2, 0, 2]), 1 + np.array([0, 4, 4])
    np.testing.assert_allclose(model.ratio_, np.log((p / p.sum()) / (q / q.sum())), rtol=1e-6)
    assert model.ratio_[0] > 0 > model.ratio_[1]
    present = (x.toarray() > 0).astype(float)
    plain = LogisticRegression(C=10.0, max_iter=3000).fit(present * model.ratio_, y)
    np.testing.assert_allclose(model.predict_proba(x), plain.predict_proba(present * model.ratio_), rtol=1e-5)
    assert list(model.predict(sparse.csr_matrix([[1, 0, 1], [0, 1, 1]]))) == [1, 0]
    with pytest.raises(ValueError, match="two classes"):
        NaiveBayesLogistic().fit(x, np.zeros(6))


def test_the_naive_bayes_words_family_round_trips_with_the_task_s_own_types_only(tmp_path):
    from automl_plugins import fraud
    from sklearn.metrics import average_precision_score

    from automl.errors import UserError

    task, data = task_and_data(reports(300, 0), reports(120, 1))
    result = task.baseline(data, seed=0)
    assert result.extra["candidates"]["bayes-words"] > 0.9, result.extra["candidates"]
    # The family alone, fitted on the joined document of the training rows.
    x = fraud.baseline_frame(data.train.frame, task.schema, joined=["symptoms", "history"])
    y = np.asarray(data.train.labels)
    model = fraud._bayes_words(["symptoms", "history"], seed=0).fit(x, y)
    validation = task.baseline_outputs(model, data.validation)
    assert average_precision_score(np.asarray(data.validation.labels), validation[:, 1]) > 0.9
    # Saved without pickle; the core alone does not trust the class, the task names it.
    with pytest.raises(TypeError, match="NaiveBayesLogistic"):
        save_model(model, tmp_path / "refused.skops")
    save_model(model, tmp_path / "model.skops", FraudDetection.model_types)
    with pytest.raises(UserError, match="untrusted types: automl_plugins._naive_bayes.NaiveBayesLogistic"):
        load_model_file(tmp_path / "model.skops")
    loaded = load_model_file(tmp_path / "model.skops", FraudDetection.model_types)
    np.testing.assert_allclose(task.baseline_outputs(loaded, data.validation), validation, rtol=1e-6, atol=1e-9)


def test_lightgbm_reads_the_words_of_each_text_column_and_a_stack_reads_the_words_model(tmp_path):
    from automl_plugins import fraud
    from sklearn.feature_extraction.text import CountVectorizer

    task, data = task_and_data(reports(300, 0), reports(120, 1))
    result = task.baseline(data, seed=0)
    scores = result.extra["candidates"]
    assert {"lightgbm", "words", "stack"} <= set(scores), scores
    assert scores["stack"] > 0.9 and scores["lightgbm"] > scores["trees"], scores
    # The stacked family alone: its LightGBM sees two words models' scores of each text
    # column (logistic regression and naive Bayes: columns 0 to 3, in the order of the
    # members, which it splits on) and each word 1-2-gram of a text column, and it
    # round-trips without pickle.
    x = fraud.baseline_frame(data.train.frame, task.schema)
    y = np.asarray(data.train.labels)
    config = result.extra["lightgbm_trials"][0]
    stack = fraud._stacked(
        [("number", "passthrough", ["age"]), ("text:symptoms", fraud._ngrams(), "symptoms")],
        {"symptoms": fraud.hashed_width(x["symptoms"]), "history": 2**12}, config, y, [], seed=0,
    ).fit(x, y)
    ngrams = stack.named_steps["columns"].named_transformers_["text:symptoms"]
    assert isinstance(ngrams, CountVectorizer) and "seizure" in ngrams.vocabulary_
    words = dict(stack.named_steps["model"].named_estimators_)
    assert set(words) == {"words:symptoms", "bayes:symptoms", "words:history", "bayes:history"}
    booster = stack.named_steps["model"].final_estimator_.named_steps["model"].booster_
    used = {node["split_feature"] for tree in booster.dump_model()["tree_info"] for node in _nodes(tree["tree_structure"])}
    assert booster.num_feature() == 5 + len(ngrams.vocabulary_)  # four scores, the age, the n-grams
    assert {0, 1} & used, used  # a words model's score of the symptoms
    fraud._single_references(stack)  # as the baseline leaves its model: plain indices, quick to save
    assert all(type(i) is int for i in ngrams.vocabulary_.values())
    save_model(stack, tmp_path / "stack.skops")
    # Arrays of the hashed features (IDF weights, coefficients), not an index per column.
    assert (tmp_path / "stack.skops").stat().st_size < 30e6
    loaded = load_model_file(tmp_path / "stack.skops")
    np.testing.assert_allclose(loaded.predict_proba(x), stack.predict_proba(x), rtol=1e-9, atol=1e-12)
    # With CatBoost the final model averages LightGBM and CatBoost, which reads the words
    # models' scores and the table columns (not the n-grams), and it round-trips too; the
    # category (the table's second column) is LightGBM's sixth, after the four scores.
    from sklearn.preprocessing import OrdinalEncoder

    both = fraud._stacked(
        [("number", "passthrough", ["age"]), ("category", OrdinalEncoder(), ["site"]),
         ("text:symptoms", fraud._ngrams(), "symptoms")],
        {"symptoms": fraud.hashed_width(x["symptoms"]), "history": 2**12}, config, y, [1], seed=0, catboost_trees=50,
    ).fit(x, y)
    final = dict(both.named_steps["model"].final_estimator_.named_estimators_)
    assert set(final) == {"lightgbm", "catboost"}
    assert final["catboost"].named_steps["model"].n_features_in_ == 6  # four scores, the age and the site
    assert final["lightgbm"].named_steps["model"].booster_.num_feature() == 6 + len(ngrams.vocabulary_)
    assert final["lightgbm"].named_steps["model"].get_params()["categorical_column"] == [5]
    fraud._single_references(both)
    assert not hasattr(both.named_steps["model"].final_estimator_, "named_estimators_")  # saved once each
    save_model(both, tmp_path / "both.skops")
    np.testing.assert_allclose(load_model_file(tmp_path / "both.skops").predict_proba(x), both.predict_proba(x), rtol=1e-9, atol=1e-12)
    # Past the run's deadline the stacked family (the costliest) is left out.
    import time

    task.baseline_deadline = time.time()
    late = task.baseline(data, seed=0).extra
    assert "stack" not in late["candidates"] and late["stack"].startswith("left out: about"), late
    # The chosen baseline, whatever it is, scores raw rows after a round trip.
    save_model(result.model, tmp_path / "model.skops")
    fresh, _ = task_and_data(reports(300, 0), reports(10, 2))
    again = fresh.baseline_outputs(load_model_file(tmp_path / "model.skops"),
                                   fresh.read(reports(120, 1), split="predict", file="new.csv", label_names=fresh.labels))
    np.testing.assert_allclose(again, result.outputs["validation"], rtol=1e-6, atol=1e-9)


def test_idle_cores_run_the_choice_and_the_blend_in_processes_with_the_same_result(tmp_path):
    from sklearn.ensemble import VotingClassifier

    def noisy(n: int, seed: int) -> pd.DataFrame:  # no family is perfect: a blend wins
        frame = reports(n, seed)
        flip = np.random.default_rng(seed + 50).random(n) < 0.12
        frame.loc[flip, "serious"] = 1 - frame.loc[flip, "serious"]
        return frame

    results = {}
    for cores in (1, 2):
        task, data = task_and_data(noisy(300, 0), noisy(120, 10))
        task.baseline_cores = lambda cores=cores: cores
        results[cores] = task.baseline(data, seed=0)
    one, two = results[1], results[2]
    assert one.extra["cores"] == {"choice": 1, "fit": 1}
    assert two.extra["cores"] == {"choice": 2, "fit": 2}
    assert "stack" in two.extra["candidates"]  # its folds ran in the same processes
    assert two.extra["candidates"] == one.extra["candidates"] and two.name == one.name
    np.testing.assert_allclose(two.outputs["validation"], one.outputs["validation"], rtol=1e-9, atol=1e-12)
    # The saved model predicts in this process: no n_jobs left behind.
    model = two.model
    assert isinstance(model, VotingClassifier) and model.n_jobs is None, two.name
    import multiprocessing

    assert multiprocessing.active_children() == []  # the processes ended with the baseline
    save_model(model, tmp_path / "model.skops")
    assert load_model_file(tmp_path / "model.skops").n_jobs is None


def test_rows_without_text_signal_keep_the_trees():
    rng = np.random.default_rng(3)
    def rows(n: int) -> pd.DataFrame:
        amount = rng.gamma(2.0, 50.0, n)
        return pd.DataFrame({"memo": [" ".join(rng.choice(WORDS, 3)) for _ in range(n)], "amount": amount,
                             "serious": (amount > 180).astype(int)})
    task, data = task_and_data(rows(300), rows(100))
    assert task.baseline(data, seed=0).name.startswith("gradient boosting")


def test_refit_baseline_keeps_held_out_validation_and_scores_test_with_all_rows():
    from sklearn.base import clone
    from sklearn.model_selection import StratifiedKFold

    from automl_plugins import fraud

    train, validation, test = reports(300, 0), reports(120, 1), reports(100, 4)

    def fitted(refit: bool, deadline: float | None = None, frames=(train, validation, test), cores: int = 1):
        task = FraudDetection(FraudOptions(positive_label="1", refit_baseline=refit),
                              SimpleNamespace(label_column="serious", text_column="text", feature_columns=None))
        task.baseline_deadline = deadline
        task.baseline_cores = lambda: cores
        names = task.label_names(frames[0], file="train.csv")
        splits = [task.read(f, split=n, file=n, label_names=names) for f, n in
                  zip(frames, ("train", "validation", "test"), strict=True)]
        return task, task.baseline(TaskData(*splits, names), seed=0), splits

    _, plain, _ = fitted(False)
    task, refit, splits = fitted(True)
    # The same choice, whatever each step took; the chosen model fitted once, on every row.
    assert refit.name == plain.name + " (fitted on training + validation rows)"

    def untimed(extra: dict) -> dict:
        trials = [{k: v for k, v in t.items() if k != "seconds"} for t in extra.get("lightgbm_trials", [])]
        return {k: v for k, v in extra.items() if k not in ("phase_seconds", "oof_seconds", "cores", "refit_rows", "threshold")} | {"lightgbm_trials": trials}

    assert untimed(refit.extra) == untimed(plain.extra)
    assert refit.extra["refit_rows"] == 300 + 120 and "refit_rows" not in plain.extra
    # Its validation figures (and the threshold) come from the choice's fold models, which
    # never saw a validation row: each fold's model of the chosen family (or blend) scores
    # the validation rows, and they are averaged.
    texts = [c.name for c in task.schema if c.kind == "text"]
    x, x_val = (fraud.baseline_frame(split.frame, task.schema, joined=texts) for split in splits[:2])
    y = np.asarray(splits[0].labels)
    cv = StratifiedKFold(fraud._choice_folds(len(y), int(y.sum())), shuffle=True, random_state=0)
    bagged = np.mean([clone(refit.model).fit(x.iloc[fit], y[fit]).predict_proba(x_val)[:, 1]
                      for fit, _ in cv.split(np.zeros(len(y)), y)], axis=0)
    np.testing.assert_allclose(np.exp(refit.outputs["validation"][:, 1]), bagged, rtol=1e-6)
    assert not np.allclose(refit.outputs["validation"], plain.outputs["validation"])
    # The same when the folds run in processes on idle cores.
    _, two, _ = fitted(True, cores=2)
    assert two.extra["cores"] == {"choice": 2, "fit": 2} and two.name == refit.name
    np.testing.assert_allclose(two.outputs["validation"], refit.outputs["validation"], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(two.outputs["test"], refit.outputs["test"], rtol=1e-9, atol=1e-12)
    # The saved model is fitted on every labelled row: its test outputs are what the run stored.
    assert not np.allclose(refit.outputs["test"], plain.outputs["test"])
    np.testing.assert_allclose(task.baseline_outputs(refit.model, splits[2]), refit.outputs["test"])
    # Past the run's deadline it is the same one fit.
    import time

    _, late, _ = fitted(True, deadline=time.time())
    assert late.name.endswith(" (fitted on training + validation rows)") and late.extra["refit_rows"] == 420
    # Where there is no choice (one family: no text, too few positives for LightGBM), the
    # model is fitted on the training rows and refit on every row when that ends by the
    # deadline; past it the refit is left out, and the name and extra say so.
    rng = np.random.default_rng(0)

    def few(n: int) -> pd.DataFrame:
        return pd.DataFrame({"amount": rng.normal(size=n), "serious": (np.arange(n) % 12 == 0).astype(int)})

    frames = (few(80), few(40), few(40))
    _, one, _ = fitted(True, frames=frames)
    assert "candidates" not in one.extra and one.name.endswith(" (refit on training + validation rows)")
    _, late, _ = fitted(True, deadline=time.time(), frames=frames)
    assert "not refit on training + validation rows: about" in late.name, late.name
    assert late.extra["refit"].startswith("not refit") and late.extra["refit"].endswith("before the deadline")


def risky_merchants(n: int, seed: int) -> pd.DataFrame:
    """Rows whose risk lives in a 30-level category (five risky merchants), the amount and
    the hour: on this table LightGBM (native categorical splits, early stopping, its best
    configuration) beats the reference HistGBM out of fold."""
    rng = np.random.default_rng(seed)
    merchant = rng.choice([f"m{i:02d}" for i in range(30)], n)
    amount = rng.gamma(2.0, 50.0, n)
    hour = rng.integers(0, 24, n)
    risk = np.isin(merchant, ["m03", "m07", "m11", "m19", "m23"]) * 1.5 + (amount > 150) * 1.0 + (hour < 5) * 0.8
    p = 1 / (1 + np.exp(-(risk - 2.2 + rng.normal(0, 0.8, n))))
    return pd.DataFrame({"merchant": merchant, "amount": amount.round(2), "hour": hour, "serious": (rng.random(n) < p).astype(int)})


def test_lightgbm_is_searched_and_the_chosen_model_round_trips_without_pickle(tmp_path):
    from automl_plugins._classical import WARM_START
    from automl_plugins.fraud import LIGHTGBM_MAX_TRIALS, lightgbm_trials
    from skops.io import get_untrusted_types

    task, data = task_and_data(risky_merchants(400, 0), risky_merchants(150, 100))
    result = task.baseline(data, seed=0)
    scores, trials = result.extra["candidates"], result.extra["lightgbm_trials"]
    # No budget: every trial runs (fewer on a small table), the well-known configurations
    # first, reported best first.
    assert len(trials) == lightgbm_trials(400) == 20
    assert lightgbm_trials(100_000) == LIGHTGBM_MAX_TRIALS and lightgbm_trials(50) == 8
    assert [t["pr_auc"] for t in trials] == sorted((t["pr_auc"] for t in trials), reverse=True)
    assert {t["learning_rate"] for t in trials} > {c["learning_rate"] for c in WARM_START}
    assert scores["lightgbm"] > scores["trees"], scores  # native categories beat the reference here
    assert max(scores, key=scores.get) == result.extra["family"]
    assert f"trees {scores['trees']:.3f}" in result.name  # the reference family's score is shown too
    save_model(result.model, tmp_path / "model.skops")
    assert {t for t in get_untrusted_types(file=tmp_path / "model.skops") if not t.startswith("sklearn.")} <= {
        "collections.OrderedDict", "lightgbm.basic.Booster", "lightgbm.sklearn.LGBMClassifier", "catboost.core.CatBoostClassifier"}
    loaded = load_model_file(tmp_path / "model.skops")
    fresh, _ = task_and_data(risky_merchants(400, 0), risky_merchants(10, 2))
    again = fresh.baseline_outputs(loaded, fresh.read(risky_merchants(150, 100), split="predict", file="new.csv", label_names=fresh.labels))
    np.testing.assert_allclose(again, result.outputs["validation"], rtol=1e-9, atol=1e-12)


def test_catboost_is_a_family_when_installed_and_round_trips_without_pickle(tmp_path):
    pytest.importorskip("catboost")
    from automl_plugins import _classical

    task, data = task_and_data(risky_merchants(400, 0), risky_merchants(150, 100))
    result = task.baseline(data, seed=0)
    assert "catboost" in result.extra["candidates"], result.extra["candidates"]
    assert f"catboost {result.extra['candidates']['catboost']:.3f}" in result.name
    # Its trees come from early stopping; saved with skops, it predicts the same.
    rng = np.random.default_rng(0)
    x = rng.random((300, 4))
    y = (x[:, 0] + 0.3 * rng.random(300) > 0.8).astype(int)
    trees, seconds = _classical.catboost_trees((x[:200], y[:200], x[200:], y[200:]), seed=0)
    assert 10 <= trees <= _classical.CATBOOST_MAX_TREES and seconds > 0
    model = _classical.catboost(y, 0, trees).fit(x, y)
    save_model(model, tmp_path / "catboost.skops")
    np.testing.assert_allclose(load_model_file(tmp_path / "catboost.skops").predict_proba(x), model.predict_proba(x))


def test_a_blend_weighs_the_families_that_raise_out_of_fold_precision():
    from automl_plugins._classical import greedy_blend

    rng = np.random.default_rng(0)
    y = (rng.random(600) < 0.2).astype(int)
    a = y * 0.6 + rng.random(600)  # two noisy views of the label, each alone weaker than both
    b = y * 0.6 + rng.random(600)
    useless = rng.random(600)
    weights, blended = greedy_blend({"a": a, "b": b, "useless": useless}, y)
    from sklearn.metrics import average_precision_score

    assert sum(weights.values()) == pytest.approx(1.0)
    assert weights["a"] > 0.3 and weights["b"] > 0.3 and weights.get("useless", 0.0) < 0.15, weights
    assert blended > max(average_precision_score(y, a), average_precision_score(y, b))
    assert greedy_blend({"a": a}, y)[0] == {"a": 1.0}


def test_lightgbm_splits_categories_natively():
    task, data = task_and_data(risky_merchants(400, 0), risky_merchants(150, 100))
    result = task.baseline(data, seed=0)
    model = result.model
    if result.extra["family"] == "blend":
        model = dict(zip([name for name, _ in model.estimators], model.estimators_, strict=True))["lightgbm"]
    booster = model.named_steps["model"].booster_
    splits = [node for tree in booster.dump_model()["tree_info"] for node in _nodes(tree["tree_structure"])]
    assert any(node.get("decision_type") == "==" and node["split_feature"] == 2 for node in splits)


def _nodes(node: dict) -> list[dict]:
    if "split_feature" not in node:
        return []
    return [node, *_nodes(node["left_child"]), *_nodes(node["right_child"])]


def test_the_time_budget_bounds_the_lightgbm_search_and_the_rows():
    from automl_plugins.fraud import BASELINE_ROWS_PER_SECOND, MIN_BASELINE_ROWS

    task, data = task_and_data(risky_merchants(400, 0), risky_merchants(150, 100))
    task.baseline_budget = 0.0  # spent at once: only the first configuration is tried
    result = task.baseline(data, seed=0)
    assert len(result.extra["lightgbm_trials"]) == 1
    assert task.baseline_rows() == MIN_BASELINE_ROWS
    task.baseline_budget = 60.0
    assert task.baseline_rows() == 60 * BASELINE_ROWS_PER_SECOND
    task.baseline_budget = 3600.0
    assert task.baseline_rows() == task.opts.baseline_max_rows
    task.baseline_budget = None
    assert task.baseline_rows() == task.opts.baseline_max_rows


def test_big_tables_train_the_baseline_on_a_stratified_row_sample():
    train = risky_merchants(400, 0)
    task = FraudDetection(FraudOptions(positive_label="1", baseline_max_rows=200),
                          SimpleNamespace(label_column="serious", text_column="text", feature_columns=None))
    names = task.label_names(train, file="train.csv")
    splits = [task.read(f, split=n, file=n, label_names=names) for f, n in ((train, "train"), (risky_merchants(150, 100), "validation"))]
    result = task.baseline(TaskData(*splits, None, names), seed=0)
    assert result.extra["rows"] == 200
    # The refit adds the validation rows in the share the training rows were sampled in.
    assert result.extra["refit_rows"] == round(200 * (1 + 150 / 400)), result.extra
    # The sample keeps the positive share: its labels are what the candidates were scored on.
    from automl_plugins.fraud import _row_sample

    frame, y = _row_sample(train, train["serious"].to_numpy(), 200, 0)
    assert len(frame) == 200 and abs(y.mean() - train["serious"].mean()) < 0.01


def test_a_run_exports_the_lightgbm_baseline_when_it_wins(tmp_path):
    """A real run (tiny backbone, one trial that barely trains): the supervisor gives the
    baseline its share of search.timeout, LightGBM wins the baseline's choice and the
    run's, and best/ loads with automl.load_model and scores as the run did."""
    import io
    import json

    import yaml
    from plugin_helpers import RECIPES
    from rich.console import Console

    import automl
    from automl.baseline import load_outputs
    from automl.recipe import load_recipe
    from automl.search.budget import BASELINE_BUDGET_SHARE
    from automl.search.supervisor import RunOptions, run_recipe

    paths = {}
    for split, (n, seed) in {"train": (400, 0), "validation": (150, 100), "test": (150, 7)}.items():
        paths[split] = tmp_path / f"{split}.csv"
        risky_merchants(n, seed).to_csv(paths[split], index=False)
    recipe = yaml.safe_load((RECIPES / "fraud.yaml").read_text())
    recipe.update(backbone="tiny-bert", backbone_options={}, output=str(tmp_path / "run"), name="lightgbm-wins")
    recipe["data"] = {**{k: str(v) for k, v in paths.items()}, "label_column": "serious"}
    recipe["search"] = {"trials": 1, "timeout": "10m", "pruner": "none", "retries": 0,
                        "space": {"learning_rate": 1e-7, "batch_size": 32, "epochs": 1, "adapter": "full"}}
    recipe["training"] = {"max_length": 16, "seed": 0, "device": "cpu"}
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    outcome = run_recipe(load_recipe(tmp_path / "recipe.yaml"), options=RunOptions(workers=0), console=Console(file=io.StringIO()))
    baseline = json.loads((outcome.run_dir / "baseline.json").read_text())
    assert baseline["extra"]["budget_seconds"] == pytest.approx(BASELINE_BUDGET_SHARE * 600)
    assert 500 < baseline["extra"]["seconds_to_deadline"] < 0.95 * 600  # the run's deadline reached the task
    # No worker process (workers=0: the trial runs after the baseline): every core is the baseline's.
    import os

    assert baseline["extra"]["cores"]["choice"] == (os.cpu_count() or 1)
    assert baseline["extra"]["family"] in ("lightgbm", "blend"), baseline["name"]
    meta = json.loads((outcome.best_dir / "automl.json").read_text())
    assert meta["kind"] == "baseline" and meta["name"] == baseline["name"]
    model = automl.load_model(str(outcome.best_dir))
    test = pd.read_csv(paths["test"])
    np.testing.assert_allclose(model.outputs(test), load_outputs(outcome.best_dir / "outputs.npz")["test"], rtol=1e-6)


def test_text_columns_of_few_rare_or_no_terms_keep_the_baseline_on_a_small_table():
    """A column of few distinct words on a few hundred rows (VAERS's PRIOR_VAX on 240 rows:
    18 words) gave its TF-IDF more SVD components than the words a fold of the choice
    sees, and TruncatedSVD's error cost the run its baseline. The components are now
    bounded by the words of every other row; a column of too few words there keeps its
    n-grams only."""
    from automl_plugins.fraud import svd_components

    frame = reports(240, 0)
    # 18 words, each in two rows, and one in all of those rows, beside words of one row
    # each: 19 terms reach the TF-IDF's min_df=2, about 13 in four fifths of the rows.
    frame["prior"] = [f"dose{i // 2} once{i} prior" if i < 36 else f"once{i}a once{i}b once{i}c" for i in range(240)]
    rare = pd.Series([f"rare{i}" for i in range(40)] + ["missing"] * 200)
    assert svd_components(frame["prior"].fillna("missing")) < 16
    assert svd_components(pd.Series(["the a an"] * 20)) == 0  # stop words only
    assert svd_components(rare) == 0  # no word twice in every other row
    task, data = task_and_data(frame, reports(120, 1).assign(prior=None))
    assert [c.kind for c in task.schema] == ["text", "text", "number", "category", "text"]
    result = task.baseline(data, seed=0)
    assert {"trees", "random-forest", "extra-trees", "words"} <= set(result.extra["candidates"]), result.extra["candidates"]
    # Words in one or two rows each: no n-gram reaches LightGBM's min_df, which is left
    # without the column's n-grams instead of failing.
    from automl_plugins.fraud import has_ngrams

    frame["prior"] = [f"dose{i // 2} once{i}a" if i < 36 else f"once{i}a once{i}b once{i}c" for i in range(240)]
    assert not has_ngrams(frame["prior"]) and has_ngrams(frame["symptoms"])
    task, data = task_and_data(frame, reports(120, 1).assign(prior=None))
    assert "lightgbm" in task.baseline(data, seed=0).extra["candidates"]
    # A column of identifiers (each value once: no term reaches min_df) and one of single
    # letters (no word is a term): scikit-learn's TF-IDF raised on them, and the run lost
    # its baseline. They are left to the words models now.
    from automl_plugins.fraud import tfidf_terms

    rng = np.random.default_rng(0)
    ids = {"reference": [f"tx{i:05d}" for i in range(240)], "code": [" ".join(rng.choice(list("abcdef"), 30)) for _ in range(240)]}
    assert tfidf_terms(pd.Series(ids["reference"])) == 0 and tfidf_terms(pd.Series(ids["code"])) == 0
    frame = reports(240, 0).assign(**ids)
    task, data = task_and_data(frame, reports(120, 1).assign(reference="tx99999", code="a b c"))
    assert [c.kind for c in task.schema][-2:] == ["text", "text"]
    assert {"lightgbm", "trees", "words"} <= set(task.baseline(data, seed=0).extra["candidates"])


def test_a_column_whose_name_holds_a_double_underscore_gets_a_baseline_that_round_trips(tmp_path):
    """scikit-learn keeps ``__`` for nested parameters and refuses step names that hold it;
    the baseline names its steps after the columns (``customer__note``, dbt's naming)."""
    from automl_plugins.fraud import step_name

    assert step_name("text", "customer__note", "words") == "text:customer_.note:words"
    frame = reports(300, 0).rename(columns={"symptoms": "customer__note", "site": "store__site"})
    task, data = task_and_data(frame, reports(120, 1).rename(columns={"symptoms": "customer__note", "site": "store__site"}))
    result = task.baseline(data, seed=0)
    assert result.extra["candidates"]["words"] > 0.9, result.extra["candidates"]
    save_model(result.model, tmp_path / "model.skops")
    loaded = load_model_file(tmp_path / "model.skops")
    np.testing.assert_allclose(task.baseline_outputs(loaded, data.validation), result.outputs["validation"], atol=1e-6)


def vaccine_lists(n: int, seed: int) -> pd.DataFrame:
    """Rows whose risk is one item ("ppv") in a category column of lists of 2-3 of ten
    vaccines, "dtap;ppv;mmr" (over a hundred distinct lists, each in a few rows), and
    the age."""
    rng = np.random.default_rng(seed)
    vaccines = ["dtap", "ppv", "mmr", "hep", "flu", "ipv", "hib", "var", "men", "tdap"]
    lists = [";".join(sorted(rng.choice(vaccines, rng.integers(2, 4), replace=False))) for _ in range(n)]
    age = rng.integers(1, 90, n)
    risk = np.array(["ppv" in v.split(";") for v in lists]) * 2.0 + (age > 60) * 0.8
    p = 1 / (1 + np.exp(-(risk - 2.0 + rng.normal(0, 0.5, n))))
    return pd.DataFrame({"vaccines": lists, "age": age.astype(float), "serious": (rng.random(n) < p).astype(int)})


def test_a_category_column_of_lists_gives_lightgbm_its_items(tmp_path):
    from automl_plugins import fraud

    train = vaccine_lists(500, 0)
    vaccines = ["dtap", "flu", "hep", "hib", "ipv", "men", "mmr", "ppv", "tdap", "var"]
    assert fraud.listed_items(pd.Series(train["vaccines"])) == vaccines
    assert fraud.listed_items(pd.Series(["New York, NY"] * 6 + ["Paris, TX"] * 6)) == ["new york", "ny", "paris", "tx"]
    assert not fraud.listed_items(pd.Series(risky_merchants(200, 0)["merchant"]))
    assert not fraud.listed_items(pd.Series(["a;b"] * 4 + ["c"] * 96))  # separators in under 5% of values
    assert not fraud.listed_items(pd.Series(["a;b", "c;d", "e;f"]))  # no item in 3 rows
    task, data = task_and_data(train, vaccine_lists(200, 100))
    assert [c.kind for c in task.schema] == ["category", "number"]  # lists of one word each: a category
    result = task.baseline(data, seed=0)
    assert result.extra["candidates"]["lightgbm"] > result.extra["candidates"]["trees"], result.extra["candidates"]
    model = result.model
    if result.extra["family"] == "blend":
        model = dict(zip([name for name, _ in model.estimators], model.estimators_, strict=True))["lightgbm"]
    columns = model.named_steps["columns"]
    items = columns.named_transformers_["category:vaccines:items"]
    assert sorted(items.vocabulary_) == vaccines
    # LightGBM splits on the risky item (its column comes after the code and the age).
    booster = model.named_steps["model"].booster_
    used = {node["split_feature"] for tree in booster.dump_model()["tree_info"] for node in _nodes(tree["tree_structure"])}
    assert 2 + items.vocabulary_["ppv"] in used, used
    # The saved model scores raw rows: the items come from the category column alone.
    save_model(result.model, tmp_path / "model.skops")
    fresh, _ = task_and_data(train, vaccine_lists(10, 2))
    again = fresh.baseline_outputs(load_model_file(tmp_path / "model.skops"),
                                   fresh.read(vaccine_lists(200, 100), split="predict", file="new.csv", label_names=fresh.labels))
    np.testing.assert_allclose(again, result.outputs["validation"], rtol=1e-6, atol=1e-9)
