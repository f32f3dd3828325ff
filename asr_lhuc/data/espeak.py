"""Offline speech synthesis with the eSpeak NG library shipped by the `espeakng-loader` wheel.

eSpeak NG keeps state between utterances (e.g. its pitch-flutter phase), so the samples of an
utterance depend on everything synthesised before it in the same process, and some voices add
breath noise drawn from libc ``rand()``. To make every speaker's audio depend only on that
speaker's own settings, each call to :func:`synthesize_batch` runs in a fresh child process
with both random generators seeded.
"""

import ctypes
import ctypes.util
import multiprocessing as mp
from dataclasses import dataclass

import numpy as np

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_RATE, _PITCH, _RANGE = 1, 3, 4  # espeak_PARAMETER ids
_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


@dataclass(frozen=True)
class SynthRequest:
    """One utterance: ``rate`` in words/minute, ``pitch`` and ``pitch_range`` on 0..100."""

    text: str
    rate: int = 175
    pitch: int = 50
    pitch_range: int = 50


def _open_library():
    try:
        import espeakng_loader
    except ImportError as err:
        raise ImportError(
            "synthetic speech needs the `espeakng-loader` package (pip install espeakng-loader)"
        ) from err
    lib = ctypes.CDLL(espeakng_loader.get_library_path())
    rate = lib.espeak_Initialize(
        _AUDIO_OUTPUT_SYNCHRONOUS, 0, espeakng_loader.get_data_path().encode(),
        _INITIALIZE_DONT_EXIT,
    )
    if rate <= 0:
        raise RuntimeError(f"espeak_Initialize failed (returned {rate})")
    return lib, rate


def _seed_noise(lib, seed: int) -> None:
    """Seed eSpeak's own generator and libc rand(), which eSpeak uses for breath noise."""
    lib.espeak_ng_SetRandSeed(ctypes.c_long(seed))
    ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").srand(ctypes.c_uint(seed))


def _synthesize_here(voice: str, requests: list[SynthRequest]) -> tuple[list[np.ndarray], int]:
    """Synthesise in this process; int16 arrays at the library's native rate."""
    lib, sample_rate = _open_library()
    _seed_noise(lib, 1)
    chunks: list[np.ndarray] = []

    def collect(wav, n_samples, _events):
        if wav and n_samples > 0:
            chunks.append(np.ctypeslib.as_array(wav, shape=(n_samples,)).copy())
        return 0  # 0 = keep synthesising

    callback = _CALLBACK(collect)  # keep a reference for as long as synthesis runs
    lib.espeak_SetSynthCallback(callback)
    if lib.espeak_SetVoiceByName(voice.encode()) != 0:
        raise ValueError(f"eSpeak NG has no voice {voice!r} (try e.g. 'en-us', 'en+f2')")
    outputs = []
    for request in requests:
        chunks.clear()
        lib.espeak_SetParameter(_RATE, int(request.rate), 0)
        lib.espeak_SetParameter(_PITCH, int(request.pitch), 0)
        lib.espeak_SetParameter(_RANGE, int(request.pitch_range), 0)
        text = request.text.encode() + b"\0"
        status = lib.espeak_Synth(text, len(text), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        if status != 0 or lib.espeak_Synchronize() != 0:
            raise RuntimeError(f"espeak_Synth failed ({status}) for {request.text!r}")
        outputs.append(np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16))
    return outputs, sample_rate


def _child(connection, voice, requests):
    try:
        connection.send(("ok", _synthesize_here(voice, requests)))
    except Exception as err:  # hand the error to the parent instead of dying silently
        connection.send(("error", f"{type(err).__name__}: {err}"))
    finally:
        connection.close()


def synthesize_batch(voice: str, requests: list[SynthRequest]) -> tuple[list[np.ndarray], int]:
    """Synthesise ``requests`` with eSpeak NG ``voice`` (e.g. "en-gb-scotland+f3").

    Returns (list of int16 arrays, sample rate). Runs in a fresh process so that the result
    depends only on the arguments.
    """
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    context = mp.get_context(method)
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(sender, voice, list(requests)), daemon=True)
    process.start()
    sender.close()
    try:
        status, payload = receiver.recv()
    except EOFError as err:
        raise RuntimeError(f"eSpeak NG worker for voice {voice!r} died "
                           f"(exit code {process.exitcode})") from err
    finally:
        process.join()
    if status != "ok":
        raise RuntimeError(f"eSpeak NG synthesis failed for voice {voice!r}: {payload}")
    return payload
