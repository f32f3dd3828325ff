"""DNN baseline: the shared embeddings of every field into one MLP tower."""

import torch
from torch import nn

from recsys_lhuc.spec import FeatureSpec

from .embedding import FeatureEmbedding
from .tower import Tower


class DNN(nn.Module):
    """Embeddings -> MLP -> logit; the reference every gated model is compared against."""

    def __init__(self, spec: FeatureSpec, hidden: tuple[int, ...] = (256, 128, 64),
                 dropout: float = 0.0, sparse: bool = False):
        super().__init__()
        self.embedding = FeatureEmbedding(spec, sparse=sparse)
        self.tower = Tower(self.embedding.out_dim(), tuple(hidden), dropout)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.tower(self.embedding(batch))
