#!/usr/bin/env python3
"""Train a character CTC model (SI or SAT-LHUC) on the Free Spoken Digit Dataset.

Usage (from the repository root):
    python recipes/FSDD/ASR/CTC/train.py recipes/FSDD/ASR/CTC/hparams/train.yaml
    python recipes/FSDD/ASR/CTC/train.py recipes/FSDD/ASR/CTC/hparams/train.yaml \
        --mode sat_lhuc
    torchrun --nproc_per_node=2 recipes/FSDD/ASR/CTC/train.py <hparams> (DDP)

A killed run resumes from its last checkpoint when rerun with the same arguments.
"""

import sys
from pathlib import Path

try:
    from asr_lhuc.experiment import main
except ImportError:  # run from a source checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[4]))
    from asr_lhuc.experiment import main

from fsdd_prepare import prepare_fsdd  # noqa: E402  (beside this script)

if __name__ == "__main__":
    main(prepare_fsdd, "recipes/FSDD/ASR/CTC/train.py")
