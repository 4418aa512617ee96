"""The run report (``automl report``, and the end of ``automl run``).

Writes ``<run>/report.html`` (self-contained: inline CSS, PNG plots embedded as base64 data
URIs, no scripts, nothing fetched), ``<run>/report.md`` (plots referenced under
``plots/``) and ``<run>/report.json``, all from one :class:`RunResults`. Every string that
reaches the HTML is escaped.
"""

from __future__ import annotations

import base64
import html
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from automl import importance as importance_mod
from automl.errors import UserError
from automl.export import privacy_facts, privacy_section
from automl.onnx_model import FIGURE_HEADERS, figure_rows, figures_markdown
from automl.results._formats import NOT_PRIVATE, choice_note, fmt_members, fmt_seconds, fmt_value, md_cell, note_start, short_name
from automl.results._gather import RowState, RunResults, gather
from automl.results.leaderboard import Leaderboard, leaderboard
from automl.results.plots import save_plots


@dataclass(frozen=True)
class ReportFiles:
    html: Path
    markdown: Path
    json: Path


@dataclass(frozen=True)
class MetricRow:
    """One metric of the best model: validation, test, baseline test and the difference."""

    name: str
    validation: float | None
    test: float | None
    baseline: float | None
    #: test minus baseline test, signed so that positive means better.
    gain: float | None


def metric_rows(r: RunResults) -> list[MetricRow]:
    """The best model's metrics against the baseline (same data for every view)."""
    export = r.best_export or {}
    metrics = export.get("metrics") or {}
    best = r.best
    validation = dict(metrics.get("validation") or (best.metrics if best else {}))
    test = dict(metrics.get("test") or {})
    base = dict(((r.baseline or {}).get("test") or {}) if test else ((r.baseline or {}).get("validation") or {}))
    rows = []
    for name in [n for n in r.metric_names if n in validation or n in test]:
        ours = test.get(name, validation.get(name) if not test else None)
        gain = None
        if ours is not None and base.get(name) is not None:
            diff = ours - base[name]
            gain = diff if r.metric_directions.get(name, "maximize") == "maximize" else -diff
        rows.append(MetricRow(name, validation.get(name), test.get(name), base.get(name), gain))
    return rows


def fmt_metric(value: float | None) -> str:
    """A headline number: 4 decimals for scores, 4 significant digits for large values."""
    if value is None:
        return "-"
    return f"{value:.4f}" if abs(value) < 100 else f"{value:.4g}"


def headline(r: RunResults) -> list[tuple[str, str, str]]:
    """Key numbers as (label, value, note)."""
    best = r.best
    counts = r.counts()
    out = []
    test = r.test_metrics.get(r.objective)
    # The exported model leads: it is what the run delivers. The best trial follows (it
    # may not be the export: the baseline or an ensemble can win).
    if r.exported is not None:
        value, split = (test, "test") if test is not None else (r.exported_value, "validation")
        out.append((f"exported model {r.objective}", fmt_metric(value), f"{split} · {r.exported_label} · best/"))
    if best is not None:
        out.append((f"best trial {r.objective}", fmt_metric(best.value), f"validation · trial {best.number}"))
    else:
        out.append((f"best trial {r.objective}", "-", r.untrained or "no trial completed yet"))
    if r.baseline_value is not None:
        btest = ((r.baseline or {}).get("test") or {}).get(r.objective)
        note = short_name(str((r.baseline or {}).get("name", "classical baseline"))) + (f" {NOT_PRIVATE}" if r.privacy else "")
        out.append(("baseline", fmt_metric(btest if btest is not None and test is not None else r.baseline_value), note + (" · test" if btest is not None and test is not None else " · validation")))
    if r.ensemble and r.ensemble.get("members"):
        ens = r.ensemble
        value = (ens.get("test") or {}).get(r.objective) if test is not None else None
        note = fmt_members(ens["members"]) + (" · test" if value is not None else " · validation")
        note += " · exported" if r.exported == "ensemble" else " · not exported (held-out check)"
        out.append(("ensemble", fmt_metric(value if value is not None else (ens.get("validation") or {}).get(r.objective)), note))
    if r.privacy:
        info = r.privacy
        out.append(("privacy ε (whole search)", f"{info['search_epsilon']:.2f}", f"δ = {info['delta']:.3g} · accounting: {info['accounting']}"))
    finished = counts["complete"] + counts["pruned"]
    out.append(("trials", str(finished), f"{counts['complete']} complete · {counts['pruned']} pruned · {counts['failed']} failed" + (f" · {counts['running']} running" if counts["running"] else "")))
    out.append(("time", fmt_seconds(r.total_seconds), f"best after {fmt_seconds(r.seconds_to_best)}"))
    return out


