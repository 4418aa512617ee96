"""One place that reads what a run left behind: the study (trials, while it runs too),
``run.json``, ``baseline.json``, ``summary.json`` and the exported ``best/automl.json``.

The terminal summary, ``automl leaderboard``, ``automl compare`` and the HTML/Markdown/JSON
report all read a :class:`RunResults`; none of them opens a file itself.
"""

from __future__ import annotations

import enum
import json
import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from automl import plugins
from automl.errors import StorageError, UserError, require_modules
from automl.privacy import ATTR as PRIVACY_ATTR
from automl.privacy import STUDY_ATTR as PRIVACY_STUDY_ATTR
from automl.privacy import run_privacy
from automl.search.budget import untrained_reason
from automl.search.space import user_params
from automl.search.storage import mask_url, open_storage


class RowState(str, enum.Enum):
    """The state a leaderboard row shows (Optuna's states, plus the baseline)."""

    COMPLETE = "complete"
    PRUNED = "pruned"
    FAILED = "failed"
    RUNNING = "running"
    WAITING = "waiting"
    BASELINE = "baseline"
    ENSEMBLE = "ensemble"


#: Order of states in the default (best first) ordering.
STATE_ORDER = {
    s: i
    for i, s in enumerate(
        (RowState.COMPLETE, RowState.BASELINE, RowState.ENSEMBLE, RowState.PRUNED, RowState.RUNNING, RowState.WAITING, RowState.FAILED)
    )
}


@dataclass(frozen=True)
class TrialRow:
    """One trial of a study as the results show it."""

    number: int
    state: RowState
    #: The objective: the final value of a complete trial, the last reported one of a pruned trial.
    value: float | None
    metrics: dict[str, float]
    params: dict[str, Any]
    epochs: float | None = None
    steps: int | None = None
    seconds: float | None = None
    started: datetime | None = None
    finished: datetime | None = None
    #: Why a trial was pruned or failed.
    reason: str | None = None
    #: Objective after each evaluation (evaluation number -> value).
    intermediate: dict[int, float] = field(default_factory=dict)
    retry_of: int | None = None
    worker: str | None = None
    #: The ε a private trial spent (its own, at the run's δ); None outside private runs.
    epsilon: float | None = None
    #: Validation rows its evaluations scored while it trained, where a sample
    #: (``training.eval_max_rows``): its intermediate values, and a pruned trial's value,
    #: are the sample's; a complete trial's value is on every validation row.
    sample_rows: int | None = None


