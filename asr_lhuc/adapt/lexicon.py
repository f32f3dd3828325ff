"""A word lexicon from training transcripts that snaps first-pass words to known words.

Greedy CTC targets are the acoustic model's own best path: adapting towards them only sharpens
what the model already believes, so unsupervised LHUC gains nothing however good the first pass.
Hybrid systems' targets came from a decoder with a language model, i.e. they carried knowledge
the acoustic model lacks. Snapping each hypothesis word to the closest training word (edit
distance) is the simplest such prior: a unigram lexicon built from training transcripts only.
"""

from rapidfuzz import process
from rapidfuzz.distance import Levenshtein

from asr_lhuc.data import normalize_text, read_manifest


class Lexicon:
    """Known words; `correct` replaces out-of-lexicon words by their nearest known word."""

    def __init__(self, words, max_distance: float = 0.5):
        self.words = sorted(set(words))
        self.known = set(self.words)
        self.max_distance = max_distance  # normalised edit distance beyond which a word stays

    @classmethod
    def from_manifest(cls, csv_path, max_distance: float = 0.5) -> "Lexicon":
        """The words of a manifest's transcripts (use the training split only)."""
        words = [w for row in read_manifest(csv_path) for w in normalize_text(row["wrd"]).split()]
        if not words:
            raise ValueError(f"{csv_path} has no transcript words to build a lexicon from")
        return cls(words, max_distance)

    def correct(self, text: str) -> str:
        return " ".join(self._word(w) for w in text.split())

    def _word(self, word: str) -> str:
        if word in self.known:
            return word
        best, distance, _ = process.extractOne(word, self.words,
                                               scorer=Levenshtein.normalized_distance)
        return best if distance <= self.max_distance else word
