"""Greedy ensemble selection as a pure function: a dominant member takes all the weight,
noise is left out, ties go to the earlier candidate; the halves and the averaging."""

from __future__ import annotations

import numpy as np
import pytest

from automl.ensemble import combine, halves, select_weights, softmax, wins_by_margin
from automl.results._formats import ensemble_verdict


def accuracy(outputs: np.ndarray, labels: np.ndarray) -> float:
    return float((outputs.argmax(axis=1) == labels).mean())


def log_loss(outputs: np.ndarray, labels: np.ndarray) -> float:
    p = softmax(outputs)[np.arange(len(labels)), labels]
    return float(-np.log(np.clip(p, 1e-12, 1)).mean())


@pytest.fixture
def labels() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 2, size=200)


def logits_for(labels: np.ndarray, right: np.ndarray, margin: float) -> np.ndarray:
    """Two-class logits: confident and right where *right*, mildly wrong elsewhere."""
    out = np.zeros((len(labels), 2))
    truth = np.where(right, labels, 1 - labels)
    out[np.arange(len(labels)), truth] = np.where(right, margin, 0.5)
    return out


def noise(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 2))


def test_a_dominant_member_takes_all_the_weight(labels):
    perfect = logits_for(labels, np.ones(len(labels), bool), 4.0)
    weights = select_weights([noise(200, 1), perfect, noise(200, 2)], labels, accuracy)
    assert weights.tolist() == [0.0, 1.0, 0.0]


def test_complementary_members_are_mixed_and_noise_is_left_out(labels):
    first = np.arange(len(labels)) < 100
    a = logits_for(labels, first, 4.0)  # right on the first half only
    b = logits_for(labels, ~first, 4.0)  # right on the second half only
    weights = select_weights([a, noise(200, 3), b], labels, accuracy)
    assert weights[1] == 0.0
    assert weights[0] > 0 and weights[2] > 0 and weights.sum() == pytest.approx(1.0)
    assert accuracy(combine([a, b], [weights[0], weights[2]]), labels) == 1.0
    assert max(accuracy(a, labels), accuracy(b, labels)) < 0.6


def test_ties_go_to_the_earlier_candidate(labels):
    same = logits_for(labels, np.arange(len(labels)) % 3 > 0, 2.0)
    assert select_weights([same, same.copy()], labels, accuracy).tolist() == [1.0, 0.0]
    assert select_weights([same.copy(), same], labels, accuracy).tolist() == [1.0, 0.0]


def test_minimising_a_loss_weights_by_selection_counts(labels):
    good = logits_for(labels, np.ones(len(labels), bool), 2.0)
    bad = -good
    weights = select_weights([bad, good], labels, log_loss, maximize=False, rounds=10)
    assert weights.tolist() == [0.0, 1.0]
    # A NaN metric counts as the worst: that candidate is never picked.
    nan_for_bad = lambda out, y: float("nan") if np.allclose(out, bad) else accuracy(out, y)  # noqa: E731
    assert select_weights([bad, good], labels, nan_for_bad).tolist() == [0.0, 1.0]


def test_weights_are_multiples_of_one_over_the_rounds(labels):
    first = np.arange(len(labels)) < 100
    a, b = logits_for(labels, first, 4.0), logits_for(labels, ~first, 4.0)
    weights = select_weights([a, b], labels, log_loss, maximize=False, rounds=7)
    assert any(np.allclose(weights * used, np.round(weights * used)) for used in range(1, 8))


def test_combine_averages_probabilities_and_returns_log_probabilities():
    a, b = np.array([[2.0, 0.0], [0.0, 1.0]]), np.array([[0.0, 3.0], [1.0, 1.0]])
    mixed = combine([a, b], [3, 1])
    assert np.allclose(softmax(mixed), 0.75 * softmax(a) + 0.25 * softmax(b))
    assert np.allclose(np.exp(mixed).sum(axis=1), 1.0)
    assert np.allclose(combine([a, b], [1, 1], probabilities=False), (a + b) / 2)


def test_halves_are_disjoint_stratified_and_seeded():
    labels = [0] * 90 + [1] * 11
    first, second = halves(labels, seed=3, stratify=True)
    assert sorted(np.concatenate([first, second]).tolist()) == list(range(101))
    positives = [sum(labels[i] for i in part) for part in (first, second)]
    assert sorted(positives) == [5, 6]
    again = halves(labels, seed=3, stratify=True)
    assert first.tolist() == again[0].tolist()
    assert halves(labels, seed=4, stratify=True)[0].tolist() != first.tolist()


def test_an_ensemble_must_win_the_held_out_half_by_a_margin():
    # PR-AUC 0.9121 against 0.9119 is a hair, not a win; 0.93 is.
    assert not wins_by_margin(0.9121, 0.9119, maximize=True)
    assert wins_by_margin(0.93, 0.9119, maximize=True)
    assert not wins_by_margin(0.90, 0.9119, maximize=True)
    # A loss wins by being lower by more than the margin.
    assert wins_by_margin(0.30, 0.32, maximize=False) and not wins_by_margin(0.3199, 0.32, maximize=False)
    assert not wins_by_margin(float("nan"), 0.5, maximize=True)


def test_the_verdict_says_why_a_better_ensemble_was_not_exported():
    members = [{"name": "baseline", "weight": 0.64}, {"name": "trial-0", "weight": 0.36}]
    hair = {"members": members, "held_out": {"ensemble": 0.9121, "single_model": 0.9119, "better": True, "min_gain": 0.005}}
    assert ensemble_verdict(hair, "baseline") == "not exported (a gain under the 0.5% an ensemble needs)"
    assert ensemble_verdict(hair, "ensemble") == "exported"
    worse = {"members": members, "held_out": {"ensemble": 0.90, "single_model": 0.9119, "better": False}}
    assert ensemble_verdict(worse, "baseline") == "not exported"
    alone = {"members": [{"name": "baseline", "weight": 1.0}], "held_out": {"ensemble": 0.83, "single_model": 0.83, "better": False}}
    assert ensemble_verdict(alone, "baseline") == "not exported (the selection kept baseline alone: no other model raised it)"


def test_the_note_says_why_the_baseline_was_kept_over_a_better_looking_trial():
    from automl.results._formats import choice_note

    kept = {"choice": {"trial": "trial-0", "lead": 0.02, "standard_error": 0.025, "se_rule": 1.0, "chosen": "baseline"}}
    assert choice_note(kept, "baseline") == "trial-0 led by 0.0200 on validation, within one standard error (0.0250): not better beyond noise"
    assert choice_note(kept, "ensemble") is None
    behind = {"choice": {**kept["choice"], "lead": -0.01}}
    assert choice_note(behind, "baseline") is None
    assert choice_note(None, "baseline") is None
