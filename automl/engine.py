"""The trial engine: fine-tune a backbone on a task with one set of hyperparameters.

Work that does not depend on the hyperparameters is done once per process
(:class:`TrialEngine` holds the encoded data and the loaded pretrained model); each trial
gets a fresh deep copy of the model, trains it with dynamic padding and length-grouped
batches, evaluates on validation at regular points and reports to a callback that may
stop (prune) it.
"""

from __future__ import annotations

import copy
import gc
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from automl.adapters import ADAPTERS
from automl.checkpoint import LoopState, TrialCheckpoint
from automl.device import DeviceSetup
from automl.features import CATEGORICAL, FEATURE_KEYS, NUMERIC
from automl.fusion import build_fused, fuses, lr_factor
from automl.task import Encoded, Outputs, Split, Task, subset
from automl.weights import load_trainable_state, load_trial_weights, save_trial_weights, trainable_state  # noqa: F401  (imported from here too)

#: Called at each evaluation with (step, objective value, all metrics); returns True to
#: stop the trial (pruning).
Reporter = Callable[[int, float, dict[str, float]], bool]
#: Called every few steps with (epoch, step, total_steps, loss).
Progress = Callable[[int, int, int, float], None]


class TrialFailed(Exception):
    """The trial cannot go on (NaN loss, divergence, out of memory at micro-batch 1...)."""


class TrialStopped(Exception):
    """The reporter asked to stop the trial (pruned)."""

    def __init__(self, step: int, value: float) -> None:
        super().__init__(f"pruned at step {step} with {value:.4g}")
        self.step = step
        self.value = value


class OutOfMemory(TrialFailed):
    """Out of memory even at micro-batch 1."""


class NoTimeLeft(TrialFailed):
    """In its first steps, the trial finds that scoring its rows after training would
    already end past the run's deadline: a model trained for a few steps is not worth that."""


@dataclass
class TrialResult:
    value: float
    metrics: dict[str, float]
    calibration: dict[str, Any]
    steps: int
    epochs: float
    seconds: float
    micro_batch_size: int
    oom_retries: int
    model: torch.nn.Module
    samples_per_second: float
    timings: dict[str, float] = field(default_factory=dict)
    #: The step of the evaluation the value, metrics and weights come from.
    best_step: int = 0
    #: Why the trial ended before its last step: "early stopping", "deadline" or None.
    stopped: str | None = None
    #: The step the trial resumed at from a checkpoint, or None.
    resumed_from_step: int | None = None
    #: Peak GPU memory of the trial (torch.cuda.max_memory_allocated), bytes; None on CPU.
    peak_memory: int | None = None
    #: A private trial's accounting (:mod:`automl.private_training`); None otherwise.
    privacy: dict[str, Any] | None = None
    #: The validation outputs of the evaluation the value comes from (None: not kept).
    validation_outputs: Outputs | None = None
    #: The steps the trial planned when it planned fewer to finish by the run's deadline
    #: (:meth:`TrialEngine.steps_that_fit`); None when it kept its plan.
    planned_steps: int | None = None


@dataclass(frozen=True)
class TrialPolicy:
    """When a trial is evaluated and when it ends before its last step.

    Attributes:
        eval_examples: with ``eval_every="auto"``, evaluate every this many training
            examples (the same points for every batch size); None: once per epoch.
        prune_after: a pruner's "stop" before this share of the trial's steps is ignored.
        patience: end the trial after this many evaluations without improvement.
        min_delta: what counts as an improvement of the objective.
        deadline: ``time.time()`` by which the trial's work is done: it is evaluated and
            ends (at its best evaluation) once the time left is what its last evaluation
            (and, after a sample's, the pass over every validation row), the outputs a kept
            trial stores and the export's scoring of the validation and test rows are
            estimated to take (:meth:`TrialEngine.finish_seconds`).
    """

    eval_examples: int | None = None
    prune_after: float = 0.0
    patience: int | None = None
    min_delta: float = 0.0
    deadline: float | None = None


