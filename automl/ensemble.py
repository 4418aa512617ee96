"""Ensembles of the kept top-k trials and the baseline, by greedy ensemble selection.

The method is Caruana et al. (2004), "Ensemble selection from libraries of models":
forward selection with replacement. Starting from nothing, each round adds the member
(again, if it is already in) whose addition gives the best objective; the weights are the
selection counts divided by the number of rounds, taken at the round with the best
objective (the earliest one on ties, so a member that does not help is left out).
:func:`select_weights` is that rule as a pure function of (outputs, labels, metric).

Members are averaged in the space the task's metrics read: probabilities (softmax of the
outputs, averaged, and handed back as log-probabilities) for classification, the raw
outputs for regression. Token-classification tasks have no ensembles.

**The rule for exporting it.** The validation rows are split in two halves (stratified by
label, seeded by ``training.seed``). The weights are chosen on the first half. The
ensemble is exported as ``best/`` only if it has at least two members and, on the second
half (rows its weights never saw), its objective beats that of the single model that
would be exported otherwise (below) by more than :data:`MIN_GAIN` (0.5%) of the single
model's (:func:`wins_by_margin`) and by more than :data:`SE_RULE` standard errors of the
paired difference there (bootstrapped, as for the single model's choice): the ensemble is
the more complex model, held to the rule a trial meets to replace the baseline. (On the
README's fraud data an ensemble led its baseline by 0.0088 on a held-out half of 300 rows
and was exported; on test it was 0.010 below it.) Otherwise that single model is
exported, and the ensemble is still shown in the leaderboard, the summary and the report.
The figures are kept in ``<run>/ensemble.json``.

**The single model: the best trial or the baseline** (:func:`choose_single`). The best
trial is the best of many on the same validation rows, so its validation figure is
optimistic, while the baseline is one model fitted once. The trial is chosen only when it
leads the baseline on validation by more than one standard error of the paired difference
(:data:`SE_RULE`; the difference bootstrapped over the validation rows, :data:`BOOTSTRAP`
resamples): Breiman et al.'s one-standard-error rule, which prefers the simpler model
when the better-looking one is not better beyond noise. The figures are kept under
``choice`` in ``ensemble.json``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from automl.baseline import BASELINE_DIR, META_FILE, load_outputs, prediction_frame
from automl.explain import RowExplanation, explain_model
from automl.export import stored_outputs
from automl.task import Split, Task, subset

if TYPE_CHECKING:
    import optuna
    import pandas as pd

ENSEMBLE_FILE = "ensemble.json"
OUTPUTS_FILE = "outputs.npz"
#: Rounds of greedy selection (weights are multiples of 1/ROUNDS).
ROUNDS = 20
#: The share of the single model's objective by which the ensemble must beat it on the
#: held-out half to be exported (:func:`wins_by_margin`).
MIN_GAIN = 0.005
#: A trial is exported instead of the baseline only when it leads it on validation by more
#: than this many standard errors of the paired difference (:func:`choose_single`).
SE_RULE = 1.0
#: Bootstrap resamples of the validation rows behind that standard error.
BOOTSTRAP = 100


# --------------------------------------------------------------------------- the rule


def softmax(outputs: np.ndarray) -> np.ndarray:
    z = outputs - outputs.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def combine(outputs: Sequence[np.ndarray], weights: Sequence[float], *, probabilities: bool = True) -> np.ndarray:
    """The weighted average of member outputs: of their probabilities (returned as
    log-probabilities, which a task reads like any model's outputs) or of raw outputs."""
    total = float(sum(weights))
    if probabilities:
        mixed = sum(w * softmax(np.asarray(o, dtype=np.float64)) for w, o in zip(weights, outputs, strict=True) if w)
        return np.log(np.clip(mixed / total, 1e-12, 1.0))  # type: ignore[operator]
    return sum(w * np.asarray(o, dtype=np.float64) for w, o in zip(weights, outputs, strict=True) if w) / total  # type: ignore[return-value]


def select_weights(
    outputs: Sequence[np.ndarray],
    labels: Any,
    metric: Callable[[np.ndarray, Any], float],
    *,
    maximize: bool = True,
    rounds: int = ROUNDS,
    probabilities: bool = True,
) -> np.ndarray:
    """Greedy ensemble selection with replacement (Caruana et al. 2004).

    Args:
        outputs: each candidate's outputs on the same rows (``[n, k]`` arrays). On ties
            the earlier candidate wins, so list the best single model first.
        labels: the rows' labels, passed to *metric*.
        metric: ``metric(combined_outputs, labels) -> float``; NaN counts as the worst.
        maximize: whether a larger metric is better.
        rounds: selections made; the weights are counts / selections at the best round.
        probabilities: average probabilities (classification) or raw outputs.

    Returns:
        One weight per candidate, summing to 1.
    """
    if not outputs:
        raise ValueError("no candidates")
    sign = 1.0 if maximize else -1.0

    def score(counts: np.ndarray) -> float:
        value = metric(combine(outputs, counts, probabilities=probabilities), labels)
        return sign * value if math.isfinite(value) else -math.inf

    counts = np.zeros(len(outputs))
    best_counts, best_score = None, -math.inf
    for _ in range(rounds):
        trial_scores = []
        for i in range(len(outputs)):
            counts[i] += 1
            trial_scores.append(score(counts))
            counts[i] -= 1
        pick = int(np.argmax(trial_scores))  # the first of equal scores
        counts[pick] += 1
        if best_counts is None or trial_scores[pick] > best_score:
            best_counts, best_score = counts.copy(), trial_scores[pick]
    assert best_counts is not None
    return best_counts / best_counts.sum()


def halves(labels: Sequence[Any], seed: int, *, stratify: bool) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of two halves of a split (stratified by label when asked), seeded."""
    rng = np.random.default_rng(seed)
    labels = list(labels)
    groups = [np.flatnonzero(np.asarray([str(x) for x in labels]) == key) for key in sorted({str(x) for x in labels})] if stratify else [np.arange(len(labels))]
    first, second = [], []
    for group in groups:
        group = rng.permutation(group)
        cut = (len(group) + int(rng.integers(2))) // 2
        first.append(group[:cut])
        second.append(group[cut:])
    return np.sort(np.concatenate(first)), np.sort(np.concatenate(second))


# --------------------------------------------------------------------------- run level


@dataclass(frozen=True)
class Member:
    """One candidate: a kept trial or the baseline, with its stored outputs."""

    name: str
    kind: str  # "trial" or "baseline"
    value: float
    outputs: dict[str, np.ndarray] = field(repr=False)
    trial: int | None = None


@dataclass(frozen=True)
class EnsembleResult:
    """The ensemble of a run, as ``<run>/ensemble.json`` stores it."""

    members: list[dict[str, Any]]
    objective: str
    validation: dict[str, float]
    test: dict[str, float] | None
    calibration: dict[str, Any]
    #: The held-out half: the ensemble's objective and the single model's.
    held_out: dict[str, Any]
    #: The single model exported when the ensemble is not: ``trial-N`` or ``baseline``.
    single: str
    #: How the single model was chosen (:func:`choose_single`).
    choice: dict[str, Any]
    wins: bool
    probabilities: bool
    seconds: float

    @property
    def value(self) -> float | None:
        return self.validation.get(self.objective)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def ensemble_metrics(task: Task, outputs: np.ndarray, split: Split, encoded: Any, calibration: dict[str, Any] | None = None) -> dict[str, float]:
    if calibration is None:
        calibration = task.calibrate(outputs, split, encoded)
    return {k: float(v) for k, v in task.compute_metrics(outputs, split, encoded, calibration).items()}


def candidates(ctx: Any, study: optuna.Study) -> list[Member]:
    """The kept top-k trials with stored outputs and the saved baseline, best first."""
    from optuna.trial import TrialState

    objective = ctx.resolved.objective
    found: list[Member] = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if t.value is None or not math.isfinite(t.value):
            continue
        outputs = stored_outputs(ctx, t)
        if outputs:
            found.append(Member(f"trial-{t.number}", "trial", float(t.value), outputs, t.number))
    base = ctx.run_dir / BASELINE_DIR
    if (base / OUTPUTS_FILE).exists() and (base / META_FILE).exists():
        meta = json.loads((base / META_FILE).read_text())
        value = (meta.get("metrics", {}).get("validation") or {}).get(objective.name)
        if value is not None and math.isfinite(value):
            found.append(Member("baseline", "baseline", float(value), load_outputs(base / OUTPUTS_FILE)))
    sign = -1 if objective.direction == "maximize" else 1
    found.sort(key=lambda m: (sign * m.value, m.kind != "trial", m.trial or 0))
    return found


def build_ensemble(ctx: Any, study: optuna.Study, data: Any, encoded: dict[str, Any]) -> EnsembleResult | None:
    """Select an ensemble of the run's candidates, decide by the rule above whether it is
    exported, and write ``<run>/ensemble.json``. ``None`` with fewer than two candidates."""
    task = ctx.resolved.task
    path = ctx.run_dir / ENSEMBLE_FILE
    if path.exists():
        path.unlink()
    if task.head != "sequence-classification":
        return None
    members = candidates(ctx, study)
    if len(members) < 2:
        return None
    start = time.perf_counter()
    objective = ctx.resolved.objective
    maximize = objective.direction == "maximize"
    probabilities = task.problem_type != "regression"
    val_split, val_enc = data.validation, encoded["validation"]
    first, second = halves(val_enc["labels"], ctx.recipe.training.seed, stratify=probabilities)
    split_a, enc_a = subset(val_split, val_enc, first)

    def on_first(outputs: np.ndarray, _labels: Any) -> float:
        return ensemble_metrics(task, outputs, split_a, enc_a).get(objective.name, float("nan"))

    val_outputs = [m.outputs["validation"] for m in members]
    weights = select_weights([o[first] for o in val_outputs], enc_a["labels"], on_first, maximize=maximize, probabilities=probabilities)
    used = [(m, float(w)) for m, w in zip(members, weights, strict=True) if w > 0]

    def mix(split_name: str, index: Any = slice(None)) -> np.ndarray:
        return combine([m.outputs[split_name][index] for m, _ in used], [w for _, w in used], probabilities=probabilities)

    single, choice = choose_single(task, members, val_split, val_enc, objective.name, maximize=maximize, seed=ctx.recipe.training.seed)
    full = mix("validation")
    held = held_out_check(
        task, full, single.outputs["validation"], val_split, val_enc, (first, second), objective.name,
        maximize=maximize, seed=ctx.recipe.training.seed,
    )
    held["single"] = single.name
    better = bool(held.pop("wins"))
    calibration = task.calibrate(full, val_split, val_enc)
    test = None
    if data.test is not None and "test" in encoded and all("test" in m.outputs for m, _ in used):
        test = ensemble_metrics(task, mix("test"), data.test, encoded["test"], calibration)
    result = EnsembleResult(
        members=[{"name": m.name, "kind": m.kind, "trial": m.trial, "weight": round(w, 6), "value": m.value} for m, w in used],
        objective=objective.name,
        validation=ensemble_metrics(task, full, val_split, val_enc, calibration),
        test=test,
        calibration=calibration,
        held_out=held,
        single=single.name,
        choice=choice,
        wins=bool(better and len(used) >= 2),
        probabilities=probabilities,
        seconds=time.perf_counter() - start,
    )
    path.write_text(json.dumps(result.to_json(), indent=2, default=str))
    return result


def held_out_check(
    task: Task, ensemble: np.ndarray, single: np.ndarray, split: Split, encoded: dict[str, Any],
    halves_: tuple[np.ndarray, np.ndarray], objective: str, *, maximize: bool, seed: int,
) -> dict[str, Any]:
    """The ensemble against the single model on the held-out half (the rule in the module
    docstring): each calibrated on the first half of *split* (where the weights were
    chosen) and scored on the second. ``wins``: by more than :data:`MIN_GAIN` and by more
    than :data:`SE_RULE` standard errors of the paired difference there."""
    first, second = halves_
    split_a, enc_a = subset(split, encoded, first)
    split_b, enc_b = subset(split, encoded, second)
    held: dict[str, Any] = {"rows": len(second)}
    for name, outputs in (("ensemble", ensemble), ("single_model", single)):
        calibration = task.calibrate(outputs[first], split_a, enc_a)
        held[name] = ensemble_metrics(task, outputs[second], split_b, enc_b, calibration).get(objective)
    held["wins"] = False
    if held["ensemble"] is None or held["single_model"] is None:
        return held
    _, se = paired_difference(task, ensemble[second], single[second], split_b, enc_b, objective, seed=seed)
    gain = held["ensemble"] - held["single_model"] if maximize else held["single_model"] - held["ensemble"]
    beyond_noise = math.isfinite(se) and gain > SE_RULE * se
    held.update(
        wins=wins_by_margin(held["ensemble"], held["single_model"], maximize=maximize) and beyond_noise,
        better=wins_by_margin(held["ensemble"], held["single_model"], maximize=maximize, margin=0.0),
        beyond_margin=wins_by_margin(held["ensemble"], held["single_model"], maximize=maximize),
        min_gain=MIN_GAIN, standard_error=se if math.isfinite(se) else None, se_rule=SE_RULE,
    )
    return held


def choose_single(
    task: Task, members: Sequence[Member], split: Split, encoded: dict[str, Any], objective: str, *, maximize: bool, seed: int
) -> tuple[Member, dict[str, Any]]:
    """The single model exported when the ensemble is not: the best trial when it leads
    the baseline on validation by more than :data:`SE_RULE` standard errors of the paired
    difference, else the baseline (the rule in the module docstring). Also the figures
    behind the choice, for ``ensemble.json``."""
    trial = next((m for m in members if m.kind == "trial"), None)
    base = next((m for m in members if m.kind == "baseline"), None)
    if trial is None or base is None:
        return members[0], {"rule": "only one kind of candidate"}
    diff, se = paired_difference(task, trial.outputs["validation"], base.outputs["validation"], split, encoded, objective, seed=seed)
    lead = diff if maximize else -diff
    pick = trial if math.isfinite(lead) and math.isfinite(se) and lead > SE_RULE * se else base
    return pick, {
        "trial": trial.name,
        "lead": lead if math.isfinite(lead) else None,
        "standard_error": se if math.isfinite(se) else None,
        "se_rule": SE_RULE,
        "resamples": BOOTSTRAP,
        "chosen": pick.name,
    }


def paired_difference(
    task: Task, a: np.ndarray, b: np.ndarray, split: Split, encoded: dict[str, Any], objective: str, *, seed: int, resamples: int = BOOTSTRAP
) -> tuple[float, float]:
    """(objective of *a* minus that of *b* on the split, and its bootstrap standard error):
    both models are scored on the same resampled rows, each with the calibration it has on
    the whole split. Resamples whose objective is undefined (one class only) are skipped."""
    cal_a, cal_b = task.calibrate(a, split, encoded), task.calibrate(b, split, encoded)

    def difference(index: np.ndarray) -> float:
        sub, enc = subset(split, encoded, index)
        try:
            one = ensemble_metrics(task, a[index], sub, enc, cal_a).get(objective, float("nan"))
            two = ensemble_metrics(task, b[index], sub, enc, cal_b).get(objective, float("nan"))
        except (ValueError, ZeroDivisionError, FloatingPointError):
            return float("nan")  # a task whose metric cannot handle one class in the resample
        return float(one) - float(two)

    rows = np.arange(len(a))
    diff = difference(rows)
    rng = np.random.default_rng(seed)
    diffs = [d for _ in range(resamples) if math.isfinite(d := difference(np.sort(rng.integers(0, len(rows), len(rows)))))]
    se = float(np.std(diffs, ddof=1)) if len(diffs) >= 2 else float("nan")
    return diff, se


def wins_by_margin(ensemble: float, single: float, *, maximize: bool, margin: float = MIN_GAIN) -> bool:
    """Whether *ensemble* beats *single* by more than *margin* of *single*'s size:
    an ensemble costs its members' size and prediction time, and a gain smaller than that
    on half the validation rows is noise (a member that adds nothing can still move the
    objective by a hair)."""
    if not (math.isfinite(ensemble) and math.isfinite(single)):
        return False
    gain = ensemble - single if maximize else single - ensemble
    return gain > margin * max(abs(single), 1e-12)


def read_ensemble(run_dir: Path) -> dict[str, Any] | None:
    path = Path(run_dir) / ENSEMBLE_FILE
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError:
        return None


# --------------------------------------------------------------------------- the exported ensemble


@dataclass
class EnsembleModel:
    """An exported ensemble, ready to score raw rows (what :func:`automl.load_model`
    returns for ``kind: "ensemble"``)."""

    path: Path
    meta: dict[str, Any]
    members: list[Any]
    weights: list[float]
    probabilities: bool

    @classmethod
    def load(
        cls, path: Path, meta: dict[str, Any], *, load_member: Callable[..., Any], device: str = "cpu", column: str | None = None
    ) -> EnsembleModel:
        """The ensemble exported in *path*; *load_member* loads each member's directory
        (:func:`automl.results.predict.load_model`, which calls this for ``kind: ensemble``)."""
        spec = json.loads((path / ENSEMBLE_FILE).read_text())
        members = [load_member(path / m["path"], device=device, column=column) for m in spec["members"]]
        if column:
            meta = {**meta, "data": {**(meta.get("data") or {}), "text_column": column}}
        return cls(path, meta, members, [float(m["weight"]) for m in spec["members"]], bool(spec["probabilities"]))

    @property
    def task(self) -> Task:
        return self.members[0].task

    def outputs(self, frame: pd.DataFrame, *, file: str = "<input>") -> np.ndarray:
        """The weighted average of the members' outputs, in the members' output space."""
        return combine([m.outputs(frame, file=file) for m in self.members], self.weights, probabilities=self.probabilities)

    def predict(self, frame: pd.DataFrame, *, file: str = "<input>") -> pd.DataFrame:
        task = self.task
        split = task.read(frame, split="predict", file=file, label_names=task.labels)
        return prediction_frame(task, frame, self.outputs(frame, file=file), split, self.meta.get("calibration") or {})

    def explain(self, frame: pd.DataFrame, *, file: str = "<input>") -> list[RowExplanation]:
        """Each row's prediction and its reasons: the members' attributions combined by the
        weights (:mod:`automl.explain`; needs ``automl[explain]``)."""
        return explain_model(self, frame, file=file)


__all__ = ["EnsembleModel", "EnsembleResult", "build_ensemble", "combine", "select_weights"]
