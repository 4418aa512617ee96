"""The study's budget, as every process of a run counts it: which trials count toward
``search.trials`` (:func:`counts_toward_budget`), how many are used, a trial cut off by a
crash failed and queued again (:func:`fail_and_retry`), and whether a trial can still
finish before the run's deadline (:func:`fits_before`).

The supervisor, the live status and the workers read the study through these, so they
agree on when a run is done.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from automl.search.storage import storage_trial_id

#: Share of ``search.timeout`` the task's baseline is given (``Task.baseline_budget``).
BASELINE_BUDGET_SHARE = 0.2
#: A trial starts when at least this share of the steps it plans fits before the deadline:
#: it then plans fewer steps by itself, its learning-rate schedule with them
#: (:meth:`automl.engine.TrialEngine.steps_that_fit`). Below it, a trial would be a
#: different, much shorter configuration than the one sampled.
MIN_PLAN_SHARE = 0.5
#: Share of ``search.timeout`` kept for the end of the run: trials are done this much before
#: the timeout (each also keeps the time its last evaluation and the scoring of its outputs
#: take, :meth:`automl.engine.TrialEngine.finish_seconds`), leaving it for choosing the
#: model, the ensemble, the export and the report.
END_SHARE = 0.05


def search_deadline(started: float, timeout: float | None) -> float | None:
    """``time.time()`` by which the trials' work is done: *timeout* seconds after *started*
    (when the command started), less :data:`END_SHARE` of it."""
    return started + (1.0 - END_SHARE) * timeout if timeout else None


def process_started() -> float | None:
    """``time.time()`` when this process started (Linux: from ``/proc``), so that a timeout
    counts the interpreter's start and the imports too; ``None`` where it cannot be read."""
    import os

    try:
        with open("/proc/self/stat") as fh:
            ticks = int(fh.read().rsplit(")", 1)[1].split()[19])  # field 22: start time after boot
        with open("/proc/stat") as fh:
            boot = next(int(line.split()[1]) for line in fh if line.startswith("btime "))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def count_states(study: optuna.Study) -> dict[TrialState, int]:
    counts = dict.fromkeys(TrialState, 0)
    for t in study.get_trials(deepcopy=False):
        counts[t.state] += 1
    return counts


def counts_toward_budget(t: optuna.trial.FrozenTrial) -> bool:
    """A trial that ran to an end: complete, pruned, or failed for a reason of its own
    (NaN loss, a plugin error...). A trial cut off by a crash or Ctrl-C is retried instead,
    and a surplus trial (two workers asking at once for the last slot) never ran."""
    if t.state in FINISHED:
        return True
    return t.state == TrialState.FAIL and not t.user_attrs.get("retried") and not t.user_attrs.get("surplus")


def untrained_reason(study: optuna.Study) -> str | None:
    """Why the search trained no trial, when it trained none: ``"trial N not trained: ..."``
    from the last trial it drew and left unrun because it would not have finished before
    the deadline (on a big or wordy table a CPU may not score the validation rows in the
    time given). ``None`` when a trial ran, or none was drawn."""
    trials = study.get_trials(deepcopy=False)
    if any(not t.user_attrs.get("surplus") for t in trials):
        return None
    drawn = [t for t in trials if t.state == TrialState.FAIL and t.user_attrs.get("fail_reason")]
    if not drawn:
        return None
    reason = " ".join(str(drawn[-1].user_attrs["fail_reason"]).split())
    return f"trial {drawn[-1].number} {reason}"


def budget_used(study: optuna.Study) -> int:
    """Trials that count toward ``search.trials``, across every worker and every resume."""
    return sum(1 for t in study.get_trials(deepcopy=False) if counts_toward_budget(t))


def fail_and_retry(
    study: optuna.Study, storage: optuna.storages.BaseStorage, number: int, reason: str, max_retries: int
) -> tuple[bool, bool]:
    """Fail running trial *number* (of *study*, kept in *storage*) with *reason* and queue
    its parameters again (WAITING) unless they were retried *max_retries* times. Returns
    (failed, retried); failed is False if the trial had already finished."""
    trial_id = storage_trial_id(storage, study, number)
    trial = storage.get_trial(trial_id)
    if trial.state.is_finished():
        return False, False
    history = list(trial.system_attrs.get("retry_history", [])) + [trial.number]
    retry = len(history) <= max_retries
    try:
        storage.set_trial_user_attr(trial_id, "fail_reason", reason + ("; queued again" if retry else "; retries used up"))
        if retry:
            storage.set_trial_user_attr(trial_id, "retried", True)
        if not storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
            return False, False
    except (optuna.exceptions.UpdateFinishedTrialError, RuntimeError):
        return False, False
    if retry:
        study.add_trial(
            optuna.trial.create_trial(
                state=TrialState.WAITING,
                params=trial.params,
                distributions=trial.distributions,
                user_attrs={"retry_of": history[0]},
                system_attrs={"retry_history": history},
            )
        )
    return True, retry


#: Drawn trials in a row that may be put aside for not fitting before the deadline.
MAX_UNFIT = 5


def trial_seconds(measured: list[tuple[int, float]], steps: int) -> float:
    """How long a trial of *steps* steps takes, from the ``(steps, seconds)`` of trials
    that trained: a fixed cost per trial plus a cost per step, fitted by least squares
    once trials of different lengths have run (a trial's fixed cost, such as copying the
    model and, for a private trial, the accountant's search for its noise, can outweigh
    its steps: a short pruned trial would otherwise make every step look slow); before
    that, the median seconds per step."""
    lengths = {n for n, _ in measured}
    if len(lengths) >= 2:
        x = np.array([n for n, _ in measured], dtype=float)
        y = np.array([sec for _, sec in measured], dtype=float)
        per_step = float(((x - x.mean()) * (y - y.mean())).sum() / ((x - x.mean()) ** 2).sum())
        if per_step > 0:
            fixed = max(0.0, float(y.mean() - per_step * x.mean()))
            return fixed + per_step * steps
    pace = sorted(sec / n for n, sec in measured)
    return pace[len(pace) // 2] * steps


def fits_before(study: optuna.Study, deadline: float, steps: int | None = None) -> bool:
    """Whether a trial can finish before *deadline*. With the *steps* it plans, its length is
    :func:`trial_seconds` from the trials so far (complete, pruned or cut: every one that
    trained measured the pace); without, the shortest complete trial
    (not counting those the deadline cut short) must fit."""
    left = deadline - time.time()
    if left <= 0:
        return False
    finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    if steps is not None:
        measured = [
            (int(done), float(t.user_attrs["seconds"]))
            for t in finished
            if "seconds" in t.user_attrs and (done := t.user_attrs.get("steps") or t.user_attrs.get("pruned_at_step"))
        ]
        if measured:
            return trial_seconds(measured, steps) <= left
    seconds = [
        float(t.user_attrs["seconds"])
        for t in finished
        if t.state == TrialState.COMPLETE and "seconds" in t.user_attrs and t.user_attrs.get("stopped") != "deadline"
    ]
    return not seconds or min(seconds) <= left


def oom_known(configs: list[dict[str, Any]], params: dict[str, Any], max_length: int) -> bool:
    """True if a configuration at least this large already ran out of memory at
    micro-batch 1 (same adapter, batch size and max length at least as large)."""
    for cfg in configs:
        if (
            cfg.get("adapter") == params.get("adapter", "full")
            and int(params.get("batch_size", 0)) >= int(cfg.get("batch_size", 0))
            and max_length >= int(cfg.get("max_length", 0))
        ):
            return True
    return False
