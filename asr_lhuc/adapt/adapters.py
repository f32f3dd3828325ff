"""One small adapter file per speaker, and loading it back for decoding that speaker."""

import json
from pathlib import Path

import lhuc

INDEX = "speakers.json"


def save_speaker_adapters(model, rows: dict[str, int], folder) -> Path:
    """Write `<folder>/<spk>.pt` (that speaker's LHUC vectors) and an index; return the index.

    The folder is the adaptation's own: never the training checkpointer's.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    index = {}
    for spk, row in rows.items():
        if row < 0:
            continue  # not adapted: decodes with the SI row
        name = f"{_safe(spk)}.pt"
        lhuc.save_adapter(model, folder / name, identity=row)
        index[spk] = name
    path = folder / INDEX
    path.write_text(json.dumps(index, indent=1, sort_keys=True) + "\n")
    return path


def load_speaker_adapter(model, folder, spk_id: str, row: int | None = None) -> int:
    """Load `spk_id`'s adapter into `row` (default: a new row); return the row to decode with."""
    folder = Path(folder)
    index = json.loads((folder / INDEX).read_text())
    if spk_id not in index:
        raise KeyError(f"no adapter for speaker {spk_id!r} in {folder} (has {sorted(index)})")
    if row is None:
        row = int(lhuc.add_identities(model, 1)[0])
    lhuc.load_adapter(model, folder / index[spk_id], identity=row)
    return row


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
