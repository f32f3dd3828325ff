"""Evaluation protocols: binary labels from ratings, train/val/test splits, sampled negatives."""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


def label_from_rating(df: pd.DataFrame, column: str = "rating", threshold: float = 4.0,
                      name: str = "like", drop=()) -> tuple[pd.DataFrame, int]:
    """Binary label ``name = rating >= threshold``; rows whose rating is in ``drop`` (e.g. [3]) are
    removed (the returned count says how many) rather than labelled negative."""
    keep = ~df[column].isin(list(drop)) if drop else np.ones(len(df), dtype=bool)
    dropped = int((~keep).sum())
    out = df[keep].copy()
    out[name] = (out[column] >= threshold).astype(np.float32)
    out.attrs = dict(df.attrs)
    return out, dropped


def split_random(df: pd.DataFrame, fractions=(0.8, 0.1, 0.1), seed: int = 0) -> dict:
    """Seeded random split of the rows (8:1:1 by default)."""
    perm = np.random.default_rng(seed).permutation(len(df))
    n_train = int(round(fractions[0] * len(df)))
    n_val = int(round(fractions[1] * len(df)))
    parts = np.split(perm, [n_train, n_train + n_val])
    return {name: df.iloc[np.sort(idx)] for name, idx in zip(SPLITS, parts)}


def split_temporal(df: pd.DataFrame, fractions=(0.8, 0.1, 0.1), user: str = "user_id",
                   time: str = "timestamp") -> dict:
    """Per-user temporal split: each user's latest interactions go to test, the ones just before to
    validation, the rest to train (users with fewer than 3 interactions stay in train)."""
    order = df.sort_values([user, time, "_row"] if "_row" in df else [user, time], kind="stable")
    rank = order.groupby(user).cumcount().to_numpy()
    count = order.groupby(user)[user].transform("size").to_numpy()
    n_test = np.where(count >= 3, np.maximum(1, np.floor(count * fractions[2])), 0)
    n_val = np.where(count >= 3, np.maximum(1, np.floor(count * fractions[1])), 0)
    from_end = count - 1 - rank
    which = np.where(from_end < n_test, 2, np.where(from_end < n_test + n_val, 1, 0))
    return {name: order[which == k].sort_index() for k, name in enumerate(SPLITS)}


def add_sampled_negatives(part: pd.DataFrame, everything: pd.DataFrame, ratio: float, seed: int,
                          user: str = "user_id", item: str = "item_id", watch: str = "watch",
                          zero_labels=("like",), item_cols=()) -> pd.DataFrame:
    """Add ``ratio`` negatives per observed row of each user: items the user never rated anywhere
    in ``everything``. Observed rows get ``watch = 1``, sampled rows ``watch = 0`` and 0 for each of
    ``zero_labels``; the sampled rows copy the user's side features and the item's side features and
    take a timestamp from one of the user's observed rows. With only observed ratings "watch" would
    always be 1, so these negatives are what makes it a task."""
    rng = np.random.default_rng(seed)
    item_codes, item_values = pd.factorize(everything[item])
    user_codes, user_values = pd.factorize(everything[user])
    seen = np.zeros((len(user_values), len(item_values)), dtype=bool)  # users x items, rated
    seen[user_codes, item_codes] = True
    first_row = pd.Series(np.arange(len(everything))).groupby(item_codes).first().to_numpy()
    part_users = user_values.get_indexer(part[user])
    templates, picked = [], []
    for code in np.unique(part_users):
        rows = np.flatnonzero(part_users == code)
        pool = np.flatnonzero(~seen[code])
        want = min(int(round(ratio * len(rows))), len(pool))
        if want == 0:
            continue
        picked.append(rng.choice(pool, size=want, replace=False))
        templates.append(rows[rng.integers(0, len(rows), size=want)])
    templates = np.concatenate(templates) if templates else np.zeros(0, dtype=np.int64)
    picked = np.concatenate(picked) if picked else np.zeros(0, dtype=np.int64)
    negatives = part.iloc[templates].copy()  # the user's side features and a timestamp of theirs
    negatives[item] = item_values[picked]
    for col in item_cols:
        negatives[col] = everything[col].to_numpy()[first_row[picked]]
    negatives[watch] = 0.0
    for label in zero_labels:
        negatives[label] = 0.0
    if "rating" in negatives:
        negatives["rating"] = np.nan
    negatives["_row"] = -1  # not a row of the source file
    observed = part.copy()
    observed[watch] = 1.0
    out = pd.concat([observed, negatives], ignore_index=True)
    log.info("sampled %d watch negatives for %d observed rows", len(negatives), len(observed))
    return out
