"""LHUC-user: the ASR LHUC mechanism with users in place of speakers.

A `lhuc.AmplitudeTable` keyed by the user field holds one amplitude vector per user, scaling the
outputs of every hidden layer of a DNN tower; unseen users (OOV id 0) use the SI row. The
amplitudes depend on the user alone, so a ranking request computes them once
(`user_amplitudes`) and reuses them for every candidate (`score_candidates`).

With `bayes_prior_std` set the table is Bayesian (`lhuc.bayes`, Xie et al. 2019): each user's
row is a Gaussian posterior around a prior N(SI row, bayes_prior_std^2). Training mode draws one
sample per row and forward pass; `kl_penalty` is the KL term, each user's divided by its number
of training rows (`count_user_rows`), so users with few interactions stay near the SI row.
Evaluation mode uses the posterior mean.
"""

import numpy as np
import torch
from torch import nn

from lhuc import AmplitudeTable, bayes
from recsys_lhuc.spec import FeatureSpec

from .embedding import FeatureEmbedding
from .tower import Tower


def table_ids(user_ids: torch.Tensor) -> torch.Tensor:
    """Map the data layer's OOV id 0 to -1, the table's SI row."""
    return torch.where(user_ids > 0, user_ids, torch.full_like(user_ids, -1))


class LHUCUser(nn.Module):
    """DNN tower whose hidden outputs are scaled by per-user LHUC amplitudes."""

    def __init__(self, spec: FeatureSpec, hidden: tuple[int, ...] = (256, 128, 64),
                 reparam: str = "2sigmoid", sat_gamma: float = 0.0, sat_level: str = "identity",
                 user_field: str | None = None, dropout: float = 0.0, sparse: bool = False,
                 bayes_prior_std: float | None = None, bayes_init_std: float = 0.1,
                 bayes_kl_weight: float = 1.0):
        super().__init__()
        self.user_field = user_field or spec.user_field
        if not self.user_field:
            raise ValueError("LHUC-user needs a user field: set 'user_field' in the spec")
        self.embedding = FeatureEmbedding(spec, sparse=sparse)
        self.tower = Tower(self.embedding.out_dim(), tuple(hidden), dropout)
        num_users = spec.get_field(self.user_field).vocab_size
        self.table = AmplitudeTable(num_users, sum(self.tower.output_dims), reparam=reparam,
                                    sat_gamma=sat_gamma, sat_level=sat_level)
        self.bayesian = bayes_prior_std is not None
        self.kl_weight = bayes_kl_weight
        if self.bayesian:  # plain LHUC-user keeps its exact parameters and checkpoint keys
            bayes.make_bayesian(self.table, bayes_prior_std, bayes_init_std)
            # training rows per user id, saved with the weights so a resumed run divides alike
            self.register_buffer("user_rows", torch.zeros(num_users))
        self.rows_counted = False

    def train(self, mode: bool = True):
        """Training mode samples the Bayesian rows; evaluation mode uses the posterior mean."""
        super().train(mode)
        self.table.sample = mode and self.bayesian
        return self

    def count_user_rows(self, user_ids) -> None:
        """Store each user's number of training rows from the train split's user column."""
        counts = np.bincount(np.asarray(user_ids, dtype=np.int64), minlength=self.table.num_ids)
        if len(counts) > self.table.num_ids:
            raise ValueError(f"user id {len(counts) - 1} >= the table's {self.table.num_ids} "
                             "users: count the split the model's spec was built from")
        self.user_rows.copy_(torch.as_tensor(counts, dtype=self.user_rows.dtype))
        self.rows_counted = True

    def kl_penalty(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """kl_weight * mean over the batch's rows of KL(q(r_u) || p(r_u)) / n_u, u the row's user.

        A user with n_u training rows appears in n_u rows of an epoch, so over an epoch its KL
        counts once against the sum of its rows' losses: with the mean-per-row task loss and
        kl_weight 1 this is the negative ELBO per row. OOV rows (SI row, no posterior) add 0.
        """
        if not self.rows_counted:
            raise RuntimeError("Bayesian LHUC-user: call count_user_rows(train user ids) before "
                               "training, the KL term divides by each user's training rows")
        users = batch[self.user_field].to(self.user_rows.device).long()
        # masked, not indexed: no data-dependent shapes (no host sync per step on a GPU)
        weight = (users > 0) / self.user_rows[users].clamp_min(1.0)
        kl = bayes.kl_to_prior(self.table, users) * weight
        return self.kl_weight * kl.sum() / max(len(users), 1)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Per-row path: each row looks up its own user's amplitudes."""
        amplitudes = self.table.amplitudes(table_ids(batch[self.user_field]))
        return self.score_candidates(amplitudes, batch)

    def user_amplitudes(self, user_id: int | torch.Tensor) -> torch.Tensor:
        """One user's amplitudes (1, total hidden width), computed once per request.

        Call in eval mode: in training mode SAT may swap in the SI row at random, and a
        Bayesian table draws a sample instead of using the posterior mean.
        """
        ids = torch.as_tensor(user_id, dtype=torch.long, device=self.table.si.device).reshape(1)
        return self.table.amplitudes(table_ids(ids))

    def score_candidates(self, amplitudes: torch.Tensor,
                         batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Logits (N,) of N candidate rows scaled by `amplitudes`, (1, D) shared or (N, D)."""
        scales = list(amplitudes.split(self.tower.output_dims, dim=-1))
        return self.tower(self.embedding(batch), output_scales=scales)
