"""Mini-batch schedules: the same per-speaker batches drive the loop and the batched mode."""

import random
import zlib


def speaker_schedule(items: list, batch_size: int, epochs: int, seed: int, spk_id: str,
                     n_steps: int | None = None) -> list:
    """`epochs` shuffled passes over `items` in batches of `batch_size`: a list of batches;
    with `n_steps`, as many passes as make exactly `n_steps` batches (the last pass cut).

    The shuffle depends on (seed, spk_id) only, so a speaker gets the same batches whether it
    is adapted alone or together with others.
    """
    rng = random.Random(seed * 1_000_003 + zlib.crc32(spk_id.encode()))
    def one_pass() -> list:
        order = list(items)
        rng.shuffle(order)
        return [order[i: i + batch_size] for i in range(0, len(order), batch_size)]

    if n_steps is None:
        return [batch for _ in range(epochs) for batch in one_pass()]
    steps = []
    while items and len(steps) < n_steps:
        steps += one_pass()
    return steps[:n_steps]


def joint_schedule(per_speaker: dict[str, list]) -> list[dict[str, list]]:
    """Step k of the batched mode: every speaker's k-th batch (speakers that have one)."""
    n_steps = max((len(s) for s in per_speaker.values()), default=0)
    return [{spk: steps[k] for spk, steps in per_speaker.items() if k < len(steps)}
            for k in range(n_steps)]
