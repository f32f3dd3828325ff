"""Fill the Whisper feature cache for the utterances of CSV manifests before training.

    python -m asr_lhuc.whisper.precompute exp/data/speechocean762/*.csv \\
        --cache_dir exp/features/speechocean762 [--model base] [--speeds 90 100 110] \\
        [--levels final 5]

`--levels` picks which outputs are cached, from one encoder pass: ``final`` (the frozen front
end) and/or ``k``, the output of the first k blocks (`split_block=k`, for models that fine-tune
the blocks above); ``--levels none`` skips Whisper. `--moonshine base` also caches Moonshine's
encoder output (`moonshine_model` in training) from the same audio reads.

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

from ..cached_frontend import speed_key
from .frontend import WhisperFrontend, encode_levels

logger = logging.getLogger(__name__)
MOONSHINE = "moonshine"  # the Moonshine cache's key among the Whisper levels


def precompute(csvs: list[str], cache_dir: str, model: str = "base",
               speeds: tuple[int, ...] = (100,), levels: tuple[int | None, ...] = (None,),
               moonshine: str | None = None) -> dict:
    """Encode every (utterance of `csvs`, speed) not yet cached at every level (and by
    Moonshine); returns counts."""
    frontends = {level: WhisperFrontend(model, cache_dir, split_block=level) for level in levels}
    if moonshine:
        from ..moonshine import MoonshineFrontend

        frontends[MOONSHINE] = MoonshineFrontend(moonshine, cache_dir)
    first = next(iter(frontends.values()))
    rows = {row["ID"]: row for csv in csvs for row in read_manifest(csv)}

    def missing_levels(uid, speed):
        return [lv for lv, fe in frontends.items()
                if not fe.cache_path(speed_key(uid, speed)).is_file()]

    todo = [(r, {s: missing_levels(uid, s) for s in speeds}) for uid, r in rows.items()]
    todo = [(r, {s: lv for s, lv in m.items() if lv}) for r, m in todo]
    todo = [(r, m) for r, m in todo if m]
    failed, n_computed = [], 0
    for row, missing in tqdm(todo, desc="features", unit="utt"):
        try:
            wav = sb.dataio.dataio.read_audio(row["wav"])
        except Exception as err:  # noqa: BLE001 - report every unreadable file, keep going
            failed.append(row["ID"])
            logger.warning("%s: cannot read %s (%s)", row["ID"], row["wav"], err)
            continue
        for speed, lvls in missing.items():
            audio = first.perturb(wav, speed)
            whisper_levels = [lv for lv in lvls if lv != MOONSHINE]
            feats = encode_levels(frontends[whisper_levels[0]].encoder,
                                  frontends[whisper_levels[0]].log_mel, audio,
                                  whisper_levels) if whisper_levels else {}
            if MOONSHINE in lvls:
                feats[MOONSHINE] = frontends[MOONSHINE].encode_one(audio)
            for level, value in feats.items():
                frontends[level].store(speed_key(row["ID"], speed), value)
            n_computed += len(lvls)
    n_entries = len(rows) * len(speeds) * len(frontends)
    counts = {"utterances": len(rows), "speeds": list(speeds),
              "levels": ["final" if lv is None else lv for lv in frontends],
              "computed": n_computed,
              "already_cached": n_entries - sum(len(lv) for _, m in todo for lv in m.values()),
              "unreadable": len(failed)}
    logger.info("feature cache %s: %s", first.cache_dir.parent, counts)
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
                        help="'final' and/or k (output of the first k blocks, `split_block`); "
                        "'none': no Whisper features")
    parser.add_argument("--moonshine", default=None,
                        help="also cache this Moonshine encoder's output ('base' or a file)")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    levels = tuple(None if lv == "final" else int(lv) for lv in args.levels if lv != "none")
    if not levels and not args.moonshine:
        parser.error("nothing to cache: give --levels other than 'none' or --moonshine")
    print(precompute(args.csvs, args.cache_dir, args.model, tuple(args.speeds), levels,
                     args.moonshine))


if __name__ == "__main__":
    main()
