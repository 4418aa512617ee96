"""Options shared by ``automl run`` and ``automl worker``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from automl import plugins
from automl.errors import EXIT_INTERRUPTED, NoModelError, UserError
from automl.recipe import load_recipe, parse_duration


def parse_gpus(value: str | None) -> list[int] | None:
    if value is None:
        return None
    if value == "all":
        import torch

        return list(range(torch.cuda.device_count())) or None
    try:
        return [int(x) for x in value.split(",") if x.strip()]
    except ValueError:
        raise UserError(f"expected GPU indices such as 0,1 or 'all', got {value!r}", field="--gpus") from None


def search_options(func: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--trials", type=click.IntRange(min=1), help="Finished trials wanted in the study in total (overrides search.trials)."),
        click.option("--timeout", help="Wall-clock budget of the run: 600, 10m, 2h (overrides search.timeout)."),
        click.option("--output", "-o", type=click.Path(), help="Run directory (overrides output)."),
        click.option("--device", help="auto, cpu, cuda, cuda:N or mps (overrides training.device)."),
        click.option("--storage", envvar="AUTOML_STORAGE", help="Optuna storage URL, e.g. postgresql://user@host/db (default: a journal file in the run directory)."),
        click.option("--study", "study_name", help="Study name (default: the recipe's name or file stem)."),
        click.option("--artifacts", type=click.Path(), envvar="AUTOML_ARTIFACTS", help="Directory for trial weights, shared by machines that share a study (default: <output>/artifacts)."),
        click.option("--workers", "-w", type=click.IntRange(min=1), default=1, show_default=True, help="Trial processes on this machine (one GPU each when GPUs are present)."),
        click.option("--gpus", help="GPUs to use, e.g. 0,1 or all (default: all visible GPUs when --device is cuda/auto)."),
        click.option("--workers-per-gpu", type=click.IntRange(min=1), default=1, show_default=True, help="Trial processes sharing each GPU (small models leave a big GPU mostly idle)."),
        click.option("--threads-per-worker", type=click.IntRange(min=1), help="CPU threads of each trial process (default: the cores divided among the workers)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def overrides(
    trials: int | None, timeout: str | None, output: str | None, device: str | None, mlflow: str | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if mlflow is not None:
        out["mlflow"] = mlflow
    if trials is not None:
        out["trials"] = trials
    if timeout is not None:
        try:
            out["timeout"] = parse_duration(timeout)
        except ValueError as exc:
            raise UserError(str(exc), field="--timeout") from None
    if output is not None:
        from pathlib import Path

        out["output"] = str(Path(output).resolve())
    if device is not None:
        out["device"] = device
    return out


def default_gpus(gpus: str | None, device: str | None, workers: int) -> list[int] | None:
    parsed = parse_gpus(gpus)
    if parsed is not None:
        return parsed
    if device not in (None, "auto", "cuda"):
        return None
    import torch

    if torch.cuda.is_available() and torch.cuda.device_count() > 1 and workers > 1:
        return list(range(torch.cuda.device_count()))
    return None


def gpus_shared(gpus: str | None, workers: int, per_gpu: int) -> tuple[list[int], int]:
    """GPUs and worker count for ``--workers-per-gpu``: *per_gpu* workers on each GPU
    (workers are assigned round robin), at least *workers* in all."""
    import torch

    parsed = parse_gpus(gpus) or list(range(torch.cuda.device_count()))
    if not parsed:
        raise UserError("--workers-per-gpu needs CUDA GPUs and none is visible to torch", field="--workers-per-gpu")
    return parsed, max(workers, per_gpu * len(parsed))


def launch(recipe_path: Any, *, command: str, **options: Any) -> None:
    """What ``automl run`` and ``automl worker`` share (:func:`_launch`), with Ctrl-C before
    the search began (reading the recipe and the data, opening the study) reported as an
    interrupted run: exit 130 and one line, not click's "Aborted!" and 1. No trial had
    started, so nothing is lost. (An interrupted search returns normally, with its summary.)"""
    try:
        _launch(recipe_path, command=command, **options)
    except KeyboardInterrupt:
        from rich.console import Console

        Console(stderr=True, highlight=False).print(
            f"[yellow]interrupted[/] before the search started: run `automl {command} {recipe_path}` again to start",
            soft_wrap=True,
        )
        raise SystemExit(EXIT_INTERRUPTED) from None


def _launch(
    recipe_path: Any,
    *,
    command: str,
    trials: int | None,
    timeout: str | None,
    output: str | None,
    device: str | None,
    storage: str | None,
    study_name: str | None,
    artifacts: str | None,
    workers: int,
    gpus: str | None,
    workers_per_gpu: int = 1,
    threads_per_worker: int | None = None,
    fresh: bool = False,
    baseline: bool = True,
    mlflow: str | None = None,
) -> None:
    """What ``automl run`` and ``automl worker`` share: build the run, search, summarise."""
    from rich.console import Console

    from automl.search.budget import process_started  # when the command runs: `automl --help` stays fast
    from automl.search.supervisor import RunOptions, run_recipe  # when the command runs: `automl --help` stays fast
    from automl.summary import print_summary  # when the command runs: `automl --help` stays fast

    plugins.warn_failed()
    over = overrides(trials, timeout, output, device, mlflow)
    recipe = load_recipe(recipe_path).with_overrides(**over)
    console = Console(stderr=True, highlight=False)
    gpu_list = default_gpus(gpus, device or recipe.training.device, workers)
    if workers_per_gpu > 1:
        gpu_list, workers = gpus_shared(gpus, workers, workers_per_gpu)
    options = RunOptions(
        started=process_started(),
        workers=workers,
        threads=threads_per_worker,
        gpus=gpu_list,
        fresh=fresh,
        baseline=baseline,
        overrides=over,
        artifacts=artifacts,
    )
    outcome = run_recipe(recipe, storage_url=storage, study_name=study_name, options=options, console=console)
    print_summary(outcome, Console(highlight=False))
    if outcome.interrupted:
        console.print(f"[yellow]interrupted[/]: run `automl {command} {recipe_path}` again to continue", soft_wrap=True)
        raise SystemExit(EXIT_INTERRUPTED)
    failure = outcome.failure()
    if failure is not None:
        raise NoModelError(failure, file=str(recipe_path))
