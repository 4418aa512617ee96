"""The trial engine trains real (tiny) models: full and LoRA learn, faults stay inside
the trial, a seed repeats a trial, out-of-memory halves the micro-batch."""

from __future__ import annotations

import json

import numpy as np
import optuna
import pytest
from faults import Plugin

from automl.device import pick_device
from automl.engine import OutOfMemory, TrialEngine, TrialFailed
from automl.recipe import load_recipe
from automl.run import RunContext
from automl.search.storage import open_storage
from automl.search.supervisor import RunOptions, run_recipe
from automl.testing import registered


def build_engine(recipe_path, task: str | None = None, *, engine_class: type = TrialEngine, **extra) -> TrialEngine:
    """The engine a run of the recipe at *recipe_path* would build, on the CPU, seed 0;
    *extra* goes to *engine_class* (a policy, a private engine's settings)."""
    recipe = load_recipe(recipe_path)
    ctx = RunContext.create(recipe)
    ctx.run_dir.mkdir(parents=True, exist_ok=True)
    data, tokenizer, encoded = ctx.load_data()
    base = ctx.load_base_model()
    return engine_class(
        task=ctx.resolved.task,
        base_model=base,
        encoded=encoded,
        splits={"train": data.train, "validation": data.validation},
        setup=pick_device("cpu"),
        pad_id=tokenizer.pad_token_id,
        objective=ctx.resolved.objective.name,
        direction=ctx.resolved.objective.direction,
        lora_targets=ctx.resolved.backbone.lora_target_modules(base),
        **{"seed": 0, **extra},
    )


PARAMS = {"learning_rate": 4e-3, "batch_size": 16, "epochs": 6, "warmup_ratio": 0.06, "weight_decay": 0.01}


@pytest.fixture
def engine(recipe_file):
    return build_engine(recipe_file())


def test_full_finetuning_learns(engine):
    seen = []
    result = engine.run_trial({**PARAMS, "adapter": "full"}, reporter=lambda s, v, m: seen.append(v) or False)
    assert result.value > 0.8  # chance is 0.5
    assert len(seen) == 6  # one evaluation per epoch
    assert result.steps == 6 * 19  # ceil(300 / 16) steps per epoch


def test_a_trial_hands_back_the_validation_outputs_of_its_best_evaluation(engine):
    result = engine.run_trial({**PARAMS, "epochs": 2, "adapter": "full"})
    # What a kept trial stores for ensembles without running the validation rows again.
    np.testing.assert_allclose(result.validation_outputs, engine.outputs(result.model, "validation"), rtol=1e-5, atol=1e-6)


def test_a_trial_ends_early_enough_for_its_last_evaluation_and_the_scoring_after_it(recipe_file):
    import time

    from automl.engine import TrialPolicy

    engine = build_engine(recipe_file(), policy=TrialPolicy(deadline=time.time() + 3600))
    validation = len(engine.encoded["validation"]["input_ids"])
    test = len(engine.encoded["test"]["input_ids"]) if "test" in engine.encoded else 0
    # Two evaluations took 4 s: 2 s for the validation rows. What is left after the last
    # step: one more evaluation, the test outputs a kept trial stores, and the export's
    # scoring of the validation and test rows.
    assert engine.finish_seconds(100.0, 2, 4.0) == pytest.approx(2.0 * 2 * (validation + test) / validation)
    # Before the first evaluation: 4 times the training pace per row.
    assert engine.finish_seconds(30.0, 0, 0.0) == pytest.approx(2 * (validation + test) / 120.0)
    assert engine.finish_seconds(0.0, 0, 0.0) == 0.0
    assert not engine.past_deadline(100.0, 2, 4.0)
    late = build_engine(recipe_file(), policy=TrialPolicy(deadline=time.time() + 10))
    assert late.past_deadline(100.0, 2, 4.0 * 10)  # at least 20 s of scoring left, 10 s to the deadline
    result = late.run_trial({**PARAMS, "epochs": 400, "adapter": "full"})
    # Shortened to what fits at its pace, or (a slower machine than planned) cut.
    assert result.steps < 400 * 19 and (result.planned_steps == 400 * 19 or result.stopped == "deadline")


