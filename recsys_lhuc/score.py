"""Score raw candidate rows with a trained run: batch files, or one request (a user + candidates).

For LHUC-user the amplitudes depend on the user only, so ``Ranker.score_request`` computes them once
per request (``model.user_amplitudes``) and reuses them for every candidate
(``model.score_candidates``) instead of looking them up per row.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .data.loaders import load_table
from .data.pipeline import Encoder, id_columns, spec_from_dict
from .data.vocab import Vocab
from .evaluate import load_run
from .train import as_task_dict, autocast

log = logging.getLogger(__name__)


class Ranker:
    """A trained model plus the encoder that turns raw rows into its input tensors."""

    def __init__(self, model, encoder: Encoder, device):
        self.model, self.encoder, self.device = model.eval(), encoder, device
        self.spec = encoder.spec
        self.oov_counts: dict[str, int] = {}

    @classmethod
    def from_run(cls, run_dir, checkpoint: str = "best.pt", device: str = "auto") -> Ranker:
        _, model, state = load_run(run_dir, checkpoint, device)
        encoder = Encoder(spec_from_dict(state["spec"]), state["field_cfg"],
                          {k: Vocab.from_dict(v) for k, v in state["vocabs"].items()},
                          {k: tuple(v) for k, v in state["numeric_stats"].items()})
        return cls(model, encoder, next(model.parameters()).device)

    def encode(self, frame: pd.DataFrame) -> dict[str, torch.Tensor]:
        """Raw rows -> a batch on the model's device; unseen ids go to the OOV bucket (counted)."""
        columns, oov = self.encoder.encode(frame, labels=False)
        for name, count in oov.items():
            self.oov_counts[name] = self.oov_counts.get(name, 0) + count
        if any(oov.values()):
            log.info("scoring: values mapped to the OOV bucket per field: %s", oov)
        for name, count in oov.items():
            if len(frame) >= 20 and count > 0.5 * len(frame):
                log.warning("scoring: %d of %d values of %r were never seen in training; check "
                            "that the column holds the same ids, written the same way", count,
                            len(frame), name)
        return {k: torch.from_numpy(np.array(v)).to(self.device) for k, v in columns.items()
                if not k.startswith("_")}

    @torch.no_grad()
    def score_frame(self, frame: pd.DataFrame, batch_size: int = 8192) -> dict[str, np.ndarray]:
        """Probabilities per task for every row of ``frame``."""
        chunks: dict[str, list] = {}
        for start in range(0, len(frame), batch_size):
            batch = self.encode(frame.iloc[start:start + batch_size])
            with autocast(self.device):
                logits = as_task_dict(self.model(batch), self.spec)
            for label, z in logits.items():
                chunks.setdefault(label, []).append(torch.sigmoid(z.float()).cpu().numpy())
        return {label: np.concatenate(parts) for label, parts in chunks.items()}

    @torch.no_grad()
    def score_request(self, user: dict, candidates: pd.DataFrame) -> dict[str, np.ndarray]:
        """Score all ``candidates`` (item-side columns) for one ``user`` (user-side values).

        Models with ``user_amplitudes``/``score_candidates`` (LHUC-user) compute the user's
        amplitudes once and share them across the candidates.
        """
        frame = candidates.assign(**{k: [v] * len(candidates) for k, v in user.items()})
        frame.attrs = dict(candidates.attrs)
        batch = self.encode(frame)
        with autocast(self.device):
            if hasattr(self.model, "user_amplitudes"):
                user_id = batch[self.spec.user_field][:1]
                amplitudes = self.model.user_amplitudes(user_id)
                logits = self.model.score_candidates(amplitudes, batch)
            else:
                logits = self.model(batch)
        return {label: torch.sigmoid(z.float()).cpu().numpy()
                for label, z in as_task_dict(logits, self.spec).items()}


def score(run_dir, input_path, output_path, checkpoint: str = "best.pt",
          device: str = "auto") -> Path:
    """Score every row of a CSV/Parquet file; write it back with a ``score_<label>`` column per
    task (CSV, or Parquet if ``output_path`` ends in .parquet)."""
    ranker = Ranker.from_run(run_dir, checkpoint, device)
    frame = load_table(input_path, id_columns(ranker.spec, ranker.encoder.field_cfg))
    probs = ranker.score_frame(frame)
    out = frame.drop(columns=["_row"])
    for label, p in probs.items():
        out[f"score_{label}"] = p
    output_path = Path(output_path)
    if output_path.suffix == ".parquet":
        out.to_parquet(output_path, index=False)
    else:
        out.to_csv(output_path, index=False)
    log.info("scored %d rows -> %s (OOV per field: %s)", len(out), output_path, ranker.oov_counts)
    return output_path
