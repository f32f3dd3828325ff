"""`make demo`: the toolkit's jobs on data it makes itself, each step ending in a short table.

  core       examples/core_example.py: LHUC attached to a toy model, two new speakers adapted,
             an adapter file saved, one speaker folded into the weights
  ranking    python -m recsys_lhuc demo: DNN vs PPNet on synthetic click data, next to the
             Bayes-optimal AUC
  ASR        recipes/Synthetic/ASR/CTC/adapt.py with hparams/adapt_demo.yaml: unsupervised LHUC
             adaptation of the committed SI and SAT-LHUC models to 6 unseen synthetic speakers,
             scored twice: transductive (adapt on and score the same utterances) and held out
             (adapt on half of each speaker's utterances, score the other half)

Each step is a separate command (printed before it runs) so it can be rerun alone. The last
table gives each step's wall time. `--quick` runs the same steps on small data into a scratch
folder (tests/test_demo.py).
"""

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ASR_RECIPE = "recipes/Synthetic/ASR/CTC"


@dataclass
class Step:
    name: str
    command: list[str]


def steps(out: Path, quick: bool) -> list[Step]:
    """The demo's commands; `quick` shrinks the data, never the code path."""
    py = sys.executable
    ranking = [py, "-m", "recsys_lhuc", "demo", "--out", str(out / "ranking")]
    asr = [py, f"{ASR_RECIPE}/adapt.py", f"{ASR_RECIPE}/hparams/adapt_demo.yaml"]
    if quick:
        ranking += ["--set", f"data.cache_dir={out / 'ranking_cache'}",
                    "data.synthetic.n_users=40", "data.synthetic.n_items=200",
                    "data.synthetic.rows_per_user=40", "train.epochs=1"]
        # the committed models' 24 training speakers stay (2 utterances each: the lexicon),
        # and 2 of the 6 unseen test speakers with 6 utterances each
        asr += ["--data_folder", str(out / "asr_data"), "--utts_per_train_speaker", "2",
                "--n_test_speakers", "2", "--utts_per_test_speaker", "6"]
    return [
        Step("core", [py, "examples/core_example.py"]),
        Step("ranking", ranking),
        Step("ASR, transductive", [*asr, "--output_folder", str(out / "asr_transductive")]),
        Step("ASR, held out", [*asr, "--protocol", "held_out",
                               "--output_folder", str(out / "asr_held_out")]),
    ]


def run(step: Step) -> float:
    """Run one step from the repository root; its output goes straight to the terminal."""
    shown = " ".join(Path(a).name if a == sys.executable else a for a in step.command)
    print(f"\n=== {step.name}: {shown}", flush=True)
    start = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    code = subprocess.run(step.command, cwd=ROOT, env=env).returncode
    if code != 0:
        sys.exit(f"demo step {step.name!r} failed (exit status {code}); rerun it alone from "
                 f"{ROOT} with: {shown}")
    return time.perf_counter() - start


def main(argv=None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="exp/demo", help="where the demo writes (git-ignored)")
    parser.add_argument("--quick", action="store_true", help="small data (the test's setting)")
    args = parser.parse_args(argv)
    out = (ROOT / args.out).resolve()
    seconds = {step.name: run(step) for step in steps(out, args.quick)}
    print(f"\n{'demo step':<20}{'wall s':>8}")
    for name, secs in seconds.items():
        print(f"{name:<20}{secs:>8.1f}")
    print(f"{'total':<20}{sum(seconds.values()):>8.1f}")
    return seconds


if __name__ == "__main__":
    main()
