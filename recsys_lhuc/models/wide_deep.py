"""Wide & Deep: a linear model over the raw ids and numerics added to the DNN's logit."""

from dataclasses import replace

import torch
from torch import nn

from recsys_lhuc.spec import FeatureSpec

from .embedding import FeatureEmbedding
from .tower import Tower


class WideDeep(nn.Module):
    """Logit = wide (one learned weight per id, plus a linear term on the numerics) + deep (DNN).

    The wide part has no hand-made cross features; every id's weight starts at 0.
    """

    def __init__(self, spec: FeatureSpec, hidden: tuple[int, ...] = (256, 128, 64),
                 dropout: float = 0.0, sparse: bool = False):
        super().__init__()
        self.embedding = FeatureEmbedding(spec, sparse=sparse)
        self.tower = Tower(self.embedding.out_dim(), tuple(hidden), dropout)
        scalar_spec = replace(spec, categorical=[replace(f, embed_dim=1) for f in spec.categorical],
                              multi=[replace(f, embed_dim=1) for f in spec.multi])
        self.wide_weights = FeatureEmbedding(scalar_spec, sparse=sparse, init_std=0.0)
        self.wide = nn.Linear(self.wide_weights.out_dim(), 1)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        wide = self.wide(self.wide_weights(batch)).squeeze(-1)
        return wide + self.tower(self.embedding(batch))
