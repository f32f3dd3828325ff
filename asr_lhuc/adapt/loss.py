"""Adaptation losses (CTC on 1-best or N-best targets, frame cross-entropy, frame entropy, the
KL to the SI outputs), balanced so each speaker's row sees its own mean loss."""

import torch
import torch.nn.functional as F

from .system import AsrSystem
from .targets import Target


def utterance_ctc(system: AsrSystem, targets: list[Target], rows: torch.Tensor) -> torch.Tensor:
    """CTC loss per utterance (B,), divided by target length, with LHUC rows `rows` (B,)."""
    return _ctc(system, targets, *system.log_probs([t.utt for t in targets],
                                                   rows.to(system.device)))


def _ctc(system, targets, log_probs, frames) -> torch.Tensor:
    """Per utterance: CTC on its target ids; with N-best targets, sum_n w_n * CTC(y_n)."""
    if all(t.nbest is None for t in targets):
        return _ctc_per_sequence(system, [t.ids for t in targets], log_probs, frames)
    pairs = [_hypotheses(t) for t in targets]
    owner = torch.cat([torch.full((len(w),), b) for b, (_, w) in enumerate(pairs)])
    owner = owner.to(system.device)
    weights = torch.cat([w for _, w in pairs]).to(system.device)
    # one forward pass: each hypothesis is scored on its utterance's (repeated) outputs
    per_hypothesis = _ctc_per_sequence(system, [i for ids, _ in pairs for i in ids],
                                       log_probs[owner], frames[owner])
    return torch.zeros(len(targets), device=system.device).index_add(
        0, owner, weights * per_hypothesis)


def _hypotheses(target: Target) -> tuple[list[torch.Tensor], torch.Tensor]:
    """A target's hypotheses' ids and weights (the 1-best alone: weight 1)."""
    if target.nbest is None:
        return [target.ids], torch.ones(1)
    return target.nbest, target.weights


def _ctc_per_sequence(system, ids, log_probs, frames) -> torch.Tensor:
    """CTC loss of each target sequence `ids[b]` on `log_probs[b]`, divided by its length."""
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


LOSSES = {"ctc": _ctc, "frame_ce": _frame_ce}  # target losses ("entropy" needs no targets)


def utterance_loss(system: AsrSystem, targets: list[Target], rows: torch.Tensor,
                   kind: str = "ctc", si_kl: float = 0.0, entropy_weight: float = 0.0,
                   entropy_temperature: float = 1.0) -> torch.Tensor:
    """Per-utterance loss (B,) on the targets: CTC, frame cross-entropy or, without targets,
    the mean frame entropy of the outputs (`kind`).

    With `si_kl` = rho > 0 it is (1 - rho) * loss + rho * KL(SI model || adapted model), the
    KL per frame between the output distributions with the SI row and with the speaker's row
    (Yu et al., ICASSP 2013): where the noisy targets say little, the outputs stay the SI
    model's. `entropy_weight` > 0 then adds that times the mean frame entropy at
    `entropy_temperature` (SUTA's entropy minimisation)."""
    utts = [t.utt for t in targets]
    log_probs, frames = system.log_probs(utts, rows.to(system.device))
    if kind == "entropy":
        loss = frame_entropy(log_probs, frames, entropy_temperature)
    else:
        loss = LOSSES[kind](system, targets, log_probs, frames)
    if si_kl > 0:
        with torch.no_grad():
            si_log_probs, _ = system.log_probs(utts, torch.full_like(rows, -1).to(system.device))
        loss = (1 - si_kl) * loss + si_kl * frame_kl(si_log_probs, log_probs, frames)
    if entropy_weight > 0:
        loss = loss + entropy_weight * frame_entropy(log_probs, frames, entropy_temperature)
    return loss


def frame_kl(reference: torch.Tensor, log_probs: torch.Tensor,
             frames: torch.Tensor) -> torch.Tensor:
    """Mean over each utterance's frames of KL(reference || model), from log-probs (B, T, V)."""
    kl = (reference.exp() * (reference - log_probs)).sum(dim=-1).float()
    return _frame_mean(kl, frames)


def frame_entropy(log_probs: torch.Tensor, frames: torch.Tensor,
                  temperature: float = 1.0) -> torch.Tensor:
    """Mean over each utterance's frames of the entropy of softmax(logits / temperature), from
    log-probs (B, T, V) (log_softmax of the logits: the same distribution after scaling)."""
    scaled = (log_probs.float() / temperature).log_softmax(dim=-1)
    return _frame_mean(-(scaled.exp() * scaled).sum(dim=-1), frames)


def _frame_mean(values: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
    """Mean of per-frame values (B, T) over each utterance's first `frames[b]` frames."""
    frames = frames.to(values.device)
    valid = torch.arange(values.shape[1], device=values.device)[None] < frames[:, None]
    return (values * valid).sum(dim=1) / frames


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
