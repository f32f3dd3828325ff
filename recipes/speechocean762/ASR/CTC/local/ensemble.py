"""System combination: average the CTC posteriors of several models frame by frame, then decode.

    python -m recipes.speechocean762.ASR.CTC.local.ensemble \\
        --checkpoints recipes/speechocean762/ASR/CTC/pretrained/whisper_si_continued.pt \\
                      recipes/speechocean762/ASR/CTC/pretrained/whisper_sat_lhuc_continued.pt \\
        --train_csv exp/data/speechocean762/train.csv \\
        --test_csv exp/data/speechocean762/test.csv \\
        --out results/asr/speechocean762/decoding/ensemble.json

Models that share units and frame rate (the same time pooling; e.g. fine-tuned from one
another, so their CTC spikes line up) are averaged in probability space (log of the mean
posterior), each in SI mode. The combined posteriors are decoded greedily and with beam search
+ the training-transcript word n-gram (`asr_lhuc.lm`); the JSON holds every hypothesis by
utterance id, so a stronger first pass can be the target of LHUC adaptation
(`adapt.py`: systems `si_lhuc_external` / `sat_lhuc_external`, `hypotheses_file`).
"""

import argparse
import json
import logging
import math
import sys

import torch

from asr_lhuc.decode import characters_of, greedy_texts, make_beam_searcher
from asr_lhuc.device import describe_device, pick_device
from asr_lhuc.lm import write_transcript_lm
from asr_lhuc.pretrained import STORED_CACHE_DIR, load_pretrained

from .cli import (
    add_decoding_args,
    add_feature_cache_arg,
    feature_cache_dir,
    set_threads,
    write_results,
)
from .first_pass import beam_decode, score, utterance_log_probs


def combine(per_model: list[list[dict]]) -> list[dict]:
    """One item list whose log-probs are the log of the models' mean posterior."""
    first = per_model[0]
    combined = []
    for i, item in enumerate(first):
        parts = [items[i]["log_probs"] for items in per_model]
        if any(items[i]["id"] != item["id"] for items in per_model):
            raise ValueError("the models' utterance orders differ")
        if len({p.shape for p in parts}) != 1:
            raise ValueError(f"{item['id']}: frame counts {[p.shape[0] for p in parts]} differ; "
                             "ensemble models need the same units and frame rate")
        mean = torch.logsumexp(torch.stack(parts), dim=0) - math.log(len(parts))
        combined.append({**item, "log_probs": mean})
    return combined


@torch.no_grad()
def run(checkpoints: list[str], test_csv: str, train_csv: str | None, work_dir: str,
        beam_size: int = 10, lm_order: int = 3, alpha: float = 0.5, beta: float = 1.0,
        device: str | None = None, feature_cache_dir=STORED_CACHE_DIR) -> dict:
    per_model, encoder, device = [], None, pick_device(device)
    for path in checkpoints:
        model, model_encoder, _, _ = load_pretrained(path, device,
                                                     feature_cache_dir=feature_cache_dir)
        if encoder is not None and characters_of(model_encoder) != characters_of(encoder):
            raise ValueError(f"{path}: its output units differ from {checkpoints[0]}'s")
        encoder = model_encoder
        per_model.append(utterance_log_probs(model, test_csv))
    items = combine(per_model)
    greedy = [greedy_texts(it["log_probs"][None], torch.ones(1), encoder)[0] for it in items]
    results = {"checkpoints": checkpoints, "test_csv": test_csv,
               "device": describe_device(device),
               "greedy": score(items, greedy),
               "single_models_greedy": [
                   score(m, [greedy_texts(it["log_probs"][None], torch.ones(1), encoder)[0]
                             for it in m]) for m in per_model]}
    hyps = greedy
    if beam_size > 1:
        lm = str(write_transcript_lm(train_csv, work_dir, lm_order)) if lm_order else None
        searcher = make_beam_searcher(encoder, beam_size, lm, alpha, beta)
        hyps = beam_decode(items, searcher)
        results["beam"] = {"beam_size": beam_size, "lm_order": lm_order, "alpha": alpha,
                           "beta": beta, **score(items, hyps)}
    results["hypotheses"] = {it["id"]: h for it, h in zip(items, hyps)}
    return results


def main(argv=None):
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoints", nargs="+", required=True, help="asr_lhuc .pt files")
    parser.add_argument("--test_csv", required=True)
    parser.add_argument("--train_csv", default=None, help="transcripts of the n-gram LM")
    parser.add_argument("--out", required=True)
    parser.add_argument("--work_dir", default="exp/ensemble", help="where the LM is written")
    add_decoding_args(parser)
    add_feature_cache_arg(parser)
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    if args.beam_size > 1 and args.lm_order and not args.train_csv:
        parser.error("--lm_order > 0 needs --train_csv (the LM's transcripts)")
    set_threads(args)
    results = write_results(args.out, run(args.checkpoints, args.test_csv, args.train_csv,
                                           args.work_dir, args.beam_size, args.lm_order,
                                           args.lm_alpha, args.lm_beta, args.device,
                                           feature_cache_dir(args)),
                            "recipes.speechocean762.ASR.CTC.local.ensemble", argv)
    print(json.dumps({k: v for k, v in results.items() if k != "hypotheses"}, indent=1))


if __name__ == "__main__":
    main()
