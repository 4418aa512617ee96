"""Study storage: an embedded journal file under the run directory by default (safe for
several local processes, as Optuna recommends over SQLite), or any Optuna storage URL
(PostgreSQL for many machines), with pool pre-ping and heartbeats."""

from __future__ import annotations

import contextlib
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna

from automl.errors import StorageError

HEARTBEAT_INTERVAL = 20
GRACE_PERIOD = 90


def mask_url(url: str | None) -> str | None:
    """The URL with any password replaced by ***, for logs, reports and leaderboards."""
    if url is None:
        return None
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        import re

        return re.sub(r"(://[^:/@]+:)[^@]+@", r"\1***@", url)


def journal_path(run_dir: Path) -> Path:
    return run_dir / "study.journal"


def open_storage(url: str | None, run_dir: Path | None, *, heartbeat: bool = True) -> optuna.storages.BaseStorage:
    """Open the study storage; an unreachable or bad URL is a one-line StorageError."""
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    if url is None or url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock, JournalStorage

        path = Path(url[len("journal:"):]) if url else journal_path(run_dir)  # type: ignore[arg-type]
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = JournalFileOpenLock(str(path))
        return JournalStorage(JournalFileBackend(str(path), lock_obj=lock))
    kwargs: dict[str, Any] = {"engine_kwargs": {"pool_pre_ping": True}}
    if url.startswith("sqlite"):
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 60}}
    if heartbeat and not url.startswith("sqlite"):
        kwargs.update(heartbeat_interval=HEARTBEAT_INTERVAL, grace_period=GRACE_PERIOD)
    try:
        return optuna.storages.RDBStorage(url, **kwargs)
    except ImportError as exc:
        raise StorageError(f"cannot use {mask_url(url)}: missing driver ({exc.name or exc})", field="--storage") from None
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        first = first.replace(url, mask_url(url) or "")
        raise StorageError(f"cannot open storage {mask_url(url)}: {first}", field="--storage") from None


def storage_trial_id(storage: optuna.storages.BaseStorage, study: optuna.Study, number: int) -> int:
    """The storage's id of trial *number* of *study* (public storage API only)."""
    study_id = storage.get_study_id_from_name(study.study_name)
    return storage.get_trial_id_from_study_id_trial_number(study_id, number)


def heartbeat_interval(storage: optuna.storages.BaseStorage) -> int | None:
    """Seconds between heartbeats when *storage* has them (an RDB storage opened with a
    heartbeat interval), else ``None``."""
    if isinstance(storage, optuna.storages.RDBStorage):
        return storage.get_heartbeat_interval()
    return None


def heartbeat_enabled(storage: optuna.storages.BaseStorage) -> bool:
    return heartbeat_interval(storage) is not None


@contextlib.contextmanager
def heartbeat(storage: optuna.storages.BaseStorage, study: optuna.Study, number: int) -> Iterator[None]:
    """Record the heartbeat of running trial *number* every interval while the block runs,
    so that workers elsewhere can fail it (``fail_stale_trials``) if this process dies."""
    interval = heartbeat_interval(storage)
    if interval is None:
        yield
        return
    trial_id = storage_trial_id(storage, study, number)
    stop = threading.Event()

    def beat() -> None:
        while True:
            try:
                storage.record_heartbeat(trial_id)  # type: ignore[attr-defined]
            except Exception:  # a storage hiccup: the next beat tries again
                pass
            if stop.wait(interval):
                return

    thread = threading.Thread(target=beat, name=f"automl-heartbeat-{number}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
