"""Search: pruning, resume after SIGKILL, a worker killed mid-trial, parallel workers on
the embedded journal storage and on the real PostgreSQL server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from automl.recipe import load_recipe
from automl.search.storage import open_storage
from automl.search.supervisor import RunOptions, run_recipe
from automl.search.worker import budget_used

PG_URL = os.environ.get("AUTOML_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def load_study(run_dir: Path, url: str | None = None, name: str | None = None) -> optuna.Study:
    name = name or json.loads((run_dir / "run.json").read_text())["study_name"]
    return optuna.load_study(study_name=name, storage=open_storage(url, run_dir, heartbeat=False))


def _as_in_a_terminal() -> None:
    # A shell without job control starts background jobs with SIGINT ignored, and Python
    # then installs no KeyboardInterrupt handler: pytest started as `pytest ... &` would
    # pass that on and the Ctrl-C test would see a run that ignores Ctrl-C. In a terminal,
    # where users press it, SIGINT has its default action.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def automl(*args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "automl", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,
        preexec_fn=_as_in_a_terminal,
        **kwargs,
    )


def finish(proc: subprocess.Popen, timeout: float = 240) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out
    return out


def wait_for(predicate, timeout: float = 600, what: str = "condition", alive: tuple = (), every: float = 0.3) -> None:
    """Poll *predicate* until it holds; fail at *timeout*, or at once when one of the
    processes in *alive* has exited (what it waited for can no longer happen)."""
    end = time.time() + timeout
    while time.time() < end:
        ended = [p for p in alive if p.poll() is not None]
        if ended:
            out = ended[0].stdout.read() if ended[0].stdout else ""
            raise AssertionError(f"waiting for {what}: a process exited with code {ended[0].returncode}:\n{out[-3000:]}")
        try:
            if predicate():
                return
        except Exception:
            pass
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def parent_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return int(fh.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def running_mid_trial(run_dir: Path, min_done: int = 1):
    """A predicate: at least *min_done* trials done and one running past its first steps."""

    def check() -> bool:
        study = load_study(run_dir)
        done = budget_used(study)
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        progress = list((run_dir / "progress").glob("worker-*.json"))
        if done < min_done or not running or not progress:
            return False
        p = json.loads(progress[0].read_text())
        return p.get("trial") == running[0].number and p.get("step", 0) >= 10

    return check


def assert_exact(study: optuna.Study, target: int) -> None:
    numbers = [t.number for t in study.trials]
    assert len(numbers) == len(set(numbers))
    assert budget_used(study) == target
    assert not study.get_trials(states=(TrialState.RUNNING,))


SLOW_SPACE = {"learning_rate": {"low": 2e-3, "high": 6e-3, "log": True}, "epochs": [60], "batch_size": [16], "adapter": "full"}


def test_pruning_stops_bad_trials(recipe_file):
    path = recipe_file(
        search={
            "trials": 8,
            "pruner": "median",
            "sampler": "random",
            "start_from": "none",
            "prune_after": 0,
            "space": {"learning_rate": {"low": 1e-6, "high": 6e-3, "log": True}, "epochs": [4], "batch_size": [16], "adapter": "full"},
        },
        # Evaluated on a sample of the validation rows while training (training.eval_max_rows).
        training={"max_length": 32, "seed": 0, "eval_max_rows": 50},
    )
    outcome = run_recipe(load_recipe(path), options=RunOptions(workers=0, baseline=False, export=False))
    assert outcome.summary.n_pruned >= 1
    assert outcome.summary.n_complete + outcome.summary.n_pruned == 8
    study = load_study(outcome.run_dir)
    pruned = study.get_trials(states=(TrialState.PRUNED,))
    assert all("pruned after evaluation" in t.user_attrs["prune_reason"] for t in pruned)
    assert all("on a sample of 50 validation rows" in t.user_attrs["prune_reason"] for t in pruned)
    # The report's plots say which figures are the sample's.
    from automl.results import gather
    from automl.results.plots import history, intermediate

    results = gather(outcome.run_dir)
    assert {t.sample_rows for t in results.trials} == {50}
    assert intermediate(results).axes[0].get_ylabel().endswith("(validation sample, 50 rows)")
    labels = history(results).axes[0].get_legend_handles_labels()[1]
    assert "pruned (on a sample of 50 rows)" in labels


@pytest.mark.slow
def test_sigkill_whole_run_then_resume(recipe_file, tmp_path):
    path = recipe_file(search={"trials": 3, "pruner": "none", "space": SLOW_SPACE})
    run_dir = tmp_path / "run"
    proc = automl("run", str(path), "--no-baseline")
    wait_for(running_mid_trial(run_dir), what="a trial in progress")
    before = {t.number: t.value for t in load_study(run_dir).get_trials(states=(TrialState.COMPLETE,))}
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    out = finish(automl("run", str(path), "--no-baseline"))
    assert "cut off by a crash and run again" in out
    study = load_study(run_dir)
    assert_exact(study, 3)
    after = {t.number: t.value for t in study.get_trials(states=(TrialState.COMPLETE,))}
    assert all(after[n] == v for n, v in before.items())  # nothing finished was lost
    killed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert len(killed) == 1 and "worker process died" in killed[0].user_attrs["fail_reason"]
    retry = [t for t in study.trials if t.user_attrs.get("retry_of") == killed[0].number]
    assert retry and retry[0].params == killed[0].params and retry[0].state == TrialState.COMPLETE
    assert (run_dir / "best" / "config.json").exists()


@pytest.mark.slow
def test_killed_worker_is_replaced_and_its_trial_retried(recipe_file, tmp_path):
    path = recipe_file(search={"trials": 3, "pruner": "none", "space": SLOW_SPACE})
    run_dir = tmp_path / "run"
    proc = automl("run", str(path), "--no-baseline")
    wait_for(running_mid_trial(run_dir), what="a trial in progress")
    worker_pid = int(load_study(run_dir).get_trials(states=(TrialState.RUNNING,))[0].user_attrs["worker"].rsplit(":", 1)[1])
    os.kill(worker_pid, signal.SIGKILL)
    out = finish(proc)
    assert "worker process died (killed by SIGKILL)" in out
    study = load_study(run_dir)
    assert_exact(study, 3)
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 3


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_and_resumes(recipe_file, tmp_path):
    path = recipe_file(search={"trials": 3, "pruner": "none", "space": SLOW_SPACE})
    run_dir = tmp_path / "run"
    proc = automl("run", str(path), "--no-baseline")
    wait_for(running_mid_trial(run_dir), what="a trial in progress")
    os.killpg(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    assert f"run `automl run {path}` again to continue" in out
    study = load_study(run_dir)
    assert not study.get_trials(states=(TrialState.RUNNING,))
    interrupted = [t for t in study.trials if t.state == TrialState.FAIL]
    assert "interrupted" in interrupted[0].user_attrs["fail_reason"]
    assert (run_dir / "best" / "config.json").exists()  # the best so far is exported
    finish(automl("run", str(path), "--no-baseline"))
    assert_exact(load_study(run_dir), 3)


@pytest.mark.slow
def test_two_local_workers_share_a_study(recipe_file, tmp_path):
    path = recipe_file(search={"trials": 4, "pruner": "none", "space": {**SLOW_SPACE, "epochs": [3]}})
    out = finish(automl("run", str(path), "--no-baseline", "--workers", "2"))
    assert "Traceback" not in out
    study = load_study(tmp_path / "run")
    assert_exact(study, 4)
    workers = {t.user_attrs["worker"] for t in study.trials}
    assert len(workers) == 2


def _postgres_available() -> bool:
    try:
        import sqlalchemy

        engine = sqlalchemy.create_engine(PG_URL)
        with engine.connect():
            return True
    except Exception:
        return False


@pytest.fixture
def postgres_url():
    if not _postgres_available():
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is not reachable at {PG_URL} in CI")
        pytest.skip(f"PostgreSQL is not reachable at {PG_URL} (these tests run in CI)")
    return PG_URL


@pytest.mark.slow
@pytest.mark.postgres
def test_postgres_two_machines_and_a_restarted_worker(recipe_file, tmp_path, postgres_url):
    """`automl run` and `automl worker` (as a second machine would) share one study in
    PostgreSQL; one of the run's workers is killed mid-trial and replaced."""
    study_name = f"test-{uuid.uuid4().hex[:8]}"
    path = recipe_file(search={"trials": 4, "pruner": "none", "space": {**SLOW_SPACE, "epochs": [10]}})
    run_dir = tmp_path / "run"
    shared = str(tmp_path / "shared-artifacts")
    main = automl("run", str(path), "--no-baseline", "--storage", postgres_url, "--study", study_name, "--artifacts", shared)
    wait_for(lambda: load_study(run_dir, postgres_url, study_name) is not None, what="the study", alive=(main,))
    second = automl(
        "worker", str(path), "--storage", postgres_url, "--study", study_name,
        "--output", str(tmp_path / "machine2"), "--artifacts", shared,
    )

    watched = load_study(run_dir, postgres_url, study_name)  # one connection pool: each poll is one query

    def worker_of_main_running() -> int | None:
        """The pid of one of the run's own workers (a child of *main*, not the second
        machine) while it trains a trial after the first."""
        for t in watched.get_trials(states=(TrialState.RUNNING,)):
            pid = int(t.user_attrs.get("worker", "x:0").rsplit(":", 1)[1])
            if pid and t.number >= 1 and parent_of(pid) == main.pid:
                return pid
        return None

    wait_for(lambda: worker_of_main_running() is not None, what="a running trial", alive=(main, second), every=0.1)
    os.kill(worker_of_main_running(), signal.SIGKILL)
    out1 = finish(main, timeout=300)
    out2 = finish(second, timeout=300)
    assert "password" not in out1 + out2
    study = load_study(run_dir, postgres_url, study_name)
    assert_exact(study, 4)
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert len(failed) == 1 and failed[0].user_attrs.get("retried")
    hosts = {t.user_attrs["worker"] for t in study.trials}
    assert len(hosts) >= 2
    optuna.delete_study(study_name=study_name, storage=postgres_url)


