"""Which warm start suits full fine-tuning of MiniLM-L6 on a few hundred labelled rows?

Runs a grid of configurations (learning rate x epochs, batch 16, full fine-tuning, the
default space's weight decay 0.01, warm-up 6% and linear schedule) as one ``automl run``
per data set and seed, with ``search.start_from`` listing them, no pruner and no
baseline, and prints each configuration's best validation macro F1 (each trial keeps its
best evaluation, as automl's trials do), then the mean and minimum per configuration.

The data are banking77 samples (``../shared/data``) chosen to be *other* than the one
``vs_trainer_hpo.py`` measures on (its classes come from seed 0): by default 10 classes
from seed 1 and from seed 2 (40 training and 10 validation rows per class) and 20 classes
from seed 3 (20 and 8). This is the measurement behind the ``minilm-l6`` backbone's
warm-start hint (``plugins/automl_plugins/backbones.py``).

Run from the repository root::

    python benchmarks/warm_start.py                 # 3 data sets x 2 seeds x 6 configurations, ~9 min on 2 cores
    python benchmarks/warm_start.py --seeds 0 --learning-rates 1e-4,3e-4 --epochs 2 --samples 1:10:40:10
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common  # noqa: E402


def floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x]


def ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def sample(text: str) -> tuple[int, int, int, int]:
    """``SEED:CLASSES:PER_CLASS:VALIDATION_PER_CLASS``."""
    seed, classes, per, vper = (int(x) for x in text.split(":"))
    return seed, classes, per, vper


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="a CSV with text,label columns (default: banking77 train.csv/test.csv)")
    parser.add_argument(
        "--samples", type=lambda s: [sample(x) for x in s.split(",")], default=[(1, 10, 40, 10), (2, 10, 40, 10), (3, 20, 20, 8)],
        help="data samples SEED:CLASSES:PER_CLASS:VALIDATION_PER_CLASS, comma-separated (default 1:10:40:10,2:10:40:10,3:20:20:8)",
    )
    parser.add_argument("--seeds", type=ints, default=[0, 1], help="training seeds (default 0,1)")
    parser.add_argument("--learning-rates", type=floats, default=[1e-4, 2e-4, 3e-4])
    parser.add_argument("--epochs", type=ints, default=[2, 3])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--work-dir", help="keep the runs here (default: a temporary directory, removed)")
    args = parser.parse_args(argv)

    import optuna

    from automl.search.storage import open_storage

    configs = [{"learning_rate": lr, "epochs": ep, "batch_size": args.batch_size} for ep in args.epochs for lr in args.learning_rates]
    common.header("warm start for MiniLM-L6 full fine-tuning: best validation macro F1 per configuration")
    results: dict[tuple[float, int], list[float]] = {}
    with common.workspace(args.work_dir) as work:
        for data_seed, classes, per, vper in args.samples:
            name = f"seed{data_seed}-{classes}classes"
            data_args = types.SimpleNamespace(
                data=args.data, text_column="text", label_column="label", per_class=per, validation_per_class=vper,
                classes=classes, synthetic_rows=0, seed=data_seed, max_length=64,
            )
            train, validation = common.data_from_args(work / name / "data", data_args)
            for seed in args.seeds:
                run = work / name / f"train-seed{seed}"
                recipe = common.write_recipe(
                    run / "recipe.yaml", train=train, validation=validation, backbone="minilm-l6", max_length=64, seed=seed,
                    trials=len(configs), output=run / "run", pruner="none",
                    space={
                        "learning_rate": {"low": min(args.learning_rates), "high": max(args.learning_rates) * 1.0001, "log": True},
                        "batch_size": [args.batch_size],
                        "epochs": {"type": "int", "low": min(args.epochs), "high": max(args.epochs)},
                        "adapter": "full",
                    },
                )
                text = recipe.read_text().replace(
                    "search:\n", "search:\n  start_from:\n" + "".join(f"  - {json.dumps(c)}\n" for c in configs), 1
                )
                recipe.write_text(text)
                log = run / "output.log"
                with log.open("w") as out:
                    code = subprocess.run(
                        [sys.executable, "-m", "automl", "run", str(recipe), "--no-baseline"], stdout=out, stderr=subprocess.STDOUT,
                        cwd=common.REPO,
                    ).returncode
                if code != 0:
                    raise SystemExit(f"automl run failed (exit {code}); see {log}:\n{log.read_text()[-2000:]}")
                study = optuna.load_study(study_name="recipe", storage=open_storage(f"journal:{run / 'run' / 'study.journal'}", None))
                for t in sorted(study.trials, key=lambda t: t.number):
                    key = (float(t.params["learning_rate"]), int(t.params["epochs"]))
                    results.setdefault(key, []).append(float(t.value))
                    print(f"  {name} train seed {seed}: lr {key[0]:g}, {key[1]} epochs: {t.value:.4f}", flush=True)
    print()
    print(f"  {'learning rate':>13s} {'epochs':>6s} {'mean':>7s} {'min':>7s}  values")
    for (lr, ep), values in sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        print(f"  {lr:13g} {ep:6d} {statistics.mean(values):7.4f} {min(values):7.4f}  {', '.join(f'{v:.4f}' for v in values)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
