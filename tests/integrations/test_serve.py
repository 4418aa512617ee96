"""``automl serve``: the real server (uvicorn, on a free loopback port) answering real HTTP
requests. For every kind of model automl exports, the predictions equal ``automl predict``
on the same rows, also when concurrent requests are batched together; every bad request
gets a 4xx with a one-line reason and the next good request still succeeds."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import math
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner
from integration_helpers import free_port
from rich.console import Console

from automl.cli import cli
from automl.testing import tiny_recipe, write_recipe, write_toy_text_data

httpx = pytest.importorskip("httpx", reason="the serve extra is not installed (pip install 'automl[test]')")
pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install 'automl[test]')")
uvicorn = pytest.importorskip("uvicorn", reason="the serve extra is not installed (pip install 'automl[test]')")

from automl.serve import Settings, create_app  # noqa: E402

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


@contextlib.contextmanager
def serving(model_dir: Path, **options: object):
    """The service of *model_dir* in a uvicorn server on a free port (in a thread)."""
    app = create_app(Settings(str(model_dir), device="cpu", **options))  # type: ignore[arg-type]
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


def predicted_by_cli(model_dir: Path, source: Path, tmp_path: Path) -> pd.DataFrame:
    out = tmp_path / f"predicted-{model_dir.name}.jsonl"
    result = CliRunner().invoke(cli, ["predict", str(model_dir), str(source), "-o", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    return pd.read_json(out, lines=True, dtype=False)


def records(frame: pd.DataFrame) -> list[dict]:
    """Rows as JSON objects (missing cells as null)."""
    return json.loads(frame.to_json(orient="records"))


def assert_same(served: list[dict], expected: pd.DataFrame) -> None:
    assert len(served) == len(expected)
    for got, (_, want) in zip(served, expected.iterrows(), strict=True):
        for column, value in got.items():
            other = want[column]
            if isinstance(value, float) or isinstance(other, float):
                assert math.isclose(float(value), float(other), rel_tol=1e-5, abs_tol=1e-6), (column, value, other)
            else:
                assert str(value) == str(other), (column, value, other)


def check_kind(model_dir: Path, source: Path, tmp_path: Path) -> dict:
    """Serve *model_dir*; send *source*'s rows in 1- to 5-row requests from 8 threads at
    once (batched together by the server) and compare with ``automl predict``."""
    frame = pd.read_csv(source)
    expected = predicted_by_cli(model_dir, source, tmp_path)
    rows = records(frame)
    chunks = [(start, rows[start : start + 1 + start % 5]) for start in range(0, len(rows), 3)]
    chunks = [(s, c) for s, c in chunks if c]
    with serving(model_dir, max_batch_size=16, max_wait_ms=50) as url, httpx.Client(base_url=url, timeout=60) as client:
        health = client.get("/health").json()
        assert health["status"] == "ok"

        def send(item):
            start, chunk = item
            response = client.post("/predict", json={"rows": chunk})
            assert response.status_code == 200, response.text
            return start, response.json()["predictions"]

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(send, chunks))
        for start, predictions in answers:
            want = expected.iloc[start : start + len(predictions)]
            assert set(predictions[0]) <= set(want.columns)
            assert_same(predictions, want)
        stats = client.get("/health").json()
        # One row alone, as a scoring client sends a transaction as it arrives.
        single = client.post("/predict", json={"rows": rows[:1]})
        assert single.status_code == 200, single.text
        assert_same(single.json()["predictions"], expected.iloc[:1])
        meta = client.get("/metadata").json()
    assert stats["rows"] == sum(len(c) for _, c in chunks)
    assert stats["batches"] < len(chunks)  # concurrent requests were scored together
    return meta


# --------------------------------------------------------------------------- exports


@pytest.fixture(scope="module")
def text_run(tracked_run) -> Path:
    """The integration tests' tiny text run (full fine-tuning), as it stands."""
    return tracked_run[1]


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory) -> Path:
    from automl import plugins
    from automl.recipe import load_recipe
    from automl.search.supervisor import RunOptions, run_recipe

    base = tmp_path_factory.mktemp("serve-lora")
    data = write_toy_text_data(base / "data", train=120, validation=40, test=40)
    recipe = tiny_recipe(
        data, output=str(base / "run"), name="tiny-lora",
        search={"trials": 1, "space": {"learning_rate": 5e-3, "epochs": 1, "batch_size": 16, "adapter": "lora"}},
    )
    plugins.reset()
    outcome = run_recipe(load_recipe(write_recipe(base / "recipe.yaml", recipe)), options=RunOptions(workers=0), console=Console(file=io.StringIO()))
    plugins.reset()
    assert outcome.best_dir is not None
    return outcome.run_dir


