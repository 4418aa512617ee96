"""Training throughput of automl's TrialEngine against a plain PyTorch loop and
``transformers.Trainer``, on the same data, model and hyperparameters.

What runs (one process, one thread setting for all):

* **engine**: ``TrialEngine.run_trial`` built exactly as a worker builds it
  (``Worker._build_engine``), in fp32 like the others unless ``--precision`` says otherwise
  (``automl run``'s default, ``auto``, trains in bf16 on CPUs with bf16 instructions): deep copy of the pretrained model, AdamW (decoupled decay
  groups, ``foreach``), linear schedule, dynamic padding with length-grouped batches,
  gradient clipping at 1.0, one validation pass at the end (its time is subtracted).
* **plain**: a hand-written loop, the floor of what is possible: deep copy of the same
  model, ``torch.optim.AdamW``, linear schedule, gradient clipping at 1.0, batches padded
  to their longest example. Twice: with random batches (``plain-random``, what a plain loop
  does) and with the engine's own length-grouped batches (``plain-grouped``: the same
  tokens as the engine, so engine/plain-grouped isolates the engine's per-step overhead).
* **trainer**: ``transformers.Trainer`` with ``DataCollatorWithPadding``, the same learning
  rate/batch size/epochs/schedule, ``eval_strategy="no"``, ``save_strategy="no"``,
  ``report_to=[]``, its default optimiser (``adamw_torch_fused``), data tokenised beforehand.

Each method first runs a short warm-up (``--warmup-steps`` optimiser steps, not timed);
then ``--repeats`` rounds run the methods interleaved (engine, plain-random,
plain-grouped, trainer, engine, ...) so that load from other processes falls on all of them
alike. Figures are medians over the rounds.

Two throughputs per method:

* **end-to-end**: training examples / wall time of "train one model from the pretrained
  weights" (model copy, optimiser, batching, the loop; for the Trainer also building the
  ``Trainer``); evaluation excluded.
* **loop**: training examples / time inside the optimiser-step loop only (engine: its
  ``timings["compute"]``; Trainer: its own ``train_runtime``).

It also shows that a trial has no per-trial set-up: the set-up (reading + tokenising,
weight loading) is timed on its own, then two consecutive ``run_trial`` calls are timed
while counting tokenizer calls and ``from_pretrained`` calls; both trials make none, and
``run_trial`` time = compute + evaluation + a model copy.

Run from the repository root::

    python benchmarks/engine_throughput.py                      # minilm-l6, the real measurement
    python benchmarks/engine_throughput.py --backbone tiny-bert --repeats 1 --per-class 3   # smoke

Target: engine end-to-end within 10% of the plain loop.
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import _common as common  # noqa: E402

# ----------------------------------------------------------------------------- counters


class Calls:
    """Counts tokenizer calls and pretrained-weight loads while enabled."""

    def __init__(self) -> None:
        self.tokenizer = 0
        self.from_pretrained = 0

    def install(self) -> None:
        from transformers import PreTrainedModel, PreTrainedTokenizerBase

        calls = self
        tok_call = PreTrainedTokenizerBase.__call__
        load = PreTrainedModel.from_pretrained.__func__  # type: ignore[attr-defined]

        def counting_call(self_: Any, *args: Any, **kwargs: Any) -> Any:
            calls.tokenizer += 1
            return tok_call(self_, *args, **kwargs)

        def counting_load(cls: Any, *args: Any, **kwargs: Any) -> Any:
            calls.from_pretrained += 1
            return load(cls, *args, **kwargs)

        PreTrainedTokenizerBase.__call__ = counting_call  # type: ignore[method-assign]
        PreTrainedModel.from_pretrained = classmethod(counting_load)  # type: ignore[method-assign,assignment]

    def snapshot(self) -> tuple[int, int]:
        return self.tokenizer, self.from_pretrained


# ----------------------------------------------------------------------------- methods

#: --plain-optimizer: torch's AdamW implementations. "default" is what a bare
#: ``AdamW(params)`` picks on CPU tensors (the per-tensor for-loop).
OPTIMIZER_KWARGS: dict[str, dict[str, bool]] = {
    "fused": {"fused": True},
    "foreach": {"foreach": True},
    "default": {},
}


def params_for(args: argparse.Namespace, max_steps: int | None = None) -> dict[str, Any]:
    params: dict[str, Any] = {
        "learning_rate": args.learning_rate,
        "batch_size": args.batch_size,
        "epochs": 1,
        "weight_decay": 0.0,
        "warmup_ratio": 0.0,
        "scheduler": "linear",
        "adapter": "full",
    }
    if max_steps:
        params["max_steps"] = max_steps
    return params


def run_engine(engine: Any, args: argparse.Namespace, max_steps: int | None = None) -> dict[str, float]:
    t0 = time.perf_counter()
    result = engine.run_trial(params_for(args, max_steps))
    wall = time.perf_counter() - t0
    n = min(len(engine.train_lengths), result.steps * args.batch_size)
    evaluation = result.timings["evaluation"]
    return {
        "examples": n,
        "train_seconds": wall - evaluation,
        "loop_seconds": result.timings["compute"],
        "eval_seconds": evaluation,
        "run_trial_seconds": wall,
    }


def run_plain(engine: Any, args: argparse.Namespace, order: str, max_steps: int | None = None) -> dict[str, float]:
    import numpy as np
    import torch
    from transformers import get_linear_schedule_with_warmup

    from automl.engine import length_grouped_batches

    ids = engine.encoded["train"]["input_ids"]
    labels = engine.encoded["train"]["labels"]
    n = len(ids)
    # Tensors made once, outside the timing (a user's Dataset is prepared beforehand too).
    rows = [torch.as_tensor(np.asarray(x, dtype=np.int64)) for x in ids]
    targets = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    pad_id = engine.pad_id

    t0 = time.perf_counter()
    torch.manual_seed(args.seed)
    model = copy.deepcopy(engine.base_model)
    model.train()
    steps = math.ceil(n / args.batch_size)
    if max_steps:
        steps = min(steps, max_steps)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, weight_decay=0.0, **OPTIMIZER_KWARGS[args.plain_optimizer])
    scheduler = get_linear_schedule_with_warmup(optimizer, 0, steps)
    if order == "grouped":
        batches = length_grouped_batches(engine.train_lengths, args.batch_size, np.random.default_rng(engine.seed))
    else:
        perm = torch.randperm(n).numpy()
        batches = [perm[i : i + args.batch_size] for i in range(0, n, args.batch_size)]
    seen = 0
    t_loop = time.perf_counter()
    for index in batches[:steps]:
        input_ids = torch.nn.utils.rnn.pad_sequence([rows[i] for i in index], batch_first=True, padding_value=pad_id)
        mask = (torch.arange(input_ids.shape[1])[None, :] < torch.tensor([len(rows[i]) for i in index])[:, None]).long()
        loss = model(input_ids=input_ids, attention_mask=mask, labels=targets[index]).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        seen += len(index)
    end = time.perf_counter()
    return {"examples": seen, "train_seconds": end - t0, "loop_seconds": end - t_loop}


def profile_step(engine: Any, args: argparse.Namespace, repeats: int = 3) -> None:
    """Split one optimiser step of the engine's set-up into forward, backward, clipping and
    the optimiser, with the engine's own optimiser and with fused AdamW, on one batch of
    median length (one untimed step first)."""
    import numpy as np
    import torch

    from automl.engine import pad_batch

    order = np.argsort(engine.train_lengths, kind="stable")
    mid = len(order) // 2
    index = order[max(0, mid - args.batch_size // 2) : max(0, mid - args.batch_size // 2) + args.batch_size]
    batch = pad_batch(engine.encoded["train"], index, engine.pad_id, False)
    labels = batch.pop("labels")
    print(f"-- one step on a batch of {len(index)} x {batch['input_ids'].shape[1]} tokens, ms (median of {repeats}, variants interleaved)")
    variants = {}
    for label in ("engine's optimiser", "fused AdamW"):
        model = copy.deepcopy(engine.base_model)
        model.train()
        if label == "fused AdamW":
            optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, fused=True)
        else:
            optimizer, _ = engine._optimizer(model, params_for(args), 10)
        variants[label] = (model, optimizer, {"forward": [], "backward": [], "clip": [], "optimizer": []})
    for i in range(repeats + 1):
        for model, optimizer, times in variants.values():
            t0 = time.perf_counter()
            loss = torch.nn.functional.cross_entropy(model(**batch).logits, labels)
            t1 = time.perf_counter()
            loss.backward()
            t2 = time.perf_counter()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            t3 = time.perf_counter()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            t4 = time.perf_counter()
            if i:  # the first step is a warm-up
                for key, value in zip(times, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                    times[key].append(value * 1000)
    for label, (_, optimizer, times) in variants.items():
        kind = "fused" if optimizer.defaults.get("fused") else "foreach" if optimizer.defaults.get("foreach") else "for-loop"
        cells = ", ".join(f"{key} {common.median(v):.0f}" for key, v in times.items())
        print(f"  {label:20s} ({kind:7s}): {cells}")


def run_trainer(engine: Any, tokenizer: Any, args: argparse.Namespace, out_dir: Path, max_steps: int | None = None) -> dict[str, float]:
    from datasets import Dataset
    from transformers import DataCollatorWithPadding, PrinterCallback, Trainer, TrainingArguments

    ids = engine.encoded["train"]["input_ids"]
    labels = engine.encoded["train"]["labels"]
    dataset = Dataset.from_dict({"input_ids": [list(map(int, x)) for x in ids], "labels": [int(y) for y in labels]})
    collator = DataCollatorWithPadding(tokenizer)

    t0 = time.perf_counter()
    model = copy.deepcopy(engine.base_model)
    training_args = TrainingArguments(
        output_dir=str(out_dir),
        per_device_train_batch_size=args.batch_size,
        num_train_epochs=1,
        max_steps=max_steps or -1,
        learning_rate=args.learning_rate,
        lr_scheduler_type="linear",
        warmup_steps=0,
        weight_decay=0.0,
        max_grad_norm=1.0,
        eval_strategy="no",
        save_strategy="no",
        logging_strategy="no",
        report_to=[],
        disable_tqdm=True,
        seed=args.seed,
        use_cpu=True,
        dataloader_num_workers=0,
    )
    trainer = Trainer(model=model, args=training_args, train_dataset=dataset, data_collator=collator)
    trainer.remove_callback(PrinterCallback)  # its end-of-training metrics line; nothing else
    output = trainer.train()
    end = time.perf_counter()
    steps = output.global_step
    return {
        "examples": min(len(ids), steps * args.batch_size),
        "train_seconds": end - t0,
        "loop_seconds": float(output.metrics.get("train_runtime", end - t0)),
    }


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="minilm-l6", help="minilm-l6 (default) or tiny-bert for a smoke run")
    common.add_data_arguments(parser, per_class=6, validation_per_class=1, classes=None)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup-steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all CPUs, as a worker uses)")
    parser.add_argument("--methods", default="engine,plain-random,plain-grouped,trainer")
    parser.add_argument(
        "--plain-optimizer", choices=sorted(OPTIMIZER_KWARGS), default="fused",
        help="AdamW implementation of the plain loop (default fused: the fastest, i.e. the floor)",
    )
    parser.add_argument("--no-profile", action="store_true", help="skip the one-step profile")
    parser.add_argument(
        "--precision", default="fp32", choices=["fp32", "auto", "bf16"],
        help="the engine's training.precision (default fp32, as the plain loop and the Trainer run; auto is what "
        "automl run uses: bf16 training on CPUs with bf16 instructions)",
    )
    args = parser.parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]

    common.header("engine throughput: TrialEngine vs plain PyTorch loop vs transformers.Trainer")
    from automl.search.worker import quiet_libraries

    quiet_libraries()
    calls = Calls()
    calls.install()

    with common.workspace(None) as tmp_dir:
        train, validation = common.data_from_args(tmp_dir / "data", args)
        recipe = common.write_recipe(
            tmp_dir / "recipe.yaml",
            train=train,
            validation=validation,
            backbone=args.backbone,
            max_length=args.max_length,
            seed=args.seed,
            space={},
            output=tmp_dir / "run",
            precision=args.precision,
        )

        # -- set-up once, then two consecutive trials
        before = calls.snapshot()
        engine, ctx, setup = common.build_engine(recipe, args.threads)
        after_setup = calls.snapshot()
        import torch

        tokenizer = ctx.resolved.backbone.load_tokenizer()
        n_train = len(engine.train_lengths)
        lengths = engine.train_lengths
        print(
            f"backbone {args.backbone}, {n_train} training examples (mean {lengths.mean():.1f} tokens, max {lengths.max()}), "
            f"{len(engine.encoded['validation']['input_ids'])} validation, max_length {args.max_length}, "
            f"batch {args.batch_size}, lr {args.learning_rate:g}, 1 epoch, torch threads {torch.get_num_threads()}, "
            f"plain loop AdamW {args.plain_optimizer}"
        )
        print()
        print("-- set-up (once per worker process)")
        for name, sec in setup.items():
            print(f"  {name:32s} {sec:8.2f} s")
        print(
            f"  tokenizer calls {after_setup[0] - before[0]}, from_pretrained calls {after_setup[1] - before[1]}"
        )
        print("-- two consecutive run_trial calls (same engine)")
        for i in (1, 2):
            c0 = calls.snapshot()
            r = run_engine(engine, args)
            c1 = calls.snapshot()
            other = r["run_trial_seconds"] - r["loop_seconds"] - r["eval_seconds"]
            print(
                f"  trial {i}: run_trial {r['run_trial_seconds']:7.2f} s = compute {r['loop_seconds']:.2f} + evaluation "
                f"{r['eval_seconds']:.2f} + other {other:.2f} (model copy, optimiser, batch order); "
                f"tokenizer calls {c1[0] - c0[0]}, from_pretrained calls {c1[1] - c0[1]}"
            )

        if not args.no_profile:
            profile_step(engine, args)

        # -- warm-up, then interleaved timed rounds
        runners = {
            "engine": lambda steps=None: run_engine(engine, args, steps),
            "plain-random": lambda steps=None: run_plain(engine, args, "random", steps),
            "plain-grouped": lambda steps=None: run_plain(engine, args, "grouped", steps),
            "trainer": lambda steps=None: run_trainer(engine, tokenizer, args, tmp_dir / "trainer", steps),
        }
        unknown = set(methods) - set(runners)
        if unknown:
            parser.error(f"unknown method(s) {', '.join(sorted(unknown))}; known: {', '.join(runners)}")
        for name in methods:
            runners[name](args.warmup_steps)
        results: dict[str, list[dict[str, float]]] = {name: [] for name in methods}
        print()
        print(f"-- {args.repeats} timed round(s), methods interleaved; {common.load_average()}")
        for round_ in range(args.repeats):
            for name in methods:
                r = runners[name]()
                results[name].append(r)
                print(
                    f"  round {round_ + 1} {name:14s} {r['examples'] / r['train_seconds']:8.1f} samples/s end-to-end, "
                    f"{r['examples'] / r['loop_seconds']:8.1f} in the loop ({r['train_seconds']:.2f} s)"
                )
        print()
        print(f"-- medians over {args.repeats} round(s); at end: {common.load_average()}")
        e2e = {n: common.median([r["examples"] / r["train_seconds"] for r in rs]) for n, rs in results.items()}
        loop = {n: common.median([r["examples"] / r["loop_seconds"] for r in rs]) for n, rs in results.items()}
        print(f"  {'method':14s} {'end-to-end samples/s':>22s} {'loop samples/s':>16s}")
        for name in methods:
            print(f"  {name:14s} {e2e[name]:22.1f} {loop[name]:16.1f}")
        if "engine" in e2e:
            for other in ("plain-random", "plain-grouped", "trainer"):
                if other in e2e:
                    print(
                        f"  engine/{other:14s} {e2e['engine'] / e2e[other]:6.3f} end-to-end, "
                        f"{loop['engine'] / loop[other]:6.3f} loop"
                    )
            floor = max((e2e[n] for n in ("plain-random", "plain-grouped") if n in e2e), default=None)
            if floor:
                verdict = "met" if e2e["engine"] >= 0.9 * floor else "MISSED"
                print(f"  target engine >= 0.9 x best plain loop (end-to-end): {verdict} ({e2e['engine'] / floor:.3f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