class BestSoFar:
    """The trial's best evaluation and a copy of the weights it was made with (in memory,
    on the CPU; only what the adapter trains), consulted by the training loop at each
    evaluation."""

    def __init__(self, policy: TrialPolicy, maximize: bool, adapter: str) -> None:
        self.policy = policy
        self.maximize = maximize
        self.adapter = adapter
        self.value: float | None = None
        self.metrics: dict[str, float] = {}
        self.calibration: dict[str, Any] = {}
        self.step = 0
        self.state: dict[str, torch.Tensor] | None = None
        self.since = 0
        #: The validation outputs of the best evaluation (what a kept trial stores for
        #: ensembles, without running the validation rows again).
        self.outputs: Outputs | None = None
        #: The split the best evaluation scored: the validation rows or their sample.
        self.split = "validation"

    def observe(
        self, model: torch.nn.Module, step: int, last: bool, value: float, metrics: dict[str, float],
        calibration: dict[str, Any], *, late: bool = False, outputs: Outputs | None = None, split: str = "validation",
    ) -> str | None:
        """Record an evaluation; returns why the trial should end now, or None. *late*: the
        run's deadline, less what the trial still has to do after it, has passed."""
        if self.value is None:
            improved = True
        else:
            gain = value - self.value if self.maximize else self.value - value
            improved = gain > self.policy.min_delta
        reason = None
        if not last and late:
            reason = "deadline"
        elif not last and not improved and self.policy.patience is not None and self.since + 1 >= self.policy.patience:
            reason = "early stopping"
        if improved:
            self.value, self.metrics, self.calibration, self.step, self.since = value, metrics, calibration, step, 0
            self.outputs, self.split = outputs, split
            # The trial's last evaluation needs no copy: the model ends in that state.
            self.state = None if (last or reason) else trainable_state(model, self.adapter)
        else:
            self.since += 1
        return reason

    def restore(self, model: torch.nn.Module, step: int) -> None:
        """Put the best evaluation's weights back into *model* (trained up to *step*)."""
        if self.step != step and self.state is not None:
            load_trainable_state(model, self.adapter, self.state)
        self.state = None


#: Training steps after which a trial with a deadline checks that its plan fits.
SHORTEN_AFTER_STEPS = 5


def shorten_schedule(scheduler: Any, total_steps: int) -> None:
    """Make a transformers learning-rate schedule end at *total_steps*, with the same share
    of warm-up: its decay then reaches the end of the shortened plan. Schedules without an
    end (constant) are left as they are."""
    from functools import partial

    lambdas = getattr(scheduler, "lr_lambdas", None)
    if not lambdas:
        return
    for i, f in enumerate(lambdas):
        if isinstance(f, partial) and "num_training_steps" in f.keywords:
            planned = max(1, int(f.keywords["num_training_steps"]))
            warmup = int(round(int(f.keywords.get("num_warmup_steps", 0)) * total_steps / planned))  # the same share
            lambdas[i] = partial(f.func, *f.args, **{**f.keywords, "num_training_steps": total_steps, "num_warmup_steps": warmup})


# ----------------------------------------------------------------------------- batching


def pad_batch(
    encoded: Encoded, index: np.ndarray, pad_id: int, float_labels: bool
) -> dict[str, torch.Tensor]:
    """Pad the examples at *index* to the longest of them (dynamic padding)."""
    ids = [encoded["input_ids"][i] for i in index]
    width = max(len(x) for x in ids)
    input_ids = np.full((len(ids), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(ids), width), dtype=np.int64)
    for row, x in enumerate(ids):
        input_ids[row, : len(x)] = x
        mask[row, : len(x)] = 1
    batch = {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(mask)}
    # Table-column features (automl.features) pass through as they are.
    for key, dtype in ((NUMERIC, torch.float32), (CATEGORICAL, torch.long)):
        if key in encoded:
            batch[key] = torch.as_tensor(np.stack([np.asarray(encoded[key][i]) for i in index]), dtype=dtype)
    labels = encoded.get("labels")
    if labels is not None:
        first = labels[index[0]]
        if isinstance(first, np.ndarray) and first.ndim == 1 or isinstance(first, list):
            lab = np.full((len(ids), width), -100, dtype=np.int64)
            for row, i in enumerate(index):
                y = np.asarray(labels[i])
                lab[row, : len(y)] = y
            batch["labels"] = torch.from_numpy(lab)
        else:
            values = np.asarray([labels[i] for i in index])
            batch["labels"] = torch.tensor(values, dtype=torch.float32 if float_labels else torch.long)
            if float_labels:
                batch["labels"] = batch["labels"].view(-1, 1) if batch["labels"].ndim == 1 else batch["labels"]
    return batch


