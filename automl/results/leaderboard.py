"""The trials of a run as a table, best first (``automl leaderboard``)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from rich import box
from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from automl.errors import UserError, did_you_mean
from automl.results._formats import (
    NOT_PRIVATE,
    Column,
    choice_note,
    ensemble_verdict,
    fmt_members,
    fmt_params,
    fmt_seconds,
    note_start,
    render,
)
from automl.results._gather import STATE_ORDER, RowState, RunResults, TrialRow

STATE_STYLES = {
    RowState.COMPLETE: "green",
    RowState.PRUNED: "yellow",
    RowState.FAILED: "red",
    RowState.RUNNING: "cyan",
    RowState.WAITING: "dim",
    RowState.BASELINE: "magenta",
    RowState.ENSEMBLE: "blue",
}
#: States ``--state`` accepts.
FILTER_STATES = ("complete", "pruned", "failed", "running", "waiting")
BEST_MARK = "★"
PARAM_STYLE = "cyan"
NOTE_WIDTH = 20
#: Characters of a note the terminal table shows: a blended baseline's note (each family
#: named, then its out-of-fold figures) ran to 25 lines of a narrow column. The whole note
#: is in ``--format markdown`` (csv, json) and the report.
NOTE_CHARS = 160
PARAMS_WIDTH = 24


@dataclass(frozen=True)
class Leaderboard:
    """Leaderboard rows of one run; a rich renderable, or text for scripts via :meth:`render`."""

    results: RunResults
    columns: list[Column]
    records: list[dict[str, Any]]

    def render(self, fmt: str) -> str:
        """``csv``, ``json`` or ``markdown`` text of the same rows."""
        return render(fmt, self.columns, self.records)

    def table(self, width: int | None = None, console: Console | None = None) -> Table:
        """The terminal table; at *width* columns, less important ones are left out and
        the hyperparameters fold into one column when they do not fit side by side."""
        if width is None:
            return self._table(self._all())
        console = console or Console(width=width, file=io.StringIO())
        note = [c for c in self.columns if c.key == "reason"] if any(rec.get("reason") for rec in self.records) else []
        room = width - (NOTE_WIDTH + 3 if note else 0)
        for columns in self._candidates():
            table = self._table(columns)
            if Measurement.get(console, console.options.update_width(10_000), table).maximum <= room:
                return self._table(columns + note)
        # Narrow: the note goes under the hyperparameters; a private trial's ε stays.
        lead = [c for c in columns if c.key != "params"][:4] + [c for c in columns if c.key == "epsilon"]
        return self._table(lead + [Column("params", "hyperparameters · note")] + columns[-1:], note_in_params=True)

    def _all(self) -> list[Column]:
        return [c for c in self.columns if c.key != "best"]

    def _candidates(self) -> Iterator[list[Column]]:
        """Column sets from the richest to the leanest (without the note column)."""
        columns = [c for c in self._all() if c.key != "reason"]
        yield columns
        droppable = [c for c in reversed(columns) if c.key in self.results.metric_names[1:]]
        droppable += [c for c in columns if c.key in ("steps", "epochs_run")]
        for c in droppable:
            columns = [x for x in columns if x is not c]
            yield columns
        params = [c for c in columns if c.style == PARAM_STYLE]
        if params:
            at = columns.index(params[0])
            rest = [c for c in columns if c.style != PARAM_STYLE]
            columns = rest[:at] + [Column("params", "hyperparameters")] + rest[at:]
            yield columns

    def _table(self, shown: list[Column], note_in_params: bool = False) -> Table:
        r = self.results
        counts = r.counts()
        caption = ", ".join(f"{n} {state}" for state, n in counts.items() if n)
        caption = (caption or (f"no trials: {r.untrained}" if r.untrained else "no trials yet")) + (f" · {BEST_MARK} exported model" if r.exported else f" · {BEST_MARK} best trial" if r.best else "")
        if (note_in_params or any(c.key == "reason" for c in shown)) and any(note_start(str(rec.get("reason") or ""), NOTE_CHARS) for rec in self.records):
            caption += " · a note cut with … is whole in --format markdown"
        if r.privacy:
            caption += "\n" + privacy_line(r.privacy)
        table = Table(
            title=f"{r.study_name} · {r.objective} ({'higher' if r.maximize else 'lower'} is better)",
            caption=caption,
            box=box.SIMPLE_HEAD,
            title_justify="left",
            caption_justify="left",
            pad_edge=False,
        )
        min_widths = {"reason": NOTE_WIDTH, "params": PARAMS_WIDTH}
        for c in shown:
            table.add_column(
                c.header,
                justify="right" if c.numeric else "left",
                style=c.style,
                no_wrap=c.key not in min_widths,
                min_width=min_widths.get(c.key),
                overflow="fold",
            )
        for rec in self.records:
            cells: list[Any] = []
            for c in shown:
                value = rec.get(c.key)
                if c.key == "trial":
                    cells.append(Text(f"{value}{' ' + BEST_MARK if rec.get('best') else ''}", style="bold" if rec.get("best") else ""))
                elif c.key == "state":
                    cells.append(Text(str(value), style=STATE_STYLES.get(RowState(value), "")))
                elif c.key == "params":
                    cell = Text(self._params_text(rec))
                    if note_in_params and rec.get("reason"):
                        cell.append(("\n" if cell else "") + _note(rec["reason"]), style=STATE_STYLES.get(RowState(rec["state"]), "dim"))
                    cells.append(cell)
                elif c.key == "reason":
                    cells.append(Text(_note(value or "")))
                else:
                    cells.append(Text(c.text(value)))  # Text: a label like "[red]" is not markup
            style = "bold" if rec.get("best") else "italic" if rec["state"] in (RowState.BASELINE.value, RowState.ENSEMBLE.value) else None
            table.add_row(*cells, style=style)
        return table

    def _params_text(self, rec: dict[str, Any]) -> str:
        return fmt_params({c.header: rec[c.key] for c in self.columns if c.style == PARAM_STYLE and rec.get(c.key) is not None})

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self.table(options.max_width, console)


def _note(note: str) -> str:
    start = note_start(note, NOTE_CHARS)
    return note if start is None else start + " …"


def _record(r: RunResults, t: TrialRow, param_keys: dict[str, str], best: TrialRow | None) -> dict[str, Any]:
    rec: dict[str, Any] = {"rank": None, "trial": t.number, "state": t.state.value}
    metrics = dict(t.metrics)
    if t.value is not None:
        metrics.setdefault(r.objective, t.value)
        if t.state is not RowState.COMPLETE:
            metrics[r.objective] = t.value
    for name in r.metric_names:
        rec[name] = metrics.get(name)
    for name, key in param_keys.items():
        rec[key] = t.params.get(name)
    if r.privacy:
        rec["epsilon"] = t.epsilon
    exported = r.exported in (None, "trial")
    rec.update(epochs_run=t.epochs, steps=t.steps, seconds=t.seconds, reason=t.reason, best=exported and best is not None and t.number == best.number)
    return rec


def _baseline_record(r: RunResults, param_keys: dict[str, str]) -> dict[str, Any] | None:
    if not r.baseline:
        return None
    rec: dict[str, Any] = {"rank": None, "trial": "baseline", "state": RowState.BASELINE.value}
    validation = r.baseline.get("validation") or {}
    for name in r.metric_names:
        rec[name] = validation.get(name)
    if rec.get(r.objective) is None:
        rec[r.objective] = r.baseline_value
    rec.update(dict.fromkeys(param_keys.values()))
    # What decides the row goes first, the family (a blend's names and figures: long) after,
    # so that the terminal table's cut note (NOTE_CHARS) keeps it.
    parts = []
    if r.privacy:
        parts.append(NOT_PRIVATE)
        rec["epsilon"] = None
    why = choice_note(r.ensemble, r.exported)
    if why:
        parts.append(f"exported: {why}")
    note = "; ".join([*parts, r.baseline.get("name") or "baseline"]) if parts else r.baseline.get("name")
    rec.update(epochs_run=None, steps=None, seconds=r.baseline.get("seconds"), reason=note, best=r.exported == "baseline")
    return rec


def _ensemble_record(r: RunResults, param_keys: dict[str, str]) -> dict[str, Any] | None:
    """The ensemble of the run (validation metrics with its weights); the note names the
    members and weights and the held-out check that decides whether it is exported."""
    ens = r.ensemble
    if not ens or not ens.get("members"):
        return None
    rec: dict[str, Any] = {"rank": None, "trial": "ensemble", "state": RowState.ENSEMBLE.value}
    validation = ens.get("validation") or {}
    for name in r.metric_names:
        rec[name] = validation.get(name)
    rec.update(dict.fromkeys(param_keys.values()))
    if r.privacy:
        rec["epsilon"] = None
    held = ens.get("held_out") or {}
    verdict = ensemble_verdict(ens, r.exported)
    note = (
        f"{fmt_members(ens['members'])}; held-out half {r.objective} {_num(held.get('ensemble'))} vs "
        f"{_num(held.get('single_model'))} ({held.get('single')}): {verdict}"
    )
    rec.update(epochs_run=None, steps=None, seconds=ens.get("seconds"), reason=note, best=r.exported == "ensemble")
    return rec


def privacy_line(info: dict[str, Any]) -> str:
    """The run's privacy in one short line (the table's caption): the search's ε, δ and
    the accounting mode with its budget."""
    mode = f"budget ε = {info['epsilon']:g} for the whole search" if info["accounting"] == "search" else f"ε = {info['epsilon']:g} per trial"
    return (
        f"privacy: search ε = {info['search_epsilon']:.2f}, δ = {info['delta']:.2g} "
        f"(accounting: {info['accounting']}, {mode}); ε column: each trial's own"
    )


def _num(value: Any) -> str:
    return "-" if value is None else f"{value:.4g}"


def _default_key(r: RunResults) -> Any:
    sign = -1 if r.maximize else 1

    def key(rec: dict[str, Any]) -> tuple[Any, ...]:
        value = rec.get(r.objective)
        number = rec["trial"] if isinstance(rec["trial"], int) else -1
        return (STATE_ORDER[RowState(rec["state"])], value is None, sign * value if value is not None else 0, number)

    return key


def _sort(records: list[dict[str, Any]], column: str, r: RunResults, reverse: bool) -> list[dict[str, Any]]:
    direction = r.metric_directions.get(column, "minimize" if column in r.metric_names else "ascending")
    descending = direction == "maximize"
    present = [x for x in records if x.get(column) is not None]
    missing = [x for x in records if x.get(column) is None]

    def key(rec: dict[str, Any]) -> tuple[int, Any]:
        value = rec[column]
        return (0, value) if isinstance(value, int | float) and not isinstance(value, bool) else (1, str(value))

    present.sort(key=key, reverse=descending != reverse)
    return present + missing


def leaderboard(
    results: RunResults,
    *,
    state: str | None = None,
    top: int | None = None,
    sort: str | None = None,
    reverse: bool = False,
    baseline: bool = True,
) -> Leaderboard:
    """The run's trials, best first: complete by objective, then pruned, running, failed.

    Args:
        state: only trials in this state (``complete``, ``pruned``, ``failed``, ``running``);
            the baseline row is shown only without a state filter.
        top: at most this many trials (after filtering and sorting).
        sort: order by this column instead (metrics best first, other columns ascending).
        reverse: reverse the order.
        baseline: show the task's classical baseline and the ensemble as rows.
    """
    r = results
    if state is not None and state not in FILTER_STATES:
        raise UserError(f"unknown state '{state}'; expected one of {', '.join(FILTER_STATES)}", field="--state")
    reserved = {"rank", "trial", "state", "epochs_run", "steps", "params", "seconds", "reason", "best", *r.metric_names}
    if r.privacy:
        reserved.add("epsilon")
    param_keys = {name: f"param_{name}" if name in reserved else name for name in r.param_names}
    best = r.best
    rows = [_record(r, t, param_keys, best) for t in r.trials]
    rows.sort(key=_default_key(r))
    rank = 0
    for rec in rows:
        if rec["state"] == RowState.COMPLETE.value and rec.get(r.objective) is not None:
            rank += 1
            rec["rank"] = rank
    columns = _columns(r, param_keys)
    keys = [c.key for c in columns]
    if sort is not None:
        if sort in ("objective", "value"):
            sort = r.objective
        if sort not in keys:
            raise UserError(f"no column '{sort}'{did_you_mean(sort, keys)}; columns: {', '.join(keys)}", field="--sort")
        rows = _sort(rows, sort, r, reverse)
    elif reverse:
        rows.reverse()
    if state is not None:
        rows = [x for x in rows if x["state"] == state]
    if top is not None:
        rows = rows[:top]
    extra = [_baseline_record(r, param_keys), _ensemble_record(r, param_keys)] if baseline and state is None else []
    for base in extra:
        if base is not None:
            rows = _place(rows, base, sort or r.objective, r, reverse)
    return Leaderboard(results=r, columns=columns, records=rows)


def _place(rows: list[dict[str, Any]], base: dict[str, Any], column: str, r: RunResults, reverse: bool) -> list[dict[str, Any]]:
    """Insert the baseline (or ensemble) row where its *column* value belongs (at the end when it has none)."""
    value = base.get(column)
    if value is None or column not in r.metric_names:
        return rows + [base]
    for i, rec in enumerate(rows):
        other = rec.get(column)
        if rec["state"] not in (RowState.COMPLETE.value, RowState.BASELINE.value) or other is None:
            return rows[:i] + [base] + rows[i:]
        if r.is_better(value, other, column) != reverse:
            return rows[:i] + [base] + rows[i:]
    return rows + [base]


def _columns(r: RunResults, param_keys: dict[str, str]) -> list[Column]:
    cols = [Column("rank", "#", numeric=True, style="dim"), Column("trial", "trial"), Column("state", "state")]
    cols.append(Column(r.objective, r.objective, numeric=True, style="bold"))
    cols += [Column(name, name, numeric=True) for name in r.metric_names[1:]]
    if r.privacy:  # each private trial's own ε (the search's is in the caption)
        cols.append(Column("epsilon", "ε", numeric=True, show=fmt_epsilon))
    cols += [Column(key, name, numeric=True, style=PARAM_STYLE) for name, key in param_keys.items()]
    cols += [
        Column("epochs_run", "epochs run", numeric=True),
        Column("steps", "steps", numeric=True),
        Column("seconds", "time", numeric=True, show=fmt_seconds),
        Column("reason", "note", style="dim"),
        Column("best", "best"),
    ]
    return cols


def fmt_epsilon(value: Any) -> str:
    return "-" if value is None else f"{value:.2f}"


__all__ = ["FILTER_STATES", "Leaderboard", "leaderboard", "privacy_line"]
