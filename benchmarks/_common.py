"""Shared pieces of the benchmark scripts: machine facts, load average, data samples,
recipes, process-tree memory and the production engine build.

Nothing here is imported by automl itself; the scripts run from the repository root
(``python benchmarks/<script>.py``) with the package installed.
"""

from __future__ import annotations

import contextlib
import csv
import os
import platform
import random
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
#: Public data sets live next to the checkout, never inside it (see shared/data/README.md);
#: a git worktree one level further down finds them too.
SHARED_BANKING77 = next(
    (p / "shared" / "data" / "banking77" for p in (REPO.parent, REPO.parent.parent) if (p / "shared" / "data" / "banking77").is_dir()),
    REPO.parent / "shared" / "data" / "banking77",
)
BUNDLED_SENTIMENT = REPO / "recipes" / "data" / "sentiment"


# ----------------------------------------------------------------------------- machine


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs"


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine_line() -> str:
    import torch
    import transformers

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{cpu_model()}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, {gpu}; "
        f"python {platform.python_version()}, torch {torch.__version__}, transformers {transformers.__version__}"
    )


def header(title: str) -> None:
    print(f"== {title}")
    print(f"machine: {machine_line()}")
    print(f"at start: {load_average()}")


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def spread(values: list[float], fmt: str = "{:.4f}") -> str:
    """The median and the range of *values*: ``0.9170 (0.9074-0.9215, n=3)``."""
    if not values:
        return "-"
    if len(values) == 1:
        return fmt.format(values[0]) + " (n=1)"
    return f"{fmt.format(median(values))} ({fmt.format(min(values))}-{fmt.format(max(values))}, n={len(values)})"


# ----------------------------------------------------------------------------- data


