"""``automl dashboard``: serve a run's study in Optuna Dashboard."""

from __future__ import annotations

from pathlib import Path

import click


@click.command(name="dashboard")
@click.argument("run_dir", metavar="[RUN_DIR]", required=False, type=click.Path(path_type=Path))
@click.option("--port", "-p", type=click.IntRange(min=0, max=65535), default=8080, show_default=True, help="Port to listen on (0: any free port).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on; 0.0.0.0 serves other machines too.")
@click.option("--storage", envvar="AUTOML_STORAGE", help="Optuna storage URL when the study is not in RUN_DIR.")
@click.option("--study", "study_name", help="Study to open first (default: the run's).")
@click.option("--allow-writes", is_flag=True, help="Let the dashboard change the study (notes, deleting trials); read-only by default.")
def command(run_dir: Path | None, port: int, host: str, storage: str | None, study_name: str | None, allow_writes: bool) -> None:
    """Serve RUN_DIR's Optuna study (or --storage URL --study NAME) in Optuna Dashboard
    (needs automl[dashboard]): history, parameter importances, intermediate values and
    each trial's user attributes (metrics, timings, prune and fail reasons). Ctrl-C stops."""
    from automl.dashboard import dashboard_app, serve  # when the command runs: `automl --help` stays fast

    dashboard = dashboard_app(run_dir, storage=storage, study_name=study_name, allow_writes=allow_writes)
    serve(dashboard, host, port, on_ready=lambda url: click.echo(f"Optuna Dashboard for study '{dashboard.study_name}': {url}  (Ctrl-C stops)", err=True))
