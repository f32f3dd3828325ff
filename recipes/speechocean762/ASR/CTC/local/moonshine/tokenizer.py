"""Moonshine's text tokenizer, read from the vocabulary file that moonshine-cpp ships.

The vocabulary is Llama's SentencePiece BPE (32,000 pieces, "▁" marks a word start, byte
fallback for characters it lacks). The file holds only the pieces, in id order; for
SentencePiece BPE a piece's merge priority is its id (a lower id was learnt earlier), so
encoding repeatedly merges the adjacent pair whose union has the lowest id, which is what
SentencePiece does with these pieces' scores.
"""

from pathlib import Path

from .frontend import moonshine_encoder_path

WORD_START = "\u2581"  # "▁"
FIRST_BYTE_ID = 3  # ids 3..258 are the raw bytes 0x00..0xFF (byte fallback)


def read_vocabulary(path: str | Path) -> list[bytes]:
    """The pieces of a moonshine-cpp ``tokenizer.bin``: each a length (1-2 bytes) + bytes."""
    data, pieces, i = Path(path).read_bytes(), [], 0
    while i < len(data):
        length = data[i]
        i += 1
        if length >= 128:  # a two-byte length: low 7 bits first
            length = (length & 127) | (data[i] << 7)
            i += 1
        pieces.append(data[i: i + length])
        i += length
    return pieces


class MoonshineTokenizer:
    """`encode(text) -> ids` and `decode(ids) -> text` without special tokens."""

    def __init__(self, model: str = "base"):
        folder = moonshine_encoder_path(model).parent
        path = folder / "tokenizer.bin"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no Moonshine tokenizer beside the encoder")
        self.pieces = read_vocabulary(path)
        self.ids = {}
        for i, piece in enumerate(self.pieces):
            if i >= FIRST_BYTE_ID + 256:  # bytes are fallbacks, not pieces of text
                self.ids.setdefault(piece.decode("utf-8", errors="replace"), i)

    def encode(self, text: str) -> list[int]:
        symbols = list(WORD_START + text.replace(" ", WORD_START))
        while len(symbols) > 1:
            pairs = [(self.ids.get(a + b), i) for i, (a, b) in enumerate(zip(symbols, symbols[1:]))]
            best = min((p for p in pairs if p[0] is not None), default=None)
            if best is None:
                break
            i = best[1]
            symbols[i: i + 2] = [symbols[i] + symbols[i + 1]]
        ids = []
        for symbol in symbols:
            if symbol in self.ids:
                ids.append(self.ids[symbol])
            else:
                ids += [FIRST_BYTE_ID + b for b in symbol.encode("utf-8")]
        return ids

    def decode(self, ids: list[int]) -> str:
        text = b"".join(self.pieces[i] for i in ids if i < len(self.pieces) and i >= FIRST_BYTE_ID)
        return text.decode("utf-8", errors="replace").replace(WORD_START, " ").strip()
