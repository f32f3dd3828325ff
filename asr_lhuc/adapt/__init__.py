"""Unsupervised LHUC speaker adaptation of CTC models, one idea per file.

- `config`: AdaptConfig (optimiser, lr, epochs, confidence filtering, rounds, ...).
- `utterances`: test speakers' audio in memory; `system`: the model seen from adaptation;
  `cache`: the frozen layers below the lowest LHUC table computed once per utterance.
- `targets`: first-pass hypotheses (1-best, or N-best with posterior weights) as CTC targets,
  confidence filtering (oracle: transcripts); `loss`: CTC, frame CE, frame entropy, KL to SI;
  `lexicon`: snaps first-pass words to training-transcript words.
- `rows`: new rows for test speakers; a guard that keeps every other row fixed.
- `schedule`, `steps`: per-speaker mini-batches and the shared update loop.
- `loop` (one speaker at a time), `batched` (all at once), `online` (utterance by utterance).
- `protocols`: transductive / held-out; `pipeline`: adapt, decode, score.
- `adapters`: one adapter file per speaker; `report`: table, JSON, plots;
  `recipe`: what recipes/<Corpus>/ASR/CTC/adapt.py runs (systems, timing, sweeps).
"""

from .adapters import load_speaker_adapter, save_speaker_adapters
from .batched import adapt_batched
from .cache import PrefixCache
from .config import AdaptConfig
from .lexicon import Lexicon
from .loop import adapt_per_speaker
from .online import online_hypotheses
from .pipeline import adapt_speakers, decode_speakers, score
from .protocols import split_protocol
from .rows import RowGuard, add_speaker_rows, reset_rows
from .system import AsrSystem
from .targets import Target, make_targets, select_confident
from .utterances import SpeakerUtterance, load_speakers, pad_batch, take_seconds

__all__ = [
    "AdaptConfig", "AsrSystem", "Lexicon", "PrefixCache", "RowGuard", "SpeakerUtterance",
    "Target", "adapt_batched",
    "adapt_per_speaker", "adapt_speakers", "add_speaker_rows", "decode_speakers",
    "load_speaker_adapter", "load_speakers", "make_targets", "online_hypotheses", "pad_batch",
    "reset_rows", "save_speaker_adapters", "score", "select_confident", "split_protocol",
    "take_seconds",
]
