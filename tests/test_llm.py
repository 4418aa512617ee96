"""Large-model backbones, tested on tiny random decoder LLMs built on the fly: Llama- and
Qwen2-style models served through the ``hf`` backbone train for real on the CPU with full
fine-tuning and every peft adapter, for classification and regression; the exported model
loads with transformers and ``automl predict`` scores like the run; target modules resolve
per architecture; QLoRA on a CPU-only machine is a one-line error; ``automl recipe check``
estimates memory per adapter; a trial killed mid-way resumes from its checkpoint."""

from __future__ import annotations

import csv
import json
import os
import random
import signal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from automl.adapters import ADAPTERS, TARGET_CHOICES, linear_roles, resolve_targets
from automl.checkpoint import TrialCheckpoint, parse_policy
from automl.cli import cli
from automl.engine import TrialEngine, trainable_state
from automl.fusion import build_fused, fuses
from automl.recipe import load_recipe
from automl.run import RunContext
from automl.search.supervisor import RunOptions, run_recipe
from automl.testing import tiny_recipe, write_recipe, write_tiny_decoder, write_toy_text_data
from test_engine import build_engine

#: Every adapter that runs on a CPU (QLoRA needs CUDA: see test_qlora_*).
CPU_ADAPTERS = [name for name, a in ADAPTERS.items() if a.quantization is None]
ARCHS = ["llama", "qwen2"]


def write_toy_regression_data(directory: Path, *, n: dict[str, int], seed: int = 0) -> Path:
    """``text,score`` CSVs: the score counts positive minus negative words (learnable)."""
    from automl.testing import _FILLER, _NEGATIVE, _POSITIVE

    rng = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)
    for name, rows in n.items():
        with (directory / f"{name}.csv").open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["text", "score"])
            for _ in range(rows):
                pos, neg = rng.randint(0, 3), rng.randint(0, 3)
                words = rng.sample(_FILLER, 6) + rng.sample(_POSITIVE, pos) + rng.sample(_NEGATIVE, neg)
                rng.shuffle(words)
                writer.writerow([" ".join(words), pos - neg])
    return directory


@pytest.fixture(scope="module")
def decoders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("decoders")
    return {arch: write_tiny_decoder(root / arch, arch=arch) for arch in ARCHS}


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("data")
    return {
        "classification": write_toy_text_data(root / "cls", train=96, validation=32, test=32),
        "regression": write_toy_regression_data(root / "reg", n={"train": 96, "validation": 32, "test": 32}),
    }


def decoder_recipe(data: Path, model_dir: Path, out: Path, problem: str = "classification", **overrides) -> dict:
    recipe = tiny_recipe(data, backbone="hf", backbone_options={"path": str(model_dir)}, output=str(out))
    recipe["training"] = {"max_length": 24, "seed": 0}
    if problem == "regression":
        recipe["task"] = "text-regression"
        recipe["data"]["label_column"] = "score"
    recipe.update(overrides)
    return recipe


@pytest.fixture(scope="module")
def engines(decoders, datasets, tmp_path_factory):
    """One engine per (architecture, problem), built on first use."""
    built: dict[tuple[str, str], TrialEngine] = {}
    root = tmp_path_factory.mktemp("engines")

    def get(arch: str, problem: str) -> TrialEngine:
        if (arch, problem) not in built:
            recipe = decoder_recipe(datasets[problem], decoders[arch], root / f"{arch}-{problem}", problem)
            built[arch, problem] = build_engine(write_recipe(root / f"{arch}-{problem}.yaml", recipe))
        return built[arch, problem]

    return get


# --------------------------------------------------------------------------- decoders


