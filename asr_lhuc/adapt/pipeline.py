"""Unsupervised adaptation end to end: first pass -> targets -> adapt rows -> second pass -> score.

`adapt_speakers` leaves the adapted rows in the model (new rows only); `decode_speakers` and
`score` give the second pass and its WER. Speakers left without usable targets decode with the
SI row and are listed in the result, not dropped.
"""

import torch

from asr_lhuc.data import age_group, normalize_text
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
    (kept/empty/low_confidence per speaker; quality: the kept targets' WER/CER against the
    transcripts), audio_seconds (per speaker, after `cfg.max_adapt_seconds`), seconds (wall
    time), rounds (per round: seconds, kept, and targets_changed: targets whose text differs
    from the previous round's).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {sorted(MODES)}, got {mode!r}")
    cfg.check_decoder(system.beam_size)
    adapt_set = {spk: take_seconds(utts, cfg.max_adapt_seconds) for spk, utts in adapt_set.items()}
    rows = add_speaker_rows(system.model, list(adapt_set), cfg.row_init)
    rounds, seconds, report, texts = [], 0.0, None, {}
    for round_index in range(cfg.rounds):
        # Round 1 decodes with the SI row; later rounds re-decode with the rows just adapted
        # (speakers the previous round could not adapt keep the SI row, as in the final decode).
        first_pass_rows = None if report is None else adapted_rows(rows, report)
        targets, report = make_targets(system, adapt_set, cfg, first_pass_rows)
        if round_index:
            # Only after that re-decode: adapt from the start on the new targets, so every
            # round spends `cfg.epochs` on its own targets and R rounds differ from 1 round
            # only in target quality, not in the number of updates.
            reset_rows(system.model, list(rows.values()), cfg.row_init)
        info = MODES[mode](system, targets, rows, cfg, show_progress)
        seconds += info["seconds"]
        previous, texts = texts, {t.utt.id: t.text for ts in targets.values() for t in ts}
        changed = sum(previous.get(uid, text) != text for uid, text in texts.items())
        rounds.append({"seconds": info["seconds"], "kept": dict(report.kept),
                       "targets_changed": changed})
    unusable = report.unusable_speakers
    quality = target_quality(targets)
    decode_rows = {spk: (-1 if spk in unusable else row) for spk, row in rows.items()}
    audio = {spk: round(sum(u.duration for u in utts), 2) for spk, utts in adapt_set.items()}
    return {"rows": decode_rows, "unusable": unusable, "seconds": seconds, "rounds": rounds,
            "audio_seconds": audio,
            "targets": {"kept": report.kept, "empty": report.empty,
                        "low_confidence": report.low_confidence, "quality": quality}}


def target_quality(targets: dict[str, list]) -> dict:
    """WER/CER of the texts adapted towards (the last round's kept targets) against the
    utterances' transcripts: how wrong the supervision was (None where nothing was kept)."""
    kept = [t for ts in targets.values() for t in ts]
    if not any(normalize_text(t.utt.text) for t in kept):  # wer_cer needs a reference
        return {"wer": None, "cer": None, "n_utts": len(kept)}
    found = wer_cer([t.utt.text for t in kept], [t.text for t in kept])
    return {"wer": found["wer"], "cer": found["cer"], "n_utts": len(kept)}


def adapted_rows(rows: dict[str, int], report) -> dict[str, int]:
    """The rows of the speakers that had targets (the others were not adapted)."""
    unusable = set(report.unusable_speakers)
    return {spk: row for spk, row in rows.items() if spk not in unusable}


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
