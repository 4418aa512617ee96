"""A worker: one process that runs trials of a study until the budget is spent.

It loads the data (tokenised once, from the run's cache) and the pretrained weights once,
then asks the study for trials and runs each through the :class:`~automl.engine.TrialEngine`.
Every trial ends in the storage as complete, pruned or failed with a reason; nothing a
trial does can take the study down.

The automl modules that import torch (the device, the engine, checkpoints, weights, the
baseline's export) are imported inside the functions that need them: the supervisor
imports this module for the worker processes' entry points before it spawns them, and a
waiting worker imports them in :func:`preload` while the supervisor sets the run up.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from automl import plugins
from automl.errors import EXIT_BUG, UserError
from automl.events import TrialInfo, TrialOutcome
from automl.events import TrialState as State
from automl.privacy import ATTR as PRIVACY_ATTR
from automl.privacy import BudgetSpent, epsilon, resolve_delta, search_history, share_budget, trials_spent, trials_that_fit
from automl.recipe import load_recipe, parse_policy
from automl.run import RunContext
from automl.search.samplers import make_pruner, make_sampler, plan_evaluations
from automl.search.budget import (
    MAX_UNFIT,
    MIN_PLAN_SHARE,
    budget_used,
    count_states,
    counts_toward_budget,
    fail_and_retry,
    fits_before,
    oom_known,
)
from automl.search.storage import heartbeat, heartbeat_enabled, open_storage

def worker_tag(pid: int | None = None) -> str:
    return f"{socket.gethostname()}:{pid or os.getpid()}"


@dataclass(frozen=True)
class WorkerArgs:
    """What a worker process needs; passed as JSON (no pickle)."""

    recipe_path: str
    overrides: dict[str, Any]
    storage_url: str | None
    study_name: str
    index: int
    threads: int | None
    deadline: float | None
    artifacts: str | None = None
    #: Stop asking for trials when the supervising process dies.
    supervised: bool = True
    #: Where the process writes its one-line error (JSON) before it exits non-zero.
    error_file: str | None = None

    def to_json(self) -> str:
        return json.dumps(self.__dict__)

    @classmethod
    def from_json(cls, raw: str) -> WorkerArgs:
        return cls(**json.loads(raw))


def plugin_in_traceback(exc: BaseException) -> str | None:
    """Name the plugin whose code raised *exc*, if any."""
    pm = plugins.get_plugin_manager()
    files: dict[str, str] = {}
    for name, plugin in pm.list_name_plugin():
        module_file = getattr(plugin, "__file__", None) or getattr(sys.modules.get(type(plugin).__module__), "__file__", None)
        if module_file:
            files[os.path.abspath(module_file)] = name
    for kind, registry in (("task", plugins.get_tasks()), ("backbone", plugins.get_backbones())):
        for cls in registry.values():
            module = sys.modules.get(cls.__module__)
            if module is not None and getattr(module, "__file__", None):
                files[os.path.abspath(module.__file__)] = plugins.owner_of(kind, cls.name) or cls.__module__
    for frame, _ in reversed(list(traceback.walk_tb(exc.__traceback__))):
        filename = os.path.abspath(frame.f_code.co_filename)
        if filename in files:
            return files[filename]
    return None


class Worker:
    def __init__(self, args: WorkerArgs, ctx: Any = None) -> None:
        self.args = args
        if ctx is None:
            recipe = load_recipe(args.recipe_path).with_overrides(**args.overrides)
            ctx = RunContext.create(recipe, storage_url=args.storage_url, study_name=args.study_name, artifacts=args.artifacts)
        self.ctx = ctx
        self.recipe = ctx.recipe
        #: Called after each trial (the in-process run refreshes its output here).
        self.after_trial: Any = None
        #: Set when the sampler has nothing left to try (a finished grid), or when
        #: MAX_UNFIT draws in a row could not finish before the deadline.
        self.exhausted = False
        #: Consecutive drawn trials that would not have finished before the deadline.
        self.unfit = 0
        self.tag = worker_tag()
        self.storage = open_storage(args.storage_url, self.ctx.run_dir)
        self.progress_file = self.ctx.run_dir / "progress" / f"worker-{args.index}.json"
        self._engine: Any = None
        self._last_progress = 0.0
        #: Evaluation plan (``eval_every: auto``), set when the engine is built.
        self.plan: Any = None

    # ------------------------------------------------------------------ setup

    @property
    def engine(self) -> Any:
        if self._engine is None:
            self._engine = self._build_engine()
        return self._engine

    def _build_engine(self) -> Any:
        from automl.device import pick_device  # torch, imported lazily (see the module docstring)
        from automl.engine import TrialEngine, TrialPolicy  # torch, imported lazily
        ctx = self.ctx
        training = self.recipe.training
        setup = pick_device(training.device, training.precision, self.args.threads, training=True)
        data, tokenizer, encoded = ctx.load_data()
        base = ctx.load_base_model()
        splits = {"train": data.train, "validation": data.validation}
        evaluated = min(len(data.validation), training.eval_max_rows or len(data.validation))  # rows per evaluation
        self.plan = plan_evaluations(self.recipe, ctx.resolved.space, len(data.train), evaluated)
        policy = TrialPolicy(
            eval_examples=self.plan.examples if self.plan else None,
            prune_after=self.recipe.search.prune_after,
            patience=training.early_stopping_patience,
            min_delta=training.early_stopping_min_delta,
            deadline=self.args.deadline,
        )
        engine_class: Any = TrialEngine
        private: dict[str, Any] = {}
        if self.recipe.privacy is not None:
            from automl.private_training import PrivateTrialEngine  # torch, imported lazily

            engine_class = PrivateTrialEngine
            spec = self.recipe.privacy
            private = {"delta": resolve_delta(spec, len(data.train)), "max_grad_norm": spec.max_grad_norm,
                       "physical_batch_size": spec.physical_batch_size}
        return engine_class(
            **private,
            task=ctx.resolved.task,
            base_model=base,
            encoded=encoded,
            splits=splits,
            setup=setup,
            pad_id=tokenizer.pad_token_id or 0,
            objective=ctx.resolved.objective.name,
            direction=ctx.resolved.objective.direction,
            lora_targets=ctx.resolved.backbone.lora_target_modules(base),
            seed=training.seed,
            eval_every=training.eval_every,
            eval_batch_size=training.eval_batch_size,
            policy=policy,
            gradient_checkpointing=training.gradient_checkpointing,
            load_quantized=lambda quantization: ctx.load_base_model(quantization=quantization),
            eval_max_rows=training.eval_max_rows,
        )

    def _checkpoint(self, trial: optuna.Trial, params: dict[str, Any], on_resume: Any) -> Any:
        """The trial's checkpoint when the recipe (or ``auto`` for a large backbone) asks for
        one. A re-run of a trial cut off by a crash (``retry_of``) finds its checkpoint."""
        from automl.checkpoint import TrialCheckpoint  # torch, imported lazily

        n_parameters = sum(p.numel() for p in self.engine.base_model.parameters())
        policy = parse_policy(self.recipe.training.checkpoint_every, n_parameters)
        if policy is None:
            return None
        key = trial.user_attrs.get("retry_of", trial.number)
        directory = (self.ctx.artifacts or self.ctx.run_dir) / "checkpoints" / f"{self.args.study_name}-trial-{key}"
        return TrialCheckpoint(directory, params, policy, on_resume=on_resume)

    def study(self) -> optuna.Study:
        return optuna.load_study(
            study_name=self.args.study_name,
            storage=self.storage,
            sampler=make_sampler(self.recipe, self.ctx.resolved.space, self.args.index),
            pruner=make_pruner(self.recipe, self.plan),
        )

    # ------------------------------------------------------------------ loop

    def loop(self) -> None:
        from optuna.storages import fail_stale_trials

        # Build the engine before the first ask, so a slow start holds no trial (and the
        # pruner gets its resources from the evaluation plan).
        _ = self.engine
        study = self.study()
        target = self.recipe.search.trials
        parent = os.getppid()
        while not self.exhausted:
            if self.args.deadline is not None and not fits_before(study, self.args.deadline):
                return
            if self.args.supervised and os.getppid() != parent:
                return  # the supervisor is gone (killed): finish no more trials on its behalf
            if heartbeat_enabled(self.storage):
                fail_stale_trials(study)
            counts = count_states(study)
            used = budget_used(study)
            if used >= target:
                return
            if used + counts[TrialState.RUNNING] >= target and counts[TrialState.WAITING] == 0:
                time.sleep(1.0)  # wait: a running trial may still fail and need a replacement
                continue
            trial = study.ask()
            trial.set_user_attr("worker", self.tag)
            if self._surplus(study, trial, target):
                trial.set_user_attr("surplus", True)
                trial.set_user_attr("fail_reason", "not needed: trial budget reached")
                self._tell(study, trial, state=TrialState.FAIL)
                continue
            self.run_one(study, trial)
            if self.after_trial is not None:
                self.after_trial()

    def _tell(self, study: optuna.Study, trial: optuna.Trial, value: float | None = None, **kwargs: Any) -> None:
        try:
            study.tell(trial, value, **kwargs)
        except RuntimeError as exc:
            # GridSampler calls study.stop() once the grid is covered, which only works
            # inside study.optimize; the trial is stored by then.
            if "Study.stop" not in str(exc):
                raise
            self.exhausted = True

    def _surplus(self, study: optuna.Study, trial: optuna.Trial, target: int) -> bool:
        """Two workers may ask at once near the end of the budget; the later one yields."""
        active = [
            t
            for t in study.get_trials(deepcopy=False)
            if t.number < trial.number and (t.state == TrialState.RUNNING or counts_toward_budget(t))
        ]
        return len(active) >= target

    # ------------------------------------------------------------------ one trial

    def _write_progress(self, **fields: Any) -> None:
        now = time.time()
        if now - self._last_progress < 0.5 and not fields.get("force"):
            return
        self._last_progress = now
        fields.pop("force", None)
        try:
            self.progress_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.progress_file.with_suffix(".tmp")
            tmp.write_text(json.dumps({"updated": now, "worker": self.tag, **fields}))
            os.replace(tmp, self.progress_file)
        except OSError:
            pass

    def run_one(self, study: optuna.Study, trial: optuna.Trial) -> None:
        with heartbeat(self.storage, study, trial.number):
            self._run_one(study, trial)

    def _run_one(self, study: optuna.Study, trial: optuna.Trial) -> None:
        from automl.engine import NoTimeLeft, OutOfMemory, TrialFailed, TrialStopped  # torch, imported lazily

        hook = plugins.get_plugin_manager().hook
        run_info = self.ctx.info
        start = time.perf_counter()
        params = self.ctx.resolved.space.sample(trial)
        info = TrialInfo(number=trial.number, params=dict(params))
        set_attr = trial.set_user_attr
        outcome: TrialOutcome

        needed = math.ceil(MIN_PLAN_SHARE * self.engine.planned_steps(params))
        if self.args.deadline is not None and not fits_before(study, self.args.deadline, needed):
            # Sampled, but not even MIN_PLAN_SHARE of it can finish in the time left (a
            # trial that can shortens its plan itself): not run and not counted. A
            # shorter draw (fewer epochs, a larger batch) may still fit; after MAX_UNFIT
            # draws in a row that do not, the search ends (the timeout is a wall-clock
            # budget).
            set_attr("surplus", True)
            set_attr("fail_reason", "not started: it would not finish before the timeout")
            self._tell(study, trial, state=TrialState.FAIL)
            self.unfit += 1
            self.exhausted = self.exhausted or self.unfit >= MAX_UNFIT
            return
        self.unfit = 0

        if oom_known(study.user_attrs.get("oom_configs", []), params, self.ctx.max_length):
            reason = "skipped: this adapter and batch size ran out of memory before, even at micro-batch 1"
            set_attr("fail_reason", reason)
            self._tell(study, trial, state=TrialState.FAIL)
            return

        target = None
        if self.recipe.privacy is not None:
            try:
                target = self._private_target(study, trial, params)
            except BudgetSpent as exc:
                set_attr("surplus", True)
                set_attr("fail_reason", f"not started: {exc}")
                self._tell(study, trial, state=TrialState.FAIL)
                self.exhausted = True
                return

        evals = 0
        sampled = False

        def report(step: int, value: float, metrics: dict[str, float]) -> bool:
            nonlocal evals, sampled
            evals += 1
            if not sampled and self.engine.evaluated_on != "validation":  # a sample of the validation rows
                sampled = True
                set_attr("eval_sample_rows", self.engine.sample_rows)
            trial.report(value, evals)
            self._write_progress(trial=trial.number, step=step, value=value, force=True)
            return trial.should_prune()

        def progress(epoch: int, step: int, total: int, loss: float) -> None:
            self._write_progress(trial=trial.number, epoch=epoch, step=step, total=total, loss=loss)

        def resumed(loop: Any) -> None:
            nonlocal evals
            evals = loop.evaluations
            set_attr("resumed_from_step", loop.step)

        # A private trial is not resumed from a checkpoint: cut off, it is accounted in
        # full (its plan) and a fresh one runs instead.
        checkpoint = self._checkpoint(trial, params, resumed) if target is None else None

        try:
            try:
                hook.automl_trial_start(run=run_info, trial=info)
            except Exception as exc:
                name = plugin_in_traceback(exc) or "a plugin"
                raise TrialFailed(f"plugin '{name}' raised in automl_trial_start: {type(exc).__name__}: {exc}") from exc
            if target is None:
                result = self.engine.run_trial(params, reporter=report, progress=progress, checkpoint=checkpoint)
            else:
                result = self.engine.run_trial(params, reporter=report, progress=progress, **self._private_books(trial, params, target))
        except TrialStopped as stop:
            set_attr("pruned_at_step", stop.step)
            set_attr("seconds", time.perf_counter() - start)
            sample = self.engine.sample_rows
            on = f" on a sample of {sample:,} validation rows" if sample else ""
            set_attr("prune_reason", f"pruned after evaluation {evals}: {self.ctx.resolved.objective.name} {stop.value:.4g}{on}")
            self._tell(study, trial, state=TrialState.PRUNED)
            outcome = TrialOutcome(State.PRUNED, None, reason=str(stop), duration_s=time.perf_counter() - start)
        except KeyboardInterrupt:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the bookkeeping
            fail_and_retry(study, self.storage, trial.number, "interrupted (Ctrl-C or stop signal)", self.recipe.search.retries + 1)
            raise
        except NoTimeLeft as exc:
            # Like a draw that would not fit: not counted; the search is out of time.
            set_attr("surplus", True)
            outcome = self._fail(study, trial, str(exc), start)
            self.exhausted = True
        except OutOfMemory as exc:
            configs = list(study.user_attrs.get("oom_configs", []))
            configs.append(
                {"adapter": params.get("adapter", "full"), "batch_size": int(params.get("batch_size", 0)),
                 "max_length": self.ctx.max_length, "micro_batch_size": 1}
            )
            study.set_user_attr("oom_configs", configs)
            outcome = self._fail(study, trial, str(exc), start)
        except TrialFailed as exc:
            outcome = self._fail(study, trial, str(exc), start)
        except Exception as exc:  # a bug in a plugin or in the data must not stop the search
            plugin = plugin_in_traceback(exc)
            where = f"plugin '{plugin}' raised " if plugin else ""
            outcome = self._fail(study, trial, f"{where}{type(exc).__name__}: {exc}", start)
        else:
            outcome = self._complete(study, trial, params, result, start)
        finally:
            self.engine.free_memory()
        if checkpoint is not None:  # the trial ended: its checkpoint is not needed again
            checkpoint.remove()
        try:
            hook.automl_trial_end(run=run_info, trial=info, outcome=outcome)
        except Exception as exc:
            print(f"warning: automl_trial_end raised {type(exc).__name__}: {exc}", file=sys.stderr)

    # ------------------------------------------------------------------ privacy

    def _private_target(self, study: optuna.Study, trial: optuna.Trial, params: dict[str, Any]) -> float:
        """The ε this trial may spend: ``privacy.epsilon`` (``accounting: trial``), or its
        share of what the search's budget has left (:func:`automl.privacy.share_budget`)."""
        spec = self.recipe.privacy
        assert spec is not None
        if spec.accounting == "trial":
            return spec.epsilon
        engine = self.engine
        trials = self._earlier_plans(study, trial.number)
        steps = engine.planned_steps(params)
        remaining = self.recipe.search.trials - trials_spent(trials, before=trial.number)
        if self.args.deadline is not None:
            # Trials the timeout will not leave room for get no share: a trial that is the
            # last to fit gets what the budget has left.
            n = len(engine.train_lengths)
            fit = trials_that_fit(trials, self.args.deadline - time.time(), round(steps * engine.sample_rate(params) * n), n)
            if fit is not None:
                remaining = min(remaining, max(1, fit))
        return share_budget(
            spec.epsilon, engine.delta, search_history(trials, before=trial.number), remaining, engine.sample_rate(params), steps
        )

    @staticmethod
    def _earlier_plans(study: optuna.Study, number: int, wait: float = 120.0) -> list[Any]:
        """The study's trials, once every trial numbered below *number* that is running has
        booked its plan (another worker may have started one a moment earlier): the budget
        is shared in trial order."""
        end = time.time() + wait
        while True:
            trials = study.get_trials(deepcopy=False)
            pending = [t for t in trials if t.number < number and t.state == TrialState.RUNNING and PRIVACY_ATTR not in t.user_attrs]
            if not pending or time.time() > end:
                return trials
            time.sleep(0.5)

    def _private_books(self, trial: optuna.Trial, params: dict[str, Any], target: float) -> dict[str, Any]:
        """The engine's callbacks that book a private trial in the study: its plan before
        the first step, what it spent when it ends (trial attribute ``privacy``)."""
        engine = self.engine
        spec = self.recipe.privacy
        assert spec is not None
        books: dict[str, Any] = {
            "target_epsilon": target, "delta": engine.delta, "history": [], "finished": False,
            "max_grad_norm": float(params.get("max_grad_norm", spec.max_grad_norm)),
        }

        def on_plan(noise: float, sample_rate: float, steps: int) -> None:
            books.update(planned=[noise, sample_rate, steps], noise_multiplier=noise, sample_rate=sample_rate, finished=False)
            trial.set_user_attr(PRIVACY_ATTR, dict(books))

        def on_spent(history: list[tuple[float, float, int]]) -> None:
            books.update(history=[list(h) for h in history], finished=True, steps=sum(int(h[2]) for h in history),
                         epsilon=round(epsilon(history, engine.delta), 4))
            trial.set_user_attr(PRIVACY_ATTR, dict(books))

        return {"target_epsilon": target, "on_plan": on_plan, "on_spent": on_spent}

    def _fail(self, study: optuna.Study, trial: optuna.Trial, reason: str, start: float) -> TrialOutcome:
        trial.set_user_attr("fail_reason", reason[:500])
        trial.set_user_attr("seconds", time.perf_counter() - start)
        self._tell(study, trial, state=TrialState.FAIL)
        return TrialOutcome(State.FAILED, None, reason=reason, duration_s=time.perf_counter() - start)

    def _complete(self, study: optuna.Study, trial: optuna.Trial, params: dict[str, Any], result: Any, start: float) -> TrialOutcome:
        set_attr = trial.set_user_attr
        set_attr("metrics", {k: float(v) for k, v in result.metrics.items()})
        set_attr("calibration", result.calibration)
        set_attr("steps", result.steps)
        set_attr("epochs", round(result.epochs, 3))
        set_attr("seconds", time.perf_counter() - start)
        set_attr("samples_per_second", round(result.samples_per_second, 2))
        set_attr("micro_batch_size", result.micro_batch_size)
        set_attr("best_step", result.best_step)
        if result.stopped:
            # "deadline": cut by the run's timeout, kept at its best evaluation.
            set_attr("stopped", result.stopped)
        if result.planned_steps:
            # It planned fewer steps to finish by the deadline (its schedule too).
            set_attr("shortened_from_steps", result.planned_steps)
        if result.oom_retries:
            set_attr("oom_retries", result.oom_retries)
        note = self.ctx.resolved.task.diagnose(result.metrics)
        if note:
            set_attr("note", note[:300])
        if result.peak_memory is not None:
            set_attr("peak_gpu_memory_mib", round(result.peak_memory / 2**20))
        if self._in_top_k(study, result.value):
            self._keep_weights(study, trial, params, result)
        self._tell(study, trial, result.value)
        result.model = None  # let free_memory() release it before the next trial
        self._drop_beyond_top_k(study)
        return TrialOutcome(State.COMPLETE, result.value, metrics=result.metrics, duration_s=time.perf_counter() - start)

    # ------------------------------------------------------------------ top-k weights

    def _ranked(self, study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
        done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.value is not None and math.isfinite(t.value)]
        reverse = self.ctx.resolved.objective.direction == "maximize"
        return sorted(done, key=lambda t: (t.value, -t.number) if reverse else (-t.value, -t.number), reverse=True)  # type: ignore[operator]

    def _in_top_k(self, study: optuna.Study, value: float) -> bool:
        k = self.recipe.search.keep_top_k
        ranked = self._ranked(study)
        if len(ranked) < k:
            return True
        kth = ranked[k - 1].value
        assert kth is not None
        return value > kth if self.ctx.resolved.objective.direction == "maximize" else value < kth

    def _keep_weights(self, study: optuna.Study, trial: optuna.Trial, params: dict[str, Any], result: Any) -> None:
        from optuna.artifacts import FileSystemArtifactStore, upload_artifact

        from automl.weights import save_trial_weights  # torch, imported lazily

        store = FileSystemArtifactStore(str(self.ctx.artifact_dir))
        with tempfile.TemporaryDirectory(dir=self.ctx.run_dir) as tmp:
            path = Path(tmp) / f"trial-{trial.number}.safetensors"
            save_trial_weights(result.model, params.get("adapter", "full"), path)
            artifact_id = upload_artifact(artifact_store=store, file_path=str(path), study_or_trial=trial)
            outputs_id = self._keep_outputs(store, trial, result, Path(tmp))
        trial.set_user_attr("artifact_id", artifact_id)
        if outputs_id:
            trial.set_user_attr("outputs_artifact_id", outputs_id)

    def _keep_outputs(self, store: Any, trial: optuna.Trial, result: Any, tmp: Path) -> str | None:
        """Validation and test outputs of a kept trial (npz), for ensembles: no re-inference
        later. The validation outputs are those of the trial's best evaluation (its weights
        are the model's), computed once."""
        from optuna.artifacts import upload_artifact

        from automl.baseline import save_outputs  # torch (through the export), imported lazily

        if self.ctx.resolved.task.head != "sequence-classification":
            return None
        engine = self.engine
        outputs = {split: engine.outputs(result.model, split) for split in ("test",) if split in engine.encoded}
        outputs["validation"] = (
            result.validation_outputs if result.validation_outputs is not None else engine.outputs(result.model, "validation")
        )
        path = tmp / f"trial-{trial.number}-outputs.npz"
        save_outputs(path, outputs)
        return upload_artifact(artifact_store=store, file_path=str(path), study_or_trial=trial)

    def _drop_beyond_top_k(self, study: optuna.Study) -> None:
        from optuna.artifacts import FileSystemArtifactStore

        store = FileSystemArtifactStore(str(self.ctx.artifact_dir))
        for t in self._ranked(study)[self.recipe.search.keep_top_k :]:
            for artifact_id in (t.user_attrs.get("artifact_id"), t.user_attrs.get("outputs_artifact_id")):
                if not artifact_id:
                    continue
                try:
                    store.remove(artifact_id)
                except Exception:
                    pass


