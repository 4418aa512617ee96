"""Private training against non-private, on two real text data sets, at one time budget.

For each data set and seed it runs ``automl run`` (a subprocess, as a user runs it) with
four recipes that differ only in privacy and space; every run has the same wall-clock
budget (``search.timeout``), backbone (``minilm-l6``), data files and seed:

* ``A``: non-private, automl's default space and warm start (no ``privacy:`` block);
* ``B``: private, ``privacy: {epsilon: 3}`` (``accounting: search``: ε is the budget of the
  whole search; ``delta: auto``), the privacy-aware default space and warm start
  (``automl.privacy.PRIVATE_SPACE`` / ``PRIVATE_WARM_START``: LoRA, logical batches of 128
  or 256, 3-8 epochs, learning rates x10, ``max_grad_norm`` searched);
* ``C``: the same at ``epsilon: 8``;
* ``D``: private at ``epsilon: 8``, but with A's space and warm start forced: A's recipe is
  resolved through automl's API (``automl.resolve.resolve``), and its space (fixed values
  and searched dimensions, per-adapter ranges included) and warm-start configurations are
  written out as ``search.space`` and ``search.start_from``, with ``max_grad_norm`` fixed
  at 1.0 (``privacy.max_grad_norm``'s default). The script checks that the written recipe
  resolves to A's space and start configurations before it runs anything. D against C
  shows what the privacy-aware defaults are worth.
* ``E``: non-private, with the space and warm start C resolves to (``max_grad_norm``
  left out) written out as in D: the same model family and settings as C without
  clipping and noise. E against C is the cost of DP itself; E against A says how the
  private defaults' model (a head on the frozen backbone) does without privacy.

Data sets:

* ``banking77`` (``--banking77 DIR``, default ``../shared/data/banking77``; columns
  text,category; 77 classes): a stratified, seeded sample of ``train.csv``
  (``--per-class`` rows of each class for training, ``--validation-per-class`` others for
  validation), scored on all of ``test.csv`` (3,080 rows); objective macro F1.
* ``sst2`` (``--sst2 DIR``): GLUE SST-2, binary sentiment. ``DIR`` holds GLUE's
  ``train.tsv`` (67,349 rows) and ``dev.tsv`` (872 rows), tab-separated with a header
  naming a ``label`` column (0/1) and a text column (GLUE's ``sentence``; any other single
  column is taken as the text). Get them from GLUE (``SST-2.zip`` of
  https://gluebenchmark.com/tasks, also the ``glue``/``sst2`` data set on the Hugging Face
  hub) or a copy in a public repository (e.g. ``SST-2/`` of github.com/awake020/pytorch_Bert_sst2,
  which puts the label first and calls dev's text column ``content``). ``--train-rows``
  and ``--validation-rows`` are sampled from ``train.tsv`` (seeded, stratified by label,
  disjoint); the test set is all of ``dev.tsv`` (GLUE's test labels are hidden). Objective
  macro F1.

The seed is both the sample's and ``training.seed``; each seed's sample is shared by the
four configurations. The data sets are written under ``--out``, never into the repository.

Per run: test accuracy and macro F1 of the exported model (``best/automl.json``,
``metrics.test``), the search's ε and δ (``automl.privacy.run_privacy`` over the study's
trials), trials (complete, pruned, failed) and wall time (process start to exit). Then
medians per data set and configuration, and paired differences over seeds: C - A and
B - A (points), C - D (points) and private / non-private wall time. Everything goes to
``results.json`` in ``--out``, next to the runs.

    python benchmarks/privacy.py --sst2 /work/data/sst2                    # 2 data sets x 4 configurations x 3 seeds, 4 min each
    python benchmarks/privacy.py --sst2 /work/data/sst2 --configs A,C --datasets banking77 --seeds 0
    python benchmarks/privacy.py --sst2 /work/data/sst2 --quick            # smoke run: tiny samples, 1 seed, 40 s each
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    SHARED_BANKING77,
    header,
    load_average,
    read_rows,
    run_measured,
    spread,
    stratified,
    write_rows,
)

CONFIGS = {
    "A": "non-private, default space",
    "B": "private ε=3, privacy-aware defaults",
    "C": "private ε=8, privacy-aware defaults",
    "D": "private ε=8, non-private space forced",
    "E": "non-private, C's space and warm start (no clipping, no noise)",
}
EPSILON = {"B": 3.0, "C": 8.0, "D": 8.0}
DATASETS = ("banking77", "sst2")
#: ``privacy.max_grad_norm``'s default: D's fixed clipping norm.
MAX_GRAD_NORM = 1.0
#: --quick: sizes for a smoke run of every code path (figures meaningless).
QUICK = {"per_class": 3, "validation_per_class": 1, "train_rows": 120, "validation_rows": 40, "test_rows": 200,
         "timeout": "40s", "seeds": "0"}


# ----------------------------------------------------------------------------- data


def read_sst2(path: Path) -> list[tuple[str, str]]:
    """(text, label) rows of a GLUE SST-2 file: tab-separated, a header with ``label`` and
    ``sentence`` (or one other column, taken as the text), no quoting."""
    if not path.exists():
        sys.exit(f"error: {path} not found (expected GLUE SST-2's train.tsv and dev.tsv; see --help)")
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        columns = list(reader.fieldnames or [])
        others = [c for c in columns if c != "label"]
        text = "sentence" if "sentence" in columns else (others[0] if len(others) == 1 else None)
        if "label" not in columns or text is None:
            sys.exit(f"error: {path}: expected columns sentence,label; found {', '.join(columns)}")
        return [(row[text], row["label"]) for row in reader]


def proportional(rows: list[tuple[str, str]], n: int, seed: int) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """*n* rows with the classes in their shares in *rows* (seeded), and the rest."""
    if n >= len(rows):
        return list(rows), []
    from sklearn.model_selection import train_test_split

    picked, rest = train_test_split(rows, train_size=n, stratify=[label for _, label in rows], random_state=seed)
    return picked, rest


def prepare(dataset: str, args: argparse.Namespace, seed: int, out: Path) -> tuple[dict[str, str], str]:
    """Write the train/validation/test files of *dataset* for *seed* (columns text,label);
    returns the recipe's ``data`` section and a line saying what was written."""
    if dataset == "banking77":
        if not (args.banking77 / "train.csv").exists():
            sys.exit(f"error: {args.banking77 / 'train.csv'} not found (give banking77's folder with --banking77 DIR)")
        rows = read_rows(args.banking77 / "train.csv", "text", "category")
        train = stratified(rows, args.per_class, seed)
        taken = set(map(id, train))
        validation = stratified([r for r in rows if id(r) not in taken], args.validation_per_class, seed + 1)
        test = read_rows(args.banking77 / "test.csv", "text", "category")
        source = f"banking77 ({args.banking77})"
    else:
        if args.sst2 is None:
            sys.exit("error: the sst2 data set needs --sst2 DIR (GLUE SST-2's train.tsv and dev.tsv; see --help)")
        train, rest = proportional(read_sst2(args.sst2 / "train.tsv"), args.train_rows, seed)
        validation, _ = proportional(rest, args.validation_rows, seed + 1)
        test = read_sst2(args.sst2 / "dev.tsv")
        source = f"SST-2 ({args.sst2})"
    if args.test_rows is not None:
        test, _ = proportional(test, args.test_rows, seed)
    paths = {split: write_rows(out / f"{split}.csv", rows) for split, rows in
             (("train", train), ("validation", validation), ("test", test))}
    classes = len({label for _, label in train})
    line = (f"{source}, seed {seed}: {len(train)} train / {len(validation)} validation rows (disjoint, stratified), "
            f"{len(test)} test rows, {classes} classes")
    return {split: str(path) for split, path in paths.items()}, line


