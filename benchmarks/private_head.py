"""Private heads on the frozen, mean-pooled backbone: which settings suit DP-SGD.

The private defaults (``automl.privacy.PRIVATE_SPACE`` / ``PRIVATE_WARM_START``, a
``head`` trial) were chosen with this script, on data that ``benchmarks/privacy.py``
never scores on: a banking77 sample drawn with ``--sample-seed`` (default 7; the privacy
benchmark's samples use seeds 0-2) of ``--per-class`` training rows per class from
``train.csv``, and ``--dev-rows`` other rows of ``train.csv`` as a development set;
``test.csv`` is not read.

The backbone (``minilm-l6``) encodes every row once, mean-pooled as automl's ``head``
adapter does; then each configuration trains the head (``width`` 0: LayerNorm and a
linear layer, automl's default on text alone; ``width`` > 0: a hidden layer of that
size, GELU, dropout 0.1, as ``automl.fusion.FusionHead``) with Opacus
(``make_private_with_epsilon``, PRV accountant, Poisson sampling), AdamW (weight decay
0.01) and a linear schedule with 6% warm-up, at ``--epsilon`` per trial (4.2: what each
of 3 trials gets of ε = 8 for a whole search) and δ = 1/(10 n). It prints the median dev
macro F1 over ``--seeds`` per configuration.

    python benchmarks/private_head.py                       # the configurations below
    python benchmarks/private_head.py --configs 512,40,0.01,1,0 512,40,0.0095,1,128
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SHARED_BANKING77, machine_line  # noqa: E402

#: (batch size, epochs, learning rate, clipping norm, hidden width)
CONFIGS = (
    "512,40,0.0095,1,128", "1024,60,0.01,1,128", "256,30,0.01,1,128", "512,60,0.02,1,128", "512,40,0.02,1,128",
    "512,40,0.005,1,128", "512,40,0.01,0.3,128", "1024,40,0.02,1,128", "512,40,0.0095,1,256",
    "512,40,0.02,1,0", "512,40,0.01,1,0",
)


def features(args: argparse.Namespace) -> tuple[np.ndarray, ...]:
    import pandas as pd
    import torch

    from automl import plugins

    rows = pd.read_csv(args.banking77 / "train.csv")
    train = pd.concat([group.sample(args.per_class, random_state=args.sample_seed) for _, group in rows.groupby("category")])
    dev = rows.drop(train.index).sample(args.dev_rows, random_state=args.sample_seed)
    names = {c: i for i, c in enumerate(sorted(rows.category.unique()))}
    from transformers import AutoModel

    backbone = plugins.get_backbone("minilm-l6")()
    tokenizer = backbone.load_tokenizer()
    model = AutoModel.from_pretrained(backbone.source()).eval()

    def pooled(texts: list[str]) -> np.ndarray:
        out = []
        with torch.no_grad():
            for i in range(0, len(texts), 64):
                batch = tokenizer(texts[i:i + 64], padding=True, truncation=True, max_length=64, return_tensors="pt")
                hidden = model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).float()
                out.append(((hidden * mask).sum(1) / mask.sum(1)).numpy())
        return np.concatenate(out)

    return (pooled(train.text.tolist()), train.category.map(names).to_numpy(),
            pooled(dev.text.tolist()), dev.category.map(names).to_numpy())


def train_head(data: tuple[np.ndarray, ...], batch_size: int, epochs: int, lr: float, clip: float, width: int,
               epsilon: float, seed: int) -> float:
    import torch
    from opacus import PrivacyEngine
    from sklearn.metrics import f1_score

    x, y, x_dev, y_dev = (torch.tensor(a) for a in data)
    n, hidden, classes = len(y), x.shape[1], int(y.max()) + 1
    torch.manual_seed(seed)
    nn = torch.nn
    model = (nn.Sequential(nn.LayerNorm(hidden), nn.Dropout(0.1), nn.Linear(hidden, width), nn.GELU(), nn.Dropout(0.1),
                           nn.Linear(width, classes))
             if width else nn.Sequential(nn.LayerNorm(hidden), nn.Dropout(0.1), nn.Linear(hidden, classes)))
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=batch_size)
    model, optimizer, loader = PrivacyEngine(accountant="prv").make_private_with_epsilon(
        module=model, optimizer=optimizer, data_loader=loader, target_epsilon=epsilon, target_delta=1 / (10 * n),
        epochs=epochs, max_grad_norm=clip)
    steps = epochs * int(np.ceil(n / batch_size))
    warm = max(1, int(0.06 * steps))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min((s + 1) / warm, max(0.0, (steps - s) / (steps - warm))))
    for _ in range(epochs):
        for xb, yb in loader:
            if len(xb):
                optimizer.zero_grad()
                nn.functional.cross_entropy(model(xb), yb).backward()
            optimizer.step()
            schedule.step()
    model.eval()
    with torch.no_grad():
        return float(f1_score(y_dev.numpy(), model(x_dev).argmax(1).numpy(), average="macro"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--banking77", type=Path, default=SHARED_BANKING77)
    parser.add_argument("--per-class", type=int, default=30)
    parser.add_argument("--dev-rows", type=int, default=1000)
    parser.add_argument("--sample-seed", type=int, default=7)
    parser.add_argument("--epsilon", type=float, default=4.2)
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), help="batch,epochs,lr,clip,width")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    print(f"== private heads on frozen mean-pooled minilm-l6\n{machine_line()}", flush=True)
    data = features(args)
    print(f"banking77 sample seed {args.sample_seed}: {len(data[1])} training rows, {len(data[3])} dev rows; "
          f"ε {args.epsilon} per configuration, seeds {args.seeds}", flush=True)
    for config in args.configs:
        b, e, lr, clip, width = config.split(",")
        start = time.perf_counter()
        scores = [train_head(data, int(b), int(e), float(lr), float(clip), int(width), args.epsilon, int(s))
                  for s in args.seeds.split(",")]
        print(json.dumps({"batch_size": int(b), "epochs": int(e), "learning_rate": float(lr), "max_grad_norm": float(clip),
                          "width": int(width), "dev_f1_macro": round(float(np.median(scores)), 4),
                          "seconds": round(time.perf_counter() - start, 1)}), flush=True)


if __name__ == "__main__":
    main()
