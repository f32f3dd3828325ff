"""SentencePiece units learnt from the training transcripts, the alternative to characters.

``units: sentencepiece`` in a recipe YAML trains a SentencePiece model (``sp_vocab_size``,
``sp_model_type``) on the normalised training transcripts once, in the output folder, and the
CTC outputs become its pieces ("▁" marks a word start; SpeechBrain's CTC beam search reads
such a vocabulary as SentencePiece). Characters stay the default: they are what unsupervised
adaptation's targets, lexicon and confidence filters work on.
"""

import logging
from pathlib import Path

import sentencepiece as spm

from .data import normalize_text, read_manifest

logger = logging.getLogger(__name__)
WORD_START = "▁"
UNKNOWN = "<unk>"


def train_sentencepiece(train_csv: str, out_dir: str | Path, vocab_size: int,
                        model_type: str = "unigram") -> Path:
    """Train (or reuse, when already there) a SentencePiece model on `train_csv`'s ``wrd``."""
    out_dir = Path(out_dir)
    prefix = out_dir / f"sp_{model_type}{vocab_size}"
    model = prefix.with_suffix(".model")
    if model.is_file():
        return model
    out_dir.mkdir(parents=True, exist_ok=True)
    texts = [normalize_text(row["wrd"]) for row in read_manifest(train_csv)]
    corpus = out_dir / "sp_train_text.txt"
    corpus.write_text("\n".join(t for t in texts if t) + "\n")
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(prefix), vocab_size=vocab_size,
        model_type=model_type, character_coverage=1.0, bos_id=-1, eos_id=-1, unk_id=0,
        hard_vocab_limit=False,  # a small corpus may not have vocab_size pieces
        num_threads=1, minloglevel=2)
    logger.info("trained SentencePiece %s on %d transcripts", model, len(texts))
    return model


class SubwordUnits:
    """A trained SentencePiece model: `pieces(text)` and its labels by id."""

    def __init__(self, model_file: str | Path):
        self.model_file = Path(model_file)
        self.processor = spm.SentencePieceProcessor(model_file=str(model_file))
        self.labels = [self.processor.id_to_piece(i)
                       for i in range(self.processor.get_piece_size())]

    def pieces(self, text: str) -> list[str]:
        """`text` as pieces; characters the model never saw become "<unk>"."""
        return [self.labels[i] for i in self.processor.encode(text)]


def pieces_to_text(labels: list[str]) -> str:
    """Joined output labels (pieces or characters) as words separated by single spaces."""
    text = "".join(lab for lab in labels if lab != UNKNOWN)
    return " ".join(text.replace(WORD_START, " ").split())
