"""Attach LHUC to named layers of any nn.Module without editing its code.

Each target module gets a child `lhuc_table` (an AmplitudeTable) and a forward hook that scales
its output (or, with position="input", its input). Parameter names of the model itself do not
change, so SI checkpoints load as before; the tables add keys ending in `lhuc_table.rows/.si`.
The identities of the current batch are stored on the tables, never in global state.
"""

import contextlib

import torch
from torch import nn

from .config import LHUCConfig
from .table import AmplitudeTable
from .widths import default_channel_axis, first_tensor, known_width, probe_widths

TABLE = "lhuc_table"
_UNSET = object()


def _output_hook(module, args, output):
    table = module.lhuc_table
    hidden = table(first_tensor(output), _current_ids(table, output), table.channel_axis)
    if isinstance(output, tuple):
        return (hidden, *output[1:])
    if isinstance(output, list):
        return [hidden, *output[1:]]
    return hidden


def _input_hook(module, args):
    table = module.lhuc_table
    return (table(args[0], _current_ids(table, args[0]), table.channel_axis), *args[1:])


def _current_ids(table: AmplitudeTable, hidden) -> torch.Tensor:
    ids = getattr(table, "current_ids", _UNSET)
    if ids is _UNSET:
        raise RuntimeError("LHUC identities are not set: call lhuc.set_identities(model, ids) "
                           "or use `with lhuc.identities(model, ids):` before the forward pass "
                           "(ids=None selects the speaker-independent row for all)")
    if ids is None:  # speaker-independent mode
        hidden = first_tensor(hidden)
        return torch.full((hidden.shape[0],), -1, dtype=torch.long, device=hidden.device)
    return ids


def find_targets(model: nn.Module, config: LHUCConfig) -> dict[str, nn.Module]:
    """The modules of `model` that `config` targets, by name."""
    return {name: module for name, module in model.named_modules()
            if name and TABLE not in name.split(".") and config.matches(name, module)}


def attach_lhuc(model: nn.Module, config: LHUCConfig, example_inputs: tuple | None = None):
    """Place LHUC on the targets of `config` in `model` (in place) and return the model.

    Widths come from standard layers (Linear, Conv, RNN, norms, SpeechBrain's Linear), from
    `config.dims`, or from one dry forward pass over `example_inputs`.
    """
    if lhuc_tables(model):
        raise ValueError("this model already has LHUC attached; call detach_lhuc first")
    targets = find_targets(model, config)
    if not targets:
        raise ValueError(f"no module matches target_modules={config.target_modules} "
                         f"target_classes={config.target_classes}; see model.named_modules()")
    axes = {n: config.channel_axes.get(n, default_channel_axis(m, config.channel_axis))
            for n, m in targets.items()}
    widths = _widths(model, targets, axes, config, example_inputs)
    device = next(model.parameters(), torch.empty(0)).device
    for name, module in targets.items():
        table = AmplitudeTable(config.num_ids, widths[name], config.reparam,
                               config.sat_gamma, config.sat_level).to(device)
        table.channel_axis, table.position = axes[name], config.position
        table.train(module.training)  # an eval-mode model must not start sampling SAT rows
        module.add_module(TABLE, table)
        if config.position == "output":
            module.register_forward_hook(_output_hook)
        else:
            module.register_forward_pre_hook(_input_hook)
    return model


def _widths(model, targets, axes, config, example_inputs) -> dict[str, int]:
    widths = {n: config.dims.get(n) or known_width(m, config.position) for n, m in targets.items()}
    unknown = [n for n, w in widths.items() if w is None]
    if unknown and example_inputs is not None:
        widths.update(probe_widths(model, {n: targets[n] for n in unknown}, axes,
                                   config.position, example_inputs))
        unknown = [n for n, w in widths.items() if w is None]
    if unknown:
        raise ValueError(f"cannot infer the LHUC width of {unknown}: give LHUCConfig.dims "
                         "{name: width} or pass example_inputs to attach_lhuc")
    return widths


def lhuc_tables(model: nn.Module) -> dict[str, AmplitudeTable]:
    """The attached tables, keyed by the name of the module they scale."""
    suffix = "." + TABLE
    return {name[: -len(suffix)]: module for name, module in model.named_modules()
            if name.endswith(suffix) and isinstance(module, AmplitudeTable)}


def set_identities(model: nn.Module, ids) -> None:
    """Set the identities (LongTensor (B,), -1 = unknown) used by the next forward passes.

    `ids=None` puts every table in speaker-independent (SI) mode.
    """
    if ids is not None:
        ids = torch.as_tensor(ids, dtype=torch.long)
    for table in lhuc_tables(model).values():
        table.current_ids = ids


@contextlib.contextmanager
def identities(model: nn.Module, ids):
    """Context manager form of `set_identities`; restores the previous identities on exit."""
    tables = list(lhuc_tables(model).values())
    previous = [getattr(t, "current_ids", _UNSET) for t in tables]
    set_identities(model, ids)
    try:
        yield model
    finally:
        for table, ids_before in zip(tables, previous):
            if ids_before is _UNSET:
                table.__dict__.pop("current_ids", None)
            else:
                table.current_ids = ids_before


def lhuc_parameters(model: nn.Module) -> list[nn.Parameter]:
    """All LHUC parameters (rows and SI rows) of the model."""
    return [p for table in lhuc_tables(model).values() for p in table.parameters()]


def freeze_non_lhuc(model: nn.Module) -> list[nn.Parameter]:
    """Freeze every parameter except LHUC's; return the LHUC parameters."""
    for p in model.parameters():
        p.requires_grad_(False)
    params = lhuc_parameters(model)
    for p in params:
        p.requires_grad_(True)
    return params


def add_identities(model: nn.Module, n: int) -> torch.Tensor:
    """Add `n` new identities (amplitude 1) to every table; return their ids."""
    new_ids = None
    for table in lhuc_tables(model).values():
        new_ids = table.add_ids(n)
    return new_ids


def detach_lhuc(model: nn.Module) -> nn.Module:
    """Remove all LHUC tables and hooks, giving back the plain model (in place)."""
    for name in lhuc_tables(model):
        module = model.get_submodule(name)
        for hooks in (module._forward_hooks, module._forward_pre_hooks):
            for key in [k for k, h in hooks.items() if h in (_output_hook, _input_hook)]:
                del hooks[key]
        delattr(module, TABLE)
    return model
