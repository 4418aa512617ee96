"""Differential privacy: the rules, the accounting and the defaults shared by private
training (:mod:`automl.private_training`), the search (:mod:`automl.search.worker`) and
what reports it (summary, leaderboard, report, model card).

**What is accounted.** Each private trial is DP-SGD through Opacus: Poisson-sampled logical
batches (sampling rate *q*), per-example gradients clipped to ``max_grad_norm``, Gaussian
noise of ``noise_multiplier`` times that norm, *T* optimiser steps. Opacus' accountant
keeps that as a history of ``(noise_multiplier, sample_rate, steps)``. Every trial trains
on the same rows, so the search as a whole is the composition of every trial that touched
them: this module concatenates the trials' histories and asks Opacus' PRV accountant
(Gopi et al. 2021, the accountant Opacus uses by default) for the ε of the whole, at the
run's δ. Nothing here adds ε's by hand.

**Two modes** (``privacy.accounting``):

* ``search`` (default): ``privacy.epsilon`` is the budget of the whole search. Before trial
  *k* trains, the budget left is shared as if this trial and every one still to come
  (``search.trials`` minus those that already trained) were like it: the trial gets the
  least noise for which the accountant says the trials so far plus that many copies of
  this one stay within ε. Each later trial is planned the same way from what was really
  spent (a pruned trial spends less than planned), so the search never exceeds ε.
* ``trial``: each trial gets ``privacy.epsilon``; the search's ε, larger, is reported.

``search`` is the default because the exported model is chosen by looking at every trial,
so the guarantee that holds for it is the search's, not one trial's.

**δ.** ``delta: auto`` is 1 / (10 n) for n training rows: below 1/n, as DP needs (a δ of
1/n allows publishing one row outright), with a margin of ten.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from automl.adapters import ADAPTERS
from automl.errors import RecipeError, require_modules
from automl.params import ParamSpec, SpaceEntry

if TYPE_CHECKING:
    from automl.recipe import PrivacySpec, Recipe

#: Opacus' default accountant, used for every figure automl reports.
ACCOUNTANT = "prv"
#: Trial user attribute holding a private trial's plan and its accountant history.
ATTR = "privacy"
#: Study user attribute holding the run's privacy settings (budget, δ, mode, rows).
STUDY_ATTR = "privacy"

#: What a run's ε does not cover; shown wherever the ε is (summary, report, model card).
NOT_COVERED = (
    "the validation split (trials are evaluated, pruned and chosen on it without noise)",
    "the test split (scored for the report)",
    "the classical baseline (trained without privacy: shown for reference, never exported)",
    "what is read from the training rows before training, treated as public: the label set, the class "
    "shares behind class weights, the scaling of a regression label, the category values and numeric "
    "scaling of table columns",
)

History = list[tuple[float, float, int]]


# ----------------------------------------------------------------------------- rules


def resolve_delta(spec: PrivacySpec, n_train: int) -> float:
    """δ for *n_train* training rows: the recipe's, or 1 / (10 n) for ``auto``."""
    if spec.delta == "auto":
        return 1.0 / (10.0 * max(1, n_train))
    return float(spec.delta)


def privacy_settings(spec: PrivacySpec, n_train: int) -> dict[str, Any]:
    """The run's privacy settings as the study keeps them (:data:`STUDY_ATTR`)."""
    return {
        "epsilon": spec.epsilon,
        "delta": resolve_delta(spec, n_train),
        "delta_rule": "1/(10n)" if spec.delta == "auto" else "recipe",
        "accounting": spec.accounting,
        "max_grad_norm": spec.max_grad_norm,
        "rows": n_train,
    }


def delta_problem(spec: PrivacySpec, n_train: int) -> str | None:
    """Why the recipe's δ does not suit *n_train* rows, or None."""
    if spec.delta != "auto" and float(spec.delta) >= 1.0 / max(1, n_train):
        return (
            f"delta {spec.delta:g} is not below 1/n = 1/{n_train} for {n_train} training rows "
            "(a δ that large allows publishing a row outright); use delta: auto (1/(10n)) or a smaller value"
        )
    return None


def private_adapters() -> list[str]:
    return [name for name, a in ADAPTERS.items() if a.private]


def check_privacy(recipe: Recipe, adapters: Iterable[str], *, loss_overridden: bool, task_name: str) -> None:
    """Refuse, before anything trains, what private training cannot do (one line each):
    *adapters* are those the search space can use."""
    file = str(recipe.path) if recipe.path else None
    if recipe.privacy is None:
        if "max_grad_norm" in recipe.search.space:
            raise RecipeError(
                "max_grad_norm clips per-example gradients in private training only; add a privacy: block "
                "(e.g. privacy: {epsilon: 8}) or remove it",
                file=file,
                field="search.space.max_grad_norm",
            )
        return
    require_modules(["opacus"], install='pip install "automl[privacy]"', field="privacy")
    for name in map(str, adapters):
        adapter = ADAPTERS.get(name)
        if adapter is not None and not adapter.private:
            raise RecipeError(
                f"adapter '{name}' cannot be trained privately (Opacus computes per-example gradients "
                f"for {', '.join(private_adapters())}); use one of those",
                file=file,
                field="search.space.adapter",
            )
    if loss_overridden:
        raise RecipeError(
            f"task '{task_name}' defines its own loss but no per-example version (Task.example_losses), "
            "which private training needs to bound each row's influence",
            file=file,
            field="privacy",
        )


