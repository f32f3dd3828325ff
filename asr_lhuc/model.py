"""The CTC acoustic model: front end -> input normalisation -> SpeechBrain CRDNN -> CTC head.

The front end is Fbank (``frontend="fbank"``, a model trained from scratch) or a frozen,
pretrained Whisper encoder (``frontend="whisper"``; `asr_lhuc.whisper`), whose 50 Hz output the
CRDNN (usually without CNN blocks) turns into characters.

LHUC is not part of the model code: `attach_speaker_lhuc` puts `lhuc` amplitude tables on named
encoder layers (a YAML list such as ``["DNN.block_0.act", "DNN.block_1.act"]``), and the batch's
speaker rows are chosen with ``lhuc.set_identities(model, ids)`` (``ids=None``: the SI row).
"""

from dataclasses import dataclass

import speechbrain as sb
import torch
from speechbrain.lobes.features import Fbank
from speechbrain.lobes.models.CRDNN import CRDNN
from speechbrain.processing.features import InputNormalization
from torch import nn

import lhuc

RNN_CLASSES = {"lstm": sb.nnet.RNN.LSTM, "gru": sb.nnet.RNN.GRU}


@dataclass
class FrontEndOutput:
    """The untrained front end's output for a padded batch. `lens`: the relative lengths the
    model reports; `frame_lens`: those of the feature frames themselves (fine-tuned Whisper
    blocks mask with them)."""

    feats: torch.Tensor
    lens: torch.Tensor
    frame_lens: torch.Tensor


class StatsDetachedNormalization(InputNormalization):
    """SpeechBrain's global input normalisation, with statistics that never carry gradients
    and that live on the model's device.

    Its running mean/std are updated from the batch itself; when the features are trained
    (fine-tuned Whisper blocks) they would otherwise hold the batch's graph into the next one.
    """

    def _update_global_stats(self, x, mask):
        super()._update_global_stats(x.detach(), mask)

    # SpeechBrain keeps the statistics as plain tensor attributes, not buffers, and moves them
    # only in its own `.to()`, which `model.to(device)` never calls on a child module. They
    # also come back from a checkpoint on the CPU. Both left them on the CPU beside a CUDA
    # model. `_apply` is what every move or cast of the parent runs on each child, so the
    # statistics follow the model there, and loaded statistics go where the model already is.
    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)
        self.glob_mean, self.glob_std = fn(self.glob_mean), fn(self.glob_std)
        return self

    def _load_statistics_dict(self, state):
        device = self.glob_mean.device
        state = dict(state, glob_mean=torch.as_tensor(state["glob_mean"]).to(device),
                     glob_std=torch.as_tensor(state["glob_std"]).to(device))
        return super()._load_statistics_dict(state)


