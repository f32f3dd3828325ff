#!/usr/bin/env python3
"""Generate the synthetic eSpeak NG multi-speaker corpus and its manifests (the default data).

Usage:
    python synthetic_prepare.py --data_folder data/synthetic --save_folder data/synthetic
    python synthetic_prepare.py ... --n_train_speakers 60 --utts_per_train_speaker 100  # bigger

Defaults: 24 training speakers x 30 utterances (train + valid by utterance) and 6 held-out
adaptation speakers x 20 utterances (test, split into test_adapt/test_eval), 16 kHz WAV.
The work is done by :func:`asr_lhuc.data.prepare_synthetic`; see its docstring.
"""

import argparse
import logging
import sys
from pathlib import Path

try:
    from asr_lhuc.data import prepare_synthetic
except ImportError:  # run from a source checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[4]))
    from asr_lhuc.data import prepare_synthetic


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_folder", required=True, help="where the WAV files are generated")
    parser.add_argument("--save_folder", required=True, help="where the CSVs are written")
    parser.add_argument("--n_train_speakers", type=int, default=24)
    parser.add_argument("--n_test_speakers", type=int, default=6)
    parser.add_argument("--utts_per_train_speaker", type=int, default=30)
    parser.add_argument("--utts_per_test_speaker", type=int, default=20)
    parser.add_argument("--valid_fraction", type=float, default=0.1)
    parser.add_argument("--n_adapt_utts", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1234)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    paths = prepare_synthetic(**vars(args))
    for split, path in paths.items():
        print(f"{split}: {path}")


if __name__ == "__main__":
    main()
