"""automl predict: the same labels as a plain transformers pipeline; every input format;
one-line errors with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
from click.testing import CliRunner

from automl.cli import cli


def invoke(*args: str, input: str | None = None):
    return CliRunner().invoke(cli, list(args), input=input)


def test_predict_matches_transformers_pipeline(tiny_run, data_dir, tmp_path):
    from transformers import pipeline

    out = tmp_path / "pred.csv"
    result = invoke("predict", str(tiny_run / "best"), str(data_dir / "test.csv"), "-o", str(out), "--batch-size", "7")
    assert result.exit_code == 0, result.output
    ours = pd.read_csv(out)
    frame = pd.read_csv(data_dir / "test.csv")
    assert list(ours.columns[:2]) == ["text", "label"] and len(ours) == len(frame)
    assert {"prediction", "score", "score_negative", "score_positive"} <= set(ours.columns)

    classify = pipeline("text-classification", model=str(tiny_run / "best"), device="cpu")
    theirs = [p["label"] for p in classify(frame["text"].tolist(), truncation=True, max_length=32, batch_size=16)]
    assert ours["prediction"].tolist() == theirs
    best = ours[["score_negative", "score_positive"]].max(axis=1)
    assert (ours["score"] - best).abs().max() < 1e-6 and ours["score"].between(0.5, 1).all()


def test_load_model_api_serves_a_text_only_export_too(tiny_run, data_dir):
    import numpy as np

    import automl

    frame = pd.read_csv(data_dir / "test.csv").head(20)
    model = automl.load_model(str(tiny_run))  # the run directory stands for its best/
    assert model.meta["kind"] == "transformers" and model.task.features is None
    outputs = model.outputs(frame)
    assert isinstance(outputs, np.ndarray) and outputs.shape == (20, 2)
    scored = model.predict(frame)
    assert scored["prediction"].tolist() == [model.task.labels[i] for i in outputs.argmax(axis=1)]


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_predict_reads_and_writes_jsonl_and_parquet(tiny_run, data_dir, tmp_path, suffix):
    frame = pd.read_csv(data_dir / "test.csv").head(12).rename(columns={"text": "review"})
    source = tmp_path / f"in{suffix}"
    if suffix == ".jsonl":
        frame.to_json(source, orient="records", lines=True)
    else:
        frame.to_parquet(source)
    out = tmp_path / f"out{suffix}"
    result = invoke("predict", str(tiny_run / "best"), str(source), "--column", "review", "-o", str(out))
    assert result.exit_code == 0, result.output
    back = pd.read_json(out, lines=True) if suffix == ".jsonl" else pd.read_parquet(out)
    assert back["review"].tolist() == frame["review"].tolist()
    assert set(back["prediction"]) <= {"negative", "positive"}


def test_predict_stdin_lines_to_csv_on_stdout(tiny_run):
    result = invoke("predict", str(tiny_run / "best"), "-", input="great excellent love it\n\nterrible awful broken\n")
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("text,prediction,score")
    assert len(lines) == 3  # the blank line is skipped


@pytest.mark.parametrize(
    "case, expected",
    [
        ("missing_column", "column 'nope' not found"),
        ("unreadable", "not UTF-8"),
        ("no_file", "no such file"),
        ("not_export", "is not an automl export"),
        ("bad_output", "unknown output format"),
    ],
)
def test_predict_errors_are_one_line_exit_2(tiny_run, data_dir, tmp_path, case, expected):
    model, source, extra = str(tiny_run / "best"), str(data_dir / "test.csv"), []
    if case == "missing_column":
        extra = ["--column", "nope"]
    elif case == "unreadable":
        bad = tmp_path / "bad.csv"
        bad.write_bytes(b"text\n\xff\xfe broken bytes\n")
        source = str(bad)
    elif case == "no_file":
        source = str(tmp_path / "missing.csv")
    elif case == "not_export":
        (tmp_path / "empty").mkdir()
        model = str(tmp_path / "empty")
    elif case == "bad_output":
        extra = ["-o", str(tmp_path / "out.xlsx")]
    result = invoke("predict", model, source, *extra)
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if not line.startswith("warning:")]
    assert len(errors) == 1 and errors[0].startswith("error: ") and expected in errors[0], result.stderr


def test_predict_accepts_the_run_directory(tiny_run, data_dir):
    meta = json.loads((tiny_run / "best" / "automl.json").read_text())
    result = invoke("predict", str(tiny_run), "-", input="love it\n")
    assert result.exit_code == 0
    assert result.stdout.splitlines()[1].split(",")[1] in meta["labels"]


# ---------------------------------------------------------------------- columns by name


EXPORTS = ["best", "baseline"]


@pytest.mark.parametrize("export", EXPORTS)
def test_predict_names_a_missing_feature_column(columns_run, tmp_path, export):
    """Only ``b`` (categories) given to a model trained on ``a`` (numbers) and ``b``: the
    message names ``a``, not a type error about ``b``."""
    source = tmp_path / "only_b.csv"
    pd.read_csv(columns_run.parent / "data" / "test.csv")[["b", "memo"]].to_csv(source, index=False)
    result = invoke("predict", str(columns_run / export), str(source))
    assert result.exit_code == 2, result.output
    errors = [line for line in result.stderr.splitlines() if not line.startswith("warning:")]
    assert len(errors) == 1 and "column 'a' not found" in errors[0] and str(source) in errors[0], result.stderr


@pytest.mark.parametrize("export", EXPORTS)
def test_predict_matches_columns_by_name_extra_and_reordered(columns_run, tmp_path, export):
    test = pd.read_csv(columns_run.parent / "data" / "test.csv")
    plain = tmp_path / "plain.csv"
    test.to_csv(plain, index=False)
    shuffled = tmp_path / "shuffled.csv"
    moved = test[["memo", "is_fraud", "b", "a"]].assign(note="extra column", id=range(len(test)))
    moved.to_csv(shuffled, index=False)
    outputs = []
    for source in (plain, shuffled):
        out = tmp_path / f"pred-{source.stem}.csv"
        result = invoke("predict", str(columns_run / export), str(source), "-o", str(out))
        assert result.exit_code == 0, result.output
        # The label column shares its name with fraud's decision column, which replaces it.
        assert f"note: {source}: column 'is_fraud' is replaced by the prediction column" in " ".join(result.stderr.split())
        outputs.append(pd.read_csv(out))
    assert outputs[1]["note"].eq("extra column").all() and outputs[1]["id"].tolist() == list(range(len(test)))
    assert outputs[0]["prediction"].tolist() == outputs[1]["prediction"].tolist()
    assert (outputs[0]["score"] - outputs[1]["score"]).abs().max() < 1e-6


@pytest.mark.parametrize("export", EXPORTS)
def test_predict_takes_a_category_training_never_saw(columns_run, tmp_path, export):
    """``b`` is an input column: a value training never saw is scored, not refused."""
    frame = pd.read_csv(columns_run.parent / "data" / "test.csv").head(6)
    frame.loc[0, "b"] = "never-seen-in-training"
    source = tmp_path / "new_category.csv"
    frame.to_csv(source, index=False)
    result = invoke("predict", str(columns_run / export), str(source), "-o", str(tmp_path / "out.csv"))
    assert result.exit_code == 0, result.output
    out = pd.read_csv(tmp_path / "out.csv")
    assert len(out) == 6 and out["score"].between(0, 1).all()


def test_predict_reads_a_csv_with_bom_and_crlf(columns_run, tmp_path):
    frame = pd.read_csv(columns_run.parent / "data" / "test.csv").head(8)
    source = tmp_path / "windows.csv"
    source.write_bytes(b"\xef\xbb\xbf" + frame.to_csv(index=False, lineterminator="\r\n").encode())
    result = invoke("predict", str(columns_run / "best"), str(source), "-o", str(tmp_path / "out.csv"))
    assert result.exit_code == 0, result.output
    out = pd.read_csv(tmp_path / "out.csv")
    assert list(out.columns[:3]) == ["a", "b", "memo"] and out["memo"].tolist() == frame["memo"].tolist()


def test_load_model_keeps_the_loading_bar_quiet_unless_asked(tiny_run, capfd):
    from transformers.utils import logging as hf_logging

    import automl

    hf_logging.enable_progress_bar()  # as in a fresh program (an in-process run switches it off)
    capfd.readouterr()
    automl.load_model(str(tiny_run))
    assert "Loading weights" not in capfd.readouterr().err
    assert hf_logging.is_progress_bar_enabled()  # the program's own setting is kept
    automl.load_model(str(tiny_run), progress=True)
    assert "Loading weights" in capfd.readouterr().err


def test_predict_prints_no_loading_bar(tiny_run, data_dir, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "automl", "predict", str(tiny_run / "best"), str(data_dir / "test.csv"), "-o", str(tmp_path / "p.csv")],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "Loading weights" not in result.stderr + result.stdout


def test_predict_format_reads_a_file_whose_suffix_misleads(tiny_run, data_dir, tmp_path):
    source = tmp_path / "rows.txt"  # tab-separated, but .txt reads as CSV
    pd.read_csv(data_dir / "test.csv").head(10).to_csv(source, sep="\t", index=False)
    result = invoke("predict", str(tiny_run / "best"), str(source))
    assert result.exit_code == 2 and "column 'text' not found" in result.stderr, result.output
    result = invoke("predict", str(tiny_run / "best"), str(source), "--format", "tsv", "-o", str(tmp_path / "out.csv"))
    assert result.exit_code == 0, result.output
    assert len(pd.read_csv(tmp_path / "out.csv")) == 10