def test_unreachable_storage_is_one_line(recipe_file):
    from click.testing import CliRunner

    from automl.cli import cli

    result = CliRunner().invoke(
        cli, ["run", str(recipe_file()), "--storage", "postgresql://bob:secret@127.0.0.1:1/nope"]
    )
    assert result.exit_code == 2, result.output
    line = [l for l in result.output.splitlines() if l.startswith("error:")]
    assert len(line) == 1 and "cannot open storage" in line[0]
    assert "secret" not in result.output and "***" in line[0]


def test_resume_refuses_a_changed_recipe(recipe_file, tmp_path):
    from click.testing import CliRunner

    from automl.cli import cli

    path = recipe_file(search={"trials": 1, "space": {"epochs": [1], "batch_size": [16], "adapter": "full"}})
    run_recipe(load_recipe(path), options=RunOptions(workers=0, baseline=False, export=False))
    text = path.read_text().replace("max_length: 32", "max_length: 48")
    path.write_text(text)
    result = CliRunner().invoke(cli, ["run", str(path)])
    assert result.exit_code == 2
    assert "different recipe" in result.output and "--fresh" in result.output
    result = CliRunner().invoke(cli, ["run", str(path), "--fresh", "--trials", "1", "--no-baseline", "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert list(tmp_path.glob("run.old-*"))  # the old run was kept


def test_resuming_a_run_from_before_max_length_auto_says_how(recipe_file, tmp_path):
    """A run started when training.max_length defaulted to 128, resumed with a recipe that
    leaves it out (now auto): the refusal says which setting resumes it."""
    import json

    import pytest

    from automl.errors import UserError
    from automl.run import RunContext

    path = recipe_file(training={"seed": 0})
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "run.json").write_text(json.dumps({"fingerprint": "older", "recipe": {"training": {"max_length": 128, "seed": 0}}}))
    with pytest.raises(UserError, match="training.max_length now defaults to auto, and the run used 128: set it to 128 to resume"):
        RunContext.create(load_recipe(path)).prepare_dir()


def test_unwritable_output_fails_before_training(recipe_file, tmp_path):
    from click.testing import CliRunner

    from automl.cli import cli

    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = CliRunner().invoke(cli, ["run", str(recipe_file()), "--output", str(blocker / "run")])
    assert result.exit_code == 2
    assert "not writable" in result.output


def test_prestarted_workers_are_ended_when_the_run_stops_before_its_search(recipe_file, toy_dir, tmp_path):
    """Workers start before the run is set up (their imports overlap it); a user error
    found during the set-up leaves none of them behind, and a cancelled one exits."""
    import multiprocessing

    from automl.errors import UserError
    from automl.search.supervisor import WorkerLauncher

    launcher = WorkerLauncher(RunOptions(workers=2))
    launcher.prestart()
    procs = [proc for proc, _ in launcher.waiting.values()]
    assert len(procs) == 2 and all(p.is_alive() for p in procs)
    launcher.cancel()
    assert not launcher.waiting
    assert all(not p.is_alive() and p.exitcode is not None for p in procs)

    data = tmp_path / "no-label.csv"
    data.write_text("text\nhello\nworld\n")
    path = recipe_file(data={"train": str(data), "validation": str(toy_dir / "validation.csv")})
    with pytest.raises(UserError, match="label"):
        run_recipe(load_recipe(path), options=RunOptions(workers=1, baseline=False))
    assert multiprocessing.active_children() == []
