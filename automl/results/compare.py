"""Runs side by side (``automl compare``): did a change of backbone or space help?

Each run is a column; the first run is the reference, and the exported model's validation
value of every other run is shown with its difference to it. Runs on different data are
shown side by side without a verdict.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich import box
from rich.console import Console, ConsoleOptions, RenderResult
from rich.table import Table
from rich.text import Text

from automl.results._formats import Column, fmt_params, fmt_seconds, fmt_value, render
from automl.results._gather import RunResults


def _params(value: Any) -> str:
    return fmt_params(value) if isinstance(value, dict) else fmt_value(value)


def _share(value: Any) -> str:
    return "-" if value is None else f"{value:.0%}"


def _metrics(value: Any) -> str:
    if not value:
        return "-"
    return " ".join(f"{k}={fmt_value(v)}" for k, v in value.items())


#: The facts compared, in order: (key, label, how people see it).
FIELDS: tuple[Column, ...] = (
    Column("run", "run"),
    Column("study", "study"),
    Column("task", "task"),
    Column("backbone", "backbone"),
    Column("objective", "objective"),
    Column("exported", "exported model"),
    Column("exported_value", "exported (validation)", numeric=True),
    Column("delta", "vs first run", numeric=True),
    Column("privacy", "privacy (search ε, δ)"),
    Column("best_value", "best trial (validation)", numeric=True),
    Column("best_trial", "best trial", numeric=True),
    Column("trials", "trials finished", numeric=True),
    Column("pruned_share", "pruned", numeric=True, show=_share),
    Column("failed", "failed", numeric=True),
    Column("seconds_to_best", "time to best", numeric=True, show=fmt_seconds),
    Column("seconds", "total time", numeric=True, show=fmt_seconds),
    Column("adapter", "adapter"),
    Column("best_params", "best hyperparameters", show=_params),
    Column("test", "test (exported model)", show=_metrics),
    Column("baseline", "baseline (validation)", numeric=True),
    Column("baseline_test", "baseline (test)", numeric=True),
)


def data_differences(runs: list[RunResults]) -> list[str]:
    """How the runs' data differ, one phrase each; empty when every run was trained and
    scored on the same data. The files' fingerprints decide where every run has them
    (``run.json``), else the files' paths; then the label column."""
    ids = [r.data_identity for r in runs]
    out = []
    if all(i["fingerprint"] for i in ids):
        if len({i["fingerprint"] for i in ids}) > 1:
            shown = " vs ".join(", ".join(i["fingerprint"]) for i in ids)
            out.append(f"the data files' fingerprints differ ({shown})")
    elif all(i["paths"] for i in ids) and len({i["paths"] for i in ids}) > 1:
        out.append("the data files differ (" + " vs ".join(", ".join(i["paths"]) for i in ids) + ")")
    labels = [i["label column"] for i in ids]
    if all(labels) and len(set(labels)) > 1:
        out.append("the label columns differ (" + " vs ".join(map(str, labels)) + ")")
    return out


def run_record(r: RunResults, reference: RunResults | None = None) -> dict[str, Any]:
    """One run's comparable facts; *reference* (the first run) gives ``delta``."""
    counts = r.counts()
    finished = counts["complete"] + counts["pruned"]
    best = r.best
    export = r.best_export or {}
    test = r.test_metrics
    baseline_test = ((r.baseline or {}).get("test") or {}).get(r.objective)
    delta = None
    value, first = r.exported_value, reference.exported_value if reference is not None else None
    if (reference is not None and reference is not r and value is not None and first is not None
            and reference.objective == r.objective and not data_differences([reference, r])):
        delta = value - first
    params = dict(export.get("params") or {}) if export.get("trial") == (best.number if best else None) else {}
    if not params and best is not None:
        params = dict(best.params)
    return {
        "run": r.run_dir.name if r.run_dir else r.study_name,
        "run_dir": str(r.run_dir) if r.run_dir else None,
        "study": r.study_name,
        "task": r.task,
        "backbone": r.backbone,
        "objective": f"{r.objective} ({'max' if r.maximize else 'min'})",
        "exported": r.exported_label if r.best_export else None,
        "exported_value": r.exported_value,
        "privacy": (f"ε {r.privacy['search_epsilon']:.2f}, δ {r.privacy['delta']:.2g}" if r.privacy else "not private"),
        "best_value": best.value if best else None,
        "delta": delta,
        "best_trial": best.number if best else None,
        "trials": finished,
        "pruned_share": counts["pruned"] / finished if finished else None,
        "failed": counts["failed"],
        "seconds_to_best": r.seconds_to_best,
        "seconds": r.total_seconds,
        "adapter": params.get("adapter", export.get("adapter")),
        "best_params": params,
        "test": test,
        "test_objective": test.get(r.objective),
        "baseline": r.baseline_value,
        "baseline_test": baseline_test,
    }


