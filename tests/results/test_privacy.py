"""A private run's figures wherever a user looks: the end-of-run summary, the leaderboard,
the HTML/Markdown/JSON report, the exported model (``automl.json`` and its card) and
MLflow, each equal to :func:`automl.privacy.run_privacy` of the run's study; and no
training row in what the run leaves behind."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import optuna
import pytest
from click.testing import CliRunner
from rich.console import Console

from automl import plugins
from automl.cli import cli
from automl.privacy import ATTR, STUDY_ATTR, describe, run_privacy
from automl.results import gather, leaderboard
from automl.results._formats import NOT_PRIVATE
from automl.results.compare import compare
from automl.search.storage import open_storage
from automl.summary import RunSummary, print_summary
from automl.testing import tiny_recipe, write_recipe, write_toy_text_data

pytest.importorskip("opacus", reason="the privacy extra is not installed (pip install 'automl[test]')")

try:
    import mlflow
except ImportError:  # the run is then not logged and its test is skipped
    mlflow = None


class PrivateRun:
    """A finished private run: its directory, the text ``automl run`` printed, the MLflow URI."""

    def __init__(self, run_dir: Path, printed: str, mlflow_uri: str | None) -> None:
        self.run_dir = run_dir
        self.printed = printed
        self.mlflow_uri = mlflow_uri

    def study(self) -> optuna.Study:
        return optuna.load_study(study_name="private", storage=open_storage(None, self.run_dir))

    def privacy(self) -> dict:
        """What the run's privacy amounts to, straight from the study."""
        study = self.study()
        return run_privacy(study.user_attrs[STUDY_ATTR], study.get_trials(deepcopy=False))


@pytest.fixture(scope="module")
def private_run(tmp_path_factory: pytest.TempPathFactory) -> PrivateRun:
    """Two DP-SGD trials of tiny-bert on toy data (ε = 8 for the whole search), logged to a
    local MLflow file store when MLflow is installed."""
    from automl.recipe import load_recipe
    from automl.search.supervisor import RunOptions, run_recipe

    base = tmp_path_factory.mktemp("private-run")
    data = write_toy_text_data(base / "data", train=300, validation=60, test=60)
    uri = (base / "mlruns").resolve().as_uri() if mlflow is not None else None
    recipe = tiny_recipe(
        data,
        output=str(base / "run"),
        name="private",
        privacy={"epsilon": 8},
        search={"trials": 2, "space": {
            "learning_rate": {"low": 2e-3, "high": 2e-2, "log": True}, "batch_size": [64], "epochs": {"low": 2, "high": 3}}},
        **({"mlflow": uri} if uri else {}),
    )
    path = write_recipe(base / "recipe.yaml", recipe)
    plugins.reset()
    try:
        outcome = run_recipe(load_recipe(path), options=RunOptions(workers=0), console=Console(file=io.StringIO()))
    finally:
        plugins.reset()
    assert outcome.best_dir is not None
    console = Console(file=io.StringIO(), width=120, color_system=None)
    print_summary(outcome, console)  # what `automl run` prints at the end
    return PrivateRun(outcome.run_dir, console.file.getvalue(), uri)  # type: ignore[attr-defined]


def test_the_run_was_private(private_run):
    info = private_run.privacy()
    assert info is not None and info["accounting"] == "search" and info["trials"] == 2
    assert 0 < info["search_epsilon"] <= 8 + 1e-6
    assert info["max_trial_epsilon"] < info["search_epsilon"]  # two trials compose to more than one
    assert json.loads((private_run.run_dir / "baseline.json").read_text())["not_private"] is True
    assert gather(private_run.run_dir).privacy == info


