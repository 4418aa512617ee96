"""NBSVM (Wang and Manning 2012) with logistic regression, a words model of the table tasks'
baselines. Its own module so that importing the plugins does not import scikit-learn (the
CLI starts without it); the baseline imports it when it builds its families."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin


class NaiveBayesLogistic(ClassifierMixin, BaseEstimator):
    """A binary classifier on present/absent features (any nonzero value is present), each
    scaled by its naive Bayes log-count ratio ``r = log((p / |p|) / (q / |q|))`` before a
    logistic regression, where ``p`` and ``q`` count the training rows of the second and
    the first class that hold the feature, plus *alpha*. A word ten times likelier in
    serious reports weighs ten times more before the regression weighs the words together:
    a words model whose errors differ from TF-IDF + logistic regression's (on all of VAERS,
    plain logistic regression on the same binary features got no weight in the baseline's
    blend, this one about a sixth, docs/benchmarks.md section 13). Saved with skops: its
    state is the ratios (an array) and a scikit-learn ``LogisticRegression``; the task
    names it in ``model_types`` so that a saved baseline holding it loads."""

    def __init__(self, C: float = 1.0, alpha: float = 1.0, max_iter: int = 3000, random_state: int | None = None) -> None:
        self.C = C
        self.alpha = alpha
        self.max_iter = max_iter
        self.random_state = random_state

    @staticmethod
    def _present(x: Any) -> Any:
        from scipy import sparse

        x = sparse.csr_matrix(x, dtype=np.float32, copy=True)
        x.data = (x.data != 0).astype(np.float32)
        return x

    def fit(self, x: Any, y: Any) -> NaiveBayesLogistic:
        from sklearn.linear_model import LogisticRegression
        from sklearn.utils.multiclass import unique_labels

        self.classes_ = unique_labels(y)
        if len(self.classes_) != 2:
            raise ValueError(f"NaiveBayesLogistic needs two classes, got {len(self.classes_)}")
        present, second = self._present(x), np.asarray(y) == self.classes_[1]
        p = self.alpha + np.asarray(present[second].sum(axis=0)).ravel()
        q = self.alpha + np.asarray(present[~second].sum(axis=0)).ravel()
        self.ratio_ = np.log((p / p.sum()) / (q / q.sum())).astype(np.float32)
        self.n_features_in_ = present.shape[1]
        self.model_ = LogisticRegression(C=self.C, max_iter=self.max_iter, random_state=self.random_state)
        self.model_.fit(present.multiply(self.ratio_).tocsr(), y)
        return self

    def _scaled(self, x: Any) -> Any:
        return self._present(x).multiply(self.ratio_).tocsr()

    def decision_function(self, x: Any) -> np.ndarray:
        return self.model_.decision_function(self._scaled(x))

    def predict_proba(self, x: Any) -> np.ndarray:
        return self.model_.predict_proba(self._scaled(x))

    def predict(self, x: Any) -> np.ndarray:
        return self.model_.predict(self._scaled(x))