@dataclass(frozen=True)
class RunResults:
    """Everything known about one run, gathered once."""

    study_name: str
    task: str | None
    backbone: str | None
    objective: str
    direction: str
    trials: list[TrialRow]
    run_dir: Path | None = None
    #: The storage URL with any password masked.
    storage: str | None = None
    baseline: dict[str, Any] | None = None
    #: ``best/automl.json`` of the exported model, when there is one.
    best_export: dict[str, Any] | None = None
    #: ``ensemble.json``: members, weights, metrics and whether it won (see automl.ensemble).
    ensemble: dict[str, Any] | None = None
    run_info: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    importances: dict[str, float] = field(default_factory=dict)
    #: Metric name -> "maximize"/"minimize" (from the task when it is installed).
    metric_directions: dict[str, str] = field(default_factory=dict)
    #: Hyperparameter -> "float", "log" (a float or int searched on a log scale), "int"
    #: or "categorical", from the study's distributions.
    param_kinds: dict[str, str] = field(default_factory=dict)
    #: ``deployment.json``: what ``automl export --format onnx`` measured, when it ran.
    deployment: dict[str, Any] | None = None
    #: What the run's differential privacy amounts to (:func:`automl.privacy.run_privacy`:
    #: the search's ε, δ, mode, what is not covered); None when the run is not private.
    privacy: dict[str, Any] | None = None
    #: Why the search trained no trial, when it trained none (:func:`automl.search.budget.untrained_reason`).
    untrained: str | None = None

    # ------------------------------------------------------------------ derived facts

    @property
    def maximize(self) -> bool:
        return self.direction == "maximize"

    def counts(self) -> dict[str, int]:
        out = {s.value: 0 for s in RowState if s not in (RowState.BASELINE, RowState.ENSEMBLE)}
        for t in self.trials:
            out[t.state.value] += 1
        return out

    @property
    def best(self) -> TrialRow | None:
        done = [t for t in self.trials if t.state is RowState.COMPLETE and _finite(t.value)]
        if not done:
            return None
        sign = -1 if self.maximize else 1
        return min(done, key=lambda t: (sign * t.value, t.number))  # type: ignore[operator]

    @property
    def exported(self) -> str | None:
        """What ``best/`` holds: ``"trial"``, ``"baseline"`` or ``"ensemble"`` (``None``: nothing)."""
        if not self.best_export:
            return None
        kind = str(self.best_export.get("kind") or "trial")
        return kind if kind in ("baseline", "ensemble") else "trial"  # transformers or fused: a trial

    @property
    def trial_exported(self) -> bool:
        """Whether ``best/`` holds a trial's model (or nothing yet), not the baseline or an ensemble."""
        return self.exported in (None, "trial")

    @property
    def exported_label(self) -> str:
        """``trial 3``, ``baseline`` or ``ensemble`` (for headings)."""
        if self.exported in ("baseline", "ensemble"):
            return str(self.exported)
        trial = (self.best_export or {}).get("trial")
        best = self.best
        return f"trial {trial if trial is not None else best.number if best else '-'}"

    @property
    def metric_names(self) -> list[str]:
        """The objective first, then every other metric any trial reported."""
        names: list[str] = []
        for t in self.trials:
            for name in t.metrics:
                if name not in names:
                    names.append(name)
        return [self.objective] + sorted(n for n in names if n != self.objective)

    @property
    def param_names(self) -> list[str]:
        names: list[str] = []
        for t in self.trials:
            for name in t.params:
                if name not in names:
                    names.append(name)
        return names

    def is_better(self, a: float, b: float, metric: str | None = None) -> bool:
        direction = self.metric_directions.get(metric or self.objective, self.direction)
        return a > b if direction == "maximize" else a < b

    @property
    def started(self) -> datetime | None:
        times = [t.started for t in self.trials if t.started is not None]
        return min(times) if times else None

    @property
    def total_seconds(self) -> float | None:
        """Wall time of the run: ``summary.json`` when the run ended, else first start to last finish."""
        if self.summary.get("seconds") is not None:
            return float(self.summary["seconds"])
        ends = [t.finished for t in self.trials if t.finished is not None]
        if self.started is None or not ends:
            return None
        return (max(ends) - self.started).total_seconds()

    @property
    def seconds_to_best(self) -> float | None:
        """From the first trial's start to the end of the best trial."""
        best = self.best
        if best is None or best.finished is None or self.started is None:
            return None
        return (best.finished - self.started).total_seconds()

    @property
    def baseline_value(self) -> float | None:
        if not self.baseline:
            return None
        value = self.baseline.get("value")
        if value is None:
            value = (self.baseline.get("validation") or {}).get(self.objective)
        return float(value) if _finite(value) else None

    @property
    def test_metrics(self) -> dict[str, float]:
        """Test metrics of the exported model (empty without an export or a test split)."""
        return dict(((self.best_export or {}).get("metrics") or {}).get("test") or {})

    @property
    def exported_value(self) -> float | None:
        """The objective of the exported model on validation (what a run delivers; the best
        trial's value is only one candidate for it)."""
        value = (((self.best_export or {}).get("metrics") or {}).get("validation") or {}).get(self.objective)
        return float(value) if _finite(value) else None

    @property
    def data_identity(self) -> dict[str, Any]:
        """What the run was trained and scored on: the data files, their fingerprint (when
        ``run.json`` has it) and the label column. Runs whose identities differ have scores
        that cannot be compared."""
        data = (self.run_info.get("recipe") or {}).get("data") or {}
        hashes = self.run_info.get("data_files") or {}
        return {
            "paths": tuple(str(data.get(k)) for k in ("train", "validation", "test") if data.get(k)),
            "fingerprint": tuple(f"{k}: {v}" for k, v in sorted(hashes.items())) or None,
            "label column": data.get("label_column"),
        }

    @property
    def positive_label(self) -> str | None:
        """The label a binary task counts as positive (its calibration's
        ``positive_label``), from the export or else the baseline; ``None`` when it has none."""
        for source in (self.best_export, self.baseline):
            value = ((source or {}).get("calibration") or {}).get("positive_label")
            if value is not None:
                return str(value)
        return None

    @property
    def trust_remote_code(self) -> bool:
        training = (self.run_info.get("recipe") or {}).get("training") or {}
        return bool(training.get("trust_remote_code") or (self.best_export or {}).get("trust_remote_code"))

    def task_plots(self) -> list[tuple[str, Path]]:
        """The task's own plots saved by the export: (title, path), those that exist."""
        if self.run_dir is None:
            return []
        listed = (self.best_export or {}).get("plots") or []
        out = [(str(p.get("title", "")), self.run_dir / str(p.get("file", ""))) for p in listed]
        if not out:
            out = [(p.stem.split("-", 2)[-1].replace("-", " "), p) for p in sorted((self.run_dir / "plots").glob("task-*.png"))]
        return [(title, path) for title, path in out if path.is_file()]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able view of the same facts (``report.json``)."""
        best = self.best
        return {
            "study": self.study_name,
            "run_dir": str(self.run_dir) if self.run_dir else None,
            "storage": self.storage,
            "task": self.task,
            "backbone": self.backbone,
            "objective": {"metric": self.objective, "direction": self.direction},
            "counts": self.counts(),
            "best": _trial_dict(best) if best else None,
            "best_export": self.best_export,
            "deployment": self.deployment,
            "baseline": self.baseline,
            "ensemble": self.ensemble,
            **({"privacy": self.privacy} if self.privacy else {}),
            "importances": self.importances,
            "seconds": self.total_seconds,
            "seconds_to_best": self.seconds_to_best,
            "trials": [_trial_dict(t) for t in self.trials],
            "run": {k: v for k, v in self.run_info.items() if k != "recipe"},
            "recipe": self.run_info.get("recipe"),
        }


def _trial_dict(t: TrialRow) -> dict[str, Any]:
    return {
        "number": t.number,
        "state": t.state.value,
        "value": t.value,
        "metrics": t.metrics,
        "params": t.params,
        "epochs": t.epochs,
        "steps": t.steps,
        "seconds": t.seconds,
        "started": t.started.isoformat() if t.started else None,
        "finished": t.finished.isoformat() if t.finished else None,
        "reason": t.reason,
        "retry_of": t.retry_of,
        **({"epsilon": t.epsilon} if t.epsilon is not None else {}),
    }


def _budget_note(attrs: dict[str, Any], steps: Any) -> str | None:
    """What the run's deadline did to a trial, with the task's note after it."""
    if attrs.get("stopped") == "deadline":
        budget = "cut by the deadline (kept at its best evaluation)"
    elif attrs.get("shortened_from_steps"):
        budget = f"planned {attrs['shortened_from_steps']} steps, shortened to {steps} to finish by the deadline"
    else:
        return None
    return f"{budget}; {attrs['note']}" if attrs.get("note") else budget


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        body = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {path.name}: {exc}", file=path) from None
    return body if isinstance(body, dict) else None


# ---------------------------------------------------------------------- trials

_STATES = {"COMPLETE": RowState.COMPLETE, "PRUNED": RowState.PRUNED, "FAIL": RowState.FAILED, "RUNNING": RowState.RUNNING, "WAITING": RowState.WAITING}


def trial_rows(study: Any) -> list[TrialRow]:
    """The study's trials as rows, without the surplus ones (a budget overshoot)."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        attrs = t.user_attrs
        if attrs.get("surplus"):
            continue
        state = _STATES[t.state.name]
        value = t.value if _finite(t.value) else None
        if value is None and t.intermediate_values and state is not RowState.COMPLETE:
            last = t.intermediate_values[max(t.intermediate_values)]
            value = last if _finite(last) and state is RowState.PRUNED else None
        seconds = attrs.get("seconds")
        if seconds is None and t.datetime_start is not None:
            end = t.datetime_complete or datetime.now()
            seconds = (end - t.datetime_start).total_seconds()
        steps = attrs.get("steps", attrs.get("pruned_at_step"))
        spent = (attrs.get(PRIVACY_ATTR) or {}).get("epsilon")
        rows.append(
            TrialRow(
                number=t.number,
                state=state,
                value=value,
                metrics={k: float(v) for k, v in (attrs.get("metrics") or {}).items() if _finite(v)},
                params=user_params(t.params),
                epochs=attrs.get("epochs"),
                steps=int(steps) if steps is not None else None,
                seconds=float(seconds) if seconds is not None else None,
                started=t.datetime_start,
                finished=t.datetime_complete,
                reason=attrs.get("fail_reason") or attrs.get("prune_reason") or _budget_note(attrs, steps) or attrs.get("note"),
                intermediate={int(k): float(v) for k, v in t.intermediate_values.items()},
                retry_of=attrs.get("retry_of"),
                worker=attrs.get("worker"),
                epsilon=float(spent) if _finite(spent) else None,
                sample_rows=attrs.get("eval_sample_rows"),
            )
        )
    return rows


