"""automl leaderboard and automl compare: rendered tables at fixed widths, and CSV/JSON/
Markdown that parse back with the right trials in the right order."""

from __future__ import annotations

import csv
import io
import json

import optuna
import pytest
from click.testing import CliRunner

from automl.cli import cli
from automl.results import gather, leaderboard
from automl.results.compare import compare


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


def expected_order(run_dir):
    """Complete trials by objective (best first, ties by number)."""
    study = optuna.load_study(study_name="tiny", storage=_storage(run_dir))
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    return [t.number for t in sorted(done, key=lambda t: (-t.value, t.number))]


def _storage(run_dir):
    from automl.search.storage import open_storage

    return open_storage(None, run_dir)


@pytest.mark.parametrize("width", [80, 120])
def test_leaderboard_renders_at_fixed_widths(tiny_run, render, width):
    results = gather(tiny_run)
    text = render(leaderboard(results), width=width)
    lines = text.splitlines()
    assert all(len(line) <= width for line in lines)
    assert "tiny · f1_macro (higher is better)" in text
    assert "★" in text and "baseline" in text
    best = results.best
    assert any(line.lstrip().startswith("1") and f"{best.number} ★" in line for line in lines)


@pytest.mark.parametrize("width", [80, 160])
def test_a_long_note_is_cut_in_the_terminal_and_whole_in_markdown(tiny_run, render, width):
    import dataclasses

    from automl.results.leaderboard import NOTE_CHARS

    board = leaderboard(gather(tiny_run))
    words = [f"family{i} ×0.{i:02d}" for i in range(40)]
    note = "blend of " + ", ".join(words)
    assert len(note) > 2 * NOTE_CHARS
    records = [{**rec, "reason": note} if rec["state"] == "baseline" else rec for rec in board.records]
    long = dataclasses.replace(board, records=records)

    text = render(long, width=width)
    flat = " ".join(text.split())
    assert "blend of family0 ×0.00, family1" in flat and "family39" not in flat
    assert "… " in flat or flat.endswith("…")
    assert "a note cut with … is whole in --format markdown" in flat
    assert note in long.render("markdown")
    # A short note is shown whole, without the caption's word on cut notes.
    assert "is whole in --format markdown" not in " ".join(render(board, width=width).split())


def test_leaderboard_csv_and_json_parse_back_in_order(tiny_run):
    order = expected_order(tiny_run)
    result = invoke("leaderboard", str(tiny_run), "--format", "json", "--no-baseline", "--state", "complete")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["trial"] for r in rows] == order
    assert [r["rank"] for r in rows] == list(range(1, len(order) + 1))
    assert rows[0]["best"] is True and all(r["state"] == "complete" for r in rows)
    assert {"learning_rate", "batch_size", "epochs", "f1_macro", "accuracy", "seconds"} <= set(rows[0])

    result = invoke("leaderboard", str(tiny_run), "--format", "csv")
    table = list(csv.DictReader(io.StringIO(result.stdout)))
    trials = [r["trial"] for r in table if r["state"] == "complete"]
    assert trials == [str(n) for n in order]
    assert sum(r["trial"] == "baseline" for r in table) == 1


def test_leaderboard_sort_top_and_markdown(tiny_run):
    rows = json.loads(invoke("leaderboard", str(tiny_run), "--format", "json", "--sort", "learning_rate", "--no-baseline").stdout)
    rates = [r["learning_rate"] for r in rows]
    assert rates == sorted(rates)
    top = json.loads(invoke("leaderboard", str(tiny_run), "--format", "json", "--top", "2", "--no-baseline").stdout)
    assert [r["trial"] for r in top] == expected_order(tiny_run)[:2]
    md = invoke("leaderboard", str(tiny_run), "--format", "markdown").stdout
    assert md.startswith("| # | trial | state | f1_macro |") and "|---:|---|---|---:|" in md
    bad = invoke("leaderboard", str(tiny_run), "--sort", "learning_rat")
    assert bad.exit_code == 2 and "did you mean 'learning_rate'" in bad.stderr


def test_leaderboard_by_storage_and_study(tiny_run):
    result = invoke("leaderboard", "--storage", f"journal:{tiny_run / 'study.journal'}", "--study", "tiny", "--format", "json")
    assert result.exit_code == 0, result.output
    assert len([r for r in json.loads(result.stdout) if r["state"] == "complete"]) == len(expected_order(tiny_run))


