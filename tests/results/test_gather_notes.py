"""What the leaderboard's note says the run's deadline did to a trial."""

from automl.results._gather import _budget_note


def test_the_note_says_whether_the_deadline_cut_or_shortened_a_trial():
    assert _budget_note({}, 10) is None
    assert _budget_note({"note": "few positives"}, 10) is None  # the task's note stands alone
    assert _budget_note({"stopped": "deadline"}, 10) == "cut by the deadline (kept at its best evaluation)"
    assert _budget_note({"shortened_from_steps": 400, "note": "x"}, 120) == (
        "planned 400 steps, shortened to 120 to finish by the deadline; x"
    )


def test_a_run_that_trained_no_trial_says_why_in_the_summary_leaderboard_and_report(render):
    """On a big or wordy table a CPU may score the validation rows too slowly for any trial
    to finish by the deadline: the worker draws a trial and leaves it unrun (a surplus
    trial, not shown as a row). The run's views then say so instead of "no trials yet"."""
    import optuna
    from optuna.trial import TrialState

    from automl.results import gather, leaderboard
    from automl.results.report import headline
    from automl.search.budget import untrained_reason
    from automl.summary import RunSummary

    reason = "not trained: scoring the validation and test rows after training (measured at 15 rows/s) would end past the deadline"
    study = optuna.create_study(study_name="wordy", direction="maximize")
    study.set_user_attr("automl", {"objective": "pr_auc", "direction": "maximize", "task": "fraud-detection"})
    assert untrained_reason(study) is None  # nothing drawn yet
    trial = study.ask()
    trial.set_user_attr("surplus", True)
    trial.set_user_attr("fail_reason", reason)
    study.tell(trial, state=TrialState.FAIL)
    results = gather(study=study, with_importances=False)
    assert results.untrained == f"trial 0 {reason}"
    assert results.trials == []  # not a row: it never ran
    summary = render(RunSummary(results), width=100)
    assert "no trial completed; trial 0 not trained: scoring the validation and test rows" in " ".join(summary.split())
    board = " ".join(render(leaderboard(results), width=100).split())
    assert "no trials: trial 0 not trained" in board and "no trials yet" not in board
    assert ("best trial pr_auc", "-", f"trial 0 {reason}") in headline(results)
    # Once a trial runs, the reason is gone.
    trial = study.ask()
    study.tell(trial, 0.5)
    assert untrained_reason(study) is None and gather(study=study, with_importances=False).untrained is None
