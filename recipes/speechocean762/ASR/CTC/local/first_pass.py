"""The first pass of the decoding commands (`ensemble`, `rescore`): a checkpoint's CTC
log-probabilities per utterance, beam search over them, and WER/CER by age group.

(An LM-weight grid search on validation data, `lm_tuning`, used to live beside these; it changed
no test WER and was removed: docs/RESULTS.md.)
"""

from pathlib import Path

import torch
from tqdm import tqdm

import lhuc
from asr_lhuc.adapt.utterances import load_speakers, pad_batch
from asr_lhuc.data import normalize_text
from asr_lhuc.decode import beam_texts
from asr_lhuc.scoring import age_group_fields, wer_by_age_group, wer_cer


@torch.no_grad()
def utterance_log_probs(model, csv: str, batch_size: int = 16,
                        speaker_rows: dict[str, int] | None = None) -> list[dict]:
    """Per utterance of `csv`: id, reference, age and its (T, V) log-probabilities.

    The SI row is used, or with `speaker_rows` ({speaker: LHUC row}, e.g. adapted speakers)
    each utterance's speaker's row (the SI row for speakers not in it)."""
    utts = sorted((u for group in load_speakers(csv).values() for u in group),
                  key=lambda u: u.duration)
    device = next(model.parameters()).device
    items = []
    for start in tqdm(range(0, len(utts), batch_size), desc=f"acoustic model {Path(csv).name}"):
        part = utts[start: start + batch_size]
        wavs, lens = pad_batch(part)
        rows = None if speaker_rows is None else torch.tensor(
            [speaker_rows.get(u.spk_id, -1) for u in part], device=device)
        with lhuc.identities(model, rows):
            log_probs, out_lens = model(wavs.to(device), lens.to(device),
                                        utt_ids=[u.id for u in part])
        frames = torch.round(out_lens * log_probs.shape[1]).long().clamp(min=1).tolist()
        items += [{"id": u.id, "ref": normalize_text(u.text), "age": u.age,
                   "log_probs": log_probs[b, :n].cpu()}
                  for b, (u, n) in enumerate(zip(part, frames))]
    return items


def beam_decode(items: list[dict], searcher) -> list[str]:
    return [normalize_text(beam_texts(it["log_probs"][None], torch.ones(1), searcher)[0][0])
            for it in items]


def score(items: list[dict], hyps: list[str]) -> dict:
    refs = [it["ref"] for it in items]
    scores = wer_cer(refs, hyps)
    groups = wer_by_age_group(refs, hyps, [it["age"] for it in items])
    return {"wer": scores["wer"], "cer": scores["cer"], "n_utts": len(items),
            **age_group_fields(groups)}