def read_rows(path: Path, text_column: str, label_column: str) -> list[tuple[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = {text_column, label_column} - set(reader.fieldnames or [])
        if missing:
            raise SystemExit(f"{path}: no column(s) {', '.join(sorted(missing))}; columns are {reader.fieldnames}")
        return [(row[text_column], row[label_column]) for row in reader]


def stratified(
    rows: list[tuple[str, str]], per_class: int, seed: int, classes: list[str] | None = None
) -> list[tuple[str, str]]:
    """*per_class* rows of each class (all of a class when it has fewer), shuffled."""
    rng = random.Random(seed)
    by_class: dict[str, list[tuple[str, str]]] = {}
    for row in rows:
        by_class.setdefault(row[1], []).append(row)
    out = []
    for label in classes if classes is not None else sorted(by_class):
        members = list(by_class.get(label, []))
        rng.shuffle(members)
        out.extend(members[:per_class])
    rng.shuffle(out)
    return out


def pick_classes(rows: list[tuple[str, str]], n: int | None, seed: int) -> list[str]:
    labels = sorted({label for _, label in rows})
    if n is None or n >= len(labels):
        return labels
    return sorted(random.Random(seed).sample(labels, n))


def write_rows(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return path


def prepare_data(
    out_dir: Path,
    *,
    data: str | None,
    text_column: str,
    label_column: str,
    per_class: int,
    validation_per_class: int,
    classes: int | None,
    seed: int,
    synthetic_rows: int,
) -> tuple[Path, Path, str]:
    """Write train.csv and validation.csv (columns text,label) under *out_dir*.

    Source, in order: ``--data CSV`` (a stratified sample; validation from the rows not
    taken for training), banking77 from ``../shared/data`` (train from train.csv, validation
    from test.csv), the bundled ``recipes/data/sentiment`` files, a synthetic data set.
    Returns (train path, validation path, a line saying what was used)."""
    train_path, val_path = out_dir / "train.csv", out_dir / "validation.csv"
    if data is not None:
        rows = read_rows(Path(data), text_column, label_column)
        keep = pick_classes(rows, classes, seed)
        train = stratified(rows, per_class, seed, keep)
        taken = set(map(id, train))
        rest = [r for r in rows if id(r) not in taken]
        val = stratified(rest, validation_per_class, seed + 1, keep)
        what = f"{data}: {len(keep)} classes, {len(train)} train / {len(val)} validation rows (stratified, seed {seed})"
    elif (SHARED_BANKING77 / "train.csv").exists():
        rows = read_rows(SHARED_BANKING77 / "train.csv", "text", "category")
        keep = pick_classes(rows, classes, seed)
        train = stratified(rows, per_class, seed, keep)
        val = stratified(read_rows(SHARED_BANKING77 / "test.csv", "text", "category"), validation_per_class, seed + 1, keep)
        what = (
            f"banking77 ({SHARED_BANKING77}): {len(keep)} classes, {len(train)} train rows from train.csv, "
            f"{len(val)} validation rows from test.csv (stratified, seed {seed})"
        )
    elif (BUNDLED_SENTIMENT / "train.csv").exists() and (BUNDLED_SENTIMENT / "validation.csv").exists():
        train = stratified(read_rows(BUNDLED_SENTIMENT / "train.csv", text_column, label_column), per_class, seed)
        val = stratified(read_rows(BUNDLED_SENTIMENT / "validation.csv", text_column, label_column), validation_per_class, seed + 1)
        what = f"bundled {BUNDLED_SENTIMENT}: {len(train)} train / {len(val)} validation rows"
    else:
        from automl.testing import write_toy_text_data

        write_toy_text_data(out_dir, train=synthetic_rows, validation=max(50, synthetic_rows // 5), test=0, seed=seed)
        return train_path, val_path, f"synthetic binary sentiment (automl.testing): {synthetic_rows} train rows"
    write_rows(train_path, train)
    write_rows(val_path, val)
    return train_path, val_path, what


def data_from_args(out_dir: Path, args: Any) -> tuple[Path, Path]:
    """prepare_data with the options add_data_arguments defines; prints what was used."""
    train, validation, what = prepare_data(
        out_dir,
        data=args.data,
        text_column=args.text_column,
        label_column=args.label_column,
        per_class=args.per_class,
        validation_per_class=args.validation_per_class,
        classes=args.classes,
        seed=args.seed,
        synthetic_rows=args.synthetic_rows,
    )
    print(f"data: {what}")
    return train, validation


@contextlib.contextmanager
def workspace(keep: str | None) -> Iterator[Path]:
    """*keep* (a --work-dir) made and kept, or a temporary directory removed afterwards."""
    if keep:
        path = Path(keep).resolve()
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="automl-bench-") as tmp:
        yield Path(tmp)


def add_data_arguments(parser: Any, *, per_class: int, validation_per_class: int, classes: int | None) -> None:
    parser.add_argument("--data", help="a CSV to sample from (default: banking77 from ../shared/data, else bundled or synthetic data)")
    parser.add_argument("--text-column", default="text")
    parser.add_argument("--label-column", default="label")
    parser.add_argument("--per-class", type=int, default=per_class, help="training rows per class (stratified sample)")
    parser.add_argument("--validation-per-class", type=int, default=validation_per_class)
    parser.add_argument("--classes", type=int, default=classes, help="keep this many classes (seeded choice; default all)")
    parser.add_argument("--synthetic-rows", type=int, default=1000, help="training rows when no real data is found")
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)


def write_recipe(
    path: Path,
    *,
    train: Path,
    validation: Path,
    backbone: str,
    max_length: int,
    seed: int,
    space: dict[str, Any],
    trials: int = 1,
    output: Path,
    sampler: str = "tpe",
    pruner: str = "hyperband",
    metric: str = "f1_macro",
    precision: str | None = None,
) -> Path:
    from automl.testing import write_recipe as write

    training: dict[str, Any] = {"max_length": max_length, "seed": seed, "device": "cpu"}
    if precision is not None:
        training["precision"] = precision

    return write(
        path,
        {
            "task": "text-classification",
            "backbone": backbone,
            "data": {"train": str(train), "validation": str(validation)},
            "objective": {"metric": metric},
            "search": {"trials": trials, "sampler": sampler, "pruner": pruner, "space": space},
            "training": training,
            "output": str(output),
        },
    )


# ----------------------------------------------------------------------------- engine


def build_engine(recipe_path: Path, threads: int | None = None) -> tuple[Any, Any, dict[str, float]]:
    """The TrialEngine exactly as a worker builds it (Worker._build_engine), with the
    set-up split into reading + tokenising (load_data) and weight loading (load_base_model).

    Returns (engine, RunContext, seconds per set-up part)."""
    from automl.recipe import load_recipe
    from automl.run import RunContext
    from automl.search.worker import Worker, WorkerArgs

    recipe = load_recipe(recipe_path)
    ctx = RunContext.create(recipe)
    ctx.run_dir.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}

    def timed(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - t0

        return wrapper

    ctx.load_data = timed("load_data (read + tokenise)", ctx.load_data)  # type: ignore[method-assign]
    ctx.load_base_model = timed("load_base_model (weights)", ctx.load_base_model)  # type: ignore[method-assign]
    worker = Worker(WorkerArgs(str(recipe_path), {}, None, ctx.study_name, 0, threads, None), ctx=ctx)
    t0 = time.perf_counter()
    engine = worker.engine
    seconds["whole set-up"] = time.perf_counter() - t0
    return engine, ctx, seconds


# ----------------------------------------------------------------------------- memory


class TreeMemory:
    """Polls the summed RSS of a process and its descendants (psutil) in a thread."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        self.pid = pid
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> int:
        import psutil

        try:
            root = psutil.Process(self.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            return 0
        total = 0
        for proc in procs:
            try:
                total += proc.memory_info().rss
            except psutil.Error:
                pass
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._sample())
            self._stop.wait(self.interval)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


def run_measured(cmd: list[str], *, env: dict[str, str] | None = None, log: Path | None = None) -> dict[str, Any]:
    """Run *cmd*; return its wall time, exit code and peak summed RSS of its process tree
    (polled every 0.2 s, so a spike shorter than that can be missed)."""
    t0 = time.perf_counter()
    out = log.open("w") if log is not None else subprocess.DEVNULL
    try:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
        with TreeMemory(proc.pid) as memory:
            code = proc.wait()
    finally:
        if log is not None:
            out.close()  # type: ignore[union-attr]
    return {"seconds": time.perf_counter() - t0, "returncode": code, "peak_rss_mb": memory.peak / 2**20}
