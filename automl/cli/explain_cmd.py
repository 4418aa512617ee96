"""``automl explain``: why an exported model predicted what it did, per row."""

from __future__ import annotations

from pathlib import Path

import click


@click.command(name="explain")
@click.argument("model_dir", metavar="MODEL_DIR", type=click.Path(path_type=Path))
@click.argument("source", metavar="DATA")
@click.option("--output", "-o", type=click.Path(path_type=Path),
              help="Write here: .jsonl (one row a line), .csv (one reason a line) or .html (words highlighted); "
                   "default: JSON lines on stdout.")
@click.option("--rows", type=click.IntRange(min=1), default=None, help="Explain only the first N rows.")
@click.option("--top", type=click.IntRange(min=1), default=5, show_default=True, help="Reasons kept per row.")
@click.option("--html", "html_path", type=click.Path(path_type=Path), help="Also write the HTML view here.")
@click.option("--column", help="Text column of DATA (default: the one the model was trained on).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps.")
def command(model_dir: Path, source: str, output: Path | None, rows: int | None, top: int, html_path: Path | None,
            column: str | None, device: str) -> None:
    """Explain the predictions of the model exported to MODEL_DIR (a fine-tuned, fused,
    LoRA, baseline or ensemble export) on DATA (CSV, JSONL or Parquet): per row the
    prediction and its top reasons, each a column with its value or a word of a text
    column, with a signed contribution (docs/explain.md). Needs automl[explain]."""
    from automl.explain import explanation_format, require_extra, write_explanations  # when the command runs: `automl --help` stays fast
    from automl.results.predict import load_model, read_input  # when the command runs: `automl --help` stays fast
    from automl.search.worker import quiet_libraries  # when the command runs: `automl --help` stays fast

    require_extra()
    for path in (output, html_path):
        if path is not None:
            explanation_format(path)  # a bad extension fails before the model loads
    quiet_libraries()
    model = load_model(model_dir, column=column, device=device)
    frame, name = read_input(source, str((model.meta.get("data") or {}).get("text_column", "text")))
    if rows is not None:
        frame = frame.head(rows)
    explanations = model.explain(frame, file=name)
    write_explanations(explanations, output, top=top)
    if html_path is not None:
        write_explanations(explanations, html_path, top=top)
