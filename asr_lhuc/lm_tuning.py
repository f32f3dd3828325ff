"""Choose the LM weight and word bonus of CTC beam search on validation data, then test once.

    python -m asr_lhuc.lm_tuning \\
        --checkpoint recipes/speechocean762/ASR/CTC/pretrained/whisper_si.pt \\
        --train_csv exp/data/speechocean762/train.csv \\
        --valid_csv exp/data/speechocean762/valid.csv \\
        --test_csv exp/data/speechocean762/test.csv \\
        --out results/asr/speechocean762/decoding/si_lm_tuned.json

The acoustic model runs once per utterance (SI mode); only the beam search is repeated for each
(alpha, beta) of the grid. The LM is the word n-gram of the training transcripts (`asr_lhuc.lm`),
so nothing of the test set is seen before the chosen pair decodes it.
"""

import argparse
import itertools
import json
import logging
import sys
from pathlib import Path

import torch
from tqdm import tqdm

import lhuc

from .adapt.utterances import load_speakers, pad_batch
from .cli import (
    add_decoding_args,
    add_feature_cache_arg,
    describe_device,
    feature_cache_dir,
    pick_device,
    set_threads,
    write_results,
)
from .data import normalize_text
from .decode import beam_texts, make_beam_searcher
from .lm import write_transcript_lm
from .pretrained import STORED_CACHE_DIR, load_pretrained
from .scoring import age_group_fields, wer_by_age_group, wer_cer

logger = logging.getLogger(__name__)


@torch.no_grad()
def utterance_log_probs(model, csv: str, batch_size: int = 16,
                        speaker_rows: dict[str, int] | None = None) -> list[dict]:
    """Per utterance of `csv`: id, reference, age and its (T, V) log-probabilities.

    The SI row is used, or with `speaker_rows` ({speaker: LHUC row}, e.g. adapted speakers)
    each utterance's speaker's row (the SI row for speakers not in it)."""
    utts = sorted((u for group in load_speakers(csv).values() for u in group),
                  key=lambda u: u.duration)
    device = next(model.parameters()).device
    items = []
    for start in tqdm(range(0, len(utts), batch_size), desc=f"acoustic model {Path(csv).name}"):
        part = utts[start: start + batch_size]
        wavs, lens = pad_batch(part)
        rows = None if speaker_rows is None else torch.tensor(
            [speaker_rows.get(u.spk_id, -1) for u in part], device=device)
        with lhuc.identities(model, rows):
            log_probs, out_lens = model(wavs.to(device), lens.to(device),
                                        utt_ids=[u.id for u in part])
        frames = torch.round(out_lens * log_probs.shape[1]).long().clamp(min=1).tolist()
        items += [{"id": u.id, "ref": normalize_text(u.text), "age": u.age,
                   "log_probs": log_probs[b, :n].cpu()}
                  for b, (u, n) in enumerate(zip(part, frames))]
    return items


def beam_decode(items: list[dict], searcher) -> list[str]:
    return [normalize_text(beam_texts(it["log_probs"][None], torch.ones(1), searcher)[0][0])
            for it in items]


def score(items: list[dict], hyps: list[str]) -> dict:
    refs = [it["ref"] for it in items]
    scores = wer_cer(refs, hyps)
    groups = wer_by_age_group(refs, hyps, [it["age"] for it in items])
    return {"wer": scores["wer"], "cer": scores["cer"], "n_utts": len(items),
            **age_group_fields(groups)}


def tune(checkpoint: str, train_csv: str, valid_csv: str, test_csv: str, work_dir: str,
         alphas: list[float], betas: list[float], beam_size: int = 10, lm_order: int = 3,
         default: tuple[float, float] = (0.5, 1.0), device: str | None = None,
         feature_cache_dir=STORED_CACHE_DIR) -> dict:
    """Grid-search (alpha, beta) by validation WER; test with the best pair and the default."""
    device = pick_device(device)
    model, encoder, _, _ = load_pretrained(checkpoint, device,
                                           feature_cache_dir=feature_cache_dir)
    lm = str(write_transcript_lm(train_csv, work_dir, lm_order))
    valid, test = utterance_log_probs(model, valid_csv), utterance_log_probs(model, test_csv)
    grid = []
    for alpha, beta in tqdm(list(itertools.product(alphas, betas)), desc="LM weights (valid)"):
        searcher = make_beam_searcher(encoder, beam_size, lm, alpha, beta)
        grid.append({"alpha": alpha, "beta": beta, **score(valid, beam_decode(valid, searcher))})
    best = min(grid, key=lambda g: (g["wer"], g["cer"]))
    results = {"checkpoint": checkpoint, "beam_size": beam_size, "lm_order": lm_order,
               "device": describe_device(device),
               "valid_grid": grid, "chosen": {"alpha": best["alpha"], "beta": best["beta"]}}
    for name, (alpha, beta) in (("test", (best["alpha"], best["beta"])), ("test_default", default)):
        searcher = make_beam_searcher(encoder, beam_size, lm, alpha, beta)
        results[name] = {"alpha": alpha, "beta": beta, **score(test, beam_decode(test, searcher))}
    return results


def main(argv=None):
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", required=True, help="an asr_lhuc pretrained .pt")
    for split in ("train", "valid", "test"):
        parser.add_argument(f"--{split}_csv", required=True)
    parser.add_argument("--out", required=True, help="results JSON")
    parser.add_argument("--work_dir", default="exp/lm_tuning", help="where the LM is written")
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.3, 0.5, 0.8, 1.2])
    parser.add_argument("--betas", type=float, nargs="+", default=[0.0, 1.0, 2.0])
    add_decoding_args(parser, lm_weights=False)
    add_feature_cache_arg(parser)
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    set_threads(args)
    results = write_results(args.out, tune(args.checkpoint, args.train_csv, args.valid_csv,
                                           args.test_csv, args.work_dir, args.alphas, args.betas,
                                           args.beam_size, args.lm_order,
                                           device=args.device,
                                           feature_cache_dir=feature_cache_dir(args)),
                            "asr_lhuc.lm_tuning", argv)
    print(json.dumps({k: results[k] for k in ("chosen", "test", "test_default")}, indent=1))


if __name__ == "__main__":
    main()