# ----------------------------------------------------------------------------- recipes


def recipe(config: str, data: dict[str, str], out: Path, args: argparse.Namespace, seed: int) -> dict[str, Any]:
    """The recipe of configuration A, B or C (D: :func:`forced_recipe` over A's)."""
    search: dict[str, Any] = {"timeout": args.timeout}
    if args.trials is not None:
        search["trials"] = args.trials
    body: dict[str, Any] = {
        "task": "text-classification",
        "backbone": args.backbone,
        "data": dict(data),
        "objective": {"metric": "f1_macro"},
        "search": search,
        "training": {"seed": seed, "max_length": args.max_length, "device": args.device},
        "output": str(out),
    }
    if config in EPSILON:
        body["privacy"] = {"epsilon": EPSILON[config], "delta": "auto", "max_grad_norm": MAX_GRAD_NORM, "accounting": "search"}
    return body


def space_entries(space: Any) -> dict[str, Any]:
    """A resolved :class:`~automl.search.space.SearchSpace` as recipe ``search.space``
    entries: fixed values as they are, each searched dimension as a range or choices
    with its ``when:`` condition (a parameter with several ranges as their list)."""
    from optuna.distributions import CategoricalDistribution, IntDistribution

    out: dict[str, Any] = dict(space.fixed)
    for dim in space.dimensions:
        d = dim.distribution
        if isinstance(d, CategoricalDistribution):
            entry: dict[str, Any] = {"choices": list(d.choices)}
        else:
            kind = "int" if isinstance(d, IntDistribution) else "float"
            entry = {"type": kind, "low": d.low, "high": d.high, "log": bool(d.log)}
            if d.step is not None and not (kind == "int" and d.step == 1):
                entry["step"] = d.step
        if dim.when:
            entry["when"] = {k: v[0] if len(v) == 1 else list(v) for k, v in dim.when.items()}
        if dim.key:  # one of several ranges of the parameter (learning_rate[full], ...)
            out.setdefault(dim.name, []).append(entry)
        else:
            out[dim.name] = entry
    return out