def length_grouped_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffle, then order each mega-batch of 50 batches by length in coarse buckets of 8
    tokens, so that a batch holds similar lengths (little padding) while which examples
    share a batch stays random from epoch to epoch. (Sorting by exact length would give
    nearly the same batches every epoch on a small data set, and where length goes with
    the label, batches of one class: measurably worse models.)"""
    order = rng.permutation(len(lengths))
    mega = batch_size * 50
    batches = []
    for start in range(0, len(order), mega):
        chunk = order[start : start + mega]
        # Stable sort on the bucket keeps the random order within a bucket.
        chunk = chunk[np.argsort(-(lengths[chunk] // 8), kind="stable")]
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)  # type: ignore[arg-type]
    return batches


def inference_batches(sorted_lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Batches (positions in *sorted_lengths*, which is sorted longest first) for inference
    with a budget of padded tokens: ``batch_size`` times the median length. Where lengths
    are even every batch holds ``batch_size`` examples; the few long examples of a
    long-tailed split share smaller batches instead of padding a full batch of short ones
    to their length (on banking77 validation rows, which are 6 to 55 tokens long, this
    halves the evaluation time on a CPU). Never more than ``batch_size`` rows a batch."""
    n = len(sorted_lengths)
    if n == 0:
        return []
    budget = batch_size * max(1, int(np.median(sorted_lengths)))
    batches = []
    start = 0
    while start < n:
        rows = min(batch_size, max(1, budget // max(1, int(sorted_lengths[start]))))
        batches.append(np.arange(start, min(n, start + rows)))
        start += rows
    return batches


# ----------------------------------------------------------------------------- engine


def _is_oom(exc: BaseException) -> bool:
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


#: The split of the validation rows' sample trials are evaluated on while they train
#: (``training.eval_max_rows``).
EVAL_SAMPLE = "validation-sample"


def eval_sample(split: Split, rows: int, seed: int) -> np.ndarray:
    """Positions of about *rows* of *split*'s examples, sorted (seeded). Where the labels are
    classes, each class in its share of them, and at least 2 rows of every class (all of a
    class with fewer): a sample without a rare class's rows would score every trial NaN on
    metrics such as PR-AUC, and a stratified split rounds a share under one row to none.
    Other labels (numbers, tag lists): drawn at random."""
    rng = np.random.default_rng(seed)
    n = len(split)
    labels = split.labels
    if labels is None or not all(isinstance(y, int | np.integer) and not isinstance(y, bool) for y in labels):
        return np.sort(rng.choice(n, size=rows, replace=False))
    by_class = np.asarray(labels)
    keep = []
    for c in np.unique(by_class):
        members = np.flatnonzero(by_class == c)
        take = min(len(members), max(MIN_SAMPLE_PER_CLASS, round(rows * len(members) / n)))
        keep.append(rng.choice(members, size=take, replace=False))
    return np.sort(np.concatenate(keep))


#: Rows of each class an evaluation sample keeps at least (:func:`eval_sample`).
MIN_SAMPLE_PER_CLASS = 2


class TrialEngine:
    """Holds what every trial shares: encoded splits and the pretrained model."""

    def __init__(
        self,
        *,
        task: Task,
        base_model: torch.nn.Module,
        encoded: dict[str, Encoded],
        splits: dict[str, Split],
        setup: DeviceSetup,
        pad_id: int,
        objective: str,
        direction: str,
        lora_targets: list[str],
        seed: int = 42,
        eval_every: str | int = "epoch",
        eval_batch_size: int = 64,
        policy: TrialPolicy | None = None,
        gradient_checkpointing: bool = False,
        load_quantized: Callable[[str], torch.nn.Module] | None = None,
        eval_max_rows: int | None = None,
    ) -> None:
        self.task = task
        self.base_model = base_model.to("cpu")
        self.base_model.eval()
        self.encoded = encoded
        #: The outputs of the last :meth:`evaluate` (kept by :class:`BestSoFar` at its best).
        self.last_outputs: Outputs | None = None
        self.splits = splits
        self.setup = setup
        self.pad_id = pad_id
        self.objective = objective
        self.direction = direction
        self.lora_targets = lora_targets
        self.seed = seed
        self.eval_every = eval_every
        self.eval_batch_size = eval_batch_size
        #: Seconds one validation row takes to score, measured before a trial's first
        #: evaluation when its deadline is in doubt (:meth:`measure_scoring`).
        self._measured_score_seconds: float | None = None
        self.policy = policy or TrialPolicy()
        self.gradient_checkpointing = gradient_checkpointing
        #: Loads the base model with quantised weights on the device (QLoRA adapters).
        self.load_quantized = load_quantized
        self.float_labels = task.problem_type == "regression"
        self.train_lengths = np.fromiter((len(x) for x in encoded["train"]["input_ids"]), dtype=np.int64)
        self.timings: dict[str, float] = {"compute": 0.0, "evaluation": 0.0}
        #: The frozen encoder's pooled vector of each row, for the trials of adapters that
        #: leave the pretrained weights as they are (``head``): computed once, reused.
        self.text_cache: dict[bytes, torch.Tensor] = {}
        #: The split a trial is evaluated on while it trains: the validation rows, or, when
        #: there are more than *eval_max_rows*, a sample of about that many
        #: (:func:`eval_sample`, the same for every trial), its best evaluation then scored on all of them
        #: (:meth:`best_on_validation`). A big table's validation split is 10,000 rows
        #: (``data.max_eval_rows``): every evaluation was a pass over all of them, and the
        #: evaluation plan spaced them out to one per 20,000 training examples.
        self.eval_split = "validation"
        rows = self._rows("validation")
        if eval_max_rows is not None and rows > eval_max_rows and splits.get("validation") is not None:
            index = eval_sample(splits["validation"], eval_max_rows, seed)
            sample, sample_encoded = subset(splits["validation"], encoded["validation"], index)
            self.encoded, self.splits = {**encoded, EVAL_SAMPLE: sample_encoded}, {**splits, EVAL_SAMPLE: sample}
            self.eval_split = EVAL_SAMPLE
        #: The split the last evaluation scored (what the reporter was just given).
        self.evaluated_on = "validation"

    # -- public

    @property
    def sample_rows(self) -> int | None:
        """Rows of the validation sample trials are evaluated on while they train; None
        when they are evaluated on every validation row."""
        return self._rows(EVAL_SAMPLE) if self.eval_split == EVAL_SAMPLE else None

    def run_trial(
        self,
        params: dict[str, Any],
        reporter: Reporter | None = None,
        progress: Progress | None = None,
        max_micro_batch: int | None = None,
        checkpoint: TrialCheckpoint | None = None,
    ) -> TrialResult:
        """Train with *params*; retry with half the micro-batch on out-of-memory. With a
        *checkpoint*, resume from it if it holds a state for *params* and save when due."""
        batch_size = int(params.get("batch_size", 32))
        micro = min(batch_size, max_micro_batch or batch_size)
        self._measured_score_seconds = None  # each trial's model scores at its own pace
        return self.halving_on_oom(
            batch_size, micro, lambda micro, retries: self._train(params, batch_size, micro, retries, reporter, progress, checkpoint)
        )

    def halving_on_oom(self, batch_size: int, micro: int, attempt: Callable[[int, int], TrialResult]) -> TrialResult:
        """``attempt(micro, retries)``, again with half the micro-batch after each
        out-of-memory error, down to 1."""
        retries = 0
        while True:
            try:
                return attempt(micro, retries)
            except (RuntimeError, torch.cuda.OutOfMemoryError) as exc:
                if not _is_oom(exc):
                    raise
                self.free_memory()
                if micro <= 1:
                    raise OutOfMemory(f"out of memory even at micro-batch 1 (batch size {batch_size})") from None
                micro = max(1, micro // 2)
                retries += 1

    def planned_steps(self, params: dict[str, Any]) -> int:
        """Optimiser steps a trial with *params* runs (unless pruned, stopped early or cut)."""
        steps_per_epoch = math.ceil(len(self.train_lengths) / int(params.get("batch_size", 32)))
        max_steps = params.get("max_steps")
        if max_steps:
            return int(max_steps)
        total = max(1, int(math.ceil(float(params.get("epochs", 1)) * steps_per_epoch)))
        # Small data still gets enough optimiser steps: epochs are raised to min_steps.
        return max(total, int(params.get("min_steps") or 0))

    def free_memory(self) -> None:
        gc.collect()
        if self.setup.device.type == "cuda":
            torch.cuda.empty_cache()

    # -- internals

    def _fresh_model(self, params: dict[str, Any]) -> torch.nn.Module:
        adapter = params.get("adapter", "full")
        if adapter not in ADAPTERS:
            raise TrialFailed(f"unknown adapter '{adapter}'; known: {', '.join(ADAPTERS)}")
        spec = ADAPTERS[adapter]
        if spec.quantization is not None:
            if self.load_quantized is None:
                raise TrialFailed(f"adapter '{adapter}' needs quantised base weights, which this engine cannot load")
            model = self.load_quantized(spec.quantization)  # already on the device
        else:
            model = copy.deepcopy(self.base_model)
        if self.gradient_checkpointing and hasattr(model, "gradient_checkpointing_enable"):
            # Non-reentrant: works with frozen embeddings (peft) without extra hooks.
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            model.config.use_cache = False
        if fuses(self.task, adapter):  # table columns fused with the backbone, or a head on the frozen encoder
            model = build_fused(
                model, params, self.task.features, self.task.num_labels(), self.lora_targets, text_cache=self.text_cache
            )
        else:
            model = spec.build(model, params, self.task.head, self.lora_targets)
        # Weights loaded in bf16 (large models on GPUs) are frozen; what trains is kept in
        # fp32 so that small updates are not rounded away (autocast handles the mix).
        for p in model.parameters():
            if p.requires_grad and p.dtype != torch.float32 and p.is_floating_point():
                p.data = p.data.float()
        return model if spec.quantization is not None else model.to(self.setup.device)

    def _optimizer(self, model: torch.nn.Module, params: dict[str, Any], total_steps: int) -> tuple[Any, Any]:
        from transformers import get_scheduler

        lr = float(params.get("learning_rate", 5e-5))
        # One group per (weight decay or not, learning rate): parts of a fusion model that
        # are not pretrained learn at fusion_lr_factor times the rate.
        by_group: dict[tuple[bool, float], list[torch.nn.Parameter]] = {}
        for name, p in model.named_parameters():
            if not p.requires_grad:
                continue
            decay = not (p.ndim < 2 or "LayerNorm" in name or "layer_norm" in name)
            by_group.setdefault((decay, lr * lr_factor(model, name, params)), []).append(p)
        weight_decay = float(params.get("weight_decay", 0.0))
        groups = [
            {"params": ps, "weight_decay": weight_decay if decay else 0.0, "lr": group_lr}
            for (decay, group_lr), ps in by_group.items()
        ]
        try:
            # Fused AdamW: one kernel for the whole step, on CUDA and (torch >= 2.4) on CPU;
            # on a 2-core CPU it is ~0.05 s of a 0.8 s MiniLM step, where foreach can take 0.7 s
            # when the cores are contended.
            optimizer = torch.optim.AdamW(groups, lr=lr, fused=True)
        except (RuntimeError, TypeError):
            optimizer = torch.optim.AdamW(groups, lr=lr, foreach=True)
        warmup = int(round(float(params.get("warmup_ratio", 0.0)) * total_steps))
        scheduler = get_scheduler(
            str(params.get("scheduler", "linear")),
            optimizer=optimizer,
            num_warmup_steps=warmup,
            num_training_steps=total_steps,
        )
        return optimizer, scheduler

    def _forward_loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor], params: dict[str, Any]) -> torch.Tensor:
        labels = batch.pop("labels")
        out = model(**batch)
        custom = self.task.loss(out.logits, labels, params)
        if custom is not None:
            return custom
        logits = out.logits
        if self.float_labels:
            return torch.nn.functional.mse_loss(logits.view(-1).float(), labels.view(-1).float())
        return torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1), ignore_index=-100
        )

    def _train(
        self,
        params: dict[str, Any],
        batch_size: int,
        micro: int,
        oom_retries: int,
        reporter: Reporter | None,
        progress: Progress | None,
        checkpoint: TrialCheckpoint | None = None,
    ) -> TrialResult:
        start = time.perf_counter()
        if self.setup.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.setup.device)
        torch.manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        model = self._fresh_model(params)
        train = self.encoded["train"]
        n = len(self.train_lengths)
        steps_per_epoch = math.ceil(n / batch_size)
        total_steps = self.planned_steps({**params, "batch_size": batch_size})
        optimizer, scheduler = self._optimizer(model, params, total_steps)
        eval_every = self.eval_interval(batch_size, steps_per_epoch)
        policy = self.policy
        best = BestSoFar(policy, self.direction == "maximize", str(params.get("adapter", "full")))
        stopped: str | None = None
        setup = self.setup
        scaler = torch.amp.GradScaler("cuda") if setup.grad_scaling else None
        autocast = (
            torch.autocast(setup.device.type, dtype=setup.autocast_dtype)
            if setup.autocast_dtype is not None
            else None
        )

        step = seen = epoch = evaluations = skip = 0
        compute_time = eval_time = first_step = 0.0
        first_rows = 0
        loss_value = float("nan")
        adapter = str(params.get("adapter", "full"))
        resumed = checkpoint.restore(model=model, adapter=adapter, optimizer=optimizer, scheduler=scheduler, scaler=scaler, rng=rng, best=best) if checkpoint else None
        if resumed is not None:
            step, seen, epoch, evaluations, skip, loss_value = resumed.step, resumed.seen, resumed.epoch, resumed.evaluations, resumed.position, resumed.loss
        planned = total_steps
        model.train()
        while step < total_steps and stopped is None:
            epoch_rng, epoch_start = rng.bit_generator.state, step - skip
            for batch_index in length_grouped_batches(self.train_lengths, batch_size, rng)[skip:]:
                if step >= total_steps or stopped is not None:
                    break
                t0 = time.perf_counter()
                optimizer.zero_grad(set_to_none=True)
                loss_sum = 0.0
                chunks = [batch_index[i : i + micro] for i in range(0, len(batch_index), micro)]
                for chunk in chunks:
                    batch = {k: v.to(setup.device, non_blocking=True) for k, v in pad_batch(train, chunk, self.pad_id, self.float_labels).items()}
                    if autocast is not None:
                        with autocast:
                            loss = self._forward_loss(model, batch, params)
                    else:
                        loss = self._forward_loss(model, batch, params)
                    loss = loss * (len(chunk) / len(batch_index))
                    if scaler is not None:
                        scaler.scale(loss).backward()
                    else:
                        loss.backward()
                    loss_sum += float(loss.detach())
                if not math.isfinite(loss_sum):
                    raise TrialFailed(f"loss became {loss_sum} at step {step + 1} (learning rate {params.get('learning_rate')})")
                if scaler is not None:
                    scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                if scaler is not None:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
                scheduler.step()
                step += 1
                seen += len(batch_index)
                loss_value = loss_sum
                compute_time += time.perf_counter() - t0
                if progress is not None and (step % 5 == 0 or step == total_steps):
                    progress(epoch, step, total_steps, loss_value)
                if resumed is None and step <= SHORTEN_AFTER_STEPS and self.past_deadline(
                    seen / compute_time if compute_time else 0.0, evaluations, eval_time
                ):
                    # The guess from its first steps says it cannot finish: a trial is
                    # dropped only if its scoring pace, measured, says so too.
                    self.measure_scoring(model, evaluations)
                    if self.past_deadline(0.0, evaluations, eval_time):
                        raise self._no_time_left(evaluations, eval_time)
                if step == 1:
                    first_step, first_rows = compute_time, seen  # start-up costs: not the pace
                if total_steps == planned and resumed is None and step == SHORTEN_AFTER_STEPS:
                    # Its pace now known (steps after the first; scoring measured), a trial
                    # that cannot finish by the deadline plans fewer steps (its learning-rate
                    # schedule too) instead of being cut.
                    if self.policy.deadline is not None:
                        self.measure_scoring(model, evaluations)
                    total_steps = self.steps_that_fit(
                        step, total_steps, compute_time - first_step, seen - first_rows, eval_every, evaluations, eval_time,
                        timed_steps=step - 1,
                    )
                    if total_steps < planned:
                        shorten_schedule(scheduler, total_steps)
                # Near the run's deadline the trial is evaluated now, not at its next
                # planned point, early enough for what follows its last step to end by then.
                late = self.past_deadline(seen / compute_time if compute_time else 0.0, evaluations, eval_time)
                if late and resumed is None and not evaluations and step <= SHORTEN_AFTER_STEPS and step < total_steps:
                    # Out of time within its first steps (the check above passed by seconds):
                    # a model of a handful of steps is not worth a pass over every row (on
                    # the fraud generator at 100x, 5 steps, PR-AUC 0.04, 35 s of scoring).
                    raise self._no_time_left(evaluations, eval_time)
                if step % eval_every == 0 or step == total_steps or late:
                    t1 = time.perf_counter()
                    stopped = self.evaluation_point(model, step, total_steps, best, reporter, late=late)
                    evaluations += 1
                    eval_time += time.perf_counter() - t1
                    if checkpoint is not None and step < total_steps and stopped is None and checkpoint.due():
                        loop = LoopState(step, epoch, step - epoch_start, epoch_rng, seen, evaluations, loss_value)
                        checkpoint.save(model=model, adapter=adapter, optimizer=optimizer, scheduler=scheduler, scaler=scaler, loop=loop, best=best)
            epoch += 1
            skip = 0
        best.restore(model, step)
        assert best.value is not None  # total_steps >= 1 always evaluates
        eval_time += self.best_on_validation(model, best)
        value, metrics, calibration = best.value, best.metrics, best.calibration
        self.timings["compute"] += compute_time
        self.timings["evaluation"] += eval_time
        seconds = time.perf_counter() - start
        return TrialResult(
            value=value,
            metrics=metrics,
            calibration=calibration,
            steps=step,
            epochs=step / steps_per_epoch,
            seconds=seconds,
            micro_batch_size=micro,
            oom_retries=oom_retries,
            model=model,
            samples_per_second=seen / compute_time if compute_time else 0.0,
            timings={"compute": compute_time, "evaluation": eval_time},
            best_step=best.step,
            stopped=stopped,
            resumed_from_step=resumed.step if resumed is not None else None,
            peak_memory=torch.cuda.max_memory_allocated(self.setup.device) if self.setup.device.type == "cuda" else None,
            validation_outputs=best.outputs,
            planned_steps=planned if total_steps < planned else None,
        )

    def steps_that_fit(
        self, step: int, total_steps: int, compute_time: float, seen: int, eval_every: int, evaluations: int, eval_time: float,
        *, timed_steps: int | None = None,
    ) -> int:
        """The most optimiser steps (at least one more than *step*) the trial can take and
        still finish by the run's deadline, at the pace of *timed_steps* steps (default
        *step*) that took *compute_time* and trained *seen* rows, counting its evaluations
        on the way and :meth:`finish_seconds` after the last; *total_steps* when they all
        fit or there is no deadline."""
        timed = step if timed_steps is None else timed_steps
        if self.policy.deadline is None or step <= 0 or timed <= 0 or compute_time <= 0:
            return total_steps
        per_eval = self._score_seconds_per_row(seen / compute_time, evaluations, eval_time) * self._rows(self.eval_split)
        per_step = compute_time / timed + per_eval / max(1, eval_every)
        left = self.policy.deadline - time.time() - self.finish_seconds(seen / compute_time, evaluations, eval_time)
        return int(min(total_steps, max(step + 1, step + left // per_step)))

    def finish_seconds(self, train_rows_per_second: float, evaluations: int, eval_seconds: float) -> float:
        """Seconds a trial needs after its last training step: its last evaluation (the
        validation rows; after earlier evaluations on their sample, the sample and then all
        of them for its best evaluation),
        the test outputs a kept trial stores and the export's scoring of the validation and
        test rows again, at the pace of this trial's evaluations so far (before its first,
        at 4 times its training pace per row: a forward pass without gradients in larger
        batches; MiniLM-L6 at 128 tokens on 2 CPUs trained 7.4 rows/s and scored 35)."""
        sample = self.sample_rows if self.sample_rows and evaluations else 0  # an only evaluation scores every row
        return self._score_seconds_per_row(train_rows_per_second, evaluations, eval_seconds) * (
            sample + 2 * (self._rows("validation") + self._rows("test"))
        )

    def _rows(self, split: str) -> int:
        return len(self.encoded[split]["input_ids"]) if split in self.encoded else 0

    def _score_seconds_per_row(self, train_rows_per_second: float, evaluations: int, eval_seconds: float) -> float:
        """Seconds to score one row: from this trial's evaluations; before the first, as
        measured by :meth:`measure_scoring`, else 4 times its training pace (0 before any
        step)."""
        if evaluations and self._rows(self.eval_split):
            return eval_seconds / (evaluations * self._rows(self.eval_split))
        if self._measured_score_seconds is not None:
            return self._measured_score_seconds
        return 1.0 / (4.0 * train_rows_per_second) if train_rows_per_second > 0 else 0.0

    def measure_scoring(self, model: torch.nn.Module, evaluations: int) -> None:
        """Time the scoring of a sample of validation rows (one evaluation batch, taken
        evenly through the split) once per trial, before its first evaluation: the pace
        guessed from its first training steps carries start-up costs and, on short rows,
        says little of scoring."""
        if not evaluations and self._rows("validation") and self._measured_score_seconds is None:
            rows = self._rows("validation")
            index = np.linspace(0, rows - 1, num=min(rows, self.eval_batch_size)).astype(int)
            sample = {k: [v[i] for i in index] for k, v in self.encoded["validation"].items()}
            started = time.perf_counter()
            predict_outputs(model, sample, self.setup, self.pad_id, self.eval_batch_size, self.task.head)
            self._measured_score_seconds = (time.perf_counter() - started) / len(index)
            model.train()

    def _no_time_left(self, evaluations: int, eval_seconds: float) -> NoTimeLeft:
        pace = 1.0 / max(self._score_seconds_per_row(0.0, evaluations, eval_seconds), 1e-9)
        return NoTimeLeft(
            f"not trained: scoring the validation and test rows after training (measured at {pace:.0f} rows/s) "
            "would end past the deadline"
        )

    def past_deadline(self, train_rows_per_second: float, evaluations: int, eval_seconds: float) -> bool:
        """Whether the trial must end now to be done by the run's deadline."""
        if self.policy.deadline is None:
            return False
        return time.time() + self.finish_seconds(train_rows_per_second, evaluations, eval_seconds) >= self.policy.deadline

    def evaluation_point(
        self, model: torch.nn.Module, step: int, total_steps: int, best: BestSoFar, reporter: Reporter | None, *, late: bool = False,
    ) -> str | None:
        """Evaluate at *step*, record it in *best*, and ask the *reporter* whether to prune
        (raises :class:`TrialStopped`). Returns why the trial should end now, or None."""
        # A trial's only evaluation (its first is its last) scores every validation row: a
        # sample first and all of them after would be two passes for one figure.
        split = self.evaluated_on = "validation" if best.value is None and (step == total_steps or late) else self.eval_split
        value, metrics, calibration = self.evaluate(model, split)
        model.train()
        if not math.isfinite(value):
            raise TrialFailed(f"validation {self.objective} is {value} at step {step}")
        stopped = best.observe(model, step, step == total_steps, value, metrics, calibration,
                               late=late, outputs=self.last_outputs, split=split)
        # At the last evaluation the work is done: a pruner's "stop" would only throw the
        # finished model away, so the trial completes instead; and none before a share of
        # the steps (a slow start is not a bad trial).
        prune = reporter is not None and reporter(step, value, metrics)
        if prune and step < total_steps and stopped is None and step >= self.policy.prune_after * total_steps:
            raise TrialStopped(step, value)
        return stopped

    def eval_interval(self, batch_size: int, steps_per_epoch: int) -> int:
        """Optimiser steps between evaluations (the last step is always evaluated too)."""
        if self.eval_every == "epoch" or (self.eval_every == "auto" and not self.policy.eval_examples):
            return steps_per_epoch
        if self.eval_every == "auto":
            return max(1, min(steps_per_epoch, math.ceil(int(self.policy.eval_examples or 0) / batch_size)))
        return int(self.eval_every)

    @torch.no_grad()
    def outputs(self, model: torch.nn.Module, split: str, encoded: Encoded | None = None) -> Outputs:
        """Model outputs for a split, in example order (unpadded per example for token heads)."""
        enc = encoded if encoded is not None else self.encoded[split]
        return predict_outputs(model, enc, self.setup, self.pad_id, self.eval_batch_size, self.task.head)

    def evaluate(self, model: torch.nn.Module, split: str = "validation") -> tuple[float, dict[str, float], dict[str, Any]]:
        outputs = self.last_outputs = self.outputs(model, split)
        enc = self.encoded[split]
        calibration = self.task.calibrate(outputs, self.splits[split], enc)
        metrics = self.task.compute_metrics(outputs, self.splits[split], enc, calibration)
        value = float(metrics.get(self.objective, float("nan")))
        return value, metrics, calibration

    def best_on_validation(self, model: torch.nn.Module, best: BestSoFar) -> float:
        """Make *best* what the trial reports: where its best evaluation scored a sample of
        the validation rows, *model* (restored to that evaluation) scored on all of them
        (value, metrics, calibration and the outputs a kept trial stores). Returns the
        seconds that took."""
        if best.split == "validation":
            return 0.0
        started = time.perf_counter()
        value, metrics, calibration = self.evaluate(model, "validation")
        model.train()
        if not math.isfinite(value):
            raise TrialFailed(f"validation {self.objective} is {value} on all validation rows")
        best.value, best.metrics, best.calibration, best.outputs = value, metrics, calibration, self.last_outputs
        best.split = "validation"
        return time.perf_counter() - started


@torch.no_grad()
def predict_outputs(
    model: torch.nn.Module,
    encoded: Encoded,
    setup: DeviceSetup,
    pad_id: int,
    batch_size: int,
    head: str,
    on_batch: Callable[[int], None] | None = None,
) -> Outputs:
    """Run *model* over encoded examples, sorted by length for speed, in original order."""
    model.eval()
    ids = encoded["input_ids"]
    lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
    order = np.argsort(-lengths, kind="stable")
    results: list[Any] = [None] * len(ids)
    no_labels = {k: v for k, v in encoded.items() if k == "input_ids" or k in FEATURE_KEYS}
    for index in inference_batches(lengths[order], batch_size):
        index = order[index]
        batch = {k: v.to(setup.device) for k, v in pad_batch(no_labels, index, pad_id, False).items()}
        if setup.inference_dtype is not None:
            with torch.autocast(setup.device.type, dtype=setup.inference_dtype):
                logits = model(**batch).logits
        else:
            logits = model(**batch).logits
        logits = logits.float().cpu().numpy()
        for row, i in enumerate(index):
            results[i] = logits[row, : lengths[i]] if head == "token-classification" else logits[row]
        if on_batch is not None:
            on_batch(len(index))
    if head == "token-classification":
        return results
    return np.stack(results) if results else np.zeros((0, 0), dtype=np.float32)
