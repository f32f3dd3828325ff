"""Audio loading with explicit failure reasons, resampling and atomic WAV writing."""

import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import soundfile as sf

# Peak (on a [-1, 1] scale) below which a recording counts as silent: about -60 dBFS, i.e. a
# 16-bit file whose loudest sample is under ~33 LSB. Real speech in the shipped corpora peaks far
# higher (speechocean762 and FSDD both have their quietest file above 0.01).
DEFAULT_SILENCE_PEAK = 1e-3

# Reasons a recording is skipped; the prep summary counts each of them.
MISSING_WAV = "missing_wav"
UNREADABLE = "unreadable"
EMPTY_AUDIO = "empty_audio"
SILENT = "silent"
WRONG_SAMPLE_RATE = "wrong_sample_rate"


class AudioProblem(Exception):
    """A recording that cannot be used; ``reason`` is one of the constants above."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def load_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Read ``path`` as mono float32 in [-1, 1]; raise AudioProblem if missing/unreadable/empty."""
    path = Path(path)
    if not path.is_file():
        raise AudioProblem(MISSING_WAV, f"no such file {path}")
    if path.stat().st_size == 0:
        raise AudioProblem(EMPTY_AUDIO, f"{path} is a 0-byte file")
    try:
        signal, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as err:  # soundfile raises several types for corrupt files
        raise AudioProblem(UNREADABLE, f"{path}: {err}") from err
    if signal.shape[0] == 0:
        raise AudioProblem(EMPTY_AUDIO, f"{path} has 0 samples")
    return signal.mean(axis=1), int(rate)


def check_signal(
    signal: np.ndarray, rate: int, expected_rate: int | None, silence_peak: float, name: str
) -> None:
    """Raise AudioProblem if ``signal`` has the wrong rate or is silent (peak < silence_peak)."""
    if expected_rate is not None and rate != expected_rate:
        raise AudioProblem(WRONG_SAMPLE_RATE, f"{name} is {rate} Hz, expected {expected_rate} Hz")
    peak = float(np.abs(signal).max()) if signal.size else 0.0
    if peak < silence_peak:
        raise AudioProblem(SILENT, f"{name} peaks at {peak:.2e} < {silence_peak:.0e}")


@contextmanager
def single_threaded_torch():
    """Run torch ops on one thread: many tiny resampling calls are far slower multi-threaded."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def resample(signal: np.ndarray, rate: int, new_rate: int) -> np.ndarray:
    """Band-limited resampling with torchaudio (a no-op when the rates match)."""
    if rate == new_rate:
        return signal
    import torch  # imported here so that text normalisation alone does not load torch
    import torchaudio.functional as AF

    out = AF.resample(torch.from_numpy(np.ascontiguousarray(signal)), rate, new_rate)
    return out.numpy()


def write_wav(path: str | Path, signal: np.ndarray, rate: int) -> None:
    """Write 16-bit PCM WAV atomically, so a killed run never leaves a truncated file behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    sf.write(str(tmp), np.clip(signal, -1.0, 1.0), rate, subtype="PCM_16", format="WAV")
    os.replace(tmp, path)


def duration_of(path: str | Path) -> float:
    """Duration in seconds from the file header."""
    info = sf.info(str(path))
    return info.frames / info.samplerate
