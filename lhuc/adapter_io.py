"""Save and load LHUC adapters only: whole tables, or one identity's vectors as a small file."""

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
    meta = {"format": FORMAT, "reparam": next(iter(tables.values())).reparam_name}
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
            table.rows[row] = entry["row"].to(table.rows)
    return meta


def _check_identity(tables, identity: int) -> None:
    num_ids = next(iter(tables.values())).num_ids
    if not 0 <= identity < num_ids:
        raise IndexError(f"identity {identity} is not a row of the LHUC tables (0..{num_ids - 1}); "
                         "use lhuc.add_identities(model, n) for new identities")
