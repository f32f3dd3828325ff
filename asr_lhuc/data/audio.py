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
NON_FINITE = "non_finite_audio"
NOT_MONO = "not_mono"

# What to do about a manifest's file in the wrong format (said in every such error).
FORMAT_FIX = ("re-run the corpus preparation (it writes mono files at the model's rate) or "
              "convert the files, e.g. `sox in.wav -r 16000 -c 1 out.wav`")


class AudioProblem(ValueError):
    """A recording that cannot be used; ``reason`` is one of the constants above.

    A ValueError, so that a file refused while a dataset loads stops training with this message.
    """

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def load_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Read ``path`` as mono float32 in [-1, 1] (channels averaged); raise AudioProblem if it is
    missing, unreadable, empty or holds NaN/inf samples."""
    signal, rate = read_channels(path)
    return signal.mean(axis=1), rate


def load_manifest_audio(path: str | Path, expected_rate: int) -> np.ndarray:
    """The samples of a training manifest's file, used as they are: refuse (AudioProblem, a
    ValueError naming the file and the fix) another rate than ``expected_rate``, more than one
    channel, or NaN/inf samples. Preparation has already made each file mono at the right rate;
    a file that is not means the manifest points at unprepared audio, and mixing or resampling
    it on every load would hide that."""
    try:
        signal, rate = read_channels(path)
    except AudioProblem as problem:
        raise AudioProblem(problem.reason, f"{problem.detail}. Fix: drop it from the manifest "
                           "or re-run the corpus preparation, which skips such files") from None
    problem = format_problem(path, rate, signal.shape[1], expected_rate)
    if problem:
        raise AudioProblem(problem[0], f"{problem[1]}. Fix: {FORMAT_FIX}")
    return signal[:, 0]


def format_problem(path, rate: int, channels: int, expected_rate: int) -> tuple[str, str] | None:
    """(reason, detail naming ``path``) if the file is not mono at ``expected_rate``, else None."""
    if rate != expected_rate:
        return WRONG_SAMPLE_RATE, f"{path} is {rate} Hz, the model expects {expected_rate} Hz"
    if channels != 1:
        return NOT_MONO, f"{path} has {channels} channels, the model expects mono"
    return None


def check_manifest_audio(wavs: list[str], expected_rate: int, manifest: str | Path) -> None:
    """Refuse a manifest with any missing, unreadable, non-mono or wrong-rate file (header reads
    only, so cheap), listing the first few files and how many there are."""
    problems = []
    for wav in wavs:
        try:
            info = sf.info(str(wav))
        except Exception as err:  # soundfile raises several types for missing/corrupt files
            problems.append(f"{wav} cannot be read ({err})")
            continue
        problem = format_problem(wav, info.samplerate, info.channels, expected_rate)
        if problem:
            problems.append(problem[1])
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise ValueError(f"{manifest}: {len(problems)} of {len(wavs)} files are unusable: "
                         f"{'; '.join(problems[:3])}{more}. Fix: {FORMAT_FIX}")


def read_channels(path: str | Path) -> tuple[np.ndarray, int]:
    """(frames x channels float32 samples, rate) of a usable file, or AudioProblem."""
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
    # A NaN sample would pass every later check (NaN < x is False) and poison the features,
    # the loss and, through the optimiser, every later batch: no such file is usable.
    bad = int(np.count_nonzero(~np.isfinite(signal)))
    if bad:
        raise AudioProblem(NON_FINITE, f"{path} has {bad} NaN/inf samples of {signal.size}")
    return signal, int(rate)


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
    if not np.isfinite(signal).all():  # 16-bit PCM would store NaN as -32768: a loud click
        raise ValueError(f"refusing to write NaN/inf samples to {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    sf.write(str(tmp), np.clip(signal, -1.0, 1.0), rate, subtype="PCM_16", format="WAV")
    os.replace(tmp, path)


def duration_of(path: str | Path) -> float:
    """Duration in seconds from the file header."""
    info = sf.info(str(path))
    return info.frames / info.samplerate
