"""Trial bookkeeping through public storage API only. The heartbeat: while a trial runs inside
``heartbeat()``, its storage records beats; once they stop, ``fail_stale_trials`` fails
the trial, as it would for a worker on a machine that died."""

from __future__ import annotations

import time

import optuna
from optuna.storages import RDBStorage, fail_stale_trials
from optuna.trial import TrialState

from automl.search.storage import heartbeat, heartbeat_enabled, open_storage, storage_trial_id


def test_heartbeat_marks_a_trial_alive_and_its_silence_stale(tmp_path):
    storage = RDBStorage(f"sqlite:///{tmp_path / 'db.sqlite'}", heartbeat_interval=1, grace_period=2)
    assert heartbeat_enabled(storage)
    study = optuna.create_study(study_name="hb", storage=storage)
    beating, silent = study.ask(), study.ask()
    with heartbeat(storage, study, beating.number):
        fail_stale_trials(study)
        assert study.trials[beating.number].state == TrialState.RUNNING
    # The beats stopped: after the grace period the trial is stale; one that never beat is
    # not judged by heartbeats at all.
    end = time.time() + 120
    while study.trials[beating.number].state == TrialState.RUNNING and time.time() < end:
        time.sleep(0.5)
        fail_stale_trials(study)
    assert study.trials[beating.number].state == TrialState.FAIL
    assert study.trials[silent.number].state == TrialState.RUNNING


def test_storage_trial_id_is_the_trials_own(tmp_path):
    storage = open_storage(None, tmp_path)
    assert not heartbeat_enabled(storage)
    study = optuna.create_study(study_name="ids", storage=storage)
    trials = [study.ask() for _ in range(3)]
    ids = [storage_trial_id(storage, study, t.number) for t in trials]
    assert len(set(ids)) == 3
    for t, trial_id in zip(trials, ids, strict=True):
        assert storage.get_trial(trial_id).number == t.number
    with heartbeat(storage, study, trials[0].number):  # no heartbeats on a journal: a no-op
        pass


def test_fail_and_retry_through_the_public_storage_api(tmp_path):
    """What the supervisor and Ctrl-C do to a trial cut off mid-run: fail it with the
    reason and queue its parameters again, until the retries are used up."""
    from automl.search.worker import fail_and_retry

    storage = open_storage(None, tmp_path)
    study = optuna.create_study(study_name="retry", storage=storage)
    trial = study.ask()
    x = trial.suggest_float("x", 0, 1)
    assert fail_and_retry(study, storage, trial.number, "worker process died", 1) == (True, True)
    assert fail_and_retry(study, storage, trial.number, "again", 1) == (False, False)  # already finished
    failed = study.trials[trial.number]
    assert failed.state == TrialState.FAIL and failed.user_attrs["retried"] is True
    assert failed.user_attrs["fail_reason"] == "worker process died; queued again"
    queued = study.get_trials(states=(TrialState.WAITING,))
    assert len(queued) == 1 and queued[0].params == {"x": x}
    retry = study.ask()  # the queued parameters run next; its retries are used up after one more
    assert retry.params == {"x": x}
    assert fail_and_retry(study, storage, retry.number, "interrupted", 1) == (True, False)
    assert study.trials[retry.number].user_attrs["fail_reason"] == "interrupted; retries used up"
