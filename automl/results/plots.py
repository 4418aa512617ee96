"""The report's plots (matplotlib, Agg): optimisation history, parameter importances,
slices of the objective per hyperparameter, and intermediate values of the trials.

Every function takes a :class:`RunResults` and returns a figure, or ``None`` when there is
nothing to draw; colours and fonts are shared so the plots read as one set.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from automl.results._formats import short_name
from automl.results._gather import RowState, RunResults

if TYPE_CHECKING:
    from collections.abc import Iterator

    from matplotlib.figure import Figure

COLORS = {
    "complete": "#2563eb",
    "pruned": "#9ca3af",
    "failed": "#dc2626",
    "best": "#f59e0b",
    "baseline": "#059669",
    "bar": "#6366f1",
}
STYLE = {
    "font.size": 10,
    "axes.titlesize": 12,
    "axes.titleweight": "bold",
    "axes.labelsize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#e5e7eb",
    "grid.linewidth": 0.8,
    "axes.axisbelow": True,
    "legend.frameon": False,
    "legend.fontsize": 9,
    "figure.dpi": 100,
    "savefig.dpi": 110,
    "savefig.bbox": "tight",
}


@contextmanager
def _style() -> Iterator[None]:
    import matplotlib

    with matplotlib.rc_context(STYLE):
        yield


def _figure(width: float, height: float, **kwargs: Any) -> tuple[Figure, Any]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(**kwargs)
    return fig, axes


def history(r: RunResults) -> Figure | None:
    """Objective per trial (complete and pruned), the best so far, and the baseline."""
    points = [t for t in r.trials if t.value is not None and t.state in (RowState.COMPLETE, RowState.PRUNED)]
    if not points:
        return None
    with _style():
        fig, ax = _figure(11, 4.2)
        sample = _sample_rows(r)
        for state, marker in ((RowState.COMPLETE, "o"), (RowState.PRUNED, "x")):
            sel = [t for t in points if t.state is state]
            if sel:
                label = f"pruned (on a sample of {sample:,} rows)" if sample and state is RowState.PRUNED else state.value
                ax.scatter([t.number for t in sel], [t.value for t in sel], marker=marker, s=36, color=COLORS[state.value], label=label, zorder=3)
        complete = sorted((t for t in points if t.state is RowState.COMPLETE), key=lambda t: t.number)
        if complete:
            xs, ys, best = [], [], None
            for t in complete:
                best = t.value if best is None or r.is_better(t.value, best) else best  # type: ignore[arg-type]
                xs.append(t.number)
                ys.append(best)
            last = max(t.number for t in r.trials)
            ax.step(xs + [last], ys + [ys[-1]], where="post", color=COLORS["best"], linewidth=2, label="best so far", zorder=2)
        if r.best is not None:
            ax.scatter([r.best.number], [r.best.value], s=160, facecolors="none", edgecolors=COLORS["best"], linewidths=2, zorder=4, label=f"best: trial {r.best.number}")
        if r.baseline_value is not None:
            ax.axhline(r.baseline_value, color=COLORS["baseline"], linestyle="--", linewidth=1.5, label=f"baseline ({short_name(str((r.baseline or {}).get('name', 'classical')))})")
        ax.set_title("Optimisation history")
        ax.set_xlabel("trial")
        ax.set_ylabel(f"{r.objective} (validation)")
        ax.xaxis.get_major_locator().set_params(integer=True)
        numbers = [t.number for t in r.trials]
        ax.set_xlim(min(numbers) - 0.5, max(max(numbers), min(numbers) + 1) + 0.5)  # whole trial numbers, even for one trial
        _legend(fig, ax)
        return fig


def _sample_rows(r: RunResults) -> int | None:
    """The validation rows trials were evaluated on while they trained, where a sample."""
    return max((t.sample_rows for t in r.trials if t.sample_rows), default=None)


def _legend(fig: Figure, ax: Any) -> None:
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 3))


def importances(r: RunResults) -> Figure | None:
    """Parameter importances (fANOVA) as horizontal bars, most important on top."""
    if not r.importances:
        return None
    items = sorted(r.importances.items(), key=lambda kv: kv[1])
    with _style():
        fig, ax = _figure(6, 0.42 * len(items) + 1.4)
        bars = ax.barh([k for k, _ in items], [v for _, v in items], color=COLORS["bar"])
        ax.bar_label(bars, fmt="%.2f", padding=3, fontsize=9)
        ax.set_xlim(0, max(v for _, v in items) * 1.18 or 1)
        ax.set_title("Hyperparameter importance (fANOVA)")
        ax.set_xlabel(f"share of {r.objective} variance explained")
        ax.grid(axis="y", visible=False)
        return fig


def slices(r: RunResults) -> Figure | None:
    """Objective against each hyperparameter (one panel each); the best trial highlighted."""
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

    done = [t for t in r.trials if t.state is RowState.COMPLETE and t.value is not None]
    names = [n for n in r.param_names if sum(n in t.params for t in done) >= 2]
    if not done or not names:
        return None
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    with _style():
        fig, axes = _figure(max(11, 3.6 * cols), 2.9 * rows, nrows=rows, ncols=cols, squeeze=False, sharey=True)
        best = r.best
        for i, ax in enumerate(axes.flat):
            if i >= len(names):
                ax.set_visible(False)
                continue
            name = names[i]
            kind = r.param_kinds.get(name, "float")
            sel = [t for t in done if name in t.params]
            values = [t.params[name] for t in sel]
            numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
            if kind == "categorical" or not numeric:
                cats = sorted({v for v in values}, key=lambda v: (isinstance(v, str), v))
                xs = [cats.index(v) for v in values]
                ax.set_xticks(range(len(cats)), [str(c) for c in cats])
                ax.set_xlim(-0.6, len(cats) - 0.4)
                ax.grid(axis="x", visible=False)
            else:
                xs = values
                if kind == "log" and min(values) > 0:
                    ax.set_xscale("log")
                    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 3.0, 5.0)))
                    ax.xaxis.set_minor_formatter(NullFormatter())
                else:
                    ax.xaxis.set_major_locator(MaxNLocator(4, integer=kind == "int"))
                ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:.2g}"))
            colors = [COLORS["best"] if best and t.number == best.number else COLORS["complete"] for t in sel]
            ax.scatter(xs, [t.value for t in sel], c=colors, s=34, alpha=0.85, zorder=3, edgecolors="white", linewidths=0.6)
            ax.set_xlabel(name + (" (log)" if kind == "log" else ""))
            if i % cols == 0:
                ax.set_ylabel(r.objective)
        fig.suptitle("Objective by hyperparameter (complete trials; the best in amber)", fontweight="bold", fontsize=12)
        return fig


def intermediate(r: RunResults) -> Figure | None:
    """The objective at each evaluation: finished trials against pruned ones."""
    curves = [t for t in r.trials if t.intermediate and t.state in (RowState.COMPLETE, RowState.PRUNED, RowState.RUNNING)]
    if not curves:
        return None
    with _style():
        fig, ax = _figure(6, 3.8)
        seen: set[str] = set()
        best = r.best
        for t in sorted(curves, key=lambda t: best is not None and t.number == best.number):
            steps = sorted(t.intermediate)
            ys = [t.intermediate[s] for s in steps]
            is_best = best is not None and t.number == best.number
            kind = "best" if is_best else "pruned" if t.state is RowState.PRUNED else "complete"
            label = {"best": f"best (trial {t.number})", "pruned": "pruned", "complete": "finished"}[kind]
            ax.plot(
                steps, ys,
                color=COLORS[kind], linewidth=2.4 if is_best else 1.3, alpha=1 if is_best else 0.75,
                linestyle="--" if kind == "pruned" else "-", marker="x" if kind == "pruned" else "o", markersize=4,
                label=None if label in seen else label, zorder=3 if is_best else 2,
            )
            seen.add(label)
        ax.set_title("Learning curves: finished vs pruned trials")
        ax.set_xlabel("evaluation")
        sample = _sample_rows(r)
        ax.set_ylabel(f"{r.objective} (validation sample, {sample:,} rows)" if sample else f"{r.objective} (validation)")
        ax.xaxis.get_major_locator().set_params(integer=True)
        _legend(fig, ax)
        return fig


#: (file stem, title, function) of the report's own plots, in report order.
PLOTS = (
    ("history", "Optimisation history", history),
    ("importances", "Hyperparameter importance", importances),
    ("intermediate", "Learning curves", intermediate),
    ("slices", "Objective by hyperparameter", slices),
)


def save_plots(r: RunResults, directory: Path) -> list[tuple[str, Path]]:
    """Draw every plot that has data into *directory* as ``report-<name>.png``."""
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for stem, title, draw in PLOTS:
        path = directory / f"report-{stem}.png"
        fig = draw(r)
        if fig is None:
            path.unlink(missing_ok=True)
            continue
        with _style():
            fig.savefig(path)
        out.append((title, path))
    return out
