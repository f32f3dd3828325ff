"""Adaptation targets: first-pass hypotheses (or transcripts, for the oracle) and confidence
filtering. Speakers left with nothing usable are reported, never an error; a hypotheses file
that lacks some of the utterances is (it was decoded on other data)."""

import json
import logging
import random
import string
from dataclasses import dataclass, field

import torch

from asr_lhuc.data import normalize_text

from .config import AdaptConfig
from .system import AsrSystem
from .utterances import SpeakerUtterance

logger = logging.getLogger(__name__)


@dataclass
class Target:
    """An utterance with the text it is adapted towards and that text's CTC ids."""

    utt: SpeakerUtterance
    text: str
    ids: torch.Tensor
    confidence: float = 1.0
    frames: torch.Tensor | None = None  # frame labels of the first pass (loss: frame_ce)
    # N-best targets (nbest > 1): the ids of each distinct hypothesis, best first (the first is
    # `ids`), and their posterior weights (N,), summing to 1; None: the 1-best alone
    nbest: list[torch.Tensor] | None = None
    weights: torch.Tensor | None = None


@dataclass
class TargetReport:
    """What target selection kept and dropped, per speaker."""

    kept: dict[str, int] = field(default_factory=dict)
    empty: dict[str, int] = field(default_factory=dict)
    low_confidence: dict[str, int] = field(default_factory=dict)

    @property
    def unusable_speakers(self) -> list[str]:
        return sorted(s for s, n in self.kept.items() if n == 0)


def make_targets(system: AsrSystem, speakers: dict[str, list[SpeakerUtterance]],
                 cfg: AdaptConfig, ids: dict[str, int] | None = None
                 ) -> tuple[dict[str, list[Target]], TargetReport]:
    """Targets per speaker. First pass with each speaker's row in `ids` (None/absent: SI row).

    Hypotheses that are empty (or have no known character) are dropped; then confidence
    filtering keeps hypotheses with confidence >= `cfg.min_confidence`, and the most confident
    `cfg.top_fraction` of each speaker (rounded up). With loss "entropy" nothing is decoded:
    every utterance is a target (text-less), selected by confidence alike.
    """
    targets, report = {}, TargetReport()
    external = load_hypotheses(cfg.hypotheses_file) if cfg.targets == "external" else None
    if external is not None:
        check_coverage(external, speakers, cfg.hypotheses_file)
    for spk, utts in speakers.items():
        row = None if ids is None or spk not in ids else torch.full((len(utts),), ids[spk])
        candidates = speaker_candidates(system, utts, cfg, external, row)
        usable = [t for t in candidates if len(t.ids) > 0 or cfg.loss == "entropy"]
        report.empty[spk] = len(candidates) - len(usable)
        kept = select_confident(usable, cfg.min_confidence, cfg.top_fraction)
        if cfg.word_confidence > 0:  # an utterance none of whose words is confident enough
            kept = [t for t in kept if has_a_word(t.frames, system.blank, system.space_id)]
        report.low_confidence[spk] = len(usable) - len(kept)
        report.kept[spk] = len(kept)
        targets[spk] = kept
    return targets, report


def speaker_candidates(system: AsrSystem, utts: list[SpeakerUtterance], cfg: AdaptConfig,
                       external: dict[str, str] | None, row: torch.Tensor | None
                       ) -> list[Target]:
    """One speaker's targets before selection, as `cfg` asks (see `make_targets`)."""
    if cfg.loss == "entropy":
        no_text = torch.zeros(0, dtype=torch.long)
        return [Target(u, "", no_text, c) for u, c in zip(utts, system.confidences(utts, row))]
    if cfg.targets == "first_pass" and cfg.nbest > 1:
        lists, confs = system.decode_nbest(utts, cfg.nbest, row)
        return [nbest_target(system, u, hyps, c, cfg.nbest_scale)
                for u, hyps, c in zip(utts, lists, confs)]
    if cfg.targets == "oracle":
        texts = [corrupt(u.text, cfg.target_noise, f"{cfg.seed}/{u.id}") for u in utts]
        confs = [1.0] * len(utts)
    elif external is not None:
        texts = [normalize_text(external.get(u.id, "")) for u in utts]
        confs = [1.0] * len(utts)
    else:
        texts, confs = system.decode(utts, row, snap=True)
    candidates = [Target(u, t, system.text_to_ids(t), c) for u, t, c in zip(utts, texts, confs)]
    if cfg.loss == "frame_ce" and cfg.frame_labels == "aligned":
        paths = system.aligned_paths(utts, [t.ids for t in candidates], row)
        for target, path in zip(candidates, paths):
            target.frames = (torch.full((0,), IGNORED) if path is None else
                             confident_word_frames(*path, system.blank, system.space_id,
                                                   cfg.word_confidence))
    elif cfg.loss == "frame_ce":
        for target, path in zip(candidates, system.best_paths(utts, row)):
            target.frames = path
    return candidates


IGNORED = -100  # the frame label that F.nll_loss leaves out (its ignore_index)


