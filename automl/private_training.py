"""Private trials: DP-SGD with Opacus, in the trial engine's evaluation and stopping rules.

:class:`PrivateTrialEngine` trains as :class:`~automl.engine.TrialEngine` does (a fresh
model per trial, evaluations at the same points, pruning, early stopping, the deadline,
the best evaluation kept), with Opacus' own pieces for what makes it private:

* ``PrivacyEngine.make_private_with_epsilon`` (PRV accountant) wraps the optimiser and
  replaces the batches by Poisson sampling, each row in a logical batch with probability
  ``batch_size / n`` (the accounting assumes it). The rows a logical batch holds are put in
  order of length before it is cut into physical batches, which keeps padding low and
  changes nothing private: the clipped per-example gradients are summed over the whole
  logical batch either way;
* its ``BatchMemoryManager`` cuts logical batches (hundreds of rows) into physical ones of
  ``privacy.physical_batch_size``;
* per-example gradients come from its hooks, attached to the model itself
  (``wrap_model=False``): weights keep their names, so checkpoints of the best evaluation
  and the export work as for any trial.

The loss is the mean of per-example losses (:meth:`~automl.task.Task.example_losses`), so
that one row's gradient depends on that row alone. In full fine-tuning the pretrained
model's embedding tables stay frozen: their per-example gradients would cost a
vocabulary-sized tensor per row, and position embeddings broadcast over the batch, which
breaks per-example gradients (opacus#841). A peft model is on its device before Opacus
attaches to it (opacus#820).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from automl.engine import BestSoFar, Progress, Reporter, TrialEngine, TrialFailed, TrialResult, pad_batch
from automl.fusion import caches_text
from automl.privacy import epsilon

#: Called once the trial's noise is known, before its first step, with
#: ``(noise_multiplier, sample_rate, planned_steps)``: the search books the plan at once, so
#: that a trial cut off by a crash is still accounted for.
OnPlan = Callable[[float, float, int], None]
#: Called when an attempt at the trial ends, however it ends, with the accountant history
#: of every attempt so far: ``[(noise_multiplier, sample_rate, steps), ...]``.
OnSpent = Callable[[list[tuple[float, float, int]]], None]


class _Rows(torch.utils.data.Dataset):  # type: ignore[type-arg]
    """Row numbers 0..n-1, as one-tensor tuples (Opacus' empty-batch handling reads them)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[torch.Tensor]:
        return (torch.tensor(i),)


class _LongestFirst(torch.utils.data.Sampler):  # type: ignore[type-arg]
    """The rows of each Poisson-sampled logical batch, longest first (the same rows)."""

    def __init__(self, batches: Any, lengths: np.ndarray) -> None:
        self.batches = batches
        self.lengths = lengths

    def __iter__(self) -> Iterator[list[int]]:
        for rows in self.batches:
            rows = list(rows)
            yield sorted(rows, key=lambda i: -int(self.lengths[i]))

    def __len__(self) -> int:
        return len(self.batches)


def freeze_embeddings(model: torch.nn.Module) -> list[str]:
    """Freeze the embedding tables of every pretrained transformer inside *model* (the
    input embeddings and their siblings: positions, token types); returns their names.
    Embeddings of the task's own layers (a table-column tower) keep training."""
    from transformers import PreTrainedModel

    frozen: list[str] = []
    names = {id(m): n for n, m in model.named_modules()}
    for module in model.modules():
        if not isinstance(module, PreTrainedModel):
            continue
        table = module.get_input_embeddings()
        parent_name = names.get(id(table), "").rpartition(".")[0]
        parent = model.get_submodule(parent_name) if parent_name else model
        for name, sub in parent.named_modules():
            if isinstance(sub, torch.nn.Embedding) and any(p.requires_grad for p in sub.parameters()):
                sub.requires_grad_(False)
                frozen.append(f"{parent_name}.{name}".strip("."))
    return frozen


class PrivateTrialEngine(TrialEngine):
    """A :class:`~automl.engine.TrialEngine` whose trials are differentially private.

    Args:
        delta: the run's δ.
        max_grad_norm: the clipping norm when the space does not search ``max_grad_norm``.
        physical_batch_size: rows per forward/backward pass.
    """

    def __init__(self, *, delta: float, max_grad_norm: float, physical_batch_size: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.delta = delta
        self.max_grad_norm = max_grad_norm
        self.physical_batch_size = physical_batch_size

    def sample_rate(self, params: dict[str, Any]) -> float:
        """Each row's chance to be in a logical batch: one over the batches of an epoch."""
        return 1.0 / math.ceil(len(self.train_lengths) / int(params.get("batch_size", 32)))

    def run_trial(  # type: ignore[override]
        self,
        params: dict[str, Any],
        reporter: Reporter | None = None,
        progress: Progress | None = None,
        max_micro_batch: int | None = None,
        checkpoint: Any = None,
        *,
        target_epsilon: float,
        on_plan: OnPlan | None = None,
        on_spent: OnSpent | None = None,
    ) -> TrialResult:
        """Train *params* privately at *target_epsilon* (for this trial's planned steps).
        Out of memory, it starts again with half the physical batch; the steps of every
        attempt are accounted (``result.privacy["history"]``). *checkpoint* is not
        supported: a private trial cut off by a crash is accounted in full and not resumed."""
        batch_size = int(params.get("batch_size", 32))
        # A head on the frozen, mean-pooled encoder has few weights and reads its rows'
        # pooled vectors from the cache: the per-example gradients of a whole logical batch
        # fit in memory. (A token head on a frozen body still runs the body every step.)
        physical = batch_size if caches_text(self.task, str(params.get("adapter", "full"))) else self.physical_batch_size
        micro = min(batch_size, max_micro_batch or physical)
        spent: list[tuple[float, float, int]] = []
        return self.halving_on_oom(
            batch_size, micro,
            lambda micro, retries: self._train_private(
                params, batch_size, micro, retries, reporter, progress, target_epsilon, on_plan, on_spent, spent
            ),
        )

    def _train_private(
        self,
        params: dict[str, Any],
        batch_size: int,
        micro: int,
        oom_retries: int,
        reporter: Reporter | None,
        progress: Progress | None,
        target_epsilon: float,
        on_plan: OnPlan | None,
        on_spent: OnSpent | None,
        spent: list[tuple[float, float, int]],
    ) -> TrialResult:
        from opacus import PrivacyEngine
        from opacus.utils.batch_memory_manager import BatchMemoryManager

        start = time.perf_counter()
        torch.manual_seed(self.seed)
        model = self._fresh_model(params)  # on its device before Opacus attaches (opacus#820)
        if str(params.get("adapter", "full")) == "full":
            freeze_embeddings(model)
        self._freeze_unused(model, params)
        n = len(self.train_lengths)
        train = self.encoded["train"]
        steps_per_epoch = math.ceil(n / batch_size)
        total_steps = self.planned_steps({**params, "batch_size": batch_size})
        optimizer, scheduler = self._optimizer(model, params, total_steps)
        clip = float(params.get("max_grad_norm", self.max_grad_norm))

        def collate(items: list[tuple[torch.Tensor]]) -> dict[str, torch.Tensor]:
            rows = np.fromiter((int(t[0]) for t in items), dtype=np.int64, count=len(items))
            return pad_batch(train, rows, self.pad_id, self.float_labels)

        model.train()  # Opacus validates the model in training mode
        loader = torch.utils.data.DataLoader(_Rows(n), batch_size=batch_size, collate_fn=collate)
        privacy = PrivacyEngine(accountant="prv")
        common = dict(module=model, optimizer=optimizer, data_loader=loader, max_grad_norm=clip,
                      poisson_sampling=True, wrap_model=False, noise_generator=torch.Generator().manual_seed(self.seed))
        if total_steps % steps_per_epoch == 0:
            hooks, optimizer, loader = privacy.make_private_with_epsilon(
                **common, target_epsilon=target_epsilon, target_delta=self.delta, epochs=total_steps // steps_per_epoch
            )
        else:  # a step count that is not whole epochs (max_steps): the same search, by steps
            from opacus.accountants.utils import get_noise_multiplier

            noise = get_noise_multiplier(target_epsilon=target_epsilon, target_delta=self.delta,
                                         sample_rate=1.0 / steps_per_epoch, steps=total_steps, accountant="prv")
            hooks, optimizer, loader = privacy.make_private(**common, noise_multiplier=noise)
        sample_rate = 1.0 / steps_per_epoch
        noise = float(optimizer.noise_multiplier)
        if on_plan is not None:
            on_plan(noise, sample_rate, total_steps)
        batches = torch.utils.data.DataLoader(
            loader.dataset, batch_sampler=_LongestFirst(loader.batch_sampler, self.train_lengths), collate_fn=loader.collate_fn
        )


        def accounted() -> int:  # optimiser steps taken: the accountant books each one
            return sum(int(t) for _, _, t in privacy.accountant.history)

        best = BestSoFar(self.policy, self.direction == "maximize", str(params.get("adapter", "full")))
        eval_every = self.eval_interval(batch_size, steps_per_epoch)
        stopped: str | None = None
        step = seen = evaluations = 0
        compute_time = eval_time = 0.0
        loss_sum = 0.0
        device = self.setup.device
        model.train()
        try:
            with BatchMemoryManager(data_loader=batches, max_physical_batch_size=micro, optimizer=optimizer) as physical:
                t0 = time.perf_counter()
                while step < total_steps and stopped is None:
                    for batch in physical:
                        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
                        rows = int(batch["input_ids"].shape[0])
                        if rows:
                            loss = self._example_losses(model, batch, params).mean()
                            loss.backward()
                            loss_sum += float(loss.detach()) * rows
                            seen += rows
                        optimizer.step()
                        optimizer.zero_grad(set_to_none=True)
                        if accounted() == step:
                            continue  # a physical batch inside a logical one: no step yet
                        scheduler.step()
                        step += 1
                        if not math.isfinite(loss_sum):
                            raise TrialFailed(f"loss became {loss_sum} at step {step} (learning rate {params.get('learning_rate')})")
                        compute_time += time.perf_counter() - t0
                        if progress is not None and (step % 5 == 0 or step == total_steps):
                            progress(step // steps_per_epoch, step, total_steps, loss_sum / max(1, seen))
                        late = self.past_deadline(seen / compute_time if compute_time else 0.0, evaluations, eval_time)
                        if step % eval_every == 0 or step == total_steps or late:
                            t1 = time.perf_counter()
                            stopped = self.evaluation_point(model, step, total_steps, best, reporter, late=late)
                            evaluations += 1
                            eval_time += time.perf_counter() - t1
                        t0 = time.perf_counter()
                        if step >= total_steps or stopped is not None:
                            break
        finally:
            # What this attempt spent, however it ended (pruned, failed, out of memory).
            spent.extend((float(s), float(q), int(t)) for s, q, t in privacy.accountant.history)
            hooks.cleanup()
            if on_spent is not None:
                on_spent(list(spent))
        best.restore(model, step)
        assert best.value is not None
        eval_time += self.best_on_validation(model, best)
        self.timings["compute"] += compute_time
        self.timings["evaluation"] += eval_time
        accounting = {
            "noise_multiplier": noise,
            "sample_rate": sample_rate,
            "max_grad_norm": clip,
            "steps": step,
            "planned_steps": total_steps,
            "target_epsilon": target_epsilon,
            "delta": self.delta,
            "history": [list(h) for h in spent],
            "epsilon": epsilon(spent, self.delta),
        }
        return TrialResult(
            value=best.value,
            metrics=best.metrics,
            calibration=best.calibration,
            steps=step,
            epochs=step / steps_per_epoch,
            seconds=time.perf_counter() - start,
            micro_batch_size=micro,
            oom_retries=oom_retries,
            model=model,
            samples_per_second=seen / compute_time if compute_time else 0.0,
            timings={"compute": compute_time, "evaluation": eval_time},
            best_step=best.step,
            stopped=stopped,
            peak_memory=torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None,
            privacy=accounting,
            validation_outputs=best.outputs,
        )

    def _freeze_unused(self, model: torch.nn.Module, params: dict[str, Any]) -> list[str]:
        """Freeze trainable weights the forward pass never uses (a pooler the head skips):
        Opacus needs a per-example gradient for every weight it trains. Found with one
        forward and backward pass on two validation rows (not training rows), undone."""
        rows = np.arange(min(2, len(self.encoded["validation"]["input_ids"])))
        if len(rows) == 0:
            return []
        batch = {k: v.to(self.setup.device) for k, v in pad_batch(self.encoded["validation"], rows, self.pad_id, self.float_labels).items()}
        model.train()
        self._example_losses(model, batch, params).mean().backward()
        unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
        for name, p in model.named_parameters():
            p.grad = None
            if name in unused:
                p.requires_grad_(False)
        return unused

    def _example_losses(self, model: torch.nn.Module, batch: dict[str, torch.Tensor], params: dict[str, Any]) -> torch.Tensor:
        """One loss per row of *batch*: the task's, else cross-entropy (per sequence, the
        mean over its scored tokens) or squared error."""
        labels = batch.pop("labels")
        logits = model(**batch).logits
        custom = self.task.example_losses(logits, labels, params)
        if custom is not None:
            return custom
        if self.float_labels:
            return (logits.view(-1).float() - labels.view(-1).float()) ** 2
        if logits.ndim == 3:  # token head
            per_token = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1), ignore_index=-100, reduction="none"
            ).view(labels.shape)
            scored = (labels != -100).float()
            return (per_token * scored).sum(dim=1) / scored.sum(dim=1).clamp(min=1.0)
        return torch.nn.functional.cross_entropy(logits.float(), labels.view(-1), reduction="none")
