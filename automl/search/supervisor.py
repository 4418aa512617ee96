"""The supervisor: the ``automl run`` process.

It prepares everything once (run directory, study, tokenised data cache, the classical
baseline), starts worker processes (one per GPU when there are GPUs), watches them, and
replaces one that dies: the trial it was running is failed with the reason and queued
again. At the end (budget, timeout or Ctrl-C) it exports the best model.

The automl modules that import torch (the device, the baseline, the export) are imported
inside the functions that need them, after :meth:`WorkerLauncher.prestart` has spawned the
workers: the supervisor's own torch import then overlaps theirs.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState
from rich.console import Console

from automl import plugins
from automl.encoding import describe_auto_length
from automl.errors import StorageError, UserError
from automl.events import StudySummary
from automl.privacy import STUDY_ATTR, privacy_settings
from automl.resolve import check_backbone, check_private_data, check_trainable
from automl.run import RunContext
from automl.search.budget import BASELINE_BUDGET_SHARE, budget_used, fail_and_retry, search_deadline, untrained_reason
from automl.search.live import LiveStatus
from automl.search.storage import mask_url, open_storage
from automl.search.warmstart import queue_start
from automl.search.worker import (
    Worker,
    WorkerArgs,
    plugin_in_traceback,
    quiet_libraries,
    waiting_worker_process,
    worker_process,
)


@dataclass
class RunOptions:
    workers: int = 1
    gpus: list[int] | None = None
    fresh: bool = False
    baseline: bool = True
    export: bool = True
    overrides: dict[str, Any] = field(default_factory=dict)
    artifacts: str | None = None
    #: CPU threads per worker process (default: the cores divided among the workers).
    threads: int | None = None
    #: ``time.time()`` the command started (``automl run``: the process start), from which
    #: ``search.timeout`` counts; None: when the run starts.
    started: float | None = None


@dataclass
class RunOutcome:
    run_dir: Path
    study_name: str
    summary: StudySummary
    best_dir: Path | None
    interrupted: bool
    seconds: float
    baseline: dict[str, Any] | None = None
    study: Any = None

    def failure(self) -> str | None:
        """Why the run produced no best model (one line), or ``None`` when it did (a trial,
        or the baseline when no trial could finish in the time given)."""
        if self.summary.best_trial is not None or self.best_dir is not None:
            return None
        s = self.summary
        line = f"no trial completed ({s.n_failed} failed, {s.n_pruned} pruned)"
        failed = []
        if self.study is not None:
            failed = [t for t in self.study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
                      if not t.user_attrs.get("surplus")]
        if failed:
            reason = " ".join(str(failed[-1].user_attrs.get("fail_reason", "unknown reason")).split())
            line += f"; trial {failed[-1].number} failed: {reason}"
        elif self.study is not None and (untrained := untrained_reason(self.study)):
            line += f"; {untrained}"
        return line + "; see automl leaderboard " + str(self.run_dir)


def _signal_name(code: int | None) -> str:
    if code is None:
        return "unknown"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def create_study(ctx: RunContext, storage: optuna.storages.BaseStorage) -> optuna.Study:
    try:
        study = optuna.create_study(
            study_name=ctx.study_name,
            storage=storage,
            direction=ctx.resolved.objective.direction,
            load_if_exists=True,
        )
    except Exception as exc:
        raise StorageError(f"cannot create study '{ctx.study_name}': {str(exc).splitlines()[0]}", field="--storage") from None
    meta = study.user_attrs.get("automl")
    expected = {
        "task": ctx.recipe.task,
        "backbone": ctx.recipe.backbone,
        "objective": ctx.resolved.objective.name,
        "direction": ctx.resolved.objective.direction,
        "fingerprint": ctx.recipe.fingerprint(),
    }
    if meta is None:
        study.set_user_attr("automl", {**expected, "run_dir": str(ctx.run_dir), "recipe_path": ctx.file})
        study.set_metric_names([ctx.resolved.objective.name])  # plots and Optuna Dashboard show the name
    elif meta.get("fingerprint") != expected["fingerprint"]:
        theirs = meta.get("recipe_path")
        if theirs and theirs != ctx.file:
            origin = f"another recipe, {theirs} (task {meta.get('task')}, fingerprint {meta.get('fingerprint')})"
        elif theirs:
            origin = f"an earlier version of this recipe (fingerprint {meta.get('fingerprint')})"
        else:
            origin = f"a different recipe (task {meta.get('task')}, fingerprint {meta.get('fingerprint')})"
        raise UserError(
            f"study '{ctx.study_name}' in the storage was started from {origin}, not this one "
            f"(fingerprint {expected['fingerprint']}); its trials would mix with this recipe's: "
            "give this run another study name (--study or name:)",
            file=ctx.file,
        )
    if study.direction.name.lower() != ctx.resolved.objective.direction:
        raise UserError(f"study '{ctx.study_name}' optimises in the other direction", file=ctx.file)
    return study


def recover_orphans(study: optuna.Study, storage: optuna.storages.BaseStorage, retries: int) -> list[int]:
    """Fail and requeue RUNNING trials whose worker process on this host is gone (the whole
    run was killed); remote workers are covered by the storage heartbeat."""
    host = socket.gethostname()
    recovered = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        tag = t.user_attrs.get("worker", "")
        tag_host, _, pid = tag.rpartition(":")
        if tag_host != host or not pid.isdigit():
            continue
        if _pid_alive(int(pid)):
            continue
        failed, _ = fail_and_retry(study, storage, t.number, "worker process died (the run was killed)", retries)
        if failed:
            recovered.append(t.number)
    return recovered


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours counts as dead.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def run_baseline(
    ctx: RunContext, data: Any, console: Console | None = None, encoded: dict[str, Any] | None = None,
    deadline: float | None = None, idle_cores: Callable[[], int] | None = None,
) -> dict[str, Any] | None:
    """Train the task's classical baseline once per run (``baseline.json``). It is
    isolated like a trial: an exception is a warning naming the plugin, and the run goes
    on without a baseline row. A baseline that comes with a model is saved as one
    (``baseline/``, see :mod:`automl.baseline`) when *encoded* splits are given."""
    path = ctx.run_dir / "baseline.json"
    if path.exists():
        return json.loads(path.read_text())
    task = ctx.resolved.task
    timeout = ctx.recipe.search.timeout
    task.baseline_budget = BASELINE_BUDGET_SHARE * timeout if timeout else None
    task.baseline_deadline = deadline
    if idle_cores is not None:
        task.baseline_cores = idle_cores  # type: ignore[method-assign]
    try:
        result = task.baseline(data, ctx.recipe.training.seed)
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        plugin = plugin_in_traceback(exc) or plugins.owner_of("task", task.name) or type(task).__module__
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        (console or Console(stderr=True)).print(
            f"[yellow]warning[/]: no baseline: plugin '{plugin}' raised {type(exc).__name__} in "
            f"{task.name}.baseline: {first}; the search goes on without it",
            highlight=False,
            soft_wrap=True,
        )
        return None
    if result is None:
        return None
    if encoded is not None:  # a baseline with a model is saved as one (baseline/)
        from automl.baseline import save_baseline  # torch, imported lazily (see the module docstring)

        try:
            save_baseline(ctx, result, data, encoded)
        except Exception as exc:
            (console or Console(stderr=True)).print(
                f"[yellow]warning[/]: the baseline is not saved as a model: {type(exc).__name__}: {exc}",
                highlight=False,
                soft_wrap=True,
            )
    body = {
        **({"not_private": True} if ctx.recipe.privacy is not None else {}),
        "name": result.name,
        "validation": result.validation,
        "test": result.test,
        "seconds": result.seconds,
        "objective": ctx.resolved.objective.name,
        "value": result.validation.get(ctx.resolved.objective.name),
        **({"extra": result.extra} if result.extra else {}),
    }
    path.write_text(json.dumps(body, indent=2, default=float))
    return body


def study_start(ctx: RunContext, console: Console) -> None:
    """Call ``automl_study_start``: a UserError stops the run, anything else is a warning."""
    try:
        plugins.get_plugin_manager().hook.automl_study_start(run=ctx.info)
    except UserError:
        raise
    except Exception as exc:
        console.print(f"[yellow]warning[/]: automl_study_start raised {type(exc).__name__}: {exc}")


class WorkerLauncher:
    """Starts the worker processes (``spawn``: a fresh interpreter each, one GPU each
    where there are GPUs).

    :meth:`prestart` starts them before the run is set up, without their arguments: each
    imports torch, transformers and the plugins (:func:`~automl.search.worker.preload`,
    about 4 s of a core) while the supervisor validates the recipe, tokenises the data and
    opens the study, then waits. :meth:`start` hands one its arguments, or spawns a
    fresh one where none waits (a replacement) or the waiting one has died. :meth:`cancel`
    ends those never used (a user error, a finished study)."""

    def __init__(self, options: RunOptions) -> None:
        self.options = options
        self.waiting: dict[int, tuple[Any, Any]] = {}

    def prestart(self) -> None:
        if self.options.workers < 1:
            return
        mp = multiprocessing.get_context("spawn")
        for index in range(self.options.workers):
            receive, send = mp.Pipe(duplex=False)
            proc = self._spawn(index, waiting_worker_process, receive)
            receive.close()  # the child holds its own copy
            self.waiting[index] = (proc, send)

    def start(self, index: int, args: WorkerArgs) -> Any:
        waiting = self.waiting.pop(index, None)
        if waiting is not None:
            proc, send = waiting
            if proc.is_alive():
                try:
                    send.send(args.to_json())
                    return proc
                except OSError:
                    pass
                finally:
                    send.close()
            self._end(proc, send)
        return self._spawn(index, worker_process, args.to_json())

    def cancel(self) -> None:
        """End the workers still waiting for arguments; they have run nothing."""
        waiting, self.waiting = self.waiting, {}
        for proc, send in waiting.values():
            self._end(proc, send)

    @staticmethod
    def _end(proc: Any, send: Any) -> None:
        send.close()
        if proc.is_alive():
            proc.terminate()  # it is importing or waiting: nothing to lose
        proc.join(10)
        if proc.is_alive():
            proc.kill()
            proc.join()

    def _spawn(self, index: int, target: Any, argument: Any) -> Any:
        mp = multiprocessing.get_context("spawn")
        proc = mp.Process(target=target, args=(argument,), name=f"automl-worker-{index}", daemon=False)
        saved = os.environ.get("CUDA_VISIBLE_DEVICES")
        if self.options.gpus:
            os.environ["CUDA_VISIBLE_DEVICES"] = str(self.options.gpus[index % len(self.options.gpus)])
        try:
            proc.start()
        finally:
            if self.options.gpus:
                if saved is None:
                    os.environ.pop("CUDA_VISIBLE_DEVICES", None)
                else:
                    os.environ["CUDA_VISIBLE_DEVICES"] = saved
        return proc


class Supervisor:
    def __init__(self, ctx: RunContext, options: RunOptions, console: Console, launcher: WorkerLauncher | None = None) -> None:
        self.ctx = ctx
        self.options = options
        self.console = console
        self.launcher = launcher or WorkerLauncher(options)
        self.procs: dict[int, Any] = {}
        self.deaths = 0
        self.startup_deaths = 0
        self.reported: set[int] = set()
        self.storage: Any = None  # opened by run()

    # ------------------------------------------------------------------ workers

    def _threads(self) -> int | None:
        if self.options.threads:
            return self.options.threads
        if self.options.gpus:
            return None
        return max(1, (os.cpu_count() or 1) // max(1, self.options.workers))

    def _idle_cores(self) -> int:
        """CPU cores no live worker process uses (at least 1): what the baseline, training in
        this process meanwhile, may spread over. A worker on a GPU keeps one core busy."""
        cores = os.cpu_count() or 1
        busy = sum(1 for proc in self.procs.values() if proc.is_alive()) * (self._threads() or 1)
        return max(1, cores - busy)

    def _worker_args(self, index: int, deadline: float | None) -> WorkerArgs:
        ctx = self.ctx
        return WorkerArgs(
            recipe_path=str(ctx.recipe.path),
            overrides=self.options.overrides,
            storage_url=ctx.storage_url,
            study_name=ctx.study_name,
            index=index,
            threads=self._threads(),
            deadline=deadline,
            artifacts=str(ctx.artifacts) if ctx.artifacts else None,
        )

    def _error_file(self, index: int) -> Path:
        return self.ctx.run_dir / "progress" / f"worker-{index}.error"

    def _worker_error(self, index: int) -> dict[str, Any] | None:
        """The one-line error a worker wrote before it exited, if any."""
        try:
            return json.loads(self._error_file(index).read_text())
        except (OSError, ValueError):
            return None

    def _start_worker(self, index: int, deadline: float | None) -> None:
        from dataclasses import replace

        self._error_file(index).unlink(missing_ok=True)
        args = replace(self._worker_args(index, deadline), error_file=str(self._error_file(index)))
        self.procs[index] = self.launcher.start(index, args)

    def _handle_death(self, study: optuna.Study, index: int, proc: Any) -> None:
        tag = f"{socket.gethostname()}:{proc.pid}"
        why = _signal_name(proc.exitcode)
        error = self._worker_error(index)
        if error is not None and error.get("user_error"):
            # The same one line the user would get from this process; it would only repeat.
            raise UserError(str(error.get("message")))
        if error is not None:
            why = str(error.get("message"))
        owned = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("worker") == tag]
        if not owned:
            # It died before running a single trial: a broken install or environment, not
            # a bad trial. Restarting it would only repeat the error.
            self.startup_deaths += 1
            if self.startup_deaths >= 2:
                raise UserError(f"worker processes fail to start: {why}")
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if t.user_attrs.get("worker") == tag:
                reason = f"worker process died ({why}) while running this trial"
                failed, again = fail_and_retry(study, self.storage, t.number, reason, self.ctx.recipe.search.retries)
                if failed:
                    self.console.print(
                        f"[red]trial {t.number} failed[/]: {reason}" + ("; queued again" if again else "; retries used up")
                    )
        self.deaths += 1

    # ------------------------------------------------------------------ main loop

    def run(self) -> RunOutcome:
        ctx = self.ctx
        start = min(self.options.started or time.time(), time.time())
        console = self.console
        # Data first: bad data is reported before anything is written for the run.
        data, tokenizer, encoded = ctx.load_data()
        for name, rows in data.sampled.items():
            console.print(
                f"{name}: a stratified sample of {len(getattr(data, name)):,} of its {rows:,} rows "
                "scores every model of the run (data.max_eval_rows; 0 for every row)"
            )
        if ctx.auto_length:
            console.print(describe_auto_length(ctx.auto_length))
        check_private_data(ctx.recipe, len(data.train))
        storage = self.storage = open_storage(ctx.storage_url, ctx.run_dir)
        study = create_study(ctx, storage)
        if ctx.recipe.privacy is not None:
            study.set_user_attr(STUDY_ATTR, privacy_settings(ctx.recipe.privacy, len(data.train)))
        ctx.write_run_file()
        study_start(ctx, console)
        recovered = recover_orphans(study, storage, ctx.recipe.search.retries + 1)
        if recovered:
            console.print(f"resumed: trial(s) {', '.join(map(str, recovered))} were cut off by a crash and run again")
        done = budget_used(study)
        target = ctx.recipe.search.trials
        if done:
            console.print(f"resuming study '{ctx.study_name}': {done}/{target} trials already done")
        queued = queue_start(study, ctx.resolved.space, list(ctx.resolved.start_from), target)
        if queued:
            console.print(f"warm start: the first {queued} trial(s) are the start configurations (search.start_from)")
        deadline = search_deadline(start, ctx.recipe.search.timeout)

        interrupted = False
        baseline = None
        try:
            if done < target:
                self._start_workers(deadline)  # the first trial starts while the baseline trains
            if self.options.baseline:
                # With privacy on, the baseline (trained without it) is a reference row only:
                # not saved as a model, so it can neither be exported nor join an ensemble.
                baseline = run_baseline(
                    ctx, data, console, None if ctx.recipe.privacy else encoded, deadline, self._idle_cores
                )
            if done < target:
                self._supervise(study, target, deadline)
        except KeyboardInterrupt:
            interrupted = True
            console.print("[yellow]interrupted[/]: stopping workers; finished trials are kept")
            self._stop_workers()
        finally:
            self.launcher.cancel()
            self._stop_workers()
            ctx.drop_private_cache()

        best_dir = None
        if self.options.export:
            try:
                with console.status("exporting the best model"):
                    best_dir = self._export(study, data, tokenizer, encoded)
            except KeyboardInterrupt:
                interrupted = True
                best_dir = self._export(study, data, tokenizer, encoded)
        summary = self._summary(study, best_dir, interrupted)
        outcome = RunOutcome(
            run_dir=ctx.run_dir,
            study_name=ctx.study_name,
            summary=summary,
            best_dir=best_dir,
            interrupted=interrupted,
            seconds=time.time() - start,
            baseline=baseline,
            study=study,
        )
        (ctx.run_dir / "summary.json").write_text(
            json.dumps(
                {
                    "study": ctx.study_name,
                    "storage": mask_url(ctx.storage_url),
                    "n_complete": summary.n_complete,
                    "n_pruned": summary.n_pruned,
                    "n_failed": summary.n_failed,
                    "best_trial": summary.best_trial,
                    "best_value": summary.best_value,
                    "best_dir": str(best_dir) if best_dir else None,
                    "interrupted": interrupted,
                    "seconds": outcome.seconds,
                },
                indent=2,
            )
        )
        try:  # the report (results helper): a failing report must not fail the run
            from automl.results.report import write_report  # torch (importance loads best/), imported lazily

            # The column importance scores the export many times: within what is left before
            # the deadline (at least a few seconds), the rest for `automl report` to compute
            # later. Not up to the timeout: the rest of the report (plots, the HTML page)
            # takes seconds after it, which the end share of the timeout keeps (it had ended
            # a run on all 9,000 VAERS rows at 251 s of a 252 s limit).
            write_report(ctx.run_dir, study=study, seconds=max(5.0, deadline - time.time()) if deadline else None)
        except Exception as exc:
            console.print(f"[yellow]warning[/]: report.html not written: {type(exc).__name__}: {exc}")
        try:
            plugins.get_plugin_manager().hook.automl_study_end(run=ctx.info, summary=summary)
        except Exception as exc:
            console.print(f"[yellow]warning[/]: automl_study_end raised {type(exc).__name__}: {exc}")
        ctx.drop_private_cache()  # again: the report may have read the data
        return outcome

    def _export(self, study: optuna.Study, data: Any, tokenizer: Any, encoded: dict[str, Any]) -> Path | None:
        from automl.best import export_chosen  # torch, imported lazily

        return export_chosen(self.ctx, study, data, tokenizer, encoded)

    def _summary(self, study: optuna.Study, best_dir: Path | None, interrupted: bool) -> StudySummary:
        from automl.export import best_trial, trial_counts  # torch, imported lazily

        counts = trial_counts(study)
        best = best_trial(study)
        return StudySummary(
            n_complete=counts["complete"],
            n_pruned=counts["pruned"],
            n_failed=counts["failed"],
            best_trial=best.number if best else None,
            best_value=best.value if best else None,
            best_dir=best_dir,
            interrupted=interrupted,
        )

    def _start_workers(self, deadline: float | None) -> None:
        for i in range(self.options.workers):  # none with workers=0: _supervise runs trials in-process
            self._start_worker(i, deadline)

    def _supervise(self, study: optuna.Study, target: int, deadline: float | None) -> None:
        if self.options.workers == 0:
            # In-process (tests, debugging, plugins registered at run time): no isolation
            # from hard crashes, but the same bookkeeping.
            live = LiveStatus(self.ctx, study, target, self.console)
            live.live = None
            worker = Worker(self._worker_args(0, deadline), ctx=self.ctx)
            worker.after_trial = live.refresh
            worker.loop()
            return

        live = LiveStatus(self.ctx, study, target, self.console)
        with live:
            while self.procs:
                time.sleep(0.5)
                live.refresh()
                for index, proc in list(self.procs.items()):
                    if proc.is_alive():
                        continue
                    proc.join()
                    del self.procs[index]
                    if proc.exitcode == 130:
                        raise KeyboardInterrupt
                    if proc.exitcode != 0:
                        self._handle_death(study, index, proc)
                        if self.deaths > 3 * self.options.workers + 3:
                            raise UserError(
                                f"workers keep dying ({_signal_name(proc.exitcode)}); stopping. "
                                "See the trials' reasons with automl leaderboard"
                            )
                    finished = budget_used(study)
                    out_of_time = deadline is not None and time.time() >= deadline
                    if finished < target and not out_of_time and proc.exitcode != 0:
                        self._start_worker(index, deadline)
            live.refresh()

    def _stop_workers(self) -> None:
        end = time.time() + 30
        for proc in self.procs.values():
            if proc.is_alive():
                try:
                    os.kill(proc.pid, signal.SIGINT)
                except ProcessLookupError:
                    pass
        for proc in self.procs.values():
            proc.join(timeout=max(0.1, end - time.time()))
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join()
        self.procs.clear()


def run_recipe(
    recipe: Any,
    *,
    storage_url: str | None = None,
    study_name: str | None = None,
    options: RunOptions | None = None,
    console: Console | None = None,
) -> RunOutcome:
    """Run a recipe's search: the library function behind ``automl run``."""
    quiet_libraries()
    options = options or RunOptions()
    console = console or Console(stderr=True)
    launcher = WorkerLauncher(options)
    if recipe.path is not None:
        launcher.prestart()  # their imports overlap the set-up below
    try:
        return _run(recipe, storage_url, study_name, options, console, launcher)
    finally:
        launcher.cancel()  # a user error before the search: they never ran anything


