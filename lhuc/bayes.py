"""Bayesian LHUC (Xie et al., ICASSP 2019): a Gaussian posterior over each identity's LHUC row.

Plain LHUC fits one point r_s per identity, which overfits when the identity has little or
noisy data (a few utterances of a speaker with first-pass errors in their targets; a user with
a handful of clicks). Here each identity gets q(r_s) = N(mu_s, diag sigma_s^2), where mu_s is the
table's row and sigma_s a new `log_std` parameter, and a prior p(r_s) = N(r_SI, prior_std^2)
centred on the speaker-independent row. Training minimises, per identity,

    E_q[ loss(data_s ; r) ] + kl_weight * KL(q(r_s) || p(r_s)) / n_s

with one reparameterised draw of r per forward pass (`sampling`), n_s the identity's number
of examples: with little data the KL term holds mu_s near the SI row (shrinkage), with more the
data win. At test time the posterior mean (the rows themselves, no sampling) is used.
"""

from contextlib import contextmanager

import torch
from torch import nn

from .table import AmplitudeTable


def amplitude_tables(model: nn.Module) -> list[AmplitudeTable]:
    """Every AmplitudeTable in `model` (or `model` itself when it is one): the tables that
    `attach_lhuc` placed and those a model holds as its own submodule (e.g. LHUC-user's)."""
    return [m for m in model.modules() if isinstance(m, AmplitudeTable)]


def make_bayesian(model: nn.Module, prior_std: float = 1.0, init_std: float = 0.1
                  ) -> list[nn.Parameter]:
    """Give every LHUC table of `model` (see `amplitude_tables`) a posterior `log_std` (all
    rows at `init_std`) and a prior of standard deviation `prior_std` around its SI row; return
    the new parameters.

    Rows added later (`add_identities`) get `init_std` too. Build optimisers after this."""
    if prior_std <= 0 or init_std <= 0:
        raise ValueError(f"prior_std and init_std must be > 0, got {prior_std}, {init_std}")
    params = []
    for table in amplitude_tables(model):
        table.prior_std = float(prior_std)
        table.init_log_std = float(torch.tensor(init_std).log())
        table.log_std = nn.Parameter(torch.full_like(table.rows.detach(), table.init_log_std))
        params.append(table.log_std)
    return params


def is_bayesian(model: nn.Module) -> bool:
    tables = amplitude_tables(model)
    return bool(tables) and all(t.log_std is not None for t in tables)


@contextmanager
def sampling(model: nn.Module, enabled: bool = True):
    """Within the block, forward passes draw each identity's r from its posterior (training,
    also in eval mode: adaptation keeps dropout and BatchNorm frozen); outside, the mean."""
    tables = [t for t in amplitude_tables(model) if t.log_std is not None]
    before = [t.sample for t in tables]
    for table in tables:
        table.sample = enabled
    try:
        yield
    finally:
        for table, flag in zip(tables, before):
            table.sample = flag


def kl_to_prior(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """KL(q(r_s) || N(r_SI, prior_std^2)) for each identity in `ids` (B,), summed over every
    table and hidden unit: (B,). The SI row is the prior's mean, not a thing to learn here."""
    total = None
    for table in amplitude_tables(model):
        if table.log_std is None:
            raise ValueError("kl_to_prior needs Bayesian LHUC tables: call make_bayesian first")
        rows = ids.to(table.rows.device).long()
        mean, log_std = table.rows[rows], table.log_std[rows]
        prior_mean = table.si.detach()
        prior_log_std = torch.tensor(table.prior_std, device=mean.device).log()
        kl = (prior_log_std - log_std
              + ((2 * log_std).exp() + (mean - prior_mean) ** 2) / (2 * table.prior_std ** 2)
              - 0.5).sum(dim=1)
        total = kl if total is None else total + kl
    if total is None:
        raise ValueError("the model has no LHUC tables")
    return total