def has_a_word(frames: torch.Tensor, blank: int, space: int) -> bool:
    """Whether frame labels keep a character (not only blanks, spaces and left-out frames)."""
    return bool(((frames != IGNORED) & (frames != blank) & (frames != space)).any())


def confident_word_frames(labels: torch.Tensor, posteriors: torch.Tensor, blank: int,
                          space: int, threshold: float) -> torch.Tensor:
    """Frame labels with the frames of low-confidence words set to IGNORED.

    A word is a run of aligned character frames between spaces (blank frames inside it
    included); its confidence is the mean posterior of those character frames. The blank and
    space frames around words stay: they are labels too, and mostly right."""
    labels = labels.clone()
    word = torch.cumsum(labels == space, 0)  # each frame's word: spaces separate them
    is_char = (labels != blank) & (labels != space)
    for w in word[is_char].unique():
        frames = (is_char & (word == w)).nonzero().squeeze(1)
        if float(posteriors[frames].mean()) < threshold:
            labels[frames[0]: frames[-1] + 1] = IGNORED
    return labels


def nbest_weights(scores: list[float], scale: float) -> torch.Tensor:
    """Posterior weights softmax(scale * scores) (N,) of an N-best list's total scores."""
    return torch.softmax(scale * torch.tensor(scores, dtype=torch.float64), dim=0).float()


def nbest_target(system: AsrSystem, utt: SpeakerUtterance, hyps: list[tuple[str, float]],
                 confidence: float, scale: float) -> Target:
    """A target over an N-best list [(text, score)], best first.

    Hypotheses that became one text (snapped to the lexicon) pool their weights; empty ones
    (no known character) are dropped and the rest renormalised, so an utterance is empty only
    when all its hypotheses are (with one hypothesis: exactly the 1-best rule)."""
    pooled: dict[str, float] = {}
    for (text, _), weight in zip(hyps, nbest_weights([s for _, s in hyps], scale).tolist()):
        pooled[text] = pooled.get(text, 0.0) + weight
    ids = {text: system.text_to_ids(text) for text in pooled}
    texts = [text for text in pooled if len(ids[text]) > 0]
    if not texts:
        return Target(utt, hyps[0][0] if hyps else "", torch.zeros(0, dtype=torch.long),
                      confidence)
    weights = torch.tensor([pooled[t] for t in texts])
    return Target(utt, texts[0], ids[texts[0]], confidence, nbest=[ids[t] for t in texts],
                  weights=weights / weights.sum())


def load_hypotheses(path: str) -> dict[str, str]:
    """{utterance id: text} from a JSON file (a mapping, or {"hypotheses": mapping})."""
    with open(path) as f:
        data = json.load(f)
    data = data.get("hypotheses", data) if isinstance(data, dict) else data
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise ValueError(f"{path}: expected a JSON object mapping utterance ids to texts")
    return data


def check_coverage(hypotheses: dict[str, str], speakers: dict[str, list[SpeakerUtterance]],
                   path: str) -> None:
    """A speaker with no hypothesis at all is an error: the file was decoded on other data, and
    every such speaker would silently keep the baseline's output as its "adapted" result.
    Single missing utterances are counted as empty targets, with a warning."""
    missing = {spk: [u.id for u in utts if u.id not in hypotheses]
               for spk, utts in speakers.items()}
    uncovered = sorted(spk for spk, ids in missing.items() if len(ids) == len(speakers[spk]))
    if uncovered:
        raise ValueError(
            f"hypotheses_file {path} has no hypothesis for any utterance of {len(uncovered)} of "
            f"the {len(speakers)} test speakers ({uncovered[:3]}; first missing id: "
            f"{missing[uncovered[0]][0]!r}): it was decoded on other data. Decode this test set "
            "with the other recogniser (e.g. the speechocean762 recipe's local/ensemble.py "
            "--test_csv <this YAML's test_csv>) and give that file")
    n_missing = sum(len(ids) for ids in missing.values())
    if n_missing:
        logger.warning("hypotheses_file %s lacks %d utterances (first: %s): they are not adapted "
                       "on", path, n_missing, next(ids[0] for ids in missing.values() if ids))


def corrupt(text: str, rate: float, seed: str) -> str:
    """`text` with each non-space character replaced by a random other letter with prob. `rate`."""
    if rate <= 0:
        return text
    rng = random.Random(seed)
    return "".join(c if c == " " or rng.random() >= rate
                   else rng.choice([x for x in string.ascii_uppercase if x != c]) for c in text)


def select_confident(targets: list[Target], min_confidence: float,
                     top_fraction: float) -> list[Target]:
    """Targets with confidence >= min_confidence, then the top `top_fraction` by confidence
    (original order kept)."""
    above = [t for t in targets if t.confidence >= min_confidence]
    n_keep = -(-len(above) * top_fraction // 1)  # ceil without float surprises at 1.0
    best = sorted(above, key=lambda t: -t.confidence)[: int(n_keep)]
    chosen = {id(t) for t in best}
    return [t for t in above if id(t) in chosen]
