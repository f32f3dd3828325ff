"""Per-speaker adaptation: one speaker at a time, each with its own fresh optimiser."""

import time

from tqdm import tqdm

from .config import AdaptConfig
from .schedule import speaker_schedule
from .steps import run_steps
from .system import AsrSystem


def adapt_per_speaker(system: AsrSystem, targets: dict[str, list], rows: dict[str, int],
                      cfg: AdaptConfig, show_progress: bool = False) -> dict:
    """Adapt each speaker's row on its own targets; speakers without targets are skipped.

    Returns {"seconds", "per_speaker_seconds", "losses" (per speaker, per step)}.
    """
    start, per_speaker, losses = time.perf_counter(), {}, {}
    for spk, items in tqdm(targets.items(), desc="adapting (per speaker)", unit="spk",
                           disable=not show_progress):
        if not items:
            continue
        t0 = time.perf_counter()
        plan = [{spk: batch} for batch in
                speaker_schedule(items, cfg.batch_size, cfg.epochs, cfg.seed, spk,
                                 cfg.steps_per_speaker)]
        losses[spk] = run_steps(system, plan, rows, cfg)
        per_speaker[spk] = time.perf_counter() - t0
    return {"seconds": time.perf_counter() - start, "per_speaker_seconds": per_speaker,
            "losses": losses}
