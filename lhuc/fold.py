"""Fold one identity's amplitudes into weights, so adapted inference costs nothing extra."""

import copy

import torch
from torch import nn

from .attach import detach_lhuc, lhuc_tables


def _linear_or_conv(module: nn.Module) -> nn.Module | None:
    kinds = (nn.Linear, nn.modules.conv._ConvNd)
    if isinstance(module, kinds):
        return _check_plain_weight(module)
    # SpeechBrain's wrappers keep the torch layer in .w (Linear) or .conv (Conv).
    inner = getattr(module, "w", None) or getattr(module, "conv", None)
    return _check_plain_weight(inner) if isinstance(inner, kinds) else None


def _check_plain_weight(layer: nn.Module) -> nn.Module:
    # A weight computed from other parameters (weight/spectral norm) is rebuilt at every
    # forward pass, so scaling it in place would be silently lost.
    if not isinstance(layer._parameters.get("weight"), nn.Parameter):
        raise ValueError(f"cannot fold LHUC into {type(layer).__name__}: its weight is computed "
                         "(weight/spectral norm, a parametrization); remove that first, e.g. "
                         "torch.nn.utils.parametrize.remove_parametrizations(layer, 'weight')")
    return layer


@torch.no_grad()
def _scale_outputs(layer: nn.Module, amp: torch.Tensor) -> None:
    _scale_channels(layer, amp, "out")
    if layer.bias is not None:
        layer.bias.mul_(amp)


@torch.no_grad()
def _scale_inputs(layer: nn.Module, amp: torch.Tensor) -> None:
    _scale_channels(layer, amp, "in")


def _scale_channels(layer: nn.Module, amp: torch.Tensor, side: str) -> None:
    """Scale the weight slices of each output ("out") or input ("in") channel by `amp`.

    Linear and Conv weights are (out, in/groups, k...); ConvTranspose weights are
    (in, out/groups, k...). Axis 0 holds all its channels; axis 1 holds one group's share,
    channel c = g * (channels/groups) + j living in the rows of group g.
    """
    weight = layer.weight
    transposed = isinstance(layer, nn.modules.conv._ConvTransposeNd)
    tail = (1,) * (weight.dim() - 2)
    if (side == "out") != transposed:  # axis 0
        weight.mul_(amp.reshape(-1, 1, *tail))
        return
    groups = getattr(layer, "groups", 1)
    weight.view(groups, -1, *weight.shape[1:]).mul_(amp.reshape(groups, 1, -1, *tail))


def fold_lhuc(model: nn.Module, identity: int | None, into: dict[str, str] | None = None):
    """A copy of `model` with `identity`'s amplitudes folded in and LHUC removed.

    `identity=None` folds the SI row. A table on the output of a Linear/Conv/ConvTranspose
    (grouped too) folds into that layer's output channels; a table on its input folds into its
    input channels. Any other target (an activation,
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