def quiet_libraries() -> None:
    """Keep library chatter (deprecation notices, progress bars, info logs) out of the run's
    output; automl reports what matters itself."""
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message=".*TRANSFORMERS_CACHE.*")
    # Opacus, in every private trial: its noise generator is not a cryptographically secure
    # one (docs/privacy.md says so once), and a note on the RDP orders its PRV accountant
    # bounds the domain with.
    warnings.filterwarnings("ignore", message="Secure RNG turned off")
    warnings.filterwarnings("ignore", message="Optimal order is the largest alpha")
    warnings.filterwarnings("ignore", message="Full backward hook is firing when gradients are computed with respect to module outputs")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover
        pass


def preload() -> None:
    """Import what every worker needs before its first trial (torch, transformers, the
    engine, the plugins): about 4 s of a CPU core, which a worker started ahead of the
    run's set-up spends while the supervisor prepares the run."""
    import torch  # noqa: F401
    import transformers.modeling_utils  # noqa: F401

    import automl.engine  # noqa: F401  (torch: the point of preloading)
    plugins.get_plugin_manager()


def waiting_worker_process(conn: Any) -> None:
    """Entry point of a worker process started before the run is set up: it imports what
    it will need (:func:`preload`), then waits for its arguments on *conn*. The
    supervisor sends ``None`` (or closes the pipe, or exits) when the run needs no worker
    after all: then it exits quietly. A stop signal before the arguments arrive ends it
    quietly too (the supervisor reports what happened)."""
    try:
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        quiet_libraries()
        preload()
        raw_args = conn.recv()
    except KeyboardInterrupt:
        sys.exit(130)
    except (EOFError, OSError):
        sys.exit(0)
    finally:
        conn.close()
    if raw_args is None:
        sys.exit(0)
    worker_process(raw_args)


