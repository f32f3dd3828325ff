"""Fold one identity's amplitudes into weights, so adapted inference costs nothing extra."""

import copy

import torch
from torch import nn

from .attach import detach_lhuc, lhuc_tables


def _linear_or_conv(module: nn.Module) -> nn.Module | None:
    kinds = (nn.Linear, nn.modules.conv._ConvNd)
    if isinstance(module, kinds):
        return module
    # SpeechBrain's wrappers keep the torch layer in .w (Linear) or .conv (Conv).
    inner = getattr(module, "w", None) or getattr(module, "conv", None)
    return inner if isinstance(inner, kinds) else None


@torch.no_grad()
def _scale_outputs(layer: nn.Module, amp: torch.Tensor) -> None:
    shape = (-1,) + (1,) * (layer.weight.dim() - 1)
    layer.weight.mul_(amp.reshape(shape))
    if layer.bias is not None:
        layer.bias.mul_(amp)


@torch.no_grad()
def _scale_inputs(layer: nn.Module, amp: torch.Tensor) -> None:
    if isinstance(layer, nn.modules.conv._ConvNd) and layer.groups != 1:
        raise ValueError("cannot fold LHUC into the input of a grouped convolution")
    shape = (1, -1) + (1,) * (layer.weight.dim() - 2)
    layer.weight.mul_(amp.reshape(shape))


def fold_lhuc(model: nn.Module, identity: int | None, into: dict[str, str] | None = None):
    """A copy of `model` with `identity`'s amplitudes folded in and LHUC removed.

    `identity=None` folds the SI row. A table on the output of a Linear/Conv folds into that
    layer's rows; a table on its input folds into its columns. Any other target (an activation,
    an RNN) needs `into={target: following_linear}`: the amplitudes then scale the columns of
    the layer that reads the target's output directly, which is exact when nothing lies between.
    """
    into = into or {}
    folded = copy.deepcopy(model).eval()
    for name, table in lhuc_tables(folded).items():
        ids = torch.tensor([-1 if identity is None else identity])
        amp = table.amplitudes(ids)[0]
        own = _linear_or_conv(folded.get_submodule(name))
        if name in into:
            nxt = _linear_or_conv(folded.get_submodule(into[name]))
            if nxt is None:
                raise ValueError(f"fold target {into[name]!r} for {name!r} is not Linear/Conv")
            _scale_inputs(nxt, amp)
        elif own is not None and table.position == "output":
            _scale_outputs(own, amp)
        elif own is not None:
            _scale_inputs(own, amp)
        else:
            raise ValueError(f"cannot fold LHUC at {name!r} ({type(own).__name__}) into itself: "
                             "pass into={name: the Linear that reads its output}")
    return detach_lhuc(folded)
