"""CTC beam search with a word n-gram, on torchaudio's `ctc_decoder` (flashlight-text's decoder).

flashlight-text ships as a prebuilt wheel with KenLM inside, so the ARPA word n-gram of
`asr_lhuc.lm` is read and scored in C++ without building `kenlm` from source. The decoder is
flashlight's lexicon-free CTC beam search over the model's characters; the LM it calls per
character (`SpelledWordLM`) spells words out of them and scores a word
when it ends, as SpeechBrain's KenLM searcher did (pyctcdecode's scheme), so the output
vocabulary stays open:

- a finished word w after history h adds ``alpha * ln P(w | h) + beta`` (ARPA log10 scores are
  turned into natural log, as the acoustic scores are); a word outside the LM's vocabulary
  also pays ``unk_offset`` (log10 units, like KenLM's own <unk> probability, so scaled by alpha);
- the word being spelled pays ``unk_offset`` while it is no prefix of any LM word (times
  len/6 past 6 units), refunded when the word ends, where the full OOV cost applies instead;
- the last word also scores ``</s>``.
"""

import math
from pathlib import Path

import torch
from speechbrain.decoders.ctc import CTCHypothesis
from torchaudio.models.decoder import CTCDecoderLM, CTCDecoderLMState, ctc_decoder

from .lm import BOS, EOS, UNK

LN_10 = math.log(10)
SPACE = " "


def arpa_vocabulary(path: str | Path) -> list[str]:
    """The words of an ARPA file's unigram section (<s>, </s> and <unk> included)."""
    words, in_unigrams = [], False
    with Path(path).open() as f:
        for line in f:
            line = line.strip()
            if line.startswith("\\"):
                if in_unigrams:
                    break
                in_unigrams = line == "\\1-grams:"
            elif in_unigrams and line:
                words.append(line.split("\t")[1] if "\t" in line else line.split()[1])
    if not words:
        raise ValueError(f"{path}: no \\1-grams: section; is it an ARPA language model?")
    return words


def arpa_order(path: str | Path) -> int:
    """The highest n of an ARPA file's ``ngram n=count`` header lines."""
    with Path(path).open() as f:
        orders = [int(line.split("=")[0].split()[1]) for line in f
                  if line.startswith("ngram ") and "=" in line]
    if not orders:
        raise ValueError(f"{path}: no 'ngram n=count' header lines; is it an ARPA model?")
    return max(orders)


class WordNgram:
    """An ARPA word n-gram read by KenLM (through flashlight-text), scored in log10."""

    def __init__(self, path: str | Path):
        from flashlight.lib.text.decoder.kenlm import KenLM
        from flashlight.lib.text.dictionary import Dictionary

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"word n-gram {path}: no such ARPA file")
        words = arpa_vocabulary(path)
        self.vocabulary = set(words) - {BOS, EOS, UNK}
        self.prefixes = {w[:i] for w in self.vocabulary for i in range(1, len(w) + 1)}
        self.order = arpa_order(path)
        self.words = Dictionary(words if UNK in words else [UNK, *words])
        self.words.set_default_index(self.words.get_index(UNK))
        self.kenlm = KenLM(str(path), self.words)

    def known(self, word: str) -> str:
        """`word`, or <unk> where the LM does not know it (what its context holds)."""
        return word if word in self.vocabulary else UNK

    def start(self):
        """The state after <s>."""
        return self.kenlm.start(False)

    def word(self, state, word: str) -> tuple[object, float]:
        """(next state, log10 P(word | state))."""
        return self.kenlm.score(state, self.words.get_index(word))

    def end(self, state) -> float:
        """log10 P(</s> | state)."""
        return self.kenlm.finish(state)[1]

    def sentence_log10(self, text: str) -> float:
        """log10 P(<s> text </s>), as ``kenlm.Model.score(text, bos=True, eos=True)``."""
        state, total = self.start(), 0.0
        for word in text.split():
            state, logp = self.word(state, word)
            total += logp
        return total + self.end(state)


