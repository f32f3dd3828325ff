"""Moonshine-base (Useful Sensors / Moonshine AI, MIT): its pretrained encoder as a second frozen
front end, fused with Whisper's (`CTCAcousticModel(moonshine_model="base")`), and its decoder and
tokenizer as the second-pass scorer of `python -m recipes.speechocean762.ASR.CTC.local.rescore`."""

from .decoder import MoonshineDecoder
from .frontend import MoonshineFrontend, moonshine_encoder_path
from .tokenizer import MoonshineTokenizer

__all__ = ["MoonshineDecoder", "MoonshineFrontend", "MoonshineTokenizer", "moonshine_encoder_path"]