def test_summary_states_the_search_epsilon_and_marks_the_baseline(private_run, render):
    info = private_run.privacy()
    # The panel folds long lines: its words, without the border.
    printed = " ".join(w for line in private_run.printed.splitlines() for w in line.strip().strip("│").split())
    assert " ".join(describe(info).split()) in printed
    assert f"ε = {info['search_epsilon']:.2f} for the whole search" in printed
    baseline = next(line for line in private_run.printed.splitlines() if "baseline" in line and "(validation)" in line)
    assert "(not private: reference only" in baseline
    # The metrics table still compares with the baseline (a reference), and says it is not private.
    summary = RunSummary(gather(private_run.run_dir))
    text = " ".join(render(summary, width=240).split())
    assert "baseline Δ" in text and NOT_PRIVATE in text
    assert summary._metrics().caption.endswith("(baseline not private)")


def test_leaderboard_shows_each_trials_epsilon_and_the_search(private_run, render):
    info = private_run.privacy()
    study = private_run.study()
    own = {t.number: t.user_attrs[ATTR]["epsilon"] for t in study.trials if ATTR in t.user_attrs}
    assert len(own) == 2

    rows = json.loads(CliRunner().invoke(cli, ["leaderboard", str(private_run.run_dir), "--format", "json"]).stdout)
    trials = {r["trial"]: r for r in rows if isinstance(r["trial"], int)}
    assert {n: r["epsilon"] for n, r in trials.items()} == own
    (baseline,) = [r for r in rows if r["trial"] == "baseline"]
    assert baseline["epsilon"] is None and NOT_PRIVATE in baseline["reason"]

    table = list(csv.DictReader(io.StringIO(CliRunner().invoke(cli, ["leaderboard", str(private_run.run_dir), "--format", "csv"]).stdout)))
    assert {int(r["trial"]): float(r["epsilon"]) for r in table if r["trial"].isdigit()} == pytest.approx(own)
    markdown = CliRunner().invoke(cli, ["leaderboard", str(private_run.run_dir), "--format", "markdown"]).stdout
    assert "| ε |" in markdown

    for width in (80, 120):
        text = render(leaderboard(gather(private_run.run_dir)), width=width)
        flat = " ".join(text.split())
        assert all(len(line) <= width for line in text.splitlines())
        assert "ε" in text.splitlines()[2]  # the header row
        assert f"search ε = {info['search_epsilon']:.2f}, δ = {info['delta']:.2g} (accounting: search" in flat
        for eps in own.values():
            assert f" {eps:.2f} " in text
        assert "not private" in flat


def test_leaderboard_of_a_run_without_privacy_has_no_epsilon(tiny_run, render):
    results = gather(tiny_run)
    assert results.privacy is None
    board = leaderboard(results)
    assert "epsilon" not in {c.key for c in board.columns}
    assert "ε" not in render(board, width=120) and "privacy" not in render(board, width=120)
    assert "privacy" not in results.to_dict()


def test_report_has_a_privacy_section(private_run):
    info = private_run.privacy()
    run = private_run.run_dir
    page = (run / "report.html").read_text()
    md = (run / "report.md").read_text()
    section = page[page.index('<h2 id="privacy">'):]
    section = section[: section.index("</ul>")]
    assert f"ε = {info['search_epsilon']:.2f}, δ = {info['delta']:.3g}" in section
    assert f"<dd>{info['max_trial_epsilon']:.2f}</dd>" in section
    assert "1/(10n) for n = 300 training rows" in section and "PRV" in section
    assert "search (ε = 8 for the whole search)" in section
    for item in info["not_covered"]:
        assert f"<li>{item}</li>" in section
    assert "## Privacy" in md and f"**ε = {info['search_epsilon']:.2f}, δ = {info['delta']:.3g}**" in md
    assert all(f"- {item}" in md for item in info["not_covered"])
    body = json.loads((run / "report.json").read_text())
    assert body["privacy"] == json.loads(json.dumps(info))
    assert {r["number"]: r.get("epsilon") for r in body["trials"]} == {
        t.number: t.user_attrs[ATTR]["epsilon"] for t in private_run.study().trials if ATTR in t.user_attrs}


