"""The rich summary printed at the end of ``automl run``: the best trial and its
hyperparameters, the exported model's metrics against the classical baseline, where the
model is, and which hyperparameters mattered. It reads the same
:class:`~automl.results.RunResults` as the leaderboard and the HTML report."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.columns import Columns
from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from automl.privacy import describe
from automl.results._formats import NOT_PRIVATE, choice_note, ensemble_verdict, fmt_members, fmt_seconds, fmt_value
from automl.results._gather import gather, importances  # noqa: F401  (importances: kept for callers of automl.summary.importances)
from automl.results.report import fmt_gain, fmt_metric, metric_rows


class RunSummary:
    """A rich renderable of a run's results (fits 80 columns and up)."""

    def __init__(self, results: Any, *, interrupted: bool = False, seconds: float | None = None) -> None:
        self.r = results
        self.interrupted = interrupted
        self.seconds = seconds

    def _head(self) -> Table:
        r = self.r
        counts = r.counts()
        head = Table.grid(padding=(0, 2))
        head.add_column(style="bold", no_wrap=True)
        head.add_column(overflow="fold")
        head.add_row("run", str(r.run_dir))
        seconds = self.seconds if self.seconds is not None else r.total_seconds
        trials = f"{counts['complete']} complete, {counts['pruned']} pruned, {counts['failed']} failed in {fmt_seconds(seconds)}"
        head.add_row("trials", Text(trials + (" (interrupted)" if self.interrupted else "")))
        best = r.best
        if best is None:
            head.add_row("best", Text("no trial completed" + (f"; {r.untrained}" if r.untrained else ""), style="yellow"))
        else:
            found = f", found after {fmt_seconds(r.seconds_to_best)}" if r.seconds_to_best is not None else ""
            line = Text.assemble(f"trial {best.number}: {r.objective} = ", (fmt_metric(best.value), "bold green"), f" (validation){found}")
            head.add_row("best", line)
        if r.baseline_value is not None:
            name = str((r.baseline or {}).get("name", "baseline"))
            private = f" {NOT_PRIVATE}" if r.privacy else ""
            head.add_row("baseline", Text(f"{name}: {r.objective} = {fmt_metric(r.baseline_value)} (validation){private}"))
        if r.ensemble and r.ensemble.get("members"):
            ens, held = r.ensemble, r.ensemble.get("held_out") or {}
            verdict = ensemble_verdict(ens, r.exported)
            head.add_row("ensemble", Text(
                f"{fmt_members(ens['members'])}: {r.objective} = {fmt_metric((ens.get('validation') or {}).get(r.objective))} "
                f"(validation); held-out half {fmt_metric(held.get('ensemble'))} vs {fmt_metric(held.get('single_model'))} "
                f"({held.get('single')}): {verdict}"
            ))
        if r.privacy:
            head.add_row("privacy", Text(describe(r.privacy)))
        positive = r.positive_label
        if positive is not None:
            column = ((r.run_info.get("recipe") or {}).get("data") or {}).get("label_column")
            head.add_row("positive class", Text(f"{positive!r}" + (f" (column '{column}')" if column else "")))
        if r.best_export and r.run_dir is not None:
            where = r.run_dir / "best"
            why = choice_note(r.ensemble, r.exported)
            head.add_row("exported", Text(r.exported_label + (f" ({why})" if why else "")))
            head.add_row("model", Text.assemble((str(where), "cyan"), "\n", (f"automl predict {where} FILE", "dim")))
        return head

    def _params(self) -> Table | None:
        r = self.r
        best = r.best
        if best is None:
            return None
        export = r.best_export or {}
        params = (export.get("params") if export.get("trial") == best.number else None) or best.params
        title = f"hyperparameters (trial {best.number})" if r.trial_exported else f"hyperparameters (best trial {best.number}, not exported)"
        table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
        table.add_column("name")
        table.add_column("value", justify="right")
        for name, value in sorted(params.items()):
            table.add_row(Text(name), Text(fmt_value(value)))
        return table

    def _metrics(self) -> Table | None:
        r = self.r
        rows = metric_rows(r)
        if not rows:
            return None
        has_test = any(m.test is not None for m in rows)
        table = Table(title=f"metrics of the exported model ({r.exported_label})", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
        table.add_column("metric")
        table.add_column("valid.", justify="right")
        if has_test:
            table.add_column("test", justify="right")
        if r.baseline:
            table.add_column("baseline", justify="right", style="dim")
            table.add_column("Δ", justify="right")
        for m in rows:
            cells: list[Any] = [Text(m.name, style="bold" if m.name == r.objective else ""), fmt_value(m.validation)]
            if has_test:
                cells.append(fmt_value(m.test))
            if r.baseline:
                style = "" if m.gain is None or abs(m.gain) < 1e-9 else "green" if m.gain > 0 else "red"
                cells += [fmt_value(m.baseline), Text(fmt_gain(m.gain), style=style)]
            table.add_row(*cells)
        if r.baseline:
            table.caption = f"Δ: {'test' if has_test else 'validation'} vs baseline, + is better" + (" (baseline not private)" if r.privacy else "")
            table.caption_justify = "left"
        return table

    def _importances(self, width: int) -> Table | None:
        imp = self.r.importances
        if not imp:
            return None
        table = Table(title="what mattered (fANOVA importance)", title_justify="left", box=None, pad_edge=False, show_header=False)
        table.add_column(no_wrap=True)
        table.add_column(justify="right")
        table.add_column(no_wrap=True, style="magenta")
        name_width = max(len(n) for n in imp)
        bar_room = max(8, min(40, width - name_width - 16))
        for name, value in imp.items():
            table.add_row(name, f"{value:.2f}", "█" * max(1, int(round(value * bar_room))))
        return table

    def __rich_console__(self, console: Console, options: Any) -> Any:
        width = options.max_width
        parts: list[Any] = [self._head()]
        tables = [t for t in (self._params(), self._metrics()) if t is not None]
        if tables:
            parts.append(Text(""))
            parts.append(Columns(tables, padding=(0, 4)))
        calibration = (self.r.best_export or {}).get("calibration") or {}
        if calibration.get("threshold") is not None:
            parts.append(Text(f"decision threshold tuned on validation: {calibration['threshold']:.4f}"))
        imp = self._importances(width)
        if imp is not None:
            parts.append(Text(""))
            parts.append(imp)
        parts.append(Text(""))
        run = self.r.run_dir
        parts.append(Text(f"leaderboard: automl leaderboard {run}\nreport:      {run / 'report.html' if run else 'automl report RUN_DIR'}", style="dim"))
        yield Group(*parts)


def summary_renderable(outcome: Any, study: Any = None) -> Any:
    """The summary of a finished :class:`~automl.search.supervisor.RunOutcome`."""
    results = gather(outcome.run_dir, study=study)
    return RunSummary(results, interrupted=outcome.summary.interrupted, seconds=outcome.seconds)


def print_summary(outcome: Any, console: Console | None = None) -> None:
    console = console or Console()
    body = summary_renderable(outcome, getattr(outcome, "study", None))
    console.print(Panel(body, title=f"automl · {outcome.study_name}", title_align="left", border_style="blue"))
