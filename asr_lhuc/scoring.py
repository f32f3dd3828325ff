"""WER and CER with jiwer after the project's one text normalisation; per-group scores."""

from collections import defaultdict

import jiwer

from .data import age_group, normalize_text


def wer_cer(refs: list[str], hyps: list[str]) -> dict:
    """Corpus-level WER and CER (fractions) of `hyps` against `refs`, both normalised first.

    Empty normalised references are dropped from the scoring (jiwer cannot score them) and
    counted in ``n_empty_refs``; an empty hypothesis is scored as all deletions.
    """
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    pairs = [(normalize_text(r), normalize_text(h)) for r, h in zip(refs, hyps)]
    kept = [(r, h) for r, h in pairs if r]
    if not kept:
        raise ValueError("no non-empty reference to score")
    refs_n, hyps_n = [r for r, _ in kept], [h for _, h in kept]
    return {
        "wer": jiwer.wer(refs_n, hyps_n),
        "cer": jiwer.cer(refs_n, hyps_n),
        "n_utts": len(kept),
        "n_empty_refs": len(pairs) - len(kept),
    }


def wer_by_group(refs: list[str], hyps: list[str], groups: list[str]) -> dict[str, dict]:
    """`wer_cer` for each distinct value of `groups` (one label per utterance)."""
    by_group = defaultdict(lambda: ([], []))
    for ref, hyp, group in zip(refs, hyps, groups):
        by_group[group][0].append(ref)
        by_group[group][1].append(hyp)
    return {group: wer_cer(r, h) for group, (r, h) in sorted(by_group.items())}


def wer_by_age_group(refs: list[str], hyps: list[str], ages: list[str]) -> dict[str, dict]:
    """Scores for children (age <= 12) and adults; utterances of unknown age are left out."""
    groups = [age_group(a) for a in ages]
    scores = wer_by_group(refs, hyps, groups)
    scores.pop("", None)
    return scores


def age_group_fields(groups: dict[str, dict]) -> dict:
    """Result-file keys for `wer_by_age_group` scores (empty unless both groups are present)."""
    if not ("child" in groups and "adult" in groups):
        return {}
    return {"wer_children": groups["child"]["wer"], "wer_adults": groups["adult"]["wer"],
            "n_utts_children": groups["child"]["n_utts"],
            "n_utts_adults": groups["adult"]["n_utts"]}


def wer_by_speaker(refs: list[str], hyps: list[str], speakers: list[str]) -> dict[str, dict]:
    """Scores per speaker."""
    return wer_by_group(refs, hyps, speakers)
