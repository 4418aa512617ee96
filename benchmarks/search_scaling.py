"""What pruning saves and what a second worker buys, on one recipe.

Runs ``automl run`` on the same recipe, data, seeds and trial budget in each of these
configurations, one after another on this machine:

* pruner on (the recipe's, hyperband by default), 1 worker;
* pruner ``none``, 1 worker (same sampler seed: the same configurations start);
* pruner on, ``--workers 2`` (each worker gets half the CPU threads).

``--repeats`` times (3 by default; repeat r sets ``training.seed`` to the recipe's seed + r,
which also seeds the sampler), and prints wall time, best validation objective, trials
pruned, and the ratios: per repeat, then the median and range over the repeats. A recipe
is copied to a temporary directory with its data paths made absolute; nothing is written
to the repository.

    python benchmarks/search_scaling.py                       # recipes/sentiment.yaml, 10 trials, 3 repeats
    python benchmarks/search_scaling.py --recipe recipes/fraud.yaml --trials 6
    python benchmarks/search_scaling.py --backbone tiny-bert --trials 4 --repeats 1   # smoke run
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, header, load_average, median, run_measured, spread  # noqa: E402


def variant(recipe: dict, base: Path, out: Path, *, pruner: str | None, trials: int, backbone: str | None, seed_offset: int = 0) -> dict:
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
    training = r.get("training", {})
    r["training"] = {**training, "device": "cpu", "seed": int(training.get("seed", 42)) + seed_offset}
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
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3, help="repeats with seeds seed, seed+1, ... (default 3)")
    parser.add_argument("--backbone", default=None, help="override the recipe's backbone (tiny-bert for a smoke run)")
    parser.add_argument("--pruning-only", action="store_true", help="skip the 2-worker run")
    args = parser.parse_args()

    header("search scaling: pruning on/off, 1 vs 2 workers")
    recipe_path = Path(args.recipe).resolve()
    recipe = yaml.safe_load(recipe_path.read_text())
    configs = [("pruner on, 1 worker", None, 1), ("pruner none, 1 worker", "none", 1), ("pruner on, 2 workers", None, 2)]
    if args.pruning_only:
        configs = configs[:2]
    results: dict[str, list[tuple[dict, dict]]] = {label: [] for label, _, _ in configs}
    for rep in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="automl-scaling-") as tmp:
            work = Path(tmp)
            for label, pruner, workers in configs:
                out = work / label.replace(" ", "_").replace(",", "")
                path = work / f"{out.name}.yaml"
                body = variant(recipe, recipe_path.parent, out, pruner=pruner, trials=args.trials, backbone=args.backbone, seed_offset=rep)
                path.write_text(yaml.safe_dump(body))
                cmd = [sys.executable, "-m", "automl", "run", str(path), "--no-baseline", "--workers", str(workers)]
                result = run_measured(cmd, log=work / f"{out.name}.log")
                if result["returncode"] != 0:
                    print((work / f"{out.name}.log").read_text()[-3000:])
                    raise SystemExit(f"{label}: automl run failed")
                facts = study_facts(out)
                results[label].append((result, facts))
                print(
                    f"repeat {rep + 1} (seed {body['training']['seed']}) {label:<24} wall {result['seconds']:7.1f} s  "
                    f"best {facts['best']:.4f}  pruned {facts['pruned']}/{args.trials}  "
                    f"peak RSS {result['peak_rss_mb']:.0f} MB  ({load_average()})",
                    flush=True,
                )
    print(f"-- over {args.repeats} repeat(s): median (min-max)")
    for label, rows in results.items():
        walls = [r["seconds"] for r, _ in rows]
        bests = [f["best"] for _, f in rows]
        pruned = [float(f["pruned"]) for _, f in rows]
        print(f"{label:<24} wall {spread(walls, '{:.1f}')} s  best {spread(bests)}  pruned {spread(pruned, '{:.0f}')}")
    on_rows, off_rows = results[configs[0][0]], results[configs[1][0]]
    ratios = [a["seconds"] / b["seconds"] for (a, _), (b, _) in zip(on_rows, off_rows, strict=True)]
    deltas = [fa["best"] - fb["best"] for (_, fa), (_, fb) in zip(on_rows, off_rows, strict=True)]
    on = median([r["seconds"] for r, _ in on_rows])
    off = median([r["seconds"] for r, _ in off_rows])
    best_on, best_off = median([f["best"] for _, f in on_rows]), median([f["best"] for _, f in off_rows])
    print(
        f"pruner on / none: median wall {on / off:.2f}x (per repeat {', '.join(f'{r:.2f}' for r in ratios)}); "
        f"median best {best_on:.4f} vs {best_off:.4f} ({best_on - best_off:+.4f}; per repeat "
        f"{', '.join(f'{d:+.4f}' for d in deltas)})"
    )
    verdict = "met" if on / off <= 0.8 and abs(best_on - best_off) <= 0.005 else "MISSED"
    print(f"target pruning on <= 0.8x the wall time, median best within 0.005: {verdict}")
    if len(configs) == 3:
        two_rows = results[configs[2][0]]
        two = median([r["seconds"] for r, _ in two_rows])
        print(f"2 workers vs 1: median speedup {on / two:.2f}x, median best {median([f['best'] for _, f in two_rows]):.4f} vs {best_on:.4f}")
    print(f"at end: {load_average()}")


if __name__ == "__main__":
    main()
