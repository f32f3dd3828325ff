"""The update loop shared by per-speaker and batched adaptation.

A step is {speaker: its mini-batch of targets}. The loss is the sum over speakers of each one's
mean CTC loss, so with a frozen model in eval mode every speaker's row gets exactly the
gradient it would get alone; per-element optimisers (Adam, SGD) then update each row as if it
were adapted alone. Rows outside the step are masked and restored (RowGuard).
"""

import contextlib
from collections import defaultdict

import torch

import lhuc
from lhuc import bayes

from .config import AdaptConfig
from .loss import speaker_balanced, utterance_loss
from .rows import RowGuard
from .system import AsrSystem


def make_optimizer(params, cfg: AdaptConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9)


def run_steps(system: AsrSystem, plan: list[dict[str, list]], rows: dict[str, int],
              cfg: AdaptConfig, progress=None) -> list[float]:
    """Apply `plan` (a list of steps) with a fresh optimiser; return the loss of each step."""
    if cfg.prior_std is not None and not bayes.is_bayesian(system.model):
        bayes.make_bayesian(system.model, cfg.prior_std, cfg.posterior_init_std)
    params = system.freeze()
    optimizer = make_optimizer(params, cfg)
    guard = RowGuard(system.model)
    n_utts = _utterances_per_speaker(plan)
    losses = []
    with _no_cudnn(system.device):
        for step in plan:
            active = torch.tensor(sorted({rows[spk] for spk in step}))
            optimizer.zero_grad(set_to_none=True)
            losses.append(_accumulate(system, step, rows, cfg, n_utts))
            guard.mask_grads(active)
            optimizer.step()
            guard.restore(active)
            if progress is not None:
                progress.update(1)
    lhuc.freeze_non_lhuc(system.model)
    return losses


def _accumulate(system, step, rows, cfg, n_utts) -> float:
    """Backward the speaker-balanced loss of one step in chunks of `cfg.max_batch_utts`, and
    with Bayesian LHUC each speaker's KL term divided by its number of adaptation utterances:
    with the step's mean loss per utterance, that is the negative ELBO per utterance."""
    max_batch_utts = cfg.max_batch_utts
    items = [(spk, t) for spk, batch in step.items() for t in batch]
    items.sort(key=lambda item: len(item[1].utt.wav))  # chunks of similar length: less padding
    total = 0.0
    sample = cfg.prior_std is not None
    for start in range(0, len(items), max_batch_utts):
        chunk = items[start: start + max_batch_utts]
        row_ids = torch.tensor([rows[spk] for spk, _ in chunk])
        weights = torch.tensor([1.0 / len(step[spk]) for spk, _ in chunk])
        with bayes.sampling(system.model, sample):
            per_utt = utterance_loss(system, [t for _, t in chunk], row_ids, cfg.loss, cfg.si_kl,
                                     cfg.entropy_weight, cfg.entropy_temperature)
        loss = speaker_balanced(per_utt, weights)
        loss.backward()
        total += float(loss.detach())
    if sample:
        speakers = list(step)
        kl = bayes.kl_to_prior(system.model, torch.tensor([rows[s] for s in speakers]))
        scale = torch.tensor([cfg.kl_weight / n_utts[s] for s in speakers])
        loss = (kl * scale.to(kl.device)).sum()
        loss.backward()
        total += float(loss.detach())
    return total


def _utterances_per_speaker(plan) -> dict[str, int]:
    """Each speaker's number of distinct adaptation utterances in the plan (whatever the
    number of passes, which `steps_per_speaker` may cut short)."""
    seen = defaultdict(set)
    for step in plan:
        for spk, batch in step.items():
            seen[spk].update(id(target) for target in batch)
    return {spk: len(ids) for spk, ids in seen.items()}


def _no_cudnn(device: torch.device):
    # cuDNN refuses RNN backward in eval mode; adaptation needs eval mode, so use native kernels.
    if device.type == "cuda":
        return torch.backends.cudnn.flags(enabled=False)
    return contextlib.nullcontext()
