"""Deterministic synthetic data sets for the built-in recipes, and ``automl data generate``.

Every data set is drawn from a seeded numpy generator (no network, no downloads), so the
same ``--seed`` writes byte-identical files on every machine. The files under
``recipes/data/`` were written by::

    automl data generate recipes/data --kind all --seed 0

Kinds:

* ``fraud``: card transactions with numbers, categories and a free-text memo; about 5%
  fraud. Fraud hides in *combinations* (a "gift card" memo is harmless at noon at home,
  suspicious at 3 a.m. abroad with the card not present), and some labels are noise, so a
  good model reaches a PR-AUC well below 1.
* ``sentiment``: product reviews labelled negative / neutral / positive, with mixed
  opinions, negation and label noise.
* ``regression``: product reviews with a 1-5 star rating (a float with noise).
* ``ner``: support-ticket sentences in CoNLL format with BIO tags for PRODUCT, ORG, LOC.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from automl import hookimpl

KINDS = ("fraud", "sentiment", "regression", "ner")
SPLITS = ("train", "validation", "test")
#: Rows (sentences for ``ner``) per split.
SIZES: dict[str, tuple[int, int, int]] = {
    "fraud": (2000, 600, 600),
    "sentiment": (1200, 300, 300),
    "regression": (1000, 250, 250),
    "ner": (600, 150, 150),
}


automl_api_version = "1"


def _rng(seed: int, kind: str, split: str) -> np.random.Generator:
    return np.random.default_rng([seed, KINDS.index(kind), SPLITS.index(split)])


def _pick(rng: np.random.Generator, items: Sequence[Any], p: Sequence[float] | None = None) -> Any:
    if p is not None:
        weights = np.asarray(p, dtype=float)
        return items[int(rng.choice(len(items), p=weights / weights.sum()))]
    return items[int(rng.integers(len(items)))]


def _csv(header: Sequence[str], rows: list[Sequence[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


# --------------------------------------------------------------------------- fraud

_CATEGORIES = ("grocery", "restaurant", "fuel", "online_retail", "electronics", "travel",
               "gift_cards", "pharmacy", "entertainment", "jewelry")
_CATEGORY_WEIGHTS = (22, 18, 12, 16, 6, 5, 4, 8, 7, 2)
#: (median amount, spread) of legitimate purchases per category.
_AMOUNTS = {
    "grocery": (45, 0.6), "restaurant": (35, 0.6), "fuel": (50, 0.35), "online_retail": (40, 0.9),
    "electronics": (180, 0.8), "travel": (320, 0.7), "gift_cards": (50, 0.5), "pharmacy": (25, 0.6),
    "entertainment": (30, 0.7), "jewelry": (250, 0.8),
}
_HOME = "US"
_TRAVEL_COUNTRIES = ("CA", "GB", "MX", "FR", "DE", "ES", "IT", "JP")
_RISKY_COUNTRIES = ("NG", "RU", "RO", "BR", "ID", "VN", "UA", "GB", "MX")
_STORES = ("Safeway", "Kroger", "Trader Joes", "Whole Foods", "Aldi", "Costco", "Target")
_PEOPLE = ("mom", "dad", "my sister", "a coworker", "my nephew", "grandma", "a friend")
_ITEMS = ("headphones", "phone case", "laptop", "smart watch", "tablet", "camera", "monitor",
          "charger", "keyboard", "speaker")
_CITIES = ("Denver", "Chicago", "Boston", "Seattle", "Austin", "Miami", "Toronto", "London")

_LEGIT_MEMOS: dict[str, tuple[str, ...]] = {
    "grocery": ("weekly groceries at {store}", "groceries and snacks", "{store} run", "milk bread eggs"),
    "restaurant": ("dinner with {person}", "lunch near the office", "pizza night", "coffee and bagel"),
    "fuel": ("gas on the way to work", "fuel stop", "filled up the tank", "gas before road trip"),
    "online_retail": ("order #{n} {item}", "online order household stuff", "subscription renewal",
                      "book order", "app store purchase", "crypto top up"),
    "electronics": ("new {item}", "order #{n} {item}", "replacement {item}", "{item} for school",
                    "rush order {item}", "ship to new address {item}"),
    "travel": ("flight to {city}", "hotel in {city}", "train tickets", "rental car deposit"),
    "gift_cards": ("gift card for {person}", "birthday gift card for {person}", "gift card purchase",
                   "holiday gift cards"),
    "pharmacy": ("prescription refill", "pharmacy pickup", "cold medicine", "vitamins"),
    "entertainment": ("movie tickets", "concert tickets", "streaming subscription", "bowling night"),
    "jewelry": ("anniversary ring", "watch repair", "earrings for {person}", "necklace gift"),
}
#: Phrasings used by fraudsters; the ambiguous ones are also written by real customers.
_FRAUD_MEMOS: dict[str, tuple[str, ...]] = {
    "testing": ("auth check", "verification charge", "small test purchase", "app store purchase",
                "online order household stuff", "acct verify"),
    "takeover": ("gift card purchase", "urgent gift card reload", "wire to new payee", "crypto top up",
                 "transfer to friend", "gift card for {person}", "reload card asap"),
    "big_ticket": ("order #{n} {item}", "new {item}", "ship to new address {item}",
                   "express shipping {item} x3", "rush order {item}"),
}


def _fill(rng: np.random.Generator, template: str) -> str:
    return template.format(
        store=_pick(rng, _STORES), person=_pick(rng, _PEOPLE), item=_pick(rng, _ITEMS),
        city=_pick(rng, _CITIES), n=int(rng.integers(10000, 99999)),
    )


def _legit_hour(rng: np.random.Generator) -> int:
    # Mostly daytime, a few night owls.
    if rng.random() < 0.07:
        return int(rng.integers(0, 6))
    return int(np.clip(np.round(rng.normal(14, 4)), 6, 23))


def _legit_transaction(rng: np.random.Generator) -> dict[str, Any]:
    category = _pick(rng, _CATEGORIES, _CATEGORY_WEIGHTS)
    median, spread = _AMOUNTS[category]
    traveling = rng.random() < 0.08
    country = _pick(rng, _TRAVEL_COUNTRIES) if traveling else _HOME
    online = category in ("online_retail", "gift_cards", "travel") and rng.random() < 0.7
    card_present = 0 if online or rng.random() < 0.1 else 1
    amount = float(median * np.exp(rng.normal(0, spread)))
    return {
        "amount": amount,
        "merchant_category": category,
        "country": country,
        "card_present": card_present,
        "hour": _legit_hour(rng),
        "txn_count_24h": int(1 + rng.poisson(2.0)),
        "amount_vs_avg": float(np.exp(rng.normal(0, 0.45))),
        "memo": _fill(rng, _pick(rng, _LEGIT_MEMOS[category])),
    }


#: Legitimate behaviour that looks like fraud on the numbers alone; the memo tells it apart.
_LOOKALIKE_MEMOS: dict[str, tuple[str, ...]] = {
    "testing": ("app store purchase", "in-game coins", "song download", "parking app top up", "ebook rental"),
    "takeover": ("hotel in {city}", "late night taxi", "food delivery at the hotel", "gift card for {person}",
                 "airport lounge"),
    "big_ticket": ("new {item}", "{item} for school", "birthday present {item}", "order #{n} {item}",
                   "upgrade to a new {item}"),
}


def _shape(rng: np.random.Generator, row: dict[str, Any], scenario: str) -> None:
    """Give *row* the numbers of a fraud *scenario* (used by fraud and by its lookalikes)."""
    row["card_present"] = 0 if rng.random() < 0.9 else 1
    if scenario == "testing":
        row["merchant_category"] = _pick(rng, ("online_retail", "entertainment", "gift_cards"))
        row["amount"] = float(rng.uniform(0.5, 6.0))
        row["txn_count_24h"] = int(rng.integers(4, 20))
        row["amount_vs_avg"] = float(np.exp(rng.normal(-1.5, 0.5)))
    elif scenario == "takeover":
        row["merchant_category"] = _pick(rng, ("gift_cards", "online_retail", "electronics"), (0.5, 0.3, 0.2))
        row["country"] = _pick(rng, _RISKY_COUNTRIES) if rng.random() < 0.8 else _HOME
        row["hour"] = int(rng.integers(0, 6)) if rng.random() < 0.75 else _legit_hour(rng)
        row["amount"] = float(np.exp(rng.normal(np.log(220), 0.6)))
        row["amount_vs_avg"] = float(np.exp(rng.normal(1.0, 0.5)))
        row["txn_count_24h"] = int(1 + rng.poisson(3.0))
    else:
        row["merchant_category"] = _pick(rng, ("electronics", "jewelry"))
        row["amount"] = float(np.exp(rng.normal(np.log(900), 0.5)))
        row["amount_vs_avg"] = float(np.exp(rng.normal(1.4, 0.5)))
        if rng.random() < 0.4:
            row["country"] = _pick(rng, _RISKY_COUNTRIES)


_SCENARIOS = ("testing", "takeover", "big_ticket")


def _lookalike_transaction(rng: np.random.Generator) -> dict[str, Any]:
    scenario = _pick(rng, _SCENARIOS)
    row = _legit_transaction(rng)
    _shape(rng, row, scenario)
    row["memo"] = _fill(rng, _pick(rng, _LOOKALIKE_MEMOS[scenario]))
    return row


def _fraud_transaction(rng: np.random.Generator) -> dict[str, Any]:
    scenario = _pick(rng, _SCENARIOS, (0.3, 0.45, 0.25))
    row = _legit_transaction(rng)  # camouflage: start from an ordinary row
    _shape(rng, row, scenario)
    row["memo"] = _fill(rng, _pick(rng, _FRAUD_MEMOS[scenario]))
    return row


def _fraud_rows(rng: np.random.Generator, n: int) -> list[list[Any]]:
    # A fixed share per split keeps the small validation and test splits comparable.
    frauds = set(rng.choice(n, size=max(1, round(0.045 * n)), replace=False).tolist())
    rows = []
    for i in range(n):
        fraud = i in frauds
        # Label noise: some fraud is indistinguishable from normal spending ("friendly
        # fraud"), and a few legitimate rows are reported as fraud by mistake.
        if fraud:
            row = _legit_transaction(rng) if rng.random() < 0.12 else _fraud_transaction(rng)
        else:
            row = _lookalike_transaction(rng) if rng.random() < 0.06 else _legit_transaction(rng)
            fraud = rng.random() < 0.003
        rows.append([
            f"{row['amount']:.2f}", row["merchant_category"], row["country"], row["card_present"], row["hour"],
            row["txn_count_24h"], f"{row['amount_vs_avg']:.2f}", row["memo"], int(fraud),
        ])
    return rows


FRAUD_COLUMNS = ("amount", "merchant_category", "country", "card_present", "hour", "txn_count_24h",
                 "amount_vs_avg", "memo", "is_fraud")


def fraud(rng: np.random.Generator, n: int) -> str:
    return _csv(FRAUD_COLUMNS, _fraud_rows(rng, n))


# --------------------------------------------------------------------------- reviews

_PRODUCTS = ("headphones", "blender", "laptop", "coffee maker", "backpack", "phone", "desk lamp",
             "vacuum", "keyboard", "water bottle", "tent", "office chair")
_ASPECTS = ("battery", "screen", "sound", "build quality", "price", "delivery", "customer service",
            "design", "setup", "size")
#: Opinion words by strength (-2 .. +2).
_OPINIONS: dict[int, tuple[str, ...]] = {
    2: ("excellent", "fantastic", "amazing", "outstanding", "superb"),
    1: ("good", "nice", "solid", "decent", "pleasant"),
    0: ("okay", "average", "fine", "acceptable", "ordinary"),
    -1: ("disappointing", "weak", "mediocre", "flimsy", "slow"),
    -2: ("terrible", "awful", "horrible", "useless", "dreadful"),
}
_OPENERS = ("I bought this {product} last month.", "Got the {product} as a gift.",
            "Ordered the {product} for my home office.", "This is my second {product} from this brand.",
            "Used the {product} daily for two weeks.", "")
_CLOSERS = {
    2: ("Highly recommend.", "Would buy again.", "Five stars from me."),
    1: ("Happy overall.", "Worth the money.", "Pretty satisfied."),
    0: ("Nothing special.", "It does the job.", "Mixed feelings."),
    -1: ("Not sure I would buy again.", "Expected more.", "A bit of a letdown."),
    -2: ("Returning it.", "Avoid.", "Waste of money."),
}


def _review(rng: np.random.Generator) -> tuple[str, float]:
    """A review and its latent sentiment (about -2 .. +2)."""
    mood = float(np.clip(rng.normal(0, 1.1), -2.4, 2.4))
    parts = [_pick(rng, _OPENERS).format(product=_pick(rng, _PRODUCTS))]
    aspects = rng.choice(len(_ASPECTS), size=int(rng.integers(1, 4)), replace=False)
    total = 0.0
    for a in aspects:
        strength = int(np.clip(np.round(mood + rng.normal(0, 1.0)), -2, 2))
        total += strength
        word = _pick(rng, _OPINIONS[strength])
        if strength != 0 and rng.random() < 0.2:  # negation of the opposite opinion
            word = "not " + _pick(rng, _OPINIONS[-strength if abs(strength) == 1 else -strength // 2])
        parts.append(f"The {_ASPECTS[a]} is {word}.")
    overall = int(np.clip(np.round(mood), -2, 2))
    if rng.random() < 0.8:
        parts.append(_pick(rng, _CLOSERS[overall]))
    score = 0.6 * mood + 0.4 * total / len(aspects)
    return " ".join(p for p in parts if p), score


def sentiment(rng: np.random.Generator, n: int) -> str:
    rows = []
    for _ in range(n):
        text, score = _review(rng)
        label = "positive" if score > 0.45 else "negative" if score < -0.45 else "neutral"
        if rng.random() < 0.05:
            label = _pick(rng, ("negative", "neutral", "positive"))
        rows.append([text, label])
    return _csv(("text", "label"), rows)


def regression(rng: np.random.Generator, n: int) -> str:
    rows = []
    for _ in range(n):
        text, score = _review(rng)
        rating = float(np.clip(3.0 + 0.95 * score + rng.normal(0, 0.35), 1.0, 5.0))
        rows.append([text, f"{rating:.1f}"])
    return _csv(("text", "rating"), rows)


# --------------------------------------------------------------------------- ner

_NER_PRODUCTS = ("Galaxy Buds Pro", "iPhone 14", "ThinkPad X1", "Kindle", "Echo Dot", "Pixel 7",
                 "Surface Pro", "AirPods", "PlayStation 5", "Fitbit Charge", "MacBook Air", "Roku Ultra")
_NER_ORGS = ("Samsung", "Apple", "Lenovo", "Amazon", "Google", "Microsoft", "Sony", "FedEx", "UPS",
             "Best Buy", "Verizon", "Comcast")
_NER_LOCS = ("Berlin", "New York", "Austin", "Toronto", "London", "San Diego", "Chicago", "Madrid",
             "Seattle", "Rio de Janeiro", "Tokyo", "Dublin")
_SYLLABLES = ("ka", "lo", "ren", "vi", "tor", "mar", "zen", "no", "va", "bel", "cor", "dri", "el", "fa",
              "gan", "hal", "is", "jun", "ker", "lum", "mo", "nex", "or", "pra", "qui", "ros", "sa", "tel",
              "ul", "vor", "wen", "xa", "yo", "zu")
_PRODUCT_MODELS = ("Pro", "Max", "Mini", "Plus", "X2", "S", "Air", "Ultra", "Lite", "Go")
_ORG_SUFFIXES = ("Labs", "Telecom", "Electronics", "Logistics", "Inc", "Systems", "Mobile", "Bank")
_LOC_PARTS = (("Port", ""), ("San", ""), ("New", ""), ("", "City"), ("", "Springs"), ("", "Heights"))


def _name(rng: np.random.Generator) -> str:
    return "".join(_pick(rng, _SYLLABLES) for _ in range(int(rng.integers(2, 4)))).capitalize()


def _ner_entity(rng: np.random.Generator, kind: str) -> str:
    """A known name (half the time) or a made-up one: test sentences hold names never
    seen in training, and made-up names of every type share the same syllables."""
    if rng.random() < 0.5:
        return _pick(rng, {"PRODUCT": _NER_PRODUCTS, "ORG": _NER_ORGS, "LOC": _NER_LOCS}[kind])
    name = _name(rng)
    if kind == "PRODUCT":
        extra = _pick(rng, _PRODUCT_MODELS) if rng.random() < 0.7 else str(int(rng.integers(2, 20)))
        return f"{name} {extra}"
    if kind == "ORG":
        return f"{name} {_pick(rng, _ORG_SUFFIXES)}" if rng.random() < 0.6 else name
    before, after = _pick(rng, _LOC_PARTS) if rng.random() < 0.5 else ("", "")
    return " ".join(p for p in (before, name, after) if p)


_NER_TEMPLATES = (
    "My {PRODUCT} stopped charging after the last update .",
    "I ordered a {PRODUCT} from {ORG} but it never arrived in {LOC} .",
    "The {ORG} store in {LOC} refused to replace my {PRODUCT} .",
    "Can someone from {ORG} call me back about my {PRODUCT} ?",
    "{ORG} shipped the package to {LOC} instead of {LOC} .",
    "Is the {PRODUCT} covered by warranty if I bought it in {LOC} ?",
    "The screen on my {PRODUCT} cracked after two days .",
    "I was charged twice by {ORG} for one {PRODUCT} .",
    "Please cancel my order , I will buy the {PRODUCT} at {ORG} instead .",
    "Support in {LOC} told me to contact {ORG} directly .",
    "My order is stuck at the warehouse in {LOC} .",
    "The battery on this {PRODUCT} drains overnight .",
    "Nobody answers the phone at {ORG} .",
    "How do I pair my {PRODUCT} with my {PRODUCT} ?",
    "Thanks for the quick help yesterday .",
    "The replacement {PRODUCT} from {ORG} has the same problem .",
    "I moved to {LOC} , please update my shipping address .",
    # Slots whose type the context does not give away: the name itself must tell.
    "I have a problem with {ANY} .",
    "Any update on {ANY} ?",
    "This is about {ANY} and {ANY} again .",
    "{ANY} is the reason I am writing .",
    "Still waiting to hear back regarding {ANY} .",
)


def _ner_sentence(rng: np.random.Generator) -> list[tuple[str, str]]:
    lower = rng.random() < 0.2  # some customers type everything in lower case
    out: list[tuple[str, str]] = []
    for word in _pick(rng, _NER_TEMPLATES).split():
        kind = word.strip("{}")
        if kind == "ANY":
            kind = _pick(rng, ("PRODUCT", "ORG", "LOC"))
        if word.startswith("{"):
            # Annotators miss an entity now and then.
            missed = rng.random() < 0.03
            for i, token in enumerate(_ner_entity(rng, kind).split()):
                out.append((token, "O" if missed else ("B-" if i == 0 else "I-") + kind))
        else:
            out.append((word, "O"))
    return [(token.lower(), tag) if lower else (token, tag) for token, tag in out]


def ner(rng: np.random.Generator, n: int) -> str:
    sentences = ["\n".join(f"{token}\t{tag}" for token, tag in _ner_sentence(rng)) for _ in range(n)]
    return "\n\n".join(sentences) + "\n"


GENERATORS: dict[str, tuple[Callable[[np.random.Generator, int], str], str]] = {
    "fraud": (fraud, "csv"),
    "sentiment": (sentiment, "csv"),
    "regression": (regression, "csv"),
    "ner": (ner, "conll"),
}


def generate(kind: str, outdir: str | Path, *, seed: int = 0, scale: float = 1.0) -> list[Path]:
    """Write ``<outdir>/<kind>/{train,validation,test}.<ext>`` and return the paths.

    *scale* multiplies the number of rows (tests use small scales)."""
    if kind not in GENERATORS:
        raise ValueError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    make, ext = GENERATORS[kind]
    directory = Path(outdir) / kind
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for split, size in zip(SPLITS, SIZES[kind], strict=True):
        path = directory / f"{split}.{ext}"
        path.write_text(make(_rng(seed, kind, split), max(4, int(round(size * scale)))), encoding="utf-8")
        paths.append(path)
    return paths


@hookimpl
def automl_register_commands(cli: Any) -> None:
    """Add ``automl data generate``."""
    import click

    group = cli.commands.get("data")
    if group is None:

        @cli.group(name="data")
        def group() -> None:
            """Synthetic example data sets."""

    @group.command(name="generate")
    @click.argument("outdir", type=click.Path(file_okay=False, path_type=Path))
    @click.option("--kind", type=click.Choice((*KINDS, "all")), default="all", show_default=True,
                  help="Which data set to write.")
    @click.option("--seed", type=int, default=0, show_default=True, help="Random seed; same seed, same bytes.")
    @click.option("--scale", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
                  help="Multiply every split's number of rows (100: the fraud data at 200,000 training rows).")
    def generate_cmd(outdir: Path, kind: str, seed: int, scale: float) -> None:
        """Write synthetic data sets under OUTDIR/<kind>/ (train, validation and test).

        \b
        automl data generate recipes/data --kind all --seed 0   the files the recipes use
        automl data generate big --kind fraud --scale 100        a big table: 200,000 training rows
        """
        for k in KINDS if kind == "all" else (kind,):
            for path in generate(k, outdir, seed=seed, scale=scale):
                click.echo(str(path))