def test_exported_model_states_the_search_guarantee(private_run):
    info = private_run.privacy()
    best = private_run.run_dir / "best"
    meta = json.loads((best / "automl.json").read_text())
    assert meta["privacy"] == json.loads(json.dumps(info))
    card = (best / "README.md").read_text()
    section = card[card.index("## Privacy"):]
    assert f"**ε = {info['search_epsilon']:.2f}, δ = {info['delta']:.3g}**" in section
    assert "chosen by looking at every trial" in section
    assert all(f"- {item}" in section for item in info["not_covered"])


def test_ensemble_card_states_the_search_guarantee(private_run):
    from automl.best import ensemble_card

    info = json.loads(json.dumps(private_run.privacy()))
    meta = {"study": "private", "task": "text-classification", "members": [{"name": "trial-0", "weight": 1.0}],
            "metrics": {"validation": {"f1_macro": 0.5}}, "privacy": info}
    card = ensemble_card(meta)
    assert f"**ε = {info['search_epsilon']:.2f}, δ = {info['delta']:.3g}**" in card and "Not covered by this ε" in card
    assert "## Privacy" not in ensemble_card({k: v for k, v in meta.items() if k != "privacy"})


def test_mlflow_logs_the_search_epsilon(private_run):
    if private_run.mlflow_uri is None:
        pytest.skip("the mlflow extra is not installed (pip install 'automl[test]')")
    info = private_run.privacy()
    client = mlflow.MlflowClient(tracking_uri=private_run.mlflow_uri)
    experiment = client.get_experiment_by_name("private")
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert parent.data.metrics["privacy_search_epsilon"] == pytest.approx(info["search_epsilon"])
    assert parent.data.metrics["privacy_delta"] == pytest.approx(info["delta"])
    assert parent.data.metrics["privacy_max_trial_epsilon"] == pytest.approx(info["max_trial_epsilon"])
    children = {r.info.run_name: r for r in runs if r is not parent}
    for t in private_run.study().trials:
        if ATTR in t.user_attrs:
            assert children[f"trial {t.number}"].data.metrics["privacy_epsilon"] == pytest.approx(t.user_attrs[ATTR]["epsilon"])
    (baseline,) = [r for name, r in children.items() if name.startswith("baseline")]
    assert baseline.data.tags["automl.not_private"] == "true"


def test_no_training_row_is_shown(private_run):
    """No text of a training row in the report, the run's files, the export, the study or
    MLflow's parameters and tags; validation and test rows may appear (error tables, input
    examples). The tokenised splits are cached outside the run directory and removed at
    its end: no file of the run holds the training rows, not even as token ids."""
    import pandas as pd

    run = private_run.run_dir
    data = run.parent / "data"
    train = set(pd.read_csv(data / "train.csv")["text"])
    held_out = set(pd.read_csv(data / "validation.csv")["text"]) | set(pd.read_csv(data / "test.csv")["text"])
    only_train = {t for t in train if t not in held_out and len(t) > 12}
    assert len(only_train) > 50
    assert not (run / "cache").exists()
    assert not [p for p in run.rglob("*.npz") if "train" in p.name]
    texts = []
    for path in run.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".md", ".html", ".journal", ".txt", ".csv", ".yaml"):
            texts.append((path, path.read_text(errors="replace")))
    study = private_run.study()
    texts.append(("study", json.dumps([study.user_attrs, [t.user_attrs for t in study.trials]], default=str)))
    if private_run.mlflow_uri is not None:
        for path in Path(private_run.mlflow_uri[len("file://"):]).rglob("*"):
            if path.is_file() and path.stat().st_size < 2_000_000:
                texts.append((path, path.read_text(errors="replace")))
    for where, text in texts:
        leaked = [row for row in only_train if row in text]
        assert not leaked, f"{where} shows training rows: {leaked[:3]}"


def test_compare_states_each_runs_privacy(private_run, tiny_run):
    info = private_run.privacy()
    records = compare([gather(private_run.run_dir), gather(tiny_run)]).records
    assert records[0]["privacy"] == f"ε {info['search_epsilon']:.2f}, δ {info['delta']:.2g}"
    assert records[1]["privacy"] == "not private"
