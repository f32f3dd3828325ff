#!/usr/bin/env python3
"""Reference point: Whisper base with its own decoder (CTranslate2, greedy, 30 s windows, as
Whisper is meant to run) on the same test utterances as the CTC recipes, scored the same way.

    python benchmarks/whisper_reference_wer.py exp/data/speechocean762/test.csv \
        --out results/asr/speechocean762/whisper_base_reference.json [--max_utts 200]

The JSON also holds every hypothesis by utterance id, so that adapt.py can use them as
adaptation targets (systems si_lhuc_external / sat_lhuc_external, `hypotheses_file`).
This is not an LHUC system: it shows how much of the gap between the CTC head on frozen Whisper
features and a full pretrained recogniser is the decoder (and the 680k hours of text it saw).
Needs `ctranslate2` (dev extra) and the `whisper` extra.
"""

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import ctranslate2
import numpy as np
import soundfile as sf
import torch
from tqdm import tqdm

from asr_lhuc.data import normalize_text, read_manifest, spell_digits
from asr_lhuc.scoring import wer_cer
from asr_lhuc.whisper import LogMel, whisper_model_bin

PROMPT = ["<|startoftranscript|>", "<|en|>", "<|transcribe|>", "<|notimestamps|>"]


def transcribe(model, log_mel, wav: torch.Tensor) -> str:
    padded = torch.zeros(30 * 16000)
    padded[: min(len(wav), len(padded))] = wav[: len(padded)]
    mel = log_mel(padded).T[None].numpy().copy()
    out = model.generate(ctranslate2.StorageView.from_array(mel), [PROMPT], beam_size=1,
                         max_length=120)
    tokens = [t for t in out[0].sequences[0] if not t.startswith("<|")]
    return spell_digits("".join(tokens).replace("\u0120", " "))  # BPE's space marker


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("csv")
    parser.add_argument("--out", required=True)
    parser.add_argument("--model", default="base")
    parser.add_argument("--max_utts", type=int, default=None)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    folder = whisper_model_bin(args.model).parent
    model = ctranslate2.models.Whisper(str(folder), device="cpu", compute_type="float32",
                                       intra_threads=args.threads)
    rows = read_manifest(args.csv)
    rows = sorted(rows, key=lambda r: r["ID"])[: args.max_utts]
    log_mel, refs, hyps, ids = LogMel(), [], [], []
    start = time.perf_counter()
    for row in tqdm(rows, desc=f"whisper-{args.model}", unit="utt"):
        wav = torch.from_numpy(sf.read(row["wav"], dtype="float32")[0])
        hyps.append(normalize_text(transcribe(model, log_mel, wav)))
        refs.append(normalize_text(row["wrd"]))
        ids.append(row["ID"])
    scores = wer_cer(refs, hyps)
    payload = {"system": f"whisper-{args.model} (own decoder, greedy, 30 s windows)",
               "csv": args.csv, "n_utts": len(rows), "wer": scores["wer"], "cer": scores["cer"],
               "seconds": round(time.perf_counter() - start, 1), "threads": args.threads,
               "examples": [{"ref": r, "hyp": h} for r, h in list(zip(refs, hyps))[:10]],
               "hypotheses": dict(zip(ids, hyps)),  # adapt.py's hypotheses_file reads these
               "command": "python " + shlex.join(sys.argv)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(payload, indent=1) + "\n")
    print(json.dumps({k: payload[k] for k in ("system", "n_utts", "wer", "cer", "seconds")}))


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
