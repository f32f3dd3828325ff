#!/usr/bin/env python3
"""Prepare speechocean762 manifests (train/valid/test/test_adapt/test_eval CSVs).

Usage:
    python speechocean762_prepare.py --data_folder ../shared/data/speechocean762 \
        --save_folder results/speechocean762/data
    python speechocean762_prepare.py --data_folder mispeech/speechocean762 --save_folder ...

The work is done by :func:`asr_lhuc.data.prepare_speechocean762`; see its docstring.
"""

import argparse
import logging
import sys
from pathlib import Path

try:
    from asr_lhuc.data import prepare_speechocean762
except ImportError:  # run from a source checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[4]))
    from asr_lhuc.data import prepare_speechocean762


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_folder", required=True,
                        help="corpus root (train/, test/, WAVE/) or 'mispeech/speechocean762'")
    parser.add_argument("--save_folder", required=True, help="where the CSVs are written")
    parser.add_argument("--n_valid_speakers", type=int, default=5)
    parser.add_argument("--n_adapt_utts", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--max_speakers", type=int, default=None)
    parser.add_argument("--max_utts", type=int, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    paths = prepare_speechocean762(**vars(args))
    for split, path in paths.items():
        print(f"{split}: {path}")


if __name__ == "__main__":
    main()
