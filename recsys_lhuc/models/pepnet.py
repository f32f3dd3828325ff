"""PEPNet: EPNet gates the embedding layer from domain features, then one PPNet tower per task.

EPNet is a `lhuc.GateNN` reading the domain fields' own embeddings plus the (detached) shared
embeddings and scaling every embedding unit. Each task (the spec's label and extra labels, e.g.
"like" and "watch") has its own gated tower; the towers share the gate id embeddings.
"""

import torch
from torch import nn

from lhuc import GateNN
from recsys_lhuc.spec import FeatureSpec

from .embedding import FeatureEmbedding
from .ppnet import GatedTower, gate_id_spec, personal_id_fields


class PEPNet(nn.Module):
    """Multi-task: forward returns {label name: logits (B,)} for spec.label and extra labels."""

    def __init__(self, spec: FeatureSpec, hidden: tuple[int, ...] = (256, 128, 64),
                 domain_fields: list[str] | None = None, epnet_hidden: int | None = None,
                 gate_position: str = "input", logit_gate: bool = False,
                 gate_hidden: int | None = None, fused_gates: bool | None = None,
                 personal_ids: list[str] | None = None, gate_embed_dim: int | None = None,
                 dropout: float = 0.0, sparse: bool = False):
        super().__init__()
        self.tasks = list(spec.labels)
        self.domain_fields = list(domain_fields or [spec.user_field])
        self.personal_ids = personal_id_fields(spec, personal_ids)
        self.embedding = FeatureEmbedding(spec, sparse=sparse)
        emb_dim = self.embedding.out_dim()
        id_spec = gate_id_spec(spec, gate_embed_dim)
        self.domain_ids = FeatureEmbedding(id_spec, fields=self.domain_fields, numeric=False,
                                           sparse=sparse)
        self.epnet = GateNN(self.domain_ids.out_dim() + emb_dim, emb_dim, hidden_dim=epnet_hidden)
        self.gate_ids = FeatureEmbedding(id_spec, fields=self.personal_ids, numeric=False,
                                         sparse=sparse)
        gate_in = self.gate_ids.out_dim() + emb_dim
        self.towers = nn.ModuleList(
            GatedTower(emb_dim, gate_in, tuple(hidden), gate_position, logit_gate, gate_hidden,
                       fused_gates, dropout) for _ in self.tasks)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        shared = self.embedding(batch)
        gated = shared * self.epnet(self.domain_ids(batch), shared)
        personal = self.gate_ids(batch)
        return {task: tower(gated, personal, gated) for task, tower in zip(self.tasks, self.towers)}
