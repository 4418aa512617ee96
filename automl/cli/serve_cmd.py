"""``automl serve``: an HTTP scoring service for an exported model, with dynamic batching."""

from __future__ import annotations

from pathlib import Path

import click


@click.command(name="serve")
@click.argument("model_dir", metavar="MODEL_DIR", type=click.Path(path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on; 0.0.0.0 serves other machines too.")
@click.option("--port", "-p", type=click.IntRange(min=0, max=65535), default=8080, show_default=True, help="Port to listen on.")
@click.option("--workers", "-w", type=click.IntRange(min=1), default=1, show_default=True, help="Server processes, each with its own copy of the model.")
@click.option("--max-batch-size", type=click.IntRange(min=1), default=32, show_default=True, help="Rows of concurrent requests scored together at most (1: no batching).")
@click.option("--max-wait-ms", type=click.FloatRange(min=0), default=5.0, show_default=True, help="How long a request waits for others to join its batch.")
@click.option("--max-body-bytes", type=click.IntRange(min=1), default=1_000_000, show_default=True, help="Largest request body; larger ones get 413.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps.")
def command(model_dir: Path, host: str, port: int, workers: int, max_batch_size: int, max_wait_ms: float, max_body_bytes: int, device: str) -> None:
    """Serve the model exported to MODEL_DIR (any kind `automl predict` reads) over HTTP
    (needs automl[serve]): POST /predict with {"rows": [...]} gives the same predictions as
    `automl predict`; GET /health, GET /metadata; the OpenAPI page at /docs. Concurrent
    requests are scored together (--max-batch-size, --max-wait-ms). Ctrl-C stops."""
    from automl.search.worker import quiet_libraries  # when the command runs: `automl --help` stays fast
    from automl.serve import Settings, require_serve, serve  # when the command runs: `automl --help` stays fast

    require_serve()
    quiet_libraries()
    settings = Settings(str(model_dir), max_batch_size=max_batch_size, max_wait_ms=max_wait_ms, max_body_bytes=max_body_bytes, device=device)
    serve(
        settings,
        host,
        port,
        workers,
        on_ready=lambda url, n: click.echo(f"serving {model_dir} at {url} ({n} worker{'s' * (n > 1)}; API docs at {url}/docs)  (Ctrl-C stops)", err=True),
    )
