"""LHUC-user: the ASR LHUC mechanism with users in place of speakers.

A `lhuc.AmplitudeTable` keyed by the user field holds one amplitude vector per user, scaling the
outputs of every hidden layer of a DNN tower; unseen users (OOV id 0) use the SI row. The
amplitudes depend on the user alone, so a ranking request computes them once
(`user_amplitudes`) and reuses them for every candidate (`score_candidates`).
"""

import torch
from torch import nn

from lhuc import AmplitudeTable
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
                 user_field: str | None = None, dropout: float = 0.0, sparse: bool = False):
        super().__init__()
        self.user_field = user_field or spec.user_field
        if not self.user_field:
            raise ValueError("LHUC-user needs a user field: set 'user_field' in the spec")
        self.embedding = FeatureEmbedding(spec, sparse=sparse)
        self.tower = Tower(self.embedding.out_dim(), tuple(hidden), dropout)
        num_users = spec.get_field(self.user_field).vocab_size
        self.table = AmplitudeTable(num_users, sum(self.tower.output_dims), reparam=reparam,
                                    sat_gamma=sat_gamma, sat_level=sat_level)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Per-row path: each row looks up its own user's amplitudes."""
        amplitudes = self.table.amplitudes(table_ids(batch[self.user_field]))
        return self.score_candidates(amplitudes, batch)

    def user_amplitudes(self, user_id: int | torch.Tensor) -> torch.Tensor:
        """One user's amplitudes (1, total hidden width), computed once per request.

        Call in eval mode: in training mode SAT may swap in the SI row at random.
        """
        ids = torch.as_tensor(user_id, dtype=torch.long, device=self.table.si.device).reshape(1)
        return self.table.amplitudes(table_ids(ids))

    def score_candidates(self, amplitudes: torch.Tensor,
                         batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Logits (N,) of N candidate rows scaled by `amplitudes`, (1, D) shared or (N, D)."""
        scales = list(amplitudes.split(self.tower.output_dims, dim=-1))
        return self.tower(self.embedding(batch), output_scales=scales)
