#!/usr/bin/env python3
"""Reference point: Moonshine-base with its own decoder (moonshine-cpp's C library and int8
ONNX models, as that package ships them) on the same test utterances as the CTC recipes,
scored the same way as `whisper_reference_wer.py`.

    python benchmarks/moonshine_reference_wer.py exp/data/speechocean762/test.csv \
        --out results/asr/speechocean762/moonshine_base_reference.json [--max_utts 200]

The JSON holds every hypothesis by utterance id, for adapt.py's external targets
(`si_lhuc_external` / `sat_lhuc_external`, `hypotheses_file`). Not an LHUC system: it shows what a
full recogniser built on the encoder that `moonshine_model: base` fuses reaches on this corpus.
Needs the `moonshine` extra (moonshine-cpp, x86_64/aarch64 Linux or macOS).

moonshine-cpp 0.1.4 leaks about 40 MB per transcription (freeing the model does not give it
back; 800 utterances reached 24 GB and were killed), so each chunk of `--chunk` utterances runs
in a fresh worker process, and the hypotheses so far are kept in `<out>.partial.json`: a killed
run continues where it stopped.
"""

import argparse
import ctypes
import json
import multiprocessing
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from asr_lhuc.data import normalize_text, read_manifest, spell_digits
from asr_lhuc.scoring import wer_cer
from recipes.speechocean762.ASR.CTC.local.moonshine import moonshine_encoder_path


def load_library():
    """moonshine-cpp's C library (its Python wrapper's `transcribe` passes audio wrongly)."""
    folder = moonshine_encoder_path("base").parents[2]
    ctypes.CDLL(str(next(folder.glob("libonnxruntime.so*"))), mode=ctypes.RTLD_GLOBAL)
    lib = ctypes.CDLL(str(folder / "libmoonshine.so"))
    lib.moonshine_load_model.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_int32]
    lib.moonshine_transcribe.argtypes = [ctypes.c_int, ctypes.POINTER(ctypes.c_float),
                                         ctypes.c_size_t, ctypes.POINTER(ctypes.c_char_p)]
    lib.moonshine_free_text.argtypes = [ctypes.c_char_p]
    models = moonshine_encoder_path("base").parent
    handle = lib.moonshine_load_model(*(str(models / name).encode() for name in (
        "encoder_model.ort", "decoder_model_merged.ort", "tokenizer.bin")), 1)  # 1: base
    if handle < 0:
        raise RuntimeError(f"moonshine-cpp could not load the models in {models}")
    return lib, handle


def transcribe(lib, handle, wav: np.ndarray) -> str:
    audio = np.ascontiguousarray(wav, dtype=np.float32)
    text = ctypes.c_char_p()
    error = lib.moonshine_transcribe(handle, audio.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
                                     len(audio), ctypes.byref(text))
    if error:
        raise RuntimeError(f"moonshine_transcribe failed with code {error}")
    return spell_digits((text.value or b"").decode("utf-8"))


def transcribe_chunk(paths: list[str]) -> list[str]:
    """Hypotheses of some 16 kHz files, in a worker process (the library leaks; see above)."""
    lib, handle = load_library()
    texts = []
    for path in paths:
        wav, rate = sf.read(path, dtype="float32")
        if rate != 16000:
            raise ValueError(f"{path}: {rate} Hz; Moonshine takes 16 kHz audio")
        texts.append(normalize_text(transcribe(lib, handle, wav)))
    return texts


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("csv")
    parser.add_argument("--out", required=True)
    parser.add_argument("--max_utts", type=int, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--chunk", type=int, default=100, help="utterances per worker process")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))  # inherited by the workers
    rows = sorted(read_manifest(args.csv), key=lambda r: r["ID"])[: args.max_utts]
    partial = Path(args.out + ".partial.json")
    done = json.loads(partial.read_text()) if partial.is_file() else {}
    todo = [r for r in rows if r["ID"] not in done]
    chunks = [todo[i: i + args.chunk] for i in range(0, len(todo), args.chunk)]
    start = time.perf_counter()
    context = multiprocessing.get_context("spawn")
    with context.Pool(1, maxtasksperchild=1) as pool, tqdm(
            total=len(rows), initial=len(rows) - len(todo), desc="moonshine-base",
            unit="utt") as bar:
        for chunk in chunks:
            texts = pool.apply(transcribe_chunk, ([r["wav"] for r in chunk],))
            done.update({r["ID"]: t for r, t in zip(chunk, texts)})
            partial.parent.mkdir(parents=True, exist_ok=True)
            partial.write_text(json.dumps(done))
            bar.update(len(chunk))
    ids = [r["ID"] for r in rows]
    refs = [normalize_text(r["wrd"]) for r in rows]
    hyps = [done[i] for i in ids]
    scores = wer_cer(refs, hyps)
    payload = {"system": "moonshine-base (own decoder, moonshine-cpp 0.1.4, int8 ONNX)",
               "csv": args.csv, "n_utts": len(rows), "wer": scores["wer"], "cer": scores["cer"],
               "empty_hypotheses": sum(not h for h in hyps),
               "seconds": round(time.perf_counter() - start, 1), "threads": args.threads,
               "examples": [{"ref": r, "hyp": h} for r, h in list(zip(refs, hyps))[:10]],
               "hypotheses": dict(zip(ids, hyps)),
               "command": "python " + shlex.join(sys.argv)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(payload, indent=1) + "\n")
    partial.unlink(missing_ok=True)
    print(json.dumps({k: payload[k] for k in ("system", "n_utts", "wer", "cer", "seconds")}))


if __name__ == "__main__":
    main()
