"""Ranking metrics: AUC, gAUC (per-user AUC weighted by impressions) and log loss."""
from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def auc(labels, scores) -> float:
    """Rank-based ROC AUC (Mann-Whitney U), ties counted half; NaN when one class is absent."""
    labels = np.asarray(labels, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    n_pos = labels.sum()
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[labels == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def gauc(labels, scores, groups) -> tuple[float, int, int]:
    """Group AUC: the mean of per-group AUCs weighted by each group's number of rows.

    Groups (users) whose rows are all of one class have no AUC; they are skipped and counted.
    Returns (gauc, groups_used, groups_skipped).
    """
    labels = np.asarray(labels, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    groups = np.asarray(groups)
    order = np.argsort(groups, kind="stable")
    sorted_groups = groups[order]
    bounds = np.flatnonzero(sorted_groups[1:] != sorted_groups[:-1]) + 1
    total, weight, used, skipped = 0.0, 0, 0, 0
    for idx in np.split(order, bounds):
        value = auc(labels[idx], scores[idx])
        if np.isnan(value):
            skipped += 1
            continue
        total += value * len(idx)
        weight += len(idx)
        used += 1
    return (total / weight if weight else float("nan")), used, skipped


def logloss(labels, probs, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy of probabilities."""
    labels = np.asarray(labels, dtype=np.float64)
    probs = np.clip(np.asarray(probs, dtype=np.float64), eps, 1 - eps)
    return float(-np.mean(labels * np.log(probs) + (1 - labels) * np.log(1 - probs)))


def all_metrics(labels, probs, groups) -> dict:
    """AUC, gAUC (with users used/skipped), log loss and row count for one task."""
    g, used, skipped = gauc(labels, probs, groups)
    return {"auc": auc(labels, probs), "gauc": g, "logloss": logloss(labels, probs),
            "gauc_users": used, "gauc_users_skipped": skipped, "rows": int(len(labels))}


def ceiling_metrics(frame, spec) -> dict:
    """Metrics of the true click probabilities (column ``p_true``): the Bayes-optimal ceiling."""
    return all_metrics(frame[spec.label].to_numpy(), frame["p_true"].to_numpy(),
                       frame[spec.user_field].to_numpy())
