"""What the decoding commands (`ensemble`, `rescore`) share: beam/LM, device and feature-cache
options, and writing a results JSON."""

import argparse
import json
import shlex
from pathlib import Path

import torch

from asr_lhuc.pretrained import STORED_CACHE_DIR


def add_decoding_args(parser: argparse.ArgumentParser, lm_weights: bool = True) -> None:
    """--beam_size, --lm_order (0: no LM), optionally --lm_alpha/--lm_beta, and --threads."""
    parser.add_argument("--beam_size", type=int, default=10)
    parser.add_argument("--lm_order", type=int, default=3, help="0: no LM")
    if lm_weights:
        parser.add_argument("--lm_alpha", type=float, default=0.5)
        parser.add_argument("--lm_beta", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default=None,
                        help="cpu, cuda or cuda:N for the acoustic models (default: cuda when "
                             "there is one)")


def add_feature_cache_arg(parser: argparse.ArgumentParser, *aliases: str) -> None:
    """--feature_cache_dir: where the checkpoints' Whisper (and Moonshine) features are cached."""
    parser.add_argument("--feature_cache_dir", *aliases, dest="feature_cache_dir", default=None,
                        help="feature cache folder of Whisper/Moonshine front ends (default: the "
                        "one stored in each checkpoint, relative to where you run; 'none': "
                        "memory only)")


def feature_cache_dir(args):
    """The `feature_cache_dir` argument of `load_pretrained` for --feature_cache_dir."""
    if args.feature_cache_dir is None:
        return STORED_CACHE_DIR
    return None if args.feature_cache_dir.lower() == "none" else args.feature_cache_dir


def set_threads(args) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)


def write_results(path: str, results: dict, module: str, argv: list[str]) -> dict:
    """Write `results` with the command that made them (`python -m module argv`) to `path`."""
    results["command"] = shlex.join(["python", "-m", module, *argv])
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(results, indent=1) + "\n")
    return results
