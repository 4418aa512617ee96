"""automl against AutoGluon's TabularPredictor on the same table splits: test PR-AUC and
wall time of each.

    python benchmarks/vs_autogluon.py fraud                      # recipes/data/fraud
    python benchmarks/vs_autogluon.py vaers ../shared/data/vaers2006 [--rows 2000]
    python benchmarks/vs_autogluon.py csv TABLE.csv --label Y [--drop ID]
        [--timeout 4m] [--trials 6] [--seed 0 [1 2 ...]] [--workdir DIR] [--autogluon-python PATH]

AutoGluon is not a dependency of automl: install it in an environment of its own, e.g.

    python3 -m venv /tmp/agvenv
    /tmp/agvenv/bin/pip install "autogluon.tabular[lightgbm,catboost,xgboost]"

and pass ``--autogluon-python /tmp/agvenv/bin/python`` (the default is the ``AUTOGLUON_PYTHON``
environment variable, else ``../agvenv/bin/python`` next to the checkout).

1. The splits, written once under ``--workdir`` (outside the repository) and given to both:
   ``fraud``: the bundled train/validation/test files; ``vaers``: a stratified sample of
   ``train.csv`` (``--rows``, seeded), 20% of it as validation, all of ``test.csv`` as test
   (read with ``keep_default_na=False, na_values=[""]`` as the data's README says); ``csv``:
   one table split 60/20/20, stratified by the label, seeded.
2. ``automl run`` (a subprocess, as a user runs it) on a ``fraud-detection`` recipe with the
   real backbone (``minilm-l6``): ``recipes/fraud.yaml`` itself for ``fraud`` (its own
   ``search.timeout``, 4m), ``--timeout``/``--trials`` for the others; its wall time is
   measured from start to exit. The exported
   model (``best/``) is loaded with ``automl.load_model`` and scores the test split here.
3. AutoGluon's ``TabularPredictor(eval_metric="average_precision")``, in its own
   environment: ``fit(train, tuning_data=validation, presets="medium_quality",
   time_limit=<automl's wall time>)`` without its neural models (``NN_TORCH``,
   ``FASTAI``: the comparison is with its trees, as on a CPU), then scores the test split.

Prints one table per seed and writes ``results.json`` in ``--workdir`` (in ``seed-N/`` under it
when several seeds are given: each seed draws its own splits, except for ``fraud``'s bundled
files, and seeds both sides); with several seeds it ends with the median of each side and
of the per-seed differences, and writes them to ``summary.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, load_average, machine_line  # noqa: E402

#: What AutoGluon runs, in its own interpreter: argv = split folder, label, seconds, seed.
AUTOGLUON = textwrap.dedent(
    """
    import json, sys, time
    import pandas as pd
    from autogluon.tabular import TabularPredictor
    from sklearn.metrics import average_precision_score

    folder, label, limit, seed = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
    read = lambda name: pd.read_csv(f"{folder}/{name}.csv", keep_default_na=False, na_values=[""])
    train, validation, test = read("train"), read("validation"), read("test")
    start = time.perf_counter()
    predictor = TabularPredictor(label=label, problem_type="binary", eval_metric="average_precision",
                                 path=f"{folder}/autogluon", verbosity=1).fit(
        train, tuning_data=validation, presets="medium_quality", time_limit=limit,
        excluded_model_types=["NN_TORCH", "FASTAI"], ag_args_fit={"random_seed": seed})
    fit = time.perf_counter() - start
    positive = predictor.class_labels[-1]
    scores = predictor.predict_proba(test.drop(columns=[label]))[positive]
    truth = (test[label].astype(str) == str(positive)).astype(int)
    import autogluon.core
    print(json.dumps({"test_pr_auc": float(average_precision_score(truth, scores)), "fit_seconds": fit,
                      "best_model": predictor.model_best, "version": autogluon.core.__version__}))
    """
)


def read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, keep_default_na=False, na_values=[""])


def stratified(frame: pd.DataFrame, label: str, share: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    from sklearn.model_selection import train_test_split

    a, b = train_test_split(frame, test_size=share, stratify=frame[label], random_state=seed)
    return a.reset_index(drop=True), b.reset_index(drop=True)


def splits(args: argparse.Namespace) -> tuple[str, str, dict[str, pd.DataFrame]]:
    """``(name, label column, {train, validation, test})``."""
    if args.data == "fraud":
        folder = REPO / "recipes" / "data" / "fraud"
        return "fraud (recipes/data/fraud)", "is_fraud", {s: read(folder / f"{s}.csv") for s in ("train", "validation", "test")}
    from sklearn.model_selection import train_test_split

    if args.data == "vaers":
        folder, label = Path(args.path), "SERIOUS"
        full = read(folder / "train.csv")
        if args.rows and args.rows < len(full):
            full, _ = train_test_split(full, train_size=args.rows, stratify=full[label], random_state=args.seed)
        train, validation = stratified(full.reset_index(drop=True), label, 0.2, args.seed)
        return f"vaers2006 ({len(full)} training rows)", label, {"train": train, "validation": validation, "test": read(folder / "test.csv")}
    label = args.label
    table = read(Path(args.path)).drop(columns=args.drop or [])
    if args.rows and args.rows < len(table):
        table, _ = train_test_split(table, train_size=args.rows, stratify=table[label], random_state=args.seed)
        table = table.reset_index(drop=True)
    rest, test = stratified(table, label, 0.2, args.seed)
    train, validation = stratified(rest, label, 0.25, args.seed)
    return f"{Path(args.path).name} ({len(table)} rows)", label, {"train": train, "validation": validation, "test": test}


def recipe(args: argparse.Namespace, label: str, folder: Path) -> dict:
    """``recipes/fraud.yaml`` itself for ``fraud`` (the README's run, its own budget and space);
    for the other tables the same task and backbone with ``--timeout`` and ``--trials``."""
    import yaml

    if args.data == "fraud":
        body = yaml.safe_load((REPO / "recipes" / "fraud.yaml").read_text())
        body["data"].update({s: str(folder / f"{s}.parquet") for s in ("train", "validation", "test")})
        body["output"] = str(folder / "run")
        body["training"]["seed"] += args.seed  # --seed 0 is the README's run
        return body
    return {
        "task": "fraud-detection",
        "task_options": {"positive_label": "1"},
        "backbone": "minilm-l6",
        "data": {s: str(folder / f"{s}.parquet") for s in ("train", "validation", "test")} | {"label_column": label},
        "search": {
            "trials": args.trials, "timeout": args.timeout, "keep_top_k": 2,
            "space": {"learning_rate": {"low": 3.0e-5, "high": 1.5e-4, "log": True}, "batch_size": 32, "epochs": 2,
                      "adapter": "full", "class_weight_power": {"low": 0.3, "high": 1.0}},
        },
        "training": {"max_length": args.max_length, "seed": args.seed, "eval_batch_size": 128},
        "output": str(folder / "run"),
        "name": "vs-autogluon",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", choices=["fraud", "vaers", "csv"])
    parser.add_argument("path", nargs="?", help="vaers: the vaers2006 folder; csv: the table")
    parser.add_argument("--label", help="csv: the label column (positive class: 1)")
    parser.add_argument("--drop", action="append", help="csv: a column to leave out (an id); repeatable")
    parser.add_argument("--rows", type=int, default=2000, help="vaers: stratified sample of train.csv; csv: of the table (0: all)")
    parser.add_argument("--timeout", default="4m", help="automl's search.timeout (default 4m)")
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--max-length", type=lambda v: v if v == "auto" else int(v), default=128, help="training.max_length: tokens, or auto")
    parser.add_argument("--seed", type=int, nargs="+", default=[0], help="one or more seeds, run one after another")
    parser.add_argument("--workdir", type=Path, default=None, help="where splits, runs and results go (default: a temp dir)")
    parser.add_argument("--autogluon-python", default=os.environ.get("AUTOGLUON_PYTHON", str(REPO.parent / "agvenv" / "bin" / "python")))
    args = parser.parse_args()
    if args.data != "fraud" and not args.path:
        parser.error(f"{args.data} needs a path")
    if args.data == "csv" and not args.label:
        parser.error("csv needs --label")

    base = args.workdir or Path(tempfile.mkdtemp(prefix="automl-vs-autogluon-"))
    seeds = list(args.seed)
    runs = []
    for seed in seeds:
        one = argparse.Namespace(**{**vars(args), "seed": seed})
        runs.append(compare(one, base / f"seed-{seed}" if len(seeds) > 1 else base))
    if len(seeds) > 1:
        summarise(runs, base)


def summarise(runs: list[dict], base: Path) -> None:
    """The median over seeds of each side's test PR-AUC, of the differences and of the wall times."""
    ours = [r["automl"]["test_pr_auc"] for r in runs]
    theirs = [r["autogluon"]["test_pr_auc"] for r in runs]
    walls = [r["automl"]["wall_seconds"] for r in runs]
    summary = {
        "data": runs[0]["data"], "seeds": [r["seed"] for r in runs],
        "automl_test_pr_auc": ours, "autogluon_test_pr_auc": theirs, "automl_wall_seconds": walls,
        "median": {"automl": float(np.median(ours)), "autogluon": float(np.median(theirs)),
                   "difference": float(np.median(np.subtract(ours, theirs))), "automl_wall_seconds": float(np.median(walls))},
        "mean_difference": float(np.mean(np.subtract(ours, theirs))),
    }
    (base / "summary.json").write_text(json.dumps(summary, indent=2))
    m = summary["median"]
    print(f"\n{summary['data']}, seeds {summary['seeds']}")
    print("automl     " + "  ".join(f"{v:.4f}" for v in ours) + f"   median {m['automl']:.4f}")
    print("AutoGluon  " + "  ".join(f"{v:.4f}" for v in theirs) + f"   median {m['autogluon']:.4f}")
    print(f"difference: median {m['difference']:+.4f}, mean {summary['mean_difference']:+.4f}; "
          f"automl wall seconds {', '.join(f'{w:.0f}' for w in walls)}")
    print(f"summary: {base / 'summary.json'}")


def compare(args: argparse.Namespace, work: Path) -> dict:
    """One seed: the splits, automl's run, AutoGluon's fit, both scored on the test split."""
    work.mkdir(parents=True, exist_ok=True)
    name, label, data = splits(args)
    for split, frame in data.items():  # Parquet for automl (types kept), CSV for AutoGluon
        frame.to_parquet(work / f"{split}.parquet", index=False)
        frame.to_csv(work / f"{split}.csv", index=False)
    import yaml

    recipe_file = work / "recipe.yaml"
    recipe_file.write_text(yaml.safe_dump(recipe(args, label, work)))
    truth = (data["test"][label].astype(str) == "1").to_numpy().astype(int)
    print(machine_line())
    print(f"{load_average()} (before)")

    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "automl", "run", str(recipe_file), "--fresh"], check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"automl run failed with exit code {done.returncode}")
    import automl
    from automl.recipe import parse_duration
    from sklearn.metrics import average_precision_score

    best = work / "run" / "best"
    meta = json.loads((best / "automl.json").read_text())
    outputs = np.asarray(automl.load_model(str(best), device="cpu").outputs(data["test"].drop(columns=[label])))
    z = outputs - outputs.max(axis=1, keepdims=True)
    scores = (np.exp(z) / np.exp(z).sum(axis=1, keepdims=True))[:, 1]
    baseline = json.loads((work / "run" / "baseline.json").read_text())
    summary = json.loads((work / "run" / "summary.json").read_text())
    print(f"{load_average()} (after automl run)")

    start = time.perf_counter()
    ag = subprocess.run([args.autogluon_python, "-c", AUTOGLUON, str(work), label, str(wall), str(args.seed)],
                        capture_output=True, text=True, check=False)
    ag_wall = time.perf_counter() - start
    if ag.returncode != 0:
        sys.exit(f"AutoGluon failed (exit code {ag.returncode}):\n{ag.stderr[-3000:]}")
    autogluon = json.loads(ag.stdout.strip().splitlines()[-1])

    results = {
        "data": name,
        "seed": args.seed,
        "rows": {s: len(f) for s, f in data.items()},
        "automl": {
            "exported": meta.get("kind", "trial"),
            "test_pr_auc": float(average_precision_score(truth, scores)),
            "wall_seconds": round(wall, 1),
            "timeout": "4m (recipes/fraud.yaml)" if args.data == "fraud" else args.timeout,
            "limit_seconds": round(1.05 * parse_duration(yaml.safe_load(recipe_file.read_text())["search"]["timeout"]), 1),
            "trials": {k: summary.get(k) for k in ("n_complete", "n_pruned", "n_failed")},
            "baseline": {"name": baseline.get("name"), "family": (baseline.get("extra") or {}).get("family"),
                         "seconds": baseline.get("seconds"), "validation_pr_auc": baseline["validation"].get("pr_auc"),
                         "test_pr_auc": (baseline.get("test") or {}).get("pr_auc")},
        },
        "autogluon": autogluon | {"wall_seconds": round(ag_wall, 1), "time_limit": round(wall, 1)},
        "machine": machine_line(),
        "load_average": load_average(),
    }
    (work / "results.json").write_text(json.dumps(results, indent=2, default=str))
    a, g = results["automl"], results["autogluon"]
    print(f"\n{name}: {results['rows']}")
    print(f"{'':<34} {'test PR-AUC':>11} {'wall s':>7}")
    print(f"{'automl (exported: ' + a['exported'] + ')':<34} {a['test_pr_auc']:>11.4f} {a['wall_seconds']:>7.0f}")
    print(f"{'  its baseline (' + str(a['baseline']['family']) + ')':<34} {a['baseline']['test_pr_auc'] or float('nan'):>11.4f} {a['baseline']['seconds'] or 0:>7.0f}")
    print(f"{'AutoGluon ' + g['version'] + ' (' + g['best_model'] + ')':<34} {g['test_pr_auc']:>11.4f} {g['wall_seconds']:>7.0f}")
    print(f"difference (automl - AutoGluon): {a['test_pr_auc'] - g['test_pr_auc']:+.4f}")
    print(f"automl's wall time {a['wall_seconds']:.0f} s against timeout + 5% = {a['limit_seconds']:.0f} s: "
          + ("within" if a["wall_seconds"] <= a["limit_seconds"] else "OVER"))
    print(f"results: {work / 'results.json'}")
    return results


if __name__ == "__main__":
    main()
