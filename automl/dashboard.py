"""``automl dashboard``: a run's Optuna study in Optuna Dashboard (``pip install
"automl[dashboard]"``), served on 127.0.0.1 by default.

The app is optuna-dashboard's public WSGI application (:func:`optuna_dashboard.wsgi`) over
the run's storage and artifact store, served by the standard library's WSGI server as
``optuna_dashboard.run_server`` does. The library has no read-only mode, so by default a
thin WSGI layer answers every request that would change the study (any method but GET
and HEAD: notes, deleting trials or studies, feedback) with 405.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from automl.errors import UserError
from automl.results._gather import open_run_storage

INSTALL = 'pip install "automl[dashboard]"'
READ_METHODS = ("GET", "HEAD", "OPTIONS")


def require_dashboard() -> Any:
    try:
        import optuna_dashboard
    except ImportError:
        raise UserError(f"needs optuna-dashboard, which is not installed: {INSTALL}", field="automl dashboard") from None
    return optuna_dashboard


def read_only(app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    """Wrap a WSGI app so that only reading requests reach it."""

    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD", "GET").upper() not in READ_METHODS:
            body = b"automl dashboard is read-only (start it with --allow-writes to change the study)\\n"
            start_response("405 Method Not Allowed", [("Content-Type", "text/plain"), ("Content-Length", str(len(body))), ("Allow", ", ".join(READ_METHODS))])
            return [body]
        return app(environ, start_response)

    return guarded


@dataclass
class Dashboard:
    """The WSGI app for a run's storage and the study to open first."""

    app: Callable[..., Iterable[bytes]]
    study_name: str
    study_id: int

    def url(self, host: str, port: int) -> str:
        shown = "localhost" if host in ("127.0.0.1", "::1", "localhost") else host
        return f"http://{shown}:{port}/dashboard/studies/{self.study_id}"


def dashboard_app(
    run_dir: str | Path | None = None,
    *,
    storage: str | None = None,
    study_name: str | None = None,
    allow_writes: bool = False,
) -> Dashboard:
    """optuna-dashboard's WSGI app over a run's study storage (and its trial artifacts)."""
    optuna_dashboard = require_dashboard()
    from optuna.artifacts import FileSystemArtifactStore

    path = Path(run_dir) if run_dir is not None else None
    backend, name, _ = open_run_storage(path, storage=storage, study_name=study_name)
    try:
        study_id = backend.get_study_id_from_name(name)
    except KeyError:
        raise UserError(f"no study '{name}' in the storage", field="--study") from None
    artifacts = path / "artifacts" if path is not None else None
    store = FileSystemArtifactStore(str(artifacts)) if artifacts is not None and artifacts.is_dir() else None
    app = optuna_dashboard.wsgi(backend, artifact_store=store)
    return Dashboard(app=app if allow_writes else read_only(app), study_name=name, study_id=study_id)


def serve(dashboard: Dashboard, host: str, port: int, on_ready: Callable[[str], None] | None = None) -> None:
    """Serve until interrupted (Ctrl-C), as ``optuna_dashboard.run_server`` does."""
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    class Quiet(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
            pass

    try:
        server = make_server(host, port, dashboard.app, handler_class=Quiet)
    except OSError as exc:
        raise UserError(f"cannot listen on {host}:{port}: {exc.strerror or exc}", field="--port") from None
    with server:
        if on_ready is not None:
            on_ready(dashboard.url(host, server.server_port))
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