def calibration_rows(calibration: dict[str, Any]) -> list[tuple[str, str]]:
    """What the task tuned on validation (a threshold, its goal, the positive label...) as
    (setting, value) rows: numbers to 4 significant digits, lists shortened."""
    rows = []
    kinds = calibration.get("column_kinds") or []
    for key, value in calibration.items():
        if key == "column_kinds":
            continue
        if key == "columns" and isinstance(value, list) and len(kinds) == len(value):
            value = [f"{name} ({str(kind).split(':')[0]})" for name, kind in zip(value, kinds, strict=True)]
        if isinstance(value, float):
            text = f"{value:.4g}"
        elif isinstance(value, list | tuple):
            shown = ", ".join(map(str, value[:8]))
            text = f"{len(value)}: {shown}" + (", ..." if len(value) > 8 else "")
        elif isinstance(value, dict):
            text = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in value.items())
        else:
            text = fmt_value(value)
        rows.append((key.replace("_", " "), text))
    return rows


def run_facts(r: RunResults) -> list[tuple[str, str]]:
    """Provenance: study, storage (masked), directories, recipe, seed, remote code."""
    info = r.run_info
    facts = [
        ("study", r.study_name),
        ("task", str(r.task)),
        ("backbone", str(r.backbone)),
        ("objective", f"{r.objective} ({r.direction})"),
        ("storage", str(r.storage or "-")),
        ("run directory", str(r.run_dir or "-")),
        ("recipe file", str(info.get("recipe_path") or "-")),
        ("recipe fingerprint", str(info.get("fingerprint") or "-")),
        ("seed", fmt_value(info.get("seed"))),
        ("started", str(info.get("started") or "-")),
        ("trust_remote_code", "ON: the backbone ran code from its repository" if r.trust_remote_code else "off"),
    ]
    if r.summary.get("interrupted"):
        facts.append(("status", "interrupted; resume with automl run"))
    if r.best_export:
        facts.append(("exported model", f"{r.run_dir / 'best' if r.run_dir else 'best/'} ({r.exported_label})"))
    return facts


# ---------------------------------------------------------------------- HTML

def e(value: Any) -> str:
    """Escape any value for HTML text or an attribute."""
    return html.escape(str(value), quote=True)


