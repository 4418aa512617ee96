"""The baseline as a saved model and the ensemble in a real run (fraud-detection on the
tiny backbone): skops round trip, ``automl predict`` on the baseline and on an exported
ensemble with the scores computed at the end of the run, the leaderboard/report rows."""

from __future__ import annotations

import dataclasses
import io
import json
import zipfile

import numpy as np
import optuna
import pandas as pd
import pytest
from click.testing import CliRunner
from plugin_helpers import split_paths, tiny_recipe_for
from rich.console import Console

import automl
from automl.baseline import load_outputs, save_model
from automl.cli import cli
from automl.best import export_ensemble
from automl.ensemble import EnsembleResult, build_ensemble, combine
from automl.errors import UserError
from automl.recipe import load_recipe
from automl.results._gather import gather
from automl.results.leaderboard import leaderboard
from automl.run import RunContext
from automl.search.storage import open_storage
from automl.search.supervisor import RunOptions, run_recipe


@pytest.fixture(scope="module")
def fraud_run(data_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("ensemble-run")
    recipe = tiny_recipe_for(
        "fraud-detection", data_root, out, trials=2, keep_top_k=2,
        space={"learning_rate": {"low": 2e-3, "high": 4e-3, "log": True}, "batch_size": 16, "epochs": 1, "adapter": "full"},
    )
    outcome = run_recipe(load_recipe(recipe), options=RunOptions(workers=0), console=Console(file=io.StringIO()))
    return recipe, outcome.run_dir


@pytest.fixture(scope="module")
def test_frame(data_root):
    path = split_paths(data_root, "fraud")["test"]
    return path, pd.read_csv(path)


def test_baseline_is_saved_without_pickle_and_scores_raw_rows(fraud_run, test_frame):
    _, run_dir = fraud_run
    base = run_dir / "baseline"
    assert {"model.skops", "outputs.npz", "automl.json", "README.md"} <= {p.name for p in base.iterdir()}
    with zipfile.ZipFile(base / "model.skops") as saved:  # deflated: skops' JSON shrinks ninefold
        assert {item.compress_type for item in saved.infolist()} == {zipfile.ZIP_DEFLATED}
    stored = load_outputs(base / "outputs.npz")
    path, frame = test_frame
    model = automl.load_model(base)
    assert np.allclose(model.outputs(frame), stored["test"], atol=1e-6)
    meta = json.loads((base / "automl.json").read_text())
    assert meta["kind"] == "baseline"
    # The task's own baseline figures and the saved model's agree.
    assert meta["metrics"]["validation"]["pr_auc"] == pytest.approx(json.loads((run_dir / "baseline.json").read_text())["validation"]["pr_auc"])

    out = path.parent / "baseline-scored.csv"
    result = CliRunner().invoke(cli, ["predict", str(base), str(path), "-o", str(out)])
    assert result.exit_code == 0, result.output
    scored = pd.read_csv(out)
    probs = np.exp(stored["test"])[:, 1]
    assert np.allclose(scored["score"], probs, atol=1e-6)
    assert (scored["is_fraud"] == (scored["score"] >= meta["calibration"]["threshold"])).all()


def test_baseline_missing_column_is_one_line(fraud_run, test_frame, tmp_path):
    _, run_dir = fraud_run
    path, frame = test_frame
    source = tmp_path / "no-amount.csv"
    frame.drop(columns=["amount"]).to_csv(source, index=False)
    result = CliRunner().invoke(cli, ["predict", str(run_dir / "baseline"), str(source)])
    assert result.exit_code == 2
    assert "amount" in result.output and "Traceback" not in result.output


def test_a_model_with_untrusted_types_is_neither_saved_nor_loaded(fraud_run, tmp_path):
    from sklearn.preprocessing import FunctionTransformer

    with pytest.raises(TypeError, match="cannot be loaded safely"):
        save_model(FunctionTransformer(json.dumps).fit([[1]]), tmp_path / "model.skops")
    assert not (tmp_path / "model.skops").exists()
    import skops.io as sio

    sio.dump(FunctionTransformer(json.dumps).fit([[1]]), tmp_path / "model.skops")
    with pytest.raises(UserError, match="untrusted types: json.dumps"):
        automl.baseline.load_model_file(tmp_path / "model.skops")


def test_ensemble_row_in_leaderboard_and_report(fraud_run):
    _, run_dir = fraud_run
    ens = json.loads((run_dir / "ensemble.json").read_text())
    assert ens["members"] and abs(sum(m["weight"] for m in ens["members"]) - 1) < 1e-5
    assert {"ensemble", "single_model", "single", "rows"} <= set(ens["held_out"])
    r = gather(run_dir)
    board = leaderboard(r)
    rows = {rec["trial"]: rec for rec in board.records}
    assert rows["ensemble"]["state"] == "ensemble"
    assert rows["ensemble"]["pr_auc"] == pytest.approx(ens["validation"]["pr_auc"])
    assert rows["baseline"]["pr_auc"] == pytest.approx(r.baseline_value)
    names = " + ".join(m["name"] for m in ens["members"])
    assert names.split(" + ")[0] in rows["ensemble"]["reason"]
    # Exactly one row is marked as the exported model, and it is what best/ holds.
    marked = [rec["trial"] for rec in board.records if rec["best"]]
    kind = json.loads((run_dir / "best" / "automl.json").read_text()).get("kind", "trial")
    assert len(marked) == 1 and (marked[0] in ("baseline", "ensemble")) == (kind in ("baseline", "ensemble"))
    report = (run_dir / "report.md").read_text()
    assert "| ensemble |" in report and f"Exported model ({r.exported_label})" in report
    html = (run_dir / "report.html").read_text()
    assert 'class="state ensemble">ensemble</span>' in html
    # The best trial's settings are never passed off as those of an exported baseline or ensemble.
    assert ("not the exported model" in html) == (kind in ("baseline", "ensemble"))


def test_exported_ensemble_predicts_the_scores_of_the_run(fraud_run, test_frame, tmp_path):
    recipe_path, run_dir = fraud_run
    ctx = RunContext.create(load_recipe(recipe_path))
    data, tokenizer, encoded = ctx.load_data()
    study = optuna.load_study(study_name=ctx.study_name, storage=open_storage(ctx.storage_url, ctx.run_dir))
    result = build_ensemble(ctx, study, data, encoded)
    assert isinstance(result, EnsembleResult)
    # Whatever the selection chose on this tiny data, export a two-member ensemble of the
    # best kept trial and the baseline to exercise every kind of member.
    trial = next(m for m in _candidates(ctx, study) if m.kind == "trial")
    members = [
        {"name": trial.name, "kind": "trial", "trial": trial.trial, "weight": 0.25, "value": trial.value},
        {"name": "baseline", "kind": "baseline", "trial": None, "weight": 0.75, "value": 0.0},
    ]
    best = export_ensemble(ctx, study, dataclasses.replace(result, members=members), data, tokenizer, encoded)
    meta = json.loads((best / "automl.json").read_text())
    assert meta["kind"] == "ensemble" and (best / "ensemble.json").exists()
    member = best / "members" / trial.name  # a fused member keeps its encoder in backbone/
    assert (member / "config.json").exists() or (member / "backbone" / "config.json").exists()
    assert (best / "members" / "baseline" / "model.skops").exists()

    path, frame = test_frame
    out = tmp_path / "ensemble-scored.csv"
    cli_result = CliRunner().invoke(cli, ["predict", str(best), str(path), "-o", str(out), "--device", "cpu"])
    assert cli_result.exit_code == 0, cli_result.output
    scored = pd.read_csv(out)
    # The test metrics stored at export are those of the scores `automl predict` gives.
    from sklearn.metrics import average_precision_score

    labels = (frame["is_fraud"].astype(str) == "1").astype(int)
    assert average_precision_score(labels, scored["score"]) == pytest.approx(meta["metrics"]["test"]["pr_auc"], abs=1e-12)
    # ... and those of the outputs stored during the run, averaged with the same weights.
    stored = combine([trial.outputs["test"], load_outputs(run_dir / "baseline" / "outputs.npz")["test"]], [0.25, 0.75])
    assert np.allclose(scored["score"], np.exp(stored)[:, 1], atol=1e-5)
    model = automl.load_model(best)
    assert np.allclose(np.exp(model.outputs(frame))[:, 1], scored["score"], atol=1e-6)
    assert model.predict(frame)["prediction"].astype(str).tolist() == scored["prediction"].astype(str).tolist()

    board = leaderboard(gather(run_dir))
    assert [rec["trial"] for rec in board.records if rec["best"]] == ["ensemble"]
    report = CliRunner().invoke(cli, ["report", str(run_dir)])
    assert report.exit_code == 0, report.output
    assert f"Hyperparameters of the best trial (trial {gather(run_dir).best.number}), not the exported model" in (run_dir / "report.html").read_text()


def _candidates(ctx, study):
    from automl.ensemble import candidates

    return candidates(ctx, study)


def _member(name: str, kind: str, scores: np.ndarray) -> "Member":
    from automl.ensemble import Member

    logits = np.stack([np.zeros(len(scores)), scores], axis=1)
    return Member(name, kind, 0.0, {"validation": logits}, 0 if kind == "trial" else None)


def test_a_trial_replaces_the_baseline_only_when_it_leads_beyond_one_standard_error():
    from automl.ensemble import choose_single
    from automl.recipe import DataSpec
    from automl.task import Split
    from automl_plugins.fraud import FraudDetection, FraudOptions

    task = FraudDetection(FraudOptions(), DataSpec(train="t.csv", label_column="y"))
    rng = np.random.default_rng(0)
    labels = (rng.random(600) < 0.1).astype(int)
    split, encoded = Split(inputs=[""] * 600, labels=labels.tolist()), {"labels": labels.tolist()}
    signal = labels * 1.0
    baseline = _member("baseline", "baseline", signal + rng.normal(0, 1.0, 600))
    # A trial a little ahead on validation (the baseline's scores, with a few positives
    # nudged up), but not beyond noise: the baseline is kept.
    nudged = baseline.outputs["validation"][:, 1].copy()
    nudged[np.flatnonzero(labels)[:2]] += 0.2
    close = _member("trial-0", "trial", nudged)
    pick, choice = choose_single(task, [close, baseline], split, encoded, "pr_auc", maximize=True, seed=0)
    lead = task.compute_metrics(close.outputs["validation"], split, encoded, {})["pr_auc"] - task.compute_metrics(baseline.outputs["validation"], split, encoded, {})["pr_auc"]
    assert choice["lead"] == pytest.approx(lead) and 0 < lead < choice["standard_error"]
    assert pick.name == "baseline" and choice["chosen"] == "baseline"
    # A trial far ahead is chosen; one behind never is.
    strong = _member("trial-0", "trial", signal * 3 + rng.normal(0, 1.0, 600))
    pick, choice = choose_single(task, [strong, baseline], split, encoded, "pr_auc", maximize=True, seed=0)
    assert pick.name == "trial-0" and choice["lead"] > choice["standard_error"] and choice["chosen"] == "trial-0"
    weak = _member("trial-0", "trial", signal * 0.3 + rng.normal(0, 1.0, 600))
    pick, choice = choose_single(task, [weak, baseline], split, encoded, "pr_auc", maximize=True, seed=0)
    assert pick.name == "baseline" and choice["lead"] < 0
    # Without a baseline the trial is the single model.
    pick, choice = choose_single(task, [close], split, encoded, "pr_auc", maximize=True, seed=0)
    assert pick.name == "trial-0"


def test_an_ensemble_is_exported_only_when_it_wins_the_held_out_half_beyond_one_standard_error():
    from automl.ensemble import halves, held_out_check
    from automl.recipe import DataSpec
    from automl.results._formats import ensemble_verdict
    from automl.task import Split
    from automl_plugins.fraud import FraudDetection, FraudOptions

    task = FraudDetection(FraudOptions(), DataSpec(train="t.csv", label_column="y"))
    rng = np.random.default_rng(0)
    labels = (rng.random(600) < 0.1).astype(int)
    split, encoded = Split(inputs=[""] * 600, labels=labels.tolist()), {"labels": labels.tolist()}
    parts = halves(labels.tolist(), 0, stratify=True)
    single = _member("baseline", "baseline", labels + rng.normal(0, 1.0, 600)).outputs["validation"]

    def check(ensemble):
        return held_out_check(task, ensemble, single, split, encoded, parts, "pr_auc", maximize=True, seed=0)

    # A little ahead on the held-out half, by more than the 0.5% margin but within noise:
    # the single model stays, and the verdict says why.
    nudged = single.copy()
    nudged[np.intersect1d(np.flatnonzero(labels), parts[1])[:1], 1] += 1.5
    close = check(nudged)
    assert close["ensemble"] - close["single_model"] > 0.005 * close["single_model"]
    assert 0 < close["ensemble"] - close["single_model"] < close["standard_error"] and not close["wins"]
    record = {"members": [{"name": "baseline"}, {"name": "trial-0"}], "held_out": close}
    assert ensemble_verdict(record, "baseline").startswith("not exported (a gain of ")
    assert "within one standard error" in ensemble_verdict(record, "baseline")
    # Far ahead: exported; behind: never.
    strong = _member("e", "trial", labels * 3 + rng.normal(0, 1.0, 600)).outputs["validation"]
    far = check(strong)
    assert far["wins"] and far["ensemble"] - far["single_model"] > far["standard_error"]
    weak = _member("e", "trial", labels * 0.2 + rng.normal(0, 1.0, 600)).outputs["validation"]
    assert not check(weak)["wins"]