def worker_process(raw_args: str) -> None:
    """Entry point of a spawned worker process."""
    args = WorkerArgs.from_json(raw_args)
    # SIGTERM from the supervisor stops like Ctrl-C: the running trial is marked failed.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    quiet_libraries()
    try:
        Worker(args).loop()
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:
        sys.exit(report_error(exc, args.error_file))


def error_line(exc: BaseException) -> str:
    """The one line an exception shows as: a user error's own message, otherwise its type
    and first line, with the plugin whose code raised it where there is one."""
    if isinstance(exc, UserError):
        return str(exc)
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    plugin = plugin_in_traceback(exc)
    where = f"plugin '{plugin}' raised " if plugin else ""
    return f"{where}{type(exc).__name__}: {first}".rstrip(": ")


def report_error(exc: BaseException, error_file: str | None) -> int:
    """Hand a worker's fatal error to the supervisor as one line in *error_file*; the
    traceback goes to stderr only with ``--debug`` (``AUTOML_DEBUG``). Returns the exit code."""
    code = exc.exit_code if isinstance(exc, UserError) else EXIT_BUG
    line = error_line(exc)
    if os.environ.get("AUTOML_DEBUG", "").lower() not in ("", "0", "false", "no"):
        traceback.print_exception(exc)
    if error_file is None:
        print(f"error: {line}", file=sys.stderr)
        return code
    try:
        Path(error_file).parent.mkdir(parents=True, exist_ok=True)
        Path(error_file).write_text(json.dumps({"message": line, "exit_code": code, "user_error": isinstance(exc, UserError)}))
    except OSError:
        print(f"error: {line}", file=sys.stderr)
    return code
