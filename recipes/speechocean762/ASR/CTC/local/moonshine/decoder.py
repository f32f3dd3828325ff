"""Moonshine-base's attention decoder (int8 ONNX from moonshine-cpp) as a second-pass scorer.

Given the encoder's frames of one utterance (`MoonshineFrontend`), it gives the log-probability
of any token sequence (teacher forcing, all candidates of an utterance in one batch) and an
n-best list by beam search (with the decoder's key/value cache, so each step feeds one token).
"""

import numpy as np

from .frontend import _session, moonshine_encoder_path

BOS, EOS = 1, 2
HEADS, HEAD_DIM = 8, 52  # Moonshine-base's decoder attention
TOKENS_PER_SECOND = 6.5  # generation stops after this many tokens per second of audio (+ 10)
FRAMES_PER_SECOND = 16000 / 384


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


class MoonshineDecoder:
    """`sequence_log_probs(frames, token_lists)` and `beam_search(frames, beam_size)`."""

    def __init__(self, model: str = "base"):
        path = moonshine_encoder_path(model).parent / "decoder_model_merged.ort"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no Moonshine decoder beside the encoder")
        self.session = _session(str(path))
        # The cache it returns ("present.*"), by the input name it goes back in as.
        self.cache_names = [o.name.replace("present.", "past_key_values.")
                            for o in self.session.get_outputs()[1:]]

    def _run(self, frames: np.ndarray, input_ids: np.ndarray, past: dict | None):
        """(N, L, V) log-probs after each of N prefixes' L new tokens, and the new key/value
        cache. `past` None: the prefixes are fed whole (the encoder's k/v are computed)."""
        n = len(input_ids)
        inputs = {"input_ids": input_ids.astype(np.int64),
                  "encoder_hidden_states": np.broadcast_to(frames.astype(np.float32),
                                                           (n, *frames.shape)).copy(),
                  "use_cache_branch": np.array([past is not None])}
        empty = np.zeros((n, HEADS, 0, HEAD_DIM), dtype=np.float32)
        outputs = self.session.run(None, {**inputs, **(past or dict.fromkeys(self.cache_names,
                                                                              empty))})
        present = dict(zip(self.cache_names, outputs[1:]))
        if past is not None:  # the cached branch returns the encoder's k/v unchanged
            present.update({k: v for k, v in past.items() if ".encoder." in k})
        return log_softmax(outputs[0]), present

    def sequence_log_probs(self, frames: np.ndarray, token_lists: list[list[int]]) -> np.ndarray:
        """log P(tokens, EOS | audio) of each token list, given (T, 416) encoder frames."""
        width = max(len(t) for t in token_lists) + 1
        inputs = np.full((len(token_lists), width), EOS, dtype=np.int64)
        targets = np.full_like(inputs, EOS)
        for i, tokens in enumerate(token_lists):
            inputs[i, 1: len(tokens) + 1] = tokens
            inputs[i, 0] = BOS
            targets[i, : len(tokens)] = tokens
        log_probs = self._run(frames, inputs, None)[0]
        picked = np.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]
        lengths = np.array([len(t) + 1 for t in token_lists])  # tokens + EOS
        mask = np.arange(width)[None] < lengths[:, None]
        return (picked * mask).sum(axis=1)

    def beam_search(self, frames: np.ndarray, beam_size: int = 4,
                    max_tokens: int | None = None) -> list[tuple[list[int], float]]:
        """Up to `beam_size` (tokens, log-prob) hypotheses, best first (no length penalty)."""
        if max_tokens is None:
            max_tokens = int(len(frames) / FRAMES_PER_SECOND * TOKENS_PER_SECOND) + 10
        beams, finished, past = [([BOS], 0.0)], [], None
        input_ids = np.array([[BOS]])
        for _ in range(max_tokens):
            log_probs, present = self._run(frames, input_ids, past)
            log_probs = log_probs[:, -1]
            candidates = []
            for origin, ((tokens, score), row) in enumerate(zip(beams, log_probs)):
                for token in np.argsort(row)[-beam_size:]:
                    candidates.append((tokens + [int(token)], score + float(row[token]), origin))
            candidates.sort(key=lambda c: c[1], reverse=True)
            beams, origins = [], []
            for tokens, score, origin in candidates[: beam_size]:
                if tokens[-1] == EOS:
                    finished.append((tokens, score))
                else:
                    beams.append((tokens, score))
                    origins.append(origin)
            finished = sorted(finished, key=lambda c: c[1], reverse=True)[:beam_size]
            if not beams or (len(finished) == beam_size and finished[-1][1] > beams[0][1]):
                break
            past = {name: value[origins] for name, value in present.items()}
            input_ids = np.array([[tokens[-1]] for tokens, _ in beams])
        else:
            finished += beams  # cut off at max_tokens
        finished.sort(key=lambda c: c[1], reverse=True)
        return [([t for t in tokens[1:] if t != EOS], score)
                for tokens, score in finished[:beam_size]]