def test_leaderboard_reads_a_running_study_and_masks_passwords(tmp_path, render):
    """A study with a running trial (as while a run goes on), in an RDB storage with a password."""
    from automl.search.storage import mask_url

    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    study = optuna.create_study(study_name="live", storage=url, direction="maximize")
    study.set_user_attr("automl", {"task": "text-classification", "objective": "f1_macro", "direction": "maximize"})
    done = study.ask({"learning_rate": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)})
    study.tell(done, 0.7)
    study.ask({"learning_rate": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)})  # still running
    failed = study.ask()
    failed.set_user_attr("fail_reason", "CUDA out of memory <script>x</script>")
    study.tell(failed, state=optuna.trial.TrialState.FAIL)
    results = gather(storage=url, study_name="live")
    states = [r["state"] for r in leaderboard(results).records]
    assert states == ["complete", "running", "failed"]
    text = render(leaderboard(results), width=100)
    assert "running" in text and "CUDA out of memory" in text
    secret = "postgresql://user:s3cret@db.example/automl"
    assert "s3cret" not in mask_url(secret)


def test_compare_side_by_side(tiny_run, render):
    a = gather(tiny_run)
    comparison = compare([a, a])
    text = render(comparison, width=120)
    assert "exported (validation)" in text and "test (exported model)" in text and "vs first run" in text
    assert text.count(tiny_run.name) >= 2
    rows = json.loads(invoke("compare", str(tiny_run), str(tiny_run), "--format", "json").stdout)
    assert len(rows) == 2 and rows[0]["best_value"] == a.best.value and rows[1]["delta"] == 0
    assert rows[0]["exported_value"] == a.exported_value is not None
    assert rows[0]["test_objective"] is not None and rows[0]["baseline"] is not None
    assert render(comparison, width=80).splitlines()[0].startswith("runs compared")


def results_of(name: str, *, trial: float, exported: float, data: str, label: str = "label"):
    """The facts ``gather`` reads from a run directory, for a run whose best trial scored
    *trial* and whose exported model (here the baseline) scored *exported* on validation."""
    from datetime import datetime

    from automl.results._gather import RowState, RunResults, TrialRow

    start = datetime(2026, 12, 6, 1, 0)
    return RunResults(
        study_name=name, task="fraud-detection", backbone="tiny-bert", objective="pr_auc", direction="maximize",
        trials=[TrialRow(number=0, state=RowState.COMPLETE, value=trial, metrics={"pr_auc": trial}, params={},
                         started=start, finished=start)],
        best_export={"kind": "baseline", "metrics": {"validation": {"pr_auc": exported}, "test": {"pr_auc": exported}}},
        run_info={"recipe": {"data": {"train": f"/data/{data}/train.csv", "label_column": label}},
                  "data_files": {"train": f"{data}-hash"}},
    )


def test_compare_ranks_runs_by_the_exported_model(render):
    """0.52 vs 0.09 for the best trials, 0.57 vs 0.69 for the exported baselines: the
    second run is better."""
    first = results_of("first", trial=0.52, exported=0.57, data="same")
    second = results_of("second", trial=0.09, exported=0.69, data="same")
    comparison = compare([first, second])
    text = render(comparison, width=140)
    assert "second ★" in text and "first ★" not in text
    assert "second is best: its exported model scores 0.69 vs 0.57" in text
    assert comparison.records[1]["delta"] == pytest.approx(0.12)
    assert "exported (validation)" in text and "best trial (validation)" in text


@pytest.mark.parametrize(
    ("data", "label", "words"),
    [("other", "label", "the data files' fingerprints differ"), ("same", "is_fraud", "the label columns differ")],
)
def test_compare_gives_no_verdict_when_the_data_differ(render, data, label, words):
    first = results_of("first", trial=0.9, exported=0.8, data="same")
    second = results_of("second", trial=0.5, exported=0.4, data=data, label=label)
    comparison = compare([first, second])
    text = " ".join(render(comparison, width=160).split())
    assert "★" not in text and "is best" not in text and "still the best" not in text
    assert "trained on different data" in text and words in text and "not comparable" in text
    assert comparison.records[1]["delta"] is None


def test_compare_of_a_run_with_itself_has_the_same_data(tiny_run, render):
    a = gather(tiny_run)
    assert "different data" not in render(compare([a, a]), width=120)
    assert a.run_info["data_files"]["train"]  # run.json names the data files' fingerprints
