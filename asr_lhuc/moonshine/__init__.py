"""Moonshine's pretrained encoder (Useful Sensors / Moonshine AI, MIT) as a second frozen
front end, fused with Whisper's (`CTCAcousticModel(moonshine_model="base")`)."""

from .frontend import MoonshineFrontend, moonshine_encoder_path

__all__ = ["MoonshineFrontend", "moonshine_encoder_path"]
