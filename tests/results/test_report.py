"""automl report: self-contained HTML with embedded PNGs, Markdown, JSON; escaping; the
end-of-run summary at 80 and 120 columns."""

from __future__ import annotations

import base64
import json
import re
import shutil
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from automl.cli import cli
from automl.results import gather
from automl.results.report import render_html, write_report

PNG = b"\x89PNG\r\n\x1a\n"


def test_run_leaves_a_report(tiny_run):
    assert (tiny_run / "report.html").exists() and (tiny_run / "report.md").exists()


def test_report_html_is_self_contained_with_real_images(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    result = CliRunner().invoke(cli, ["report", str(run)])
    assert result.exit_code == 0, result.output
    page = (run / "report.html").read_text()
    assert "<script" not in page.lower()
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", page)  # nothing fetched
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    task_plots = json.loads((run / "best" / "automl.json").read_text())["plots"]
    assert len(task_plots) >= 1
    assert len(images) >= 3 + len(task_plots)  # history, curves, slices (+ importances) and the task's plots
    for data in images:
        raw = base64.b64decode(data)
        assert raw.startswith(PNG) and len(raw) > 1000
    for text in ("Optimisation history", "Trials", "baseline", "trust_remote_code", "journal:"):
        assert text in page
    md = (run / "report.md").read_text()
    for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md):
        assert (run / link).is_file()
    body = json.loads((run / "report.json").read_text())
    assert body["best"]["number"] == gather(run).best.number and body["leaderboard"]


