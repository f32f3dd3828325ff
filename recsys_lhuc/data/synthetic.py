"""Synthetic clicks from heterogeneous users, with a known Bayes-optimal AUC.

An item is a vector of numeric features ``x`` (observed as ``f0..f7``); a fixed hidden layer
``h = W x + b`` (``activation="relu"``: ``relu(W x + b)``) turns it into ``hidden`` units. Each
user belongs to a latent group ``g`` with its own amplitudes ``m_g`` in (0, 2) per hidden unit
(``amplitudes="binary"``: 0 or 2), and the click logit is
``w . ((m_g - (1 - shared) mean_g m) * h)`` plus small user and item biases. So users disagree
about which item properties matter, by scaling hidden units: exactly what LHUC / PPNet gates
do, while a shared MLP that sees the user id only as one more concatenated input has to learn
that multiplicative user x item interaction from data. With the defaults every user is its own
group (``n_groups = n_users``) and the common preference is removed (``shared=0``). The true
click probabilities are kept in column ``p_true``; their AUC on a split is the Bayes-optimal
ceiling.
"""
from __future__ import annotations

import numpy as np
import pandas as pd


def generate(n_users: int = 600, n_items: int = 300, n_groups: int = 600,
             rows_per_user: int = 100, n_features: int = 8, hidden: int = 16,
             logit_scale: float = 5.0, segment_accuracy: float = 0.7,
             activation: str = "linear", amplitudes: str = "uniform", shared: float = 0.0,
             seed: int = 0) -> pd.DataFrame:
    """Return one row per impression: ids, side features, ``click`` and ``p_true``.

    ``user_segment`` is an observed user feature equal to the latent group with probability
    ``segment_accuracy`` (otherwise a random group), a domain feature for PEPNet/POSO; with one
    group per user it is a noisy copy of the user id.
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