CSS = """
:root { --ink:#111827; --muted:#6b7280; --line:#e5e7eb; --soft:#f9fafb; --accent:#2563eb;
        --good:#059669; --bad:#dc2626; --warn:#d97706; --best:#f59e0b; }
* { box-sizing: border-box; }
body { margin:0; font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;
       color:var(--ink); background:#fff; }
main { max-width:1180px; margin:0 auto; padding:32px 28px 64px; }
h1 { font-size:26px; margin:0 0 4px; }
h2 { font-size:19px; margin:40px 0 12px; padding-bottom:6px; border-bottom:2px solid var(--line); }
h3 { font-size:15px; margin:18px 0 8px; color:#374151; }
.sub { color:var(--muted); margin:0 0 20px; }
code, pre, .mono { font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace; font-size:13px; }
pre { background:var(--soft); border:1px solid var(--line); border-radius:8px; padding:12px 14px; overflow:auto; }
.cards { display:grid; grid-template-columns:repeat(auto-fit,minmax(180px,1fr)); gap:12px; }
.card { border:1px solid var(--line); border-radius:10px; padding:12px 16px; background:var(--soft); }
.card .label { color:var(--muted); font-size:12px; text-transform:uppercase; letter-spacing:.04em; }
.card .value { font-size:26px; font-weight:650; margin:2px 0; }
.card .note { color:var(--muted); font-size:13px; }
.grid2 { display:grid; grid-template-columns:repeat(auto-fit,minmax(340px,1fr)); gap:24px; align-items:start; }
table { border-collapse:collapse; width:100%; font-size:13.5px; }
th, td { padding:6px 10px; border-bottom:1px solid var(--line); text-align:left; vertical-align:top; }
th { background:var(--soft); font-weight:600; color:#374151; white-space:nowrap; }
td.num, th.num { text-align:right; font-variant-numeric:tabular-nums; white-space:nowrap; }
.scroll { overflow-x:auto; border:1px solid var(--line); border-radius:8px; }
.scroll table th:first-child, .scroll table td:first-child { padding-left:12px; }
tr.best td { background:#fffbeb; font-weight:600; }
tr.baseline td { background:#ecfdf5; font-style:italic; }
.state { display:inline-block; padding:0 8px; border-radius:999px; font-size:12px; font-weight:600; }
.state.complete { background:#dbeafe; color:#1e40af; } .state.pruned { background:#f3f4f6; color:#4b5563; }
.state.failed { background:#fee2e2; color:#991b1b; } .state.running { background:#cffafe; color:#155e75; }
.state.waiting { background:#f3f4f6; color:#6b7280; } .state.baseline { background:#d1fae5; color:#065f46; }
.state.ensemble { background:#dbeafe; color:#1e40af; }
.good { color:var(--good); } .bad { color:var(--bad); }
.warn { background:#fffbeb; border:1px solid #fcd34d; border-radius:8px; padding:10px 14px; }
figure { margin:0 0 24px; }
figure img { max-width:100%; height:auto; border:1px solid var(--line); border-radius:8px; background:#fff; }
figcaption { color:var(--muted); font-size:13px; margin-top:4px; }
.plots { display:grid; grid-template-columns:repeat(auto-fit,minmax(420px,1fr)); gap:20px; }
.note-cell { color:var(--muted); min-width:380px; max-width:480px; }
.note-cell summary { cursor:pointer; }
figure.wide { grid-column:1 / -1; }
.plots.task { grid-template-columns:repeat(auto-fit,minmax(300px,1fr)); }
.caption { color:var(--muted); font-size:13px; margin:6px 0 0; }
dl.facts { display:grid; grid-template-columns:max-content 1fr; gap:4px 18px; margin:0; }
dl.facts dt { color:var(--muted); } dl.facts dd { margin:0; word-break:break-all; }
footer { margin-top:48px; color:var(--muted); font-size:12px; }
"""


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{e(alt)}">'


#: Report plots shown across the whole page width.
WIDE_PLOTS = ("report-history", "report-slices")


def _figure(path: Path, title: str, *, wide: bool = False) -> str:
    cls = ' class="wide"' if wide else ""
    return f"<figure{cls}>{_img(path, title)}<figcaption>{e(title)}</figcaption></figure>"


def _table(headers: list[tuple[str, bool]], rows: list[tuple[list[tuple[str, bool]], str]]) -> str:
    """An HTML table from already-escaped cells: headers (text, numeric), rows ((cells), class)."""
    head = "".join(f'<th class="num">{h}</th>' if num else f"<th>{h}</th>" for h, num in headers)
    thead = f"<thead><tr>{head}</tr></thead>" if any(h for h, _ in headers) else ""
    body = []
    for cells, cls in rows:
        tds = "".join(f'<td class="num">{c}</td>' if num else f"<td>{c}</td>" for c, num in cells)
        body.append(f'<tr class="{cls}">{tds}</tr>' if cls else f"<tr>{tds}</tr>")
    return f"<table>{thead}<tbody>{''.join(body)}</tbody></table>"


def fmt_gain(value: float | None) -> str:
    if value is None:
        return "-"
    return "±0" if abs(value) < 1e-9 else f"{value:+.3g}"


def _gain(value: float | None) -> str:
    if value is None or abs(value) < 1e-9:
        return e(fmt_gain(value))
    return f'<span class="{"good" if value > 0 else "bad"}">{e(fmt_gain(value))}</span>'


