"""CTC loss on adaptation targets, balanced so each speaker's row sees its own mean loss."""

import torch
import torch.nn.functional as F

from .system import AsrSystem
from .targets import Target


def utterance_ctc(system: AsrSystem, targets: list[Target], rows: torch.Tensor) -> torch.Tensor:
    """CTC loss per utterance (B,), divided by target length, with LHUC rows `rows` (B,)."""
    log_probs, frames = system.log_probs([t.utt for t in targets], rows.to(system.device))
    ids = [t.ids for t in targets]
    flat = torch.cat(ids).to(system.device)
    target_lens = torch.tensor([len(i) for i in ids], device=system.device)
    loss = F.ctc_loss(log_probs.transpose(0, 1).float(), flat, frames, target_lens,
                      blank=system.blank, reduction="none", zero_infinity=True)
    return loss / target_lens


def utterance_frame_ce(system: AsrSystem, targets: list[Target],
                       rows: torch.Tensor) -> torch.Tensor:
    """Frame cross-entropy per utterance (B,) against the first pass's best-path labels."""
    log_probs, frames = system.log_probs([t.utt for t in targets], rows.to(system.device))
    losses = []
    for b, target in enumerate(targets):
        n = min(int(frames[b]), len(target.frames))
        losses.append(F.nll_loss(log_probs[b, :n].float(), target.frames[:n].to(system.device)))
    return torch.stack(losses)


def utterance_loss(system: AsrSystem, targets: list[Target], rows: torch.Tensor,
                   kind: str = "ctc") -> torch.Tensor:
    """`utterance_ctc` or `utterance_frame_ce` by name."""
    if kind == "frame_ce":
        return utterance_frame_ce(system, targets, rows)
    return utterance_ctc(system, targets, rows)


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
