#!/usr/bin/env python3
"""Per-speaker loop vs batched LHUC adaptation: wall time on the same data in one run.

Usage (from the repository root):
    python benchmarks/asr_adapt_speed.py \
        --checkpoint recipes/speechocean762/ASR/CTC/pretrained/si.pt \
        --test_csv exp/data/speechocean762/test.csv \
        --out results/asr/speechocean762/adapt_speed.json

Both modes get the same first-pass targets, the same per-speaker mini-batches and the same
optimiser settings; the JSON holds both times, their ratio, and the WER after each (they should
agree within noise). `--no_cache` runs the full model at every step (no frozen-prefix cache).
"""

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from asr_lhuc.adapt import (  # noqa: E402
    AdaptConfig,
    AsrSystem,
    add_speaker_rows,
    decode_speakers,
    load_speakers,
    make_targets,
    score,
)
from asr_lhuc.adapt.batched import adapt_batched  # noqa: E402
from asr_lhuc.adapt.loop import adapt_per_speaker  # noqa: E402
from asr_lhuc.device import pick_device  # noqa: E402
from asr_lhuc.pretrained import load_pretrained  # noqa: E402


def build(model, encoder, targets, cache, share_with=None):
    model = copy.deepcopy(model)
    if not model.has_lhuc:
        model.attach_speaker_lhuc(targets, 0)
    system = AsrSystem(model, encoder, device=next(model.parameters()).device, cache=cache)
    if share_with is not None and system.cache is not None:
        system.cache.store = share_with.cache.store  # prefix outputs computed once, not timed
    return system


def _wers(model, encoder, args, speakers, targets, cfg, first) -> dict:
    """WER after each mode (they should agree within noise)."""
    wers = {}
    for name, adapt in (("loop", adapt_per_speaker), ("batched", adapt_batched)):
        system = build(model, encoder, args.lhuc_targets, not args.no_cache, first)
        rows = add_speaker_rows(system.model, list(targets))
        adapt(system, targets, rows, cfg)
        wers[name] = score(speakers, decode_speakers(system, speakers, rows))["wer"]
    return wers


def measure(model, encoder, speakers, cfg, lhuc_targets, cache=True, repeats=3,
            warmup=True) -> dict:
    """Loop and batched adaptation of all `speakers`, timed alternately `repeats` times after an
    untimed run of each (on a GPU the first run pays for CUDA's start-up and kernel choice)."""
    first = build(model, encoder, lhuc_targets, cache)
    targets, _ = make_targets(first, speakers, cfg)  # one first pass, shared by both modes
    result = {"n_speakers": len(speakers), "n_utts": sum(len(u) for u in speakers.values()),
              "cache": cache, "device": str(first.device), "config": cfg.to_dict(),
              "warmup": warmup}
    for repeat in range(-1 if warmup else 0, repeats):
        for name, adapt in (("loop", adapt_per_speaker), ("batched", adapt_batched)):
            system = build(model, encoder, lhuc_targets, cache, first)
            rows = add_speaker_rows(system.model, list(targets))
            _sync(system.device)
            start = time.perf_counter()
            info = adapt(system, targets, rows, cfg)
            _sync(system.device)
            if repeat >= 0:
                result.setdefault(f"{name}_all_seconds", []).append(time.perf_counter() - start)
    for name in ("loop", "batched"):
        result[f"{name}_seconds"] = min(result[f"{name}_all_seconds"])
        result[f"{name}_per_speaker_seconds"] = result[f"{name}_seconds"] / len(speakers)
    result["batched_steps"] = info["steps"]
    result["speedup"] = result["loop_seconds"] / result["batched_seconds"]
    args = argparse.Namespace(lhuc_targets=lhuc_targets, no_cache=not cache)
    result["wer_after"] = _wers(model, encoder, args, speakers, targets, cfg, first)
    return result


def _sync(device: torch.device) -> None:
    """Wait for queued GPU work, so that a stopwatch reads finished work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--test_csv", required=True)
    parser.add_argument("--out", default=None, help="JSON file for the measurements")
    parser.add_argument("--lhuc_targets", nargs="+", default=["DNN.block_0.act", "DNN.block_1.act"])
    parser.add_argument("--max_speakers", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--lr", type=float, default=0.02)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no_cache", action="store_true")
    parser.add_argument("--repeats", type=int, default=3, help="report the fastest of these")
    parser.add_argument("--no_warmup", action="store_true", help="time the first runs too")
    parser.add_argument("--device", default=None, help="default: cuda when there is one")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, encoder, _, _ = load_pretrained(args.checkpoint, pick_device(args.device))
    speakers = load_speakers(args.test_csv, max_speakers=args.max_speakers)
    cfg = AdaptConfig(lr=args.lr, epochs=args.epochs, batch_size=args.batch_size)
    result = {"checkpoint": args.checkpoint, "threads": args.threads,
              **measure(model, encoder, speakers, cfg, args.lhuc_targets, not args.no_cache,
                        args.repeats, not args.no_warmup),
              "command": " ".join(["python", *sys.argv])}
    print(json.dumps(result, indent=1))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