def _leaderboard_html(board: Leaderboard) -> str:
    columns = [c for c in board.columns if c.key not in ("best",)]
    headers = [(e(c.header), c.numeric) for c in columns]
    rows = []
    for rec in board.records:
        cells = []
        for c in columns:
            value = rec.get(c.key)
            if c.key == "state":
                cells.append((f'<span class="state {e(value)}">{e(value)}</span>', False))
            elif c.key == "trial":
                cells.append((e(value) + (" ★" if rec.get("best") else ""), False))
            elif c.key == "reason":
                cells.append((f'<div class="note-cell">{_note_html(str(value or ""))}</div>', False))
            else:
                cells.append((e(c.text(value)), c.numeric))
        cls = "best" if rec.get("best") else "baseline" if rec["state"] in (RowState.BASELINE.value, RowState.ENSEMBLE.value) else ""
        rows.append((cells, cls))
    return f'<div class="scroll">{_table(headers, rows)}</div>'


def _cell(value: Any) -> str:
    """A task table's cell: floats with 3 decimals, everything else as text."""
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _numeric_column(table: dict[str, Any], index: int) -> bool:
    rows = table.get("rows", [])
    return bool(rows) and all(isinstance(row[index], int | float) for row in rows if index < len(row))


def _deployment_html(deployment: dict[str, Any]) -> str:
    where = f"<p><code>{e(deployment.get('directory'))}</code> (trial {e(deployment.get('trial'))})</p>"
    caption = e(figures_markdown(deployment)[0].replace("`", ""))
    if not deployment.get("measured"):
        return where + f"<p>{caption}</p>"
    headers = [(e(h.format(objective=deployment.get("objective") or "metric")), i > 0) for i, h in enumerate(FIGURE_HEADERS)]
    rows = [([(e(cell), i > 0) for i, cell in enumerate(row)], "") for row in figure_rows(deployment)]
    return where + _table(headers, rows) + f'<p class="caption">{caption}</p>'


#: A leaderboard note longer than this shows its start, the rest a click away: a blend's
#: name and the export's reasons wrapped into a row taller than a screen.
NOTE_CHARS = 100


def _note_html(note: str) -> str:
    start = note_start(note, NOTE_CHARS)
    if start is None:
        return e(note)
    return f"<details><summary>{e(start)} …</summary>{e(note)}</details>"


def _importance_html(found: dict[str, Any] | None, plot: Path | None) -> str:
    if not found or not (found.get("columns") or found.get("words") or found.get("columns_note")):
        return ""
    parts = ["<h2>What the model looks at</h2>"]
    if found.get("columns_note") and not found.get("columns"):
        parts.append(f'<p class="caption">{e(found["columns_note"])}</p>')
    if plot is not None and found.get("columns"):
        parts.append('<div class="plots task">' + _figure(plot, "Column importance") + "</div>")
        parts.append(
            f'<p class="caption">Permutation importance on {e(found["rows"])} {e(found.get("split", "validation"))} rows: the drop of '
            f'{e(found["metric"])} when a column\'s values are shuffled across the rows (mean and one standard '
            f'deviation over {e(found["repeats"])} shuffles; AutoGluon\'s method). Per-row reasons: <code>automl explain</code>.</p>'
        )
        rows = [([(e(c["column"]), False), (e(f"{c['importance']:.4f}"), True), (e(f"{c['stddev']:.4f}"), True)], "")
                for c in found["columns"]]
        parts.append(_table([("column", False), ("importance", True), ("± std", True)], rows))
    words = found.get("words") or {}
    if words:
        parts.append(f"<h3>Words that most often push toward each class ({e(found.get('word_rows', ''))} rows explained)</h3>")
        rows = [([(e(label), False), (e(", ".join(f"{w} ({n})" for w, n in items)), False)], "") for label, items in words.items()]
        parts.append(_table([("class", False), ("words (rows)", False)], rows))
    elif found.get("words_note") == importance_mod.SPANS_NOTE:
        parts.append(f'<p class="caption">{e(found["words_note"])}</p>')
    return "".join(parts)


def _privacy_html(info: dict[str, Any] | None) -> str:
    if not info:
        return ""
    facts = "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in privacy_facts(info))
    items = "".join(f"<li>{e(item)}</li>" for item in info.get("not_covered") or [])
    guarantee = f"ε = {info['search_epsilon']:.2f}, δ = {info['delta']:.3g}"
    return (
        '<h2 id="privacy">Privacy</h2>'
        f"<p>Trained with differential privacy (DP-SGD through Opacus). The guarantee that holds for the exported model "
        f"is the whole search's, <b>{e(guarantee)}</b>: it was chosen "
        "by looking at every trial. The leaderboard's ε column is each trial's own.</p>"
        f'<dl class="facts">{facts}</dl><h3>Not covered by this ε</h3><ul>{items}</ul>'
    )


