"""Compute the frozen layers below the lowest LHUC table once per utterance.

During adaptation every weight is frozen and the model is in eval mode, so everything below the
lowest adapted layer (features, CNN, RNN for top-layer LHUC) gives the same output at every
epoch. `PrefixCache` runs that prefix once per utterance, alone (no padding), and the epochs
only run the layers from the first LHUC table up (with LHUC inside fine-tuned Whisper blocks,
from those blocks up: only the frozen front ends are cached, Moonshine's frames included).
Utterances are processed unpadded, so the batched and per-speaker modes see identical inputs.
"""

import torch
from torch import nn

import lhuc

from ..model import FrontEndOutput, run_layers


class PrefixCache:
    """Cached prefix outputs of a `CTCAcousticModel`-like model (features -> encoder -> ctc_lin).

    The encoder must apply its children in order (SpeechBrain's `Sequential`, e.g. CRDNN).
    """

    def __init__(self, model: nn.Module):
        layers = list(model.encoder.values() if hasattr(model.encoder, "values")
                      else model.encoder.children())
        with_lhuc = [i for i, layer in enumerate(layers)
                     if any(isinstance(m, lhuc.AmplitudeTable) for m in layer.modules())]
        top = getattr(model, "whisper_top", None)
        # LHUC inside fine-tuned Whisper blocks: only the frozen front end below is cached.
        self.inside_whisper = top is not None and bool(lhuc.lhuc_tables(top))
        if not with_lhuc and not self.inside_whisper:
            raise ValueError("no LHUC table inside the encoder: nothing to adapt")
        self.split = 0 if self.inside_whisper else with_lhuc[0]
        self.model = model
        self.prefix_layers, self.suffix_layers = layers[: self.split], layers[self.split:]
        self.store: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def hidden(self, utt, device) -> tuple[torch.Tensor, ...]:
        """The prefix output of one utterance (computed once): (T', D) from the encoder's
        bottom layers, or with LHUC inside Whisper the frozen front end's (T, D) features."""
        if utt.id not in self.store:
            wav = utt.wav.to(device).unsqueeze(0)
            ones = torch.ones(1, device=device)
            if self.inside_whisper:
                front = self.model.frozen_front_end(wav, ones, [utt.id])
                parts = [front.feats]
            else:
                feats = self.model.features(wav, ones, utt_ids=[utt.id])
                parts = [run_layers(self.prefix_layers, feats)]  # one utterance: no padding
            self.store[utt.id] = tuple(p[0].cpu() for p in parts)
        return self.store[utt.id]

    def log_probs(self, utts, ids: torch.Tensor | None, device):
        """(log_probs (B, T, V), frame counts (B,)) from the cached prefix outputs.

        Counts are exact when the suffix keeps the frame rate (DNN layers); a suffix that
        subsamples (CNN) scales them like SpeechBrain's relative lengths.
        """
        hiddens = [self.hidden(u, device) for u in utts]
        lengths = torch.tensor([h[0].shape[0] for h in hiddens], device=device)
        padded = [nn.utils.rnn.pad_sequence(list(part), batch_first=True).to(device)
                  for part in zip(*hiddens)]
        with lhuc.identities(self.model, ids):
            x = padded[0]
            if self.inside_whisper:
                rel = lengths / x.shape[1]
                x = self.model.features_from(FrontEndOutput(x, rel, rel))
            rnn_lens = self.model.rnn_lengths(lengths / x.shape[1])
            out = self.model.ctc_lin(run_layers(self.suffix_layers, x, rnn_lens))
        if out.shape[1] == x.shape[1]:
            frames = lengths
        else:
            frames = torch.round(lengths / x.shape[1] * out.shape[1]).long()
        return out.log_softmax(dim=-1), frames.clamp(1, out.shape[1])

