"""Unsupervised adaptation end to end: first pass -> targets -> adapt rows -> second pass -> score.

`adapt_speakers` leaves the adapted rows in the model (new rows only); `decode_speakers` and
`score` give the second pass and its WER. Speakers left without usable targets decode with the
SI row and are listed in the result, not dropped.
"""

import torch

from asr_lhuc.data import age_group
from asr_lhuc.scoring import wer_cer

from .batched import adapt_batched
from .config import AdaptConfig
from .loop import adapt_per_speaker
from .rows import add_speaker_rows, reset_rows
from .system import AsrSystem
from .targets import make_targets
from .utterances import take_seconds

MODES = {"batched": adapt_batched, "loop": adapt_per_speaker}


def adapt_speakers(system: AsrSystem, adapt_set: dict[str, list], cfg: AdaptConfig,
                   mode: str = "batched", show_progress: bool = False) -> dict:
    """Give every speaker of `adapt_set` a new row and adapt it; return what happened.

    Result keys: rows ({spk: row, -1 where nothing usable}), unusable (speakers), targets
    (kept/empty/low_confidence per speaker), seconds, rounds (per-round adaptation info).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {sorted(MODES)}, got {mode!r}")
    adapt_set = {spk: take_seconds(utts, cfg.max_adapt_seconds) for spk, utts in adapt_set.items()}
    rows = add_speaker_rows(system.model, list(adapt_set), cfg.row_init)
    rounds, seconds = [], 0.0
    for round_index in range(cfg.rounds):
        if round_index:  # re-decode with the adapted rows, then adapt again from the start
            reset_rows(system.model, list(rows.values()), cfg.row_init)
        targets, report = make_targets(system, adapt_set, cfg, rows if round_index else None)
        info = MODES[mode](system, targets, rows, cfg, show_progress)
        seconds += info["seconds"]
        rounds.append({"seconds": info["seconds"], "kept": dict(report.kept)})
    unusable = report.unusable_speakers
    decode_rows = {spk: (-1 if spk in unusable else row) for spk, row in rows.items()}
    return {"rows": decode_rows, "unusable": unusable, "seconds": seconds, "rounds": rounds,
            "targets": {"kept": report.kept, "empty": report.empty,
                        "low_confidence": report.low_confidence}}


def decode_speakers(system: AsrSystem, score_set: dict[str, list],
                    rows: dict[str, int] | None = None) -> dict[str, list[str]]:
    """Hypotheses per speaker with its row (no row / None: the SI row)."""
    hyps = {}
    for spk, utts in score_set.items():
        row = None if rows is None or rows.get(spk, -1) < 0 else rows[spk]
        ids = None if row is None else torch.full((len(utts),), row)
        hyps[spk] = system.decode(utts, ids)[0]
    return hyps


def score(score_set: dict[str, list], hyps: dict[str, list[str]]) -> dict:
    """WER/CER overall, per speaker, and for children (age <= 12) vs adults where ages are known."""
    refs = [u.text for utts in score_set.values() for u in utts]
    flat = [h for spk in score_set for h in hyps[spk]]
    result = wer_cer(refs, flat)
    result["per_speaker"] = {spk: wer_cer([u.text for u in utts], hyps[spk])["wer"]
                             for spk, utts in score_set.items()}
    groups = {}
    for group in ("child", "adult"):
        members = [s for s, utts in score_set.items() if age_group(utts[0].age) == group]
        if members:
            groups[group] = wer_cer([u.text for s in members for u in score_set[s]],
                                    [h for s in members for h in hyps[s]])["wer"]
    result["groups"] = groups
    return result