class SpelledWordLM(CTCDecoderLM):
    """The word n-gram seen by a unit-level decoder: words are spelled out of the CTC units.

    A decoder state stands for (n-gram state, last words, word being spelled); `score`
    returns the *change* of the shallow-fusion score (see the module docstring) when a unit is
    added. Hypotheses with the same last n-1 words and the same word being spelled share one
    state object, so the decoder recombines them (it compares LM states by identity).
    """

    def __init__(self, ngram: WordNgram, units: list[str], alpha: float, beta: float,
                 unk_offset: float = -10.0):
        super().__init__()
        self.ngram, self.alpha, self.beta, self.unk_offset = ngram, alpha, beta, unk_offset
        # per unit: (does it start a word?, the characters it adds); units[0], the blank, adds
        # nothing (the decoder does not score it anyway)
        self.spelling = [(False, "")] + [(u == SPACE, u.strip()) for u in units[1:]]
        self.states: dict[CTCDecoderLMState, tuple[object, tuple, str]] = {}
        self.by_content: dict[tuple[tuple, str], CTCDecoderLMState] = {}

    def start(self, start_with_nothing: bool) -> CTCDecoderLMState:
        state = CTCDecoderLMState()  # one utterance's states at a time
        context = self._last_words((BOS,))
        self.states, self.by_content = {state: (self.ngram.start(), context, "")}, {}
        self.by_content[context, ""] = state
        return state

    def score(self, state: CTCDecoderLMState, unit: int) -> tuple[CTCDecoderLMState, float]:
        ngram_state, context, partial = self.states[state]
        starts_word, chars = self.spelling[unit]
        gain = 0.0
        if starts_word and partial:
            ngram_state, gain = self._finish_word(ngram_state, partial)
            context = self._last_words((*context, self.ngram.known(partial)))
            partial = ""
        if chars:
            gain += self._partial_cost(partial + chars) - self._partial_cost(partial)
            partial += chars
        shared = self.by_content.get((context, partial))
        if shared is None:
            shared = self.by_content[context, partial] = state.child(unit)
            self.states[shared] = (ngram_state, context, partial)
        return shared, gain

    def finish(self, state: CTCDecoderLMState) -> tuple[CTCDecoderLMState, float]:
        ngram_state, _, partial = self.states[state]
        gain = 0.0
        if partial:
            ngram_state, gain = self._finish_word(ngram_state, partial)
        return state, gain + self.alpha * LN_10 * self.ngram.end(ngram_state)

    def _last_words(self, words: tuple) -> tuple:
        """The n-1 words that the n-gram's next score depends on."""
        return words[len(words) - (self.ngram.order - 1):]

    def _finish_word(self, ngram_state, word: str) -> tuple[object, float]:
        ngram_state, logp = self.ngram.word(ngram_state, word)
        if word not in self.ngram.vocabulary:
            logp += self.unk_offset
        return ngram_state, self.alpha * LN_10 * logp + self.beta - self._partial_cost(word)

    def _partial_cost(self, partial: str) -> float:
        if not partial or partial in self.ngram.prefixes:
            return 0.0
        return self.unk_offset * max(1.0, len(partial) / 6)


class NgramBeamSearcher:
    """CTC beam search + word n-gram over `units` (index 0: the blank).

    `searcher(log_probs (B, T, V), rel_lens (B,))` -> per utterance, its `topk` best
    `CTCHypothesis` (text, score: acoustic + LM log score), like SpeechBrain's searchers.
    Each frame extends hypotheses by its `units_per_frame` likeliest units only (SpeechBrain
    skipped units below log-prob -5): the LM runs in Python once per hypothesis and unit, so
    this is most of its cost.
    Hypotheses more than `beam_threshold` below the best are dropped (SpeechBrain: 10).
    """

    def __init__(self, units: list[str], lm_path: str | Path, beam_size: int = 10,
                 alpha: float = 0.5, beta: float = 1.0, topk: int = 1,
                 beam_threshold: float = 10.0, units_per_frame: int = 8):
        self.units = units
        self.lm = SpelledWordLM(WordNgram(lm_path), units, alpha, beta)
        boundary = SPACE if SPACE in units else units[0]  # the sil token only gets sil_score 0
        self.topk, self.beam_size = topk, beam_size
        self.decoder = ctc_decoder(  # the n-best has repeats of a text: ask for the whole beam
            lexicon=None, tokens=units, lm=self.lm, nbest=beam_size, beam_size=beam_size,
            beam_size_token=min(units_per_frame, len(units)), beam_threshold=beam_threshold,
            lm_weight=1.0, word_score=0.0, sil_score=0.0,
            blank_token=units[0], sil_token=boundary, unk_word=UNK)

    def __call__(self, log_probs: torch.Tensor, rel_lens: torch.Tensor
                 ) -> list[list[CTCHypothesis]]:
        frames = (rel_lens.float() * log_probs.shape[1]).round().int().clamp(min=1)
        results = self.decoder(log_probs.float().cpu().contiguous(), frames.cpu())
        return [self._distinct([self._hypothesis(h) for h in nbest]) for nbest in results]

    def _distinct(self, hyps: list[CTCHypothesis]) -> list[CTCHypothesis]:
        """The `topk` best distinct texts (alignments and spacing of one text are one entry)."""
        best = {}
        for hyp in sorted(hyps, key=lambda h: -h.score):
            best.setdefault(hyp.text, hyp)
        return list(best.values())[: self.topk]

    def _hypothesis(self, hyp) -> CTCHypothesis:
        text = "".join(self.units[i] for i in hyp.tokens.tolist())
        return CTCHypothesis(text=" ".join(text.split()), last_lm_state=None,
                             score=float(hyp.score), lm_score=float(hyp.score))
