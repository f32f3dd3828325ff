"""A Conformer encoder head from SpeechBrain parts, laid out like the CRDNN so LHUC targets match.

`conformer_encoder` keeps CRDNN's module names (``time_pooling``, ``projection``, ``DNN.block_i``)
and puts SpeechBrain's `ConformerEncoder` (relative positional attention) where the RNN was, so a
YAML's ``lhuc_targets`` such as ``[projection.act, DNN.block_0.act]`` work with either head, and
the adaptation prefix cache can run it layer by layer (its children apply in order).
"""

import torch
from speechbrain.lobes.models.CRDNN import CRDNN
from speechbrain.lobes.models.transformer.Conformer import ConformerEncoder
from speechbrain.lobes.models.transformer.Transformer import RelPosEncXL
from speechbrain.nnet.containers import Sequential
from torch import nn


class ConformerLayers(nn.Module):
    """`ConformerEncoder` with its positional encoding, (B, T, D) -> (B, T, D).

    Like CRDNN's RNN it sees the padded batch without a mask: batches are sorted by duration,
    so padding is short, and adaptation runs utterances unpadded."""

    def __init__(self, d_model: int, num_layers: int, nhead: int, d_ffn: int,
                 kernel_size: int, dropout: float):
        super().__init__()
        self.pos_enc = RelPosEncXL(d_model)
        self.layers = ConformerEncoder(num_layers=num_layers, d_model=d_model, d_ffn=d_ffn,
                                       nhead=nhead, kernel_size=kernel_size, dropout=dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x, pos_embs=self.pos_enc(x))[0]


def conformer_encoder(input_dim: int, projection_dim: int, time_pooling_size: int,
                      conformer_layers: int, conformer_heads: int, conformer_ffn: int,
                      conformer_kernel: int, dnn_blocks: int, dnn_neurons: int,
                      dropout: float) -> Sequential:
    """time pooling -> projection (Linear, LayerNorm, LeakyReLU) -> Conformer -> DNN blocks."""
    if projection_dim <= 0:
        raise ValueError("the Conformer head needs projection_dim > 0 (its model width)")
    crdnn = CRDNN(input_shape=[None, None, input_dim], activation=nn.LeakyReLU, dropout=dropout,
                  cnn_blocks=0, rnn_layers=0, time_pooling=time_pooling_size > 1,
                  time_pooling_size=max(time_pooling_size, 1), dnn_blocks=dnn_blocks,
                  dnn_neurons=dnn_neurons, projection_dim=projection_dim)
    conformer = ConformerLayers(projection_dim, conformer_layers, conformer_heads,
                                conformer_ffn, conformer_kernel, dropout)
    modules = dict(crdnn.items())
    dnn = modules.pop("DNN", None)
    modules["conformer"] = conformer
    if dnn is not None:
        modules["DNN"] = dnn
    return Sequential(**modules)