@pytest.fixture(scope="module")
def fraud_run(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(run, exported ensemble, test file): fraud-detection on the tiny backbone with
    fusion (the fused export), its baseline, and an ensemble of the two exported."""
    import optuna

    from automl import plugins
    from automl.best import export_ensemble
    from automl.ensemble import build_ensemble, candidates
    from automl.export import export_best
    from automl.recipe import load_recipe
    from automl.run import RunContext
    from automl.search.storage import open_storage
    from automl.search.supervisor import RunOptions, run_recipe
    from automl_plugins import datagen

    base = tmp_path_factory.mktemp("serve-fraud")
    datagen.generate("fraud", base / "data", seed=1, scale=0.1)
    recipe = yaml.safe_load((RECIPES / "fraud.yaml").read_text())
    recipe.update(backbone="tiny-bert", backbone_options={}, output=str(base / "run"), name="tiny-fraud")
    recipe["data"].update({split: str(base / "data" / "fraud" / f"{split}.csv") for split in ("train", "validation", "test")})
    recipe["search"] = {"trials": 1, "pruner": "none", "retries": 0, "keep_top_k": 1,
                        "space": {"learning_rate": 3e-3, "batch_size": 16, "epochs": 1, "adapter": "full"}}
    recipe["training"] = {"max_length": 48, "seed": 0, "device": "cpu"}
    path = write_recipe(base / "fraud-tiny.yaml", recipe)
    plugins.reset()
    outcome = run_recipe(load_recipe(path), options=RunOptions(workers=0), console=Console(file=io.StringIO()))
    assert outcome.best_dir is not None
    # An ensemble of the kept trial and the baseline, written beside best/ (as the run
    # would export it when it wins).
    ctx = RunContext.create(load_recipe(path))
    data, tokenizer, encoded = ctx.load_data()
    study = optuna.load_study(study_name=ctx.study_name, storage=open_storage(ctx.storage_url, ctx.run_dir))
    result = build_ensemble(ctx, study, data, encoded)
    assert result is not None
    trial = next(m for m in candidates(ctx, study) if m.kind == "trial")
    members = [
        {"name": trial.name, "kind": "trial", "trial": trial.trial, "weight": 0.5, "value": trial.value},
        {"name": "baseline", "kind": "baseline", "trial": None, "weight": 0.5, "value": 0.0},
    ]
    # The fused trial's own export (the run may have exported its baseline instead: on
    # these few rows a trial rarely leads it by more than one standard error).
    fused = base / "fused-best"
    export_best(ctx, study, data, tokenizer, encoded, trial=study.trials[trial.trial], dest=fused)
    ensemble = export_ensemble(ctx, study, dataclasses.replace(result, members=members), data, tokenizer, encoded)
    moved = base / "ensemble"
    shutil.copytree(ensemble, moved)
    plugins.reset()
    return fused, moved, base / "data" / "fraud" / "test.csv"


@pytest.fixture(scope="module")
def onnx_dir(text_run, tmp_path_factory) -> Path:
    pytest.importorskip("onnxruntime", reason="the onnx extra is not installed (pip install 'automl[test]')")
    from automl.deploy import export_onnx

    copy = tmp_path_factory.mktemp("serve-onnx") / "run"
    shutil.copytree(text_run, copy)
    return export_onnx(copy, measure_split=False).directory


def text_test_file(run_dir: Path) -> Path:
    return run_dir.parent / "data" / "test.csv"


# --------------------------------------------------------------------------- every kind


def test_fine_tuned_export_serves_what_predict_gives(text_run, tmp_path):
    meta = check_kind(text_run / "best", text_test_file(text_run), tmp_path)
    assert meta["task"] == "text-classification" and meta["kind"] == "transformers"
    assert meta["columns"] == [{"name": "text", "type": "string"}]
    assert meta["labels"] == ["negative", "positive"] and "test" in meta["metrics"]


def test_lora_export_serves_what_predict_gives(lora_run, tmp_path):
    meta = check_kind(lora_run / "best", text_test_file(lora_run), tmp_path)
    assert json.loads((lora_run / "best" / "automl.json").read_text())["adapter"] == "lora"
    assert meta["kind"] == "transformers"


def test_onnx_export_serves_what_predict_gives(onnx_dir, text_run, tmp_path):
    assert check_kind(onnx_dir, text_test_file(text_run), tmp_path)["format"] == "onnx"


def test_fused_export_serves_what_predict_gives(fraud_run, tmp_path):
    fused, _, test_file = fraud_run
    meta = check_kind(fused, test_file, tmp_path)
    assert meta["kind"] == "fused" and meta["threshold"] is not None
    types = {c["name"]: c["type"] for c in meta["columns"]}
    assert types["amount"] == "number" and types["country"] == "category" and types["memo"] == "string"


def test_fraud_baseline_serves_what_predict_gives(fraud_run, tmp_path):
    fused, _, test_file = fraud_run
    assert check_kind(fused.parent / "run" / "baseline", test_file, tmp_path)["kind"] == "baseline"


def test_ensemble_export_serves_what_predict_gives(fraud_run, tmp_path):
    _, ensemble, test_file = fraud_run
    meta = check_kind(ensemble, test_file, tmp_path)
    assert meta["kind"] == "ensemble"
    assert {c["name"]: c["type"] for c in meta["columns"]}["amount"] == "number"


# --------------------------------------------------------------------------- bad requests


def test_bad_requests_get_4xx_with_one_line_and_the_service_stays_up(fraud_run):
    fused, _, test_file = fraud_run
    rows = records(pd.read_csv(test_file).head(3))
    good = {"rows": rows}
    no_amount = [{k: v for k, v in rows[0].items() if k != "amount"}]
    cases = [
        ("missing column", json.dumps({"rows": no_amount}), 422, "lacks column 'amount'"),
        ("wrong type", json.dumps({"rows": [{**rows[0], "amount": "a lot"}]}), 422, "column 'amount' expects a number"),
        ("nested value", json.dumps({"rows": [{**rows[0], "memo": {"a": 1}}]}), 422, "column 'memo' expects a string"),
        ("empty body", "", 400, "empty request body"),
        ("invalid JSON", '{"rows": [', 400, "invalid JSON"),
        ("not rows", json.dumps({"rows": 3}), 422, 'expected {"rows": [...]}'),
        ("no rows", json.dumps({"rows": []}), 422, "no rows"),
        ("oversize", json.dumps({"rows": rows * 200}), 413, "over the limit of 20000 bytes"),
        ("extra column", json.dumps({"rows": [{**row, "surprise": 1} for row in rows]}), 422, "extra column(s) surprise"),
    ]
    with serving(fused, max_body_bytes=20_000) as url, httpx.Client(base_url=url, timeout=60) as client:
        first = client.post("/predict", json=good)
        assert first.status_code == 200
        for name, body, status, reason in cases:
            response = client.post("/predict", content=body, headers={"content-type": "application/json"})
            assert response.status_code == status, (name, response.text)
            detail = response.json()["detail"]
            assert isinstance(detail, str) and "\n" not in detail and reason in detail, (name, detail)
            again = client.post("/predict", json=good)
            assert again.status_code == 200 and again.json() == first.json(), name
        # A body streamed without a length is cut off at the limit too.
        chunked = client.post("/predict", content=iter([json.dumps({"rows": rows * 200}).encode()]))
        assert chunked.status_code == 413
        assert client.post("/predict", json=good).json() == first.json()


def test_concurrent_requests_one_with_an_unknown_field(fraud_run):
    """Concurrent requests: the one with a field the model does not take gets its 422
    (the service's check, before batching), the others their predictions."""
    fused, _, test_file = fraud_run
    rows = records(pd.read_csv(test_file).head(6))
    with serving(fused, max_batch_size=64, max_wait_ms=300) as url, httpx.Client(base_url=url, timeout=60) as client:
        alone = [client.post("/predict", json={"rows": [row]}).json()["predictions"][0] for row in rows]
        bodies = [{"rows": [row]} for row in rows[:3]] + [{"rows": [{**rows[3], "surprise": 1}]}] + [{"rows": [row]} for row in rows[4:]]
        with ThreadPoolExecutor(len(bodies)) as pool:
            answers = list(pool.map(lambda body: client.post("/predict", json=body), bodies))
    assert [a.status_code for a in answers] == [200, 200, 200, 422, 200, 200]
    for i in (0, 1, 2, 4, 5):
        assert_same(answers[i].json()["predictions"], pd.DataFrame([alone[i]]))


def test_the_batcher_scores_a_refused_request_alone_and_the_rest_together(fraud_run):
    """Rows that the model refuses (here a word in a number column, sent straight to the
    batcher, past the service's checks) fail only their own request: the batch is scored
    again request by request."""
    import asyncio

    from automl.serve import BadRequest, Batcher, Scorer

    fused, _, test_file = fraud_run
    rows = records(pd.read_csv(test_file).head(4))
    scorer = Scorer(fused, device="cpu")
    alone = [scorer.score([row])[0] for row in rows]
    broken = {**rows[0], "amount": "lots"}

    async def main():  # type: ignore[no-untyped-def]
        batcher = Batcher(scorer, max_batch_size=64, max_wait_ms=300)
        batcher.start()
        try:
            return await asyncio.gather(*(batcher.submit([r]) for r in [*rows, broken]), return_exceptions=True), batcher
        finally:
            await batcher.stop()

    answers, batcher = asyncio.run(main())
    assert isinstance(answers[-1], BadRequest) and answers[-1].status == 422 and "amount" in answers[-1].reason
    for got, want in zip(answers[:-1], alone, strict=True):
        assert got == [want]
    assert batcher.rows == len(rows)  # the good rows were scored, once each, after the split


def test_metadata_and_openapi_page(fraud_run):
    fused, _, _ = fraud_run
    with serving(fused, max_batch_size=8, max_wait_ms=2) as url, httpx.Client(base_url=url, timeout=60) as client:
        meta = client.get("/metadata").json()
        spec = client.get("/openapi.json").json()
        docs = client.get("/docs")
    assert meta["task"] == "fraud-detection" and meta["labels"] == ["0", "1"]
    assert meta["batching"] == {"max_batch_size": 8, "max_wait_ms": 2}
    assert meta["automl_version"] and meta["objective"]["metric"] == "pr_auc"
    assert {"/predict", "/health", "/metadata"} <= set(spec["paths"])
    row = spec["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]["properties"]["rows"]["items"]
    assert row["properties"]["amount"] == {"type": ["number", "null"]} and "memo" in row["required"]
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


# --------------------------------------------------------------------------- the command


def test_automl_serve_command_with_two_workers(text_run, tmp_path):
    """The real command in its own process: loopback by default, two worker processes."""
    port = free_port()
    expected = predicted_by_cli(text_run / "best", text_test_file(text_run), tmp_path)
    rows = records(pd.read_csv(text_test_file(text_run)).head(10))
    process = subprocess.Popen(
        [sys.executable, "-m", "automl", "serve", str(text_run / "best"), "--port", str(port), "--workers", "2", "--device", "cpu"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            assert process.poll() is None, process.communicate()[1]
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "automl serve did not start"
            time.sleep(0.5)
        response = httpx.post(f"http://127.0.0.1:{port}/predict", json=rows, timeout=60)  # a bare list of rows
        assert response.status_code == 200, response.text
        assert_same(response.json()["predictions"], expected.head(10))
    finally:
        process.terminate()
        _, err = process.communicate(timeout=60)
    assert f"at http://127.0.0.1:{port}" in err


def test_automl_serve_on_a_missing_directory_is_one_line(tmp_path):
    result = CliRunner().invoke(cli, ["serve", str(tmp_path / "nope")])
    assert result.exit_code == 2 and "no such model directory" in result.output
