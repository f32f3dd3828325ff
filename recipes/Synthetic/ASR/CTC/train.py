#!/usr/bin/env python3
"""Train a character CTC model (SI or SAT-LHUC) on the synthetic eSpeak NG corpus.

Usage (from the repository root):
    python recipes/Synthetic/ASR/CTC/train.py recipes/Synthetic/ASR/CTC/hparams/train.yaml
    python recipes/Synthetic/ASR/CTC/train.py recipes/Synthetic/ASR/CTC/hparams/train.yaml \
        --mode sat_lhuc
    torchrun --nproc_per_node=2 recipes/Synthetic/ASR/CTC/train.py <hparams> (DDP)

A killed run resumes from its last checkpoint when rerun with the same arguments.
"""

import sys
from pathlib import Path

try:
    from asr_lhuc.data import prepare_synthetic
    from asr_lhuc.experiment import main
except ImportError:  # run from a source checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[4]))
    from asr_lhuc.data import prepare_synthetic
    from asr_lhuc.experiment import main

if __name__ == "__main__":
    main(prepare_synthetic, "recipes/Synthetic/ASR/CTC/train.py")
