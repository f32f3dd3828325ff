"""Whisper's pretrained encoder as a frozen front end (weights from a CTranslate2 conversion)."""

from .bundled import whisper_model_bin
from .ct2_reader import read_ct2_variables
from .encoder import LogMel, WhisperEncoder
from .frontend import WhisperFrontend

__all__ = ["LogMel", "WhisperEncoder", "WhisperFrontend", "read_ct2_variables",
           "whisper_model_bin"]
