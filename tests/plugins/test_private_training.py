"""Private training (a recipe's ``privacy:`` block): DP-SGD trials through Opacus train
every built-in task, their ε is Opacus' accountant's, the search's ε is the composition of
its trials (within the budget in ``accounting: search``), a private run never exports its
baseline, and what private training cannot do is refused before anything trains."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner
from opacus.accountants import PRVAccountant
from plugin_helpers import SAMPLES, tiny_recipe_for
from rich.console import Console
from test_engine import build_engine

from automl.cli import cli
from automl.privacy import PRIVATE_LR_FACTOR, BudgetSpent, epsilon, private_space, run_privacy, search_history, share_budget
from automl.private_training import PrivateTrialEngine, _LongestFirst
from automl.recipe import load_recipe
from automl.search.storage import open_storage
from automl.search.supervisor import RunOptions, run_recipe
from automl.testing import tiny_recipe, write_recipe, write_toy_text_data

DELTA = 1e-3


def private_engine(recipe_path) -> PrivateTrialEngine:
    return build_engine(recipe_path, engine_class=PrivateTrialEngine, delta=DELTA, max_grad_norm=1.0, physical_batch_size=16)


def task_recipe(task_name, data_root, tmp_path, rows=160):
    path = tiny_recipe_for(task_name, data_root, tmp_path)
    body = yaml.safe_load(path.read_text())
    body["data"]["max_rows"] = rows
    body["training"]["max_length"] = 32
    path.write_text(yaml.safe_dump(body))
    return path


def moved(engine: PrivateTrialEngine, params, result) -> dict[str, bool]:
    """For each weight the trial trained: whether it differs from the same fresh model."""
    torch.manual_seed(engine.seed)
    fresh = dict(engine._fresh_model(params).named_parameters())
    return {name: not torch.equal(p.detach().cpu(), fresh[name].detach().cpu())
            for name, p in result.model.named_parameters() if p.requires_grad}


PARAMS = {"learning_rate": 1e-2, "batch_size": 32, "epochs": 2, "warmup_ratio": 0.0, "weight_decay": 0.0}


@pytest.mark.parametrize("task_name", sorted(SAMPLES))
def test_private_full_finetuning_moves_the_weights_of_every_task(task_name, data_root, tmp_path):
    engine = private_engine(task_recipe(task_name, data_root, tmp_path))
    params = {**PARAMS, "adapter": "full"}
    result = engine.run_trial(params, target_epsilon=8.0)
    changed = moved(engine, params, result)
    # Every trained weight moved: the encoder, the head and (fraud) the feature tower.
    assert changed and all(changed.values()), [n for n, c in changed.items() if not c]
    if task_name == "fraud-detection":
        assert any("feature" in n or "tower" in n or "numeric" in n for n in changed), sorted(changed)[:10]
    # The pretrained embedding tables stayed frozen (opacus#841; docs/privacy.md).
    frozen = [n for n, p in result.model.named_parameters() if "embeddings" in n and "word_embeddings" in n]
    assert frozen and not any(dict(result.model.named_parameters())[n].requires_grad for n in frozen)
    assert result.privacy["steps"] == result.steps > 0


def test_private_lora_moves_its_weights(recipe_file):
    engine = private_engine(recipe_file())
    params = {**PARAMS, "adapter": "lora", "lora_r": 4, "lora_alpha": 8}
    result = engine.run_trial(params, target_epsilon=8.0)
    lora_b = {n: p for n, p in result.model.named_parameters() if "lora_B" in n}
    # peft starts lora_B at zero: a trained one is not (opacus#820: it would stay zero
    # if Opacus attached to the model before it was on its device).
    assert lora_b and all(p.abs().sum() > 0 for p in lora_b.values())
    assert all(moved(engine, params, result).values())


@pytest.mark.parametrize("task_name", ["text-classification", "token-classification"])
def test_a_private_head_trains_its_head_alone(task_name, data_root, tmp_path):
    """The privacy-aware default: the pretrained body frozen (mean-pooled under a new head
    for one output per row; the token head over the frozen body for token tasks)."""
    engine = private_engine(task_recipe(task_name, data_root, tmp_path))
    params = {**PARAMS, "adapter": "head", "batch_size": 64, "epochs": 4}
    result = engine.run_trial(params, target_epsilon=8.0)
    changed = moved(engine, params, result)
    assert changed and all(changed.values())
    trained = [n for n, p in result.model.named_parameters() if p.requires_grad]
    if task_name == "text-classification":
        assert all(n.startswith("fusion.") for n in trained), trained
    else:
        assert trained and all(n.startswith("classifier.") for n in trained), trained
    info = result.privacy
    assert info["steps"] == result.steps == 4 * int(np.ceil(len(engine.train_lengths) / 64))
    assert info["epsilon"] <= 8.0 and info["epsilon"] > 7.9


def test_the_trial_epsilon_is_the_accountants(recipe_file):
    engine = private_engine(recipe_file())
    plans = []
    result = engine.run_trial({**PARAMS, "adapter": "full", "batch_size": 50}, target_epsilon=4.0, on_plan=lambda *p: plans.append(p))
    info = result.privacy
    n = len(engine.train_lengths)
    assert info["sample_rate"] == pytest.approx(1 / np.ceil(n / 50))  # Poisson: batch_size / n, per step
    assert plans == [(info["noise_multiplier"], info["sample_rate"], result.steps)]
    accountant = PRVAccountant()
    accountant.history = [(info["noise_multiplier"], info["sample_rate"], result.steps)]
    assert info["epsilon"] == pytest.approx(accountant.get_epsilon(delta=DELTA), rel=1e-9)
    assert info["epsilon"] <= 4.0 and info["epsilon"] > 3.9  # Opacus chose the noise for the target


def test_a_logical_batch_keeps_its_rows_longest_first():
    lengths = np.array([3, 9, 1, 7, 5])
    batches = [[0, 1, 2], [], [3, 4, 0]]
    out = list(_LongestFirst(batches, lengths))
    assert [sorted(b) for b in out] == [sorted(b) for b in batches]
    assert out[0] == [1, 0, 2] and out[2] == [3, 4, 0]


# ----------------------------------------------------------------------------- the search


def test_a_budget_share_keeps_the_search_within_its_epsilon():
    rate, steps = 0.1, 30
    first = share_budget(8.0, DELTA, [], 4, rate, steps)
    assert 0 < first < 8.0
    from automl.privacy import noise_for

    sigma = noise_for(first, DELTA, rate, steps)
    spent = [(sigma, rate, steps)]
    # Three more like it fit; the accountant says the four together are within 8.
    assert epsilon([(sigma, rate, 4 * steps)], DELTA) <= 8.0
    # The last trial gets what is left, and the whole stays within the budget.
    spent += [(sigma, rate, steps)] * 2
    last = share_budget(8.0, DELTA, spent, 1, rate, steps)
    assert last > first
    assert epsilon([*spent, (noise_for(last, DELTA, rate, steps), rate, steps)], DELTA) <= 8.0
    with pytest.raises(BudgetSpent):
        share_budget(epsilon(spent, DELTA), DELTA, spent, 1, rate, steps)


def private_run(tmp_path, accounting, trials=3, epsilon_=8.0):
    data = write_toy_text_data(tmp_path / "data", train=300)
    recipe = tiny_recipe(data, output=str(tmp_path / "run"))
    recipe["privacy"] = {"epsilon": epsilon_, "accounting": accounting}
    recipe["search"] = {"trials": trials, "start_from": "none", "pruner": "none", "space": {
        "learning_rate": {"low": 2e-3, "high": 2e-2, "log": True}, "batch_size": [64], "epochs": [2, 3], "adapter": "full"}}
    path = write_recipe(tmp_path / "private.yaml", recipe)
    return run_recipe(load_recipe(path), options=RunOptions(workers=0), console=Console(file=io.StringIO()))


def trials_of(outcome):
    import optuna

    study = optuna.load_study(study_name=outcome.study_name, storage=open_storage(None, outcome.run_dir))
    return study, sorted(study.get_trials(), key=lambda t: t.number)


def test_the_search_epsilon_grows_with_each_trial(tmp_path):
    outcome = private_run(tmp_path, "trial")
    study, trials = trials_of(outcome)
    settings = study.user_attrs["privacy"]
    assert settings["accounting"] == "trial" and settings["delta"] == pytest.approx(1 / 3000)
    grown = [run_privacy(settings, trials[: k + 1])["search_epsilon"] for k in range(len(trials))]
    assert len(trials) == 3 and grown == sorted(grown) and grown[0] < grown[1] < grown[2]
    # Each trial spent its ε; the three together, composed by the accountant, spent more.
    each = [t.user_attrs["privacy"]["epsilon"] for t in trials]
    assert all(7.9 < e <= 8.0 for e in each)
    assert grown[-1] == pytest.approx(epsilon(search_history(trials), settings["delta"]), abs=1e-3)
    assert grown[-1] > 8.0


def test_budget_mode_keeps_the_whole_search_within_epsilon_and_never_exports_the_baseline(tmp_path):
    outcome = private_run(tmp_path, "search", epsilon_=3.0)
    study, trials = trials_of(outcome)
    info = run_privacy(study.user_attrs["privacy"], trials)
    assert info["trials"] == 3
    assert info["max_trial_epsilon"] < info["search_epsilon"] <= 3.0
    # On this data the TF-IDF baseline is perfect and three DP trials on 300 rows are not:
    # a non-private run would export the baseline; a private one must not.
    baseline = json.loads((outcome.run_dir / "baseline.json").read_text())
    assert baseline["not_private"] is True and baseline["value"] > outcome.summary.best_value
    assert not (outcome.run_dir / "baseline").exists()
    meta = json.loads((outcome.best_dir / "automl.json").read_text())
    assert meta.get("kind", "transformers") != "baseline"
    assert "baseline" not in json.dumps(meta.get("members", []))


# ----------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("change, field, words", [
    ({"search": {"space": {"adapter": "ia3"}}}, "search.space.adapter", "cannot be trained privately"),
    ({"privacy": {"epsilon": 8, "delta": 0.01}}, "privacy.delta", "not below 1/n"),
    ({"privacy": {"epsilon": 0}}, "privacy.epsilon", "greater than 0"),
    ({"privacy": None, "search": {"space": {"max_grad_norm": 0.5}}}, "search.space.max_grad_norm", "privacy: block"),
])
def test_what_private_training_cannot_do_is_one_line_and_exit_2(recipe_file, change, field, words):
    body = {"privacy": {"epsilon": 8}}
    for key, value in change.items():
        body[key] = value
    if body.get("privacy") is None:
        body.pop("privacy")
    path = recipe_file(**body)
    for command in (["recipe", "check", str(path)], ["run", str(path)]):
        result = CliRunner().invoke(cli, command)
        assert result.exit_code == 2, result.output
        lines = [line for line in result.output.strip().splitlines() if line.strip()]
        assert len(lines) == 1 and field in lines[0] and words in lines[0], result.output
        assert "Traceback" not in result.output


def test_private_defaults_suit_dp():
    from automl.params import ParamSpec

    base = {"learning_rate": [ParamSpec(low=1e-4, high=1e-3, log=True, when={"adapter": "lora"})], "batch_size": [16, 32]}
    out = private_space(base)
    assert PRIVATE_LR_FACTOR > 1 and out["learning_rate"][0].low == pytest.approx(1e-4 * PRIVATE_LR_FACTOR)
    assert out["learning_rate"][0].when == {"adapter": "lora"}
    assert out["batch_size"] != [16, 32] and "max_grad_norm" in out
    # A head on the frozen, mean-pooled backbone, with large batches and many epochs.
    assert out["adapter"] == "head"
    head = {name: next(e for e in out[name] if e.when == {"adapter": "head"}) for name in ("batch_size", "epochs")}
    assert min(head["batch_size"].choices) >= 512 and head["epochs"].low >= 20
    assert private_space(base, pooled=False)["adapter"] == "lora"  # token heads: no pooled vectors to cache


def test_a_private_search_starts_from_the_head(recipe_file):
    from automl.resolve import resolve

    resolved = resolve(load_recipe(recipe_file(privacy={"epsilon": 8}, search={"trials": 3})))  # the default space
    assert [c["adapter"] for c in resolved.start_from] == ["head"]
    first = resolved.start_from[0]
    assert first["batch_size"] == 512 and first["epochs"] == 40 and first["max_grad_norm"] == 1.0
    assert first["learning_rate"] > 1e-3  # the head's range, ten times higher under privacy


def test_the_trials_that_fit_before_the_deadline_share_the_budget():
    import optuna

    from automl.privacy import trials_that_fit

    # A finished private trial trained 20 steps of 0.1 x 1000 rows in 100 s: 0.05 s a row.
    done = optuna.trial.create_trial(value=0.5, user_attrs={"seconds": 100.0, "privacy": {
        "finished": True, "steps": 20, "sample_rate": 0.1, "planned": [1.0, 0.1, 20]}})
    running = optuna.trial.create_trial(state=optuna.trial.TrialState.RUNNING, user_attrs={"privacy": {
        "finished": False, "planned": [1.0, 0.1, 20]}})
    assert trials_that_fit([running], 500.0, 2000, 1000) is None  # no pace measured yet
    assert trials_that_fit([done, running], 500.0, 2000, 1000) == 5  # 100 s a trial
    assert trials_that_fit([done], 90.0, 2000, 1000) == 0
