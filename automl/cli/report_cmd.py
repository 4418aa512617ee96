"""``automl report``: the run's HTML, Markdown and JSON report."""

from __future__ import annotations

from pathlib import Path

import click

from automl.results import gather


@click.command(name="report")
@click.argument("run_dir", metavar="RUN_DIR", type=click.Path(path_type=Path))
@click.option("--storage", envvar="AUTOML_STORAGE", help="Optuna storage URL when the study is not in RUN_DIR.")
@click.option("--study", "study_name", help="Study name (default: the run's).")
def command(run_dir: Path, storage: str | None, study_name: str | None) -> None:
    """Write RUN_DIR/report.html (self-contained, works offline), report.md and
    report.json: best model against the baseline, search plots, the task's plots,
    every trial and the run's provenance."""
    from automl.results.report import write_report  # when the command runs: `automl --help` stays fast

    results = gather(run_dir, storage=storage, study_name=study_name)
    files = write_report(run_dir, results=results)
    click.echo(f"{files.html}\n{files.markdown}\n{files.json}")
