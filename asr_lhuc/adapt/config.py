"""AdaptConfig: every knob of unsupervised LHUC adaptation, filled from the recipe's YAML."""

from dataclasses import asdict, dataclass, fields


@dataclass
class AdaptConfig:
    """How speakers are adapted.

    Args:
        optimizer: "adam" or "sgd" (torch.optim), over the LHUC rows only.
        lr: learning rate.
        epochs: passes over each speaker's adaptation utterances.
        batch_size: utterances of one speaker per update step.
        max_batch_utts: utterances per forward pass (a step larger than this is accumulated).
        targets: "first_pass" (unsupervised: the decoded hypotheses), "oracle" (transcripts),
            or "external" (unsupervised: another recogniser's hypotheses, `hypotheses_file`).
        hypotheses_file: JSON {utterance id: text} for targets "external" (e.g. written by
            benchmarks/whisper_reference_wer.py); utterances missing from it count as empty.
        target_noise: with oracle targets, replace this fraction of characters by random
            letters (seeded): targets of a known error rate, to measure how good a first pass
            must be for adaptation to pay off.
        loss: "ctc" on the target texts, or "frame_ce": cross-entropy on the first pass's own
            best-path frame labels (frame-level targets, as hybrid systems used; first_pass only).
        min_confidence: drop first-pass hypotheses whose confidence is below this (0 keeps all).
        top_fraction: keep only this fraction of each speaker's most confident hypotheses.
        rounds: adapt -> re-decode with the adapted rows -> adapt again (from `row_init`, on
            the new targets), this many times.
        max_adapt_seconds: use at most this much audio per speaker for adaptation (None: all).
        online_epochs: online mode: passes over the utterances so far after each new one (the
            row is warm-started, so a few passes per utterance add up quickly).
        row_init: new speakers' rows start at amplitude 1 ("one") or at the SI row ("si").
        prior_std: Bayesian LHUC (`lhuc.bayes`) when set: each speaker's row gets a Gaussian
            posterior, with a prior of this standard deviation around the SI row; decoding
            uses the posterior mean. None: plain LHUC.
        posterior_init_std: the posterior's starting standard deviation (Bayesian LHUC).
        kl_weight: weight of the KL(posterior || prior) term, per adaptation utterance.
        si_kl: rho in [0, 1): the loss becomes (1 - rho) * loss + rho * KL(SI outputs ||
            adapted outputs) per frame (Yu et al. 2013); 0 turns it off.
        seed: seeds the order of each speaker's mini-batches.
    """

    optimizer: str = "adam"
    lr: float = 0.01
    epochs: int = 5
    batch_size: int = 8
    max_batch_utts: int = 64
    targets: str = "first_pass"
    hypotheses_file: str | None = None
    target_noise: float = 0.0
    loss: str = "ctc"
    min_confidence: float = 0.0
    top_fraction: float = 1.0
    rounds: int = 1
    max_adapt_seconds: float | None = None
    online_epochs: int = 1
    row_init: str = "one"
    prior_std: float | None = None
    posterior_init_std: float = 0.05
    kl_weight: float = 1.0
    si_kl: float = 0.0
    seed: int = 1234

    def __post_init__(self):
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")
        if self.targets not in ("first_pass", "oracle", "external"):
            raise ValueError("targets must be 'first_pass', 'oracle' or 'external', "
                             f"got {self.targets!r}")
        if self.targets == "external" and not self.hypotheses_file:
            raise ValueError("targets 'external' needs hypotheses_file (JSON: utt id -> text)")
        if self.loss not in ("ctc", "frame_ce"):
            raise ValueError(f"loss must be 'ctc' or 'frame_ce', got {self.loss!r}")
        if self.loss == "frame_ce" and self.targets != "first_pass":
            raise ValueError("loss frame_ce needs first-pass targets (no alignment of transcripts)")
        if not 0.0 < self.top_fraction <= 1.0:
            raise ValueError(f"top_fraction must lie in (0, 1], got {self.top_fraction}")
        if self.prior_std is not None and (self.prior_std <= 0 or self.posterior_init_std <= 0):
            raise ValueError("prior_std and posterior_init_std must be > 0 (or prior_std null)")
        if not 0.0 <= self.si_kl < 1.0:
            raise ValueError(f"si_kl must lie in [0, 1), got {self.si_kl}")
        if self.epochs < 0 or self.batch_size < 1 or self.rounds < 1:
            raise ValueError("need epochs >= 0, batch_size >= 1 and rounds >= 1")

    @classmethod
    def from_dict(cls, values: dict | None) -> "AdaptConfig":
        """Build from a YAML mapping; unknown keys are an error naming them."""
        values = dict(values or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown adaptation options {unknown}; known: {sorted(known)}")
        return cls(**values)

    def replace(self, **changes) -> "AdaptConfig":
        return AdaptConfig(**{**asdict(self), **changes})

    def to_dict(self) -> dict:
        return asdict(self)
