"""SpeakerMap: speaker id strings <-> LHUC table rows (unknown speakers -> -1, the SI row)."""

import json
from pathlib import Path

import torch

SI_ROW = -1


class SpeakerMap:
    """Rows 0..n-1 for the speakers given, in the order given; saved and loaded as JSON."""

    def __init__(self, spk_ids=()):
        self.rows: dict[str, int] = {}
        self.add(spk_ids)

    def __len__(self) -> int:
        return len(self.rows)

    def __contains__(self, spk_id: str) -> bool:
        return spk_id in self.rows

    @property
    def speakers(self) -> list[str]:
        """Speaker ids ordered by row."""
        return sorted(self.rows, key=self.rows.get)

    def add(self, spk_ids) -> list[int]:
        """Give new speakers the next rows (known ones keep theirs); return the rows of `spk_ids`.

        Pair this with ``lhuc.add_identities(model, n_new)`` so the tables grow by the same rows.
        """
        for spk in spk_ids:
            if spk not in self.rows:
                self.rows[spk] = len(self.rows)
        return [self.rows[spk] for spk in spk_ids]

    def row(self, spk_id: str) -> int:
        """The LHUC row of `spk_id`, or -1 (the speaker-independent row) if unknown."""
        return self.rows.get(spk_id, SI_ROW)

    def ids(self, spk_ids) -> torch.Tensor:
        """LongTensor (B,) of rows for a batch of speaker ids."""
        return torch.tensor([self.row(s) for s in spk_ids], dtype=torch.long)

    def to_dict(self) -> dict[str, int]:
        return dict(self.rows)

    @classmethod
    def from_dict(cls, rows: dict[str, int]) -> "SpeakerMap":
        smap = cls()
        if sorted(rows.values()) != list(range(len(rows))):
            raise ValueError("speaker map rows must be 0..n-1 without gaps")
        smap.rows = {str(k): int(v) for k, v in rows.items()}
        return smap

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.rows, indent=1, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "SpeakerMap":
        return cls.from_dict(json.loads(Path(path).read_text()))
