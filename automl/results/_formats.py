"""Tables of records rendered for people (rich) or scripts (CSV, JSON, Markdown)."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

FORMATS = ("table", "csv", "json", "markdown")
#: How every view labels the classical baseline of a private run: trained without privacy,
#: it is shown for reference and never exported (see :mod:`automl.privacy`).
NOT_PRIVATE = "(not private: reference only, never exported)"


@dataclass(frozen=True)
class Column:
    """One column of a records table: its key in each record and how people see it."""

    key: str
    header: str
    numeric: bool = False
    #: rich style of the column in the terminal table.
    style: str | None = None
    #: How people see a value (default :func:`fmt_value`).
    show: Callable[[Any], str] | None = None

    def text(self, value: Any) -> str:
        return (self.show or fmt_value)(value)


def fmt_value(value: Any) -> str:
    """A short human rendering: floats to 4 significant digits, None as "-"."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.4g}"
    return str(value)


def fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, sec = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def to_json(records: list[dict[str, Any]]) -> str:
    return json.dumps([_plain(r) for r in records], indent=2, default=str)


def to_csv(columns: list[Column], records: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([c.key for c in columns])
    for r in records:
        row = []
        for c in columns:
            value = r.get(c.key)
            row.append("" if value is None else json.dumps(value) if isinstance(value, dict | list) else value)
        writer.writerow(row)
    return out.getvalue()


def md_cell(text: Any) -> str:
    """Escape a value for a Markdown table cell (pipes, newlines, HTML)."""
    import html

    return html.escape(str(text)).replace("|", "\\|").replace("\n", " ")


def to_markdown(columns: list[Column], records: list[dict[str, Any]]) -> str:
    """A GitHub Markdown table of the records, values rendered as people see them."""
    lines = ["| " + " | ".join(md_cell(c.header) for c in columns) + " |"]
    lines.append("|" + "|".join("---:" if c.numeric else "---" for c in columns) + "|")
    for r in records:
        lines.append("| " + " | ".join(md_cell(c.text(r.get(c.key))) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def render(fmt: str, columns: list[Column], records: list[dict[str, Any]]) -> str:
    """Text for a machine format ("csv", "json" or "markdown")."""
    if fmt == "csv":
        return to_csv(columns, records)
    if fmt == "json":
        return to_json(records)
    if fmt == "markdown":
        return to_markdown(columns, records)
    raise ValueError(fmt)


def fmt_params(params: dict[str, Any]) -> str:
    """Hyperparameters in short: ``lr=3e-05 bs=16 r=8``."""
    short = {
        "learning_rate": "lr",
        "batch_size": "bs",
        "epochs": "ep",
        "weight_decay": "wd",
        "warmup_ratio": "warmup",
        "lora_r": "r",
        "lora_alpha": "alpha",
        "lora_dropout": "drop",
    }
    parts = []
    for key, value in params.items():
        if isinstance(value, float):
            value = f"{value:.2g}" if key == "learning_rate" else f"{value:.3g}"
        parts.append(f"{short.get(key, key)}={value}")
    return " ".join(parts)


def fmt_members(members: list[dict[str, Any]]) -> str:
    """An ensemble's members and weights: ``trial-3 ×0.6 + baseline ×0.4``."""
    return " + ".join(f"{m['name']} ×{m['weight']:.2g}" for m in members)


def ensemble_verdict(ensemble: dict[str, Any], exported: str | None) -> str:
    """Whether the run exported its ensemble: ``exported``, or ``not exported``, with the
    reason when the ensemble did better on the held-out half but by less than the margin
    an export needs (``automl.ensemble.MIN_GAIN``) or within one standard error of the
    paired difference (``automl.ensemble.SE_RULE``), or when the ensemble is one model."""
    if exported == "ensemble":
        return "exported"
    members = ensemble.get("members") or []
    if len(members) == 1:  # the greedy selection added nothing to its first pick
        return f"not exported (the selection kept {members[0].get('name', 'one model')} alone: no other model raised it)"
    held = ensemble.get("held_out") or {}
    if held.get("better") and len(members) >= 2:
        if held.get("beyond_margin"):  # it missed the one-standard-error rule instead
            se, gain = held.get("standard_error"), abs(held["ensemble"] - held["single_model"])
            if se is None:
                return "not exported (its standard error on the held-out half is undefined)"
            return f"not exported (a gain of {gain:.4f}, within one standard error ({se:.4f}): not better beyond noise)"
        return f"not exported (a gain under the {held.get('min_gain', 0.005):.1%} an ensemble needs)"
    return "not exported"


def choice_note(ensemble: dict[str, Any] | None, exported: str | None) -> str | None:
    """Why the baseline was exported although a trial did better on validation: its lead
    was within the standard errors the one-standard-error rule asks
    (``automl.ensemble.choose_single``); ``None`` otherwise."""
    choice = (ensemble or {}).get("choice") or {}
    lead, se = choice.get("lead"), choice.get("standard_error")
    if exported != "baseline" or choice.get("chosen") != "baseline" or lead is None or not lead > 0:
        return None
    if se is None:
        return f"{choice.get('trial', 'the best trial')} led by {lead:.4f} on validation, but its standard error is undefined (too few usable resamples)"
    rule = choice.get("se_rule", 1.0)
    within = "one standard error" if rule == 1.0 else f"{rule:g} standard errors"
    return f"{choice.get('trial', 'the best trial')} led by {lead:.4f} on validation, within {within} ({se:.4f}): not better beyond noise"


def note_start(note: str, limit: int) -> str | None:
    """The start of a long *note* (one a table shows cut: the report's trials table, the
    terminal leaderboard), cut at a word before *limit* characters; None when it fits."""
    if len(note) <= limit:
        return None
    cut = note.rfind(" ", 0, limit)
    return note[: cut if cut > 0 else limit].rstrip(" ,;")


def short_name(name: str, limit: int = 60) -> str:
    """A model's description short enough for a card or a plot legend: up to its first
    ``;`` (a baseline's name goes on to list out-of-fold figures), cut at a word before
    *limit* characters with an ellipsis. The full name stays in the leaderboard and the
    summary."""
    head = name.split(";", 1)[0].strip()
    if len(head) <= limit:
        return head
    cut = head[: limit - 1].rsplit(" ", 1)[0].rstrip(" ,")
    return cut + "…"
