"""The MLflow callback plugin against a real local file store and a real ``mlflow server``
process on 127.0.0.1: a parent run, one nested run per trial with a metric per
evaluation, the baseline, the exported model as an MLflow pyfunc model; a server that is down gives
one warning and the run goes on."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from integration_helpers import free_port, run_in_process

mlflow = pytest.importorskip("mlflow", reason="the mlflow extra is not installed (pip install 'automl[test]')")


def logged(uri: str, study: str) -> tuple[object, object, dict[str, object]]:
    """(client, parent run, {child run name: run}) of the one automl run in *uri*."""
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(study)
    assert experiment is not None, f"no experiment '{study}' in {uri}"
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1, [r.info.run_name for r in parents]
    (parent,) = parents
    children = {r.info.run_name: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    assert len(children) == len(runs) - 1
    return client, parent, children


def check_logged(uri: str, run_dir: Path) -> None:
    from automl.results import gather

    results = gather(run_dir)
    client, parent, children = logged(uri, "tiny-tracked")
    # The parent: the recipe, the counts, the best model's metrics, the model and report.
    assert parent.info.status == "FINISHED"
    assert parent.data.params["task"] == "text-classification" and parent.data.params["backbone"] == "tiny-bert"
    assert parent.data.params["search.trials"] == "3"
    assert parent.data.metrics["n_complete"] == 2 and parent.data.metrics["n_failed"] == 1
    best = results.best
    assert parent.data.metrics["best_f1_macro"] == pytest.approx(best.value)
    export = json.loads((run_dir / "best" / "automl.json").read_text())
    for split, values in export["metrics"].items():
        assert parent.data.metrics[f"{split}_f1_macro"] == pytest.approx(values["f1_macro"])
    # The model: an MLflow pyfunc model holding the export (a trial, the baseline or the ensemble).
    model_files = {Path(f.path).name for f in client.list_artifacts(parent.info.run_id, "model")}
    assert {"MLmodel", "input_example.json", "data"} <= model_files
    data_files = {Path(f.path).name for f in client.list_artifacts(parent.info.run_id, "model/data/best")}
    exported = {p.name for p in (run_dir / "best").iterdir()}
    assert {"automl.json", "README.md"} <= data_files and data_files == exported
    assert "report.html" in {f.path for f in client.list_artifacts(parent.info.run_id)}

    # One nested run per trial: parameters, every evaluation as a step, state and reason.
    others = 1 + (run_dir / "ensemble.json").exists()  # the baseline, and the ensemble when the run built one
    assert {"trial 0", "trial 1", "trial 2"} <= set(children) and len(children) == 3 + others
    if (run_dir / "ensemble.json").exists():
        ensemble = json.loads((run_dir / "ensemble.json").read_text())
        assert children["ensemble"].data.metrics["f1_macro"] == pytest.approx(ensemble["validation"]["f1_macro"])
        assert children["ensemble"].data.params == {f"member.{m['name']}": str(m["weight"]) for m in ensemble["members"]}
    for row in results.trials:
        child = children[f"trial {row.number}"]
        assert child.data.tags["automl.state"] == row.state.value
        assert child.data.params == {k: str(v) for k, v in row.params.items()}
        if row.state.value == "complete":
            assert child.info.status == "FINISHED"
            history = client.get_metric_history(child.info.run_id, "f1_macro")
            steps = sorted((m.step, m.value) for m in history)
            # every evaluation from the study, then the final value at the last step
            evaluations = sorted(row.intermediate)
            assert len(evaluations) >= 2 and [s for s, _ in steps][: len(evaluations)] == evaluations
            assert [v for _, v in steps][: len(evaluations)] == pytest.approx([row.intermediate[k] for k in evaluations])
            assert child.data.metrics["duration_s"] == pytest.approx(row.seconds)
            assert set(row.metrics) <= set(child.data.metrics)
        else:
            assert child.info.status == "FAILED"
            assert "trial 1 fails on purpose" in child.data.tags["automl.reason"]
    baseline = [r for name, r in children.items() if name.startswith("baseline")]
    assert len(baseline) == 1 and "f1_macro" in baseline[0].data.metrics


def test_run_is_logged_to_a_local_file_store(tracked_run):
    _, run_dir, uri = tracked_run
    check_logged(uri, run_dir)
    state = json.loads((run_dir / "mlflow.json").read_text())
    assert state["tracking_uri"] == uri and sorted(state["logged_trials"]) == ["0", "1", "2"]


def test_rerun_logs_nothing_twice(tracked_run):
    recipe, run_dir, uri = tracked_run
    outcome = run_in_process(recipe)  # the budget is spent: nothing trains, the hooks run again
    assert outcome.summary.n_complete == 2
    check_logged(uri, run_dir)


@pytest.fixture
def mlflow_server(tmp_path: Path):
    """A real ``mlflow server`` on 127.0.0.1 (SQLite backend, artifacts proxied to tmp)."""
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
            "--backend-store-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
            "--artifacts-destination", str(tmp_path / "artifacts"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "server.log", "w"),  # noqa: SIM115 - closed with the process
        start_new_session=True,  # its own process group: the server and its workers stop together
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 600  # a bound, not a speed check: a loaded machine is slow
        while time.monotonic() < deadline:  # the first start creates the database schema
            if proc.poll() is not None:
                pytest.fail("mlflow server exited: " + (tmp_path / "server.log").read_text()[-2000:])
            try:
                with urllib.request.urlopen(url + "/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail("mlflow server did not answer /health: " + (tmp_path / "server.log").read_text()[-2000:])
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.mark.slow
def test_run_is_logged_to_a_tracking_server(tracked_run, run_copy, mlflow_server):
    recipe, _, _ = tracked_run
    (run_copy / "mlflow.json").unlink()
    outcome = run_in_process(recipe, output=str(run_copy), mlflow=mlflow_server)  # resumes: nothing to train
    assert outcome.summary.n_complete == 2
    check_logged(mlflow_server, run_copy)


def test_a_server_that_is_down_gives_one_warning_and_the_run_goes_on(tracked_run, run_copy, capsys):
    recipe, _, _ = tracked_run
    down = f"http://127.0.0.1:{free_port()}"
    (run_copy / "mlflow.json").unlink()
    (run_copy / "summary.json").unlink()
    outcome = run_in_process(recipe, output=str(run_copy), mlflow=down, trials=4)  # one more trial
    assert outcome.summary.n_complete == 3 and outcome.best_dir is not None
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if "MLflow" in line]
    assert len(warnings) == 1, err
    assert warnings[0].startswith(f"warning: cannot log to MLflow at {down}") and "the search goes on" in warnings[0]
    assert not (run_copy / "mlflow.json").exists()

