"""Tests for automl-jsonl-logger. Install the package first (``pip install -e .``): the
tests check that automl finds it through its entry point, as it would for a user."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

import automl_jsonl_logger as logger
from automl import plugins
from automl.events import RunInfo, StudySummary, TrialInfo, TrialOutcome, TrialState


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv(logger.ENV_VAR, raising=False)
    plugins.reset()
    yield
    plugins.reset()


def make_run(run_dir: Path, study: str = "demo") -> RunInfo:
    return RunInfo(study, run_dir, "text-classification", "tiny-bert", "f1_macro", "maximize")


def read_events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_automl_finds_the_installed_plugin():
    assert "jsonl-logger" not in dict(plugins.failed_plugins())
    (info,) = [i for i in plugins.plugin_infos() if i.name == "jsonl-logger"]
    assert info.distribution == "automl-jsonl-logger"
    assert set(info.hooks) == {"automl_trial_start", "automl_trial_end", "automl_study_end"}


def test_a_trial_and_the_run_as_json_lines(tmp_path):
    run = make_run(tmp_path / "run")
    hook = plugins.get_plugin_manager().hook  # called the way automl's workers call it
    trial = TrialInfo(number=0, params={"learning_rate": 0.001, "adapter": "lora"})
    hook.automl_trial_start(run=run, trial=trial)
    hook.automl_trial_end(run=run, trial=trial, outcome=TrialOutcome(TrialState.COMPLETE, 0.8, {"f1_macro": 0.8}, duration_s=2.5))
    hook.automl_trial_end(
        run=run, trial=TrialInfo(1, {}), outcome=TrialOutcome(TrialState.FAILED, None, reason="CUDA out of memory")
    )
    hook.automl_study_end(run=run, summary=StudySummary(1, 0, 1, 0, 0.8, tmp_path / "run" / "best"))

    events = read_events(tmp_path / "run" / logger.FILE_NAME)
    assert [e["event"] for e in events] == ["trial_start", "trial_end", "trial_end", "study_end"]
    start, done, failed, end = events
    assert start["params"] == {"learning_rate": 0.001, "adapter": "lora"}
    assert done["state"] == "complete" and done["value"] == 0.8 and done["metrics"] == {"f1_macro": 0.8}
    assert failed["state"] == "failed" and failed["value"] is None and failed["reason"] == "CUDA out of memory"
    assert end["best_trial"] == 0 and end["best_dir"].endswith("best") and end["interrupted"] is False
    assert all(e["study"] == "demo" and e["task"] == "text-classification" and e["pid"] for e in events)


def test_the_environment_variable_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv(logger.ENV_VAR, str(tmp_path / "logs" / "{study}.jsonl"))
    logger.write_event(make_run(tmp_path / "run", study="fraud"), "trial_start", trial=0)
    assert read_events(tmp_path / "logs" / "fraud.jsonl")[0]["event"] == "trial_start"
    assert not (tmp_path / "run").exists()


def test_values_json_cannot_hold_become_null(tmp_path):
    logger.write_event(make_run(tmp_path), "trial_end", value=float("nan"), metrics={"loss": float("inf")})
    (event,) = read_events(tmp_path / logger.FILE_NAME)
    assert event["value"] is None and event["metrics"] == {"loss": None}


def test_an_unwritable_file_warns_once_and_does_not_fail_the_trial(tmp_path, monkeypatch, capsys):
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv(logger.ENV_VAR, str(tmp_path / "a-file" / "events.jsonl"))
    for number in range(3):
        logger.write_event(make_run(tmp_path), "trial_start", trial=number)
    assert capsys.readouterr().err.count("warning: jsonl-logger cannot write") == 1


def _write_many(run_dir: str, worker: int) -> None:
    for number in range(200):
        logger.write_event(make_run(Path(run_dir)), "trial_end", trial=number, params={"worker": worker, "pad": "x" * 500})


def test_lines_from_several_processes_do_not_interleave(tmp_path):
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_write_many, args=(str(tmp_path), w)) for w in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    events = read_events(tmp_path / logger.FILE_NAME)
    assert len(events) == 600
    assert sorted(e["params"]["worker"] for e in events) == [0] * 200 + [1] * 200 + [2] * 200
