"""Without an integration's extra, its command or recipe key says in one line which extra
to install and exits with code 2, before anything trains. Each test runs the real CLI in a
fresh interpreter in which the extra's packages cannot be imported (as when they are not
installed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from automl.testing import tiny_recipe, write_recipe, write_toy_text_data


def automl_without(modules: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    code = (
        "import sys; sys.modules.update(dict.fromkeys(%r, None)); "  # import of these now fails
        "from automl.cli import main; main(%r)" % (modules, list(args))
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)


def one_error_line(result: subprocess.CompletedProcess[str], extra: str) -> str:
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert f'pip install "automl[{extra}]"' in lines[0]
    return lines[0]


def test_mlflow_key_without_mlflow(tmp_path: Path):
    data = write_toy_text_data(tmp_path / "data", train=40, validation=16, test=16)
    recipe = write_recipe(tmp_path / "recipe.yaml", tiny_recipe(data, output=str(tmp_path / "run"), mlflow=(tmp_path / "mlruns").as_uri()))
    line = one_error_line(automl_without(["mlflow"], "run", str(recipe)), "mlflow")
    assert "mlflow:" in line
    assert not (tmp_path / "run" / "artifacts").exists() and not (tmp_path / "run" / "baseline.json").exists()


def test_dashboard_without_optuna_dashboard(tmp_path: Path):
    one_error_line(automl_without(["optuna_dashboard"], "dashboard", str(tmp_path)), "dashboard")


@pytest.mark.parametrize("module", ["onnxruntime", "onnxscript"])
def test_export_without_onnx(tmp_path: Path, module: str):
    line = one_error_line(automl_without([module], "export", str(tmp_path), "--format", "onnx"), "onnx")
    assert module in line


def test_predict_on_an_onnx_directory_without_onnxruntime(tmp_path: Path):
    meta = {"task": "text-classification", "format": "onnx", "head": "sequence-classification", "data": {"text_column": "text"}}
    (tmp_path / "automl.json").write_text(json.dumps(meta))
    one_error_line(automl_without(["onnxruntime"], "predict", str(tmp_path), "-"), "onnx")


@pytest.mark.parametrize("module", ["fastapi", "uvicorn"])
def test_serve_without_the_serve_extra(tmp_path: Path, module: str):
    line = one_error_line(automl_without([module], "serve", str(tmp_path)), "serve")
    assert module in line


def test_export_mlflow_without_mlflow(tmp_path: Path):
    one_error_line(automl_without(["mlflow"], "export", str(tmp_path), "--format", "mlflow"), "mlflow")
