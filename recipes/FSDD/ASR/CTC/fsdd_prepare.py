#!/usr/bin/env python3
"""Prepare the Free Spoken Digit Dataset: 16 kHz WAV copies + train/valid/test(+adapt/eval) CSVs.

Usage:
    python fsdd_prepare.py --data_folder ../shared/data/fsdd --save_folder results/fsdd/data
    python fsdd_prepare.py ... --test_speakers george lucas   # hold out other speakers

By default the non-US-accented speakers are held out as test (the adaptation speakers) and the
US speakers' utterances are split into train/valid. The work is done by
:func:`asr_lhuc.data.prepare_fsdd`; see its docstring.
"""

import argparse
import logging
import sys
from pathlib import Path

try:
    from asr_lhuc.data import prepare_fsdd
except ImportError:  # run from a source checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[4]))
    from asr_lhuc.data import prepare_fsdd


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_folder", required=True,
                        help="FSDD root (recordings/, speakers.tsv)")
    parser.add_argument("--save_folder", required=True, help="where WAVs and CSVs are written")
    parser.add_argument("--test_speakers", nargs="+", default=None,
                        help="speakers held out as test (default: the non-US accents)")
    parser.add_argument("--valid_fraction", type=float, default=0.1)
    parser.add_argument("--n_adapt_utts", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--max_utts", type=int, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    paths = prepare_fsdd(**vars(args))
    for split, path in paths.items():
        print(f"{split}: {path}")


if __name__ == "__main__":
    main()
