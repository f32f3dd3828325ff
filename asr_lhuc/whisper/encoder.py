"""Whisper's audio encoder in PyTorch, with weights from a CTranslate2 conversion (`from_ct2`)
or a Hugging Face `transformers` checkpoint (`from_transformers`).

Whisper (Radford et al., 2022) turns 16 kHz audio into 80 log-mel channels every 10 ms, two
convolutions (the second halves the frame rate to 50 Hz), sinusoidal positions and pre-norm
Transformer blocks. Whisper pads every input to 30 s; here an utterance is encoded at its own
length (the positions are cut to it), which is much cheaper for 2-10 s utterances and keeps
the features of one utterance independent of its batch.
"""

import copy
import re

import torch
import torchaudio
from torch import nn
from torch.nn import functional as F

from .ct2_reader import read_ct2_variables

SAMPLE_RATE, N_FFT, HOP = 16000, 400, 160
MAX_FRAMES = 1500  # encoder positions: 30 s at 50 Hz


class LogMel(nn.Module):
    """Whisper's log-mel features (T, n_mels) of one unpadded waveform."""

    def __init__(self, n_mels: int = 80):
        super().__init__()
        filters = torchaudio.functional.melscale_fbanks(
            N_FFT // 2 + 1, 0.0, SAMPLE_RATE / 2, n_mels, SAMPLE_RATE, norm="slaney",
            mel_scale="slaney")
        self.register_buffer("filters", filters.T.contiguous(), persistent=False)
        self.register_buffer("window", torch.hann_window(N_FFT), persistent=False)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        stft = torch.stft(wav.float(), N_FFT, HOP, window=self.window, return_complex=True)
        power = stft[..., :-1].abs() ** 2
        log_spec = (self.filters @ power).clamp(min=1e-10).log10()
        log_spec = torch.maximum(log_spec, log_spec.max() - 8.0)  # 80 dB dynamic range
        return ((log_spec + 4.0) / 4.0).T


class EncoderBlock(nn.Module):
    """Pre-norm self-attention + GELU MLP, as in Whisper."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.attn_norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.mlp_norm = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor, key_padding: torch.Tensor | None = None) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = (self.qkv(self.attn_norm(x))
                   .view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4))
        mask = None if key_padding is None else ~key_padding[:, None, None, :]
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x = x + self.out(a.transpose(1, 2).reshape(b, t, d))
        return x + self.mlp(self.mlp_norm(x))


class WhisperEncoder(nn.Module):
    """log-mel -> conv(3) -> GELU -> conv(3, stride 2) -> GELU -> + positions -> blocks -> norm.

    `forward(mels (B, T, n_mels), lengths (B,) in mel frames)` -> (B, ceil(T/2), dim).
    """

    def __init__(self, n_mels: int, dim: int, heads: int, layers: int,
                 max_frames: int = MAX_FRAMES):
        super().__init__()
        self.dim = dim
        self.conv1 = nn.Conv1d(n_mels, dim, 3, padding=1)
        self.conv2 = nn.Conv1d(dim, dim, 3, stride=2, padding=1)
        self.register_buffer("positions", torch.zeros(max_frames, dim))
        self.blocks = nn.ModuleList(EncoderBlock(dim, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)

    def forward(self, mels: torch.Tensor, lengths: torch.Tensor | None = None,
                upto: int | None = None) -> torch.Tensor:
        """`upto=k`: run only the first k blocks and return their (un-normed) output, the
        input of `WhisperTop(self, k)`."""
        x = F.gelu(self.conv1(mels.transpose(1, 2)))
        x = F.gelu(self.conv2(x)).transpose(1, 2)
        if x.shape[1] > len(self.positions):
            raise ValueError(f"{x.shape[1]} encoder frames exceed Whisper's "
                             f"{len(self.positions)} (30 s): encode long audio in 30 s chunks")
        x = x + self.positions[: x.shape[1]]
        padding = None
        if lengths is not None:
            frames = (lengths + 1) // 2
            padding = torch.arange(x.shape[1], device=x.device)[None, :] >= frames[:, None]
        for block in self.blocks[:upto]:
            x = block(x, padding)
        return x if upto is not None else self.norm(x)

    @classmethod
    def from_ct2(cls, model_bin: str) -> "WhisperEncoder":
        """Build and load the encoder of a CTranslate2 Whisper ``model.bin``."""
        spec, v = read_ct2_variables(model_bin, prefix="encoder/")
        if spec != "WhisperSpec":
            raise ValueError(f"{model_bin} holds a {spec}, not a Whisper model")
        dim, n_mels = v["encoder/conv1/weight"].shape[:2]
        layers = len({k.split("/")[1] for k in v if re.match(r"encoder/layer_\d+/", k)})
        heads = int(v["encoder/num_heads"]) if "encoder/num_heads" in v else dim // 64
        encoder = cls(n_mels, dim, heads, layers)
        encoder.load_state_dict(_rename(v, layers), strict=True)
        return encoder.eval()


    @classmethod
    def from_transformers(cls, name_or_path: str) -> "WhisperEncoder":
        """Build and load the encoder of a `transformers` Whisper checkpoint: a hub id (e.g.
        ``openai/whisper-base``) or a folder with config.json + model.safetensors. It is read
        as SpeechBrain's Whisper lobe reads it, with ``WhisperModel.from_pretrained``, and the
        encoder's weights are renamed into this module (q, k, v fused; k has no bias)."""
        try:
            from transformers import WhisperModel
        except ImportError as err:
            raise ImportError(f"whisper model {name_or_path!r} is a transformers checkpoint: "
                              "pip install transformers (the project's `hf` extra)") from err
        try:
            hf = WhisperModel.from_pretrained(name_or_path).encoder
        except OSError as err:
            raise OSError(f"whisper model {name_or_path!r}: no transformers Whisper checkpoint "
                          "there (a local folder needs config.json + model.safetensors; a hub "
                          f"id needs the network or the Hugging Face cache): {err}") from err
        config = hf.config
        if config.activation_function != "gelu":
            raise ValueError(f"whisper model {name_or_path!r}: activation "
                             f"{config.activation_function!r}; the port implements Whisper's gelu")
        encoder = cls(config.num_mel_bins, config.d_model, config.encoder_attention_heads,
                      config.encoder_layers, max_frames=config.max_source_positions)
        encoder.load_state_dict(_from_transformers(hf.state_dict(), config.encoder_layers),
                                strict=True)
        return encoder.eval()


