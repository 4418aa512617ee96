"""Where the wall time of one ``automl run`` goes: model compute, evaluation, data
preparation, and the platform's own overhead (everything else).

The run is the real CLI path (``automl.cli.main(["run", RECIPE])``, one worker process
spawned by the supervisor) in a child process; this script only measures. The child
imports this file as its main module, and so does the spawned worker (multiprocessing's
spawn start method re-imports the parent's main module), so both processes carry the same
timers: wrappers around automl functions that append ``{pid, name, start, end}`` lines to
an events file. Nothing in automl is changed.

Categories (seconds summed over both processes; they run one after the other: the
supervisor prepares, the worker trains, the supervisor exports):

* **model compute**: ``TrialEngine._train`` minus the evaluations and the model copy inside
  it: forward, backward, optimiser, batching (cross-checked against the engine's own
  ``timings["compute"]`` for completed trials);
* **evaluation**: ``TrialEngine.evaluate`` (validation after each epoch) and the export's
  predictions on validation/test;
* **data preparation**: ``RunContext.load_data`` (reading + tokenising, in the supervisor;
  the worker reads the token cache) and the TF-IDF baseline;
* **platform overhead** = total wall time - the three above; broken down into interpreter
  start and imports (supervisor; worker process start and its imports), weight loading,
  per-trial model copies, the worker's trial bookkeeping (sampling, storage writes, top-k
  weight files), the export without its predictions, and what no timer covers (study
  storage set-up, the live display, process joins).

Run from the repository root::

    python benchmarks/overhead.py                                  # minilm-l6, the real measurement
    python benchmarks/overhead.py --backbone tiny-bert --trials 2  # smoke run

Target: platform overhead < 5% of the wall time.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time

_MODULE_START = time.time()
EVENTS_ENV = "AUTOML_BENCH_EVENTS"


# ----------------------------------------------------------------------------- timers (child side)


class _Timers:
    def __init__(self, path: str) -> None:
        self.path = path
        self.pid = os.getpid()
        self.depth: dict[str, int] = {}

    def emit(self, name: str, start: float, end: float, **extra: object) -> None:
        with open(self.path, "a") as fh:
            fh.write(json.dumps({"pid": self.pid, "name": name, "start": start, "end": end, **extra}) + "\n")

    def wrap(self, owner: object, attr: str, name: str, *, skip_inside: str | None = None) -> None:
        """Replace owner.attr by a timed version emitting *name* (not while *skip_inside*
        is running in this process)."""
        import inspect

        original = getattr(owner, attr)
        is_classmethod = isinstance(inspect.getattr_static(owner, attr), classmethod)
        timers = self

        @functools.wraps(original)
        def timed(*args: object, **kwargs: object) -> object:
            if skip_inside and timers.depth.get(skip_inside):
                return original(*args, **kwargs)
            timers.depth[name] = timers.depth.get(name, 0) + 1
            start = time.time()
            extra: dict[str, object] = {}
            try:
                result = original(*args, **kwargs)
                timings = getattr(result, "timings", None)
                if isinstance(timings, dict):
                    extra["engine_timings"] = timings
                return result
            finally:
                timers.depth[name] -= 1
                timers.emit(name, start, time.time(), **extra)

        # A classmethod comes back bound to its class; keep it callable the same way.
        setattr(owner, attr, staticmethod(timed) if is_classmethod else timed)


def _install(path: str) -> None:
    timers = _Timers(path)
    create = _MODULE_START
    try:
        import psutil

        create = psutil.Process().create_time()
    except Exception:
        pass
    timers.emit("process", create, _MODULE_START)
    import automl.engine as engine
    import automl.run as run
    import automl.search.supervisor as supervisor
    import automl.search.worker as worker

    timers.emit("imports (automl, torch, optuna)", _MODULE_START, time.time())
    timers.wrap(run.RunContext, "load_data", "load_data")
    timers.wrap(run.RunContext, "load_base_model", "load_base_model")
    timers.wrap(supervisor, "run_baseline", "baseline")
    timers.wrap(supervisor.Supervisor, "_export", "export")
    timers.wrap(engine.TrialEngine, "_train", "train")
    timers.wrap(engine.TrialEngine, "evaluate", "evaluate")
    timers.wrap(engine.TrialEngine, "_fresh_model", "model copy")
    timers.wrap(engine, "predict_outputs", "predict (export)", skip_inside="evaluate")
    timers.wrap(worker.Worker, "run_one", "run_one")
    timers.wrap(worker.Worker, "_build_engine", "build engine")
    timers.wrap(worker.Worker, "loop", "worker loop")
    # Smaller steps, only to place the time no category claims (see gaps()).
    timers.wrap(run.RunContext, "create", "resolve recipe and plugins")
    timers.wrap(run.RunContext, "prepare_dir", "prepare run directory")
    timers.wrap(run.RunContext, "write_run_file", "write run.json")
    timers.wrap(supervisor, "create_study", "create study")
    timers.wrap(supervisor, "open_storage", "open storage (supervisor)")
    timers.wrap(supervisor.Supervisor, "_start_worker", "start worker process")
    timers.wrap(supervisor.Supervisor, "_stop_workers", "stop workers")
    timers.wrap(supervisor.Supervisor, "_summary", "summary")
    timers.wrap(worker.Worker, "__init__", "worker init (storage)")
    timers.wrap(worker.Worker, "study", "load study (worker)")
    import multiprocessing

    if multiprocessing.parent_process() is not None:
        # Only in the spawned worker: the supervisor pickles the original function, and
        # pickle insists that the module attribute is that very object.
        timers.wrap(worker, "worker_process", "worker_process")


if os.environ.get(EVENTS_ENV):
    _install(os.environ[EVENTS_ENV])


# ----------------------------------------------------------------------------- analysis (parent side)


def _sum(events: list[dict], name: str, pid: int | None = None) -> float:
    return sum(e["end"] - e["start"] for e in events if e["name"] == name and (pid is None or e["pid"] == pid))


def _inside(events: list[dict], name: str, outer: dict) -> float:
    return sum(
        e["end"] - e["start"]
        for e in events
        if e["name"] == name and e["pid"] == outer["pid"] and e["start"] >= outer["start"] and e["end"] <= outer["end"]
    )


def breakdown(events: list[dict], total: float, started: float) -> dict[str, float]:
    """The categories (seconds) from the events; see the module docstring. *started* is the
    time.time() just before the child process was started."""
    supervisor = next(e["pid"] for e in events if e["name"] == "cli main")
    workers = {e["pid"] for e in events if e["pid"] != supervisor}

    def first(name: str, pid: int) -> dict:
        return next(e for e in events if e["name"] == name and e["pid"] == pid)

    trains = [e for e in events if e["name"] == "train"]
    compute = sum(t["end"] - t["start"] - _inside(events, "evaluate", t) - _inside(events, "model copy", t) for t in trains)
    predict_export = _sum(events, "predict (export)")
    imports = "imports (automl, torch, optuna)"
    worker_start = sum(_sum(events, "process", pid) + _sum(events, imports, pid) for pid in workers)
    loops = [e for e in events if e["name"] == "worker loop"]
    between = sum(
        e["end"] - e["start"] - _inside(events, "run_one", e) - _inside(events, "build engine", e) for e in loops
    )
    build_rest = sum(
        e["end"] - e["start"] - _inside(events, "load_data", e) - _inside(events, "load_base_model", e)
        for e in events
        if e["name"] == "build engine"
    )
    bookkeeping = sum(r["end"] - r["start"] - _inside(events, "train", r) for r in events if r["name"] == "run_one")
    export = _sum(events, "export") - predict_export - _sum(events, "load_base_model", supervisor)
    out = {
        "model compute": compute,
        "evaluation": _sum(events, "evaluate") + predict_export,
        "data preparation (read + tokenise + baseline)": _sum(events, "load_data") + _sum(events, "baseline"),
        "overhead: interpreter start (supervisor)": first("process", supervisor)["end"] - started,
        "overhead: imports (supervisor)": _sum(events, imports, supervisor) + _sum(events, "imports (cli)", supervisor),
        "overhead: worker process start + imports": worker_start,
        "overhead: weight loading (worker + export)": _sum(events, "load_base_model"),
        "overhead: engine set-up besides data and weights": build_rest,
        "overhead: model copy per trial": _sum(events, "model copy"),
        "overhead: trial bookkeeping (sample, storage, top-k weights)": bookkeeping,
        "overhead: worker loop between trials (ask, budget)": between,
        "overhead: export without its predictions": export,
    }
    out["overhead: not covered by a timer (storage set-up, joins, exit)"] = total - sum(out.values())
    return out


#: Events that enclose others; gaps() looks inside them.
ENCLOSING = {"cli main", "worker_process", "worker loop"}


def gaps(events: list[dict], started: float, ended: float, least: float = 0.3) -> list[tuple[float, float, str, str]]:
    """Stretches of the wall time no timer covers, longest first: (start, length, the
    event that ended before, the event that started after), relative to *started*."""
    spans = sorted((e["start"], e["end"], e["name"]) for e in events if e["name"] not in ENCLOSING)
    out = []
    cursor, last = started, "child process started"
    for start, end, name in spans + [(ended, ended, "child process exited")]:
        if start - cursor >= least:
            out.append((cursor - started, start - cursor, last, name))
        if end > cursor:
            cursor, last = end, name
    return sorted(out, key=lambda g: -g[1])


def main(argv: list[str] | None = None) -> int:
    import argparse
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import _common as common

    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 2 and argv[0] == "--child":
        start = time.time()
        from automl.cli import main as cli

        if os.environ.get(EVENTS_ENV):
            _Timers(os.environ[EVENTS_ENV]).emit("imports (cli)", start, time.time())
        start = time.time()
        try:
            cli(["run", argv[1]])
        finally:
            if os.environ.get(EVENTS_ENV):
                _Timers(os.environ[EVENTS_ENV]).emit("cli main", start, time.time())
        return 0

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="minilm-l6")
    common.add_data_arguments(parser, per_class=20, validation_per_class=10, classes=6)
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--epochs-high", type=int, default=3)
    parser.add_argument("--work-dir", help="keep the run here (default: a temporary directory, removed)")
    args = parser.parse_args(argv)

    common.header("overhead: one automl run split into compute, evaluation, data preparation and the rest")
    with common.workspace(args.work_dir) as work:
        train, validation = common.data_from_args(work / "data", args)
        recipe = common.write_recipe(
            work / "recipe.yaml",
            train=train,
            validation=validation,
            backbone=args.backbone,
            max_length=args.max_length,
            seed=args.seed,
            trials=args.trials,
            output=work / "run",
            space={
                "learning_rate": {"low": 2e-5, "high": 5e-4, "log": True},
                "batch_size": [16, 32],
                "epochs": {"type": "int", "low": 1, "high": args.epochs_high},
                "adapter": "full",
            },
        )
        print(f"recipe: {args.backbone}, max_length {args.max_length}, {args.trials} trials, full fine-tuning, default pruner and export")
        events_path = work / "events.jsonl"
        events_path.unlink(missing_ok=True)
        if (work / "run").exists():
            import shutil

            shutil.rmtree(work / "run")
        env = {**os.environ, EVENTS_ENV: str(events_path), "TOKENIZERS_PARALLELISM": "false"}
        started = time.time()
        measured = common.run_measured(
            [sys.executable, str(Path(__file__).resolve()), "--child", str(recipe)], env=env, log=work / "output.log"
        )
        if measured["returncode"] != 0:
            raise SystemExit(f"the run failed (exit {measured['returncode']}):\n{(work / 'output.log').read_text()[-3000:]}")
        total = measured["seconds"]
        events = [json.loads(line) for line in events_path.read_text().splitlines()]
        parts = breakdown(events, total, started)
        trains = [e for e in events if e["name"] == "train"]
        engine_compute = sum(e["engine_timings"]["compute"] for e in trains if "engine_timings" in e)
        timed_compute = sum(
            t["end"] - t["start"] - _inside(events, "evaluate", t) - _inside(events, "model copy", t) for t in trains if "engine_timings" in t
        )
        print(f"-- {len(trains)} trials ({sum('engine_timings' not in t for t in trains)} stopped early); {common.load_average()}")
        print(f"  {'total wall time (process start to exit)':62s} {total:8.2f} s  100.0%")
        overhead = 0.0
        for name, seconds in parts.items():
            if name.startswith("overhead"):
                overhead += seconds
            print(f"  {name:62s} {seconds:8.2f} s  {100 * seconds / total:5.1f}%")
        print(f"  {'platform overhead, all':62s} {overhead:8.2f} s  {100 * overhead / total:5.1f}%")
        print(
            f"  cross-check, completed trials: engine timings compute {engine_compute:.2f} s vs "
            f"timed compute {timed_compute:.2f} s (the difference: optimiser set-up, batch order)"
        )
        print("  longest stretches no timer covers (from the child's start):")
        for at, length, before, after in gaps(events, started, started + total)[:8]:
            print(f"    at {at:7.2f} s: {length:6.2f} s between '{before}' and '{after}'")
        verdict = "met" if overhead / total < 0.05 else "MISSED"
        print(f"  target overhead < 5%: {verdict} ({100 * overhead / total:.1f}%); peak tree RSS {measured['peak_rss_mb']:.0f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
