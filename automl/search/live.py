"""The live status line of ``automl run`` and one line per finished trial.

On a terminal a rich status line shows the running trials (epoch, step, loss, last
metric) and the best so far; when output is not a terminal only the per-trial lines are
printed."""

from __future__ import annotations

import json
import time
from typing import Any

import optuna
from optuna.trial import TrialState
from rich.console import Console
from rich.live import Live
from rich.text import Text

from automl.results._formats import fmt_params
from automl.search.space import user_params
from automl.search.budget import counts_toward_budget


class LiveStatus:
    def __init__(self, ctx: Any, study: optuna.Study, target: int, console: Console) -> None:
        self.ctx = ctx
        self.study = study
        self.target = target
        self.console = console
        self.seen: set[int] = set()
        self.metric = ctx.resolved.objective.name
        self.live = Live(Text(""), console=console, refresh_per_second=4, transient=True) if console.is_terminal else None
        self.started = time.time()
        # Trials finished before this run started are not announced again.
        for t in study.get_trials(deepcopy=False):
            if t.state.is_finished():
                self.seen.add(t.number)

    def __enter__(self) -> LiveStatus:
        if self.live is not None:
            self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.live is not None:
            self.live.__exit__(*exc)

    def _announce(self, t: optuna.trial.FrozenTrial) -> None:
        seconds = t.user_attrs.get("seconds")
        took = f" in {seconds:.0f}s" if seconds is not None else ""
        params = fmt_params(user_params(t.params))
        if t.state == TrialState.COMPLETE:
            notes = [n for n, on in (("start configuration", t.user_attrs.get("start_from") is not None),
                                     (f"ended by {t.user_attrs.get('stopped')}", bool(t.user_attrs.get("stopped")))) if on]
            note = f" ({'; '.join(notes)})" if notes else ""
            line = f"trial {t.number:>3} [green]complete[/] {self.metric}={t.value:.4f}{took}{note}  [dim]{params}[/]"
        elif t.state == TrialState.PRUNED:
            last = max(t.intermediate_values) if t.intermediate_values else None
            value = f" at {self.metric}={t.intermediate_values[last]:.4f}" if last is not None else ""
            line = f"trial {t.number:>3} [yellow]pruned[/]{value}{took}  [dim]{params}[/]"
        else:
            if t.user_attrs.get("surplus"):
                return
            line = f"trial {t.number:>3} [red]failed[/]: {t.user_attrs.get('fail_reason', 'unknown reason')}  [dim]{params}[/]"
        # A log (CI, `| tee`) gets each trial on one line, however long; a terminal wraps.
        self.console.print(line, highlight=False, soft_wrap=not self.console.is_terminal)

    def refresh(self) -> None:
        try:
            trials = self.study.get_trials(deepcopy=False)
        except Exception:  # storage hiccup: try again next tick
            return
        for t in sorted(trials, key=lambda t: t.number):
            if t.state.is_finished() and t.number not in self.seen:
                self.seen.add(t.number)
                self._announce(t)
        if self.live is None:
            return
        finished = sum(1 for t in trials if counts_toward_budget(t))
        complete = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
        best = ""
        if complete:
            maximize = self.ctx.resolved.objective.direction == "maximize"
            b = (max if maximize else min)(complete, key=lambda t: t.value)
            best = f" · best {self.metric} {b.value:.4f} (trial {b.number})"
        running = []
        for path in sorted((self.ctx.run_dir / "progress").glob("worker-*.json")):
            try:
                p = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if time.time() - p.get("updated", 0) > 120:
                continue
            bits = [f"trial {p.get('trial')}"]
            if "epoch" in p:
                bits.append(f"epoch {p['epoch'] + 1}")
            if "step" in p and "total" in p:
                bits.append(f"step {p['step']}/{p['total']}")
            if "loss" in p:
                bits.append(f"loss {p['loss']:.3f}")
            if "value" in p:
                bits.append(f"{self.metric} {p['value']:.4f}")
            running.append(" ".join(bits))
        elapsed = time.time() - self.started
        text = Text.from_markup(
            f"[bold]{finished}/{self.target}[/] trials{best} · {elapsed:.0f}s"
            + ("".join(f"\n  [cyan]▸[/] {r}" for r in running))
        )
        self.live.update(text)
