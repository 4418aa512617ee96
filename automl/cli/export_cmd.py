"""``automl export``: the run's best model in a deployment format (ONNX, optionally int8;
an MLflow pyfunc model)."""

from __future__ import annotations

from pathlib import Path

import click

from automl.errors import UserError


@click.command(name="export")
@click.argument("run_dir", metavar="RUN_DIR", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["onnx", "mlflow"]), default="onnx", show_default=True, help="Deployment format: ONNX, or an MLflow pyfunc model.")
@click.option("--quantize", type=click.Choice(["int8"]), help="Also write int8 weights (ONNX Runtime dynamic quantisation).")
@click.option("--output", "-o", type=click.Path(path_type=Path), help="Directory to write (default: RUN_DIR/onnx or RUN_DIR/mlflow).")
@click.option("--threads", type=click.IntRange(min=1), help="CPU threads for the measurement, same for every model (default: all cores).")
@click.option("--no-measure", is_flag=True, help="Skip measuring metric and latency on the run's test (or validation) split.")
def command(run_dir: Path, fmt: str, quantize: str | None, output: Path | None, threads: int | None, no_measure: bool) -> None:
    """Export RUN_DIR's best model to ONNX (needs automl[onnx]) next to its tokenizer and
    automl.json, then measure the PyTorch model, ONNX fp32 and int8 on the run's test (or
    validation) split: the metric and the latency per row (median, p95) at batch 1 and 32.
    The figures go into the ONNX model card, RUN_DIR/deployment.json and the report.

    --format mlflow writes the model as an MLflow pyfunc model (needs automl[mlflow]) with
    a signature and input example from the run's split: mlflow.pyfunc.load_model(DIR) and
    `mlflow models serve -m DIR --env-manager local` then predict as `automl predict` does."""
    from rich.console import Console
    from rich.table import Table

    from automl.deploy import export_onnx  # torch; when the command runs: `automl --help` stays fast
    from automl.onnx_model import FIGURE_HEADERS, figure_rows  # when the command runs: `automl --help` stays fast
    from automl.search.worker import quiet_libraries  # when the command runs: `automl --help` stays fast

    quiet_libraries()
    err = Console(stderr=True)
    if fmt == "mlflow":
        from automl.mlflow_model import MLFLOW_DIR, require_mlflow, save_pyfunc  # when the command runs: `automl --help` stays fast
        from automl.results.predict import read_meta  # when the command runs: `automl --help` stays fast

        require_mlflow()
        if quantize is not None:
            raise UserError("applies to --format onnx only", field="--quantize")
        best, _ = read_meta(run_dir)
        run_path = best.parent if best.name == "best" else best
        with err.status("writing the MLflow model"):
            written = save_pyfunc(best, output if output is not None else run_path / MLFLOW_DIR, run_dir=run_path)
        Console(highlight=False).print(f"MLflow pyfunc model written to {written.resolve()}")
        return
    with err.status("exporting to ONNX and measuring"):
        result = export_onnx(run_dir, output=output, quantize=quantize, measure_split=not no_measure, threads=threads)
    out = Console(highlight=False, width=max(Console().width, 110))  # the table needs ~105 columns
    out.print(f"ONNX model written to {result.directory} ({', '.join(result.files)})")
    body = result.to_dict()
    if result.measured:
        table = Table(title=f"{result.split} split, {result.rows} rows, {result.threads} threads", title_justify="left")
        for header in FIGURE_HEADERS:
            table.add_column(header.format(objective=result.objective), justify="left" if header == "model" else "right")
        for row in figure_rows(body):
            table.add_row(*row)
        out.print(table)
    else:
        out.print("not measured (--no-measure, or the run's test and validation files are gone)")
