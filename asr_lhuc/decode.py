"""Character units and CTC decoding (greedy or beam search) with confidences.

Units are characters of the normalised text (`asr_lhuc.data.normalize_text`: upper case,
apostrophes, spaces), plus the CTC blank at
index 0, held by SpeechBrain's `CTCTextEncoder`. Beam search is SpeechBrain's without an LM, and
flashlight-text's with the word n-gram (`asr_lhuc.lm_decoder`: KenLM in a prebuilt wheel).
"""

import copy
from typing import TYPE_CHECKING

import torch
from speechbrain.dataio.encoder import CTCTextEncoder
from speechbrain.decoders.ctc import CTCBeamSearcher, ctc_greedy_decode

import lhuc

if TYPE_CHECKING:  # flashlight-text is imported only when an LM is used
    from .lm_decoder import NgramBeamSearcher

    Searcher = CTCBeamSearcher | NgramBeamSearcher

BLANK = "<blank>"
DEFAULT_CHARACTERS = " 'ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def make_text_encoder(characters: str | list[str] = DEFAULT_CHARACTERS) -> CTCTextEncoder:
    """A `CTCTextEncoder` with the blank at index 0 followed by `characters`."""
    encoder = CTCTextEncoder()
    encoder.insert_blank(BLANK, index=0)
    for char in characters:
        encoder.add_label(char)
    return encoder


def characters_of(encoder: CTCTextEncoder) -> list[str]:
    """The characters of `encoder` by index, without the blank."""
    return [encoder.ind2lab[i] for i in range(1, len(encoder))]


def make_beam_searcher(encoder: CTCTextEncoder, beam_size: int = 10,
                       kenlm_model_path: str | None = None, alpha: float = 0.5,
                       beta: float = 1.0, topk: int = 1) -> "Searcher":
    """CTC beam search over the encoder's characters; `topk` > 1 returns an n-best
    list. With `kenlm_model_path` (an ARPA word n-gram) it is flashlight-text's decoder with
    the LM (weight `alpha`, word bonus `beta`), else SpeechBrain's searcher (without history
    pruning for an n-best, which would thin it out)."""
    vocab = [encoder.ind2lab[i] for i in range(len(encoder))]
    if kenlm_model_path:
        from .lm_decoder import NgramBeamSearcher

        return NgramBeamSearcher(vocab, kenlm_model_path, beam_size, alpha, beta, topk)
    vocab[0] = ""  # the blank emits nothing
    return CTCBeamSearcher(blank_index=0, vocab_list=vocab, space_token=" ",
                           beam_size=beam_size, topk=topk, prune_history=topk == 1)


def greedy_texts(log_probs: torch.Tensor, rel_lens: torch.Tensor,
                 encoder: CTCTextEncoder) -> list[str]:
    """Best path decoding: argmax per frame, merge repeats, drop blanks."""
    sequences = ctc_greedy_decode(log_probs, rel_lens, blank_id=0)
    return [" ".join("".join(encoder.decode_ndim(seq)).split()) for seq in sequences]


def beam_texts(log_probs: torch.Tensor, rel_lens: torch.Tensor,
               searcher: "Searcher") -> tuple[list[str], list[float]]:
    """Beam-search texts and their scores (log domain) for a batch."""
    hyps = searcher(log_probs.float().cpu(), rel_lens.float().cpu())
    texts = [" ".join(h[0].text.split()) if h else "" for h in hyps]
    scores = [float(h[0].score) if h else float("-inf") for h in hyps]
    return texts, scores


def beam_nbest(log_probs: torch.Tensor, rel_lens: torch.Tensor,
               searcher: "Searcher") -> list[list[tuple[str, float]]]:
    """Per utterance, the searcher's `topk` hypotheses as (text, total score), best first.

    The total score is `lm_score`: acoustic + LM for both searchers (flashlight's `score`
    already holds both; SpeechBrain's `score` is the acoustic part alone)."""
    hyps = searcher(log_probs.float().cpu(), rel_lens.float().cpu())
    return [[(" ".join(h.text.split()), float(h.lm_score)) for h in nbest] for nbest in hyps]


def nbest_searcher(searcher: "Searcher", n: int) -> "Searcher":
    """A copy of `searcher` that returns up to `n` hypotheses per utterance (the beam's size
    at most). SpeechBrain's then keeps histories the 1-best search prunes (as
    `make_beam_searcher` does for topk > 1), which would thin out the n-best."""
    if n > searcher.beam_size:
        raise ValueError(f"nbest {n} > beam_size {searcher.beam_size}: the beam holds at most "
                         f"{searcher.beam_size} hypotheses; raise beam_size or lower nbest")
    wider = copy.copy(searcher)
    wider.topk = n
    if isinstance(wider, CTCBeamSearcher) and n > 1:
        wider.prune_history = False
    return wider


def confidence(log_probs: torch.Tensor, rel_lens: torch.Tensor) -> torch.Tensor:
    """Per-utterance confidence in [0, 1]: the mean over frames of the best posterior.

    Blank-dominated frames are confident too; it is a cheap proxy that tracks WER on real data.
    """
    best = log_probs.detach().max(dim=-1).values.exp()  # (B, T)
    frames = torch.arange(best.shape[1], device=best.device)
    n_valid = (rel_lens.to(best.device) * best.shape[1]).round().clamp(min=1)
    mask = frames.unsqueeze(0) < n_valid.unsqueeze(1)
    return (best * mask).sum(dim=1) / n_valid


@torch.no_grad()
def decode_with_confidence(model, wavs: torch.Tensor, wav_lens: torch.Tensor,
                           encoder: CTCTextEncoder, speaker_ids=None,
                           searcher: "Searcher | None" = None):
    """Transcribe a batch; return (texts, confidences (B,)).

    `speaker_ids`: LongTensor (B,) of LHUC rows, or None for the SI row (SI-mode decoding of a
    SAT-LHUC model; the first pass of unsupervised adaptation). Ignored without LHUC.
    `searcher`: a `make_beam_searcher` result, or None for greedy decoding.
    The model is put in eval mode for the pass and restored afterwards.
    """
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        wavs, wav_lens = wavs.to(device), wav_lens.to(device)
        with lhuc.identities(model, speaker_ids):
            log_probs, rel_lens = model(wavs, wav_lens)
    finally:
        model.train(was_training)
    if searcher is None:
        texts = greedy_texts(log_probs, rel_lens, encoder)
    else:
        texts, _ = beam_texts(log_probs, rel_lens, searcher)
    return texts, confidence(log_probs, rel_lens).cpu()


def decode(model, wavs: torch.Tensor, wav_lens: torch.Tensor, encoder: CTCTextEncoder,
           speaker_ids=None, searcher: "Searcher | None" = None) -> list[str]:
    """Transcribe a batch of waveforms (see `decode_with_confidence`)."""
    return decode_with_confidence(model, wavs, wav_lens, encoder, speaker_ids, searcher)[0]