@pytest.mark.parametrize("arch", ARCHS)
def test_decoder_gets_a_pad_token_and_pools_the_last_real_token_on_either_side(decoders, arch):
    from transformers import AutoTokenizer

    from automl.backbone import ensure_pad_token
    from automl.plugins import get_backbones

    raw = AutoTokenizer.from_pretrained(decoders[arch])
    if arch == "llama":
        assert raw.pad_token is None  # like a real Llama tokenizer (transformers gives Qwen2 one)
    backbone = get_backbones()["hf"](get_backbones()["hf"].Options(path=str(decoders[arch])))
    tokenizer = backbone.load_tokenizer()
    assert tokenizer.pad_token == tokenizer.eos_token and tokenizer.pad_token_id is not None
    model = backbone.load_model(head="sequence-classification", num_labels=3, id2label=None, problem_type=None).eval()
    assert model.config.pad_token_id == tokenizer.pad_token_id
    texts = ["great", "the product arrived on time and it was great", "a box"]
    with torch.no_grad():
        alone = torch.cat([model(**tokenizer([t], return_tensors="pt")).logits for t in texts])
        for side in ("left", "right"):
            tok = ensure_pad_token(AutoTokenizer.from_pretrained(decoders[arch], padding_side=side))
            batch = tok(texts, return_tensors="pt", padding=True)
            assert (batch["input_ids"] == tok.pad_token_id).any()
            assert torch.allclose(model(**batch).logits, alone, atol=1e-5), side


def test_max_length_is_respected(engines):
    engine = engines("llama", "classification")
    assert max(len(x) for x in engine.encoded["train"]["input_ids"]) <= 24


@pytest.mark.parametrize("problem", ["classification", "regression"])
@pytest.mark.parametrize("adapter", CPU_ADAPTERS)
def test_every_adapter_trains_a_decoder(engines, adapter, problem):
    """Real training: the trained weights move, every step runs, metrics are finite."""
    arch = ARCHS[(CPU_ADAPTERS.index(adapter) + (problem == "regression")) % 2]  # both archs, both problems
    engine = engines(arch, problem)
    params = {"adapter": adapter, "learning_rate": 1e-2, "batch_size": 16, "max_steps": 6}
    if adapter != "full":
        params["target_modules"] = "attention+mlp"
    if fuses(engine.task, adapter):  # a head on the frozen, mean-pooled decoder
        fresh = build_fused(_copy(engine.base_model), params, None, engine.task.num_labels(), engine.lora_targets)
    else:
        fresh = ADAPTERS[adapter].build(_copy(engine.base_model), params, engine.task.head, engine.lora_targets)
    before = trainable_state(fresh, adapter)
    result = engine.run_trial(params)
    after = trainable_state(result.model, adapter)
    assert result.steps == 6 and np.isfinite(result.value)
    assert all(np.isfinite(v) for v in result.metrics.values())
    assert before.keys() == after.keys()
    moved = [k for k in after if not torch.equal(before[k], after[k])]
    assert len(moved) >= len(after) // 2, f"{adapter}: only {moved} changed"
    if adapter != "full":
        trainable = sum(p.numel() for p in result.model.parameters() if p.requires_grad)
        assert trainable < sum(p.numel() for p in engine.base_model.parameters())


def _copy(model):
    import copy

    return copy.deepcopy(model)


def test_gradient_checkpointing_gives_the_same_model(engines):
    engine = engines("qwen2", "classification")
    params = {"adapter": "lora", "learning_rate": 1e-2, "batch_size": 16, "max_steps": 4, "target_modules": "attention"}
    plain = engine.run_trial(params)
    engine.gradient_checkpointing = True
    try:
        checkpointed = engine.run_trial(params)
    finally:
        engine.gradient_checkpointing = False
    assert checkpointed.model.base_model.model.is_gradient_checkpointing
    for key, value in trainable_state(plain.model, "lora").items():
        assert torch.allclose(value, trainable_state(checkpointed.model, "lora")[key], atol=1e-5), key


# --------------------------------------------------------------------------- target modules