class WhisperTop(nn.Module):
    """Trainable copies of a Whisper encoder's blocks from `start` on, and its final norm.

    Fine-tuning only the top of Whisper keeps its bottom frozen and cacheable: the cache holds
    the output of block `start` (`WhisperFrontend(split_block=start)`), and this module turns
    it into the encoder's output. Initialised to the pretrained weights, so before training
    `top(encoder(m, upto=k))` equals `encoder(m)`.
    `forward(x (B, T, dim), rel_lens (B,))` -> (B, T, dim).
    """

    def __init__(self, encoder: WhisperEncoder, start: int):
        super().__init__()
        if not 0 <= start < len(encoder.blocks):
            raise ValueError(f"whisper split block {start}: the encoder has blocks 0.."
                             f"{len(encoder.blocks) - 1}; train at least the last one")
        self.blocks = copy.deepcopy(encoder.blocks[start:]).requires_grad_(True)
        self.norm = copy.deepcopy(encoder.norm).requires_grad_(True)

    def forward(self, x: torch.Tensor, rel_lens: torch.Tensor) -> torch.Tensor:
        frames = torch.round(rel_lens * x.shape[1])
        padding = torch.arange(x.shape[1], device=x.device)[None, :] >= frames[:, None]
        for block in self.blocks:
            x = block(x, padding)
        return self.norm(x)


def _rename(v: dict, layers: int) -> dict:
    """CTranslate2 variable names -> this module's state dict (float32)."""
    names = {"conv1.weight": "conv1/weight", "conv1.bias": "conv1/bias",
             "conv2.weight": "conv2/weight", "conv2.bias": "conv2/bias",
             "positions": "position_encodings/encodings",
             "norm.weight": "layer_norm/gamma", "norm.bias": "layer_norm/beta"}
    per_layer = {"attn_norm.weight": "self_attention/layer_norm/gamma",
                 "attn_norm.bias": "self_attention/layer_norm/beta",
                 "qkv.weight": "self_attention/linear_0/weight",
                 "qkv.bias": "self_attention/linear_0/bias",
                 "out.weight": "self_attention/linear_1/weight",
                 "out.bias": "self_attention/linear_1/bias",
                 "mlp_norm.weight": "ffn/layer_norm/gamma", "mlp_norm.bias": "ffn/layer_norm/beta",
                 "mlp.0.weight": "ffn/linear_0/weight", "mlp.0.bias": "ffn/linear_0/bias",
                 "mlp.2.weight": "ffn/linear_1/weight", "mlp.2.bias": "ffn/linear_1/bias"}
    for i in range(layers):
        names.update({f"blocks.{i}.{ours}": f"layer_{i}/{theirs}"
                      for ours, theirs in per_layer.items()})
    return {ours: v[f"encoder/{theirs}"].float() for ours, theirs in names.items()}


def _from_transformers(hf: dict, layers: int) -> dict:
    """`transformers`' WhisperEncoder state dict -> this module's state dict (float32)."""
    state = {"conv1.weight": hf["conv1.weight"], "conv1.bias": hf["conv1.bias"],
             "conv2.weight": hf["conv2.weight"], "conv2.bias": hf["conv2.bias"],
             "positions": hf["embed_positions.weight"],
             "norm.weight": hf["layer_norm.weight"], "norm.bias": hf["layer_norm.bias"]}
    per_layer = {"attn_norm": "self_attn_layer_norm", "out": "self_attn.out_proj",
                 "mlp_norm": "final_layer_norm", "mlp.0": "fc1", "mlp.2": "fc2"}
    for i in range(layers):
        theirs = f"layers.{i}."
        for ours, name in per_layer.items():
            for kind in ("weight", "bias"):
                state[f"blocks.{i}.{ours}.{kind}"] = hf[f"{theirs}{name}.{kind}"]
        q, k, v = (f"{theirs}self_attn.{x}_proj" for x in "qkv")
        state[f"blocks.{i}.qkv.weight"] = torch.cat([hf[f"{x}.weight"] for x in (q, k, v)])
        state[f"blocks.{i}.qkv.bias"] = torch.cat([  # Whisper's key projection has no bias
            hf[f"{q}.bias"], torch.zeros_like(hf[f"{q}.bias"]), hf[f"{v}.bias"]])
    return {name: value.float() for name, value in state.items()}