def render_html(r: RunResults, plots: list[tuple[str, Path]], task_plots: list[tuple[str, Path]],
                importance: tuple[dict[str, Any] | None, Path | None] = (None, None)) -> str:
    """The whole report as one HTML document."""
    best = r.best
    export = r.best_export or {}
    parts: list[str] = []
    title = f"{r.study_name}: {r.task or 'task'} on {r.backbone or 'backbone'}"
    parts.append(f"<h1>{e(title)}</h1>")
    parts.append(
        f'<p class="sub">automl report · objective <b>{e(r.objective)}</b> ({e("higher" if r.maximize else "lower")} is better) · '
        f"generated {e(time.strftime('%Y-%m-%d %H:%M'))}</p>"
    )
    if r.trust_remote_code:
        parts.append('<p class="warn"><b>trust_remote_code is on</b>: this run executed code from the model repository.</p>')
    cards = "".join(
        f'<div class="card"><div class="label">{e(label)}</div><div class="value">{e(value)}</div><div class="note">{e(note)}</div></div>'
        for label, value, note in headline(r)
    )
    parts.append(f'<section class="cards">{cards}</section>')

    parts.append(f"<h2>Exported model ({e(r.exported_label)})</h2>" if r.exported else "<h2>Best model</h2>")
    why = choice_note(r.ensemble, r.exported)
    if why:
        parts.append(f'<p class="caption">The baseline is exported: {e(why)}.</p>')
    if best is None and r.exported:
        parts.append(f"<p>No trial has completed; the exported model is the {e(r.exported_label)} "
                     "(its figures are in the cards above and the plots below).</p>")
    elif best is None:
        parts.append("<p>No trial has completed yet.</p>")
    else:
        params = export.get("params") if export.get("trial") == best.number else None
        params = params or best.params
        ptable = _table([("name", False), ("value", True)], [([(e(k), False), (e(fmt_value(v)), True)], "") for k, v in sorted(params.items())])
        mrows = metric_rows(r)
        has_test = any(m.test is not None for m in mrows)
        base_label = "baseline test" if has_test else "baseline validation"
        mtable = _table(
            [("metric", False), ("validation", True), ("test", True), (e(base_label), True), ("vs baseline", True)],
            [
                ([(e(m.name), False), (e(fmt_value(m.validation)), True), (e(fmt_value(m.test)), True), (e(fmt_value(m.baseline)), True), (_gain(m.gain), True)], "best" if m.name == r.objective else "")
                for m in mrows
            ],
        )
        private = f" {e(NOT_PRIVATE)}" if r.privacy else ""
        note = f'<p class="caption">vs baseline: {"test" if has_test else "validation"} difference to the {e((r.baseline or {}).get("name", "baseline"))}{private}, signed so that positive is better.</p>' if r.baseline else ""
        # The exported model may be the baseline or an ensemble: then these are the best
        # trial's settings, and the heading must not pass them off as the export's.
        heading = f"Hyperparameters of trial {e(best.number)}" if r.trial_exported else f"Hyperparameters of the best trial (trial {e(best.number)}), not the exported model"
        parts.append(f'<div class="grid2"><div><h3>{heading}</h3>{ptable}</div><div><h3>Metrics of the exported model</h3>{mtable}{note}</div></div>')
        if export:
            where = r.run_dir / "best" if r.run_dir else Path("best")
            parts.append(f"<h3>Use it</h3><pre>automl predict {e(where)} data.csv -o predictions.csv</pre>")
            if export.get("calibration"):
                rows = [([(e(name), False), (e(text), False)], "") for name, text in calibration_rows(export["calibration"])]
                parts.append(f"<h3>Calibration</h3>{_table([('setting', False), ('value', False)], rows)}")
            if export.get("labels"):
                parts.append(f"<p>Labels: {', '.join(f'<code>{e(x)}</code>' for x in export['labels'])}</p>")
        else:
            parts.append("<p>No exported model (the best trial's weights were not kept, or the run has not finished).</p>")

    parts.append(_privacy_html(r.privacy))

    if plots:
        parts.append("<h2>Search</h2>")
        parts.append('<div class="plots">' + "".join(_figure(path, title, wide=path.stem in WIDE_PLOTS) for title, path in plots) + "</div>")
    task_tables = (r.best_export or {}).get("tables") or []
    if task_plots or task_tables:
        parts.append("<h2>The best model on held-out data</h2>")
    if task_plots:
        parts.append('<div class="plots task">' + "".join(_figure(path, title) for title, path in task_plots) + "</div>")
    for table in task_tables:
        parts.append(f"<h3>{e(table.get('title', ''))}</h3>")
        headers = [(e(h), i > 0 and _numeric_column(table, i)) for i, h in enumerate(table.get("headers", []))]
        rows = [([(e(_cell(c)), isinstance(c, int | float)) for c in row], "") for row in table.get("rows", [])]
        parts.append(_table(headers, rows))
        if table.get("caption"):
            parts.append(f'<p class="caption">{e(table["caption"])}</p>')

    parts.append(_importance_html(*importance))

    if r.deployment:
        parts.append("<h2>Deployment (ONNX Runtime)</h2>")
        parts.append(_deployment_html(r.deployment))

    parts.append("<h2>Trials</h2>")
    parts.append(_leaderboard_html(leaderboard(r)))

    parts.append("<h2>Run</h2>")
    facts = "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in run_facts(r))
    parts.append(f'<dl class="facts">{facts}</dl>')
    versions = r.run_info.get("versions") or {}
    hardware = r.run_info.get("hardware") or {}
    blocks = []
    if versions:
        blocks.append("<div><h3>Versions</h3>" + _table([("package", False), ("version", False)], [([(e(k), False), (e(v), False)], "") for k, v in versions.items()]) + "</div>")
    if hardware:
        blocks.append("<div><h3>Hardware</h3>" + _table([("", False), ("", False)], [([(e(k), False), (e(_hw(v)), False)], "") for k, v in hardware.items()]) + "</div>")
    if blocks:
        parts.append(f'<div class="grid2">{"".join(blocks)}</div>')
    recipe = r.run_info.get("recipe")
    if recipe:
        parts.append(f"<h3>Recipe (as run)</h3><pre>{e(_yaml(recipe))}</pre>")
    parts.append(f"<footer>automl {e(versions.get('automl', ''))} · {e(r.run_dir or '')}</footer>")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{e(title)} · automl report</title><style>{CSS}</style></head>"
        f"<body><main>{''.join(parts)}</main></body></html>\n"
    )


