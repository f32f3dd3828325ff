"""Infer the hidden width (and layout) at a target module's output or input."""

import torch
from torch import nn

_CHANNEL_FIRST = (nn.modules.conv._ConvNd, nn.modules.batchnorm._BatchNorm,
                  nn.modules.instancenorm._InstanceNorm)


def default_channel_axis(module: nn.Module, fallback: int) -> int:
    """torch convolutions and batch norms are channel-first; assume `fallback` elsewhere."""
    return 1 if isinstance(module, _CHANNEL_FIRST) else fallback


def known_width(module: nn.Module, position: str) -> int | None:
    """The width a standard layer produces (position "output") or consumes ("input")."""
    if isinstance(module, nn.Linear):
        return module.out_features if position == "output" else module.in_features
    if isinstance(module, nn.modules.conv._ConvNd):
        return module.out_channels if position == "output" else module.in_channels
    if isinstance(module, nn.RNNBase):
        if not module.batch_first:
            raise ValueError("LHUC needs batch-first hidden states: build the RNN with batch_first")
        if position == "input":
            return module.input_size
        width = module.proj_size or module.hidden_size
        return width * (2 if module.bidirectional else 1)
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return module.num_features
    if isinstance(module, nn.LayerNorm):
        return module.normalized_shape[-1]
    if isinstance(module, nn.Embedding) and position == "output":
        return module.embedding_dim
    # SpeechBrain wraps torch layers (Linear in .w, Conv in .conv) and keeps channels last.
    for attr in ("w", "conv"):
        inner = getattr(module, attr, None)
        if isinstance(inner, (nn.Linear, nn.modules.conv._ConvNd)):
            return known_width(inner, position)
    return None


def first_tensor(value):
    """The hidden states in a module's output: the tensor itself or a tuple's first item."""
    return value[0] if isinstance(value, (tuple, list)) else value


@torch.no_grad()
def probe_widths(model: nn.Module, targets: dict[str, nn.Module], axes: dict[str, int],
                 position: str, example_inputs: tuple) -> dict[str, int]:
    """Run `model(*example_inputs)` once in eval mode and read each target's width."""
    found, handles = {}, []
    for name, module in targets.items():
        def record(mod, args, out=None, name=name):
            value = first_tensor(out if position == "output" else args)
            found[name] = value.shape[axes[name]]
        if position == "output":
            handles.append(module.register_forward_hook(record))
        else:
            handles.append(module.register_forward_pre_hook(record))
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        model(*example_inputs)
    finally:
        for handle in handles:
            handle.remove()
        for module, mode in modes.items():
            module.train(mode)
    return found