class CTCAcousticModel(nn.Module):
    """A character CTC model built from SpeechBrain parts, small enough for CPU training.

    Arguments
    ---------
    n_tokens : output units including the CTC blank (index 0).
    n_mels : Fbank channels.
    sample_rate : audio rate the features expect.
    cnn_blocks, cnn_channels : CRDNN convolution blocks (each halves the frequency axis).
    cnn_2d_pooling : each CNN block also halves the time axis (2 blocks: 25 frames/s); cheap,
        since the second block already runs at half rate.
    time_pooling_size : extra time subsampling after the CNN (1 disables it).
    rnn_class, rnn_layers, rnn_neurons, rnn_bidirectional : the recurrent layers.
    dnn_blocks, dnn_neurons : the Linear/BatchNorm/LeakyReLU blocks LHUC usually targets.
    dropout : dropout everywhere in the encoder.
    frontend : "fbank" or "whisper" (a frozen pretrained Whisper encoder; n_mels is then unused).
    whisper_model : which Whisper ("base", a transformers hub id or folder, a CTranslate2 folder).
    feature_cache_dir : where the Whisper features of each utterance id are kept (None: memory).
    projection_dim : CRDNN's linear projection before the RNN (-1: none).
    encoder_type : "crdnn" (CNN/RNN/DNN), the only head (stored in checkpoints' configs).
    whisper_trainable_blocks : fine-tune Whisper's top N blocks (and final norm) as part of the
        model (`self.whisper_top`); the front end then caches the output of the blocks below.
    pack_rnn : the RNN skips each utterance's padding (packed sequences), so an utterance's
        outputs do not depend on the longer ones batched with it. Off by default: the
        committed checkpoints were trained and measured with padding reaching the backward RNN.

    ``self.config`` keeps these arguments so that `asr_lhuc.pretrained` can rebuild the model.
    """

    def __init__(self, n_tokens: int, n_mels: int = 40, sample_rate: int = 16000,
                 cnn_blocks: int = 2, cnn_channels: tuple = (16, 32), cnn_2d_pooling: bool = True,
                 time_pooling_size: int = 1,
                 rnn_class: str = "lstm", rnn_layers: int = 2, rnn_neurons: int = 256,
                 rnn_bidirectional: bool = True, dnn_blocks: int = 2, dnn_neurons: int = 256,
                 dropout: float = 0.15, frontend: str = "fbank", whisper_model: str = "base",
                 feature_cache_dir: str | None = None, projection_dim: int = -1,
                 encoder_type: str = "crdnn", whisper_trainable_blocks: int = 0,
                 pack_rnn: bool = False):
        super().__init__()
        self.config = dict(
            n_tokens=n_tokens, n_mels=n_mels, sample_rate=sample_rate, cnn_blocks=cnn_blocks,
            cnn_channels=list(cnn_channels), cnn_2d_pooling=cnn_2d_pooling,
            time_pooling_size=time_pooling_size,
            rnn_class=rnn_class, rnn_layers=rnn_layers, rnn_neurons=rnn_neurons,
            rnn_bidirectional=rnn_bidirectional, dnn_blocks=dnn_blocks, dnn_neurons=dnn_neurons,
            dropout=dropout, frontend=frontend, whisper_model=whisper_model,
            feature_cache_dir=feature_cache_dir, projection_dim=projection_dim,
            encoder_type=encoder_type, whisper_trainable_blocks=whisper_trainable_blocks,
            pack_rnn=pack_rnn,
        )
        if encoder_type != "crdnn":  # a Conformer head was tried and gained nothing
            raise ValueError(f"encoder_type must be 'crdnn', got {encoder_type!r} (the "
                             "Conformer head was removed; docs/RESULTS.md has its results)")
        self.lhuc_config: dict | None = None
        self.frozen = False
        self.whisper_top = None
        if frontend == "fbank":
            self.compute_features = Fbank(sample_rate=sample_rate, n_mels=n_mels)
            self.feature_dim = n_mels
        elif frontend == "whisper":
            self.compute_features, self.whisper_top = _whisper_parts(
                whisper_model, feature_cache_dir, whisper_trainable_blocks)
            self.feature_dim = self.compute_features.dim
        else:
            raise ValueError(f"frontend must be 'fbank' or 'whisper', got {frontend!r}")
        if whisper_trainable_blocks and frontend != "whisper":
            raise ValueError("whisper_trainable_blocks needs frontend: whisper")
        # epoch=None in forward: the global statistics update whenever the model trains.
        self.normalize = StatsDetachedNormalization(norm_type="global", update_until_epoch=None)
        self.encoder = CRDNN(
            input_shape=[None, None, self.feature_dim], activation=nn.LeakyReLU,
            dropout=dropout, cnn_blocks=cnn_blocks, cnn_channels=list(cnn_channels),
            cnn_kernelsize=(3, 3), using_2d_pooling=cnn_2d_pooling,
            time_pooling=time_pooling_size > 1, time_pooling_size=max(time_pooling_size, 1),
            rnn_class=RNN_CLASSES[rnn_class], rnn_layers=rnn_layers, rnn_neurons=rnn_neurons,
            rnn_bidirectional=rnn_bidirectional, dnn_blocks=dnn_blocks,
            dnn_neurons=dnn_neurons, projection_dim=projection_dim,
        )
        enc_dim = dnn_neurons if dnn_blocks > 0 else rnn_neurons * (1 + rnn_bidirectional)
        self.ctc_lin = sb.nnet.linear.Linear(input_size=enc_dim, n_neurons=n_tokens)

    def features(self, wavs: torch.Tensor, wav_lens: torch.Tensor,
                 utt_ids: list[str] | None = None) -> torch.Tensor:
        """Normalised features (B, T, feature_dim); statistics update only in training mode.

        `utt_ids` lets the Whisper front end reuse each utterance's cached output; pass them
        only when the waveforms are the utterances' own (no speed perturbation)."""
        return self.features_and_lengths(wavs, wav_lens, utt_ids)[0]

    def features_and_lengths(self, wavs, wav_lens, utt_ids=None, speeds=None):
        """(normalised features, relative lengths). `speeds` (percent, one per utterance; the
        Whisper front end only) speed-perturbs each utterance, from the feature cache where it
        holds that (utterance, speed); the lengths then follow the perturbed utterances."""
        with torch.autocast(wavs.device.type, enabled=False):
            front = self.frozen_front_end(wavs, wav_lens, utt_ids, speeds)
            return self.features_from(front), front.lens

    def frozen_front_end(self, wavs, wav_lens, utt_ids=None, speeds=None) -> "FrontEndOutput":
        """What the untrained front end gives for a batch (Fbank, or Whisper's frozen blocks):
        the same at every step for an utterance, so it can be cached."""
        if self.config["frontend"] != "whisper":
            if speeds is not None:
                raise ValueError("per-utterance speeds need the Whisper front end; use "
                                 "`speed_perturb` (SpeechBrain's SpeedPerturb) with Fbank")
            return FrontEndOutput(self.compute_features(wavs.float()), wav_lens, wav_lens)
        feats, feat_lens = self.compute_features.encode_batch(wavs.float(), wav_lens, utt_ids,
                                                              speeds)
        return FrontEndOutput(feats, wav_lens if speeds is None else feat_lens, feat_lens)

    def features_from(self, front: "FrontEndOutput") -> torch.Tensor:
        """Normalised features from `frozen_front_end`'s output: the fine-tuned Whisper blocks
        (if any), then the input normalisation."""
        feats = front.feats
        if self.whisper_top is not None:
            feats = self.whisper_top(feats, front.frame_lens)
        return self.normalize(feats, front.lens)

    def encode(self, feats: torch.Tensor, lens: torch.Tensor | None = None) -> torch.Tensor:
        """CTC log-probabilities (B, T', n_tokens) from normalised features; with `pack_rnn`,
        `lens` (relative lengths) keep each utterance's padding out of the RNN."""
        hidden = run_layers(self.encoder.values(), feats, self.rnn_lengths(lens))
        return self.ctc_lin(hidden).log_softmax(dim=-1)

    def rnn_lengths(self, lens: torch.Tensor | None) -> torch.Tensor | None:
        """The relative lengths the RNN should skip padding with (None: it runs over padding)."""
        return lens if self.config["pack_rnn"] else None

    def forward(self, wavs: torch.Tensor, wav_lens: torch.Tensor, feature_augment=None,
                utt_ids: list[str] | None = None, speeds: list[int] | None = None):
        """Return (log_probs (B, T', V), relative lengths (B,)) for a padded batch of waveforms.

        `feature_augment` (e.g. SpecAugment-style masking) is applied to the normalised features
        in training. Subsampling keeps relative lengths, so the features' relative lengths
        (`wav_lens` unless `speeds` perturbs the utterances) are also the output's.
        """
        feats, lens = self.features_and_lengths(wavs, wav_lens, utt_ids, speeds)
        if feature_augment is not None and self.training:
            feats = feature_augment(feats)
        return self.encode(feats, lens), lens

    def attach_speaker_lhuc(self, target_modules: list[str], num_speakers: int,
                            sat_gamma: float = 0.0, sat_level: str = "utterance",
                            reparam: str = "2sigmoid") -> None:
        """Attach per-speaker LHUC tables (plus the SI row) to the named encoder layers.

        Names are the encoder's (``DNN.block_0.act``); with fine-tuned Whisper blocks, names
        under ``whisper_top.`` (e.g. ``whisper_top.blocks.0.mlp.1``, a block's 2048 GELU units)
        put LHUC inside Whisper too."""
        prefix = "whisper_top."
        inside = [t[len(prefix):] for t in target_modules if t.startswith(prefix)]
        outside = [t for t in target_modules if not t.startswith(prefix)]
        if inside and self.whisper_top is None:
            raise ValueError(f"lhuc_targets {inside}: `whisper_top.` layers need "
                             "whisper_trainable_blocks > 0")
        example = torch.zeros(1, 30, self.feature_dim, device=self.ctc_lin.w.weight.device)
        parts = [(self.encoder, outside, (example,)),
                 (self.whisper_top, inside, (example, torch.ones(1, device=example.device)))]
        for module, names, example_inputs in parts:
            if names:
                cfg = lhuc.LHUCConfig(num_ids=num_speakers, target_modules=names,
                                      reparam=reparam, sat_gamma=sat_gamma, sat_level=sat_level)
                lhuc.attach_lhuc(module, cfg, example_inputs=example_inputs)
        self.lhuc_config = dict(target_modules=list(target_modules), sat_gamma=sat_gamma,
                                sat_level=sat_level, reparam=reparam)

    @property
    def has_lhuc(self) -> bool:
        return bool(lhuc.lhuc_tables(self))

    def freeze_for_adaptation(self) -> list[nn.Parameter]:
        """Eval mode for good (no dropout, no BatchNorm/normalisation statistic updates, no SAT
        sampling) and only LHUC parameters trainable; returns them. `unfreeze` undoes it."""
        if not self.has_lhuc:
            raise RuntimeError("no LHUC attached: call attach_speaker_lhuc first")
        self.frozen = True
        self.eval()
        return lhuc.freeze_non_lhuc(self)

    def unfreeze(self) -> None:
        """Make every parameter trainable again and let `train()` work as usual."""
        self.frozen = False
        for p in self.parameters():
            p.requires_grad_(True)

    def train(self, mode: bool = True):
        # A frozen model stays in eval mode even when a Brain calls modules.train().
        return super().train(mode and not self.frozen)


