"""Fill the Whisper feature cache for the utterances of CSV manifests before training.

    python -m asr_lhuc.whisper.precompute exp/data/speechocean762/*.csv \\
        --cache_dir exp/features/speechocean762 [--model base] [--speeds 90 100 110]

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

from .frontend import WhisperFrontend, speed_key

logger = logging.getLogger(__name__)


def precompute(csvs: list[str], cache_dir: str, model: str = "base",
               speeds: tuple[int, ...] = (100,)) -> dict:
    """Encode every (utterance of `csvs`, speed) not yet cached; returns counts."""
    frontend = WhisperFrontend(model, cache_dir)
    rows = {row["ID"]: row for csv in csvs for row in read_manifest(csv)}
    todo = [(r, [s for s in speeds if not frontend.cache_path(speed_key(uid, s)).is_file()])
            for uid, r in rows.items()]
    todo = [(r, s) for r, s in todo if s]
    failed, n_computed = [], 0
    for row, missing in tqdm(todo, desc=f"whisper-{model} features", unit="utt"):
        try:
            wav = sb.dataio.dataio.read_audio(row["wav"])
        except Exception as err:  # noqa: BLE001 - report every unreadable file, keep going
            failed.append(row["ID"])
            logger.warning("%s: cannot read %s (%s)", row["ID"], row["wav"], err)
            continue
        for speed in missing:
            frontend.cached(row["ID"], wav, speed)
        n_computed += len(missing)
        frontend.memory.clear()  # the disk holds them; keep memory flat
    counts = {"utterances": len(rows), "speeds": list(speeds), "computed": n_computed,
              "already_cached": len(rows) * len(speeds) - sum(len(s) for _, s in todo),
              "unreadable": len(failed)}
    logger.info("whisper feature cache %s: %s", frontend.cache_dir, counts)
    return counts


def main(argv=None):
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("csvs", nargs="+", help="CSV manifests (ID, wav, ...)")
    parser.add_argument("--cache_dir", required=True)
    parser.add_argument("--model", default="base")
    parser.add_argument("--speeds", type=int, nargs="+", default=[100],
                        help="percent; e.g. 90 100 110 for `cached_speeds` in training")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(precompute(args.csvs, args.cache_dir, args.model, tuple(args.speeds)))


if __name__ == "__main__":
    main()
