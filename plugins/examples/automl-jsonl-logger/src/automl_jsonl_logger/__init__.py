"""automl-jsonl-logger: automl's trial and run events as JSON Lines.

An example third-party automl plugin: a separate package that automl finds through the
``automl`` entry-point group, implementing three lifecycle hooks:

* ``automl_trial_start``: ``{"event": "trial_start", "trial": 3, "params": {...}}``
* ``automl_trial_end``: the state, objective value, metrics, reason and seconds;
* ``automl_study_end``: trial counts, best trial and value, where the model went.

Each line also carries the time (UTC, ISO 8601), study, task, backbone, objective,
host and process id. Lines go to ``<run directory>/events.jsonl``, or to the file named by
the ``AUTOML_JSONL_LOG`` environment variable (``{study}`` in it is replaced by the study
name). Trial hooks run in worker processes, several at once: each event is one
``write`` to a file opened for appending, so lines never interleave. A logger must not
cost a trial: if the file cannot be written, the plugin warns once on stderr and goes on.
"""

from __future__ import annotations

import json
import math
import os
import socket
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from automl import hookimpl

automl_api_version = "1"

#: Environment variable naming the log file instead of ``<run directory>/events.jsonl``.
ENV_VAR = "AUTOML_JSONL_LOG"
FILE_NAME = "events.jsonl"

_warned: set[str] = set()


def log_path(run: Any) -> Path:
    """Where the events of *run* go."""
    configured = os.environ.get(ENV_VAR)
    if configured:
        return Path(configured.replace("{study}", run.study_name)).expanduser()
    return Path(run.run_dir) / FILE_NAME


def _clean(value: Any) -> Any:
    """JSON-able: NaN and infinities become null (JSON has neither), paths become strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def write_event(run: Any, event: str, **fields: Any) -> None:
    """Append one event line for *run*; never raises for an unwritable file."""
    record = {
        "event": event,
        "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "study": run.study_name,
        "task": run.task,
        "backbone": run.backbone,
        "objective": run.objective,
        "direction": run.direction,
        **fields,
        "host": socket.gethostname(),
        "pid": os.getpid(),
    }
    line = (json.dumps(_clean(record), separators=(",", ":")) + "\n").encode()
    path = log_path(run)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
    except OSError as exc:
        if str(path) not in _warned:
            _warned.add(str(path))
            print(f"warning: jsonl-logger cannot write {path}: {exc.strerror or exc}", file=sys.stderr)


@hookimpl
def automl_trial_start(run, trial):  # type: ignore[no-untyped-def]
    write_event(run, "trial_start", trial=trial.number, params=trial.params)


@hookimpl
def automl_trial_end(run, trial, outcome):  # type: ignore[no-untyped-def]
    write_event(
        run,
        "trial_end",
        trial=trial.number,
        params=trial.params,
        state=outcome.state.value,
        value=outcome.value,
        metrics=outcome.metrics,
        reason=outcome.reason,
        seconds=round(outcome.duration_s, 3),
    )


@hookimpl
def automl_study_end(run, summary):  # type: ignore[no-untyped-def]
    write_event(
        run,
        "study_end",
        complete=summary.n_complete,
        pruned=summary.n_pruned,
        failed=summary.n_failed,
        best_trial=summary.best_trial,
        best_value=summary.best_value,
        best_dir=summary.best_dir,
        interrupted=summary.interrupted,
    )
