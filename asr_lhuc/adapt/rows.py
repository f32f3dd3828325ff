"""Which LHUC rows may move: new rows for test speakers, and a guard that keeps every other
row (and the SI row) exactly where it was, optimiser momentum included."""

import torch

import lhuc


def add_speaker_rows(model, spk_ids: list[str], init: str = "one") -> dict[str, int]:
    """New LHUC rows for `spk_ids` (`lhuc.add_identities`), all other rows untouched.

    `init="one"`: amplitude 1 (the paper's start); `init="si"`: a copy of the SI row, which
    for a SAT-LHUC model makes an unadapted speaker decode exactly as in SI mode.
    """
    if init not in ("one", "si"):
        raise ValueError(f"row init must be 'one' or 'si', got {init!r}")
    new_rows = lhuc.add_identities(model, len(spk_ids))
    if init == "si":
        reset_rows(model, new_rows, init)
    return dict(zip(spk_ids, new_rows.tolist()))


@torch.no_grad()
def reset_rows(model, rows, init: str = "one") -> None:
    """Put `rows` back to their starting point (amplitude 1 or the SI row)."""
    rows = torch.as_tensor(rows, dtype=torch.long)
    for table in lhuc.lhuc_tables(model).values():
        if init == "si":
            table.rows[rows.to(table.rows.device)] = table.si.detach()
        else:
            table.reset_ids(rows.to(table.rows.device))


class RowGuard:
    """Restricts LHUC updates to the `active` rows of every table.

    `mask_grads` zeroes the gradients of all other rows and the SI row before a step;
    `restore` puts those rows back to their values at construction after the step (optimisers
    with momentum or weight decay would otherwise still move them). Per-row parameters are the
    rows and, with Bayesian LHUC, their posterior's `log_std`.
    """

    def __init__(self, model):
        self.tables = list(lhuc.lhuc_tables(model).values())
        self.refresh()

    @staticmethod
    def _per_row(table) -> list:
        return [p for p in (table.rows, table.log_std) if p is not None]

    def _inactive(self, table, active: torch.Tensor) -> torch.Tensor:
        mask = torch.ones(table.num_ids, dtype=torch.bool, device=table.rows.device)
        mask[active.to(table.rows.device)] = False
        return mask

    @torch.no_grad()
    def mask_grads(self, active: torch.Tensor) -> None:
        for table in self.tables:
            inactive = self._inactive(table, active)
            for param in self._per_row(table):
                if param.grad is not None:
                    param.grad[inactive] = 0.0
            if table.si.grad is not None:
                table.si.grad.zero_()

    @torch.no_grad()
    def restore(self, active: torch.Tensor) -> None:
        for table, (per_row, si) in zip(self.tables, self.saved):
            inactive = self._inactive(table, active)
            for param, saved in zip(self._per_row(table), per_row):
                param[inactive] = saved[inactive]
            table.si.copy_(si)

    def refresh(self) -> None:
        """Take the current values as the ones to keep (after a speaker is finished)."""
        self.saved = [([p.detach().clone() for p in self._per_row(t)], t.si.detach().clone())
                      for t in self.tables]