def test_a_trial_on_many_validation_rows_is_evaluated_on_a_sample_and_reports_its_best_on_all(recipe_file):
    import time

    from automl.engine import EVAL_SAMPLE, TrialPolicy

    engine = build_engine(recipe_file(), eval_max_rows=40, policy=TrialPolicy(deadline=time.time() + 3600))
    validation = engine.splits["validation"]
    sample = engine.splits[EVAL_SAMPLE]
    assert len(validation) > 40 and abs(len(sample) - 40) <= 1 and engine.sample_rows == len(sample)
    assert set(sample.inputs) <= set(validation.inputs)
    share = np.mean(validation.labels)  # stratified: the sample keeps the classes' shares
    assert abs(np.mean(sample.labels) - share) <= 1 / 40
    # Before any evaluation (at 4 times the training pace per row), no sample pass is counted:
    # an evaluation that is the trial's first and last scores every row once.
    test = len(engine.encoded["test"]["input_ids"]) if "test" in engine.encoded else 0
    assert engine.finish_seconds(30.0, 0, 0.0) == pytest.approx(2 * (len(validation) + test) / 120.0)
    seen = []
    result = engine.run_trial({**PARAMS, "epochs": 3, "adapter": "full"}, reporter=lambda s, v, m: seen.append(v) or False)
    # The pruner saw the sample's figures; the trial's value, calibration and stored outputs
    # are its best evaluation's model on every validation row.
    assert engine.evaluated_on == EVAL_SAMPLE  # what the worker marks the trial by
    assert max(seen) == pytest.approx(engine.evaluate(result.model, EVAL_SAMPLE)[0])
    assert result.value == pytest.approx(engine.evaluate(result.model, "validation")[0])
    assert len(result.validation_outputs) == len(validation)
    np.testing.assert_allclose(result.validation_outputs, engine.outputs(result.model, "validation"), rtol=1e-5, atol=1e-6)
    # After the last step: the sample once more, then all validation rows twice and the test rows.
    test = len(engine.encoded["test"]["input_ids"]) if "test" in engine.encoded else 0
    per_row = 4.0 / (2 * len(sample))
    assert engine.finish_seconds(100.0, 2, 4.0) == pytest.approx(per_row * (len(sample) + 2 * (len(validation) + test)))
    # A trial whose only evaluation is its last scores every row once, not the sample first.
    only = []
    result = engine.run_trial({**PARAMS, "epochs": 1, "adapter": "full"}, reporter=lambda s, v, m: only.append(v) or False)
    assert len(only) == 1 and only[0] == pytest.approx(result.value) and engine.evaluated_on == "validation"
    assert result.value == pytest.approx(engine.evaluate(result.model, "validation")[0])
    # Fewer rows than the cap: every evaluation on all of them, as before.
    unsampled = build_engine(recipe_file(), eval_max_rows=len(validation))
    assert unsampled.eval_split == "validation" and unsampled.sample_rows is None


def test_an_evaluation_sample_keeps_every_class_however_rare():
    from automl.engine import MIN_SAMPLE_PER_CLASS, eval_sample
    from automl.task import Split

    # Two positives in 10,000 rows: a stratified 2,000-row split rounds their share (0.4) to
    # none, and PR-AUC on a sample without positives is NaN for every trial.
    labels = [0] * 9_998 + [1] * 2
    index = eval_sample(Split(inputs=list(range(10_000)), labels=labels), 2_000, seed=0)
    picked = np.asarray(labels)[index]
    assert (picked == 1).sum() == MIN_SAMPLE_PER_CLASS and abs(len(index) - 2_000) <= 2
    assert len(set(index)) == len(index) and list(index) == sorted(index)
    # Numbers and tag lists are drawn at random.
    for targets in ([0.5 * i for i in range(500)], [[0, 1, 0]] * 500):
        index = eval_sample(Split(inputs=list(range(500)), labels=targets), 100, seed=0)
        assert len(set(index)) == 100


