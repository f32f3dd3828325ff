#!/usr/bin/env python3
"""Unsupervised LHUC speaker adaptation on FSDD's accented (held-out) speakers, with WER.

Usage (from the repository root):
    python recipes/FSDD/ASR/CTC/adapt.py recipes/FSDD/ASR/CTC/hparams/adapt.yaml
    python recipes/FSDD/ASR/CTC/adapt.py recipes/FSDD/ASR/CTC/hparams/adapt.yaml \
        --si_checkpoint exp/.../pretrained.pt --sat_checkpoint exp/.../pretrained.pt

Prints the table (si, si_lhuc, sat_si_mode, sat_lhuc, si_lhuc_oracle) and writes adapt.json,
per-speaker plots and one adapter file per speaker (see asr_lhuc/adapt/recipe.py).
"""

import sys
from pathlib import Path

try:
    from asr_lhuc.adapt.recipe import main
except ImportError:  # run from a source checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[4]))
    from asr_lhuc.adapt.recipe import main

from fsdd_prepare import prepare_fsdd  # noqa: E402  (beside this script)

if __name__ == "__main__":
    main(prepare_fsdd, "recipes/FSDD/ASR/CTC/adapt.py")