def resolve_file(path: Path) -> Any:
    from automl.recipe import load_recipe
    from automl.resolve import resolve

    return resolve(load_recipe(path))


def forced_recipe(base: dict[str, Any], base_file: Path, out: Path) -> dict[str, Any]:
    """Configuration D: the non-private recipe *base* (written at *base_file*) made private at
    ε=8 with the space and warm start that *base* resolves to written out explicitly, so
    that the privacy-aware defaults cannot apply; ``max_grad_norm`` fixed at 1.0."""
    resolved = resolve_file(base_file)
    body = json.loads(json.dumps(base))
    body["privacy"] = {"epsilon": EPSILON["D"], "delta": "auto", "max_grad_norm": MAX_GRAD_NORM, "accounting": "search"}
    body["search"]["space"] = {**space_entries(resolved.space), "max_grad_norm": MAX_GRAD_NORM}
    body["search"]["start_from"] = [dict(cfg) for cfg in resolved.start_from]
    body["output"] = str(out)
    return body


def unprivate_recipe(base: dict[str, Any], base_file: Path, out: Path) -> dict[str, Any]:
    """Configuration E: the private recipe *base* (C, written at *base_file*) without its
    ``privacy:`` block, with the space and warm start C resolves to written out (without
    ``max_grad_norm``, which means nothing without privacy)."""
    resolved = resolve_file(base_file)
    body = json.loads(json.dumps(base))
    del body["privacy"]
    space = space_entries(resolved.space)
    space.pop("max_grad_norm", None)
    body["search"]["space"] = space
    body["search"]["start_from"] = [{k: v for k, v in cfg.items() if k != "max_grad_norm"} for cfg in resolved.start_from]
    body["output"] = str(out)
    return body


