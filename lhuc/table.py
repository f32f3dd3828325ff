"""Per-identity amplitude tables: one LHUC vector per speaker/user plus a shared SI row."""

import torch
from torch import nn

from .reparam import get_reparam
from .sat import check_level, si_mask


def layout_axes(ndim: int, channel_axis: int) -> tuple[int, int]:
    """Return (channel_axis, time_axis) as non-negative axes for a hidden tensor of `ndim` dims.

    The time axis is the first axis that is neither the batch nor the channel axis (-1 if none).
    """
    ch = channel_axis % ndim
    if ch == 0:
        raise ValueError("channel_axis cannot be the batch axis 0")
    time = next((a for a in range(1, ndim) if a != ch), -1)
    return ch, time


class AmplitudeTable(nn.Module):
    """`num_ids` LHUC vectors of width `dim` and one speaker-independent (SI) vector.

    Every row starts at the reparameterisation's amplitude-1 point, so a fresh table is a no-op.
    Ids below 0 (unknown identities) use the SI row. In training mode with `sat_gamma > 0`, the
    SI row also replaces an identity's row with probability `sat_gamma` (SAT-LHUC), drawn per
    `sat_level`: "utterance", "frame" or "identity".
    """

    def __init__(self, num_ids: int, dim: int, reparam: str = "2sigmoid",
                 sat_gamma: float = 0.0, sat_level: str = "utterance"):
        super().__init__()
        if num_ids < 0 or dim <= 0:
            raise ValueError(f"AmplitudeTable needs num_ids >= 0 and dim > 0, got {num_ids}, {dim}")
        if not 0.0 <= sat_gamma <= 1.0:
            raise ValueError(f"sat_gamma must lie in [0, 1], got {sat_gamma}")
        self.reparam_name = reparam
        self.reparam = get_reparam(reparam)
        self.sat_gamma = sat_gamma
        self.sat_level = check_level(sat_level)
        self.rows = nn.Parameter(torch.full((num_ids, dim), self.reparam.init_r))
        self.si = nn.Parameter(torch.full((dim,), self.reparam.init_r))
        # Bayesian LHUC (`lhuc.bayes`): the rows are then the posterior means, `log_std` the
        # posterior's log standard deviations, and `sample` draws r from it in forward passes.
        self.register_parameter("log_std", None)
        self.prior_std: float | None = None
        self.init_log_std = 0.0
        self.sample = False

    @property
    def num_ids(self) -> int:
        return self.rows.shape[0]

    @property
    def dim(self) -> int:
        return self.si.shape[0]

    def extra_repr(self) -> str:
        return (f"num_ids={self.num_ids}, dim={self.dim}, reparam={self.reparam_name}, "
                f"sat_gamma={self.sat_gamma}, sat_level={self.sat_level}")

    def raw(self, ids: torch.Tensor) -> torch.Tensor:
        """The free parameters r for `ids` (B,), SI row where an id is unknown (< 0): (B, dim)."""
        ids = ids.to(self.rows.device).long()
        if ids.dim() != 1:
            raise ValueError(f"identity ids must have shape (B,), got {tuple(ids.shape)}")
        if ids.numel() and int(ids.max()) >= self.num_ids:
            raise IndexError(f"identity id {int(ids.max())} >= num_ids {self.num_ids}: add rows "
                             "with add_ids() for new identities, or pass -1 for the SI row")
        if self.num_ids == 0:  # an SI-only table (e.g. before any speaker is added)
            return self.si.expand(ids.shape[0], -1)
        known = (ids >= 0).unsqueeze(1)
        rows = self.rows[ids.clamp(min=0)]
        if self.sample and self.log_std is not None:  # one reparameterised draw per element
            std = self.log_std[ids.clamp(min=0)].exp()
            rows = rows + std * torch.randn_like(rows)
        return torch.where(known, rows, self.si)

    def amplitudes(self, ids: torch.Tensor) -> torch.Tensor:
        """Amplitudes (B, dim) for `ids`, with utterance/identity-level SAT in training mode."""
        r = self.raw(ids)
        if self._sat_active() and self.sat_level != "frame":
            mask = si_mask(ids.to(r.device), self.sat_gamma, self.sat_level)
            r = torch.where(mask.unsqueeze(1), self.si, r)
        return self.reparam(r)

    def forward(self, hidden: torch.Tensor, ids: torch.Tensor,
                channel_axis: int = -1) -> torch.Tensor:
        """Scale `hidden` (B, D), (B, T, D) or channel-first (B, D, T) per identity.

        `channel_axis` says where the D hidden units are (-1: last, 1: channel-first).
        """
        if hidden.shape[0] != ids.shape[0]:
            raise ValueError(f"batch of {hidden.shape[0]} hidden states but {ids.shape[0]} ids")
        ch, time = layout_axes(hidden.dim(), channel_axis)
        if hidden.shape[ch] != self.dim:
            raise ValueError(f"hidden width {hidden.shape[ch]} on axis {ch} != "
                             f"table dim {self.dim}")
        shape = [1] * hidden.dim()
        shape[0], shape[ch] = hidden.shape[0], self.dim
        if self._sat_active() and self.sat_level == "frame":
            amp = self._frame_amplitudes(ids, hidden.shape[time] if time > 0 else None)
            if time > ch:
                amp = amp.transpose(1, 2)
            shape[time] = hidden.shape[time]
        else:
            amp = self.amplitudes(ids)
        return hidden * amp.reshape(shape).to(hidden.dtype)

    def _frame_amplitudes(self, ids: torch.Tensor, num_frames: int | None) -> torch.Tensor:
        r = self.raw(ids)
        mask = si_mask(ids.to(r.device), self.sat_gamma, "frame", num_frames)
        return self.reparam(torch.where(mask.unsqueeze(2), self.si, r.unsqueeze(1)))

    def _sat_active(self) -> bool:
        return self.training and self.sat_gamma > 0

    @torch.no_grad()
    def add_ids(self, n: int) -> torch.Tensor:
        """Append `n` rows at amplitude 1 for identities met after training; return their ids.

        Existing rows keep their values. The parameter is replaced, so build optimisers after this.
        """
        start = self.num_ids
        new = torch.full((n, self.dim), self.reparam.init_r, device=self.rows.device,
                         dtype=self.rows.dtype)
        self.rows = nn.Parameter(torch.cat([self.rows.data, new]), self.rows.requires_grad)
        if self.log_std is not None:
            new_std = torch.full_like(new, self.init_log_std)
            self.log_std = nn.Parameter(torch.cat([self.log_std.data, new_std]),
                                        self.log_std.requires_grad)
        return torch.arange(start, start + n)

    @torch.no_grad()
    def reset_ids(self, ids: torch.Tensor) -> None:
        """Put the rows of `ids` back to amplitude 1."""
        self.rows[ids.long()] = self.reparam.init_r
        if self.log_std is not None:
            self.log_std[ids.long()] = self.init_log_std
