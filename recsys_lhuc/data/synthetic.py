"""Synthetic clicks from heterogeneous users, with a known Bayes-optimal AUC.

Each user belongs to one of ``n_groups`` latent groups. An item is a vector of numeric features;
a fixed hidden layer ``h = relu(W x + b)`` turns it into ``hidden`` units. A group keeps its own
subset of those units (amplitude 2) and silences the rest (amplitude 0), and the click logit is
``w . (m_g * h(x))`` plus small user and item biases. So groups disagree about which item properties
matter: a model that scales hidden units per user (LHUC / PPNet gates) can represent this exactly,
while a shared MLP that only sees the user id as one more concatenated input has to learn the
multiplicative user x item interaction from scratch. The true click probabilities are kept in
column ``p_true`` so the Bayes-optimal ceiling can be measured on any split.
"""
from __future__ import annotations

import numpy as np
import pandas as pd


def generate(n_users: int = 1000, n_items: int = 300, n_groups: int = 4,
             rows_per_user: int = 60, n_features: int = 8, hidden: int = 16,
             logit_scale: float = 3.0, segment_accuracy: float = 0.7,
             activation: str = "relu", amplitudes: str = "binary", shared: float = 1.0,
             seed: int = 0) -> pd.DataFrame:
    """Return one row per impression: ids, side features, ``click`` and ``p_true``.

    ``user_segment`` is an observed user feature equal to the latent group with probability
    ``segment_accuracy`` (otherwise a random group), as a domain feature for PEPNet/POSO.
    """
    rng = np.random.default_rng(seed)
    items = rng.normal(size=(n_items, n_features))
    weights = rng.normal(size=(hidden, n_features)) / np.sqrt(n_features)
    hidden_units = items @ weights.T + 0.3                               # (n_items, hidden)
    if activation == "relu":
        hidden_units = np.maximum(hidden_units, 0.0)
    hidden_units = (hidden_units - hidden_units.mean(0)) / (hidden_units.std(0) + 1e-6)
    out_weights = rng.normal(size=hidden)
    if amplitudes == "binary":  # per-group amplitudes: units on (2) or off (0)
        masks = np.where(rng.random((n_groups, hidden)) < 0.5, 2.0, 0.0)
    else:  # continuous amplitudes in (0, 2): slopes change, not just thresholds
        masks = rng.uniform(0.0, 2.0, size=(n_groups, hidden))
    # shared < 1 removes part of the preference all groups have in common, so groups disagree more
    centred = masks - (1.0 - shared) * masks.mean(0, keepdims=True)
    group_scores = (hidden_units * out_weights) @ centred.T              # (n_items, n_groups)
    group_scores = group_scores / group_scores.std(0, keepdims=True)

    group = rng.integers(0, n_groups, size=n_users)
    noisy = rng.random(n_users) >= segment_accuracy
    segment = np.where(noisy, rng.integers(0, n_groups, size=n_users), group)
    user_bias = 0.3 * rng.normal(size=n_users)
    item_bias = 0.3 * rng.normal(size=n_items)
    item_category = np.argmax(items[:, :4], axis=1)  # a coarse categorical view of the item

    users = np.repeat(np.arange(n_users), rows_per_user)
    picked = rng.integers(0, n_items, size=len(users))
    logit = logit_scale * group_scores[picked, group[users]] / 2 + user_bias[users] \
        + item_bias[picked] - 0.5
    p_true = 1.0 / (1.0 + np.exp(-logit))
    click = (rng.random(len(users)) < p_true).astype(np.float32)

    df = pd.DataFrame({
        "user_id": users.astype(str), "item_id": picked.astype(str),
        "user_segment": segment[users].astype(str), "item_category": item_category[picked]
        .astype(str), "click": click, "p_true": p_true,
        "timestamp": rng.random(len(users)), "_row": np.arange(len(users)),
    })
    for k in range(n_features):
        df[f"f{k}"] = items[picked, k].astype(np.float32)
    df.attrs["source"] = f"synthetic(seed={seed})"
    return df