@dataclass(frozen=True)
class Comparison:
    """Several runs side by side: a rich renderable, or text for scripts via :meth:`render`."""

    runs: list[RunResults]
    records: list[dict[str, Any]]

    def render(self, fmt: str) -> str:
        columns = list(FIELDS[:-3]) + [Column("test_objective", "test objective", numeric=True), *FIELDS[-2:]]
        return render(fmt, columns, self.records)

    def _winner(self) -> int | None:
        """Index of the run whose exported model has the best validation value (same
        objective and same data only: otherwise the scores are not comparable)."""
        scored = [(i, rec["exported_value"]) for i, rec in enumerate(self.records) if rec["exported_value"] is not None]
        if not scored or len({r.objective for r in self.runs}) != 1 or data_differences(self.runs):
            return None
        pick = max if self.runs[0].maximize else min
        return pick(scored, key=lambda x: x[1])[0]

    def table(self) -> Table:
        table = Table(box=box.SIMPLE_HEAD, title="runs compared", title_justify="left", pad_edge=False)
        table.add_column("", style="bold", no_wrap=True)
        winner = self._winner()
        for i, rec in enumerate(self.records):
            header = Text(str(rec["run"]) + (" ★" if i == winner else ""), style="bold green" if i == winner else "bold")
            table.add_column(header, overflow="fold", min_width=12)
        for field in FIELDS[1:]:
            cells = []
            for i, rec in enumerate(self.records):
                value = rec.get(field.key)
                text = Text(field.text(value))
                if field.key == "delta" and value is not None:
                    better = self.runs[i].is_better(value, 0.0) if value else None
                    text = Text(f"{value:+.4g}", style="green" if better else "red" if better is False else "")
                elif field.key == "exported_value" and i == winner:
                    text.stylize("bold green")
                cells.append(text)
            if field.key == "delta" and len(self.records) < 2:
                continue
            table.add_row(field.header, *cells)
        return table

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self.table()
        differences = data_differences(self.runs) if len(self.runs) > 1 else []
        if differences:
            yield Text(
                f"These runs were trained on different data: {'; '.join(differences)}. Their scores are not "
                "comparable, so no run is ranked.",
                style="yellow",
            )
            return
        winner = self._winner()
        if winner is not None and len(self.records) > 1:
            first = self.records[0]
            best = self.records[winner]
            if winner == 0:
                yield Text(f"The first run's exported model ({first['run']}) is still the best; the changes did not help on validation.")
            else:
                yield Text(
                    f"{best['run']} is best: its exported model scores {fmt_value(best['exported_value'])} vs "
                    f"{fmt_value(first['exported_value'])} for {first['run']} ({best['delta']:+.4g}, validation)."
                )


def compare(runs: list[RunResults]) -> Comparison:
    """Compare *runs*; the first is the reference for ``vs first run``."""
    reference = runs[0] if runs else None
    return Comparison(runs=runs, records=[run_record(r, reference) for r in runs])


__all__ = ["Comparison", "compare", "data_differences", "run_record"]
