"""A word n-gram LM in ARPA format, estimated from training transcripts only.

Absolute discounting with back-off (each history gives up D per distinct follower, the freed
mass goes to the lower order, renormalised over unseen words), so the ARPA file is a proper
distribution that KenLM (inside flashlight-text) loads for the CTC beam search
(`asr_lhuc.lm_decoder`, `kenlm_model_path` of `make_beam_searcher`).
"""

import math
from collections import Counter, defaultdict
from pathlib import Path

from .data import normalize_text, read_manifest

BOS, EOS, UNK = "<s>", "</s>", "<unk>"


def count_ngrams(sentences: list[str], order: int) -> list[Counter]:
    """counts[n-1][(w1..wn)] for n = 1..order over normalised, <s>/</s>-padded sentences."""
    counts = [Counter() for _ in range(order)]
    for text in sentences:
        words = [BOS] + normalize_text(text).split() + [EOS]
        for n in range(1, order + 1):
            start = 1 if n == 1 else 0  # <s> is a context, never predicted
            for i in range(start, len(words) - n + 1):
                counts[n - 1][tuple(words[i:i + n])] += 1
    return counts


def estimate(counts: list[Counter], discount: float = 0.7):
    """Log10 probabilities and back-off weights per n-gram: (probs[n], backoffs[n])."""
    vocab = [w for (w,) in counts[0] if w != BOS] + [UNK]
    total = sum(c for (w,), c in counts[0].items() if w != BOS)
    # Unigrams: a little mass for <unk>, the rest by relative frequency.
    uni = {(w,): (counts[0][(w,)] / (total + 1)) for w in vocab if w != UNK}
    uni[(UNK,)] = 1 / (total + 1)
    uni[(BOS,)] = 0.0
    probs = [uni]
    for n in range(2, len(counts) + 1):
        history_total, followers = Counter(), defaultdict(int)
        for gram, c in counts[n - 1].items():
            history_total[gram[:-1]] += c
            followers[gram[:-1]] += 1
        probs.append({gram: (c - discount) / history_total[gram[:-1]]
                      for gram, c in counts[n - 1].items()})
    backoffs = [dict() for _ in counts]
    for n in range(2, len(counts) + 1):
        seen = defaultdict(list)
        for gram in probs[n - 1]:
            seen[gram[:-1]].append(gram)
        for history, grams in seen.items():
            freed = 1.0 - sum(probs[n - 1][g] for g in grams)
            lower_seen = sum(_lower_prob(probs, g[1:]) for g in grams)
            backoffs[n - 2][history] = freed / max(1.0 - lower_seen, 1e-9)
    return probs, backoffs


def _lower_prob(probs, gram) -> float:
    """P(gram[-1] | gram[:-1]) under the back-off model (used to renormalise back-off)."""
    p = probs[len(gram) - 1].get(gram)
    if p is not None:
        return p
    return 0.0 if len(gram) == 1 else _lower_prob(probs, gram[1:])


def write_arpa(path: str | Path, sentences: list[str], order: int = 3,
               discount: float = 0.7) -> Path:
    """Estimate an `order`-gram LM from `sentences` and write it as an ARPA file."""
    probs, backoffs = estimate(count_ngrams(sentences, order), discount)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["\\data\\"] + [f"ngram {n}={len(p)}" for n, p in enumerate(probs, 1)] + [""]
    for n, table in enumerate(probs, 1):
        lines.append(f"\\{n}-grams:")
        for gram, p in sorted(table.items()):
            logp = -99.0 if p <= 0 else math.log10(p)
            entry = f"{logp:.6f}\t{' '.join(gram)}"
            if n < len(probs) and gram in backoffs[n - 1]:
                entry += f"\t{math.log10(max(backoffs[n - 1][gram], 1e-99)):.6f}"
            lines.append(entry)
        lines.append("")
    lines.append("\\end\\")
    path.write_text("\n".join(lines) + "\n")
    return path


def transcript_lm_file(folder: str | Path, order: int) -> Path:
    """Where `write_transcript_lm` puts the n-gram of order `order` under `folder`."""
    return Path(folder) / f"lm_train_{order}gram.arpa"


def write_transcript_lm(manifest: str | Path, folder: str | Path, order: int) -> Path:
    """ARPA word n-gram of a CSV manifest's transcripts (``wrd``: the training set only)."""
    path = transcript_lm_file(folder, order)
    write_arpa(path, [row["wrd"] for row in read_manifest(manifest)], order)
    return path
