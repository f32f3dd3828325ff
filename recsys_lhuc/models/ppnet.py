"""PPNet: an MLP whose hidden layers are scaled per sample by gates fed with personal ids.

Each hidden layer gets one gate from a `lhuc.GateBank`. The gate reads the gate's *own* embeddings
of the personal-id fields (uid/pid/aid, separate tables from the shared ones, trained only
through the gates) concatenated with the shared embeddings of the other features, detached, so
the gates cannot pull the shared embeddings away from what the tower needs.
"""

from dataclasses import replace

import torch
from torch import nn

from lhuc import GateBank
from recsys_lhuc.spec import FeatureSpec

from .embedding import FeatureEmbedding
from .tower import Tower

GATE_POSITIONS = ("input", "output")
GATE_CONTEXTS = ("others", "all", "none")


class GatedTower(nn.Module):
    """A Tower plus a GateBank: one 2*sigmoid gate per hidden layer, on its input or output.

    `logit_gate=True` adds a gate on the input of the logit layer (input position only; with
    output gates the last hidden layer's gate already sits there).
    """

    def __init__(self, in_dim: int, gate_in_dim: int, hidden: tuple[int, ...],
                 gate_position: str = "input", logit_gate: bool = False,
                 gate_hidden: int | None = None, fused_gates: bool | None = None,
                 dropout: float = 0.0):
        super().__init__()
        if gate_position not in GATE_POSITIONS:
            raise ValueError(f"gate_position must be one of {GATE_POSITIONS}, "
                             f"got {gate_position!r}")
        if logit_gate and gate_position == "output":
            raise ValueError("logit_gate needs gate_position='input': with output gates the last "
                             "hidden layer's gate already scales the logit layer's input")
        self.gate_position, self.logit_gate = gate_position, logit_gate
        self.tower = Tower(in_dim, tuple(hidden), dropout)
        dims = self.tower.input_dims if gate_position == "input" else self.tower.output_dims
        if logit_gate:
            dims = [*dims, self.tower.output_dims[-1]]
        if fused_gates is None:  # built outside `train`: the default of the device at hand
            fused_gates = default_fused_gates("cuda" if torch.cuda.is_available() else "cpu")
        self.gates = GateBank(gate_in_dim, dims, hidden_dim=gate_hidden, fused=fused_gates)

    def forward(self, x: torch.Tensor, personal: torch.Tensor,
                context: torch.Tensor | None) -> torch.Tensor:
        scales = self.gates(personal, context)
        logit_scale = scales.pop() if self.logit_gate else None
        if self.gate_position == "input":
            return self.tower(x, input_scales=scales, logit_scale=logit_scale)
        return self.tower(x, output_scales=scales)

    def fuse_gates(self) -> None:
        """Swap an unfused GateBank for the equivalent fused one (same outputs, one matmul)."""
        self.gates = self.gates.to_fused()


def default_fused_gates(device) -> bool:
    """Fused gates on CUDA, separate gates on CPU: the default per device.

    Measured on CPU (benchmarks/recsys_throughput.py, Criteo-sized PPNet, batch 4,096, one
    thread, results/recsys/throughput_cpu.json): the fused bank trained at 0.89x the speed of the
    unfused one (0.93x for the gate bank alone): one concatenated matmul saves nothing on a
    CPU and its output must then be split and copied. On CUDA a small model's step is bound by
    kernel launches, which fusing cuts (one matmul instead of one per gate); that side has not
    been measured here (no GPU was available; recsys_throughput.py --device cuda measures it).
    Both give the same function; only the parameter layout differs, and ``train`` records the
    choice in the run's config.yaml so a run trained on one device loads on the other.
    """
    return torch.device(device).type == "cuda"


def gate_context_exclude(gate_context: str, personal_ids: list[str]) -> tuple[str, ...] | None:
    """Which shared blocks the gate context leaves out (None: no context at all)."""
    if gate_context not in GATE_CONTEXTS:
        raise ValueError(f"gate_context must be one of {GATE_CONTEXTS}, got {gate_context!r}")
    return {"others": tuple(personal_ids), "all": (), "none": None}[gate_context]


def personal_id_fields(spec: FeatureSpec, personal_ids: list[str] | None) -> list[str]:
    pids = list(personal_ids or spec.personal_ids or ([spec.user_field] if spec.user_field else []))
    if not pids:
        raise ValueError("PPNet gates need personal-id fields: set 'personal_ids' in the spec "
                         "or the model config")
    return pids


def gate_id_spec(spec: FeatureSpec, embed_dim: int | None) -> FeatureSpec:
    """The spec with every field's width set to `embed_dim` (unchanged when None)."""
    if embed_dim is None:
        return spec
    return replace(spec, categorical=[replace(f, embed_dim=embed_dim) for f in spec.categorical])


class PPNet(nn.Module):
    """Shared embeddings -> gated MLP tower -> logit.

    gate_context: "others" (default: shared embeddings of every non-personal field + numerics),
    "all" (also the shared personal-id embeddings) or "none" (own id embeddings only).
    """

    def __init__(self, spec: FeatureSpec, hidden: tuple[int, ...] = (256, 128, 64),
                 gate_position: str = "input", logit_gate: bool = False,
                 gate_hidden: int | None = None, gate_context: str = "others",
                 fused_gates: bool | None = None, personal_ids: list[str] | None = None,
                 gate_embed_dim: int | None = None, dropout: float = 0.0, sparse: bool = False):
        super().__init__()
        self.personal_ids = personal_id_fields(spec, personal_ids)
        self.context_exclude = gate_context_exclude(gate_context, self.personal_ids)
        self.embedding = FeatureEmbedding(spec, sparse=sparse)
        self.gate_ids = FeatureEmbedding(gate_id_spec(spec, gate_embed_dim),
                                         fields=self.personal_ids, numeric=False, sparse=sparse)
        context_dim = (0 if self.context_exclude is None
                       else self.embedding.out_dim(self.context_exclude))
        self.tower = GatedTower(self.embedding.out_dim(), self.gate_ids.out_dim() + context_dim,
                                tuple(hidden), gate_position, logit_gate, gate_hidden,
                                fused_gates, dropout)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        parts = self.embedding.field_embeddings(batch)
        context = (None if self.context_exclude is None
                   else self.embedding.concat(parts, self.context_exclude))
        return self.tower(self.embedding.concat(parts), self.gate_ids(batch), context)