def check_round_trip(a_file: Path, d_file: Path) -> list[str]:
    """Refuse (exit) unless D's recipe resolves to A's space and warm start, plus
    ``max_grad_norm`` fixed at 1.0; returns A's space, one line per parameter."""
    a, d = resolve_file(a_file), resolve_file(d_file)
    problems = []
    fixed = dict(d.space.fixed)
    if fixed.pop("max_grad_norm", None) != MAX_GRAD_NORM:
        problems.append(f"max_grad_norm is not fixed at {MAX_GRAD_NORM}")
    if fixed != a.space.fixed:
        problems.append(f"fixed values differ: A {a.space.fixed}, D {fixed}")
    a_dims, d_dims = ({x.param: x for x in r.space.dimensions} for r in (a, d))
    for name in sorted(set(a_dims) | set(d_dims)):
        if a_dims.get(name) != d_dims.get(name):
            problems.append(f"dimension {name}: A {a_dims.get(name)}, D {d_dims.get(name)}")
    if list(a.start_from) != list(d.start_from):
        problems.append(f"warm start differs: A {list(a.start_from)}, D {list(d.start_from)}")
    if problems:
        sys.exit(f"error: {d_file} does not resolve to the non-private space of {a_file}:\n  " + "\n  ".join(problems))
    return [f"{k}: {v!r} (fixed)" for k, v in a.space.fixed.items()] + [x.describe() for x in a.space.dimensions] + [
        f"warm start {i}: {cfg}" for i, cfg in enumerate(a.start_from)]


def write_yaml(path: Path, body: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(body, sort_keys=False, allow_unicode=True))
    return path


# ----------------------------------------------------------------------------- results


def summarise(run_dir: Path) -> dict[str, Any]:
    """Test metrics of the exported model, the search's privacy and its trials."""
    from optuna.trial import TrialState

    from automl.privacy import STUDY_ATTR, run_privacy
    from automl.results import open_study

    out: dict[str, Any] = {"test_accuracy": None, "test_f1_macro": None, "validation_f1_macro": None,
                           "search_epsilon": None, "max_trial_epsilon": None, "delta": None,
                           "trials": 0, "complete": 0, "pruned": 0, "failed": 0, "params": None}
    meta_file = run_dir / "best" / "automl.json"
    if meta_file.exists():
        meta = json.loads(meta_file.read_text())
        metrics = meta.get("metrics", {})
        out.update(
            test_accuracy=(metrics.get("test") or {}).get("accuracy"),
            test_f1_macro=(metrics.get("test") or {}).get("f1_macro"),
            validation_f1_macro=(metrics.get("validation") or {}).get("f1_macro"),
            params=meta.get("params"),
        )
    if not (run_dir / "study.journal").exists():
        return out
    study, _ = open_study(run_dir)
    # Draws that never ran (they would not have finished before the timeout, or the
    # budget was spent) are not trials of the run.
    trials = [t for t in study.get_trials(deepcopy=False) if not t.user_attrs.get("surplus")]
    states = [t.state for t in trials]
    counts = {name: states.count(state) for name, state in
              (("complete", TrialState.COMPLETE), ("pruned", TrialState.PRUNED), ("failed", TrialState.FAIL))}
    # A queued start configuration the deadline left waiting never ran.
    out.update(trials=sum(counts.values()), **counts)
    privacy = run_privacy(study.user_attrs.get(STUDY_ATTR), trials)
    if privacy is not None:
        out.update(search_epsilon=privacy["search_epsilon"], max_trial_epsilon=privacy["max_trial_epsilon"],
                   delta=privacy["delta"], privacy_trials=privacy["trials"])
    return out


def _f(value: float | None, fmt: str = "{:.4f}") -> str:
    return "-" if value is None else fmt.format(value)


def _values(rows: list[dict[str, Any]], key: str) -> list[float]:
    return [r[key] for r in rows if r.get(key) is not None]


