"""Seeded speaker-disjoint hold-outs, per-speaker adaptation splits and age groups."""

import random
from collections import defaultdict
from collections.abc import Callable

from .manifest import Utterance

CHILD_MAX_AGE = 12  # speakers aged <= 12 count as children for WER-by-group


def age_group(age: str | int | None) -> str:
    """"child" (age <= 12), "adult", or "" when the age is unknown or not a number."""
    try:
        return "child" if int(age) <= CHILD_MAX_AGE else "adult"
    except (TypeError, ValueError):
        return ""


def by_speaker(utterances: list[Utterance]) -> dict[str, list[Utterance]]:
    """Group utterances per speaker, each list sorted by utterance ID."""
    groups: dict[str, list[Utterance]] = defaultdict(list)
    for utt in utterances:
        groups[utt.spk_id].append(utt)
    return {spk: sorted(utts, key=lambda u: u.ID) for spk, utts in sorted(groups.items())}


def pick_speakers(
    speakers: list[str], n: int, seed: int, group_of: Callable[[str], str] | None = None
) -> list[str]:
    """Choose ``n`` of ``speakers`` at random (seeded), stratified by ``group_of`` if given.

    Each group gets a share of the ``n`` picks proportional to its size (at least one for
    any group that has speakers while picks remain), so that e.g. a valid set of 5
    speechocean762 speakers holds both children and adults.
    """
    speakers = sorted(speakers)
    if n >= len(speakers):
        return speakers
    rng = random.Random(seed)
    groups: dict[str, list[str]] = defaultdict(list)
    for spk in speakers:
        groups[group_of(spk) if group_of else ""].append(spk)
    # Largest-remainder allocation of n picks over the groups, smallest groups first for ties.
    shares = {g: n * len(members) / len(speakers) for g, members in groups.items()}
    counts = {g: min(len(groups[g]), max(1, int(share))) for g, share in shares.items()}
    order = sorted(groups, key=lambda g: (-(shares[g] - int(shares[g])), len(groups[g]), g))
    while sum(counts.values()) > n:  # more groups than picks: drop from the largest groups
        largest = max(counts, key=lambda g: (counts[g], g))
        counts[largest] -= 1
    i = 0
    while sum(counts.values()) < n:
        g = order[i % len(order)]
        if counts[g] < len(groups[g]):
            counts[g] += 1
        i += 1
    chosen = [spk for g in sorted(groups) for spk in rng.sample(groups[g], counts[g])]
    return sorted(chosen)


def limit(
    utterances: list[Utterance], max_speakers: int | None, max_utts: int | None, seed: int,
    group_of: Callable[[str], str] | None = None,
) -> list[Utterance]:
    """Keep at most ``max_speakers`` speakers (seeded, stratified) and ``max_utts`` each."""
    groups = by_speaker(utterances)
    speakers = list(groups)
    if max_speakers is not None:
        speakers = pick_speakers(speakers, max_speakers, seed, group_of)
    return [u for spk in speakers for u in groups[spk][:max_utts]]


def split_by_speaker(
    utterances: list[Utterance], held_out: list[str]
) -> tuple[list[Utterance], list[Utterance]]:
    """(utterances of speakers not in ``held_out``, utterances of speakers in ``held_out``)."""
    held = set(held_out)
    kept = [u for u in utterances if u.spk_id not in held]
    return kept, [u for u in utterances if u.spk_id in held]


def split_by_utterance(
    utterances: list[Utterance], fraction: float, seed: int
) -> tuple[list[Utterance], list[Utterance]]:
    """Move a seeded ``fraction`` of each speaker's utterances to a second list (e.g. valid)."""
    rng = random.Random(seed)
    rest, moved = [], []
    for utts in by_speaker(utterances).values():
        n_moved = round(len(utts) * fraction)
        chosen = set(u.ID for u in rng.sample(utts, n_moved))
        for u in utts:
            (moved if u.ID in chosen else rest).append(u)
    return rest, moved


def split_adapt_eval(
    utterances: list[Utterance], n_adapt: int, seed: int
) -> tuple[list[Utterance], list[Utterance]]:
    """Per speaker, ``n_adapt`` seeded utterances for adaptation and the rest for evaluation.

    A speaker with <= n_adapt utterances keeps at least one for evaluation.
    """
    rng = random.Random(seed)
    adapt, evaluate = [], []
    for utts in by_speaker(utterances).values():
        k = min(n_adapt, len(utts) - 1)
        chosen = set(u.ID for u in rng.sample(utts, max(k, 0)))
        for u in utts:
            (adapt if u.ID in chosen else evaluate).append(u)
    return adapt, evaluate