def _run(
    recipe: Any, storage_url: str | None, study_name: str | None, options: RunOptions, console: Console, launcher: WorkerLauncher
) -> RunOutcome:
    ctx = RunContext.create(recipe, storage_url=storage_url, study_name=study_name, artifacts=options.artifacts)
    from automl.device import machine_problems  # torch, imported lazily

    file = str(recipe.path) if recipe.path else None
    problems = machine_problems(recipe.training.device, recipe.training.precision)
    if problems:  # `automl recipe check` only warns: the recipe may be meant for another machine
        raise UserError(problems[0][1], file=file, field=problems[0][0])
    for warning in (*ctx.resolved.warnings, *check_backbone(ctx.resolved)):
        console.print(f"[yellow]warning[/]: {file + ': ' if file else ''}{warning}", highlight=False, soft_wrap=True)
    check_trainable(ctx.resolved)
    if recipe.path is None:
        raise UserError("a recipe must be loaded from a file to run (workers re-read it)")
    existed = ctx.run_dir.exists()
    moved = ctx.prepare_dir(fresh=options.fresh)
    if moved is not None:
        console.print(f"--fresh: the previous run was moved to {moved}")
    try:
        return Supervisor(ctx, options, console, launcher).run()
    except UserError:
        # Bad data is reported before anything is written for the run: the directory made
        # for it goes too (only while empty; a run to resume keeps its own).
        if not existed:
            with contextlib.suppress(OSError):
                ctx.run_dir.rmdir()
        raise


__all__ = ["RunOptions", "RunOutcome", "run_recipe"]
