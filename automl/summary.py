"""The rich summary printed at the end of ``automl run``."""

from __future__ import annotations

import json
from typing import Any

from rich.columns import Columns
from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


def importances(study: Any) -> dict[str, float]:
    """Parameter importances (fANOVA), or {} when there are too few complete trials."""
    import warnings

    import optuna

    complete = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))]
    if len(complete) < 3:
        return {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return dict(optuna.importance.get_param_importances(study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0)))
    except Exception:
        return {}


def summary_renderable(outcome: Any, study: Any = None) -> Group:
    s = outcome.summary
    parts: list[Any] = []
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    head.add_row("run", str(outcome.run_dir))
    head.add_row(
        "trials",
        f"{s.n_complete} complete, {s.n_pruned} pruned, {s.n_failed} failed in {outcome.seconds:.0f}s"
        + (" (interrupted)" if s.interrupted else ""),
    )
    meta: dict[str, Any] = {}
    if outcome.best_dir is not None and (outcome.best_dir / "automl.json").exists():
        meta = json.loads((outcome.best_dir / "automl.json").read_text())
    if s.best_trial is None:
        head.add_row("best", "no trial completed")
    else:
        metric = meta.get("objective", {}).get("metric", "objective")
        head.add_row("best", f"trial {s.best_trial}: {metric} = {s.best_value:.4f} (validation)")
    if outcome.baseline:
        b = outcome.baseline
        if b.get("value") is not None:
            head.add_row("baseline", f"{b['name']}: {b['objective']} = {b['value']:.4f} (validation)")
    if outcome.best_dir is not None:
        head.add_row("model", f"{outcome.best_dir}  (automl predict {outcome.best_dir} FILE)")
    parts.append(head)

    if meta:
        params = Table(title="best hyperparameters", title_justify="left", show_edge=False)
        params.add_column("name")
        params.add_column("value", justify="right")
        for name, value in sorted(meta.get("params", {}).items()):
            params.add_row(name, _fmt(value))
        metrics = Table(title="metrics of the best model", title_justify="left", show_edge=False)
        metrics.add_column("metric")
        metrics.add_column("validation", justify="right")
        metrics.add_column("test", justify="right")
        if outcome.baseline:
            metrics.add_column("baseline test", justify="right", style="dim")
        val = meta.get("metrics", {}).get("validation", {})
        test = meta.get("metrics", {}).get("test", {})
        btest = (outcome.baseline or {}).get("test") or {}
        for name in sorted(set(val) | set(test)):
            row = [name, _fmt(val.get(name)), _fmt(test.get(name))]
            if outcome.baseline:
                row.append(_fmt(btest.get(name)))
            metrics.add_row(*row)
        parts.append(Columns([params, metrics], padding=(1, 4)))
        if meta.get("calibration", {}).get("threshold") is not None:
            parts.append(f"decision threshold tuned on validation: {meta['calibration']['threshold']:.4f}")
    if study is not None:
        imp = importances(study)
        if imp:
            table = Table(title="parameter importances (fANOVA)", title_justify="left", show_edge=False)
            table.add_column("parameter")
            table.add_column("importance", justify="right")
            table.add_column("")
            for name, value in imp.items():
                table.add_row(name, f"{value:.2f}", "█" * max(1, int(round(value * 30))))
            parts.append(table)
    parts.append(f"[dim]leaderboard: automl leaderboard {outcome.run_dir} · report: automl report {outcome.run_dir}[/]")
    return Group(*parts)


def print_summary(outcome: Any, console: Console | None = None) -> None:
    console = console or Console()
    body = summary_renderable(outcome, getattr(outcome, "study", None))
    console.print(Panel(body, title=f"automl · {outcome.study_name}", title_align="left"))