def test_target_modules_resolve_per_architecture(decoders):
    from transformers import AutoModelForSequenceClassification, BertConfig

    llama = AutoModelForSequenceClassification.from_pretrained(decoders["llama"], num_labels=2)
    roles = linear_roles(llama)
    assert {n.rsplit(".", 1)[1] for n, r in roles.items() if r == "attention"} == {"q_proj", "k_proj", "v_proj", "o_proj"}
    assert {n.rsplit(".", 1)[1] for n, r in roles.items() if r == "mlp"} == {"gate_proj", "up_proj", "down_proj"}
    assert "score" not in roles  # the head is trained whole, never adapted

    bert = AutoModelForSequenceClassification.from_config(
        BertConfig(vocab_size=100, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32, num_labels=2)
    )
    import re

    def matched(model, choice):
        pattern = resolve_targets(model, choice).modules
        return {n for n, _ in model.named_modules() if re.fullmatch(pattern, n)}

    attention = matched(bert, "attention")
    assert "bert.encoder.layer.1.attention.output.dense" in attention and "bert.encoder.layer.1.output.dense" not in attention
    assert "bert.encoder.layer.1.output.dense" in matched(bert, "attention+mlp")
    assert "bert.pooler.dense" in matched(bert, "all-linear") - matched(bert, "attention+mlp")
    assert not any(n.startswith("classifier") for n in matched(bert, "all-linear"))
    for choice in TARGET_CHOICES:
        assert len(matched(llama, choice)) == {"attention": 8, "attention+mlp": 14, "all-linear": 14}[choice]


@pytest.mark.parametrize("arch", ARCHS)
def test_decoder_token_classification_trains(decoders, tmp_path, arch):
    ner = Path(__file__).resolve().parents[1] / "recipes" / "data" / "ner"
    recipe = {
        "task": "token-classification",
        "backbone": "hf",
        "backbone_options": {"path": str(decoders[arch])},
        "data": {"train": str(ner / "train.conll"), "validation": str(ner / "validation.conll"), "max_rows": 48},
        "training": {"max_length": 32, "seed": 0},
        "output": str(tmp_path / "run"),
    }
    engine = build_engine(write_recipe(tmp_path / "r.yaml", recipe))
    assert type(engine.base_model).__name__ == {"llama": "LlamaForTokenClassification", "qwen2": "Qwen2ForTokenClassification"}[arch]
    result = engine.run_trial({"adapter": "lora", "learning_rate": 1e-2, "batch_size": 16, "max_steps": 3, "target_modules": "attention"})
    assert result.steps == 3 and 0 <= result.metrics["token_accuracy"] <= 1


def test_token_classification_head_is_a_clear_error_where_the_architecture_has_none(tmp_path):
    from transformers import OPTConfig

    from automl.errors import PluginError
    from automl.memory import meta_model

    config = OPTConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, ffn_dim=32, num_attention_heads=2)
    with pytest.raises(PluginError, match="architecture 'opt' has no token-classification head"):
        meta_model(config, "token-classification")
    assert meta_model(config, "sequence-classification") is not None


# --------------------------------------------------------------------------- run, export, predict


