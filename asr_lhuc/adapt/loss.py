"""CTC loss on adaptation targets, balanced so each speaker's row sees its own mean loss."""

import torch
import torch.nn.functional as F

from .system import AsrSystem
from .targets import Target


def utterance_ctc(system: AsrSystem, targets: list[Target], rows: torch.Tensor) -> torch.Tensor:
    """CTC loss per utterance (B,), divided by target length, with LHUC rows `rows` (B,)."""
    return _ctc(system, targets, *system.log_probs([t.utt for t in targets],
                                                   rows.to(system.device)))


def _ctc(system, targets, log_probs, frames) -> torch.Tensor:
    ids = [t.ids for t in targets]
    flat = torch.cat(ids).to(system.device)
    target_lens = torch.tensor([len(i) for i in ids], device=system.device)
    loss = F.ctc_loss(log_probs.transpose(0, 1).float(), flat, frames, target_lens,
                      blank=system.blank, reduction="none", zero_infinity=True)
    return loss / target_lens


def _frame_ce(system, targets, log_probs, frames) -> torch.Tensor:
    """Frame cross-entropy per utterance (B,) against the first pass's best-path labels."""
    losses = []
    for b, target in enumerate(targets):
        n = min(int(frames[b]), len(target.frames))
        losses.append(F.nll_loss(log_probs[b, :n].float(), target.frames[:n].to(system.device)))
    return torch.stack(losses)


LOSSES = {"ctc": _ctc, "frame_ce": _frame_ce}


def utterance_loss(system: AsrSystem, targets: list[Target], rows: torch.Tensor,
                   kind: str = "ctc", si_kl: float = 0.0) -> torch.Tensor:
    """Per-utterance loss (B,) on the targets: CTC or frame cross-entropy (`kind`).

    With `si_kl` = rho > 0 it is (1 - rho) * loss + rho * KL(SI model || adapted model), the
    KL per frame between the output distributions with the SI row and with the speaker's row
    (Yu et al., ICASSP 2013): where the noisy targets say little, the outputs stay the SI
    model's."""
    utts = [t.utt for t in targets]
    log_probs, frames = system.log_probs(utts, rows.to(system.device))
    loss = LOSSES[kind](system, targets, log_probs, frames)
    if si_kl > 0:
        with torch.no_grad():
            si_log_probs, _ = system.log_probs(utts, torch.full_like(rows, -1).to(system.device))
        loss = (1 - si_kl) * loss + si_kl * frame_kl(si_log_probs, log_probs, frames)
    return loss


def frame_kl(reference: torch.Tensor, log_probs: torch.Tensor,
             frames: torch.Tensor) -> torch.Tensor:
    """Mean over each utterance's frames of KL(reference || model), from log-probs (B, T, V)."""
    kl = (reference.exp() * (reference - log_probs)).sum(dim=-1).float()
    valid = torch.arange(kl.shape[1], device=kl.device)[None] < frames.to(kl.device)[:, None]
    return (kl * valid).sum(dim=1) / frames.to(kl.device)


def speaker_balanced(per_utt: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Weighted sum where each utterance weighs 1 / (its speaker's utterances in the step):
    the sum over speakers of each speaker's mean loss, so rows do not compete for scale."""
    return (per_utt * weights.to(per_utt.device)).sum()


@torch.no_grad()
def mean_ctc(system: AsrSystem, targets: list[Target], row: int | None,
             batch_size: int = 16) -> float:
    """Mean per-utterance CTC loss on `targets` with LHUC row `row` (None: SI row)."""
    if not targets:
        return float("nan")
    total = 0.0
    for start in range(0, len(targets), batch_size):
        part = targets[start: start + batch_size]
        rows = torch.full((len(part),), -1 if row is None else row)
        total += float(utterance_ctc(system, part, rows).sum())
    return total / len(targets)
