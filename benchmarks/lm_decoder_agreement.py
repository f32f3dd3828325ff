#!/usr/bin/env python3
"""The beam + word n-gram rows, decoded by both LM decoders from the same posteriors.

    PYTHONPATH=.:/path/to/kenlm python benchmarks/lm_decoder_agreement.py \
        --checkpoints recipes/speechocean762/ASR/CTC/pretrained/whisper_si_continued.pt \
        --committed results/asr/speechocean762/decoding/si_continued_beam10_lm3.json \
        --train_csv exp/data/speechocean762/train.csv --test_csv exp/data/speechocean762/test.csv \
        --out results/asr/speechocean762/decoding/lm_decoders.json [--speakers 10]

`new`: flashlight-text's CTC decoder with the word n-gram (`asr_lhuc.lm_decoder`, what
`make_beam_searcher` builds now). `old`: SpeechBrain's `CTCBeamSearcher` with KenLM, what the
committed beam + LM rows were decoded with; it needs `pip install kenlm pygtrie` (kenlm builds
from source) and is left out, with the reason in the JSON, where they cannot be imported. The
acoustic model runs once (SI mode); both decoders get beam 10, the training-transcript 3-gram,
alpha 0.5, beta 1.0. `--committed` puts each checkpoint's committed result beside them.
`--speakers N` keeps the first N test speakers (sorted by id).
"""

import argparse
import csv as csv_module
import json
import shlex
import sys
import time
from pathlib import Path

import torch

from asr_lhuc.data import read_manifest
from asr_lhuc.decode import greedy_texts, make_beam_searcher
from asr_lhuc.lm import write_transcript_lm
from asr_lhuc.pretrained import load_pretrained
from recipes.speechocean762.ASR.CTC.local.first_pass import beam_decode, score, utterance_log_probs


def old_searcher(encoder, lm: str, beam_size: int, alpha: float, beta: float):
    """The searcher the committed rows used: SpeechBrain's, with KenLM (see the docstring)."""
    from speechbrain.decoders.ctc import CTCBeamSearcher

    vocab = [encoder.ind2lab[i] for i in range(len(encoder))]
    vocab[0] = ""
    return CTCBeamSearcher(blank_index=0, vocab_list=vocab, space_token=" ",
                           beam_size=beam_size, kenlm_model_path=lm, alpha=alpha, beta=beta)


def speaker_subset(csv: str, n_speakers: int | None, out: Path) -> str:
    """A copy of `csv` with the utterances of its first `n_speakers` speakers (all: None)."""
    with open(csv, newline="") as f:
        reader = csv_module.DictReader(f)
        rows, columns = list(reader), reader.fieldnames
    keep = sorted({r["spk_id"] for r in rows})[:n_speakers]
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as f:
        writer = csv_module.DictWriter(f, columns)
        writer.writeheader()
        writer.writerows(r for r in rows if r["spk_id"] in keep)
    return str(out)


def timed_decode(items, searcher) -> tuple[list[str], float]:
    start = time.perf_counter()
    hyps = beam_decode(items, searcher)
    return hyps, time.perf_counter() - start


def compare(checkpoint: str, lm: str, test_csv: str, args) -> dict:
    """Greedy, new and (where it imports) old LM beam search of one checkpoint, side by side."""
    model, encoder, _, _ = load_pretrained(checkpoint)
    items = utterance_log_probs(model, test_csv)
    row = {"checkpoint": checkpoint,
           "greedy": score(items, [greedy_texts(it["log_probs"][None], torch.ones(1),
                                                encoder)[0] for it in items])}
    hyps = {}
    new = make_beam_searcher(encoder, args.beam_size, lm, args.alpha, args.beta)
    hyps["new"], seconds = timed_decode(items, new)
    row["new"] = {**score(items, hyps["new"]), "decode_seconds": round(seconds, 1)}
    try:
        old = old_searcher(encoder, lm, args.beam_size, args.alpha, args.beta)
        hyps["old"], seconds = timed_decode(items, old)
        row["old"] = {**score(items, hyps["old"]), "decode_seconds": round(seconds, 1)}
        same = sum(a == b for a, b in zip(hyps["old"], hyps["new"]))
        row["identical_hypotheses"] = {"count": same, "of": len(items)}
    except ImportError as err:
        row["old"] = {"skipped": f"cannot import the old decoder's LM: {err}"}
    row["hypotheses"] = {it["id"]: {k: v[i] for k, v in hyps.items()}
                         for i, it in enumerate(items)}
    return row


def committed_row(path: str) -> dict:
    """The committed result being reproduced: its file, WER, CER and utterance count."""
    blob = json.loads(Path(path).read_text())
    return {"file": path, **{k: blob[k] for k in ("wer", "cer", "n_utts", "decoding")}}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoints", nargs="+", required=True)
    parser.add_argument("--committed", nargs="*", default=[],
                        help="the committed results JSON of each checkpoint, same order")
    parser.add_argument("--train_csv", required=True)
    parser.add_argument("--test_csv", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--work_dir", default="exp/lm_decoders")
    parser.add_argument("--speakers", type=int, default=None, help="first N test speakers")
    parser.add_argument("--beam_size", type=int, default=10)
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--beta", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if args.committed and len(args.committed) != len(args.checkpoints):
        parser.error("--committed needs one results JSON per checkpoint")
    torch.set_num_threads(args.threads)
    work = Path(args.work_dir)
    lm = str(write_transcript_lm(args.train_csv, work, 3))
    test_csv = speaker_subset(args.test_csv, args.speakers, work / "test_subset.csv")
    results = {"decoders": {"new": "flashlight-text ctc_decoder + KenLM (asr_lhuc.lm_decoder)",
                            "old": "SpeechBrain CTCBeamSearcher + kenlm (pip, built from source)"},
               "beam_size": args.beam_size, "lm_order": 3, "alpha": args.alpha,
               "beta": args.beta, "test_csv": args.test_csv,
               "n_speakers": len({r["spk_id"] for r in read_manifest(test_csv)}), "rows": []}
    for i, checkpoint in enumerate(args.checkpoints):
        row = compare(checkpoint, lm, test_csv, args)
        if args.committed:
            row["committed"] = committed_row(args.committed[i])
        results["rows"].append(row)
    results["command"] = shlex.join(["python", *sys.argv])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    summary = [{k: v for k, v in row.items() if k != "hypotheses"} for row in results["rows"]]
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
