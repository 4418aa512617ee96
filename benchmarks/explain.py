"""Are automl's explanations faithful? Comprehensiveness (ERASER, DeYoung et al. 2020).

    python benchmarks/explain.py MODEL_DIR TEST_FILE [--rows 200] [--top 5] [--seed 0]

1. ``--rows`` rows of TEST_FILE (a seeded random sample) are explained with
   ``automl.load_model(MODEL_DIR).explain`` (timed, the model already loaded).
2. For each row, the model's positive-class score is computed on the row, on the row with
   its ``--top`` units (columns or words; docs/explain.md) of largest contribution toward
   the positive class deleted, and on the row with ``--top`` units picked at random deleted
   (``--draws`` draws, averaged). A column is deleted by leaving it empty, a word by
   leaving it out of its cell, exactly as the explainers delete them.
3. Printed and written to ``--json``: the median (and mean) drop of the score over the
   rows for the top units and for the random ones, their ratio, and AOPC (the drop
   averaged over k = 1..top, for both), in probability and in log-odds.

The classes are those of a binary classifier (the positive class is the second label);
the data set is never copied into the repository.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import load_average, machine_line  # noqa: E402


def positive_scores(model, frames: list[pd.Series]) -> np.ndarray:
    from automl.ensemble import softmax

    outputs = np.asarray(model.outputs(pd.DataFrame(frames).reset_index(drop=True)))
    return softmax(outputs)[:, 1]


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return np.log(p / (1 - p))


def main() -> None:
    import automl
    from automl.data import read_table
    from automl.explain import delete_units

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("test_file", type=Path)
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--top", type=int, default=5)
    parser.add_argument("--draws", type=int, default=3, help="random deletions per row, averaged")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args()

    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    load_start = load_average()
    model = automl.load_model(args.model_dir, device="cpu")
    frame = read_table(args.test_file)
    frame = frame.sample(n=min(args.rows, len(frame)), random_state=args.seed).reset_index(drop=True)
    start = time.perf_counter()
    explanations = model.explain(frame)
    explain_seconds = time.perf_counter() - start

    rng = np.random.default_rng(args.seed)
    rows: list[pd.Series] = []
    plan = []  # per row: index of the full row, of top-k rows (k = 1..top), of random-k rows (k, draw)
    for e in explanations:
        row = frame.iloc[e.row]
        t = e.targets[0]
        ranked = sorted(e.units, key=lambda u: -t.contributions.get(u.key, 0.0))
        entry = {"full": len(rows), "top": [], "random": []}
        rows.append(row)
        for k in range(1, args.top + 1):
            entry["top"].append(len(rows))
            rows.append(delete_units(row, ranked[:k]))
        for k in range(1, args.top + 1):
            draws = []
            for _ in range(args.draws):
                picked = [e.units[i] for i in rng.choice(len(e.units), size=min(k, len(e.units)), replace=False)]
                draws.append(len(rows))
                rows.append(delete_units(row, picked))
            entry["random"].append(draws)
        plan.append(entry)
    scores = positive_scores(model, rows)

    def figures(transform) -> dict[str, float]:
        s = transform(scores)
        top_k = np.array([[s[p["full"]] - s[i] for i in p["top"]] for p in plan])
        random_k = np.array([[np.mean([s[p["full"]] - s[i] for i in draws]) for draws in p["random"]] for p in plan])
        top, rand = top_k[:, -1], random_k[:, -1]
        median_top, median_random = float(np.median(top)), float(np.median(rand))
        return {
            "median_drop_top": median_top,
            "median_drop_random": median_random,
            "ratio_of_medians": median_top / median_random if median_random > 0 else float("inf"),
            "mean_drop_top": float(np.mean(top)),
            "mean_drop_random": float(np.mean(rand)),
            "aopc_top": float(np.mean(top_k)),
            "aopc_random": float(np.mean(random_k)),
        }

    result = {
        "model": str(args.model_dir),
        "kind": model.meta.get("kind"),
        "rows": len(frame),
        "top": args.top,
        "draws": args.draws,
        "explain_seconds": round(explain_seconds, 1),
        "probability": figures(lambda s: s),
        "log_odds": figures(logit),
        "mean_units_per_row": float(np.mean([len(e.units) for e in explanations])),
        "max_abs_convergence_delta": float(max(abs(e.targets[0].delta or 0.0) for e in explanations)),
        "started": started,
        "machine": machine_line(),
        "load_average": [load_start, load_average()],
    }
    print(f"{result['kind']} export, {result['rows']} rows, explained in {result['explain_seconds']} s "
          f"({result['mean_units_per_row']:.1f} units per row)")
    print("| score | median drop, top 5 | median drop, 5 random | ratio | AOPC top | AOPC random |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in ("probability", "log_odds"):
        f = result[name]
        print(f"| {name} | {f['median_drop_top']:.4f} | {f['median_drop_random']:.4f} | {f['ratio_of_medians']:.1f}x "
              f"| {f['aopc_top']:.4f} | {f['aopc_random']:.4f} |")
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
