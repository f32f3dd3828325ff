"""Fill the Whisper feature cache for the utterances of CSV manifests before training.

    python -m asr_lhuc.whisper.precompute exp/data/speechocean762/*.csv \\
        --cache_dir exp/features/speechocean762 [--model base] [--speeds 90 100 110] \\
        [--levels final 5] [--workers 2]

`--levels` picks which outputs are cached, from one encoder pass: ``final`` (the frozen front
end) and/or ``k``, the output of the first k blocks (`split_block=k`, for models that fine-tune
the blocks above).

Utterances already in the cache are skipped, so a killed run continues where it stopped;
audio that training would refuse (unreadable, NaN/inf, not 16 kHz mono) is not cached but
counted and reported, naming each file.
"""

import argparse
import logging
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import torch
from tqdm import tqdm

from asr_lhuc.data import AudioProblem, read_manifest
from asr_lhuc.data.audio import load_manifest_audio

from ..cached_frontend import audio_digest, speed_key
from .frontend import WhisperFrontend, encode_levels

logger = logging.getLogger(__name__)
WHISPER_RATE = 16000


def precompute(csvs: list[str], cache_dir: str, model: str = "base",
               speeds: tuple[int, ...] = (100,), levels: tuple[int | None, ...] = (None,),
               workers: int = 1) -> dict:
    """Encode every (utterance of `csvs`, speed) not yet cached at every level; returns
    counts. `workers` > 1 splits the utterances between that many
    processes of one thread each (faster than one process with as many threads: the
    encoder's per-utterance work is too small to keep several threads busy)."""
    rows = list({row["ID"]: row for csv in csvs for row in read_manifest(csv)}.values())
    settings = (cache_dir, model, tuple(speeds), tuple(levels))
    if workers <= 1:
        parts = [encode_rows(rows, *settings)]
    else:
        chunks = [rows[i::workers] for i in range(workers)]
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn"),
                                 initializer=torch.set_num_threads, initargs=(1,)) as pool:
            parts = list(pool.map(encode_rows, chunks, *([x] * workers for x in settings),
                                  range(workers)))
    failed = [uid for part in parts for uid in part["unreadable"]]
    counts = {"utterances": len(rows), "speeds": list(speeds),
              "levels": ["final" if lv is None else lv for lv in levels],
              "computed": sum(p["computed"] for p in parts),
              "already_cached": sum(p["already_cached"] for p in parts),
              "unreadable": len(failed), "workers": max(workers, 1)}
    logger.info("feature cache %s: %s", cache_dir, counts)
    return counts


def encode_rows(rows: list[dict], cache_dir: str, model: str, speeds, levels,
                worker: int = 0) -> dict:
    """Cache the missing entries of `rows` (one process); counts and unreadable ids."""
    # one front end per cached level, each owning its cache folder
    frontends = {level: WhisperFrontend(model, cache_dir, split_block=level) for level in levels}
    first = next(iter(frontends.values()))
    failed, n_computed, n_cached = [], 0, 0
    for row in tqdm(rows, desc="features" + (f" (worker {worker})" if worker else ""),
                    unit="utt", position=worker):
        try:  # training's own reader: the same samples (so the same cache key) and checks
            wav = torch.from_numpy(load_manifest_audio(row["wav"], WHISPER_RATE))
        except AudioProblem as problem:  # NaN/inf, wrong rate, stereo, unreadable: keep going
            failed.append(row["ID"])
            logger.warning("%s: not cached: %s", row["ID"], problem)
            continue
        digest = audio_digest(wav)  # the same key as training's (`CachedFrontend.cached`)
        for speed in speeds:
            key = speed_key(row["ID"], speed)
            lvls = [lv for lv, fe in frontends.items() if not fe.cache_path(key, digest).is_file()]
            n_cached += len(frontends) - len(lvls)
            if not lvls:
                continue
            audio = first.perturb(wav, speed)
            feats = encode_levels(first.encoder, first.log_mel, audio, lvls)
            for level, value in feats.items():
                frontends[level].store(key, digest, value)
            n_computed += len(lvls)
    return {"computed": n_computed, "already_cached": n_cached, "unreadable": failed}


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
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads of a single process (with --workers 1)")
    parser.add_argument("--workers", type=int, default=1,
                        help="processes of one thread each, the utterances split between them "
                        "(faster than one process with as many threads)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    levels = tuple(None if lv == "final" else int(lv) for lv in args.levels)
    print(precompute(args.csvs, args.cache_dir, args.model, tuple(args.speeds), levels,
                     args.workers))


if __name__ == "__main__":
    main()