def medians(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (data set, configuration): medians over seeds."""
    out = []
    for dataset in dict.fromkeys(r["dataset"] for r in runs):
        for config in dict.fromkeys(r["config"] for r in runs):
            rows = [r for r in runs if r["dataset"] == dataset and r["config"] == config]
            if rows:
                out.append({"dataset": dataset, "config": config, "n": len(rows), **{
                    key: statistics.median(_values(rows, key)) if _values(rows, key) else None
                    for key in ("test_accuracy", "test_f1_macro", "search_epsilon", "delta", "trials", "seconds")}})
    return out


def paired(runs: list[dict[str, Any]], dataset: str, first: str, second: str, key: str, *, ratio: bool = False) -> list[float]:
    """*first* minus (or over) *second* per seed on *dataset*, where both have *key*."""
    by = {(r["config"], r["seed"]): r.get(key) for r in runs if r["dataset"] == dataset}
    out = []
    for (config, seed), value in by.items():
        other = by.get((second, seed))
        if config == first and value is not None and other is not None:
            out.append(value / other if ratio else 100.0 * (value - other))
    return out


def differences(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The comparisons the benchmark is for, per data set, paired by seed."""
    out = []
    for dataset in dict.fromkeys(r["dataset"] for r in runs):
        for first, second, what in (
            ("C", "A", "private ε=8 - non-private (points)"),
            ("B", "A", "private ε=3 - non-private (points)"),
            ("C", "D", "privacy-aware - non-private defaults at ε=8 (points)"),
            ("C", "E", "private ε=8 - the same space without privacy (points)"),
            ("E", "A", "the private defaults' space without privacy - non-private defaults (points)"),
        ):
            acc, f1 = paired(runs, dataset, first, second, "test_accuracy"), paired(runs, dataset, first, second, "test_f1_macro")
            if acc or f1:
                out.append({"dataset": dataset, "comparison": f"{first} - {second}", "what": what,
                            "accuracy_points": acc, "f1_macro_points": f1})
        for first in ("B", "C", "D"):
            wall = paired(runs, dataset, first, "A", "seconds", ratio=True)
            if wall:
                out.append({"dataset": dataset, "comparison": f"{first} / A", "what": "wall time, private / non-private",
                            "wall_ratio": wall})
    return out


def print_tables(runs: list[dict[str, Any]], summary: list[dict[str, Any]], diffs: list[dict[str, Any]]) -> None:
    print()
    print("| data set | config | seed | test accuracy | test macro F1 | search ε | δ | trials (complete/pruned/failed) | wall time |")
    print("|---|---|---:|---:|---:|---:|---:|---|---:|")
    for r in runs:
        print(f"| {r['dataset']} | {r['config']} | {r['seed']} | {_f(r['test_accuracy'])} | {_f(r['test_f1_macro'])} | "
              f"{_f(r['search_epsilon'], '{:.2f}')} | {_f(r['delta'], '{:.1e}')} | "
              f"{r['trials']} ({r['complete']}/{r['pruned']}/{r['failed']}) | {r['seconds']:.0f} s |")
    print()
    print("Medians over seeds:")
    print()
    print("| data set | config | | test accuracy | test macro F1 | search ε | trials | wall time | n |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for m in summary:
        print(f"| {m['dataset']} | {m['config']} | {CONFIGS[m['config']]} | {_f(m['test_accuracy'])} | {_f(m['test_f1_macro'])} | "
              f"{_f(m['search_epsilon'], '{:.2f}')} | {_f(m['trials'], '{:g}')} | {_f(m['seconds'], '{:.0f} s')} | {m['n']} |")
    print()
    print("Paired by seed (median, range):")
    print()
    print("| data set | comparison | | accuracy | macro F1 | wall time ratio |")
    print("|---|---|---|---:|---:|---:|")
    for d in diffs:
        print(f"| {d['dataset']} | {d['comparison']} | {d['what']} | {spread(d.get('accuracy_points', []), '{:+.1f}')} | "
              f"{spread(d.get('f1_macro_points', []), '{:+.1f}')} | {spread(d.get('wall_ratio', []), '{:.2f}x')} |")


# ----------------------------------------------------------------------------- main


def options(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--sst2", type=Path, default=None, help="folder with GLUE SST-2's train.tsv and dev.tsv")
    parser.add_argument("--banking77", type=Path, default=SHARED_BANKING77, help=f"folder with banking77's train.csv and test.csv (default {SHARED_BANKING77})")
    parser.add_argument("--datasets", default=",".join(DATASETS), help="comma-separated, of banking77,sst2 (default both)")
    parser.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated, of A,B,C,D,E (default all)")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds: sample and training.seed (default 0,1,2)")
    parser.add_argument("--timeout", default="4m", help="search.timeout of every run (default 4m)")
    parser.add_argument("--trials", type=int, default=None, help="search.trials (default: automl's, 10); with accounting: search, "
                        "ε is shared over this many trials")
    parser.add_argument("--per-class", type=int, default=30, help="banking77 training rows per class (default 30)")
    parser.add_argument("--validation-per-class", type=int, default=8, help="banking77 validation rows per class (default 8)")
    parser.add_argument("--train-rows", type=int, default=2000, help="SST-2 training rows (default 2000)")
    parser.add_argument("--validation-rows", type=int, default=500, help="SST-2 validation rows (default 500)")
    parser.add_argument("--test-rows", type=int, default=None, help="score on a stratified sample of the test file (default all of it)")
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--backbone", default="minilm-l6")
    parser.add_argument("--device", default="auto", help="training.device (default auto: a GPU when there is one)")
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "automl-privacy-bench",
                        help="data, recipes, runs, logs and results.json (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="smoke run: " + ", ".join(f"{k.replace('_', '-')} {v}" for k, v in QUICK.items()))
    args = parser.parse_args(argv)
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    args.datasets = [d for d in args.datasets.split(",") if d]
    args.configs = [c for c in args.configs.upper().split(",") if c]
    args.seeds = [int(s) for s in str(args.seeds).split(",") if s]
    for name, given, known in (("--datasets", args.datasets, DATASETS), ("--configs", args.configs, CONFIGS)):
        unknown = [x for x in given if x not in known]
        if unknown:
            parser.error(f"{name}: unknown {', '.join(unknown)}; choose from {', '.join(known)}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = options(argv)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    header("private vs non-private training at one time budget")
    print(f"data sets {', '.join(args.datasets)}; configurations {', '.join(args.configs)}; seeds {args.seeds}; "
          f"timeout {args.timeout}; backbone {args.backbone}; max_length {args.max_length}; device {args.device}; out {out}")
    runs: list[dict[str, Any]] = []
    space_shown = False
    for dataset in args.datasets:
        for seed in args.seeds:
            work = out / f"{dataset}-seed{seed}"
            data, line = prepare(dataset, args, seed, work / "data")
            print(f"data: {line}", flush=True)
            a_body = recipe("A", data, work / "run-A", args, seed)
            a_file = write_yaml(work / "A.yaml", a_body)
            files = {"A": a_file}
            for config in ("B", "C"):
                files[config] = write_yaml(work / f"{config}.yaml", recipe(config, data, work / f"run-{config}", args, seed))
            if "D" in args.configs:
                files["D"] = write_yaml(work / "D.yaml", forced_recipe(a_body, a_file, work / "run-D"))
                space = check_round_trip(a_file, files["D"])
                if not space_shown:
                    print("D's forced space and warm start (round trip checked: D's recipe resolves to A's, "
                          f"plus max_grad_norm {MAX_GRAD_NORM}):\n  " + "\n  ".join(space))
                    space_shown = True
            if "E" in args.configs:
                c_body = yaml.safe_load(files["C"].read_text())
                files["E"] = write_yaml(work / "E.yaml", unprivate_recipe(c_body, files["C"], work / "run-E"))
            for config in args.configs:
                measured = run_measured([sys.executable, "-m", "automl", "run", str(files[config]), "--fresh"],
                                        log=work / f"run-{config}.log")
                row = {"dataset": dataset, "config": config, "seed": seed, "seconds": round(measured["seconds"], 1),
                       "exit": measured["returncode"], "peak_rss_mb": round(measured["peak_rss_mb"]),
                       **summarise(work / f"run-{config}")}
                runs.append(row)
                if row["exit"] != 0:
                    print(f"  automl run exited {row['exit']}: see {work / f'run-{config}.log'}")
                print(json.dumps(row, default=str), flush=True)
    print(f"at end: {load_average()}")
    summary, diffs = medians(runs), differences(runs)
    print_tables(runs, summary, diffs)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    (out / "results.json").write_text(json.dumps(
        {"settings": settings, "configs": CONFIGS, "runs": runs, "medians": summary, "differences": diffs,
         "load_average": load_average()}, indent=2, default=str))
    print(f"\nresults: {out / 'results.json'}")


if __name__ == "__main__":
    main()