def test_a_trial_that_cannot_finish_by_the_deadline_plans_fewer_steps_and_its_schedule_ends_with_them(recipe_file):
    import time

    from automl.engine import SHORTEN_AFTER_STEPS, TrialPolicy

    engine = build_engine(recipe_file(), policy=TrialPolicy(deadline=time.time() + 3600))
    # 5 steps took 1 s; evaluations 0.5 s each, one per 19 steps; 60 s left before what
    # follows the last step: about 60 / (0.2 + 0.5 / 19) steps fit.
    engine.policy = TrialPolicy(deadline=time.time() + 60 + engine.finish_seconds(5 * 16 / 1.0, 1, 0.5))
    fit = engine.steps_that_fit(5, 10_000, 1.0, 5 * 16, 19, 1, 0.5)
    assert 250 < fit <= 5 + 60 / (0.2 + 0.5 / 19)
    assert engine.steps_that_fit(5, 100, 1.0, 5 * 16, 19, 1, 0.5) == 100  # the plan fits: kept
    engine.policy = TrialPolicy(deadline=time.time() + 30)
    params = {**PARAMS, "epochs": 400, "adapter": "full"}
    result = engine.run_trial(params)
    assert result.planned_steps == 400 * 19 and SHORTEN_AFTER_STEPS < result.steps < result.planned_steps
    # It finishes its shortened plan (or, on a machine slower than its first steps, is cut
    # at the deadline all the same).
    assert result.stopped in (None, "deadline")


def test_a_shortened_schedule_decays_to_zero_at_the_new_last_step():
    import torch
    from transformers import get_scheduler

    from automl.engine import shorten_schedule

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = get_scheduler("linear", optimizer=optimizer, num_warmup_steps=100, num_training_steps=1000)
    for _ in range(5):
        optimizer.step()
        scheduler.step()
    shorten_schedule(scheduler, 100)  # warm-up keeps its share: 10 steps
    lrs = []
    for _ in range(95):
        optimizer.step()
        scheduler.step()
        lrs.append(optimizer.param_groups[0]["lr"])
    assert lrs[4] == pytest.approx(1.0 * (100 - 10) / 90)  # step 10: the end of warm-up
    assert lrs[-1] == pytest.approx(0.0)


def test_a_trial_that_could_not_even_be_scored_by_the_deadline_is_not_trained(recipe_file):
    import time

    from automl.engine import NoTimeLeft, TrialPolicy

    # A deadline closer than scoring the validation and test rows at any pace a CPU has.
    engine = build_engine(recipe_file(), policy=TrialPolicy(deadline=time.time() + 0.01))
    with pytest.raises(NoTimeLeft, match="past the deadline"):
        engine.run_trial({**PARAMS, "adapter": "full"})


def test_a_trial_out_of_time_within_its_first_steps_is_not_trained(recipe_file):
    """A trial whose first-steps check passes by seconds, then finds itself late before its
    first evaluation, is dropped rather than scored after a handful of steps (on the fraud
    generator at 100x: 5 steps, PR-AUC 0.04, 35 s of scoring)."""
    import time

    from automl.engine import SHORTEN_AFTER_STEPS, NoTimeLeft, TrialPolicy

    class LateAfterTheCheck(TrialEngine):
        calls = 0

        def past_deadline(self, *args):  # the first-steps check passes, the next call is late
            self.calls += 1
            return self.calls > 1

    engine = build_engine(recipe_file(), engine_class=LateAfterTheCheck, policy=TrialPolicy(deadline=time.time() + 3600))
    with pytest.raises(NoTimeLeft, match="past the deadline"):
        engine.run_trial({**PARAMS, "adapter": "full"})
    assert engine.calls == 2 and SHORTEN_AFTER_STEPS >= 1