# ----------------------------------------------------------------------------- defaults

#: A private trial's learning-rate range is the adapter's (with the backbone's prior)
#: times this: clipping and noise shrink the steps and the large batches leave few of them,
#: which higher rates make up for (Li et al. 2022 found private fine-tuning best at rates
#: several times the usual). On banking77 (2,310 rows, LoRA on MiniLM, ε = 8, batch 256,
#: 6 epochs) 1e-2 gave macro F1 0.25 where 3e-3 gave 0.10 even at ε = 100 (3 epochs).
PRIVATE_LR_FACTOR = 10.0
#: What a private search starts from for what the recipe's space leaves out: a head on the
#: frozen, mean-pooled backbone (``adapter: head``). Its few weights take little noise in
#: all, and its trial costs one pass of the backbone over the rows whatever its epochs, so
#: that many noisy epochs fit in the budget (Tramèr & Boneh 2021: private learning on good
#: frozen features beats private end-to-end training at small ε); measured against the
#: non-private defaults run privately in docs/benchmarks.md, section 14. The
#: adapters that train the backbone (``full``, ``lora``, which a recipe may still choose)
#: keep large batches and a few epochs; the clipping norm is searched for all.
PRIVATE_SPACE: dict[str, SpaceEntry] = {
    "adapter": "head",
    "batch_size": [
        ParamSpec(choices=[512, 1024], when={"adapter": "head"}),
        ParamSpec(choices=[128, 256], when={"adapter": "lora"}),
        ParamSpec(choices=[128, 256], when={"adapter": "full"}),
    ],
    "epochs": [
        ParamSpec(low=20, high=60, when={"adapter": "head"}),
        ParamSpec(low=3, high=8, when={"adapter": "lora"}),
        ParamSpec(low=3, high=8, when={"adapter": "full"}),
    ],
    "max_grad_norm": ParamSpec(low=0.1, high=1.0, log=True),
    # The noise added to a step grows with the square root of the weights trained: LoRA of
    # low rank on the attention layers only.
    "lora_r": ParamSpec(choices=[4, 8], when={"adapter": "lora"}),
    "target_modules": ParamSpec(choices=["attention", "attention+mlp"], when={"adapter": "lora"}),
}
#: The warm-start trial of each adapter in a private search; the learning rate is the
#: middle of its (private) range.
PRIVATE_WARM_START: dict[str, dict[str, Any]] = {
    "head": {"batch_size": 512, "epochs": 40, "max_grad_norm": 1.0},
    "lora": {"batch_size": 256, "epochs": 5, "max_grad_norm": 0.5, "lora_r": 8, "target_modules": "attention"},
    "full": {"batch_size": 256, "epochs": 5, "max_grad_norm": 0.5},
}


def private_space(defaults: dict[str, SpaceEntry], *, pooled: bool = True) -> dict[str, SpaceEntry]:
    """The default space of a private search: *defaults* (the task's and adapters') with
    higher learning rates and :data:`PRIVATE_SPACE` over them. *pooled*: the task has one
    output per row, so a head on the mean-pooled backbone reads each row once; a task
    with an output per token (whose head on a frozen body would run the body at every
    step) defaults to LoRA instead."""

    def scaled(entry: Any) -> Any:
        if isinstance(entry, ParamSpec) and entry.low is not None and entry.high is not None and entry.type == "float":
            return entry.model_copy(update={"low": entry.low * PRIVATE_LR_FACTOR, "high": entry.high * PRIVATE_LR_FACTOR})
        return entry

    out = dict(defaults)
    learning_rate = out.get("learning_rate")
    if learning_rate is not None:
        out["learning_rate"] = [scaled(v) for v in learning_rate] if isinstance(learning_rate, list) else scaled(learning_rate)
    out.update(PRIVATE_SPACE)
    if not pooled:
        out["adapter"] = "lora"
    return out


# ----------------------------------------------------------------------------- accounting


def epsilon(history: Sequence[Sequence[float]], delta: float) -> float:
    """ε of a DP-SGD history ``[(noise_multiplier, sample_rate, steps), ...]`` at *delta*,
    from Opacus' PRV accountant (0 for an empty history)."""
    from opacus.accountants import create_accountant

    entries = [(float(s), float(q), int(t)) for s, q, t in history if int(t) > 0]
    if not entries:
        return 0.0
    accountant = create_accountant(mechanism=ACCOUNTANT)
    accountant.history = entries
    return float(accountant.get_epsilon(delta=delta))