@pytest.mark.parametrize(
    "arch,problem,adapter", [("llama", "classification", "dora"), ("qwen2", "regression", "ia3")]
)
def test_decoder_run_exports_a_merged_model_that_predicts_like_the_run(decoders, datasets, tmp_path, arch, problem, adapter):
    from transformers import AutoModelForSequenceClassification, pipeline

    space = {"learning_rate": [2e-2], "epochs": [4], "batch_size": [16], "adapter": adapter, "target_modules": "attention+mlp"}
    recipe = decoder_recipe(datasets[problem], decoders[arch], tmp_path / "run", problem, search={"trials": 1, "space": space})
    outcome = run_recipe(load_recipe(write_recipe(tmp_path / "r.yaml", recipe)), options=RunOptions(workers=0, baseline=False))
    best = outcome.best_dir
    meta = json.loads((best / "automl.json").read_text())
    assert meta["adapter"] == adapter and meta["merged"] and (best / "adapter" / "adapter_config.json").exists()
    # Only this adapter's own settings are listed (LoHa's, LoKr's... are not).
    others = {p for name, a in ADAPTERS.items() if name != adapter for p in a.space} - set(ADAPTERS[adapter].space)
    assert not others & set(meta["params"]), others & set(meta["params"])
    model = AutoModelForSequenceClassification.from_pretrained(best)  # plain transformers, adapter merged
    assert type(model).__name__ == {"llama": "LlamaForSequenceClassification", "qwen2": "Qwen2ForSequenceClassification"}[arch]

    test_csv = datasets[problem] / "test.csv"
    out = tmp_path / "pred.csv"
    result = CliRunner().invoke(cli, ["predict", str(best), str(test_csv), "-o", str(out)])
    assert result.exit_code == 0, result.output
    ours = pd.read_csv(out)
    truth = pd.read_csv(test_csv)
    if problem == "classification":
        from sklearn.metrics import f1_score

        f1 = f1_score(truth["label"], ours["prediction"], average="macro")
        assert f1 == pytest.approx(meta["metrics"]["test"]["f1_macro"], abs=1e-9)
        assert meta["metrics"]["validation"]["f1_macro"] > 0.6  # learnt something (chance is about 0.5)
        classify = pipeline("text-classification", model=str(best), device="cpu")
        theirs = [p["label"] for p in classify(truth["text"].tolist(), truncation=True, max_length=24, batch_size=8)]
        assert ours["prediction"].tolist() == theirs
    else:
        rmse = float(np.sqrt(np.mean((ours["prediction"] - truth["score"]) ** 2)))
        assert rmse == pytest.approx(meta["metrics"]["test"]["rmse"], rel=1e-4)
        assert meta["metrics"]["validation"]["rmse"] < float(truth["score"].std()) * 1.5


# --------------------------------------------------------------------------- QLoRA, memory


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU-only error; on CUDA benchmarks/gpu_check.sh runs QLoRA")
def test_qlora_on_a_cpu_only_machine_is_one_line_exit_2(decoders, datasets, tmp_path):
    space = {"adapter": ["lora", "qlora"], "epochs": [1]}
    recipe = decoder_recipe(datasets["classification"], decoders["llama"], tmp_path / "run", search={"trials": 1, "space": space})
    path = write_recipe(tmp_path / "r.yaml", recipe)
    for args in (["recipe", "check", str(path)], ["run", str(path)]):
        result = invoke(*args)
        lines = [l for l in result.output.splitlines() if l.strip()]
        assert result.exit_code == 2 and len(lines) == 1 and "Traceback" not in result.output, result.output
        assert lines[0].startswith(f"error: {path}: search.space.adapter: adapter 'qlora'")
        assert "needs a CUDA GPU" in lines[0]
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_recipe_check_estimates_memory_per_adapter(decoders, datasets, tmp_path):
    from automl.memory import recipe_estimates
    from automl.resolve import resolve

    space = {"adapter": CPU_ADAPTERS, "batch_size": [8, 32], "target_modules": ["attention", "all-linear"], "lora_r": [4, 16]}
    recipe = decoder_recipe(datasets["classification"], decoders["llama"], tmp_path / "run", search={"trials": 1, "space": space})
    path = write_recipe(tmp_path / "r.yaml", recipe)
    result = invoke("recipe", "check", str(path))
    assert result.exit_code == 0, result.output
    assert "memory per trial" in result.output
    for adapter in CPU_ADAPTERS:
        assert f"    {adapter}: " in result.output and "fits" in result.output
    loaded = load_recipe(path)
    estimates = {e.adapter: e for e in recipe_estimates(resolve(loaded), loaded)}
    n = sum(p.numel() for p in build_engine(path).base_model.parameters())
    assert all(e.parameters == n for e in estimates.values())
    assert estimates["full"].trainable == n
    assert estimates["ia3"].trainable < estimates["lokr"].trainable < estimates["lora"].trainable < n
    assert estimates["full"].training_state > estimates["lora"].training_state
    # activations grow with the batch: the estimate takes the largest batch size searched
    assert estimates["full"].activations == pytest.approx(4 * _activations_at(loaded, 8), rel=1e-6)


