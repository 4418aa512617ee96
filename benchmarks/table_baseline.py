"""fraud-detection's classical baseline alone, on the splits of ``vs_autogluon.py``, as a run
with ``search.timeout`` gives it when no fine-tuning trial trains (every core its own):
test PR-AUC, validation PR-AUC, seconds and the families it blended, per seed.

    python benchmarks/table_baseline.py vaers ../shared/data/vaers2006 --rows 0 --seed 0 1 2
    python benchmarks/table_baseline.py csv TABLE.csv --label Y [--drop ID] [--rows 5000]

On all 9,000 VAERS rows no fine-tuning trial trains in a 4-minute run on two CPU cores
(scoring six text columns with the transformer would end past the deadline) and the run
exports its baseline, so this is the run's export in about 2 minutes a seed instead of 8
(``automl run`` and an AutoGluon fit): the quick way to try a change to the classical
families (docs/benchmarks.md section 13), before ``vs_autogluon.py`` measures the whole
run. The baseline gets what :mod:`automl.search.supervisor` gives it: its share of the
budget (``BASELINE_BUDGET_SHARE`` of ``--timeout``), the search's deadline, all CPU cores,
the recipe's seed (the benchmark's seed), the training rows and the validation rows (the
model is fitted on both). Prints one line per seed and the median.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import load_average, machine_line  # noqa: E402
from vs_autogluon import splits  # noqa: E402  (the same splits, seed by seed)


def baseline(args: argparse.Namespace) -> dict:
    from automl_plugins.fraud import FraudDetection, FraudOptions

    from automl.recipe import parse_duration
    from automl.search.budget import BASELINE_BUDGET_SHARE, search_deadline
    from automl.task import TaskData

    name, label, data = splits(args)
    task = FraudDetection(FraudOptions(positive_label="1"), SimpleNamespace(label_column=label, text_column="text", feature_columns=None))
    names = task.label_names(data["train"], file="train")
    task.labels = names
    read = {s: task.read(f, split=s, file=s, label_names=names) for s, f in data.items()}
    timeout = parse_duration(args.timeout)
    started = time.time()
    task.baseline_budget = BASELINE_BUDGET_SHARE * timeout
    task.baseline_deadline = search_deadline(started, timeout)
    task.baseline_cores = lambda: os.cpu_count() or 1  # type: ignore[method-assign]
    result = task.baseline(TaskData(read["train"], read["validation"], read["test"], names), seed=args.seed)
    extra = result.extra
    return {
        "data": name, "seed": args.seed, "test_pr_auc": result.test["pr_auc"] if result.test else None,
        "validation_pr_auc": result.validation["pr_auc"], "seconds": round(time.time() - started, 1),
        "family": extra.get("family"), "weights": extra.get("weights"),
        "out_of_fold": {k: round(v, 4) for k, v in (extra.get("candidates") or {}).items()},
        "lightgbm_configurations": len(extra.get("lightgbm_trials") or []), "phase_seconds": extra.get("phase_seconds"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", choices=["vaers", "csv"])
    parser.add_argument("path", help="vaers: the vaers2006 folder; csv: the table")
    parser.add_argument("--label", help="csv: the label column (positive class: 1)")
    parser.add_argument("--drop", action="append", help="csv: a column to leave out (an id); repeatable")
    parser.add_argument("--rows", type=int, default=2000, help="vaers: stratified sample of train.csv; csv: of the table (0: all)")
    parser.add_argument("--timeout", default="4m", help="the run's search.timeout the budget is a share of (default 4m)")
    parser.add_argument("--seed", type=int, nargs="+", default=[0], help="one or more seeds, run one after another")
    parser.add_argument("--output", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args()
    if args.data == "csv" and not args.label:
        parser.error("csv needs --label")
    print(machine_line())
    print(f"{load_average()} (before)")
    runs = []
    for seed in args.seed:
        one = baseline(argparse.Namespace(**{**vars(args), "seed": seed}))
        runs.append(one)
        weights = ", ".join(f"{k} {w:.2f}" for k, w in sorted((one["weights"] or {one["family"]: 1.0}).items(), key=lambda kw: -kw[1]))
        print(f"seed {seed}: test PR-AUC {one['test_pr_auc']:.4f}, validation {one['validation_pr_auc']:.4f}, "
              f"{one['seconds']:.0f} s, {one['lightgbm_configurations']} LightGBM configurations; {weights}", flush=True)
    tests = [r["test_pr_auc"] for r in runs]
    print(f"{runs[0]['data']}: test PR-AUC median {np.median(tests):.4f} over seeds {args.seed}; {load_average()} (after)")
    if args.output:
        args.output.write_text(json.dumps({"machine": machine_line(), "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
