"""Search quality: per-adapter ranges reach the sampler, warm-start trials come first (once),
a trial keeps and exports its best evaluation, early stopping ends a flat trial, the
evaluation plan gives the pruner its resources, the timeout bounds the run, and every
recipe override of these is a one-line error."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
from click.testing import CliRunner
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from automl import hookimpl
from automl.adapters import ADAPTERS, Adapter, register_adapter
from automl.cli import cli
from automl.device import pick_device
from automl.engine import TrialEngine, TrialPolicy
from automl.plugins import get_tasks
from automl.recipe import load_recipe
from automl.resolve import resolve
from automl.run import RunContext
from automl.search.samplers import make_pruner, make_sampler, plan_evaluations
from automl.search.space import user_params
from automl.search.storage import open_storage
from automl.search.supervisor import RunOptions, run_recipe
from automl.testing import registered, tiny_recipe, write_recipe


def _recipe(tmp_path: Path, toy_dir: Path, **changes) -> Path:
    recipe = tiny_recipe(toy_dir, output=str(tmp_path / "run"))
    search = dict(recipe["search"])
    search.update(changes.pop("search", {}))
    recipe["search"] = search
    recipe.update(changes)
    return write_recipe(tmp_path / "recipe.yaml", recipe)


def _study(run_dir: Path) -> optuna.Study:
    name = json.loads((run_dir / "run.json").read_text())["study_name"]
    return optuna.load_study(study_name=name, storage=open_storage(None, run_dir, heartbeat=False))


# ----------------------------------------------------------------------------- adapter-aware space


def test_per_adapter_ranges_reach_the_sampler(tmp_path, toy_dir):
    """With the default space each adapter has its own learning-rate range, as its own
    Optuna parameter: the sampler sees each range, and no LoRA trial gets a full
    fine-tuning learning rate."""
    path = _recipe(tmp_path, toy_dir, search={"trials": 24, "space": {}})
    resolved = resolve(load_recipe(path))
    ranges = {d.param: d.distribution for d in resolved.space.dimensions if d.name == "learning_rate"}
    assert ranges == {
        "learning_rate[full]": FloatDistribution(*ADAPTERS["full"].learning_rate, log=True),
        "learning_rate[lora]": FloatDistribution(*ADAPTERS["lora"].learning_rate, log=True),
    }
    recipe = resolved.recipe
    study = optuna.create_study(direction="maximize", sampler=make_sampler(recipe, resolved.space))
    for i in range(24):
        trial = study.ask()
        params = resolved.space.sample(trial)
        study.tell(trial, float(np.log10(params["learning_rate"])) + i % 3)
    adapters = set()
    for t in study.trials:
        params = user_params(t.params)
        adapter = params["adapter"]
        adapters.add(adapter)
        low, high = ADAPTERS[adapter].learning_rate
        assert low <= params["learning_rate"] <= high, params
        assert t.distributions[f"learning_rate[{adapter}]"] == FloatDistribution(low, high, log=True)
        assert ("lora_r" in params) == (adapter == "lora")
    assert adapters == {"full", "lora"}


def test_backbone_prior_task_override_and_new_adapter(tmp_path, toy_dir):
    """The backbone scales the ranges for its size, a task overrides one adapter's range,
    and an adapter registered later gets its own range with no other change."""
    base = get_tasks()["text-classification"]

    class Tagging(base):  # type: ignore[misc, valid-type]
        name = "lr-override-text"
        description = "text classification with its own LoRA range (tests)"

        def adapter_space(self, adapter, learning_rate):  # type: ignore[no-untyped-def]
            space = super().adapter_space(adapter, learning_rate)
            if adapter.name == "lora":
                space["learning_rate"] = space["learning_rate"].model_copy(update={"high": 5e-3})
            return space

    class Plugin:
        @hookimpl
        def automl_register_tasks(self, register):  # type: ignore[no-untyped-def]
            register(Tagging)

    register_adapter(Adapter("test-half", ADAPTERS["full"].build, learning_rate=(0.25, 0.5), peft=False))
    try:
        with registered(Plugin(), "test-lr-override"):
            path = _recipe(
                tmp_path, toy_dir, task="lr-override-text", backbone="minilm-l6",
                search={"space": {"adapter": ["full", "lora", "test-half"]}},
            )
            space = resolve(load_recipe(path)).space
    finally:
        del ADAPTERS["test-half"]
    ranges = {d.param: [d.distribution.low, d.distribution.high] for d in space.dimensions if d.name == "learning_rate"}
    assert list(ranges) == ["learning_rate[full]", "learning_rate[lora]", "learning_rate[test-half]"]
    assert ranges["learning_rate[full]"] == pytest.approx([3e-5, 3e-4])  # minilm-l6: learning_rate_scale 3
    assert ranges["learning_rate[lora]"] == pytest.approx([3e-4, 5e-3])  # the task's own high
    assert ranges["learning_rate[test-half]"] == pytest.approx([0.75, 1.5])


def test_recipe_range_per_adapter_keeps_the_others(tmp_path, toy_dir):
    path = _recipe(
        tmp_path, toy_dir,
        search={"space": {"learning_rate": [{"low": 1e-3, "high": 2e-3, "log": True, "when": {"adapter": "lora"}}]}},
    )
    # An adapter the recipe's choices leave out has a default range that is dropped, not refused.
    register_adapter(Adapter("test-unused", ADAPTERS["full"].build, learning_rate=(0.25, 0.5), peft=False))
    try:
        space = resolve(load_recipe(path)).space
    finally:
        del ADAPTERS["test-unused"]
    ranges = {d.param: (d.distribution.low, d.distribution.high) for d in space.dimensions if d.name == "learning_rate"}
    assert ranges == {"learning_rate[full]": ADAPTERS["full"].learning_rate, "learning_rate[lora]": (1e-3, 2e-3)}
    # Fixing the adapter leaves one range, under the plain name.
    path = _recipe(tmp_path, toy_dir, search={"space": {"adapter": "lora"}})
    dims = [d for d in resolve(load_recipe(path)).space.dimensions if d.name == "learning_rate"]
    assert [(d.param, d.distribution.low) for d in dims] == [("learning_rate", ADAPTERS["lora"].learning_rate[0])]


# ----------------------------------------------------------------------------- warm start


def test_warm_start_trials_come_first_and_are_not_repeated_on_resume(tmp_path, toy_dir):
    path = _recipe(
        tmp_path, toy_dir,
        search={"trials": 3, "pruner": "none", "space": {"epochs": [1], "batch_size": [32]}},
    )
    recipe = load_recipe(path)
    configs = list(resolve(recipe).start_from)
    assert [c["adapter"] for c in configs] == ["full", "lora"]
    assert configs[1]["learning_rate"] == pytest.approx(3.16e-4)  # the middle of LoRA's default range
    outcome = run_recipe(recipe, options=RunOptions(workers=0, baseline=False, export=False))
    study = _study(outcome.run_dir)
    first = sorted(study.trials, key=lambda t: t.number)[:2]
    assert [t.user_attrs.get("start_from") for t in first] == [0, 1]
    for t, config in zip(first, configs, strict=True):
        assert user_params(t.params) == {k: v for k, v in config.items() if k not in ("epochs", "batch_size", "weight_decay", "warmup_ratio", "scheduler")}
    run_recipe(recipe.with_overrides(trials=5), options=RunOptions(workers=0, baseline=False, export=False))
    study = _study(outcome.run_dir)
    assert len(study.trials) == 5
    assert sum(t.user_attrs.get("start_from") is not None for t in study.trials) == 2


def test_backbone_and_task_warm_start_hints(tmp_path, toy_dir):
    """MiniLM's hint for full fine-tuning (3 epochs at 3e-4) is clipped into the space; a
    parameter the space fixes ignores it; a task's None sends a parameter back to the
    middle of its range."""
    space = {"adapter": ["full", "lora"], "epochs": {"low": 1, "high": 2}}
    path = _recipe(tmp_path, toy_dir, backbone="minilm-l6", search={"space": space})
    full, lora = resolve(load_recipe(path)).start_from
    assert full["learning_rate"] == pytest.approx(3e-4) and full["epochs"] == 2  # clipped to the range
    assert lora["learning_rate"] == pytest.approx(9.49e-4, rel=0.01)  # no hint: the middle of [3e-4, 3e-3]
    path = _recipe(tmp_path, toy_dir, backbone="minilm-l6", search={"space": {"adapter": "full", "epochs": 4}})
    (only,) = resolve(load_recipe(path)).start_from
    assert "epochs" not in only and only["learning_rate"] == pytest.approx(3e-4)
    base = get_tasks()["text-classification"]

    class Undo(base):  # type: ignore[misc, valid-type]
        name = "warm-undo-text"
        description = "text classification that undoes the backbone's learning-rate hint (tests)"

        def warm_start(self, adapter):  # type: ignore[no-untyped-def]
            return {"learning_rate": None}

    class Plugin:
        @hookimpl
        def automl_register_tasks(self, register):  # type: ignore[no-untyped-def]
            register(Undo)

    with registered(Plugin(), "test-warm-undo"):
        path = _recipe(tmp_path, toy_dir, task="warm-undo-text", backbone="minilm-l6", search={"space": {"adapter": "full"}})
        (undone,) = resolve(load_recipe(path)).start_from
    assert undone["learning_rate"] == pytest.approx(9.49e-5, rel=0.01)  # the middle of [3e-5, 3e-4]
    assert undone["epochs"] == 3


def test_own_start_configurations_and_off(tmp_path, toy_dir):
    path = _recipe(tmp_path, toy_dir, search={"start_from": [{"adapter": "lora", "lora_r": 16}]})
    (config,) = resolve(load_recipe(path)).start_from
    assert config["adapter"] == "lora" and config["lora_r"] == 16 and 2e-3 <= config["learning_rate"] <= 6e-3
    path = _recipe(tmp_path, toy_dir, search={"start_from": "none"})
    assert resolve(load_recipe(path)).start_from == ()


# ----------------------------------------------------------------------------- best checkpoint


SCRIPT = [0.2, 0.9, 0.5, 0.4, 0.3, 0.3, 0.3, 0.3]


class Scripted:
    """A text-classification task whose objective follows a script, one value per
    evaluation on the validation split; it records the outputs each evaluation saw."""

    def __init__(self, script: list[float]) -> None:
        self.script = script
        self.outputs: list[np.ndarray] = []

    @hookimpl
    def automl_register_tasks(self, register):  # type: ignore[no-untyped-def]
        base = get_tasks()["text-classification"]
        plugin = self

        class ScriptedText(base):  # type: ignore[misc, valid-type]
            name = "scripted-text"
            description = "text classification with a scripted objective (tests)"

            def compute_metrics(self, outputs, split, encoded, calibration):  # type: ignore[no-untyped-def]
                metrics = super().compute_metrics(outputs, split, encoded, calibration)
                if len(plugin.outputs) < len(plugin.script):
                    plugin.outputs.append(np.array(outputs, copy=True))
                    metrics["f1_macro"] = plugin.script[len(plugin.outputs) - 1]
                return metrics

        register(ScriptedText)


def _engine(path: Path, policy: TrialPolicy, eval_every: int = 5) -> TrialEngine:
    ctx = RunContext.create(load_recipe(path))
    ctx.run_dir.mkdir(parents=True, exist_ok=True)
    data, tokenizer, encoded = ctx.load_data()
    base = ctx.load_base_model()
    return TrialEngine(
        task=ctx.resolved.task, base_model=base, encoded=encoded,
        splits={"train": data.train, "validation": data.validation}, setup=pick_device("cpu"),
        pad_id=tokenizer.pad_token_id, objective="f1_macro", direction="maximize",
        lora_targets=ctx.resolved.backbone.lora_target_modules(base), seed=0,
        eval_every=eval_every, policy=policy,
    )


def test_exported_weights_are_the_best_evaluations(tmp_path, toy_dir):
    """The objective peaks at the second of four evaluations: the trial's value, metrics
    and exported model are those of that evaluation, not of the last step."""
    space = {"learning_rate": [4e-3], "epochs": [1], "batch_size": [16], "adapter": "full"}
    path = _recipe(
        tmp_path, toy_dir, task="scripted-text",
        search={"trials": 1, "pruner": "none", "start_from": "none", "space": space},
        training={"max_length": 32, "seed": 0, "eval_every": 5},
    )
    plugin = Scripted(SCRIPT[:4])
    with registered(plugin, "test-scripted"):
        outcome = run_recipe(load_recipe(path), options=RunOptions(workers=0, baseline=False))
    (trial,) = _study(outcome.run_dir).trials
    assert trial.value == 0.9 and trial.user_attrs["metrics"]["f1_macro"] == 0.9
    assert trial.user_attrs["best_step"] == 10 and trial.user_attrs["steps"] == 19  # 300 rows / 16
    assert len(plugin.outputs) == 4
    assert not np.allclose(plugin.outputs[1], plugin.outputs[3], atol=1e-3)  # the weights did move on

    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    best = outcome.run_dir / "best"
    model = AutoModelForSequenceClassification.from_pretrained(str(best)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(best))
    texts = [line.rsplit(",", 1)[0] for line in (toy_dir / "validation.csv").read_text().splitlines()[1:]]
    with torch.no_grad():
        logits = model(**tokenizer(texts, truncation=True, max_length=32, padding=True, return_tensors="pt")).logits
    np.testing.assert_allclose(logits.numpy(), plugin.outputs[1], atol=1e-4)


def test_lora_trial_keeps_its_best_evaluation(tmp_path, toy_dir):
    path = _recipe(tmp_path, toy_dir, task="scripted-text")
    plugin = Scripted(SCRIPT[:4])
    with registered(plugin, "test-scripted"):
        engine = _engine(path, TrialPolicy())
        params = {"learning_rate": 2e-2, "batch_size": 16, "epochs": 1, "adapter": "lora", "lora_r": 8, "lora_alpha": 16}
        result = engine.run_trial(params)
        assert (result.value, result.best_step) == (0.9, 10)
        now = engine.outputs(result.model, "validation")
    assert not np.allclose(plugin.outputs[1], plugin.outputs[3], atol=1e-3)
    np.testing.assert_allclose(now, plugin.outputs[1], atol=1e-5)


def test_early_stopping_ends_a_flat_trial(tmp_path, toy_dir):
    path = _recipe(tmp_path, toy_dir, task="scripted-text")
    with registered(Scripted([0.5] * 20), "test-scripted"):
        engine = _engine(path, TrialPolicy(patience=2))
        result = engine.run_trial({"learning_rate": 4e-3, "batch_size": 16, "epochs": 3, "adapter": "full"})
    assert result.stopped == "early stopping"
    assert (result.best_step, result.steps) == (5, 15)  # no gain at steps 10 and 15
    assert result.value == 0.5


def test_no_pruning_before_the_minimum_share(tmp_path, toy_dir):
    from automl.engine import TrialStopped

    path = _recipe(tmp_path, toy_dir)
    engine = _engine(path, TrialPolicy(prune_after=0.5))
    calls = []
    with pytest.raises(TrialStopped) as stop:
        engine.run_trial({"learning_rate": 4e-3, "batch_size": 16, "epochs": 2, "adapter": "full"}, reporter=lambda s, v, m: calls.append(s) or True)
    assert calls == [5, 10, 15, 20]  # 38 steps: the pruner's "stop" counts from step 19
    assert stop.value.step == 20


# ----------------------------------------------------------------------------- evaluation plan


def test_evaluation_plan_and_hyperband_resources(tmp_path, toy_dir):
    path = _recipe(tmp_path, toy_dir, search={"space": {"epochs": {"low": 2, "high": 6}, "batch_size": [16, 32]}})
    recipe = load_recipe(path)
    space = resolve(recipe).space
    plan = plan_evaluations(recipe, space, n_train=1000, n_validation=100)
    # A quarter of the shortest trial (2 epochs), at least two validation sets' worth.
    assert plan.examples == 500
    # Shortest (2 epochs, batch 32, every 16 steps): 4 evaluations, pruning from 25% of
    # them (the first); longest (6 epochs, batch 16, every 32 steps): 12.
    assert (plan.min_resource, plan.max_resource) == (1, 12)
    pruner = make_pruner(recipe, plan)
    assert isinstance(pruner, optuna.pruners.HyperbandPruner)
    # Small validation set relative to training: capped at one evaluation per epoch.
    assert plan_evaluations(recipe, space, n_train=1000, n_validation=900).examples == 1000
    epoch = load_recipe(_recipe(tmp_path, toy_dir, training={"max_length": 32, "eval_every": "epoch"}))
    assert plan_evaluations(epoch, space, 1000, 100) is None


# ----------------------------------------------------------------------------- timeout


def test_timeout_cuts_the_running_trial_at_an_evaluation(tmp_path, toy_dir):
    """A trial that cannot finish by the deadline plans fewer steps, or is evaluated after
    its current step and stops; it completes at its best and is marked; no trial starts
    after the deadline."""
    space = {"learning_rate": [4e-3], "epochs": [400], "batch_size": [16], "adapter": "full"}
    path = _recipe(
        tmp_path, toy_dir,
        search={"trials": 3, "timeout": 10, "pruner": "none", "space": space},
        training={"max_length": 32, "seed": 0, "eval_every": 5},
    )
    outcome = run_recipe(load_recipe(path), options=RunOptions(workers=0, baseline=False))
    study = _study(outcome.run_dir)
    (trial,) = study.trials
    assert trial.state == TrialState.COMPLETE
    # At its pace it plans fewer steps to finish by the deadline, or is cut there (a
    # machine slower than its first steps): either way it ends in time, at its best.
    attrs = trial.user_attrs
    assert attrs.get("stopped") == "deadline" or attrs.get("shortened_from_steps") == 400 * 19, attrs
    assert trial.user_attrs["steps"] < 400 * 19
    # The evaluation at the deadline is one more than the plan's (every 5 steps) when the
    # deadline falls between two of them.
    assert len(trial.intermediate_values) in (trial.user_attrs["steps"] // 5, trial.user_attrs["steps"] // 5 + 1)
    assert (outcome.run_dir / "best" / "config.json").exists()


def test_the_timeout_counts_from_the_process_start_and_keeps_a_share_for_the_end():
    import time

    from automl.search.budget import END_SHARE, process_started, search_deadline

    started = process_started()
    assert started is not None and 0 < time.time() - started < 24 * 3600  # this test process
    assert search_deadline(1000.0, 200.0) == pytest.approx(1000.0 + (1 - END_SHARE) * 200.0)
    assert search_deadline(1000.0, None) is None


def test_no_trial_starts_that_cannot_fit():
    from automl.search.worker import fits_before

    study = optuna.create_study()
    # (seconds, steps, how it ended): 0.1 s per step for the ones that trained to an end,
    # 0.2 s per step for the pruned one.
    for seconds, steps, how in ((60.0, 600, None), (80.0, 800, None), (5.0, 50, "deadline"), (40.0, 200, "pruned")):
        t = study.ask()
        t.set_user_attr("seconds", seconds)
        if how == "pruned":
            t.set_user_attr("pruned_at_step", steps)
            study.tell(t, state=optuna.trial.TrialState.PRUNED)
            continue
        t.set_user_attr("steps", steps)
        if how:
            t.set_user_attr("stopped", how)
        study.tell(t, 1.0)
    # Before sampling: the shortest complete trial (60 s; the deadline-cut one does not count).
    assert fits_before(study, time.time() + 70)
    assert not fits_before(study, time.time() + 50)
    # After sampling: the trial's own steps at the pace of those trials (a fixed cost of
    # about 10 s a trial plus 0.09 s a step, by least squares).
    assert fits_before(study, time.time() + 50, steps=300)
    assert not fits_before(study, time.time() + 50, steps=700)
    assert fits_before(optuna.create_study(), time.time() + 1)  # nothing to go by yet
    assert fits_before(optuna.create_study(), time.time() + 1, steps=10_000)
    assert not fits_before(study, time.time() - 1, steps=1)


def test_a_short_trial_with_a_fixed_cost_does_not_make_every_step_look_slow():
    """Private head trials: 160 steps in 42 s and a pruned one of 10 steps in 17 s (most of
    it the accountant's search for its noise). 136 steps take about 38 s, not 226 s."""
    from automl.search.budget import trial_seconds

    measured = [(160, 41.9), (10, 16.6)]
    assert 30 < trial_seconds(measured, 136) < 45
    assert trial_seconds([(100, 10.0)], 50) == 5.0  # one length alone: the pace per step
    assert trial_seconds([(100, 10.0), (100, 12.0)], 50) == 6.0  # the (upper) median pace


def test_planned_steps_follow_the_engine():
    """The steps the fit check plans with are the steps the engine trains."""
    from automl.engine import TrialEngine

    class Fake:
        train_lengths = [5] * 100

    planned = TrialEngine.planned_steps
    assert planned(Fake(), {"batch_size": 16, "epochs": 3}) == 21
    assert planned(Fake(), {"batch_size": 16, "epochs": 3, "min_steps": 450}) == 450
    assert planned(Fake(), {"batch_size": 16, "epochs": 3, "max_steps": 7, "min_steps": 450}) == 7


# ----------------------------------------------------------------------------- recipe errors


BAD = [
    ("range without when", {"search": {"space": {"learning_rate": [{"low": 1e-4, "high": 1e-3}, {"low": 1e-5, "high": 1e-4, "when": {"adapter": "full"}}]}}},
     ["search.space.learning_rate[0].when", "needs a 'when:'"]),
    ("overlapping ranges", {"search": {"space": {"learning_rate": [{"low": 1e-4, "high": 1e-3, "when": {"adapter": ["full", "lora"]}}, {"low": 1e-5, "high": 1e-4, "when": {"adapter": "full"}}]}}},
     ["search.space.learning_rate[1].when", "can hold at once"]),
    ("start config unknown name", {"search": {"start_from": [{"learnig_rate": 1e-3}]}}, ["search.start_from[0].learnig_rate", "did you mean 'learning_rate'"]),
    ("start config out of range", {"search": {"start_from": [{"adapter": "full", "learning_rate": 0.5}]}}, ["search.start_from[0]", "learning_rate=0.5 is outside"]),
    ("start config fixed value", {"search": {"start_from": [{"scheduler": "cosine"}]}}, ["search.start_from[0].scheduler", "fixes it to 'linear'"]),
    ("start_from mapping", {"search": {"start_from": {"adapter": "lora"}}}, ["search.start_from", "list of configurations"]),
    ("prune_after too large", {"search": {"prune_after": 1.5}}, ["search.prune_after", "less than 1"]),
    ("patience zero", {"training": {"early_stopping_patience": 0}}, ["training.early_stopping_patience", "greater than 0"]),
    ("negative min delta", {"training": {"early_stopping_min_delta": -1}}, ["training.early_stopping_min_delta", "greater than or equal to 0"]),
    ("bad eval_every", {"training": {"eval_every": "often"}}, ["training.eval_every"]),
]


@pytest.mark.parametrize("name,change,expected", BAD, ids=[b[0] for b in BAD])
def test_bad_overrides_are_one_line(tmp_path, toy_dir, name, change, expected):
    recipe = tiny_recipe(toy_dir)
    for section, values in change.items():
        recipe[section] = {**recipe[section], **values}
    path = write_recipe(tmp_path / "bad.yaml", recipe)
    result = CliRunner().invoke(cli, ["recipe", "check", str(path), "--no-data"])
    lines = [line for line in result.output.strip().splitlines() if not line.startswith("warning: plugin")]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for piece in expected:
        assert piece in lines[0], (piece, lines[0])


def test_recipe_check_prints_the_space_and_first_trials(tmp_path, toy_dir):
    path = _recipe(tmp_path, toy_dir, search={"space": {}})
    result = CliRunner().invoke(cli, ["recipe", "check", str(path), "--no-data"])
    assert result.exit_code == 0, result.output
    assert "learning_rate: log-uniform [0.0001, 0.001]  (when adapter=lora)" in result.output
    assert "learning_rate: log-uniform [1e-05, 0.0001]  (when adapter=full)" in result.output
    assert "first trials (search.start_from: defaults)" in result.output
    assert "1: adapter=lora" in result.output