def test_a_trial_is_not_dropped_on_a_guessed_scoring_pace(recipe_file):
    """Before its first evaluation a trial's scoring pace is a guess from its first training
    steps, which carry start-up costs; the trial is dropped only if scoring a sample of
    validation rows, timed, still says it cannot finish."""
    import copy
    import time

    from automl.engine import TrialPolicy

    engine = build_engine(recipe_file(), policy=TrialPolicy(deadline=time.time() + 120))
    model = copy.deepcopy(engine.base_model).train()
    assert engine.past_deadline(0.01, 0, 0.0)  # 0.04 rows/s guessed: hours for the validation rows
    engine.measure_scoring(model, 0)
    assert not engine.past_deadline(0.01, 0, 0.0)  # measured, the guess no longer counts
    measured = engine._measured_score_seconds
    assert measured is not None and 0 < measured < 1.0 and model.training
    assert engine.finish_seconds(0.01, 0, 0.0) == pytest.approx(measured * 2 * (engine._rows("validation") + engine._rows("test")))


def test_lora_learns_and_trains_few_weights(engine):
    result = engine.run_trial({**PARAMS, "learning_rate": 2e-2, "epochs": 8, "adapter": "lora", "lora_r": 8, "lora_alpha": 16})
    assert result.value > 0.7
    trainable = sum(p.numel() for p in result.model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in result.model.parameters())
    assert trainable < total / 2


def test_seed_repeats_a_trial(engine):
    a = engine.run_trial({**PARAMS, "epochs": 2, "adapter": "full"})
    b = engine.run_trial({**PARAMS, "epochs": 2, "adapter": "full"})
    assert a.metrics == b.metrics


def test_pruning_stops_cleanly(engine):
    from automl.engine import TrialStopped

    with pytest.raises(TrialStopped) as stop:
        engine.run_trial({**PARAMS, "adapter": "full"}, reporter=lambda s, v, m: True)
    assert stop.value.step == 19


def test_nan_loss_fails_the_trial(recipe_file):
    with registered(Plugin(), "test-faults"):
        engine = build_engine(recipe_file(task="faulty-text"))
        with pytest.raises(TrialFailed, match="loss became nan at step 1"):
            engine.run_trial({**PARAMS, "fault": "nan"})


def test_oom_halves_micro_batch(recipe_file):
    with registered(Plugin(), "test-faults"):
        engine = build_engine(recipe_file(task="faulty-text"))
        result = engine.run_trial({**PARAMS, "epochs": 1, "fault": "oom", "oom_above": 4})
        assert result.micro_batch_size == 4 and result.oom_retries == 2
        with pytest.raises(OutOfMemory, match="micro-batch 1"):
            engine.run_trial({**PARAMS, "epochs": 1, "fault": "oom", "oom_above": 0})


def _study(run_dir):
    name = json.loads((run_dir / "run.json").read_text())["study_name"]
    return optuna.load_study(study_name=name, storage=open_storage(None, run_dir))


def test_faults_stay_inside_their_trials(recipe_file, tmp_path):
    """A NaN loss, a plugin exception and an OOM at micro-batch 1 each fail their trial
    with a reason; the other trials run and the best model is exported. (The OOM trial
    runs first: afterwards the same batch size is skipped as known to run out of memory.)"""
    path = recipe_file(
        task="faulty-text",
        search={
            "trials": 3,
            "sampler": "grid",
            "pruner": "none",
            "space": {"fault": ["none", "nan", "raise"], "oom_above": [0], "learning_rate": [4e-3], "epochs": [3], "batch_size": [16], "adapter": "full"},
        },
    )
    with registered(Plugin(), "test-faults"):
        outcome = run_recipe(load_recipe(path), options=RunOptions(workers=0, baseline=False))
    study = _study(outcome.run_dir)
    by_fault = {}
    for t in study.trials:
        by_fault.setdefault(t.params["fault"], []).append(t)
    assert by_fault["none"][0].state == optuna.trial.TrialState.COMPLETE
    assert "loss became nan" in by_fault["nan"][0].user_attrs["fail_reason"]
    assert "plugin 'test-faults' raised RuntimeError: the faulty plugin broke on purpose" in by_fault["raise"][0].user_attrs["fail_reason"]
    assert (outcome.run_dir / "best" / "model.safetensors").exists()
    assert outcome.summary.n_complete == 1 and outcome.summary.n_failed == 2


