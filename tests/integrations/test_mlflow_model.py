"""The exported model as an MLflow pyfunc model: logged by the MLflow integration as the
parent run's ``model`` and written by ``automl export --format mlflow``. Loaded with
``mlflow.pyfunc.load_model`` and served by the real MLflow scoring server
(``mlflow models serve --env-manager local``), it predicts what ``automl predict`` does."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from integration_helpers import free_port

from automl.cli import cli

mlflow = pytest.importorskip("mlflow", reason="the mlflow extra is not installed (pip install 'automl[test]')")


def predicted_by_cli(model_dir: Path, source: Path, tmp_path: Path) -> pd.DataFrame:
    out = tmp_path / "predicted.csv"
    result = CliRunner().invoke(cli, ["predict", str(model_dir), str(source), "-o", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    return pd.read_csv(out)


def assert_same(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert list(got.columns) == ["prediction", "score", "score_negative", "score_positive"]
    assert got["prediction"].astype(str).tolist() == expected["prediction"].astype(str).tolist()
    for column in got.columns[1:]:
        assert (got[column].astype(float) - expected[column]).abs().max() < 1e-5, column


def test_parent_run_model_loads_as_pyfunc(tracked_run, tmp_path):
    _, run_dir, uri = tracked_run
    run_id = json.loads((run_dir / "mlflow.json").read_text())["run_id"]
    test_file = run_dir.parent / "data" / "test.csv"
    mlflow.set_tracking_uri(uri)
    model = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
    assert model.metadata.get_input_schema().input_names() == ["text"]
    frame = pd.read_csv(test_file).drop(columns=["label"])
    assert_same(model.predict(frame), predicted_by_cli(run_dir / "best", test_file, tmp_path))


def test_export_format_mlflow_writes_a_pyfunc_model(run_copy, tmp_path):
    out = tmp_path / "mlflow-model"
    result = CliRunner().invoke(cli, ["export", str(run_copy), "--format", "mlflow", "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "MLmodel").exists() and (out / "data" / "best" / "automl.json").exists()
    model = mlflow.pyfunc.load_model(str(out))
    example = json.loads((out / "input_example.json").read_text())
    assert example["columns"] == ["text"] and len(example["data"]) == 5
    recipe_data = json.loads((run_copy / "run.json").read_text())["recipe"]["data"]
    test_file = Path(recipe_data["test"])
    frame = pd.read_csv(test_file)  # the label column sent along is ignored
    assert_same(model.predict(frame), predicted_by_cli(run_copy / "best", test_file, tmp_path))
    refused = CliRunner().invoke(cli, ["export", str(run_copy), "--format", "mlflow", "--output", str(run_copy / "best" / "x")])
    assert refused.exit_code == 2 and "outside the exported model directory" in refused.output


def test_mlflow_scoring_server_predicts_what_automl_predict_does(tracked_run, tmp_path):
    _, run_dir, uri = tracked_run
    run_id = json.loads((run_dir / "mlflow.json").read_text())["run_id"]
    test_file = run_dir.parent / "data" / "test.csv"
    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "MLFLOW_ALLOW_FILE_STORE": "true"}
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", f"runs:/{run_id}/model",
               "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    log = (tmp_path / "server.log").open("w")
    # Its own process group: the scoring server runs in a child process of the command.
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while True:
            assert server.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            assert time.monotonic() < deadline, "mlflow models serve did not start"
            time.sleep(1)
        frame = pd.read_csv(test_file).drop(columns=["label"])
        body = json.dumps({"dataframe_split": frame.to_dict(orient="split")}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as response:
            predictions = json.loads(response.read())["predictions"]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()
    assert_same(pd.DataFrame(predictions), predicted_by_cli(run_dir / "best", test_file, tmp_path))
