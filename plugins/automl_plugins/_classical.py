"""The classical side of the table tasks: a budgeted hyperparameter search of LightGBM and a
weighted blend of model families chosen on out-of-fold predictions.

* :func:`search_lightgbm` runs an Optuna study of its own (in memory, TPE, seeded) over
  LightGBM's main hyperparameters. Each trial trains on folds of the training rows with
  early stopping on each fold's held-out rows and is scored by the average precision of
  those held-out predictions together; a few well-known
  configurations are tried first (:data:`WARM_START`). Trials take a fraction of a second
  to a few seconds on tables of thousands of rows, so the sampler gets dozens of them in
  the baseline's share of the budget. It stops at the deadline or after ``max_trials``.
* :func:`greedy_blend` is Caruana et al.'s ensemble selection (2004), what AutoGluon's
  ``WeightedEnsemble`` does: starting from the best family, it adds (with replacement) the
  family whose out-of-fold predictions raise the blend's average precision most, for a
  fixed number of rounds; the weights are how often each was picked.

Both return plain data (configurations, weights); the models are scikit-learn pipelines and
LightGBM's scikit-learn classifier, which the core saves with skops (no pickle).
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np

#: LightGBM's trees before early stopping, and the rounds without improvement that stop it.
MAX_TREES = 2000
PATIENCE = 50
#: Well-known configurations the search tries before its sampler takes over: the library's
#: defaults at a lower learning rate, a smaller regularised model for small tables, a
#: larger bagged one for big tables, and extremely randomised small trees.
WARM_START: tuple[dict[str, Any], ...] = (
    {"learning_rate": 0.05, "num_leaves": 31, "min_child_samples": 20},
    {"learning_rate": 0.05, "num_leaves": 15, "min_child_samples": 10, "colsample_bytree": 0.8, "reg_lambda": 1.0},
    {"learning_rate": 0.05, "num_leaves": 63, "min_child_samples": 30, "colsample_bytree": 0.7,
     "subsample": 0.8, "reg_lambda": 5.0},
    {"learning_rate": 0.05, "num_leaves": 7, "min_child_samples": 5, "extra_trees": True},
)
#: What a configuration leaves out takes these values (LightGBM's defaults, where they exist).
DEFAULTS: dict[str, Any] = {"colsample_bytree": 1.0, "subsample": 1.0, "reg_lambda": 1e-3, "extra_trees": False}


def lightgbm(config: dict[str, Any], y: np.ndarray, categories: list[int], seed: int, trees: int) -> Any:
    """A LightGBM classifier: categories split natively (the ordinal codes of the category
    columns), the positive class weighted by the square root of the class ratio, one
    thread, deterministic."""
    from lightgbm import LGBMClassifier

    positives = max(int(np.sum(y == 1)), 1)
    config = {**DEFAULTS, **config}
    if config["subsample"] < 1.0:
        config["subsample_freq"] = 1
    # ``categorical_column`` (a LightGBM parameter) rather than the fit argument
    # ``categorical_feature``: the pipeline's fit, cross-validation and blending pass no
    # fit arguments.
    return LGBMClassifier(
        n_estimators=trees, random_state=seed, n_jobs=1, verbose=-1, deterministic=True,
        scale_pos_weight=float(np.sqrt((len(y) - positives) / positives)),
        **({"categorical_column": list(categories)} if categories else {}), **config,
    )


def _suggest(trial: Any) -> dict[str, Any]:
    return {
        "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.2, log=True),
        "num_leaves": trial.suggest_int("num_leaves", 4, 128, log=True),
        "min_child_samples": trial.suggest_int("min_child_samples", 2, 100, log=True),
        "colsample_bytree": trial.suggest_float("colsample_bytree", 0.4, 1.0),
        "subsample": trial.suggest_float("subsample", 0.5, 1.0),
        "reg_lambda": trial.suggest_float("reg_lambda", 1e-3, 10.0, log=True),
        "extra_trees": trial.suggest_categorical("extra_trees", [False, True]),
    }


def search_lightgbm(
    folds: list[tuple[Any, np.ndarray, Any, np.ndarray]], categories: list[int], seed: int,
    *, deadline: float | None, max_trials: int,
) -> list[dict[str, Any]]:
    """LightGBM configurations tried on *folds* of the training rows (``(x_fit, y_fit,
    x_stop, y_stop)`` each), best first: each ``{**config, "trees": mean best iteration,
    "pr_auc": of the held-out predictions of every fold together, "seconds": ...}``. Each
    fold trains with early stopping on its held-out rows. The first configuration always
    runs; later ones only while *deadline* (a ``time.perf_counter()`` value) has not passed."""
    import optuna
    from lightgbm import early_stopping
    from sklearn.metrics import average_precision_score

    tried: list[dict[str, Any]] = []
    truth = np.concatenate([f[3] for f in folds])

    def objective(trial: Any) -> float:
        started = time.perf_counter()
        config = _suggest(trial)
        predictions, trees = [], []
        for x_fit, y_fit, x_stop, y_stop in folds:
            model = lightgbm({**config, "metric": "average_precision"}, y_fit, categories, seed, MAX_TREES)
            with warnings.catch_warnings():  # eval_set: every LightGBM 4 has it; 4.7 prefers eval_X/eval_y
                warnings.filterwarnings("ignore", message=".*eval_set.*")
                model.fit(x_fit, y_fit, eval_set=[(x_stop, y_stop)], callbacks=[early_stopping(PATIENCE, verbose=False)])
            trees.append(int(model.best_iteration_ or MAX_TREES))
            predictions.append(model.predict_proba(x_stop, num_iteration=trees[-1])[:, 1])
        score = float(average_precision_score(truth, np.concatenate(predictions)))
        tried.append({**config, "trees": round(float(np.mean(trees))), "pr_auc": score,
                      "seconds": round(time.perf_counter() - started, 3)})
        return score

    def out_of_time(study: Any, trial: Any) -> None:
        if deadline is not None and time.perf_counter() > deadline:
            study.stop()

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=8))
        for config in WARM_START:
            study.enqueue_trial({**DEFAULTS, **config}, skip_if_exists=True)
        study.optimize(objective, n_trials=max_trials, callbacks=[out_of_time], catch=())
    finally:
        optuna.logging.set_verbosity(verbosity)
    return sorted(tried, key=lambda t: -t["pr_auc"])


def catboost_available() -> bool:
    """CatBoost is an optional extra (``automl[tables]``): a large wheel."""
    import importlib.util

    return importlib.util.find_spec("catboost") is not None


#: CatBoost's learning rate; its trees are found by early stopping (:func:`catboost_trees`).
CATBOOST_LEARNING_RATE = 0.05
CATBOOST_MAX_TREES = 1500


def catboost(y: np.ndarray, seed: int, trees: int) -> Any:
    """A CatBoost classifier (symmetric trees of depth 6, its defaults otherwise) on the same
    columns as the other families (the category columns' ordinal codes as numbers), the
    positive class weighted like LightGBM's, one thread."""
    from catboost import CatBoostClassifier

    positives = max(int(np.sum(y == 1)), 1)
    return CatBoostClassifier(
        iterations=trees, learning_rate=CATBOOST_LEARNING_RATE, random_seed=seed, thread_count=1, verbose=False,
        allow_writing_files=False, scale_pos_weight=float(np.sqrt((len(y) - positives) / positives)),
    )


def catboost_trees(fold: tuple[Any, np.ndarray, Any, np.ndarray], seed: int) -> tuple[int, float]:
    """``(trees, seconds)``: CatBoost's best iteration with early stopping on the held-out
    rows of *fold* (``(x_fit, y_fit, x_stop, y_stop)``), and how long that fit took."""
    started = time.perf_counter()
    x_fit, y_fit, x_stop, y_stop = fold
    model = catboost(y_fit, seed, CATBOOST_MAX_TREES)
    model.set_params(eval_metric="PRAUC", early_stopping_rounds=PATIENCE)
    model.fit(x_fit, y_fit, eval_set=(x_stop, y_stop), use_best_model=False)
    return max(10, int(model.get_best_iteration() or CATBOOST_MAX_TREES) + 1), time.perf_counter() - started


def config_of(trial: dict[str, Any]) -> dict[str, Any]:
    """The LightGBM parameters of a :func:`search_lightgbm` entry."""
    return {k: v for k, v in trial.items() if k not in ("trees", "pr_auc", "seconds")}


def greedy_blend(oof: dict[str, np.ndarray], y: np.ndarray, rounds: int = 25) -> tuple[dict[str, float], float]:
    """Caruana's ensemble selection on out-of-fold probabilities *oof* (family → scores of
    the positive class): ``({family: weight}, average precision of the blend)``, the weights
    summing to 1 and only families that were picked."""
    from sklearn.metrics import average_precision_score

    names = sorted(oof)
    if not names:
        return {}, float("nan")
    scores = {k: float(average_precision_score(y, oof[k])) for k in names}
    first = max(names, key=lambda k: scores[k])
    counts = dict.fromkeys(names, 0)
    counts[first] = 1
    total, best, kept = oof[first].astype(float).copy(), scores[first], dict(counts)
    for step in range(2, rounds + 1):
        gains = {k: float(average_precision_score(y, (total + oof[k]) / step)) for k in names}
        pick = max(names, key=lambda k: (gains[k], k == first))
        counts[pick] += 1
        total += oof[pick]
        if gains[pick] > best:  # the best round's weights, not the last round's
            best, kept = gains[pick], dict(counts)
    size = sum(kept.values())
    return {k: c / size for k, c in kept.items() if c}, best
