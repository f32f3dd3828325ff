"""AsrSystem: a trained CTC model with its text encoder, seen from the adaptation side.

Adaptation needs four things of a model: log-posteriors for a batch of utterances under given
LHUC rows, greedy hypotheses with a confidence, CTC targets from text, and eval mode with only
LHUC trainable. This wrapper gives exactly those over `asr_lhuc.model.CTCAcousticModel`.
"""

import torch
from torch import nn
from torchaudio.functional import forced_align

import lhuc
from asr_lhuc.decode import beam_nbest, beam_texts, nbest_searcher
from asr_lhuc.device import pick_device

from .cache import PrefixCache
from .utterances import SpeakerUtterance, pad_batch

SPACE_LABELS = (" ", "<space>", "|", "_")


class AsrSystem:
    """`model(wavs, rel_lens) -> (log_probs (B, T, V), rel_lens)` plus a SpeechBrain
    `CTCTextEncoder` over characters (blank included)."""

    def __init__(self, model: nn.Module, text_encoder, device: str | torch.device | None = None,
                 searcher=None, cache: bool = False, lexicon=None, snap_outputs: bool = True):
        if not lhuc.lhuc_tables(model):
            raise ValueError("the model has no LHUC attached: attach it (SI models too) before "
                             "adaptation, e.g. with the recipe's lhuc target list")
        self.device = pick_device(device)
        self.model = model.to(self.device)
        self.text_encoder = text_encoder
        self.searcher = searcher  # asr_lhuc.decode.make_beam_searcher(...) or None: greedy
        self.cache = PrefixCache(self.model) if cache else None
        self.lexicon = lexicon  # a `Lexicon` for adaptation targets (and outputs), or None
        self.snap_outputs = snap_outputs  # also snap the hypotheses that are scored
        self.blank = text_encoder.get_blank_index()
        labels = text_encoder.lab2ind
        pieces = [lab for i, lab in text_encoder.ind2lab.items()
                  if i != self.blank and len(lab) > 1 and lab not in SPACE_LABELS]
        if pieces:
            raise ValueError(f"adaptation works on character units; this model's outputs are "
                             f"subword pieces ({pieces[:3]}...): train it with units: characters")
        self.space = next((s for s in SPACE_LABELS if s in labels), None)
        self.space_id = labels[self.space] if self.space is not None else -1  # -1: no separator

    def freeze(self) -> list[nn.Parameter]:
        """Eval mode everywhere (no dropout, frozen BatchNorm/normalisation statistics) and
        only LHUC parameters trainable; returns those parameters."""
        freeze = getattr(self.model, "freeze_for_adaptation", None)
        if freeze is not None:
            freeze()
        self.model.eval()
        return lhuc.freeze_non_lhuc(self.model)

    def log_probs(self, utts: list[SpeakerUtterance], ids: torch.Tensor | None):
        """(log_probs (B, T, V), frame counts (B,)) with LHUC rows `ids` (None: SI row)."""
        if self.cache is not None:
            return self.cache.log_probs(utts, ids, self.device)
        wavs, rel = pad_batch(utts)
        with lhuc.identities(self.model, ids):
            log_probs, out_rel = self.model(wavs.to(self.device), rel.to(self.device))
        frames = torch.round(out_rel * log_probs.shape[1]).long().clamp(1, log_probs.shape[1])
        return log_probs, frames

    @property
    def beam_size(self) -> int:
        """The first pass's beam (1: greedy decoding)."""
        return 1 if self.searcher is None else self.searcher.beam_size

    def _batches(self, utts: list[SpeakerUtterance], ids: torch.Tensor | None,
                 batch_size: int):
        """(log_probs, frames) of `utts` in batches of `batch_size`, with LHUC rows `ids`."""
        for start in range(0, len(utts), batch_size):
            part_ids = None if ids is None else ids[start: start + batch_size]
            yield self.log_probs(utts[start: start + batch_size], part_ids)

    def _confidences(self, log_probs: torch.Tensor, frames: torch.Tensor) -> list[float]:
        return [confidence(log_probs[b, :n].cpu(), self.blank)
                for b, n in enumerate(frames.tolist())]

    @torch.no_grad()
    def decode(self, utts: list[SpeakerUtterance], ids: torch.Tensor | None = None,
               batch_size: int = 16, snap: bool | None = None) -> tuple[list[str], list[float]]:
        """Greedy (or beam, with a searcher) hypotheses and their confidences (`confidence`).

        With a lexicon, words are snapped to it when `snap` (default: `snap_outputs`); adaptation
        targets ask for snap=True.
        """
        hyps, confs = [], []
        for log_probs, frames in self._batches(utts, ids, batch_size):
            if self.searcher is None:
                best = log_probs.argmax(-1).cpu()
                hyps += [self.ids_to_text(collapse(best[b, :n].tolist(), self.blank))
                         for b, n in enumerate(frames.tolist())]
            else:
                hyps += beam_texts(log_probs, frames / log_probs.shape[1], self.searcher)[0]
            confs += self._confidences(log_probs, frames)
        if self.lexicon is not None and (self.snap_outputs if snap is None else snap):
            hyps = [self.lexicon.correct(h) for h in hyps]
        return hyps, confs

    @torch.no_grad()
    def decode_nbest(self, utts: list[SpeakerUtterance], n: int,
                     ids: torch.Tensor | None = None, batch_size: int = 16
                     ) -> tuple[list[list[tuple[str, float]]], list[float]]:
        """Each utterance's `n` best distinct hypotheses as (text, total decoder score), best
        first, and its confidence; snapped to the lexicon where there is one (targets)."""
        if self.searcher is None:
            raise ValueError(f"nbest {n} needs a beam-search first pass, but this system decodes "
                             "greedily: set beam_size > 1 (e.g. 10) or nbest: 1")
        searcher = nbest_searcher(self.searcher, n)
        lists, confs = [], []
        for log_probs, frames in self._batches(utts, ids, batch_size):
            lists += beam_nbest(log_probs, frames / log_probs.shape[1], searcher)
            confs += self._confidences(log_probs, frames)
        if self.lexicon is not None:
            lists = [[(self.lexicon.correct(t), s) for t, s in hyps] for hyps in lists]
        return lists, confs

    @torch.no_grad()
    def confidences(self, utts: list[SpeakerUtterance], ids: torch.Tensor | None = None,
                    batch_size: int = 16) -> list[float]:
        """`confidence` per utterance, without decoding (targets that need no text)."""
        return [c for log_probs, frames in self._batches(utts, ids, batch_size)
                for c in self._confidences(log_probs, frames)]

    @torch.no_grad()
    def best_paths(self, utts: list[SpeakerUtterance], ids: torch.Tensor | None = None,
                   batch_size: int = 16) -> list[torch.Tensor]:
        """Frame labels (T,) of the best path per utterance (blanks included): the first pass's
        own alignment of its greedy hypothesis, usable as frame-level targets."""
        paths = []
        for log_probs, frames in self._batches(utts, ids, batch_size):
            best = log_probs.argmax(-1).cpu()
            paths += [best[b, :n] for b, n in enumerate(frames.tolist())]
        return paths

    @torch.no_grad()
    def aligned_paths(self, utts: list[SpeakerUtterance], targets: list[torch.Tensor],
                      ids: torch.Tensor | None = None, batch_size: int = 16
                      ) -> list[tuple[torch.Tensor, torch.Tensor] | None]:
        """Per utterance, the CTC Viterbi alignment of `targets[i]` (ids) to the posteriors with
        rows `ids`: (frame labels (T,), each frame's posterior of its label (T,)); None where
        the target cannot be aligned (empty, or longer than the frames allow)."""
        pending, out = iter(targets), []
        for log_probs, frames in self._batches(utts, ids, batch_size):
            out += [align(log_probs[b, :n].float().cpu(), next(pending), self.blank)
                    for b, n in enumerate(frames.tolist())]
        return out

    def ids_to_text(self, ids: list[int]) -> str:
        labels = self.text_encoder.decode_ndim(ids)
        text = "".join(" " if lab == self.space else lab for lab in labels)
        return " ".join(text.split())

    def text_to_ids(self, text: str) -> torch.Tensor:
        """CTC target ids for `text`; characters the encoder does not know are dropped."""
        labels = self.text_encoder.lab2ind
        chars = [self.space if c == " " else c for c in " ".join(text.split())]
        return torch.tensor([labels[c] for c in chars if c in labels], dtype=torch.long)


def collapse(best: list[int], blank: int) -> list[int]:
    """CTC greedy rule: merge repeats, then drop blanks."""
    out, prev = [], None
    for token in best:
        if token != prev and token != blank:
            out.append(token)
        prev = token
    return out


def align(log_probs: torch.Tensor, target: torch.Tensor, blank: int
          ) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(labels (T,), posteriors (T,)) of the best CTC path of `target` through `log_probs`
    (T, V), or None if there is none (an empty target, or too few frames)."""
    repeats = int((target[1:] == target[:-1]).sum()) if len(target) > 1 else 0
    if len(target) == 0 or len(target) + repeats > log_probs.shape[0]:
        return None
    labels, scores = forced_align(log_probs[None], target[None].long(), blank=blank)
    return labels[0], scores[0].exp()


def confidence(log_probs: torch.Tensor, blank: int) -> float:
    """Mean best-path posterior over the frames whose best label is not blank (0 if none).

    Blank frames are left out: they dominate CTC outputs and are confident even on garbage.
    """
    best, labels = log_probs.max(-1)
    speech = labels != blank
    if not bool(speech.any()):
        return 0.0
    return float(best[speech].exp().mean())
