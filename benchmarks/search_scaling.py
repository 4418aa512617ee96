"""What pruning saves and what a second worker buys, on one recipe.

Runs ``automl run`` on the same recipe, data, seeds and trial budget three times, one
after another on this machine:

* pruner on (the recipe's, hyperband by default), 1 worker;
* pruner ``none``, 1 worker (same sampler seed: the same configurations start);
* pruner on, ``--workers 2`` (each worker gets half the CPU threads).

and prints wall time, best validation objective, trials pruned, and the ratios. A recipe
is copied to a temporary directory with its data paths made absolute; nothing is written
to the repository.

    python benchmarks/search_scaling.py                       # recipes/sentiment.yaml, 8 trials
    python benchmarks/search_scaling.py --recipe recipes/fraud.yaml --trials 6
    python benchmarks/search_scaling.py --backbone tiny-bert --trials 4   # smoke run
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, header, load_average, run_measured  # noqa: E402


def variant(recipe: dict, base: Path, out: Path, *, pruner: str | None, trials: int, backbone: str | None) -> dict:
    r = json.loads(json.dumps(recipe))
    for key in ("train", "validation", "test"):
        if r["data"].get(key):
            r["data"][key] = str((base / r["data"][key]).resolve())
    if pruner is not None:
        r["search"]["pruner"] = pruner
    r["search"]["trials"] = trials
    r["search"].pop("timeout", None)
    if backbone:
        r["backbone"] = backbone
    r["output"] = str(out)
    r["training"] = {**r.get("training", {}), "device": "cpu"}
    return r


def study_facts(run_dir: Path) -> dict:
    summary = json.loads((run_dir / "summary.json").read_text())
    return {
        "best": summary["best_value"],
        "pruned": summary["n_pruned"],
        "complete": summary["n_complete"],
        "failed": summary["n_failed"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default=str(REPO / "recipes" / "sentiment.yaml"))
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--backbone", default=None, help="override the recipe's backbone (tiny-bert for a smoke run)")
    parser.add_argument("--pruning-only", action="store_true", help="skip the 2-worker run")
    args = parser.parse_args()

    header("search scaling: pruning on/off, 1 vs 2 workers")
    recipe_path = Path(args.recipe).resolve()
    recipe = yaml.safe_load(recipe_path.read_text())
    rows = []
    with tempfile.TemporaryDirectory(prefix="automl-scaling-") as tmp:
        work = Path(tmp)
        configs = [("pruner on, 1 worker", None, 1), ("pruner none, 1 worker", "none", 1), ("pruner on, 2 workers", None, 2)]
        if args.pruning_only:
            configs = configs[:2]
        for label, pruner, workers in configs:
            out = work / label.replace(" ", "_").replace(",", "")
            path = work / f"{out.name}.yaml"
            path.write_text(yaml.safe_dump(variant(recipe, recipe_path.parent, out, pruner=pruner, trials=args.trials, backbone=args.backbone)))
            cmd = [sys.executable, "-m", "automl", "run", str(path), "--no-baseline", "--workers", str(workers)]
            result = run_measured(cmd, log=work / f"{out.name}.log")
            if result["returncode"] != 0:
                print((work / f"{out.name}.log").read_text()[-3000:])
                raise SystemExit(f"{label}: automl run failed")
            facts = study_facts(out)
            rows.append((label, result, facts))
            print(
                f"{label:<24} wall {result['seconds']:7.1f} s  best {facts['best']:.4f}  "
                f"pruned {facts['pruned']}/{args.trials}  peak RSS {result['peak_rss_mb']:.0f} MB  ({load_average()})",
                flush=True,
            )
    on, off = rows[0][1]["seconds"], rows[1][1]["seconds"]
    print(f"pruning saved {100 * (1 - on / off):.0f}% of the wall time (pruner on / none = {on / off:.2f}x), "
          f"best {rows[0][2]['best']:.4f} vs {rows[1][2]['best']:.4f}")
    if len(rows) == 3:
        two = rows[2][1]["seconds"]
        print(f"2 workers vs 1: speedup {on / two:.2f}x, best {rows[2][2]['best']:.4f} vs {rows[0][2]['best']:.4f}")
    print(f"at end: {load_average()}")


if __name__ == "__main__":
    main()
