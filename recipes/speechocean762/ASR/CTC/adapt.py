#!/usr/bin/env python3
"""Unsupervised LHUC speaker adaptation on speechocean762's 40 test speakers, with WER.

Usage (from the repository root):
    python recipes/speechocean762/ASR/CTC/adapt.py recipes/speechocean762/ASR/CTC/hparams/adapt.yaml
    python recipes/speechocean762/ASR/CTC/adapt.py <hparams/adapt.yaml> \
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

from speechocean762_prepare import prepare_speechocean762  # noqa: E402  (beside this script)

if __name__ == "__main__":
    main(prepare_speechocean762, "recipes/speechocean762/ASR/CTC/adapt.py")
