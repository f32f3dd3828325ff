"""Id vocabularies: raw values -> ids 1..n, with id 0 the out-of-vocabulary (and padding) bucket."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd

OOV = 0


class Vocab:
    """A frequency-thresholded vocabulary, or a hashing trick when ``hash_buckets`` is set.

    Values seen fewer than ``min_count`` times while fitting map to the OOV id 0, as do values never
    seen. With hashing there is no table: ``id = 1 + hash(value) % (hash_buckets - 1)``, so huge id
    spaces cost no memory and nothing is out of vocabulary (collisions instead).
    """

    def __init__(self, min_count: int = 1, hash_buckets: int = 0):
        self.min_count = min_count
        self.hash_buckets = hash_buckets
        self.index: dict[str, int] = {}

    @property
    def size(self) -> int:
        """Number of ids including the OOV bucket."""
        return self.hash_buckets if self.hash_buckets else len(self.index) + 1

    def fit(self, values) -> Vocab:
        """Build the table from an iterable of raw values (ids ordered by decreasing count)."""
        if self.hash_buckets:
            return self
        counts = Counter(str(v) for v in values)
        kept = [v for v, c in counts.items() if c >= self.min_count]
        kept.sort(key=lambda v: (-counts[v], v))
        self.index = {v: i + 1 for i, v in enumerate(kept)}
        return self

    def encode(self, values) -> np.ndarray:
        """Map raw values to int64 ids (unknown -> 0)."""
        strings = pd.Series(values, dtype="object").astype(str)
        if self.hash_buckets:
            hashed = pd.util.hash_array(strings.to_numpy(dtype=object))
            return (1 + hashed % np.uint64(self.hash_buckets - 1)).astype(np.int64)
        return strings.map(self.index).fillna(OOV).to_numpy(dtype=np.int64)

    def to_dict(self) -> dict:
        return {"min_count": self.min_count, "hash_buckets": self.hash_buckets,
                "index": self.index}

    @classmethod
    def from_dict(cls, d: dict) -> Vocab:
        vocab = cls(d["min_count"], d["hash_buckets"])
        vocab.index = dict(d["index"])
        return vocab


def split_tokens(values, sep: str) -> list[list[str]]:
    """Split multi-valued strings ("Action|Comedy") into token lists; missing -> []."""
    return [[] if (v is None or (isinstance(v, float) and np.isnan(v)))
            else [t for t in str(v).split(sep) if t] for v in values]


def encode_multi(vocab: Vocab, token_lists, max_len: int) -> np.ndarray:
    """Encode token lists into a (N, max_len) id matrix padded with 0 (extra tokens truncated)."""
    out = np.zeros((len(token_lists), max_len), dtype=np.int64)
    flat = [t for toks in token_lists for t in toks[:max_len]]
    ids = vocab.encode(flat) if flat else np.zeros(0, dtype=np.int64)
    pos = 0
    for row, toks in enumerate(token_lists):
        n = min(len(toks), max_len)
        out[row, :n] = ids[pos:pos + n]
        pos += n
    return out
