"""``automl predict``: predictions from an exported model."""

from __future__ import annotations

from pathlib import Path

import click

from automl.data import SETTABLE_FORMATS


@click.command(name="predict")
@click.argument("model_dir", metavar="MODEL_DIR", type=click.Path(path_type=Path))
@click.argument("source", metavar="INPUT")
@click.option("--output", "-o", type=click.Path(path_type=Path), help="Write here (.csv, .jsonl or .parquet); default: CSV on stdout.")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True, help="Rows per forward pass.")
@click.option("--column", help="Text column of INPUT (default: the one the model was trained on).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps.")
@click.option("--format", "fmt", type=click.Choice(SETTABLE_FORMATS), help="How to read INPUT when its suffix misleads (default: from the suffix).")
@click.option("--explain", "explain_top", type=click.IntRange(min=1), default=None,
              help="Add a 'reasons' column: the top K reasons of each row (needs automl[explain]; docs/explain.md).")
def command(
    model_dir: Path, source: str, output: Path | None, batch_size: int, column: str | None, device: str,
    fmt: str | None, explain_top: int | None,
) -> None:
    """Predict INPUT (CSV, JSONL or Parquet; - for lines of text on stdin) with the model
    exported to MODEL_DIR (a run's best/: a fine-tuned model, the baseline or an ensemble;
    or a run's baseline/). Writes the input rows plus the prediction and
    score columns."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from automl.explain import reasons_text, require_extra  # when the command runs: `automl --help` stays fast
    from automl.results.predict import load_model, output_format, predict_frame, read_input, write_predictions  # torch: when the command runs
    from automl.search.worker import quiet_libraries  # when the command runs: `automl --help` stays fast

    quiet_libraries()
    if explain_top is not None:
        require_extra()
    if output is not None:
        output_format(output)  # a bad extension fails before the model loads
    exported = load_model(model_dir, column=column, device=device)
    frame, name = read_input(source, str((exported.meta.get("data") or {}).get("text_column", "text")), fmt=fmt)
    err = Console(stderr=True)
    progress = Progress(
        TextColumn("predicting"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=err, transient=True,
        disable=not err.is_terminal,
    )
    with progress:
        job = progress.add_task("predict", total=None)
        result = predict_frame(
            exported,
            frame,
            file=name,
            batch_size=batch_size,
            on_total=lambda n: progress.update(job, total=n),
            on_batch=lambda n: progress.advance(job, n),
        )
    if explain_top is not None:
        explanations = exported.explain(frame, file=name)
        result["reasons"] = [reasons_text(e, explain_top) for e in explanations]
    write_predictions(result, output)
    # An input column that a prediction column of the same name replaced: on the data the
    # model was trained on, often the label itself (fraud's `is_fraud`), which the user may
    # have meant to keep beside the prediction.
    replaced = [c for c in frame.columns if c in result.columns and not result[c].equals(frame[c])]
    for replaced_column in replaced:
        err.print(f"note: {name}: column '{replaced_column}' is replaced by the prediction column of the same name; "
                  "rename it in the input to keep it", highlight=False, soft_wrap=True)
    if output is not None and err.is_terminal:
        err.print(f"{len(result)} predictions written to {output}")
