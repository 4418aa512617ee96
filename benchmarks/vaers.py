"""automl against classical models on VAERS 2006 (serious vs non-serious vaccine
adverse-event reports: six free-text columns, numeric and categorical columns; 8.5% positive).

    python benchmarks/vaers.py ../shared/data/vaers2006 [--rows 2000] [--trials 5] [--timeout 7m] [--epochs 2]

1. A stratified sample of ``train.csv`` (``--rows``; seeded) is written, with all of
   ``test.csv``, as Parquet under ``--workdir`` (outside the repository). The files are
   read with ``keep_default_na=False, na_values=[""]`` as the data's README says, so a
   literal "None" in a text field stays text.
2. ``automl run`` (a subprocess, as a user runs it) on a ``fraud-detection`` recipe with
   the real backbone (``minilm-l6``): 20% of the sample is split off for validation.
   Its wall time is measured from start to exit.
3. The exported model (``best/``: a fine-tuned model, the baseline or an ensemble) is loaded
   with ``automl.load_model`` and scores all of ``test.csv``; its test PR-AUC is computed
   here, from those scores.
4. On the same sampled rows: TF-IDF + logistic regression on the six text columns joined,
   and gradient boosting (scikit-learn's HistGradientBoostingClassifier) on the numeric and
   categorical columns plus TF-IDF/SVD components of the text; both scored on all of
   ``test.csv``.

Prints one table and writes ``results.json`` in ``--workdir``.

``--text-models`` runs no automl: it compares text models on the same sample (word
n-grams with C 4 and 16, word + character n-grams with C 4; the text columns of the data's
README, and those automl's ``fraud-detection`` schema reads as text) by 5-fold out-of-fold
average precision on the sampled rows and by test PR-AUC. The data set is never
copied into the repository; the tests never need it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import load_average, machine_line  # noqa: E402

LABEL = "SERIOUS"
TEXT = ["SYMPTOM_TEXT", "LAB_DATA", "OTHER_MEDS", "CUR_ILL", "HISTORY", "PRIOR_VAX"]
NUMBERS = ["AGE_YRS", "NUMDAYS", "N_VAX", "VAX_DOSE"]


def read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, keep_default_na=False, na_values=[""])


def sample(frame: pd.DataFrame, rows: int, seed: int) -> pd.DataFrame:
    from sklearn.model_selection import train_test_split

    if rows >= len(frame):
        return frame
    picked, _ = train_test_split(frame, train_size=rows, stratify=frame[LABEL], random_state=seed)
    return picked.reset_index(drop=True)


def recipe(args: argparse.Namespace, train: Path, test: Path, out: Path) -> dict:
    space = {
        "learning_rate": {"low": 5.0e-5, "high": 5.0e-4, "log": True},
        "batch_size": [16, 32],
        "epochs": args.epochs,
        "weight_decay": 0.01,
        "warmup_ratio": 0.1,
        "adapter": "full",
        "class_weight_power": {"low": 0.5, "high": 1.0},
    }
    return {
        "task": "fraud-detection",
        # The baseline is chosen and scored on the held-out validation rows, then refit on
        # all sampled rows, as the classical models below are trained on all of them.
        "task_options": {"positive_label": "1", "refit_baseline": True},
        "backbone": args.backbone,
        "data": {"train": str(train), "test": str(test), "label_column": LABEL, "validation_fraction": 0.2},
        "search": {"trials": args.trials, "timeout": args.timeout, "pruner": "none", "keep_top_k": 2, "space": space},
        "training": {"max_length": args.max_length, "seed": args.seed, "eval_every": "epoch", "eval_batch_size": 64},
        "output": str(out),
        "name": "vaers",
    }


def pr_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(labels, scores))


def joined_text(frame: pd.DataFrame) -> list[str]:
    return frame[TEXT].fillna("").astype(str).agg(" | ".join, axis=1).tolist()


def tfidf_logistic(train: pd.DataFrame, test: pd.DataFrame, seed: int) -> np.ndarray:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    model = make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, max_features=50_000),
        LogisticRegression(C=4.0, max_iter=2000, random_state=seed),
    )
    model.fit(joined_text(train), train[LABEL])
    return model.predict_proba(joined_text(test))[:, 1]


def gradient_boosting(train: pd.DataFrame, test: pd.DataFrame, seed: int) -> np.ndarray:
    from sklearn.compose import ColumnTransformer
    from sklearn.decomposition import TruncatedSVD
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OrdinalEncoder

    categories = [c for c in train.columns if c not in (*TEXT, *NUMBERS, LABEL)]

    def frame(rows: pd.DataFrame) -> pd.DataFrame:
        out = rows[NUMBERS].apply(pd.to_numeric, errors="coerce")
        out[categories] = rows[categories].fillna("missing").astype(str)
        out["text"] = joined_text(rows)
        return out

    model = Pipeline([
        ("columns", ColumnTransformer([
            ("number", "passthrough", NUMBERS),
            ("category", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan,
                                        encoded_missing_value=np.nan, max_categories=250), categories),
            ("text", make_pipeline(TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, max_features=50_000),
                                   TruncatedSVD(64, random_state=seed)), "text"),
        ])),
        ("model", HistGradientBoostingClassifier(
            max_iter=300, learning_rate=0.05, random_state=seed,
            categorical_features=list(range(len(NUMBERS), len(NUMBERS) + len(categories))))),
    ])
    model.fit(frame(train), train[LABEL])
    return model.predict_proba(frame(test))[:, 1]


def text_models(train: pd.DataFrame, test: pd.DataFrame, seed: int) -> None:
    """The ``--text-models`` table: which text model the baseline's choice by out-of-fold
    average precision would pick, and how each does on the test rows."""
    from types import SimpleNamespace

    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline, make_union

    from automl_plugins.fraud import FraudDetection, FraudOptions

    task = FraudDetection(FraudOptions(positive_label="1"), SimpleNamespace(label_column=LABEL, text_column=None, feature_columns=None))
    task.read(train, split="train", file="train", label_names=task.label_names(train, file="train"))
    automl_text = [c.name for c in task.schema if c.kind == "text"]

    def words() -> TfidfVectorizer:
        return TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, max_features=50_000)

    def chars() -> TfidfVectorizer:
        return TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=2, sublinear_tf=True, max_features=100_000)

    models = {
        "words, C=4": lambda: make_pipeline(words(), LogisticRegression(C=4.0, max_iter=2000, random_state=seed)),
        "words, C=16": lambda: make_pipeline(words(), LogisticRegression(C=16.0, max_iter=2000, random_state=seed)),
        "words + characters, C=4": lambda: make_pipeline(make_union(words(), chars()), LogisticRegression(C=4.0, max_iter=2000, random_state=seed)),
    }
    y, cv = train[LABEL].to_numpy(), StratifiedKFold(5, shuffle=True, random_state=seed)
    print(f"{'text columns':<40} {'model':<24} {'OOF AP':>7} {'test PR-AUC':>11}")
    for label, columns in [("the six of the data's README", TEXT), (f"automl's: {', '.join(automl_text)}", automl_text)]:
        docs = train[columns].fillna("").astype(str).agg(" | ".join, axis=1).tolist()
        test_docs = test[columns].fillna("").astype(str).agg(" | ".join, axis=1).tolist()
        for name, make in models.items():
            oof = cross_val_predict(make(), docs, y, cv=cv, method="predict_proba")[:, 1]
            scores = make().fit(docs, y).predict_proba(test_docs)[:, 1]
            print(f"{label[:40]:<40} {name:<24} {pr_auc(y, oof):>7.4f} {pr_auc(test[LABEL].to_numpy(), scores):>11.4f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir", type=Path, help="the vaers2006 folder (train.csv, test.csv)")
    parser.add_argument("--rows", type=int, default=2000, help="stratified sample of train.csv (default 2000)")
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--timeout", default="7m", help="search.timeout: the search's wall-clock budget (default 7m)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--backbone", default="minilm-l6")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=None, help="where data, run and results go (default: a temp dir)")
    parser.add_argument("--text-models", action="store_true", help="compare text models on the sample instead (no automl run)")
    args = parser.parse_args()

    work = args.workdir or Path(tempfile.mkdtemp(prefix="automl-vaers-"))
    work.mkdir(parents=True, exist_ok=True)
    full_train, test = read(args.data_dir / "train.csv"), read(args.data_dir / "test.csv")
    train = sample(full_train, args.rows, args.seed)
    if args.text_models:
        text_models(train, test, args.seed)
        return
    train_file, test_file = work / "train.parquet", work / "test.parquet"
    train.to_parquet(train_file, index=False)
    test.to_parquet(test_file, index=False)
    recipe_file = work / "vaers.yaml"
    import yaml

    recipe_file.write_text(yaml.safe_dump(recipe(args, train_file, test_file, work / "run")))
    labels = test[LABEL].to_numpy()

    print(machine_line())
    print(f"{load_average()} (before)")
    start = time.perf_counter()
    done = subprocess.run(["automl", "run", str(recipe_file), "--fresh"], check=False)
    wall = time.perf_counter() - start
    print(f"{load_average()} (after automl run)")
    if done.returncode != 0:
        sys.exit(f"automl run failed with exit code {done.returncode}")

    import automl

    best = work / "run" / "best"
    meta = json.loads((best / "automl.json").read_text())
    model = automl.load_model(str(best), device="cpu")
    outputs = np.asarray(model.outputs(test))
    z = outputs - outputs.max(axis=1, keepdims=True)
    automl_scores = (np.exp(z) / np.exp(z).sum(axis=1, keepdims=True))[:, 1]
    ensemble = json.loads((work / "run" / "ensemble.json").read_text()) if (work / "run" / "ensemble.json").exists() else None
    internal = json.loads((work / "run" / "baseline.json").read_text())
    summary = json.loads((work / "run" / "summary.json").read_text())

    t0 = time.perf_counter()
    logistic = pr_auc(labels, tfidf_logistic(train, test, args.seed))
    t1 = time.perf_counter()
    boosting = pr_auc(labels, gradient_boosting(train, test, args.seed))
    t2 = time.perf_counter()
    results = {
        "rows": len(train),
        "positives": int(train[LABEL].sum()),
        "test_rows": len(test),
        "recipe": {k: v for k, v in vars(args).items() if k not in ("data_dir", "workdir")},
        "automl": {
            "exported": meta.get("kind", "trial"),
            "test_pr_auc": pr_auc(labels, automl_scores),
            "test_pr_auc_at_export": (meta.get("metrics", {}).get("test") or {}).get("pr_auc"),
            "validation_pr_auc": (meta.get("metrics", {}).get("validation") or {}).get("pr_auc"),
            "best_trial_validation_pr_auc": summary.get("best_value"),
            "wall_seconds": round(wall, 1),
            "trials": {k: summary.get(k) for k in ("n_complete", "n_pruned", "n_failed")},
        },
        "automl_baseline": {"name": internal.get("name"), "validation_pr_auc": internal["validation"].get("pr_auc"), "test_pr_auc": (internal.get("test") or {}).get("pr_auc")},
        "ensemble": ensemble and {
            "members": ensemble["members"], "validation_pr_auc": ensemble["validation"].get("pr_auc"),
            "test_pr_auc": (ensemble.get("test") or {}).get("pr_auc"), "held_out": ensemble["held_out"], "wins": ensemble["wins"],
        },
        "tfidf_logistic": {"test_pr_auc": logistic, "seconds": round(t1 - t0, 1)},
        "gradient_boosting": {"test_pr_auc": boosting, "seconds": round(t2 - t1, 1)},
        "load_average": load_average(),
    }
    (work / "results.json").write_text(json.dumps(results, indent=2, default=str))
    print(f"\nVAERS 2006: {len(train)} sampled training rows ({results['positives']} serious), all {len(test)} test rows")
    print(f"{'model':<46} {'test PR-AUC':>11}")
    print(f"{'automl exported model (' + results['automl']['exported'] + ')':<46} {results['automl']['test_pr_auc']:>11.4f}")
    if ensemble:
        test_ens = results["ensemble"]["test_pr_auc"]
        print(f"{'  its ensemble (' + ('exported' if ensemble['wins'] else 'not exported') + ')':<46} {test_ens if test_ens is None else f'{test_ens:.4f}':>11}")
    print(f"{'  its saved baseline':<46} {results['automl_baseline']['test_pr_auc']:>11.4f}  ({internal.get('name')})")
    print(f"{'TF-IDF + logistic regression':<46} {logistic:>11.4f}")
    print(f"{'gradient boosting (numbers, categories, text)':<46} {boosting:>11.4f}")
    better = max(logistic, boosting)
    verdict = "at least" if results["automl"]["test_pr_auc"] >= better else "below"
    print(f"automl run wall time {wall:.0f} s; automl is {verdict} the better classical model ({better:.4f})")
    print(f"results: {work / 'results.json'}")


if __name__ == "__main__":
    main()
