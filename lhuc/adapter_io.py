"""Save and load LHUC adapters only: whole tables, or one identity's vectors as a small file.

A file records what gives its numbers their meaning: the reparameterisation (r -> amplitude)
and the position (the tables scale their layers' outputs or inputs). Loading refuses a model
that reads them differently: a 2sigmoid row with amplitude 1.76 would be 7.39 under exp.
"""

import warnings
from pathlib import Path

import torch
from torch import nn

from .attach import lhuc_tables

FORMAT = "lhuc-adapter-1"


def lhuc_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The LHUC entries of `model.state_dict()` (rows and SI rows of every table)."""
    return {k: v for k, v in model.state_dict().items() if ".lhuc_table." in k}


def save_adapter(model: nn.Module, path, identity: int | None = None) -> Path:
    """Save all tables, or with `identity` only that identity's vector per table."""
    tables = lhuc_tables(model)
    if not tables:
        raise ValueError("the model has no LHUC attached")
    meta = {"format": FORMAT, **_layout(tables)}
    if identity is None:
        payload = {name: {"rows": t.rows.detach().cpu(), "si": t.si.detach().cpu()}
                   for name, t in tables.items()}
    else:
        _check_identity(tables, identity)
        payload = {name: {"row": t.rows[identity].detach().cpu()} for name, t in tables.items()}
        meta["identity"] = identity
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"meta": meta, "tables": payload}, path)
    return path


@torch.no_grad()
def load_adapter(model: nn.Module, path, identity: int | None = None) -> dict:
    """Load an adapter file into `model`; return its metadata.

    A whole-table file replaces all rows (row counts must match). A one-identity file goes into
    row `identity` (default: the identity it was saved from).
    """
    blob = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(blob, dict) or blob.get("meta", {}).get("format") != FORMAT:
        raise ValueError(f"{path} is not an LHUC adapter file (saved by lhuc.save_adapter)")
    tables, saved = lhuc_tables(model), blob["tables"]
    missing = sorted(set(saved) ^ set(tables))
    if missing:
        raise ValueError(f"{path}: adapter layers and model layers differ at {missing}")
    meta = blob["meta"]
    _check_layout(path, meta, tables)
    for name, table in tables.items():
        entry = saved[name]
        if "rows" in entry:
            if entry["rows"].shape != table.rows.shape:
                raise ValueError(f"{path}: table {name} has shape {tuple(entry['rows'].shape)}, "
                                 f"model has {tuple(table.rows.shape)}; add identities first")
            table.rows.copy_(entry["rows"])
            table.si.copy_(entry["si"])
        else:
            row = meta["identity"] if identity is None else identity
            _check_identity(tables, row)
            if entry["row"].shape != (table.dim,):
                raise ValueError(f"{path}: table {name} has width {entry['row'].shape[-1]}, "
                                 f"model has {table.dim}")
            table.rows[row] = entry["row"].to(table.rows)
    return meta


def _layout(tables) -> dict[str, str]:
    """The reparam and position shared by all tables (one `attach_lhuc` config)."""
    found = {(t.reparam_name, getattr(t, "position", "output")) for t in tables.values()}
    if len(found) > 1:
        raise ValueError(f"LHUC tables mix reparam/position {sorted(found)}; one file needs one")
    ((reparam, position),) = found
    return {"reparam": reparam, "position": position}


def _check_layout(path, meta: dict, tables) -> None:
    """Refuse a file whose numbers this model would read differently (see the module doc)."""
    if "reparam" not in meta:
        raise ValueError(f"{path} does not record its LHUC reparam, so its rows cannot be "
                         "read; re-save it with lhuc.save_adapter from the model it came from")
    model = _layout(tables)
    for key in ("reparam", "position"):
        if key not in meta:  # the position: files saved before it was recorded
            warnings.warn(f"{path} does not record its LHUC {key}; assuming the model's "
                          f"({model[key]}). Re-save it with lhuc.save_adapter to record it.",
                          stacklevel=4)  # the caller of load_adapter (under torch.no_grad)
            continue
        if meta[key] != model[key]:
            raise ValueError(f"{path}: adapter {key} is {meta[key]!r} but the model's LHUC "
                             f"{key} is {model[key]!r}; attach LHUC with {key}={meta[key]!r} "
                             "to load it")


def _check_identity(tables, identity: int) -> None:
    num_ids = next(iter(tables.values())).num_ids
    if not 0 <= identity < num_ids:
        raise IndexError(f"identity {identity} is not a row of the LHUC tables (0..{num_ids - 1}); "
                         "use lhuc.add_identities(model, n) for new identities")