def param_kinds(study: Any) -> dict[str, str]:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    kinds: dict[str, str] = {}
    for t in study.get_trials(deepcopy=False):
        for name, dist in t.distributions.items():
            if name in kinds:
                continue
            if isinstance(dist, CategoricalDistribution):
                kinds[name] = "categorical"
            elif isinstance(dist, FloatDistribution | IntDistribution):
                kinds[name] = "log" if dist.log else "int" if isinstance(dist, IntDistribution) else "float"
    return kinds


def importances(study: Any) -> dict[str, float]:
    """Parameter importances (fANOVA), or {} when there are too few complete trials."""
    import warnings

    import optuna

    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(complete) < 3:
        return {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
            return {k: float(v) for k, v in optuna.importance.get_param_importances(study, evaluator=evaluator).items()}
    except Exception:
        return {}


def _metric_directions(task: str | None) -> dict[str, str]:
    if not task:
        return {}
    try:
        return {m.name: m.direction for m in plugins.get_tasks()[task].metrics}
    except Exception:  # the task's plugin is not installed here: fall back on names
        return {}


def _guess_direction(name: str) -> str:
    return "minimize" if any(w in name for w in ("loss", "error", "mse", "mae", "rmse", "perplexity")) else "maximize"


# ---------------------------------------------------------------------- opening

def open_study(run_dir: Path | None = None, *, storage: str | None = None, study_name: str | None = None) -> tuple[Any, dict[str, Any]]:
    """Load a run's study read-only (it may still be running). Returns (study, run.json)."""
    import optuna

    backend, study_name, run_info = open_run_storage(run_dir, storage=storage, study_name=study_name)
    try:
        study = optuna.load_study(study_name=study_name, storage=backend)
    except KeyError:
        raise StorageError(f"no study '{study_name}' in the storage", field="--study") from None
    return study, run_info


def open_run_storage(
    run_dir: Path | None = None, *, storage: str | None = None, study_name: str | None = None
) -> tuple[Any, str, dict[str, Any]]:
    """A run's study storage (without heartbeats), its study name and ``run.json``."""
    import optuna

    run_info: dict[str, Any] = {}
    if run_dir is not None:
        if not run_dir.is_dir():
            raise UserError("no such run directory", file=run_dir)
        run_info = _read_json(run_dir / "run.json") or {}
        if not run_info and storage is None:
            raise UserError("is not an automl run directory (no run.json); give a run's output directory", file=run_dir)
        recorded = str(run_info.get("storage") or "")
        if storage is None and recorded and not recorded.startswith("journal:"):
            if "***" in recorded:
                raise UserError(f"the run's study is in {recorded}; give the URL with its password via --storage or AUTOML_STORAGE", file=run_dir)
            storage = recorded
    elif storage is None:
        raise UserError("give a run directory, or --storage URL with --study NAME")
    study_name = study_name or run_info.get("study_name")
    if storage is not None and storage.startswith("journal:") and run_dir is not None and not Path(storage[8:]).exists():
        storage = None  # the run directory was moved: use its own journal
    if storage is None and run_dir is not None and not (run_dir / "study.journal").exists():
        raise UserError("has no study.journal; the run has not started a study yet", file=run_dir)
    backend = open_storage(storage, run_dir, heartbeat=False)
    if study_name is None:
        names = [s.study_name for s in optuna.get_all_study_summaries(backend, include_best_trial=False)]
        if len(names) != 1:
            raise UserError(f"the storage holds {len(names)} studies ({', '.join(names[:8])}); choose one with --study", field="--study")
        study_name = names[0]
    return backend, study_name, run_info


def gather(
    run_dir: str | Path | None = None,
    *,
    storage: str | None = None,
    study_name: str | None = None,
    study: Any = None,
    with_importances: bool = True,
) -> RunResults:
    """Gather a run's results from its directory (and/or a storage URL and study name)."""
    run_path = Path(run_dir).resolve() if run_dir is not None else None
    run_info: dict[str, Any] = {}
    if study is None:
        study, run_info = open_study(run_path, storage=storage, study_name=study_name)
    elif run_path is not None:
        run_info = _read_json(run_path / "run.json") or {}
    meta = study.user_attrs.get("automl") or {}
    if run_path is None and meta.get("run_dir") and Path(meta["run_dir"]).is_dir():
        run_path = Path(meta["run_dir"])
        run_info = _read_json(run_path / "run.json") or {}
    recipe = run_info.get("recipe") or {}
    best_export = baseline = ensemble = deployment = None
    summary: dict[str, Any] = {}
    if run_path is not None:
        best_export = _read_json(run_path / "best" / "automl.json")
        deployment = _read_json(run_path / "deployment.json")
        baseline = _read_json(run_path / "baseline.json")
        ensemble = _read_json(run_path / "ensemble.json")
        summary = _read_json(run_path / "summary.json") or {}
    task = meta.get("task") or recipe.get("task")
    objective = meta.get("objective") or (best_export or {}).get("objective", {}).get("metric") or "objective"
    direction = meta.get("direction") or study.direction.name.lower()
    rows = trial_rows(study)
    directions = _metric_directions(task)
    for name in {n for t in rows for n in t.metrics} | {objective}:
        directions.setdefault(name, direction if name == objective else _guess_direction(name))
    return RunResults(
        study_name=study.study_name,
        task=task,
        backbone=meta.get("backbone") or recipe.get("backbone"),
        objective=objective,
        direction=direction,
        trials=rows,
        run_dir=run_path,
        storage=mask_url(storage) if storage else run_info.get("storage"),
        baseline=baseline,
        best_export=best_export,
        ensemble=ensemble,
        run_info=run_info,
        summary=summary,
        importances=importances(study) if with_importances else {},
        metric_directions=directions,
        param_kinds=param_kinds(study),
        deployment=deployment,
        privacy=privacy_of(study),
        untrained=untrained_reason(study),
    )


def privacy_of(study: Any) -> dict[str, Any] | None:
    """The run's privacy (:func:`automl.privacy.run_privacy`) from its study, or None when
    the run is not private. Its figures come from Opacus' accountant, which must be installed."""
    settings = study.user_attrs.get(PRIVACY_STUDY_ATTR)
    if not settings:
        return None
    require_modules(["opacus"], install='pip install "automl[privacy]"', field="privacy")
    return run_privacy(settings, study.get_trials(deepcopy=False))
