"""Data utilities for the ASR recipes: manifests, audio checks, text normalisation, Kaldi-style
folders, speaker/utterance splits, and the synthetic corpus generator (`prepare_synthetic`).
Each corpus's own preparation lives beside its recipe (`recipes/<Corpus>/ASR/CTC/*_prepare.py`).

Every ``prepare_*`` function writes SpeechBrain-style CSVs (columns ``ID, duration, wav, spk_id,
wrd, age, gender``) plus ``prep_summary.json`` (what was kept/skipped and why) and
``prep_options.json`` (a rerun with the same options does nothing).
"""

from .audio import DEFAULT_SILENCE_PEAK, AudioProblem, load_audio, resample, write_wav
from .manifest import MANIFEST_COLUMNS, Utterance, read_manifest, write_manifest
from .splits import CHILD_MAX_AGE, age_group
from .summary import PrepSummary
from .synthetic import prepare_synthetic
from .text import normalize_text, spell_digits

__all__ = [
    "CHILD_MAX_AGE",
    "DEFAULT_SILENCE_PEAK",
    "MANIFEST_COLUMNS",
    "AudioProblem",
    "PrepSummary",
    "Utterance",
    "age_group",
    "load_audio",
    "normalize_text",
    "spell_digits",
    "prepare_synthetic",
    "read_manifest",
    "resample",
    "write_manifest",
    "write_wav",
]
