"""Fill the Whisper feature cache for the utterances of CSV manifests before training.

    python -m asr_lhuc.whisper.precompute exp/data/speechocean762/*.csv \\
        --cache_dir exp/features/speechocean762 [--model base] [--speeds 90 100 110] \\
        [--levels final 5]

`--levels` picks which outputs are cached, from one encoder pass: ``final`` (the frozen front
end) and/or ``k``, the output of the first k blocks (`split_block=k`, for models that fine-tune
the blocks above).

Utterances already in the cache are skipped, so a killed run continues where it stopped;
unreadable audio is counted and reported (training's data preparation has already dropped
what it could detect).
"""

import argparse
import logging

import speechbrain as sb
import torch
from tqdm import tqdm

from asr_lhuc.data import read_manifest

from .frontend import WhisperFrontend, encode_levels, speed_key

logger = logging.getLogger(__name__)


def precompute(csvs: list[str], cache_dir: str, model: str = "base",
               speeds: tuple[int, ...] = (100,), levels: tuple[int | None, ...] = (None,)) -> dict:
    """Encode every (utterance of `csvs`, speed) not yet cached at every level; returns counts."""
    frontends = {level: WhisperFrontend(model, cache_dir, split_block=level) for level in levels}
    first = frontends[levels[0]]
    rows = {row["ID"]: row for csv in csvs for row in read_manifest(csv)}

    def missing_levels(uid, speed):
        return [lv for lv, fe in frontends.items()
                if not fe.cache_path(speed_key(uid, speed)).is_file()]

    todo = [(r, {s: missing_levels(uid, s) for s in speeds}) for uid, r in rows.items()]
    todo = [(r, {s: lv for s, lv in m.items() if lv}) for r, m in todo]
    todo = [(r, m) for r, m in todo if m]
    failed, n_computed = [], 0
    for row, missing in tqdm(todo, desc=f"whisper-{model} features", unit="utt"):
        try:
            wav = sb.dataio.dataio.read_audio(row["wav"])
        except Exception as err:  # noqa: BLE001 - report every unreadable file, keep going
            failed.append(row["ID"])
            logger.warning("%s: cannot read %s (%s)", row["ID"], row["wav"], err)
            continue
        for speed, lvls in missing.items():
            feats = encode_levels(first.encoder, first.log_mel, first.perturb(wav, speed), lvls)
            for level, value in feats.items():
                frontends[level].store(speed_key(row["ID"], speed), value)
            n_computed += len(lvls)
    n_entries = len(rows) * len(speeds) * len(levels)
    counts = {"utterances": len(rows), "speeds": list(speeds),
              "levels": ["final" if lv is None else lv for lv in levels],
              "computed": n_computed,
              "already_cached": n_entries - sum(len(lv) for _, m in todo for lv in m.values()),
              "unreadable": len(failed)}
    logger.info("whisper feature cache %s: %s", first.cache_dir.parent, counts)
    return counts


def main(argv=None):
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("csvs", nargs="+", help="CSV manifests (ID, wav, ...)")
    parser.add_argument("--cache_dir", required=True)
    parser.add_argument("--model", default="base")
    parser.add_argument("--speeds", type=int, nargs="+", default=[100],
                        help="percent; e.g. 90 100 110 for `cached_speeds` in training")
    parser.add_argument("--levels", nargs="+", default=["final"],
                        help="'final' and/or k (output of the first k blocks, `split_block`)")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    levels = tuple(None if lv == "final" else int(lv) for lv in args.levels)
    print(precompute(args.csvs, args.cache_dir, args.model, tuple(args.speeds), levels))


if __name__ == "__main__":
    main()