def run_layers(layers, x: torch.Tensor, lens: torch.Tensor | None = None) -> torch.Tensor:
    """Apply encoder layers in order, as SpeechBrain's Sequential does (a tuple output passes
    on its first element); with relative lengths `lens`, RNN layers run on packed sequences."""
    for layer in layers:
        x = _rnn_skipping_padding(layer, x, lens) if lens is not None and \
            isinstance(layer, tuple(RNN_CLASSES.values())) else layer(x)
        if isinstance(x, tuple):
            x = x[0]
    return x


def _rnn_skipping_padding(rnn: nn.Module, x: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
    """A SpeechBrain RNN over packed sequences, its output padded back to x's frame count."""
    frames = torch.round(lens * x.shape[1]).clamp(1, x.shape[1])
    # SpeechBrain truncates lengths * T to whole frames; the half keeps that the rounded count
    out = rnn(x, lengths=(frames + 0.5) / x.shape[1])[0]
    return nn.functional.pad(out, (0, 0, 0, x.shape[1] - out.shape[1]))


def _whisper_parts(model: str, cache_dir: str | None, trainable_blocks: int):
    """(frozen front end, trainable `WhisperTop` or None) for `trainable_blocks` top blocks."""
    from .whisper import WhisperFrontend  # needs the `whisper` extra's weights
    from .whisper.encoder import WhisperTop

    if trainable_blocks <= 0:
        return WhisperFrontend(model, cache_dir), None
    n_blocks = len(WhisperFrontend(model, None).encoder.blocks)
    if trainable_blocks > n_blocks:
        raise ValueError(f"whisper_trainable_blocks {trainable_blocks}: Whisper-{model} has "
                         f"{n_blocks} blocks")
    frontend = WhisperFrontend(model, cache_dir, split_block=n_blocks - trainable_blocks)
    return frontend, WhisperTop(frontend.encoder, n_blocks - trainable_blocks)


def count_parameters(model: nn.Module, lhuc_only: bool = False) -> int:
    """Number of parameters (all, or LHUC's only)."""
    params = lhuc.lhuc_parameters(model) if lhuc_only else list(model.parameters())
    return sum(p.numel() for p in params)