def noise_for(target_epsilon: float, delta: float, sample_rate: float, steps: int) -> float:
    """The noise multiplier Opacus picks for *target_epsilon* over *steps* steps at
    *sample_rate* (``opacus.accountants.utils.get_noise_multiplier``, PRV accountant)."""
    from opacus.accountants.utils import get_noise_multiplier

    return float(get_noise_multiplier(
        target_epsilon=target_epsilon, target_delta=delta, sample_rate=sample_rate, steps=steps, accountant=ACCOUNTANT
    ))


class BudgetSpent(Exception):
    """The search's privacy budget has nothing left for another trial."""


def share_budget(budget: float, delta: float, spent: History, remaining: int, sample_rate: float, steps: int) -> float:
    """The ε target of the next trial in ``accounting: search``: the largest for which the
    trials that already ran (*spent*) plus *remaining* trials like this one (*steps* steps
    at *sample_rate*) stay within *budget*, by the accountant. Raises :class:`BudgetSpent`
    when the trials so far leave (practically) nothing."""
    remaining = max(1, remaining)
    if epsilon(spent, delta) >= budget * 0.999:
        raise BudgetSpent(f"the search's privacy budget ε = {budget:g} is spent")

    def total(sigma: float) -> float:
        return epsilon([*spent, (sigma, sample_rate, remaining * steps)], delta)

    low, high = 0.0, 1.0
    while total(high) > budget:
        low, high = high, high * 2
        if high > 1e4:
            raise BudgetSpent(f"the search's privacy budget ε = {budget:g} leaves too little for another trial")
    # Bisect on the noise to 1%: the trial then gets the ε of that noise alone, and Opacus'
    # own search for a noise at that ε returns at least as much noise (never more ε).
    while high - low > 0.01 * high:
        mid = (low + high) / 2
        if total(mid) > budget:
            low = mid
        else:
            high = mid
    return epsilon([(high, sample_rate, steps)], delta)


def trial_history(attr: dict[str, Any]) -> History:
    """What a trial spent: its accountant history when it finished (pruned, failed or
    complete), else its plan in full (a trial cut off by a crash may have run every step)."""
    history = [tuple(h) for h in attr.get("history") or []]
    if not attr.get("finished"):
        history.append(tuple(attr["planned"]))
    return [(float(s), float(q), int(t)) for s, q, t in history]  # type: ignore[misc]


def search_history(trials: Iterable[Any], before: int | None = None) -> History:
    """The composed history of every trial (``FrozenTrial``) that touched the training
    rows, in trial order; with *before*, only trials numbered below it."""
    out: History = []
    for t in sorted(trials, key=lambda t: t.number):
        attr = t.user_attrs.get(ATTR)
        if attr and (before is None or t.number < before):
            out.extend(trial_history(attr))
    return out


def trials_that_fit(trials: Iterable[Any], seconds_left: float, rows: int, n_train: int) -> int | None:
    """How many private trials that each train *rows* rows (steps times logical batch)
    fit in *seconds_left*, at the median pace (seconds per row, evaluations included) of
    the private trials that finished; None before any has."""
    paces = sorted(
        float(t.user_attrs["seconds"]) / (a["steps"] * a["sample_rate"] * n_train)
        for t in trials
        if (a := t.user_attrs.get(ATTR)) and a.get("finished") and a.get("steps") and "seconds" in t.user_attrs
    )
    if not paces:
        return None
    return int(seconds_left // (paces[len(paces) // 2] * rows))


def trials_spent(trials: Iterable[Any], before: int | None = None) -> int:
    return sum(1 for t in trials if t.user_attrs.get(ATTR) and (before is None or t.number < before))


def run_privacy(settings: dict[str, Any] | None, trials: Sequence[Any]) -> dict[str, Any] | None:
    """What a run's privacy amounts to, for every place that shows it: the settings (the
    study's :data:`STUDY_ATTR`), the ε of the whole search so far, the largest ε of one
    trial, and how many trials touched the training rows."""
    if not settings:
        return None
    delta = float(settings["delta"])
    per_trial = [float(t.user_attrs[ATTR]["epsilon"]) for t in trials if (t.user_attrs.get(ATTR) or {}).get("epsilon") is not None]
    return {
        **settings,
        "search_epsilon": round(epsilon(search_history(trials), delta), 4),
        "max_trial_epsilon": round(max(per_trial), 4) if per_trial else None,
        "trials": trials_spent(trials),
        "accountant": ACCOUNTANT,
        "not_covered": list(NOT_COVERED),
    }


def describe(info: dict[str, Any]) -> str:
    """One line for the summary and the model card."""
    mode = "budget of the whole search" if info["accounting"] == "search" else "per trial"
    per = f"; each trial ε ≤ {info['max_trial_epsilon']:.2f}" if info.get("max_trial_epsilon") is not None else ""
    return (
        f"ε = {info['search_epsilon']:.2f} for the whole search ({info['trials']} trial"
        f"{'s' if info['trials'] != 1 else ''} on the training rows; ε = {info['epsilon']:g} {mode}){per}; "
        f"δ = {info['delta']:.2g}; {info['accountant'].upper()} accountant"
    )
