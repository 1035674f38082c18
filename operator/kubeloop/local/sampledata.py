"""A generated, realistic dataset for the samples and the demo: card transactions with a fraud label.

Fraud is rare (~5%) and depends on the features the sample FeatureSet computes (amount, hour,
distance from home, merchant category, card age), so a model trained on it learns something real.
`shift` moves the live distribution (larger amounts, other merchant categories, farther from home)
for drift demonstrations. Deterministic for a given seed.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

CATEGORIES = ("grocery", "fuel", "restaurant", "travel", "electronics", "fashion", "online", "atm")
COUNTRIES = ("DE", "FR", "NL", "US", "GB", "ES", "IT", "PL", "SE", "BR")
START = datetime(2026, 1, 1, tzinfo=UTC)


def transactions(rows: int = 20_000, *, seed: int = 7, shift: float = 0.0) -> pa.Table:
    """`rows` transactions over 30 days; `shift` in [0, 1] moves the distribution (0: none)."""
    rng = np.random.default_rng(seed)
    cards = rng.integers(100_000, 100_000 + max(rows // 8, 1), size=rows)
    seconds = np.sort(rng.integers(0, 30 * 24 * 3600, size=rows))
    event_time = np.datetime64(START.replace(tzinfo=None), "s") + seconds.astype("timedelta64[s]")
    # A card never has two transactions at the same second (the contract's uniqueness rule).
    order = np.lexsort((seconds, cards))
    cards, event_time = cards[order], event_time[order]
    _, first = np.unique(np.stack([cards, event_time.astype("int64")]), axis=1, return_index=True)
    keep = np.zeros(rows, dtype=bool)
    keep[first] = True
    cards, event_time = cards[keep], event_time[keep]
    n = len(cards)

    category_p = np.array([0.25, 0.12, 0.18, 0.05, 0.06, 0.1, 0.2, 0.04])
    if shift:
        category_p = (1 - shift) * category_p + shift * np.array([0.05, 0.05, 0.05, 0.25, 0.25, 0.05, 0.25, 0.05])
    category = rng.choice(len(CATEGORIES), size=n, p=category_p / category_p.sum())
    amount = rng.lognormal(mean=3.4 + 0.8 * shift + 0.6 * (category >= 3), sigma=0.9, size=n)
    distance = rng.exponential(scale=8.0 * (1 + 4 * shift), size=n)
    card_age = rng.integers(1, 3650, size=n)
    hour = (event_time.astype("datetime64[h]").astype("int64") % 24)
    country = rng.choice(len(COUNTRIES), size=n, p=[0.4, 0.12, 0.1, 0.08, 0.08, 0.06, 0.06, 0.04, 0.03, 0.03])

    # Fraud (~5%) is driven by large amounts, transactions far from home, night hours, electronics
    # and online merchants and new cards: strong enough for a small model to learn from 10k rows.
    logit = (-3.9 + 0.9 * (np.log1p(amount) - 3.4) + 1.6 * (distance > 20) + 1.2 * (hour < 5)
             + 1.1 * np.isin(category, [4, 6]) - 0.9 * (card_age > 365) + 0.5 * (country >= 7))
    is_fraud = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    # A few missing values, within the sample contract's limits.
    amount_arr = pa.array(amount.round(2), mask=rng.random(n) < 0.002)
    country_arr = pa.array([COUNTRIES[i] for i in country], mask=rng.random(n) < 0.01)
    return pa.table({
        "card_id": pa.array(cards, pa.int64()),
        "event_time": pa.array(event_time.astype("datetime64[us]"), pa.timestamp("us", tz="UTC")),
        "amount": amount_arr,
        "merchant_category": pa.array([CATEGORIES[i] for i in category]),
        "distance_from_home_km": pa.array(distance.round(1)),
        "merchant_country": country_arr,
        "card_age_days": pa.array(card_age, pa.int64()),
        "is_fraud": pa.array(is_fraud, pa.int64()),
    })


def parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()
