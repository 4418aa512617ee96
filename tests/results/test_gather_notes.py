"""What the leaderboard's note says the run's deadline did to a trial."""

from automl.results._gather import _budget_note


def test_the_note_says_whether_the_deadline_cut_or_shortened_a_trial():
    assert _budget_note({}, 10) is None
    assert _budget_note({"note": "few positives"}, 10) is None  # the task's note stands alone
    assert _budget_note({"stopped": "deadline"}, 10) == "cut by the deadline (kept at its best evaluation)"
    assert _budget_note({"shortened_from_steps": 400, "note": "x"}, 120) == (
        "planned 400 steps, shortened to 120 to finish by the deadline; x"
    )