def test_out_of_memory_config_is_remembered(recipe_file):
    path = recipe_file(
        task="faulty-text",
        search={
            "trials": 1,
            "retries": 0,
            "space": {"fault": "oom", "oom_above": 0, "batch_size": [16], "epochs": [1], "adapter": "full"},
        },
    )
    with registered(Plugin(), "test-faults"):
        run_recipe(load_recipe(path), options=RunOptions(workers=0, baseline=False, export=False))
        outcome = run_recipe(load_recipe(path).with_overrides(trials=2), options=RunOptions(workers=0, baseline=False, export=False))
    study = _study(outcome.run_dir)
    reasons = [t.user_attrs["fail_reason"] for t in study.trials]
    assert "out of memory even at micro-batch 1" in reasons[0]
    assert study.user_attrs["oom_configs"] == [{"adapter": "full", "batch_size": 16, "max_length": 32, "micro_batch_size": 1}]
    assert len(reasons) == 2  # failed trials count toward the budget: no endless loop
    assert reasons[1].startswith("skipped: this adapter and batch size ran out of memory")


def test_oom_known_covers_larger_configs():
    from automl.search.worker import oom_known

    seen = [{"adapter": "full", "batch_size": 16, "max_length": 128}]
    assert oom_known(seen, {"adapter": "full", "batch_size": 32}, 128)
    assert oom_known(seen, {"adapter": "full", "batch_size": 16}, 256)
    assert not oom_known(seen, {"adapter": "full", "batch_size": 8}, 128)
    assert not oom_known(seen, {"adapter": "lora", "batch_size": 32}, 128)
    assert not oom_known(seen, {"adapter": "full", "batch_size": 32}, 64)


# ----------------------------------------------------------------------------- speed defaults


def test_inference_batches_keep_a_token_budget():
    import numpy as np

    from automl.engine import inference_batches

    # Long-tailed lengths, longest first: a few long rows, many short ones.
    lengths = np.array([55, 40, 30] + [13] * 97)
    batches = inference_batches(lengths, 64)
    assert np.concatenate(batches).tolist() == list(range(100))  # every row once, in order
    budget = 64 * 13  # batch size x the median length
    assert all(len(b) * lengths[b[0]] <= budget for b in batches)
    assert all(len(b) <= 64 for b in batches)
    # Even lengths: full batches, as before.
    assert [len(b) for b in inference_batches(np.full(130, 20), 64)] == [64, 64, 2]
    # A row longer than the budget still gets a batch of its own.
    assert [len(b) for b in inference_batches(np.array([500, 2, 2]), 2)] == [1, 2]
    assert inference_batches(np.array([], dtype=np.int64), 8) == []


def test_cpu_training_uses_bf16_only_where_the_cpu_has_it(tmp_path, monkeypatch):
    import torch

    from automl import device

    flags = tmp_path / "cpuinfo"
    flags.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 avx512_vnni\n")
    assert device.cpu_has_native_bf16(str(flags))
    flags.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_vnni\n")
    assert not device.cpu_has_native_bf16(str(flags))
    assert not device.cpu_has_native_bf16(str(tmp_path / "missing"))

    threads = torch.get_num_threads()
    try:
        monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: True)
        training = device.pick_device("cpu", "auto", training=True)
        assert training.autocast_dtype is torch.bfloat16
        assert training.inference_dtype is None  # evaluations and predictions stay fp32 on a CPU
        assert device.pick_device("cpu", "auto").autocast_dtype is None  # inference callers
        assert device.pick_device("cpu", "fp32", training=True).autocast_dtype is None  # the recipe says no
        monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: False)
        assert device.pick_device("cpu", "auto", training=True).autocast_dtype is None
        assert device.pick_device("cpu", "bf16", training=True).autocast_dtype is torch.bfloat16  # asked for
    finally:
        torch.set_num_threads(threads)