def test_report_escapes_everything(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    evil = "<script>alert(1)</script>"
    meta_file = run / "best" / "automl.json"
    meta = json.loads(meta_file.read_text())
    meta["labels"] = [evil, "positive"]
    meta_file.write_text(json.dumps(meta))
    baseline_file = run / "baseline.json"
    baseline = json.loads(baseline_file.read_text())
    baseline["name"] = f"tf-idf {evil}"
    baseline_file.write_text(json.dumps(baseline))
    results = gather(run)
    page = render_html(results, [], [])
    assert evil not in page and "<script" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    files = write_report(run, results=results)
    assert evil not in files.html.read_text() and evil not in files.markdown.read_text()


@pytest.mark.parametrize("width", [80, 120])
def test_summary_fits_and_tells_the_story(tiny_run, render, width):
    from rich.panel import Panel

    from automl.summary import summary_renderable

    summary = json.loads((tiny_run / "summary.json").read_text())
    outcome = SimpleNamespace(run_dir=tiny_run, study_name="tiny", summary=SimpleNamespace(interrupted=False), seconds=summary["seconds"])
    text = render(Panel(summary_renderable(outcome)), width=width)
    assert all(len(line) <= width for line in text.splitlines())
    best = gather(tiny_run).best
    for part in (f"trial {best.number}: f1_macro", "baseline", "metrics of the exported model", "automl predict", "report.html"):
        assert part in text, part


def test_report_leads_with_the_exported_model_and_shows_calibration_as_a_table(columns_run):
    from automl.results.report import headline

    results = gather(columns_run)
    cards = headline(results)
    exported = results.test_metrics[results.objective]
    assert cards[0][0] == f"exported model {results.objective}" and cards[0][1] == f"{exported:.4f}"
    assert results.exported_label in cards[0][2] and "test" in cards[0][2]
    assert cards[1][0] == f"best trial {results.objective}" and f"trial {results.best.number}" in cards[1][2]
    html = render_html(results, [], [])
    first_card = html[html.index('<section class="cards">'):]
    assert first_card.index("exported model") < first_card.index("best trial")
    calibration = html[html.index("<h3>Calibration</h3>"):]
    calibration = calibration[: calibration.index("</table>")]
    assert "<pre>" not in calibration and "<table>" in calibration
    assert "<td>threshold</td>" in calibration and "<td>positive label</td><td>1</td>" in calibration
    assert "<td>3: a (number), b (category), memo (category)</td>" in calibration


def test_summary_names_the_positive_class(columns_run, render):
    from automl.summary import RunSummary

    text = render(RunSummary(gather(columns_run)), width=120)
    assert re.search(r"positive class\s+'1' \(column 'is_fraud'\)", text), text


def test_a_run_without_trials_says_what_it_exported():
    from automl.results._gather import RunResults

    def page(export: dict | None) -> str:
        r = RunResults(study_name="s", task="fraud-detection", backbone="b", objective="pr_auc", direction="maximize",
                       trials=[], baseline={"name": "blend", "metrics": {"validation": {"pr_auc": 0.8}}}, best_export=export)
        return render_html(r, [], [])

    assert "the exported model is the baseline" in page({"kind": "baseline"})
    assert "No trial has completed yet." in page(None)


def test_a_baseline_kept_over_a_better_looking_trial_says_why():
    from automl.results._gather import RowState, RunResults, TrialRow
    from automl.results.leaderboard import leaderboard
    from automl.results.report import render_markdown

    choice = {"trial": "trial-0", "lead": 0.012, "standard_error": 0.02, "se_rule": 1.0, "chosen": "baseline"}
    r = RunResults(study_name="s", task="fraud-detection", backbone="b", objective="pr_auc", direction="maximize",
                   trials=[TrialRow(number=0, state=RowState.COMPLETE, value=0.812, metrics={"pr_auc": 0.812}, params={"learning_rate": 1e-4})],
                   baseline={"name": "blend", "metrics": {"validation": {"pr_auc": 0.8}}},
                   best_export={"kind": "baseline"}, ensemble={"members": [], "choice": choice})
    why = "trial-0 led by 0.0120 on validation, within one standard error (0.0200)"
    assert f"The baseline is exported: {why}" in render_html(r, [], [])
    assert f"The baseline is exported: {why}" in render_markdown(r, [], [])
    rows = {rec["trial"]: rec for rec in leaderboard(r).records}
    assert rows["baseline"]["best"] and why in rows["baseline"]["reason"]
    # The verdict comes before the family's name, which for a blend runs past what the
    # terminal table shows of a note.
    assert rows["baseline"]["reason"].startswith(f"exported: {why}") and rows["baseline"]["reason"].endswith("blend")
    # The run's facts name what best/ holds, not a trial (they said "(trial None)", or the
    # run's best trial, under an exported baseline).
    from automl.results.report import run_facts

    assert dict(run_facts(r))["exported model"] == "best/ (baseline)"
    from dataclasses import replace

    assert dict(run_facts(replace(r, best_export={"kind": "transformers", "trial": 0})))["exported model"] == "best/ (trial 0)"


def test_long_baseline_names_are_shortened_for_cards_and_legends():
    from automl.results._formats import short_name

    long = ("blend of random forest on the raw columns ×0.36, gradient boosting (CatBoost) on the raw columns ×0.24; "
            "out-of-fold PR-AUC blend 0.733, stack 0.708")
    assert short_name(long) == "blend of random forest on the raw columns ×0.36, gradient…"
    assert short_name("TF-IDF + logistic regression; out-of-fold 0.7") == "TF-IDF + logistic regression"
    assert len(short_name("word " * 40)) <= 60


def test_a_long_leaderboard_note_shows_its_start_and_the_rest_on_a_click():
    from automl.results.report import NOTE_CHARS, _note_html

    assert _note_html("kept: beat the baseline") == "kept: beat the baseline"
    note = "blend of " + ", ".join(f"family {i} ×0.1" for i in range(40)) + " <b>"
    html = _note_html(note)
    summary = html[html.index("<summary>") + 9 : html.index("</summary>")]
    assert html.startswith("<details>") and len(summary) <= NOTE_CHARS + 2 and summary.endswith(" …")
    assert "&lt;b&gt;" in html and "<b>" not in html  # the whole note, escaped, a click away
