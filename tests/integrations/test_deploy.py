"""``automl export --format onnx``: the ONNX graph gives the PyTorch model's logits (within
1e-4), int8 runs and its metric change is reported, ``automl predict`` runs the ONNX
directory, figures reach the model card, deployment.json and the report; a model the
export cannot write is refused in one line."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from automl.cli import cli

pytest.importorskip("onnxruntime", reason="the onnx extra is not installed (pip install 'automl[test]')")
pytest.importorskip("onnxscript", reason="the onnx extra is not installed (pip install 'automl[test]')")


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


@pytest.fixture
def exported(run_copy):
    """The run copy exported to ONNX with int8, through the command line."""
    result = invoke("export", str(run_copy), "--format", "onnx", "--quantize", "int8", "--threads", "1")
    assert result.exit_code == 0, result.output
    return run_copy


def test_onnx_logits_match_pytorch_within_1e_4(exported):
    import torch

    from automl.deploy import OnnxModel
    from automl.results.predict import load_exported

    pytorch = load_exported(exported / "best", device="cpu")
    onnx = OnnxModel(exported / "onnx" / "model.onnx")
    texts = ["great excellent love it", "terrible awful broken and sad useless item from the shop", "a box"]
    batch = pytorch.tokenizer(texts, return_tensors="pt", padding=True, return_token_type_ids=False)
    with torch.inference_mode():
        expected = pytorch.model(**batch).logits.numpy()
    got = onnx(**batch).logits.numpy()
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() < 1e-4

    deployment = json.loads((exported / "deployment.json").read_text())
    fp32 = next(m for m in deployment["measured"] if m["name"] == "onnx-fp32")
    assert fp32["max_abs_diff"] < 1e-4 and fp32["agreement"] == 1.0


def test_int8_runs_and_its_metric_change_is_reported(exported):
    deployment = json.loads((exported / "deployment.json").read_text())
    assert deployment["split"] == "test" and deployment["rows"] == 48 and deployment["objective"] == "f1_macro"
    by_name = {m["name"]: m for m in deployment["measured"]}
    assert list(by_name) == ["pytorch", "onnx-fp32", "onnx-int8"]
    for m in by_name.values():
        assert set(m["latency"]) == {"1", "32"}
        assert 0 < m["latency"]["1"]["median_ms"] <= m["latency"]["1"]["p95_ms"]
        assert 0 <= m["metrics"]["f1_macro"] <= 1
    int8 = by_name["onnx-int8"]
    assert 0 <= int8["agreement"] <= 1 and int8["size_mb"] < by_name["onnx-fp32"]["size_mb"]

    card = (exported / "onnx" / "README.md").read_text()
    report = (exported / "report.md").read_text()
    for text in (card, report):
        assert "| model | f1_macro | b1 median | b1 p95 | b32 median | b32 p95 | agree | max diff | MB |" in text
        int8_row = next(line for line in text.splitlines() if line.startswith("| onnx-int8 |"))
        assert f"| {int8['metrics']['f1_macro']:.4f} |" in int8_row
    assert "Deployment (ONNX Runtime)" in (exported / "report.html").read_text()
    meta = json.loads((exported / "onnx" / "automl.json").read_text())
    assert meta["format"] == "onnx" and meta["onnx"]["model"] == "model.int8.onnx"


def test_predict_on_the_onnx_directory_gives_the_pytorch_labels(exported, tmp_path):
    data = json.loads((exported / "run.json").read_text())["recipe"]["data"]["test"]
    outputs = {}
    for name, model_dir in (("pytorch", exported / "best"), ("int8", exported / "onnx")):
        out = tmp_path / f"{name}.csv"
        result = invoke("predict", str(model_dir), data, "-o", str(out))
        assert result.exit_code == 0, result.output
        outputs[name] = pd.read_csv(out)
    agreement = (outputs["pytorch"]["prediction"] == outputs["int8"]["prediction"]).mean()
    reported = {m["name"]: m for m in json.loads((exported / "deployment.json").read_text())["measured"]}
    assert agreement == pytest.approx(reported["onnx-int8"]["agreement"])

    fp32_dir = tmp_path / "fp32"
    assert invoke("export", str(exported), "--output", str(fp32_dir), "--no-measure").exit_code == 0
    assert sorted(p.name for p in fp32_dir.glob("*.onnx")) == ["model.onnx"]
    out = tmp_path / "fp32.csv"
    assert invoke("predict", str(fp32_dir), data, "-o", str(out)).exit_code == 0
    fp32 = pd.read_csv(out)
    assert fp32["prediction"].tolist() == outputs["pytorch"]["prediction"].tolist()
    assert (fp32["score"] - outputs["pytorch"]["score"]).abs().max() < 1e-4


@pytest.mark.parametrize("kind", ["fused", "ensemble", "baseline"])
def test_models_it_cannot_export_are_refused_in_one_line(run_copy, kind):
    meta_file = run_copy / "best" / "automl.json"
    meta_file.write_text(json.dumps({**json.loads(meta_file.read_text()), "kind": kind}))
    result = invoke("export", str(run_copy), "--format", "onnx")
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "ONNX export does not support" in lines[0] and f"(kind '{kind}')" in lines[0], result.output
    assert not (run_copy / "onnx").exists()
