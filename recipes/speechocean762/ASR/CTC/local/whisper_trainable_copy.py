"""A copy of a frozen-front-end checkpoint whose top N Whisper blocks are part of the model, so
that LHUC can sit inside them (`lhuc_targets: [whisper_top.blocks.0.mlp.1, ...]`) and be
adapted through the encoder. Nothing is trained: the blocks keep Whisper's own weights, the head
and the normalisation statistics are the source's, so the copy decodes exactly as the source.

    python -m recipes.speechocean762.ASR.CTC.local.whisper_trainable_copy \\
        recipes/speechocean762/ASR/CTC/pretrained/whisper_si.pt exp/whisper_si_top6.pt --blocks 6

Fill its feature cache (the output below the blocks) with `python -m asr_lhuc.whisper.precompute
<csvs> --cache_dir exp/features/speechocean762 --levels <6 - N>`.
"""

import argparse
from pathlib import Path

from asr_lhuc.decode import make_text_encoder
from asr_lhuc.model import CTCAcousticModel
from asr_lhuc.pretrained import init_from_pretrained, read_checkpoint, save_pretrained
from asr_lhuc.speakers import SpeakerMap


def trainable_copy(source: str | Path, target: str | Path, blocks: int) -> Path:
    blob = read_checkpoint(source)
    if blob["lhuc_config"]:
        raise ValueError(f"{source} has LHUC tables: give an SI checkpoint")
    model = CTCAcousticModel(**{**blob["model_config"], "whisper_trainable_blocks": blocks})
    init_from_pretrained(model, source)
    model.normalize._load_statistics_dict(dict(blob["normalize"]))
    encoder = make_text_encoder(blob.get("units", blob["characters"]))
    return save_pretrained(target, model.eval(), encoder, SpeakerMap.from_dict(blob["speakers"]),
                           extra={"made_from": str(source), "whisper_trainable_blocks": blocks,
                                  "results": blob.get("extra", {}).get("results", {})})


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source")
    parser.add_argument("target")
    parser.add_argument("--blocks", type=int, default=6)
    args = parser.parse_args(argv)
    print(trainable_copy(args.source, args.target, args.blocks))


if __name__ == "__main__":
    main()
