"""Evaluation protocols: which utterances a speaker adapts on and which are scored.

- transductive: adapt on and score the same utterances (as in the LHUC paper);
- held_out: adapt on half of each speaker's utterances (seeded), score the other half.
The oracle (true transcripts as targets) is `AdaptConfig.targets = "oracle"` under either.
"""

import csv
import random
import zlib
from pathlib import Path

PROTOCOLS = ("transductive", "held_out")


def split_protocol(speakers: dict[str, list], protocol: str, seed: int = 1234
                   ) -> tuple[dict[str, list], dict[str, list]]:
    """(adaptation utterances, scored utterances), both per speaker."""
    if protocol == "transductive":
        return dict(speakers), dict(speakers)
    if protocol != "held_out":
        raise ValueError(f"unknown protocol {protocol!r}; choose one of {PROTOCOLS}")
    adapt, score = {}, {}
    for spk, utts in speakers.items():
        if len(utts) < 2:
            raise ValueError(f"held_out needs >= 2 utterances per speaker; {spk} has {len(utts)}")
        order = list(utts)
        random.Random(seed + zlib.crc32(spk.encode())).shuffle(order)
        half = len(order) // 2
        chosen = {u.id for u in order[:half]}
        adapt[spk] = [u for u in utts if u.id in chosen]
        score[spk] = [u for u in utts if u.id not in chosen]
    return adapt, score


def write_split_manifests(csv_path, adapt: dict[str, list], score: dict[str, list],
                          folder) -> dict[str, str]:
    """Copy the rows of `csv_path` into `<folder>/adapt_utterances.csv` and
    `<folder>/scored_utterances.csv`, so later passes (e.g. the speechocean762 recipe's second
    pass) can score exactly the utterances this protocol scored; returns their paths."""
    with open(csv_path, newline="") as f:
        reader = csv.DictReader(f)
        fields, rows = reader.fieldnames, list(reader)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, part in (("adapt", adapt), ("scored", score)):
        ids = {u.id for utts in part.values() for u in utts}
        path = folder / f"{name}_utterances.csv"
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(r for r in rows if r["ID"] in ids)
        paths[name] = str(path)
    return paths
