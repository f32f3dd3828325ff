"""AdaptConfig: every knob of unsupervised LHUC adaptation, filled from the recipe's YAML."""

from dataclasses import asdict, dataclass, fields

LOSSES = ("ctc", "frame_ce", "entropy")


@dataclass
class AdaptConfig:
    """How speakers are adapted.

    Args:
        optimizer: "adam" or "sgd" (torch.optim), over the LHUC rows only.
        lr: learning rate.
        epochs: passes over each speaker's adaptation utterances.
        steps_per_speaker: if set, exactly this many update steps per speaker whatever its amount
            of data (as many shuffled passes as that takes, the last one cut short) instead of
            `epochs` passes: with `epochs`, less data also means fewer updates, which confounds
            a comparison of data amounts.
        batch_size: utterances of one speaker per update step.
        max_batch_utts: utterances per forward pass (a step larger than this is accumulated).
        targets: "first_pass" (unsupervised: the decoded hypotheses), "oracle" (transcripts),
            or "external" (unsupervised: another recogniser's hypotheses, `hypotheses_file`).
        hypotheses_file: JSON {utterance id: text} for targets "external" (e.g. written by
            benchmarks/whisper_reference_wer.py); utterances missing from it count as empty.
        target_noise: with oracle targets, replace this fraction of characters by random
            letters (seeded): targets of a known error rate, to measure how good a first pass
            must be for adaptation to pay off.
        loss: "ctc" on the target texts, "frame_ce": cross-entropy on the first pass's own
            best-path frame labels (frame-level targets, as hybrid systems used; first_pass
            only), or "entropy": the mean frame entropy of the outputs alone (SUTA, Lin et al.
            2022: no hypotheses, so nothing is decoded for targets).
        frame_labels: the frame labels of loss "frame_ce": "best_path", the first pass's own
            argmax path (first-pass targets only), or "aligned", the target text force-aligned
            (CTC Viterbi) to the first pass's posteriors, so the labels spell the target even
            where beam search with an LM, or the lexicon, changed it; any targets.
        word_confidence: with frame_labels "aligned": a word's confidence is the mean posterior
            of its aligned characters' frames; the frames of words below this are left out of
            the loss (an utterance with no word left is dropped as low-confidence). 0 keeps all.
        nbest: first-pass targets from each utterance's `nbest` best distinct beam-search
            hypotheses y_n; the CTC loss becomes sum_n w_n * CTC(y_n), w = softmax(nbest_scale
            * total decoder score). Needs beam search (beam_size >= nbest); 1: the 1-best.
        nbest_scale: scale of the decoder scores (natural-log acoustic + LM) in the N-best
            weights: 1 is the decoder's own posterior, < 1 flattens it, 0 weighs all equally.
        entropy_weight: adds this times the mean frame entropy of the (temperature-scaled)
            output posteriors to the loss (entropy minimisation, SUTA); 0 turns it off.
        entropy_temperature: the entropy is that of softmax(logits / T) (SUTA smooths with T > 1).
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
    steps_per_speaker: int | None = None
    max_batch_utts: int = 64
    targets: str = "first_pass"
    hypotheses_file: str | None = None
    target_noise: float = 0.0
    loss: str = "ctc"
    frame_labels: str = "best_path"
    word_confidence: float = 0.0
    nbest: int = 1
    nbest_scale: float = 1.0
    entropy_weight: float = 0.0
    entropy_temperature: float = 1.0
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
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        self._check_frame_labels()
        self._check_nbest()
        self._check_entropy()
        if self.steps_per_speaker is not None and self.steps_per_speaker < 1:
            raise ValueError(f"steps_per_speaker must be >= 1 (or null for `epochs` passes), "
                             f"got {self.steps_per_speaker}")
        if not 0.0 < self.top_fraction <= 1.0:
            raise ValueError(f"top_fraction must lie in (0, 1], got {self.top_fraction}")
        if self.prior_std is not None and (self.prior_std <= 0 or self.posterior_init_std <= 0):
            raise ValueError("prior_std and posterior_init_std must be > 0 (or prior_std null)")
        if not 0.0 <= self.si_kl < 1.0:
            raise ValueError(f"si_kl must lie in [0, 1), got {self.si_kl}")
        if self.epochs < 0 or self.batch_size < 1 or self.rounds < 1:
            raise ValueError("need epochs >= 0, batch_size >= 1 and rounds >= 1")

    def _check_frame_labels(self):
        if self.frame_labels not in ("best_path", "aligned"):
            raise ValueError("frame_labels must be 'best_path' or 'aligned', "
                             f"got {self.frame_labels!r}")
        if self.loss == "frame_ce" and self.frame_labels == "best_path" \
                and self.targets != "first_pass":
            raise ValueError(f"loss frame_ce on the best path needs first-pass targets (targets "
                             f"are {self.targets!r}): set frame_labels: aligned to align them")
        if not 0.0 <= self.word_confidence <= 1.0:
            raise ValueError(f"word_confidence must lie in [0, 1], got {self.word_confidence}")
        if self.word_confidence > 0 and (self.loss != "frame_ce" or self.frame_labels != "aligned"):
            raise ValueError("word_confidence leaves low-confidence words' frames out of the frame "
                             "loss: it needs loss: frame_ce and frame_labels: aligned (got loss "
                             f"{self.loss!r}, frame_labels {self.frame_labels!r})")

    def _check_nbest(self):
        if self.nbest < 1:
            raise ValueError(f"nbest must be >= 1 (1: the 1-best), got {self.nbest}")
        if not 0.0 <= self.nbest_scale < float("inf"):
            raise ValueError(f"nbest_scale must be finite and >= 0, got {self.nbest_scale}")
        if self.nbest > 1 and (self.targets != "first_pass" or self.loss != "ctc"):
            raise ValueError(f"nbest {self.nbest} weighs first-pass hypotheses in the CTC loss: it "
                             "needs targets: first_pass and loss: ctc (got targets "
                             f"{self.targets!r}, loss {self.loss!r}); set nbest: 1")

    def _check_entropy(self):
        if self.entropy_weight < 0:
            raise ValueError(f"entropy_weight must be >= 0 (0: off), got {self.entropy_weight}")
        if self.entropy_temperature <= 0:
            raise ValueError(f"entropy_temperature must be > 0, got {self.entropy_temperature}")
        if self.loss == "entropy" and self.entropy_weight > 0:
            raise ValueError("entropy_weight adds the entropy to a target loss; loss 'entropy' is "
                             "the entropy alone: set entropy_weight: 0 (or loss: ctc)")
        if self.loss == "entropy" and self.rounds > 1:
            raise ValueError("rounds > 1 re-decode the targets, and loss 'entropy' has none: "
                             "set rounds: 1")

    def check_decoder(self, beam_size: int) -> None:
        """Refuse, before any decoding, an N-best that the first pass cannot give."""
        if self.nbest > 1 and beam_size < self.nbest:
            how = "decodes greedily" if beam_size <= 1 else f"has beam_size {beam_size}"
            raise ValueError(f"nbest {self.nbest} needs N-best lists from beam search, but the "
                             f"first pass {how}: set beam_size >= {self.nbest} (e.g. 10) or "
                             "nbest: 1")

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