def _hw(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return str(value)


def _yaml(data: Any) -> str:
    import yaml

    def clean(x: Any) -> Any:
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items() if v is not None}
        return x

    return yaml.safe_dump(clean(data), sort_keys=False, default_flow_style=None, width=100)


# ---------------------------------------------------------------------- Markdown

def render_markdown(r: RunResults, plots: list[tuple[str, Path]], task_plots: list[tuple[str, Path]],
                    importance: tuple[dict[str, Any] | None, Path | None] = (None, None)) -> str:
    def rel(path: Path) -> str:
        try:
            return str(path.relative_to(r.run_dir)) if r.run_dir else str(path)
        except ValueError:
            return str(path)

    m = md_cell
    lines = [f"# {m(r.study_name)}: {m(r.task)} on {m(r.backbone)}", ""]
    lines += [f"Objective **{m(r.objective)}** ({'higher' if r.maximize else 'lower'} is better).", ""]
    lines += ["| | value | |", "|---|---:|---|"]
    lines += [f"| {m(label)} | {m(value)} | {m(note)} |" for label, value, note in headline(r)]
    best = r.best
    if best is not None:
        why = choice_note(r.ensemble, r.exported)
        lines += ["", f"## Exported model ({r.exported_label})", *(["", f"The baseline is exported: {why}."] if why else []), "", "| metric | validation | test | baseline | vs baseline |", "|---|---:|---:|---:|---:|"]
        for row in metric_rows(r):
            gain = fmt_gain(row.gain)
            lines.append(f"| {m(row.name)} | {fmt_value(row.validation)} | {fmt_value(row.test)} | {fmt_value(row.baseline)} | {gain} |")
        export = r.best_export or {}
        params = (export.get("params") if export.get("trial") == best.number else None) or best.params
        lines += ["", "| hyperparameter | value |", "|---|---:|"]
        lines += [f"| {m(k)} | {m(fmt_value(v))} |" for k, v in sorted(params.items())]
    if r.privacy:
        lines += ["", *privacy_section(r.privacy)]
    task_tables = (r.best_export or {}).get("tables") or []
    for heading, items in (("Search", plots), ("The best model on held-out data", task_plots)):
        if items or (task_tables and items is task_plots):
            lines += ["", f"## {heading}", ""]
            lines += [f"![{m(title)}]({rel(path)})" for title, path in items]
    for table in task_tables:
        headers = table.get("headers", [])
        lines += ["", f"### {m(table.get('title', ''))}", ""]
        lines += ["| " + " | ".join(m(h) for h in headers) + " |", "|" + "---|" * len(headers)]
        lines += ["| " + " | ".join(m(_cell(c)) for c in row) + " |" for row in table.get("rows", [])]
        if table.get("caption"):
            lines += ["", m(table["caption"])]
    found, plot = importance
    if found and (found.get("columns") or found.get("words")):
        lines += ["", *importance_mod.markdown(found)]
        if plot is not None:
            lines += [f"![Column importance]({rel(plot)})"]
    if r.deployment:
        lines += ["", "## Deployment (ONNX Runtime)", "", f"`{r.deployment.get('directory')}` (trial {r.deployment.get('trial')})", ""]
        lines += figures_markdown(r.deployment)
    board = leaderboard(r)
    lines += ["", "## Trials", "", board.render("markdown").rstrip()]
    lines += ["", "## Run", "", "| | |", "|---|---|"]
    lines += [f"| {m(k)} | {m(v)} |" for k, v in run_facts(r)]
    versions = r.run_info.get("versions") or {}
    if versions:
        lines += ["", "Versions: " + ", ".join(f"{m(k)} {m(v)}" for k, v in versions.items())]
    hardware = r.run_info.get("hardware") or {}
    if hardware:
        lines += ["", "Hardware: " + ", ".join(f"{m(k)} {m(_hw(v))}" for k, v in hardware.items())]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------- writing

