"""Synthetic clicks from heterogeneous users, with a known Bayes-optimal AUC.

An item is a vector of numeric features ``x`` (observed as ``f0..f{n_features-1}``). Every user
belongs to a latent group ``g`` whose amplitudes ``a_g`` re-weight those features, and the click
logit is multiplicative in (user's amplitudes) x (item features):

    logit = logit_scale * sum_k a_{g,k} * w_k * x_k / norm + user bias + item bias + offset

``amplitudes="binary"`` draws each ``a_{g,k}`` from {low, high} (a group cares about a feature
or hardly at all), ``"uniform"`` from (low, high). The group-average amplitude is the
preference everyone shares; what is left flips sign between groups, so users disagree about
which item properties are good. Re-scaling the inputs or hidden units per user (PPNet's input
gates, LHUC-user's amplitudes) expresses that directly; a shared MLP that sees the user only as
one more concatenated embedding has to build the product of user and item features from its
ReLUs. The true click probabilities are kept in ``p_true``; their AUC on a split is the
Bayes-optimal ceiling.
"""
from __future__ import annotations

import numpy as np
import pandas as pd


def group_amplitudes(rng, n_groups: int, n_features: int, kind: str, low: float,
                     high: float) -> np.ndarray:
    """(n_groups, n_features) amplitudes, all in [low, high]."""
    if kind == "binary":
        return np.where(rng.random((n_groups, n_features)) < 0.5, high, low)
    if kind == "uniform":
        return rng.uniform(low, high, size=(n_groups, n_features))
    raise ValueError(f"amplitudes must be 'binary' or 'uniform', got {kind!r}")


def generate(n_users: int = 300, n_items: int = 3000, n_groups: int = 16,
             rows_per_user: int = 500, n_features: int = 16, logit_scale: float = 3.0,
             amplitudes: str = "binary", low: float = 0.1, high: float = 1.9,
             segment_accuracy: float = 0.7, bias_std: float = 0.3,
             seed: int = 0) -> pd.DataFrame:
    """Return one row per impression: ids, side features, ``click`` and ``p_true``.

    ``user_segment`` is an observed user feature equal to the latent group with probability
    ``segment_accuracy`` (otherwise a random group), a domain feature for PEPNet/POSO.
    """
    rng = np.random.default_rng(seed)
    items = rng.normal(size=(n_items, n_features))
    feature_weights = rng.choice([-1.0, 1.0], size=n_features)
    amps = group_amplitudes(rng, n_groups, n_features, amplitudes, low, high)
    group_scores = (items * feature_weights) @ amps.T                  # (n_items, n_groups)
    group_scores = group_scores / group_scores.std()

    group = rng.integers(0, n_groups, size=n_users)
    noisy = rng.random(n_users) >= segment_accuracy
    segment = np.where(noisy, rng.integers(0, n_groups, size=n_users), group)
    user_bias = bias_std * rng.normal(size=n_users)
    item_bias = bias_std * rng.normal(size=n_items)
    item_category = np.argmax(items[:, :4], axis=1)  # a coarse categorical view of the item

    users = np.repeat(np.arange(n_users), rows_per_user)
    picked = rng.integers(0, n_items, size=len(users))
    logit = logit_scale * group_scores[picked, group[users]] + user_bias[users] \
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