def _activations_at(recipe, batch_size):
    from automl.memory import estimate, meta_model
    from automl.resolve import resolve

    resolved = resolve(recipe)
    config = resolved.backbone.model_config(head="sequence-classification", num_labels=2, id2label=None, problem_type=None)
    model = meta_model(config, "sequence-classification")
    return estimate(model, adapter="full", params={}, head="sequence-classification", default_targets=[], batch_size=batch_size,
                    max_length=24, weight_bytes=4, activation_bytes=4).activations


# --------------------------------------------------------------------------- checkpoints


def test_checkpoint_policy():
    assert parse_policy("off", 10**10) is None
    assert parse_policy("auto", 10**6) is None
    assert parse_policy("auto", 10**9).seconds == 600
    assert parse_policy(3, 0).evaluations == 3
    assert parse_policy("90s", 0).seconds == 90
    with pytest.raises(ValueError):
        parse_policy("sometimes", 0)


class Crash(Exception):
    """Stands in for the process dying after an evaluation."""


@pytest.mark.parametrize("adapter", ["full", "lora"])
def test_a_cut_off_trial_resumes_from_its_checkpoint_to_the_same_result(engines, tmp_path, adapter):
    engine = engines("llama", "classification")
    engine.eval_every = 2
    try:
        params = {"adapter": adapter, "learning_rate": 1e-2, "batch_size": 16, "epochs": 1, "lora_dropout": 0.1}
        reference = engine.run_trial(params)

        evals = []

        def crash_after_second(step, value, metrics):
            evals.append(step)
            if len(evals) == 2:
                raise Crash
            return False

        checkpoint = TrialCheckpoint(tmp_path / "ckpt", params, parse_policy(1, 0))
        with pytest.raises(Crash):
            engine.run_trial(params, reporter=crash_after_second, checkpoint=checkpoint)
        assert (tmp_path / "ckpt" / "state.json").exists()  # saved at the first evaluation (step 2)
        state = json.loads((tmp_path / "ckpt" / "state.json").read_text())
        assert state["loop"]["step"] == 2 and "optimizer" in state and "scheduler" in state

        resumed_at = []
        again = TrialCheckpoint(tmp_path / "ckpt", params, parse_policy(1, 0), on_resume=lambda loop: resumed_at.append(loop.step))
        seen = []
        result = engine.run_trial(params, reporter=lambda s, v, m: seen.append(s) or False, checkpoint=again)
        assert resumed_at == [2] and result.resumed_from_step == 2
        assert seen[0] == 4  # the first evaluation after the checkpoint
        assert result.steps == reference.steps
        assert result.metrics == reference.metrics
        for key, value in trainable_state(reference.model, adapter).items():
            assert torch.equal(value, trainable_state(result.model, adapter)[key]), key
        # Another trial's parameters never pick it up.
        other = TrialCheckpoint(tmp_path / "ckpt", {**params, "learning_rate": 5e-3}, parse_policy(1, 0))
        assert engine.run_trial({**params, "learning_rate": 5e-3, "max_steps": 1}, checkpoint=other).resumed_from_step is None
    finally:
        engine.eval_every = "epoch"