def write_report(
    run_dir: str | Path, *, results: RunResults | None = None, study: Any = None, seconds: float | None = None,
) -> ReportFiles:
    """Write report.html, report.md and report.json into *run_dir* (plots under plots/);
    the importance within *seconds* when given (what is left of a run's timeout)."""
    run_dir = Path(run_dir).resolve()
    if results is None:
        results = gather(run_dir, study=study)
    if results.run_dir is None:
        raise UserError("a report needs the run directory", field="RUN_DIR")
    plots = save_plots(results, run_dir / "plots")
    task_plots = results.task_plots()
    importance = global_importance(results, run_dir, seconds=seconds)
    files = ReportFiles(run_dir / "report.html", run_dir / "report.md", run_dir / "report.json")
    _write(files.html, render_html(results, plots, task_plots, importance))
    _write(files.markdown, render_markdown(results, plots, task_plots, importance))
    body = results.to_dict()
    body["importance"] = importance[0]
    body["leaderboard"] = leaderboard(results).records
    body["metrics_vs_baseline"] = [m.__dict__ for m in metric_rows(results)]
    _write(files.json, json.dumps(body, indent=2, default=str))
    return files


def global_importance(r: RunResults, run_dir: Path, *, seconds: float | None = None) -> tuple[dict[str, Any] | None, Path | None]:
    """The exported model's column and word importance (:mod:`automl.importance`, computed
    once and kept in ``best/importance.json``) and its plot; ``(None, None)`` when there is no
    export or its data is gone. A failure here never stops the report."""
    best = run_dir / "best"
    recipe = r.run_info.get("recipe")
    if not (best / "automl.json").exists() or not isinstance(recipe, dict):
        return None, None
    try:
        found = importance_mod.load_or_compute(best, recipe, seconds=seconds)
    except Exception as exc:  # the report must not fail on it
        return {"error": f"{type(exc).__name__}: {exc}"}, None
    if not found or not found.get("columns"):
        return found, None
    import matplotlib.pyplot as plt

    path = run_dir / "plots" / "importance.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = importance_mod.plot(found)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return found, path


def _write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


__all__ = ["MetricRow", "ReportFiles", "calibration_rows", "headline", "metric_rows", "render_html", "render_markdown", "run_facts", "write_report"]