@pytest.mark.slow
def test_sigkilled_worker_resumes_its_trial_from_the_checkpoint(decoders, datasets, tmp_path):
    """A real ``automl run``: the worker process is SIGKILLed mid-trial after a checkpoint;
    the supervisor queues the trial again and the re-run resumes at the checkpoint's step,
    ending with the same metric as an uninterrupted run with the same seed."""
    from test_search import automl, finish, load_study, wait_for

    from optuna.trial import TrialState

    space = {"learning_rate": [1e-2], "epochs": [12], "batch_size": [16], "adapter": "lora", "target_modules": "attention+mlp"}

    def recipe_at(name: str, **training) -> Path:
        recipe = decoder_recipe(datasets["classification"], decoders["qwen2"], tmp_path / name, search={"trials": 1, "pruner": "none", "space": space})
        recipe["training"] = {"max_length": 24, "seed": 0, "eval_every": 6, **training}
        return write_recipe(tmp_path / f"{name}.yaml", recipe)

    killed_run = tmp_path / "killed"
    proc = automl("run", str(recipe_at("killed", checkpoint_every=1)), "--no-baseline")
    state_file = killed_run / "checkpoints" / "killed-trial-0" / "state.json"
    wait_for(lambda: json.loads(state_file.read_text())["loop"]["step"] >= 12, what="a checkpoint at step 12 or later")
    worker = int(load_study(killed_run).get_trials(states=(TrialState.RUNNING,))[0].user_attrs["worker"].rsplit(":", 1)[1])
    os.kill(worker, signal.SIGKILL)
    out = finish(proc, timeout=900)
    assert "worker process died (killed by SIGKILL)" in out

    study = load_study(killed_run)
    first, retry = study.trials[0], study.trials[1]
    assert first.state == TrialState.FAIL and retry.user_attrs["retry_of"] == 0 and retry.state == TrialState.COMPLETE
    resumed = retry.user_attrs["resumed_from_step"]
    assert resumed >= 12 and resumed % 6 == 0 and resumed < retry.user_attrs["steps"]
    assert not (killed_run / "checkpoints" / "killed-trial-0").exists()  # removed when the trial ended

    clean = run_recipe(load_recipe(recipe_at("clean", checkpoint_every="off")), options=RunOptions(workers=0, baseline=False, export=False))
    reference = load_study(clean.run_dir).trials[0]
    assert reference.user_attrs.get("resumed_from_step") is None
    assert retry.value == reference.value and retry.user_attrs["metrics"] == reference.user_attrs["metrics"]
    print(f"resumed at step {resumed} of {retry.user_attrs['steps']}; value {retry.value} == uninterrupted {reference.value}")


# --------------------------------------------------------------------------- recipe, workers


def test_the_decoder_recipe_checks_with_a_tiny_stand_in_for_its_model(decoders, tmp_path):
    import yaml

    source = Path(__file__).resolve().parents[1] / "recipes" / "llm" / "sentiment-qwen2.yaml"
    recipe = yaml.safe_load(source.read_text())
    recipe["backbone_options"]["path"] = str(decoders["qwen2"])
    for split in ("train", "validation", "test"):
        recipe["data"][split] = str((source.parent / recipe["data"][split]).resolve())
    recipe["output"] = str(tmp_path / "run")
    result = invoke("recipe", "check", str(write_recipe(tmp_path / "r.yaml", recipe)))
    assert result.exit_code == 0, result.output
    assert "memory per trial" in result.output and "target_modules" in result.output
    for adapter in ("lora", "dora", "ia3"):
        assert f"    {adapter}: " in result.output


@pytest.mark.skipif(torch.cuda.is_available(), reason="the error for a machine without a GPU")
def test_workers_per_gpu_without_a_gpu_is_one_line_exit_2(recipe_file):
    result = invoke("run", str(recipe_file()), "--workers-per-gpu", "2")
    lines = [l for l in result.output.splitlines() if l.strip()]
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert lines[0] == "error: --workers-per-gpu: --workers-per-gpu needs CUDA GPUs and none is visible to torch"


def test_workers_share_the_cpu_cores(recipe_file):
    from automl.search.supervisor import Supervisor

    ctx = RunContext.create(load_recipe(recipe_file()))
    assert Supervisor(ctx, RunOptions(workers=2), console=None)._threads() == max(1, (os.cpu_count() or 1) // 2)
    assert Supervisor(ctx, RunOptions(workers=2, threads=1), console=None)._threads() == 1
